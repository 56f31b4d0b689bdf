package agents

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// TestSequences pins the failover sequence of DESIGN.md: the stop half,
// the start half, and ABORT/ABORT_NET in the places of STOP/STOP_NET.
func TestSequences(t *testing.T) {
	join := func(ps []Phase) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = string(p)
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct {
		name string
		seq  []Phase
		want string
	}{
		{"start", StartSequence, "import fsck mount start ip-up start-net fm-init fm-start"},
		{"stop", StopSequence, "fm-stop stop-net ip-down stop unmount deport"},
		{"abort", AbortSequence, "fm-stop abort-net ip-down abort unmount deport"},
	} {
		if got := join(c.seq); got != c.want {
			t.Errorf("%s sequence %q, want %q", c.name, got, c.want)
		}
	}
	for _, p := range StartSequence {
		if Reverse(p) {
			t.Errorf("Reverse(%s) = true in the start half", p)
		}
	}
	for _, seq := range [][]Phase{StopSequence, AbortSequence} {
		for _, p := range seq {
			if !Reverse(p) {
				t.Errorf("Reverse(%s) = false in the stop half", p)
			}
		}
	}
	if Reverse(Check) || Reverse(Probe) || !known(Check) || !known(Probe) || known("restart") {
		t.Error("Check/Probe ordering or phase recognition is wrong")
	}
}

// TestEveryKindEveryPhase runs every phase on one resource of every kind
// whose phases need no root, and checks that each Result names the
// resource, kind and phase, and that a failure always says why.
func TestEveryKindEveryPhase(t *testing.T) {
	env := ocfEnv(t, ocfRoot(t))
	dir := t.TempDir()
	rs := []spec.Resource{
		execRes("e", "sleep", "300"),
		appRes(appDir(t, dir+"/calls", map[string]string{"START": "", "STOP": "", "FM_CHECK": "exit 1"})),
		ocfRes("ocf:vigil-test:Env", nil),
		{Name: "v", Kind: spec.KindVolume, Import: []string{"true"}, Deport: []string{"true"}, Check: []string{"false"}},
	}
	all := append(append(append([]Phase{Probe}, StartSequence...), Check), StopSequence...)
	all = append(all, AbortSequence...)
	for _, r := range rs {
		res := mustNew(t, "svc", r, env)
		for _, p := range all {
			got := res.Run(t.Context(), p, Call{Timeout: 5 * time.Second})
			if got.Resource != r.Name || got.Kind != r.Kind || got.Phase != p {
				t.Errorf("%s %s: result names %s %s %s", r.Kind, p, got.Resource, got.Kind, got.Phase)
			}
			if got.Status != OK && got.Err == "" {
				t.Errorf("%s %s: status %s without a reason", r.Kind, p, got.Status)
			}
			if got.Skipped && (got.Status != OK || got.Method != "") {
				t.Errorf("%s %s: skipped but %+v", r.Kind, p, got)
			}
			if len(got.Output) > MaxOutputLines {
				t.Errorf("%s %s: %d output lines", r.Kind, p, len(got.Output))
			}
		}
	}
}

func TestStatusSeverityText(t *testing.T) {
	b, err := json.Marshal(Result{Status: NotRunning, Severity: Fatal})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"Status":"not running"`) || !strings.Contains(string(b), `"Severity":"fatal"`) {
		t.Errorf("JSON %s", b)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil || r.Status != NotRunning || r.Severity != Fatal {
		t.Errorf("round trip: %+v %v", r, err)
	}
	var s Status
	if err := s.UnmarshalText([]byte("dead")); err == nil {
		t.Error("status dead accepted")
	}
	if Status(7).String() != "status(7)" || Severity(-1).String() != "severity(-1)" {
		t.Error("out-of-range names")
	}
}

func TestTail(t *testing.T) {
	tl := newTail(3, 16, "reason:")
	for _, w := range []string{"one\ntw", "o\r\nreason: disk\n", "0123456789abcdef0\n", "\xffééééé", "éé"} {
		if _, err := tl.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	lines, marked := tl.lines()
	want := []string{"reason: disk", "0123456789abcdef", "\uFFFDéééééé"[:15]}
	if strings.Join(lines, "|") != strings.Join(want, "|") || marked != "disk" {
		t.Errorf("lines %q marked %q; want %q and %q", lines, marked, want, "disk")
	}
	for _, l := range lines {
		if len(l) > 16 {
			t.Errorf("line %q longer than 16 bytes", l)
		}
	}
}

func TestParseStat(t *testing.T) {
	line := "4242 (we) ird (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615\n"
	st, err := parseStat([]byte(line))
	if err != nil || st.state != 'S' || st.pgrp != 4242 || st.start != 987654 {
		t.Errorf("parseStat: %+v %v", st, err)
	}
	for _, bad := range []string{"", "4242 (x S 1", "4242 (x) S 1 2", "4242 (x) S 1 x 1 0 -1 1 1 0 0 0 1 2 0 0 20 0 1 0 5"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestSecondsArg(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", time.Minute: "60"} {
		if got := secondsArg(d); got != want {
			t.Errorf("secondsArg(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestDefaultTimeouts(t *testing.T) {
	b := base{res: spec.Resource{Timeouts: spec.Timeouts{Start: spec.Duration(time.Second), Stop: spec.Duration(2 * time.Second), Monitor: spec.Duration(3 * time.Second)}}}
	for p, want := range map[Phase]time.Duration{Import: time.Second, FMStart: time.Second, FMStop: 2 * time.Second, Abort: 2 * time.Second, Deport: 2 * time.Second, Check: 3 * time.Second, Probe: 3 * time.Second} {
		if got := b.timeout(p, Call{}); got != want {
			t.Errorf("timeout(%s) = %s, want %s", p, got, want)
		}
	}
	if got := b.timeout(Stop, Call{Timeout: time.Minute}); got != time.Minute {
		t.Errorf("the call's timeout is not used: %s", got)
	}
	if got := (&base{}).timeout(Start, Call{}); got != spec.DefaultStartTimeout {
		t.Errorf("no timeouts at all: %s", got)
	}
}
