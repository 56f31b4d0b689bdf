// Package model is a deliberately plain and slow reference implementation of
// the lock manager rules of package dlm, written as directly from the rules
// as possible: slices, linear scans, and a full search for blocking
// notifications after every operation. Tests run random operations on both
// and compare every event, error kind, wait-for edge and snapshot.
//
// It shares no logic with package dlm: it imports dlm only for its plain
// data types (Mode, Flags, OwnerID, LockID, Value, Queue, Request, Event,
// Edge, Record, Snapshot, Options) and its sentinel errors, and has its own
// compatibility matrix. It must not be used outside tests: it is quadratic
// everywhere.
package model

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// The compatibility matrix, spelled out (rows and columns NL CR CW PR PW EX).
var table = [6][6]bool{
	/* NL */ {true, true, true, true, true, true},
	/* CR */ {true, true, true, true, true, false},
	/* CW */ {true, true, true, false, false, false},
	/* PR */ {true, true, false, true, false, false},
	/* PW */ {true, true, false, false, false, false},
	/* EX */ {true, false, false, false, false, false},
}

func compatible(a, b dlm.Mode) bool { return table[a][b] }

const (
	nl = dlm.Mode(0)
	pw = dlm.Mode(4)
	ex = dlm.Mode(5)
)

// Model is the reference lock engine.
type Model struct {
	wait     time.Duration
	maxLocks int
	locks    []*lock // every lock, in id order
	res      []*resource
	nextID   dlm.LockID
	nextSeq  uint64
	floor    uint64
	events   []dlm.Event
}

type lock struct {
	id       dlm.LockID
	res      *resource
	parent   dlm.LockID
	owner    dlm.OwnerID
	granted  dlm.Mode
	req      dlm.Mode
	q        dlm.Queue
	flags    dlm.Flags
	seq      uint64
	since    time.Time
	notified []dlm.LockID
	pending  *dlm.Value
}

type resource struct {
	ls      string
	path    []string
	granted []*lock
	conv    []*lock
	wait    []*lock
	value   dlm.Value
	valid   bool
	token   uint64
}

// New returns an empty model with the options' deadlock wait and lock limit.
func New(opts dlm.Options) *Model {
	return &Model{wait: opts.DeadlockWait, maxLocks: opts.MaxLocks, nextID: 1, nextSeq: 1}
}

func bad(kind error, format string, args ...any) error {
	return fmt.Errorf("model: %w: %s", kind, fmt.Sprintf(format, args...))
}

func (m *Model) get(id dlm.LockID) *lock {
	for _, l := range m.locks {
		if l.id == id {
			return l
		}
	}
	return nil
}

func (m *Model) find(ls string, path []string) *resource {
	for _, r := range m.res {
		if r.ls == ls && slices.Equal(r.path, path) {
			return r
		}
	}
	return nil
}

func (m *Model) takeSeq() uint64 {
	m.nextSeq++
	return m.nextSeq - 1
}

// all returns the locks holding a granted mode: granted and converting.
func (r *resource) all() []*lock {
	return append(slices.Clone(r.granted), r.conv...)
}

func (r *resource) fits(mode dlm.Mode, self *lock) bool {
	for _, l := range r.all() {
		if l != self && !compatible(l.granted, mode) {
			return false
		}
	}
	return true
}

func remove(s []*lock, l *lock) []*lock {
	return slices.DeleteFunc(s, func(x *lock) bool { return x == l })
}

// Enqueue is dlm.Engine.Enqueue.
func (m *Model) Enqueue(now time.Time, r dlm.Request) (dlm.LockID, []dlm.Event, error) {
	m.events = nil
	var id dlm.LockID
	var err error
	if r.Flags&dlm.Convert != 0 {
		id, err = m.convert(now, r)
	} else {
		id, err = m.newLock(now, r)
	}
	if err != nil {
		return 0, nil, err
	}
	m.tellBlockers()
	return id, m.events, nil
}

const known = dlm.NoQueue | dlm.Convert | dlm.QueCvt | dlm.Expedite | dlm.NoDlckWt | dlm.ValBlk | dlm.NoBlock

func (m *Model) newLock(now time.Time, r dlm.Request) (dlm.LockID, error) {
	if r.Flags&^known != 0 {
		return 0, bad(dlm.ErrInvalid, "unknown flags")
	}
	if r.Mode > ex {
		return 0, bad(dlm.ErrInvalid, "bad mode")
	}
	if r.Flags&dlm.QueCvt != 0 {
		return 0, bad(dlm.ErrInvalid, "QueCvt without Convert")
	}
	if r.Flags&dlm.Expedite != 0 && r.Mode != nl {
		return 0, bad(dlm.ErrInvalid, "Expedite needs NL")
	}
	if r.Value != nil {
		return 0, bad(dlm.ErrInvalid, "value on a new request")
	}
	if r.Owner.Member == "" {
		return 0, bad(dlm.ErrInvalid, "no owner")
	}
	if len(r.Lockspace) < 1 || len(r.Lockspace) > 64 {
		return 0, bad(dlm.ErrInvalid, "lockspace name")
	}
	if len(r.Name) < 1 || len(r.Name) > 64 {
		return 0, bad(dlm.ErrInvalid, "resource name")
	}
	path := []string{r.Name}
	if r.Parent != 0 {
		p := m.get(r.Parent)
		if p == nil {
			return 0, bad(dlm.ErrUnknownLock, "no parent")
		}
		if p.res.ls != r.Lockspace {
			return 0, bad(dlm.ErrInvalid, "parent in another lockspace")
		}
		if p.owner != r.Owner {
			return 0, bad(dlm.ErrInvalid, "parent of another owner")
		}
		if p.q == dlm.QueueWaiting {
			return 0, bad(dlm.ErrWrongState, "parent not granted")
		}
		if len(p.res.path) >= 16 {
			return 0, bad(dlm.ErrInvalid, "too deep")
		}
		path = append(slices.Clone(p.res.path), r.Name)
	}
	if len(m.locks) >= m.maxLocks {
		return 0, bad(dlm.ErrLimit, "full")
	}
	res := m.find(r.Lockspace, path)
	grantNow := res == nil || r.Flags&dlm.Expedite != 0 ||
		(len(res.conv) == 0 && len(res.wait) == 0 && res.fits(r.Mode, nil))
	id := m.nextID
	m.nextID++
	if !grantNow && r.Flags&dlm.NoQueue != 0 {
		m.events = append(m.events, dlm.Event{Kind: dlm.EventNotQueued, Lock: id, Owner: r.Owner, Mode: r.Mode})
		return id, nil
	}
	if res == nil {
		res = &resource{ls: r.Lockspace, path: path, valid: true, token: m.floor}
		m.res = append(m.res, res)
	}
	l := &lock{id: id, res: res, parent: r.Parent, owner: r.Owner, req: r.Mode, flags: r.Flags}
	m.locks = append(m.locks, l)
	if grantNow {
		m.grant(l, r.Mode, nil)
	} else {
		l.q = dlm.QueueWaiting
		l.seq = m.takeSeq()
		l.since = now
		res.wait = append(res.wait, l)
	}
	m.regrant(res)
	return id, nil
}

func (m *Model) convert(now time.Time, r dlm.Request) (dlm.LockID, error) {
	if r.Flags&^known != 0 {
		return 0, bad(dlm.ErrInvalid, "unknown flags")
	}
	if r.Mode > ex {
		return 0, bad(dlm.ErrInvalid, "bad mode")
	}
	if r.Flags&dlm.Expedite != 0 {
		return 0, bad(dlm.ErrInvalid, "Expedite with Convert")
	}
	if r.Value != nil && r.Flags&dlm.ValBlk == 0 {
		return 0, bad(dlm.ErrInvalid, "value without ValBlk")
	}
	l := m.get(r.Lock)
	if l == nil {
		return 0, bad(dlm.ErrUnknownLock, "no lock")
	}
	if l.q != dlm.QueueGranted {
		return 0, bad(dlm.ErrWrongState, "not granted, or converting")
	}
	res := l.res
	if res.fits(r.Mode, l) && !(r.Flags&dlm.QueCvt != 0 && len(res.conv) > 0) {
		l.flags = r.Flags
		m.grant(l, r.Mode, r.Value)
	} else if r.Flags&dlm.NoQueue != 0 {
		m.events = append(m.events, dlm.Event{Kind: dlm.EventNotQueued, Lock: l.id, Owner: l.owner, Mode: r.Mode})
	} else {
		l.flags = r.Flags
		res.granted = remove(res.granted, l)
		res.conv = append(res.conv, l)
		l.q = dlm.QueueConverting
		l.req = r.Mode
		l.seq = m.takeSeq()
		l.since = now
		if r.Value != nil {
			v := *r.Value
			l.pending = &v
		}
	}
	m.regrant(res)
	return l.id, nil
}

// grant grants l at mode; v is the value a PW/EX down-conversion writes.
func (m *Model) grant(l *lock, mode dlm.Mode, v *dlm.Value) {
	res := l.res
	converting := l.q == dlm.QueueConverting || l.q == dlm.QueueGranted
	if converting && v != nil && l.flags&dlm.ValBlk != 0 && (l.granted == pw || l.granted == ex) && mode <= l.granted {
		res.value = *v
		res.valid = true
	}
	res.granted = remove(res.granted, l)
	res.conv = remove(res.conv, l)
	res.wait = remove(res.wait, l)
	res.granted = append(res.granted, l)
	l.q = dlm.QueueGranted
	l.granted, l.req = mode, mode
	l.seq = m.takeSeq()
	l.notified = nil
	l.pending = nil
	res.token++
	m.floor = max(m.floor, res.token)
	ev := dlm.Event{Kind: dlm.EventGranted, Lock: l.id, Owner: l.owner, Mode: mode, Token: res.token}
	if l.flags&dlm.ValBlk != 0 {
		ev.Value, ev.ValueValid = res.value, res.valid
	}
	m.events = append(m.events, ev)
}

// regrant: the conversion queue in order while its head fits, then (only
// if it is empty) the waiting queue the same way.
func (m *Model) regrant(res *resource) {
	for len(res.conv) > 0 && res.fits(res.conv[0].req, res.conv[0]) {
		h := res.conv[0]
		m.grant(h, h.req, h.pending)
	}
	if len(res.conv) > 0 {
		return
	}
	for len(res.wait) > 0 && res.fits(res.wait[0].req, nil) {
		m.grant(res.wait[0], res.wait[0].req, nil)
	}
}

// tellBlockers sends every blocking notification not sent yet: for each
// queued request, each granted (not converting) lock without NoBlock whose
// mode is incompatible with the requested one.
func (m *Model) tellBlockers() {
	type p struct{ r, l *lock }
	var ps []p
	for _, res := range m.res {
		for _, r := range append(slices.Clone(res.conv), res.wait...) {
			for _, l := range res.granted {
				if l.flags&dlm.NoBlock == 0 && !compatible(l.granted, r.req) && !slices.Contains(r.notified, l.id) {
					ps = append(ps, p{r, l})
				}
			}
		}
	}
	slices.SortFunc(ps, func(a, b p) int {
		if c := cmp.Compare(a.r.id, b.r.id); c != 0 {
			return c
		}
		return cmp.Compare(a.l.id, b.l.id)
	})
	for _, x := range ps {
		x.r.notified = append(x.r.notified, x.l.id)
		m.events = append(m.events, dlm.Event{Kind: dlm.EventBlocking, Lock: x.l.id, Owner: x.l.owner, Mode: x.r.req, Blocked: x.r.id})
	}
}

// drop removes l from its resource and the model.
func (m *Model) drop(l *lock) {
	res := l.res
	res.granted = remove(res.granted, l)
	res.conv = remove(res.conv, l)
	res.wait = remove(res.wait, l)
	m.locks = remove(m.locks, l)
}

// cleanup deletes resources without locks and without child resources.
func (m *Model) cleanup() {
	for changed := true; changed; {
		changed = false
		for _, r := range m.res {
			if len(r.granted)+len(r.conv)+len(r.wait) > 0 {
				continue
			}
			hasChild := false
			for _, c := range m.res {
				if c.ls == r.ls && len(c.path) == len(r.path)+1 && slices.Equal(c.path[:len(r.path)], r.path) {
					hasChild = true
				}
			}
			if !hasChild {
				m.res = slices.DeleteFunc(m.res, func(x *resource) bool { return x == r })
				changed = true
				break
			}
		}
	}
}

// abort ends l's queued request with an event of the kind.
func (m *Model) abort(l *lock, kind dlm.EventKind) {
	m.events = append(m.events, dlm.Event{Kind: kind, Lock: l.id, Owner: l.owner, Mode: l.req})
	res := l.res
	if l.q == dlm.QueueWaiting {
		m.drop(l)
	} else {
		res.conv = remove(res.conv, l)
		res.granted = append(res.granted, l)
		l.q = dlm.QueueGranted
		l.req = l.granted
		l.seq = m.takeSeq()
		l.notified = nil
		l.pending = nil
	}
	m.regrant(res)
	m.cleanup()
}

// Unlock is dlm.Engine.Unlock.
func (m *Model) Unlock(id dlm.LockID, flags dlm.Flags, v *dlm.Value) ([]dlm.Event, error) {
	m.events = nil
	if flags&^dlm.ValBlk != 0 {
		return nil, bad(dlm.ErrInvalid, "flags")
	}
	if v != nil && flags&dlm.ValBlk == 0 {
		return nil, bad(dlm.ErrInvalid, "value without ValBlk")
	}
	l := m.get(id)
	if l == nil {
		return nil, bad(dlm.ErrUnknownLock, "no lock")
	}
	if l.q == dlm.QueueWaiting {
		m.abort(l, dlm.EventCanceled)
		m.tellBlockers()
		return m.events, nil
	}
	for _, c := range m.locks {
		if c.parent == id {
			return nil, bad(dlm.ErrHasChildren, "children")
		}
	}
	if l.q == dlm.QueueConverting {
		m.events = append(m.events, dlm.Event{Kind: dlm.EventCanceled, Lock: l.id, Owner: l.owner, Mode: l.req})
	}
	if v != nil && (l.granted == pw || l.granted == ex) {
		l.res.value = *v
		l.res.valid = true
	}
	m.drop(l)
	m.regrant(l.res)
	m.cleanup()
	m.tellBlockers()
	return m.events, nil
}

// Cancel is dlm.Engine.Cancel.
func (m *Model) Cancel(id dlm.LockID) ([]dlm.Event, error) {
	m.events = nil
	l := m.get(id)
	if l == nil {
		return nil, bad(dlm.ErrUnknownLock, "no lock")
	}
	if l.q == dlm.QueueGranted {
		return nil, bad(dlm.ErrWrongState, "granted")
	}
	m.abort(l, dlm.EventCanceled)
	m.tellBlockers()
	return m.events, nil
}

// PurgeOwner is dlm.Engine.PurgeOwner.
func (m *Model) PurgeOwner(o dlm.OwnerID, invalidate bool) []dlm.Event {
	return m.purge(func(x dlm.OwnerID) bool { return x == o }, invalidate)
}

// PurgeMember is dlm.Engine.PurgeMember.
func (m *Model) PurgeMember(member string, invalidate bool) []dlm.Event {
	return m.purge(func(x dlm.OwnerID) bool { return x.Member == member }, invalidate)
}

func (m *Model) purge(match func(dlm.OwnerID) bool, invalidate bool) []dlm.Event {
	m.events = nil
	var touched []*resource
	for _, l := range slices.Clone(m.locks) { // id order
		if !match(l.owner) {
			continue
		}
		if !slices.Contains(touched, l.res) {
			touched = append(touched, l.res)
		}
		if invalidate && l.q != dlm.QueueWaiting && (l.granted == pw || l.granted == ex) {
			l.res.valid = false
		}
		m.drop(l)
	}
	for _, r := range touched {
		m.regrant(r)
	}
	m.cleanup()
	m.tellBlockers()
	return m.events
}

// InvalidateValue is dlm.Engine.InvalidateValue.
func (m *Model) InvalidateValue(ls string, path []string) error {
	r := m.find(ls, path)
	if r == nil {
		return bad(dlm.ErrUnknownResource, "no resource")
	}
	r.valid = false
	return nil
}

// WaitEdges is dlm.Engine.WaitEdges, straight from its rules.
func (m *Model) WaitEdges(now time.Time) []dlm.Edge {
	type key struct {
		lock  dlm.LockID
		owner dlm.OwnerID
	}
	strong := map[key]bool{}
	add := func(w *lock, b *lock, s bool) {
		k := key{w.id, b.owner}
		strong[k] = strong[k] || s
	}
	var waiters []*lock
	for _, res := range m.res {
		for i, c := range res.conv {
			if !m.counts(c, now) {
				continue
			}
			waiters = append(waiters, c)
			for _, g := range res.all() {
				if g != c && !compatible(g.granted, c.req) {
					add(c, g, true)
				}
			}
			for j := 0; j < i; j++ {
				x := res.conv[j]
				if !compatible(x.req, c.req) {
					add(c, x, true)
				} else if j == i-1 {
					add(c, x, false)
				}
			}
		}
		for i, w := range res.wait {
			if !m.counts(w, now) {
				continue
			}
			waiters = append(waiters, w)
			for _, g := range res.all() {
				if !compatible(g.granted, w.req) {
					add(w, g, true)
				}
			}
			for _, x := range res.conv {
				add(w, x, !compatible(x.req, w.req))
			}
			for j := 0; j < i; j++ {
				y := res.wait[j]
				if !compatible(y.req, w.req) {
					add(w, y, true)
				} else if j == i-1 {
					add(w, y, false)
				}
			}
		}
	}
	var out []dlm.Edge
	for _, w := range waiters {
		for k, s := range strong {
			if k.lock != w.id || (k.owner == w.owner && !s) {
				continue
			}
			out = append(out, dlm.Edge{Waiter: w.owner, Blocker: k.owner, Lock: w.id, Seq: w.seq})
		}
	}
	slices.SortFunc(out, func(a, b dlm.Edge) int {
		if c := cmp.Compare(a.Lock, b.Lock); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Blocker.Member, b.Blocker.Member); c != 0 {
			return c
		}
		return cmp.Compare(a.Blocker.Client, b.Blocker.Client)
	})
	return out
}

func (m *Model) counts(l *lock, now time.Time) bool {
	return l.flags&dlm.NoDlckWt == 0 && now.Sub(l.since) >= m.wait
}

// FindDeadlocks is dlm.FindDeadlocks by reachability: an edge u->v is on a
// cycle when v reaches u; its deadlock is the set of owners that u reaches
// and that reach u.
func FindDeadlocks(edges []dlm.Edge) []dlm.LockID {
	reach := func(from, to dlm.OwnerID) bool {
		seen := map[dlm.OwnerID]bool{from: true}
		todo := []dlm.OwnerID{from}
		for len(todo) > 0 {
			x := todo[0]
			todo = todo[1:]
			if x == to {
				return true
			}
			for _, e := range edges {
				if e.Waiter == x && !seen[e.Blocker] {
					seen[e.Blocker] = true
					todo = append(todo, e.Blocker)
				}
			}
		}
		return false
	}
	// name a deadlock by its smallest owner
	name := func(u dlm.OwnerID) dlm.OwnerID {
		best := u
		for _, e := range edges {
			for _, o := range []dlm.OwnerID{e.Waiter, e.Blocker} {
				if reach(u, o) && reach(o, u) && (o.Member < best.Member || (o.Member == best.Member && o.Client < best.Client)) {
					best = o
				}
			}
		}
		return best
	}
	victim := map[dlm.OwnerID]dlm.Edge{}
	for _, e := range edges {
		if !reach(e.Blocker, e.Waiter) {
			continue
		}
		n := name(e.Waiter)
		v, ok := victim[n]
		if !ok || e.Seq > v.Seq || (e.Seq == v.Seq && e.Lock > v.Lock) {
			victim[n] = e
		}
	}
	var out []dlm.LockID
	for _, e := range victim {
		if !slices.Contains(out, e.Lock) {
			out = append(out, e.Lock)
		}
	}
	slices.Sort(out)
	return out
}

// Deadlock is dlm.Engine.Deadlock.
func (m *Model) Deadlock(now time.Time, id dlm.LockID) ([]dlm.Event, error) {
	m.events = nil
	l := m.get(id)
	if l == nil {
		return nil, bad(dlm.ErrUnknownLock, "no lock")
	}
	if l.q == dlm.QueueGranted {
		return nil, bad(dlm.ErrWrongState, "granted")
	}
	if l.flags&dlm.NoDlckWt != 0 {
		return nil, bad(dlm.ErrWrongState, "NoDlckWt")
	}
	if now.Sub(l.since) < m.wait {
		return nil, bad(dlm.ErrWrongState, "not long enough")
	}
	m.abort(l, dlm.EventDeadlock)
	m.tellBlockers()
	return m.events, nil
}

// Detect is dlm.Engine.Detect.
func (m *Model) Detect(now time.Time) []dlm.Event {
	m.events = nil
	for {
		v := FindDeadlocks(m.WaitEdges(now))
		if len(v) == 0 {
			return m.events
		}
		m.abort(m.get(v[0]), dlm.EventDeadlock)
		m.tellBlockers()
	}
}

// Export is dlm.Engine.Export.
func (m *Model) Export() dlm.Snapshot {
	rs := slices.Clone(m.res)
	slices.SortFunc(rs, func(a, b *resource) int {
		if c := cmp.Compare(a.ls, b.ls); c != 0 {
			return c
		}
		return slices.Compare(a.path, b.path)
	})
	s := dlm.Snapshot{NextLockID: m.nextID, TokenFloor: m.floor, Locks: []dlm.Record{}}
	for _, r := range rs {
		for _, q := range [][]*lock{r.granted, r.conv, r.wait} {
			for _, l := range q {
				rec := dlm.Record{
					ID: l.id, Lockspace: r.ls, Path: slices.Clone(r.path), Parent: l.parent, Owner: l.owner,
					Queue: l.q, Granted: l.granted, Requested: l.req, Flags: l.flags, Seq: l.seq,
					Value: r.value, ValueValid: r.valid, Token: r.token,
				}
				if l.pending != nil {
					v := *l.pending
					rec.PendingValue = &v
				}
				s.Locks = append(s.Locks, rec)
			}
		}
	}
	return s
}

// Import is dlm.Engine.Import for snapshots that hold together (the model
// checks only what the property test can produce: an empty model, unique
// ids, the limit).
func (m *Model) Import(now time.Time, sources ...dlm.Snapshot) ([]dlm.Event, error) {
	m.events = nil
	if len(m.locks) > 0 {
		return nil, bad(dlm.ErrWrongState, "not empty")
	}
	type item struct {
		rec      dlm.Record
		src, idx int
	}
	var items []item
	for si, s := range sources {
		for i, rec := range s.Locks {
			items = append(items, item{rec, si, i})
		}
	}
	if len(items) > m.maxLocks {
		return nil, bad(dlm.ErrLimit, "too many")
	}
	for i := range items {
		for j := 0; j < i; j++ {
			if items[i].rec.ID == items[j].rec.ID {
				return nil, bad(dlm.ErrInvalid, "duplicate id")
			}
		}
	}
	for _, s := range sources {
		m.nextID = max(m.nextID, s.NextLockID)
		m.floor = max(m.floor, s.TokenFloor)
	}
	for _, it := range items {
		m.nextID = max(m.nextID, it.rec.ID+1)
		m.nextSeq = max(m.nextSeq, it.rec.Seq+1)
		m.floor = max(m.floor, it.rec.Token)
	}
	var order []*resource
	byRes := map[*resource][]item{}
	for _, it := range items {
		r := m.find(it.rec.Lockspace, it.rec.Path)
		if r == nil {
			r = &resource{ls: it.rec.Lockspace, path: slices.Clone(it.rec.Path), value: it.rec.Value, valid: it.rec.ValueValid}
			m.res = append(m.res, r)
			order = append(order, r)
		}
		if len(byRes[r]) > 0 {
			first := byRes[r][0].rec
			if it.rec.Value != first.Value || it.rec.ValueValid != first.ValueValid {
				r.valid = false // the sources disagree
			}
		}
		r.token = max(r.token, it.rec.Token)
		byRes[r] = append(byRes[r], it)
	}
	for _, r := range order {
		its := byRes[r]
		slices.SortStableFunc(its, func(a, b item) int {
			if c := cmp.Compare(a.rec.Queue, b.rec.Queue); c != 0 {
				return c
			}
			if c := cmp.Compare(a.rec.Seq, b.rec.Seq); c != 0 {
				return c
			}
			if c := cmp.Compare(a.src, b.src); c != 0 {
				return c
			}
			return cmp.Compare(a.idx, b.idx)
		})
		for _, it := range its {
			rec := it.rec
			l := &lock{id: rec.ID, res: r, parent: rec.Parent, owner: rec.Owner, granted: rec.Granted, req: rec.Requested,
				q: rec.Queue, flags: rec.Flags, seq: rec.Seq, since: now}
			if rec.PendingValue != nil {
				v := *rec.PendingValue
				l.pending = &v
			}
			switch rec.Queue {
			case dlm.QueueGranted:
				l.req = l.granted
				r.granted = append(r.granted, l)
			case dlm.QueueConverting:
				r.conv = append(r.conv, l)
			case dlm.QueueWaiting:
				l.granted = nl
				r.wait = append(r.wait, l)
			}
			m.locks = append(m.locks, l)
		}
	}
	slices.SortFunc(m.locks, func(a, b *lock) int { return cmp.Compare(a.id, b.id) })
	for _, r := range order {
		m.regrant(r)
	}
	m.tellBlockers()
	return m.events, nil
}
