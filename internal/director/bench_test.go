package director

import (
	"fmt"
	"testing"
	"time"
)

// benchInput builds 5,000 services on 32 members (two domains of 16), each
// service with three favored members; placed says whether they already run.
func benchInput(placed bool) Input {
	now := scenarioStart.Add(time.Hour)
	in := Input{Now: now, TermStart: scenarioStart, Lease: 2 * time.Second, Drift: 1.1, Quorum: true, Fencing: true}
	const members, services = 32, 5000
	for i := range members {
		in.Members = append(in.Members, Member{Name: fmt.Sprintf("m%02d", i), ID: i + 1, State: MemberUp,
			Domain: i / 16, LastRenewal: now})
	}
	for i := range services {
		dom := i % 2
		f := func(k int) string { return fmt.Sprintf("m%02d", dom*16+(i+k*5)%16) }
		s := Service{Name: fmt.Sprintf("svc%04d", i), Spec: Spec{Favored: []string{f(0), f(1), f(2)}, Domain: dom, Balanced: i%3 == 0}}
		if placed {
			s.Status = Status{State: StateOnline, Owner: f(0), Epoch: uint64(1 + i%7)}
		}
		if i%50 == 0 {
			s.Status.Fails = []FailRecord{{Member: f(1), Count: 2, Last: now.Add(-time.Minute), Kind: MonitorFailed, Severity: Soft}}
		}
		in.Services = append(in.Services, s)
	}
	return in
}

// BenchmarkDecide: the target is 5,000 services on 32 members in
// under 50 ms per call.
func BenchmarkDecide(b *testing.B) {
	b.Run("steady", func(b *testing.B) {
		in := benchInput(true)
		for b.Loop() {
			Decide(in)
		}
	})
	b.Run("member-lost", func(b *testing.B) {
		// m00 and m16 are fenced: about 300 services move, and 100 report a
		// monitor failure.
		in := benchInput(true)
		in.Members[0].State, in.Members[0].Fenced = MemberDown, true
		in.Members[16].State, in.Members[16].Fenced = MemberDown, true
		for i := 0; i < len(in.Services); i += 50 {
			s := &in.Services[i]
			in.Events = append(in.Events, Event{Kind: MonitorFailed, Service: s.Name, Member: s.Status.Owner, Epoch: s.Status.Epoch})
		}
		out := Decide(in)
		if len(out.Updates) < 300 {
			b.Fatalf("only %d updates", len(out.Updates))
		}
		for b.Loop() {
			Decide(in)
		}
	})
	b.Run("initial", func(b *testing.B) {
		// Nothing runs yet: every service is placed.
		in := benchInput(false)
		for b.Loop() {
			Decide(in)
		}
	})
	b.Run("why-all", func(b *testing.B) {
		// The explanations of all 5,000 services (what `vigil service why`
		// costs if asked for every service at once).
		in := benchInput(true)
		in.Members[0].State = MemberDown
		out := Decide(in)
		for b.Loop() {
			for i := range in.Services {
				_ = out.Why(in.Services[i].Name)
			}
		}
	})
}

// TestDecideIsFastEnough keeps an eye on the target in ordinary test runs,
// with a wide margin for the race detector and a busy machine.
func TestDecideIsFastEnough(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	in := benchInput(false)
	best := time.Hour
	for range 5 {
		start := time.Now()
		Decide(in)
		best = min(best, time.Since(start))
	}
	t.Logf("5,000 services on 32 members, all placed in one call: %v", best)
	if best > 500*time.Millisecond {
		t.Errorf("Decide took %v for 5,000 services on 32 members; the target is 50 ms (without -race)", best)
	}
}
