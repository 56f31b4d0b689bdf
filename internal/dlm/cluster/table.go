package cluster

import (
	"slices"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// LockInfo is one lock as a member knows it, for `vigil locks`.
type LockInfo struct {
	Lock      LockID
	Lockspace string
	Path      []string // root first
	Parent    LockID
	Owner     dlm.OwnerID
	// Queue: granted, converting or waiting; 0 for a request no master
	// has confirmed yet.
	Queue     dlm.Queue
	Granted   dlm.Mode
	Requested dlm.Mode
	Flags     dlm.Flags
	Seq       uint64
	// Token: on a master, the resource's last token; for a client's lock,
	// the token of its latest grant.
	Token uint64
	// Master: the member that masters the resource in this member's view.
	Master string
	// Pending: operations on the lock sent or held and not answered yet
	// (client's locks only).
	Pending int
}

// Table is what a member knows of the locks.
type Table struct {
	Member     string
	View       View
	Recovering bool // the recovery barrier of View is not over
	Quorum     bool
	Out        bool // this member is not in View
	// Mastered: every lock on the resources this member masters, in
	// resource order, each queue in order.
	Mastered []LockInfo
	// Held: the locks of this member's clients, by lock id.
	Held []LockInfo
}

// Locks returns the locks this member masters and those its clients hold.
func (n *Node) Locks() Table {
	t := Table{Member: n.self, View: n.view, Recovering: n.rec != nil, Quorum: n.quorum, Out: n.out}
	t.View.Members = slices.Clone(n.view.Members)
	for _, r := range n.eng.Export().Locks {
		info := LockInfo{Lock: LockID{Member: r.Owner.Member, N: r.Tag}, Lockspace: r.Lockspace, Path: r.Path, Owner: r.Owner, Queue: r.Queue,
			Granted: r.Granted, Requested: r.Requested, Flags: r.Flags, Seq: r.Seq, Token: r.Token, Master: n.self}
		if r.Parent != 0 {
			info.Parent = n.gid(r.Parent)
		}
		t.Mastered = append(t.Mastered, info)
	}
	count := map[LockID]int{}
	for _, p := range n.pending {
		if !p.moot {
			count[p.op.Lock]++
		}
	}
	for _, p := range n.reissue {
		count[p.op.Lock]++
	}
	for _, h := range n.held {
		if h.from == "" {
			count[h.op.Lock]++
		}
	}
	for _, ho := range n.handed {
		for _, h := range ho.queue {
			if h.from == "" {
				count[h.op.Lock]++
			}
		}
	}
	for _, id := range n.sortedIDs() {
		e := n.table.get(id)
		info := LockInfo{Lock: id, Lockspace: e.ls, Path: slices.Clone(e.path), Parent: e.parent, Owner: e.owner, Queue: e.q,
			Granted: e.granted, Requested: e.req, Flags: e.flags, Seq: e.seq, Token: e.token, Pending: count[id]}
		if n.hasView && !n.out {
			info.Master = e.at
			if info.Master == "" {
				info.Master = n.masterOf(Root{e.ls, e.path[0]})
			}
		}
		t.Held = append(t.Held, info)
	}
	return t
}

// OwnerOf returns the owner of one of this member's clients' locks.
func (n *Node) OwnerOf(id LockID) (dlm.OwnerID, bool) {
	e := n.table.get(id)
	if e == nil {
		return dlm.OwnerID{}, false
	}
	return e.owner, true
}
