// Command vigil-lab runs vigil clusters on hosts made of Linux network
// namespaces, injects faults, runs seeded chaos with an invariant checker,
// and benchmarks failover against keepalived. It needs root.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/internal/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "vigil-lab:", err)
		os.Exit(1)
	}
}

type globals struct {
	dir     string
	verbose bool
}

func (g *globals) open() (*lab.Lab, error) {
	l, err := lab.Open(g.dir)
	if err != nil {
		return nil, err
	}
	l.Log, l.Verbose = os.Stdout, g.verbose
	return l, nil
}

// defaultVigil is the vigil binary next to this one, else the one on PATH.
func defaultVigil() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "vigil")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("vigil"); err == nil {
		return p
	}
	return "bin/vigil"
}

func self() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return p
}

func root() *cobra.Command {
	g := &globals{}
	c := &cobra.Command{
		Use:           "vigil-lab",
		Short:         "vigil clusters in network namespaces: faults, chaos, failover benchmark (root)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := os.Getenv("VIGIL_LAB_DIR")
	if def == "" {
		def = filepath.Join(os.TempDir(), "vigil-lab")
	}
	c.PersistentFlags().StringVar(&g.dir, "dir", def, "the lab's directory (env VIGIL_LAB_DIR)")
	c.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "print every command the lab runs")
	c.AddCommand(upCmd(g), downCmd(g), statusCmd(g), execCmd(g), chaosCmd(g), benchCmd(g))
	c.AddCommand(faultCmds(g)...)
	c.AddCommand(workloadCmds()...)
	return c
}

func upCmd(g *globals) *cobra.Command {
	o := lab.Options{}
	var noService bool
	cmd := &cobra.Command{
		Use:   "up --members N [--links 2] [--profile lan|fast] [--dir D]",
		Short: "build the lab and form a vigil cluster in it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Dir, o.Log, o.Verbose, o.LabBin, o.NoService = g.dir, os.Stdout, g.verbose, self(), noService
			l, err := lab.Up(c.Context(), o)
			if err != nil {
				return err
			}
			s, err := l.State()
			if err != nil {
				return err
			}
			fmt.Printf("lab up in %s; try: vigil-lab exec m1 -- vigil status; vigil-lab exec client -- vigil-lab get %s\n", l.Dir, s.URL())
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Members, "members", 3, "number of members")
	cmd.Flags().IntVar(&o.Links, "links", 1, "links (bridges) per member: 1 or 2")
	cmd.Flags().StringVar(&o.Profile, "profile", "lan", "vigil timing profile")
	cmd.Flags().StringVar(&o.Vigil, "vigil", defaultVigil(), "the vigil binary")
	cmd.Flags().StringVar(&o.Mode, "mode", lab.ModeVigil, "what members run: vigil, or keepalived (the comparison peer)")
	cmd.Flags().BoolVar(&o.NoFencing, "no-fencing", false, "do not offer the lab's power switch to vigil as a fence device")
	cmd.Flags().BoolVar(&noService, "no-service", false, "do not apply the web service (floating IP + HTTP backend)")
	return cmd
}

func downCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "stop every lab process and remove its namespaces, links and files",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			return l.Down()
		},
	}
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "show the lab's hosts, their faults, and the cluster's status",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			return l.PrintStatus(c.Context(), os.Stdout)
		},
	}
}

func execCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "exec M|client -- CMD [ARGS...]",
		Short: "run a command in a member's (or the client's) namespace",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			cmd, err := l.Command(c.Context(), args[0], args[1:]...)
			if err != nil {
				return err
			}
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			return cmd.Run()
		},
	}
}

// faultCmds are the fault injectors, one command each.
func faultCmds(g *globals) []*cobra.Command {
	one := func(use, short string, fn func(l *lab.Lab, m string) error) *cobra.Command {
		return &cobra.Command{Use: use + " M", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				l, err := g.open()
				if err != nil {
					return err
				}
				return fn(l, args[0])
			}}
	}
	num := func(use, short, unit string, fn func(l *lab.Lab, m string, n int) error) *cobra.Command {
		return &cobra.Command{Use: use + " M " + unit, Short: short, Args: cobra.ExactArgs(2),
			RunE: func(c *cobra.Command, args []string) error {
				n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(args[1], "%"), "ms"))
				if err != nil {
					return fmt.Errorf("%s: %q is not a number of %s", use, args[1], unit)
				}
				l, err := g.open()
				if err != nil {
					return err
				}
				return fn(l, args[0], n)
			}}
	}
	partition := &cobra.Command{
		Use:   "partition A[,B...] / C[,D...]",
		Short: "cut every link between the groups (members not named join the last group)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var groups [][]string
			for _, side := range strings.Split(strings.Join(args, " "), "/") {
				var g []string
				for _, n := range strings.FieldsFunc(side, func(r rune) bool { return r == ',' || r == ' ' }) {
					g = append(g, n)
				}
				if len(g) > 0 {
					groups = append(groups, g)
				}
			}
			l, err := g.open()
			if err != nil {
				return err
			}
			return l.Partition(groups)
		},
	}
	heal := &cobra.Command{Use: "heal", Short: "undo the partition, pulled cables, loss, delay and pauses", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			return l.Heal()
		}}
	return []*cobra.Command{
		one("crash", "power a member off: kill all its processes, remove its addresses", (*lab.Lab).Crash),
		one("kill-agent", "kill only the member's vigil agent", (*lab.Lab).KillAgent),
		one("pause", "stop every process of the member (SIGSTOP)", (*lab.Lab).Pause),
		one("resume", "continue a paused member (SIGCONT)", (*lab.Lab).Resume),
		one("restart", "power on a crashed member, or restart its agent", (*lab.Lab).Restart),
		partition, heal,
		num("link-down", "pull the member's cable on a link (at the switch)", "LINK", func(l *lab.Lab, m string, k int) error { return l.SetLink(m, k, false) }),
		num("link-up", "plug the member's cable back", "LINK", func(l *lab.Lab, m string, k int) error { return l.SetLink(m, k, true) }),
		num("loss", "drop PCT% of the member's packets each way (tc netem; 0 clears)", "PCT", func(l *lab.Lab, m string, n int) error {
			mm, err := l.Member(m)
			if err != nil {
				return err
			}
			return l.Netem(m, n, mm.Delay)
		}),
		num("delay", "delay the member's packets MS each way (tc netem; 0 clears)", "MS", func(l *lab.Lab, m string, n int) error {
			mm, err := l.Member(m)
			if err != nil {
				return err
			}
			return l.Netem(m, mm.Loss, n)
		}),
	}
}

// workloadCmds are run by the lab itself, inside the namespaces.
func workloadCmds() []*cobra.Command {
	var listen, name, log, url string
	var every, timeout time.Duration
	httpd := &cobra.Command{Use: "httpd", Short: "(lab) the web backend: answers with the member's name", Hidden: true, Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return lab.ServeHTTP(listen, name) }}
	httpd.Flags().StringVar(&listen, "listen", fmt.Sprintf(":%d", lab.HTTPPort), "listen address")
	httpd.Flags().StringVar(&name, "name", "", "the name to answer (default $VIGIL_MEMBER)")
	writer := &cobra.Command{Use: "writer --log FILE", Short: "(lab) the chaos service: appends MEMBER EPOCH MONO every 10 ms", Hidden: true, Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return lab.Write(log, every) }}
	writer.Flags().StringVar(&log, "log", "", "the log to append to")
	writer.Flags().DurationVar(&every, "every", 10*time.Millisecond, "interval")
	probe := &cobra.Command{Use: "probe --url URL", Short: "(lab) GET URL every interval, overlapping; one line per request", Hidden: true, Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			lab.Probe(c.Context(), os.Stdout, url, every, timeout)
			return nil
		}}
	probe.Flags().StringVar(&url, "url", "http://198.18.0.100/", "the URL")
	probe.Flags().DurationVar(&every, "every", 10*time.Millisecond, "interval between requests")
	probe.Flags().DurationVar(&timeout, "timeout", 250*time.Millisecond, "per-request timeout")
	get := &cobra.Command{Use: "get URL", Short: "(lab) GET URL once and print the body", Hidden: true, Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			body, err := lab.Get(args[0], 2*time.Second)
			if err != nil {
				return err
			}
			fmt.Print(body)
			return nil
		}}
	fence := &cobra.Command{Use: "fence-agent", Short: "(lab) the power switch as a fence agent (stdin: action=, nodename=, dir=)", Hidden: true, Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return lab.FenceAgent(os.Stdin, os.Stdout) }}
	return []*cobra.Command{httpd, writer, probe, get, fence, lockstoreCmd(), dlmworkerCmd(), tlsGetCmd(), gossipJoinCmd()}
}

func lockstoreCmd() *cobra.Command {
	var listen, log string
	c := &cobra.Command{Use: "lockstore --listen ADDR --log FILE", Short: "(lab) the fencing-token store of the lock workload: POST /op", Hidden: true, Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return lab.ServeLockStore(c.Context(), listen, log, os.Stdout)
		}}
	c.Flags().StringVar(&listen, "listen", fmt.Sprintf(":%d", lab.LockStorePort), "listen address")
	c.Flags().StringVar(&log, "log", "", "the log to append every operation to")
	return c
}

func dlmworkerCmd() *cobra.Command {
	c := &cobra.Command{Use: "dlmworker --socket DATA/dlm.sock --store URL --member M --client NAME --resources r1,r2 --log FILE",
		Short: "(lab) a lock worker: lock, send operations with the fencing token to the store, unlock, again", Hidden: true, Args: cobra.NoArgs}
	get := workerFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error { return lab.RunDLMWorker(c.Context(), get()) }
	return c
}

// workerFlags defines the lock worker's flags on c; get returns the
// options they give.
func workerFlags(c *cobra.Command) (get func() lab.DLMWorkerOptions) {
	var o lab.DLMWorkerOptions
	var resources, modes string
	f := c.Flags()
	f.StringVar(&o.Socket, "socket", "", "the agent's lock manager socket (DATA/dlm.sock)")
	f.StringVar(&o.Store, "store", "", "the lock store's URL")
	f.StringVar(&o.Member, "member", "", "this member (default $VIGIL_MEMBER)")
	f.StringVar(&o.Client, "client", "", "this worker's name, unique in the run")
	f.StringVar(&resources, "resources", "r1,r2,r3", "the resources to lock")
	f.StringVar(&modes, "modes", "EX,PR", "the modes to draw from")
	f.IntVar(&o.MinOps, "ops-min", 1, "the least operations per lock held")
	f.IntVar(&o.MaxOps, "ops", 3, "the most operations per lock held")
	f.DurationVar(&o.GapMin, "gap-min", 10*time.Millisecond, "the least time before an operation")
	f.DurationVar(&o.GapMax, "gap-max", 50*time.Millisecond, "the most time before an operation")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "the longest wait for a lock or an unlock")
	f.BoolVar(&o.IgnoreLost, "ignore-lost", false, "keep sending operations after the lock is lost (the store must refuse them)")
	f.Uint64Var(&o.Seed, "seed", 0, "seed of the worker's choices")
	f.StringVar(&o.Log, "log", "", "the worker's log")
	return func() lab.DLMWorkerOptions {
		o.Resources, o.Modes = splitList(resources), splitList(modes)
		return o
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func tlsGetCmd() *cobra.Command {
	var cert, key, token string
	c := &cobra.Command{Use: "tls-get URL [--cert F --key F] [--token T]", Short: "(lab) GET URL over TLS without checking the server; print the status and body", Hidden: true, Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			code, body, err := lab.TLSGet(args[0], cert, key, token, 5*time.Second)
			if err != nil {
				return err
			}
			fmt.Printf("%d\n%s", code, body)
			return nil
		}}
	c.Flags().StringVar(&cert, "cert", "", "client certificate (PEM)")
	c.Flags().StringVar(&key, "key", "", "its key (PEM)")
	c.Flags().StringVar(&token, "token", "", "API token")
	return c
}

func gossipJoinCmd() *cobra.Command {
	var key, bind, to string
	var wait time.Duration
	c := &cobra.Command{Use: "gossip-join --key HEX --bind IP:PORT --to IP:PORT", Short: "(lab) gossip with a key of one's own: try to join a member", Hidden: true, Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			n, err := lab.GossipJoin(key, bind, to, wait)
			fmt.Printf("members seen: %d\njoin: %v\n", n, err)
			return nil
		}}
	c.Flags().StringVar(&key, "key", "", "the gossip key (hex)")
	c.Flags().StringVar(&bind, "bind", "", "the address to gossip from")
	c.Flags().StringVar(&to, "to", "", "the member's gossip address")
	c.Flags().DurationVar(&wait, "wait", 2*time.Second, "how long to go on gossiping after the join")
	return c
}
