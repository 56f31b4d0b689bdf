package cluster

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClusterFailures runs random client operations while members crash
// and join (at random points, also during recovery), views reach members
// at different times and quorum comes and goes. After every step it checks
// across all live masters: never two incompatible locks granted on one
// resource (invariant 3), each root on one master, tokens of a resource
// strictly increasing over the run, no grant without quorum, queued
// requests in arrival order, and that a client's granted lock with nothing
// pending stays granted. After settling: every member's copy matches its
// masters, nothing is held or pending, and every request got exactly one
// completion or still waits.
//
// Replay a failure: go test ./internal/dlm/cluster -run TestClusterFailures -cluster.seed=N -v
func TestClusterFailures(t *testing.T) {
	first, count := seeds(1000, 80, 300)
	n := steps(300)
	stats := map[string]int{}
	for seed := first; seed < first+uint64(count); seed++ {
		h := newHarness(t, seed, 1+int(seed%5), true)
		for h.step = 1; h.step <= n; h.step++ {
			h.chaosStep()
			if h.step == n/2 && h.rng.IntN(2) == 0 {
				h.settle()
				h.checkSettled()
			}
		}
		h.step = n + 1
		if *dumpFlag {
			h.t.Log(strings.Join(h.trace, "\n"))
		}
		h.settle()
		h.checkSettled()
		h.checkStable()
		for k, v := range h.stats {
			stats[k] += v
		}
	}
	if *seedFlag == 0 {
		for _, k := range []string{"crash", "join", "event:granted", "event:blocking", "apply:disconnect", "quorum-lost",
			"interrupted", "reissued", "lost-op", "rejoin"} {
			if stats[k] == 0 {
				t.Errorf("no %q in %d seeds: the generator is too narrow", k, count)
			}
		}
	}
	t.Logf("%d seeds: %v", count, stats)
}

var dumpFlag = flag.Bool("cluster.dump", false, "print every seed's actions")

func (h *harness) chaosStep() {
	switch x := h.rng.IntN(100); {
	case x < 45:
		if !h.deliver() {
			h.clientOp()
		}
	case x < 75:
		h.clientOp()
	case x < 79:
		d := time.Duration(h.rng.IntN(1500)) * time.Millisecond
		h.now = h.now.Add(d)
		h.sweep()
	case x < 82:
		h.deadlockRound()
	case x < 90:
		if b := h.behind(); len(b) > 0 {
			m := b[h.rng.IntN(len(b))]
			if h.nodes[m].rec != nil {
				h.count("interrupted")
			}
			h.applyView(m)
		}
	case x < 94:
		h.quorumStep()
	case x < 97:
		h.membership()
	default:
		h.deliver()
	}
	h.checkGranted()
	h.checkStable()
}

func (h *harness) quorumStep() {
	var off []string
	for _, m := range h.live() {
		if h.nodes[m].quorum != h.quorum {
			off = append(off, m)
		}
	}
	if len(off) > 0 {
		m := off[h.rng.IntN(len(off))]
		h.logf("%s learns quorum=%v", m, h.quorum)
		h.got(m, h.nodes[m].SetQuorum(h.now, h.quorum))
		return
	}
	if h.rng.IntN(3) == 0 {
		h.quorum = !h.quorum
		if !h.quorum {
			h.count("quorum-lost")
		}
		h.logf("the cluster has quorum=%v", h.quorum)
	}
}

// membership crashes a member or adds one (a new name, or the name of a
// crashed member: a new incarnation with an empty state).
func (h *harness) membership() {
	if len(h.views) > 12 {
		return
	}
	live := h.live()
	if len(live) > 1 && (len(live) == 5 || h.rng.IntN(2) == 0) {
		// Mostly a member with messages on the way: some arrive, some not.
		var sending []string
		for _, p := range h.net.busy() {
			if h.nodes[p.from] != nil && !slices.Contains(sending, p.from) {
				sending = append(sending, p.from)
			}
		}
		m := live[h.rng.IntN(len(live))]
		if len(sending) > 0 && h.rng.IntN(4) != 0 {
			m = sending[h.rng.IntN(len(sending))]
		}
		h.crash(m)
		return
	}
	var name string
	var dead []string
	for _, m := range h.names {
		if h.nodes[m] == nil {
			dead = append(dead, m)
		}
	}
	if len(dead) > 0 && h.rng.IntN(2) == 0 {
		name = dead[h.rng.IntN(len(dead))]
		h.count("rejoin")
	} else {
		name = fmt.Sprintf("m%d", len(h.names)+1)
	}
	n := h.addNode(name)
	h.got(name, n.SetQuorum(h.now, h.quorum))
	h.newView(append(live, name))
	h.count("join")
	h.logf("%s joins", name)
}

// crash stops a member at once (it is fenced), then the cluster decides a
// view without it. Messages it sent are still delivered (and dropped by
// members that applied the view); messages to it are lost.
func (h *harness) crash(m string) {
	delete(h.nodes, m)
	h.dead[h.incName(m)] = true
	for p := range h.net.q {
		if p.to == m {
			delete(h.net.q, p)
		}
	}
	for _, o := range h.clients[m] {
		h.gone[o] = true
	}
	delete(h.clients, m)
	delete(h.next, m)
	for id := range h.outstanding {
		if id.Member == m {
			delete(h.outstanding, id)
		}
	}
	for id := range h.stable {
		if id.Member == m {
			delete(h.stable, id)
		}
	}
	for id := range h.lastOp {
		if id.Member == m {
			delete(h.lastOp, id)
		}
	}
	h.count("crash")
	h.logf("%s crashes", m)
	h.newView(slices.DeleteFunc(h.live(), func(x string) bool { return x == m }))
}
