package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
)

// recorder is an exec service that appends "member epoch unix-nanos" to log
// every 10 ms while it runs: the service itself records where it ran.
func recorder(log string, favored string) string {
	return fmt.Sprintf(`service: rec
resources:
  - name: writer
    kind: exec
    command: ["/bin/sh", "-c", "while :; do echo \"$VIGIL_MEMBER $VIGIL_EPOCH $(date +%%s%%N)\" >> %s; sleep 0.01; done"]
placement:
  favored: [%s]
monitor_interval: 500ms
`, log, favored)
}

type interval struct {
	member     string
	epoch      string
	start, end int64
}

// intervals reads the recorder's log into intervals of one (member, epoch)
// each, split where the record pauses for more than 300 ms (so two runs
// with the same epoch show as two intervals).
func intervals(t *testing.T, log string) []interval {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		k  string
		ts int64
	}
	var recs []rec
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		ts, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			continue
		}
		recs = append(recs, rec{f[0] + " " + f[1], ts})
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ts < recs[j].ts })
	open := map[string]*interval{}
	var out []interval
	for _, r := range recs {
		iv, ok := open[r.k]
		if ok && r.ts-iv.end > int64(300*time.Millisecond) {
			out = append(out, *iv)
			ok = false
		}
		if !ok {
			f := strings.Fields(r.k)
			iv = &interval{member: f[0], epoch: f[1], start: r.ts, end: r.ts}
			open[r.k] = iv
		}
		iv.end = r.ts
	}
	for _, iv := range open {
		out = append(out, *iv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

// checkNoOverlap fails if two members ran the service at the same instant.
func checkNoOverlap(t *testing.T, ivs []interval) {
	t.Helper()
	for i := range ivs {
		for j := i + 1; j < len(ivs); j++ {
			a, b := ivs[i], ivs[j]
			if a.member != b.member && a.start <= b.end && b.start <= a.end {
				t.Errorf("split-brain: %s (epoch %s) ran %s..%s while %s (epoch %s) ran %s..%s", a.member, a.epoch,
					time.Unix(0, a.start).Format("15:04:05.000"), time.Unix(0, a.end).Format("15:04:05.000"),
					b.member, b.epoch, time.Unix(0, b.start).Format("15:04:05.000"), time.Unix(0, b.end).Format("15:04:05.000"))
			}
		}
	}
}

func (c *cluster) service(i int, name string) (*client.ServiceInfo, error) {
	cl := c.Client(i)
	defer cl.Close()
	d, err := cl.Service(c.t.Context(), name)
	if err != nil {
		return nil, err
	}
	return &d.ServiceInfo, nil
}

func (c *cluster) waitOnline(i int, name string, not string, limit time.Duration) (*client.ServiceInfo, time.Duration) {
	c.t.Helper()
	var s *client.ServiceInfo
	d := c.eventually(limit, fmt.Sprintf("m%d sees %s ONLINE elsewhere than %q", i+1, name, not), func() (bool, string) {
		var err error
		s, err = c.service(i, name)
		if err != nil {
			return false, err.Error()
		}
		return s.State == "ONLINE" && s.Owner != not, fmt.Sprintf("%s on %s: %s", s.State, s.Owner, s.Reason)
	})
	return s, d
}

// TestServiceFailover: an exec service runs on its favored member; the
// owner crashes (agent and service killed); the service runs elsewhere, and
// the service's own record shows it never ran on two members at once.
func TestServiceFailover(t *testing.T) {
	c := startCluster(t, 3)
	log := filepath.Join(t.TempDir(), "rec.log")
	if out, err := c.Apply(t.Context(), 0, recorder(log, "m1, m2, m3")); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, took := c.waitOnline(1, "rec", "", 30*time.Second)
	t.Logf("rec ONLINE on %s after %s", s.Owner, took)
	if s.Owner != "m1" {
		t.Errorf("rec runs on %s, want its favored m1", s.Owner)
	}
	out := c.mustCLI(2, "service", "why", "rec")
	if !strings.Contains(out, "m1") {
		t.Errorf("why: %s", out)
	}
	c.mustCLI(0, "service", "list")
	time.Sleep(time.Second)
	owner := c.index(s.Owner)
	watcher := (owner + 1) % 3
	c.Crash(owner)
	s2, took := c.waitOnline(watcher, "rec", s.Owner, 30*time.Second)
	t.Logf("rec moved from %s to %s %s after the crash", s.Owner, s2.Owner, took)
	time.Sleep(time.Second)
	// The old owner returns; the service stays where it runs (no failback).
	if err := c.StartAgent(owner); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	s3, _ := c.service(watcher, "rec")
	if s3.Owner != s2.Owner || s3.State != "ONLINE" {
		t.Errorf("after the old owner returned: %s on %s, want ONLINE on %s (stickiness)", s3.State, s3.Owner, s2.Owner)
	}
	// Graceful relocation back to m1.
	c.mustCLI(watcher, "service", "relocate", "rec", "--to", "m1")
	c.eventually(30*time.Second, "relocated to m1", func() (bool, string) {
		s, err := c.service(watcher, "rec")
		if err != nil {
			return false, err.Error()
		}
		return s.State == "ONLINE" && s.Owner == "m1", s.State + " " + s.Owner + " " + s.Reason
	})
	time.Sleep(500 * time.Millisecond)
	c.mustCLI(1, "service", "offline", "rec")
	c.eventually(20*time.Second, "offline", func() (bool, string) {
		s, err := c.service(1, "rec")
		return err == nil && s.Owner == "", fmt.Sprint(s)
	})
	ivs := intervals(t, log)
	for _, iv := range ivs {
		t.Logf("%s epoch %s: %s .. %s", iv.member, iv.epoch, time.Unix(0, iv.start).Format("15:04:05.000"), time.Unix(0, iv.end).Format("15:04:05.000"))
	}
	if len(ivs) < 3 {
		t.Errorf("want at least 3 runs (m1, the failover member, m1 again), got %d", len(ivs))
	}
	checkNoOverlap(t, ivs)
	c.mustCLI(1, "service", "delete", "rec")
	if out := c.mustCLI(1, "service", "list"); strings.Contains(out, "rec") {
		t.Errorf("deleted service still listed: %s", out)
	}
}

// TestOCFDummy runs Debian's unmodified ocf:heartbeat:Dummy as a service:
// its meta-data refuses an unknown parameter at apply time, and the service
// moves when its member is powered off.
func TestOCFDummy(t *testing.T) {
	if _, err := os.Stat("/usr/lib/ocf/resource.d/heartbeat/Dummy"); err != nil {
		if os.Getenv("VIGIL_REQUIRE_LAB") == "1" {
			t.Fatalf("ocf:heartbeat:Dummy is missing (install resource-agents): %v", err)
		}
		t.Skipf("ocf:heartbeat:Dummy is missing (install Debian's resource-agents): %v", err)
	}
	c := startCluster(t, 3)
	bad := "service: dummy\nresources:\n  - name: d\n    kind: ocf\n    agent: ocf:heartbeat:Dummy\n    params: {colour: blue}\n"
	if out, err := c.Apply(t.Context(), 0, bad); err == nil || !strings.Contains(out, "colour") {
		t.Errorf("an unknown OCF parameter was accepted: %v %s", err, out)
	}
	good := "service: dummy\nplacement: {favored: [m2, m3, m1]}\nmonitor_interval: 500ms\nresources:\n  - name: d\n    kind: ocf\n    agent: ocf:heartbeat:Dummy\n    params: {fake: hello}\n"
	if out, err := c.Apply(t.Context(), 0, good); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	if out, _ := c.Apply(t.Context(), 1, good); !strings.Contains(out, "unchanged") {
		t.Errorf("a second apply must change nothing: %s", out)
	}
	s, _ := c.waitOnline(0, "dummy", "", 30*time.Second)
	if s.Owner != "m2" {
		t.Errorf("dummy on %s, want m2", s.Owner)
	}
	c.Crash(c.index(s.Owner))
	s2, took := c.waitOnline(0, "dummy", s.Owner, 30*time.Second)
	t.Logf("dummy moved to %s %s after the crash", s2.Owner, took)
}

// TestRestartInPlaceAndFailed: a service whose process dies is restarted in
// place by its monitor (a new epoch on the same member); a service that
// cannot start anywhere ends FAILED with the reason, not in a loop, and
// `vigil service clear` tries it again.
func TestRestartInPlaceAndFailed(t *testing.T) {
	c := startCluster(t, 3)
	log := filepath.Join(t.TempDir(), "rec.log")
	if out, err := c.Apply(t.Context(), 0, recorder(log, "m2, m3, m1")); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, _ := c.waitOnline(0, "rec", "", 30*time.Second)
	// Kill the service's process (not the agent).
	pidFile := filepath.Join(c.Members[c.index(s.Owner)].Dir, "run", "rec.writer.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.eventually(20*time.Second, "restarted in place", func() (bool, string) {
		s2, err := c.service(0, "rec")
		if err != nil {
			return false, err.Error()
		}
		return s2.State == "ONLINE" && s2.Owner == s.Owner && s2.Epoch > s.Epoch, fmt.Sprintf("%s on %s epoch %d", s2.State, s2.Owner, s2.Epoch)
	})
	if out := c.mustCLI(0, "service", "show", "rec"); !strings.Contains(out, "failed on "+s.Owner+" 1 time") {
		t.Errorf("show must count the failure:\n%s", out)
	}

	bad := "service: broken\nresources:\n  - name: x\n    kind: exec\n    command: [/bin/sh, -c, 'echo cannot open /etc/broken.conf; exit 3']\n"
	if out, err := c.Apply(t.Context(), 0, bad); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	c.eventually(30*time.Second, "broken is FAILED", func() (bool, string) {
		s, err := c.service(1, "broken")
		if err != nil {
			return false, err.Error()
		}
		return s.State == "FAILED", s.State + ": " + s.Reason
	})
	time.Sleep(2 * time.Second)
	s3, _ := c.service(1, "broken")
	if s3.State != "FAILED" || !strings.Contains(s3.Reason, "m1") || !strings.Contains(s3.Reason, "m3") {
		t.Errorf("FAILED must stay and name the members: %s: %s", s3.State, s3.Reason)
	}
	why := c.mustCLI(2, "service", "why", "broken")
	if !strings.Contains(why, "cannot open /etc/broken.conf") {
		t.Errorf("why must show what the program said:\n%s", why)
	}
	epoch := s3.Epoch
	c.mustCLI(0, "service", "clear", "broken")
	c.eventually(20*time.Second, "clear retries it", func() (bool, string) {
		s, err := c.service(1, "broken")
		if err != nil {
			return false, err.Error()
		}
		return s.Epoch > epoch, fmt.Sprintf("%s epoch %d", s.State, s.Epoch)
	})
}

// appAgent writes a method agent whose START daemonizes the recorder (it
// outlives START, as real daemons do), STOP kills it, FM_CHECK checks it,
// and every method call is appended to calls.
func appAgent(t *testing.T, dir, log, calls string) string {
	t.Helper()
	ad := filepath.Join(dir, "methods")
	os.MkdirAll(ad, 0o755)
	pid := filepath.Join(dir, "$VIGIL_MEMBER.pid")
	methods := map[string]string{
		"START": fmt.Sprintf(`nohup sh -c 'while :; do echo "$VIGIL_MEMBER $VIGIL_EPOCH $(date +%%s%%N)" >> %s; sleep 0.01; done' >/dev/null 2>&1 &
echo $! > %s`, log, pid),
		"STOP":      fmt.Sprintf(`[ -f %[1]s ] && kill $(cat %[1]s) 2>/dev/null; rm -f %[1]s; exit 0`, pid),
		"FM_CHECK":  fmt.Sprintf(`[ -f %[1]s ] && kill -0 $(cat %[1]s) 2>/dev/null`, pid),
		"START_NET": "exit 0",
		"STOP_NET":  "exit 0",
	}
	for m, body := range methods {
		script := fmt.Sprintf("#!/bin/sh\necho \"$VIGIL_MEMBER %s $*\" >> %s\n%s\n", m, calls, body)
		if err := os.WriteFile(filepath.Join(ad, m), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return ad
}

// TestAppServiceFailover: a method-agent (app) service whose START leaves a
// daemon behind; the owner is powered off (agent, methods and daemon
// killed); the service runs elsewhere, never on two members at once, and the
// methods were called as DESIGN.md says.
func TestAppServiceFailover(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	log, calls := filepath.Join(dir, "rec.log"), filepath.Join(dir, "calls.log")
	svc := fmt.Sprintf("service: app\nplacement: {favored: [m2, m3, m1]}\nmonitor_interval: 500ms\nresources:\n  - name: methods\n    kind: app\n    dir: %s\n", appAgent(t, dir, log, calls))
	if out, err := c.Apply(t.Context(), 0, svc); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, _ := c.waitOnline(0, "app", "", 30*time.Second)
	time.Sleep(time.Second)
	c.Crash(c.index(s.Owner))
	s2, took := c.waitOnline(0, "app", s.Owner, 30*time.Second)
	t.Logf("app moved from %s to %s %s after the crash", s.Owner, s2.Owner, took)
	time.Sleep(time.Second)
	ivs := intervals(t, log)
	for _, iv := range ivs {
		t.Logf("%s epoch %s: %s .. %s", iv.member, iv.epoch, time.Unix(0, iv.start).Format("15:04:05.000"), time.Unix(0, iv.end).Format("15:04:05.000"))
	}
	if len(ivs) < 2 {
		t.Errorf("want runs on two members, got %d", len(ivs))
	}
	checkNoOverlap(t, ivs)
	b, _ := os.ReadFile(calls)
	got := string(b)
	t.Logf("method calls:\n%s", got)
	for _, want := range []string{s.Owner + " START app ", s.Owner + " START_NET app ", s2.Owner + " START app "} {
		if !strings.Contains(got, want) {
			t.Errorf("no call %q", want)
		}
	}
}
