package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/dlmclient"
	"github.com/vigil-cluster/vigil/internal/cdb"
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

// probeLockspace holds the probe's locks, apart from the applications': in
// a fixed lockspace, so that each stays on its hash master; with
// LockProbeRequest.Handoff in handLockspace, where they move to the
// probing member.
const (
	probeLockspace = cluster.FixedPrefix + "vigil-probe"
	handLockspace  = "vigil-probe"
)

// ProbeLocks times the lock manager from this member (POST
// /v1/locks/probe): sessions in this process take and release EX locks on
// resources mastered by each member in turn. It is what an application
// linked with the agent would see (dlmclient.Local); the socket adds its
// own round trip.
func (a *Agent) ProbeLocks(ctx context.Context, r client.LockProbeRequest) ([]client.LockProbe, error) {
	switch {
	case r.N < 0 || r.N > client.MaxProbeLocks:
		return nil, cdb.Refuse(cdb.ErrInvalid, "n is %d: give 1 to %d locks per worker and master (0: 2000)", r.N, client.MaxProbeLocks)
	case r.Workers < 0 || r.Workers > client.MaxProbeWorkers:
		return nil, cdb.Refuse(cdb.ErrInvalid, "workers is %d: give 1 to %d (0: 1)", r.Workers, client.MaxProbeWorkers)
	}
	if r.N == 0 {
		r.N = 2000
	}
	if r.Workers == 0 {
		r.Workers = 1
	}
	v := a.dlm.View()
	view := cluster.View{Number: v.Number, Members: v.Names()}
	if !view.Has(a.cfg.Name) {
		return nil, cdb.Refuse(cdb.ErrRefused, "%s is not in the lock manager's view %d %v yet: probe again once it is (see `vigil locks`)", a.cfg.Name, v.Number, view.Members)
	}
	masters := r.Masters
	if len(masters) == 0 {
		masters = view.Members
	}
	for _, m := range masters {
		if !view.Has(m) {
			return nil, cdb.Refuse(cdb.ErrInvalid, "%q is not a member of the lock manager's view %d %v: name one of them", m, v.Number, view.Members)
		}
	}
	var out []client.LockProbe
	for _, m := range masters {
		p := a.probeMaster(ctx, view, m, r.N, r.Workers, r.Handoff)
		out = append(out, p)
	}
	return out, nil
}

// probeMaster runs one master's part of a probe.
func (a *Agent) probeMaster(ctx context.Context, view cluster.View, master string, n, workers int, handoff bool) client.LockProbe {
	p := client.LockProbe{From: a.cfg.Name, Master: master, Workers: workers, Handoff: handoff}
	ls := probeLockspace
	if handoff {
		ls = handLockspace
	}
	lats := make([][]time.Duration, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lats[w], errs[w] = a.probeWorker(ctx, view, ls, master, w, n)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for w := range workers {
		if errs[w] != nil && p.Error == "" {
			p.Error = errs[w].Error()
		}
		all = append(all, lats[w]...)
	}
	p.Locks = len(all)
	if len(all) == 0 {
		return p
	}
	slices.Sort(all)
	us := func(q float64) float64 {
		return float64(all[int(float64(len(all)-1)*q)]) / float64(time.Microsecond)
	}
	p.P50US, p.P90US, p.P99US = us(0.5), us(0.9), us(0.99)
	p.PairsPerSec = float64(len(all)) / elapsed.Seconds()
	return p
}

// probeWorker takes and releases n EX locks, one at a time, on 16
// resources of its own in lockspace ls whose hash master is master.
func (a *Agent) probeWorker(ctx context.Context, view cluster.View, ls, master string, w, n int) ([]time.Duration, error) {
	c, err := dlmclient.Local(a.dlm)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var names []string
	for i := 0; len(names) < 16; i++ {
		name := fmt.Sprintf("%s-%s-%d-%d", a.cfg.Name, master, w, i)
		if cluster.Master(view, ls, name) == master {
			names = append(names, name)
		}
	}
	lats := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		l, err := c.Lock(ctx, names[i%len(names)], dlmclient.EX, dlmclient.Lockspace(ls))
		if err != nil {
			return lats, fmt.Errorf("lock %d of %d on a resource of %s: %w", i+1, n, master, err)
		}
		lats = append(lats, time.Since(t0))
		if err := l.Unlock(ctx); err != nil {
			return lats, fmt.Errorf("unlock %d of %d on a resource of %s: %w", i+1, n, master, err)
		}
	}
	return lats, nil
}
