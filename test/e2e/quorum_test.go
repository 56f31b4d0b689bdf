package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
)

// TestQuorumLoss stops 2 of 3 voters: writes are refused at once with exit
// code 3 and the vote count, reads answer from the local copy with a stale
// warning; after one member returns, writes work and no acknowledged write is
// lost.
func TestQuorumLoss(t *testing.T) {
	c := startCluster(t, 3)
	st, _ := c.status(0)
	keep := c.index(st.Director) // keep the director: the hardest case

	// A writer records every acknowledged write while members die.
	var mu sync.Mutex
	acked := map[string]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl := c.Client(keep)
		defer cl.Close()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			k, v := fmt.Sprintf("user.w%04d", n), fmt.Sprint(n)
			if _, err := cl.SetSettings(t.Context(), map[string]string{k: v}); err == nil {
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	for i := range c.Members {
		if i != keep {
			c.Kill(i)
		}
	}
	for i := range c.Members {
		if i != keep {
			c.waitState(keep, c.Members[i].Name, client.MemberDown, 15*time.Second)
		}
	}
	close(stop)
	wg.Wait()

	start := time.Now()
	r := c.cli(keep, "settings", "set", "user.refused=1")
	took := time.Since(start)
	if r.code != 3 || !strings.Contains(r.out, "no quorum: 1 of 3 votes present, 2 needed") {
		t.Errorf("write without quorum: want exit 3 and the vote count, got exit %d: %s", r.code, r.out)
	}
	if took > 3*time.Second {
		t.Errorf("the refusal took %s; it must come at once", took)
	}
	if r := c.cli(keep, "member", "add", "m9", "--address", "127.0.0.1:1"); r.code != 3 || !strings.Contains(r.out, "no quorum") {
		t.Errorf("member add without quorum: exit %d: %s", r.code, r.out)
	}
	r = c.cli(keep, "members")
	if r.code != 0 || !strings.Contains(r.out, "may be stale") || !strings.Contains(r.out, "DOWN") {
		t.Errorf("reads without quorum must answer with a stale warning: exit %d: %s", r.code, r.out)
	}
	if out := c.cli(keep, "status").out; !strings.Contains(out, "partition WITHOUT quorum: 1 of 3") {
		t.Errorf("status: %s", out)
	}

	back := (keep + 1) % 3
	if err := c.StartAgent(back); err != nil {
		t.Fatal(err)
	}
	c.eventually(20*time.Second, "writes work again", func() (bool, string) {
		r := c.cli(keep, "settings", "set", "user.after=1")
		return r.code == 0, r.out
	})
	// The member alone noted its quorum loss while it could not write, and
	// recorded it (with the time it happened) once it could.
	name := c.Members[keep].Name
	c.eventually(10*time.Second, "the quorum events", func() (bool, string) {
		out := c.mustCLI(keep, "events", "--kind", "quorum", "--member", name)
		return strings.Contains(out, name+" lost quorum: 1 of 3 votes present, 2 needed") &&
			strings.Contains(out, name+" has quorum again: 2 of 3 votes present"), out
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d writes acknowledged before and during the loss", len(acked))
	for _, i := range []int{keep, back} {
		cl := c.Client(i)
		s, err := cl.Settings(t.Context())
		cl.Close()
		if err != nil {
			t.Fatal(err)
		}
		c.eventually(10*time.Second, "m"+fmt.Sprint(i+1)+" caught up", func() (bool, string) {
			cl := c.Client(i)
			defer cl.Close()
			s, err = cl.Settings(t.Context())
			return err == nil && s.Settings["user.after"] == "1", "not yet"
		})
		for k, v := range acked {
			if s.Settings[k] != v {
				t.Errorf("m%d lost acknowledged write %s=%s (has %q)", i+1, k, v, s.Settings[k])
			}
		}
	}
}

// TestWitness: two members and a witness keep quorum through one failure; the
// witness is listed as such.
func TestWitness(t *testing.T) {
	c := startCluster(t, 2)
	if _, err := c.Add(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	members := decodeJSON[[]client.Member](t, c.mustCLI(0, "members", "--json"))
	if len(members) != 3 || !members[2].Witness || members[2].Votes != 1 {
		t.Fatalf("witness not listed: %+v", members)
	}
	if !strings.Contains(c.mustCLI(0, "members"), "witness") {
		t.Error("members table does not show the witness")
	}
	st, _ := c.status(0)
	victim := 0
	if st.Director == "m1" {
		victim = 1
	}
	survivor := 1 - victim
	c.Kill(victim)
	c.waitState(survivor, c.Members[victim].Name, client.MemberDown, 15*time.Second)
	c.eventually(15*time.Second, "write with member+witness", func() (bool, string) {
		r := c.cli(survivor, "settings", "set", "user.witness=works")
		return r.code == 0, r.out
	})
	if out := c.mustCLI(survivor, "status"); !strings.Contains(out, "partition WITH quorum: 2 of 3") {
		t.Errorf("status: %s", out)
	}
}

// TestRecoverLostMajority: two of three voters are lost for good; the
// survivor is recovered as the only voter, writes work, and the lost members
// can be removed.
func TestRecoverLostMajority(t *testing.T) {
	c := startCluster(t, 3)
	c.mustCLI(0, "settings", "set", "user.before=1")
	c.Kill(1)
	c.Kill(2)
	c.waitState(0, "m2", client.MemberDown, 15*time.Second)
	if r := c.cli(0, "member", "remove", "m2"); r.code != 3 {
		t.Errorf("remove without quorum: exit %d: %s", r.code, r.out)
	}
	if r := c.cli(0, "cluster", "recover", "--voters", "m1", "--yes"); r.code == 0 || !strings.Contains(r.out, "the agent is running") {
		t.Errorf("recover with a running agent: exit %d: %s", r.code, r.out)
	}
	c.Stop(0)
	if r := c.cli(0, "cluster", "recover", "--voters", "m1,m9", "--yes"); r.code != 2 || !strings.Contains(r.out, "member m9 is not in") {
		t.Errorf("recover with an unknown voter: exit %d: %s", r.code, r.out)
	}
	c.mustCLI(0, "cluster", "recover", "--voters", "m1", "--yes")
	if err := c.StartAgent(0); err != nil {
		t.Fatal(err)
	}
	c.eventually(20*time.Second, "writes work on the recovered member", func() (bool, string) {
		r := c.cli(0, "settings", "set", "user.after=1")
		return r.code == 0, r.out
	})
	c.mustCLI(0, "member", "remove", "m2")
	c.mustCLI(0, "member", "remove", "m3")
	out := c.mustCLI(0, "settings")
	if !strings.Contains(out, "user.before=1") || !strings.Contains(out, "user.after=1") {
		t.Errorf("settings after recovery: %s", out)
	}
	if out := c.mustCLI(0, "status"); !strings.Contains(out, "partition WITH quorum: 1 of 1") {
		t.Errorf("status after recovery: %s", out)
	}
}
