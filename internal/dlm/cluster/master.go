package cluster

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

var sprintf = fmt.Sprintf

// bind records that this member masters cluster lock g as engine lock eid.
// The engine keeps the way back: the lock's owner is on g's member (a
// lock's id names the member of its client) and its tag is g.N.
func (n *Node) bind(eid dlm.LockID, g LockID) {
	n.byG[g] = eid
	if o, tag, ok := n.eng.Tag(eid); ok && (o.Member != g.Member || tag != g.N) {
		n.anomaly("engine lock %d of %v tagged %d is bound to %v", eid, o, tag, g)
	}
}

func (n *Node) unbind(g LockID) { delete(n.byG, g) }

// gidOK is the cluster id of engine lock eid.
func (n *Node) gidOK(eid dlm.LockID) (LockID, bool) {
	o, tag, ok := n.eng.Tag(eid)
	if !ok {
		return LockID{}, false
	}
	return LockID{Member: o.Member, N: tag}, true
}

// gid is gidOK without the flag (the zero LockID when eid is unknown).
func (n *Node) gid(eid dlm.LockID) LockID {
	g, _ := n.gidOK(eid)
	return g
}

// apply runs one client operation on this member's engine, as the master
// of its resource, and routes what follows: the reply to the requesting
// member from, the events to their owners' members, with the new states of
// the locks concerned. It returns the events for this member's clients
// (with the refusal of an operation of theirs, as EventRefused).
func (n *Node) apply(now time.Time, from string, op *Op) []Event {
	evs, _ := n.applyOp(now, from, op)
	return evs
}

// applyOp is apply that also returns the engine's error.
func (n *Node) applyOp(now time.Time, from string, op *Op) ([]Event, error) {
	var (
		eid     dlm.LockID
		evs     []dlm.Event
		err     error
		purged  []LockID
		touched []LockID
	)
	name := op.Kind.String()
	switch op.Kind {
	case OpEnqueue:
		touched = append(touched, op.Lock)
		eid, evs, err = n.applyEnqueue(now, from, op)
	case OpConvert, OpUnlock, OpCancel, OpDeadlock:
		touched = append(touched, op.Lock)
		id, ok := n.byG[op.Lock]
		switch {
		case !ok:
			err = fail(name, op.Lock, dlm.ErrUnknownLock, "lock %v does not exist on master %s (released, completed, or never granted)", op.Lock, n.self)
		case op.Kind != OpDeadlock && (op.Lock.Member != from || op.Owner.Member != from):
			err = fail(name, op.Lock, errInvalid, "lock %v is not a lock of member %s's clients", op.Lock, from)
		default:
			eid = id
			switch op.Kind {
			case OpConvert:
				_, evs, err = n.eng.Enqueue(now, dlm.Request{Lock: eid, Mode: op.Mode, Flags: op.Flags | dlm.Convert, Value: op.Value})
			case OpUnlock:
				evs, err = n.eng.Unlock(eid, op.Flags, op.Value)
			case OpCancel:
				evs, err = n.eng.Cancel(eid)
			case OpDeadlock:
				evs, err = n.eng.Deadlock(now, eid)
			}
		}
	case OpPurge:
		if op.Owner.Member != from {
			err = fail(name, LockID{}, errInvalid, "owner %v is not a client of member %s", op.Owner, from)
			break
		}
		for _, eid := range n.eng.OwnerLocks(op.Owner, nil) {
			purged = append(purged, n.gid(eid))
		}
		evs = n.eng.PurgeOwner(op.Owner, true)
	default:
		err = fail(name, op.Lock, errInvalid, "unknown operation %d", op.Kind)
	}
	// The master's events live in a scratch buffer until routed: route
	// copies what it keeps.
	out := n.translateInto(n.evScratch[:0], evs)
	defer func() { n.evScratch = out[:0] }()
	for _, g := range purged {
		n.unbind(g)
	}
	for _, ev := range out {
		if ev.Kind != EventBlocking && ev.Lock != op.Lock {
			touched = append(touched, ev.Lock)
		}
	}
	if err != nil {
		err = n.wrapErr(name, op.Lock, err)
		if errors.Is(err, dlm.ErrUnknownLock) {
			// Not "gone": this master never had it, and the last word of
			// the master that had it (before a hand-off or a return) may
			// still be on its way.
			touched = slices.DeleteFunc(touched, func(g LockID) bool { return g == op.Lock })
		}
	}
	if n.hooks.applied != nil {
		c := *op // a copy: op itself stays off the heap outside tests
		n.hooks.applied(n.self, from, &c, out, err)
	}
	var reply *Reply
	if from != n.self && op.Req != 0 {
		reply = &Reply{Req: op.Req}
		if op.Kind == OpPurge {
			reply.Roots = op.Roots
		}
		if err != nil {
			reply.Err, reply.Msg = kindName(err), errMsg(err)
		}
	}
	res := n.route(out, touched, from, reply)
	if from == n.self && err != nil && op.Kind != OpPurge && op.Kind != OpDeadlock {
		if op.Kind == OpEnqueue {
			n.table.del(op.Lock)
		}
		res = append(res, refused(op, err))
	}
	if err != nil {
		return res, err
	}
	return res, nil
}

// wrapErr makes an engine error name cluster lock ids.
func (n *Node) wrapErr(name string, id LockID, err error) *Error {
	if ce, ok := err.(*Error); ok {
		return ce
	}
	return &Error{Op: name, Lock: id, Kind: kindOf(err), Msg: errMsg(err)}
}

func (n *Node) applyEnqueue(now time.Time, from string, op *Op) (dlm.LockID, []dlm.Event, error) {
	const name = "enqueue"
	switch {
	case op.Lock.Member != from || op.Lock.N == 0 || op.Owner.Member != from:
		return 0, nil, fail(name, op.Lock, errInvalid, "lock %v for owner %v does not come from their member %s", op.Lock, op.Owner, from)
	case op.Flags&dlm.Convert != 0:
		return 0, nil, fail(name, op.Lock, errInvalid, "a new request cannot have Convert")
	case len(op.Path) == 0 || len(op.Path) > dlm.MaxDepth:
		return 0, nil, fail(name, op.Lock, errInvalid, "the resource path has %d names: give 1 to %d", len(op.Path), dlm.MaxDepth)
	case !n.masters(rootOf(op)):
		return 0, nil, fail(name, op.Lock, ErrNotMaster, "member %s does not master root %q of lockspace %q in view %v", n.self, op.root(), op.Lockspace, n.view)
	}
	if _, dup := n.byG[op.Lock]; dup {
		return 0, nil, fail(name, op.Lock, errInvalid, "lock id %v is already in use", op.Lock)
	}
	req := dlm.Request{Lockspace: op.Lockspace, Name: op.Path[len(op.Path)-1], Owner: op.Owner, Mode: op.Mode, Flags: op.Flags, Value: op.Value, Tag: op.Lock.N}
	if !op.Parent.IsZero() {
		pb, ok := n.byG[op.Parent]
		pid := pb
		if !ok {
			return 0, nil, fail(name, op.Lock, dlm.ErrUnknownLock, "parent lock %v does not exist on master %s: request the parent lock first", op.Parent, n.self)
		}
		if rec, ok := n.eng.Lock(pid); ok && rec.Lockspace == op.Lockspace && rec.Owner == op.Owner && !slices.Equal(rec.Path, op.Path[:len(op.Path)-1]) {
			return 0, nil, fail(name, op.Lock, errInvalid, "parent lock %v is on %q, not on the parent resource of %q", op.Parent, rec.Path, op.Path)
		}
		req.Parent = pid
	} else if len(op.Path) != 1 {
		return 0, nil, fail(name, op.Lock, errInvalid, "a lock on sub-resource %q needs its parent lock", op.Path)
	}
	eid, evs, err := n.eng.Enqueue(now, req)
	if err == nil {
		n.bind(eid, op.Lock)
	}
	return eid, evs, err
}

// translate turns the engine's events into cluster events (a copy: the
// engine reuses its slice).
func (n *Node) translate(evs []dlm.Event) []Event {
	if len(evs) == 0 {
		return nil
	}
	return n.translateInto(make([]Event, 0, len(evs)), evs)
}

// translateInto is translate appending to out.
func (n *Node) translateInto(out []Event, evs []dlm.Event) []Event {
	for _, ev := range evs {
		g, ok := n.byGOfEvent(ev)
		if !ok {
			n.anomaly("engine event %v for unmapped lock %d", ev.Kind, ev.Lock)
			continue
		}
		e := Event{Kind: EventKind(ev.Kind), Lock: g, Owner: ev.Owner, Mode: ev.Mode, Token: ev.Token}
		switch ev.Kind {
		case dlm.EventBlocking:
			e.Blocked = n.gid(ev.Blocked)
		case dlm.EventGranted:
			n.floor = max(n.floor, ev.Token)
			if rec, ok := n.eng.Lock(ev.Lock); ok {
				if rec.Flags&dlm.ValBlk != 0 {
					e.ValBlk, e.ValueValid, e.Value = true, ev.ValueValid, ev.Value
				}
				if n.hooks.granted != nil {
					n.hooks.granted(n.self, rec.Lockspace, rec.Path, g, ev.Token)
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// stateOf returns a lock's state on this master (Gone: it no longer
// exists, and its mapping is dropped).
func (n *Node) stateOf(g LockID) LockState {
	eid, ok := n.byG[g]
	if !ok {
		return LockState{Lock: g, Gone: true}
	}
	rec, ok := n.eng.Lock(eid)
	if !ok {
		n.unbind(g)
		return LockState{Lock: g, Gone: true}
	}
	return LockState{Lock: g, Queue: rec.Queue, Granted: rec.Granted, Requested: rec.Requested, Flags: rec.Flags,
		Seq: rec.Seq, PendingValue: rec.PendingValue}
}

// route delivers the results of one engine call: each member gets the
// events of its clients, in order, the states of its clients' locks among
// touched, and requester the reply. It returns what concerns this member.
func (n *Node) route(evs []Event, touched []LockID, requester string, reply *Reply) []Event {
	type bucket struct {
		events []Event
		states []LockState
		reply  *Reply
	}
	if n.hooks.routed != nil && len(evs) > 0 {
		n.hooks.routed(n.self, evs)
	}
	if out, ok := n.routeLocal(evs, touched, requester, reply); ok {
		return out
	}
	var bs map[string]*bucket
	get := func(m string) *bucket {
		if bs == nil {
			bs = map[string]*bucket{}
		}
		b := bs[m]
		if b == nil {
			b = &bucket{}
			bs[m] = b
		}
		return b
	}
	for _, ev := range evs {
		b := get(ev.Owner.Member)
		b.events = append(b.events, ev)
	}
	for i, g := range touched {
		if g.IsZero() || slices.Contains(touched[:i], g) {
			continue
		}
		b := get(g.Member)
		b.states = append(b.states, n.stateOf(g))
	}
	if reply != nil {
		get(requester).reply = reply
	}
	var out []Event
	for _, m := range sortedKeys(bs) {
		b := bs[m]
		if m == n.self {
			out = append(out, n.receive(n.self, b.reply, b.states, b.events)...)
			continue
		}
		if !n.view.Has(m) {
			continue
		}
		n.send(m, Message{Kind: MsgUpdate, Reply: b.reply, Events: b.events, States: b.states})
	}
	return out
}

// routeLocal is route when everything concerns this member alone (a lock of
// a local client on a resource mastered here: the common case), without
// building the per-member buckets. ok is false when another member is
// concerned.
func (n *Node) routeLocal(evs []Event, touched []LockID, requester string, reply *Reply) ([]Event, bool) {
	if reply != nil && requester != n.self {
		return nil, false
	}
	for i := range evs {
		if evs[i].Owner.Member != n.self {
			return nil, false
		}
	}
	var states []LockState
	for i, g := range touched {
		if g.IsZero() || slices.Contains(touched[:i], g) {
			continue
		}
		if g.Member != n.self {
			return nil, false
		}
		states = append(states, n.stateOf(g))
	}
	return n.receive(n.self, reply, states, evs), true
}

// byGOfEvent is the cluster id of an event's lock, from the owner and tag
// the event carries (the lock may be gone from the engine already: an
// unlock's cancel), if this member still maps it.
func (n *Node) byGOfEvent(ev dlm.Event) (LockID, bool) {
	g := LockID{Member: ev.Owner.Member, N: ev.Tag}
	_, ok := n.byG[g]
	return g, ok
}
