package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/rpc"
)

// Limits of `vigil exec`.
const (
	DefaultExecTimeout = 30 * time.Second
	MaxExecTimeout     = 10 * time.Minute
	MaxExecOutput      = 1 << 20
	MaxExecArgs        = 256
	MaxExecArgBytes    = 64 << 10
	// MaxExecRuns bounds the runs a member carries out at once.
	MaxExecRuns = 8
)

// execSlots bounds the exec runs on this member.
var execSlots = make(chan struct{}, MaxExecRuns)

func checkExec(cmd []string, timeout time.Duration) error {
	if len(cmd) == 0 || cmd[0] == "" {
		return cdb.Refuse(cdb.ErrInvalid, "no command: give one after --, for example `vigil exec --all -- uptime`")
	}
	n := 0
	for _, a := range cmd {
		n += len(a)
		if strings.ContainsRune(a, 0) {
			return cdb.Refuse(cdb.ErrInvalid, "an argument of the command holds a NUL byte")
		}
	}
	if len(cmd) > MaxExecArgs || n > MaxExecArgBytes {
		return cdb.Refuse(cdb.ErrInvalid, "the command has %d arguments of %d bytes: at most %d arguments and %d bytes", len(cmd), n, MaxExecArgs, MaxExecArgBytes)
	}
	if timeout < 0 || timeout > MaxExecTimeout {
		return cdb.Refuse(cdb.ErrInvalid, "timeout %s is out of range: 1s to %s", timeout, MaxExecTimeout)
	}
	return nil
}

// Exec implements api.Backend: it runs the command on each member through
// its agent, in parallel, and records the run (who, what, where, how it
// ended) as an operator event.
func (a *Agent) Exec(ctx context.Context, r client.ExecRequest, by string) ([]client.ExecResult, error) {
	if r.Timeout == 0 {
		r.Timeout = DefaultExecTimeout
	}
	if err := checkExec(r.Command, r.Timeout); err != nil {
		return nil, err
	}
	st := a.store.State()
	names := r.Members
	switch {
	case r.All && len(names) > 0:
		return nil, cdb.Refuse(cdb.ErrInvalid, "give either --all or --members, not both")
	case r.All:
		names = st.MemberNames()
	case len(names) == 0:
		return nil, cdb.Refuse(cdb.ErrInvalid, "no member given: use --members a,b or --all")
	}
	seen := map[string]bool{}
	for _, n := range names {
		if _, ok := st.Members[n]; !ok {
			return nil, cdb.Refuse(cdb.ErrNotFound, "member %s is not in the cluster (see `vigil members`)", n)
		}
		if seen[n] {
			return nil, cdb.Refuse(cdb.ErrInvalid, "member %s is named twice", n)
		}
		seen[n] = true
	}
	out := make([]client.ExecResult, len(names))
	var wg sync.WaitGroup
	for i, m := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &rpc.ExecRequest{Command: r.Command, Timeout: r.Timeout, By: by}
			if m == a.cfg.Name {
				out[i] = a.execLocal(ctx, req)
				return
			}
			cctx, cancel := context.WithTimeout(ctx, r.Timeout+5*time.Second)
			defer cancel()
			var res client.ExecResult
			if err := a.callOnce(cctx, m, "Exec", req, &res); err != nil {
				res = client.ExecResult{Member: m, RC: -1, Error: "not reached: " + err.Error()}
			}
			out[i] = res
		}()
	}
	wg.Wait()
	var ends []string
	for _, x := range out {
		ends = append(ends, fmt.Sprintf("%s rc=%d", x.Member, x.RC))
	}
	a.emit(client.Event{Kind: client.EventOperator, By: by,
		Message: fmt.Sprintf("exec on %s: %s → %s", strings.Join(names, ","), quoteArgs(r.Command), strings.Join(ends, ", "))})
	return out, nil
}

// callOnce calls a method that may run long and must not run twice on
// member m: once, on the first of its links that memberlist sees up (the
// first link when none is).
func (a *Agent) callOnce(ctx context.Context, m, method string, req, resp any) error {
	addrs := a.dlmAddrs(m)
	if len(addrs) == 0 {
		return cdb.Refuse(cdb.ErrNotFound, "%s is not a member", m)
	}
	addr := addrs[0]
	if p, ok := a.ml.Peers()[m]; ok {
		for i, l := range p.Links {
			if l.Up && i < len(addrs) {
				addr = addrs[i]
				break
			}
		}
	}
	return a.pool.Call(ctx, addr, method, req, resp)
}

func (n *node) Exec(ctx context.Context, r *rpc.ExecRequest) (*client.ExecResult, error) {
	if err := checkExec(r.Command, r.Timeout); err != nil {
		return nil, err
	}
	res := n.a.execLocal(ctx, r)
	return &res, nil
}

// execLocal runs the command here, in its own process group, killed at the
// timeout, with the output (stdout and stderr together) kept up to
// MaxExecOutput.
func (a *Agent) execLocal(ctx context.Context, r *rpc.ExecRequest) client.ExecResult {
	res := client.ExecResult{Member: a.cfg.Name, RC: -1}
	if r.Timeout <= 0 {
		r.Timeout = DefaultExecTimeout
	}
	select {
	case execSlots <- struct{}{}:
		defer func() { <-execSlots }()
	default:
		res.Error = fmt.Sprintf("%s already runs %d commands for vigil exec: try again when they end", a.cfg.Name, MaxExecRuns)
		return res
	}
	a.log.Warn("exec: running a command for an operator", "by", r.By, "command", quoteArgs(r.Command), "timeout", r.Timeout)
	cctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, r.Command[0], r.Command[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "VIGIL_MEMBER=" + a.cfg.Name,
		"VIGIL_DATA_DIR=" + a.dir, "HOME=/root", "LANG=C.UTF-8"}
	out := &capped{max: MaxExecOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	t0 := time.Now()
	err := cmd.Run()
	res.DurationMS = time.Since(t0).Milliseconds()
	res.Output, res.Truncated = out.String(), out.over
	var x *exec.ExitError
	switch {
	case err == nil:
		res.RC = 0
	case cctx.Err() == context.DeadlineExceeded:
		res.Error = fmt.Sprintf("timed out after %s and was killed", r.Timeout)
	case errors.As(err, &x) && x.ExitCode() >= 0:
		res.RC = x.ExitCode()
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound):
		res.Error = fmt.Sprintf("%s: not found on %s", r.Command[0], a.cfg.Name)
	default:
		res.Error = err.Error()
	}
	return res
}

// capped keeps up to max bytes of output and notes whether there was more.
type capped struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room < len(p) {
		c.buf.Write(p[:max(room, 0)])
		c.over = true
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// quoteArgs shows a command as a shell would need it typed.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]{}~#!") {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
