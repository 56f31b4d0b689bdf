package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fenceAgent writes a fence agent for the local cluster: action=off kills
// the member's agent process group (its exec services die with it), like a
// power switch. It logs every call.
func fenceAgent(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "fence_local")
	script := `#!/bin/sh
while IFS='=' read -r k v; do
  case "$k" in action) action=$v;; nodename) node=$v;; dir) dir=$v;; esac
done
echo "$action $node" >> "$dir/fence.log"
[ "$action" = off ] || exit 0
pid=$(cat "$dir/$node.pid" 2>/dev/null) || exit 0
kill -9 -"$pid" 2>/dev/null
exit 0
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFencingFreeze: with no-quorum-policy=freeze a member keeps its services
// when it loses its lease, so the director must fence it before starting
// them elsewhere. A hung (SIGSTOPped) owner is fenced, then the service
// moves, and its own record shows no two members ran it at once.
func TestFencingFreeze(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	if r := c.cli(0, "settings", "set", "no-quorum-policy=freeze"); r.code == 0 || !strings.Contains(r.out, "needs fencing") {
		t.Errorf("freeze without fencing: exit %d: %s", r.code, r.out)
	}
	agent := fenceAgent(t, dir)
	c.mustCLI(0, "fence", "add", "power", "--agent", agent, "--member", "m1", "--member", "m2", "--member", "m3", "--option", "dir="+dir)
	if out := c.mustCLI(1, "fence", "list"); !strings.Contains(out, "power") || !strings.Contains(out, "m1,m2,m3") {
		t.Errorf("fence list: %s", out)
	}
	c.mustCLI(0, "settings", "set", "no-quorum-policy=freeze")
	for _, m := range c.Members {
		os.WriteFile(filepath.Join(dir, m.Name+".pid"), []byte(fmt.Sprint(m.Pid())), 0o644)
	}
	st, _ := c.status(0)
	favored := "m2, m3, m1"
	if st.Director == "m2" {
		favored = "m3, m1, m2"
	}
	log := filepath.Join(t.TempDir(), "rec.log")
	if out, err := c.Apply(t.Context(), 0, recorder(log, favored)); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, _ := c.waitOnline(0, "rec", "", 30*time.Second)
	owner := c.index(s.Owner)
	watcher := c.index(st.Director)
	time.Sleep(time.Second)
	t0 := time.Now()
	c.Pause(owner)
	s2, took := c.waitOnline(watcher, "rec", s.Owner, 30*time.Second)
	t.Logf("rec moved from the hung %s to %s after %s", s.Owner, s2.Owner, took)
	fl, _ := os.ReadFile(filepath.Join(dir, "fence.log"))
	if !strings.Contains(string(fl), "off "+s.Owner) {
		t.Errorf("the hung owner was not fenced; fence log: %q", fl)
	}
	c.eventually(10*time.Second, "the fenced agent is gone", func() (bool, string) { return !c.Members[owner].Running(), "running" })
	time.Sleep(500 * time.Millisecond)
	ivs := intervals(t, log)
	for _, iv := range ivs {
		t.Logf("%s epoch %s: %s .. %s", iv.member, iv.epoch, time.Unix(0, iv.start).Format("15:04:05.000"), time.Unix(0, iv.end).Format("15:04:05.000"))
	}
	checkNoOverlap(t, ivs)
	_ = t0
	// The fenced member comes back; its fence record is cleared.
	if err := c.StartAgent(owner); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	// Before its first lease: a director that finds a fence record knows
	// the member has held no lease since.
	c.waitLog(20*time.Second, "fence record is cleared before its lease", "member="+c.Members[owner].Name)
}
