package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
)

// maxQueuedEvents bounds the events a member keeps while it cannot write
// them (no quorum, no director); the oldest are dropped past it, and the
// next event written says how many.
const maxQueuedEvents = 1000

// eventQueue holds the events this member saw and has not written to the
// event log yet.
type eventQueue struct {
	mu      sync.Mutex
	events  []client.Event // guarded by mu
	dropped int            // guarded by mu
	kick    chan struct{}
}

func newEventQueue() *eventQueue { return &eventQueue{kick: make(chan struct{}, 1)} }

// emit queues an event for the cluster's event log. It never blocks: the
// event loop writes it as soon as the cluster database takes writes, with
// the time it happened.
func (a *Agent) emit(e client.Event) {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	if len(e.Message) > cdb.MaxEventMessage {
		e.Message = e.Message[:cdb.MaxEventMessage-3] + "..."
	}
	q := a.evq
	q.mu.Lock()
	q.events = append(q.events, e)
	if over := len(q.events) - maxQueuedEvents; over > 0 {
		q.events = q.events[over:]
		q.dropped += over
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// eventLoop writes queued events, and notes this member's quorum changes.
func (a *Agent) eventLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	had := -1 // quorum: -1 unknown, 0 no, 1 yes
	for {
		if !a.wait(ctx, t.C, a.evq.kick) {
			return
		}
		present, expected, needed := a.quorum()
		if expected > 0 {
			now := 0
			if present >= needed {
				now = 1
			}
			switch {
			case had == 0 && now == 1:
				a.emit(client.Event{Kind: client.EventQuorum, Member: a.cfg.Name,
					Message: fmt.Sprintf("%s has quorum again: %d of %d votes present, %d needed", a.cfg.Name, present, expected, needed)})
			case had == 1 && now == 0:
				a.emit(client.Event{Kind: client.EventQuorum, Member: a.cfg.Name,
					Message: fmt.Sprintf("%s lost quorum: %d of %d votes present, %d needed", a.cfg.Name, present, expected, needed)})
			}
			had = now
		}
		a.flushEvents(ctx)
	}
}

// flushEvents writes the queued events, in batches; on failure they stay
// queued for the next round.
func (a *Agent) flushEvents(ctx context.Context) {
	q := a.evq
	for {
		q.mu.Lock()
		n := min(len(q.events), cdb.MaxEventsPerCommand-1)
		batch := append([]client.Event(nil), q.events[:n]...)
		dropped := q.dropped
		q.mu.Unlock()
		if n == 0 {
			return
		}
		if dropped > 0 {
			batch = append(batch, client.Event{At: time.Now().UTC(), Kind: client.EventMember, Member: a.cfg.Name,
				Message: fmt.Sprintf("%s dropped %d events it could not write while the cluster database was out of reach", a.cfg.Name, dropped)})
		}
		if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpEvents, By: "member:" + a.cfg.Name, Events: batch}); err != nil {
			if retryable(err) || cdb.UnknownOutcome(err) || ctx.Err() != nil {
				a.log.Debug("events: not written yet", "queued", len(q.events), "err", err)
				return
			}
			// Refused: it would be refused again and hold up the rest.
			a.log.Error("events: the cluster database refused a batch of events; dropped", "events", n, "err", err)
		}
		q.mu.Lock()
		q.events = q.events[n:]
		q.dropped -= dropped
		q.mu.Unlock()
	}
}

// Events answers GET /v1/events: with f.Wait, it waits for a first match.
func (a *Agent) Events(ctx context.Context, f client.EventFilter) []client.Event {
	var deadline <-chan time.Time
	if f.Wait > 0 {
		t := time.NewTimer(f.Wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		evs, more := a.store.Events(f)
		if len(evs) > 0 || f.Wait <= 0 {
			return evs
		}
		select {
		case <-more:
		case <-deadline:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// EventStream calls fn with every event f selects, then with each new one,
// until ctx ends or fn fails (an SSE client went away).
func (a *Agent) EventStream(ctx context.Context, f client.EventFilter, fn func([]client.Event) error) error {
	for {
		evs, more := a.store.Events(f)
		if len(evs) > 0 {
			if err := fn(evs); err != nil {
				return err
			}
			f.After, f.Limit = evs[len(evs)-1].Seq, 0
		} else if err := fn(nil); err != nil {
			return err
		}
		select {
		case <-more:
		case <-time.After(15 * time.Second): // fn(nil) keeps the stream alive
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// alertLoop runs the alert agents while this member is the director: for
// each new event, every alert that selects it, in parallel, each with its
// timeout. Alerts start from the events recorded after the member took
// office (a new director does not replay the old ones).
func (a *Agent) alertLoop(ctx context.Context) {
	var (
		after  uint64
		active bool
		sem    = make(chan struct{}, 8) // runs at once
	)
	for {
		more := a.store.EventsChanged()
		start, _ := a.term.snapshot()
		leading := !start.IsZero() && a.store.IsLeader()
		switch {
		case leading && !active:
			active = true
			if evs, _ := a.store.Events(client.EventFilter{Limit: 1}); len(evs) > 0 {
				after = evs[0].Seq
			}
			// Events written during the election may have come just before.
			for _, e := range a.eventsSince(start) {
				after = min(after, e.Seq-1)
			}
		case !leading:
			active = false
		}
		if active {
			evs, _ := a.store.Events(client.EventFilter{After: after})
			st := a.store.State()
			for i := range evs {
				e := evs[i]
				after = e.Seq
				for _, al := range st.Alerts {
					if !alertFor(al, &e) {
						continue
					}
					al := *al
					sem <- struct{}{}
					go func() {
						defer func() { <-sem }()
						a.runAlert(ctx, st.Cluster.Name, &al, &e)
					}()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.removed:
			return
		case <-more:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// eventsSince returns the events recorded at or after t.
func (a *Agent) eventsSince(t time.Time) []client.Event {
	evs, _ := a.store.Events(client.EventFilter{Since: t})
	return evs
}

// alertFor reports whether the alert is run for the event.
func alertFor(al *client.Alert, e *client.Event) bool {
	if e.Test {
		return e.Alert == "" || e.Alert == al.Name
	}
	if e.Kind == client.EventAlert && e.Alert == al.Name {
		return false // an alert never hears of its own failures
	}
	return cdb.Selects(al, e.Kind)
}

// alertEnv is the environment of an alert run: the event in VIGIL_ALERT_*.
func alertEnv(cluster, director string, al *client.Alert, e *client.Event) []string {
	rc := ""
	if e.RC != nil {
		rc = strconv.Itoa(*e.RC)
	}
	js, _ := json.Marshal(e)
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for k, v := range map[string]string{
		"NAME": al.Name, "RECIPIENT": al.Recipient, "CLUSTER": cluster, "DIRECTOR": director,
		"KIND": e.Kind, "MEMBER": e.Member, "SERVICE": e.Service, "EVENT": e.Message, "RC": rc,
		"TIMESTAMP": e.At.UTC().Format(time.RFC3339Nano), "SEQ": strconv.FormatUint(e.Seq, 10),
		"EPOCH": strconv.FormatUint(e.Epoch, 10), "BY": e.By, "TEST": strconv.FormatBool(e.Test), "JSON": string(js),
	} {
		env = append(env, "VIGIL_ALERT_"+k+"="+v)
	}
	return env
}

// maxAlertOutput bounds the output of an alert kept in its failure event.
const maxAlertOutput = 2048

// runAlert runs one alert for one event, and records a failure (or the
// outcome of a test) as an event.
func (a *Agent) runAlert(ctx context.Context, cluster string, al *client.Alert, e *client.Event) {
	timeout, err := cdb.AlertTimeout(al)
	if err != nil {
		timeout = cdb.DefaultAlertTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, al.Path)
	cmd.Env = alertEnv(cluster, a.cfg.Name, al, e)
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	t0 := time.Now()
	err = cmd.Run()
	took := time.Since(t0).Round(time.Millisecond)
	tail := strings.TrimSpace(out.String())
	if len(tail) > maxAlertOutput {
		tail = tail[len(tail)-maxAlertOutput:]
	}
	tail = strings.ReplaceAll(tail, "\n", " | ")
	rc := 0
	var msg string
	switch {
	case err == nil:
		if !e.Test {
			return
		}
		msg = fmt.Sprintf("alert %s ran for test event %d on %s: exit 0 in %s", al.Name, e.Seq, a.cfg.Name, took)
	case cctx.Err() == context.DeadlineExceeded:
		rc = -1
		msg = fmt.Sprintf("alert %s timed out after %s on %s for event %d and was killed; raise its timeout with `vigil alert add %s --timeout`", al.Name, timeout, a.cfg.Name, e.Seq, al.Name)
	default:
		rc = -1
		var x *exec.ExitError
		switch {
		case errors.As(err, &x) && x.ExitCode() >= 0:
			rc = x.ExitCode()
			msg = fmt.Sprintf("alert %s failed on %s for event %d: exit %d after %s", al.Name, a.cfg.Name, e.Seq, rc, took)
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission):
			msg = fmt.Sprintf("alert %s cannot run on %s: %v; install it at the same path on every member", al.Name, a.cfg.Name, err)
		default:
			msg = fmt.Sprintf("alert %s failed on %s for event %d: %v after %s", al.Name, a.cfg.Name, e.Seq, err, took)
		}
	}
	if tail != "" {
		msg += "; output: " + tail
	}
	if len(msg) > cdb.MaxEventMessage {
		msg = msg[:cdb.MaxEventMessage]
	}
	a.log.Info("alert: "+msg, "alert", al.Name, "rc", rc)
	a.emit(client.Event{Kind: client.EventAlert, Member: a.cfg.Name, Alert: al.Name, RC: &rc, Message: msg})
}

// Alerts implements api.Backend.
func (a *Agent) Alerts(ctx context.Context) []client.Alert {
	st := a.store.State()
	out := []client.Alert{}
	for _, n := range slices.Sorted(maps.Keys(st.Alerts)) {
		out = append(out, *st.Alerts[n])
	}
	return out
}

// SetAlert implements api.Backend. The executable must exist here (the
// member asked); the director checks it again each time it runs it.
func (a *Agent) SetAlert(ctx context.Context, al client.Alert, by string) error {
	if err := cdb.CheckAlert(&al); err != nil {
		return err
	}
	if st, err := os.Stat(al.Path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return cdb.Refuse(cdb.ErrInvalid, "alert %s: %s is not an executable file on %s: install it at the same path on every member", al.Name, al.Path, a.cfg.Name)
	}
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpAlertSet, By: by, Alert: &al})
	return err
}

// RemoveAlert implements api.Backend.
func (a *Agent) RemoveAlert(ctx context.Context, name, by string) error {
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpAlertRemove, By: by, Member: name})
	return err
}

// TestAlert implements api.Backend: it records a test event, which the
// director sends to the alert (or to every alert); the outcome of each run
// is recorded as an alert event.
func (a *Agent) TestAlert(ctx context.Context, name, by string) (*client.Event, error) {
	st := a.store.State()
	if name != "" {
		if _, ok := st.Alerts[name]; !ok {
			return nil, cdb.Refuse(cdb.ErrNotFound, "alert %s does not exist (see `vigil alert list`)", name)
		}
	} else if len(st.Alerts) == 0 {
		return nil, cdb.Refuse(cdb.ErrNotFound, "no alert is configured: add one with `vigil alert add NAME --path FILE`")
	}
	to := name
	if to == "" {
		to = "every alert"
	}
	e := client.Event{At: time.Now().UTC(), Kind: client.EventAlert, Member: a.cfg.Name, Alert: name, Test: true, By: by,
		Message: "test event for " + to + " from `vigil alert test` on " + a.cfg.Name}
	if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpEvents, By: by, Events: []client.Event{e}}); err != nil {
		return nil, err
	}
	return &e, nil
}
