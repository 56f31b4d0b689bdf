package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
)

func membersCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members [--json]",
		Short: "list the members with their state, agent state, role and links",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			st, err := g.status(c)
			if err != nil {
				return err
			}
			g.warnStale(st.Stale, st.StaleReason)
			if g.json {
				return g.printJSON(st.Members)
			}
			printMembers(g.out, st, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
	return cmd
}

func statusCmd(g *globals) *cobra.Command {
	var (
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status [--json] [--watch [--interval D]]",
		Short: "show the cluster summary (quorum, director) and the members (--watch: a live view)",
		Long: `Show the cluster summary (quorum, director) and the members.

With --watch, a live view refreshed in place (as crm_mon does): the summary,
the members, the services and the latest events, until Ctrl-C. It keeps
going while the agent it asks is away, and says so.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if watch {
				if g.json {
					return usagef("--watch and --json do not go together: use `vigil events --follow --json` for a stream")
				}
				if interval < 100*time.Millisecond {
					return usagef("--interval %s is too short: use 100ms or more", interval)
				}
				return g.watchStatus(c.Context(), interval)
			}
			st, err := g.status(c)
			if err != nil {
				return err
			}
			g.warnStale(st.Stale, st.StaleReason)
			if g.json {
				return g.printJSON(st)
			}
			printStatus(g.out, st, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh in place until Ctrl-C")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often --watch refreshes")
	return cmd
}

// watchStatus redraws the status, services and latest events every interval
// until ctx ends.
func (g *globals) watchStatus(ctx context.Context, interval time.Duration) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var b strings.Builder
		b.WriteString("\x1b[H\x1b[2J") // home, clear
		cctx, cancel := context.WithTimeout(ctx, max(interval, 2*time.Second))
		renderWatch(cctx, &b, cl, time.Now())
		cancel()
		io.WriteString(g.out, b.String())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// renderWatch writes one frame of `vigil status --watch`.
func renderWatch(ctx context.Context, w io.Writer, cl *client.Client, now time.Time) {
	fmt.Fprintf(w, "vigil status --watch  %s  (Ctrl-C to stop)\n\n", now.Format("2006-01-02 15:04:05"))
	st, err := cl.Status(ctx)
	if err != nil {
		fmt.Fprintf(w, "cannot reach the agent at %s: %v\nretrying...\n", cl.Where, err)
		return
	}
	if st.Stale {
		fmt.Fprintf(w, "WARNING: %s\n\n", st.StaleReason)
	}
	printStatus(w, st, now)
	if ss, err := cl.Services(ctx); err == nil {
		fmt.Fprintln(w)
		if len(ss) == 0 {
			fmt.Fprintln(w, "no services (see `vigil apply -f FILE`)")
		} else {
			printServices(w, ss)
		}
	}
	if evs, err := cl.Events(ctx, client.EventFilter{Limit: 8}); err == nil && len(evs) > 0 {
		fmt.Fprintln(w, "\nlatest events:")
		for i := range evs {
			fmt.Fprintln(w, "  "+EventLine(&evs[i]))
		}
	}
}

func (g *globals) status(c *cobra.Command) (*client.Status, error) {
	cl, err := g.client()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := g.ctx(c)
	defer cancel()
	return cl.Status(ctx)
}

// QuorumLine is the status heading's quorum sentence.
func QuorumLine(st *client.Status) string {
	with := "WITH"
	if !st.Quorum {
		with = "WITHOUT"
	}
	return fmt.Sprintf("partition %s quorum: %d of %d expected votes present, %d needed", with, st.VotesPresent, st.ExpectedVotes, st.QuorumNeeded)
}

func printStatus(w io.Writer, st *client.Status, now time.Time) {
	dir := st.Director
	if dir == "" {
		dir = "(none)"
	}
	fmt.Fprintf(w, "cluster:        %s (profile %s)\n", st.Cluster, st.Profile)
	fmt.Fprintf(w, "director:       %s\n", dir)
	fmt.Fprintf(w, "expected votes: %d\n", st.ExpectedVotes)
	fmt.Fprintf(w, "votes present:  %d\n", st.VotesPresent)
	fmt.Fprintf(w, "quorum needed:  %d\n", st.QuorumNeeded)
	fmt.Fprintf(w, "%s\n", QuorumLine(st))
	fmt.Fprintf(w, "answered by:    %s (cdb index %d)\n\n", st.Local, st.Index)
	printMembers(w, st, now)
}

func printMembers(w io.Writer, st *client.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSTATE\tAGENT\tROLE\tVOTES\tDOMAIN\tSINCE\tLINKS")
	for _, m := range st.Members {
		var links []string
		for _, l := range m.Links {
			s := "up"
			if !l.Up {
				s = "down"
			}
			links = append(links, l.Addr+"("+s+")")
		}
		role := m.Role
		if m.Witness {
			role += ",witness"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", m.Name, m.ID, m.State, m.AgentState, role, m.Votes, m.Domain, since(m.Since, now), strings.Join(links, " "))
	}
	tw.Flush()
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	return fmt.Sprintf("%s (%s ago)", t.Local().Format("15:04:05"), d)
}

func settingsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "settings [--json]",
		Short: "show the cluster settings",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			s, err := cl.Settings(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(s)
			}
			g.warnStale(s.Stale, "")
			for _, k := range config.SortedKeys(s.Settings) {
				fmt.Fprintf(g.out, "%s=%s\n", k, s.Settings[k])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
	set := &cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "change cluster settings (KEY= removes a key)",
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("settings set needs KEY=VALUE arguments")
			}
			kv := map[string]string{}
			for _, a := range args {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					return usagef("%q is not KEY=VALUE", a)
				}
				kv[k] = v
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := cl.SetSettings(ctx, kv)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "settings changed (cdb index %d)\n", r.Index)
			return nil
		},
	}
	cmd.AddCommand(set)
	return cmd
}

func cdbCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cdb", Short: "show, back up and restore the cluster database", Args: noArgs}
	show := &cobra.Command{
		Use:   "show [--json]",
		Short: "print the cluster configuration",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			cfg, err := cl.Config(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(cfg)
			}
			g.warnStale(cfg.Stale, "")
			printConfig(g.out, cfg)
			return nil
		},
	}
	show.Flags().BoolVar(&g.json, "json", false, "print JSON")
	backup := &cobra.Command{
		Use:   "backup FILE",
		Short: "write a consistent online snapshot of the cluster database to FILE",
		Args:  exactArgs(1, "the backup file name"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			data, err := cl.Backup(ctx)
			if err != nil {
				return err
			}
			b, _, err := cdb.DecodeBackup(data)
			if err != nil {
				return fmt.Errorf("the agent sent a bad backup: %v", err)
			}
			if err := config.WriteFileAtomic(args[0], data, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "backup of cluster %s at cdb index %d written to %s (sha256 %s)\n", b.Cluster, b.Index, args[0], b.SHA256[:16])
			return nil
		},
	}
	var yes bool
	restore := &cobra.Command{
		Use:   "restore FILE [--yes]",
		Short: "restore the cluster database from a backup, after a confirmation",
		Long: `Restore the cluster database from a backup file on a running cluster. The
settings and cluster-wide attributes return to the backup's; the member list
and join tokens stay as they are now (a backup never brings back a removed
member or a used token).`,
		Args: exactArgs(1, "the backup file name"),
		RunE: func(c *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			b, _, err := cdb.DecodeBackup(data)
			if err != nil {
				return fmt.Errorf("%s: %v", args[0], err)
			}
			if !yes {
				fmt.Fprintf(g.errOut, "restore cluster %s from %s (taken %s at cdb index %d)?\nthis replaces the current settings. type yes to go on: ", b.Cluster, args[0], b.Created.Local().Format(time.RFC3339), b.Index)
				line, _ := bufio.NewReader(g.in).ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					return fmt.Errorf("restore cancelled: nothing changed")
				}
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := cl.Restore(ctx, data)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "restored the backup of %s (cdb index now %d)\n", r.Created, r.Index)
			return nil
		},
	}
	restore.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	c.AddCommand(show, backup, restore)
	return c
}

func printConfig(w io.Writer, cfg *client.Config) {
	cl := cfg.Cluster
	fmt.Fprintf(w, "cluster %s\n  id:             %s\n  profile:        %s\n  created:        %s\n  CA fingerprint: %s\n", cl.Name, cl.ID, cl.Profile, cl.Created.Local().Format(time.RFC3339), cl.CAFingerprint)
	for _, k := range config.SortedKeys(cl.Attributes) {
		fmt.Fprintf(w, "  attribute:      %s=%s\n", k, cl.Attributes[k])
	}
	fmt.Fprintf(w, "\nmembers (%d)\n", len(cfg.Members))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tID\tVOTES\tDOMAIN\tWITNESS\tAPI\tLINKS\tJOINED")
	for _, m := range cfg.Members {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%v\t%s\t%s\t%s\n", m.Name, m.ID, m.Votes, m.Domain, m.Witness, m.API, strings.Join(m.Links, ","), m.Joined.Local().Format(time.RFC3339))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nsettings (%d)\n", len(cfg.Settings))
	for _, k := range config.SortedKeys(cfg.Settings) {
		fmt.Fprintf(w, "  %s=%s\n", k, cfg.Settings[k])
	}
	sort.Slice(cfg.JoinTokens, func(i, j int) bool { return cfg.JoinTokens[i].Expires.Before(cfg.JoinTokens[j].Expires) })
	fmt.Fprintf(w, "\njoin tokens (%d)\n", len(cfg.JoinTokens))
	for _, t := range cfg.JoinTokens {
		state := "unused"
		if t.UsedBy != "" {
			state = "used by " + t.UsedBy
		} else if time.Now().After(t.Expires) {
			state = "expired"
		}
		fmt.Fprintf(w, "  %s for %s, expires %s, %s\n", t.ID, t.Member, t.Expires.Local().Format(time.RFC3339), state)
	}
	fmt.Fprintf(w, "\ncdb index %d\n", cfg.Index)
}

func logLevelCmd(g *globals) *cobra.Command {
	var r client.LogLevelRequest
	cmd := &cobra.Command{
		Use:   "log-level LEVEL [--member M | --all]",
		Short: "change the log level (debug, info, warn, error) at run time",
		Args:  exactArgs(1, "a level: debug, info, warn or error"),
		RunE: func(c *cobra.Command, args []string) error {
			r.Level = args[0]
			if _, err := config.ParseLevel(r.Level); err != nil {
				return usageError{err}
			}
			if r.All && r.Member != "" {
				return usagef("give --member or --all, not both")
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			res, err := cl.SetLogLevel(ctx, r)
			if err != nil {
				return err
			}
			failed := 0
			for _, x := range res {
				if x.Error != "" {
					failed++
					fmt.Fprintf(g.out, "%s: failed: %s\n", x.Member, x.Error)
				} else {
					fmt.Fprintf(g.out, "%s: log level %s\n", x.Member, r.Level)
				}
			}
			if failed > 0 {
				return fmt.Errorf("the log level was not changed on %d member(s)", failed)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&r.Member, "member", "", "the member to change (default: the one answering)")
	cmd.Flags().BoolVar(&r.All, "all", false, "change every member")
	return cmd
}
