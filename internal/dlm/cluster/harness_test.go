package cluster

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/model"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var traceFlag = flag.Int("cluster.trace", 60, "actions to print before a failure")

// network is an in-memory transport: one FIFO queue per ordered pair of
// members. The harness's seeded scheduler picks which queue delivers next,
// so pairs interleave arbitrarily.
type network struct {
	q    map[pair][]Message
	json bool // send every message through encoding/json
}

type pair struct{ from, to string }

type endpoint struct {
	net  *network
	from string
}

func (e endpoint) Send(to string, m Message) {
	if e.net.json {
		b, err := json.Marshal(m)
		if err != nil {
			panic(fmt.Sprintf("message %v does not encode: %v", m.Kind, err))
		}
		var c Message
		if err := json.Unmarshal(b, &c); err != nil {
			panic(fmt.Sprintf("message %s does not decode: %v", b, err))
		}
		m = c
	}
	p := pair{e.from, to}
	e.net.q[p] = append(e.net.q[p], m)
}

func (nw *network) busy() []pair {
	var ps []pair
	for p, q := range nw.q {
		if len(q) > 0 {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b pair) int {
		if c := strings.Compare(a.from, b.from); c != 0 {
			return c
		}
		return strings.Compare(a.to, b.to)
	})
	return ps
}

func (nw *network) pop(p pair) Message {
	q := nw.q[p]
	m := q[0]
	if len(q) == 1 {
		delete(nw.q, p)
	} else {
		nw.q[p] = q[1:]
	}
	return m
}

// evKey is what events are ordered by: a client's events on one root (on
// one lock only, with hand-offs: a root's master changes only when it has
// no lock, so the last events of its old master and the first of its new
// one may cross, but never for one lock).
type evKey struct {
	owner dlm.OwnerID
	root  Root
	lock  LockID
}

func eventKey(o dlm.OwnerID, w where, l LockID) evKey {
	k := evKey{owner: o}
	if len(w.path) > 0 {
		k.root = Root{w.ls, w.path[0]}
	}
	if !*fixedFlag {
		k.lock = l
	}
	return k
}

// sentEvent is an event a master produced for a client: lost if that
// incarnation of the master crashed before its message left.
type sentEvent struct {
	s      string
	master string
}

type where struct {
	ls   string
	path []string
}

// harness runs N nodes on the in-memory network and checks them: against
// the reference model (no failures) or against the invariants (failures).
type harness struct {
	t        testing.TB
	seed     uint64
	rng      *rand.Rand
	now      time.Time
	opts     dlm.Options
	net      *network
	nodes    map[string]*Node
	names    []string // every member name ever used
	views    []View
	next     map[string]int // index in views of the next view a node applies
	step     int
	trace    []string
	stats    map[string]int
	failures bool // views change, members crash and join, quorum comes and goes

	clients    map[string][]dlm.OwnerID // each member's connected clients
	nextClient uint64
	gone       map[dlm.OwnerID]bool // disconnected clients

	where       map[LockID]where
	outstanding map[LockID]int // requests without their completion
	ownerOf     map[LockID]dlm.OwnerID

	sent map[evKey][]sentEvent // events masters produced, per client and root
	recv map[evKey]int         // how far each client's received events got in sent
	inc  map[string]int        // incarnation of each live member
	dead map[string]bool       // "member/incarnation" that crashed

	// Model comparison (no failures).
	model *model.Model
	mid   map[LockID]dlm.LockID
	gid   map[dlm.LockID]LockID
	off   map[resKey]uint64 // cluster token - model token, per resource life

	// Invariant checks.
	lastTok  map[resKey]uint64
	arrival  map[LockID]int // when a queued request entered its queue
	arrivals int
	stable   map[LockID]stableLock // granted, nothing pending: must stay so
	lastOp   map[LockID]int        // step of the latest client operation on a lock
	quorum   bool                  // what the cluster decided
	nroots   int                   // roots in use: fewer means more contention
}

func newHarness(t testing.TB, seed uint64, members int, failures bool) *harness {
	h := &harness{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0xd1ce)), now: t0,
		net: &network{q: map[pair][]Message{}}, nodes: map[string]*Node{}, next: map[string]int{},
		stats: map[string]int{}, failures: failures, clients: map[string][]dlm.OwnerID{}, gone: map[dlm.OwnerID]bool{},
		where: map[LockID]where{}, outstanding: map[LockID]int{}, ownerOf: map[LockID]dlm.OwnerID{}, sent: map[evKey][]sentEvent{}, recv: map[evKey]int{}, inc: map[string]int{}, dead: map[string]bool{},
		lastTok: map[resKey]uint64{}, arrival: map[LockID]int{}, stable: map[LockID]stableLock{}, lastOp: map[LockID]int{}, quorum: true}
	h.opts = dlm.DefaultOptions()
	h.opts.DeadlockWait = []time.Duration{0, 500 * time.Millisecond, time.Second}[h.rng.IntN(3)]
	h.opts.MaxLocks = 100_000
	h.net.json = h.rng.IntN(8) == 0
	h.nroots = 1 + h.rng.IntN(len(roots))
	var names []string
	for i := 1; i <= members; i++ {
		names = append(names, fmt.Sprintf("m%d", i))
	}
	for _, m := range names {
		h.addNode(m)
	}
	h.newView(names)
	if !failures {
		h.model = model.New(h.opts)
		h.mid, h.gid, h.off = map[LockID]dlm.LockID{}, map[dlm.LockID]LockID{}, map[resKey]uint64{}
	}
	for _, m := range names {
		h.got(m, h.nodes[m].SetQuorum(h.now, true))
	}
	h.settle()
	return h
}

func (h *harness) fatalf(format string, args ...any) {
	h.t.Helper()
	tail := h.trace
	if len(tail) > *traceFlag {
		tail = tail[len(tail)-*traceFlag:]
	}
	h.t.Fatalf("seed %d, step %d: %s\nlast actions:\n  %s", h.seed, h.step, fmt.Sprintf(format, args...), strings.Join(tail, "\n  "))
}

func (h *harness) logf(format string, args ...any) {
	h.trace = append(h.trace, fmt.Sprintf("%d: ", h.step)+fmt.Sprintf(format, args...))
	if len(h.trace) > 4000 {
		h.trace = slices.Clone(h.trace[2000:])
	}
}

func (h *harness) addNode(name string) *Node {
	cfg := DefaultConfig()
	cfg.Member = name
	cfg.Transport = endpoint{h.net, name}
	cfg.Engine = h.opts
	cfg.MaxBatch = 1 + h.rng.IntN(8) // exercise chunking
	cfg.IdleReturn = time.Duration(h.rng.IntN(3)) * time.Second
	cfg.Handoff = !*fixedFlag
	n, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	n.hooks = hooks{
		applied: func(master, from string, op *Op, evs []Event, err error) { h.applied(master, from, op, evs, err) },
		granted: func(master, ls string, path []string, lock LockID, token uint64) {
			h.granted(master, ls, path, lock, token)
		},
		routed: func(master string, evs []Event) {
			for _, ev := range evs {
				if h.gone[ev.Owner] {
					continue
				}
				w := h.where[ev.Lock]
				k := eventKey(ev.Owner, w, ev.Lock)
				h.sent[k] = append(h.sent[k], sentEvent{fmtEvent(ev), h.incName(master)})
			}
		},
		anomaly: func(msg string) { h.fatalf("anomaly on %s: %s", name, msg) },
		note:    func(what string) { h.count(what) },
	}
	h.nodes[name] = n
	h.inc[name]++
	if !slices.Contains(h.names, name) {
		h.names = append(h.names, name)
	}
	var cs []dlm.OwnerID
	for range 2 {
		h.nextClient++
		cs = append(cs, dlm.OwnerID{Member: name, Client: h.nextClient})
	}
	h.clients[name] = cs
	return n
}

// newView appends the view with these members; every live member applies
// it later, in order.
func (h *harness) newView(members []string) {
	v := View{Number: uint64(len(h.views)) + 1, Members: slices.Sorted(slices.Values(members))}
	h.views = append(h.views, v)
	for _, m := range members {
		if _, ok := h.next[m]; !ok {
			h.next[m] = len(h.views) - 1
		}
	}
	h.logf("view %v decided", v)
}

func (h *harness) live() []string { return sortedKeys(h.nodes) }

func (h *harness) count(k string) { h.stats[k]++ }

// got checks the events a node returned for its clients.
func (h *harness) got(member string, evs []Event) {
	h.t.Helper()
	for _, ev := range evs {
		if ev.Owner.Member != member {
			h.fatalf("%s delivered an event of another member's client: %+v", member, ev)
		}
		if h.gone[ev.Owner] {
			h.fatalf("%s delivered an event to disconnected client %v: %s", member, ev.Owner, fmtEvent(ev))
		}
		h.count("event:" + ev.Kind.String())
		if ev.Kind == EventLost {
			delete(h.outstanding, ev.Lock)
			continue
		}
		w, ok := h.where[ev.Lock]
		if !ok {
			h.fatalf("event for a lock no master ever had: %s", fmtEvent(ev))
		}
		k := eventKey(ev.Owner, w, ev.Lock)
		s := fmtEvent(ev)
		if !h.match(k, s) {
			h.fatalf("%s delivered to %v on %v: %s\n  masters sent: %s", member, ev.Owner, k.root, s, h.showSent(k))
		}
		if ev.Kind != EventBlocking && ev.Kind != EventRefused || (ev.Kind == EventRefused && (ev.Op == OpEnqueue || ev.Op == OpConvert)) {
			h.outstanding[ev.Lock]--
			if h.outstanding[ev.Lock] < 0 {
				h.fatalf("a second completion for one request of %v: %s", ev.Lock, s)
			}
		}
	}
}

func (h *harness) incName(m string) string { return fmt.Sprintf("%s/%d", m, h.inc[m]) }

// match consumes the next event of k that a client must receive: s, after
// skipping events of masters that crashed before sending them.
func (h *harness) match(k evKey, s string) bool {
	evs := h.sent[k]
	if !*fixedFlag && strings.HasSuffix(s, ": unknown-lock") {
		// An operation on a lock that is gone is refused by whoever
		// masters its root then: after a hand-off or a return, that
		// refusal may overtake the last events of the root's old master.
		at := -1
		for i := h.recv[k]; i < len(evs); i++ {
			if evs[i].s == s && (at < 0 || h.dead[evs[at].master] && !h.dead[evs[i].master]) {
				at = i
			}
		}
		if at >= 0 {
			h.sent[k] = slices.Delete(evs, at, at+1)
			return true
		}
	}
	for i := h.recv[k]; i < len(evs); i++ {
		if evs[i].s == s {
			// A later identical event may be the one, if everything up to it
			// was lost.
			j := i
			for x := i + 1; x < len(evs) && h.dead[evs[x-1].master]; x++ {
				if evs[x].s == s && h.dead[evs[j].master] && !h.dead[evs[x].master] {
					j = x
				}
			}
			h.recv[k] = j + 1
			return true
		}
		if !h.dead[evs[i].master] {
			return false
		}
	}
	return false
}

func (h *harness) showSent(k evKey) string {
	var out []string
	for i, e := range h.sent[k] {
		mark := " "
		if i == h.recv[k] {
			mark = ">"
		}
		if h.dead[e.master] {
			mark += "(lost?)"
		}
		out = append(out, mark+e.s+" @"+e.master)
	}
	return "\n    " + strings.Join(out, "\n    ")
}

func fmtEvent(ev Event) string {
	s := fmt.Sprintf("%v %v %v %v", ev.Kind, ev.Lock, ev.Owner, ev.Mode)
	switch ev.Kind {
	case EventGranted:
		s += fmt.Sprintf(" tok%d", ev.Token)
		if ev.ValBlk {
			s += fmt.Sprintf(" valid=%v %q", ev.ValueValid, strings.TrimRight(string(ev.Value[:]), "\x00"))
		}
	case EventBlocking:
		s += fmt.Sprintf(" blocks %v", ev.Blocked)
	case EventRefused:
		s += fmt.Sprintf(" %v: %s", ev.Op, kindName(ev.Err))
	}
	return s
}

// applied is the hook a master calls after running an operation: it
// records what the clients must receive, feeds the model, and tracks the
// arrival order of queued requests.
func (h *harness) applied(master, from string, op *Op, evs []Event, err error) {
	h.t.Helper()
	h.count("apply:" + op.Kind.String())
	if op.Kind == OpEnqueue {
		h.where[op.Lock] = where{op.Lockspace, slices.Clone(op.Path)}
	}
	if err != nil && op.Kind != OpPurge && op.Kind != OpDeadlock && !h.gone[op.Owner] {
		w := h.where[op.Lock]
		k := eventKey(op.Owner, w, op.Lock)
		h.sent[k] = append(h.sent[k], sentEvent{fmtEvent(refused(op, err)), h.incName(master)})
	}
	if err != nil {
		h.count("refused:" + kindName(err))
	}
	if h.model == nil {
		h.logf("   at %s: %v %v from %s -> %s err=%v", master, op.Kind, op.Lock, from, fmtEvents(evs), err)
	}
	if h.model != nil {
		h.modelApply(master, op, evs, err)
	}
	// Arrival order of queued requests.
	n := h.nodes[master]
	if b, ok := n.byG[op.Lock]; ok && err == nil && (op.Kind == OpEnqueue || op.Kind == OpConvert) {
		if rec, ok := n.eng.Lock(b); ok && rec.Queue != dlm.QueueGranted {
			h.arrivals++
			h.arrival[op.Lock] = h.arrivals
		}
	}
}

func (h *harness) granted(master, ls string, path []string, lock LockID, token uint64) {
	h.t.Helper()
	k := keyOf(ls, path)
	if token <= h.lastTok[k] {
		h.fatalf("%s granted %v on %s%v with token %d, not above %d granted before", master, lock, ls, path, token, h.lastTok[k])
	}
	h.lastTok[k] = token
	if !h.nodes[master].quorum {
		h.fatalf("%s granted %v on %s%v without quorum", master, lock, ls, path)
	}
	h.count("grant")
}

// --- the model (no failures) ---

func (h *harness) split(o dlm.OwnerID, master string) dlm.OwnerID {
	// The model's owners are per (owner, master): a disconnect purges the
	// owner on each master when its purge arrives there.
	i := slices.Index(h.views[0].Members, master)
	return dlm.OwnerID{Member: o.Member, Client: o.Client<<8 | uint64(i)}
}

func unsplit(o dlm.OwnerID) dlm.OwnerID { return dlm.OwnerID{Member: o.Member, Client: o.Client >> 8} }

func (h *harness) midOf(g LockID) dlm.LockID {
	if id, ok := h.mid[g]; ok {
		return id
	}
	return 1 << 62 // no such lock
}

func (h *harness) modelHas(ls string, path []string) bool {
	for _, r := range h.model.Export().Locks {
		if r.Lockspace == ls && slices.Equal(r.Path, path) {
			return true
		}
	}
	return false
}

func (h *harness) modelApply(master string, op *Op, evs []Event, err error) {
	h.t.Helper()
	var (
		mevs    []dlm.Event
		merr    error
		created bool
	)
	switch op.Kind {
	case OpEnqueue:
		req := dlm.Request{Lockspace: op.Lockspace, Name: op.Path[len(op.Path)-1], Owner: h.split(op.Owner, master), Mode: op.Mode, Flags: op.Flags}
		if !op.Parent.IsZero() {
			req.Parent = h.midOf(op.Parent)
		}
		created = !h.modelHas(op.Lockspace, op.Path)
		var id dlm.LockID
		id, mevs, merr = h.model.Enqueue(h.now, req)
		if merr == nil {
			h.mid[op.Lock], h.gid[id] = id, op.Lock
		}
	case OpConvert:
		_, mevs, merr = h.model.Enqueue(h.now, dlm.Request{Lock: h.midOf(op.Lock), Mode: op.Mode, Flags: op.Flags | dlm.Convert, Value: op.Value})
	case OpUnlock:
		mevs, merr = h.model.Unlock(h.midOf(op.Lock), op.Flags, op.Value)
	case OpCancel:
		mevs, merr = h.model.Cancel(h.midOf(op.Lock))
	case OpPurge:
		mevs = h.model.PurgeOwner(h.split(op.Owner, master), true)
	case OpDeadlock:
		mevs, merr = h.model.Deadlock(h.now, h.midOf(op.Lock))
	}
	h.logf("   at %s: %v %v -> cluster %v err=%v | model err=%v", master, op.Kind, op.Lock, len(evs), err, merr)
	if (err == nil) != (merr == nil) || (err != nil && kindName(err) != kindName(merr)) {
		h.fatalf("%v %v at %s: cluster error %v, model error %v", op.Kind, op.Lock, master, err, merr)
	}
	if len(evs) != len(mevs) {
		h.fatalf("%v %v at %s: cluster events %v\n  model events %v", op.Kind, op.Lock, master, fmtEvents(evs), h.fmtModel(mevs))
	}
	for i, ev := range evs {
		mev := mevs[i]
		want := Event{Kind: EventKind(mev.Kind), Lock: h.gid[mev.Lock], Owner: unsplit(mev.Owner), Mode: mev.Mode, Token: ev.Token,
			ValBlk: ev.ValBlk, ValueValid: mev.ValueValid, Value: mev.Value}
		if mev.Kind == dlm.EventBlocking {
			want.Blocked = h.gid[mev.Blocked]
		}
		if fmtEvent(ev) != fmtEvent(want) || (!ev.ValBlk && (mev.ValueValid || mev.Value != dlm.Value{})) {
			h.fatalf("%v %v at %s: event %d differs:\n  cluster %v\n  model   %v", op.Kind, op.Lock, master, i, fmtEvents(evs), h.fmtModel(mevs))
		}
		if ev.Kind == EventGranted {
			w := h.where[ev.Lock]
			k := keyOf(w.ls, w.path)
			d := ev.Token - mev.Token
			if created && i == 0 && ev.Lock == op.Lock {
				h.off[k] = d
			} else if h.off[k] != d {
				h.fatalf("grant of %v on %s%v: token %d, model %d: the difference changed from %d to %d within the resource's life",
					ev.Lock, w.ls, w.path, ev.Token, mev.Token, h.off[k], d)
			}
		}
	}
}

func fmtEvents(evs []Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, fmtEvent(ev))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

func (h *harness) fmtModel(evs []dlm.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, fmt.Sprintf("%v %v(%d) %v %v tok%d blocks %v valid=%v", ev.Kind, h.gid[ev.Lock], ev.Lock, unsplit(ev.Owner), ev.Mode, ev.Token, h.gid[ev.Blocked], ev.ValueValid))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// --- driving ---

func (h *harness) deliver() bool {
	ps := h.net.busy()
	if len(ps) == 0 {
		return false
	}
	p := ps[h.rng.IntN(len(ps))]
	m := h.net.pop(p)
	n := h.nodes[p.to]
	if n == nil {
		h.logf("drop %v %s->%s (receiver down)", m.Kind, p.from, p.to)
		return true
	}
	h.logf("deliver %v v%d %s->%s%s", m.Kind, m.View, p.from, p.to, msgDetail(&m))
	h.got(p.to, n.Deliver(h.now, p.from, m))
	return true
}

func msgDetail(m *Message) string {
	switch m.Kind {
	case MsgRequest:
		return fmt.Sprintf(" %v %v req%d", m.Op.Kind, m.Op.Lock, m.Op.Req)
	case MsgUpdate:
		s := ""
		if m.Reply != nil {
			s = fmt.Sprintf(" reply%d%s", m.Reply.Req, m.Reply.Err)
		}
		return s + fmt.Sprintf(" %d events %d states", len(m.Events), len(m.States))
	case MsgLocks:
		return fmt.Sprintf(" %d records %d values %d dropped more=%v", len(m.Records), len(m.Values), len(m.Dropped), m.More)
	}
	return ""
}

// behind returns the live nodes that have a view to apply.
func (h *harness) behind() []string {
	var out []string
	for _, m := range h.live() {
		if h.next[m] < len(h.views) {
			out = append(out, m)
		}
	}
	return out
}

func (h *harness) applyView(m string) {
	v := h.views[h.next[m]]
	h.next[m]++
	h.logf("%s applies view %v", m, v)
	evs, err := h.nodes[m].SetView(h.now, v)
	if err != nil {
		h.fatalf("SetView %v on %s: %v", v, m, err)
	}
	h.got(m, evs)
}

// settle gives quorum to everyone, applies every view and delivers every
// message.
func (h *harness) settle() {
	h.t.Helper()
	if !h.quorum {
		h.quorum = true
	}
	for _, m := range h.live() {
		if !h.nodes[m].quorum {
			h.got(m, h.nodes[m].SetQuorum(h.now, true))
		}
	}
	for i := 0; ; i++ {
		if i > 200_000 {
			h.fatalf("the cluster does not settle")
		}
		if b := h.behind(); len(b) > 0 {
			h.applyView(b[h.rng.IntN(len(b))])
			continue
		}
		if !h.deliver() {
			break
		}
	}
	for _, m := range h.live() {
		if !h.nodes[m].Ready() {
			h.fatalf("%s is not ready after settling: recovering=%v quorum=%v", m, h.nodes[m].rec != nil, h.nodes[m].quorum)
		}
	}
}

// --- client operations ---

var (
	spaces = []string{"ls", "ls", "ls2"}
	roots  = []string{"a", "b", "c", "d"}
	kids   = []string{"x", "y"}
)

func (h *harness) mode() dlm.Mode { return dlm.Mode(h.rng.IntN(6)) }

func (h *harness) flag(f dlm.Flags, oneIn int) dlm.Flags {
	if h.rng.IntN(oneIn) == 0 {
		return f
	}
	return 0
}

func (h *harness) value() *dlm.Value {
	var v dlm.Value
	v[0] = byte('a' + h.rng.IntN(26))
	v[1] = byte('0' + h.rng.IntN(10))
	return &v
}

// pick returns a lock of the node's clients (sometimes of one owner), or
// one that does not exist.
func (h *harness) pick(n *Node, owner *dlm.OwnerID) LockID {
	if h.rng.IntN(25) == 0 {
		return LockID{Member: n.self, N: 1 << 40}
	}
	var ids []LockID
	for _, id := range n.sortedIDs() {
		if owner == nil || n.table.get(id).owner == *owner {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return LockID{Member: n.self, N: 1 << 40}
	}
	return ids[h.rng.IntN(len(ids))]
}

func (h *harness) clientOp() {
	live := h.live()
	m := live[h.rng.IntN(len(live))]
	n := h.nodes[m]
	cs := h.clients[m]
	o := cs[h.rng.IntN(len(cs))]
	switch x := h.rng.IntN(100); {
	case x < 45:
		h.enqueue(n, o)
	case x < 65:
		h.convert(n)
	case x < 82:
		h.unlock(n)
	case x < 95:
		h.cancel(n)
	default:
		h.disconnect(n, o)
	}
}

func (h *harness) enqueue(n *Node, o dlm.OwnerID) {
	r := Request{Lockspace: spaces[h.rng.IntN(len(spaces))], Owner: o, Mode: h.mode(),
		Flags: h.flag(dlm.NoQueue, 5) | h.flag(dlm.Expedite, 10) | h.flag(dlm.NoDlckWt, 8) | h.flag(dlm.ValBlk, 2) | h.flag(dlm.NoBlock, 6)}
	if r.Flags&dlm.Expedite != 0 && h.rng.IntN(6) != 0 {
		r.Mode = dlm.NL
	}
	path := []string{roots[h.rng.IntN(h.nroots)]}
	r.Name = path[0]
	if h.rng.IntN(4) == 0 {
		own := &o
		if h.rng.IntN(6) == 0 {
			own = nil
		}
		r.Parent, r.Name = h.pick(n, own), kids[h.rng.IntN(len(kids))]
		if e := n.table.get(r.Parent); e != nil {
			r.Lockspace = e.ls
			if h.rng.IntN(10) == 0 {
				r.Lockspace = "other"
			}
			path = append(slices.Clone(e.path), r.Name)
		}
	}
	bad := r.Flags&dlm.Expedite != 0 && r.Mode != dlm.NL
	switch h.rng.IntN(50) {
	case 0:
		r.Mode, bad = dlm.Mode(6+h.rng.IntN(3)), true
	case 1:
		r.Flags, bad = r.Flags|dlm.QueCvt, true
	case 2:
		r.Name, bad = "", true
	case 3:
		r.Value, bad = h.value(), true
	}
	id, evs, err := n.Enqueue(h.now, r)
	h.logf("%s enqueue %v %s/%v parent %v %v %v -> %v %v", n.self, o, r.Lockspace, path, r.Parent, r.Mode, r.Flags, id, err)
	if err != nil {
		if bad || r.Parent != (LockID{}) {
			h.count("local-refusal")
			if len(evs) > 0 {
				h.fatalf("a refused enqueue returned events")
			}
			return
		}
		h.fatalf("enqueue %+v refused: %v", r, err)
	}
	if bad {
		h.fatalf("invalid enqueue %+v accepted", r)
	}
	h.ownerOf[id] = o
	h.outstanding[id]++
	h.got(n.self, evs)
}

func (h *harness) convert(n *Node) {
	r := Request{Lock: h.pick(n, nil), Mode: h.mode(),
		Flags: dlm.Convert | h.flag(dlm.QueCvt, 3) | h.flag(dlm.NoQueue, 5) | h.flag(dlm.ValBlk, 2) | h.flag(dlm.NoDlckWt, 8) | h.flag(dlm.NoBlock, 6)}
	if h.rng.IntN(3) == 0 {
		r.Value = h.value()
		r.Flags |= dlm.ValBlk
	}
	_, evs, err := n.Enqueue(h.now, r)
	h.logf("%s convert %v %v %v value=%v -> %v", n.self, r.Lock, r.Mode, r.Flags, r.Value != nil, err)
	h.lastOp[r.Lock] = h.step
	if err != nil {
		if n.table.get(r.Lock) != nil {
			h.fatalf("convert of a known lock refused: %v", err)
		}
		return
	}
	if !h.gone[h.ownerOf[r.Lock]] {
		h.outstanding[r.Lock]++
	}
	h.got(n.self, evs)
}

func (h *harness) unlock(n *Node) {
	id, f := h.pick(n, nil), h.flag(dlm.ValBlk, 2)
	var v *dlm.Value
	if f != 0 && h.rng.IntN(2) == 0 {
		v = h.value()
	}
	evs, err := n.Unlock(h.now, id, f, v)
	h.logf("%s unlock %v %v value=%v -> %v", n.self, id, f, v != nil, err)
	h.lastOp[id] = h.step
	if err != nil && n.table.get(id) != nil {
		h.fatalf("unlock of a known lock refused: %v", err)
	}
	h.got(n.self, evs)
}

func (h *harness) cancel(n *Node) {
	id := h.pick(n, nil)
	evs, err := n.Cancel(h.now, id)
	h.logf("%s cancel %v -> %v", n.self, id, err)
	h.lastOp[id] = h.step
	if err != nil && n.table.get(id) != nil {
		h.fatalf("cancel of a known lock refused: %v", err)
	}
	h.got(n.self, evs)
}

func (h *harness) disconnect(n *Node, o dlm.OwnerID) {
	for id := range h.outstanding {
		if h.ownerOf[id] == o {
			delete(h.outstanding, id)
		}
	}
	evs, err := n.Disconnect(h.now, o)
	h.logf("%s disconnect %v -> %v", n.self, o, err)
	if err != nil {
		h.fatalf("disconnect: %v", err)
	}
	h.gone[o] = true
	h.got(n.self, evs)
	cs := h.clients[n.self]
	h.nextClient++
	cs[slices.Index(cs, o)] = dlm.OwnerID{Member: n.self, Client: h.nextClient}
	h.count("disconnect")
}

// deadlockRound is the director's search: gather every member's edges,
// find the victims, abort each through a random member.
func (h *harness) deadlockRound() {
	var all []Edge
	for _, m := range h.live() {
		n := h.nodes[m]
		es := n.WaitEdges(h.now)
		if h.model != nil {
			h.compareEdges(n, es)
		}
		all = append(all, es...)
	}
	vs := FindDeadlocks(all)
	h.logf("deadlock search: %d edges, victims %v", len(all), vs)
	live := h.live()
	for _, v := range vs {
		via := h.nodes[live[h.rng.IntN(len(live))]]
		evs, err := via.AbortDeadlock(h.now, v)
		h.logf("abort %v via %s -> %v", v, via.self, err)
		if err != nil && !errors.Is(err, ErrRecovering) && !errors.Is(err, dlm.ErrUnknownLock) && !errors.Is(err, dlm.ErrWrongState) {
			h.fatalf("abort %v: %v", v, err)
		}
		h.got(via.self, evs)
		h.count("victim")
	}
}

// compareEdges compares a master's wait-for edges with the model's for
// the same locks (without Seq: the model's numbers are global).
func (h *harness) compareEdges(n *Node, es []Edge) {
	type e3 struct {
		w, b dlm.OwnerID
		l    LockID
	}
	var got, want []e3
	for _, e := range es {
		got = append(got, e3{e.Waiter, e.Blocker, e.Lock})
	}
	for _, e := range h.model.WaitEdges(h.now) {
		g := h.gid[e.Lock]
		if _, ok := n.byG[g]; ok {
			want = append(want, e3{unsplit(e.Waiter), unsplit(e.Blocker), g})
		}
	}
	cmp3 := func(a, b e3) int {
		if c := compareID(a.l, b.l); c != 0 {
			return c
		}
		return strings.Compare(a.b.String(), b.b.String())
	}
	slices.SortFunc(got, cmp3)
	slices.SortFunc(want, cmp3)
	if !slices.Equal(got, want) {
		h.fatalf("wait edges of %s differ:\n  cluster %v\n  model   %v", n.self, got, want)
	}
}

// --- checks ---

// checkGranted checks invariant 3 across every live master, that each
// root lives on one master, and that queues keep the arrival order.
func (h *harness) checkGranted() {
	h.t.Helper()
	type held struct {
		master string
		id     LockID
		mode   dlm.Mode
	}
	byRes := map[resKey][]held{}
	rootAt := map[Root]string{}
	for _, m := range h.live() {
		n := h.nodes[m]
		snap := n.eng.Export()
		last := map[resKey]map[dlm.Queue]int{}
		for _, r := range snap.Locks {
			root := Root{r.Lockspace, r.Path[0]}
			if at, ok := rootAt[root]; ok && at != m {
				h.fatalf("root %v is mastered by %s and %s at once", root, at, m)
			}
			rootAt[root] = m
			k := keyOf(r.Lockspace, r.Path)
			if r.Queue != dlm.QueueWaiting {
				for _, o := range byRes[k] {
					if !dlm.Compatible(o.mode, r.Granted) {
						h.fatalf("invariant 3: %v (%v on %s) and %v (%v on %s) are both granted on %s%v", o.id, o.mode, o.master, n.gid(r.ID), r.Granted, m, r.Lockspace, r.Path)
					}
				}
				byRes[k] = append(byRes[k], held{m, n.gid(r.ID), r.Granted})
			}
			if r.Queue != dlm.QueueGranted {
				if last[k] == nil {
					last[k] = map[dlm.Queue]int{}
				}
				a := h.arrival[n.gid(r.ID)]
				if a < last[k][r.Queue] {
					h.fatalf("queue order on %s%v (%v queue at %s): %v arrived before the request ahead of it", r.Lockspace, r.Path, r.Queue, m, n.gid(r.ID))
				}
				last[k][r.Queue] = a
			}
		}
	}
}

// checkStable: a granted lock with nothing pending changes only by an
// operation of its client.
func (h *harness) checkStable() {
	h.t.Helper()
	for id, st := range h.stable {
		n := h.nodes[id.Member]
		if n == nil || n.out || h.lastOp[id] > st.since || h.gone[h.ownerOf[id]] {
			delete(h.stable, id)
			continue
		}
		e := n.table.get(id)
		if e == nil || e.q != dlm.QueueGranted || e.granted != st.mode {
			state := "gone"
			if e != nil {
				state = fmt.Sprintf("%v %v", e.q, e.granted)
			}
			h.fatalf("client lock %v, granted %v with nothing pending since step %d, is now %s", id, st.mode, st.since, state)
		}
	}
	for _, m := range h.live() {
		for _, l := range h.nodes[m].Locks().Held {
			if l.Queue == dlm.QueueGranted && l.Pending == 0 && !h.gone[l.Owner] {
				if st, ok := h.stable[l.Lock]; !ok || st.mode != l.Granted {
					h.stable[l.Lock] = stableLock{l.Granted, h.step}
				}
			} else {
				delete(h.stable, l.Lock)
			}
		}
	}
}

type stableLock struct {
	mode  dlm.Mode
	since int
}

// checkSettled runs after settle: every client's copy matches its master,
// nothing is pending, and every request got its completion or waits.
func (h *harness) checkSettled() {
	h.t.Helper()
	h.checkGranted()
	for _, m := range h.live() {
		n := h.nodes[m]
		if len(n.pending) > 0 || len(n.reissue) > 0 || len(n.held) > 0 {
			h.fatalf("%s has %d pending, %d to resend, %d held after settling", m, len(n.pending), len(n.reissue), len(n.held))
		}
		for _, id := range n.sortedIDs() {
			e := n.table.get(id)
			if e.q == 0 {
				h.fatalf("%s: lock %v was never confirmed", m, id)
			}
			master := h.masterOf(n.view, Root{e.ls, e.path[0]})
			mn := h.nodes[master]
			b, ok := mn.byG[id]
			if !ok {
				h.fatalf("%s: client lock %v (%v %v on %s%v) is not on its master %s", m, id, e.q, e.granted, e.ls, e.path, master)
			}
			rec, ok := mn.eng.Lock(b)
			if !ok {
				h.fatalf("%s: lock %v mapped on %s but not in its engine", m, id, master)
			}
			var parent LockID
			if rec.Parent != 0 {
				parent = mn.gid(rec.Parent)
			}
			if rec.Queue != e.q || rec.Granted != e.granted || rec.Requested != e.req || rec.Flags != e.flags || rec.Seq != e.seq ||
				rec.Owner != e.owner || rec.Lockspace != e.ls || !slices.Equal(rec.Path, e.path) || parent != e.parent ||
				(rec.PendingValue == nil) != (e.pendingValue == nil) || e.at != master {
				h.fatalf("%s: copy of %v differs from master %s:\n  copy   %v %v->%v %v seq%d at=%q pend=%v parent %v\n  master %v %v->%v %v seq%d pend=%v parent %v",
					m, id, master, e.q, e.granted, e.req, e.flags, e.seq, e.at, e.pendingValue != nil, e.parent,
					rec.Queue, rec.Granted, rec.Requested, rec.Flags, rec.Seq, rec.PendingValue != nil, parent)
			}
		}
		for g, b := range n.byG {
			on := h.nodes[g.Member]
			if on == nil || on.table.get(g) == nil {
				h.fatalf("%s masters %v (engine lock %d), which its member does not know", m, g, b)
			}
		}
	}
	for id, c := range h.outstanding {
		n := h.nodes[id.Member]
		if c == 0 || n == nil {
			continue
		}
		e := n.table.get(id)
		if c > 1 || e == nil || e.q == dlm.QueueGranted {
			h.fatalf("lock %v: %d request(s) without completion after settling (state %v)", id, c, e)
		}
	}
	for k, evs := range h.sent {
		if h.gone[k.owner] || h.nodes[k.owner.Member] == nil {
			continue
		}
		for _, e := range evs[h.recv[k]:] {
			if !h.dead[e.master] {
				h.fatalf("%v on %v did not receive all its masters sent: %s", k.owner, k.root, h.showSent(k))
			}
		}
	}
}

var fixedFlag = flag.Bool("cluster.fixed", false, "no hand-offs: every root stays on its hash master")

// masterOf returns the member whose engine holds root r: its hash master,
// or the member the hash master handed it to.
func (h *harness) masterOf(v View, r Root) string {
	m := Master(v, r.Lockspace, r.Name)
	if hn := h.nodes[m]; hn != nil {
		if ho := hn.handed[r]; ho != nil && !ho.returning {
			return ho.to
		}
	}
	return m
}

// sweep gives idle handed roots back, on every member.
func (h *harness) sweep() {
	for _, m := range h.live() {
		h.nodes[m].Sweep(h.now)
	}
}
