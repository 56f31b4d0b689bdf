package cluster

import (
	"fmt"
	"slices"
	"testing"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// rig drives a few nodes by hand: the test decides what is delivered.
type rig struct {
	t     *testing.T
	h     *harness // for its network and clock
	nodes map[string]*Node
	view  View
	evs   map[dlm.OwnerID][]Event

	handoff bool
}

// newRig returns members where every root stays on its hash master (the
// recovery scenarios place roots by hash).
func newRig(t *testing.T, members ...string) *rig {
	return newRigWith(t, false, members...)
}

func newRigWith(t *testing.T, handoff bool, members ...string) *rig {
	t.Helper()
	h := &harness{t: t, now: t0, net: &network{q: map[pair][]Message{}}}
	r := &rig{t: t, h: h, nodes: map[string]*Node{}, evs: map[dlm.OwnerID][]Event{}, handoff: handoff}
	for _, m := range members {
		r.add(m)
	}
	r.setView(members...)
	return r
}

func (r *rig) add(m string) *Node {
	r.t.Helper()
	cfg := DefaultConfig()
	cfg.Member = m
	cfg.Transport = endpoint{r.h.net, m}
	cfg.Engine.DeadlockWait = 0
	cfg.Handoff = r.handoff
	n, err := New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	n.hooks.anomaly = func(msg string) { r.t.Fatalf("anomaly on %s: %s", m, msg) }
	r.nodes[m] = n
	r.got(n.SetQuorum(r.h.now, true))
	return n
}

func (r *rig) got(evs []Event) {
	for _, ev := range evs {
		r.evs[ev.Owner] = append(r.evs[ev.Owner], ev)
	}
}

// take returns and forgets the events a client received.
func (r *rig) take(o dlm.OwnerID) []Event {
	evs := r.evs[o]
	delete(r.evs, o)
	return evs
}

// setView applies a new view with these members on every live node and
// delivers everything.
func (r *rig) setView(members ...string) {
	r.t.Helper()
	r.view = View{Number: r.view.Number + 1, Members: slices.Sorted(slices.Values(members))}
	for _, m := range sortedKeys(r.nodes) {
		evs, err := r.nodes[m].SetView(r.h.now, r.view)
		if err != nil {
			r.t.Fatal(err)
		}
		r.got(evs)
	}
	r.deliverAll()
}

// deliver delivers the messages queued from one member to another.
func (r *rig) deliver(from, to string) {
	p := pair{from, to}
	for len(r.h.net.q[p]) > 0 {
		m := r.h.net.pop(p)
		if n := r.nodes[to]; n != nil {
			r.got(n.Deliver(r.h.now, from, m))
		}
	}
}

func (r *rig) deliverAll() {
	r.t.Helper()
	for i := 0; ; i++ {
		ps := r.h.net.busy()
		if len(ps) == 0 {
			return
		}
		if i > 100_000 {
			r.t.Fatal("the network does not settle")
		}
		r.deliver(ps[0].from, ps[0].to)
	}
}

// crash stops a member: messages to it are lost, those it sent stay.
func (r *rig) crash(m string) {
	delete(r.nodes, m)
	for p := range r.h.net.q {
		if p.to == m {
			delete(r.h.net.q, p)
		}
	}
}

// root returns a root name of lockspace "ls" mastered by master in the
// current view and, if next is not empty, by next in a view of nextView.
func (r *rig) root(master string, nextView []string, next string) string {
	r.t.Helper()
	nv := View{Members: slices.Sorted(slices.Values(nextView))}
	for i := range 10_000 {
		name := fmt.Sprintf("r%d", i)
		if Master(r.view, "ls", name) == master && (next == "" || Master(nv, "ls", name) == next) {
			return name
		}
	}
	r.t.Fatalf("no root mastered by %s then %s", master, next)
	return ""
}

func (r *rig) enqueue(o dlm.OwnerID, req Request) LockID {
	r.t.Helper()
	req.Owner = o
	if req.Lockspace == "" {
		req.Lockspace = "ls"
	}
	id, evs, err := r.nodes[o.Member].Enqueue(r.h.now, req)
	if err != nil {
		r.t.Fatalf("enqueue %+v: %v", req, err)
	}
	r.got(evs)
	return id
}

func (r *rig) convert(o dlm.OwnerID, id LockID, m dlm.Mode, f dlm.Flags, v *dlm.Value) {
	r.t.Helper()
	_, evs, err := r.nodes[o.Member].Enqueue(r.h.now, Request{Lock: id, Mode: m, Flags: f | dlm.Convert, Value: v})
	if err != nil {
		r.t.Fatalf("convert %v: %v", id, err)
	}
	r.got(evs)
}

func (r *rig) unlock(o dlm.OwnerID, id LockID, f dlm.Flags, v *dlm.Value) {
	r.t.Helper()
	evs, err := r.nodes[o.Member].Unlock(r.h.now, id, f, v)
	if err != nil {
		r.t.Fatalf("unlock %v: %v", id, err)
	}
	r.got(evs)
}

// granted returns the lock's granted mode on its master ("" if it is not
// there), checking that every master agrees with invariant 3.
func (r *rig) state(id LockID) string {
	r.t.Helper()
	var out string
	for _, m := range sortedKeys(r.nodes) {
		n := r.nodes[m]
		if b, ok := n.byG[id]; ok {
			rec, _ := n.eng.Lock(b)
			out = fmt.Sprintf("%v %v@%s", rec.Queue, rec.Granted, m)
		}
	}
	return out
}

func (r *rig) settled() {
	r.t.Helper()
	h := r.h
	h.nodes = r.nodes
	h.arrival = map[LockID]int{}
	h.outstanding = map[LockID]int{}
	h.sent, h.recv = map[evKey][]sentEvent{}, map[evKey]int{}
	h.checkSettled()
}

func owner(m string, c uint64) dlm.OwnerID { return dlm.OwnerID{Member: m, Client: c} }

func show(evs []Event) string { return fmtEvents(evs) }

func val(s string) *dlm.Value {
	var v dlm.Value
	copy(v[:], s)
	return &v
}
