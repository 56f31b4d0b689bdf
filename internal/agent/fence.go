package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
)

// fenceRetry is how long the director waits before trying again to fence a
// member every device failed to fence.
const fenceRetry = 5 * time.Second

// startFence fences member in the background, trying its devices level by
// level, unless a fence of it is already running. Only the director calls it.
func (a *Agent) startFence(ctx context.Context, member string) {
	a.term.mu.Lock()
	if a.term.fencing == nil {
		a.term.fencing = map[string]bool{}
	}
	if a.term.fencing[member] {
		a.term.mu.Unlock()
		return
	}
	a.term.fencing[member] = true
	a.term.mu.Unlock()
	go func() {
		ok := a.fence(ctx, member)
		if !ok {
			time.Sleep(fenceRetry)
		}
		a.term.mu.Lock()
		delete(a.term.fencing, member)
		a.term.mu.Unlock()
		a.kickDirector()
	}()
}

func (a *Agent) fencePending(member string) bool {
	a.term.mu.Lock()
	defer a.term.mu.Unlock()
	return a.term.fencing[member]
}

// fence runs the member's fence devices in level order until one confirms the
// member is off, and records it.
func (a *Agent) fence(ctx context.Context, member string) bool {
	var devs []cdb.FenceDevice
	a.store.View(func(s *cdb.State) { devs = s.FenceDevicesFor(member) })
	if len(devs) == 0 {
		a.log.Error("fencing: no fence device can fence this member; its services wait for its lease", "fenced", member)
		a.emit(client.Event{Kind: client.EventFence, Member: member,
			Message: "cannot fence " + member + ": no fence device covers it; its services wait for its lease (add one with `vigil fence add`)"})
		return false
	}
	// A director that stalled may have been deposed without knowing it yet:
	// only a director a quorum still follows may power a member off.
	if err := a.store.VerifyLeader(); err != nil {
		a.log.Warn("fencing: not fencing, this member is no longer the director", "fenced", member, "err", err)
		return false
	}
	for _, d := range devs {
		t0 := time.Now()
		a.emit(client.Event{Kind: client.EventFence, Member: member,
			Message: fmt.Sprintf("fencing %s (off) with device %s (level %d)", member, d.Name, d.Level)})
		out, err := runFenceAgent(ctx, d, "off", member)
		if err != nil {
			took := time.Since(t0).Round(time.Millisecond)
			a.log.Error("fencing: device failed", "fenced", member, "device", d.Name, "level", d.Level, "err", err, "output", out, "duration", took)
			rc := -1
			if x, ok := err.(*exec.ExitError); ok {
				rc = x.ExitCode()
			}
			msg := fmt.Sprintf("fence of %s with device %s failed after %s: %v", member, d.Name, took, err)
			if out != "" {
				msg += "; output: " + lastBytes(out, 1024)
			}
			a.emit(client.Event{Kind: client.EventFence, Member: member, RC: &rc, Message: msg})
			continue
		}
		a.log.Warn("fencing: member fenced (off)", "fenced", member, "device", d.Name, "level", d.Level, "duration", time.Since(t0).Round(time.Millisecond))
		cctx, cancel := context.WithTimeout(ctx, a.prof.ApplyTimeout)
		_, _, err = a.store.Apply(cctx, &cdb.Command{Op: cdb.OpFenced, At: time.Now().UTC(), By: "director", Member: member, Flag: true,
			Settings: map[string]string{"device": d.Name}})
		cancel()
		if err != nil {
			a.log.Error("fencing: recording the fence", "fenced", member, "err", err)
			return false
		}
		return true
	}
	a.log.Error("fencing: every device failed; the member's services wait until it is fenced or its lease has run out", "fenced", member)
	a.emit(client.Event{Kind: client.EventFence, Member: member,
		Message: "every fence device of " + member + " failed; its services wait until it is fenced or its lease has run out; the director tries again"})
	return false
}

// lastBytes is the end of s, at most n bytes.
func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// runFenceAgent runs a fence agent with Pacemaker's stdin interface.
func runFenceAgent(ctx context.Context, d cdb.FenceDevice, action, node string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	var in bytes.Buffer
	fmt.Fprintf(&in, "action=%s\nnodename=%s\n", action, node)
	keys := make([]string, 0, len(d.Options))
	for k := range d.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&in, "%s=%s\n", k, d.Options[k])
	}
	cmd := exec.CommandContext(ctx, d.Agent)
	cmd.Stdin = &in
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	tail := strings.TrimSpace(out.String())
	if len(tail) > 512 {
		tail = tail[len(tail)-512:]
	}
	if ctx.Err() == context.DeadlineExceeded {
		return tail, fmt.Errorf("timed out after %s and was killed", d.Timeout)
	}
	return tail, err
}

// FenceDevices implements api.Backend.
func (a *Agent) FenceDevices(ctx context.Context) []client.FenceDevice {
	out := []client.FenceDevice{}
	a.store.View(func(s *cdb.State) {
		names := make([]string, 0, len(s.Fencing))
		for n := range s.Fencing {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			d := s.Fencing[n]
			out = append(out, client.FenceDevice{Name: d.Name, Agent: d.Agent, Members: d.Members, Options: d.Options, Level: d.Level, Timeout: d.Timeout})
		}
	})
	return out
}

// SetFenceDevice implements api.Backend. The agent must exist on this
// member; the others are checked when they fence.
func (a *Agent) SetFenceDevice(ctx context.Context, d client.FenceDevice, by string) error {
	if d.Level == 0 {
		d.Level = 1
	}
	if d.Timeout == 0 {
		d.Timeout = 20 * time.Second
	}
	dev := cdb.FenceDevice{Name: d.Name, Agent: d.Agent, Members: d.Members, Options: d.Options, Level: d.Level, Timeout: d.Timeout}
	if err := dev.Validate(); err != nil {
		return cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	if st, err := os.Stat(d.Agent); err != nil || st.Mode()&0o111 == 0 {
		return cdb.Refuse(cdb.ErrInvalid, "fence agent %s is not an executable file on %s: install it on every member that may be director", d.Agent, a.cfg.Name)
	}
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpFenceSet, By: by, Fence: &dev})
	return err
}

// ConfirmFenced implements api.Backend: the operator says a DOWN member is
// off. It is refused while this member sees it UP.
func (a *Agent) ConfirmFenced(ctx context.Context, member, by string) error {
	var known bool
	a.store.View(func(s *cdb.State) { _, known = s.Members[member] })
	if !known {
		return cdb.Refuse(cdb.ErrNotFound, "%s is not a member of this cluster (see `vigil members`)", member)
	}
	if p, ok := a.ml.Peers()[member]; ok && p.Up() {
		return cdb.Refuse(cdb.ErrConflict, "%s is UP: confirming a fence of a running member would let its services run twice; power it off first", member)
	}
	a.log.Warn("fencing: member confirmed off by hand", "fenced", member, "by", by)
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpFenced, At: time.Now().UTC(), By: by, Member: member, Flag: true,
		Settings: map[string]string{"device": "confirmed by " + by}})
	return err
}

// RemoveFenceDevice implements api.Backend.
func (a *Agent) RemoveFenceDevice(ctx context.Context, name, by string) error {
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpFenceRemove, By: by, Member: name})
	return err
}
