package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/localcluster"
)

func demoCmd(g *globals) *cobra.Command {
	var duration time.Duration
	var basePort int
	var profile string
	var logFile string
	cmd := &cobra.Command{
		Use:   "demo [--duration D]",
		Short: "run a live local 3-member cluster on 127.0.0.1 and show its status; Ctrl-C stops it",
		Long: `Start a local cluster of 3 real agent processes on 127.0.0.1, formed with
cluster create / member add / member join, and show ` + "`vigil status`" + ` live.
It applies a service, hello (vigil answering the name of its member over
HTTP), and after 10 seconds powers off the member running it (its agent and
the service are killed) so you can watch hello move; 10 seconds later that
member comes back. Kill an agent yourself (its pid is in the logs) to try
other failures.
Ctrl-C (or --duration) stops every process it started and removes its temp dir.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			logs := io.Discard
			if logFile != "" {
				f, err := os.Create(logFile)
				if err != nil {
					return err
				}
				defer f.Close()
				logs = f
			}
			fmt.Fprintln(g.out, "starting 3 vigil agents on 127.0.0.1 …")
			t0 := time.Now()
			lc, err := localcluster.Start(ctx, localcluster.Options{Bin: bin, Members: 3, BasePort: basePort, Profile: profile, Log: logs})
			if err != nil {
				return err
			}
			defer func() {
				fmt.Fprintln(g.out, "stopping the agents and removing", lc.Dir())
				lc.Close()
			}()
			fmt.Fprintf(g.out, "cluster formed in %s (data dirs in %s)\n", time.Since(t0).Round(time.Millisecond), lc.Dir())
			port, err := freePort()
			if err != nil {
				return err
			}
			svc := fmt.Sprintf(demoService, bin, port)
			if out, err := lc.Apply(ctx, 0, svc); err != nil {
				return fmt.Errorf("applying the demo service: %v: %s", err, out)
			}
			fmt.Fprintf(g.out, "applied service hello: an HTTP server on 127.0.0.1:%d that answers the name of the member it runs on\n", port)
			return runDemo(ctx, g.out, lc, port)
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	cmd.Flags().IntVar(&basePort, "base-port", 0, "first port (default: free ports)")
	cmd.Flags().StringVar(&profile, "profile", "lan", "timing profile")
	cmd.Flags().StringVar(&logFile, "log", "", "write the agents' logs to this file")
	return cmd
}

// demoService is the demo's service: vigil itself answering its member's name.
const demoService = `service: hello
description: answers the name of the member it runs on
resources:
  - name: http
    kind: exec
    command: [%q, serve-name, --listen, "127.0.0.1:%d"]
placement:
  favored: [m1, m2, m3]
monitor_interval: 1s
`

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ask fetches the demo service's answer.
func ask(port int) string {
	c := http.Client{Timeout: 300 * time.Millisecond}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return "no answer"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
	return strings.TrimSpace(string(b))
}

// runDemo shows the status every second and plays the crash scene: the
// member running the service is powered off (its agent and the service
// killed), the service moves, the member comes back.
func runDemo(ctx context.Context, out io.Writer, lc *localcluster.Cluster, port int) error {
	start := time.Now()
	killed := -1
	var killedAt time.Time
	var note string
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		// Ask any running member.
		var st *client.Status
		for i := range lc.Members {
			if !lc.Members[i].Running() {
				continue
			}
			cl := lc.Client(i)
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := cl.Status(cctx)
			cancel()
			cl.Close()
			if err == nil {
				st = s
				break
			}
		}
		el := time.Since(start).Round(time.Second)
		fmt.Fprintf(out, "\n── vigil status, t=%s ─────────────────────────────────────\n", el)
		owner := ""
		if st != nil {
			printStatus(out, st, time.Now())
			for i := range lc.Members {
				if !lc.Members[i].Running() {
					continue
				}
				cl := lc.Client(i)
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				ss, err := cl.Services(cctx)
				cancel()
				cl.Close()
				if err == nil {
					fmt.Fprintln(out)
					printServices(out, ss)
					for _, s := range ss {
						if s.Name == "hello" && s.State == "ONLINE" {
							owner = s.Owner
						}
					}
					break
				}
			}
			fmt.Fprintf(out, "\ncurl http://127.0.0.1:%d/  ->  %s\n", port, ask(port))
		}
		if note != "" {
			fmt.Fprintln(out, note)
		}
		switch {
		case killed < 0 && el >= 10*time.Second && owner != "":
			for i, m := range lc.Members {
				if m.Name == owner {
					killed, killedAt = i, time.Now()
					lc.Crash(i)
					note = fmt.Sprintf(">>> powered off %s, which ran hello (agent and service killed) at t=%s; watch hello move", m.Name, el)
					fmt.Fprintln(out, note)
				}
			}
		case killed >= 0 && !killedAt.IsZero() && owner != "" && owner != lc.Members[killed].Name:
			note = fmt.Sprintf(">>> hello runs on %s, within %s of the crash (the director was %s)", owner, time.Since(killedAt).Round(100*time.Millisecond), st.Director)
			killedAt = time.Time{}
		case killed >= 0 && !lc.Members[killed].Running() && el >= 20*time.Second:
			if err := lc.StartAgent(killed); err == nil {
				note = fmt.Sprintf(">>> restarted %s at t=%s; it comes back with its state, and hello stays where it runs (no failback)", lc.Members[killed].Name, el)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
