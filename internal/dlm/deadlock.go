package dlm

import (
	"cmp"
	"slices"
	"time"
)

// Edge is one owner-level wait-for edge: Waiter's request on lock Lock
// cannot be granted before Blocker acts (releases, converts down or
// cancels).
type Edge struct {
	Waiter  OwnerID
	Blocker OwnerID
	Lock    LockID // the waiting lock
	Seq     uint64 // sequence number of the waiting request: larger is more recent
}

// WaitEdges returns the wait-for edges of every queued request that has
// waited at least Options.DeadlockWait at now and does not have NoDlckWt,
// sorted by (Lock, Blocker).
//
// A waiting new request waits for: every granted lock (converting ones at
// their granted mode) whose mode is incompatible with its requested mode;
// every queued conversion (the conversion queue must drain first); every
// waiting request ahead of it whose requested mode is incompatible; and the
// waiting request immediately ahead of it.
//
// A conversion waits for: every other granted lock (converting ones at
// their granted mode) incompatible with its requested mode; every
// conversion ahead of it whose requested mode is incompatible; and the
// conversion immediately ahead of it.
//
// The "immediately ahead" edges go beyond the plain rule: a request stuck
// behind a compatible request that is itself blocked would otherwise be on
// no edge, and a deadlock through it would never be found. The owner graph
// carries the wait on through that request's own edges. An edge that exists
// only by queue order (the one ahead is compatible) is left out when both
// requests have the same owner: an owner does not wait for itself by
// queueing twice. An owner waiting for an incompatible lock of its own is
// kept: that is a self-deadlock.
//
// The search is quadratic in the length of a resource's queues.
func (e *Engine) WaitEdges(now time.Time) []Edge {
	t := e.clock(now)
	var out []Edge
	var bs []blk
	for r := range e.contended {
		for c := r.conv.head; c != nil; c = r.conv.after(c) {
			if !e.eligible(c, t) {
				continue
			}
			bs = bs[:0]
			for g := r.granted.head; g != nil; g = r.granted.after(g) {
				if !Compatible(g.granted, c.req) {
					bs = append(bs, blk{g.owner.id, true})
				}
			}
			ahead := true
			for x := r.conv.head; x != nil; x = r.conv.after(x) {
				if x == c {
					ahead = false
					continue
				}
				strong := !Compatible(x.granted, c.req) || (ahead && !Compatible(x.req, c.req))
				if strong || (ahead && x.next == c) {
					bs = append(bs, blk{x.owner.id, strong})
				}
			}
			out = appendEdges(out, c, bs)
		}
		for w := r.waitq.head; w != nil; w = r.waitq.after(w) {
			if !e.eligible(w, t) {
				continue
			}
			bs = bs[:0]
			for g := r.granted.head; g != nil; g = r.granted.after(g) {
				if !Compatible(g.granted, w.req) {
					bs = append(bs, blk{g.owner.id, true})
				}
			}
			for x := r.conv.head; x != nil; x = r.conv.after(x) {
				bs = append(bs, blk{x.owner.id, !Compatible(x.granted, w.req) || !Compatible(x.req, w.req)})
			}
			for y := r.waitq.head; y != w; y = r.waitq.after(y) {
				strong := !Compatible(y.req, w.req)
				if strong || y.next == w {
					bs = append(bs, blk{y.owner.id, strong})
				}
			}
			out = appendEdges(out, w, bs)
		}
	}
	slices.SortFunc(out, func(a, b Edge) int {
		if c := cmp.Compare(a.Lock, b.Lock); c != 0 {
			return c
		}
		return compareOwner(a.Blocker, b.Blocker)
	})
	return out
}

type blk struct {
	o      OwnerID
	strong bool
}

func compareOwner(a, b OwnerID) int {
	if c := cmp.Compare(a.Member, b.Member); c != 0 {
		return c
	}
	return cmp.Compare(a.Client, b.Client)
}

// appendEdges appends one edge per distinct blocker owner of l.
func appendEdges(out []Edge, l *lock, bs []blk) []Edge {
	slices.SortFunc(bs, func(a, b blk) int { return compareOwner(a.o, b.o) })
	w := l.owner.id
	for i := 0; i < len(bs); {
		o, strong := bs[i].o, false
		for ; i < len(bs) && bs[i].o == o; i++ {
			strong = strong || bs[i].strong
		}
		if o == w && !strong {
			continue
		}
		out = append(out, Edge{Waiter: w, Blocker: o, Lock: l.id, Seq: l.seq})
	}
	return out
}

func (e *Engine) eligible(l *lock, t int64) bool {
	return l.flags&NoDlckWt == 0 && e.waited(l.w.since, t)
}

// FindDeadlocks returns one victim lock for every deadlock in the owner
// wait-for graph, in increasing lock id order. The graph's strongly
// connected components that contain a cycle (two owners or more, or an
// owner with an edge to itself) are the deadlocks; every edge inside such a
// component lies on a cycle. The victim of a component is the lock of its
// most recent waiting request: the inside edge with the largest Seq (then
// the largest Lock). Aborting one victim may leave another cycle in the same
// component: search again after aborting (Detect does).
func FindDeadlocks(edges []Edge) []LockID {
	if len(edges) == 0 {
		return nil
	}
	idx := make(map[OwnerID]int)
	node := func(o OwnerID) int {
		i, ok := idx[o]
		if !ok {
			i = len(idx)
			idx[o] = i
		}
		return i
	}
	from := make([]int, len(edges))
	to := make([]int, len(edges))
	for i, ed := range edges {
		from[i], to[i] = node(ed.Waiter), node(ed.Blocker)
	}
	n := len(idx)
	adj := make([][]int, n)
	for i := range edges {
		adj[from[i]] = append(adj[from[i]], to[i])
	}
	comp := tarjan(adj)
	best := make([]int, 0)
	bestOf := make(map[int]int) // component -> index in best
	for i, ed := range edges {
		c := comp[from[i]]
		if c != comp[to[i]] {
			continue
		}
		j, ok := bestOf[c]
		if !ok {
			bestOf[c] = len(best)
			best = append(best, i)
			continue
		}
		b := edges[best[j]]
		if ed.Seq > b.Seq || (ed.Seq == b.Seq && ed.Lock > b.Lock) {
			best[j] = i
		}
	}
	out := make([]LockID, 0, len(best))
	for _, i := range best {
		out = append(out, edges[i].Lock)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// tarjan returns the strongly connected component of every node
// (iterative, so deep graphs do not grow the stack).
func tarjan(adj [][]int) []int {
	n := len(adj)
	index := make([]int, n) // 0: not visited; else visit order + 1
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n)
	var stack []int
	type frame struct{ v, i int }
	var call []frame
	counter, ncomp := 0, 0
	visit := func(v int) {
		counter++
		index[v], low[v] = counter, counter
		stack = append(stack, v)
		onStack[v] = true
		call = append(call, frame{v, 0})
	}
	for s := range n {
		if index[s] != 0 {
			continue
		}
		visit(s)
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if f.i < len(adj[v]) {
				w := adj[v][f.i]
				f.i++
				if index[w] == 0 {
					visit(w)
				} else if onStack[w] && index[w] < low[v] {
					low[v] = index[w]
				}
				continue
			}
			if low[v] == index[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == v {
						break
					}
				}
				ncomp++
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				if u := call[len(call)-1].v; low[v] < low[u] {
					low[u] = low[v]
				}
			}
		}
	}
	return comp
}

// Deadlock aborts the queued request of a deadlock victim: it completes
// with EventDeadlock (a conversion leaves the lock granted at its old mode)
// and what can be granted then is. The request must still be waiting, must
// not have NoDlckWt, and must have waited at least Options.DeadlockWait at
// now; otherwise nothing changes and the error says why (the victim was
// probably chosen from an older graph).
func (e *Engine) Deadlock(now time.Time, id LockID) ([]Event, error) {
	const op = "deadlock"
	e.ev = e.ev[:0]
	l := e.locks[id]
	switch {
	case l == nil:
		return nil, fail(op, id, ErrUnknownLock, "lock %d does not exist (released, canceled or aborted already)", id)
	case l.q == QueueGranted:
		return nil, fail(op, id, ErrWrongState, "lock %d is granted at %v and waits for nothing: search the wait-for graph again", id, l.granted)
	case l.flags&NoDlckWt != 0:
		return nil, fail(op, id, ErrWrongState, "lock %d waits with NoDlckWt: it is never a deadlock victim", id)
	case !e.waited(l.w.since, e.clock(now)):
		return nil, fail(op, id, ErrWrongState, "lock %d has waited less than the deadlock wait (%v): search the wait-for graph again", id, e.opts.DeadlockWait)
	}
	e.abort(l, EventDeadlock)
	e.flush()
	return e.ev, nil
}

// Detect is deadlock detection on this master alone: WaitEdges,
// FindDeadlocks, then Deadlock of the first victim (lowest lock id),
// repeated until no cycle is left. It returns the events of all of it.
func (e *Engine) Detect(now time.Time) []Event {
	e.ev = e.ev[:0]
	for range len(e.locks) + 1 {
		v := FindDeadlocks(e.WaitEdges(now))
		if len(v) == 0 {
			break
		}
		e.abort(e.locks[v[0]], EventDeadlock)
		e.flush()
	}
	return e.ev
}
