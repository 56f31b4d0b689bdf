package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-cluster/vigil/internal/agent"
	"github.com/vigil-cluster/vigil/internal/localcluster"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// freeLink finds a port p with p and p+1 free.
func freeLink(t *testing.T) string {
	t.Helper()
	for i := 0; i < 50; i++ {
		a := freeAddr(t)
		host, port, _ := net.SplitHostPort(a)
		var p int
		fmt.Sscan(port, &p)
		next := net.JoinHostPort(host, fmt.Sprint(p+1))
		if l, err := net.Listen("tcp", next); err == nil {
			l.Close()
			return a
		}
	}
	t.Fatal("no free port pair")
	return ""
}

// TestJoinFailures checks each cause of a refused join (OpenVMS's
// troubleshooting list): the joiner's screen says what is wrong and writes
// nothing, and the cluster's log records the refusal.
func TestJoinFailures(t *testing.T) {
	c := startCluster(t, 2, func(o *localcluster.Options) { o.CreateArgs = []string{"--attr", "site=north"} })
	addr := freeLink(t)
	token := func(name string, extra ...string) string {
		tok, err := c.Token(t.Context(), name, addr, extra...)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	join := func(tok, name string, extra ...string) result {
		dir := filepath.Join(t.TempDir(), name)
		args := append([]string{"member", "join", tok, "--member", name, "--address", addr, "--api", freeAddr(t), "--data-dir", dir}, extra...)
		r := runVigil(t, "", args...)
		if r.code != 0 {
			if _, err := filepath.Glob(filepath.Join(dir, "*.key")); err == nil {
				if m, _ := filepath.Glob(filepath.Join(dir, "*.key")); len(m) > 0 {
					t.Errorf("a refused join wrote keys: %v", m)
				}
			}
		}
		return r
	}
	tamper := func(tok string, f func(*agent.Token)) string {
		tk, err := agent.DecodeToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		f(tk)
		return tk.Encode()
	}
	cases := []struct {
		name   string
		run    func() result
		code   int
		want   string
		cluLog string
	}{
		{"wrong secret", func() result {
			return join(tamper(token("m3"), func(tk *agent.Token) { tk.Secret = "not-the-secret" }), "m3")
		}, 1, "secret does not match", "join refused"},
		{"not a token", func() result { return join("hello", "m3") }, 2, "not a vigil join token", ""},
		{"token of another member", func() result { return join(token("m4"), "m5") }, 1, "this join token is for member m4, not m5", "join refused"},
		{"duplicate name at add", func() result { return c.cli(0, "member", "add", "m2", "--address", addr) }, 1, "a member named m2 is already in the cluster", ""},
		{"duplicate id", func() result { return join(token("m6"), "m6", "--id", "1") }, 1, "member id 1 is already used by member m1", "join refused"},
		{"unreachable cluster", func() result {
			dead := freeAddr(t)
			return join(tamper(token("m7"), func(tk *agent.Token) { tk.Addrs = []string{dead} }), "m7")
		}, 3, "no member in the token answered", ""},
		{"profile mismatch", func() result { return join(token("m8"), "m8", "--profile", "fast") }, 1, `timing profile does not match: cluster demo has "lan", member m8 has "fast"`, "join refused"},
		{"attribute mismatch", func() result { return join(token("m9"), "m9", "--attr", "site=south") }, 1, `cluster-wide attribute site does not match: cluster demo has "north", member m9 has "south"`, "join refused"},
		{"wrong CA", func() result {
			return join(tamper(token("m10"), func(tk *agent.Token) { tk.Fingerprint = strings.Repeat("ab", 32) }), "m10")
		}, 3, "CA fingerprint", ""},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			before := len(c.logs.String())
			r := tc.run()
			if r.code != tc.code || !strings.Contains(r.out, tc.want) {
				t.Errorf("want exit %d and %q; got exit %d: %s", tc.code, tc.want, r.code, r.out)
			}
			if tc.cluLog != "" && !strings.Contains(c.logs.String()[before:], tc.cluLog) {
				t.Errorf("the cluster's log has no %q", tc.cluLog)
			}
		})
	}

	// A token works once: the second use is refused, naming the first user.
	tok := token("m11")
	if r := join(tok, "m11"); r.code != 0 {
		t.Fatalf("join with a fresh token: %s", r.out)
	}
	if r := join(tok, "m11"); r.code == 0 || !strings.Contains(r.out, "already used by member m11") {
		t.Errorf("replayed token: exit %d: %s", r.code, r.out)
	}
	// Two tokens for one name: the second join finds the name taken.
	t1, t2 := token("m12"), token("m12")
	if r := join(t1, "m12"); r.code != 0 {
		t.Fatalf("join: %s", r.out)
	}
	if r := join(t2, "m12"); r.code == 0 || !strings.Contains(r.out, "a member named m12 is already in the cluster") {
		t.Errorf("duplicate name at join: exit %d: %s", r.code, r.out)
	}
}
