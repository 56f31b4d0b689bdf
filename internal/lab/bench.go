package lab

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/lab/check"
)

// BenchOptions configure the failover benchmark.
type BenchOptions struct {
	Dir       string
	Members   int
	Trials    int
	Profile   string
	Vigil     string
	LabBin    string
	Keepalive bool // also run the trials against keepalived, in the same lab
	NoFencing bool
	// OnDirector first moves the service to the director's member, so
	// every crash costs an election and a failover (the worst case).
	OnDirector bool
	Seed       uint64
	Out        io.Writer
	Log        io.Writer
}

// Trial is one crash of the floating address's owner.
type Trial struct {
	Crashed  string
	Director bool // the crashed member was vigil's director
	Phase    time.Duration
	Took     time.Duration
	Answerer string
	Failed   bool // no other member answered within 30 s (keepalived only)
}

// BenchResult holds both peers' trials.
type BenchResult struct {
	Vigil, Keepalived []Trial
}

func durations(ts []Trial) []time.Duration {
	var out []time.Duration
	for _, t := range ts {
		out = append(out, t.Took)
	}
	return out
}

// Summary of the vigil trials, and of keepalived's if they ran.
func (r *BenchResult) Summary() (v, k check.Summary) {
	return check.Summarize(durations(r.Vigil)), check.Summarize(durations(r.Keepalived))
}

// BenchFailover builds a lab, crashes the owner of the floating address
// Trials times and measures, from the client namespace, the time from the
// power-off to the first good answer from another member; then, with
// Keepalive, powers every member off, boots them with keepalived instead
// of vigil and runs the same trials. The lab is removed at the end.
func BenchFailover(ctx context.Context, o BenchOptions) (*BenchResult, error) {
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6c6162))
	l, err := Up(ctx, Options{Dir: o.Dir, Members: o.Members, Profile: o.Profile, Vigil: o.Vigil, LabBin: o.LabBin,
		NoFencing: o.NoFencing, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer l.Down()
	fencing := "with the lab's power switch as fence device"
	if o.NoFencing {
		fencing = "without fencing (leases only)"
	}
	fmt.Fprintf(out, "failover benchmark: %d members, profile %s, %s, %d trials, seed %d\n", o.Members, o.Profile, fencing, o.Trials, o.Seed)
	res := &BenchResult{}
	if o.OnDirector {
		fmt.Fprintln(out, "each trial first moves the service to the director's member: every crash is of the director and the owner")
	}
	res.Vigil, err = l.trials(ctx, out, "vigil", o.Trials, rng, o.OnDirector)
	if err != nil {
		return res, err
	}
	v := check.Summarize(durations(res.Vigil))
	fmt.Fprintf(out, "vigil:      %s\n", v)
	if !o.Keepalive {
		return res, nil
	}
	if err := l.switchToKeepalived(ctx); err != nil {
		return res, err
	}
	res.Keepalived, err = l.trials(ctx, out, "keepalived", o.Trials, rng, false)
	if err != nil {
		return res, err
	}
	k := check.Summarize(durations(res.Keepalived))
	fmt.Fprintf(out, "vigil:      %s\n", v)
	fmt.Fprintf(out, "keepalived: %s (advert_int 1, defaults)\n", k)
	failed := 0
	for _, t := range res.Keepalived {
		if t.Failed {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(out, "keepalived: %d of %d trials never moved the address within 30 s (counted as 30 s above)\n", failed, len(res.Keepalived))
	}
	if v.Median > 0 {
		fmt.Fprintf(out, "ratio of medians: keepalived / vigil = %.1f×\n", float64(k.Median)/float64(v.Median))
	}
	return res, nil
}

// trials runs the crash trials against whatever the members run.
func (l *Lab) trials(ctx context.Context, out io.Writer, peer string, n int, rng *rand.Rand, onDirector bool) ([]Trial, error) {
	p, err := l.StartProber(ctx, 10*time.Millisecond, 200*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	var res []Trial
	for i := 1; i <= n; i++ {
		s, err := l.State()
		if err != nil {
			return res, err
		}
		if s.Mode == ModeVigil {
			if err := l.WaitMembers(ctx, len(s.Members), 60*time.Second); err != nil {
				return res, err
			}
		}
		owner, err := p.Steady(ctx, time.Second, 60*time.Second)
		if err != nil {
			return res, fmt.Errorf("%s trial %d: %v", peer, i, err)
		}
		director := false
		if s.Mode == ModeVigil {
			d := l.director(ctx)
			if onDirector && d != "" && d != owner {
				if err := l.relocate(ctx, d); err != nil {
					return res, fmt.Errorf("%s trial %d: %v", peer, i, err)
				}
				// The relocation is asynchronous: wait until the director's
				// member answers, steadily.
				deadline := time.Now().Add(60 * time.Second)
				for owner != d {
					if owner, err = p.Steady(ctx, time.Second, 60*time.Second); err != nil || time.Now().After(deadline) {
						return res, fmt.Errorf("%s trial %d: after relocating to %s, %s answers: %v", peer, i, d, owner, err)
					}
				}
			}
			director = d == owner
		}
		// A random moment within the heartbeat/renewal period, so the
		// trials do not all hit one phase of it.
		phase := time.Duration(rng.Int64N(int64(time.Second)))
		time.Sleep(500*time.Millisecond + phase)
		t0 := Mono()
		if err := l.Crash(owner); err != nil {
			return res, err
		}
		done, who, err := p.WaitOther(ctx, t0, owner, 30*time.Second)
		if err != nil && s.Mode == ModeKeepalived {
			// The peer failing is a result, not an error of the bench:
			// report it and go on.
			fmt.Fprintf(out, "  %-10s trial %2d: crashed %s at phase %3d ms; NO other member answered within 30s (counted as 30s)\n",
				peer, i, owner, phase.Milliseconds())
			res = append(res, Trial{Crashed: owner, Phase: phase, Took: 30 * time.Second, Failed: true})
			if err := l.Boot(owner); err != nil {
				return res, err
			}
			time.Sleep(4 * time.Second)
			continue
		}
		if err != nil {
			return res, fmt.Errorf("%s trial %d: after the crash of %s: %v", peer, i, owner, err)
		}
		t := Trial{Crashed: owner, Director: director, Phase: phase, Took: time.Duration(done - t0), Answerer: who}
		res = append(res, t)
		role := ""
		if director {
			role = " (the director)"
		}
		fmt.Fprintf(out, "  %-10s trial %2d: crashed %s%s at phase %3d ms; %s answered after %s\n", peer, i, owner, role,
			phase.Milliseconds(), who, t.Took.Round(time.Millisecond))
		if err := l.Boot(owner); err != nil {
			return res, err
		}
		if s.Mode == ModeKeepalived {
			// Let the member's keepalived come up as a backup
			// (its master-down timer is 3.6 s) before the next trial.
			time.Sleep(4 * time.Second)
		}
	}
	return res, nil
}

// relocate moves the web service to member to, through its CLI.
func (l *Lab) relocate(ctx context.Context, to string) error {
	m, err := l.Member(to)
	if err != nil {
		return err
	}
	s, err := l.State()
	if err != nil {
		return err
	}
	if out, err := l.output(s.Vigil, "--data-dir", m.Data, "service", "relocate", "web", "--to", to); err != nil {
		return fmt.Errorf("relocate web to %s: %v: %s", to, err, out)
	}
	return nil
}

// director asks a live member who the director is.
func (l *Lab) director(ctx context.Context) string {
	s, err := l.State()
	if err != nil {
		return ""
	}
	for _, m := range s.live() {
		c := client.New(client.Options{Socket: m.Socket(), Timeout: 2 * time.Second})
		st, err := c.Status(ctx)
		c.Close()
		if err == nil {
			return st.Director
		}
	}
	return ""
}

// switchToKeepalived powers every member off and boots it with keepalived
// and the HTTP backend instead of vigil: the same namespaces, cables and
// client.
func (l *Lab) switchToKeepalived(ctx context.Context) error {
	s, err := l.State()
	if err != nil {
		return err
	}
	for _, m := range s.Members {
		if err := l.Crash(m.Name); err != nil {
			return err
		}
	}
	if err := l.update(func(s *State) error { s.Mode = ModeKeepalived; return nil }); err != nil {
		return err
	}
	for _, m := range s.Members {
		if err := l.Boot(m.Name); err != nil {
			return err
		}
	}
	return nil
}
