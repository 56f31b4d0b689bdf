package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// An unlock the lost master ran (it granted B's EX, and B heard) but whose
// reply A never got: A's lock must come back at NL, not EX, or the new
// master would hold two EX locks.
func TestLostUnlockIsNotRegranted(t *testing.T) {
	r := newRig(t, "m1", "m2", "m3")
	x := r.root("m3", []string{"m1", "m2"}, "")
	a, b := owner("m1", 1), owner("m2", 1)
	la := r.enqueue(a, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	r.unlock(a, la, 0, nil)
	r.deliver("m1", "m3") // m3 runs the unlock and grants B
	r.deliver("m3", "m2") // B hears of its grant; A's reply is still on the way
	if evs := r.take(b); len(evs) != 1 || evs[0].Kind != EventGranted || evs[0].Lock != lb {
		t.Fatalf("B got %s, want its grant", show(evs))
	}
	r.crash("m3")
	r.setView("m1", "m2")
	if s := r.state(lb); !strings.HasPrefix(s, "granted EX") {
		t.Errorf("B's lock is %q after recovery, want granted EX", s)
	}
	if s := r.state(la); s != "" {
		t.Errorf("A's lock is %q: the unlock sent again should have released it", s)
	}
	if evs := r.take(b); len(evs) != 0 {
		t.Errorf("B got %s after recovery, want nothing", show(evs))
	}
	r.settled()
}

// A down-conversion queued (QueCvt) on a master that then granted it and
// granted B's EX before it was lost: the converting lock comes back at the
// meet of its modes (NL).
func TestLostQueuedConversionIsLowered(t *testing.T) {
	r := newRig(t, "m1", "m2", "m3")
	x := r.root("m3", []string{"m1", "m2"}, "")
	a, b, c := owner("m1", 1), owner("m2", 1), owner("m1", 2)
	la := r.enqueue(a, Request{Name: x, Mode: dlm.EX})
	lc := r.enqueue(c, Request{Name: x, Mode: dlm.NL})
	r.deliverAll()
	r.convert(c, lc, dlm.PR, 0, nil) // waits for A
	r.deliverAll()
	r.convert(a, la, dlm.NL, dlm.QueCvt, nil) // queued behind C
	r.deliverAll()
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	if s := r.state(la); s != "converting EX@m3" {
		t.Fatalf("A's lock is %q, want converting EX@m3", s)
	}
	r.take(a)
	r.take(b)
	r.take(c)
	// C cancels: A's conversion is granted, then B's EX...
	evs, err := r.nodes["m1"].Cancel(r.h.now, lc)
	if err != nil {
		t.Fatal(err)
	}
	r.got(evs)
	r.deliver("m1", "m3")
	if s := r.state(lb); s != "granted EX@m3" {
		t.Fatalf("B's lock is %q, want granted EX@m3", s)
	}
	r.deliver("m3", "m2") // ...and only B hears of it
	r.crash("m3")
	r.setView("m1", "m2")
	if s := r.state(la); !strings.HasPrefix(s, "granted NL") {
		t.Errorf("A's lock is %q after recovery, want granted NL", s)
	}
	if s := r.state(lb); !strings.HasPrefix(s, "granted EX") {
		t.Errorf("B's lock is %q after recovery, want granted EX", s)
	}
	r.settled()
}

// Value blocks after losing their master: valid only if a surviving PW or
// EX holder vouches for it.
func TestValueBlockAfterLostMaster(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keep  dlm.Mode // the mode A keeps after writing
		valid bool
	}{
		{"PW holder vouches", dlm.PW, true},
		{"EX holder vouches", dlm.EX, true},
		{"no writer left", dlm.PR, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "m1", "m2", "m3")
			x := r.root("m3", []string{"m1", "m2"}, "")
			a, b := owner("m1", 1), owner("m2", 1)
			la := r.enqueue(a, Request{Name: x, Mode: dlm.EX, Flags: dlm.ValBlk})
			r.deliverAll()
			r.convert(a, la, tc.keep, dlm.ValBlk, val("v1")) // writes v1
			r.deliverAll()
			if evs := r.take(a); len(evs) != 2 || !evs[1].ValueValid || evs[1].Value != *val("v1") {
				t.Fatalf("A got %s", show(evs))
			}
			r.crash("m3")
			r.setView("m1", "m2")
			if tc.keep != dlm.PR {
				r.convert(a, la, dlm.NL, dlm.ValBlk, nil) // no write
				r.deliverAll()
			}
			r.enqueue(b, Request{Name: x, Mode: dlm.PR, Flags: dlm.ValBlk})
			r.deliverAll()
			evs := r.take(b)
			if len(evs) != 1 || evs[0].Kind != EventGranted {
				t.Fatalf("B got %s", show(evs))
			}
			if evs[0].ValueValid != tc.valid || (tc.valid && evs[0].Value != *val("v1")) {
				t.Errorf("B's grant reports %s, want valid=%v v1", show(evs), tc.valid)
			}
			if evs[0].Token <= viewFloor(r.view) {
				t.Errorf("B's token %d is not above %d: a lost master may have issued any token below", evs[0].Token, viewFloor(r.view))
			}
			r.settled()
		})
	}
}

// A member that joins takes resources from a live master without loss: the
// value block stays valid and tokens go on from where they were.
func TestRemasterWithoutLoss(t *testing.T) {
	r := newRig(t, "m1", "m2")
	x := r.root("m2", []string{"m1", "m2", "m3"}, "m3")
	a, b := owner("m1", 1), owner("m2", 1)
	la := r.enqueue(a, Request{Name: x, Mode: dlm.EX, Flags: dlm.ValBlk})
	lk := r.enqueue(a, Request{Name: "kid", Parent: la, Mode: dlm.PR})
	r.deliverAll()
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.PR, Flags: dlm.ValBlk}) // waits
	r.deliverAll()
	r.convert(a, la, dlm.EX, dlm.ValBlk, val("v2"))
	r.deliverAll()
	evs := r.take(a)
	last := evs[len(evs)-1].Token
	r.add("m3")
	r.setView("m1", "m2", "m3")
	if s := r.state(la); s != "granted EX@m3" {
		t.Fatalf("A's lock is %q, want granted EX@m3", s)
	}
	if s := r.state(lk); s != "granted PR@m3" {
		t.Fatalf("A's sub-lock is %q, want granted PR@m3", s)
	}
	if s := r.state(lb); s != "waiting NL@m3" {
		t.Fatalf("B's lock is %q, want waiting@m3", s)
	}
	if evs := r.take(b); len(evs) != 0 {
		t.Fatalf("B got %s during the move", show(evs))
	}
	r.unlock(a, lk, 0, nil)
	r.unlock(a, la, 0, nil)
	r.deliverAll()
	evs = r.take(b)
	if len(evs) != 1 || evs[0].Kind != EventGranted || !evs[0].ValueValid || evs[0].Value != *val("v2") || evs[0].Token != last+1 {
		t.Fatalf("B got %s, want its grant with valid v2 and token %d", show(evs), last+1)
	}
	r.settled()
}

// A holder on a member that leaves: its locks are purged, a PW/EX value
// block becomes not valid, and the waiter is granted.
func TestDepartedHolderIsPurged(t *testing.T) {
	r := newRig(t, "m1", "m2", "m3")
	x := r.root("m1", []string{"m1", "m3"}, "m1")
	a, b := owner("m2", 1), owner("m3", 1)
	r.enqueue(a, Request{Name: x, Mode: dlm.EX, Flags: dlm.ValBlk})
	r.deliverAll()
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.PR, Flags: dlm.ValBlk})
	r.deliverAll()
	r.crash("m2")
	r.setView("m1", "m3")
	evs := r.take(b)
	if len(evs) != 1 || evs[0].Kind != EventGranted || evs[0].Lock != lb || evs[0].ValueValid {
		t.Fatalf("B got %s, want its grant with a value block not valid", show(evs))
	}
	r.settled()
}

// Tokens of a name never go backwards, also when the name is created
// again on another master after a member left.
func TestTokensNeverGoBack(t *testing.T) {
	r := newRig(t, "m1", "m2", "m3")
	x := r.root("m3", []string{"m1", "m2"}, "")
	a := owner("m1", 1)
	var last uint64
	for range 5 {
		l := r.enqueue(a, Request{Name: x, Mode: dlm.EX})
		r.deliverAll()
		evs := r.take(a)
		last = evs[0].Token
		r.unlock(a, l, 0, nil)
		r.deliverAll()
	}
	r.crash("m3")
	r.setView("m1", "m2")
	r.enqueue(a, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	if evs := r.take(a); len(evs) != 1 || evs[0].Token <= last {
		t.Fatalf("after the master was lost: %s, want a token above %d", show(evs), last)
	}
}

// A request that reaches its master after the master entered a newer view
// is dropped; its sender sends it again after the barrier, and the client
// gets exactly one completion.
func TestOlderViewRequestIsSentAgain(t *testing.T) {
	r := newRig(t, "m1", "m2")
	x := r.root("m2", nil, "")
	a := owner("m1", 1)
	l := r.enqueue(a, Request{Name: x, Mode: dlm.PR})
	// m2 enters view 2 before the request arrives.
	v := View{Number: 2, Members: []string{"m1", "m2"}}
	evs, _ := r.nodes["m2"].SetView(r.h.now, v)
	r.got(evs)
	r.deliver("m1", "m2")
	if s := r.state(l); s != "" {
		t.Fatalf("the request of view 1 ran on m2 in view 2: %s", s)
	}
	evs, _ = r.nodes["m1"].SetView(r.h.now, v)
	r.got(evs)
	r.view = v
	r.deliverAll()
	if evs := r.take(a); len(evs) != 1 || evs[0].Kind != EventGranted || evs[0].Lock != l {
		t.Fatalf("A got %s, want one grant", show(evs))
	}
	r.settled()
}

// Recovery messages of an older view are dropped; messages of a view not
// applied yet are kept until it is; messages of a member's earlier
// membership and of members outside the view are dropped.
func TestStaleAndFutureMessages(t *testing.T) {
	r := newRig(t, "m1", "m2")
	n1 := r.nodes["m1"]
	x := r.root("m1", nil, "")

	// A future view's flush is kept, and counts once m1 is in that view.
	v2 := View{Number: 2, Members: []string{"m1", "m2"}}
	evs, _ := r.nodes["m2"].SetView(r.h.now, v2)
	r.got(evs)
	r.deliver("m2", "m1")
	if len(n1.stash["m2"]) == 0 || n1.rec != nil {
		t.Fatalf("m1 (view 1) did not keep m2's view-2 flush")
	}
	evs, _ = n1.SetView(r.h.now, v2)
	r.got(evs)
	if n1.rec == nil || n1.rec.flushes["m2"] != r.nodes["m2"].floor {
		t.Fatalf("the kept flush was not counted in view 2")
	}
	r.view = v2
	r.deliverAll()

	// An older view's lock records are not imported.
	bogus := Message{Kind: MsgLocks, View: 1, Records: []LockRecord{{Lock: LockID{"m2", 99}, Lockspace: "ls", Path: []string{x},
		Owner: owner("m2", 7), Queue: dlm.QueueGranted, Granted: dlm.EX}}}
	r.got(n1.Deliver(r.h.now, "m2", bogus))
	// Nor a done of an older view counted.
	r.got(n1.Deliver(r.h.now, "m2", Message{Kind: MsgDone, View: 1}))
	r.setView("m1", "m2")
	if s := r.state(LockID{"m2", 99}); s != "" {
		t.Fatalf("a view-1 record was imported in view 3: %s", s)
	}

	// A member outside the view is not heard.
	r.got(n1.Deliver(r.h.now, "m9", Message{Kind: MsgRequest, View: r.view.Number,
		Op: &Op{Kind: OpEnqueue, Req: 1, Lock: LockID{"m9", 1}, Lockspace: "ls", Path: []string{x}, Owner: owner("m9", 1), Mode: dlm.EX}}))
	if s := r.state(LockID{"m9", 1}); s != "" {
		t.Fatalf("a request of a non-member ran: %s", s)
	}

	// m2 leaves and comes back as a new incarnation: what the old one sent
	// (tagged with an older view) is dropped, updates included.
	a := owner("m1", 1)
	la := r.enqueue(a, Request{Name: x, Mode: dlm.PR})
	r.deliverAll()
	r.take(a)
	oldGrant := Message{Kind: MsgUpdate, View: r.view.Number,
		Events: []Event{{Kind: EventGranted, Lock: la, Owner: a, Mode: dlm.EX, Token: 1}},
		States: []LockState{{Lock: la, Queue: dlm.QueueGranted, Granted: dlm.EX, Requested: dlm.EX}}}
	oldReq := Message{Kind: MsgRequest, View: r.view.Number,
		Op: &Op{Kind: OpEnqueue, Req: 5, Lock: LockID{"m2", 50}, Lockspace: "ls", Path: []string{x}, Owner: owner("m2", 1), Mode: dlm.EX}}
	r.crash("m2")
	r.setView("m1")
	r.add("m2")
	r.setView("m1", "m2")
	r.got(n1.Deliver(r.h.now, "m2", oldReq))
	r.got(n1.Deliver(r.h.now, "m2", oldGrant))
	if s := r.state(LockID{"m2", 50}); s != "" {
		t.Fatalf("a request of m2's earlier membership ran: %s", s)
	}
	if evs := r.take(a); len(evs) != 0 || n1.table.get(la).granted != dlm.PR {
		t.Fatalf("an update of m2's earlier membership was applied: %s", show(evs))
	}
	r.settled()
}

// A view change during recovery restarts it, and the locks survive.
func TestViewChangeDuringRecovery(t *testing.T) {
	r := newRig(t, "m1", "m2", "m3")
	var ids []LockID
	for i := range 12 {
		o := owner([]string{"m1", "m2", "m3"}[i%3], 1)
		ids = append(ids, r.enqueue(o, Request{Name: string(rune('a' + i)), Mode: dlm.PR}))
	}
	r.deliverAll()
	// View 2 adds m4; only part of its recovery happens.
	r.add("m4")
	v2 := View{Number: 2, Members: []string{"m1", "m2", "m3", "m4"}}
	for _, m := range []string{"m1", "m2", "m3", "m4"} {
		evs, _ := r.nodes[m].SetView(r.h.now, v2)
		r.got(evs)
	}
	for _, p := range r.h.net.busy()[:4] {
		r.deliver(p.from, p.to)
	}
	r.view = v2
	r.crash("m2")
	r.setView("m1", "m3", "m4")
	for _, id := range ids {
		if id.Member == "m2" {
			continue
		}
		if s := r.state(id); !strings.HasPrefix(s, "granted PR") {
			t.Errorf("lock %v is %q after the restarted recovery, want granted PR", id, s)
		}
	}
	r.settled()
}

// Without quorum nothing is granted: operations are held, then run in
// arrival order when quorum returns.
func TestNoGrantWithoutQuorum(t *testing.T) {
	r := newRig(t, "m1", "m2")
	x := r.root("m1", nil, "")
	a, b := owner("m1", 1), owner("m2", 1)
	for _, n := range r.nodes {
		r.got(n.SetQuorum(r.h.now, false))
	}
	la := r.enqueue(a, Request{Name: x, Mode: dlm.EX})
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	if s := r.state(la) + r.state(lb); s != "" || len(r.take(a))+len(r.take(b)) != 0 {
		t.Fatalf("something ran without quorum: %q", s)
	}
	if _, err := r.nodes["m1"].AbortDeadlock(r.h.now, la); !errors.Is(err, ErrRecovering) {
		t.Errorf("AbortDeadlock without quorum: %v, want ErrRecovering", err)
	}
	r.got(r.nodes["m2"].SetQuorum(r.h.now, true)) // m2's request goes to m1, which holds it
	r.deliverAll()
	r.got(r.nodes["m1"].SetQuorum(r.h.now, true)) // m1 runs its own first: it came first
	r.deliverAll()
	if evs := r.take(a); len(evs) != 2 || evs[0].Kind != EventGranted || evs[1].Kind != EventBlocking {
		t.Fatalf("A got %s, want granted then blocking", show(evs))
	}
	if s := r.state(lb); s != "waiting NL@m1" {
		t.Fatalf("B's lock is %q, want waiting", s)
	}
	r.settled()
}

// A deadlock across two masters: each member reports its edges, the union
// has the cycle, and the victim is aborted through a third member.
func TestDeadlockAcrossMasters(t *testing.T) {
	r := newRig(t, "m1", "m2", "m3")
	x, y := r.root("m1", nil, ""), r.root("m2", nil, "")
	a, b := owner("m3", 1), owner("m3", 2)
	r.enqueue(a, Request{Name: x, Mode: dlm.EX})
	r.enqueue(b, Request{Name: y, Mode: dlm.EX})
	r.deliverAll()
	la2 := r.enqueue(a, Request{Name: y, Mode: dlm.EX})
	lb2 := r.enqueue(b, Request{Name: x, Mode: dlm.EX})
	r.deliverAll()
	r.take(a)
	r.take(b)
	r.h.now = r.h.now.Add(time.Second)
	var edges []Edge
	for _, m := range []string{"m1", "m2", "m3"} {
		edges = append(edges, r.nodes[m].WaitEdges(r.h.now)...)
	}
	vs := FindDeadlocks(edges)
	if len(vs) != 1 || (vs[0] != la2 && vs[0] != lb2) {
		t.Fatalf("victims %v from %v", vs, edges)
	}
	evs, err := r.nodes["m3"].AbortDeadlock(r.h.now, vs[0])
	if err != nil {
		t.Fatal(err)
	}
	r.got(evs)
	r.deliverAll()
	victim, other := a, b
	if vs[0] == lb2 {
		victim, other = b, a
	}
	if evs := r.take(victim); len(evs) != 1 || evs[0].Kind != EventDeadlock || evs[0].Lock != vs[0] {
		t.Fatalf("the victim got %s", show(evs))
	}
	if evs := r.take(other); len(evs) != 0 {
		t.Fatalf("the other owner got %s, want nothing (it still waits for the victim's first lock)", show(evs))
	}
	r.settled()
}

// A client disconnect purges the owner on every master of its locks.
func TestDisconnectPurgesEverywhere(t *testing.T) {
	r := newRig(t, "m1", "m2", "m3")
	a, b := owner("m1", 1), owner("m2", 1)
	var theirs []LockID
	for _, m := range []string{"m1", "m2", "m3"} {
		x := r.root(m, nil, "")
		r.enqueue(a, Request{Name: x, Mode: dlm.EX})
		r.deliverAll()
		theirs = append(theirs, r.enqueue(b, Request{Name: x, Mode: dlm.EX}))
	}
	r.deliverAll()
	r.take(a)
	r.take(b)
	evs, err := r.nodes["m1"].Disconnect(r.h.now, a)
	if err != nil {
		t.Fatal(err)
	}
	r.got(evs)
	r.deliverAll()
	evs = r.take(b)
	if len(evs) != 3 {
		t.Fatalf("B got %s, want three grants", show(evs))
	}
	for _, id := range theirs {
		if s := r.state(id); !strings.HasPrefix(s, "granted EX") {
			t.Errorf("B's lock %v is %q", id, s)
		}
	}
	if len(r.take(a)) != 0 {
		t.Errorf("the disconnected client got events")
	}
	r.settled()
}

// A member that is not in the view loses its clients' locks, with an
// EventLost each, and refuses operations.
func TestLeavingMemberLosesItsLocks(t *testing.T) {
	r := newRig(t, "m1", "m2")
	a := owner("m2", 1)
	l := r.enqueue(a, Request{Name: "x", Mode: dlm.PR})
	r.deliverAll()
	r.take(a)
	evs, err := r.nodes["m2"].SetView(r.h.now, View{Number: 2, Members: []string{"m1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != EventLost || evs[0].Lock != l || !errors.Is(evs[0].Err, ErrNotMember) {
		t.Fatalf("got %s, want one EventLost", show(evs))
	}
	if _, _, err := r.nodes["m2"].Enqueue(r.h.now, Request{Lockspace: "ls", Name: "x", Owner: a, Mode: dlm.NL}); !errors.Is(err, ErrNotMember) {
		t.Fatalf("enqueue on a member out of the view: %v", err)
	}
}

// The checks a member makes alone give the engine's error kinds.
func TestLocalChecksMatchTheEngine(t *testing.T) {
	r := newRig(t, "m1")
	n := r.nodes["m1"]
	o := owner("m1", 1)
	p := r.enqueue(o, Request{Name: "p", Mode: dlm.PR})
	e, _ := dlm.New(dlm.DefaultOptions())
	ep, _, _ := e.Enqueue(t0, dlm.Request{Lockspace: "ls", Name: "p", Owner: o, Mode: dlm.PR})
	for i, c := range []Request{
		{Lockspace: "ls", Name: "x", Owner: o, Mode: 9},
		{Lockspace: "ls", Name: "x", Owner: o, Mode: dlm.PR, Flags: 1 << 12},
		{Lockspace: "ls", Name: "x", Owner: o, Mode: dlm.PR, Flags: dlm.QueCvt},
		{Lockspace: "ls", Name: "x", Owner: o, Mode: dlm.PR, Flags: dlm.Expedite},
		{Lockspace: "ls", Name: "x", Owner: o, Mode: dlm.PR, Value: val("v")},
		{Lockspace: "ls", Name: "", Owner: o, Mode: dlm.PR},
		{Lockspace: "", Name: "x", Owner: o, Mode: dlm.PR},
		{Lockspace: "ls", Name: strings.Repeat("n", 65), Owner: o, Mode: dlm.PR},
		{Lockspace: "ls", Name: "x", Owner: dlm.OwnerID{}, Mode: dlm.PR},
		{Lockspace: "ls2", Name: "x", Owner: o, Mode: dlm.PR, Parent: p},
		{Lockspace: "ls", Name: "x", Owner: owner("m1", 2), Mode: dlm.PR, Parent: p},
		{Lockspace: "ls", Name: "x", Owner: o, Mode: dlm.PR, Parent: LockID{"m1", 77}},
		{Lock: LockID{"m1", 77}, Mode: dlm.PR, Flags: dlm.Convert},
		{Lock: p, Mode: 9, Flags: dlm.Convert},
		{Lock: p, Mode: dlm.NL, Flags: dlm.Convert | dlm.Expedite},
		{Lock: p, Mode: dlm.NL, Flags: dlm.Convert, Value: val("v")},
	} {
		_, _, err := n.Enqueue(r.h.now, c)
		dr := dlm.Request{Lockspace: c.Lockspace, Name: c.Name, Owner: c.Owner, Mode: c.Mode, Flags: c.Flags, Value: c.Value}
		if c.Parent == p {
			dr.Parent = ep
		} else if !c.Parent.IsZero() {
			dr.Parent = 77
		}
		if c.Lock == p {
			dr.Lock = ep
		} else if !c.Lock.IsZero() {
			dr.Lock = 77
		}
		_, _, want := e.Enqueue(t0, dr)
		if err == nil || want == nil || kindName(err) != kindName(want) {
			t.Errorf("case %d: node error %v, engine error %v", i, err, want)
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("case %d: %T is not a *cluster.Error", i, err)
		}
	}
	for i, c := range []struct {
		f dlm.Flags
		v *dlm.Value
	}{{dlm.NoQueue, nil}, {0, val("v")}} {
		_, err := n.Unlock(r.h.now, p, c.f, c.v)
		want := func() error { _, err := e.Unlock(ep, c.f, c.v); return err }()
		if err == nil || kindName(err) != kindName(want) {
			t.Errorf("unlock case %d: node error %v, engine error %v", i, err, want)
		}
	}
}

// An interrupted move: the old master dropped a root (its cut ran) but the
// lock's member never got to its own cut; the next view gives the root back
// to the old master, which must rebuild it from that member's copy.
func TestInterruptedMoveKeepsLocks(t *testing.T) {
	r := newRig(t, "m1", "m2")
	x := r.root("m2", []string{"m1", "m2", "m3"}, "m3")
	a := owner("m1", 1)
	la := r.enqueue(a, Request{Name: x, Mode: dlm.PR, Flags: dlm.ValBlk})
	r.deliverAll()
	r.add("m3")
	v2 := View{Number: 2, Members: []string{"m1", "m2", "m3"}}
	for _, m := range []string{"m1", "m2", "m3"} {
		evs, _ := r.nodes[m].SetView(r.h.now, v2)
		r.got(evs)
	}
	r.view = v2
	// m2 hears everyone and drops x; m1 never hears m3.
	r.deliver("m1", "m2")
	r.deliver("m3", "m2")
	if s := r.state(la); s != "" {
		t.Fatalf("m2 still holds x: %s", s)
	}
	r.deliver("m2", "m1")
	r.crash("m3")
	r.setView("m1", "m2")
	if s := r.state(la); s != "granted PR@m2" {
		t.Fatalf("A's lock is %q after the interrupted move, want granted PR@m2", s)
	}
	r.settled()
}

// Held operations are bounded: beyond Config.MaxHeld a client's operation
// is refused at once and another member's request gets ErrBusy back.
func TestHeldLimit(t *testing.T) {
	r := newRig(t, "m1", "m2")
	r.nodes["m1"].cfg.MaxHeld = 2
	x := r.root("m1", nil, "")
	a, b := owner("m1", 1), owner("m2", 1)
	r.got(r.nodes["m1"].SetQuorum(r.h.now, false))
	r.enqueue(a, Request{Name: x, Mode: dlm.PR})
	r.enqueue(a, Request{Name: x, Mode: dlm.PR})
	if _, _, err := r.nodes["m1"].Enqueue(r.h.now, Request{Lockspace: "ls", Name: x, Owner: a, Mode: dlm.PR}); !errors.Is(err, ErrBusy) {
		t.Fatalf("a third held operation: %v, want ErrBusy", err)
	}
	lb := r.enqueue(b, Request{Name: x, Mode: dlm.PR})
	r.deliverAll()
	if evs := r.take(b); len(evs) != 1 || evs[0].Kind != EventRefused || evs[0].Lock != lb || !errors.Is(evs[0].Err, ErrBusy) {
		t.Fatalf("B got %s, want its request refused with ErrBusy", show(evs))
	}
	r.got(r.nodes["m1"].SetQuorum(r.h.now, true))
	if evs := r.take(a); len(evs) != 2 || evs[0].Kind != EventGranted || evs[1].Kind != EventGranted {
		t.Fatalf("A got %s, want its two held requests granted", show(evs))
	}
	r.settled()
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Member, good.Transport = "m1", endpoint{}
	if err := good.Validate(); err != nil {
		t.Fatalf("the default configuration: %v", err)
	}
	for name, c := range map[string]func(*Config){
		"Member":    func(c *Config) { c.Member = "" },
		"Transport": func(c *Config) { c.Transport = nil },
		"MaxHeld":   func(c *Config) { c.MaxHeld = 0 },
		"MaxBatch":  func(c *Config) { c.MaxBatch = 1 << 21 },
		"MaxStash":  func(c *Config) { c.MaxStash = -1 },
		"MaxLocks":  func(c *Config) { c.Engine.MaxLocks = 0 },
	} {
		cfg := good
		c(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want an error naming the field", name, err)
		}
	}
}
