package check

import (
	"slices"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	s := time.Second
	msd := time.Millisecond
	tests := []struct {
		name string
		in   []time.Duration
		want Summary
		str  string
	}{
		{name: "empty", want: Summary{}, str: "n=0"},
		{name: "single", in: []time.Duration{1400 * msd},
			want: Summary{N: 1, Min: 1400 * msd, Median: 1400 * msd, P90: 1400 * msd, Max: 1400 * msd, Mean: 1400 * msd},
			str:  "n=1 median 1.40s p90 1.40s max 1.40s"},
		{name: "odd, unsorted", in: []time.Duration{1310 * msd, 900 * msd, 1400 * msd, 1020 * msd, 1000 * msd},
			want: Summary{N: 5, Min: 900 * msd, Median: 1020 * msd, P90: 1400 * msd, Max: 1400 * msd, Mean: 1126 * msd},
			str:  "n=5 median 1.02s p90 1.40s max 1.40s"},
		{name: "even: median is the mean of the middle two", in: []time.Duration{4 * s, 1 * s, 3 * s, 2 * s},
			want: Summary{N: 4, Min: 1 * s, Median: 2500 * msd, P90: 4 * s, Max: 4 * s, Mean: 2500 * msd},
			str:  "n=4 median 2.50s p90 4.00s max 4.00s"},
		{name: "ten: p90 is the 9th", in: []time.Duration{10, 9, 8, 7, 6, 5, 4, 3, 2, 1},
			want: Summary{N: 10, Min: 1, Median: 5, P90: 9, Max: 10, Mean: 5},
			str:  "n=10 median 5ns p90 9ns max 10ns"},
		{name: "eleven: p90 is the 10th", in: []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
			want: Summary{N: 11, Min: 1, Median: 6, P90: 10, Max: 11, Mean: 6},
			str:  "n=11 median 6ns p90 10ns max 11ns"},
		{name: "huge values do not overflow", in: []time.Duration{1<<63 - 1, 1<<63 - 1},
			want: Summary{N: 2, Min: 1<<63 - 1, Median: 1<<63 - 1, P90: 1<<63 - 1, Max: 1<<63 - 1, Mean: 1<<63 - 1},
			str:  "n=2 median 9223372037s p90 9223372037s max 9223372037s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := slices.Clone(tt.in)
			got := Summarize(tt.in)
			if got != tt.want {
				t.Errorf("Summarize = %+v, want %+v", got, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("String = %q, want %q", got.String(), tt.str)
			}
			if !slices.Equal(orig, tt.in) {
				t.Error("Summarize modified its input")
			}
		})
	}
}
