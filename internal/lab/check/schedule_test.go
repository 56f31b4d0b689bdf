package check

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m%d", i+1)
	}
	return out
}

// TestScheduleGolden pins the schedule of one seed: chaos failures are
// replayed from their seed, so a change here breaks every recorded replay
// command and must be deliberate.
func TestScheduleGolden(t *testing.T) {
	want := `  2.000s link-down m3 link 0
  4.641s loss m4 36%
  6.937s heal link-down m3 link 0 (link up)
  8.583s loss m2 21%
  12.240s heal loss m4 36% (clear)
  13.480s heal loss m2 21% (clear)
  15.984s kill-agent m4
  16.799s partition m2 from the rest
  18.777s heal partition m2 from the rest (rejoin)
  19.841s heal kill-agent m4 (restart agent)
  21.443s loss m5 27%
  23.814s pause m4
  28.441s heal loss m5 27% (clear)
  30.000s heal pause m4 (continue)
`
	var b strings.Builder
	for _, s := range Schedule(2, names(5), 2, 40*time.Second, nil) {
		b.WriteString(s.String() + "\n")
	}
	if got := b.String(); got != want {
		t.Errorf("schedule for seed 2 changed:\n%s\nwant\n%s", got, want)
	}
}

func TestScheduleDeterministic(t *testing.T) {
	a := Schedule(42, names(5), 2, 5*time.Minute, nil)
	b := Schedule(42, names(5), 2, 5*time.Minute, nil)
	if len(a) == 0 || !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed gave different schedules (%d and %d steps)", len(a), len(b))
	}
	if c := Schedule(43, names(5), 2, 5*time.Minute, nil); reflect.DeepEqual(a, c) {
		t.Fatal("seeds 42 and 43 gave the same schedule")
	}
	// The fault list is a set: order and repeats do not change the schedule.
	x := Schedule(7, names(3), 1, time.Minute, []string{FaultPause, FaultCrash})
	y := Schedule(7, names(3), 1, time.Minute, []string{FaultCrash, FaultPause, FaultCrash})
	if !reflect.DeepEqual(x, y) {
		t.Fatal("the order of the fault list changed the schedule")
	}
}

// checkSchedule asserts every rule of Schedule on one schedule.
func checkSchedule(t *testing.T, steps []Step, members []string, links int, duration time.Duration, faults []string) {
	t.Helper()
	n := len(members)
	budget := (n - 1) / 2
	open := map[string]Step{}            // member -> the fault it is under
	healed := map[string]time.Duration{} // member -> its last heal
	faultsSeen := 0
	partitionOpen, partitionHealed := false, time.Duration(-1)
	for i, s := range steps {
		if i > 0 && s.At < steps[i-1].At {
			t.Fatalf("step %d (%v) is before step %d (%v)", i, s, i-1, steps[i-1])
		}
		if len(s.Members) == 0 {
			t.Fatalf("step %v hits no member", s)
		}
		for _, m := range s.Members {
			if !slices.Contains(members, m) {
				t.Fatalf("step %v hits unknown member %q", s, m)
			}
		}
		if s.Heal {
			if s.At > duration-QuietTail {
				t.Fatalf("heal %v after duration-10s = %v", s, duration-QuietTail)
			}
			f, ok := open[s.Members[0]]
			if !ok || f.Fault != s.Fault || f.Arg != s.Arg || !slices.Equal(f.Members, s.Members) {
				t.Fatalf("heal %v does not match the open fault %v", s, f)
			}
			if hold := s.At - f.At; hold < 1500*time.Millisecond || hold > 8*time.Second {
				t.Fatalf("fault %v held for %v, want 1.5s..8s", f, hold)
			}
			for _, m := range s.Members {
				delete(open, m)
				healed[m] = s.At
			}
			if s.Fault == FaultPartition {
				partitionOpen, partitionHealed = false, s.At
			}
			continue
		}
		faultsSeen++
		if !slices.Contains(faults, s.Fault) {
			t.Fatalf("step %v: fault not in %v", s, faults)
		}
		if s.At < ScheduleStart || s.At > duration-LastStart {
			t.Fatalf("fault %v starts outside [2s, duration-12s = %v]", s, duration-LastStart)
		}
		if !slices.IsSorted(s.Members) && n < 10 {
			t.Fatalf("fault %v: members not in order", s)
		}
		for j, m := range s.Members {
			if f, ok := open[m]; ok {
				t.Fatalf("fault %v hits %s, already under %v", s, m, f)
			}
			if at, ok := healed[m]; ok && at == s.At {
				t.Fatalf("fault %v hits %s at the instant its last fault is healed", s, m)
			}
			if j > 0 && m == s.Members[j-1] {
				t.Fatalf("fault %v lists %s twice", s, m)
			}
		}
		// Members healed at this very instant still count: at most budget
		// members are under a fault at any instant, ends included.
		busy := len(open)
		for _, at := range healed {
			if at == s.At {
				busy++
			}
		}
		if busy+len(s.Members) > budget {
			t.Fatalf("fault %v: %d members already under a fault, budget %d", s, busy, budget)
		}
		switch s.Fault {
		case FaultPartition:
			if len(s.Members) < 1 || len(s.Members) > budget {
				t.Fatalf("partition %v: minority of %d, want 1..%d", s, len(s.Members), budget)
			}
			if partitionOpen || partitionHealed == s.At {
				t.Fatalf("partition %v while another partition holds", s)
			}
			partitionOpen = true
		case FaultLoss:
			if s.Arg < 10 || s.Arg > 60 {
				t.Fatalf("loss %v: %d%%, want 10..60", s, s.Arg)
			}
		case FaultDelay:
			if s.Arg < 20 || s.Arg > 200 {
				t.Fatalf("delay %v: %dms, want 20..200", s, s.Arg)
			}
		case FaultLinkDown:
			if s.Arg < 0 || s.Arg >= links {
				t.Fatalf("link-down %v: link %d, want 0..%d", s, s.Arg, links-1)
			}
		default:
			if len(s.Members) != 1 || s.Arg != 0 {
				t.Fatalf("fault %v: want one member and no argument", s)
			}
		}
		for _, m := range s.Members {
			open[m] = s
		}
	}
	if len(open) > 0 {
		t.Fatalf("faults never healed: %v", open)
	}
	if c := Count(steps); faultsSeen != sumCounts(c) {
		t.Fatalf("Count = %v, but %d faults", c, faultsSeen)
	}
}

func sumCounts(c map[string]int) int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func TestScheduleInvariants(t *testing.T) {
	all := AllFaults()
	for _, n := range []int{3, 5} {
		members := names(n)
		total := map[string]int{}
		minority := map[int]bool{}
		for seed := range int64(200) {
			// Durations spread over 20s..30min.
			duration := 20*time.Second + time.Duration(seed*7919%1780)*time.Second
			links := 1 + int(seed%3)
			steps := Schedule(seed, members, links, duration, all)
			if len(steps) == 0 {
				t.Fatalf("n=%d seed %d duration %v: no steps", n, seed, duration)
			}
			checkSchedule(t, steps, members, links, duration, all)
			for k, v := range Count(steps) {
				total[k] += v
			}
			for _, s := range steps {
				if s.Fault == FaultPartition {
					minority[len(s.Members)] = true
				}
			}
		}
		for _, f := range all {
			if total[f] == 0 {
				t.Errorf("n=%d: no %s fault in 200 schedules", n, f)
			}
		}
		if want := (n - 1) / 2; !minority[want] {
			t.Errorf("n=%d: no partition with a minority of %d", n, want)
		}
		t.Logf("n=%d: faults over 200 seeds: %v", n, total)
	}
}

func TestScheduleSubsetAndEdges(t *testing.T) {
	faults := []string{FaultCrash, FaultPartition}
	steps := Schedule(3, names(7), 1, 10*time.Minute, faults)
	checkSchedule(t, steps, names(7), 1, 10*time.Minute, faults)
	if c := Count(steps); c[FaultCrash] == 0 || c[FaultPartition] == 0 || len(c) != 2 {
		t.Errorf("Count = %v, want only crash and partition", c)
	}
	// A schedule on a huge cluster and a small fault set still keeps the rules.
	checkSchedule(t, Schedule(9, names(101), 4, time.Hour, []string{FaultLinkDown}), names(101), 4, time.Hour, []string{FaultLinkDown})
	// Partitions only: one at a time, so the schedule waits for each heal.
	only := []string{FaultPartition}
	steps = Schedule(5, names(9), 1, 10*time.Minute, only)
	checkSchedule(t, steps, names(9), 1, 10*time.Minute, only)
	if Count(steps)[FaultPartition] < 10 {
		t.Errorf("only %d partitions in 10 minutes", Count(steps)[FaultPartition])
	}
	// Duplicate member names count once: three names, two members, no steps.
	if s := Schedule(1, []string{"m1", "m1", "m2"}, 1, time.Minute, nil); s != nil {
		t.Errorf("two distinct members got %d steps", len(s))
	}

	for _, tt := range []struct {
		name     string
		members  []string
		links    int
		duration time.Duration
		faults   []string
		want     bool // any steps
	}{
		{"no members", nil, 1, time.Minute, nil, false},
		{"one member", names(1), 1, time.Minute, nil, false},
		{"two members", names(2), 1, time.Minute, nil, false},
		{"three members", names(3), 1, time.Minute, nil, true},
		{"too short", names(5), 1, 14*time.Second - 1, nil, false},
		{"shortest", names(5), 1, 14 * time.Second, nil, true},
		{"negative duration", names(5), 1, -time.Hour, nil, false},
		{"no links", names(5), 0, time.Minute, []string{FaultLinkDown}, true},
		{"unknown faults only", names(5), 1, time.Minute, []string{"meteor"}, false},
		{"empty fault list means all", names(5), 1, time.Minute, []string{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			steps := Schedule(1, tt.members, tt.links, tt.duration, tt.faults)
			if (len(steps) > 0) != tt.want {
				t.Fatalf("%d steps, want steps: %v", len(steps), tt.want)
			}
			if tt.want {
				faults := tt.faults
				if len(faults) == 0 {
					faults = AllFaults()
				}
				checkSchedule(t, steps, tt.members, max(tt.links, 1), tt.duration, faults)
			}
		})
	}
}

func TestScheduleHugeDurationIsBounded(t *testing.T) {
	steps := Schedule(1, names(3), 1, 1<<63-1, []string{FaultPause})
	if got := Count(steps)[FaultPause]; got != MaxFaults {
		t.Fatalf("%d faults, want the cap %d", got, MaxFaults)
	}
}

func TestStepString(t *testing.T) {
	for _, tt := range []struct {
		s    Step
		want string
	}{
		{Step{At: 12300 * time.Millisecond, Fault: FaultCrash, Members: []string{"m2"}}, "  12.300s crash m2"},
		{Step{At: 15100 * time.Millisecond, Fault: FaultCrash, Heal: true, Members: []string{"m2"}}, "  15.100s heal crash m2 (restart)"},
		{Step{At: 20 * time.Second, Fault: FaultPartition, Members: []string{"m1", "m3"}}, "  20.000s partition m1,m3 from the rest"},
		{Step{At: 3 * time.Second, Fault: FaultLoss, Members: []string{"m1"}, Arg: 35}, "  3.000s loss m1 35%"},
		{Step{At: 4 * time.Second, Fault: FaultDelay, Members: []string{"m1"}, Arg: 120}, "  4.000s delay m1 120ms"},
		{Step{At: 5 * time.Second, Fault: FaultLinkDown, Heal: true, Members: []string{"m3"}, Arg: 1}, "  5.000s heal link-down m3 link 1 (link up)"},
		{Step{At: 6 * time.Second, Fault: FaultPause, Heal: true, Members: []string{"m3"}}, "  6.000s heal pause m3 (continue)"},
		{Step{At: 7 * time.Second, Fault: FaultKillAgent, Members: []string{"m3"}}, "  7.000s kill-agent m3"},
		{Step{At: 8 * time.Second, Fault: "meteor", Heal: true, Arg: 3}, "  8.000s heal meteor arg 3"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("String = %q, want %q", got, tt.want)
		}
	}
}

func TestParseFaults(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "", want: AllFaults()},
		{in: "  ", want: AllFaults()},
		{in: "crash", want: []string{FaultCrash}},
		{in: "pause, crash,pause", want: []string{FaultCrash, FaultPause}},
		{in: "delay,link-down,loss,partition,pause,kill-agent,crash", want: AllFaults()},
		{in: "crash,meteor", err: `unknown fault "meteor"; valid faults: crash, kill-agent, pause, partition, loss, link-down, delay`},
		{in: "Crash", err: `unknown fault "Crash"`},
		{in: "crash,", err: `has an empty name`},
		{in: ",", err: `has an empty name`},
	} {
		got, err := ParseFaults(tt.in)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseFaults(%q) error = %v, want one containing %q", tt.in, err, tt.err)
			}
		case err != nil:
			t.Errorf("ParseFaults(%q): %v", tt.in, err)
		case !slices.Equal(got, tt.want):
			t.Errorf("ParseFaults(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestCount(t *testing.T) {
	steps := []Step{
		{Fault: FaultCrash}, {Fault: FaultCrash, Heal: true}, {Fault: FaultCrash},
		{Fault: FaultPause}, {Fault: FaultPause, Heal: true},
	}
	if got, want := Count(steps), map[string]int{FaultCrash: 2, FaultPause: 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("Count = %v, want %v", got, want)
	}
	if got := Count(nil); got == nil || len(got) != 0 {
		t.Errorf("Count(nil) = %v, want an empty map", got)
	}
}
