package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// TestServerViewChanges runs the servers of TestServerMatchesModel (2, 3
// and 5 members, the same wire) through view changes as the agent makes
// them, with client operations in bursts that do not wait for each other:
// a member goes down (its Server closes) and the director writes a view
// without it, at once or a few steps later; a member starts again with a
// new incarnation and joins (a view without its old incarnation first,
// then one with the new one); a member loses its lease (Lose: its clients
// are told) and gets it back, or is cut off meanwhile: the director drops
// it without its hearing of it and takes it back later (it jumps from its
// old view to that one, with the streams it had, and has no quorum before
// it hears); a member loses quorum for a while; the
// director's deadlock search runs across members. There is no model:
// after every step, on a consistent cut of all servers (every server's
// lock held at once), no two incompatible locks are granted on a resource
// (DESIGN.md invariant 3) and each root has one master. Whenever the
// cluster can settle, it does, and then: every member's copy of its
// clients' locks is its master's and no master keeps a lock of a client
// that is gone; a lock that was granted with nothing pending is still
// granted at its mode unless its client touched it (surviving clients
// keep their locks across view changes); every grant since the last settle
// has a fencing token above every token of its resource before; every
// completion answers a request of its lock for that mode, none twice;
// nothing reaches a session after it closed or was lost; Lose tells each
// lost lock once; a member without quorum grants nothing. At the end every
// member is up and in the view, and every request of a live client has
// completed or still waits on its master; then every session closes and
// every table must be empty.
//
// Replay (the operations; not the timing): go test ./internal/dlm/server -run TestServerViewChanges -server.seed=N -v
func TestServerViewChanges(t *testing.T) {
	first, count := propSeeds(24)
	steps := propSteps(100)
	stats := map[string]int{}
	wstats := map[string]int{}
	start := time.Now()
	for seed := first; seed < first+uint64(count); seed++ {
		r := newViewRun(t, seed, []int{2, 3, 5}[(seed-1)%3])
		for r.step = 1; r.step <= steps; r.step++ {
			r.randomStep()
		}
		r.step = steps + 1
		r.finish()
		r.closeAll()
		for k, v := range r.stats {
			stats[k] += v
		}
		r.w.mu.Lock()
		for k, v := range r.w.stats {
			wstats[k] += v
		}
		r.w.mu.Unlock()
	}
	if count >= 12 { // what the timing decides may be missing from a few seeds
		for _, k := range []string{"kill", "restart", "view", "lose", "quorum-off", "settle", "event:granted", "event:lost",
			"event:blocking", "event:deadlock", "kept-across-view", "enqueue", "convert", "cut-off", "taken-back-unheard"} {
			if stats[k] == 0 {
				t.Errorf("no %q in %d seeds: the generator is too narrow", k, count)
			}
		}
	}
	t.Logf("%d seeds x %d steps in %v: %v; wire: %v", count, steps, time.Since(start).Round(time.Millisecond), stats, wstats)
}

type viewRun struct {
	*prig
	where   map[cluster.LockID]where
	ownerOf map[cluster.LockID]*pclient
	// pending: the modes of each lock's requests (new or conversion)
	// without a completion yet.
	pending  map[cluster.LockID][]dlm.Mode
	lastOp   map[cluster.LockID]int        // step of the latest operation on the lock
	unlocked map[cluster.LockID]bool       // an unlock was accepted
	stable   map[cluster.LockID]stableLock // granted, nothing pending, at a settle
	lastTok  map[resKey]uint64             // highest token granted before the last settle
	toks     map[resKey][]uint64           // tokens granted since
	gone     map[*pclient]string           // sessions closed, lost or down: why
	noQuo    map[string]map[resKey]uint64  // members without quorum: their resources' tokens then
	nroots   int
}

type stableLock struct {
	mode  dlm.Mode
	since int
	views uint64 // the view number when it was seen stable
}

func newViewRun(t *testing.T, seed uint64, members int) *viewRun {
	r := &viewRun{prig: newPrig(t, seed, members), where: map[cluster.LockID]where{}, ownerOf: map[cluster.LockID]*pclient{},
		pending: map[cluster.LockID][]dlm.Mode{}, lastOp: map[cluster.LockID]int{}, unlocked: map[cluster.LockID]bool{}, stable: map[cluster.LockID]stableLock{},
		lastTok: map[resKey]uint64{}, toks: map[resKey][]uint64{}, gone: map[*pclient]string{}, noQuo: map[string]map[resKey]uint64{}}
	r.nroots = 2 + r.rng.IntN(len(roots)-1)
	switch r.rng.IntN(3) {
	case 0:
		r.w.set(0, 0)
	case 1:
		r.w.set(10, 200*time.Microsecond)
	default:
		r.w.set(5, 0)
	}
	r.settlePoint()
	return r
}

func (r *viewRun) randomStep() {
	switch x := r.rng.IntN(100); {
	case x < 55:
		for range 1 + r.rng.IntN(4) {
			r.clientOp()
		}
	case x < 63:
		r.deadlockRound()
	case x < 70:
		r.killOne()
	case x < 77:
		r.restartOne()
	case x < 88:
		r.director()
	case x < 91:
		r.loseOne()
	case x < 94:
		r.quorumOff()
	default:
		r.quorumOn()
	}
	r.frozen(r.checkCut)
	if r.canSettle() && r.rng.IntN(3) == 0 {
		r.settlePoint()
	} else {
		r.process()
	}
}

// inView returns the live members that are in the view at their current
// incarnation.
func (r *viewRun) inView() []string {
	var out []string
	for _, m := range r.live() {
		if r.view.Members[m] == r.srvs[m].Incarnation() {
			out = append(out, m)
		}
	}
	return out
}

// canSettle: every member of the view is up at its incarnation in the
// view, and every live member has quorum. (A member down but in the view
// stops what its masters would answer until the director drops it.)
func (r *viewRun) canSettle() bool {
	for m, inc := range r.view.Members {
		if s := r.srvs[m]; s == nil || s.Incarnation() != inc {
			return false
		}
	}
	return len(r.noQuo) == 0 && len(r.deaf) == 0
}

func (r *viewRun) clientOp() {
	live := r.live()
	m := live[r.rng.IntN(len(live))]
	cs := r.clients[m]
	c := cs[r.rng.IntN(len(cs))]
	switch x := r.rng.IntN(100); {
	case x < 45:
		r.enqueue(c)
	case x < 65:
		r.convert(c)
	case x < 85:
		r.unlock(c)
	case x < 96:
		r.cancel(c)
	default:
		r.closeSession(c)
	}
}

// accepted checks an error a session returned at once: it must be one a
// client can get.
func (r *viewRun) accepted(what string, err error) bool {
	r.t.Helper()
	switch k := errKind(err); k {
	case "ok":
		return true
	case "invalid", "unknown-lock", "not-member", "busy":
		r.count("now:" + k)
		return false
	default:
		r.fatalf("%s: unexpected error %v", what, err)
	}
	return false
}

func (r *viewRun) pick(c *pclient, mine bool) cluster.LockID {
	none := cluster.LockID{Member: c.member, N: 1 << 40}
	if r.rng.IntN(30) == 0 {
		return none
	}
	var ids []cluster.LockID
	for _, l := range r.srvs[c.member].Locks().Held {
		if !mine || l.Owner == c.owner {
			ids = append(ids, l.Lock)
		}
	}
	if len(ids) == 0 {
		return none
	}
	return ids[r.rng.IntN(len(ids))]
}

func (r *viewRun) enqueue(c *pclient) {
	req := cluster.Request{Lockspace: spaces[r.rng.IntN(len(spaces))], Mode: []dlm.Mode{dlm.EX, dlm.PR, dlm.PW, dlm.CR, dlm.CW, dlm.NL}[r.rng.IntN(6)]}
	if r.rng.IntN(6) == 0 {
		req.Flags |= dlm.NoQueue
	}
	if r.rng.IntN(2) == 0 {
		req.Flags |= dlm.ValBlk
	}
	if r.rng.IntN(10) == 0 {
		req.Flags |= dlm.NoDlckWt
	}
	path := []string{roots[r.rng.IntN(r.nroots)]}
	req.Name = path[0]
	if r.rng.IntN(5) == 0 {
		req.Parent, req.Name = r.pick(c, true), kids[r.rng.IntN(len(kids))]
		if w, ok := r.where[req.Parent]; ok {
			req.Lockspace = w.ls
			path = append(slices.Clone(w.path), req.Name)
		}
	}
	id, err := c.ss.Enqueue(req)
	r.logf("%v enqueue %s/%v parent %v %v %v -> %v %s", c.owner, req.Lockspace, path, req.Parent, req.Mode, req.Flags, id, errKind(err))
	if !r.accepted("enqueue", err) {
		return
	}
	r.count("enqueue")
	r.where[id] = where{req.Lockspace, path}
	r.ownerOf[id] = c
	r.pending[id] = append(r.pending[id], req.Mode)
	r.lastOp[id] = r.step
}

func (r *viewRun) convert(c *pclient) {
	req := cluster.Request{Lock: r.pick(c, true), Mode: dlm.Mode(r.rng.IntN(6)), Flags: dlm.Convert}
	if r.rng.IntN(4) == 0 {
		req.Flags |= dlm.QueCvt
	}
	if r.rng.IntN(6) == 0 {
		req.Flags |= dlm.NoQueue
	}
	if r.rng.IntN(2) == 0 {
		req.Flags |= dlm.ValBlk
		if r.rng.IntN(2) == 0 {
			var v dlm.Value
			copy(v[:], fmt.Sprintf("%d", r.step))
			req.Value = &v
		}
	}
	_, err := c.ss.Enqueue(req)
	r.logf("%v convert %v %v %v -> %s", c.owner, req.Lock, req.Mode, req.Flags, errKind(err))
	if !r.accepted("convert", err) {
		return
	}
	r.count("convert")
	r.pending[req.Lock] = append(r.pending[req.Lock], req.Mode)
	r.lastOp[req.Lock] = r.step
}

func (r *viewRun) unlock(c *pclient) {
	id := r.pick(c, true)
	err := c.ss.Unlock(id, 0, nil)
	r.logf("%v unlock %v -> %s", c.owner, id, errKind(err))
	r.lastOp[id] = r.step
	if r.accepted("unlock", err) {
		r.unlocked[id] = true
	}
}

func (r *viewRun) cancel(c *pclient) {
	id := r.pick(c, true)
	err := c.ss.Cancel(id)
	r.logf("%v cancel %v -> %s", c.owner, id, errKind(err))
	r.lastOp[id] = r.step
	if r.accepted("cancel", err) {
		r.unlocked[id] = true // a waiting new lock ends with its cancel
	}
}

// retire forgets a session: it must receive nothing more.
func (r *viewRun) retire(c *pclient, why string) {
	r.processClient(c)
	r.gone[c] = why
	for id, o := range r.ownerOf {
		if o == c {
			delete(r.pending, id)
		}
	}
}

func (r *viewRun) closeSession(c *pclient) {
	err := c.ss.Close()
	r.logf("%v close -> %s", c.owner, errKind(err))
	if err != nil {
		r.fatalf("close session %v: %v", c.owner, err)
	}
	r.count("close")
	r.retire(c, "closed")
	r.clients[c.member] = slices.DeleteFunc(r.clients[c.member], func(x *pclient) bool { return x == c })
	r.open(c.member)
}

// killOne takes a live member down (its server closes: fenced); the
// director drops it from the view now or later.
func (r *viewRun) killOne() {
	live := r.live()
	if len(live) < 2 {
		return
	}
	m := live[r.rng.IntN(len(live))]
	if in := r.inView(); slices.Contains(in, m) && len(in) < 2 {
		return // the view keeps a member
	}
	cs := r.clients[m]
	delete(r.noQuo, m)
	r.kill(m)
	for _, c := range cs {
		r.retire(c, "member down")
	}
	r.logf("%s down", m)
	r.count("kill")
	if r.rng.IntN(2) == 0 {
		r.director()
	}
}

// restartOne starts a member that is down with a new incarnation: it
// applies the director's current view, in which it is not (or is with its
// old incarnation), and waits for the director.
func (r *viewRun) restartOne() {
	var down []string
	for m := range r.dead {
		down = append(down, m)
	}
	if len(down) == 0 {
		return
	}
	slices.Sort(down)
	m := down[r.rng.IntN(len(down))]
	s := r.start(m)
	if err := s.SetView(r.view); err != nil {
		r.fatalf("SetView on the restarted %s: %v", m, err)
	}
	s.SetQuorum(true)
	r.logf("%s up, incarnation %x", m, s.Incarnation())
	r.count("restart")
	// Its clients are refused until it is in a view.
	if _, err := r.clients[m][0].ss.Enqueue(cluster.Request{Lockspace: "ls", Name: "a", Mode: dlm.NL}); errKind(err) != "not-member" {
		r.fatalf("%s before it joins: enqueue returned %v, not ErrNotMember", m, err)
	}
	if r.rng.IntN(2) == 0 {
		r.director()
	}
}

// director writes the next view: without the members that are down or
// run another incarnation than the view's, else with the live members
// that are not in it.
func (r *viewRun) director() {
	var keep []string
	drop := false
	for _, m := range r.view.Names() {
		if s := r.srvs[m]; s != nil && s.Incarnation() == r.view.Members[m] && !r.deaf[m] {
			keep = append(keep, m)
		} else {
			drop = true
		}
	}
	if !drop {
		add := false
		for _, m := range r.live() {
			if _, ok := r.view.Members[m]; !ok {
				if r.deaf[m] {
					r.count("taken-back-unheard")
				}
				keep = append(keep, m)
				add = true
			}
		}
		if !add {
			return
		}
	}
	if len(keep) == 0 {
		// Nobody of the view is left as it was: a view of whoever runs.
		keep = r.live()
		for _, m := range keep {
			if r.deaf[m] {
				r.count("taken-back-unheard")
			}
		}
		if len(keep) == 0 {
			return
		}
	}
	r.setView(keep)
	r.count("view")
}

// loseOne: a member's lease is ending: its clients are told their locks
// are lost and it takes a new incarnation, which the director drops and
// takes back. Sometimes it is cut off meanwhile: it does not hear of the
// view that drops its old incarnation.
func (r *viewRun) loseOne() {
	live := r.live()
	m := live[r.rng.IntN(len(live))]
	s := r.srvs[m]
	inTable := map[cluster.LockID]bool{}
	for _, l := range s.Locks().Held {
		inTable[l.Lock] = true
	}
	in := r.inView()
	cutOff := slices.Contains(in, m) && len(in) > 1 && r.rng.IntN(2) == 0
	n := s.Lose("lease ending")
	before := r.tokensOf(m)
	r.logf("%s loses its lease: %d locks lost", m, n)
	r.count("lose")
	told := 0
	for _, c := range r.clients[m] {
		for _, ev := range c.take() {
			if ev.Kind == cluster.EventLost && !ev.Lock.IsZero() {
				told++
			}
			r.event(c, ev)
		}
		if _, err := c.ss.Enqueue(cluster.Request{Lockspace: "ls", Name: "a", Mode: dlm.NL}); errKind(err) != "lost" {
			r.fatalf("%v after Lose: enqueue returned %v, not ErrLost", c.owner, err)
		}
		for id, o := range r.ownerOf {
			if o == c && len(r.pending[id]) > 0 {
				r.fatalf("%v lost its locks but request(s) %v of %v were neither completed nor told lost (in the member's table just before: %v)",
					c.owner, r.pending[id], id, inTable[id])
			}
		}
		r.retire(c, "lost")
	}
	if told != n {
		r.fatalf("Lose on %s: returned %d, its sessions were told of %d lost locks", m, n, told)
	}
	r.clients[m] = nil
	for range 2 {
		r.open(m)
	}
	if _, ok := r.noQuo[m]; !ok {
		r.noQuo[m] = before
	}
	if cutOff {
		r.deaf[m] = true
		r.logf("%s is cut off: it hears no view until one takes it back", m)
		r.count("cut-off")
	}
}

func (r *viewRun) quorumOff() {
	live := r.live()
	m := live[r.rng.IntN(len(live))]
	if _, ok := r.noQuo[m]; ok {
		return
	}
	r.srvs[m].SetQuorum(false)
	r.noQuo[m] = r.tokensOf(m)
	r.logf("%s loses quorum", m)
	r.count("quorum-off")
}

// quorumOn gives quorum back to a member, after checking that it granted
// nothing without it.
func (r *viewRun) quorumOn() {
	var off []string
	for m := range r.noQuo {
		off = append(off, m)
	}
	if len(off) == 0 {
		return
	}
	slices.Sort(off)
	m := off[r.rng.IntN(len(off))]
	r.checkNoGrants(m)
	delete(r.noQuo, m)
	r.srvs[m].SetQuorum(true)
	r.logf("%s has quorum again", m)
}

func (r *viewRun) checkNoGrants(m string) {
	before := r.noQuo[m]
	for k, tok := range r.tokensOf(m) {
		if old, ok := before[k]; !ok || tok > old {
			r.fatalf("%s granted on %s without quorum: token %d, %d (known %v) when it lost quorum", m, k, tok, old, ok)
		}
	}
}

// tokensOf returns the last token of each resource the member masters.
func (r *viewRun) tokensOf(m string) map[resKey]uint64 {
	out := map[resKey]uint64{}
	for _, l := range r.srvs[m].Locks().Mastered {
		out[keyOf(l.Lockspace, l.Path)] = l.Token
	}
	return out
}

// deadlockRound is the director's search over whatever the members report
// now (they may be in the middle of anything).
func (r *viewRun) deadlockRound() {
	var all []cluster.Edge
	for _, m := range r.live() {
		all = append(all, r.srvs[m].WaitEdges()...)
	}
	vs := cluster.FindDeadlocks(all)
	for _, v := range vs {
		s := r.srvs[v.Member]
		if s == nil {
			continue
		}
		err := s.AbortDeadlock(v)
		r.logf("abort deadlock victim %v -> %s", v, errKind(err))
		switch errKind(err) {
		case "ok", "recovering", "unknown-lock", "wrong-state", "not-member":
		default:
			r.fatalf("abort %v: %v", v, err)
		}
		r.count("victim")
	}
}

// checkCut runs on a consistent cut of the cluster.
func (r *viewRun) checkCut(tables map[string]cluster.Table) {
	r.t.Helper()
	r.checkCompatible(tables)
	for m := range r.noQuo {
		before := r.noQuo[m]
		for _, l := range tables[m].Mastered {
			k := keyOf(l.Lockspace, l.Path)
			if old, ok := before[k]; !ok || l.Token > old {
				r.fatalf("%s granted on %s without quorum: token %d, %d (known %v) when it lost quorum", m, k, l.Token, old, ok)
			}
		}
	}
}

func (r *viewRun) processClient(c *pclient) {
	for _, ev := range c.take() {
		r.event(c, ev)
	}
}

// process takes the events every session received.
func (r *viewRun) process() {
	for _, c := range r.allClients() {
		r.processClient(c)
	}
	for c := range r.gone {
		r.processClient(c)
	}
}

func (r *viewRun) event(c *pclient, ev cluster.Event) {
	r.t.Helper()
	if why, ok := r.gone[c]; ok {
		r.fatalf("session %v (%s) received %s", c.owner, why, evString(ev))
	}
	if ev.Owner != c.owner {
		r.fatalf("session %v received an event of %v: %s", c.owner, ev.Owner, evString(ev))
	}
	if ev.Kind == cluster.EventLost && ev.Lock.IsZero() {
		// The session itself is lost (Lose), after its locks: that ends
		// every request it still has open (a lock that left the table,
		// its later conversion unanswered, is in no per-lock event).
		r.count("session-lost")
		for id, o := range r.ownerOf {
			if o == c && len(r.pending[id]) > 0 {
				r.count("session-lost-ends-request")
				delete(r.pending, id)
			}
		}
		return
	}
	w, ok := r.where[ev.Lock]
	if !ok {
		r.fatalf("event for a lock the test never requested: %s", evString(ev))
	}
	r.count("event:" + ev.Kind.String())
	switch {
	case ev.Kind == cluster.EventLost:
		delete(r.pending, ev.Lock)
	case isCompletion(ev):
		ms := r.pending[ev.Lock]
		i := slices.Index(ms, ev.Mode)
		if i < 0 {
			r.fatalf("%s completes no request of %v (pending modes %v)", evString(ev), ev.Lock, ms)
		}
		ms = slices.Delete(ms, i, i+1)
		if len(ms) == 0 {
			delete(r.pending, ev.Lock)
		} else {
			r.pending[ev.Lock] = ms
		}
	}
	if ev.Kind == cluster.EventGranted {
		k := keyOf(w.ls, w.path)
		r.toks[k] = append(r.toks[k], ev.Token)
	}
}

// settlePoint settles the cluster and checks it.
func (r *viewRun) settlePoint() {
	r.t.Helper()
	r.settle()
	r.process()
	r.count("settle")
	r.frozen(func(tables map[string]cluster.Table) {
		r.checkCut(tables)
		r.checkCopies(tables)
		r.checkStable(tables)
	})
	for k, toks := range r.toks {
		slices.Sort(toks)
		for i, tok := range toks {
			if tok <= r.lastTok[k] || (i > 0 && tok == toks[i-1]) {
				r.fatalf("fencing tokens of %s: granted %v since the last settle, after %d before", k, toks, r.lastTok[k])
			}
		}
		r.lastTok[k] = toks[len(toks)-1]
	}
	clear(r.toks)
}

// checkStable: a lock granted with nothing pending at a settle is still
// granted at its mode at the next one, unless its client acted on it or is
// gone.
func (r *viewRun) checkStable(tables map[string]cluster.Table) {
	r.t.Helper()
	held := map[cluster.LockID]cluster.LockInfo{}
	for _, tb := range tables {
		for _, l := range tb.Held {
			held[l.Lock] = l
		}
	}
	for id, st := range r.stable {
		c := r.ownerOf[id]
		if _, gone := r.gone[c]; gone || c == nil || r.lastOp[id] > st.since {
			delete(r.stable, id)
			continue
		}
		l, ok := held[id]
		if !ok || l.Queue != dlm.QueueGranted || l.Granted != st.mode {
			state := "gone"
			if ok {
				state = fmt.Sprintf("%v %v", l.Queue, l.Granted)
			}
			r.fatalf("lock %v of %v, granted %v with nothing pending since step %d (view %d), is now %s (view %d)",
				id, c.owner, st.mode, st.since, st.views, state, r.view.Number)
		}
		if st.views != r.view.Number {
			r.count("kept-across-view")
			st.views = r.view.Number
			r.stable[id] = st
		}
	}
	for id, l := range held {
		c := r.ownerOf[id]
		if _, gone := r.gone[c]; gone || c == nil {
			continue
		}
		if l.Queue == dlm.QueueGranted && len(r.pending[id]) == 0 {
			if st, ok := r.stable[id]; !ok || st.mode != l.Granted {
				r.stable[id] = stableLock{l.Granted, r.step, r.view.Number}
			}
		} else {
			delete(r.stable, id)
		}
	}
}

// finish brings every member up and into the view, settles, and checks
// that every request of a live client completed or still waits; then it
// closes every session: every table must end empty.
func (r *viewRun) finish() {
	r.t.Helper()
	for i := 0; len(r.deaf) > 0; i++ {
		if i == 5 {
			r.fatalf("members %v still cut off after %d views", r.deaf, i)
		}
		r.director()
	}
	for len(r.noQuo) > 0 {
		r.quorumOn()
	}
	for len(r.dead) > 0 {
		r.restartOne()
	}
	for range 3 {
		r.director()
	}
	r.frozen(r.checkCut)
	r.settlePoint()
	queued := map[cluster.LockID]bool{}
	for _, m := range r.live() {
		for _, l := range r.srvs[m].Locks().Held {
			if l.Queue != dlm.QueueGranted {
				queued[l.Lock] = true
			}
		}
	}
	for id, ms := range r.pending {
		if len(ms) > 1 || !queued[id] {
			r.fatalf("lock %v of %v: request(s) %v never completed (queued now: %v)", id, r.ownerOf[id].owner, ms, queued[id])
		}
	}
	for _, c := range r.allClients() {
		if err := c.ss.Close(); err != nil {
			r.fatalf("close %v: %v", c.owner, err)
		}
		r.retire(c, "closed at the end")
	}
	r.settle()
	r.process()
	for _, m := range r.live() {
		if tb := r.srvs[m].Locks(); len(tb.Mastered) > 0 || len(tb.Held) > 0 {
			r.fatalf("%s still has locks after every session closed: mastered %+v, held %+v", m, tb.Mastered, tb.Held)
		}
	}
}
