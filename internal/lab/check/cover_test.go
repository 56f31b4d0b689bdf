package check

import (
	"math"
	"testing"
	"time"
)

// every returns records of member m every step from a to b inclusive.
func every(m string, a, b, step int64) []Record {
	var out []Record
	for t := a; t <= b; t += step {
		out = append(out, Record{Member: m, Epoch: 1, Mono: t})
	}
	return out
}

func TestCover(t *testing.T) {
	gap := time.Second
	cat := func(rs ...[]Record) []Record {
		var out []Record
		for _, r := range rs {
			out = append(out, r...)
		}
		return out
	}
	tests := []struct {
		name     string
		recs     []Record
		from, to int64
		want     Coverage
	}{
		{name: "full availability",
			recs: every("m1", 100*ms, 9900*ms, 100*ms), from: 0, to: 10 * sec,
			want: Coverage{Up: 10 * time.Second, Availability: 1}},
		{name: "lines exactly gap apart are up",
			recs: every("m1", 0, 10*sec, sec), from: 0, to: 10 * sec,
			want: Coverage{Up: 10 * time.Second, Availability: 1}},
		{name: "any member counts",
			recs: cat(every("m1", 0, 5*sec, 500*ms), every("m2", 5500*ms, 10*sec, 500*ms)), from: 0, to: 10 * sec,
			want: Coverage{Up: 10 * time.Second, Availability: 1}},
		{name: "gap in the middle",
			recs: cat(every("m1", 0, 4*sec, 100*ms), every("m2", 7*sec, 10*sec, 100*ms)), from: 0, to: 10 * sec,
			want: Coverage{Up: 7 * time.Second, Availability: 0.7, Outages: 1, LongestOutage: 3 * time.Second, LongestAt: 4 * sec}},
		{name: "two gaps: the longest is reported",
			recs: cat(every("m1", 0, 2*sec, 100*ms), every("m1", 4*sec, 5*sec, 100*ms), every("m2", 8*sec, 10*sec, 100*ms)), from: 0, to: 10 * sec,
			want: Coverage{Up: 5 * time.Second, Availability: 0.5, Outages: 2, LongestOutage: 3 * time.Second, LongestAt: 5 * sec}},
		{name: "gaps at both ends",
			recs: every("m1", 3*sec, 8*sec, 100*ms), from: 0, to: 10 * sec,
			want: Coverage{Up: 5 * time.Second, Availability: 0.5, Outages: 2, LongestOutage: 3 * time.Second, LongestAt: 0}},
		{name: "short edges are up",
			recs: every("m1", 900*ms, 9100*ms, 100*ms), from: 0, to: 10 * sec,
			want: Coverage{Up: 10 * time.Second, Availability: 1}},
		{name: "clipping: lines outside the window are neighbours, not coverage",
			recs: every("m1", -5*sec, 20*sec, 500*ms), from: 2 * sec, to: 4 * sec,
			want: Coverage{Up: 2 * time.Second, Availability: 1}},
		{name: "clipping: an outage that began before the window",
			recs: cat(every("m1", 0, sec, 100*ms), every("m1", 5*sec, 10*sec, 100*ms)), from: 4 * sec, to: 10 * sec,
			want: Coverage{Up: 5 * time.Second, Availability: 5.0 / 6, Outages: 1, LongestOutage: time.Second, LongestAt: 4 * sec}},
		{name: "clipping: an outage that lasts past the window",
			recs: cat(every("m1", 0, 6*sec, 100*ms), every("m1", 15*sec, 20*sec, 100*ms)), from: 0, to: 10 * sec,
			want: Coverage{Up: 6 * time.Second, Availability: 0.6, Outages: 1, LongestOutage: 4 * time.Second, LongestAt: 6 * sec}},
		{name: "only lines outside, far apart: all down",
			recs: cat(every("m1", 0, sec, 100*ms), every("m1", 30*sec, 31*sec, 100*ms)), from: 10 * sec, to: 20 * sec,
			want: Coverage{Outages: 1, LongestOutage: 10 * time.Second, LongestAt: 10 * sec}},
		{name: "no lines at all",
			from: 0, to: 10 * sec,
			want: Coverage{Outages: 1, LongestOutage: 10 * time.Second}},
		{name: "empty window", recs: every("m1", 0, 10*sec, sec), from: 5 * sec, to: 5 * sec},
		{name: "reversed window", recs: every("m1", 0, 10*sec, sec), from: 6 * sec, to: 5 * sec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Cover(tt.recs, tt.from, tt.to, gap)
			want := tt.want
			want.From, want.To = tt.from, tt.to
			if math.Abs(got.Availability-want.Availability) < 1e-9 {
				got.Availability = want.Availability
			}
			if got != want {
				t.Errorf("Cover =\n%+v\nwant\n%+v", got, want)
			}
			if tt.to > tt.from && got.Outages == 0 && got.Up != time.Duration(tt.to-tt.from) {
				t.Errorf("no outage but Up %v is not the whole window", got.Up)
			}
		})
	}
}

func TestCoverString(t *testing.T) {
	recs := append(every("m1", 0, 4*sec, 100*ms), every("m2", 7*sec, 10*sec, 100*ms)...)
	got := Cover(recs, 0, 10*sec, time.Second).String()
	if want := "availability 70.000% over 10s: 1 outage, longest 3.00s from mono 4.000s"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	got = Cover(recs, 0, 4*sec, time.Second).String()
	if want := "availability 100.000% over 4s: no outage"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
