package dlm

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCompatibilityMatrix(t *testing.T) {
	// The standard VMS table.
	want := `
   NL CR CW PR PW EX
NL  1  1  1  1  1  1
CR  1  1  1  1  1  0
CW  1  1  1  0  0  0
PR  1  1  0  1  0  0
PW  1  1  0  0  0  0
EX  1  0  0  0  0  0
`
	var b strings.Builder
	b.WriteString("\n   NL CR CW PR PW EX\n")
	for a := NL; a <= EX; a++ {
		b.WriteString(a.String())
		for c := NL; c <= EX; c++ {
			if Compatible(a, c) != Compatible(c, a) {
				t.Errorf("Compatible(%v, %v) is not symmetric", a, c)
			}
			if Compatible(a, c) {
				b.WriteString("  1")
			} else {
				b.WriteString("  0")
			}
		}
		b.WriteString("\n")
	}
	eq(t, "matrix", b.String(), want)
	if Compatible(NL, Mode(6)) || Compatible(Mode(9), NL) {
		t.Error("an invalid mode is compatible with something")
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"EX", "ex", "Ex", "nl", "PW", "cw"} {
		m, err := ParseMode(s)
		if err != nil || !strings.EqualFold(m.String(), s) {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	_, err := ParseMode("XX")
	wantErr(t, err, ErrInvalid, `unknown lock mode "XX": use one of NL, CR, CW, PR, PW, EX`)
	if got := Mode(7).String(); got != "Mode(7)" {
		t.Errorf("Mode(7).String() = %q", got)
	}
	if got := (Convert | ValBlk | 0x8000).String(); got != "Convert|ValBlk|0x8000" {
		t.Errorf("flags String = %q", got)
	}
}

func TestOptions(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.DeadlockWait = -time.Second
	_, err := New(o)
	wantErr(t, err, ErrInvalid, "DeadlockWait is -1s: it must be between 0 and 1h")
	o = DefaultOptions()
	o.MaxLocks = 0
	_, err = New(o)
	wantErr(t, err, ErrInvalid, "MaxLocks is 0: it must be between 1 and")
}

// A new request is granted at once only with empty conversion and waiting
// queues and a mode compatible with every granted lock; Expedite NL always.
func TestNewRequests(t *testing.T) {
	x := newRig(t)
	_, ev := x.lock("m1/1", "r", PR, 0)
	eq(t, "PR on a free resource", ev, "G1:PR#1")
	_, ev = x.lock("m2/1", "r", CR, 0)
	eq(t, "compatible CR", ev, "G2:CR#2")
	_, ev = x.lock("m3/1", "r", EX, 0)
	eq(t, "incompatible EX waits; both holders are told", ev, "B1>3:EX B2>3:EX")
	_, ev = x.lock("m1/2", "r", CR, 0)
	eq(t, "compatible CR still waits behind the queued EX", ev, "")
	id, ev := x.lock("m4/1", "r", PR, NoQueue)
	eq(t, "NoQueue", ev, "NQ5:PR")
	if _, ok := x.e.Lock(id); ok {
		t.Fatal("a not-queued request left a lock")
	}
	_, ev = x.lock("m4/1", "r", NL, Expedite)
	eq(t, "Expedite NL is granted although requests wait", ev, "G6:NL#3")

	_, _, err := x.e.Enqueue(x.now, Request{Lockspace: "ls", Name: "r", Owner: own("m4/1"), Mode: PR, Flags: Expedite})
	wantErr(t, err, ErrInvalid, "Expedite is only valid for a new NL request, not PR")

	eq(t, "release PR: EX still blocked by CR", x.unlock(1), "")
	eq(t, "release CR: EX granted, then blocks the CR behind it", x.unlock(2), "G3:EX#4 B3>4:CR")
	eq(t, "release EX", x.unlock(3), "G4:CR#5")
}

func TestConversions(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", PR, 0)
	x.lock("m2/1", "r", PR, 0)
	eq(t, "1 to EX queues behind 2's PR", x.conv(1, EX, 0, nil), "B2>1:EX")
	eq(t, "NoQueue conversion fails", x.conv(2, EX, NoQueue, nil), "NQ2:EX")
	if r, _ := x.e.Lock(2); r.Queue != QueueGranted || r.Granted != PR {
		t.Fatalf("after a not-queued conversion lock 2 is %v %v, want granted PR", r.Queue, r.Granted)
	}
	_, ev := x.lock("m3/1", "r", CR, 0)
	eq(t, "new CR waits behind the conversion queue", ev, "")
	eq(t, "compatible down-conversion is granted in place", x.conv(2, CR, 0, nil), "G2:CR#3")
	eq(t, "down to NL lets the queued conversion through, then the waiter is blocked", x.conv(2, NL, 0, nil), "G2:NL#4 G1:EX#5 B1>3:CR")

	_, _, err := x.e.Enqueue(x.now, Request{Lock: 3, Mode: PR, Flags: Convert})
	wantErr(t, err, ErrWrongState, "lock 3 still waits for its first grant (CR)")
	eq(t, "", x.conv(2, EX, 0, nil), "B1>2:EX")
	_, _, err = x.e.Enqueue(x.now, Request{Lock: 2, Mode: PR, Flags: Convert})
	wantErr(t, err, ErrWrongState, "lock 2 already has a conversion to EX queued")
	_, _, err = x.e.Enqueue(x.now, Request{Lock: 99, Mode: PR, Flags: Convert})
	wantErr(t, err, ErrUnknownLock, "lock 99 does not exist")
}

func TestQueCvt(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", PR, 0)
	x.lock("m2/1", "r", PR, 0)
	x.lock("m3/1", "r", CR, 0)
	eq(t, "1 to EX queues", x.conv(1, EX, 0, nil), "B2>1:EX B3>1:EX")
	eq(t, "QueCvt: compatible 3 to NL queues behind it", x.conv(3, NL, QueCvt, nil), "")
	if r, _ := x.e.Lock(3); r.Queue != QueueConverting {
		t.Fatalf("lock 3 is %v, want converting", r.Queue)
	}
	eq(t, "without QueCvt a compatible conversion passes the queue", x.conv(2, CR, 0, nil), "G2:CR#4")
	eq(t, "cancel the head: the queued NL follows", x.cancel(1), "C1:EX G3:NL#5")
	if r, _ := x.e.Lock(1); r.Queue != QueueGranted || r.Granted != PR {
		t.Fatalf("canceled conversion left lock 1 %v %v, want granted PR", r.Queue, r.Granted)
	}
	eq(t, "QueCvt with no queued conversion converts in place", x.conv(2, PR, QueCvt, nil), "G2:PR#6")
}

// When the granted set changes: the conversion queue first, in order,
// stopping at the first that does not fit; the waiting queue only once the
// conversion queue is empty.
func TestGrantOrder(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", EX, 0)
	x.lock("m2/1", "r", NL, 0)
	x.lock("m3/1", "r", NL, 0)
	_, ev := x.lock("m4/1", "r", PR, 0)
	eq(t, "", ev, "B1>4:PR")
	eq(t, "", x.conv(2, PR, 0, nil), "B1>2:PR")
	eq(t, "", x.conv(3, EX, 0, nil), "B1>3:EX")
	_, ev = x.lock("m5/1", "r", CR, 0)
	eq(t, "", ev, "B1>5:CR")
	eq(t, "conversion 2 granted, 3 stops the queue; the compatible waiting PR must wait",
		x.unlock(1), "G2:PR#4 B2>3:EX")
	eq(t, "conversion queue empty: the waiting queue goes", x.cancel(3), "C3:EX G4:PR#5 G5:CR#6")
}

func TestWaitingQueueStopsAtFirstIncompatible(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", EX, 0)
	x.lock("m2/1", "r", PR, 0)
	x.lock("m3/1", "r", PR, 0)
	x.lock("m4/1", "r", EX, 0)
	x.lock("m5/1", "r", CR, 0)
	eq(t, "both PR, then EX stops the queue (the CR behind it waits)",
		x.unlock(1), "G2:PR#2 G3:PR#3 B2>4:EX B3>4:EX")
	eq(t, "", x.unlock(2), "")
	eq(t, "", x.unlock(3), "G4:EX#4 B4>5:CR")
	eq(t, "", x.unlock(4), "G5:CR#5")
}

func TestCancel(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", EX, 0)
	x.lock("m2/1", "r", EX, 0)
	x.lock("m3/1", "r", PR, 0)
	eq(t, "cancel a waiting request", x.cancel(2), "C2:EX")
	if _, ok := x.e.Lock(2); ok {
		t.Fatal("canceled request left its lock")
	}
	_, err := x.e.Cancel(1)
	wantErr(t, err, ErrWrongState, "lock 1 is granted at EX with no conversion queued: there is nothing to cancel (use Unlock to release it)")
	_, err = x.e.Cancel(2)
	wantErr(t, err, ErrUnknownLock, "lock 2 does not exist")
	eq(t, "", x.unlock(1), "G3:PR#2")
}

func TestUnlock(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", EX, 0)
	x.lock("m2/1", "r", PR, 0)
	eq(t, "unlock of a waiting request cancels it", x.unlock(2), "C2:PR")
	x.lock("m2/1", "r", NL, 0)
	eq(t, "", x.conv(3, EX, 0, nil), "B1>3:EX")
	eq(t, "unlock of a converting lock cancels the conversion and releases", x.unlock(3), "C3:EX")
	if _, ok := x.e.Lock(3); ok {
		t.Fatal("lock 3 still exists")
	}
	_, err := x.e.Unlock(3, 0, nil)
	wantErr(t, err, ErrUnknownLock, "lock 3 does not exist")
	_, err = x.e.Unlock(1, NoQueue, nil)
	wantErr(t, err, ErrInvalid, "flags NoQueue: only ValBlk is valid for an unlock")
	_, err = x.e.Unlock(1, 0, val("x"))
	wantErr(t, err, ErrInvalid, "set ValBlk")
	eq(t, "", x.unlock(1), "")
	if x.e.Len() != 0 || len(x.e.spaces) != 0 || len(x.e.owners) != 0 || len(x.e.contended) != 0 {
		t.Fatalf("engine not empty after the last unlock: %d locks, %d lockspaces, %d owners, %d contended",
			x.e.Len(), len(x.e.spaces), len(x.e.owners), len(x.e.contended))
	}
}

func TestParents(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "db", PR, 0) // 1
	_, ev := x.req(Request{Lockspace: "ls", Name: "t1", Parent: 1, Owner: own("m1/1"), Mode: EX})
	eq(t, "child of db", ev, "G2:EX#2")
	x.lock("m2/1", "db", PR, 0) // 3
	_, ev = x.req(Request{Lockspace: "ls", Name: "t1", Parent: 3, Owner: own("m2/1"), Mode: EX})
	eq(t, "t1 under db through another parent lock is the same resource", ev, "B2>4:EX")
	_, ev = x.lock("m2/1", "t1", EX, 0)
	eq(t, "root t1 is another resource", ev, "G5:EX#3")
	x.e.Enqueue(x.now, Request{Lockspace: "other", Name: "db", Owner: own("m1/1"), Mode: EX}) // 6

	bad := []struct {
		r    Request
		kind error
		msg  string
	}{
		{Request{Lockspace: "ls", Name: "c", Parent: 99, Owner: own("m1/1"), Mode: NL}, ErrUnknownLock, "parent lock 99 does not exist"},
		{Request{Lockspace: "ls", Name: "c", Parent: 1, Owner: own("m2/1"), Mode: NL}, ErrInvalid, "parent lock 1 is held by m1/1, not m2/1"},
		{Request{Lockspace: "ls", Name: "c", Parent: 6, Owner: own("m1/1"), Mode: NL}, ErrInvalid, `parent lock 6 is in lockspace "other", not "ls"`},
		{Request{Lockspace: "ls", Name: "c", Parent: 4, Owner: own("m2/1"), Mode: NL}, ErrWrongState, "parent lock 4 is not granted yet (it waits for EX)"},
	}
	for _, b := range bad {
		_, _, err := x.e.Enqueue(x.now, b.r)
		wantErr(t, err, b.kind, b.msg)
	}
	_, err := x.e.Unlock(1, 0, nil)
	wantErr(t, err, ErrHasChildren, "lock 1 has 1 sub-lock(s) (2): unlock them first")
	_, err = x.e.Unlock(3, 0, nil)
	wantErr(t, err, ErrHasChildren, "lock 3 has 1 sub-lock(s) (4)")
	eq(t, "", x.unlock(2), "G4:EX#3")
	eq(t, "", x.unlock(1), "")
	eq(t, "", x.unlock(4), "")
	eq(t, "", x.unlock(3), "")
	if r := x.e.find("ls", []string{"db"}); r != nil {
		t.Fatal("resource db outlived its locks")
	}

	// Trees are at most MaxDepth deep.
	parent := LockID(0)
	for d := 1; d <= MaxDepth; d++ {
		parent, _ = x.req(Request{Lockspace: "deep", Name: "n", Parent: parent, Owner: own("m1/1"), Mode: NL})
	}
	_, _, err = x.e.Enqueue(x.now, Request{Lockspace: "deep", Name: "n", Parent: parent, Owner: own("m1/1"), Mode: NL})
	wantErr(t, err, ErrInvalid, "resource trees are at most 16 deep")
}

func TestValueBlock(t *testing.T) {
	x := newRig(t)
	_, ev := x.lock("m1/1", "v", EX, ValBlk)
	eq(t, "a new resource's value is zero and valid", ev, "G1:EX#1+v=")
	eq(t, "EX down-conversion writes", x.conv(1, PR, ValBlk, val("hello")), "G1:PR#2+v=hello")
	_, ev = x.lock("m2/1", "v", PR, ValBlk)
	eq(t, "a grant reads it", ev, "G2:PR#3+v=hello")
	_, ev = x.lock("m3/1", "v", CR, 0)
	eq(t, "without ValBlk no value", ev, "G3:CR#4")
	eq(t, "a PR holder does not write", x.conv(2, NL, ValBlk, val("nope")), "G2:NL#5+v=hello")
	eq(t, "up-conversion waits", x.conv(1, EX, ValBlk, val("up")), "B3>1:EX")
	eq(t, "the up-conversion reads (does not write) when granted", x.unlock(3), "G1:EX#6+v=hello")
	evs, err := x.e.Unlock(1, ValBlk, val("bye"))
	if err != nil || len(evs) != 0 {
		t.Fatal(evs, err)
	}
	eq(t, "unlock from EX wrote", x.conv(2, PR, ValBlk, nil), "G2:PR#7+v=bye")

	if err := x.e.InvalidateValue("ls", []string{"v"}); err != nil {
		t.Fatal(err)
	}
	_, ev = x.lock("m4/1", "v", PR, ValBlk)
	eq(t, "after InvalidateValue grants report it not valid", ev, "G4:PR#8+invalid=bye")
	x.conv(2, NL, 0, nil)
	eq(t, "", x.conv(4, EX, ValBlk, nil), "G4:EX#10+invalid=bye")
	eq(t, "the next write makes it valid", x.conv(4, NL, ValBlk, val("new")), "G4:NL#11+v=new")
	err = x.e.InvalidateValue("ls", []string{"nothing"})
	wantErr(t, err, ErrUnknownResource, `no lock exists on resource "nothing" in lockspace "ls"`)

	// A queued down-conversion writes when it is granted.
	y := newRig(t)
	y.lock("m1/1", "q", EX, ValBlk)
	y.lock("m2/1", "q", NL, 0)
	y.conv(2, EX, 0, nil)
	eq(t, "QueCvt down-conversion queues", y.conv(1, NL, QueCvt|ValBlk, val("late")), "")
	if r, _ := y.e.Lock(1); r.PendingValue == nil || *r.PendingValue != *val("late") {
		t.Fatalf("pending value not exported: %+v", r)
	}
	eq(t, "granted when the head goes, writing its value", y.cancel(2), "C2:EX G1:NL#3+v=late")
}

func TestPurgeInvalidatesValue(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "w", PW, ValBlk)
	x.lock("m2/1", "w", NL, 0)
	x.lock("m1/1", "u", PW, ValBlk)
	x.lock("m2/1", "u", NL, 0)
	_, ev := x.lock("m3/1", "w", EX, 0)
	eq(t, "", ev, "B1>5:EX")
	x.now = x.now.Add(time.Second)
	x.lock("m3/1", "u", CR, 0) // compatible with PW: granted
	eq(t, "purge with invalidate grants what waited", show(x.e.PurgeOwner(own("m1/1"), true)), "G5:EX#3")
	if r, _ := x.e.Lock(5); r.ValueValid {
		t.Fatal("value of w still valid after its PW holder was purged")
	}
	x.lock("m4/1", "z", PW, ValBlk)
	x.lock("m5/1", "z", NL, 0)
	x.e.PurgeOwner(own("m4/1"), false)
	eq(t, "purge without invalidate keeps it valid", x.conv(8, CR, ValBlk, nil), "G8:CR#8+v=")
	if n := len(x.e.PurgeOwner(own("nobody/0"), true)); n != 0 {
		t.Fatal("purge of an unknown owner made events")
	}
	// The resource goes with its last lock; a new one starts zero and valid.
	x.e.PurgeMember("m5", true)
	_, ev = x.lock("m6/1", "z", EX, ValBlk)
	eq(t, "", ev, "G9:EX#9+v=")
}

func TestPurgeMember(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "a", EX, 0)                                                // 1
	x.req(Request{Lockspace: "ls", Name: "c", Parent: 1, Owner: own("m1/1")}) // 2 (NL child)
	x.lock("m1/2", "b", EX, 0)                                                // 3
	x.lock("m2/1", "b", PR, 0)                                                // 4 waits
	x.lock("m2/1", "a", PR, 0)                                                // 5 waits
	x.lock("m1/3", "a", CR, 0)                                                // 6 waits
	eq(t, "every owner of m1 goes at once, resources in lock order", show(x.e.PurgeMember("m1", true)), "G5:PR#2 G4:PR#4")
	if x.e.Len() != 2 || x.e.find("ls", []string{"a", "c"}) != nil {
		t.Fatalf("purge left %d locks", x.e.Len())
	}
}

func TestTokensNeverGoBack(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "t", EX, 0)
	eq(t, "", x.conv(1, PR, 0, nil), "G1:PR#2")
	eq(t, "", x.conv(1, EX, 0, nil), "G1:EX#3")
	x.unlock(1)
	_, ev := x.lock("m1/1", "t", EX, 0)
	eq(t, "a re-created resource counts on from the floor", ev, "G2:EX#4")
	s := x.e.Export()
	if s.TokenFloor != 4 {
		t.Fatalf("TokenFloor %d, want 4", s.TokenFloor)
	}
	y := newRig(t)
	if _, err := y.e.Import(y.now, s); err != nil {
		t.Fatal(err)
	}
	eq(t, "after import", y.conv(2, NL, 0, nil), "G2:NL#5")
	y.unlock(2)
	_, ev = y.lock("m1/1", "t", EX, 0)
	eq(t, "after import and re-creation", ev, "G3:EX#6")
	_, ev = y.lock("m1/1", "other", EX, 0)
	eq(t, "any new resource starts above every token issued", ev, "G4:EX#7")

	// A master lost with its snapshot: the survivors' locks plus a floor.
	z := newRig(t)
	if _, err := z.e.Import(z.now, Snapshot{TokenFloor: 7 << 40}, y.e.Export()); err != nil {
		t.Fatal(err)
	}
	_, ev = z.lock("m1/1", "lost", EX, 0)
	eq(t, "a floor-only snapshot lifts every new resource", ev, "G5:EX#7696581394433")
}

func TestBlockingNotifications(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "b", PR, 0)       // 1
	x.lock("m2/1", "b", PR, NoBlock) // 2 opts out
	x.lock("m3/1", "b", CR, 0)       // 3
	_, ev := x.lock("m4/1", "b", EX, 0)
	eq(t, "every incompatible granted lock but the NoBlock one", ev, "B1>4:EX B3>4:EX")
	eq(t, "a conversion is blocked too", x.conv(3, EX, 0, nil), "B1>3:EX")
	_, ev = x.lock("m5/1", "b", PW, 0)
	eq(t, "a converting lock is not told", ev, "B1>5:PW")
	eq(t, "once per blocker per waiting request", x.conv(1, CR, 0, nil), "G1:CR#4")
	eq(t, "", x.cancel(3), "C3:EX")

	// A lock that starts blocking later is told then.
	y := newRig(t)
	y.lock("m7/1", "c", PR, 0) // 1
	y.lock("m6/1", "c", NL, 0) // 2
	_, ev = y.lock("m8/1", "c", EX, 0)
	eq(t, "", ev, "B1>3:EX")
	eq(t, "NL to PR starts blocking the waiting EX", y.conv(2, PR, 0, nil), "G2:PR#3 B2>3:EX")
	eq(t, "still blocking: not told twice", y.conv(2, CR, 0, nil), "G2:CR#4")
}

func TestDeadlockBetweenTwoOwners(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r1", EX, 0) // 1
	x.lock("m2/1", "r2", EX, 0) // 2
	x.lock("m1/1", "r2", EX, 0) // 3
	x.lock("m2/1", "r1", EX, 0) // 4
	if e := x.e.WaitEdges(x.now); len(e) != 0 {
		t.Fatalf("edges before DeadlockWait: %v", e)
	}
	eq(t, "no detection before DeadlockWait", show(x.e.Detect(x.now)), "")
	_, err := x.e.Deadlock(x.now, 4)
	wantErr(t, err, ErrWrongState, "lock 4 has waited less than the deadlock wait (1s)")
	x.now = x.now.Add(time.Second)
	want := []Edge{
		{Waiter: own("m1/1"), Blocker: own("m2/1"), Lock: 3, Seq: 3},
		{Waiter: own("m2/1"), Blocker: own("m1/1"), Lock: 4, Seq: 4},
	}
	edges := x.e.WaitEdges(x.now)
	if !reflect.DeepEqual(edges, want) {
		t.Fatalf("edges\n got  %v\n want %v", edges, want)
	}
	if v := FindDeadlocks(edges); !reflect.DeepEqual(v, []LockID{4}) {
		t.Fatalf("victims %v, want [4] (the most recent request)", v)
	}
	eq(t, "Detect aborts the victim", show(x.e.Detect(x.now)), "D4:EX")
	eq(t, "nothing left", show(x.e.Detect(x.now)), "")
	eq(t, "", x.unlock(2), "G3:EX#3")
	_, err = x.e.Deadlock(x.now, 3)
	wantErr(t, err, ErrWrongState, "lock 3 is granted at EX and waits for nothing")
}

func TestConversionDeadlock(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", PR, 0)
	x.lock("m2/1", "r", PR, 0)
	eq(t, "", x.conv(1, EX, 0, nil), "B2>1:EX")
	eq(t, "the other holder is converting: not told", x.conv(2, EX, 0, nil), "")
	x.now = x.now.Add(time.Second)
	if v := FindDeadlocks(x.e.WaitEdges(x.now)); !reflect.DeepEqual(v, []LockID{2}) {
		t.Fatalf("victims %v, want [2]", v)
	}
	eq(t, "the later conversion is aborted; lock 2 keeps PR", show(x.e.Detect(x.now)), "D2:EX")
	if r, _ := x.e.Lock(2); r.Queue != QueueGranted || r.Granted != PR {
		t.Fatalf("lock 2 is %v %v", r.Queue, r.Granted)
	}
	eq(t, "", x.unlock(2), "G1:EX#3")
}

func TestNoDlckWt(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r1", EX, 0)
	x.lock("m2/1", "r2", EX, 0)
	x.lock("m1/1", "r2", EX, 0)
	x.lock("m2/1", "r1", EX, NoDlckWt)
	x.now = x.now.Add(time.Hour)
	if e := x.e.WaitEdges(x.now); len(e) != 1 || e[0].Lock != 3 {
		t.Fatalf("edges %v: the NoDlckWt wait must be left out", e)
	}
	eq(t, "", show(x.e.Detect(x.now)), "")
	_, err := x.e.Deadlock(x.now, 4)
	wantErr(t, err, ErrWrongState, "lock 4 waits with NoDlckWt: it is never a deadlock victim")
}

func TestWaitEdgesOwnQueueAndSelfDeadlock(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", EX, 0)
	x.lock("m2/1", "r", PR, 0)
	x.lock("m2/1", "r", PR, 0) // behind its own compatible request
	x.now = x.now.Add(time.Second)
	want := []Edge{
		{Waiter: own("m2/1"), Blocker: own("m1/1"), Lock: 2, Seq: 2},
		{Waiter: own("m2/1"), Blocker: own("m1/1"), Lock: 3, Seq: 3},
	}
	if e := x.e.WaitEdges(x.now); !reflect.DeepEqual(e, want) {
		t.Fatalf("an owner queued twice must not wait for itself:\n got  %v\n want %v", e, want)
	}
	eq(t, "", show(x.e.Detect(x.now)), "")

	// An owner waiting for its own incompatible lock is deadlocked.
	x.lock("m3/1", "s", PR, 0)
	x.lock("m3/1", "s", EX, 0)
	x.now = x.now.Add(time.Second)
	eq(t, "self-deadlock", show(x.e.Detect(x.now)), "D5:EX")
}

// A request stuck behind a compatible request that is itself blocked is on
// the graph through the "immediately ahead" edge: this deadlock has no
// other way to be found.
func TestDeadlockThroughCompatibleRequestAhead(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", PR, 0)                  // 1 G holds PR
	x.lock("m2/1", "r", NL, 0)                  // 2 X
	x.lock("m3/1", "r", NL, 0)                  // 3 C
	eq(t, "", x.conv(2, PW, 0, nil), "B1>2:PW") // X waits for G
	eq(t, "", x.conv(3, CR, QueCvt, nil), "")   // C waits behind X, compatible with all
	x.lock("m3/1", "s", EX, 0)                  // 4 C holds s
	x.lock("m1/1", "s", EX, 0)                  // 5 G waits for C
	x.now = x.now.Add(time.Second)
	edges := x.e.WaitEdges(x.now)
	want := []Edge{
		{Waiter: own("m2/1"), Blocker: own("m1/1"), Lock: 2, Seq: 4},
		{Waiter: own("m3/1"), Blocker: own("m2/1"), Lock: 3, Seq: 5},
		{Waiter: own("m1/1"), Blocker: own("m3/1"), Lock: 5, Seq: 7},
	}
	if !reflect.DeepEqual(edges, want) {
		t.Fatalf("edges\n got  %v\n want %v", edges, want)
	}
	eq(t, "", show(x.e.Detect(x.now)), "D5:EX")
}

func TestFindDeadlocks(t *testing.T) {
	a, b, c, d := own("a/1"), own("b/1"), own("c/1"), own("d/1")
	edges := []Edge{
		{a, b, 1, 10}, {b, c, 2, 11}, {c, a, 3, 5}, // cycle a b c: victim 2 (seq 11)
		{c, d, 4, 99}, // leaves the cycle: not a victim
		{d, d, 7, 1},  // self-loop
	}
	if v := FindDeadlocks(edges); !reflect.DeepEqual(v, []LockID{2, 7}) {
		t.Fatalf("victims %v, want [2 7]", v)
	}
	if v := FindDeadlocks(nil); v != nil {
		t.Fatalf("victims of no edges: %v", v)
	}
	// A long chain with a cycle at the end does not recurse deeply.
	var long []Edge
	for i := range 100000 {
		long = append(long, Edge{OwnerID{"m", uint64(i)}, OwnerID{"m", uint64(i + 1)}, LockID(i + 1), uint64(i)})
	}
	long = append(long, Edge{OwnerID{"m", 100000}, OwnerID{"m", 99999}, 999999, 1})
	if v := FindDeadlocks(long); !reflect.DeepEqual(v, []LockID{100000}) {
		t.Fatalf("victims %v, want [100000]", v)
	}
}

func TestRequestErrors(t *testing.T) {
	x := newRig(t)
	x.lock("m1/1", "r", EX, 0)
	o := own("m1/1")
	long := strings.Repeat("n", 65)
	cases := []struct {
		r    Request
		kind error
		msg  string
	}{
		{Request{Lockspace: "ls", Name: "r", Owner: o, Mode: 6}, ErrInvalid, "unknown lock mode 6: use NL, CR, CW, PR, PW or EX"},
		{Request{Lockspace: "ls", Name: "r", Owner: o, Flags: 0x4000}, ErrInvalid, "unknown flag bits 0x4000"},
		{Request{Lockspace: "ls", Name: "", Owner: o}, ErrInvalid, "the resource name is empty: give 1 to 64 bytes"},
		{Request{Lockspace: "ls", Name: long, Owner: o}, ErrInvalid, "the resource name is 65 bytes long: the limit is 64"},
		{Request{Lockspace: "", Name: "r", Owner: o}, ErrInvalid, "the lockspace name is empty"},
		{Request{Lockspace: "ls", Name: "r"}, ErrInvalid, "the owner has no member name"},
		{Request{Lockspace: "ls", Name: "r", Owner: o, Flags: QueCvt}, ErrInvalid, "QueCvt is only valid with Convert"},
		{Request{Lockspace: "ls", Name: "r", Owner: o, Flags: ValBlk, Value: val("x")}, ErrInvalid, "a new request cannot write the value block"},
		{Request{Lock: 1, Mode: 9, Flags: Convert}, ErrInvalid, "unknown lock mode 9"},
		{Request{Lock: 1, Mode: NL, Flags: Convert | Expedite}, ErrInvalid, "not with Convert"},
		{Request{Lock: 1, Mode: NL, Flags: Convert, Value: val("x")}, ErrInvalid, "a Value is given without ValBlk"},
	}
	for _, c := range cases {
		id, evs, err := x.e.Enqueue(x.now, c.r)
		wantErr(t, err, c.kind, c.msg)
		if id != 0 || evs != nil {
			t.Fatalf("%+v: failed request returned id %d and events %v", c.r, id, evs)
		}
	}
	_, _, err := x.e.Enqueue(x.now, Request{Lockspace: "ls", Name: "r", Owner: o})
	if e, ok := err.(*Error); ok || err != nil {
		t.Fatalf("valid request refused: %v %v", e, err)
	}
	if x.e.Len() != 2 {
		t.Fatalf("refused requests left locks: %d", x.e.Len())
	}
	// The id of a refused request is not consumed; the next one is 3.
	id, _ := x.lock("m1/1", "s", NL, 0)
	if id != 3 {
		t.Fatalf("next id %d, want 3", id)
	}
}

func TestMaxLocks(t *testing.T) {
	o := DefaultOptions()
	o.MaxLocks = 2
	e, _ := New(o)
	for i := range 2 {
		if _, _, err := e.Enqueue(t0, Request{Lockspace: "ls", Name: "r", Owner: own("m/1"), Mode: CR}); err != nil {
			t.Fatal(i, err)
		}
	}
	_, _, err := e.Enqueue(t0, Request{Lockspace: "ls", Name: "r", Owner: own("m/1"), Mode: CR})
	wantErr(t, err, ErrLimit, "the engine holds 2 locks, its limit (Options.MaxLocks)")
	if _, _, err := e.Enqueue(t0, Request{Lock: 1, Mode: EX, Flags: Convert}); err != nil {
		t.Fatalf("a conversion at the limit was refused: %v", err)
	}
}

// buildMixed makes a state with every queue, a sub-lock, a pending value,
// an invalid value block and flags.
func buildMixed(t *testing.T) *rig {
	x := newRig(t)
	x.lock("m1/1", "a", PR, ValBlk)                                                          // 1
	x.lock("m2/1", "a", PR, NoBlock)                                                         // 2
	x.req(Request{Lockspace: "ls", Name: "kid", Parent: 1, Owner: own("m1/1"), Mode: EX})    // 3
	x.conv(1, EX, ValBlk, val("pending"))                                                    // 1 converting
	x.lock("m3/1", "a", CR, NoDlckWt)                                                        // 4 waiting
	x.lock("m3/1", "b", EX, ValBlk)                                                          // 5
	x.conv(5, NL, ValBlk, val("written"))                                                    // writes
	x.e.InvalidateValue("ls", []string{"b"})                                                 //
	x.req(Request{Lockspace: "ls2", Name: "a", Owner: own("m1/2"), Mode: PW})                // 6
	x.req(Request{Lockspace: "ls2", Name: "a", Owner: own("m2/2"), Mode: PW, Flags: ValBlk}) // 7 waiting
	return x
}

func TestExportImportRoundTrip(t *testing.T) {
	x := buildMixed(t)
	s := x.e.Export()
	y := newRig(t)
	evs, err := y.e.Import(y.now, s)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "import re-sends blocking notifications", show(evs), "B6>7:PW")
	s2 := y.e.Export()
	if !reflect.DeepEqual(s, s2) {
		t.Fatalf("round trip differs:\n%+v\n%+v", s, s2)
	}
	// Both engines go on the same way.
	for _, z := range []*rig{x, y} {
		eq(t, "", z.unlock(2), "G1:EX#3+v= B1>4:CR")
		_, ev := z.lock("m9/1", "new", EX, 0)
		eq(t, "", ev, "G8:EX#7")
	}
	_, err = y.e.Import(y.now, s)
	wantErr(t, err, ErrWrongState, "the engine already holds")
}

func TestImportMerge(t *testing.T) {
	// Old master A had resource x; old master B had y and also waiters on x.
	a := newRig(t)
	a.lock("m1/1", "x", EX, 0) // 1
	a.lock("m2/1", "x", PR, 0) // 2 seq 2
	a.lock("m3/1", "x", CR, 0) // 3 seq 3
	b := newRig(t)
	b.now = b.now.Add(time.Minute)
	b.lock("m4/1", "y", EX, ValBlk)      // 1
	b.conv(1, NL, ValBlk, val("from b")) //
	b.lock("m5/1", "x", NL, 0)           // 2 granted NL on x (B's view)
	b.lock("m6/1", "x", EX, 0)           // 3: granted at once in B
	sa, sb := a.e.Export(), b.e.Export()
	// Renumber B's ids (B's engine assigned the same numbers as A's).
	for i := range sb.Locks {
		sb.Locks[i].ID += 100
	}
	sb.NextLockID += 100

	m := newRig(t)
	if _, err := m.e.Import(m.now, sa, sb); err == nil || !strings.Contains(err.Error(), "both granted and incompatible") {
		t.Fatalf("import of conflicting grants: %v", err)
	}
	// Drop B's EX on x: the survivors' locks are consistent.
	sb.Locks = slices.DeleteFunc(sb.Locks, func(r Record) bool { return r.ID == 103 })
	// Give B a waiter on x whose Seq interleaves with A's.
	sb.Locks = append(sb.Locks, Record{ID: 150, Lockspace: "ls", Path: []string{"x"}, Owner: own("m7/1"), Queue: QueueWaiting, Requested: PR, Seq: 2, Token: 99})
	evs, err := m.e.Import(m.now, sa, sb)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "regrant and blocking after the merge", show(evs), "B1>2:PR B1>3:CR B1>150:PR")
	s := m.e.Export()
	var order []LockID
	for _, r := range s.Locks {
		if r.Path[0] == "x" {
			order = append(order, r.ID)
		}
		if r.Path[0] == "x" && r.Token != 99 {
			t.Fatalf("token of x is %d, want the largest (99)", r.Token)
		}
		if r.Path[0] == "x" && r.ValueValid {
			t.Fatalf("sources disagree on x's value block: it must be invalid")
		}
		if r.Path[0] == "y" && (!r.ValueValid || r.Value != *val("from b")) {
			t.Fatalf("y's value block lost: %+v", r)
		}
	}
	// granted 1 (A), 102 (B); waiting by (Seq, source): 2 (A, seq 2), 150 (B, seq 2), 3 (A, seq 3)
	if want := []LockID{1, 102, 2, 150, 3}; !reflect.DeepEqual(order, want) {
		t.Fatalf("queue order of x %v, want %v", order, want)
	}
	if s.NextLockID != 151 || s.TokenFloor != 99 {
		t.Fatalf("NextLockID %d TokenFloor %d, want 151 and 99", s.NextLockID, s.TokenFloor)
	}
	eq(t, "the merged engine runs on", m.unlock(1), "G2:PR#100 G150:PR#101 G3:CR#102")

	bad := []struct {
		recs []Record
		msg  string
	}{
		{[]Record{{ID: 1, Lockspace: "ls", Path: []string{"p"}, Owner: own("m/1"), Queue: QueueGranted}, {ID: 1, Lockspace: "ls", Path: []string{"q"}, Owner: own("m/1"), Queue: QueueGranted}}, "lock id 1 appears twice"},
		{[]Record{{ID: 2, Lockspace: "ls", Path: []string{"p", "c"}, Parent: 9, Owner: own("m/1"), Queue: QueueGranted}}, "names parent lock 9, which is not in the import"},
		{[]Record{{ID: 2, Lockspace: "ls", Path: []string{"p", "c"}, Owner: own("m/1"), Queue: QueueGranted}}, "has no parent lock"},
		{[]Record{{ID: 2, Lockspace: "ls", Path: []string{"p"}, Owner: own("m/1"), Queue: 7}}, "unknown queue 7"},
		{[]Record{{ID: 0, Lockspace: "ls", Path: []string{"p"}, Owner: own("m/1"), Queue: QueueGranted}}, "lock id 0 is never a lock"},
		{[]Record{{ID: 3, Lockspace: "ls", Path: []string{"p"}, Owner: own("m/1"), Queue: QueueGranted, Granted: 8}}, "unknown granted mode 8"},
	}
	for _, b := range bad {
		n := newRig(t)
		_, err := n.e.Import(n.now, Snapshot{Locks: b.recs})
		wantErr(t, err, ErrInvalid, b.msg)
		if n.e.Len() != 0 {
			t.Fatal("a refused import left locks")
		}
	}
}
