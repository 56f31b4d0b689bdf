package e2e

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
)

// TestBackupRestore: backup, change, restore brings the settings back;
// corrupt and foreign backups are refused; restore asks first.
func TestBackupRestore(t *testing.T) {
	c := startCluster(t, 3)
	file := filepath.Join(t.TempDir(), "cdb.backup")
	c.mustCLI(0, "settings", "set", "user.a=1", "description=before")
	if out := c.mustCLI(1, "cdb", "backup", file); !strings.Contains(out, "backup of cluster demo") {
		t.Errorf("backup output: %s", out)
	}
	c.mustCLI(2, "settings", "set", "user.a=2", "user.b=3", "description=")
	if r := c.cliIn(0, "no\n", "cdb", "restore", file); r.code == 0 || !strings.Contains(r.out, "restore cancelled") {
		t.Errorf("restore without confirmation: exit %d: %s", r.code, r.out)
	}
	if out := c.mustCLI(0, "settings"); !strings.Contains(out, "user.a=2") {
		t.Errorf("a cancelled restore changed settings: %s", out)
	}
	if r := c.cliIn(0, "yes\n", "cdb", "restore", file); r.code != 0 {
		t.Fatalf("restore: %s", r.out)
	}
	for i := range c.Members {
		c.eventually(10*time.Second, "restored settings on every member", func() (bool, string) {
			out := c.mustCLI(i, "settings")
			return strings.Contains(out, "user.a=1") && strings.Contains(out, "description=before") && !strings.Contains(out, "user.b"), out
		})
	}
	if out := c.mustCLI(0, "cdb", "show"); !strings.Contains(out, "members (3)") || !strings.Contains(out, "m3") {
		t.Errorf("restore must keep the members: %s", out)
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(t.TempDir(), "corrupt.backup")
	bad := strings.Replace(string(data), `user.a`, `user.x`, 1)
	os.WriteFile(corrupt, []byte(bad), 0o600)
	if r := c.cli(0, "cdb", "restore", "--yes", corrupt); r.code == 0 || !strings.Contains(r.out, "corrupt") {
		t.Errorf("corrupt backup: exit %d: %s", r.code, r.out)
	}
	trunc := filepath.Join(t.TempDir(), "trunc.backup")
	os.WriteFile(trunc, data[:len(data)/2], 0o600)
	if r := c.cli(0, "cdb", "restore", "--yes", trunc); r.code == 0 || !strings.Contains(r.out, "not a vigil backup") {
		t.Errorf("truncated backup: exit %d: %s", r.code, r.out)
	}

	other := startCluster(t, 1)
	foreign := filepath.Join(t.TempDir(), "foreign.backup")
	other.mustCLI(0, "cdb", "backup", foreign)
	if r := c.cli(0, "cdb", "restore", "--yes", foreign); r.code == 0 || !strings.Contains(r.out, "a backup restores only on the cluster it was taken of") {
		t.Errorf("foreign backup: exit %d: %s", r.code, r.out)
	}

	show := decodeJSON[client.Config](t, c.mustCLI(1, "cdb", "show", "--json"))
	if show.Cluster.Name != "demo" || len(show.Members) != 3 || show.Cluster.CAFingerprint == "" {
		t.Errorf("cdb show --json: %+v", show)
	}
}

// TestRemoveAndReset: a member cannot remove itself; removing a voter shrinks
// the Raft configuration and stops its agent; reset refuses while the member
// is still in a live cluster unless --force.
func TestRemoveAndReset(t *testing.T) {
	c := startCluster(t, 4)
	if r := c.cli(1, "member", "remove", "m2"); r.code == 0 || !strings.Contains(r.out, "is the member this command runs on") {
		t.Errorf("self removal: exit %d: %s", r.code, r.out)
	}
	if r := c.cli(1, "member", "remove", "nosuch"); r.code == 0 || !strings.Contains(r.out, "member nosuch is not in the cluster") {
		t.Errorf("unknown member: exit %d: %s", r.code, r.out)
	}
	st, _ := c.status(0)
	victim := c.index("m4")
	if st.Director == "m4" {
		victim = c.index("m3")
	}
	name := c.Members[victim].Name
	asker := c.index(st.Director)
	// Reset refuses while the agent runs.
	if r := c.cli(victim, "member", "reset", "--force"); r.code == 0 || !strings.Contains(r.out, "the agent is running") {
		t.Errorf("reset with a running agent: exit %d: %s", r.code, r.out)
	}
	c.mustCLI(asker, "member", "remove", name)
	c.eventually(15*time.Second, "the removed agent stops", func() (bool, string) { return !c.Members[victim].Running(), "running" })
	if !strings.Contains(c.logs.String(), "this member was removed from the cluster") {
		t.Error("the removed agent did not say why it stopped")
	}
	c.eventually(15*time.Second, "the cluster shrinks", func() (bool, string) {
		st, err := c.status(asker)
		if err != nil {
			return false, err.Error()
		}
		return len(st.Members) == 3 && st.ExpectedVotes == 3, st.Director
	})
	c.mustCLI(asker, "settings", "set", "user.after-remove=1")
	// The removed member's certificate no longer opens any API.
	if r := runVigil(t, "", "--data-dir", c.Members[victim].Dir, "--api", c.Members[asker].API, "status"); r.code == 0 || !strings.Contains(r.out, "no longer speaks for a member of this cluster") {
		t.Errorf("a removed member reached the API: exit %d: %s", r.code, r.out)
	}
	// Nor does it start again.
	if err := c.StartAgent(victim); err != nil {
		t.Fatal(err)
	}
	c.eventually(10*time.Second, "the removed agent refuses to start", func() (bool, string) { return !c.Members[victim].Running(), "running" })
	if !strings.Contains(c.logs.String(), "was removed from cluster demo") {
		t.Error("a restarted removed agent did not say it was removed")
	}
	// The removed member's reset needs no --force: no one lists it.
	if out := c.mustCLI(victim, "member", "reset"); !strings.Contains(out, "wiped") {
		t.Errorf("reset: %s", out)
	}
	if _, err := os.Stat(filepath.Join(c.Members[victim].Dir, "vigil.yaml")); err == nil {
		t.Error("reset left vigil.yaml")
	}
	// A stopped member that the cluster still lists needs --force.
	other := 0
	for i, m := range c.Members {
		if m.Running() && m.Name != st.Director {
			other = i
		}
	}
	c.Stop(other)
	if r := c.cli(other, "member", "reset"); r.code == 0 || !strings.Contains(r.out, "is still part of cluster demo") {
		t.Errorf("reset of a listed member: exit %d: %s", r.code, r.out)
	}
	if r := c.cli(other, "member", "reset", "--force"); r.code != 0 {
		t.Errorf("reset --force: %s", r.out)
	}
}

// TestRemoveRefusedWithoutQuorumAfter: with one voter down, removing another
// running voter would leave the cluster without quorum, so it is refused.
func TestRemoveRefusedWithoutQuorumAfter(t *testing.T) {
	c := startCluster(t, 3)
	st, _ := c.status(0)
	dir := c.index(st.Director)
	down, other := (dir+1)%3, (dir+2)%3
	c.Kill(down)
	c.waitState(dir, c.Members[down].Name, client.MemberDown, 15*time.Second)
	r := c.cli(dir, "member", "remove", c.Members[other].Name)
	if r.code != 1 || !strings.Contains(r.out, "would leave 1 of 2 votes present, 2 needed") {
		t.Errorf("unsafe removal: exit %d: %s", r.code, r.out)
	}
	// Removing the member that is down is safe: 2 of 2 remain.
	c.mustCLI(dir, "member", "remove", c.Members[down].Name)
	c.mustCLI(other, "settings", "set", "user.x=1")
}

// TestLogLevel changes log levels on one member and on all.
func TestLogLevel(t *testing.T) {
	c := startCluster(t, 3)
	out := c.mustCLI(0, "log-level", "debug", "--all")
	for _, m := range []string{"m1", "m2", "m3"} {
		if !strings.Contains(out, m+": log level debug") {
			t.Errorf("log-level --all: %s", out)
		}
	}
	c.mustCLI(0, "log-level", "warn", "--member", "m2")
	if r := c.cli(0, "log-level", "loud"); r.code != 2 || !strings.Contains(r.out, `log level "loud" is not known`) {
		t.Errorf("bad level: exit %d: %s", r.code, r.out)
	}
	c.eventually(5*time.Second, "the change is logged", func() (bool, string) {
		return strings.Count(c.logs.String(), "log level changed") >= 4, ""
	})
}

// TestAPIOverTCP: the TCP API takes a member certificate or the admin token,
// and refuses a caller with neither.
func TestAPIOverTCP(t *testing.T) {
	c := startCluster(t, 1)
	api := c.Members[0].API
	if r := runVigil(t, "", "--data-dir", c.Members[0].Dir, "--api", api, "status"); r.code != 0 || !strings.Contains(r.out, "partition WITH quorum") {
		t.Errorf("status over TCP with the member certificate: %s", r.out)
	}
	tok, _ := os.ReadFile(filepath.Join(c.Members[0].Dir, "admin.token"))
	ca := filepath.Join(c.Members[0].Dir, "ca.crt")
	empty := t.TempDir()
	if r := runVigil(t, "", "--data-dir", empty, "--api", api, "--ca", ca, "--token", strings.TrimSpace(string(tok)), "members"); r.code != 0 {
		t.Errorf("members over TCP with the admin token: %s", r.out)
	}
	if r := runVigil(t, "", "--data-dir", empty, "--api", api, "--ca", ca, "--token", "wrong", "members"); r.code != 1 || !strings.Contains(r.out, "this token is not valid here") {
		t.Errorf("wrong token: exit %d: %s", r.code, r.out)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get("https://" + api + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("no credentials: status %d, want 403", resp.StatusCode)
	}
}
