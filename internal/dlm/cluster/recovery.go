package cluster

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// recovery is the state of the barrier for the current view.
type recovery struct {
	started  bool              // locks of departed members purged, flush sent
	flushes  map[string]uint64 // members heard: their token floors
	cut      bool              // locks sent to their new masters
	locks    map[string]bool   // members whose MsgLocks all arrived
	records  []LockRecord      // for the roots this member now masters
	values   []ResourceValue
	imported bool
	dones    map[string]bool
}

// SetView applies a new view (the layer above calls it only once every
// member that left is fenced or its lease is over: DESIGN.md invariant 3).
// A view whose Number is not above the current one is ignored. The member
// stops granting and holds new operations, then runs the recovery barrier
// (see the package documentation); a newer view during recovery restarts
// it. A view without this member drops all its state: its clients get
// EventLost for every lock.
func (n *Node) SetView(now time.Time, v View) ([]Event, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	if n.hasView && v.Number <= n.view.Number {
		return nil, nil
	}
	v.Members = slices.Clone(v.Members)
	prev, had := n.view, n.hasView && !n.out
	n.view, n.hasView = v, true
	var out []Event
	if v.Has(n.self) {
		n.enter(prev, had)
		out = n.progress(now)
	} else {
		out = n.leave(had)
	}
	return append(out, n.drainStash(now)...), nil
}

func (n *Node) enter(prev View, had bool) {
	v := n.view
	if !had {
		n.out = false
		clear(n.joinedAt)
		for _, m := range v.Members {
			n.joinedAt[m] = v.Number
		}
		n.raise = true
	} else {
		for _, m := range v.Members {
			if !prev.Has(m) {
				n.joinedAt[m] = v.Number
			}
		}
		for m := range n.joinedAt {
			if !v.Has(m) {
				delete(n.joinedAt, m)
			}
		}
		left := map[string]bool{}
		for _, m := range prev.Members {
			if !v.Has(m) {
				left[m] = true
				n.departed[m] = true
				n.raise = true // this member masters some of its names now
			}
		}
		// Locks held by a member that left are with no one now; one that
		// comes back is a new member with an empty engine.
		for _, e := range n.table.all() {
			if left[e.at] {
				e.at = ""
			}
			if e.sent != nil && left[e.sent.to] {
				e.sent = nil
			}
		}
	}
	// Every hand-off ends; requests of other members held for the older
	// view are dropped: they find them unanswered at the cut and send them
	// again.
	// A root handed to another member comes back to its hash master with
	// the view, without a word if it has no lock: every member raises its
	// token floor above every token of the older views.
	n.raise = true
	n.dissolve()
	n.held = slices.DeleteFunc(n.held, func(h heldOp) bool { return h.from != "" })
	// An unanswered request may have been forwarded to the member a root
	// was handed to: if any member left, it may have run there.
	anyLeft := false
	for _, m := range prev.Members {
		anyLeft = anyLeft || (had && !v.Has(m))
	}
	for _, p := range n.pending {
		if !v.Has(p.to) || anyLeft {
			p.lost = true
		}
	}
	n.rec = &recovery{flushes: map[string]uint64{}, locks: map[string]bool{}, dones: map[string]bool{}}
	n.log.Info("dlm recovery begins", "view", v.Number, "members", strings.Join(v.Members, ","))
}

// leave drops everything: this member is not in the view.
func (n *Node) leave(had bool) []Event {
	var out []Event
	err := n.notMember("lock")
	for _, id := range n.sortedIDs() {
		out = append(out, Event{Kind: EventLost, Lock: id, Owner: n.table.get(id).owner, Err: err})
	}
	n.table.clear()
	clear(n.pending)
	n.reissue, n.held, n.rec, n.raise = nil, nil, nil, false
	clear(n.departed)
	clear(n.handed)
	clear(n.owns)
	n.resetMaster()
	n.out = true
	if had {
		n.log.Warn("dlm: this member is not in the view: its clients' locks are lost", "view", n.view.Number)
	} else {
		n.log.Info("dlm: this member is not in the view yet: the director adds it once it holds a lease", "view", n.view.Number)
	}
	return out
}

// SetQuorum tells the member whether the cluster has quorum. Without
// quorum it grants nothing: its clients' operations and other members'
// requests are held (in arrival order, up to Config.MaxHeld) and recovery
// waits; with quorum again they run. A Node starts without quorum.
func (n *Node) SetQuorum(now time.Time, q bool) []Event {
	n.quorum = q
	if !q || n.out || !n.hasView {
		return nil
	}
	return n.progress(now)
}

// Deliver handles a message from another member. Messages for a view this
// member has not applied yet are kept until it does; messages of a
// member's earlier membership, and recovery messages of an older view, are
// dropped (requests of an older view too: the barrier makes their senders
// send them again).
func (n *Node) Deliver(now time.Time, from string, m Message) []Event {
	if from == "" || from == n.self {
		return nil
	}
	if !n.hasView || m.View > n.view.Number || len(n.stash[from]) > 0 {
		if n.stashN >= n.cfg.MaxStash {
			n.log.Warn("dlm: too many messages for future views (Config.MaxStash): dropping one", "from", from, "kind", m.Kind, "msg_view", m.View)
			return nil
		}
		n.stash[from] = append(n.stash[from], m)
		n.stashN++
		return nil
	}
	return n.handle(now, from, &m)
}

func (n *Node) drainStash(now time.Time) []Event {
	var out []Event
	for _, s := range sortedKeys(n.stash) {
		q := n.stash[s]
		i := 0
		for ; i < len(q) && q[i].View <= n.view.Number; i++ {
			out = append(out, n.handle(now, s, &q[i])...)
		}
		n.stashN -= i
		if i == len(q) {
			delete(n.stash, s)
		} else {
			n.stash[s] = slices.Clone(q[i:])
		}
	}
	return out
}

func (n *Node) handle(now time.Time, from string, m *Message) []Event {
	if n.out || !n.view.Has(from) || m.View < n.joinedAt[from] {
		return nil // from a member that left, or from its earlier membership
	}
	var out []Event
	r := n.rec
	current := m.View == n.view.Number
	switch m.Kind {
	case MsgRequest:
		out = n.onRequest(now, from, m)
	case MsgUpdate:
		out = n.receive(from, m.Reply, m.States, m.Events)
	case MsgFlush:
		if r != nil && current {
			r.flushes[from] = m.Floor
		}
	case MsgLocks:
		n.onLocks(from, m)
	case MsgDone:
		n.onDone(from, m.View)
		if r != nil && current {
			r.dones[from] = true
		}
	case MsgHandoff, MsgForward, MsgReturn:
		if !current {
			break // an older view's: every hand-off ended with it
		}
		if !n.Ready() {
			if len(n.held) >= n.cfg.MaxHeld {
				n.anomaly("%d operations held: dropping a %v from %s", len(n.held), m.Kind, from)
				break
			}
			c := *m
			n.held = append(n.held, heldOp{from: from, msg: &c})
			break
		}
		out = n.handleReady(now, from, m)
	}
	return append(out, n.progress(now)...)
}

func (n *Node) onRequest(now time.Time, from string, m *Message) []Event {
	op := m.Op
	if op == nil || m.View < n.view.Number {
		return nil // an older view's: its sender sends it again after the barrier
	}
	if err := checkOp(op, from); err != nil {
		n.refuse(from, op, err)
		return nil
	}
	if op.Kind == OpDeadlock {
		return n.abortHere(now, from, op)
	}
	if !n.Ready() {
		if len(n.held) >= n.cfg.MaxHeld {
			n.refuse(from, op, n.busy(op.Kind.String()))
			return nil
		}
		n.held = append(n.held, heldOp{from: from, op: *op})
		return nil
	}
	return n.dispatch(now, from, from, op, false)
}

// handleReady handles a hand-off, forward or return of the current view.
func (n *Node) handleReady(now time.Time, from string, m *Message) []Event {
	switch m.Kind {
	case MsgHandoff:
		return n.onHandoff(now, from, m)
	case MsgForward:
		return n.onForward(now, from, m)
	case MsgReturn:
		return n.onReturn(now, from, m)
	}
	return nil
}

func (n *Node) refuse(to string, op *Op, err error) {
	if op.Req == 0 {
		return
	}
	r := &Reply{Req: op.Req, Err: kindName(err), Msg: errMsg(err)}
	if op.Kind == OpPurge {
		r.Roots = op.Roots
	}
	n.send(to, Message{Kind: MsgUpdate, Reply: r})
}

// checkOp checks the shape of a request from another member.
func checkOp(op *Op, from string) error {
	name := op.Kind.String()
	bad := func(format string, args ...any) error { return fail(name, op.Lock, errInvalid, format, args...) }
	switch {
	case op.Kind < OpEnqueue || op.Kind > OpDeadlock:
		return bad("unknown operation %d", op.Kind)
	case op.Kind == OpDeadlock:
		if op.Lock.IsZero() {
			return bad("no lock to abort")
		}
		return nil
	case op.Req == 0:
		return bad("request without a number")
	case op.Owner.Member != from:
		return bad("owner %v is not a client of the sending member %s", op.Owner, from)
	case op.Kind == OpPurge:
		for _, r := range op.Roots {
			if !validName(r.Lockspace) || !validName(r.Name) {
				return bad("bad root name in a purge (%d and %d bytes)", len(r.Lockspace), len(r.Name))
			}
		}
		return nil
	case op.Lock.Member != from || op.Lock.N == 0:
		return bad("lock %v was not created by the sending member %s", op.Lock, from)
	case !validName(op.Lockspace):
		return bad("bad lockspace name (%d bytes)", len(op.Lockspace))
	case len(op.Path) == 0 || len(op.Path) > dlm.MaxDepth:
		return bad("the resource path has %d names: 1 to %d", len(op.Path), dlm.MaxDepth)
	}
	for _, s := range op.Path {
		if !validName(s) {
			return bad("bad resource name (%d bytes)", len(s))
		}
	}
	return nil
}

// abortHere handles a deadlock abort: run it if this member masters the
// lock, forward it to the master if the lock is one of its clients'.
func (n *Node) abortHere(now time.Time, from string, op *Op) []Event {
	if !n.Ready() {
		return nil // the search runs again
	}
	if _, ok := n.byG[op.Lock]; ok {
		evs, _ := n.applyOp(now, from, op)
		return evs
	}
	e := n.table.get(op.Lock)
	if op.Lock.Member != n.self || e == nil {
		return nil
	}
	if m := e.at; m != "" && m != n.self && m != from {
		c := *op
		n.send(m, Message{Kind: MsgRequest, Op: &c})
	}
	return nil
}

func (n *Node) onLocks(from string, m *Message) {
	// The sender no longer holds these roots: locks it confirmed there are
	// in transit (also for an older view's message).
	if len(m.Dropped) > 0 {
		gone := make(map[Root]bool, len(m.Dropped))
		for _, r := range m.Dropped {
			gone[r] = true
		}
		for _, e := range n.table.all() {
			if e.at == from && gone[Root{e.ls, e.path[0]}] {
				e.at = ""
			}
		}
	}
	if r := n.rec; r != nil && m.View == n.view.Number && !r.imported && !r.locks[from] {
		n.keepLocks(r, from, m)
	}
}

func (n *Node) keepLocks(r *recovery, from string, m *Message) {
	for _, rec := range m.Records {
		if recordOK(&rec, from) {
			r.records = append(r.records, rec)
		} else {
			n.log.Warn("dlm: malformed lock record dropped", "from", from, "lock", rec.Lock)
		}
	}
	for _, v := range m.Values {
		if v.Lockspace != "" && len(v.Path) > 0 && len(v.Path) <= dlm.MaxDepth {
			r.values = append(r.values, v)
		}
	}
	if !m.More {
		r.locks[from] = true
	}
}

func recordOK(rec *LockRecord, from string) bool {
	if rec.Lock.Member != from || rec.Owner.Member != from || rec.Lock.N == 0 || !validName(rec.Lockspace) ||
		len(rec.Path) == 0 || len(rec.Path) > dlm.MaxDepth || rec.Queue < dlm.QueueGranted || rec.Queue > dlm.QueueWaiting {
		return false
	}
	for _, s := range rec.Path {
		if !validName(s) {
			return false
		}
	}
	return true
}

// onDone: from imported, in view, the locks this member sent it then.
func (n *Node) onDone(from string, view uint64) {
	for _, e := range n.table.all() {
		if e.sent != nil && e.sent.to == from && e.sent.in == view {
			e.at, e.sent = from, nil
		}
	}
}

func (n *Node) heardAll(m map[string]uint64) bool {
	for _, x := range n.view.Members {
		if _, ok := m[x]; !ok {
			return false
		}
	}
	return true
}

func (n *Node) heardAllOf(m map[string]bool) bool {
	for _, x := range n.view.Members {
		if !m[x] {
			return false
		}
	}
	return true
}

// progress takes every step that can be taken now: the recovery steps,
// then the held operations.
func (n *Node) progress(now time.Time) []Event {
	var out []Event
	for n.hasView && !n.out && n.quorum {
		r := n.rec
		switch {
		case r == nil:
			if len(n.held) == 0 {
				return out
			}
			h := n.held[0]
			n.held[0] = heldOp{}
			n.held = n.held[1:]
			switch {
			case h.msg != nil:
				out = append(out, n.handleReady(now, h.from, h.msg)...)
			case h.from == "":
				out = append(out, n.replay(now, h.op, h.roots)...)
			default:
				out = append(out, n.dispatch(now, h.from, h.from, &h.op, false)...)
			}
		case !r.started:
			out = append(out, n.startRecovery(now)...)
		case !r.cut:
			if !n.heardAll(r.flushes) {
				return out
			}
			out = append(out, n.cutStep(now)...)
		case !r.imported:
			if !n.heardAllOf(r.locks) {
				return out
			}
			out = append(out, n.importStep(now)...)
		default:
			if !n.heardAllOf(r.dones) {
				return out
			}
			out = append(out, n.resume(now)...)
		}
	}
	return out
}

// startRecovery is step 1: purge the locks of the members that left (their
// value blocks are marked not valid where they held PW or EX), then tell
// every member that nothing older follows (MsgFlush).
func (n *Node) startRecovery(now time.Time) []Event {
	r := n.rec
	r.started = true
	var out []Event
	// Members not in the view, and members that left since the last
	// purge and came back (their new incarnation has no lock here yet).
	gone := map[string]bool{}
	owners := n.eng.Owners()
	for _, o := range owners {
		if !n.view.Has(o.Member) || n.departed[o.Member] {
			gone[o.Member] = true
		}
	}
	clear(n.departed)
	if len(gone) > 0 {
		var ids []LockID
		var eids []dlm.LockID
		for _, o := range owners {
			if gone[o.Member] {
				eids = n.eng.OwnerLocks(o, eids[:0])
				for _, eid := range eids {
					ids = append(ids, n.gid(eid))
				}
			}
		}
		var res []Event
		for _, m := range sortedKeys(gone) {
			res = append(res, n.translate(n.eng.PurgeMember(m, true))...)
		}
		for _, g := range ids {
			n.unbind(g)
		}
		// A purge may grant a lock of a member purged next: nobody must
		// hear of it (that member may be back as a new incarnation).
		res = slices.DeleteFunc(res, func(ev Event) bool { return gone[ev.Owner.Member] || gone[ev.Blocked.Member] })
		out = append(out, n.route(res, completed(res), "", nil)...)
		n.log.Info("dlm purged the locks of members that left", "view", n.view.Number, "left", strings.Join(sortedKeys(gone), ","), "locks", len(ids))
	}
	r.flushes[n.self] = n.floor
	for _, m := range n.view.Members {
		if m != n.self {
			n.send(m, Message{Kind: MsgFlush, Floor: n.floor})
		}
	}
	return out
}

// completed returns the locks whose state an event changed.
func completed(evs []Event) []LockID {
	var ids []LockID
	for _, ev := range evs {
		if ev.Kind != EventBlocking {
			ids = append(ids, ev.Lock)
		}
	}
	return ids
}

// cutStep is step 2, once every member's MsgFlush arrived (so every reply
// to this member's requests has arrived, and every update from the old
// masters): requests still unanswered are to be sent again; resources this
// member no longer masters are dropped (their value blocks and tokens go
// to their new masters); and the locks of this member's clients whose
// resources changed master go to the new masters (MsgLocks to every
// member, empty or not).
func (n *Node) cutStep(now time.Time) []Event {
	r, v := n.rec, n.view
	r.cut = true
	ps := make([]*pendingOp, 0, len(n.pending))
	for _, p := range n.pending {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *pendingOp) int { return cmp.Compare(a.op.Req, b.op.Req) })
	lost := map[LockID][]*Op{}
	ps = slices.DeleteFunc(ps, func(p *pendingOp) bool { return p.moot })
	for _, p := range ps {
		if p.lost && !p.op.Lock.IsZero() {
			lost[p.op.Lock] = append(lost[p.op.Lock], &p.op)
			n.note("lost-op")
		}
		p.lost = false
		n.reissue = append(n.reissue, p)
	}
	clear(n.pending)

	values := map[string][]ResourceValue{}
	dropped := map[string][]Root{}
	out := n.dropForeign(now, values, dropped)

	recs := map[string][]LockRecord{}
	sent := 0
	for _, id := range n.sortedIDs() {
		e := n.table.get(id)
		if e.q == 0 {
			continue // never confirmed: its request is sent again
		}
		m := Master(v, e.ls, e.path[0])
		if e.at == m {
			continue
		}
		rec := e.transfer(id, v, lost[id])
		if rec.Vouch {
			n.note("vouch")
		}
		recs[m] = append(recs[m], rec)
		e.at, e.sent = "", &transit{to: m, in: v.Number}
		sent++
		n.note("transfer")
	}
	for _, m := range v.Members {
		if m == n.self {
			r.records = append(r.records, recs[m]...)
			r.values = append(r.values, values[m]...)
			r.locks[m] = true
			continue
		}
		n.sendLocks(m, recs[m], values[m], dropped[m])
	}
	n.log.Info("dlm recovery cut", "view", v.Number, "locks_sent", sent, "unanswered", len(ps))
	return out
}

func (n *Node) sendLocks(to string, recs []LockRecord, vals []ResourceValue, dropped []Root) {
	for {
		m := Message{Kind: MsgLocks}
		room := n.cfg.MaxBatch
		k := min(room, len(dropped))
		m.Dropped, dropped, room = dropped[:k:k], dropped[k:], room-k
		k = min(room, len(vals))
		m.Values, vals, room = vals[:k:k], vals[k:], room-k
		k = min(room, len(recs))
		m.Records, recs = recs[:k:k], recs[k:]
		m.More = len(dropped)+len(vals)+len(recs) > 0
		if len(m.Dropped) == 0 {
			m.Dropped = nil
		}
		if len(m.Values) == 0 {
			m.Values = nil
		}
		if len(m.Records) == 0 {
			m.Records = nil
		}
		n.send(to, m)
		if !m.More {
			return
		}
	}
}

// dropForeign drops from the engine the resources this member no longer
// masters, adding their value blocks for their new masters to values and,
// for every member with locks on them, the roots to dropped.
func (n *Node) dropForeign(now time.Time, values map[string][]ResourceValue, dropped map[string][]Root) []Event {
	if n.eng.Len() == 0 {
		return nil
	}
	snap := n.eng.Export()
	keep := make([]dlm.Record, 0, len(snap.Locks))
	masterOf := map[Root]string{}
	told := map[Root]map[string]bool{}
	for i := range snap.Locks {
		rec := &snap.Locks[i]
		root := Root{rec.Lockspace, rec.Path[0]}
		m, ok := masterOf[root]
		if !ok {
			m = Master(n.view, root.Lockspace, root.Name)
			masterOf[root] = m
		}
		if m == n.self {
			keep = append(keep, *rec)
			continue
		}
		if i == 0 || !sameResource(&snap.Locks[i-1], rec) {
			values[m] = append(values[m], ResourceValue{Lockspace: rec.Lockspace, Path: rec.Path, Value: rec.Value, Valid: rec.ValueValid, Token: rec.Token})
		}
		if told[root] == nil {
			told[root] = map[string]bool{}
		}
		if mem := rec.Owner.Member; !told[root][mem] {
			told[root][mem] = true
			dropped[mem] = append(dropped[mem], root)
		}
		if g, ok := n.gidOK(rec.ID); ok {
			n.unbind(g)
		}
	}
	if len(keep) == len(snap.Locks) {
		return nil
	}
	// Our own clients' locks there are in transit now.
	for _, e := range n.table.all() {
		if e.at == n.self && masterOf[Root{e.ls, e.path[0]}] != n.self && masterOf[Root{e.ls, e.path[0]}] != "" {
			e.at = ""
		}
	}
	evs, err := n.replaceEngine(now, dlm.Snapshot{NextLockID: snap.NextLockID, TokenFloor: snap.TokenFloor, Locks: keep})
	if err != nil {
		n.anomaly("rebuilding the engine without the %d locks it no longer masters failed: %v", len(snap.Locks)-len(keep), err)
		return nil
	}
	n.log.Info("dlm dropped the resources it no longer masters", "view", n.view.Number, "locks", len(snap.Locks)-len(keep))
	// The kept resources' blocking notifications were sent already.
	var res []Event
	for _, ev := range n.translate(evs) {
		if ev.Kind != EventBlocking {
			n.anomaly("re-import of kept resources made a %v event", ev.Kind)
			res = append(res, ev)
		}
	}
	return n.route(res, completed(res), "", nil)
}

func sameResource(a, b *dlm.Record) bool {
	return a.Lockspace == b.Lockspace && slices.Equal(a.Path, b.Path)
}

func (n *Node) replaceEngine(now time.Time, srcs ...dlm.Snapshot) ([]dlm.Event, error) {
	total := 0
	for _, s := range srcs {
		total += len(s.Locks)
	}
	opts := n.cfg.Engine
	if total > opts.MaxLocks {
		n.log.Warn("dlm: more locks to master than Engine.MaxLocks: the limit is raised for this engine, new requests are refused until locks are released", "locks", total, "max_locks", opts.MaxLocks)
		opts.MaxLocks = total
	}
	e, err := dlm.New(opts)
	if err != nil {
		return nil, err
	}
	evs, err := e.Import(now, srcs...)
	if err != nil {
		return nil, err
	}
	n.eng = e
	for _, s := range srcs {
		n.floor = max(n.floor, s.TokenFloor)
		for i := range s.Locks {
			n.floor = max(n.floor, s.Locks[i].Token)
		}
	}
	return evs, nil
}

// viewFloor is the token floor of resources rebuilt without their old
// master in view v: above every token issued in an earlier view, as long
// as no master grants 2^40 times in one view.
func viewFloor(v View) uint64 { return min(v.Number, 1<<23) << 40 }

// meet returns the strongest mode compatible with everything that a or b
// is compatible with: a lock that may hold a or b at a lost master is
// rebuilt at meet(a, b).
func meet(a, b dlm.Mode) dlm.Mode {
	for m := dlm.EX; ; m-- {
		ok := true
		for x := dlm.NL; x <= dlm.EX; x++ {
			if (dlm.Compatible(a, x) || dlm.Compatible(b, x)) && !dlm.Compatible(m, x) {
				ok = false
				break
			}
		}
		if ok || m == dlm.NL {
			return m
		}
	}
}

// transfer makes the record of a lock for its new master. When the master
// that last confirmed the lock may have moved on without telling (it left,
// or the lock was in transit), the granted mode is lowered to what is
// compatible with every state the lock may have reached there: a queued
// conversion may have been granted, an unanswered conversion or unlock may
// have run. The entry is changed to match: it is what the new master will
// hold.
func (e *entry) transfer(id LockID, v View, lost []*Op) LockRecord {
	uncertain := e.at == "" || !v.Has(e.at)
	g := e.granted
	vouch := e.q == dlm.QueueGranted && (g == dlm.PW || g == dlm.EX) && e.value != nil && len(lost) == 0
	if uncertain && e.q == dlm.QueueConverting {
		g = meet(g, e.req)
	}
	for _, op := range lost {
		switch op.Kind {
		case OpConvert:
			if e.q == dlm.QueueGranted {
				g = meet(g, op.Mode)
			}
		case OpUnlock:
			if e.q != dlm.QueueWaiting {
				g = dlm.NL
			}
		}
	}
	if e.q == dlm.QueueWaiting {
		g = dlm.NL
	}
	e.granted = g
	if e.q == dlm.QueueGranted {
		e.req = g
	}
	rec := LockRecord{Lock: id, Lockspace: e.ls, Path: e.path, Parent: e.parent, Owner: e.owner, Queue: e.q,
		Granted: g, Requested: e.req, Flags: e.flags, Seq: e.seq, PendingValue: e.pendingValue, Token: e.token}
	if vouch {
		rec.Vouch, rec.Value = true, *e.value
	}
	return rec
}

type resKey struct {
	ls   string
	path string
}

func keyOf(ls string, path []string) resKey {
	var b strings.Builder
	for _, p := range path {
		b.WriteByte(byte(len(p)))
		b.WriteString(p)
	}
	return resKey{ls, b.String()}
}

// importStep is step 3, once every member's MsgLocks arrived: import the
// locks of the roots this member masters now and does not hold (merged with
// what it keeps), each resource with its old master's value block and
// token if it sent them, otherwise with a value block valid only if a
// surviving PW or EX holder vouches for it and a token above every token
// of earlier views; raise the token floor if this member gained names;
// then tell every member (MsgDone).
func (n *Node) importStep(now time.Time) []Event {
	r, v := n.rec, n.view
	r.imported = true
	snap := n.eng.Export()
	held := map[Root]bool{}
	for i := range snap.Locks {
		held[Root{snap.Locks[i].Lockspace, snap.Locks[i].Path[0]}] = true
	}
	lostFloor := viewFloor(v)
	for _, f := range r.flushes {
		lostFloor = max(lostFloor, f)
	}
	groups := map[Root][]LockRecord{}
	for _, rec := range r.records {
		root := Root{rec.Lockspace, rec.Path[0]}
		if held[root] {
			continue // this member kept it: its copy is complete
		}
		if Master(v, root.Lockspace, root.Name) != n.self {
			n.anomaly("lock %v on root %q/%q sent to %s, which does not master it in view %v", rec.Lock, root.Lockspace, root.Name, n.self, v)
			continue
		}
		groups[root] = append(groups[root], rec)
	}
	values := map[resKey]ResourceValue{}
	for _, val := range r.values {
		k := keyOf(val.Lockspace, val.Path)
		if old, ok := values[k]; !ok || val.Token > old.Token {
			values[k] = val
		}
	}
	roots := make([]Root, 0, len(groups))
	for root := range groups {
		roots = append(roots, root)
	}
	slices.SortFunc(roots, func(a, b Root) int {
		if c := cmp.Compare(a.Lockspace, b.Lockspace); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	next := max(snap.NextLockID, 1)
	gOf := map[dlm.LockID]LockRecord{}
	var parts [][]dlm.Record
	for _, root := range roots {
		recs := n.sanitize(groups[root])
		part := n.resources(recs, values, lostFloor, &next)
		for i := range part {
			gOf[part[i].ID] = recs[i]
		}
		parts = append(parts, part)
	}
	floor := uint64(0)
	if n.raise {
		floor = lostFloor
	}
	var out []Event
	extra := slices.Concat(parts...)
	if len(extra) > 0 || floor > n.floor {
		kept := dlm.Snapshot{NextLockID: snap.NextLockID, TokenFloor: snap.TokenFloor, Locks: snap.Locks}
		evs, err := n.replaceEngine(now, kept, dlm.Snapshot{Locks: extra}, dlm.Snapshot{TokenFloor: floor})
		if err != nil {
			n.anomaly("import for view %v failed: %v; importing root by root", v, err)
			extra = extra[:0:0]
			for _, part := range parts {
				scratch, _ := dlm.New(dlm.Options{DeadlockWait: n.cfg.Engine.DeadlockWait, MaxLocks: max(len(part), 1)})
				if _, err := scratch.Import(now, dlm.Snapshot{Locks: part}); err != nil {
					n.anomaly("root %q/%q dropped from the import: %v", part[0].Lockspace, part[0].Path[0], err)
					continue
				}
				extra = append(extra, part...)
			}
			evs, err = n.replaceEngine(now, kept, dlm.Snapshot{Locks: extra}, dlm.Snapshot{TokenFloor: floor})
			if err != nil {
				n.anomaly("import for view %v failed again: %v; only the kept resources remain", v, err)
				extra = nil
			}
		}
		imported := map[LockID]bool{}
		for i := range extra {
			lr := gOf[extra[i].ID]
			n.bind(extra[i].ID, lr.Lock)
			imported[lr.Lock] = true
		}
		var res []Event
		for _, ev := range n.translate(evs) {
			if ev.Kind == EventBlocking && !imported[ev.Lock] {
				continue // a kept resource: sent already
			}
			res = append(res, ev)
		}
		out = n.route(res, completed(res), "", nil)
		n.log.Info("dlm imported the locks of the resources it now masters", "view", v.Number, "roots", len(roots), "locks", len(extra), "token_floor", floor)
	}
	n.raise = false
	r.dones[n.self] = true
	for _, m := range v.Members {
		if m != n.self {
			n.send(m, Message{Kind: MsgDone})
		}
	}
	n.onDone(n.self, v.Number)
	return out
}

// sanitize keeps the records of one root that hold together: unique ids
// not mastered here already, and every sub-lock's parent present, granted,
// of the same owner and on the parent resource.
func (n *Node) sanitize(recs []LockRecord) []LockRecord {
	byID := map[LockID]*LockRecord{}
	out := recs[:0:0]
	for i := range recs {
		rec := &recs[i]
		if byID[rec.Lock] != nil {
			n.anomaly("lock %v sent twice for recovery", rec.Lock)
			continue
		}
		if _, ok := n.byG[rec.Lock]; ok {
			n.anomaly("lock %v sent for recovery is mastered here already", rec.Lock)
			continue
		}
		byID[rec.Lock] = rec
		out = append(out, *rec)
	}
	for changed := true; changed; {
		changed = false
		out = slices.DeleteFunc(out, func(rec LockRecord) bool {
			ok := true
			if rec.Parent.IsZero() {
				ok = len(rec.Path) == 1
			} else {
				p := byID[rec.Parent]
				ok = p != nil && p.Queue != dlm.QueueWaiting && p.Owner == rec.Owner && p.Lockspace == rec.Lockspace &&
					len(rec.Path) > 1 && slices.Equal(p.Path, rec.Path[:len(rec.Path)-1])
			}
			if !ok {
				n.anomaly("lock %v (parent %v) does not hold together with its parent: dropped", rec.Lock, rec.Parent)
				delete(byID, rec.Lock)
				changed = true
			}
			return !ok
		})
	}
	return out
}

// resources turns the records of one root into engine records with new
// engine ids from *next: each resource gets one value block and token.
func (n *Node) resources(recs []LockRecord, values map[resKey]ResourceValue, lostFloor uint64, next *dlm.LockID) []dlm.Record {
	type acc struct {
		token   uint64
		vouched bool
		vtoken  uint64
		value   dlm.Value
	}
	accs := map[resKey]*acc{}
	ids := make(map[LockID]dlm.LockID, len(recs))
	for i := range recs {
		rec := &recs[i]
		ids[rec.Lock] = *next
		*next++
		k := keyOf(rec.Lockspace, rec.Path)
		a := accs[k]
		if a == nil {
			a = &acc{}
			accs[k] = a
		}
		a.token = max(a.token, rec.Token)
		if rec.Vouch && (!a.vouched || rec.Token > a.vtoken) {
			a.vouched, a.vtoken, a.value = true, rec.Token, rec.Value
		}
	}
	out := make([]dlm.Record, len(recs))
	for i := range recs {
		rec := &recs[i]
		k := keyOf(rec.Lockspace, rec.Path)
		a := accs[k]
		d := dlm.Record{ID: ids[rec.Lock], Tag: rec.Lock.N, Lockspace: rec.Lockspace, Path: rec.Path, Owner: rec.Owner, Queue: rec.Queue,
			Granted: rec.Granted, Requested: rec.Requested, Flags: rec.Flags, Seq: rec.Seq, PendingValue: rec.PendingValue}
		if !rec.Parent.IsZero() {
			d.Parent = ids[rec.Parent]
		}
		if d.Queue == dlm.QueueWaiting {
			d.Granted = dlm.NL
		}
		if d.Queue != dlm.QueueConverting {
			d.PendingValue = nil
		}
		if val, ok := values[k]; ok {
			d.Value, d.ValueValid, d.Token = val.Value, val.Valid, max(val.Token, a.token)
			n.note("value-carried")
		} else {
			n.note("value-rebuilt")
			d.Value, d.ValueValid, d.Token = a.value, a.vouched, max(a.token, lostFloor)
		}
		out[i] = d
	}
	return out
}

// resume: every member reported done; grants resume. The requests that
// went unanswered are sent again, then the held operations run, in
// arrival order.
func (n *Node) resume(now time.Time) []Event {
	n.rec = nil
	n.log.Info("dlm view rebuilt: grants resume", "view", n.view.Number, "resent", len(n.reissue), "held", len(n.held))
	re := n.reissue
	n.reissue = nil
	var out []Event
	for _, p := range re {
		n.note("reissued")
		out = append(out, n.replay(now, p.op, p.roots)...)
	}
	return out
}
