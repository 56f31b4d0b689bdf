package lrm

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/agents"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/director"
	"github.com/vigil-cluster/vigil/internal/spec"
)

// Options configure a Manager.
type Options struct {
	Member string
	Env    agents.Env
	Log    *slog.Logger
	// Report sends a report to the director (through the cluster database),
	// with the methods behind it for the event log.
	Report func(ctx context.Context, e director.Event, steps []client.Step) error
	// Lease says whether this member may run services and whether it must
	// abort them now.
	Lease func() (valid, mustAbort bool)
}

// Manager closes the gap between the director's orders in the cluster
// database and what runs on this member. Each service has one worker
// goroutine that owns its resources; the Manager only routes orders.
type Manager struct {
	opts Options
	ctx  context.Context

	mu      sync.Mutex
	workers map[string]*worker // guarded by mu
}

// New returns a manager; Update and Probe start its workers.
func New(ctx context.Context, o Options) *Manager {
	return &Manager{opts: o, ctx: ctx, workers: map[string]*worker{}}
}

// order is what one service should be doing on this member.
type order struct {
	spec  spec.Service
	exist bool // the service exists
	// run: this member owns it at epoch and it should run (STARTING or
	// ONLINE); stop: it was ordered to stop it at epoch; frozen: nothing
	// may be started or stopped.
	run, stop, frozen bool
	online            bool // the director has it ONLINE
	epoch             uint64
	hosted, notHosted []string
}

// Update routes the current orders of st to the workers.
func (m *Manager) Update(st *cdb.State) {
	var hosted, notHosted []string
	for _, n := range st.ServiceNames() {
		s := st.Services[n].Status
		if s.Owner == m.opts.Member && (s.State == director.StateOnline || s.State == director.StateStarting) {
			hosted = append(hosted, n)
		} else {
			notHosted = append(notHosted, n)
		}
	}
	orders := map[string]order{}
	for _, n := range st.ServiceNames() {
		sv := st.Services[n]
		s := sv.Status
		o := order{spec: sv.Spec, exist: true, epoch: s.Epoch, hosted: hosted, notHosted: notHosted, online: s.State == director.StateOnline}
		mine := s.Owner == m.opts.Member
		switch s.State {
		case director.StateStarting, director.StateOnline:
			o.run = mine
		case director.StateStopping:
			o.stop = mine
		case director.StateFrozen:
			o.frozen = true
			o.run = mine && (s.Held == director.StateOnline || s.Held == director.StateStarting)
		case director.StateFailed:
			// A failed service with this member as owner may still partly
			// run here; the director orders its stop. Leave it as it is.
			o.frozen = mine
		}
		orders[n] = o
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, o := range orders {
		w, ok := m.workers[n]
		if !ok {
			w = m.newWorker(n)
		}
		w.send(o)
	}
	for n, w := range m.workers {
		if _, ok := orders[n]; !ok {
			w.send(order{})
		}
	}
}

// Abort gives up every service at once (lease or quorum lost).
func (m *Manager) Abort() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.workers {
		w.abort()
	}
}

// Stop stops every service this member runs (the agent is shutting down)
// and waits for the workers, bounded by ctx.
func (m *Manager) Stop(ctx context.Context) {
	m.mu.Lock()
	ws := make([]*worker, 0, len(m.workers))
	for _, w := range m.workers {
		ws = append(ws, w)
		w.send(order{exist: true, frozen: false})
	}
	m.mu.Unlock()
	for _, w := range ws {
		select {
		case <-w.idle:
		case <-ctx.Done():
			return
		}
	}
}

// Running lists the services running here, for status output.
func (m *Manager) Running() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]uint64{}
	for n, w := range m.workers {
		if e, ok := w.runningEpoch(); ok {
			out[n] = e
		}
	}
	return out
}

// worker owns one service's resources on this member.
type worker struct {
	m       *Manager
	name    string
	orders  chan order
	aborts  chan struct{}
	idle    chan struct{} // receives after each order is carried out with nothing running
	mu      sync.Mutex
	running bool   // guarded by mu
	epoch   uint64 // guarded by mu
}

func (m *Manager) newWorker(name string) *worker {
	w := &worker{m: m, name: name, orders: make(chan order, 1), aborts: make(chan struct{}, 1), idle: make(chan struct{}, 1)}
	m.workers[name] = w
	go w.loop()
	return w
}

// send replaces any order not yet taken: only the latest matters.
func (w *worker) send(o order) {
	select {
	case <-w.orders:
	default:
	}
	w.orders <- o
}

func (w *worker) abort() {
	select {
	case w.aborts <- struct{}{}:
	default:
	}
}

func (w *worker) runningEpoch() (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch, w.running
}

func (w *worker) set(running bool, epoch uint64) {
	w.mu.Lock()
	w.running, w.epoch = running, epoch
	w.mu.Unlock()
}

func specKey(s spec.Service) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (w *worker) loop() {
	log := w.m.opts.Log.With("service", w.name)
	var (
		cur        order
		seq        *Sequence
		key        string
		reported   = map[string]uint64{} // kind -> epoch already reported
		pending    *director.Event
		steps      []client.Step
		monitorDue time.Time
	)
	retry := time.NewTicker(200 * time.Millisecond)
	defer retry.Stop()
	call := func(o order) agents.Call {
		return agents.Call{Member: w.m.opts.Member, Service: w.name, Epoch: o.epoch, Hosted: o.hosted, NotHosted: o.notHosted,
			Interval: o.spec.MonitorInterval.D()}
	}
	build := func(o order) bool {
		if seq != nil && key == specKey(o.spec) {
			return true
		}
		s, err := NewSequence(o.spec, w.m.opts.Env)
		if err != nil {
			log.Error("lrm: cannot build the service's agents", "err", err)
			return false
		}
		seq, key = s, specKey(o.spec)
		return true
	}
	report := func(kind director.EventKind, epoch uint64, rep *Report) {
		if reported[string(kind)] == epoch && epoch != 0 {
			return
		}
		reported[string(kind)] = epoch
		e := director.Event{Kind: kind, Service: w.name, Member: w.m.opts.Member, Epoch: epoch}
		if rep != nil && rep.Failed != nil {
			f := rep.Failed
			e.Severity = severity(f.Severity)
			e.Detail = detail(f)
		}
		pending, steps = &e, nil
		if rep != nil {
			steps = stepsOf(rep)
		}
	}
	flush := func() {
		if pending == nil {
			return
		}
		ctx, cancel := context.WithTimeout(w.m.ctx, 5*time.Second)
		err := w.m.opts.Report(ctx, *pending, steps)
		cancel()
		if err == nil {
			log.Info("lrm: reported", "kind", pending.Kind, "epoch", pending.Epoch, "detail", pending.Detail)
			pending = nil
		}
	}
	stopLocal := func(abort bool, why string) *Report {
		if seq == nil {
			return nil
		}
		_, running := w.runningEpoch()
		if !running {
			return nil
		}
		log.Info("lrm: stopping", "why", why, "abort", abort)
		rep := seq.Stop(w.m.ctx, call(cur), abort)
		logReport(log, "stop", &rep)
		w.set(false, 0)
		return &rep
	}
	signalIdle := func() {
		if _, running := w.runningEpoch(); !running {
			select {
			case w.idle <- struct{}{}:
			default:
			}
		}
	}
	for {
		select {
		case <-w.m.ctx.Done():
			return
		case <-w.aborts:
			stopLocal(true, "this member lost its lease or quorum")
			continue
		case o := <-w.orders:
			cur = o
		case <-retry.C:
			flush()
			// Monitors run only on an ONLINE service owned here.
			if epoch, running := w.runningEpoch(); running && cur.run && cur.online && epoch == cur.epoch && !cur.frozen &&
				time.Now().After(monitorDue) && seq != nil {
				monitorDue = time.Now().Add(cur.spec.MonitorInterval.D())
				rep := seq.Check(w.m.ctx, call(cur))
				if !rep.OK() && reported[string(director.MonitorFailed)] != cur.epoch {
					logReport(log, "monitor", &rep)
					report(director.MonitorFailed, cur.epoch, &rep)
					flush()
				}
			}
			continue
		}
		if !cur.exist {
			stopLocal(false, "the service was deleted")
			signalIdle()
			return
		}
		if cur.frozen && !cur.run {
			continue
		}
		if !build(cur) {
			continue
		}
		epoch, running := w.runningEpoch()
		done := func(kinds ...director.EventKind) bool {
			for _, k := range kinds {
				if reported[string(k)] == cur.epoch && cur.epoch != 0 {
					return true
				}
			}
			return false
		}
		switch {
		case cur.stop && done(director.StopSucceeded, director.StopFailed):
			// Already carried out for this epoch.
		case cur.stop:
			rep := stopLocal(false, "the director ordered a stop")
			if rep == nil {
				rep = &Report{}
				r := seq.Stop(w.m.ctx, call(cur), false) // idempotent: release anything left
				rep = &r
			}
			if rep.OK() {
				report(director.StopSucceeded, cur.epoch, rep)
			} else {
				report(director.StopFailed, cur.epoch, rep)
			}
		case cur.run && running && epoch == cur.epoch:
			// Runs as ordered; a service found running at start-up (adopted)
			// whose start the director still waits for is reported started.
			if !cur.online && !cur.frozen {
				report(director.StartSucceeded, cur.epoch, nil)
			}
		case cur.run && cur.frozen:
			// Frozen: nothing starts or stops.
		case cur.run && done(director.StartFailed):
			// The start failed at this epoch; wait for the director's next order.
		case cur.run:
			if valid, _ := w.m.opts.Lease(); !valid {
				log.Warn("lrm: not starting without a valid lease")
				continue
			}
			if running {
				stopLocal(false, "restart ordered with a new epoch")
			}
			log.Info("lrm: starting", "epoch", cur.epoch)
			rep := seq.Start(w.m.ctx, call(cur))
			logReport(log, "start", &rep)
			if rep.OK() {
				w.set(true, cur.epoch)
				monitorDue = time.Now().Add(cur.spec.MonitorInterval.D())
				report(director.StartSucceeded, cur.epoch, &rep)
			} else {
				report(director.StartFailed, cur.epoch, &rep)
			}
		default:
			stopLocal(false, "this member does not own it")
		}
		flush()
		signalIdle()
	}
}

// Adopt records, after a probe at start-up, that the service already runs
// here at epoch (so it is not started again).
func (m *Manager) Adopt(name string, s spec.Service, epoch uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.workers[name]
	if !ok {
		w = m.newWorker(name)
	}
	w.set(true, epoch)
}

// Probe asks every resource of every service whether it runs here. It
// returns the services found running.
func Probe(ctx context.Context, st *cdb.State, env agents.Env, log *slog.Logger) map[string]bool {
	out := map[string]bool{}
	for _, n := range st.ServiceNames() {
		seq, err := NewSequence(st.Services[n].Spec, env)
		if err != nil {
			continue
		}
		rep, running := seq.Probe(ctx, agents.Call{Service: n})
		if running {
			log.Info("lrm: probe found the service running here", "service", n, "results", len(rep.Results))
			out[n] = true
		}
	}
	return out
}

func severity(s agents.Severity) director.Severity {
	switch s {
	case agents.Hard:
		return director.Hard
	case agents.Fatal:
		return director.Fatal
	}
	return director.Soft
}

func detail(r *agents.Result) string {
	d := r.Resource + " " + r.Method
	if r.Err != "" {
		d += ": " + r.Err
	}
	if n := len(r.Output); n > 0 {
		d += " (" + strings.TrimSpace(r.Output[n-1]) + ")"
	}
	if len(d) > 512 {
		d = d[:512]
	}
	return d
}

// stepsOf lists the methods a report ran, for the event log: the last
// MaxSteps of them, each with at most the last 5 lines of output.
func stepsOf(r *Report) []client.Step {
	res := r.Results
	if len(res) > cdb.MaxSteps {
		res = res[len(res)-cdb.MaxSteps:]
	}
	out := make([]client.Step, 0, len(res))
	for _, x := range res {
		o := x.Output
		if len(o) > 5 {
			o = o[len(o)-5:]
		}
		out = append(out, client.Step{Resource: x.Resource, Method: x.Method, RC: x.RC, DurationMS: x.Duration.Milliseconds(),
			Output: slices.Clone(o), Error: x.Err})
	}
	return out
}

// logReport logs every method run (start and stop halves at info, monitors
// only when they fail) with its exit code, duration and last line of output.
func logReport(log *slog.Logger, what string, r *Report) {
	for _, res := range r.Results {
		lvl := slog.LevelInfo
		if what == "monitor" {
			lvl = slog.LevelDebug
		}
		if res.Status != agents.OK {
			lvl = slog.LevelWarn
		}
		last := ""
		if n := len(res.Output); n > 0 {
			last = res.Output[n-1]
		}
		log.Log(context.Background(), lvl, "lrm: "+what, "resource", res.Resource, "phase", string(res.Phase), "method", res.Method,
			"status", res.Status.String(), "rc", res.RC, "duration", res.Duration.Round(time.Millisecond), "err", res.Err, "note", res.Note, "output", last)
	}
}
