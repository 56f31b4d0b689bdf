package check

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The fault kinds of a chaos schedule.
const (
	FaultCrash     = "crash"      // kill the member's vigil process (heal: restart it)
	FaultKillAgent = "kill-agent" // kill the service agent the member runs (heal: restart it)
	FaultPause     = "pause"      // SIGSTOP the member's vigil process (heal: SIGCONT)
	FaultPartition = "partition"  // cut a minority of members off from the rest (heal: rejoin)
	FaultLoss      = "loss"       // drop Arg percent of the member's packets (heal: clear)
	FaultLinkDown  = "link-down"  // take the member's link number Arg down (heal: up again)
	FaultDelay     = "delay"      // delay the member's packets by Arg ms (heal: clear)
)

// AllFaults returns every fault kind, in the canonical order.
func AllFaults() []string {
	return []string{FaultCrash, FaultKillAgent, FaultPause, FaultPartition, FaultLoss, FaultLinkDown, FaultDelay}
}

// ParseFaults parses a comma-separated list ("crash,pause"), rejecting unknown
// names with an error listing the valid ones; empty means all of them.
// Spaces around names are ignored, and the result is deduplicated and in the
// canonical order of AllFaults, so the same set always gives the same
// schedule for a seed.
func ParseFaults(s string) ([]string, error) {
	all := AllFaults()
	if strings.TrimSpace(s) == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			return nil, fmt.Errorf("fault list %q has an empty name (a stray comma?); valid faults: %s", s, strings.Join(all, ", "))
		case !slices.Contains(all, name):
			return nil, fmt.Errorf("unknown fault %q; valid faults: %s (comma-separated; empty means all)", name, strings.Join(all, ", "))
		}
		want[name] = true
	}
	return slices.DeleteFunc(all, func(f string) bool { return !want[f] }), nil
}

// Step is one step of a chaos schedule.
type Step struct {
	At      time.Duration // offset from the start of chaos
	Fault   string        // one of the Fault* constants
	Heal    bool          // true: this step ends an earlier fault (same Fault, same Members, same Arg)
	Members []string      // the members hit; for partition: the minority side
	Arg     int           // loss: percent (10..60); delay: ms (20..200); link-down: link index (0..links-1); else 0
}

// String is the step on one line, for example "  12.300s crash m2",
// "  15.100s heal crash m2 (restart)", "  20.000s partition m1,m3 from the
// rest" or "  3.000s loss m1 35%".
func (s Step) String() string {
	var b strings.Builder
	b.WriteString("  " + fmtMono(int64(s.At)) + " ")
	if s.Heal {
		b.WriteString("heal ")
	}
	b.WriteString(s.Fault)
	if len(s.Members) > 0 {
		b.WriteString(" " + strings.Join(s.Members, ","))
	}
	switch s.Fault {
	case FaultPartition:
		b.WriteString(" from the rest")
	case FaultLoss:
		b.WriteString(" " + strconv.Itoa(s.Arg) + "%")
	case FaultDelay:
		b.WriteString(" " + strconv.Itoa(s.Arg) + "ms")
	case FaultLinkDown:
		b.WriteString(" link " + strconv.Itoa(s.Arg))
	case FaultCrash, FaultKillAgent, FaultPause:
	default:
		if s.Arg != 0 {
			b.WriteString(" arg " + strconv.Itoa(s.Arg))
		}
	}
	if s.Heal {
		if h, ok := healWords[s.Fault]; ok {
			b.WriteString(" (" + h + ")")
		}
	}
	return b.String()
}

var healWords = map[string]string{
	FaultCrash:     "restart",
	FaultKillAgent: "restart agent",
	FaultPause:     "continue",
	FaultPartition: "rejoin",
	FaultLoss:      "clear",
	FaultLinkDown:  "link up",
	FaultDelay:     "clear",
}

// Schedule timing and limits.
const (
	ScheduleStart = 2 * time.Second  // no fault starts earlier
	QuietTail     = 10 * time.Second // every fault is healed by duration - QuietTail
	LastStart     = 12 * time.Second // no fault starts after duration - LastStart
	MinDuration   = 14 * time.Second // shorter chaos runs get no steps
	MaxFaults     = 100_000          // a schedule stops after this many faults
	minHold       = 1500 * time.Millisecond
	maxHold       = 8 * time.Second
	minGap        = 500 * time.Millisecond
	maxGap        = 4 * time.Second
	pcgStream     = 0x7669_6769_6c2d_6c61 // "vigil-la": the PCG stream of every schedule
)

// Schedule returns the fault schedule for a seed: a pure function of its
// arguments, stable across releases for replay (math/rand/v2's PCG, seeded
// with the seed and a fixed stream). Steps are sorted by At, a heal before a
// fault at the same instant. The rules:
//   - the first fault starts at ScheduleStart (2s) or later, and each fault
//     holds for a random 1.5..8s, then has its Heal step (with the same
//     Fault, Members and Arg);
//   - a new fault starts a random 0.5..4s after the previous one, or, when
//     the budget below is used up, 0.5..4s after the next heal;
//   - faults may overlap in time, but at any instant (heal instants
//     included) at most (n-1)/2 distinct members are under a fault, so a
//     majority stays whole, and a member is never under two faults at once;
//     with fewer than 3 members that budget is 0, and there are no steps;
//   - crash, kill-agent, pause, loss, delay and link-down hit one member;
//     partition cuts off a random minority of 1..(n-1)/2 members, within
//     the budget, and there is at most one partition at a time (the lab
//     has one partition state: a second would replace the first); link-down takes down one member's link, a random index in
//     0..links-1 (links below 1 count as 1); loss is 10..60%, delay 20..200ms;
//   - no fault starts after duration - 12s and every fault is healed by
//     duration - 10s (the last 10s are quiet); if duration < 14s there are
//     no steps;
//   - the kinds are drawn uniformly from faults, taken as a set in the order
//     of AllFaults (so the order and repeats do not matter); names that are
//     not Fault* constants are ignored (validate with ParseFaults), and an
//     empty list means all of them;
//   - duplicate member names count once; the schedule stops at MaxFaults.
func Schedule(seed int64, members []string, links int, duration time.Duration, faults []string) []Step {
	var ms []string
	for _, m := range members {
		if !slices.Contains(ms, m) {
			ms = append(ms, m)
		}
	}
	n := len(ms)
	budget := (n - 1) / 2
	kinds := AllFaults()
	if len(faults) > 0 {
		kinds = slices.DeleteFunc(kinds, func(f string) bool { return !slices.Contains(faults, f) })
	}
	if budget < 1 || duration < MinDuration || len(kinds) == 0 {
		return nil
	}
	links = max(links, 1)
	r := rand.New(rand.NewPCG(uint64(seed), pcgStream))
	// ms-granular draws keep the schedule readable.
	draw := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(r.Int64N(int64((hi-lo)/time.Millisecond)+1))*time.Millisecond
	}
	healAt := make([]time.Duration, n) // when each member's current or last fault is healed
	for i := range healAt {
		healAt[i] = -1
	}
	var (
		steps          []Step
		free           []int
		partitionUntil = time.Duration(-1) // the heal of the last partition
		noPartition    = slices.DeleteFunc(slices.Clone(kinds), func(f string) bool { return f == FaultPartition })
		last           = duration - LastStart
		end            = duration - QuietTail
	)
	for t, count := ScheduleStart, 0; t <= last && count < MaxFaults; {
		free = free[:0]
		nextHeal := time.Duration(1<<63 - 1)
		for i, h := range healAt {
			if h >= t { // under a fault, up to and including its heal instant
				nextHeal = min(nextHeal, h)
			} else {
				free = append(free, i)
			}
		}
		avail := budget - (n - len(free))
		if avail < 1 {
			t = nextHeal + draw(minGap, maxGap)
			continue
		}
		cands := kinds
		if partitionUntil >= t { // the lab keeps one partition at a time
			cands = noPartition
			if len(cands) == 0 {
				t = partitionUntil + draw(minGap, maxGap)
				continue
			}
		}
		kind := cands[r.IntN(len(cands))]
		hold := min(draw(minHold, maxHold), end-t) // end-t >= 2s
		k := 1
		if kind == FaultPartition {
			k += r.IntN(avail)
		}
		r.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		hit := slices.Clone(free[:k])
		slices.Sort(hit) // in the order of members, for reading
		names := make([]string, k)
		for i, m := range hit {
			names[i] = ms[m]
			healAt[m] = t + hold
		}
		if kind == FaultPartition {
			partitionUntil = t + hold
		}
		arg := 0
		switch kind {
		case FaultLoss:
			arg = 10 + r.IntN(51)
		case FaultDelay:
			arg = 20 + r.IntN(181)
		case FaultLinkDown:
			arg = r.IntN(links)
		}
		steps = append(steps,
			Step{At: t, Fault: kind, Members: names, Arg: arg},
			Step{At: t + hold, Fault: kind, Heal: true, Members: slices.Clone(names), Arg: arg})
		count++
		t += draw(minGap, maxGap)
	}
	slices.SortStableFunc(steps, func(a, b Step) int {
		return cmp.Or(cmp.Compare(a.At, b.At), -cmp.Compare(boolInt(a.Heal), boolInt(b.Heal)))
	})
	return steps
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Count returns how many faults (non-heal steps) of each kind a schedule has.
func Count(steps []Step) map[string]int {
	c := map[string]int{}
	for _, s := range steps {
		if !s.Heal {
			c[s.Fault]++
		}
	}
	return c
}
