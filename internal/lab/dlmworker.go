package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/internal/lab/check"
)

// dlmSession is what a lock worker needs of a session with its member's
// lock manager. dialDLM opens one over the agent's socket with dlmclient;
// the tests fake it.
type dlmSession interface {
	// Lock takes resource in EX (ex) or PR, waiting until ctx ends.
	Lock(ctx context.Context, resource string, ex bool) (dlmHeld, error)
	// Lost delivers the lock manager's lost notifications.
	Lost() <-chan dlmLostNote
	Close() error
}

// dlmHeld is a granted lock.
type dlmHeld interface {
	ID() string
	Token() uint64
	Unlock(ctx context.Context) error
}

// dlmLostNote says a lock is lost: Lock names it (with its resource and
// token), or is empty when every lock of the session is.
type dlmLostNote struct {
	Lock, Resource string
	Token          uint64
	Err            string
}

// DLMWorkerOptions configure a lock worker (vigil-lab dlmworker).
type DLMWorkerOptions struct {
	Socket    string   // the agent's lock manager socket: DATA/dlm.sock
	Store     string   // the lock store's URL
	Member    string   // this member
	Client    string   // this worker's name, unique in a run
	Resources []string // the resources to lock
	Modes     []string // the modes to draw from: EX, PR (default both)
	// A hold sends MinOps..MaxOps operations (default 1..3); the gap
	// before each is drawn from [GapMin, GapMax] (default 10-50 ms).
	MinOps, MaxOps int
	GapMin, GapMax time.Duration
	// Timeout bounds a lock request and an unlock (default 5 s).
	Timeout time.Duration
	// Redial is how often to try the socket while the agent is down
	// (default 200 ms).
	Redial time.Duration
	// IgnoreLost keeps sending operations after a lost notification, as
	// a slow or careless client would: the store's fencing must refuse
	// them once someone else holds the lock.
	IgnoreLost bool
	Seed       uint64
	Log        string // the worker's log: one check.DLMEvent per line

	dial func(ctx context.Context, socket string) (dlmSession, error) // default dialDLM
}

func (o *DLMWorkerOptions) defaults() error {
	if len(o.Modes) == 0 {
		o.Modes = []string{check.ModeEX, check.ModePR}
	}
	for _, m := range o.Modes {
		if m != check.ModeEX && m != check.ModePR {
			return fmt.Errorf("--modes: %q is not EX or PR", m)
		}
	}
	if len(o.Resources) == 0 {
		return errors.New("--resources: name at least one resource")
	}
	if o.Member == "" {
		o.Member = os.Getenv("VIGIL_MEMBER")
	}
	if o.Member == "" || o.Client == "" || o.Store == "" || o.Socket == "" || o.Log == "" {
		return errors.New("a lock worker needs --member (or VIGIL_MEMBER), --client, --store, --socket and --log")
	}
	if o.MinOps <= 0 {
		o.MinOps = 1
	}
	if o.MaxOps <= 0 {
		o.MaxOps = max(3, o.MinOps)
	}
	if o.MaxOps < o.MinOps {
		return fmt.Errorf("--ops %d is below --ops-min %d", o.MaxOps, o.MinOps)
	}
	if o.GapMin == 0 && o.GapMax == 0 {
		o.GapMin, o.GapMax = 10*time.Millisecond, 50*time.Millisecond
	}
	if o.GapMax < o.GapMin {
		return fmt.Errorf("--gap-max %s is below --gap-min %s", o.GapMax, o.GapMin)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Redial <= 0 {
		o.Redial = 200 * time.Millisecond
	}
	if o.dial == nil {
		o.dial = dialDLM
	}
	return nil
}

// worker is one lock worker: its loop runs in the goroutine of RunDLMWorker;
// a watcher goroutine per session records lost notifications.
type worker struct {
	o    DLMWorkerOptions
	rnd  *rand.Rand // owned by the loop
	seq  uint64     // owned by the loop
	http *http.Client

	mu   sync.Mutex
	log  io.Writer // guarded by mu
	held *holding  // guarded by mu: the lock the loop holds, if any
}

type holding struct {
	res, mode, id string
	token         uint64
	lost          bool
}

// record appends e to the log, with this worker's names and, unless set,
// the time now.
func (w *worker) record(e check.DLMEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recordLocked(e)
}

func (w *worker) recordLocked(e check.DLMEvent) {
	if e.Mono == 0 {
		e.Mono = Mono()
	}
	e.Member, e.Client = w.o.Member, w.o.Client
	b, _ := json.Marshal(e)
	w.log.Write(append(b, '\n')) // one write: a kill leaves at most a partial last line
}

// RunDLMWorker runs a lock worker until ctx ends: it takes a lock on a
// random resource in a random mode, sends MinOps..MaxOps operations with its
// token to the store, unlocks, and again. Everything it sees goes to its
// log. When the agent is down it dials again every Redial; after an error
// or a lost notification it opens a new session.
func RunDLMWorker(ctx context.Context, o DLMWorkerOptions) error {
	if err := o.defaults(); err != nil {
		return err
	}
	f, err := os.OpenFile(o.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	w := &worker{o: o, log: f, rnd: rand.New(rand.NewPCG(o.Seed, uint64(os.Getpid()))),
		http: &http.Client{Timeout: 2 * time.Second}}
	w.record(check.DLMEvent{Event: check.DLMStart})
	w.loop(ctx)
	w.record(check.DLMEvent{Event: check.DLMStop})
	return nil
}

func (w *worker) loop(ctx context.Context) {
	var sess dlmSession
	var watched chan struct{}
	closeSession := func() {
		if sess != nil {
			sess.Close()
			<-watched
			sess = nil
		}
	}
	defer closeSession()
	failing := false
	for ctx.Err() == nil {
		if sess == nil {
			s, err := w.o.dial(ctx, w.o.Socket)
			if err != nil {
				if !failing {
					w.record(check.DLMEvent{Event: check.DLMDialError, Err: err.Error()})
					failing = true
				}
				sleep(ctx, w.o.Redial)
				continue
			}
			failing = false
			sess, watched = s, make(chan struct{})
			go w.watch(s, watched)
			w.record(check.DLMEvent{Event: check.DLMConnected})
		}
		if !w.hold(ctx, sess) {
			closeSession()
		}
		sleep(ctx, w.gap())
	}
}

// watch records the session's lost notifications until it closes.
func (w *worker) watch(s dlmSession, done chan struct{}) {
	defer close(done)
	for n := range s.Lost() {
		w.mu.Lock()
		e := check.DLMEvent{Event: check.DLMLost, Resource: n.Resource, Lock: n.Lock, Token: n.Token, Err: n.Err}
		if h := w.held; h != nil && (n.Lock == "" || n.Lock == h.id) {
			h.lost = true
			e.Resource, e.Mode, e.Lock, e.Token = h.res, h.mode, h.id, h.token
		}
		w.recordLocked(e)
		w.mu.Unlock()
	}
}

func (w *worker) gap() time.Duration {
	return w.o.GapMin + time.Duration(w.rnd.Int64N(int64(w.o.GapMax-w.o.GapMin)+1))
}

// hold takes one lock, sends its operations and unlocks. It returns false
// when the session should be replaced.
func (w *worker) hold(ctx context.Context, sess dlmSession) bool {
	res := w.o.Resources[w.rnd.IntN(len(w.o.Resources))]
	mode := w.o.Modes[w.rnd.IntN(len(w.o.Modes))]
	asked := Mono()
	lctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	l, err := sess.Lock(lctx, res, mode == check.ModeEX)
	timedOut := lctx.Err() != nil
	cancel()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			w.record(check.DLMEvent{Event: check.DLMGaveUp, Resource: res, Mode: mode, Asked: asked, Err: err.Error()})
		case timedOut:
			w.record(check.DLMEvent{Event: check.DLMTimeout, Resource: res, Mode: mode, Asked: asked, Err: err.Error()})
		default:
			// Not in the view, no quorum, ...: wait a little before a
			// new session tries again.
			w.record(check.DLMEvent{Event: check.DLMLockError, Resource: res, Mode: mode, Asked: asked, Err: err.Error()})
			sleep(ctx, w.o.Redial)
		}
		return false
	}
	h := &holding{res: res, mode: mode, id: l.ID(), token: l.Token()}
	w.mu.Lock()
	w.held = h
	w.recordLocked(check.DLMEvent{Event: check.DLMGrant, Resource: res, Mode: mode, Lock: h.id, Token: h.token, Asked: asked})
	w.mu.Unlock()

	kind := check.OpRead
	if mode == check.ModeEX {
		kind = check.OpWrite
	}
	n := w.o.MinOps + w.rnd.IntN(w.o.MaxOps-w.o.MinOps+1)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if i > 0 {
			sleep(ctx, w.gap())
		}
		w.mu.Lock()
		lost := h.lost
		w.mu.Unlock()
		if lost && !w.o.IgnoreLost {
			break
		}
		w.op(h, kind)
	}

	uctx, cancel := context.WithTimeout(context.Background(), w.o.Timeout)
	start := Mono()
	err = l.Unlock(uctx)
	cancel()
	e := check.DLMEvent{Mono: start, Event: check.DLMUnlock, Resource: res, Mode: mode, Lock: h.id, Token: h.token, Done: Mono(), OK: err == nil}
	if err != nil {
		e.Err = err.Error()
	}
	w.mu.Lock()
	w.held = nil
	lost := h.lost
	w.recordLocked(e)
	w.mu.Unlock()
	return err == nil && !lost
}

// op sends one operation under h to the store and records the answer.
func (w *worker) op(h *holding, kind string) {
	w.seq++
	op := check.DLMOp{Resource: h.res, Member: w.o.Member, Client: w.o.Client, Lock: h.id, Token: h.token, Mode: h.mode,
		Kind: kind, Seq: w.seq, Sent: Mono()}
	body, _ := json.Marshal(op)
	e := check.DLMEvent{Mono: op.Sent, Event: check.DLMOpDone, Resource: h.res, Mode: h.mode, Lock: h.id, Token: h.token,
		Kind: kind, Seq: w.seq}
	resp, err := w.http.Post(strings.TrimSuffix(w.o.Store, "/")+"/op", "application/json", bytes.NewReader(body))
	if err != nil {
		e.Err = err.Error()
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		var ans OpAnswer
		switch {
		case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusConflict:
			e.Err = fmt.Sprintf("the store answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
		case json.Unmarshal(b, &ans) != nil:
			e.Err = fmt.Sprintf("the store's answer is not JSON: %q", b)
		default:
			e.OK, e.Err = ans.Accepted, ans.Reason
		}
	}
	e.Done = Mono()
	w.record(e)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
