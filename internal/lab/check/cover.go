package check

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Coverage says how available a service was in [From, To].
//
// Every instant of [From, To] is either up or in an outage, so Up plus the
// outages add up to To-From. The span between two consecutive answers (lines
// or OK probes) is up when they are no more than gap apart and an outage
// otherwise; the nearest answers before From and after To count, when there
// are any. Without an answer before From (or after To), the span from From
// to the first answer (or from the last answer to To) is an outage only if it
// is longer than gap, so a service that answered throughout has availability
// 1. With no answer at all, the whole window is one outage.
type Coverage struct {
	From, To      int64
	Up            time.Duration // time covered: between consecutive lines (any member) no more than gap apart
	Availability  float64       // Up / (To-From), 0..1
	Outages       int           // gaps longer than gap (including the start before the first line and the end after the last line, if longer than gap)
	LongestOutage time.Duration // clipped to [From, To]
	LongestAt     int64         // mono ns where the longest outage began (at From if it began earlier)
}

// String summarizes the coverage in one line, for example
// "availability 99.870% over 5m0s: 2 outages, longest 1.20s from mono 123.456s".
func (c Coverage) String() string {
	s := fmt.Sprintf("availability %.3f%% over %v", 100*c.Availability, time.Duration(c.To-c.From))
	if c.Outages == 0 {
		return s + ": no outage"
	}
	return s + fmt.Sprintf(": %d outage%s, longest %s from mono %s",
		c.Outages, plural(c.Outages), fmtDur(c.LongestOutage), fmtMono(c.LongestAt))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Cover computes coverage from records (any member), clipped to [from, to].
// An empty or reversed window (to <= from) gives a zero Coverage with From
// and To set.
func Cover(recs []Record, from, to int64, gap time.Duration) Coverage {
	times := make([]int64, len(recs))
	for i, r := range recs {
		times[i] = r.Mono
	}
	slices.Sort(times)
	return cover(times, from, to, gap)
}

// cover is Cover on sorted answer times.
func cover(times []int64, from, to int64, gap time.Duration) Coverage {
	c := Coverage{From: from, To: to}
	if to <= from {
		return c
	}
	span := to - from
	if len(times) == 0 {
		c.Outages, c.LongestOutage, c.LongestAt = 1, time.Duration(span), from
		return c
	}
	g := int64(max(gap, 0))
	step := func(a, b int64) {
		lo, hi := max(a, from), min(b, to)
		if hi <= lo {
			return
		}
		if b-a <= g {
			c.Up += time.Duration(hi - lo)
			return
		}
		c.Outages++
		if d := time.Duration(hi - lo); d > c.LongestOutage {
			c.LongestOutage, c.LongestAt = d, lo
		}
	}
	i0 := sort.Search(len(times), func(i int) bool { return times[i] > from })
	i1 := sort.Search(len(times), func(i int) bool { return times[i] >= to })
	prev := from // no answer before the window: start at its edge
	if i0 > 0 {
		prev = times[i0-1]
	}
	for _, t := range times[i0:i1] {
		step(prev, t)
		prev = t
	}
	next := to
	if i1 < len(times) {
		next = times[i1]
	}
	step(prev, next)
	c.Availability = float64(c.Up) / float64(span)
	return c
}
