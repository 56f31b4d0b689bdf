package cluster

import (
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

var (
	seedFlag  = flag.Uint64("cluster.seed", 0, "run the property and chaos tests for this seed only")
	seedsFlag = flag.Int("cluster.seeds", 0, "number of seeds of the property and chaos tests (0: the default)")
	firstFlag = flag.Uint64("cluster.first", 1, "first seed of the property and chaos tests")
	stepsFlag = flag.Int("cluster.steps", 0, "steps per seed (0: the default)")
)

// seeds returns the seeds to run: n by default (fewer with -short or the
// race detector), or the one given with -cluster.seed.
func seeds(n, short, race int) (first uint64, count int) {
	switch {
	case *seedFlag != 0:
		return *seedFlag, 1
	case *seedsFlag != 0:
		return *firstFlag, *seedsFlag
	case testing.Short():
		return 1, short
	case raceEnabled:
		return 1, race
	}
	return 1, n
}

func steps(n int) int {
	if *stepsFlag != 0 {
		return *stepsFlag
	}
	return n
}

// TestClusterMatchesModel runs random client operations on 1, 3 and 5
// members over the in-memory network (a seeded scheduler picks which
// message is delivered next, FIFO per pair) and on one reference model fed
// in the order the operations arrive at their masters. Every master call
// must return the model's error kind and events (lock ids mapped; tokens
// equal up to a constant within each resource's life, since each master
// counts from its own floor); every client must receive exactly the events
// its masters produced for it, in order; and after the network settles the
// lock tables must be the model's, and each member's copy of its clients'
// locks must match their masters. In the model an owner is one owner per
// master (a disconnect reaches each master at its own time, and purges
// there what that master holds); the harness maps them back.
//
// Replay a failure: go test ./internal/dlm/cluster -run TestClusterMatchesModel -cluster.seed=N -v
func TestClusterMatchesModel(t *testing.T) {
	first, count := seeds(3000, 200, 1000)
	n := steps(150)
	stats := map[string]int{}
	for seed := first; seed < first+uint64(count); seed++ {
		h := newHarness(t, seed, []int{1, 3, 5}[seed%3], false)
		for h.step = 1; h.step <= n; h.step++ {
			h.randomStep()
		}
		h.step = n + 1
		h.settle()
		h.checkSettled()
		h.compareFinal()
		for k, v := range h.stats {
			stats[k] += v
		}
	}
	if *seedFlag == 0 {
		for _, k := range []string{"event:granted", "event:not-queued", "event:canceled", "event:deadlock", "event:blocking",
			"event:refused", "refused:wrong-state", "refused:unknown-lock", "refused:has-children", "apply:disconnect",
			"apply:deadlock", "local-refusal", "victim"} {
			if stats[k] == 0 {
				t.Errorf("no %q in %d seeds: the generator is too narrow", k, count)
			}
		}
	}
	t.Logf("%d seeds: %v", count, stats)
}

func (h *harness) randomStep() {
	switch x := h.rng.IntN(100); {
	case x < 50:
		if !h.deliver() {
			h.clientOp()
		}
	case x < 87:
		h.clientOp()
	case x < 93:
		d := time.Duration(h.rng.IntN(1500)) * time.Millisecond
		h.now = h.now.Add(d)
		h.logf("advance %v", d)
		h.sweep()
	default:
		h.deadlockRound()
	}
	if h.step%10 == 0 {
		h.checkGranted()
	}
}

// compareFinal compares every master's engine with the model: the same
// locks on the same resources in the same queue order, modes, flags,
// parents, owners, value blocks, and tokens up to the resource's offset.
func (h *harness) compareFinal() {
	h.t.Helper()
	type row struct {
		id     LockID
		parent LockID
		owner  dlm.OwnerID
		q      dlm.Queue
		g, r   dlm.Mode
		flags  dlm.Flags
		valid  bool
		value  dlm.Value
		pend   bool
	}
	show := func(rs []row) string {
		var s []string
		for _, r := range rs {
			s = append(s, fmt.Sprintf("%v(%v %v %v->%v %v p%v valid=%v)", r.id, r.owner, r.q, r.g, r.r, r.flags, r.parent, r.valid))
		}
		return fmt.Sprint(s)
	}
	cl := map[resKey][]row{}
	tok := map[resKey]uint64{}
	for _, m := range h.live() {
		n := h.nodes[m]
		for _, r := range n.eng.Export().Locks {
			k := keyOf(r.Lockspace, r.Path)
			x := row{id: n.gid(r.ID), owner: r.Owner, q: r.Queue, g: r.Granted, r: r.Requested, flags: r.Flags, valid: r.ValueValid, value: r.Value, pend: r.PendingValue != nil}
			if r.Parent != 0 {
				x.parent = n.gid(r.Parent)
			}
			cl[k] = append(cl[k], x)
			tok[k] = r.Token
		}
	}
	ml := map[resKey][]row{}
	for _, r := range h.model.Export().Locks {
		k := keyOf(r.Lockspace, r.Path)
		x := row{id: h.gid[r.ID], owner: unsplit(r.Owner), q: r.Queue, g: r.Granted, r: r.Requested, flags: r.Flags, valid: r.ValueValid, value: r.Value, pend: r.PendingValue != nil}
		if r.Parent != 0 {
			x.parent = h.gid[r.Parent]
		}
		ml[k] = append(ml[k], x)
		if tok[k]-r.Token != h.off[k] {
			h.fatalf("resource %v: token %d, model %d, offset %d", k, tok[k], r.Token, h.off[k])
		}
	}
	for k, rs := range ml {
		if !slices.Equal(rs, cl[k]) {
			h.fatalf("final lock table of %v differs:\n  cluster %s\n  model   %s", k, show(cl[k]), show(rs))
		}
	}
	for k, rs := range cl {
		if _, ok := ml[k]; !ok {
			h.fatalf("final lock table: %v exists in the cluster only: %s", k, show(rs))
		}
	}
}
