package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/agent"
)

// contribAlert is the absolute path of a sample alert agent of the repo.
func contribAlert(t *testing.T, name string) string {
	_, file, _, _ := runtime.Caller(0)
	p, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "contrib", "alerts", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// findEvent returns the first event for which match holds.
func findEvent(evs []client.Event, match func(*client.Event) bool) *client.Event {
	for i := range evs {
		if match(&evs[i]) {
			return &evs[i]
		}
	}
	return nil
}

// TestEventsAndAlerts follows a failover through the event log and the
// sample file alert: the crash of the owner shows as a member event, the
// service's transitions with their epochs, the methods the new owner ran,
// and the alert gets each event in its environment. A failing alert is an
// event, and `vigil alert test` shows each alert's outcome.
func TestEventsAndAlerts(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	alertLog := filepath.Join(dir, "alerts.log")
	c.mustCLI(0, "alert", "add", "file", "--path", contribAlert(t, "alert-file.sh"), "--recipient", alertLog,
		"--kind", "member", "--kind", "service", "--kind", "method", "--kind", "alert")
	broken := filepath.Join(dir, "broken.sh")
	os.WriteFile(broken, []byte("#!/bin/sh\necho cannot reach the pager >&2\nexit 3\n"), 0o755)
	c.mustCLI(0, "alert", "add", "broken", "--path", broken, "--kind", "service", "--timeout", "5s")
	if r := c.cli(0, "alert", "add", "bad", "--path", "relative.sh"); r.code != 2 || !strings.Contains(r.out, "absolute path") {
		t.Errorf("relative path: exit %d: %s", r.code, r.out)
	}
	t.Log(c.mustCLI(1, "alert", "list"))

	log := filepath.Join(dir, "rec.log")
	if out, err := c.Apply(t.Context(), 0, recorder(log, "m1, m2, m3")); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, _ := c.waitOnline(1, "rec", "", 30*time.Second)
	owner := c.index(s.Owner)
	watcher := (owner + 1) % 3
	// The link matrix: every member hears every other, with a round trip.
	c.eventually(10*time.Second, "every link measured", func() (bool, string) {
		var rs []client.LinkReport
		if err := json.Unmarshal([]byte(c.mustCLI(watcher, "links", "--json")), &rs); err != nil {
			return false, err.Error()
		}
		n := 0
		for _, r := range rs {
			for _, l := range r.Links {
				if l.Up && l.Sent > 0 && l.Lost == 0 && l.RTTMicros > 0 {
					n++
				}
			}
		}
		return len(rs) == 3 && n == 6, fmt.Sprint(rs)
	})
	if out := c.mustCLI(watcher, "links"); !strings.Contains(out, "no problems") {
		t.Errorf("vigil links: %s", out)
	}
	time.Sleep(time.Second)
	c.Crash(owner)
	s2, took := c.waitOnline(watcher, "rec", s.Owner, 30*time.Second)
	t.Logf("rec moved from %s to %s %s after the crash", s.Owner, s2.Owner, took)

	var evs []client.Event
	c.eventually(20*time.Second, "the failover in the event log", func() (bool, string) {
		evs = decodeJSONLines(t, c.mustCLI(watcher, "events", "--json"))
		down := findEvent(evs, func(e *client.Event) bool {
			return e.Kind == client.EventMember && e.Member == s.Owner && strings.Contains(e.Message, "is DOWN")
		})
		online := findEvent(evs, func(e *client.Event) bool {
			return e.Kind == client.EventService && e.Service == "rec" && e.Member == s2.Owner && strings.Contains(e.Message, "ONLINE on "+s2.Owner)
		})
		started := findEvent(evs, func(e *client.Event) bool {
			return e.Kind == client.EventMethod && e.Member == s2.Owner && strings.Contains(e.Message, "start succeeded") && len(e.Steps) > 0
		})
		return down != nil && online != nil && started != nil, "down/online/started missing"
	})
	text := c.mustCLI(watcher, "events", "--steps")
	t.Logf("vigil events --steps:\n%s", text)
	for _, want := range []string{"is the director", "applied service definitions: rec", "set alert file", "(by root@socket [admin])", "STARTING on " + s2.Owner} {
		if !strings.Contains(text, want) {
			t.Errorf("the event log lacks %q", want)
		}
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq <= evs[i-1].Seq {
			t.Fatalf("events out of order: %d after %d", evs[i].Seq, evs[i-1].Seq)
		}
	}
	// Filters.
	for _, e := range decodeJSONLines(t, c.mustCLI(watcher, "events", "--json", "--service", "rec", "--kind", "service")) {
		if e.Service != "rec" || e.Kind != client.EventService {
			t.Errorf("filter let through %+v", e)
		}
	}
	if r := c.cli(watcher, "events", "--kind", "nope"); r.code != 2 || !strings.Contains(r.out, "not an event kind") {
		t.Errorf("--kind nope: exit %d: %s", r.code, r.out)
	}

	// The link matrix names the crashed member.
	if out := c.mustCLI(watcher, "links"); !strings.Contains(out, s.Owner+" did not answer") || !strings.Contains(out, "does not hear "+s.Owner) {
		t.Errorf("vigil links after the crash of %s: %s", s.Owner, out)
	}
	// The metrics count the move and show the state.
	c.eventually(10*time.Second, "the metrics show the move", func() (bool, string) {
		m := scrape(t, c.Members[watcher].Dir)
		return strings.Contains(m, `vigil_service_moves_total{service="rec"} 1`), m
	})
	m := scrape(t, c.Members[watcher].Dir)
	for _, want := range []string{"vigil_service_move_seconds_count 1", "vigil_quorum 1", `vigil_member_up{member="` + s.Owner + `",state="DOWN"} 0`,
		`vigil_service_state{owner="` + s2.Owner + `",service="rec",state="ONLINE"} 1`, `vigil_method_seconds_count{method="exec",result="ok"}`,
		"vigil_lease_renewals_total", `vigil_events_total{kind="service"}`, "vigil_director_changes_total", "vigil_dlm_sessions",
		"go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(m, want) {
			t.Errorf("the metrics lack %q", want)
		}
	}
	if st, err := c.status(watcher); err == nil && st.Director != "" {
		if m := scrape(t, c.Members[c.index(st.Director)].Dir); !strings.Contains(m, `vigil_cdb_apply_seconds_bucket{op="decide"`) ||
			!strings.Contains(m, "vigil_is_director 1") {
			t.Errorf("the director's metrics lack the apply latency or vigil_is_director 1")
		}
	}

	// The file alert got the failover, with the event in its environment.
	c.eventually(20*time.Second, "the alert log has the failover", func() (bool, string) {
		b, _ := os.ReadFile(alertLog)
		return strings.Contains(string(b), "kind=service") && strings.Contains(string(b), "service=rec") &&
			strings.Contains(string(b), "member="+s.Owner) && strings.Contains(string(b), "kind=member"), string(b)
	})
	// The broken alert's failures are events, with its exit code and output.
	c.eventually(20*time.Second, "the broken alert's failure is an event", func() (bool, string) {
		evs := decodeJSONLines(t, c.mustCLI(watcher, "events", "--json", "--kind", "alert"))
		e := findEvent(evs, func(e *client.Event) bool { return e.Alert == "broken" && e.RC != nil && *e.RC == 3 })
		return e != nil && strings.Contains(e.Message, "exit 3") && strings.Contains(e.Message, "cannot reach the pager"), ""
	})
	// ... which the file alert hears of (it asked for alert events).
	c.eventually(20*time.Second, "the file alert hears of the broken one", func() (bool, string) {
		b, _ := os.ReadFile(alertLog)
		return strings.Contains(string(b), "kind=alert") && strings.Contains(string(b), "alert broken failed"), string(b)
	})

	// vigil alert test: one outcome per alert; the broken one fails.
	r := c.cli(watcher, "alert", "test", "file")
	t.Logf("vigil alert test file: exit %d\n%s", r.code, r.out)
	if r.code != 0 || !strings.Contains(r.out, "alert file ran for test event") {
		t.Errorf("alert test file: exit %d: %s %s", r.code, r.out, "")
	}
	r = c.cli(watcher, "alert", "test")
	if r.code != 1 || !strings.Contains(r.out, "alert broken failed") || !strings.Contains(r.out, "alert file ran") {
		t.Errorf("alert test (all): exit %d: %s %s", r.code, r.out, "")
	}
	if b, _ := os.ReadFile(alertLog); !strings.Contains(string(b), "test=true") {
		t.Errorf("the test event did not reach the file alert: %s", b)
	}
	if r := c.cli(watcher, "alert", "test", "nope"); r.code != 1 || !strings.Contains(r.out, "does not exist") {
		t.Errorf("alert test nope: exit %d: %s", r.code, r.out)
	}

	// Following: an operator command shows up while following.
	cl := c.Client(watcher)
	defer cl.Close()
	last := evs[len(evs)-1].Seq
	done := make(chan []client.Event, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		evs, _ := cl.Events(ctx, client.EventFilter{After: last, Kind: client.EventOperator, Wait: 15 * time.Second})
		done <- evs
	}()
	time.Sleep(300 * time.Millisecond)
	c.mustCLI(watcher, "maintenance", "on")
	c.mustCLI(watcher, "maintenance", "off")
	select {
	case got := <-done:
		if len(got) == 0 || !strings.Contains(got[0].Message, "maintenance on") {
			t.Errorf("the long poll got %+v", got)
		}
	case <-time.After(25 * time.Second):
		t.Error("the long poll did not return")
	}
	c.mustCLI(watcher, "alert", "remove", "broken")

	// vigil status --watch redraws in place until stopped.
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--data-dir", c.Members[watcher].Dir, "status", "--watch", "--interval", "300ms")
	out, _ := cmd.Output()
	frames := strings.Split(string(out), "\x1b[H\x1b[2J")
	t.Logf("vigil status --watch, last of %d frames:\n%s", len(frames)-1, frames[len(frames)-1])
	if len(frames) < 3 || !strings.Contains(frames[len(frames)-1], "latest events:") || !strings.Contains(frames[len(frames)-1], "rec") {
		t.Errorf("status --watch drew %d frames: %q", len(frames)-1, out)
	}
}

// scrape reads /metrics from the agent's Unix socket.
func scrape(t *testing.T, dir string) string {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, agent.SocketFile))
	}}}
	resp, err := hc.Get("http://vigil/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s: %s", resp.Status, b)
	}
	return string(b)
}

func decodeJSONLines(t *testing.T, s string) []client.Event {
	t.Helper()
	var out []client.Event
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		out = append(out, decodeJSON[client.Event](t, line))
	}
	return out
}

// TestExec runs commands on members through their agents: prefixed and
// grouped output, exit codes, a timeout, bad requests, and the audit event.
func TestExec(t *testing.T) {
	c := startCluster(t, 3)
	out := c.mustCLI(0, "exec", "--all", "--", "sh", "-c", "echo hello from $VIGIL_MEMBER")
	for _, m := range []string{"m1", "m2", "m3"} {
		if !strings.Contains(out, m+" | hello from "+m) || !strings.Contains(out, m+" : exit 0") {
			t.Errorf("exec --all lacks %s's line: %s", m, out)
		}
	}
	r := c.cli(1, "exec", "--members", "m1,m3", "--group", "--", "sh", "-c", `[ "$VIGIL_MEMBER" = m1 ] && exit 0; echo failing >&2; exit 4`)
	if r.code != 1 || !strings.Contains(r.out, "=== m3 (exit 4") || !strings.Contains(r.out, "=== m1 (exit 0") || !strings.Contains(r.out, "failed on 1 of 2 members") {
		t.Errorf("exec with a failure: exit %d: %s", r.code, r.out)
	}
	r = c.cli(0, "exec", "--members", "m2", "--timeout", "1s", "--", "sleep", "30")
	if r.code != 1 || !strings.Contains(r.out, "timed out after 1s and was killed") {
		t.Errorf("exec timeout: exit %d: %s", r.code, r.out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"exec", "--all", "uptime"}, 2, "after --"},
		{[]string{"exec", "--", "uptime"}, 2, "--members a,b or --all"},
		{[]string{"exec", "--members", "m9", "--", "uptime"}, 1, "member m9 is not in the cluster"},
		{[]string{"exec", "--all", "--timeout", "1h", "--", "uptime"}, 2, "out of range"},
		{[]string{"exec", "--all", "--", "/no/such/program"}, 1, "not found on m1"},
	} {
		if r := c.cli(0, tc.args...); r.code != tc.code || !strings.Contains(r.out, tc.want) {
			t.Errorf("vigil %v: exit %d: %s (want exit %d with %q)", tc.args, r.code, r.out, tc.code, tc.want)
		}
	}
	c.eventually(10*time.Second, "the exec runs in the event log", func() (bool, string) {
		out := c.mustCLI(2, "events", "--kind", "operator")
		return strings.Contains(out, "exec on m1,m2,m3: sh -c 'echo hello from $VIGIL_MEMBER' → m1 rc=0, m2 rc=0, m3 rc=0  (by root@socket [admin])") &&
			strings.Contains(out, "exec on m2: sleep 30 → m2 rc=-1"), out
	})
}

// TestDoctor checks a healthy cluster, then one with a resource agent gone
// and an alert missing on every member, then a member down.
func TestDoctor(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	prog := filepath.Join(dir, "daemon.sh")
	os.WriteFile(prog, []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755)
	svc := fmt.Sprintf("service: db\nresources:\n  - name: d\n    kind: exec\n    command: [%s]\n", prog)
	if out, err := c.Apply(t.Context(), 0, svc); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	c.waitOnline(0, "db", "", 30*time.Second)
	c.eventually(10*time.Second, "links measured", func() (bool, string) {
		r := c.cli(1, "doctor")
		return r.code == 0, r.out
	})
	out := c.mustCLI(1, "doctor", "--all")
	for _, want := range []string{"ok      quorum", "clock within", "certificate valid until", "link directions clean", "ports accept connections",
		"service db: its 1 resources validate here", "WARN    fencing", "no fence devices"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor --all lacks %q", want)
		}
	}
	alert := filepath.Join(dir, "alert.sh")
	os.WriteFile(alert, []byte("#!/bin/sh\n"), 0o755)
	c.mustCLI(0, "alert", "add", "page", "--path", alert)
	os.Remove(alert)
	os.Chmod(prog, 0o644)
	r := c.cli(2, "doctor")
	if r.code != 1 || !strings.Contains(r.out, "FAIL") || !strings.Contains(r.out, "service db resource d (exec): validate: command: program "+prog+" is not executable") ||
		!strings.Contains(r.out, "alert page: "+alert+" is not an executable file here") {
		t.Errorf("doctor with a broken agent: exit %d: %s", r.code, r.out)
	}
	os.Chmod(prog, 0o755)
	c.Crash(0)
	r = c.cli(1, "doctor", "--json")
	js, _, _ := strings.Cut(r.out, "\nvigil: ") // the exit message on stderr
	rep := decodeJSON[client.DoctorReport](t, js)
	if r.code != 1 || rep.Failures == 0 || findFinding(rep, "reachable", "m1") == nil {
		t.Errorf("doctor with m1 down: exit %d, %+v", r.code, rep)
	}
}

func findFinding(r client.DoctorReport, check, member string) *client.Finding {
	for i := range r.Findings {
		if r.Findings[i].Check == check && r.Findings[i].Member == member {
			return &r.Findings[i]
		}
	}
	return nil
}
