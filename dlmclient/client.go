// Package dlmclient is the Go client of vigil's distributed lock manager
// (docs/DLM.md): OpenVMS-style locks with six modes, value blocks, blocking
// notifications, sub-locks and fencing tokens, held by a session on this
// member's agent.
//
// A [Client] is one session: [Dial] opens it through the agent's Unix
// socket (DATA/dlm.sock, root only) and memory the agent shares with the
// session (the socket's ring protocol; [NoRings]: its raw protocol), [DialGRPC]
// with its gRPC service (slower; what other languages use), [Local]
// directly on a lock manager in the same process (the agent's own code,
// benchmarks). All have the same API.
// The session owns its locks: when it ends ([Client.Close], the process
// exits, the connection breaks) the agent releases them all. When the
// member's lease is about to end, the agent tells the session that its
// locks are lost ([Lock.Lost], [Client.Lost]): stop using what they
// protect at once.
//
// Blocking calls ([Client.Lock], [Lock.Convert], [Lock.Unlock]) take a
// context: when it ends while a request waits, the request is canceled
// (and released if it was granted meanwhile). Asynchronous forms
// ([Client.LockAsync], [Lock.ConvertAsync]) return a [Pending] request.
// Every grant carries a fencing token ([Lock.Token]) that grows with every
// grant of the resource: give it to the store the lock protects, so it
// can refuse a stale holder.
//
// The package owns a session's view of its locks; it must not decide
// anything the lock manager decides (grants, queues, deadlocks): it only
// sends requests and follows the answers and events.
package dlmclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
)

// Client is a session of the lock manager on this member. It is safe for
// concurrent use.
type Client struct {
	t     transport
	owner string

	blocking chan Blocking
	lost     chan struct{} // closed when the session's locks are lost

	mu        sync.Mutex
	locks     map[uint64]*Lock // guarded by mu: the locks with an id, not gone, by id.N (all ids are of this member)
	enqueuing bool             // guarded by mu: a Local enqueue runs (early collects)
	early     []event          // guarded by mu: events for a lock not bound yet
	err       error            // guarded by mu: why the session ended or was lost
	closed    bool             // guarded by mu
	dropped   uint64           // guarded by mu: blocking notifications Blocking() missed
	posted    *op              // guarded by mu: the latest posted unlock
	postedErr error            // guarded by mu: the first posted unlock that found its lock gone, for Sync

	// due counts what the session waits for from the lock manager:
	// answers, and the completions of requests. The socket's reader
	// waits for them spinning (socket.SpinReader).
	due atomic.Int64
}

// BlockingBuffer is the buffer of the channel Client.Blocking returns.
const BlockingBuffer = 1024

func newClient() *Client {
	return &Client{locks: map[uint64]*Lock{}, blocking: make(chan Blocking, BlockingBuffer), lost: make(chan struct{})}
}

// Local opens a session directly on srv, the lock manager of this
// process. A request granted at once completes within the call.
func Local(srv *server.Server) (*Client, error) {
	if srv == nil {
		return nil, &Error{Op: "open", Kind: ErrInvalid, Msg: "the lock manager is nil"}
	}
	c := newClient()
	t := &localTransport{c: c}
	ss, err := srv.Open(c.onEvent)
	if err != nil {
		return nil, &Error{Op: "open", Kind: kindOf(err), Msg: "cannot open a session: " + socket.Reason(err)}
	}
	t.ss = ss
	c.t, c.owner = t, ss.Owner().String()
	return c, nil
}

// Owner is the session's name in the lock manager, "member/n": the owner
// of its locks in `vigil locks`.
func (c *Client) Owner() string { return c.owner }

// Close ends the session: the lock manager releases every lock it holds
// or waits for. Requests still waiting fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.err == nil {
		c.err = &Error{Op: "close", Kind: ErrClosed, Msg: "the lock client is closed: open a new session"}
	}
	c.mu.Unlock()
	err := c.t.close()
	c.mu.Lock()
	c.endLocked(&Error{Op: "close", Kind: ErrClosed, Msg: "the lock client was closed: the lock manager released this lock"}, false)
	c.mu.Unlock()
	return err
}

// Sync returns once the lock manager has taken every release Unlock
// returned from before it (with PostUnlocks, an unlock returns once it is
// sent): for example before telling another process, by other means,
// that a resource is free. It returns an ErrLost error if one of those
// releases found its lock already gone (lost before Unlock was called:
// what it protected was not protected to the end), the session's error
// if the session ended first, or ctx's.
func (c *Client) Sync(ctx context.Context) error {
	c.mu.Lock()
	x := c.posted
	if x != nil && !x.w.fin {
		ch := x.w.chanLocked()
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return &Error{Op: "sync", Kind: ErrCanceled, Msg: "gave up waiting for the lock manager to take the releases sent", Err: ctx.Err()}
		}
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	if c.posted == x {
		c.posted = nil
	}
	err := c.postedErr
	c.postedErr = nil
	return err
}

// Err returns why the session ended or lost its locks, or nil while it
// works.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.lostLocked() {
		return c.err
	}
	return nil
}

// Lost is closed when the session's locks are lost: the member's lease
// ended (the lock manager told the session), or the connection to the
// agent broke. Every lock then reports ErrLost; open a new session.
func (c *Client) Lost() <-chan struct{} { return c.lost }

// Blocking returns the channel of every blocking notification of the
// session's locks: a granted lock blocks a request that waits. It has a
// buffer of BlockingBuffer; notifications that do not fit are dropped
// here (each lock's own Lock.Blocking still has its latest).
func (c *Client) Blocking() <-chan Blocking { return c.blocking }

// Locks returns the session's locks, granted or not.
func (c *Client) Locks() []*Lock {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Lock, 0, len(c.locks))
	for _, l := range c.locks {
		out = append(out, l)
	}
	return out
}

// Blocking is a blocking notification: Lock, granted, blocks the request
// Blocked, which wants Mode. Convert the lock down or release it when
// you can.
type Blocking struct {
	Lock    *Lock
	Mode    Mode
	Blocked LockID
}

// Option modifies a request. Options are values: build them with the
// functions below.
type Option struct{ o options }

type options struct {
	ls     string
	lsSet  bool
	parent *Lock
	flags  dlm.Flags
	value  *Value
}

// Lockspace puts a new lock in the lockspace name (1 to 64 bytes; default
// DefaultLockspace, or the parent's for a sub-lock). Lockspaces keep
// applications' names apart.
func Lockspace(name string) Option { return Option{options{ls: name, lsSet: true}} }

// Parent makes the new lock a sub-lock of parent, on its resource's
// sub-resource: resource trees. The parent must be granted and stays until
// its sub-locks are released.
func Parent(parent *Lock) Option { return Option{options{parent: parent}} }

// NoQueue fails the request with ErrNotQueued instead of waiting when it
// cannot be granted at once.
func NoQueue() Option { return Option{options{flags: dlm.NoQueue}} }

// ValueBlock makes every grant of the request report the resource's value
// block (Lock.Value).
func ValueBlock() Option { return Option{options{flags: dlm.ValBlk}} }

// WithValue writes the value block v: a PW or EX holder's Convert to an
// equal or lower mode, or Unlock. It implies ValueBlock.
func WithValue(v Value) Option { return Option{options{flags: dlm.ValBlk, value: &v}} }

// QueueConvert makes a conversion that could be granted at once wait
// behind the conversions already queued (VMS QUECVT).
func QueueConvert() Option { return Option{options{flags: dlm.QueCvt}} }

// Expedite grants a new NL request at once even when requests wait.
func Expedite() Option { return Option{options{flags: dlm.Expedite}} }

// NoDeadlockWait leaves the request's wait out of deadlock detection.
func NoDeadlockWait() Option { return Option{options{flags: dlm.NoDlckWt}} }

// NoBlock: the lock gets no blocking notifications.
func NoBlock() Option { return Option{options{flags: dlm.NoBlock}} }

func collect(opts []Option) options {
	var o options
	for _, x := range opts {
		if x.o.lsSet {
			o.ls, o.lsSet = x.o.ls, true
		}
		if x.o.parent != nil {
			o.parent = x.o.parent
		}
		if x.o.value != nil {
			o.value = x.o.value
		}
		o.flags |= x.o.flags
	}
	return o
}

// op is one operation sent to the lock manager; answered records its
// answer.
type op struct {
	kind  cluster.OpKind
	mode  dlm.Mode
	flags dlm.Flags
	id    cluster.LockID // the lock (convert, unlock, cancel) or the parent (enqueue)
	value *dlm.Value     // convert, unlock
	lock  *Lock          // an enqueue's resource is the lock's
	p     *Pending       // enqueue, convert

	w       waiter // guarded by c.mu: answered
	err     error  // guarded by c.mu: the answer's error
	refusal error  // guarded by c.mu: a refused event of the operation (Local)
	posted  bool   // an unlock whose caller was told it is done when it was sent
}

// waiter is a completion with a channel made only when someone waits.
// Guarded by the client's mu.
type waiter struct {
	fin bool
	ch  chan struct{}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (w *waiter) finish() {
	if w.fin {
		return
	}
	w.fin = true
	if w.ch != nil {
		close(w.ch)
	}
}

func (w *waiter) chanLocked() <-chan struct{} {
	if w.fin {
		return closedChan
	}
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// transport carries operations to the lock manager. do sends o; the answer
// reaches c.answered, before do returns (Local) or later.
type transport interface {
	do(o *op)
	close() error
	// posts says whether an unlock returns once it is sent (the socket:
	// the agent runs a session's requests in order), rather than once
	// the lock manager took it (Local, where taking it costs less than
	// a send).
	posts() bool
	// abort ends the session because of why: the agent releases its
	// locks, and the client reports why as the session's loss.
	abort(why string)
}

// event is a session event, from either transport.
type event struct {
	kind    cluster.EventKind
	lock    LockID
	mode    Mode
	token   uint64
	blocked LockID
	valBlk  bool
	valid   bool
	value   Value
	op      cluster.OpKind
	err     error
}

// answered records the answer to o: for an enqueue, its new lock's id.
func (c *Client) answered(o *op, id LockID, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := o.lock
	if err == nil && o.refusal != nil {
		err = o.refusal
	}
	if _, ok := err.(*Error); err != nil && !ok {
		err = l.refusal(o.kind, err)
	}
	if errors.Is(err, ErrLost) && !c.lostLocked() {
		// The lock manager lost the session (without locks, no event
		// said so).
		c.err = &Error{Op: "session", Kind: ErrLost, Msg: "the session's locks were lost: " + err.(*Error).Msg + ": open a new session", Err: err}
		close(c.lost)
	}
	o.err = err
	switch o.kind {
	case cluster.OpEnqueue:
		early := c.early
		if c.enqueuing {
			c.enqueuing, c.early = false, c.early[:0]
		}
		if err == nil && (c.closed || c.lostLocked()) {
			// The session ended while the request was on its way.
			err = c.err
		}
		if err != nil {
			l.pend, l.gone, l.err = nil, true, err
			c.finishLocked(o.p, err)
			break
		}
		l.id = id
		c.locks[id.N] = l
		if l.parent != nil {
			l.parent.children++
		}
		for _, ev := range early {
			if ev.lock == id {
				c.dispatchLocked(ev)
			}
		}
		clear(early)
		if (o.p.abandoned || o.p.canceled) && !o.p.w.fin {
			go c.cancelRequest(l)
		}
	case cluster.OpConvert:
		if err != nil && l.pend == o.p {
			l.pend = nil
			c.finishLocked(o.p, err)
		}
	case cluster.OpUnlock:
		if l.unlocking == o {
			l.unlocking = nil
		}
		if o.posted {
			c.postedAnswerLocked(o, err)
			break
		}
		if err == nil {
			var why error
			if l.pend != nil {
				why = l.fail(ErrCanceled, "unlocked before it was granted")
			}
			c.dropLocked(l, why)
		}
	}
	o.w.finish()
}

// postedAnswerLocked follows the answer to a posted unlock, whose lock
// the client already forgot. A refusal that leaves the lock released
// (the session or the lock was lost, or the lock was already gone) needs
// nothing. Any other refusal means the agent may still hold a lock the
// caller was told is released: the session ends, so that the agent
// releases it, and reports why.
func (c *Client) postedAnswerLocked(o *op, err error) {
	if err == nil {
		return
	}
	if errors.Is(err, ErrLost) || errors.Is(err, ErrClosed) || errors.Is(err, ErrUnknownLock) {
		// Released anyway, but not by this release: the lock was lost
		// (or the session ended) before it arrived. Sync reports it.
		if c.postedErr == nil {
			l := o.lock
			c.postedErr = &Error{Op: "unlock", Lockspace: l.ls, Resource: l.name, Lock: l.id, Kind: ErrLost,
				Msg: "the lock was already gone when its release reached the lock manager (" + socket.Reason(err) + "): it was lost before Unlock", Err: err}
		}
		return
	}
	l := o.lock
	why := fmt.Sprintf("the lock manager refused the release of lock %v on %q, which Unlock had reported done: %v", l.id, l.name, err)
	go c.t.abort(why)
}

func (c *Client) lostLocked() bool {
	select {
	case <-c.lost:
		return true
	default:
		return false
	}
}

// onEvent is the Local session's callback (under the lock manager's
// lock).
func (c *Client) onEvent(ev cluster.Event) {
	e := event{kind: ev.Kind, lock: fromCluster(ev.Lock), mode: Mode(ev.Mode), token: ev.Token,
		blocked: fromCluster(ev.Blocked), valBlk: ev.ValBlk, valid: ev.ValueValid, op: ev.Op}
	if ev.ValBlk {
		e.value = Value(ev.Value)
	}
	if ev.Err != nil {
		e.err = ev.Err
	}
	c.mu.Lock()
	c.dispatchLocked(e)
	c.mu.Unlock()
}

// dispatchLocked applies one event of the session.
func (c *Client) dispatchLocked(ev event) {
	if ev.kind == cluster.EventLost && ev.lock.IsZero() {
		// The session itself is lost (the member's lease is ending):
		// every lock and open request ends with it.
		msg := "the session's locks were lost: open a new session"
		if ev.err != nil {
			msg = "the session's locks were lost: " + socket.Reason(ev.err) + ": open a new session"
		}
		c.endLocked(&Error{Op: "session", Kind: ErrLost, Msg: msg, Err: ev.err}, true)
		return
	}
	l := c.locks[ev.lock.N]
	if l == nil || l.id.Member != ev.lock.Member {
		if c.enqueuing {
			c.early = append(c.early, ev)
		}
		return // a lock released meanwhile
	}
	switch ev.kind {
	case cluster.EventGranted:
		l.mode, l.granted, l.token = ev.mode, true, ev.token
		if ev.valBlk {
			if l.value == nil {
				l.value = new(lockValue)
			}
			l.value.v, l.value.valid = ev.value, ev.valid
		}
		c.completeLocked(l, nil)
	case cluster.EventNotQueued:
		msg := "not granted at once: the resource is held in an incompatible mode (NoQueue)"
		if l.pend != nil && l.pend.convert {
			msg = "conversion to " + ev.mode.String() + " not granted at once: the lock stays " + l.mode.String() + " (NoQueue)"
		}
		c.completeLocked(l, l.fail(ErrNotQueued, msg))
	case cluster.EventCanceled:
		c.completeLocked(l, l.fail(ErrCanceled, "canceled before it was granted"))
	case cluster.EventDeadlock:
		msg := "chosen as the victim of a deadlock: release this session's other locks and try again"
		if l.pend != nil && l.pend.convert {
			msg = "conversion chosen as the victim of a deadlock: the lock stays " + l.mode.String()
		}
		c.completeLocked(l, l.fail(ErrDeadlock, msg))
	case cluster.EventBlocking:
		c.blockLocked(l, Blocking{Lock: l, Mode: ev.mode, Blocked: ev.blocked})
	case cluster.EventRefused:
		err := l.refusal(ev.op, ev.err)
		switch ev.op {
		case cluster.OpEnqueue, cluster.OpConvert:
			c.completeLocked(l, err)
		case cluster.OpUnlock:
			if l.unlocking != nil {
				l.unlocking.refusal = err
			}
		}
	case cluster.EventLost:
		msg := "lost: the lock manager released it"
		if ev.err != nil {
			msg = "lost: " + socket.Reason(ev.err)
		}
		err := l.fail(ErrLost, msg)
		if ev.err != nil {
			err.Err = ev.err
		}
		c.dropLocked(l, err)
		l.lost = true
		if l.lostCh != nil {
			close(l.lostCh)
		}
		if ev.err != nil && kindOf(ev.err) == ErrLost && !c.lostLocked() {
			// The whole session is lost (the lease is ending).
			c.err = &Error{Op: "session", Kind: ErrLost, Msg: "the session's locks were lost: " + socket.Reason(ev.err) + ": open a new session", Err: ev.err}
			close(c.lost)
		}
	}
}

// completeLocked completes the request waiting on l with err (nil:
// granted).
func (c *Client) completeLocked(l *Lock, err error) {
	p := l.pend
	if p == nil {
		return
	}
	l.pend = nil
	if err != nil && !p.convert {
		c.dropLocked(l, err)
	}
	c.finishLocked(p, err)
	if p.abandoned && err == nil && !p.convert {
		// Its caller gave up: release what was granted meanwhile.
		go l.release()
	}
}

func (c *Client) finishLocked(p *Pending, err error) {
	if p == nil || p.w.fin {
		return
	}
	c.due.Add(-1)
	p.err = err
	p.w.finish()
}

// dropLocked forgets l: released, refused or lost. A request still waiting
// on it completes with err.
func (c *Client) dropLocked(l *Lock, err error) {
	if l.gone {
		return
	}
	l.gone = true
	if !l.id.IsZero() {
		delete(c.locks, l.id.N)
	}
	if l.parent != nil {
		l.parent.children--
	}
	if p := l.pend; p != nil {
		l.pend = nil
		c.finishLocked(p, err)
	}
	if l.unlocking != nil {
		l.unlocking.w.finish()
	}
	l.err = err
}

func (c *Client) blockLocked(l *Lock, b Blocking) {
	if l.blockCh == nil {
		l.blockNext = &b
	} else {
		select {
		case <-l.blockCh:
		default:
		}
		select {
		case l.blockCh <- b:
		default:
		}
	}
	select {
	case c.blocking <- b:
	default:
		c.dropped++
	}
}

// endLocked ends every lock and request of the session with err; lost
// says whether the locks were lost (rather than released by Close).
func (c *Client) endLocked(err *Error, lost bool) {
	for _, l := range c.locks {
		e := *err
		e.Lockspace, e.Resource, e.Lock = l.ls, l.name, l.id
		c.dropLocked(l, &e)
		if lost {
			l.lost = true
			if l.lostCh != nil {
				close(l.lostCh)
			}
		}
	}
	if lost && !c.lostLocked() {
		if c.err == nil || !c.closed {
			c.err = err
		}
		close(c.lost)
	}
}

// cancelRequest cancels the waiting request of l (its caller gave up).
func (c *Client) cancelRequest(l *Lock) {
	o := &op{kind: cluster.OpCancel, lock: l}
	c.mu.Lock()
	if l.gone || l.id.IsZero() || l.pend == nil || c.closed {
		c.mu.Unlock()
		return
	}
	o.id = l.id.cluster()
	c.mu.Unlock()
	c.t.do(o)
}

// check returns the error that stops new operations, under mu.
func (c *Client) checkLocked(opName string) error {
	if c.err == nil {
		return nil
	}
	if c.closed {
		return &Error{Op: opName, Kind: ErrClosed, Msg: "the lock client is closed: open a new session"}
	}
	if c.lostLocked() {
		e := *c.err.(*Error)
		e.Op = opName
		return &e
	}
	return nil
}

// kindOf maps a lock manager error to this package's sentinel.
func kindOf(err error) error { return kindByName(socket.Kind(err)) }

func kindByName(name string) error {
	switch name {
	case socket.KindUnknownLock, socket.KindUnknownResource:
		return ErrUnknownLock
	case socket.KindWrongState:
		return ErrWrongState
	case socket.KindHasChildren:
		return ErrHasChildren
	case socket.KindLimit:
		return ErrLimit
	case socket.KindBusy, socket.KindRecovering:
		return ErrBusy
	case socket.KindNotMember:
		return ErrNotMember
	case socket.KindLost:
		return ErrLost
	case socket.KindClosed:
		return ErrClosed
	}
	return ErrInvalid
}

// String describes the client for logs.
func (c *Client) String() string { return "dlm session " + c.owner }

// Dropped returns how many blocking notifications did not fit in the
// channel of Blocking.
func (c *Client) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Lock requests a lock on resource in mode and waits until it is granted,
// refused (ErrNotQueued with NoQueue, ErrDeadlock, ...) or ctx ends: then
// the request is canceled, and released if it was granted meanwhile.
func (c *Client) Lock(ctx context.Context, resource string, mode Mode, opts ...Option) (*Lock, error) {
	p, err := c.LockAsync(resource, mode, opts...)
	if err != nil {
		return nil, err
	}
	return p.Wait(ctx)
}

// LockAsync requests a lock and returns at once; the Pending request
// completes when it is granted or refused. Errors found before sending
// (a bad name, mode or option, a closed client) are returned at once.
func (c *Client) LockAsync(resource string, mode Mode, opts ...Option) (*Pending, error) {
	o := collect(opts)
	if !o.lsSet {
		o.ls = DefaultLockspace
		if o.parent != nil {
			o.ls = o.parent.ls
		}
	}
	fail := func(kind error, format string, args ...any) (*Pending, error) {
		return nil, &Error{Op: "lock", Lockspace: o.ls, Resource: resource, Kind: kind, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(resource) == 0 || len(resource) > MaxNameLen:
		return fail(ErrInvalid, "the resource name is %d bytes long: give 1 to %d bytes", len(resource), MaxNameLen)
	case len(o.ls) == 0 || len(o.ls) > MaxNameLen:
		return fail(ErrInvalid, "the lockspace name is %d bytes long: give 1 to %d bytes", len(o.ls), MaxNameLen)
	case !mode.Valid():
		return fail(ErrInvalid, "unknown lock mode %d: use NL, CR, CW, PR, PW or EX", uint8(mode))
	case o.value != nil:
		return fail(ErrInvalid, "a new lock cannot write the value block: pass WithValue to Convert or Unlock (ValueBlock reads it)")
	case o.flags&dlm.QueCvt != 0:
		return fail(ErrInvalid, "QueueConvert is only for Convert")
	case o.flags&dlm.Expedite != 0 && mode != NL:
		return fail(ErrInvalid, "Expedite is only for a new NL request, not %v", mode)
	}
	// One allocation: the lock holds its first request.
	l := &Lock{c: c, ls: o.ls, name: resource, parent: o.parent, mode: mode}
	p := &l.first
	p.c, p.l, p.mode = c, l, mode
	x := &p.op
	x.kind, x.lock, x.p = cluster.OpEnqueue, l, p
	x.mode, x.flags = dlm.Mode(mode), o.flags
	c.mu.Lock()
	if err := c.checkLocked("lock"); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if par := o.parent; par != nil {
		switch {
		case par.c != c:
			c.mu.Unlock()
			return fail(ErrInvalid, "the parent lock %v belongs to another session: a sub-lock must have its parent's session", par.id)
		case par.gone:
			c.mu.Unlock()
			return fail(ErrUnknownLock, "the parent lock %v was released: request it again first", par.id)
		case !par.granted:
			c.mu.Unlock()
			return fail(ErrWrongState, "the parent lock on %q is not granted yet: wait for it first", par.name)
		case par.ls != o.ls:
			c.mu.Unlock()
			return fail(ErrInvalid, "the parent lock is in lockspace %q: a sub-lock must be in its parent's lockspace", par.ls)
		}
		x.id = par.id.cluster()
	}
	l.pend = p
	c.due.Add(1)
	c.mu.Unlock()
	c.t.do(x)
	return p, nil
}
