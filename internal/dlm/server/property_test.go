package server

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/model"
)

var (
	seedFlag  = flag.Uint64("server.seed", 0, "run the server property tests for this seed only")
	seedsFlag = flag.Int("server.seeds", 0, "seeds of the server property tests (0: the default; VIGIL_LONG=1 runs more)")
	stepsFlag = flag.Int("server.steps", 0, "steps per seed of the server property tests (0: the default)")
	traceFlag = flag.Int("server.trace", 80, "operations to print before a failure")
)

// propSeeds returns the seeds to run: n (a multiple of 3, so that 1, 3 and
// 5 members get as many) by default, fewer with -short, or the one of
// -server.seed.
func propSeeds(n int) (first uint64, count int) {
	switch {
	case *seedFlag != 0:
		return *seedFlag, 1
	case *seedsFlag != 0:
		return 1, *seedsFlag
	case testing.Short():
		return 1, 3
	case longRun():
		return 1, 20 * n
	}
	return 1, n
}

// longRun: VIGIL_LONG=1 runs twenty times more seeds.
func longRun() bool { return os.Getenv("VIGIL_LONG") != "" }

func propSteps(n int) int {
	if *stepsFlag != 0 {
		return *stepsFlag
	}
	return n
}

// membersOf gives seeds 1, 2, 3, ... 1, 3, 5, 1, ... members.
func membersOf(seed uint64) int { return []int{1, 3, 5}[(seed-1)%3] }

var (
	spaces = []string{"ls", "ls", "ls2"}
	roots  = []string{"a", "b", "c", "d"}
	kids   = []string{"x", "y"}
)

// TestServerMatchesModel is the acceptance property test of the lock
// manager (issue 5) at the layer the agent runs: 1, 3 and 5 real Servers,
// their peer goroutines carrying numbered batches through encoding/json,
// one batch at a time (Config.Send) or streamed on Links (Config.Dial,
// go-back-N), half the seeds each; Sends and Links delayed and failing at
// random (a Send fails before or after the peer took the batch; a Link
// breaks on a send or after the peer took a batch, loses an ack, or
// delivers what was in flight after it broke: the stream must send again,
// and the peer apply each batch once, in order), and a
// seeded random sequence of client operations on several sessions per
// member: new locks in the six modes with NoQueue, Expedite, NoDlckWt,
// ValBlk and NoBlock, sub-locks through parents, two lockspaces,
// conversions up and down (QueCvt, value blocks written), unlocks, cancels
// and session closes. Each operation also runs on the reference model.
// After each one the cluster settles, and every session must have
// received exactly the events the model says, in order for each (client,
// root resource), with lock ids mapped: grants (mode, value block and its
// validity, the fencing token equal to the model's up to a constant for
// the resource's life, and above every token the resource had before),
// refusals (EventRefused with the model's error kind, or the same error at
// once), not-queued, canceled, deadlock and blocking notifications. Then
// the director's deadlock search runs as the agent does it: the union of
// every server's wait-for edges (compared with the model's), the victims
// of cluster.FindDeadlocks aborted through their member, each abort also
// applied to the model. Every 20 steps and at the end the masters' lock
// tables must be the model's and each member's copy of its clients' locks
// must match their masters.
//
// The operation sequence replays from its seed; the delays and failures of
// the wire do not (they come from the goroutines' timing).
//
// Replay: go test ./internal/dlm/server -run TestServerMatchesModel -server.seed=N -v
func TestServerMatchesModel(t *testing.T) {
	first, count := propSeeds(18)
	steps := propSteps(150)
	stats := map[string]int{}
	wstats := map[string]int{}
	start := time.Now()
	late := 0
	for seed := first; seed < first+uint64(count); seed++ {
		r := newModelRun(t, seed, membersOf(seed))
		for r.step = 1; r.step <= steps; r.step++ {
			r.randomStep()
			if r.step%20 == 0 {
				r.compareTables()
			}
		}
		r.compareTables()
		r.closeAll()
		for k, v := range r.stats {
			stats[k] += v
		}
		r.w.mu.Lock()
		for k, v := range r.w.stats {
			wstats[k] += v
		}
		r.w.mu.Unlock()
		late += r.late
	}
	if *seedFlag == 0 {
		for _, k := range []string{"event:granted", "event:not-queued", "event:canceled", "event:deadlock", "event:blocking",
			"event:refused", "refused:wrong-state", "refused:has-children", "now:invalid", "now:unknown-lock",
			"close", "victim", "valblk-grant", "value-invalid", "sub-lock"} {
			if stats[k] == 0 {
				t.Errorf("no %q in %d seeds: the generator is too narrow", k, count)
			}
		}
		for _, k := range []string{"send:fail-before", "send:fail-after"} {
			if wstats[k] == 0 && count >= 6 {
				t.Errorf("no %q in %d seeds: the wire injected no such failure", k, count)
			}
		}
	}
	t.Logf("%d seeds x %d steps in %v (%d settles looked twice): %v; wire: %v", count, steps, time.Since(start).Round(time.Millisecond), late, stats, wstats)
}

// where is the resource of a lock the test requested.
type where struct {
	ls   string
	path []string
}

type evKey struct {
	owner dlm.OwnerID
	root  cluster.Root
}

// modelRun compares a prig with the reference model. The model's owners
// are the sessions' owner ids.
type modelRun struct {
	*prig
	model   *model.Model
	mid     map[cluster.LockID]dlm.LockID
	gid     map[dlm.LockID]cluster.LockID
	where   map[cluster.LockID]where
	ownerOf map[cluster.LockID]dlm.OwnerID
	off     map[resKey]uint64 // cluster token - model token, for the resource's life
	lastTok map[resKey]uint64 // the highest token granted on the resource, ever
	want    map[evKey][]cluster.Event
	retired []*pclient // sessions closed this step
	nroots  int
}

func newModelRun(t *testing.T, seed uint64, members int) *modelRun {
	r := &modelRun{prig: newPrig(t, seed, members), mid: map[cluster.LockID]dlm.LockID{}, gid: map[dlm.LockID]cluster.LockID{},
		where: map[cluster.LockID]where{}, ownerOf: map[cluster.LockID]dlm.OwnerID{}, off: map[resKey]uint64{},
		lastTok: map[resKey]uint64{}, want: map[evKey][]cluster.Event{}}
	r.model = model.New(r.engine)
	r.nroots = 1 + r.rng.IntN(len(roots))
	switch r.rng.IntN(4) {
	case 0:
		r.w.set(0, 0)
	case 1:
		r.w.set(10, 0)
	case 2:
		r.w.set(0, 300*time.Microsecond)
	default:
		r.w.set(15, 200*time.Microsecond)
	}
	r.settle()
	return r
}

func (r *modelRun) randomStep() {
	live := r.live()
	m := live[r.rng.IntN(len(live))]
	cs := r.clients[m]
	c := cs[r.rng.IntN(len(cs))]
	switch x := r.rng.IntN(100); {
	case x < 45:
		r.enqueue(c)
	case x < 65:
		r.convert(c)
	case x < 82:
		r.unlock(c)
	case x < 96:
		r.cancel(c)
	default:
		r.closeSession(c)
	}
	r.settleAndCompare()
	r.deadlockRound()
}

func (r *modelRun) midOf(g cluster.LockID) dlm.LockID {
	if id, ok := r.mid[g]; ok {
		return id
	}
	return 1 << 62 // no such lock
}

func (r *modelRun) flag(f dlm.Flags, oneIn int) dlm.Flags {
	if r.rng.IntN(oneIn) == 0 {
		return f
	}
	return 0
}

func (r *modelRun) value() *dlm.Value {
	var v dlm.Value
	v[0] = byte('a' + r.rng.IntN(26))
	v[1] = byte('0' + r.rng.IntN(10))
	return &v
}

// pick returns a lock of the member's clients (of owner, if not nil) as
// the member knows them, or once in a while one that does not exist.
func (r *modelRun) pick(m string, owner *dlm.OwnerID) cluster.LockID {
	none := cluster.LockID{Member: m, N: 1 << 40}
	if r.rng.IntN(25) == 0 {
		return none
	}
	var ids []cluster.LockID
	for _, l := range r.srvs[m].Locks().Held {
		if owner == nil || l.Owner == *owner {
			ids = append(ids, l.Lock)
		}
	}
	if len(ids) == 0 {
		return none
	}
	return ids[r.rng.IntN(len(ids))]
}

func (r *modelRun) enqueue(c *pclient) {
	req := cluster.Request{Lockspace: spaces[r.rng.IntN(len(spaces))], Mode: dlm.Mode(r.rng.IntN(6)),
		Flags: r.flag(dlm.NoQueue, 5) | r.flag(dlm.Expedite, 10) | r.flag(dlm.NoDlckWt, 8) | r.flag(dlm.ValBlk, 2) | r.flag(dlm.NoBlock, 6)}
	if req.Flags&dlm.Expedite != 0 && r.rng.IntN(6) != 0 {
		req.Mode = dlm.NL
	}
	path := []string{roots[r.rng.IntN(r.nroots)]}
	req.Name = path[0]
	if r.rng.IntN(4) == 0 {
		own := &c.owner
		if r.rng.IntN(6) == 0 {
			own = nil
		}
		req.Parent, req.Name = r.pick(c.member, own), kids[r.rng.IntN(len(kids))]
		if w, ok := r.where[req.Parent]; ok {
			req.Lockspace = w.ls
			if r.rng.IntN(10) == 0 {
				req.Lockspace = "other"
			}
			path = append(slices.Clone(w.path), req.Name)
		}
	}
	switch r.rng.IntN(50) {
	case 0:
		req.Mode = dlm.Mode(6 + r.rng.IntN(3))
	case 1:
		req.Flags |= dlm.QueCvt
	case 2:
		req.Name = ""
	case 3:
		req.Value = r.value()
	}
	id, err := c.ss.Enqueue(req)
	mreq := dlm.Request{Lockspace: req.Lockspace, Name: req.Name, Owner: c.owner, Mode: req.Mode, Flags: req.Flags, Value: req.Value}
	if !req.Parent.IsZero() {
		mreq.Parent = r.midOf(req.Parent)
	}
	mid, mevs, merr := r.model.Enqueue(t0, mreq)
	r.logf("%v enqueue %s/%v parent %v %v %v -> %v %v | model %d %s", c.owner, req.Lockspace, path, req.Parent, req.Mode, req.Flags, id, errKind(err), mid, errKind(merr))
	if !r.refusedNow(err, merr) {
		return
	}
	r.where[id] = where{req.Lockspace, path}
	r.ownerOf[id] = c.owner
	if len(path) > 1 {
		r.count("sub-lock")
	}
	if merr != nil {
		r.expect(cluster.Event{Kind: cluster.EventRefused, Lock: id, Owner: c.owner, Mode: req.Mode, Op: cluster.OpEnqueue, Err: merr})
		return
	}
	r.mid[id], r.gid[mid] = mid, id
	r.expectModel(mevs)
}

// refusedNow checks an error the server returned at once against the
// model's. It returns true when the server took the operation.
func (r *modelRun) refusedNow(err, merr error) bool {
	r.t.Helper()
	if err == nil {
		return true
	}
	if merr == nil {
		r.fatalf("the server refused at once (%v); the model accepted", err)
	}
	if errKind(err) != errKind(merr) {
		r.fatalf("the server refused with %v, the model with %v", err, merr)
	}
	r.count("now:" + errKind(err))
	return false
}

func (r *modelRun) convert(c *pclient) {
	own := &c.owner // another session's lock is refused at once (TestSessionsAreSeparate)
	req := cluster.Request{Lock: r.pick(c.member, own), Mode: dlm.Mode(r.rng.IntN(6)),
		Flags: dlm.Convert | r.flag(dlm.QueCvt, 3) | r.flag(dlm.NoQueue, 5) | r.flag(dlm.ValBlk, 2) | r.flag(dlm.NoDlckWt, 8) | r.flag(dlm.NoBlock, 6)}
	if r.rng.IntN(3) == 0 {
		req.Value = r.value()
		req.Flags |= dlm.ValBlk
	}
	if r.rng.IntN(40) == 0 {
		req.Flags |= dlm.Expedite
	}
	_, err := c.ss.Enqueue(req)
	_, mevs, merr := r.model.Enqueue(t0, dlm.Request{Lock: r.midOf(req.Lock), Mode: req.Mode, Flags: req.Flags, Value: req.Value})
	r.logf("%v convert %v %v %v value=%v -> %s | model %s", c.owner, req.Lock, req.Mode, req.Flags, req.Value != nil, errKind(err), errKind(merr))
	if !r.refusedNow(err, merr) {
		return
	}
	if merr != nil {
		r.expect(cluster.Event{Kind: cluster.EventRefused, Lock: req.Lock, Owner: r.ownerOf[req.Lock], Mode: req.Mode, Op: cluster.OpConvert, Err: merr})
		return
	}
	if req.Value != nil {
		r.count("value-write")
	}
	r.expectModel(mevs)
}

func (r *modelRun) unlock(c *pclient) {
	own := &c.owner // another session's lock is refused at once (TestSessionsAreSeparate)
	id, f := r.pick(c.member, own), r.flag(dlm.ValBlk, 2)
	var v *dlm.Value
	if f != 0 && r.rng.IntN(2) == 0 {
		v = r.value()
	}
	if r.rng.IntN(40) == 0 {
		f |= dlm.NoQueue
	}
	err := c.ss.Unlock(id, f, v)
	mevs, merr := r.model.Unlock(r.midOf(id), f, v)
	r.logf("%v unlock %v %v value=%v -> %s | model %s", c.owner, id, f, v != nil, errKind(err), errKind(merr))
	if !r.refusedNow(err, merr) {
		return
	}
	if merr != nil {
		r.expect(cluster.Event{Kind: cluster.EventRefused, Lock: id, Owner: r.ownerOf[id], Op: cluster.OpUnlock, Err: merr})
		return
	}
	r.expectModel(mevs)
}

func (r *modelRun) cancel(c *pclient) {
	own := &c.owner // another session's lock is refused at once (TestSessionsAreSeparate)
	id := r.pick(c.member, own)
	err := c.ss.Cancel(id)
	mevs, merr := r.model.Cancel(r.midOf(id))
	r.logf("%v cancel %v -> %s | model %s", c.owner, id, errKind(err), errKind(merr))
	if !r.refusedNow(err, merr) {
		return
	}
	if merr != nil {
		r.expect(cluster.Event{Kind: cluster.EventRefused, Lock: id, Owner: r.ownerOf[id], Op: cluster.OpCancel, Err: merr})
		return
	}
	r.expectModel(mevs)
}

func (r *modelRun) closeSession(c *pclient) {
	if err := c.ss.Close(); err != nil {
		r.fatalf("close session %v: %v", c.owner, err)
	}
	mevs := r.model.PurgeOwner(c.owner, true)
	r.logf("%v close -> model %d events", c.owner, len(mevs))
	r.count("close")
	r.clients[c.member] = slices.DeleteFunc(r.clients[c.member], func(x *pclient) bool { return x == c })
	r.retired = append(r.retired, c)
	n := r.open(c.member)
	r.logf("%v opened", n.owner)
	r.expectModel(mevs)
}

// expectModel records the model's events as the cluster events the
// sessions must receive (tokens still the model's).
func (r *modelRun) expectModel(mevs []dlm.Event) {
	if len(mevs) == 0 {
		return
	}
	flags := map[dlm.LockID]dlm.Flags{}
	for _, rec := range r.model.Export().Locks {
		flags[rec.ID] = rec.Flags
	}
	for _, mev := range mevs {
		g, ok := r.gid[mev.Lock]
		if !ok {
			r.fatalf("model event for an unmapped lock: %+v", mev)
		}
		ev := cluster.Event{Kind: cluster.EventKind(mev.Kind), Lock: g, Owner: mev.Owner, Mode: mev.Mode, Token: mev.Token}
		switch mev.Kind {
		case dlm.EventBlocking:
			ev.Blocked = r.gid[mev.Blocked]
		case dlm.EventGranted:
			if flags[mev.Lock]&dlm.ValBlk != 0 || mev.ValueValid || mev.Value != (dlm.Value{}) {
				ev.ValBlk, ev.ValueValid, ev.Value = true, mev.ValueValid, mev.Value
			}
		}
		r.expect(ev)
	}
}

func (r *modelRun) expect(ev cluster.Event) {
	k := r.keyOf(ev)
	r.want[k] = append(r.want[k], ev)
}

func (r *modelRun) keyOf(ev cluster.Event) evKey {
	w, ok := r.where[ev.Lock]
	if !ok {
		r.fatalf("event for a lock the test never requested: %s", evString(ev))
	}
	return evKey{ev.Owner, cluster.Root{Lockspace: w.ls, Name: w.path[0]}}
}

// settleAndCompare waits until the cluster is idle and compares what the
// sessions received with what the model said. A mismatch is looked at a
// second time after a pause (settle cannot see a peer goroutine that has
// taken messages and not sent them yet).
func (r *modelRun) settleAndCompare() {
	r.t.Helper()
	r.settle()
	got := map[evKey][]cluster.Event{}
	collect := func() {
		for _, c := range append(r.allClients(), r.retired...) {
			for _, ev := range c.take() {
				if ev.Owner != c.owner {
					r.fatalf("session %v received an event of %v: %s", c.owner, ev.Owner, evString(ev))
				}
				k := r.keyOf(ev)
				got[k] = append(got[k], ev)
			}
		}
	}
	collect()
	off, msg := r.compare(got)
	if msg != "" {
		time.Sleep(50 * time.Millisecond)
		r.settle()
		collect()
		if off, msg = r.compare(got); msg != "" {
			r.fatalf("%s", msg)
		}
		r.late++
		r.logf("(the events came late)")
	}
	for k, d := range off {
		r.off[k] = d
	}
	// Fencing tokens: every grant of this step is above every token the
	// resource had before.
	step := map[resKey][]uint64{}
	for _, evs := range got {
		for _, ev := range evs {
			r.count("event:" + ev.Kind.String())
			if ev.Kind == cluster.EventRefused {
				r.count("refused:" + errKind(ev.Err))
			}
			if ev.Kind != cluster.EventGranted {
				continue
			}
			if ev.ValBlk {
				r.count("valblk-grant")
				if !ev.ValueValid {
					r.count("value-invalid")
				}
			}
			w := r.where[ev.Lock]
			k := keyOf(w.ls, w.path)
			step[k] = append(step[k], ev.Token)
		}
	}
	for k, toks := range step {
		slices.Sort(toks)
		for i, tok := range toks {
			if tok <= r.lastTok[k] || (i > 0 && tok == toks[i-1]) {
				r.fatalf("fencing tokens of %s: granted %v this step, after %d before", k, toks, r.lastTok[k])
			}
		}
		r.lastTok[k] = toks[len(toks)-1]
	}
	// A resource's offset lasts as long as the resource.
	live := map[resKey]bool{}
	for _, rec := range r.model.Export().Locks {
		live[keyOf(rec.Lockspace, rec.Path)] = true
	}
	for k := range r.off {
		if !live[k] {
			delete(r.off, k)
		}
	}
	clear(r.want)
	r.retired = nil
}

// compare compares the events received with the expected ones, for each
// (client, root) in order. It returns the token offsets of resources
// created in this step, or what differs.
func (r *modelRun) compare(got map[evKey][]cluster.Event) (map[resKey]uint64, string) {
	off := map[resKey]uint64{}
	keys := map[evKey]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range r.want {
		keys[k] = true
	}
	sorted := make([]evKey, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.SortFunc(sorted, func(a, b evKey) int {
		return cmp.Or(cmp.Compare(a.owner.Member, b.owner.Member), cmp.Compare(a.owner.Client, b.owner.Client),
			cmp.Compare(a.root.Lockspace, b.root.Lockspace), cmp.Compare(a.root.Name, b.root.Name))
	})
	for _, k := range sorted {
		g, w := got[k], slices.Clone(r.want[k])
		for i := range w {
			if w[i].Kind != cluster.EventGranted {
				continue
			}
			wh := r.where[w[i].Lock]
			rk := keyOf(wh.ls, wh.path)
			d, ok := r.off[rk]
			if !ok {
				d, ok = off[rk]
			}
			if !ok && i < len(g) && g[i].Kind == cluster.EventGranted && g[i].Lock == w[i].Lock {
				// The first grant of a new resource sets its offset.
				d = g[i].Token - w[i].Token
				off[rk] = d
			}
			w[i].Token += d
		}
		if evStrings(g) != evStrings(w) {
			return nil, fmt.Sprintf("%v on %v received other events than the model says:\n  got   %s\n  model %s", k.owner, k.root, evStrings(g), evStrings(w))
		}
	}
	return off, ""
}

// deadlockRound is the director's deadlock search, as the agent runs it.
func (r *modelRun) deadlockRound() {
	r.t.Helper()
	var all []cluster.Edge
	for _, m := range r.live() {
		all = append(all, r.srvs[m].WaitEdges()...)
	}
	medges := r.model.WaitEdges(t0)
	r.compareEdges(all, medges)
	vs := cluster.FindDeadlocks(all)
	if mv := model.FindDeadlocks(medges); len(mv) != len(vs) {
		r.fatalf("deadlock search: %d victims %v, the model finds %d deadlocks", len(vs), vs, len(mv))
	}
	for _, v := range vs {
		err := r.srvs[v.Member].AbortDeadlock(v)
		mevs, merr := r.model.Deadlock(t0, r.midOf(v))
		r.logf("abort deadlock victim %v via %s -> %s | model %s", v, v.Member, errKind(err), errKind(merr))
		r.count("victim")
		switch {
		case err != nil:
			if merr == nil || errKind(err) != errKind(merr) {
				r.fatalf("abort %v: %v; the model: %v", v, err, merr)
			}
		case merr == nil:
			r.expectModel(mevs)
		}
		r.settleAndCompare()
	}
}

// compareEdges compares the union of the masters' wait-for edges with the
// model's (without Seq: each master counts its own).
func (r *modelRun) compareEdges(all []cluster.Edge, medges []dlm.Edge) {
	r.t.Helper()
	show := func(es []string) string { return strings.Join(es, ", ") }
	var got, want []string
	mastered := map[string]map[cluster.LockID]bool{}
	for _, e := range all {
		if mastered[e.Master] == nil {
			mastered[e.Master] = map[cluster.LockID]bool{}
			if s := r.srvs[e.Master]; s != nil {
				for _, l := range s.Locks().Mastered {
					mastered[e.Master][l.Lock] = true
				}
			}
		}
		if !mastered[e.Master][e.Lock] {
			r.fatalf("%s reports wait edge %v of a lock it does not master", e.Master, e.Lock)
		}
		got = append(got, fmt.Sprintf("%v:%v->%v", e.Lock, e.Waiter, e.Blocker))
	}
	for _, e := range medges {
		want = append(want, fmt.Sprintf("%v:%v->%v", r.gid[e.Lock], e.Waiter, e.Blocker))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		r.fatalf("wait-for edges differ:\n  servers %s\n  model   %s", show(got), show(want))
	}
}

// compareTables compares the masters' lock tables with the model's, and
// each member's copies with their masters.
func (r *modelRun) compareTables() {
	r.t.Helper()
	type row struct {
		id, parent cluster.LockID
		owner      dlm.OwnerID
		q          dlm.Queue
		g, req     dlm.Mode
		flags      dlm.Flags
	}
	cl, ml := map[resKey][]row{}, map[resKey][]row{}
	tok := map[resKey]uint64{}
	r.frozen(func(tables map[string]cluster.Table) {
		r.checkCompatible(tables)
		r.checkCopies(tables)
		for _, m := range sortedNames(tables) {
			for _, l := range tables[m].Mastered {
				k := keyOf(l.Lockspace, l.Path)
				cl[k] = append(cl[k], row{l.Lock, l.Parent, l.Owner, l.Queue, l.Granted, l.Requested, l.Flags})
				tok[k] = l.Token
			}
		}
	})
	for _, rec := range r.model.Export().Locks {
		k := keyOf(rec.Lockspace, rec.Path)
		x := row{id: r.gid[rec.ID], owner: rec.Owner, q: rec.Queue, g: rec.Granted, req: rec.Requested, flags: rec.Flags}
		if rec.Parent != 0 {
			x.parent = r.gid[rec.Parent]
		}
		ml[k] = append(ml[k], x)
		if d, ok := r.off[k]; !ok || tok[k]-rec.Token != d {
			r.fatalf("resource %s: token %d on its master, %d in the model, offset %d (known %v)", k, tok[k], rec.Token, d, ok)
		}
	}
	for _, k := range sortedRes(ml) {
		if !slices.Equal(ml[k], cl[k]) {
			r.fatalf("lock table of %s differs:\n  servers %+v\n  model   %+v", k, cl[k], ml[k])
		}
	}
	for k, rows := range cl {
		if _, ok := ml[k]; !ok {
			r.fatalf("resource %s exists on the servers only: %+v", k, rows)
		}
	}
}

func sortedRes[V any](m map[resKey]V) []resKey {
	out := make([]resKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
