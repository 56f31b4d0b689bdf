package agent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
	"github.com/vigil-cluster/vigil/internal/rpc"
)

// The lock manager in the agent (docs/DLM.md): the server holds this
// member's Node; the director keeps its view in the CDB; this member feeds
// it that view and the quorum its lease gives.

// startDLM creates the lock manager. Its view and quorum come from dlmLoop.
func (a *Agent) startDLM() error {
	nc := cluster.DefaultConfig()
	nc.Logger = a.baseLog // the Node adds the member itself
	s, err := server.New(server.Config{Member: a.cfg.Name, Dial: a.dlmDial, Logger: a.log, Node: nc,
		AckTimeout: max(a.prof.Renew, 200*time.Millisecond)})
	if err != nil {
		return err
	}
	a.dlm = s
	sock := filepath.Join(a.dir, DLMSocketFile)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("lock manager socket %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("lock manager socket %s: %w", sock, err)
	}
	spin, _ := a.cfg.DLMSpinD() // checked with the configuration
	socket.Spin.Store(int64(spin))
	a.dlmGRPC = socket.Serve(ln, s, a.log)
	return nil
}

// serveDLMConns serves the lock manager connections of one cluster port.
func (a *Agent) serveDLMConns(m *rpc.Mux) {
	for {
		c, err := m.AcceptDLM()
		if err != nil {
			return
		}
		go func() {
			if err := rpc.ServeDLM(c, a.dlm.Receive); err != nil {
				a.log.Debug("dlm: a peer's connection ended", "from", c.RemoteAddr(), "err", err)
			}
		}()
	}
}

// stopDLM ends the lock manager's sessions and its socket.
func (a *Agent) stopDLM() {
	if a.dlmGRPC != nil {
		a.dlmGRPC.Stop()
		os.Remove(filepath.Join(a.dir, DLMSocketFile))
	}
	if a.dlm != nil {
		a.dlm.Close()
	}
}

// dlmAddrs returns the cluster port of every link of member m, the
// interconnect first.
func (a *Agent) dlmAddrs(m string) []string {
	var out []string
	a.store.View(func(s *cdb.State) {
		if mm, ok := s.Members[m]; ok {
			for _, l := range mm.Links {
				out = append(out, config.RPCAddress(l))
			}
		}
	})
	return out
}

// dlmDial opens a stream of lock manager batches to member to, over the
// link that worked last; a failed or silent stream moves to the next link.
func (a *Agent) dlmDial(ctx context.Context, to string) (server.Link, error) {
	addrs := a.dlmAddrs(to)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s is not a member", to)
	}
	a.dlmLinkMu.Lock()
	if a.dlmLink == nil {
		a.dlmLink = map[string]int{}
	}
	// Each dial after the first of a stream's life tries the next link:
	// the stream is dialed again only when the last one failed.
	i := a.dlmLink[to] % len(addrs)
	a.dlmLink[to] = i + 1
	a.dlmLinkMu.Unlock()
	return a.pool.DialDLM(ctx, addrs[i], max(a.prof.Renew, 200*time.Millisecond))
}

// dlmLoop keeps the lock manager in step with the view in the CDB and with
// this member's lease: without a valid lease it grants nothing; when the
// lease is about to end without a renewal its clients are told that their
// locks are lost (the survivors purge them once the lease is certainly
// over) and the lock manager takes a new incarnation (server.Lose), so it
// never grants on a view that may have dropped it without its knowing.
func (a *Agent) dlmLoop(ctx context.Context) {
	tick := time.NewTicker(min(a.prof.Lease/20, 50*time.Millisecond))
	defer tick.Stop()
	quorum, lost := false, false
	lastSweep := time.Now()
	for {
		if time.Since(lastSweep) >= time.Second {
			a.dlm.Sweep()
			lastSweep = time.Now()
		}
		var v *cdb.DLMView
		a.store.View(func(s *cdb.State) {
			if s.DLMView != nil {
				c := *s.DLMView
				c.Members = maps.Clone(s.DLMView.Members)
				v = &c
			}
		})
		if v != nil && v.Number > a.dlm.View().Number {
			if err := a.dlm.SetView(server.View{Number: v.Number, Members: v.Members}); err != nil {
				a.log.Warn("dlm: view refused", "view", v.Number, "err", err)
			}
		}
		valid, mustAbort, abortAt := a.leaseAbort()
		switch {
		case valid && !mustAbort:
			// Quorum until the lease says abort: should this loop not run
			// by then (a stopped process, a starved host), the lock
			// manager stops granting by itself.
			lost = false
			a.dlm.SetQuorumUntil(abortAt)
			quorum = true
		case mustAbort && !lost:
			if n := a.dlm.Lose("the lease of " + a.cfg.Name + " is ending without a renewal (it lost contact with the director)"); n > 0 {
				a.log.Warn("dlm: this member's lease is ending: its clients were told their locks are lost", "locks", n)
			}
			lost, quorum = true, false
		case !valid && quorum:
			a.dlm.SetQuorum(false)
			quorum = false
		}
		if !a.wait(ctx, tick.C, a.dlmKick) {
			return
		}
	}
}

// nextDLMView works out the lock manager's view from the current one and
// what the director knows of the members (DESIGN.md invariant 3):
//   - a member stays while it may still hold a lease: until it is fenced
//     (and not UP) or its lease has certainly run out (certainAt); with a
//     zero lease (no-quorum-policy=freeze) only a fence frees it;
//   - a member whose lock manager restarted (it renews with another
//     incarnation) leaves at once: its old process is gone with its
//     clients; it comes back in the next view;
//   - a member joins once it renews its lease with an incarnation.
//
// It returns nil when the view stays as it is.
func nextDLMView(cur *cdb.DLMView, st *cdb.State, live map[string]bool, incs func(string) uint64,
	certainlyOver func(string) bool, fenced func(string) bool) *cdb.DLMView {
	want := map[string]uint64{}
	for _, n := range st.MemberNames() {
		reported := incs(n)
		if cur != nil {
			if inc, ok := cur.Members[n]; ok {
				switch {
				case live[n] && reported != 0 && reported != inc:
				case fenced(n) && !live[n]:
				case !live[n] && certainlyOver(n):
				default:
					want[n] = inc
				}
				continue
			}
		}
		if live[n] && reported != 0 {
			want[n] = reported
		}
	}
	if cur != nil && maps.Equal(cur.Members, want) {
		return nil
	}
	if cur == nil && len(want) == 0 {
		return nil
	}
	next := &cdb.DLMView{Number: 1, Members: want}
	if cur != nil {
		next.Number = cur.Number + 1
	}
	return next
}

// dlmViewOnce writes the next lock manager view, if it changed. The
// director calls it every tick.
func (a *Agent) dlmViewOnce(ctx context.Context, st *cdb.State, now, termStart time.Time, renewals map[string]time.Time) {
	live := map[string]bool{}
	for n, at := range renewals {
		live[n] = now.Sub(at) < a.prof.Lease
	}
	live[a.cfg.Name] = true
	certain := time.Duration(float64(a.prof.Lease) * leaseDrift)
	lease := a.prof.Lease
	if st.Settings["no-quorum-policy"] == "freeze" && len(st.Fencing) > 0 {
		lease = 0
	}
	over := func(n string) bool {
		if lease == 0 {
			return false
		}
		from := termStart
		if r := renewals[n]; r.After(from) {
			from = r
		}
		return !now.Before(from.Add(certain))
	}
	// A fence counts only if it happened in this term. (A member's record
	// is cleared before it gets a lease after its fence, so an older record
	// is not stale either; this rule is the stricter of the two.)
	fenced := func(n string) bool {
		rec, ok := st.FencedMembers[n]
		return ok && rec.At.After(termStart)
	}
	incs := func(n string) uint64 {
		if n == a.cfg.Name {
			return a.dlm.Incarnation()
		}
		return a.term.dlmInc(n)
	}
	next := nextDLMView(st.DLMView, st, live, incs, over, fenced)
	if next == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, a.prof.ApplyTimeout)
	defer cancel()
	if _, _, err := a.store.Apply(cctx, &cdb.Command{Op: cdb.OpDLMView, At: now.UTC(), By: "director", DLMView: next}); err != nil {
		a.log.Warn("director: writing the lock manager view", "view", next.Number, "err", err)
		return
	}
	a.log.Info("director: lock manager view", "view", next.Number, "members", next.Names())
}

// dlmDeadlockLoop searches the cluster-wide wait-for graph while this member
// is the director: it gathers every member's edges, finds one victim per
// cycle and has the victim's member abort it.
func (a *Agent) dlmDeadlockLoop(ctx context.Context) {
	every := max(a.dlmDeadlockWait/2, 50*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for a.wait(ctx, tick.C, nil) {
		start, _ := a.term.snapshot()
		if start.IsZero() || !a.store.IsLeader() {
			continue
		}
		members := a.dlm.View().Names()
		var edges []cluster.Edge
		complete := true
		for _, m := range members {
			if m == a.cfg.Name {
				edges = append(edges, a.dlm.WaitEdges()...)
				continue
			}
			var resp rpc.DLMEdgesResponse
			if err := a.callMember(ctx, m, "DLMEdges", &rpc.Empty{}, &resp); err != nil {
				complete = false
				continue
			}
			edges = append(edges, resp.Edges...)
		}
		if !complete && len(edges) == 0 {
			continue
		}
		for _, id := range cluster.FindDeadlocks(edges) {
			a.log.Info("dlm: deadlock: aborting a victim's request", "lock", id.String())
			if id.Member == a.cfg.Name {
				if err := a.dlm.AbortDeadlock(id); err != nil {
					a.log.Debug("dlm: deadlock abort", "lock", id.String(), "err", err)
				}
				continue
			}
			if err := a.callMember(ctx, id.Member, "DLMAbort", &rpc.DLMAbortRequest{Lock: id}, &rpc.Empty{}); err != nil {
				a.log.Debug("dlm: deadlock abort", "lock", id.String(), "err", err)
			}
		}
	}
}

// callMember calls a node-service method on member m, over its links in
// turn.
func (a *Agent) callMember(ctx context.Context, m, method string, req, resp any) error {
	return a.callMemberWithin(ctx, m, method, req, resp, max(a.prof.Renew, 200*time.Millisecond))
}

// The node service's lock manager methods.

func (n *node) DLMEdges(ctx context.Context, _ *rpc.Empty) (*rpc.DLMEdgesResponse, error) {
	return &rpc.DLMEdgesResponse{Edges: n.a.dlm.WaitEdges()}, nil
}

func (n *node) DLMAbort(ctx context.Context, r *rpc.DLMAbortRequest) (*rpc.Empty, error) {
	return &rpc.Empty{}, n.a.dlm.AbortDeadlock(r.Lock)
}

func (n *node) DLMLocks(ctx context.Context, _ *rpc.Empty) (*cluster.Table, error) {
	t := n.a.dlm.Locks()
	return &t, nil
}
