package agent

import (
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/director"
)

func TestMemberCondition(t *testing.T) {
	cases := []struct {
		name           string
		self, fresh    bool
		seen, reported []bool
		want           director.MemberState
	}{
		{"self", true, false, nil, nil, director.MemberUp},
		{"silent", false, false, []bool{true}, []bool{true}, director.MemberDown},
		{"one link up", false, true, []bool{true}, nil, director.MemberUp},
		{"interconnect lost, public seen", false, true, []bool{false, true}, []bool{false, true}, director.MemberNetpar},
		{"every link seen", false, true, []bool{true, true}, []bool{true, true}, director.MemberUp},
		{"public links lost", false, true, []bool{true, false}, []bool{true, false}, director.MemberDisconnected},
		{"public links lost, two of them", false, true, []bool{true, false, false}, []bool{true, false, false}, director.MemberDisconnected},
		{"one of two public links left", false, true, []bool{true, false, true}, []bool{true, false, true}, director.MemberUp},
		{"no report yet", false, true, []bool{true, true}, nil, director.MemberUp},
		{"netpar wins over its own report", false, true, []bool{false, true}, []bool{false, false}, director.MemberNetpar},
	}
	for _, tc := range cases {
		if got := memberCondition(tc.self, tc.fresh, tc.seen, tc.reported); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestDisconnectedNeedsALeaseOfReports(t *testing.T) {
	var tm term
	t0 := time.Unix(1000, 0)
	if tm.disconnected("m2", true, t0, time.Second) {
		t.Error("one report made m2 DISCONNECTED")
	}
	if tm.disconnected("m2", true, t0.Add(900*time.Millisecond), time.Second) {
		t.Error("DISCONNECTED before a lease of reports")
	}
	if !tm.disconnected("m2", true, t0.Add(time.Second), time.Second) {
		t.Error("not DISCONNECTED after a lease of reports")
	}
	if tm.disconnected("m2", false, t0.Add(1100*time.Millisecond), time.Second) || tm.disconnected("m2", true, t0.Add(1200*time.Millisecond), time.Second) {
		t.Error("a report with a public link up must restart the count")
	}
}

func TestExcuseMovesRenewalsByTheStall(t *testing.T) {
	tm := term{renewals: map[string]time.Time{}}
	t0 := time.Unix(1000, 0)
	tm.renewals["m1"], tm.renewals["m2"] = t0, t0.Add(900*time.Millisecond)
	now := t0.Add(time.Second)
	tm.excuse(500*time.Millisecond, now)
	if got := tm.renewals["m1"]; !got.Equal(t0.Add(500 * time.Millisecond)) {
		t.Errorf("m1 renewed at %v after the excuse, want +500ms", got.Sub(t0))
	}
	if got := tm.renewals["m2"]; !got.Equal(now) {
		t.Errorf("m2 renewed at %v after the excuse, want no later than now", got.Sub(t0))
	}
}

func TestGossipRefuted(t *testing.T) {
	now := time.Now()
	renew := 200 * time.Millisecond
	for _, tc := range []struct {
		ago  time.Duration
		zero bool
		want bool
	}{
		{ago: 100 * time.Millisecond, want: true},  // renewed since: alive
		{ago: 299 * time.Millisecond, want: true},  // within a period and a half
		{ago: 300 * time.Millisecond, want: false}, // a crash looks like this
		{ago: 900 * time.Millisecond, want: false},
		{zero: true, want: false}, // never renewed this term
	} {
		last := now.Add(-tc.ago)
		if tc.zero {
			last = time.Time{}
		}
		if got := gossipRefuted(last, now, renew); got != tc.want {
			t.Errorf("renewed %v ago (zero %v): %v, want %v", tc.ago, tc.zero, got, tc.want)
		}
	}
}
