package check

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const sec = int64(time.Second)
const ms = int64(time.Millisecond)

func TestParseRecords(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Record
		bad  []string // prefixes of the bad messages
	}{
		{name: "empty", in: ""},
		{name: "good", in: "m1 4 1000\nm2 5 2000\n",
			want: []Record{{"m1", 4, 1000}, {"m2", 5, 2000}}},
		{name: "well-formed last line without newline is kept", in: "m1 4 1000\nm2 5 2000",
			want: []Record{{"m1", 4, 1000}, {"m2", 5, 2000}}},
		{name: "truncated last line is skipped silently", in: "m1 4 1000\nm2 5",
			want: []Record{{"m1", 4, 1000}}},
		{name: "truncated last line mid-member", in: "m1 4 1000\nm",
			want: []Record{{"m1", 4, 1000}}},
		{name: "malformed middle line", in: "m1 4 1000\nm1 four 1500\nm1 4 2000\n",
			want: []Record{{"m1", 4, 1000}, {"m1", 4, 2000}},
			bad:  []string{`line 2: epoch "four"`}},
		{name: "malformed terminated last line is reported", in: "m1 4 1000\nm1 4\n",
			want: []Record{{"m1", 4, 1000}},
			bad:  []string{`line 2: want 3 fields`}},
		{name: "every kind of bad line", in: "\nm1 4 -5\nm1  4 5\nm1 4 5 6\nm\t1 4 5\nm1 4 99999999999999999999\nm1 18446744073709551616 5\nok 1 1\n",
			want: []Record{{"ok", 1, 1}},
			bad: []string{"line 1: empty line", `line 2: mono time "-5"`, "line 3: empty EPOCH field",
				"line 4: want 3 fields", "line 5: member name", `line 6: mono time "99999999999999999999"`, `line 7: epoch`}},
		{name: "max values", in: "m1 18446744073709551615 9223372036854775807\n",
			want: []Record{{"m1", 1<<64 - 1, 1<<63 - 1}}},
		{name: "line too long", in: "m1 1 1\n" + strings.Repeat("x", MaxLineLen+1) + "\nm1 1 2\n",
			want: []Record{{"m1", 1, 1}, {"m1", 1, 2}},
			bad:  []string{"line 2: longer than"}},
		{name: "line exactly at the limit", in: strings.Repeat("x", MaxLineLen-4) + " 1 2\n",
			want: []Record{{strings.Repeat("x", MaxLineLen-4), 1, 2}}},
		{name: "too long unterminated last line", in: "m1 1 1\n" + strings.Repeat("x", 2*MaxLineLen),
			want: []Record{{"m1", 1, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, bad, err := ParseRecords(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(recs, tt.want) {
				t.Errorf("records = %v, want %v", recs, tt.want)
			}
			if len(bad) != len(tt.bad) {
				t.Fatalf("bad = %q, want %d entries starting %q", bad, len(tt.bad), tt.bad)
			}
			for i := range bad {
				if !strings.HasPrefix(bad[i], tt.bad[i]) {
					t.Errorf("bad[%d] = %q, want prefix %q", i, bad[i], tt.bad[i])
				}
			}
		})
	}
}

type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("disk on fire")
	}
	return n, err
}

func TestParseRecordsReadError(t *testing.T) {
	recs, _, err := ParseRecords(failingReader{strings.NewReader("m1 1 1\nm1 1 2\nm1 1")})
	if err == nil || !strings.Contains(err.Error(), "line 3: disk on fire") {
		t.Fatalf("err = %v, want the read error at line 3", err)
	}
	if len(recs) != 2 {
		t.Fatalf("records before the error = %v, want 2", recs)
	}
}

func TestFormatRecord(t *testing.T) {
	rec := Record{"m2", 7, 123456789}
	if got := FormatRecord(rec); got != "m2 7 123456789\n" {
		t.Fatalf("FormatRecord = %q", got)
	}
	recs, bad, err := ParseRecords(strings.NewReader(FormatRecord(rec)))
	if err != nil || len(bad) > 0 || len(recs) != 1 || recs[0] != rec {
		t.Fatalf("round trip = %v %v %v", recs, bad, err)
	}
}

func TestIntervals(t *testing.T) {
	gap := 500 * time.Millisecond
	tests := []struct {
		name string
		recs []Record
		want []Interval
	}{
		{name: "empty"},
		{name: "one line", recs: []Record{{"m1", 1, 5 * sec}},
			want: []Interval{{"m1", 1, 5 * sec, 5 * sec, 1}}},
		{name: "unsorted input, one run",
			recs: []Record{{"m1", 1, 1200 * ms}, {"m1", 1, 1000 * ms}, {"m1", 1, 1100 * ms}},
			want: []Interval{{"m1", 1, 1000 * ms, 1200 * ms, 3}}},
		{name: "split on a gap longer than gap, not on one equal to it",
			recs: []Record{{"m1", 1, 1000 * ms}, {"m1", 1, 1500 * ms}, {"m1", 1, 2001 * ms}, {"m1", 1, 2100 * ms}},
			want: []Interval{{"m1", 1, 1000 * ms, 1500 * ms, 2}, {"m1", 1, 2001 * ms, 2100 * ms, 2}}},
		{name: "per epoch and per member, interleaved",
			recs: []Record{
				{"m1", 1, 1000 * ms}, {"m2", 2, 1050 * ms}, {"m1", 1, 1100 * ms}, {"m2", 2, 1150 * ms},
				{"m1", 3, 1200 * ms}, {"m1", 3, 1300 * ms},
			},
			want: []Interval{
				{"m1", 1, 1000 * ms, 1100 * ms, 2},
				{"m2", 2, 1050 * ms, 1150 * ms, 2},
				{"m1", 3, 1200 * ms, 1300 * ms, 2},
			}},
		{name: "same start: ordered by member",
			recs: []Record{{"m2", 1, 1000 * ms}, {"m1", 9, 1000 * ms}},
			want: []Interval{{"m1", 9, 1000 * ms, 1000 * ms, 1}, {"m2", 1, 1000 * ms, 1000 * ms, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := slices.Clone(tt.recs)
			got := Intervals(tt.recs, gap)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Intervals =\n%v\nwant\n%v", got, tt.want)
			}
			if !slices.Equal(orig, tt.recs) {
				t.Error("Intervals modified its input")
			}
		})
	}
}

func iv(member string, epoch uint64, start, end int64) Interval {
	return Interval{Member: member, Epoch: epoch, Start: start, End: end, Lines: 1}
}

func TestOverlaps(t *testing.T) {
	tests := []struct {
		name string
		ivs  []Interval
		want []Overlap
	}{
		{name: "empty"},
		{name: "clean handover",
			ivs: []Interval{iv("m1", 1, 0, 10*sec), iv("m2", 2, 11*sec, 20*sec), iv("m3", 3, 21*sec, 30*sec)}},
		{name: "same member, different epochs, is no split brain",
			ivs: []Interval{iv("m1", 1, 0, 10*sec), iv("m1", 2, 5*sec, 20*sec)}},
		{name: "real overlap",
			ivs:  []Interval{iv("m2", 5, 12345*ms, 20*sec), iv("m1", 4, 0, 12382*ms)},
			want: []Overlap{{A: iv("m1", 4, 0, 12382*ms), B: iv("m2", 5, 12345*ms, 20*sec), From: 12345 * ms, To: 12382 * ms}}},
		{name: "touching intervals share an instant",
			ivs:  []Interval{iv("m1", 1, 0, 10*sec), iv("m2", 2, 10*sec, 20*sec)},
			want: []Overlap{{A: iv("m1", 1, 0, 10*sec), B: iv("m2", 2, 10*sec, 20*sec), From: 10 * sec, To: 10 * sec}}},
		{name: "containment",
			ivs:  []Interval{iv("m1", 1, 0, 30*sec), iv("m2", 2, 10*sec, 20*sec)},
			want: []Overlap{{A: iv("m1", 1, 0, 30*sec), B: iv("m2", 2, 10*sec, 20*sec), From: 10 * sec, To: 20 * sec}}},
		{name: "three members",
			ivs: []Interval{iv("m1", 1, 0, 10*sec), iv("m2", 2, 5*sec, 15*sec), iv("m3", 3, 8*sec, 9*sec), iv("m3", 4, 14*sec, 16*sec)},
			want: []Overlap{
				{A: iv("m1", 1, 0, 10*sec), B: iv("m2", 2, 5*sec, 15*sec), From: 5 * sec, To: 10 * sec},
				{A: iv("m1", 1, 0, 10*sec), B: iv("m3", 3, 8*sec, 9*sec), From: 8 * sec, To: 9 * sec},
				{A: iv("m2", 2, 5*sec, 15*sec), B: iv("m3", 3, 8*sec, 9*sec), From: 8 * sec, To: 9 * sec},
				{A: iv("m2", 2, 5*sec, 15*sec), B: iv("m3", 4, 14*sec, 16*sec), From: 14 * sec, To: 15 * sec},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Overlaps(tt.ivs)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Overlaps =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

// bruteOverlaps is the O(n^2) definition that Overlaps must agree with.
func bruteOverlaps(ivs []Interval) map[[2]Interval]Overlap {
	out := map[[2]Interval]Overlap{}
	for i, a := range ivs {
		for _, b := range ivs[i+1:] {
			if a.Member == b.Member || a.Start > b.End || b.Start > a.End {
				continue
			}
			if compareIntervals(b, a) < 0 {
				a, b := b, a
				out[[2]Interval{a, b}] = Overlap{A: a, B: b, From: b.Start, To: min(a.End, b.End)}
				continue
			}
			out[[2]Interval{a, b}] = Overlap{A: a, B: b, From: b.Start, To: min(a.End, b.End)}
		}
	}
	return out
}

func TestOverlapsMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		var ivs []Interval
		for i := range r.IntN(40) {
			s := r.Int64N(100)
			ivs = append(ivs, Interval{Member: fmt.Sprintf("m%d", r.IntN(4)), Epoch: uint64(i), Start: s, End: s + r.Int64N(15), Lines: 1})
		}
		got := Overlaps(ivs)
		want := bruteOverlaps(ivs)
		if len(got) != len(want) {
			t.Fatalf("round %d: %d overlaps, brute force finds %d", round, len(got), len(want))
		}
		for i, o := range got {
			if i > 0 && o.From < got[i-1].From {
				t.Fatalf("round %d: not sorted by From at %d", round, i)
			}
			if w, ok := want[[2]Interval{o.A, o.B}]; !ok || w != o {
				t.Fatalf("round %d: overlap %+v, brute force has %+v (%v)", round, o, w, ok)
			}
		}
	}
}

// TestOverlapsLarge runs the sweep on 100,000 intervals of a long chaos run:
// three members taking turns, every 1,000th handover overlapping by 5ms, and
// one member whose intervals overlap among themselves (same member: not a
// split brain). An O(n^2) pass would take minutes here.
func TestOverlapsLarge(t *testing.T) {
	const n = 100_000
	members := []string{"m1", "m2", "m3"}
	ivs := make([]Interval, 0, n+1000)
	for i := range int64(n) {
		start := i * 100 * ms
		end := start + 90*ms
		if i%1000 == 500 {
			end += 15 * ms
		}
		ivs = append(ivs, Interval{Member: members[i%3], Epoch: uint64(i), Start: start, End: end, Lines: 10})
	}
	for i := range int64(1000) { // "m4" runs through a quiet stretch, with overlapping epochs
		ivs = append(ivs, iv("m4", uint64(i), (n+10)*100*ms+i*ms, (n+10)*100*ms+i*ms+time.Hour.Nanoseconds()))
	}
	start := time.Now()
	got := Overlaps(ivs)
	if len(got) != n/1000 {
		t.Fatalf("found %d overlaps, want %d", len(got), n/1000)
	}
	for _, o := range got {
		if o.To-o.From != 5*ms {
			t.Fatalf("overlap %v, want 5ms", o)
		}
	}
	t.Logf("%d intervals in %v", len(ivs), time.Since(start))
}

func TestOverlapString(t *testing.T) {
	o := Overlap{A: iv("m1", 4, 0, 12382*ms), B: iv("m2", 5, 12345*ms, 20*sec), From: 12345 * ms, To: 12382 * ms}
	if got, want := o.String(), "m1 (epoch 4) and m2 (epoch 5) both ran for 37.0ms, from mono 12.345s"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	o = Overlap{A: iv("m1", 1, 0, 10*sec), B: iv("m2", 2, 10*sec, 20*sec), From: 10 * sec, To: 10 * sec}
	if got, want := o.String(), "m1 (epoch 1) and m2 (epoch 2) both ran at the same instant, mono 10.000s"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestFormatting(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0ns"}, {999, "999ns"}, {1500, "1.50µs"}, {37 * time.Millisecond, "37.0ms"},
		{1020 * time.Millisecond, "1.02s"}, {1400 * time.Millisecond, "1.40s"},
		{123 * time.Second, "123s"}, {-2 * time.Second, "-2.00s"},
	} {
		if got := fmtDur(tt.d); got != tt.want {
			t.Errorf("fmtDur(%d) = %q, want %q", tt.d, got, tt.want)
		}
	}
	for _, tt := range []struct {
		ns   int64
		want string
	}{
		{0, "0.000s"}, {12345678901, "12.345s"}, {-1500 * ms, "-1.500s"}, {-1 << 63, "-9223372036.854s"},
	} {
		if got := fmtMono(tt.ns); got != tt.want {
			t.Errorf("fmtMono(%d) = %q, want %q", tt.ns, got, tt.want)
		}
	}
}
