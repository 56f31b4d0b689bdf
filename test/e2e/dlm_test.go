package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/dlmclient"
	"github.com/vigil-cluster/vigil/internal/agent"
)

// waitLog waits until the agents' logs contain every one of subs on one line.
func (c *cluster) waitLog(timeout time.Duration, subs ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(c.logs.String(), "\n") {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(l, s)
			}
			if ok {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no log line with %q within %v", subs, timeout)
	return ""
}

func TestDLMView(t *testing.T) {
	c := startCluster(t, 3)
	for _, m := range []string{"m1", "m2", "m3"} {
		c.waitLog(20*time.Second, "dlm: view applied", "member="+m, "view=\"", "[m1 m2 m3]", "in_view=true")
	}
}

// TestDLMViewRestart: a member whose agent restarts leaves the lock manager
// view and comes back with its new incarnation.
func TestDLMViewRestart(t *testing.T) {
	c := startCluster(t, 3)
	c.waitLog(20*time.Second, "director: lock manager view", "[m1 m2 m3]")
	st, _ := c.status(0)
	victim := 0
	for i, m := range c.Members {
		if m.Name != st.Director {
			victim = i
		}
	}
	name := c.Members[victim].Name
	c.Kill(victim)
	if err := c.StartAgent(victim); err != nil {
		t.Fatal(err)
	}
	line := c.waitLog(20*time.Second, "dlm: view applied", "member="+name, "in_view=true", "previous=")
	t.Log(line)
	var others []string
	for _, m := range c.Members {
		if m.Name != name {
			others = append(others, m.Name)
		}
	}
	c.waitLog(20*time.Second, "director: lock manager view", "members=\"["+strings.Join(others, " ")+"]\"")
}

// dialDLM connects to member i's lock manager once that member has applied
// a view that holds it: before that its requests fail with ErrNotMember.
func dialDLM(t *testing.T, c *cluster, i int) *dlmclient.Client {
	t.Helper()
	c.waitLog(20*time.Second, "dlm: view applied", "member="+c.Members[i].Name+" ", "in_view=true")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := dlmclient.Dial(ctx, filepath.Join(c.Members[i].Dir, agent.DLMSocketFile))
	if err != nil {
		t.Fatalf("dialing %s's lock manager: %v", c.Members[i].Name, err)
	}
	t.Cleanup(func() { dc.Close() })
	return dc
}

// TestDLMAcrossMembers: clients on two members contend for one resource
// through the agents' sockets: NOQUEUE refusal, a blocking notification,
// the grant on release, and a larger fencing token.
func TestDLMAcrossMembers(t *testing.T) {
	c := startCluster(t, 3)
	c.waitLog(20*time.Second, "director: lock manager view", "[m1 m2 m3]")
	c1, c2 := dialDLM(t, c, 0), dialDLM(t, c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var l1 *dlmclient.Lock
	var err error
	// The first view may still be rebuilding: a lock waits for it.
	if l1, err = c1.Lock(ctx, "shared", dlmclient.EX); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Lock(ctx, "shared", dlmclient.PR, dlmclient.NoQueue()); !errors.Is(err, dlmclient.ErrNotQueued) {
		t.Fatalf("NOQUEUE on a held resource: %v", err)
	}
	p, err := c2.LockAsync("shared", dlmclient.PR)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-l1.Blocking():
		t.Logf("m1 was told it blocks %v", b)
	case <-ctx.Done():
		t.Fatal("no blocking notification")
	}
	if err := l1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Token() <= l1.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l1.Token())
	}
	// A client that disconnects loses its locks.
	c2.Close()
	l3, err := c1.Lock(ctx, "shared", dlmclient.EX)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tokens %d, %d, %d", l1.Token(), l2.Token(), l3.Token())
}

// TestDLMMemberDies: a member dies holding an EX lock; a waiter on another
// member gets it once the dead member's lease has certainly run out, with a
// larger fencing token.
func TestDLMMemberDies(t *testing.T) {
	c := startCluster(t, 3)
	c.waitLog(20*time.Second, "director: lock manager view", "[m1 m2 m3]")
	st, _ := c.status(0)
	victim, waiter := -1, -1
	for i, m := range c.Members {
		switch {
		case m.Name == st.Director:
		case victim < 0:
			victim = i
		default:
			waiter = i
		}
	}
	cv, cw := dialDLM(t, c, victim), dialDLM(t, c, waiter)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	held, err := cv.Lock(ctx, "job", dlmclient.EX)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cw.LockAsync("job", dlmclient.EX)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-p.Done():
		t.Fatal("granted while the holder lives")
	default:
	}
	start := time.Now()
	c.Kill(victim)
	l, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s's EX went to %s %v after its agent died (token %d -> %d)", c.Members[victim].Name, c.Members[waiter].Name,
		time.Since(start).Round(time.Millisecond), held.Token(), l.Token())
	if l.Token() <= held.Token() {
		t.Fatalf("token %d after %d", l.Token(), held.Token())
	}
}

// TestDLMProbe: `vigil locks probe` times the lock manager from the member
// it asks, for every master of the view; bad values are refused with what
// to give instead.
func TestDLMProbe(t *testing.T) {
	c := startCluster(t, 3)
	for _, m := range []string{"m1", "m2", "m3"} {
		c.waitLog(20*time.Second, "dlm: view applied", "member="+m+" ", "[m1 m2 m3]", "in_view=true")
	}
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := c.cli(1, "locks", "probe", "--n", "200", "--workers", "2")
		if r.code == 0 {
			out = r.out
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe: exit %d: %s", r.code, r.out)
		}
		time.Sleep(200 * time.Millisecond) // the view may still be rebuilding
	}
	for _, m := range []string{"m1", "m2", "m3"} {
		if !strings.Contains(out, "m2    "+m+"      2        400") {
			t.Errorf("no row of 400 locks from m2 on %s's resources:\n%s", m, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--n", "1000000"}, "give 1 to 100000 locks"},
		{[]string{"--workers", "99"}, "give 1 to 64"},
		{[]string{"--master", "m9"}, `"m9" is not a member of the lock manager's view`},
	} {
		r := c.cli(1, append([]string{"locks", "probe"}, tc.args...)...)
		if r.code == 0 || !strings.Contains(r.out, tc.want) {
			t.Errorf("probe %v: exit %d, want a refusal with %q: %s", tc.args, r.code, tc.want, r.out)
		}
	}
}
