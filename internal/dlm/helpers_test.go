package dlm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// rig drives one engine in a test, failing the test on unexpected errors.
type rig struct {
	t   *testing.T
	e   *Engine
	now time.Time
}

func newRig(t *testing.T) *rig {
	t.Helper()
	e, err := New(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, e: e, now: t0}
}

func own(s string) OwnerID {
	m, c, _ := strings.Cut(s, "/")
	var n uint64
	fmt.Sscan(c, &n)
	return OwnerID{Member: m, Client: n}
}

// lock requests a root lock "name" in lockspace "ls" for owner ("m1/1").
func (x *rig) lock(owner, name string, m Mode, f Flags) (LockID, string) {
	x.t.Helper()
	return x.req(Request{Lockspace: "ls", Name: name, Owner: own(owner), Mode: m, Flags: f})
}

func (x *rig) req(r Request) (LockID, string) {
	x.t.Helper()
	id, evs, err := x.e.Enqueue(x.now, r)
	if err != nil {
		x.t.Fatalf("enqueue %+v: %v", r, err)
	}
	x.check()
	return id, show(evs)
}

func (x *rig) conv(id LockID, m Mode, f Flags, v *Value) string {
	x.t.Helper()
	_, evs, err := x.e.Enqueue(x.now, Request{Lock: id, Mode: m, Flags: f | Convert, Value: v})
	if err != nil {
		x.t.Fatalf("convert %d to %v: %v", id, m, err)
	}
	x.check()
	return show(evs)
}

func (x *rig) unlock(id LockID) string {
	x.t.Helper()
	evs, err := x.e.Unlock(id, 0, nil)
	if err != nil {
		x.t.Fatalf("unlock %d: %v", id, err)
	}
	x.check()
	return show(evs)
}

func (x *rig) cancel(id LockID) string {
	x.t.Helper()
	evs, err := x.e.Cancel(id)
	if err != nil {
		x.t.Fatalf("cancel %d: %v", id, err)
	}
	x.check()
	return show(evs)
}

// check asserts the engine's invariants through Export.
func (x *rig) check() {
	x.t.Helper()
	if err := checkSnapshot(x.e.Export()); err != nil {
		x.t.Fatal(err)
	}
}

// checkSnapshot checks invariant 3 (no two incompatible granted locks on a
// resource), that each queue is in sequence order, tokens are under the
// floor and ids under NextLockID.
func checkSnapshot(s Snapshot) error {
	type key struct {
		ls, path string
		q        Queue
	}
	held := map[[2]string][]Record{}
	last := map[key]uint64{}
	for _, r := range s.Locks {
		k := [2]string{r.Lockspace, strings.Join(r.Path, "\x00")}
		if r.Queue != QueueWaiting {
			for _, h := range held[k] {
				if !Compatible(h.Granted, r.Granted) {
					return fmt.Errorf("invariant 3 broken: locks %d (%v) and %d (%v) granted at once on %q", h.ID, h.Granted, r.ID, r.Granted, r.Path)
				}
			}
			held[k] = append(held[k], r)
		}
		qk := key{k[0], k[1], r.Queue}
		if r.Seq < last[qk] { // equal only after merging sources
			return fmt.Errorf("queue %v of %q out of sequence order at lock %d", r.Queue, r.Path, r.ID)
		}
		last[qk] = r.Seq
		if r.Token > s.TokenFloor {
			return fmt.Errorf("lock %d: token %d above the floor %d", r.ID, r.Token, s.TokenFloor)
		}
		if r.ID >= s.NextLockID {
			return fmt.Errorf("lock %d: id not below NextLockID %d", r.ID, s.NextLockID)
		}
	}
	return nil
}

// show renders events compactly:
//
//	G1:EX#3 granted lock 1 at EX, token 3 (+v=xx: valid value; +invalid=xx)
//	NQ1:PR  not queued   C1:PR canceled   D1:EX deadlock
//	B1>2:EX lock 1 blocks waiting lock 2, which wants EX
func show(evs []Event) string {
	var parts []string
	for _, e := range evs {
		var s string
		switch e.Kind {
		case EventGranted:
			s = fmt.Sprintf("G%d:%v#%d", e.Lock, e.Mode, e.Token)
		case EventNotQueued:
			s = fmt.Sprintf("NQ%d:%v", e.Lock, e.Mode)
		case EventCanceled:
			s = fmt.Sprintf("C%d:%v", e.Lock, e.Mode)
		case EventDeadlock:
			s = fmt.Sprintf("D%d:%v", e.Lock, e.Mode)
		case EventBlocking:
			s = fmt.Sprintf("B%d>%d:%v", e.Lock, e.Blocked, e.Mode)
		}
		text := strings.TrimRight(string(e.Value[:]), "\x00")
		switch {
		case e.ValueValid:
			s += "+v=" + text
		case e.Value != (Value{}):
			s += "+invalid=" + text
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func val(s string) *Value {
	var v Value
	copy(v[:], s)
	return &v
}

func wantErr(t *testing.T, err error, kind error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v (%q)", kind, substr)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not say %q", err, substr)
	}
}

func eq(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}
