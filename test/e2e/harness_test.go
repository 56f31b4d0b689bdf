package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/localcluster"
)

// bin is the vigil binary under test, built once by TestMain (with -race
// when the tests run with -race, so the agents are checked too).
var bin string

func TestMain(m *testing.M) {
	if b := os.Getenv(binEnv); b != "" {
		// A test re-run in its own namespace reuses the parent's binary.
		bin = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "vigil-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "vigil")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../../cmd/vigil")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building vigil:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logBuf collects the agents' logs of one test.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type cluster struct {
	*localcluster.Cluster
	t    *testing.T
	logs *logBuf
}

func startCluster(t *testing.T, n int, opts ...func(*localcluster.Options)) *cluster {
	t.Helper()
	logs := &logBuf{}
	o := localcluster.Options{Bin: bin, Members: n, Dir: t.TempDir(), Log: logs}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lc, err := localcluster.Start(ctx, o)
	if err != nil {
		t.Log(logs.String())
		t.Fatalf("starting a %d-member cluster: %v", n, err)
	}
	c := &cluster{Cluster: lc, t: t, logs: logs}
	t.Cleanup(func() {
		lc.Close()
		out := logs.String()
		if strings.Contains(out, "DATA RACE") || strings.Contains(out, "panic:") {
			t.Errorf("an agent raced or panicked:\n%s", out)
		} else if t.Failed() || testing.Verbose() {
			t.Logf("agent logs:\n%s", tail(out, 200))
		}
	})
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// result is one CLI run.
type result struct {
	out  string
	code int
}

// cli runs vigil against member i (its data dir and Unix socket).
func (c *cluster) cli(i int, args ...string) result {
	c.t.Helper()
	return c.cliIn(i, "", args...)
}

func (c *cluster) cliIn(i int, stdin string, args ...string) result {
	c.t.Helper()
	return runVigil(c.t, stdin, append([]string{"--data-dir", c.Members[i].Dir}, args...)...)
}

func runVigil(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("vigil %v: %v", args, err)
	}
	t.Logf("$ vigil %s\n%s(exit %d)", strings.Join(args, " "), out.String(), code)
	return result{out: out.String(), code: code}
}

func (c *cluster) mustCLI(i int, args ...string) string {
	c.t.Helper()
	r := c.cli(i, args...)
	if r.code != 0 {
		c.t.Fatalf("vigil %v on m%d: exit %d: %s", args, i+1, r.code, r.out)
	}
	return r.out
}

func (c *cluster) status(i int) (*client.Status, error) {
	cl := c.Client(i)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.Status(ctx)
}

// eventually polls cond every 50 ms until it holds or the limit passes.
func (c *cluster) eventually(limit time.Duration, what string, cond func() (bool, string)) time.Duration {
	c.t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < limit {
		ok, s := cond()
		if ok {
			return time.Since(start)
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("%s: not within %s (last: %s)", what, limit, last)
	return 0
}

func (c *cluster) member(st *client.Status, name string) *client.Member {
	for i := range st.Members {
		if st.Members[i].Name == name {
			return &st.Members[i]
		}
	}
	return nil
}

func (c *cluster) index(name string) int {
	for i, m := range c.Members {
		if m.Name == name {
			return i
		}
	}
	c.t.Fatalf("no member %s", name)
	return -1
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

// waitDirector waits until member i reports a director other than not.
func (c *cluster) waitDirector(i int, not string, limit time.Duration) (string, time.Duration) {
	c.t.Helper()
	var dir string
	d := c.eventually(limit, fmt.Sprintf("m%d sees a director other than %q", i+1, not), func() (bool, string) {
		st, err := c.status(i)
		if err != nil {
			return false, err.Error()
		}
		dir = st.Director
		return dir != "" && dir != not, "director " + dir
	})
	return dir, d
}

// waitState waits until member i sees member name in state.
func (c *cluster) waitState(i int, name, state string, limit time.Duration) time.Duration {
	c.t.Helper()
	return c.eventually(limit, fmt.Sprintf("m%d sees %s %s", i+1, name, state), func() (bool, string) {
		st, err := c.status(i)
		if err != nil {
			return false, err.Error()
		}
		m := c.member(st, name)
		if m == nil {
			return false, "not listed"
		}
		return m.State == state, m.State + "/" + m.AgentState
	})
}
