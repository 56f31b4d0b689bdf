package dlm

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Record is one lock as Export reports it and Import takes it.
type Record struct {
	ID        LockID
	Lockspace string
	// Path names the resource: its root's name first, its own name last.
	Path []string
	// Parent is the parent lock (0 for a lock on a root resource). It is
	// on the resource Path[:len(Path)-1], with the same owner.
	Parent LockID
	Owner  OwnerID
	Queue  Queue
	// Granted is the granted mode (Queue granted or converting; NL for a
	// waiting request).
	Granted Mode
	// Requested is the mode asked for (converting or waiting; equal to
	// Granted for a granted lock).
	Requested Mode
	// Flags are those of the lock's latest accepted request.
	Flags Flags
	// Seq orders each queue: the sequence number of the request (converting,
	// waiting) or of the lock's latest grant (granted).
	Seq uint64
	// Tag is the caller's tag of the lock (Request.Tag).
	Tag uint64
	// PendingValue is the value a queued conversion writes when granted.
	PendingValue *Value
	// Value, ValueValid and Token are the resource's: its value block and
	// the last fencing token issued for it. Every record of a resource
	// carries them.
	Value      Value
	ValueValid bool
	Token      uint64
}

// Snapshot is everything an engine holds, from Export.
type Snapshot struct {
	// NextLockID is the lock id the engine would assign next.
	NextLockID LockID
	// TokenFloor is the highest fencing token the engine has issued or
	// imported: a resource created later counts on from it.
	TokenFloor uint64
	// Locks are sorted by (Lockspace, Path), then granted queue, conversion
	// queue and waiting queue, each in queue order. A parent lock is
	// always before its sub-locks.
	Locks []Record
}

func (l *lock) record(path []string) Record {
	r := l.res
	rec := Record{
		ID:         l.id,
		Lockspace:  r.ls.name,
		Path:       path,
		Owner:      l.owner.id,
		Queue:      l.q,
		Granted:    l.granted,
		Requested:  l.req,
		Flags:      l.flags,
		Seq:        l.seq,
		Tag:        l.tag,
		ValueValid: !r.invalid,
		Token:      r.token,
	}
	if l.parent != nil {
		rec.Parent = l.parent.id
	}
	if l.q == QueueWaiting {
		rec.Granted = NL
	}
	if l.w != nil && l.w.value != nil {
		v := *l.w.value
		rec.PendingValue = &v
	}
	if r.val != nil {
		rec.Value = *r.val
	}
	return rec
}

// Export returns every lock of the engine, in an order that Import on an
// empty engine reproduces exactly (queues and their order, sequence
// numbers, value blocks, tokens, lock ids). Which blocking notifications
// were sent, and how long requests have waited, are not exported.
func (e *Engine) Export() Snapshot {
	type res struct {
		ls   string
		path []string
		r    *resource
	}
	var all []res
	var walk func(r *resource)
	walk = func(r *resource) {
		all = append(all, res{r.ls.name, r.path(), r})
		for _, k := range r.kids {
			walk(k)
		}
	}
	for _, ls := range e.spaces {
		for _, r := range ls.roots {
			walk(r)
		}
	}
	slices.SortFunc(all, func(a, b res) int {
		if c := cmp.Compare(a.ls, b.ls); c != 0 {
			return c
		}
		return slices.Compare(a.path, b.path)
	})
	s := Snapshot{NextLockID: e.nextID, TokenFloor: e.floor, Locks: make([]Record, 0, len(e.locks))}
	for _, x := range all {
		for _, q := range []*list{&x.r.granted, &x.r.conv, &x.r.waitq} {
			for l := q.head; l != nil; l = q.after(l) {
				s.Locks = append(s.Locks, l.record(x.path))
			}
		}
	}
	return s
}

type importItem struct {
	rec      *Record
	src, idx int
}

type importGroup struct {
	ls    string
	path  []string
	items []*importItem
	first *Record // the group's first record in argument order
	r     *resource
}

// Import loads the locks of one or more snapshots into an engine that holds
// no lock (a new master after recovery), then grants what can be granted and
// sends the blocking notifications of every waiting request again. It
// returns the events of that regrant step. Queued requests start their
// deadlock wait at now.
//
// Merging several snapshots (the survivors' locks from several old
// masters): records are grouped by resource (Lockspace, Path), and each
// queue is ordered by (Seq, snapshot index, position in the snapshot), so
// the relative order of each source's queue is kept; sequence numbers of
// different sources are not comparable, so where sources overlap on one
// resource their requests interleave by Seq value. Lock ids are kept and
// must be unique across the snapshots (renumber ID and Parent of a source
// first if they are not). Each resource takes the largest Token of its
// records; its value block is the one its records agree on, or, if they
// disagree, the first record's, marked not valid. The engine continues
// from the largest NextLockID, TokenFloor and Seq of the import.
//
// The import is checked whole first: on error nothing changed.
// Regranting visits the resources in the order their first record appears
// (snapshots in argument order).
func (e *Engine) Import(now time.Time, sources ...Snapshot) ([]Event, error) {
	const op = "import"
	e.ev = e.ev[:0]
	if len(e.locks) > 0 {
		return nil, fail(op, 0, ErrWrongState, "the engine already holds %d locks: import into a new engine", len(e.locks))
	}
	n := 0
	for _, s := range sources {
		n += len(s.Locks)
	}
	if n > e.opts.MaxLocks {
		return nil, fail(op, 0, ErrLimit, "the import has %d locks, more than Options.MaxLocks (%d)", n, e.opts.MaxLocks)
	}
	items := make([]importItem, 0, n)
	byID := make(map[LockID]*importItem, n)
	for si := range sources {
		for i := range sources[si].Locks {
			items = append(items, importItem{rec: &sources[si].Locks[i], src: si, idx: i})
		}
	}
	for i := range items {
		it := &items[i]
		if err := checkRecord(it); err != nil {
			return nil, err
		}
		if prev := byID[it.rec.ID]; prev != nil {
			return nil, fail(op, it.rec.ID, ErrInvalid, "lock id %d appears twice (snapshot %d record %d and snapshot %d record %d): lock ids must be unique across the snapshots; renumber ID and Parent of one source", it.rec.ID, prev.src, prev.idx, it.src, it.idx)
		}
		byID[it.rec.ID] = it
	}
	groups := make(map[string]*importGroup)
	var order []*importGroup
	var kb strings.Builder
	for i := range items {
		it := &items[i]
		rec := it.rec
		if rec.Parent != 0 {
			p := byID[rec.Parent]
			switch {
			case p == nil:
				return nil, fail(op, rec.ID, ErrInvalid, "lock %d names parent lock %d, which is not in the import", rec.ID, rec.Parent)
			case p.rec.Lockspace != rec.Lockspace || p.rec.Owner != rec.Owner:
				return nil, fail(op, rec.ID, ErrInvalid, "lock %d (%v in %q) has parent lock %d of another owner or lockspace (%v in %q)", rec.ID, rec.Owner, rec.Lockspace, rec.Parent, p.rec.Owner, p.rec.Lockspace)
			case p.rec.Queue == QueueWaiting:
				return nil, fail(op, rec.ID, ErrInvalid, "lock %d has parent lock %d, which is not granted", rec.ID, rec.Parent)
			case !slices.Equal(p.rec.Path, rec.Path[:len(rec.Path)-1]):
				return nil, fail(op, rec.ID, ErrInvalid, "lock %d on %q has parent lock %d on %q, which is not its parent resource", rec.ID, strings.Join(rec.Path, "/"), rec.Parent, strings.Join(p.rec.Path, "/"))
			}
		} else if len(rec.Path) != 1 {
			return nil, fail(op, rec.ID, ErrInvalid, "lock %d is on sub-resource %q but has no parent lock", rec.ID, strings.Join(rec.Path, "/"))
		}
		kb.Reset()
		writeKey(&kb, rec.Lockspace)
		for _, p := range rec.Path {
			writeKey(&kb, p)
		}
		k := kb.String()
		g := groups[k]
		if g == nil {
			g = &importGroup{ls: rec.Lockspace, path: rec.Path, first: rec}
			groups[k] = g
			order = append(order, g)
		}
		g.items = append(g.items, it)
	}
	for _, g := range order {
		slices.SortStableFunc(g.items, func(a, b *importItem) int {
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
		var held [NumModes]*Record
		for _, it := range g.items {
			if it.rec.Queue == QueueWaiting {
				continue
			}
			for m, h := range held {
				if h != nil && !Compatible(Mode(m), it.rec.Granted) {
					return nil, fail(op, it.rec.ID, ErrInvalid, "locks %d (%v) and %d (%v) on %q in %q are both granted and incompatible: the sources disagree; import only consistent snapshots", h.ID, h.Granted, it.rec.ID, it.rec.Granted, strings.Join(g.path, "/"), g.ls)
				}
			}
			if held[it.rec.Granted] == nil {
				held[it.rec.Granted] = it.rec
			}
		}
	}

	// Everything is checked: build.
	for _, s := range sources {
		e.nextID = max(e.nextID, s.NextLockID)
		e.floor = max(e.floor, s.TokenFloor)
	}
	for i := range items {
		rec := items[i].rec
		e.nextID = max(e.nextID, rec.ID+1)
		e.nextSeq = max(e.nextSeq, rec.Seq+1)
		e.floor = max(e.floor, rec.Token)
	}
	// Parents' resources first: sort a copy by depth.
	byDepth := slices.Clone(order)
	slices.SortStableFunc(byDepth, func(a, b *importGroup) int { return cmp.Compare(len(a.path), len(b.path)) })
	for _, g := range byDepth {
		g.r = e.importResource(g)
	}
	t := e.clock(now)
	made := make(map[LockID]*lock, n)
	for _, g := range order {
		for _, it := range g.items {
			rec := it.rec
			l := &lock{id: rec.ID, res: g.r, flags: rec.Flags, seq: rec.Seq, q: rec.Queue, granted: rec.Granted, req: rec.Requested, tag: rec.Tag}
			o := e.owners[rec.Owner]
			if o == nil {
				o = e.newOwner(rec.Owner)
			}
			l.owner = o
			o.add(l)
			e.locks[l.id] = l
			made[l.id] = l
			switch rec.Queue {
			case QueueGranted:
				l.req = l.granted
				g.r.granted.push(l)
				g.r.counts[l.granted]++
			case QueueConverting:
				g.r.conv.push(l)
				g.r.counts[l.granted]++
			case QueueWaiting:
				l.granted = NL
				g.r.waitq.push(l)
			}
			if rec.Queue != QueueGranted {
				l.w = newWait(t)
				if rec.PendingValue != nil {
					v := *rec.PendingValue
					l.w.value = &v
				}
				e.markQueued(g.r)
			}
		}
	}
	for _, l := range made {
		if id := byID[l.id].rec.Parent; id != 0 {
			l.parent = made[id]
			l.parent.children++
		}
	}
	for _, g := range order {
		e.regrant(g.r)
	}
	for r := range e.contended {
		for _, q := range []*list{&r.conv, &r.waitq} {
			for l := q.head; l != nil; l = q.after(l) {
				e.blockedBy(l)
			}
		}
	}
	e.flush()
	return e.ev, nil
}

func writeKey(b *strings.Builder, s string) {
	b.WriteByte(byte(len(s)))
	b.WriteString(s)
}

func (e *Engine) importResource(g *importGroup) *resource {
	first := g.first
	r := &resource{name: g.path[len(g.path)-1], depth: uint8(len(g.path))}
	var token uint64
	for _, it := range g.items {
		token = max(token, it.rec.Token)
		if it.rec.Value != first.Value || it.rec.ValueValid != first.ValueValid {
			r.invalid = true
		}
	}
	r.token = token
	if !first.ValueValid {
		r.invalid = true
	}
	if first.Value != (Value{}) {
		v := first.Value
		r.val = &v
	}
	ls := e.spaces[g.ls]
	if ls == nil {
		ls = e.newSpace(g.ls)
	}
	r.ls = ls
	if len(g.path) == 1 {
		ls.roots[r.name] = r
		return r
	}
	p := e.find(g.ls, g.path[:len(g.path)-1])
	r.parent = p
	if p.kids == nil {
		p.kids = make(map[string]*resource)
	}
	p.kids[r.name] = r
	return r
}

func checkRecord(it *importItem) error {
	rec := it.rec
	bad := func(format string, args ...any) error {
		return fail("import", rec.ID, ErrInvalid, "snapshot %d record %d (lock %d): "+format, append([]any{it.src, it.idx, rec.ID}, args...)...)
	}
	switch {
	case rec.ID == 0:
		return bad("lock id 0 is never a lock")
	case rec.Owner.Member == "":
		return bad("the owner has no member name")
	case rec.Lockspace == "" || len(rec.Lockspace) > MaxNameLen:
		return bad("%s", nameErr("lockspace", rec.Lockspace))
	case len(rec.Path) == 0 || len(rec.Path) > MaxDepth:
		return bad("the resource path has %d names: it must have 1 to %d", len(rec.Path), MaxDepth)
	case rec.Queue < QueueGranted || rec.Queue > QueueWaiting:
		return bad("unknown queue %d", uint8(rec.Queue))
	case rec.Flags&^allFlags != 0:
		return bad("unknown flag bits %#x", uint16(rec.Flags&^allFlags))
	case rec.Queue != QueueWaiting && !rec.Granted.Valid():
		return bad("unknown granted mode %d", uint8(rec.Granted))
	case rec.Queue != QueueGranted && !rec.Requested.Valid():
		return bad("unknown requested mode %d", uint8(rec.Requested))
	case rec.PendingValue != nil && rec.Queue != QueueConverting:
		return bad("only a converting lock can have a pending value")
	}
	for _, n := range rec.Path {
		if n == "" || len(n) > MaxNameLen {
			return bad("%s", nameErr("resource", n))
		}
	}
	return nil
}
