package director

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	seedFlag      = flag.Uint64("seed", 0, "run the property tests with this seed only")
	roundsFlag    = flag.Int("rounds", 300, "rounds per simulation")
	noCheckerFlag = flag.Bool("nochecker", false, "simulate without the safety checker, to see that the model of the members alone finds a bug")
)

// seeds returns the seeds to run: -seed, or n fixed ones.
func seeds(n int) []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func randomInput(r *rand.Rand) Input {
	now := scenarioStart.Add(time.Hour)
	in := Input{
		Now:            now,
		TermStart:      now.Add(-time.Duration(r.IntN(5000)) * time.Millisecond),
		Lease:          time.Duration(r.IntN(4)) * time.Second,
		Drift:          pick(r, 0, 1, 1.1, 1.5, 0.5),
		Quorum:         r.IntN(6) > 0,
		NoQuorumPolicy: pick(r, NoQuorumStop, NoQuorumFreeze, ""),
		Maintenance:    r.IntN(8) == 0,
		Fencing:        r.IntN(2) == 0,
	}
	nm := 1 + r.IntN(6)
	var names []string
	for i := range nm {
		m := Member{
			Name:         fmt.Sprintf("m%d", i+1),
			ID:           i + 1,
			State:        pick(r, MemberUp, MemberUp, MemberUp, MemberDown, MemberDisconnected, MemberNetpar),
			Domain:       pick(r, 0, 0, 0, 1),
			Witness:      r.IntN(6) == 0,
			Draining:     r.IntN(6) == 0,
			Removing:     r.IntN(10) == 0,
			LastRenewal:  now.Add(-time.Duration(r.IntN(6000)) * time.Millisecond),
			UpSince:      pick(r, time.Time{}, now.Add(-time.Duration(r.IntN(60))*time.Second)),
			Fenced:       r.IntN(4) == 0,
			FencePending: r.IntN(5) == 0,
		}
		in.Members = append(in.Members, m)
		names = append(names, m.Name)
	}
	names = append(names, "ghost") // not a member
	some := func() []string {
		var out []string
		for _, n := range names {
			if r.IntN(3) == 0 {
				out = append(out, n)
			}
		}
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	ns := r.IntN(8)
	for i := range ns {
		s := Service{Name: fmt.Sprintf("s%d", i)}
		s.Spec = Spec{
			Favored:        some(),
			Balanced:       r.IntN(2) == 0,
			Domain:         pick(r, 0, 0, 1),
			Failback:       r.IntN(3) == 0,
			FailbackDelay:  pick(r, 0, 30*time.Second),
			MaxRestarts:    pick(r, 0, -1, 1, 3),
			FailureTimeout: pick(r, 0, -1, time.Minute),
			Target:         pick(r, TargetOnline, TargetOnline, "", TargetOffline),
			Clear:          r.IntN(8) == 0,
		}
		if r.IntN(3) == 0 {
			s.Spec.Restricted = some()
		}
		if r.IntN(5) == 0 {
			s.Spec.RelocateTo = pick(r, names...)
		}
		st := &s.Status
		st.Epoch = uint64(r.IntN(20))
		st.State = pick(r, StateOnline, StateOffline, StateStarting, StateStopping, StateFailed, StateFrozen, StateUnassigned, "")
		if st.State != StateOffline && st.State != StateUnassigned && r.IntN(5) > 0 {
			st.Owner = pick(r, names...)
		}
		if st.State == StateFrozen {
			st.Held = pick(r, StateOnline, StateStarting, StateStopping, StateFailed, StateOffline, "")
		}
		st.StopFailed = st.State == StateFailed && r.IntN(3) == 0
		for _, n := range some() {
			st.Fails = append(st.Fails, FailRecord{Member: n, Count: 1 + r.IntN(5),
				Last: now.Add(-time.Duration(r.IntN(20)) * time.Minute), Banned: r.IntN(2) == 0,
				Hard: r.IntN(5) == 0, Fatal: r.IntN(15) == 0, Kind: MonitorFailed, Severity: Soft})
		}
		slices.SortFunc(st.Fails, func(a, b FailRecord) int { return strings.Compare(a.Member, b.Member) })
		if st.Owner != "" && r.IntN(3) == 0 {
			st.Restarts = append(st.Restarts, RestartRecord{Member: st.Owner, At: now.Add(-time.Duration(r.IntN(15)) * time.Minute)})
		}
		in.Services = append(in.Services, s)
	}
	ne := r.IntN(6)
	for range ne {
		if ns == 0 {
			break
		}
		s := &in.Services[r.IntN(ns)]
		e := Event{
			Kind:     pick(r, StartSucceeded, StartFailed, StopSucceeded, StopFailed, MonitorFailed),
			Service:  s.Name,
			Member:   s.Status.Owner,
			Epoch:    s.Status.Epoch,
			Severity: pick(r, Soft, Hard, Fatal, ""),
		}
		if r.IntN(4) == 0 {
			e.Epoch = uint64(r.IntN(20))
		}
		if r.IntN(4) == 0 {
			e.Member = pick(r, names...)
		}
		in.Events = append(in.Events, e)
	}
	return in
}

// TestRandomInputs decides on random input and checks every output against
// the safety rules, that the input is left alone, that the same input gives
// the same output, and that deciding again on the result gives no new
// orders (the loop may run Decide twice).
func TestRandomInputs(t *testing.T) {
	for _, seed := range seeds(3000) {
		r := rand.New(rand.NewPCG(seed, 0))
		in := randomInput(r)
		before := cloneInput(in)
		out := Decide(in)
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("seed %d (replay: go test -run TestRandomInputs -seed %d ./internal/director/): %s", seed, seed, fmt.Sprintf(format, a...))
		}
		if !reflect.DeepEqual(in, before) {
			fail("Decide modified its input")
		}
		if err := checkOutput(&before, &out); err != nil {
			fail("%v", err)
		}
		again := Decide(cloneInput(before))
		if !reflect.DeepEqual(out.Decisions, again.Decisions) || !reflect.DeepEqual(out.Updates, again.Updates) {
			fail("two calls with the same input decided differently")
		}
		for _, s := range in.Services {
			if w := out.Why(s.Name); !strings.HasPrefix(w, s.Name+": ") || strings.Contains(w, "\n\n") {
				fail("explanation of %s: %q", s.Name, w)
			}
		}
		// Decide again on the result, as a loop that lost its place would.
		sc := &scenario{in: cloneInput(before), now: before.Now}
		sc.apply(&out)
		next := Decide(sc.in)
		nextIn := cloneInput(sc.in)
		if err := checkOutput(&nextIn, &next); err != nil {
			fail("second call: %v", err)
		}
		for _, d := range next.Decisions {
			switch d.Kind {
			case Assign, Restart, Stop, Fence:
				fail("second call with no new events ordered %v\nfirst call: %v", d, out.Decisions)
			}
		}
		for _, u := range next.Updates {
			old := sc.in.Services[sc.serviceIndex(u.Service)].Status
			if u.Status.Epoch != old.Epoch || u.Status.Owner != old.Owner {
				fail("second call changed %s: %+v -> %+v", u.Service, old, u.Status)
			}
		}
	}
}

// world is what really runs, for the simulation.
type world struct {
	t       *testing.T
	r       *rand.Rand
	seed    uint64
	sc      *scenario
	alive   map[string]bool
	reach   map[string]bool            // the director hears from it
	slow    map[string]float64         // its clock runs this much slower
	renewed map[string]time.Time       // its lease was last renewed then
	running map[string]map[string]bool // service -> members running it
	handled map[string]uint64          // service -> last epoch its owner acted on
	fenceAt map[string]time.Time       // member -> when its fence completes
	events  []Event
}

func (w *world) fail(format string, a ...any) {
	w.t.Helper()
	w.t.Fatalf("seed %d at %v (replay: go test -run TestSimulation -seed %d ./internal/director/): %s",
		w.seed, w.sc.now.Sub(scenarioStart), w.seed, fmt.Sprintf(format, a...))
}

func (w *world) member(name string) *Member {
	return &w.sc.in.Members[w.sc.memberIndex(name)]
}

// kill stops everything on member m at once (a crash or a fence).
func (w *world) kill(m string) {
	w.alive[m] = false
	for _, on := range w.running {
		delete(on, m)
	}
}

// TestSimulation runs seeded random fault schedules against Decide and a
// model of the members (lrm, leases that end on slow clocks, partitions,
// crashes, fencing, failing starts and stops) and checks that no service
// ever runs on two members, that epochs only grow, and that every output
// passes the safety checker.
func TestSimulation(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 20
	}
	counts := map[string]int{}
	for _, seed := range seeds(n) {
		simulate(t, seed, *roundsFlag, counts)
	}
	// What the runs went through, to see that they test something.
	t.Logf("decisions and events over %d runs: %v", n, counts)
	for _, k := range []string{"assign", "restart", "stop", "fence", "assign after a lease", "event start-failed", "event stop-failed"} {
		if counts[k] == 0 && *seedFlag == 0 {
			t.Errorf("no %q in any run: the simulation no longer exercises it", k)
		}
	}
}

func simulate(t *testing.T, seed uint64, rounds int, counts map[string]int) {
	r := rand.New(rand.NewPCG(seed, 1))
	sc := newScenario()
	sc.in.Lease = time.Duration(1+r.IntN(3)) * time.Second
	sc.in.Drift = 1.2
	sc.in.Fencing = r.IntN(2) == 0
	sc.in.TermStart = sc.now
	w := &world{t: t, r: r, seed: seed, sc: sc,
		alive: map[string]bool{}, reach: map[string]bool{}, slow: map[string]float64{},
		renewed: map[string]time.Time{}, running: map[string]map[string]bool{},
		handled: map[string]uint64{}, fenceAt: map[string]time.Time{}}
	nm := 2 + r.IntN(4)
	var names []string
	for i := range nm {
		name := fmt.Sprintf("m%d", i+1)
		names = append(names, name)
		sc.in.Members = append(sc.in.Members, Member{Name: name, ID: i + 1, State: MemberUp,
			Domain: pick(r, 0, 0, 0, 1), Witness: i > 1 && r.IntN(5) == 0, LastRenewal: sc.now})
		w.alive[name], w.reach[name] = true, true
		w.slow[name] = 1 + r.Float64()*0.2 // up to the drift margin
		w.renewed[name] = sc.now
	}
	ns := 1 + r.IntN(6)
	for i := range ns {
		name := fmt.Sprintf("s%d", i)
		sp := Spec{Balanced: r.IntN(2) == 0, Domain: pick(r, 0, 0, 1), Failback: r.IntN(3) == 0,
			FailbackDelay: pick(r, 0, 5*time.Second),
			MaxRestarts:   pick(r, 0, 1, -1), FailureTimeout: pick(r, 0, time.Minute)}
		for _, n := range names {
			if r.IntN(2) == 0 {
				sp.Favored = append(sp.Favored, n)
			}
		}
		if r.IntN(4) == 0 {
			sp.Restricted = names[:1+r.IntN(len(names))]
		}
		sc.in.Services = append(sc.in.Services, Service{Name: name, Spec: sp})
		w.running[name] = map[string]bool{}
	}
	epochs := map[string]uint64{}
	for round := range rounds {
		sc.now = sc.now.Add(time.Duration(100+r.IntN(3000)) * time.Millisecond)
		w.faults(names)
		w.leases()
		// The director's view.
		for i := range sc.in.Members {
			m := &sc.in.Members[i]
			switch {
			case w.alive[m.Name] && w.reach[m.Name]:
				if m.State == MemberDown {
					m.State = MemberUp
					m.Fenced, m.FencePending = false, false
					m.UpSince = sc.now
				}
				m.LastRenewal = sc.now
				w.renewed[m.Name] = sc.now
			default:
				if m.State != MemberDown {
					m.State = MemberDown
					m.DownSince = sc.now
				}
			}
		}
		sc.in.Now = sc.now
		sc.in.Events = w.events
		w.events = nil
		in := cloneInput(sc.in)
		out := Decide(sc.in)
		if err := checkOutput(&in, &out); err != nil && !*noCheckerFlag {
			w.fail("round %d: %v", round, err)
		}
		sc.apply(&out)
		for _, d := range out.Decisions {
			counts[string(d.Kind)]++
			if d.Kind == Assign && strings.Contains(d.Reason, "lease has certainly run out") {
				counts["assign after a lease"]++
			}
		}
		for _, e := range in.Events {
			counts["event "+string(e.Kind)]++
		}
		for _, d := range out.Decisions {
			if d.Kind == Fence {
				w.fenceAt[d.Member] = sc.now.Add(time.Duration(r.IntN(4000)) * time.Millisecond)
			}
		}
		// The members carry out their orders at once: the most
		// adversarial timing for a start elsewhere.
		w.lrm()
		w.check("after the members acted")
		for _, s := range sc.in.Services {
			if s.Status.Epoch < epochs[s.Name] {
				w.fail("%s: epoch went back from %d to %d", s.Name, epochs[s.Name], s.Status.Epoch)
			}
			epochs[s.Name] = s.Status.Epoch
		}
	}
}

// faults applies one random fault or operator action, and completes fences.
func (w *world) faults(names []string) {
	sc, r := w.sc, w.r
	for m, at := range w.fenceAt {
		if !sc.now.Before(at) {
			delete(w.fenceAt, m)
			w.kill(m)
			mm := w.member(m)
			mm.State, mm.Fenced, mm.FencePending = MemberDown, true, false
			if mm.DownSince.IsZero() {
				mm.DownSince = sc.now
			}
		}
	}
	m := pick(r, names...)
	mm := w.member(m)
	s := &sc.in.Services[r.IntN(len(sc.in.Services))]
	switch r.IntN(22) {
	case 0: // crash
		w.kill(m)
		w.reach[m] = false
	case 1, 2, 15, 16: // partition: alive, but the director cannot hear it
		w.reach[m] = false
	case 3, 4, 5: // heal, or restart after a crash
		w.reach[m] = true
		w.alive[m] = true
		if mm.State == MemberDown {
			mm.Fenced, mm.FencePending = false, false
		}
	case 6:
		mm.Draining = !mm.Draining
	case 7:
		if mm.State == MemberUp {
			mm.State = pick(r, MemberDisconnected, MemberNetpar)
		} else if mm.State != MemberDown {
			mm.State = MemberUp
		}
	case 8:
		sc.in.Maintenance = !sc.in.Maintenance && r.IntN(3) == 0
	case 9:
		sc.in.Quorum = !sc.in.Quorum || r.IntN(2) == 0
		sc.in.NoQuorumPolicy = pick(r, NoQuorumStop, NoQuorumFreeze)
	case 10:
		s.Spec.RelocateTo = m
	case 11:
		s.Spec.Clear = true
	case 12:
		s.Spec.Target = pick(r, TargetOnline, TargetOffline, TargetOnline)
	case 13: // a new director: it knows no renewals
		sc.in.TermStart = sc.now
		for i := range sc.in.Members {
			sc.in.Members[i].LastRenewal = time.Time{}
		}
	case 14:
		mm.Removing = !mm.Removing && r.IntN(3) == 0
	}
	if !sc.in.Quorum && r.IntN(4) == 0 {
		sc.in.Quorum = true
	}
}

// leases: a member that could not renew ends its services when its lease
// ends on its own (slow) clock.
func (w *world) leases() {
	for m := range w.alive {
		if !w.alive[m] || w.reach[m] {
			continue
		}
		end := w.renewed[m].Add(time.Duration(float64(w.sc.in.Lease) * w.slow[m]))
		if !w.sc.now.Before(end) {
			for _, on := range w.running {
				delete(on, m)
			}
		}
	}
}

// lrm carries out each member's orders and reports.
func (w *world) lrm() {
	r := w.r
	for i := range w.sc.in.Services {
		s := &w.sc.in.Services[i]
		st := &s.Status
		state := st.State
		if state == StateFrozen {
			state = st.Held
		}
		m := st.Owner
		if m == "" || !w.alive[m] || w.handled[s.Name] == st.Epoch && state != StateOnline {
			continue
		}
		ms := w.member(m).State
		report := w.reach[m] || ms == MemberNetpar || ms == MemberDisconnected
		emit := func(k EventKind, sev Severity) {
			if report {
				w.events = append(w.events, Event{Kind: k, Service: s.Name, Member: m, Epoch: st.Epoch, Severity: sev})
			}
		}
		switch state {
		case StateStarting:
			w.handled[s.Name] = st.Epoch
			if r.IntN(10) == 0 { // the stop half of a restart fails
				if w.running[s.Name][m] {
					emit(StopFailed, Soft)
					continue
				}
			}
			delete(w.running[s.Name], m)
			w.check("before a start")
			w.running[s.Name][m] = true
			w.check("after a start")
			if r.IntN(6) == 0 {
				if r.IntN(2) == 0 {
					delete(w.running[s.Name], m) // it failed cleanly
				}
				emit(StartFailed, pick(r, Soft, Soft, Hard, Fatal))
				continue
			}
			emit(StartSucceeded, "")
		case StateStopping:
			w.handled[s.Name] = st.Epoch
			if r.IntN(10) == 0 {
				emit(StopFailed, "")
				continue
			}
			delete(w.running[s.Name], m)
			emit(StopSucceeded, "")
		case StateOnline:
			if r.IntN(15) == 0 && w.handled[s.Name] != st.Epoch+1<<40 {
				w.handled[s.Name] = st.Epoch + 1<<40
				emit(MonitorFailed, pick(r, Soft, Soft, Soft, Hard, Fatal))
			}
		}
	}
}

// check asserts that no service runs on two members.
func (w *world) check(when string) {
	for s, on := range w.running {
		if len(on) > 1 {
			var ms []string
			for m := range on {
				ms = append(ms, m)
			}
			slices.Sort(ms)
			w.fail("%s: %s runs on %v", when, s, ms)
		}
	}
}
