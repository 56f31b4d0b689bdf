package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
	"github.com/vigil-cluster/vigil/internal/director"
	"github.com/vigil-cluster/vigil/internal/lease"
	"github.com/vigil-cluster/vigil/internal/rpc"
	"github.com/vigil-cluster/vigil/internal/spec"
)

// leaseDrift is the clock-drift margin of leases.
const leaseDrift = 1.1

// leaseConfig is the lease policy of a profile.
func leaseConfig(p config.Profile) lease.Config {
	return lease.Config{Length: p.Lease, Renew: p.Renew, Drift: leaseDrift, AbortBefore: p.Lease / 5}
}

// term is the director's side of one term: when it took office and the
// renewals it granted. mu guards it; the node service's Renew handler and
// the director loop share it.
type term struct {
	mu       sync.Mutex
	start    time.Time                       // zero while this member is not a settled director
	renewals map[string]time.Time            // guarded by mu
	fencing  map[string]bool                 // members being fenced; guarded by mu
	links    map[string][]bool               // each member's own view of its links at its last renewal; guarded by mu
	states   map[string]director.MemberState // the last state the director saw; guarded by mu
	discFrom map[string]time.Time            // since when a member has reported no public link; guarded by mu
	incs     map[string]uint64               // the lock manager incarnation of each member's renewals this term; guarded by mu
	sent     map[string]int64                // the Sent of each member's latest renewal datagram this term; guarded by mu
}

// disconnected reports whether member has reported no public link for at
// least hold: one report is not enough, since a link that just came back
// (or a peer that gossip briefly thought dead) makes a member report its
// links down for a moment, and DISCONNECTED moves its services.
func (t *term) disconnected(member string, reportsNone bool, now time.Time, hold time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !reportsNone {
		delete(t.discFrom, member)
		return false
	}
	if t.discFrom == nil {
		t.discFrom = map[string]time.Time{}
	}
	from, ok := t.discFrom[member]
	if !ok {
		t.discFrom[member], from = now, now
	}
	return now.Sub(from) >= hold
}

// noteState records a member's state for placement and reports whether it
// changed.
// noteState records a member's state and returns the one it replaces ("" the
// first time).
func (t *term) noteState(member string, st director.MemberState) (director.MemberState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.states == nil {
		t.states = map[string]director.MemberState{}
	}
	old := t.states[member]
	if old == st {
		return old, false
	}
	t.states[member] = st
	return old, true
}

func (t *term) begin(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.start.IsZero() {
		t.start, t.renewals, t.incs, t.sent = now, map[string]time.Time{}, map[string]uint64{}, map[string]int64{}
	}
}

func (t *term) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start, t.renewals, t.incs, t.sent = time.Time{}, nil, nil, nil
}

// grantSent is grant for a renewal datagram sent at sent. It refuses one
// not newer than the member's latest this term (a duplicate or a replay),
// and one that comes within every of the member's last renewal by either
// path: the datagrams stand in for renewals that do not come, and a member
// renewed more often than every would be found DOWN later after a crash.
func (t *term) grantSent(member string, sent int64, now time.Time, links []bool, inc uint64, every time.Duration) bool {
	t.mu.Lock()
	if t.start.IsZero() || sent <= t.sent[member] || now.Sub(t.renewals[member]) < every {
		t.mu.Unlock()
		return false
	}
	t.sent[member] = sent
	t.mu.Unlock()
	return t.grant(member, now, links, inc)
}

// grant records a renewal, with the incarnation of the member's lock
// manager (0: not known); it fails when this member is not a settled
// director.
func (t *term) grant(member string, now time.Time, links []bool, inc uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.start.IsZero() {
		return false
	}
	t.renewals[member] = now
	if inc != 0 {
		t.incs[member] = inc
	}
	if t.links == nil {
		t.links = map[string][]bool{}
	}
	t.links[member] = links
	return true
}

// excuse moves every member's last renewal later by gap (not past now):
// while this process itself did not run, the members' silence says nothing
// about them. Later renewals only delay a failover; they never shorten a
// lease.
func (t *term) excuse(gap time.Duration, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range t.renewals {
		v = v.Add(gap)
		if v.After(now) {
			v = now
		}
		t.renewals[k] = v
	}
}

func (t *term) snapshot() (time.Time, map[string]time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]time.Time, len(t.renewals))
	for k, v := range t.renewals {
		out[k] = v
	}
	return t.start, out
}

// dlmInc is the lock manager incarnation member renewed with this term (0:
// none).
func (t *term) dlmInc(member string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.incs[member]
}

func (t *term) reportedLinks(member string) []bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.links[member]
}

// gossipRefuted reports whether a renewal at last refutes gossip's verdict
// that a member is dead: gossip calls a crashed member dead a probe
// timeout and a suspicion after its last message at the earliest, far
// more than a renewal period and a half in every profile, so a member
// that renewed more recently than that is alive. (Gossip from across a
// healed partition can call a member dead that restarted meanwhile, for a
// moment, until it refutes it; the director must not fence it for that.)
func gossipRefuted(last, now time.Time, renew time.Duration) bool {
	return !last.IsZero() && now.Sub(last) < renew*3/2
}

// memberCondition is a member's state for placement. fresh: the director
// heard it renew within lease × drift (it renews over any link); seenOnLinks:
// the director's own view of it per link (link 0 is the interconnect);
// reported: the member's own view of its links at its last renewal.
//   - not fresh: DOWN (its lease has run out or will; gossip only adds
//     detail);
//   - fresh but not seen on the interconnect while seen on another link:
//     NETPAR (its services keep running; nothing starts or stops there);
//   - fresh, but it reports no other member on any of its public links
//     (1 and up): DISCONNECTED (its services are stopped and moved);
//   - else UP.
func memberCondition(self, fresh bool, seenOnLinks, reported []bool) director.MemberState {
	if self {
		return director.MemberUp
	}
	if !fresh {
		return director.MemberDown
	}
	if len(seenOnLinks) > 1 && !seenOnLinks[0] {
		for _, up := range seenOnLinks[1:] {
			if up {
				return director.MemberNetpar
			}
		}
	}
	if len(reported) > 1 {
		any := false
		for _, up := range reported[1:] {
			any = any || up
		}
		if !any {
			return director.MemberDisconnected
		}
	}
	return director.MemberUp
}

func (n *node) Renew(ctx context.Context, r *rpc.RenewRequest) (*rpc.RenewResponse, error) {
	if r.Member != rpc.PeerMember(ctx) {
		return nil, cdb.Refuse(cdb.ErrDenied, "member %s may not renew the lease of %s", rpc.PeerMember(ctx), r.Member)
	}
	if !n.a.store.IsLeader() {
		return nil, cdb.ErrNotLeader
	}
	if err := n.a.clearFenceForGrant(ctx, r.Member); err != nil {
		return nil, err
	}
	if !n.a.term.grant(r.Member, time.Now(), r.Links, r.DLM) {
		return nil, cdb.ErrNotLeader
	}
	return &rpc.RenewResponse{Granted: true, Index: n.a.store.FSMIndex()}, nil
}

// leaseLoop renews this member's lease with the director every Renew
// interval. The holder measures a grant from when the request was sent.
func (a *Agent) leaseLoop(ctx context.Context) {
	t := time.NewTicker(a.prof.Renew)
	defer t.Stop()
	for {
		asked := a.mono()
		ok, index := a.renewOnce(ctx)
		a.metrics.renewed(ok)
		if ok {
			a.holderMu.Lock()
			a.holder.Granted(asked)
			if index > a.grantIndex {
				a.grantIndex = index
			}
			a.holderMu.Unlock()
		}
		if !a.wait(ctx, t.C, nil) {
			return
		}
	}
}

func (a *Agent) renewOnce(ctx context.Context) (bool, uint64) {
	if a.store.IsLeader() {
		if a.clearFenceForGrant(ctx, a.cfg.Name) != nil {
			return false, 0
		}
		return a.term.grant(a.cfg.Name, time.Now(), a.ml.LinksAlive(), a.dlm.Incarnation()), a.store.FSMIndex()
	}
	addr, leader := a.store.Leader()
	if leader != "" {
		a.lastLeader.Store(&leader)
	} else if l := a.lastLeader.Load(); l != nil {
		leader = *l
	}
	// The director's cluster port on every link, the interconnect first: a
	// member the interconnect lost (it no longer hears Raft, so it does not
	// know the leader) renews over a public link and stays NETPAR. Then
	// every other member's, in case the director changed meanwhile.
	var addrs []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			addrs = append(addrs, s)
		}
	}
	add(addr)
	a.store.View(func(s *cdb.State) {
		if m, ok := s.Members[leader]; ok {
			for _, l := range m.Links {
				add(config.RPCAddress(l))
			}
		}
		if addr == "" {
			for _, n := range s.MemberNames() {
				if n != a.cfg.Name {
					for _, l := range s.Members[n].Links {
						add(config.RPCAddress(l))
					}
				}
			}
		}
	})
	req := &rpc.RenewRequest{Member: a.cfg.Name, Links: a.ml.LinksAlive(), DLM: a.dlm.Incarnation()}
	// Every address at once: a link whose cable is pulled does not refuse
	// a connection, it swallows it, and would eat the whole renewal
	// period before the next address was tried.
	cctx, cancel := context.WithTimeout(ctx, a.prof.Renew)
	defer cancel()
	type answer struct {
		ok    bool
		index uint64
	}
	answers := make(chan answer, len(addrs))
	for _, ad := range addrs {
		go func() {
			var resp rpc.RenewResponse
			err := a.pool.Call(cctx, ad, "Renew", req, &resp)
			answers <- answer{err == nil && resp.Granted, resp.Index}
		}()
	}
	for range addrs {
		if r := <-answers; r.ok {
			return true, r.index
		}
	}
	return false, 0
}

// caughtUp reports whether st (a state this member applied) holds every
// order the director had made when it last granted the lease. It looks at
// the state's own index: Raft's applied index runs ahead of the FSM.
func (a *Agent) caughtUp(st *cdb.State) bool {
	a.holderMu.Lock()
	idx := a.grantIndex
	a.holderMu.Unlock()
	return idx > 0 && st.Index >= idx
}

// mono is this agent's monotonic clock reading.
func (a *Agent) mono() time.Duration { return time.Since(a.started) }

// LeaseValid reports whether this member may run services now, and whether
// it must abort them.
func (a *Agent) leaseState() (valid, mustAbort bool) {
	valid, mustAbort, _ = a.leaseAbort()
	return valid, mustAbort
}

// leaseAbort is leaseState with the time at which the member must abort
// (zero when it must now).
func (a *Agent) leaseAbort() (valid, mustAbort bool, abortAt time.Time) {
	a.holderMu.Lock()
	defer a.holderMu.Unlock()
	now := a.mono()
	valid, mustAbort = a.holder.Valid(now), a.holder.MustAbort(now)
	if !mustAbort {
		abortAt = time.Now().Add(a.holder.AbortIn(now))
	}
	return valid, mustAbort, abortAt
}

// directorLoop decides while this member is the settled director.
func (a *Agent) directorLoop(ctx context.Context) {
	t := time.NewTicker(a.prof.DirectorTick)
	defer t.Stop()
	// A gap between two ticks much longer than the tick means this process
	// did not run (an overloaded host, a paused VM): renewals sent meanwhile
	// may be waiting unread, so members are not judged on that silence.
	stall := max(4*a.prof.DirectorTick, a.prof.Renew)
	last := time.Now()
	for {
		if !a.wait(ctx, t.C, a.decideKick) {
			return
		}
		now := time.Now()
		gap := now.Sub(last)
		last = now
		start, renewals := a.term.snapshot()
		if start.IsZero() || !a.store.IsLeader() {
			continue
		}
		if gap > stall {
			a.log.Warn("director: this member did not run for a while; that silence is not held against the members", "stalled", gap.Round(time.Millisecond))
			a.term.excuse(gap, now)
			continue
		}
		a.decideOnce(ctx, start, renewals)
		last = time.Now()
	}
}

func (a *Agent) kickDirector() {
	select {
	case a.decideKick <- struct{}{}:
	default:
	}
}

// directorInput builds the director's input from the cluster database, this
// member's view of liveness and the renewals of this term.
func (a *Agent) directorInput(st *cdb.State, now, termStart time.Time, renewals map[string]time.Time) (director.Input, uint64) {
	present, expected, needed := a.quorum()
	in := director.Input{Now: now, TermStart: termStart, Lease: a.prof.Lease, Drift: leaseDrift,
		Quorum: expected > 0 && present >= needed, Maintenance: st.Maintenance,
		Fencing: len(st.Fencing) > 0, NoQuorumPolicy: director.NoQuorumStop, Director: a.cfg.Name}
	if st.Settings["no-quorum-policy"] == "freeze" && in.Fencing {
		// Members cut off keep their services running (they do not abort
		// when their lease ends), so only a fence may free them: a lease
		// of zero tells the director so.
		in.NoQuorumPolicy, in.Lease = director.NoQuorumFreeze, 0
	}
	peers := a.ml.Peers()
	silent := time.Duration(float64(a.prof.Lease) * leaseDrift)
	for _, n := range st.MemberNames() {
		m := st.Members[n]
		dm := director.Member{Name: n, ID: m.ID, Domain: m.Domain, Witness: m.Witness, Draining: m.Draining,
			LastRenewal: renewals[n], State: director.MemberDown}
		p, seen := peers[n]
		up := n == a.cfg.Name || (seen && p.Up())
		if !up && gossipRefuted(renewals[n], now, a.prof.Renew) {
			// Gossip calls it dead, but it renewed its lease moments ago.
			up = true
		}
		// A member the director has not heard renew for a whole lease is
		// DOWN for placement, whatever gossip says: it has given up its
		// services by now, and waiting for gossip would only slow failover.
		last := renewals[n]
		if last.IsZero() {
			last = termStart
		}
		var onLinks []bool
		if seen {
			for _, l := range p.Links {
				onLinks = append(onLinks, l.Up)
			}
		}
		reported := a.term.reportedLinks(n)
		dm.State = memberCondition(n == a.cfg.Name, up && now.Sub(last) < silent, onLinks, reported)
		if !a.term.disconnected(n, dm.State == director.MemberDisconnected, now, a.prof.Lease) && dm.State == director.MemberDisconnected {
			dm.State = director.MemberUp
		}
		if old, changed := a.term.noteState(n, dm.State); changed {
			a.log.Info("director: member state for placement", "of", n, "state", dm.State, "gossip_up", up,
				"since_renewal", now.Sub(last).Round(time.Millisecond), "seen_on_links", onLinks, "reports_links", reported)
			switch {
			case old != "":
				a.emit(client.Event{Kind: client.EventMember, Member: n, Message: memberChange(n, old, dm.State, up, now.Sub(last), onLinks)})
			case dm.State != director.MemberUp && now.Sub(termStart) < 10*time.Second && now.Sub(m.Joined) > 10*time.Second:
				// A new director that never saw the member: its first
				// look is news unless the member is UP (a director that
				// failed with its member is found DOWN this way), or
				// has only just joined.
				a.emit(client.Event{Kind: client.EventMember, Member: n, Message: memberChange(n, "", dm.State, up, now.Sub(last), onLinks)})
			}
		}
		if !up && seen {
			dm.DownSince = p.Since()
		}
		if _, fenced := st.FencedMembers[n]; fenced && dm.State != director.MemberUp {
			dm.Fenced = true
		}
		dm.FencePending = a.fencePending(n)
		dm.NoFenceDevice = in.Fencing && len(st.FenceDevicesFor(n)) == 0
		in.Members = append(in.Members, dm)
	}
	for _, n := range st.ServiceNames() {
		sv := st.Services[n]
		in.Services = append(in.Services, director.Service{Name: n, Spec: directorSpec(sv), Status: sv.Status})
	}
	var consumed uint64
	for _, e := range st.Events {
		in.Events = append(in.Events, e.Event)
		consumed = e.Seq
	}
	return in, consumed
}

// memberChange says why a member's state changed, for the event log.
func memberChange(n string, old, now director.MemberState, gossipUp bool, sinceRenewal time.Duration, links []bool) string {
	msg := fmt.Sprintf("member %s is %s, was %s", n, now, old)
	if old == "" {
		msg = fmt.Sprintf("member %s is %s as the new director finds it", n, now)
	}
	switch now {
	case director.MemberDown:
		if gossipUp {
			msg += fmt.Sprintf(": no lease renewal for %s", sinceRenewal.Round(time.Millisecond))
		} else {
			msg += ": not heard on any link"
		}
	case director.MemberDisconnected:
		msg += fmt.Sprintf(": it lost its public links (links up: %v)", links)
	case director.MemberNetpar:
		msg += fmt.Sprintf(": seen only on a secondary link (links up: %v)", links)
	}
	return msg
}

func directorSpec(sv *cdb.Service) director.Spec {
	s := sv.Spec
	ds := director.Spec{Favored: s.Placement.Favored, Balanced: s.Placement.Balanced, Domain: s.Placement.Domain,
		Failback: s.Failback, MaxRestarts: s.Restart.Max, RestartWindow: s.Restart.Window.D(),
		FailureTimeout: s.FailureTimeout.D(), Target: sv.Target, RelocateTo: sv.RelocateTo, Clear: sv.Clear}
	if s.Placement.Restricted {
		ds.Restricted = s.Placement.Favored
	}
	if ds.MaxRestarts == 0 {
		ds.MaxRestarts = -1 // max: 0 in the spec means never restart in place
	}
	if ds.FailureTimeout == 0 {
		ds.FailureTimeout = spec.DefaultFailureTimeout
	}
	return ds
}

func (a *Agent) decideOnce(ctx context.Context, termStart time.Time, renewals map[string]time.Time) {
	st := a.store.State()
	a.dlmViewOnce(ctx, st, time.Now(), termStart, renewals)
	// The input is built even without services: it notes member changes.
	in, consumed := a.directorInput(st, time.Now(), termStart, renewals)
	if len(st.Services) == 0 {
		return
	}
	out := director.Decide(in)
	args := &cdb.DecideArgs{Updates: out.Updates, Consumed: consumed}
	for _, d := range out.Decisions {
		switch d.Kind {
		case director.Cleared, director.RelocateDone, director.RelocateRefused:
			args.Done = append(args.Done, d)
		case director.Fence:
			a.startFence(ctx, d.Member)
		}
		a.log.Info("director: "+d.String(), "service", d.Service)
	}
	for _, ig := range out.Ignored {
		a.log.Debug("director ignored an event", "why", ig)
	}
	if len(args.Updates) == 0 && len(args.Done) == 0 && consumed == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, a.prof.ApplyTimeout)
	defer cancel()
	if _, _, err := a.store.Apply(cctx, &cdb.Command{Op: cdb.OpDecide, At: time.Now().UTC(), By: "director", Decide: args}); err != nil {
		a.log.Warn("director: writing decisions", "err", err)
	}
}

// clearFenceForGrant clears the fence record of a member that renews its
// lease after it was fenced (it came back), before the lease is granted:
// the record is committed away first, so a director that finds a record
// (this one or a later one) knows the member has held no lease since its
// fence, and a later failure of it needs a new fence.
func (a *Agent) clearFenceForGrant(ctx context.Context, member string) error {
	var fenced bool
	a.store.View(func(s *cdb.State) { _, fenced = s.FencedMembers[member] })
	if !fenced {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, a.prof.ApplyTimeout)
	defer cancel()
	if _, _, err := a.store.Apply(cctx, &cdb.Command{Op: cdb.OpFenced, At: time.Now().UTC(), By: "director", Member: member}); err != nil {
		return fmt.Errorf("clearing the fence record of %s before its lease: %w", member, err)
	}
	a.log.Info("fencing: member is UP again; its fence record is cleared before its lease", "member", member)
	return nil
}
