package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// handedRig returns three members and a root x whose hash master is m2,
// handed to m1 by a first lock of m1's client a (released again).
func handedRig(t *testing.T) (*rig, string, dlm.OwnerID) {
	t.Helper()
	r := newRigWith(t, true, "m1", "m2", "m3")
	x := r.root("m2", nil, "")
	a := owner("m1", 1)
	l := r.enqueue(a, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	if evs := r.take(a); len(evs) != 1 || evs[0].Kind != EventGranted {
		t.Fatalf("a got %s, want its grant", show(evs))
	}
	if r.nodes["m1"].owns[Root{"ls", x}] == nil || r.nodes["m2"].handed[Root{"ls", x}] == nil {
		t.Fatalf("m2 did not hand %s to m1", x)
	}
	r.unlock(a, l, 0, nil)
	return r, x, a
}

// A root is mastered where it is used: after the first lock, m1's client
// locks and unlocks it without a message.
func TestHandoffLocksWhereUsed(t *testing.T) {
	r, x, a := handedRig(t)
	if ps := r.h.net.busy(); len(ps) != 0 {
		t.Fatalf("an unlock on a root handed here sent messages: %v", ps)
	}
	var last uint64
	for i := range 3 {
		l := r.enqueue(a, Request{Name: x, Mode: dlm.EX})
		evs := r.take(a)
		if len(evs) != 1 || evs[0].Kind != EventGranted {
			t.Fatalf("lock %d: got %s at once, want its grant", i, show(evs))
		}
		if evs[0].Token <= last {
			t.Errorf("lock %d: token %d, not above %d", i, evs[0].Token, last)
		}
		last = evs[0].Token
		if s := r.state(l); s != "granted EX@m1" {
			t.Errorf("lock %d is %q, want granted EX@m1", i, s)
		}
		r.unlock(a, l, 0, nil)
		if ps := r.h.net.busy(); len(ps) != 0 {
			t.Fatalf("lock %d sent messages: %v", i, ps)
		}
	}
	r.settled()
}

// Another member's requests go through the hash master, which forwards
// them; the holder answers directly; blocking, cancel and grant work.
func TestHandoffForwardsOthers(t *testing.T) {
	r, x, a := handedRig(t)
	la := r.enqueue(a, Request{Name: x, Mode: dlm.EX})
	r.take(a)
	b := owner("m3", 1)
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	if s := r.state(lb); s != "waiting NL@m1" {
		t.Fatalf("b's lock is %q, want waiting at m1", s)
	}
	if evs := r.take(a); len(evs) != 1 || evs[0].Kind != EventBlocking {
		t.Errorf("a got %s, want a blocking notification", show(evs))
	}
	r.unlock(a, la, 0, nil)
	r.deliverAll()
	if evs := r.take(b); len(evs) != 1 || evs[0].Kind != EventGranted {
		t.Fatalf("b got %s, want its grant", show(evs))
	}
	lb2 := r.enqueue(b, Request{Name: x, Mode: dlm.PR})
	evs, err := r.nodes["m3"].Cancel(r.h.now, lb2)
	if err != nil {
		t.Fatal(err)
	}
	r.got(evs)
	r.deliverAll()
	// b's own EX blocks its PR request (a blocking notification), until
	// the cancel.
	if evs := r.take(b); len(evs) != 2 || evs[0].Kind != EventBlocking || evs[1].Kind != EventCanceled {
		t.Errorf("b got %s, want a blocking notification and its second request canceled", show(evs))
	}
	r.settled()
}

// A root given back while a forwarded request is on its way: the request
// comes back to the hash master and runs before one that reached the hash
// master after the return.
func TestHandoffReturnKeepsOrder(t *testing.T) {
	r, x, _ := handedRig(t)
	b, c := owner("m3", 1), owner("m3", 2)
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.EX})
	r.deliver("m3", "m2") // forwarded to m1, not delivered yet
	r.h.now = r.h.now.Add(time.Minute)
	r.nodes["m1"].Sweep(r.h.now)
	if r.nodes["m1"].owns[Root{"ls", x}] != nil {
		t.Fatal("m1 kept an idle root")
	}
	r.deliver("m1", "m2") // the return: one operation is on its way to m1
	lc := r.enqueue(c, Request{Name: x, Mode: dlm.EX})
	r.deliver("m3", "m2") // c's request waits for b's
	if s := r.state(lc); s != "" {
		t.Fatalf("c's request ran (%q) before b's came back", s)
	}
	r.deliver("m2", "m1") // m1 sends b's request back
	r.deliver("m1", "m2")
	r.deliverAll()
	if s := r.state(lb); s != "granted EX@m2" {
		t.Errorf("b's lock is %q, want granted EX@m2", s)
	}
	if s := r.state(lc); s != "waiting NL@m2" {
		t.Errorf("c's lock is %q, want waiting at m2", s)
	}
	if ho := r.nodes["m2"].handed[Root{"ls", x}]; ho != nil {
		t.Errorf("m2 still counts %s handed (%+v)", x, *ho)
	}
	r.settled()
}

// The holder of a handed root crashes: the hash master rebuilds the root
// from the survivors' locks, with tokens above any the holder issued.
func TestHandoffHolderCrashes(t *testing.T) {
	r, x, a := handedRig(t)
	la := r.enqueue(a, Request{Name: x, Mode: dlm.EX})
	ga := r.take(a)
	b := owner("m3", 1)
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	r.crash("m1")
	r.setView("m2", "m3")
	evs := r.take(b)
	if len(evs) != 1 || evs[0].Kind != EventGranted || evs[0].Lock != lb {
		t.Fatalf("b got %s, want its grant", show(evs))
	}
	if evs[0].Token <= ga[0].Token {
		t.Errorf("b's token %d is not above a's %d", evs[0].Token, ga[0].Token)
	}
	if s := r.state(lb); s != "granted EX@m2" {
		t.Errorf("b's lock is %q, want granted EX@m2", s)
	}
	_ = la
	r.settled()
}

// A new view (a member joins) ends the hand-off without a crash: the lock
// moves to the root's hash master, and the client can still release it.
func TestHandoffEndsWithView(t *testing.T) {
	r, x, a := handedRig(t)
	la := r.enqueue(a, Request{Name: x, Mode: dlm.PW})
	ga := r.take(a)
	r.add("m4")
	r.setView("m1", "m2", "m3", "m4")
	want := Master(r.view, "ls", x)
	if s := r.state(la); s != "granted PW@"+want {
		t.Errorf("a's lock is %q, want granted PW@%s", s, want)
	}
	r.settled()
	r.unlock(a, la, dlm.ValBlk, val("v2"))
	r.deliverAll()
	l2 := r.enqueue(a, Request{Name: x, Mode: dlm.PR, Flags: dlm.ValBlk})
	r.deliverAll()
	evs := r.take(a)
	if len(evs) != 1 || evs[0].Kind != EventGranted || evs[0].Token <= ga[0].Token {
		t.Fatalf("a got %s, want a grant with a token above %d", show(evs), ga[0].Token)
	}
	_ = l2
	r.settled()
}

// A client of a third member disconnects while it holds a lock on a
// handed root: the purge follows the same path and is answered in full.
func TestHandoffDisconnect(t *testing.T) {
	r, x, _ := handedRig(t)
	b := owner("m3", 1)
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.PR})
	r.deliverAll()
	if s := r.state(lb); s != "granted PR@m1" {
		t.Fatalf("b's lock is %q, want granted PR@m1", s)
	}
	evs, err := r.nodes["m3"].Disconnect(r.h.now, b)
	if err != nil {
		t.Fatal(err)
	}
	r.got(evs)
	r.deliverAll()
	if s := r.state(lb); s != "" {
		t.Errorf("b's lock is %q after its client left", s)
	}
	if n := len(r.nodes["m3"].pending); n != 0 {
		t.Errorf("m3 has %d requests pending after the purge", n)
	}
	r.settled()
}

// Fixed lockspaces keep their hash masters.
func TestHandoffFixedLockspace(t *testing.T) {
	r := newRigWith(t, true, "m1", "m2", "m3")
	for _, n := range r.nodes {
		n.cfg.Fixed = func(ls string) bool { return strings.HasPrefix(ls, "fixed.") }
	}
	var x string
	for i := 0; ; i++ {
		x = "f" + string(rune('a'+i))
		if Master(r.view, "fixed.ls", x) == "m2" {
			break
		}
	}
	a := owner("m1", 1)
	l := r.enqueue(a, Request{Lockspace: "fixed.ls", Name: x, Mode: dlm.EX})
	r.deliverAll()
	if s := r.state(l); s != "granted EX@m2" {
		t.Errorf("the lock is %q, want granted EX@m2", s)
	}
	r.settled()
}
