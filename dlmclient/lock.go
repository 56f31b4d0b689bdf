package dlmclient

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
)

// Lock is a lock of the session: granted (as Client.Lock returns it), or
// released, refused or lost later.
type Lock struct {
	c      *Client
	ls     string
	name   string
	parent *Lock

	// Guarded by c.mu.
	id        LockID
	mode      Mode // granted mode (requested mode until the first grant)
	granted   bool
	token     uint64
	value     *lockValue // the value block, once a grant reported it
	pend      *Pending   // the enqueue or conversion waiting for its completion
	unlocking *op
	children  int  // sub-locks not gone
	gone      bool // released, refused or lost
	lost      bool
	err       error // why gone
	blockCh   chan Blocking
	blockNext *Blocking // the latest blocking notification, until Blocking is called
	lostCh    chan struct{}

	first    Pending // the request that made the lock
	unlockOp op      // the first unlock
	unlocked bool    // unlockOp is used
}

// ID is the lock's cluster-wide id (zero until the lock manager answered).
func (l *Lock) ID() LockID {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.id
}

// Resource is the lock's resource name (the last name of its path for a
// sub-lock).
func (l *Lock) Resource() string { return l.name }

// Lockspace is the lock's lockspace.
func (l *Lock) Lockspace() string { return l.ls }

// Parent is the parent lock of a sub-lock, nil for a root resource's.
func (l *Lock) Parent() *Lock { return l.parent }

// Mode is the lock's granted mode.
func (l *Lock) Mode() Mode {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.mode
}

// Token is the fencing token of the lock's latest grant: it grows with
// every grant of the resource, so a store that remembers the highest token
// it saw can refuse a stale holder's writes.
func (l *Lock) Token() uint64 {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.token
}

// Value returns the value block as of the latest grant of a request with
// ValueBlock, and whether it is valid. It is not valid when no grant
// reported it, or when a PW or EX holder of the resource was lost (the
// value it would have written is unknown): rebuild it then.
func (l *Lock) Value() (Value, bool) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.value == nil {
		return Value{}, false
	}
	return l.value.v, l.value.valid
}

// Err returns why the lock is gone (ErrLost, ErrClosed, ...), or nil while
// it is held or was released by Unlock.
func (l *Lock) Err() error {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.gone && l.lost {
		return l.err
	}
	if l.gone && l.c.closed {
		return l.err
	}
	return nil
}

// Lost is closed when the lock is lost (the member's lease ended, the
// connection to the agent broke): whatever it protects may now be held by
// someone else.
func (l *Lock) Lost() <-chan struct{} {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.lost {
		return closedChan
	}
	if l.lostCh == nil {
		l.lostCh = make(chan struct{})
	}
	return l.lostCh
}

// Blocking returns the lock's blocking notifications: it has room for one,
// the latest (a new one replaces an unread one).
func (l *Lock) Blocking() <-chan Blocking {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.blockCh == nil {
		l.blockCh = make(chan Blocking, 1)
		if l.blockNext != nil {
			l.blockCh <- *l.blockNext
			l.blockNext = nil
		}
	}
	return l.blockCh
}

func (l *Lock) String() string {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return fmt.Sprintf("%v %s/%s %v token %d", l.id, l.ls, l.name, l.mode, l.token)
}

// fail makes an error about l.
func (l *Lock) fail(kind error, msg string) *Error {
	return &Error{Op: "lock", Lockspace: l.ls, Resource: l.name, Lock: l.id, Kind: kind, Msg: msg}
}

// refusal makes the error of a refused operation.
func (l *Lock) refusal(k cluster.OpKind, err error) *Error {
	name := "lock"
	switch k {
	case cluster.OpConvert:
		name = "convert"
	case cluster.OpUnlock:
		name = "unlock"
	case cluster.OpCancel:
		name = "cancel"
	}
	e := &Error{Op: name, Lockspace: l.ls, Resource: l.name, Lock: l.id, Kind: ErrInvalid, Msg: "refused"}
	if err != nil {
		e.Kind, e.Msg = kindOf(err), socket.Reason(err)
	}
	return e
}

// Convert changes the lock's mode and waits until the conversion is
// granted or refused, or ctx ends: then the conversion is canceled (if it
// was granted meanwhile, the lock has the new mode). A refused conversion
// leaves the lock at its mode. Options: NoQueue, ValueBlock, WithValue
// (a PW or EX holder writes the value block), QueueConvert,
// NoDeadlockWait, NoBlock.
func (l *Lock) Convert(ctx context.Context, mode Mode, opts ...Option) error {
	p, err := l.ConvertAsync(mode, opts...)
	if err != nil {
		return err
	}
	_, err = p.Wait(ctx)
	return err
}

// ConvertAsync requests a conversion and returns at once.
func (l *Lock) ConvertAsync(mode Mode, opts ...Option) (*Pending, error) {
	o := collect(opts)
	c := l.c
	fail := func(kind error, format string, args ...any) (*Pending, error) {
		return nil, &Error{Op: "convert", Lockspace: l.ls, Resource: l.name, Lock: l.ID(), Kind: kind, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case !mode.Valid():
		return fail(ErrInvalid, "unknown lock mode %d: use NL, CR, CW, PR, PW or EX", uint8(mode))
	case o.lsSet || o.parent != nil:
		return fail(ErrInvalid, "Lockspace and Parent are only for a new lock: a conversion keeps the lock's resource")
	case o.flags&dlm.Expedite != 0:
		return fail(ErrInvalid, "Expedite is only for a new NL request")
	}
	p := &Pending{c: c, l: l, convert: true, mode: mode}
	x := &p.op
	x.kind, x.lock, x.p = cluster.OpConvert, l, p
	x.mode, x.flags = dlm.Mode(mode), o.flags|dlm.Convert
	if o.value != nil {
		v := dlm.Value(*o.value)
		x.value = &v
	}
	c.mu.Lock()
	if err := c.checkLocked("convert"); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	switch {
	case l.gone:
		err := l.goneErr("convert")
		c.mu.Unlock()
		return nil, err
	case l.pend != nil:
		c.mu.Unlock()
		return fail(ErrWrongState, "a request on this lock is still in progress: wait for it, or Unlock")
	case !l.granted || l.id.IsZero():
		c.mu.Unlock()
		return fail(ErrWrongState, "the lock is not granted yet: wait for it first")
	case l.unlocking != nil:
		c.mu.Unlock()
		return fail(ErrWrongState, "the lock is being released")
	}
	x.id = l.id.cluster()
	l.pend = p
	c.due.Add(1)
	c.mu.Unlock()
	c.t.do(x)
	return p, nil
}

func (l *Lock) goneErr(opName string) error {
	if l.err != nil && (l.lost || l.c.closed) {
		if e, ok := l.err.(*Error); ok {
			c := *e
			c.Op = opName
			return &c
		}
		return l.err
	}
	return &Error{Op: opName, Lockspace: l.ls, Resource: l.name, Lock: l.id, Kind: ErrUnknownLock, Msg: "the lock was already released"}
}

// Unlock releases the lock (a request still waiting on it is canceled).
// With WithValue, a PW or EX holder writes the value block. A lock with
// sub-locks cannot be released: release them first.
//
// It returns once the lock manager took the release (an error then says
// why it did not, ErrLost if the lock was lost before); if ctx ends first,
// the release still goes on. With PostUnlocks, the release of a granted
// lock with no request on its way returns once it is sent, as Linux DLM's
// unlock does: the agent runs a session's requests in order, so whatever
// the session asks next comes after the release, and a lock of another
// client waits for it as it would; Client.Sync then reports a release
// that found its lock lost. Should the lock manager refuse such a release
// for another reason (nothing the client can foresee makes it), the
// session ends, so that the agent releases the lock, and Client.Err says
// why.
func (l *Lock) Unlock(ctx context.Context, opts ...Option) error {
	o := collect(opts)
	c := l.c
	fail := func(kind error, format string, args ...any) error {
		return &Error{Op: "unlock", Lockspace: l.ls, Resource: l.name, Lock: l.ID(), Kind: kind, Msg: fmt.Sprintf(format, args...)}
	}
	if o.lsSet || o.parent != nil || o.flags&^dlm.ValBlk != 0 {
		return fail(ErrInvalid, "an unlock takes only WithValue (or ValueBlock)")
	}
	c.mu.Lock()
	if err := c.checkLocked("unlock"); err != nil {
		c.mu.Unlock()
		return err
	}
	switch {
	case l.gone:
		err := l.goneErr("unlock")
		c.mu.Unlock()
		return err
	case l.unlocking != nil:
		c.mu.Unlock()
		return fail(ErrWrongState, "the lock is already being released")
	case l.children > 0:
		n := l.children
		c.mu.Unlock()
		return fail(ErrHasChildren, "the lock has %d sub-lock(s): release them first", n)
	case l.id.IsZero():
		c.mu.Unlock()
		return fail(ErrWrongState, "the lock manager has not answered the request yet: wait for it, or cancel it")
	}
	var x *op
	if l.unlocked {
		x = new(op)
	} else {
		x, l.unlocked = &l.unlockOp, true
	}
	x.kind, x.lock = cluster.OpUnlock, l
	x.id, x.flags = l.id.cluster(), o.flags
	if o.value != nil {
		v := dlm.Value(*o.value)
		x.value = &v
	}
	if l.pend == nil && c.t.posts() {
		// Nothing can make the lock manager refuse this release that
		// the client does not know of: it is done once sent, and the
		// session's later requests run after it.
		c.dropLocked(l, nil)
		x.posted = true
		c.posted = x
		c.mu.Unlock()
		c.t.do(x)
		return nil
	}
	l.unlocking = x
	c.mu.Unlock()
	c.t.do(x)
	c.mu.Lock()
	if x.w.fin {
		err := x.err
		c.mu.Unlock()
		return err
	}
	ch := x.w.chanLocked()
	c.mu.Unlock()
	select {
	case <-ch:
		c.mu.Lock()
		defer c.mu.Unlock()
		return x.err
	case <-ctx.Done():
		return &Error{Op: "unlock", Lockspace: l.ls, Resource: l.name, Lock: l.ID(), Kind: ErrCanceled,
			Msg: "gave up waiting for the lock manager's answer: the release goes on", Err: ctx.Err()}
	}
}

// release unlocks a lock whose requester gave up on it.
func (l *Lock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.Unlock(ctx)
}

// lockValue is a lock's value block as its latest grant reported it.
type lockValue struct {
	v     Value
	valid bool
}

// Pending is a request on its way: a new lock or a conversion.
type Pending struct {
	c       *Client
	l       *Lock
	convert bool
	mode    Mode

	w         waiter // guarded by c.mu
	err       error  // guarded by c.mu
	abandoned bool   // guarded by c.mu: the caller gave up: release a late grant
	canceled  bool   // guarded by c.mu: Cancel was asked before the answer came

	op op // the operation sent
}

// Done is closed when the request completes.
func (p *Pending) Done() <-chan struct{} {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.w.chanLocked()
}

// Lock is the request's lock (for a new lock, not granted yet until the
// request completes without error).
func (p *Pending) Lock() *Lock { return p.l }

// Result waits for the request and returns its lock, or why it failed.
func (p *Pending) Result() (*Lock, error) { return p.Wait(context.Background()) }

// Wait waits for the request to complete, or for ctx to end: then the
// request is canceled (a new lock granted meanwhile is released; a
// conversion granted meanwhile stays) and Wait returns an error with
// ErrCanceled and ctx's error.
func (p *Pending) Wait(ctx context.Context) (*Lock, error) {
	c := p.c
	c.mu.Lock()
	if p.w.fin {
		defer c.mu.Unlock()
		return p.resultLocked()
	}
	ch := p.w.chanLocked()
	c.mu.Unlock()
	select {
	case <-ch:
		c.mu.Lock()
		defer c.mu.Unlock()
		return p.resultLocked()
	case <-ctx.Done():
	}
	c.mu.Lock()
	if p.w.fin {
		defer c.mu.Unlock()
		return p.resultLocked()
	}
	p.abandoned = true
	c.mu.Unlock()
	p.Cancel()
	op, what := "lock", "the lock"
	if p.convert {
		op, what = "convert", "the conversion"
	}
	return nil, &Error{Op: op, Lockspace: p.l.ls, Resource: p.l.name, Lock: p.l.ID(), Kind: ErrCanceled,
		Msg: "gave up waiting for " + what + " (" + ctx.Err().Error() + "): the request is canceled", Err: ctx.Err()}
}

func (p *Pending) resultLocked() (*Lock, error) {
	if p.err != nil {
		return nil, p.err
	}
	return p.l, nil
}

// Cancel cancels the request if it still waits; it completes with
// ErrCanceled then (or as granted, if the grant came first).
func (p *Pending) Cancel() {
	c := p.c
	c.mu.Lock()
	if p.w.fin || p.l.id.IsZero() {
		// Not answered yet: the answer sends the cancel.
		p.canceled = true
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.cancelRequest(p.l)
}
