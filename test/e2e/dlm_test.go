package e2e

import (
	"strings"
	"testing"
	"time"
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
