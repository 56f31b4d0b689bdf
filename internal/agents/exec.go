package agents

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// Timings and limits of exec resources.
const (
	// settleTime is how long a started process must stay alive for Start
	// to succeed.
	settleTime = 50 * time.Millisecond
	// killGrace is how long processes get to vanish after SIGKILL.
	killGrace = 5 * time.Second
	// pollEvery is how often a stop looks whether the group is gone.
	pollEvery = 20 * time.Millisecond
	// maxLogSize is the size at which Start moves the output log to
	// .log.1 (one old log is kept).
	maxLogSize = 16 << 20
)

// execResource is a long-running command supervised by vigil. Start spawns
// it in its own process group with its output appended to
// StateDir/SERVICE.RESOURCE.log, and writes "PID STARTTIME" to
// StateDir/SERVICE.RESOURCE.pid, so that an agent that restarts can tell
// (Probe) whether that very process still runs: the pid alone could have
// been reused, the pid with its start time cannot.
type execResource struct {
	base
	pidPath, logPath string

	startMu sync.Mutex // serializes Start, so one resource never runs twice

	mu  sync.Mutex
	cur *child // guarded by mu: the process this resource last started or adopted
}

// child is one process of an exec resource.
type child struct {
	pid    int
	start  uint64 // from /proc/PID/stat
	logOff int64  // where its output begins in the log
	// done is closed when the process has been reaped. It is nil for a
	// process adopted from the pid file (not a child of this agent).
	done  chan struct{}
	state *os.ProcessState // set before done is closed
}

func newExec(b base) (*execResource, error) {
	if len(b.res.Command) == 0 || b.res.Command[0] == "" {
		return nil, errors.New("command: give the argv list of the program to run")
	}
	if b.env.StateDir == "" {
		return nil, errors.New("exec resources need a state directory for pid files and logs (Env.StateDir)")
	}
	name := b.service + "." + b.res.Name
	return &execResource{
		base:    b,
		pidPath: filepath.Join(b.env.StateDir, name+".pid"),
		logPath: filepath.Join(b.env.StateDir, name+".log"),
	}, nil
}

func validateExec(r spec.Resource) error {
	if len(r.Command) == 0 || r.Command[0] == "" {
		return errors.New("command: give the argv list of the program to run, such as [/usr/bin/python3, -m, http.server]")
	}
	if err := executable(r.Command[0]); err != nil {
		return fmt.Errorf("command: %v", err)
	}
	if r.WorkDir != "" {
		st, err := os.Stat(r.WorkDir)
		if err != nil || !st.IsDir() {
			return fmt.Errorf("workdir %s is not a directory on this member", r.WorkDir)
		}
	}
	return nil
}

// executable checks that prog (a path, or a name looked up in PATH) is an
// executable file.
func executable(prog string) error {
	if !strings.Contains(prog, "/") {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("program %s is not found in PATH (%s): give its absolute path or install it", prog, os.Getenv("PATH"))
		}
		return nil
	}
	st, err := os.Stat(prog)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("program %s does not exist on this member", prog)
	case err != nil:
		return fmt.Errorf("program %s: %v", prog, err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("program %s is not a regular file", prog)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("program %s is not executable (chmod +x %s)", prog, prog)
	}
	return nil
}

// Run implements Resource.
func (x *execResource) Run(ctx context.Context, p Phase, c Call) Result {
	t0 := time.Now()
	var r Result
	switch p {
	case Start:
		r = x.start(ctx, c)
	case Stop:
		r = x.stop(ctx, Stop, c)
	case Abort:
		r = x.stop(ctx, Abort, c)
	case Check, Probe:
		r = x.check(p)
	default:
		if !known(p) {
			r = x.unknownPhase(p)
		} else {
			return x.skipped(p)
		}
	}
	return x.done(r, t0)
}

func (x *execResource) environ(c Call) []string {
	env := append(baseEnv(), vigilEnv(x.service, x.res.Name, Start, c)...)
	keys := make([]string, 0, len(x.res.Env))
	for k := range x.res.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+x.res.Env[k]) // later entries win
	}
	return env
}

func (x *execResource) start(ctx context.Context, c Call) Result {
	r := x.result(Start, "exec")
	x.startMu.Lock()
	defer x.startMu.Unlock()
	if ch, _ := x.running(); ch != nil {
		r.Status, r.RC = OK, 0
		r.Note = fmt.Sprintf("already running as pid %d; not started again", ch.pid)
		return r
	}
	fail := func(sev Severity, format string, args ...any) Result {
		r.Status, r.Severity, r.Err = Failed, sev, fmt.Sprintf(format, args...)
		return r
	}
	if err := ctx.Err(); err != nil {
		return fail(Soft, "not started: %v", err)
	}
	if err := os.MkdirAll(x.env.StateDir, 0o700); err != nil {
		return fail(Hard, "cannot create the state directory: %v", err)
	}
	if st, err := os.Stat(x.logPath); err == nil && st.Size() > maxLogSize {
		_ = os.Rename(x.logPath, x.logPath+".1")
	}
	logf, err := os.OpenFile(x.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fail(Hard, "cannot open the output log: %v", err)
	}
	fmt.Fprintf(logf, "--- vigil: %s service %s resource %s epoch %d: %q\n",
		time.Now().Format(time.RFC3339), x.service, x.res.Name, c.Epoch, x.res.Command)
	var off int64
	if st, err := logf.Stat(); err == nil {
		off = st.Size()
	}
	cmd := exec.Command(x.res.Command[0], x.res.Command[1:]...)
	cmd.Env = x.environ(c)
	cmd.Dir = x.res.WorkDir
	cmd.Stdout = logf // a file, not a pipe: the process owns it, vigil copies nothing
	cmd.Stderr = logf
	// Pdeathsig: a supervised command dies with the agent that supervises
	// it, so an agent that is killed cannot leave its service running
	// without a lease (the member's services run only under a lease).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fail(Hard, "%s could not be started on this member: %v", x.res.Command[0], err)
	}
	pid := cmd.Process.Pid
	ch := &child{pid: pid, logOff: off, done: make(chan struct{})}
	// Unreaped, the child keeps its /proc entry even if it has exited.
	st, err := readStat(pid)
	if err == nil {
		ch.start = st.start
	}
	go func() { // the reaper: no zombies while the agent lives
		_ = cmd.Wait()
		ch.state = cmd.ProcessState
		close(ch.done)
	}()
	if err != nil {
		killGroup(pid, syscall.SIGKILL)
		<-ch.done
		return fail(Soft, "cannot read /proc/%d/stat of the started process: %v", pid, err)
	}
	if err := writePidFile(x.pidPath, pid, ch.start); err != nil {
		killGroup(pid, syscall.SIGKILL)
		<-ch.done
		return fail(Hard, "cannot write the pid file, so the process was killed: %v", err)
	}
	x.mu.Lock()
	x.cur = ch
	x.mu.Unlock()

	settle := min(settleTime, x.timeout(Start, c))
	timer := time.NewTimer(settle)
	defer timer.Stop()
	select {
	case <-timer.C:
		r.Status, r.RC = OK, 0
		r.Note = fmt.Sprintf("running as pid %d", pid)
		return r
	case <-ch.done:
		os.Remove(x.pidPath)
		r.Output = tailOf(x.logPath, off)
		r.RC = ch.state.ExitCode()
		return fail(Soft, "%s %s within %s of starting (its output is in %s)", x.res.Command[0], exitWords(ch.state), settle, x.logPath)
	case <-ctx.Done():
		killGroup(pid, syscall.SIGKILL)
		<-ch.done
		os.Remove(x.pidPath)
		return fail(Soft, "start was interrupted (%v) and the process was killed", ctx.Err())
	}
}

// exitWords says how a process ended: "exited with status 3", "was killed
// by SIGKILL".
func exitWords(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by " + signalName(ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

// Exited returns a channel that is closed when the process this agent
// started for the resource exits, so that the lrm need not wait for the
// next Check to notice; nil when the agent did not start it (not started,
// or adopted by Probe after a restart: then only Check can tell).
func (x *execResource) Exited() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cur == nil || x.cur.done == nil {
		return nil
	}
	return x.cur.done
}

// running returns the live process of the resource, adopting the one named
// by the pid file if this agent did not start it, or nil and why not.
func (x *execResource) running() (*child, string) {
	x.mu.Lock()
	ch := x.cur
	x.mu.Unlock()
	if ch != nil {
		if ch.done != nil {
			select {
			case <-ch.done:
				return nil, fmt.Sprintf("process %d %s", ch.pid, exitWords(ch.state))
			default:
			}
		}
		st, err := readStat(ch.pid)
		if err == nil && st.start == ch.start && !st.zombie() {
			return ch, ""
		}
		if ch.done != nil {
			// Our own child: its reaper is about to record how it ended.
			select {
			case <-ch.done:
				return nil, fmt.Sprintf("process %d %s", ch.pid, exitWords(ch.state))
			case <-time.After(200 * time.Millisecond):
			}
		}
		return nil, fmt.Sprintf("process %d has exited", ch.pid)
	}
	pid, start, err := readPidFile(x.pidPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "it was not started (no pid file)"
	}
	if err != nil {
		return nil, err.Error()
	}
	st, err := readStat(pid)
	switch {
	case err != nil:
		return nil, fmt.Sprintf("process %d of the pid file has exited", pid)
	case st.start != start:
		return nil, fmt.Sprintf("process %d of the pid file has exited (the pid now belongs to another process)", pid)
	case st.zombie():
		return nil, fmt.Sprintf("process %d of the pid file has exited (zombie)", pid)
	}
	adopted := &child{pid: pid, start: start}
	x.mu.Lock()
	if x.cur == nil {
		x.cur = adopted
	}
	x.mu.Unlock()
	return adopted, ""
}

func (x *execResource) check(p Phase) Result {
	r := x.result(p, "pid")
	ch, why := x.running()
	if ch != nil {
		r.Status, r.RC = OK, 0
		if p == Probe {
			r.Note = fmt.Sprintf("running as pid %d", ch.pid)
		}
		return r
	}
	r.Status, r.Severity = NotRunning, Soft
	r.Err = "not running: " + why
	x.mu.Lock()
	cur := x.cur
	x.mu.Unlock()
	if p == Check && cur != nil && cur.done != nil {
		// Its last words, from where its output began.
		r.Output = tailOf(x.logPath, cur.logOff)
	}
	return r
}

// stop ends the process group: SIGTERM, then SIGKILL at the timeout
// (Stop), or SIGKILL at once (Abort). Stopping what does not run is OK.
func (x *execResource) stop(ctx context.Context, p Phase, c Call) Result {
	sig, method := syscall.SIGTERM, "SIGTERM"
	if p == Abort {
		sig, method = syscall.SIGKILL, "SIGKILL"
	}
	r := x.result(p, method)
	timeout := x.timeout(p, c)

	x.mu.Lock()
	ch := x.cur
	x.mu.Unlock()
	var pid int
	var start uint64
	if ch != nil {
		pid, start = ch.pid, ch.start
	} else if fpid, fstart, err := readPidFile(x.pidPath); err == nil {
		pid, start = fpid, fstart
	}
	forget := func() {
		os.Remove(x.pidPath)
		x.mu.Lock()
		if x.cur == ch {
			x.cur = nil
		}
		x.mu.Unlock()
	}
	if pid == 0 {
		forget()
		r.Status, r.RC, r.Note = OK, 0, "not running"
		return r
	}
	// The process group is named by the leader's pid. While any process
	// of the group lives, Linux does not hand that number out again; if
	// it now names a process with another start time, the group is gone.
	if st, err := readStat(pid); err == nil && st.start != start {
		forget()
		r.Status, r.RC, r.Note = OK, 0, fmt.Sprintf("not running (pid %d now belongs to another process)", pid)
		return r
	}
	g := group{pid: pid, start: start}
	if g.live() == 0 {
		forget()
		r.Status, r.RC, r.Note = OK, 0, "not running"
		return r
	}
	g.signal(sig)
	if sig != syscall.SIGKILL {
		g.signal(syscall.SIGCONT) // a stopped process cannot handle SIGTERM
	}
	gone, why := g.wait(ctx, timeout)
	if !gone && why == "" && sig != syscall.SIGKILL {
		g.signal(syscall.SIGKILL)
		r.Note = fmt.Sprintf("did not exit within %s of SIGTERM; killed with SIGKILL", timeout)
		gone, why = g.wait(ctx, killGrace)
		if !gone && why == "" {
			why = fmt.Sprintf("%d processes of group %d still live %s after SIGKILL (in uninterruptible sleep?)", g.live(), pid, killGrace)
		}
	} else if !gone && why == "" {
		why = fmt.Sprintf("%d processes of group %d still live %s after SIGKILL (in uninterruptible sleep?)", g.live(), pid, timeout)
	}
	if !gone {
		r.Status, r.Severity, r.Err = Failed, Hard, fmt.Sprintf("%s of process group %d failed: %s", method, pid, why)
		if ctx.Err() != nil {
			r.Severity = Soft // interrupted, not refused
		}
		return r
	}
	r.RC = 0
	if ch != nil && ch.done != nil {
		select { // the leader is dead: the reaper is about to report it
		case <-ch.done:
			r.RC = ch.state.ExitCode()
		case <-time.After(killGrace):
		}
	}
	forget()
	r.Status = OK
	return r
}

// group is the processes of an exec resource: the process group its
// leader made, and the leader itself (which could have left the group).
type group struct {
	pid   int
	start uint64
}

// live counts the live processes of the group.
func (g group) live() int {
	n := groupLive(g.pid)
	if st, err := readStat(g.pid); err == nil && st.start == g.start && !st.zombie() && st.pgrp != g.pid {
		n++
	}
	return n
}

// signal sends sig to the group and to the leader.
func (g group) signal(sig syscall.Signal) {
	killGroup(g.pid, sig)
	if st, err := readStat(g.pid); err == nil && st.start == g.start && st.pgrp != g.pid {
		_ = syscall.Kill(g.pid, sig)
	}
}

// wait polls until the group has no live process, the timeout passes
// (gone false, why "") or ctx is done (gone false, why says so).
func (g group) wait(ctx context.Context, timeout time.Duration) (gone bool, why string) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if g.live() == 0 {
			return true, ""
		}
		select {
		case <-deadline.C:
			return g.live() == 0, ""
		case <-ctx.Done():
			return false, fmt.Sprintf("interrupted (%v) while waiting for the processes to exit", ctx.Err())
		case <-tick.C:
		}
	}
}

// killGroup sends sig to process group pgid. A group that is gone is fine.
func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// writePidFile writes "PID STARTTIME\n" atomically.
func writePidFile(path string, pid int, start uint64) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", pid, start), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readPidFile reads a pid file written by writePidFile.
func readPidFile(path string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("pid file %s is malformed: want \"PID STARTTIME\", have %q", path, b)
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 1 {
		return 0, 0, fmt.Errorf("pid file %s is malformed: want \"PID STARTTIME\", have %q", path, b)
	}
	return pid, start, nil
}
