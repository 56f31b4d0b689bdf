package cli

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/agent"
	"github.com/vigil-cluster/vigil/internal/config"
	"github.com/vigil-cluster/vigil/internal/pki"
)

func newPool(ca *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca)
	return p
}

func clusterCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cluster", Short: "create a cluster", Args: noArgs}
	var p agent.CreateParams
	var attrs []string
	create := &cobra.Command{
		Use:   "create --name C --member M --address HOST:PORT --api HOST:PORT --data-dir D",
		Short: "create a new cluster with this machine as its first member",
		Long: `Create a new cluster with this machine as its first member. It writes the data
dir (member settings, the cluster CA, the member certificate, the cluster key);
then start the member with ` + "`vigil agent --data-dir D`" + `.

--address is the member's address on its first link: gossip uses that port
(UDP and TCP), Raft and gRPC the next port. Give --address again for more links.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if p.Cluster == "" || p.Member == "" || len(p.Links) == 0 || p.API == "" {
				return usagef("cluster create needs --name, --member, --address and --api")
			}
			var err error
			if p.Attributes, err = config.ParseAttributes(attrs); err != nil {
				return usageError{err}
			}
			p.DataDir = g.dataDir
			m, err := agent.Create(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "created cluster %s with member %s (id %d) in %s\nstart it with: vigil agent --data-dir %s\n", m.Cluster, m.Name, m.ID, g.dataDir, g.dataDir)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&p.Cluster, "name", "", "cluster name")
	f.StringVar(&p.Member, "member", "", "this member's name")
	f.IntVar(&p.ID, "id", 1, "this member's id (1-65535)")
	f.StringArrayVar(&p.Links, "address", nil, "HOST:PORT of this member on a link (repeat for more links)")
	f.StringVar(&p.API, "api", "", "HOST:PORT of this member's HTTP API")
	f.StringVar(&p.Profile, "profile", "lan", "timing profile: fast, lan, campus or wan")
	f.IntVar(&p.Domain, "domain", 0, "failover domain (0-63)")
	f.StringArrayVar(&attrs, "attr", nil, "cluster-wide attribute KEY=VALUE every member must match (repeatable)")
	// --api here is the member's API address, not the agent to talk to.
	create.Flags().SetInterspersed(true)
	c.AddCommand(create, recoverCmd(g))
	return c
}

func recoverCmd(g *globals) *cobra.Command {
	var voters []string
	var yes bool
	cmd := &cobra.Command{
		Use:   "recover --voters M[,M...] [--yes]",
		Short: "make the surviving voters a new majority after the others are lost for good",
		Long: `When a majority of voters is lost for good, no write (not even member remove)
can be committed. Stop the agent of every surviving voter, run
` + "`vigil cluster recover --voters A,B`" + ` on each of them with the same list,
start them again, then remove the lost members with ` + "`vigil member remove`" + `.
This is the role of OpenVMS's SET CLUSTER/EXPECTED_VOTES. Writes that only
the lost members had may be gone.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(voters) == 0 {
				return usagef("cluster recover needs --voters: the surviving voters, this member included")
			}
			cfg, err := config.Load(g.dataDir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), 3*time.Second)
			defer cancel()
			local := client.New(client.Options{Socket: filepath.Join(g.dataDir, agent.SocketFile), Timeout: 2 * time.Second})
			if _, err := local.Status(ctx); err == nil {
				return fmt.Errorf("the agent is running on %s: stop it first", g.dataDir)
			}
			if !yes {
				fmt.Fprintf(g.errOut, "rewrite the cluster database configuration of %s to the voters %v?\nrun the same on every one of them before starting any. type yes to go on: ", cfg.Name, voters)
				line, _ := bufio.NewReader(g.in).ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					return fmt.Errorf("recover cancelled: nothing changed")
				}
			}
			log := slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if err := cdb.Recover(g.dataDir, cfg.Name, voters, log); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s now forms the cluster with voters %v; start its agent, then remove the lost members with `vigil member remove`\n", cfg.Name, voters)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&voters, "voters", nil, "the surviving voters (comma-separated), this member included")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return cmd
}

func memberCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "member", Short: "add, join, remove or reset members", Args: noArgs}
	c.AddCommand(memberAddCmd(g), memberJoinCmd(g), memberRemoveCmd(g), memberResetCmd(g), drainCmd(g, true), drainCmd(g, false))
	return c
}

func memberAddCmd(g *globals) *cobra.Command {
	var r client.AddMemberRequest
	var votes int
	cmd := &cobra.Command{
		Use:   "add M --address HOST:PORT [--votes N] [--domain N] [--witness] [--ttl D]",
		Short: "invite a new member: prints a one-time join token",
		Args:  exactArgs(1, "the new member's name"),
		RunE: func(c *cobra.Command, args []string) error {
			r.Name = args[0]
			if r.Address == "" {
				return usagef("member add needs --address HOST:PORT (the new member's address on its first link)")
			}
			if c.Flags().Changed("votes") {
				r.Votes = &votes
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			out, err := cl.AddMember(ctx, r)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(out)
			}
			fmt.Fprintf(g.errOut, "join token for member %s (one use, expires %s):\n", r.Name, out.Expires.Local().Format(time.RFC3339))
			fmt.Fprintln(g.out, out.Token)
			fmt.Fprintf(g.errOut, "on the new machine run:\n  vigil member join TOKEN --member %s --address %s --api HOST:PORT --data-dir DIR\n", r.Name, r.Address)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.Address, "address", "", "the new member's HOST:PORT on its first link")
	f.IntVar(&votes, "votes", 1, "votes (0 or 1)")
	f.IntVar(&r.Domain, "domain", 0, "failover domain (0-63)")
	f.BoolVar(&r.Witness, "witness", false, "the member is a witness: one vote, never hosts services")
	f.DurationVar(&r.TTL, "ttl", 0, "token lifetime (default: the token-ttl setting, 1h)")
	f.BoolVar(&g.json, "json", false, "print JSON")
	return cmd
}

func memberJoinCmd(g *globals) *cobra.Command {
	var p agent.JoinParams
	var attrs []string
	cmd := &cobra.Command{
		Use:   "join TOKEN --member M --address HOST:PORT --api HOST:PORT --data-dir D",
		Short: "join this machine to a cluster with a token from `vigil member add`",
		Args:  exactArgs(1, "the join token"),
		RunE: func(c *cobra.Command, args []string) error {
			p.Token, p.DataDir = args[0], g.dataDir
			if p.API == "" {
				return usagef("member join needs --api HOST:PORT (this member's HTTP API address)")
			}
			var err error
			if p.Attributes, err = config.ParseAttributes(attrs); err != nil {
				return usageError{err}
			}
			ctx, cancel := g.ctx(c)
			defer cancel()
			m, err := agent.Join(ctx, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "member %s (id %d) joined cluster %s; start it with: vigil agent --data-dir %s\n", m.Name, m.ID, m.Cluster, g.dataDir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.Member, "member", "", "this member's name (default: the name in the token)")
	f.IntVar(&p.ID, "id", 0, "this member's id (default: the next free id)")
	f.StringArrayVar(&p.Links, "address", nil, "HOST:PORT of this member on a link (repeat for more links; default: the token's)")
	f.StringVar(&p.API, "api", "", "HOST:PORT of this member's HTTP API")
	f.BoolVar(&p.Witness, "witness", false, "join as a witness: one vote, never hosts services")
	f.StringVar(&p.Profile, "profile", "", "timing profile; must match the cluster's (default: the cluster's)")
	f.StringArrayVar(&attrs, "attr", nil, "attribute KEY=VALUE (cluster-wide ones must match)")
	return cmd
}

func memberRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove M",
		Short: "remove a member from the cluster",
		Args:  exactArgs(1, "the member's name"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.RemoveMember(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "member %s removed; its agent stops. Wipe it with `vigil member reset` on that machine before it joins again\n", args[0])
			return nil
		},
	}
}

func memberResetCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "reset [M] [--force]",
		Short: "wipe this machine's member state (the data dir)",
		Long: `Wipe this machine's member state: the files vigil wrote in --data-dir (settings,
keys, certificates, the cluster database replica). The agent must be stopped.
Without --force it refuses while another member still lists this one (remove
it first with ` + "`vigil member remove M`" + ` on another member), and when no other
member can be asked.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("member reset takes at most one member name")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := config.Load(g.dataDir)
			if err != nil {
				if _, serr := os.Stat(g.dataDir); serr != nil {
					return fmt.Errorf("nothing to reset: %v", serr)
				}
			}
			if len(args) == 1 && cfg != nil && args[0] != cfg.Name {
				return usagef("%s holds member %s, not %s: check --data-dir", g.dataDir, cfg.Name, args[0])
			}
			ctx, cancel := context.WithTimeout(c.Context(), 5*time.Second)
			defer cancel()
			local := client.New(client.Options{Socket: filepath.Join(g.dataDir, agent.SocketFile), Timeout: 2 * time.Second})
			if _, err := local.Status(ctx); err == nil {
				return fmt.Errorf("the agent is running on %s: stop it first (and remove the member with `vigil member remove` on another member)", g.dataDir)
			}
			if cfg != nil && !force {
				who, where, asked := stillMember(ctx, g.dataDir, cfg.Name)
				if who != "" {
					return fmt.Errorf("member %s is still part of cluster %s (member %s at %s lists it): remove it first with `vigil member remove %s` on another member, or use --force", cfg.Name, cfg.Cluster, who, where, cfg.Name)
				}
				if asked == 0 {
					if _, err := os.Stat(filepath.Join(g.dataDir, agent.RemovedFile)); err != nil {
						return fmt.Errorf("could not ask any other member of cluster %s whether %s is still listed (none answered); if the cluster is gone or %s was removed, use --force", cfg.Cluster, cfg.Name, cfg.Name)
					}
				}
			}
			if err := agent.Wipe(g.dataDir); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "member state in %s wiped\n", g.dataDir)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "wipe even if the cluster still lists this member")
	return cmd
}

// stillMember asks the other members this one knew of whether they still list
// it, and returns the first that does and how many answered.
func stillMember(ctx context.Context, dir, name string) (string, string, int) {
	id, err := pki.Load(dir)
	if err != nil {
		return "", "", 0
	}
	asked := 0
	for _, m := range agent.ReadMembersCache(dir) {
		if m.Name == name {
			continue
		}
		tc := id.ClientConfig("")
		tc.NextProtos = nil
		cl := client.New(client.Options{Address: m.API, TLS: tc, Timeout: 2 * time.Second})
		st, err := cl.Status(ctx)
		cl.Close()
		if err != nil {
			var ce *client.Error
			if errors.As(err, &ce) && ce.Code == client.CodeDenied {
				asked++ // it refused our certificate: we are not a member any more
			}
			continue
		}
		asked++
		for _, row := range st.Members {
			if row.Name == name {
				return m.Name, m.API, asked
			}
		}
	}
	return "", "", asked
}

func agentCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agent --data-dir D",
		Short: "run this member's agent (in the foreground)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			level := new(slog.LevelVar)
			log := slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: level}))
			if addr := os.Getenv("VIGIL_PPROF"); addr != "" {
				// For profiling a running agent: net/http/pprof on a
				// local address of the operator's choosing.
				go http.ListenAndServe(addr, nil)
			}
			a, err := agent.New(g.dataDir, level, log)
			if err != nil {
				return err
			}
			err = a.Run(ctx)
			if errors.Is(err, agent.ErrRemoved) {
				return fmt.Errorf("%v: wipe it with `vigil member reset --data-dir %s` before it joins again", err, g.dataDir)
			}
			return err
		},
	}
}
