package cluster

import (
	"slices"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// Edge is one owner-level wait-for edge reported by the master of the
// waiting lock (see dlm.Edge). Seq orders the requests of one master only.
type Edge struct {
	Waiter  dlm.OwnerID
	Blocker dlm.OwnerID
	Lock    LockID // the waiting lock
	Seq     uint64 // its master's sequence number: larger is more recent
	Master  string // the member that masters Lock
}

// WaitEdges returns the wait-for edges of the resources this member
// masters (dlm.Engine.WaitEdges), with cluster lock ids. The director
// gathers them from every member, runs FindDeadlocks on the union and
// calls AbortDeadlock for each victim.
func (n *Node) WaitEdges(now time.Time) []Edge {
	evs := n.eng.WaitEdges(now)
	out := make([]Edge, 0, len(evs))
	for _, e := range evs {
		g, ok := n.gidOK(e.Lock)
		if !ok {
			continue
		}
		out = append(out, Edge{Waiter: e.Waiter, Blocker: e.Blocker, Lock: g, Seq: e.Seq, Master: n.self})
	}
	return out
}

// FindDeadlocks returns one victim for every deadlock in the union of the
// members' wait-for edges (dlm.FindDeadlocks on the owner graph), in lock
// id order. Within a deadlock the victim is the request with the largest
// Seq, then the largest lock id; Seq values of different masters are not
// comparable, so across masters the choice is arbitrary but the same for
// the same edges.
func FindDeadlocks(edges []Edge) []LockID {
	if len(edges) == 0 {
		return nil
	}
	ids := make([]LockID, 0, len(edges))
	for _, e := range edges {
		ids = append(ids, e.Lock)
	}
	slices.SortFunc(ids, compareID)
	ids = slices.Compact(ids)
	num := func(g LockID) dlm.LockID {
		i, _ := slices.BinarySearchFunc(ids, g, compareID)
		return dlm.LockID(i + 1)
	}
	de := make([]dlm.Edge, len(edges))
	for i, e := range edges {
		de[i] = dlm.Edge{Waiter: e.Waiter, Blocker: e.Blocker, Lock: num(e.Lock), Seq: e.Seq}
	}
	vs := dlm.FindDeadlocks(de)
	out := make([]LockID, len(vs))
	for i, v := range vs {
		out[i] = ids[v-1]
	}
	return out
}

// AbortDeadlock aborts the queued request of a deadlock victim on its
// master: here if this member masters it (the engine's error is returned:
// the victim may have been granted since), otherwise it is sent to the
// master (through the lock's member, which knows where its locks are).
// The victim's owner gets EventDeadlock. While the lock manager recovers
// it returns ErrRecovering: search again later.
func (n *Node) AbortDeadlock(now time.Time, id LockID) ([]Event, error) {
	const name = "deadlock"
	if n.out {
		return nil, n.notMember(name)
	}
	if !n.Ready() {
		return nil, fail(name, id, ErrRecovering, "the lock manager is rebuilding view %v or has no quorum: search for deadlocks again when it is done", n.view)
	}
	op := Op{Kind: OpDeadlock, Lock: id}
	if _, ok := n.byG[id]; ok {
		return n.applyOp(now, n.self, &op)
	}
	unknown := fail(name, id, dlm.ErrUnknownLock, "lock %v is not queued on any master this member knows: search again", id)
	switch {
	case id.Member == n.self:
		e := n.table.get(id)
		if e == nil {
			return nil, unknown
		}
		m := e.at
		if m == n.self || m == "" {
			return nil, unknown
		}
		n.send(m, Message{Kind: MsgRequest, Op: &op})
	case n.view.Has(id.Member):
		n.send(id.Member, Message{Kind: MsgRequest, Op: &op})
	default:
		return nil, unknown
	}
	return nil, nil
}
