package cluster

import (
	"io"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// Config configures a Node.
type Config struct {
	// Member is this member's name, as in the views.
	Member string
	// Transport sends messages to the other members.
	Transport Transport
	// Engine configures the lock engine of the resources this member
	// masters.
	Engine dlm.Options
	// MaxHeld bounds the operations held while the lock manager recovers
	// or has no quorum (this member's clients' and other members'
	// requests). 1 to 1<<24.
	MaxHeld int
	// MaxBatch bounds the records, values and roots of one recovery
	// message; more go in several. 1 to 1<<20.
	MaxBatch int
	// MaxStash bounds the messages kept for views this member has not
	// applied yet. 1 to 1<<24.
	MaxStash int
	// Logger receives the recovery steps and anomalies (nil: none).
	Logger *slog.Logger

	// Handoff: a root whose hash master holds no lock on it is handed to
	// the member whose client asks for it, which masters it from then on
	// (see handoff.go). False: every root stays on its hash master.
	Handoff bool
	// Fixed reports the lockspaces whose roots are never handed off (nil:
	// none), like Linux DLM's lockspaces without a directory.
	Fixed func(lockspace string) bool
	// MaxHandoffs bounds the roots a member has handed to others at a
	// time; past it, roots stay on it. 1 to 1<<24.
	MaxHandoffs int
	// IdleReturn: Sweep gives back a handed root that has had no lock
	// and no use for this long. 0 to 1 hour.
	IdleReturn time.Duration
}

// DefaultConfig returns a configuration with the engine defaults, 100,000
// held operations, 4,096 items per recovery message, 65,536 stashed
// messages, and hand-offs on (65,536 at a time, given back after 5 s
// unused). Member and Transport must be set.
func DefaultConfig() Config {
	return Config{Engine: dlm.DefaultOptions(), MaxHeld: 100_000, MaxBatch: 4096, MaxStash: 1 << 16,
		Handoff: true, Fixed: FixedLockspace, MaxHandoffs: 1 << 16, IdleReturn: 5 * time.Second}
}

// FixedPrefix starts the names of lockspaces whose roots always stay on
// their hash masters (DefaultConfig's Fixed): for resources that every
// member uses alike, and for measuring a remote master.
const FixedPrefix = "fixed."

// FixedLockspace reports whether lockspace ls is fixed: its name starts
// with FixedPrefix.
func FixedLockspace(ls string) bool { return strings.HasPrefix(ls, FixedPrefix) }

// Validate checks the configuration, naming the field and its allowed
// range.
func (c Config) Validate() error {
	switch {
	case c.Member == "":
		return fail("config", LockID{}, errInvalid, "Member is empty: set it to this member's name")
	case c.Transport == nil:
		return fail("config", LockID{}, errInvalid, "Transport is nil: give the Node a way to reach the other members")
	case c.MaxHeld < 1 || c.MaxHeld > 1<<24:
		return fail("config", LockID{}, errInvalid, "MaxHeld is %d: it must be between 1 and %d (default 100000)", c.MaxHeld, 1<<24)
	case c.MaxBatch < 1 || c.MaxBatch > 1<<20:
		return fail("config", LockID{}, errInvalid, "MaxBatch is %d: it must be between 1 and %d (default 4096)", c.MaxBatch, 1<<20)
	case c.MaxStash < 1 || c.MaxStash > 1<<24:
		return fail("config", LockID{}, errInvalid, "MaxStash is %d: it must be between 1 and %d (default 65536)", c.MaxStash, 1<<24)
	case c.Handoff && (c.MaxHandoffs < 1 || c.MaxHandoffs > 1<<24):
		return fail("config", LockID{}, errInvalid, "MaxHandoffs is %d: it must be between 1 and %d (default 65536), or set Handoff false", c.MaxHandoffs, 1<<24)
	case c.IdleReturn < 0 || c.IdleReturn > time.Hour:
		return fail("config", LockID{}, errInvalid, "IdleReturn is %v: it must be between 0 and 1h (default 5s)", c.IdleReturn)
	}
	return c.Engine.Validate()
}

// Node is the lock manager of one member: the master of the resources the
// directory gives it (one dlm.Engine) and the client side of the locks its
// own clients hold anywhere. It is a deterministic state machine: no
// goroutines, no clock, no I/O but Transport.Send. It is not safe for
// concurrent use: its owner serializes the calls. Every call returns the
// events for this member's clients it caused, in order; route them to the
// clients' sessions.
type Node struct {
	cfg  Config
	self string
	log  *slog.Logger

	// Master side.
	eng   *dlm.Engine
	byG   map[LockID]dlm.LockID
	floor uint64 // the engine's token floor

	// Views.
	view     View
	hasView  bool
	out      bool // not in the view: everything refused
	quorum   bool
	joinedAt map[string]uint64 // member -> first view of its current membership
	stash    map[string][]Message
	stashN   int
	rec      *recovery         // nil when not recovering
	raise    bool              // raise the token floor at the next import (names gained)
	departed map[string]bool   // members that left since the last purge
	handed   map[Root]*handoff // roots this member masters by hash and handed to another
	owns     map[Root]*owned   // roots another member handed to this one

	// Client side.
	nextN   uint64
	table   clientTable
	nextReq uint64
	pending map[uint64]*pendingOp // sent, not answered
	reissue []*pendingOp          // to send again when recovery ends
	held    []heldOp              // arrived while not ready, in arrival order

	hooks hooks

	evScratch []Event // applyOp's translated events, reused
}

// hooks let tests watch the masters. All nil outside tests.
type hooks struct {
	// applied: a master ran op (from member from) on its engine.
	applied func(master, from string, op *Op, evs []Event, err error)
	// routed: a master sends the events of one engine call to their
	// owners.
	routed func(master string, evs []Event)
	// granted: a master's engine granted lock at token on (ls, path).
	granted func(master, ls string, path []string, lock LockID, token uint64)
	// anomaly: something that must never happen happened.
	anomaly func(msg string)
	// note: a step of interest happened (for test statistics).
	note func(what string)
}

// entry is a lock of this member's clients, as its master last reported
// it: enough to rebuild it on a new master.
type entry struct {
	owner  dlm.OwnerID
	ls     string
	path   []string
	parent LockID

	// The master's state; q == 0 until a master confirmed the lock.
	q            dlm.Queue
	granted, req dlm.Mode
	flags        dlm.Flags
	seq          uint64
	pendingValue *dlm.Value

	// value is the value block the latest grant reported valid (nil:
	// none: most locks never use value blocks).
	value *dlm.Value
	token uint64

	// at is the member whose engine holds the lock ("" while in transit
	// in a recovery); sent: where and in which view the lock was sent,
	// until that master reports done.
	at   string
	sent *transit
}

// transit is where a lock was sent in a recovery.
type transit struct {
	to string
	in uint64
}

type pendingOp struct {
	op    Op
	to    string
	roots []Root // OpPurge: the roots of the owner's locks not answered for yet
	lost  bool   // sent to a member that left the view: outcome unknown
	moot  bool   // its client disconnected: its answer is dropped
}

type heldOp struct {
	from  string // "" for this member's client
	op    Op
	roots []Root   // OpPurge
	msg   *Message // a hand-off, forward or return held (op unused)
}

// New returns a Node with no view: it holds client operations until its
// first view is rebuilt, and it has no quorum until SetQuorum(true).
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	n := &Node{cfg: cfg, self: cfg.Member, log: log.With("member", cfg.Member),
		joinedAt: map[string]uint64{}, stash: map[string][]Message{}, departed: map[string]bool{},
		handed: map[Root]*handoff{}, owns: map[Root]*owned{},
		table: clientTable{self: cfg.Member, m: map[uint64]*entry{}}, pending: map[uint64]*pendingOp{}}
	n.resetMaster()
	return n, nil
}

func (n *Node) resetMaster() {
	n.eng, _ = dlm.New(n.cfg.Engine)
	n.byG = map[LockID]dlm.LockID{}
	n.floor = 0
}

// Member returns the member's name.
func (n *Node) Member() string { return n.self }

// View returns the view the member applied last.
func (n *Node) View() View { return n.view }

// Ready reports whether the member grants: it is in a view whose recovery
// is over and has quorum.
func (n *Node) Ready() bool { return n.hasView && !n.out && n.rec == nil && n.quorum }

func (n *Node) anomaly(format string, args ...any) {
	msg := sprintf(format, args...)
	n.log.Error("dlm anomaly: "+msg, "view", n.view.Number)
	if n.hooks.anomaly != nil {
		n.hooks.anomaly(msg)
	}
}

func (n *Node) note(what string) {
	if n.hooks.note != nil {
		n.hooks.note(what)
	}
}

func (n *Node) send(to string, m Message) {
	m.View = n.view.Number
	n.cfg.Transport.Send(to, m)
}

func validName(s string) bool { return s != "" && len(s) <= dlm.MaxNameLen }

// Enqueue requests a new lock for one of this member's clients, or with
// dlm.Convert converts one of its locks. It returns the lock's cluster id
// at once; the completion (and any refusal by the master, as EventRefused)
// comes as an event, from this call when this member masters the resource
// and is ready, otherwise from a later call. A request that fails the
// checks this member can make alone (flags, mode, names, owner, and the
// lock or parent being one of its clients') returns an error and changes
// nothing. While the lock manager recovers or has no quorum the request is
// held, and sent in arrival order when it is ready again.
func (n *Node) Enqueue(now time.Time, r Request) (LockID, []Event, error) {
	if n.out {
		return LockID{}, nil, n.notMember("enqueue")
	}
	var op Op
	if r.Flags&dlm.Convert != 0 {
		if err := checkConvert(r); err != nil {
			return LockID{}, nil, err
		}
		e := n.table.get(r.Lock)
		if e == nil {
			return LockID{}, nil, fail("convert", r.Lock, dlm.ErrUnknownLock, "lock %v is not a lock of this member's clients (released, never requested, or refused)", r.Lock)
		}
		op = Op{Kind: OpConvert, Lock: r.Lock, Lockspace: e.ls, Path: e.path, Owner: e.owner, Mode: r.Mode, Flags: r.Flags}
		if r.Value != nil {
			v := *r.Value
			op.Value = &v
		}
	} else {
		if err := n.checkNew(r); err != nil {
			return LockID{}, nil, err
		}
		path := []string{r.Name}
		if !r.Parent.IsZero() {
			p := n.table.get(r.Parent)
			path = append(slices.Clone(p.path), r.Name)
		}
		if !n.Ready() && len(n.held) >= n.cfg.MaxHeld {
			return LockID{}, nil, n.busy("enqueue")
		}
		n.nextN++
		id := LockID{Member: n.self, N: n.nextN}
		n.table.put(id, &entry{owner: r.Owner, ls: r.Lockspace, path: path, parent: r.Parent, req: r.Mode, flags: r.Flags})
		op = Op{Kind: OpEnqueue, Lock: id, Lockspace: r.Lockspace, Path: path, Parent: r.Parent, Owner: r.Owner, Mode: r.Mode, Flags: r.Flags}
	}
	evs, err := n.do(now, op, nil)
	return op.Lock, evs, err
}

func checkConvert(r Request) error {
	const op = "convert"
	switch {
	case r.Flags&^allFlags != 0:
		return fail(op, r.Lock, errInvalid, "unknown flag bits %#x: use the dlm flag constants", uint16(r.Flags&^allFlags))
	case !r.Mode.Valid():
		return fail(op, r.Lock, errInvalid, "unknown lock mode %d: use NL, CR, CW, PR, PW or EX", uint8(r.Mode))
	case r.Flags&dlm.Expedite != 0:
		return fail(op, r.Lock, errInvalid, "Expedite is only valid for a new NL request, not with Convert")
	case r.Value != nil && r.Flags&dlm.ValBlk == 0:
		return fail(op, r.Lock, errInvalid, "a Value is given without ValBlk: set ValBlk to write the value block")
	}
	return nil
}

const allFlags = dlm.NoQueue | dlm.Convert | dlm.QueCvt | dlm.Expedite | dlm.NoDlckWt | dlm.ValBlk | dlm.NoBlock

// checkNew checks a new request as the engine would, in the engine's
// order, as far as this member can: the parent must be a lock of its
// clients.
func (n *Node) checkNew(r Request) error {
	const op = "enqueue"
	switch {
	case r.Flags&^allFlags != 0:
		return fail(op, LockID{}, errInvalid, "unknown flag bits %#x: use the dlm flag constants", uint16(r.Flags&^allFlags))
	case !r.Mode.Valid():
		return fail(op, LockID{}, errInvalid, "unknown lock mode %d: use NL, CR, CW, PR, PW or EX", uint8(r.Mode))
	case r.Flags&dlm.QueCvt != 0:
		return fail(op, LockID{}, errInvalid, "QueCvt is only valid with Convert: a new request always queues behind the others")
	case r.Flags&dlm.Expedite != 0 && r.Mode != dlm.NL:
		return fail(op, LockID{}, errInvalid, "Expedite is only valid for a new NL request, not %v: drop Expedite or request NL", r.Mode)
	case r.Value != nil:
		return fail(op, LockID{}, errInvalid, "a new request cannot write the value block: pass a Value only when converting (or unlocking) from PW or EX")
	case r.Owner.Member == "":
		return fail(op, LockID{}, errInvalid, "the owner has no member name: set Request.Owner.Member")
	case r.Owner.Member != n.self:
		return fail(op, LockID{}, errInvalid, "the owner %v is not a client of this member (%s): a member requests locks for its own clients only", r.Owner, n.self)
	case !validName(r.Lockspace):
		return fail(op, LockID{}, errInvalid, "the lockspace name is %d bytes long: give 1 to %d bytes", len(r.Lockspace), dlm.MaxNameLen)
	case !validName(r.Name):
		return fail(op, LockID{}, errInvalid, "the resource name is %d bytes long: give 1 to %d bytes", len(r.Name), dlm.MaxNameLen)
	}
	return n.checkParent(r.Parent, r.Lockspace, r.Owner)
}

func (n *Node) checkParent(parent LockID, ls string, owner dlm.OwnerID) error {
	const op = "enqueue"
	if parent.IsZero() {
		return nil
	}
	p := n.table.get(parent)
	switch {
	case p == nil:
		return fail(op, LockID{}, dlm.ErrUnknownLock, "parent lock %v is not a lock of this member's clients: request the parent lock first (or use no parent for a root resource)", parent)
	case p.ls != ls:
		return fail(op, LockID{}, errInvalid, "parent lock %v is in lockspace %q, not %q: a sub-lock must be in its parent's lockspace", parent, p.ls, ls)
	case p.owner != owner:
		return fail(op, LockID{}, errInvalid, "parent lock %v is held by %v, not %v: a sub-lock must have its parent's owner", parent, p.owner, owner)
	}
	return nil
}

// Unlock releases a lock of one of this member's clients ($DEQ), as
// dlm.Engine.Unlock: flags may be ValBlk, with v the value a PW or EX
// holder writes. The master's refusal (for example sub-locks left) comes
// as an EventRefused.
func (n *Node) Unlock(now time.Time, id LockID, flags dlm.Flags, v *dlm.Value) ([]Event, error) {
	const op = "unlock"
	if n.out {
		return nil, n.notMember(op)
	}
	switch {
	case flags&^dlm.ValBlk != 0:
		return nil, fail(op, id, errInvalid, "flags %v: only ValBlk is valid for an unlock", flags)
	case v != nil && flags&dlm.ValBlk == 0:
		return nil, fail(op, id, errInvalid, "a Value is given without ValBlk: set ValBlk to write the value block")
	}
	e := n.table.get(id)
	if e == nil {
		return nil, fail(op, id, dlm.ErrUnknownLock, "lock %v is not a lock of this member's clients (already released, or never granted)", id)
	}
	o := Op{Kind: OpUnlock, Lock: id, Lockspace: e.ls, Path: e.path, Owner: e.owner, Flags: flags}
	if v != nil {
		c := *v
		o.Value = &c
	}
	return n.do(now, o, nil)
}

// Cancel cancels the queued request of a lock of one of this member's
// clients, as dlm.Engine.Cancel.
func (n *Node) Cancel(now time.Time, id LockID) ([]Event, error) {
	const op = "cancel"
	if n.out {
		return nil, n.notMember(op)
	}
	e := n.table.get(id)
	if e == nil {
		return nil, fail(op, id, dlm.ErrUnknownLock, "lock %v is not a lock of this member's clients (already released or completed)", id)
	}
	return n.do(now, Op{Kind: OpCancel, Lock: id, Lockspace: e.ls, Path: e.path, Owner: e.owner}, nil)
}

// Disconnect ends a client's session: every master that may hold locks of
// the owner purges them (PurgeOwner, marking value blocks not valid where
// it held PW or EX: a lost holder), one message to each. The owner gets no
// more events.
func (n *Node) Disconnect(now time.Time, owner dlm.OwnerID) ([]Event, error) {
	const op = "disconnect"
	if n.out {
		return nil, n.notMember(op)
	}
	if owner.Member != n.self {
		return nil, fail(op, LockID{}, errInvalid, "the owner %v is not a client of this member (%s)", owner, n.self)
	}
	seen := map[Root]bool{}
	var roots []Root
	ids := n.sortedIDs()
	for _, id := range ids {
		e := n.table.get(id)
		if e.owner != owner {
			continue
		}
		if r := (Root{e.ls, e.path[0]}); !seen[r] {
			seen[r] = true
			roots = append(roots, r)
		}
		n.table.del(id)
	}
	// Its other operations are moot: the purge follows them on every
	// stream, or replaces them. Those sent stay pending (marked), so that
	// this member knows which are still on their way.
	for _, p := range n.pending {
		if p.op.Owner == owner && p.op.Kind != OpPurge {
			p.moot = true
		}
	}
	n.reissue = slices.DeleteFunc(n.reissue, func(p *pendingOp) bool { return p.op.Owner == owner && p.op.Kind != OpPurge })
	mine := func(h heldOp) bool {
		return h.from == "" && h.msg == nil && h.op.Owner == owner && h.op.Kind != OpPurge
	}
	n.held = slices.DeleteFunc(n.held, mine)
	for _, ho := range n.handed {
		ho.queue = slices.DeleteFunc(ho.queue, mine)
	}
	if len(roots) == 0 {
		return nil, nil
	}
	return n.do(now, Op{Kind: OpPurge, Owner: owner}, roots)
}

func (n *Node) notMember(op string) error {
	return fail(op, LockID{}, ErrNotMember, "member %s is not in the lock manager view %v: its locks were released; wait until it joins again", n.self, n.view)
}

func (n *Node) busy(op string) error {
	return fail(op, LockID{}, ErrBusy, "%d operations are held while the lock manager recovers or has no quorum (Config.MaxHeld): retry later", len(n.held))
}

// do runs or holds one operation of this member's client.
func (n *Node) do(now time.Time, op Op, roots []Root) ([]Event, error) {
	if !n.Ready() {
		if len(n.held) >= n.cfg.MaxHeld {
			if op.Kind == OpEnqueue {
				n.table.del(op.Lock)
			}
			return nil, n.busy(op.Kind.String())
		}
		n.held = append(n.held, heldOp{op: op, roots: roots})
		return nil, nil
	}
	return n.submit(now, op, roots), nil
}

// submit sends one operation of this member's client to its master, or
// runs it here when this member masters the resource.
func (n *Node) submit(now time.Time, op Op, roots []Root) []Event {
	if op.Kind == OpPurge {
		by := map[string][]Root{}
		for _, r := range roots {
			to, q := n.ownRoute(now, r)
			if q != nil {
				c := op
				c.Roots = []Root{r}
				q.queue = append(q.queue, heldOp{op: c, roots: c.Roots})
				continue
			}
			by[to] = append(by[to], r)
		}
		var out []Event
		for _, m := range sortedKeys(by) {
			if m == n.self {
				c := op
				c.Roots = by[m]
				out = append(out, n.apply(now, n.self, &c)...)
			} else {
				n.sendOp(m, op, by[m])
			}
		}
		return out
	}
	to, q := n.ownRoute(now, rootOf(&op))
	switch {
	case q != nil:
		q.queue = append(q.queue, heldOp{op: op})
		return nil
	case to == n.self:
		return n.apply(now, n.self, &op)
	}
	n.sendOp(to, op, nil)
	return nil
}

func (n *Node) sendOp(to string, op Op, roots []Root) {
	n.nextReq++
	op.Req = n.nextReq
	if op.Kind == OpPurge {
		op.Roots = roots
	}
	n.pending[op.Req] = &pendingOp{op: op, to: to, roots: slices.Clone(roots)}
	c := op
	n.send(to, Message{Kind: MsgRequest, Op: &c})
}

// replay runs a held or unanswered operation of this member's client
// again. The master checks it against its state as usual (a lock gone
// meanwhile is refused there, as it would have been).
func (n *Node) replay(now time.Time, op Op, roots []Root) []Event {
	if op.Kind == OpEnqueue {
		if e := n.table.get(op.Lock); e == nil || e.q != 0 {
			// Its owner disconnected, or a master confirmed it after all.
			return nil
		}
	}
	return n.submit(now, op, roots)
}

func refused(op *Op, err error) Event {
	ce, ok := err.(*Error)
	if !ok {
		ce = &Error{Op: op.Kind.String(), Lock: op.Lock, Kind: kindOf(err), Msg: errMsg(err)}
	}
	return Event{Kind: EventRefused, Lock: op.Lock, Owner: op.Owner, Mode: op.Mode, Op: op.Kind, Err: ce}
}

func kindOf(err error) error { return kindErr(kindName(err)) }

// receive applies what a master reports about this member's clients (from
// is the master; this member for its own engine) and returns the events
// to deliver.
func (n *Node) receive(from string, reply *Reply, states []LockState, evs []Event) []Event {
	var out []Event
	if reply != nil {
		// A reply may come from the member a hash master forwarded the
		// request to; request numbers are never reused.
		if p := n.pending[reply.Req]; p != nil && p.op.Kind == OpPurge {
			if reply.Err != "" {
				n.log.Warn("dlm disconnect purge refused", "master", from, "owner", p.op.Owner, "err", reply.Msg)
			}
			n.covered(reply.Req, p, reply.Roots)
		} else if p != nil {
			delete(n.pending, reply.Req)
			if p.moot {
				// Its client disconnected.
			} else if reply.Err != "" {
				op := p.op
				out = append(out, refused(&op, &Error{Op: op.Kind.String(), Lock: op.Lock, Kind: kindErr(reply.Err),
					Msg: "refused by master " + from + ": " + reply.Msg}))
				if e := n.table.get(op.Lock); op.Kind == OpEnqueue && e != nil && e.q == 0 {
					n.table.del(op.Lock) // a refused request leaves no lock
				}
			}
		}
	}
	for _, ev := range evs {
		if ev.Lock.Member != n.self || ev.Owner.Member != n.self || ev.Kind < EventGranted || ev.Kind > EventBlocking {
			continue
		}
		e := n.table.get(ev.Lock)
		if e == nil || e.owner != ev.Owner {
			continue // a disconnected client's, or a lock it no longer has
		}
		if ev.Kind == EventGranted {
			e.token = ev.Token
			e.value = nil
			if ev.ValBlk && ev.ValueValid {
				v := ev.Value
				e.value = &v
			}
		}
		ev.Err = nil
		out = append(out, ev)
	}
	for _, s := range states {
		e := n.table.get(s.Lock)
		if e == nil || s.Lock.Member != n.self {
			continue
		}
		if s.Gone {
			n.table.del(s.Lock)
			continue
		}
		if s.Queue < dlm.QueueGranted || s.Queue > dlm.QueueWaiting {
			continue
		}
		e.q, e.granted, e.req, e.flags, e.seq = s.Queue, s.Granted, s.Requested, s.Flags, s.Seq
		e.pendingValue = nil
		if s.PendingValue != nil {
			v := *s.PendingValue
			e.pendingValue = &v
		}
		e.at = from
		e.sent = nil
	}
	return out
}

func (n *Node) sortedIDs() []LockID {
	ids := make([]LockID, 0, n.table.len())
	for id := range n.table.all() {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareID)
	return ids
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// clientTable holds the entries of this member's clients' locks, whose ids
// all name this member: keyed by the number alone, it takes a third of the
// memory of a map keyed by LockID.
type clientTable struct {
	self string
	m    map[uint64]*entry
}

func (t *clientTable) get(id LockID) *entry {
	if id.Member != t.self {
		return nil
	}
	return t.m[id.N]
}

func (t *clientTable) put(id LockID, e *entry) {
	if id.Member != t.self {
		panic("dlm: a client lock id of another member: " + id.String())
	}
	t.m[id.N] = e
}

func (t *clientTable) del(id LockID) {
	if id.Member == t.self {
		delete(t.m, id.N)
	}
}

func (t *clientTable) len() int { return len(t.m) }
func (t *clientTable) clear()   { clear(t.m) }

// all yields the entries in no order.
func (t *clientTable) all() iter.Seq2[LockID, *entry] {
	return func(yield func(LockID, *entry) bool) {
		for n, e := range t.m {
			if !yield(LockID{Member: t.self, N: n}, e) {
				return
			}
		}
	}
}
