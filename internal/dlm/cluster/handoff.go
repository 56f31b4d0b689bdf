package cluster

import (
	"cmp"
	"slices"
	"time"
)

// Masters where resources are used.
//
// The hash directory names each root's hash master. When a request for a
// root with no lock reaches its hash master H from another member X, H
// hands the root to X (MsgHandoff, with the request and H's token floor):
// X masters it from then on, so its clients' later operations on it cost
// no message, as VMS masters a resource on the node that first uses it.
// Other members' operations on the root still go to H, which forwards
// them to X (MsgForward); X answers them directly. Every member's
// operations on a root take one path, and the streams are FIFO, so no
// operation overtakes an earlier one of the same member:
//
//   - X's own operations sent to H before the hand-off arrived come back
//     forwarded; until the last of them is back, X sends its new ones the
//     same way (owned.via).
//   - X gives an unused root with no lock back (MsgReturn, from Sweep) with
//     the number of operations it received from H. H knows how many it
//     sent, so it knows how many are still on their way to X; X sends
//     those back (they find the root returned) and H runs them before
//     anything that arrived after the return (handoff.queue).
//
// A new view dissolves every hand-off: the recovery cut moves each root to
// its hash master in the new view, and each lock is sent on from where its
// member last saw it (entry.at).

// handoff is a root this member (its hash master) handed to another.
type handoff struct {
	to   string
	sent uint64 // operations on the root sent to `to` since the hand-off

	// After to gave the root back: back operations are still to come back
	// from it; queue holds what arrived since, in order.
	returning bool
	back      uint64
	queue     []heldOp
}

// owned is a root another member (its hash master) handed to this one.
type owned struct {
	from string    // the hash master
	got  uint64    // operations on the root received from it since the hand-off
	via  int       // this member's operations on the root still on their way back through it
	last time.Time // last use
}

func rootOf(op *Op) Root { return Root{op.Lockspace, op.Path[0]} }

// rootsOf returns the roots an operation concerns (nil for OpDeadlock).
func rootsOf(op *Op) []Root {
	switch {
	case op.Kind == OpPurge:
		return op.Roots
	case len(op.Path) == 0:
		return nil
	}
	return []Root{rootOf(op)}
}

func (n *Node) hashMaster(r Root) string { return Master(n.view, r.Lockspace, r.Name) }

// masters reports whether this member's engine is where root r's locks
// are: it was handed r, or it is r's hash master and has not handed it
// (or is getting it back).
func (n *Node) masters(r Root) bool {
	if n.owns[r] != nil {
		return true
	}
	if n.hashMaster(r) != n.self {
		return false
	}
	ho := n.handed[r]
	return ho == nil || ho.returning
}

// masterOf names the member whose engine holds root r as far as this
// member knows (for its tables; the hash master when r was handed to a
// member this one does not know of).
func (n *Node) masterOf(r Root) string {
	if n.owns[r] != nil {
		return n.self
	}
	if ho := n.handed[r]; ho != nil && !ho.returning {
		return ho.to
	}
	return n.hashMaster(r)
}

// ownRoute returns where this member sends its own client's operation on
// root r now: itself, a member, or (q) the queue of a root it is getting
// back. It counts the operation on the root's path.
func (n *Node) ownRoute(now time.Time, r Root) (to string, q *handoff) {
	if o := n.owns[r]; o != nil {
		o.last = now
		if o.via > 0 {
			o.via++
			return o.from, nil
		}
		return n.self, nil
	}
	h := n.hashMaster(r)
	if h != n.self {
		return h, nil
	}
	ho := n.handed[r]
	switch {
	case ho == nil:
		return n.self, nil
	case ho.returning:
		return "", ho
	}
	ho.sent++
	return ho.to, nil
}

// canHand reports whether a request of member from for root r, which this
// member masters by hash and holds no lock on, hands r to from.
func (n *Node) canHand(from string, op *Op) bool {
	if !n.cfg.Handoff || op.Kind != OpEnqueue || len(op.Path) != 1 || from == n.self || len(n.handed) >= n.cfg.MaxHandoffs {
		return false
	}
	if n.cfg.Fixed != nil && n.cfg.Fixed(op.Lockspace) {
		return false
	}
	r := rootOf(op)
	return n.handed[r] == nil && n.owns[r] == nil && !n.eng.HasRoot(r.Lockspace, r.Name) && n.hashMaster(r) == n.self
}

// dispatch runs, forwards, sends back or queues an operation of member
// origin that arrived from member sender (a request, a forward (fwd), or,
// with sender "", one taken from a returned root's queue). For an OpPurge
// each of its roots goes its own way.
func (n *Node) dispatch(now time.Time, origin, sender string, op *Op, fwd bool) []Event {
	if op.Kind == OpDeadlock {
		return n.abortHere(now, sender, op)
	}
	roots := rootsOf(op)
	type part struct {
		to    string // "" : here
		roots []Root
	}
	type returned struct {
		r  Root
		ho *handoff
	}
	var (
		here     []Root
		parts    []part
		finished []returned // returned roots whose last operation came back
	)
	add := func(to string, r Root) {
		for i := range parts {
			if parts[i].to == to {
				parts[i].roots = append(parts[i].roots, r)
				return
			}
		}
		parts = append(parts, part{to, []Root{r}})
	}
	for _, r := range roots {
		switch h := n.hashMaster(r); {
		case h == n.self:
			ho := n.handed[r]
			switch {
			case ho == nil:
				here = append(here, r)
			case ho.returning && sender == ho.to && fwd:
				// Sent before the return, back now: older than the queue.
				here = append(here, r)
				if ho.back > 0 {
					ho.back--
				}
				if ho.back == 0 {
					finished = append(finished, returned{r, ho})
				}
			case ho.returning:
				c := *op
				if op.Kind == OpPurge {
					c.Roots = []Root{r}
				}
				from := origin
				if from == n.self {
					from = ""
				}
				ho.queue = append(ho.queue, heldOp{from: from, op: c, roots: c.Roots})
			default:
				ho.sent++
				add(ho.to, r)
			}
		case n.owns[r] != nil:
			o := n.owns[r]
			if sender != o.from {
				n.anomaly("%v on root %q/%q, handed here by %s, came from %s", op.Kind, r.Lockspace, r.Name, o.from, sender)
				continue
			}
			o.got++
			o.last = now
			if origin == n.self && o.via > 0 {
				o.via--
			}
			here = append(here, r)
		case sender == h:
			// The hash master forwarded it before it learned that this
			// member gave the root back: send it back.
			add(h, r)
		default:
			here = append(here, r) // the engine refuses it: not the master
		}
	}
	var out []Event
	if len(here) > 0 {
		out = n.runHere(now, origin, op, here)
	}
	for _, p := range parts {
		c := *op
		if op.Kind == OpPurge {
			c.Roots = p.roots
		}
		n.send(p.to, Message{Kind: MsgForward, Op: &c})
	}
	for _, f := range finished {
		out = append(out, n.finishReturn(now, f.r, f.ho)...)
	}
	return out
}

// runHere runs on this member's engine the part (roots) of an operation of
// member origin that this member masters.
func (n *Node) runHere(now time.Time, origin string, op *Op, roots []Root) []Event {
	c := *op
	if op.Kind == OpPurge {
		c.Roots = roots
	}
	if origin != n.self {
		if n.canHand(origin, &c) {
			r := rootOf(&c)
			n.handed[r] = &handoff{to: origin}
			n.note("handoff")
			n.send(origin, Message{Kind: MsgHandoff, Root: &r, Floor: max(n.floor, n.eng.Floor()), Op: &c})
			return nil
		}
		return n.apply(now, origin, &c)
	}
	// This member's own operation, back through the hash master: it is
	// answered here.
	p := n.pending[op.Req]
	if op.Kind == OpPurge {
		if p != nil {
			n.covered(op.Req, p, roots)
		}
		return n.apply(now, n.self, &c)
	}
	delete(n.pending, op.Req)
	if p == nil || p.moot {
		return nil
	}
	return n.apply(now, n.self, &c)
}

// covered removes the roots a purge's part answered for from the pending
// purge, and forgets it once every root is answered.
func (n *Node) covered(req uint64, p *pendingOp, roots []Root) {
	p.roots = slices.DeleteFunc(p.roots, func(r Root) bool { return slices.Contains(roots, r) })
	if len(p.roots) == 0 {
		delete(n.pending, req)
	}
}

// finishReturn: every operation sent to the member that returned root r
// is back; r is this member's again, and what waited for it runs in
// order.
func (n *Node) finishReturn(now time.Time, r Root, ho *handoff) []Event {
	if n.handed[r] == ho {
		delete(n.handed, r)
	}
	var out []Event
	for _, h := range ho.queue {
		if h.from == "" {
			out = append(out, n.submit(now, h.op, h.roots)...)
		} else {
			out = append(out, n.dispatch(now, h.from, "", &h.op, false)...)
		}
	}
	return out
}

// onHandoff: the hash master of m.Root handed it to this member, with the
// request of this member's client that asked for it.
func (n *Node) onHandoff(now time.Time, from string, m *Message) []Event {
	op := m.Op
	if m.Root == nil || op == nil || op.Kind != OpEnqueue || checkOp(op, n.self) != nil || len(op.Path) != 1 || rootOf(op) != *m.Root {
		n.anomaly("malformed hand-off from %s", from)
		return nil
	}
	r := *m.Root
	if n.hashMaster(r) != from || n.owns[r] != nil {
		n.anomaly("hand-off of root %q/%q from %s, which does not master it by hash, or handed it twice", r.Lockspace, r.Name, from)
		return nil
	}
	o := &owned{from: from, last: now}
	for _, p := range n.pending {
		if p.to == from && p.op.Req > op.Req && slices.Contains(p.concerns(), r) {
			o.via++
		}
	}
	n.owns[r] = o
	n.eng.RaiseFloor(m.Floor)
	n.floor = max(n.floor, m.Floor)
	n.note("handoff-in")
	p := n.pending[op.Req]
	delete(n.pending, op.Req)
	if p == nil || p.moot {
		return nil // its client left: its purge follows through from
	}
	return n.apply(now, n.self, op)
}

// concerns returns the roots a pending operation is still on its way to.
func (p *pendingOp) concerns() []Root {
	if p.op.Kind == OpPurge {
		return p.roots
	}
	return rootsOf(&p.op)
}

// onForward: an operation forwarded by a root's hash master, or sent back
// by the member it handed the root to.
func (n *Node) onForward(now time.Time, from string, m *Message) []Event {
	op := m.Op
	if op == nil || op.Kind == OpDeadlock {
		return nil
	}
	origin := op.Owner.Member
	if err := checkOp(op, origin); err != nil || !n.view.Has(origin) {
		n.anomaly("malformed forward from %s: %v", from, err)
		return nil
	}
	return n.dispatch(now, origin, from, op, true)
}

// onReturn: the member this one handed m.Root to gives it back.
func (n *Node) onReturn(now time.Time, from string, m *Message) []Event {
	if m.Root == nil {
		n.anomaly("return without a root from %s", from)
		return nil
	}
	r := *m.Root
	ho := n.handed[r]
	if ho == nil || ho.to != from || ho.returning || m.Count > ho.sent {
		n.anomaly("return of root %q/%q from %s, which does not hold it (or counts %d of %d operations)", r.Lockspace, r.Name, from, m.Count, sentOf(ho))
		return nil
	}
	n.eng.RaiseFloor(m.Floor)
	n.floor = max(n.floor, m.Floor)
	n.note("returned")
	ho.returning, ho.back = true, ho.sent-m.Count
	if ho.back == 0 {
		return n.finishReturn(now, r, ho)
	}
	return nil
}

func sentOf(ho *handoff) uint64 {
	if ho == nil {
		return 0
	}
	return ho.sent
}

// Sweep gives back to their hash masters the roots handed to this member
// that have no lock and were not used for Config.IdleReturn, so that the
// hand-off tables stay small. Call it now and then (every second).
func (n *Node) Sweep(now time.Time) {
	if !n.Ready() || len(n.owns) == 0 {
		return
	}
	var give []Root
	for r, o := range n.owns {
		if o.via == 0 && now.Sub(o.last) >= n.cfg.IdleReturn && !n.eng.HasRoot(r.Lockspace, r.Name) {
			give = append(give, r)
		}
	}
	slices.SortFunc(give, compareRoot)
	for _, r := range give {
		o := n.owns[r]
		delete(n.owns, r)
		c := r
		n.send(o.from, Message{Kind: MsgReturn, Root: &c, Count: o.got, Floor: max(n.floor, n.eng.Floor())})
	}
}

func compareRoot(a, b Root) int {
	return cmp.Or(cmp.Compare(a.Lockspace, b.Lockspace), cmp.Compare(a.Name, b.Name))
}

// dissolve ends every hand-off (a new view): this member's own operations
// waiting for a returned root go back to the held operations, first;
// other members' are sent again by them after the barrier.
func (n *Node) dissolve() {
	if len(n.handed) > 0 {
		var own []heldOp
		for _, r := range sortedRoots(n.handed) {
			for _, h := range n.handed[r].queue {
				if h.from == "" {
					own = append(own, h)
				}
			}
		}
		n.held = append(own, n.held...)
	}
	clear(n.handed)
	clear(n.owns)
}

func sortedRoots[V any](m map[Root]V) []Root {
	rs := make([]Root, 0, len(m))
	for r := range m {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, compareRoot)
	return rs
}

// HandoffStats counts the roots handed to other members and to this one.
type HandoffStats struct {
	Handed, Owned int
}

// Handoffs returns the numbers of roots this member handed to others and
// that others handed to it.
func (n *Node) Handoffs() HandoffStats {
	return HandoffStats{Handed: len(n.handed), Owned: len(n.owns)}
}
