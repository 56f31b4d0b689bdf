package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
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
After 10 seconds the demo kills the director (SIGKILL) so you can watch the
members see it DOWN and elect a new director; 10 seconds later it restarts it.
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
			return runDemo(ctx, g.out, lc)
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	cmd.Flags().IntVar(&basePort, "base-port", 0, "first port (default: free ports)")
	cmd.Flags().StringVar(&profile, "profile", "lan", "timing profile")
	cmd.Flags().StringVar(&logFile, "log", "", "write the agents' logs to this file")
	return cmd
}

// runDemo shows the status every second and plays the director-crash scene.
func runDemo(ctx context.Context, out io.Writer, lc *localcluster.Cluster) error {
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
		if st != nil {
			printStatus(out, st, time.Now())
		}
		if note != "" {
			fmt.Fprintln(out, note)
		}
		switch {
		case killed < 0 && el >= 10*time.Second && st != nil && st.Director != "":
			for i, m := range lc.Members {
				if m.Name == st.Director {
					killed, killedAt = i, time.Now()
					lc.Kill(i)
					note = fmt.Sprintf(">>> killed the director %s (SIGKILL) at t=%s; watch it go DOWN and a new director take over", m.Name, el)
					fmt.Fprintln(out, note)
				}
			}
		case killed >= 0 && !lc.Members[killed].Running() && st != nil && st.Director != "" && st.Director != lc.Members[killed].Name && note != "" && !killedAt.IsZero():
			note = fmt.Sprintf(">>> %s took over as director within %s of the crash", st.Director, time.Since(killedAt).Round(100*time.Millisecond))
			killedAt = time.Time{}
		case killed >= 0 && !lc.Members[killed].Running() && el >= 20*time.Second:
			if err := lc.StartAgent(killed); err == nil {
				note = fmt.Sprintf(">>> restarted %s at t=%s; it comes back with its state from its data dir", lc.Members[killed].Name, el)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
