package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/internal/lab"
	"github.com/vigil-cluster/vigil/internal/lab/check"
)

// defaultFaults are the chaos faults every kernel supports (delay needs netem).
const defaultFaults = "crash,kill-agent,pause,partition,loss,link-down"

func chaosCmd(g *globals) *cobra.Command {
	o := lab.ChaosOptions{}
	var faults string
	var keep bool
	cmd := &cobra.Command{
		Use:   "chaos --members 3|5 [--seed S] [--duration D] [--faults crash,kill-agent,...]",
		Short: "a seeded random fault schedule against a workload, then a final heal and the invariant checks",
		Long: "Builds a lab in --dir, runs the schedule the seed gives (printed first: the same seed replays the same\n" +
			"schedule), heals everything and checks: no two members ran a service at once, every acknowledged CDB\n" +
			"write is readable on every member, every service is ONLINE within the liveness bound, and the lock\n" +
			"workload (lock workers on every member, a fencing store in the client namespace) saw no incompatible\n" +
			"holders at once and no stale token accepted.\n" +
			"Exit code 1 when any invariant was violated.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fs, err := check.ParseFaults(faults)
			if err != nil {
				return err
			}
			if !c.Flags().Changed("seed") {
				o.Seed = rand.Int64N(1 << 40)
			}
			fmt.Printf("seed %d\n", o.Seed)
			o.Faults, o.Dir, o.LabBin, o.Out = fs, g.dir, self(), os.Stdout
			if g.verbose {
				o.Log = os.Stdout
			}
			rep, err := lab.Chaos(c.Context(), o, keep)
			if err != nil {
				return fmt.Errorf("chaos seed %d: %v", o.Seed, err)
			}
			if len(rep.Violations) > 0 {
				return fmt.Errorf("chaos seed %d: %d violations (replay with --seed %d)", o.Seed, len(rep.Violations), o.Seed)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Members, "members", 3, "members (3 or 5)")
	cmd.Flags().IntVar(&o.Links, "links", 1, "links per member")
	cmd.Flags().StringVar(&o.Profile, "profile", "lan", "vigil timing profile")
	cmd.Flags().Int64Var(&o.Seed, "seed", 0, "the schedule's seed (default: random, printed)")
	cmd.Flags().DurationVar(&o.Duration, "duration", 2*time.Minute, "how long faults are injected")
	cmd.Flags().StringVar(&faults, "faults", defaultFaults, "the fault kinds to draw from")
	cmd.Flags().StringVar(&o.Vigil, "vigil", defaultVigil(), "the vigil binary")
	cmd.Flags().DurationVar(&o.Liveness, "liveness", 30*time.Second, "how long after the final heal every service may take to be ONLINE")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the lab up afterwards (vigil-lab down removes it)")
	cmd.Flags().BoolVar(&o.NoDLM, "no-dlm", false, "leave out the lock manager's workload")
	cmd.Flags().StringVar(&o.SaveLogs, "save-logs", "", "copy every member's agent log here at the end (with violations they are saved to a temp dir anyway)")
	return cmd
}

func benchCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "lab benchmarks", Args: cobra.NoArgs}
	o := lab.BenchOptions{}
	var vs string
	fo := &cobra.Command{
		Use:   "failover --trials N [--profile lan|fast] [--vs keepalived]",
		Short: "crash the floating address's owner N times; time to the first good answer from another member, seen from the client",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			switch vs {
			case "":
			case "keepalived":
				o.Keepalive = true
			default:
				return fmt.Errorf("--vs %q: the only peer is keepalived", vs)
			}
			o.Dir, o.LabBin, o.Out = g.dir, self(), os.Stdout
			if g.verbose {
				o.Log = os.Stdout
			}
			_, err := lab.BenchFailover(c.Context(), o)
			return err
		},
	}
	fo.Flags().IntVar(&o.Trials, "trials", 10, "crashes per peer")
	fo.Flags().IntVar(&o.Members, "members", 3, "members")
	fo.Flags().StringVar(&o.Profile, "profile", "lan", "vigil timing profile")
	fo.Flags().StringVar(&vs, "vs", "", "also measure keepalived (default settings, advert_int 1) in the same lab")
	fo.Flags().StringVar(&o.Vigil, "vigil", defaultVigil(), "the vigil binary")
	fo.Flags().BoolVar(&o.NoFencing, "no-fencing", false, "leave the lab's power switch out of vigil's fence devices (leases only)")
	fo.Flags().Uint64Var(&o.Seed, "seed", 0, "seed for the crash phases (default: random, printed)")
	fo.Flags().BoolVar(&o.OnDirector, "on-director", false, "move the service to the director's member before each crash (the worst case: an election and a failover)")
	c.AddCommand(fo)
	return c
}
