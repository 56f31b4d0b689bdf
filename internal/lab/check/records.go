package check

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Record is one line a workload writer appended: "MEMBER EPOCH MONO_NS\n",
// MONO_NS being CLOCK_MONOTONIC nanoseconds (all lab namespaces share one clock).
type Record struct {
	Member string
	Epoch  uint64
	Mono   int64
}

// FormatRecord returns the writer's line for rec, with its newline. The
// member name must be non-empty and free of spaces and control characters
// for ParseRecords to read it back.
func FormatRecord(rec Record) string {
	return rec.Member + " " + strconv.FormatUint(rec.Epoch, 10) + " " + strconv.FormatInt(rec.Mono, 10) + "\n"
}

// ParseRecords reads writer lines. A malformed final line without a trailing
// newline (the writer was killed mid-write) is skipped silently; any other
// malformed line is reported in bad (as "line N: ...") and skipped. A final
// line without a newline that is well formed is kept. err is set only when
// r fails to read; the records before the failure are returned with it.
func ParseRecords(r io.Reader) (recs []Record, bad []string, err error) {
	bad, err = eachLine(r, func(line string) error {
		rec, err := parseRecord(line)
		if err == nil {
			recs = append(recs, rec)
		}
		return err
	})
	return recs, bad, err
}

func parseRecord(line string) (Record, error) {
	f, err := fields(line, "MEMBER", "EPOCH", "MONO_NS")
	if err != nil {
		return Record{}, err
	}
	if err := checkName(f[0]); err != nil {
		return Record{}, err
	}
	epoch, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return Record{}, fmt.Errorf("epoch %s is not a non-negative decimal integer below 2^64", quote(f[1]))
	}
	mono, err := nonNegative("mono time", f[2])
	if err != nil {
		return Record{}, err
	}
	return Record{Member: f[0], Epoch: epoch, Mono: mono}, nil
}

// checkName rejects member names with control characters (spaces cannot
// occur: they separate the fields).
func checkName(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("member name %s contains a control character", quote(s))
		}
	}
	return nil
}

// Interval is a run of lines from one (member, epoch).
type Interval struct {
	Member     string
	Epoch      uint64
	Start, End int64 // mono ns of first and last line
	Lines      int
}

// Intervals groups records by (member, epoch), in time order, splitting a
// group where two consecutive lines of it are more than gap apart. Sorted by
// Start (then member, epoch and End, so the order is deterministic).
func Intervals(recs []Record, gap time.Duration) []Interval {
	s := slices.Clone(recs)
	slices.SortFunc(s, func(a, b Record) int {
		return cmp.Or(strings.Compare(a.Member, b.Member), cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.Mono, b.Mono))
	})
	var out []Interval
	for _, r := range s {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Member == r.Member && last.Epoch == r.Epoch && r.Mono-last.End <= int64(gap) {
				last.End = r.Mono
				last.Lines++
				continue
			}
		}
		out = append(out, Interval{Member: r.Member, Epoch: r.Epoch, Start: r.Mono, End: r.Mono, Lines: 1})
	}
	slices.SortFunc(out, compareIntervals)
	return out
}

func compareIntervals(a, b Interval) int {
	return cmp.Or(cmp.Compare(a.Start, b.Start), strings.Compare(a.Member, b.Member),
		cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.End, b.End), cmp.Compare(a.Lines, b.Lines))
}

// Overlap is a split-brain: two members' intervals that intersect in time.
// A started no later than B.
type Overlap struct {
	A, B     Interval
	From, To int64 // the intersection
}

// String describes the overlap for an operator, for example
// "m1 (epoch 4) and m2 (epoch 5) both ran for 37.0ms, from mono 12345.678s".
func (o Overlap) String() string {
	who := fmt.Sprintf("%s (epoch %d) and %s (epoch %d) both ran", o.A.Member, o.A.Epoch, o.B.Member, o.B.Epoch)
	if o.To == o.From {
		return who + " at the same instant, mono " + fmtMono(o.From)
	}
	return who + " for " + fmtDur(time.Duration(o.To-o.From)) + ", from mono " + fmtMono(o.From)
}

// Overlaps returns every pair of intervals from different members that
// intersect (a shared instant, Start<=other.End && other.Start<=End), sorted
// by From. Intervals of the same member never count, whatever their epochs.
//
// It is a sweep in Start order that keeps, for each member, the intervals
// that may still intersect a later one; every interval it looks at either
// yields an overlap or is dropped for good, so it costs O(n log n + k) for n
// intervals and k overlaps.
func Overlaps(ivs []Interval) []Overlap {
	s := slices.Clone(ivs)
	slices.SortFunc(s, compareIntervals)
	type lane struct {
		member string
		open   []Interval // may still intersect an interval that starts later
	}
	var (
		lanes []*lane // members with open intervals
		out   []Overlap
	)
	for _, x := range s {
		var mine *lane
		batch := len(out)
		for i := 0; i < len(lanes); {
			l := lanes[i]
			if l.member == x.Member {
				mine = l
				i++
				continue
			}
			kept := l.open[:0]
			for _, y := range l.open {
				if y.End >= x.Start {
					kept = append(kept, y)
					out = append(out, Overlap{A: y, B: x, From: x.Start, To: min(x.End, y.End)})
				}
			}
			clear(l.open[len(kept):])
			l.open = kept
			if len(kept) == 0 {
				lanes[i] = lanes[len(lanes)-1]
				lanes[len(lanes)-1] = nil
				lanes = lanes[:len(lanes)-1]
				continue
			}
			i++
		}
		// All of this batch share From; order it by the earlier interval.
		slices.SortFunc(out[batch:], func(a, b Overlap) int { return compareIntervals(a.A, b.A) })
		if mine == nil {
			mine = &lane{member: x.Member}
			lanes = append(lanes, mine)
		}
		mine.open = append(mine.open, x)
	}
	return out
}
