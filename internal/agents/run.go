package agents

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// pipeGrace is how long a method's output is still read after the method
// exits, for processes it left behind that still hold its stdout (a START
// that runs `daemon &` without redirecting it). After that the pipe is
// closed: a process that keeps writing to it gets EPIPE.
const pipeGrace = 250 * time.Millisecond

// run is one bounded run of a method.
type run struct {
	argv    []string
	env     []string
	dir     string
	timeout time.Duration
	// marker, when set, keeps the last line starting with it (OCF exit
	// reasons) even when it scrolls out of the tail.
	marker string
	// capture, when set, keeps up to that many bytes of stdout whole
	// (meta-data); stderr alone then goes to the tail.
	capture int
}

// outcome is how a method run ended.
type outcome struct {
	rc       int    // exit code; -1 when killed by a signal or not started
	signal   string // the signal that ended it, if one did
	timedOut bool   // killed at the timeout
	canceled bool   // killed because the context was done
	startErr error  // it could not be started at all
	dur      time.Duration
	output   []string
	marked   string // the last line starting with run.marker, without it
	stdout   []byte // with run.capture: stdout
	overflow bool   // with run.capture: stdout was longer
}

// ok reports a zero exit.
func (o outcome) ok() bool { return o.startErr == nil && !o.timedOut && !o.canceled && o.rc == 0 }

// describe says in plain words how a run of what ended, when it did not
// end with exit 0, e.g. "START timed out after 5s and was killed".
func (o outcome) describe(what string, timeout time.Duration) string {
	switch {
	case o.startErr != nil:
		return fmt.Sprintf("%s could not be started: %v", what, o.startErr)
	case o.timedOut:
		return fmt.Sprintf("%s timed out after %s and was killed (with its whole process group)", what, timeout)
	case o.canceled:
		return fmt.Sprintf("%s was interrupted after %s (the agent is shutting down or gave up the call) and was killed", what, o.dur.Round(time.Millisecond))
	case o.signal != "":
		return fmt.Sprintf("%s was killed by %s", what, o.signal)
	}
	return fmt.Sprintf("%s exited with status %d", what, o.rc)
}

// exec runs r in its own process group, with stdin from /dev/null and
// stdout and stderr collected into a tail. At the timeout, or when ctx is
// done, the whole process group is killed with SIGKILL.
func (r run) exec(ctx context.Context) outcome {
	t0 := time.Now()
	tctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, r.argv[0], r.argv[1:]...)
	cmd.Env = r.env
	cmd.Dir = r.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tail := newTail(MaxOutputLines, MaxLineBytes, r.marker)
	cmd.Stdout = tail
	cmd.Stderr = tail
	var capt *capBuf
	if r.capture > 0 {
		capt = &capBuf{max: r.capture}
		cmd.Stdout = capt
	}
	var killed atomic.Bool
	cmd.Cancel = func() error {
		killed.Store(true)
		// Negative pid: the whole process group, which the method leads.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = pipeGrace
	o := outcome{rc: -1}
	if err := cmd.Start(); err != nil {
		o.startErr = err
		o.dur = time.Since(t0)
		return o
	}
	_ = cmd.Wait() // the outcome is read from ProcessState below
	o.dur = time.Since(t0)
	o.output, o.marked = tail.lines()
	if capt != nil {
		o.stdout, o.overflow = capt.buf.Bytes(), capt.over
	}
	if killed.Load() {
		if ctx.Err() != nil {
			o.canceled = true
		} else {
			o.timedOut = true
		}
	}
	if ps := cmd.ProcessState; ps != nil {
		o.rc = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			o.signal = signalName(ws.Signal())
		}
	}
	return o
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	}
	return fmt.Sprintf("signal %d (%s)", int(s), s)
}

// tail keeps the last n lines written to it, each cut to max bytes. It is
// safe for concurrent use.
type tail struct {
	mu     sync.Mutex
	n, max int
	marker string
	ring   []string     // guarded by mu
	cur    bytes.Buffer // guarded by mu: the line being written
	marked string       // guarded by mu
}

func newTail(n, max int, marker string) *tail {
	return &tail{n: n, max: max, marker: marker}
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		chunk := rest
		if i >= 0 {
			chunk = rest[:i]
		}
		if room := t.max - t.cur.Len(); len(chunk) > room {
			chunk = chunk[:max(room, 0)]
		}
		t.cur.Write(chunk)
		if i < 0 {
			break
		}
		t.endLine()
		rest = rest[i+1:]
	}
	return len(p), nil
}

// endLine moves the current line into the ring. Caller holds mu.
func (t *tail) endLine() {
	// Replacing bad bytes may lengthen the line: cut it after.
	line := cutUTF8(strings.ToValidUTF8(strings.TrimRight(t.cur.String(), "\r"), "\uFFFD"), t.max)
	t.cur.Reset()
	if t.marker != "" && strings.HasPrefix(line, t.marker) {
		t.marked = strings.TrimSpace(strings.TrimPrefix(line, t.marker))
	}
	t.ring = append(t.ring, line)
	if len(t.ring) > t.n {
		t.ring = t.ring[len(t.ring)-t.n:]
	}
}

// lines returns the tail, with a last line that has no newline yet.
func (t *tail) lines() ([]string, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur.Len() > 0 {
		t.endLine()
	}
	return append([]string(nil), t.ring...), t.marked
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// tailOf reads the last lines of a file from offset on (the output of one
// exec resource run in its log), reading at most the last 64 KiB.
func tailOf(path string, offset int64) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	const window = 64 << 10
	if st.Size() < offset {
		offset = 0 // the log was replaced
	}
	if st.Size()-offset > window {
		offset = st.Size() - window
	}
	buf := make([]byte, st.Size()-offset)
	n, _ := f.ReadAt(buf, offset)
	t := newTail(MaxOutputLines, MaxLineBytes, "")
	_, _ = t.Write(buf[:n])
	lines, _ := t.lines()
	return lines
}

// capBuf keeps the first max bytes written to it.
type capBuf struct {
	max  int
	buf  bytes.Buffer
	over bool
}

func (c *capBuf) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); len(p) > room {
		c.buf.Write(p[:room])
		c.over = true
	} else {
		c.buf.Write(p)
	}
	return len(p), nil
}
