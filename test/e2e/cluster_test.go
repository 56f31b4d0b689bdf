package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/localcluster"
)

// TestFormationAndRestart forms a 3-member cluster through the CLI, checks
// what `vigil members` and `vigil status` show, then restarts every member and
// checks they come back with their state.
func TestFormationAndRestart(t *testing.T) {
	c := startCluster(t, 3)
	members := decodeJSON[[]client.Member](t, c.mustCLI(1, "members", "--json"))
	if len(members) != 3 {
		t.Fatalf("members lists %d members, want 3", len(members))
	}
	directors := 0
	for i, m := range members {
		if m.Name != fmt.Sprintf("m%d", i+1) || m.ID != i+1 {
			t.Errorf("member %d is %s id %d", i, m.Name, m.ID)
		}
		if m.State != client.MemberUp || m.AgentState != client.AgentRunning {
			t.Errorf("%s is %s/%s, want UP/RUNNING", m.Name, m.State, m.AgentState)
		}
		if m.Votes != 1 || len(m.Links) != 1 || m.Links[0].Addr != c.Members[i].Address || !m.Links[0].Up {
			t.Errorf("%s: votes %d links %+v", m.Name, m.Votes, m.Links)
		}
		if m.Since.IsZero() {
			t.Errorf("%s has no since", m.Name)
		}
		switch m.Role {
		case client.RoleDirector:
			directors++
		case client.RoleVoter:
		default:
			t.Errorf("%s has role %s", m.Name, m.Role)
		}
	}
	if directors != 1 {
		t.Errorf("%d directors", directors)
	}
	out := c.mustCLI(2, "status")
	for _, want := range []string{"cluster:        demo", "expected votes: 3", "votes present:  3", "quorum needed:  2", "partition WITH quorum", "NAME", "RUNNING"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	c.mustCLI(0, "settings", "set", "user.before-restart=kept", "description=restart test")

	for i := range c.Members {
		c.Stop(i)
	}
	// One member alone answers from its data dir, and says it may be stale.
	if err := c.StartAgent(1); err != nil {
		t.Fatal(err)
	}
	c.eventually(20*time.Second, "m2 answers alone", func() (bool, string) {
		st, err := c.status(1)
		if err != nil {
			return false, err.Error()
		}
		return len(st.Members) == 3 && st.Stale && !st.Quorum, fmt.Sprintf("%d members stale=%v", len(st.Members), st.Stale)
	})
	r := c.cli(1, "settings")
	if r.code != 0 || !strings.Contains(r.out, "user.before-restart=kept") || !strings.Contains(r.out, "may be stale") {
		t.Errorf("a lone restarted member should read its state with a stale warning; got exit %d: %s", r.code, r.out)
	}
	if out := c.cli(1, "status").out; !strings.Contains(out, "partition WITHOUT quorum: 1 of 3") {
		t.Errorf("status of a lone member: %s", out)
	}
	for _, i := range []int{0, 2} {
		if err := c.StartAgent(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitReady(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	for i := range c.Members {
		if out := c.mustCLI(i, "settings"); !strings.Contains(out, "description=restart test") {
			t.Errorf("m%d lost a setting across the restart: %s", i+1, out)
		}
	}
}

// TestFiveMembers forms 5 members; two may fail and writes still work.
func TestFiveMembers(t *testing.T) {
	c := startCluster(t, 5)
	st, err := c.status(4)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExpectedVotes != 5 || st.QuorumNeeded != 3 || !st.Quorum {
		t.Fatalf("5 members: expected %d needed %d quorum %v", st.ExpectedVotes, st.QuorumNeeded, st.Quorum)
	}
	// Kill two members that are not the director.
	killed := 0
	for i, m := range c.Members {
		if m.Name != st.Director && killed < 2 {
			c.Kill(i)
			killed++
		}
	}
	alive := c.index(st.Director)
	for i, m := range c.Members {
		if !m.Running() {
			c.waitState(alive, c.Members[i].Name, client.MemberDown, 15*time.Second)
		}
	}
	c.mustCLI(alive, "settings", "set", "user.five=3-of-5")
	// A write through a follower is visible on that follower at once.
	for i, m := range c.Members {
		if !m.Running() || m.Name == st.Director {
			continue
		}
		cl := c.Client(i)
		for n := 0; n < 20; n++ {
			v := fmt.Sprint(n)
			if _, err := cl.SetSettings(t.Context(), map[string]string{"user.ryw": v}); err != nil {
				t.Fatal(err)
			}
			s, err := cl.Settings(t.Context())
			if err != nil || s.Settings["user.ryw"] != v {
				t.Fatalf("m%d: read after write saw %q, want %q (%v)", i+1, s.Settings["user.ryw"], v, err)
			}
		}
		cl.Close()
		break
	}
	if out := c.mustCLI(alive, "status"); !strings.Contains(out, "partition WITH quorum: 3 of 5") {
		t.Errorf("status: %s", out)
	}
}

// TestDirectorKill kills the director and checks the others elect a new one
// and see the old one DOWN. The figures are measured by BenchmarkFailover.
func TestDirectorKill(t *testing.T) {
	c := startCluster(t, 3)
	st, err := c.status(0)
	if err != nil {
		t.Fatal(err)
	}
	old := c.index(st.Director)
	other := (old + 1) % 3
	c.Kill(old)
	dir, took := c.waitDirector(other, st.Director, 15*time.Second)
	t.Logf("new director %s after %s", dir, took)
	down := c.waitState(other, st.Director, client.MemberDown, 15*time.Second)
	t.Logf("%s DOWN after %s", st.Director, down)
	st2, _ := c.status(other)
	if m := c.member(st2, st.Director); m.AgentState != client.AgentDown {
		t.Errorf("killed director's agent state is %s, want DOWN", m.AgentState)
	}
	c.mustCLI(other, "settings", "set", "user.after-failover=yes")
	// The old director comes back as a follower with everything.
	if err := c.StartAgent(old); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	c.eventually(10*time.Second, "restarted member has the write", func() (bool, string) {
		r := c.cli(old, "settings")
		return strings.Contains(r.out, "user.after-failover=yes"), r.out
	})
}

// TestMemberKillDown kills a non-director member: it shows DOWN, its agent
// DOWN, and comes back UP after a restart.
func TestMemberKillDown(t *testing.T) {
	c := startCluster(t, 3)
	st, _ := c.status(0)
	victim := 0
	for i, m := range c.Members {
		if m.Name != st.Director {
			victim = i
		}
	}
	watcher := c.index(st.Director)
	c.Kill(victim)
	took := c.waitState(watcher, c.Members[victim].Name, client.MemberDown, 15*time.Second)
	t.Logf("%s DOWN after %s", c.Members[victim].Name, took)
	if err := c.StartAgent(victim); err != nil {
		t.Fatal(err)
	}
	c.waitState(watcher, c.Members[victim].Name, client.MemberUp, 15*time.Second)
}

// TestTwoLinks forms members with two links each; every link is monitored and
// shown.
func TestTwoLinks(t *testing.T) {
	c := startCluster(t, 3, func(o *localcluster.Options) { o.Links = 2 })
	c.eventually(15*time.Second, "both links up everywhere", func() (bool, string) {
		st, err := c.status(2)
		if err != nil {
			return false, err.Error()
		}
		for i, m := range st.Members {
			if len(m.Links) != 2 {
				return false, fmt.Sprintf("%s has %d links", m.Name, len(m.Links))
			}
			for j, l := range m.Links {
				if !l.Up || l.Addr != c.Members[i].Links[j] {
					return false, fmt.Sprintf("%s link %d: %+v", m.Name, j, l)
				}
			}
		}
		return true, ""
	})
	if out := c.mustCLI(0, "members"); strings.Count(out, "(up)") != 6 {
		t.Errorf("members should show 6 links up:\n%s", out)
	}
}
