package dlm

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options configure an Engine.
type Options struct {
	// DeadlockWait is how long a request must have waited before its wait
	// counts in the wait-for graph (WaitEdges, Detect, Deadlock).
	// 0 searches at once; at most 1h.
	DeadlockWait time.Duration
	// MaxLocks bounds the locks (granted, converting and waiting) the engine
	// holds; a new request beyond it fails with ErrLimit. 1 to 1<<30.
	MaxLocks int
}

// DefaultOptions returns the defaults: a 1 s deadlock wait and 4,000,000
// locks.
func DefaultOptions() Options {
	return Options{DeadlockWait: time.Second, MaxLocks: 4_000_000}
}

// Validate checks the options, naming the field and its allowed range.
func (o Options) Validate() error {
	switch {
	case o.DeadlockWait < 0 || o.DeadlockWait > time.Hour:
		return fail("options", 0, ErrInvalid, "DeadlockWait is %v: it must be between 0 and 1h (default 1s)", o.DeadlockWait)
	case o.MaxLocks < 1 || o.MaxLocks > 1<<30:
		return fail("options", 0, ErrInvalid, "MaxLocks is %d: it must be between 1 and %d (default 4000000)", o.MaxLocks, 1<<30)
	}
	return nil
}

// Request is one $ENQ: a new lock, or with the Convert flag a conversion of
// the granted lock Lock.
type Request struct {
	// Lockspace and Name name the resource of a new request (1 to
	// MaxNameLen bytes each, any bytes). With Parent, the resource is the
	// child Name of the parent lock's resource: its identity is (lockspace,
	// parent resource, name).
	Lockspace string
	Name      string
	// Parent is a granted lock of the same owner and lockspace, or 0 for a
	// root resource.
	Parent LockID
	// Owner owns the new lock. Ignored for a conversion.
	Owner OwnerID
	Mode  Mode
	Flags Flags
	// Lock is the lock to convert (Convert only).
	Lock LockID
	// Value, with ValBlk on a conversion, is written to the resource's
	// value block when the lock held PW or EX and converts to an equal or
	// lower mode (at the grant, if the conversion waits). nil: read only.
	Value *Value
	// Tag is an opaque number the caller keeps with a new lock (Tag,
	// Record.Tag); ignored for a conversion.
	Tag uint64
}

// Engine is the lock engine of one resource master. It is not safe for
// concurrent use. The []Event a method returns is reused by the next call:
// deliver or copy the events first.
type Engine struct {
	opts      Options
	spaces    map[string]*lockspace
	locks     map[LockID]*lock
	owners    map[OwnerID]*owner
	contended map[*resource]struct{} // resources with a queued request

	nextID  LockID
	nextSeq uint64
	floor   uint64 // highest token issued or imported

	base    time.Time // time 0 of wait.since
	hasBase bool

	ev      []Event
	fresh   []*lock // locks that became granted (not converting) in this call, while requests were queued
	pend    []pair  // blocking candidates of this call
	touched []*resource
	scratch []*lock

	// One emptied owner and lockspace kept for reuse, so that a client
	// that locks and unlocks in turn does not allocate them every time.
	spareOwner *owner
	spareSpace *lockspace
}

type lockspace struct {
	name  string
	roots map[string]*resource
}

type resource struct {
	name    string
	ls      *lockspace
	parent  *resource
	kids    map[string]*resource // child resources; nil when none
	granted list                 // granted, not converting; in order of their latest grant
	conv    list                 // converting, FIFO
	waitq   list                 // new requests, FIFO
	counts  [NumModes]int32      // granted modes of granted and converting locks
	token   uint64               // last fencing token issued
	val     *Value               // nil: all zero
	depth   uint8                // 1 for a root resource
	invalid bool                 // the value block is not valid
	queued  bool                 // in Engine.contended
	mark    bool                 // scratch for purge
	gone    bool                 // deleted
}

type lock struct {
	id           LockID
	res          *resource
	parent       *lock
	owner        *owner
	prev, next   *lock // queue links
	oprev, onext *lock // owner links
	seq          uint64
	w            *wait // non-nil while converting or waiting
	children     int32
	granted      Mode // granted mode (granted and converting locks)
	req          Mode // requested mode (converting and waiting locks)
	q            Queue
	flags        Flags // of the latest accepted request
	tag          uint64
}

// wait is the state of a queued request.
type wait struct {
	since    int64     // ns after Engine.base
	notified []LockID  // blockers told about this request
	buf      [4]LockID // notified's first backing array
	value    *Value    // a conversion's value to write when granted
}

func newWait(since int64) *wait {
	w := &wait{since: since}
	w.notified = w.buf[:0]
	return w
}

type owner struct {
	id   OwnerID
	head *lock
	n    int
}

type pair struct{ blocked, blocker *lock }

// New returns an empty engine.
func New(opts Options) (*Engine, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Engine{
		opts:      opts,
		spaces:    make(map[string]*lockspace),
		locks:     make(map[LockID]*lock),
		owners:    make(map[OwnerID]*owner),
		contended: make(map[*resource]struct{}),
		nextID:    1,
		nextSeq:   1,
	}, nil
}

// Len returns the number of locks (granted, converting and waiting).
func (e *Engine) Len() int { return len(e.locks) }

// HasRoot reports whether root resource name of lockspace ls exists: some
// lock is on it or on one of its sub-resources.
func (e *Engine) HasRoot(ls, name string) bool {
	s := e.spaces[ls]
	return s != nil && s.roots[name] != nil
}

// Floor returns the highest fencing token the engine has issued or
// imported (Snapshot.TokenFloor).
func (e *Engine) Floor() uint64 { return e.floor }

// RaiseFloor raises the token floor to t (no change if it is higher):
// every resource created afterwards grants tokens above t. A master that
// takes over a resource with no lock raises its floor to the previous
// master's, so that tokens keep growing.
func (e *Engine) RaiseFloor(t uint64) { e.floor = max(e.floor, t) }

// list is a circular doubly linked list of locks through prev/next.
type list struct{ head *lock }

func (q *list) push(l *lock) {
	if q.head == nil {
		l.prev, l.next = l, l
		q.head = l
		return
	}
	t := q.head.prev
	l.prev, l.next = t, q.head
	t.next = l
	q.head.prev = l
}

func (q *list) remove(l *lock) {
	if l.next == l {
		q.head = nil
	} else {
		l.prev.next = l.next
		l.next.prev = l.prev
		if q.head == l {
			q.head = l.next
		}
	}
	l.prev, l.next = nil, nil
}

// after returns the lock after l, or nil at the end.
func (q *list) after(l *lock) *lock {
	if l.next == q.head {
		return nil
	}
	return l.next
}

func (o *owner) add(l *lock) {
	o.n++
	if o.head == nil {
		l.oprev, l.onext = l, l
		o.head = l
		return
	}
	t := o.head.oprev
	l.oprev, l.onext = t, o.head
	t.onext = l
	o.head.oprev = l
}

func (o *owner) remove(l *lock) {
	o.n--
	if l.onext == l {
		o.head = nil
	} else {
		l.oprev.onext = l.onext
		l.onext.oprev = l.oprev
		if o.head == l {
			o.head = l.onext
		}
	}
	l.oprev, l.onext = nil, nil
}

// compatible reports whether mode m is compatible with every granted mode
// on r, not counting one lock granted at mode own (own < 0: none).
func (r *resource) compatible(m Mode, own int) bool {
	mask := compat[m]
	for g := range NumModes {
		n := r.counts[g]
		if g == own {
			n--
		}
		if n > 0 && mask&(1<<g) == 0 {
			return false
		}
	}
	return true
}

func (r *resource) empty() bool {
	return r.waitq.head == nil && r.counts == [NumModes]int32{}
}

func (e *Engine) clock(now time.Time) int64 {
	if !e.hasBase {
		e.base, e.hasBase = now, true
	}
	return int64(now.Sub(e.base))
}

// waited reports whether a request waiting since `since` has waited at
// least DeadlockWait at t.
func (e *Engine) waited(since, t int64) bool {
	return t >= since && uint64(t)-uint64(since) >= uint64(e.opts.DeadlockWait)
}

func (e *Engine) seq() uint64 {
	s := e.nextSeq
	e.nextSeq++
	return s
}

func nameErr(what, name string) string {
	if name == "" {
		return "the " + what + " name is empty: give 1 to " + strconv.Itoa(MaxNameLen) + " bytes"
	}
	return "the " + what + " name is " + strconv.Itoa(len(name)) + " bytes long: the limit is " + strconv.Itoa(MaxNameLen)
}

// Enqueue requests a new lock, or with Convert converts the granted lock
// r.Lock. It returns the lock's id and the events of the call: the
// request's completion when it completes at once (granted, or not queued
// with NoQueue), grants that a down-conversion made possible, and blocking
// notifications. A request that waits completes in a later call. A new
// request that is not queued still gets a (never used again) lock id. On
// error nothing changed.
func (e *Engine) Enqueue(now time.Time, r Request) (LockID, []Event, error) {
	e.ev = e.ev[:0]
	var id LockID
	var err error
	if r.Flags&Convert != 0 {
		id, err = e.convert(now, &r)
	} else {
		id, err = e.enqueue(now, &r)
	}
	if err != nil {
		return 0, nil, err
	}
	e.flush()
	return id, e.ev, nil
}

func (e *Engine) enqueue(now time.Time, r *Request) (LockID, error) {
	const op = "enqueue"
	switch {
	case r.Flags&^allFlags != 0:
		return 0, fail(op, 0, ErrInvalid, "unknown flag bits %#x: use the dlm flag constants", uint16(r.Flags&^allFlags))
	case !r.Mode.Valid():
		return 0, fail(op, 0, ErrInvalid, "unknown lock mode %d: use NL, CR, CW, PR, PW or EX", uint8(r.Mode))
	case r.Flags&QueCvt != 0:
		return 0, fail(op, 0, ErrInvalid, "QueCvt is only valid with Convert: a new request always queues behind the others")
	case r.Flags&Expedite != 0 && r.Mode != NL:
		return 0, fail(op, 0, ErrInvalid, "Expedite is only valid for a new NL request, not %v: drop Expedite or request NL", r.Mode)
	case r.Value != nil:
		return 0, fail(op, 0, ErrInvalid, "a new request cannot write the value block: pass a Value only when converting (or unlocking) from PW or EX")
	case r.Owner.Member == "":
		return 0, fail(op, 0, ErrInvalid, "the owner has no member name: set Request.Owner.Member")
	case r.Lockspace == "" || len(r.Lockspace) > MaxNameLen:
		return 0, fail(op, 0, ErrInvalid, "%s", nameErr("lockspace", r.Lockspace))
	case r.Name == "" || len(r.Name) > MaxNameLen:
		return 0, fail(op, 0, ErrInvalid, "%s", nameErr("resource", r.Name))
	}
	var p *lock
	var ls *lockspace
	var res *resource
	if r.Parent != 0 {
		p = e.locks[r.Parent]
		switch {
		case p == nil:
			return 0, fail(op, 0, ErrUnknownLock, "parent lock %d does not exist: request the parent lock first (or use Parent 0 for a root resource)", r.Parent)
		case p.res.ls.name != r.Lockspace:
			return 0, fail(op, 0, ErrInvalid, "parent lock %d is in lockspace %q, not %q: a sub-lock must be in its parent's lockspace", r.Parent, p.res.ls.name, r.Lockspace)
		case p.owner.id != r.Owner:
			return 0, fail(op, 0, ErrInvalid, "parent lock %d is held by %v, not %v: a sub-lock must have its parent's owner", r.Parent, p.owner.id, r.Owner)
		case p.q == QueueWaiting:
			return 0, fail(op, 0, ErrWrongState, "parent lock %d is not granted yet (it waits for %v): wait for its grant first", r.Parent, p.req)
		case int(p.res.depth) >= MaxDepth:
			return 0, fail(op, 0, ErrInvalid, "parent lock %d is at depth %d: resource trees are at most %d deep", r.Parent, p.res.depth, MaxDepth)
		}
		res = p.res.kids[r.Name]
	} else {
		ls = e.spaces[r.Lockspace]
		if ls != nil {
			res = ls.roots[r.Name]
		}
	}
	if len(e.locks) >= e.opts.MaxLocks {
		return 0, fail(op, 0, ErrLimit, "the engine holds %d locks, its limit (Options.MaxLocks): release locks, or raise the limit", len(e.locks))
	}
	grant := res == nil || r.Flags&Expedite != 0 ||
		(res.conv.head == nil && res.waitq.head == nil && res.compatible(r.Mode, -1))
	id := e.nextID
	e.nextID++
	if !grant && r.Flags&NoQueue != 0 {
		e.ev = append(e.ev, Event{Kind: EventNotQueued, Lock: id, Owner: r.Owner, Mode: r.Mode, Tag: r.Tag})
		return id, nil
	}
	if res == nil {
		res = e.newResource(ls, p, r)
	}
	l := &lock{id: id, res: res, parent: p, flags: r.Flags, req: r.Mode, tag: r.Tag}
	o := e.owners[r.Owner]
	if o == nil {
		o = e.newOwner(r.Owner)
	}
	l.owner = o
	o.add(l)
	e.locks[id] = l
	if p != nil {
		p.children++
	}
	if grant {
		e.grant(l, r.Mode, nil)
		return id, nil
	}
	l.q = QueueWaiting
	l.seq = e.seq()
	l.w = newWait(e.clock(now))
	res.waitq.push(l)
	e.markQueued(res)
	e.blockedBy(l)
	return id, nil
}

func (e *Engine) newResource(ls *lockspace, p *lock, r *Request) *resource {
	res := &resource{name: r.Name, token: e.floor}
	if p != nil {
		pr := p.res
		res.parent, res.ls, res.depth = pr, pr.ls, pr.depth+1
		if pr.kids == nil {
			pr.kids = make(map[string]*resource)
		}
		pr.kids[r.Name] = res
		return res
	}
	if ls == nil {
		ls = e.newSpace(r.Lockspace)
	}
	res.ls, res.depth = ls, 1
	ls.roots[r.Name] = res
	return res
}

func (e *Engine) newOwner(id OwnerID) *owner {
	o := e.spareOwner
	if o == nil {
		o = &owner{}
	}
	e.spareOwner = nil
	*o = owner{id: id}
	e.owners[id] = o
	return o
}

func (e *Engine) newSpace(name string) *lockspace {
	ls := e.spareSpace
	if ls == nil {
		ls = &lockspace{roots: make(map[string]*resource)}
	}
	e.spareSpace = nil
	ls.name = name // roots is empty
	e.spaces[name] = ls
	return ls
}

func (e *Engine) markQueued(r *resource) {
	if !r.queued {
		r.queued = true
		e.contended[r] = struct{}{}
	}
}

func (e *Engine) convert(now time.Time, r *Request) (LockID, error) {
	const op = "convert"
	switch {
	case r.Flags&^allFlags != 0:
		return 0, fail(op, r.Lock, ErrInvalid, "unknown flag bits %#x: use the dlm flag constants", uint16(r.Flags&^allFlags))
	case !r.Mode.Valid():
		return 0, fail(op, r.Lock, ErrInvalid, "unknown lock mode %d: use NL, CR, CW, PR, PW or EX", uint8(r.Mode))
	case r.Flags&Expedite != 0:
		return 0, fail(op, r.Lock, ErrInvalid, "Expedite is only valid for a new NL request, not with Convert")
	case r.Value != nil && r.Flags&ValBlk == 0:
		return 0, fail(op, r.Lock, ErrInvalid, "a Value is given without ValBlk: set ValBlk to write the value block")
	}
	l := e.locks[r.Lock]
	switch {
	case l == nil:
		return 0, fail(op, r.Lock, ErrUnknownLock, "lock %d does not exist (released, never granted, or from another master): request a new lock", r.Lock)
	case l.q == QueueWaiting:
		return 0, fail(op, r.Lock, ErrWrongState, "lock %d still waits for its first grant (%v): only a granted lock can be converted; wait for the grant or cancel it", r.Lock, l.req)
	case l.q == QueueConverting:
		return 0, fail(op, r.Lock, ErrWrongState, "lock %d already has a conversion to %v queued: wait for it or cancel it first", r.Lock, l.req)
	}
	res := l.res
	if res.compatible(r.Mode, int(l.granted)) && (r.Flags&QueCvt == 0 || res.conv.head == nil) {
		l.flags = r.Flags
		e.grant(l, r.Mode, r.Value)
		e.regrant(res)
		return l.id, nil
	}
	if r.Flags&NoQueue != 0 {
		e.ev = append(e.ev, Event{Kind: EventNotQueued, Lock: l.id, Owner: l.owner.id, Mode: r.Mode, Tag: l.tag})
		return l.id, nil
	}
	l.flags = r.Flags
	res.granted.remove(l)
	l.q = QueueConverting
	l.req = r.Mode
	l.seq = e.seq()
	l.w = newWait(e.clock(now))
	if r.Value != nil {
		v := *r.Value
		l.w.value = &v
	}
	res.conv.push(l)
	e.markQueued(res)
	e.blockedBy(l)
	return l.id, nil
}

// grant grants l at mode m: a new lock (q 0), a queued request, or an
// in-place conversion of a granted lock. v is the value to write if this is
// a conversion from PW or EX to an equal or lower mode with ValBlk.
func (e *Engine) grant(l *lock, m Mode, v *Value) {
	r := l.res
	switch l.q {
	case QueueWaiting:
		r.waitq.remove(l)
	case QueueConverting:
		r.conv.remove(l)
		r.counts[l.granted]--
		if l.w.value != nil {
			v = l.w.value
		}
	case QueueGranted:
		r.granted.remove(l)
		r.counts[l.granted]--
	}
	if v != nil && (l.q == QueueConverting || l.q == QueueGranted) &&
		l.flags&ValBlk != 0 && (l.granted == PW || l.granted == EX) && m <= l.granted {
		r.write(v)
	}
	l.w = nil
	l.q = QueueGranted
	l.granted = m
	l.req = m
	l.seq = e.seq()
	r.counts[m]++
	r.granted.push(l)
	r.token++
	if r.token > e.floor {
		e.floor = r.token
	}
	e.ev = append(e.ev, Event{Kind: EventGranted, Lock: l.id, Owner: l.owner.id, Mode: m, Token: r.token, Tag: l.tag})
	if l.flags&ValBlk != 0 {
		ev := &e.ev[len(e.ev)-1]
		ev.ValueValid = !r.invalid
		if r.val != nil {
			ev.Value = *r.val
		}
	}
	if r.conv.head != nil || r.waitq.head != nil {
		e.fresh = append(e.fresh, l)
	}
}

func (r *resource) write(v *Value) {
	if r.val == nil {
		r.val = new(Value)
	}
	*r.val = *v
	r.invalid = false
}

// regrant grants what the queues of r allow: conversions in order while the
// head is compatible, then, once no conversion is left, new requests the
// same way.
func (e *Engine) regrant(r *resource) {
	for l := r.conv.head; l != nil; l = r.conv.head {
		if !r.compatible(l.req, int(l.granted)) {
			break
		}
		e.grant(l, l.req, nil)
	}
	if r.conv.head == nil {
		for l := r.waitq.head; l != nil; l = r.waitq.head {
			if !r.compatible(l.req, -1) {
				break
			}
			e.grant(l, l.req, nil)
		}
	}
	if r.queued && r.conv.head == nil && r.waitq.head == nil {
		r.queued = false
		delete(e.contended, r)
	}
}

// blockedBy queues a blocking notification for every granted lock that
// blocks the queued request l.
func (e *Engine) blockedBy(l *lock) {
	for g := l.res.granted.head; g != nil; g = l.res.granted.after(g) {
		if g.flags&NoBlock == 0 && !Compatible(g.granted, l.req) {
			e.pend = append(e.pend, pair{blocked: l, blocker: g})
		}
	}
}

// flush emits the blocking notifications of this call: for requests that
// started to wait and for locks that started to block, each pair once.
func (e *Engine) flush() {
	for _, g := range e.fresh {
		if g.q != QueueGranted || g.flags&NoBlock != 0 {
			continue
		}
		r := g.res
		for l := r.conv.head; l != nil; l = r.conv.after(l) {
			if !Compatible(g.granted, l.req) {
				e.pend = append(e.pend, pair{blocked: l, blocker: g})
			}
		}
		for l := r.waitq.head; l != nil; l = r.waitq.after(l) {
			if !Compatible(g.granted, l.req) {
				e.pend = append(e.pend, pair{blocked: l, blocker: g})
			}
		}
	}
	clear(e.fresh)
	e.fresh = e.fresh[:0]
	if len(e.pend) == 0 {
		return
	}
	if len(e.pend) > 1 {
		slices.SortFunc(e.pend, func(a, b pair) int {
			if c := cmp.Compare(a.blocked.id, b.blocked.id); c != 0 {
				return c
			}
			return cmp.Compare(a.blocker.id, b.blocker.id)
		})
	}
	for i, p := range e.pend {
		if i > 0 && p == e.pend[i-1] {
			continue
		}
		b, g := p.blocked, p.blocker
		if b.w == nil || g.q != QueueGranted || g.flags&NoBlock != 0 || g == b ||
			g.res != b.res || Compatible(g.granted, b.req) || slices.Contains(b.w.notified, g.id) {
			continue
		}
		b.w.notified = append(b.w.notified, g.id)
		e.ev = append(e.ev, Event{Kind: EventBlocking, Lock: g.id, Owner: g.owner.id, Mode: b.req, Blocked: b.id, Tag: g.tag})
	}
	clear(e.pend)
	e.pend = e.pend[:0]
}

// remove takes l out of its queue, its owner and the engine. The resource
// stays (see deleteIfEmpty).
func (e *Engine) remove(l *lock) {
	r := l.res
	switch l.q {
	case QueueGranted:
		r.granted.remove(l)
		r.counts[l.granted]--
	case QueueConverting:
		r.conv.remove(l)
		r.counts[l.granted]--
	case QueueWaiting:
		r.waitq.remove(l)
	}
	l.q = 0
	l.w = nil
	if l.parent != nil {
		l.parent.children--
	}
	o := l.owner
	o.remove(l)
	if o.n == 0 {
		delete(e.owners, o.id)
		e.spareOwner = o
	}
	delete(e.locks, l.id)
}

// deleteIfEmpty deletes r, and then its ancestors, while they have no lock
// and no child resource.
func (e *Engine) deleteIfEmpty(r *resource) {
	for r != nil && !r.gone && r.empty() && len(r.kids) == 0 {
		r.gone = true
		if r.queued {
			r.queued = false
			delete(e.contended, r)
		}
		if r.parent != nil {
			delete(r.parent.kids, r.name)
			if len(r.parent.kids) == 0 {
				r.parent.kids = nil
			}
		} else {
			delete(r.ls.roots, r.name)
			if len(r.ls.roots) == 0 {
				delete(e.spaces, r.ls.name)
				e.spareSpace = r.ls
			}
		}
		r = r.parent
	}
}

// Unlock releases a lock ($DEQ). flags may be ValBlk, and then a PW or EX
// holder writes v (if not nil) to the value block. Unlocking a lock that
// still waits for its first grant cancels it (EventCanceled); unlocking a
// converting lock cancels the conversion (EventCanceled) and releases the
// lock. A lock with sub-locks cannot be unlocked: release them first. The
// events are the completions and grants that follow.
func (e *Engine) Unlock(id LockID, flags Flags, v *Value) ([]Event, error) {
	const op = "unlock"
	e.ev = e.ev[:0]
	if flags&^ValBlk != 0 {
		return nil, fail(op, id, ErrInvalid, "flags %v: only ValBlk is valid for an unlock", flags)
	}
	if v != nil && flags&ValBlk == 0 {
		return nil, fail(op, id, ErrInvalid, "a Value is given without ValBlk: set ValBlk to write the value block")
	}
	l := e.locks[id]
	if l == nil {
		return nil, fail(op, id, ErrUnknownLock, "lock %d does not exist (already released, or from another master)", id)
	}
	if l.q == QueueWaiting {
		e.abort(l, EventCanceled)
		e.flush()
		return e.ev, nil
	}
	if l.children > 0 {
		return nil, fail(op, id, ErrHasChildren, "lock %d has %d sub-lock(s) (%s): unlock them first", id, l.children, e.childList(l))
	}
	r := l.res
	if l.q == QueueConverting {
		e.ev = append(e.ev, Event{Kind: EventCanceled, Lock: l.id, Owner: l.owner.id, Mode: l.req, Tag: l.tag})
	}
	if v != nil && (l.granted == PW || l.granted == EX) {
		r.write(v)
	}
	e.remove(l)
	if r.queued {
		e.regrant(r)
	}
	e.deleteIfEmpty(r)
	e.flush()
	return e.ev, nil
}

func (e *Engine) childList(l *lock) string {
	var ids []LockID
	for _, k := range l.res.kids {
		for _, q := range []*list{&k.granted, &k.conv, &k.waitq} {
			for c := q.head; c != nil; c = q.after(c) {
				if c.parent == l {
					ids = append(ids, c.id)
				}
			}
		}
	}
	slices.Sort(ids)
	var b strings.Builder
	for i, id := range ids {
		if i == 8 {
			b.WriteString(" and " + strconv.Itoa(len(ids)-i) + " more")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatUint(uint64(id), 10))
	}
	return b.String()
}

// Cancel cancels the queued request of a lock: a waiting new request is
// removed, a queued conversion is dropped and the lock stays granted at its
// old mode. Either way the request completes with EventCanceled. A granted
// lock with no conversion queued has nothing to cancel (use Unlock).
func (e *Engine) Cancel(id LockID) ([]Event, error) {
	e.ev = e.ev[:0]
	l := e.locks[id]
	if l == nil {
		return nil, fail("cancel", id, ErrUnknownLock, "lock %d does not exist (already released or completed)", id)
	}
	if l.q == QueueGranted {
		return nil, fail("cancel", id, ErrWrongState, "lock %d is granted at %v with no conversion queued: there is nothing to cancel (use Unlock to release it)", id, l.granted)
	}
	e.abort(l, EventCanceled)
	e.flush()
	return e.ev, nil
}

// abort ends the queued request of l with a completion of the kind: a new
// request is removed, a conversion goes back to the granted queue.
func (e *Engine) abort(l *lock, kind EventKind) {
	r := l.res
	e.ev = append(e.ev, Event{Kind: kind, Lock: l.id, Owner: l.owner.id, Mode: l.req, Tag: l.tag})
	if l.q == QueueWaiting {
		e.remove(l)
	} else {
		r.conv.remove(l)
		l.w = nil
		l.q = QueueGranted
		l.req = l.granted
		l.seq = e.seq()
		r.granted.push(l)
		e.fresh = append(e.fresh, l)
	}
	e.regrant(r)
	e.deleteIfEmpty(r)
}

// PurgeOwner releases every lock of an owner (a disconnected client), with
// no completions for it. With invalidate, the value block of every resource
// on which the owner held PW or EX is marked not valid. It returns the
// grants (and blocking notifications) that follow.
func (e *Engine) PurgeOwner(o OwnerID, invalidate bool) []Event {
	e.ev = e.ev[:0]
	e.scratch = e.scratch[:0]
	if ow := e.owners[o]; ow != nil {
		e.scratch = ow.appendLocks(e.scratch)
	}
	e.purge(invalidate)
	return e.ev
}

// Tag returns the owner and the tag of lock id.
func (e *Engine) Tag(id LockID) (OwnerID, uint64, bool) {
	l := e.locks[id]
	if l == nil {
		return OwnerID{}, 0, false
	}
	return l.owner.id, l.tag, true
}

// OwnerLocks appends the ids of the locks of owner o to buf.
func (e *Engine) OwnerLocks(o OwnerID, buf []LockID) []LockID {
	ow := e.owners[o]
	if ow == nil {
		return buf
	}
	for l := ow.head; l != nil; {
		buf = append(buf, l.id)
		l = l.onext
		if l == ow.head {
			break
		}
	}
	return buf
}

// Owners returns the owners that hold or wait for locks, in no order.
func (e *Engine) Owners() []OwnerID {
	out := make([]OwnerID, 0, len(e.owners))
	for id := range e.owners {
		out = append(out, id)
	}
	return out
}

// PurgeMember is PurgeOwner for every owner on a member (a lost member),
// at once.
func (e *Engine) PurgeMember(member string, invalidate bool) []Event {
	e.ev = e.ev[:0]
	e.scratch = e.scratch[:0]
	for id, ow := range e.owners {
		if id.Member == member {
			e.scratch = ow.appendLocks(e.scratch)
		}
	}
	e.purge(invalidate)
	return e.ev
}

func (o *owner) appendLocks(ls []*lock) []*lock {
	for l := o.head; l != nil; {
		ls = append(ls, l)
		l = l.onext
		if l == o.head {
			break
		}
	}
	return ls
}

// purge removes the locks in e.scratch in lock id order, then regrants
// their resources in the order they were first met.
func (e *Engine) purge(invalidate bool) {
	ls := e.scratch
	slices.SortFunc(ls, func(a, b *lock) int { return cmp.Compare(a.id, b.id) })
	touched := e.touched[:0]
	for _, l := range ls {
		r := l.res
		if !r.mark {
			r.mark = true
			touched = append(touched, r)
		}
		if invalidate && l.q != QueueWaiting && (l.granted == PW || l.granted == EX) {
			r.invalid = true
		}
		e.remove(l)
	}
	for _, r := range touched {
		r.mark = false
		e.regrant(r)
		e.deleteIfEmpty(r)
	}
	clear(ls)
	clear(touched)
	e.touched = touched[:0]
	e.flush()
}

// InvalidateValue marks the value block of a resource not valid: the grants
// that follow report it so, until a PW or EX holder writes it. path is the
// resource's name and those of its ancestors, from the root.
func (e *Engine) InvalidateValue(lockspace string, path []string) error {
	r := e.find(lockspace, path)
	if r == nil {
		return fail("invalidate", 0, ErrUnknownResource, "no lock exists on resource %q in lockspace %q", strings.Join(path, "/"), lockspace)
	}
	r.invalid = true
	return nil
}

func (e *Engine) find(lockspace string, path []string) *resource {
	ls := e.spaces[lockspace]
	if ls == nil || len(path) == 0 {
		return nil
	}
	r := ls.roots[path[0]]
	for _, n := range path[1:] {
		if r == nil {
			return nil
		}
		r = r.kids[n]
	}
	return r
}

// Lock returns the state of one lock, as Export reports it.
func (e *Engine) Lock(id LockID) (Record, bool) {
	l := e.locks[id]
	if l == nil {
		return Record{}, false
	}
	return l.record(l.res.path()), true
}

func (r *resource) path() []string {
	n := int(r.depth)
	p := make([]string, n)
	for x := r; x != nil; x = x.parent {
		n--
		p[n] = x.name
	}
	return p
}
