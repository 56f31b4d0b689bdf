package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestAPITokens gives people tokens of each role: a viewer reads but cannot
// relocate, an operator relocates but cannot change the configuration, every
// refusal is audited, and a revoked token stops working on every member at
// once.
func TestAPITokens(t *testing.T) {
	c := startCluster(t, 3)
	if out, err := c.Apply(t.Context(), 0, recorder(t.TempDir()+"/rec.log", "m1, m2, m3")); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	c.waitOnline(0, "rec", "", 30*time.Second)
	lastLine := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		return lines[len(lines)-1]
	}
	viewer := lastLine(c.mustCLI(0, "token", "create", "watcher", "--role", "viewer"))
	ops := lastLine(c.mustCLI(0, "token", "create", "ops", "--role", "operator", "--ttl", "1h"))
	if !strings.HasPrefix(viewer, "vigil-api-") || !strings.HasPrefix(ops, "vigil-api-") {
		t.Fatalf("tokens: %q %q", viewer, ops)
	}
	list := c.mustCLI(1, "token", "list")
	if !strings.Contains(list, "watcher") || !strings.Contains(list, "operator") || strings.Contains(list, viewer[len("vigil-api-"):]) {
		t.Errorf("token list: %s", list)
	}
	as := func(i int, tok string, args ...string) result {
		return c.cli(i, append([]string{"--api", c.Members[i].API, "--token", tok}, args...)...)
	}
	if r := as(1, viewer, "status"); r.code != 0 {
		t.Errorf("a viewer cannot read the status: %s", r.out)
	}
	r := as(1, viewer, "service", "relocate", "rec", "--to", "m3")
	if r.code != 1 || !strings.Contains(r.out, "role viewer may not POST /v1/services/rec/relocate: it needs role operator") {
		t.Errorf("a viewer relocated: exit %d: %s", r.code, r.out)
	}
	if r := as(2, ops, "service", "relocate", "rec", "--to", "m3"); r.code != 0 {
		t.Errorf("an operator cannot relocate: %s", r.out)
	}
	if r := as(2, ops, "settings", "set", "user.x=1"); r.code != 1 || !strings.Contains(r.out, "needs role admin") {
		t.Errorf("an operator changed settings: exit %d: %s", r.code, r.out)
	}
	if r := as(2, ops, "exec", "--all", "--", "id"); r.code != 1 || !strings.Contains(r.out, "needs role admin") {
		t.Errorf("an operator ran exec: exit %d: %s", r.code, r.out)
	}
	c.eventually(10*time.Second, "the audit trail", func() (bool, string) {
		out := c.mustCLI(0, "events", "--kind", "operator")
		return strings.Contains(out, "denied POST /v1/services/rec/relocate: it needs role operator  (by token:watcher@") &&
			strings.Contains(out, "relocate rec to m3  (by token:ops@") && strings.Contains(out, "[operator])"), out
	})

	// Revoked: refused by every member within a second.
	c.mustCLI(0, "token", "revoke", "watcher")
	t0 := time.Now()
	for i := range 3 {
		for {
			r := as(i, viewer, "status")
			if r.code != 0 && strings.Contains(r.out, "not valid here") {
				break
			}
			if time.Since(t0) > time.Second {
				t.Fatalf("m%d still takes the revoked token %s after the revocation: %s", i+1, time.Since(t0), r.out)
			}
		}
	}
	t.Logf("the revoked token was refused by every member %s after the revocation returned", time.Since(t0).Round(time.Millisecond))
	if r := c.cli(0, "token", "create", "x", "--role", "root"); r.code != 2 || !strings.Contains(r.out, `role "root" is not known`) {
		t.Errorf("bad role: exit %d: %s", r.code, r.out)
	}
}
