package agents

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

func execRes(name string, cmd ...string) spec.Resource {
	return spec.Resource{Name: name, Kind: spec.KindExec, Command: cmd,
		Timeouts: spec.Timeouts{Start: spec.Duration(5 * time.Second), Stop: spec.Duration(5 * time.Second), Monitor: spec.Duration(5 * time.Second)}}
}

// pidOf reads the pid file of an exec resource.
func pidOf(t *testing.T, env Env, service, resource string) (int, uint64) {
	t.Helper()
	pid, start, err := readPidFile(filepath.Join(env.StateDir, service+"."+resource+".pid"))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return pid, start
}

func TestExecStartCheckStop(t *testing.T) {
	env := testEnv(t)
	r := execRes("web", "sh", "-c", `echo "hello $GREETING from $VIGIL_SERVICE/$VIGIL_RESOURCE on $VIGIL_MEMBER epoch $VIGIL_EPOCH in $PWD"; exec sleep 300`)
	r.Env = map[string]string{"GREETING": "world"}
	r.WorkDir = t.TempDir()
	res := mustNew(t, "svc", r, env)

	runWant(t, res, Probe, Call{}, NotRunning)
	st := runOK(t, res, Start, Call{Epoch: 7, Member: "m1"})
	if st.Method != "exec" || st.RC != 0 || st.Skipped {
		t.Errorf("start result %+v", st)
	}
	pid, start := pidOf(t, env, "svc", "web")
	ps, err := readStat(pid)
	if err != nil || ps.start != start || ps.pgrp != pid {
		t.Fatalf("pid file names %d start %d; /proc says %+v, %v (want its own process group)", pid, start, ps, err)
	}
	logPath := filepath.Join(env.StateDir, "svc.web.log")
	eventually(t, 5*time.Second, "the process's output in its log", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "hello world from svc/web on m1 epoch 7 in "+r.WorkDir)
	})
	runOK(t, res, Check, Call{})
	runOK(t, res, Probe, Call{})

	sp := runOK(t, res, Stop, Call{})
	if sp.Method != "SIGTERM" || sp.Note != "" {
		t.Errorf("stop: method %q note %q; want SIGTERM and no note (sleep dies of SIGTERM)", sp.Method, sp.Note)
	}
	if !gone(pid) {
		t.Errorf("process %d still alive after Stop", pid)
	}
	eventually(t, 5*time.Second, "process reaped (no zombie)", func() bool { return reaped(pid) })
	if _, err := os.Stat(filepath.Join(env.StateDir, "svc.web.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file still there after Stop: %v", err)
	}
	ck := runWant(t, res, Check, Call{}, NotRunning)
	if ck.Severity != Soft || ck.Err == "" {
		t.Errorf("check after stop: severity %s err %q", ck.Severity, ck.Err)
	}
	// Stop again: idempotent.
	if n := runOK(t, res, Stop, Call{}); n.Note != "not running" {
		t.Errorf("second stop note %q", n.Note)
	}
}

func TestExecStartFailsWithExitCodeAndOutput(t *testing.T) {
	env := testEnv(t)
	res := mustNew(t, "svc", execRes("bad", "sh", "-c", "echo starting; echo 'no config file' >&2; exit 3"), env)
	r := runWant(t, res, Start, Call{}, Failed)
	if r.RC != 3 || r.Severity != Soft {
		t.Errorf("rc %d severity %s, want 3 soft", r.RC, r.Severity)
	}
	if !strings.Contains(r.Err, "exited with status 3") || !containsLine(r.Output, "no config file") {
		t.Errorf("err %q output %q: want the exit status and the output tail", r.Err, r.Output)
	}
	if containsLine(r.Output, "--- vigil") {
		t.Errorf("output tail %q includes vigil's own log header", r.Output)
	}
	if _, err := os.Stat(filepath.Join(env.StateDir, "svc.bad.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left behind by a failed start: %v", err)
	}
}

func TestExecStartMissingProgramIsHard(t *testing.T) {
	env := testEnv(t)
	res := mustNew(t, "svc", execRes("nope", "/nonexistent/vigil-test-prog"), env)
	r := runWant(t, res, Start, Call{}, Failed)
	if r.Severity != Hard || !strings.Contains(r.Err, "/nonexistent/vigil-test-prog") {
		t.Errorf("severity %s err %q", r.Severity, r.Err)
	}
}

func TestExecStartIsIdempotent(t *testing.T) {
	env := testEnv(t)
	res := mustNew(t, "svc", execRes("idem", "sleep", "300"), env)
	runOK(t, res, Start, Call{})
	pid, _ := pidOf(t, env, "svc", "idem")
	again := runOK(t, res, Start, Call{})
	if pid2, _ := pidOf(t, env, "svc", "idem"); pid2 != pid || !strings.Contains(again.Note, "already running") {
		t.Errorf("second start: pid %d -> %d, note %q; want the same process", pid, pid2, again.Note)
	}
	runOK(t, res, Stop, Call{})
}

func TestExecCrashIsNotRunningAndReaped(t *testing.T) {
	env := testEnv(t)
	res := mustNew(t, "svc", execRes("crash", "sh", "-c", "echo about to be killed; exec sleep 300"), env)
	if res.(Supervised).Exited() != nil {
		t.Error("Exited() before Start is not nil")
	}
	runOK(t, res, Start, Call{})
	pid, _ := pidOf(t, env, "svc", "crash")
	select {
	case <-res.(Supervised).Exited():
		t.Fatal("Exited() closed while the process runs")
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var r Result
	eventually(t, 5*time.Second, "Check reports the killed process", func() bool {
		r = res.Run(context.Background(), Check, Call{})
		return r.Status != OK
	})
	logResult(t, r)
	if r.Status != NotRunning || r.Severity != Soft || !strings.Contains(r.Err, "SIGKILL") {
		t.Errorf("check: %s %s %q; want not running, soft, killed by SIGKILL", r.Status, r.Severity, r.Err)
	}
	if !containsLine(r.Output, "about to be killed") {
		t.Errorf("check output %q lacks the process's last words", r.Output)
	}
	eventually(t, 5*time.Second, "the dead process reaped", func() bool { return reaped(pid) })
	select {
	case <-res.(Supervised).Exited():
	default:
		t.Error("Exited() not closed after the process died")
	}
	runOK(t, res, Stop, Call{})
	// And it starts again.
	runOK(t, res, Start, Call{})
	runOK(t, res, Stop, Call{})
}

func TestExecStopKillsWholeGroup(t *testing.T) {
	env := testEnv(t)
	dir := t.TempDir()
	bg := filepath.Join(dir, "bg.pid")
	res := mustNew(t, "svc", execRes("group", "sh", "-c", `sleep 300 & echo $! > `+bg+`; sleep 300 & wait`), env)
	runOK(t, res, Start, Call{})
	leader, _ := pidOf(t, env, "svc", "group")
	child := readPidFromFile(t, bg)
	if st, err := readStat(child); err != nil || st.pgrp != leader {
		t.Fatalf("background child %d: %+v %v; want process group %d", child, st, err, leader)
	}
	runOK(t, res, Stop, Call{})
	if !gone(child) || groupLive(leader) != 0 {
		t.Errorf("after Stop: child alive %v, %d processes in group %d", !gone(child), groupLive(leader), leader)
	}
}

func TestExecStopEscalatesToSIGKILL(t *testing.T) {
	env := testEnv(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	r := execRes("stubborn", "sh", "-c", `trap "" TERM; echo $$ > `+ready+`; while :; do sleep 0.05; done`)
	r.Timeouts.Stop = spec.Duration(300 * time.Millisecond)
	res := mustNew(t, "svc", r, env)
	runOK(t, res, Start, Call{})
	pid := readPidFromFile(t, ready) // the trap is set
	sp := runOK(t, res, Stop, Call{})
	if !strings.Contains(sp.Note, "killed with SIGKILL") || !strings.Contains(sp.Note, "300ms") {
		t.Errorf("stop note %q: want it to say SIGKILL after 300ms", sp.Note)
	}
	if !gone(pid) || groupLive(pid) != 0 {
		t.Errorf("process group %d still has live processes", pid)
	}
}

func TestExecAbortKillsAtOnce(t *testing.T) {
	env := testEnv(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	r := execRes("abort", "sh", "-c", `trap "" TERM; echo $$ > `+ready+`; while :; do sleep 0.05; done`)
	r.Timeouts.Stop = spec.Duration(time.Hour) // Abort must not wait for SIGTERM to work
	res := mustNew(t, "svc", r, env)
	runOK(t, res, Start, Call{})
	pid := readPidFromFile(t, ready)
	ab := runOK(t, res, Abort, Call{})
	if ab.Method != "SIGKILL" || ab.Note != "" {
		t.Errorf("abort: method %q note %q", ab.Method, ab.Note)
	}
	if !gone(pid) {
		t.Errorf("process %d alive after Abort", pid)
	}
	runOK(t, res, Abort, Call{}) // idempotent
}

func TestExecProbeAfterAgentRestart(t *testing.T) {
	env := testEnv(t)
	spec := execRes("survivor", "sleep", "300")
	first := mustNew(t, "svc", spec, env)
	runOK(t, first, Start, Call{})
	pid, _ := pidOf(t, env, "svc", "survivor")

	// A new agent (a new Resource on the same state directory) finds it.
	second := mustNew(t, "svc", spec, env)
	pr := runOK(t, second, Probe, Call{})
	if !strings.Contains(pr.Note, "pid") {
		t.Errorf("probe note %q", pr.Note)
	}
	runOK(t, second, Check, Call{})
	st := runOK(t, second, Start, Call{})
	if !strings.Contains(st.Note, "already running") {
		t.Errorf("start after probe started a second copy: note %q", st.Note)
	}
	runOK(t, second, Stop, Call{})
	if !gone(pid) {
		t.Errorf("process %d alive after Stop by the new agent", pid)
	}
	runWant(t, first, Check, Call{}, NotRunning)
}

func TestExecProbeStalePidFile(t *testing.T) {
	env := testEnv(t)
	r := execRes("stale", "sleep", "300")
	pidPath := filepath.Join(env.StateDir, "svc.stale.pid")
	self, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"pid 1":                             "1 0\n", // refused: never a resource
		"live pid, wrong start time":        fmt.Sprintf("%d 0\n", os.Getppid()),
		"this test's pid, wrong start time": fmt.Sprintf("%d %d\n", os.Getpid(), self.start+1),
		"pid of no process":                 "4194303 1\n",
		"garbage":                           "hello\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(pidPath, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			res := mustNew(t, "svc", r, env)
			runWant(t, res, Probe, Call{}, NotRunning)
			sp := runOK(t, res, Stop, Call{})
			if sp.Note == "" {
				t.Errorf("stop of a stale pid file: empty note")
			}
			if gone(os.Getpid()) || gone(os.Getppid()) {
				t.Fatal("Stop killed a process that was not the resource's")
			}
		})
	}
}

func TestExecStartInterruptedByContext(t *testing.T) {
	env := testEnv(t)
	res := mustNew(t, "svc", execRes("ctx", "sleep", "300"), env)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := res.Run(ctx, Start, Call{})
	logResult(t, r)
	if r.Status != Failed || !strings.Contains(r.Err, "not started") {
		t.Fatalf("start with a done context: %s %q", r.Status, r.Err)
	}
	runWant(t, res, Probe, Call{}, NotRunning)
}

func TestExecStartInterruptedAfterSpawn(t *testing.T) {
	env := testEnv(t)
	res := mustNew(t, "svc", execRes("ctx2", "sleep", "300"), env)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pidPath := filepath.Join(env.StateDir, "svc.ctx2.pid")
	go func() { // cancel as soon as the process is spawned, inside the settle time
		for ctx.Err() == nil {
			if _, err := os.Stat(pidPath); err == nil {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	r := res.Run(ctx, Start, Call{})
	logResult(t, r)
	if r.Status != Failed || !strings.Contains(r.Err, "interrupted") {
		t.Fatalf("start interrupted after spawn: %s %q", r.Status, r.Err)
	}
	runWant(t, res, Probe, Call{}, NotRunning)
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		t.Errorf("pid file left after an interrupted start: %v", err)
	}
}

func TestExecSkipsOtherPhases(t *testing.T) {
	res := mustNew(t, "svc", execRes("skip", "sleep", "1"), testEnv(t))
	for _, p := range []Phase{Import, Fsck, Mount, IPUp, StartNet, FMInit, FMStart, FMStop, StopNet, IPDown, Unmount, Deport, AbortNet} {
		if r := res.Run(context.Background(), p, Call{}); !r.Skipped || r.Status != OK {
			t.Errorf("%s: %+v, want skipped", p, r)
		}
	}
	if r := res.Run(context.Background(), Phase("bogus"), Call{}); r.Status != Failed || r.Severity != Hard {
		t.Errorf("unknown phase: %+v", r)
	}
}

func TestExecValidate(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		r    spec.Resource
		want string // "" for no error
	}{
		{execRes("ok", "sleep", "1"), ""},
		{execRes("abs", "/bin/sh", "-c", "true"), ""},
		{execRes("missing", "/nonexistent/prog"), "does not exist"},
		{execRes("notinpath", "vigil-no-such-program"), "not found in PATH"},
		{execRes("noexec", noexec), "not executable"},
		{execRes("dir", dir), "not a regular file"},
		{func() spec.Resource { r := execRes("wd", "sleep", "1"); r.WorkDir = "/nonexistent"; return r }(), "workdir"},
	}
	for _, c := range cases {
		err := Validate("svc", c.r, Env{})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.r.Name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.r.Name, err, c.want)
		case err != nil:
			t.Logf("%s: %v", c.r.Name, err)
		}
	}
}

func TestNewRefusesBadResources(t *testing.T) {
	for _, r := range []spec.Resource{
		{Name: "k", Kind: "nfs"},
		{Name: "e", Kind: spec.KindExec},
		{Name: "o", Kind: spec.KindOCF, Agent: "heartbeat:Dummy"},
		{Name: "i", Kind: spec.KindIP, Address: "198.18.0.1", Interface: "eth0"},
		{Name: "v", Kind: spec.KindVolume, Import: []string{"true"}},
	} {
		if _, err := New("svc", r, Env{StateDir: t.TempDir()}); err == nil {
			t.Errorf("New(%+v) = nil error", r)
		} else {
			t.Logf("%s: %v", r.Name, err)
		}
	}
	if _, err := New("svc", execRes("nostate", "sleep", "1"), Env{}); err == nil || !strings.Contains(err.Error(), "StateDir") {
		t.Errorf("exec without a state dir: %v", err)
	}
}
