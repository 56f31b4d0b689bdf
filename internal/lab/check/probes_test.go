package check

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseProbes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Probe
		bad  []string
	}{
		{name: "empty"},
		{name: "good", in: "100 200 200 m1\n300 1300 0 -\n400 450 503 -\n",
			want: []Probe{{100, 200, 200, "m1"}, {300, 1300, 0, ""}, {400, 450, 503, ""}}},
		{name: "escaped bodies", in: "1 2 200 %2D\n1 2 200 a%20b%25\n1 2 200 %e2%82%ac\n",
			want: []Probe{{1, 2, 200, "-"}, {1, 2, 200, "a b%"}, {1, 2, 200, "€"}}},
		{name: "truncated last line is skipped silently", in: "100 200 200 m1\n300 40",
			want: []Probe{{100, 200, 200, "m1"}}},
		{name: "malformed middle lines", in: "100 200 200 m1\n200 100 200 m1\n1 2 99 -\n1 2 600 -\n1 2 200 a%zz\n1 2 200 a%2\n-1 2 200 -\n1 2 200 m1 extra\n1 2 200\tx\n",
			want: []Probe{{100, 200, 200, "m1"}},
			bad: []string{"line 2: done time 100 is before sent time 200", `line 3: status "99"`, `line 4: status "600"`,
				`line 5: body "a%zz": %`, `line 6: body "a%2": %`, `line 7: sent time "-1"`, "line 8: want 4 fields", "line 9: want 4 fields"}},
		{name: "control character in body", in: "1 2 200 a\x01b\n",
			bad: []string{`line 1: body "a\x01b" contains a control character`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bad, err := ParseProbes(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("probes = %v, want %v", got, tt.want)
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

func TestFormatProbe(t *testing.T) {
	for _, tt := range []struct {
		p    Probe
		want string
	}{
		{Probe{100, 200, 200, "m2"}, "100 200 200 m2\n"},
		{Probe{100, 5000, 0, ""}, "100 5000 0 -\n"},
		{Probe{1, 2, 200, "-"}, "1 2 200 %2D\n"},
		{Probe{1, 2, 500, "bad gateway\n"}, "1 2 500 bad%20gateway%0A\n"},
		{Probe{1, 2, 200, "100%"}, "1 2 200 100%25\n"},
	} {
		line := FormatProbe(tt.p)
		if line != tt.want {
			t.Errorf("FormatProbe(%+v) = %q, want %q", tt.p, line, tt.want)
		}
		got, bad, err := ParseProbes(strings.NewReader(line))
		if err != nil || len(bad) > 0 || len(got) != 1 || got[0] != tt.p {
			t.Errorf("ParseProbes(%q) = %v %q %v, want %+v", line, got, bad, err, tt.p)
		}
	}
}

func TestFirstAnswer(t *testing.T) {
	probes := []Probe{
		{Sent: 0, Done: 10, Status: 200, Body: "m1"},
		{Sent: 20, Done: 30, Status: 200, Body: "m1"},
		{Sent: 40, Done: 90, Status: 0, Body: ""},
		{Sent: 50, Done: 95, Status: 503, Body: "m2"},
		{Sent: 70, Done: 120, Status: 200, Body: "m2"}, // listed before an earlier answer: order must not matter
		{Sent: 60, Done: 100, Status: 200, Body: "m1"},
		{Sent: 80, Done: 110, Status: 200, Body: "m3"},
	}
	tests := []struct {
		name   string
		after  int64
		not    string
		want   int64
		wantOK bool
	}{
		{name: "first answer from anyone", after: 0, not: "", want: 10, wantOK: true},
		{name: "after is exclusive", after: 10, not: "", want: 30, wantOK: true},
		{name: "another member took over", after: 15, not: "m1", want: 110, wantOK: true},
		{name: "non-200 answers do not count", after: 90, not: "m1", want: 110, wantOK: true},
		{name: "none after", after: 120, not: "", wantOK: false},
		{name: "none but the old owner", after: 115, not: "m2", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FirstAnswer(probes, tt.after, tt.not)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("FirstAnswer(after %d, not %q) = %d, %v; want %d, %v", tt.after, tt.not, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if _, ok := FirstAnswer(nil, 0, ""); ok {
		t.Error("FirstAnswer(nil) found an answer")
	}
}

func TestProbeCoverage(t *testing.T) {
	var probes []Probe
	for t := int64(0); t <= 10*sec; t += 100 * ms {
		p := Probe{Sent: t, Done: t + 5*ms, Status: 200, Body: "m1"}
		switch {
		case t >= 4*sec && t < 5*sec: // refused while failing over
			p.Status, p.Body = 0, ""
		case t >= 5*sec && t < 6*sec: // answered, but not OK
			p.Status = 503
		}
		probes = append(probes, p)
	}
	got := ProbeCoverage(probes, 0, 10*sec, 500*time.Millisecond)
	// OK answers done at 3.905s, then 6.005s: an outage of 2.1s.
	want := Coverage{From: 0, To: 10 * sec, Up: 7900 * time.Millisecond, Availability: 0.79, Outages: 1,
		LongestOutage: 2100 * time.Millisecond, LongestAt: 3905 * ms}
	if got.Availability-want.Availability < 1e-9 && want.Availability-got.Availability < 1e-9 {
		got.Availability = want.Availability
	}
	if got != want {
		t.Errorf("ProbeCoverage =\n%+v\nwant\n%+v", got, want)
	}
}
