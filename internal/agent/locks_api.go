package agent

import (
	"context"
	"strings"
	"sync"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/rpc"
)

// Locks asks every member of the cluster what it knows of the locks (for
// `vigil locks`), in parallel; a member that cannot be asked is listed with
// the reason.
func (a *Agent) Locks(ctx context.Context) []client.LockTable {
	names := a.store.State().MemberNames()
	out := make([]client.LockTable, len(names))
	var wg sync.WaitGroup
	for i, m := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m == a.cfg.Name {
				out[i] = lockTable(a.dlm.Locks())
				return
			}
			var t cluster.Table
			if err := a.callMember(ctx, m, "DLMLocks", &rpc.Empty{}, &t); err != nil {
				out[i] = client.LockTable{Member: m, Error: err.Error()}
				return
			}
			out[i] = lockTable(t)
		}()
	}
	wg.Wait()
	return out
}

func lockTable(t cluster.Table) client.LockTable {
	lt := client.LockTable{Member: t.Member, View: t.View.Number, Members: t.View.Members, Recovering: t.Recovering,
		Quorum: t.Quorum, Out: t.Out, Mastered: []client.LockInfo{}, Held: []client.LockInfo{}}
	if lt.Members == nil {
		lt.Members = []string{}
	}
	for _, l := range t.Mastered {
		lt.Mastered = append(lt.Mastered, lockInfo(l))
	}
	for _, l := range t.Held {
		lt.Held = append(lt.Held, lockInfo(l))
	}
	return lt
}

func lockInfo(l cluster.LockInfo) client.LockInfo {
	li := client.LockInfo{Lock: l.Lock.String(), Lockspace: l.Lockspace, Resource: l.Path, Owner: l.Owner.String(),
		Token: l.Token, Master: l.Master, Pending: l.Pending}
	if !l.Parent.IsZero() {
		li.Parent = l.Parent.String()
	}
	if l.Queue != 0 {
		li.Queue = l.Queue.String()
		if l.Queue != dlm.QueueWaiting {
			li.Granted = l.Granted.String()
		}
		if l.Queue != dlm.QueueGranted {
			li.Requested = l.Requested.String()
		}
	} else {
		li.Requested = l.Requested.String()
	}
	if l.Flags != 0 {
		li.Flags = strings.ToLower(l.Flags.String())
	}
	return li
}
