package check

import (
	"fmt"
	"slices"
	"time"
)

// Summary of durations.
type Summary struct {
	N                           int
	Min, Median, P90, Max, Mean time.Duration
}

// Summarize computes a Summary: nearest-rank percentiles on a sorted copy
// (ds is not modified), the median of an even count being the mean of the
// two middle values. Empty input gives the zero Summary.
func Summarize(ds []time.Duration) Summary {
	n := len(ds)
	if n == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	sum := Summary{N: n, Min: s[0], Max: s[n-1], P90: s[(9*n+9)/10-1]}
	if n%2 == 1 {
		sum.Median = s[n/2]
	} else {
		a, b := s[n/2-1], s[n/2]
		sum.Median = a/2 + b/2 + (a%2+b%2)/2 // no overflow
	}
	// Mean without overflow: the sum of quotients plus the mean of remainders.
	var q, rem time.Duration
	for _, d := range s {
		q += d / time.Duration(n)
		rem += d % time.Duration(n)
	}
	sum.Mean = q + rem/time.Duration(n)
	return sum
}

// String is the one-line form "n=5 median 1.02s p90 1.31s max 1.40s"
// ("n=0" when empty).
func (s Summary) String() string {
	if s.N == 0 {
		return "n=0"
	}
	return fmt.Sprintf("n=%d median %s p90 %s max %s", s.N, fmtDur(s.Median), fmtDur(s.P90), fmtDur(s.Max))
}
