package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/dlmclient"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
)

var lockTables = []client.LockTable{
	{Member: "m1", View: 4, Members: []string{"m1", "m2", "m3"}, Quorum: true,
		Mastered: []client.LockInfo{
			{Lock: "m2#7", Lockspace: "default", Resource: []string{"db"}, Owner: "m2/1", Queue: "granted", Granted: "PR", Token: 12, Master: "m1"},
			{Lock: "m1#3", Lockspace: "default", Resource: []string{"db"}, Owner: "m1/2", Queue: "converting", Granted: "PR", Requested: "EX", Token: 12, Master: "m1"},
			{Lock: "m3#1", Lockspace: "default", Resource: []string{"db"}, Owner: "m3/5", Queue: "waiting", Requested: "EX", Token: 12, Master: "m1"},
			{Lock: "m1#9", Lockspace: "app", Resource: []string{"cfg", "part1"}, Parent: "m1#8", Owner: "m1/2", Queue: "granted", Granted: "EX", Token: 3, Master: "m1"},
		},
		Held: []client.LockInfo{
			{Lock: "m1#3", Lockspace: "default", Resource: []string{"db"}, Owner: "m1/2", Queue: "converting", Granted: "PR", Requested: "EX", Token: 11, Master: "m1"},
			{Lock: "m1#10", Lockspace: "default", Resource: []string{"new"}, Owner: "m1/2", Requested: "EX", Master: "m3", Pending: 1},
		}},
	{Member: "m2", View: 4, Members: []string{"m1", "m2", "m3"}, Quorum: true, Recovering: true,
		Held: []client.LockInfo{
			{Lock: "m2#7", Lockspace: "default", Resource: []string{"db"}, Owner: "m2/1", Queue: "granted", Granted: "PR", Token: 10, Master: "m1"},
		}},
	{Member: "m3", Error: "context deadline exceeded"},
	{Member: "m4", View: 3, Out: true},
	{Member: "m5", View: 4, Quorum: false},
}

func TestPrintLocks(t *testing.T) {
	var b bytes.Buffer
	printLocks(&b, lockTables)
	want := `RESOURCE       MASTER  LOCK   OWNER  QUEUE       GRANTED  REQUESTED  TOKEN
app:cfg/part1  m1      m1#9   m1/2   granted     EX       -          3
db             m1      m2#7   m2/1   granted     PR       -          10
               m1      m1#3   m1/2   converting  PR       EX         11
               m1      m3#1   m3/5   waiting     -        EX         -
new            m3      m1#10  m1/2   pending     -        EX         -
m2: recovering view 4: it grants again once every member has rebuilt its locks
m3: could not be asked: context deadline exceeded (its locks show as its masters and clients report them)
m4: out of the lock manager's view 3: its clients' locks were released
m5: without quorum: it grants nothing until its lease is renewed
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	printLocks(&b, []client.LockTable{{Member: "m1", View: 1, Quorum: true}})
	if b.String() != "no locks\n" {
		t.Errorf("no locks: %q", b.String())
	}
}

func TestFilterLocks(t *testing.T) {
	for _, tc := range []struct {
		resource string
		want     []string
	}{
		{"db", []string{"m2#7", "m1#3", "m3#1", "m1#3", "m2#7"}},
		{"cfg", []string{"m1#9"}},
		{"cfg/part1", []string{"m1#9"}},
		{"part1", nil},
		{"nothing", nil},
	} {
		var got []string
		for _, t := range filterLocks(lockTables, tc.resource) {
			for _, l := range append(t.Mastered, t.Held...) {
				got = append(got, l.Lock)
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("--resource %s: %v, want %v", tc.resource, got, tc.want)
		}
	}
	if got := len(filterLocks(lockTables, "db")); got != len(lockTables) {
		t.Errorf("the filter dropped member tables: %d of %d", got, len(lockTables))
	}
}

func TestHolders(t *testing.T) {
	if got, want := holders(lockTables, "default", "db"), "m2/1 in PR (lock m2#7), m1/2 in PR (lock m1#3)"; got != want {
		t.Errorf("holders of db: %q, want %q", got, want)
	}
	if got := holders(lockTables, "other", "db"); got != "" {
		t.Errorf("holders in another lockspace: %q", got)
	}
}

func newLockServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{Member: "m1",
		Send: func(context.Context, *server.Batch) (server.Ack, error) { return server.Ack{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.SetView(server.View{Number: 1, Members: map[string]uint64{"m1": srv.Incarnation()}}); err != nil {
		t.Fatal(err)
	}
	srv.SetQuorum(true)
	for deadline := time.Now().Add(5 * time.Second); !srv.Ready(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("lock manager not ready")
		}
	}
	return srv
}

func local(t *testing.T, srv *server.Server) *dlmclient.Client {
	t.Helper()
	c, err := dlmclient.Local(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// syncBuffer is a buffer for the command's output and vigil's at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// runLock runs a lockRun on srv and returns its error and output.
func runLock(t *testing.T, srv *server.Server, r *lockRun) (error, string) {
	t.Helper()
	var out syncBuffer
	r.stdin, r.stdout, r.stderr = strings.NewReader(""), &out, &out
	if r.lockspace == "" {
		r.lockspace = dlmclient.DefaultLockspace
	}
	if r.killGrace == 0 {
		r.killGrace = time.Second
	}
	err := r.run(context.Background(), local(t, srv))
	return err, out.String()
}

func TestLockRunsCommand(t *testing.T) {
	srv := newLockServer(t)
	err, out := runLock(t, srv, &lockRun{resource: "res", mode: dlmclient.PW,
		argv: []string{"sh", "-c", `echo "$VIGIL_LOCK_TOKEN $VIGIL_LOCK_RESOURCE $VIGIL_LOCK_LOCKSPACE $VIGIL_LOCK_MODE"; exit 3`}})
	if ExitCode(err) != 3 {
		t.Errorf("exit code %d (%v), want the command's 3", ExitCode(err), err)
	}
	if f := strings.Fields(out); len(f) != 4 || f[0] == "0" || strings.Trim(f[0], "0123456789") != "" || strings.Join(f[1:], " ") != "res default PW" {
		t.Errorf("the command saw %q, want the token, resource, lockspace and mode", out)
	}
	if n := len(srv.Locks().Held); n != 0 {
		t.Errorf("%d locks held after the command ended", n)
	}
	err, _ = runLock(t, srv, &lockRun{resource: "res", mode: dlmclient.EX, argv: []string{"sh", "-c", "kill -KILL $$"}})
	if ExitCode(err) != 128+9 {
		t.Errorf("a command killed by SIGKILL: exit %d, want 137", ExitCode(err))
	}
	err, _ = runLock(t, srv, &lockRun{resource: "res", mode: dlmclient.EX, argv: []string{"/nonexistent/cmd"}})
	if ExitCode(err) != 127 || !strings.Contains(err.Error(), "cannot run /nonexistent/cmd") {
		t.Errorf("a missing command: exit %d: %v", ExitCode(err), err)
	}
}

func TestLockBusy(t *testing.T) {
	srv := newLockServer(t)
	holder := local(t, srv)
	if _, err := holder.Lock(context.Background(), "res", dlmclient.EX); err != nil {
		t.Fatal(err)
	}
	who := func(context.Context, string, string) string { return "m1/1 in EX (lock m1#1)" }
	err, out := runLock(t, srv, &lockRun{resource: "res", mode: dlmclient.PR, nowait: true, holders: who, argv: []string{"echo", "ran"}})
	if ExitCode(err) != ExitFailed || err.Error() != "lock busy: res is held by m1/1 in EX (lock m1#1)" || out != "" {
		t.Errorf("--nowait on a held lock: exit %d: %v (output %q)", ExitCode(err), err, out)
	}
	start := time.Now()
	err, out = runLock(t, srv, &lockRun{resource: "res", mode: dlmclient.EX, timeout: 50 * time.Millisecond, argv: []string{"echo", "ran"}})
	if ExitCode(err) != ExitFailed || !strings.Contains(err.Error(), "gave up after 50ms waiting for the lock on res: it is held by another client") || out != "" {
		t.Errorf("--timeout on a held lock: exit %d: %v (output %q)", ExitCode(err), err, out)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("--timeout 50ms took %v", d)
	}
	if n := len(srv.Locks().Held); n != 1 {
		t.Errorf("%d locks held, want only the holder's: the timed out request must be gone", n)
	}
}

func TestLockLostStopsCommand(t *testing.T) {
	srv := newLockServer(t)
	go func() {
		for len(srv.Locks().Held) == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		srv.Lose("the lease of m1 is ending")
	}()
	start := time.Now()
	// The command ignores SIGTERM: it takes SIGKILL.
	err, out := runLock(t, srv, &lockRun{resource: "res", mode: dlmclient.EX, killGrace: 200 * time.Millisecond,
		argv: []string{"sh", "-c", `trap "" TERM; sleep 30`}})
	if ExitCode(err) != ExitFailed || !strings.Contains(err.Error(), "the lock on res was lost while sh ran, so it was stopped") {
		t.Errorf("lost lock: exit %d: %v", ExitCode(err), err)
	}
	if !strings.Contains(out, "the lock on res was lost: stopping sh") {
		t.Errorf("no notice of the loss: %q", out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the command was stopped after %v", d)
	}
}

func TestLockForwardsSignals(t *testing.T) {
	srv := newLockServer(t)
	sigs := make(chan os.Signal, 1)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	go func() {
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		sigs <- syscall.SIGTERM
	}()
	err, out := runLock(t, srv, &lockRun{resource: "res", mode: dlmclient.EX, signals: sigs,
		argv: []string{"sh", "-c", `trap 'echo got TERM; exit 7' TERM; touch ` + ready + `; while :; do sleep 0.01; done`}})
	if ExitCode(err) != 7 || !strings.Contains(out, "got TERM") {
		t.Errorf("forwarded SIGTERM: exit %d (%v), output %q", ExitCode(err), err, out)
	}
}

// The command end to end: vigil lock over a socket in a data dir.
func TestLockCommand(t *testing.T) {
	srv := newLockServer(t)
	dir, err := os.MkdirTemp("", "vigil")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, socket.File))
	if err != nil {
		t.Fatal(err)
	}
	g := socket.Serve(ln, srv, nil)
	defer g.Stop()
	vigil := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := vigil("lock", "--data-dir", dir, "--mode", "pr", "res", "--", "sh", "-c", `echo $VIGIL_LOCK_MODE; exit 4`)
	if code != 4 || out != "PR\n" || errOut != "" {
		t.Errorf("vigil lock: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = vigil("lock", "--data-dir", dir, "res", "echo", "--mode")
	if code != 0 || out != "--mode\n" {
		t.Errorf("options after RESOURCE belong to the command: exit %d, out %q", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"lock", "--data-dir", dir}, ExitUsage, "needs a resource and a command"},
		{[]string{"lock", "--data-dir", dir, "res"}, ExitUsage, "needs a command to run"},
		{[]string{"lock", "--data-dir", dir, "res", "--"}, ExitUsage, "needs a command to run"},
		{[]string{"lock", "--data-dir", dir, "--mode", "XX", "res", "true"}, ExitUsage, "--mode XX: use one of NL, CR, CW, PR, PW, EX"},
		{[]string{"lock", "--data-dir", dir, "--timeout", "-1s", "res", "true"}, ExitUsage, "--timeout -1s is negative"},
		{[]string{"lock", "--data-dir", dir, "--nowait", "--timeout", "1s", "res", "true"}, ExitUsage, "give --nowait or --timeout, not both"},
		{[]string{"lock", "--data-dir", dir, strings.Repeat("r", 65), "true"}, ExitUsage, "65 bytes long"},
		{[]string{"lock", "--data-dir", filepath.Join(dir, "nothing"), "res", "true"}, ExitFailed, "does not exist: the vigil agent is not running on this member (start the agent with `vigil agent --data-dir"},
	} {
		code, _, errOut := vigil(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("vigil %s: exit %d, %q; want exit %d saying %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.msg)
		}
	}
}

func TestExitStatus(t *testing.T) {
	if ExitCode(&exitStatus{code: 42}) != 42 {
		t.Error("exitStatus code not used")
	}
	if ExitCode(errors.New("x")) != ExitFailed {
		t.Error("plain error")
	}
}
