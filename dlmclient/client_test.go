package dlmclient

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
)

func TestLockUnlock(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		l, err := a.Lock(ctx, "res", EX)
		if err != nil {
			t.Fatal(err)
		}
		if l.Mode() != EX || l.Token() == 0 || l.ID().Member != "m1" {
			t.Fatalf("granted lock %v: want EX with a token and an m1 id", l)
		}
		if _, err := b.Lock(ctx, "res", PR, NoQueue()); !errors.Is(err, ErrNotQueued) {
			t.Fatalf("PR NoQueue on a resource held EX: got %v, want ErrNotQueued", err)
		}
		if _, err := b.Lock(ctx, "res", NL, NoQueue()); err != nil {
			t.Fatalf("NL is compatible with EX: %v", err)
		}
		tok := l.Token()
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); !errors.Is(err, ErrUnknownLock) {
			t.Fatalf("second unlock: got %v, want ErrUnknownLock", err)
		}
		// Over the socket the release returned once sent: another
		// session sees it once the lock manager took it.
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		l2, err := b.Lock(ctx, "res", EX, NoQueue())
		if err != nil {
			t.Fatal(err)
		}
		if l2.Token() <= tok {
			t.Fatalf("fencing token went from %d to %d: it must grow with every grant", tok, l2.Token())
		}
		if len(b.Locks()) != 2 || len(a.Locks()) != 0 {
			t.Fatalf("sessions know %d and %d locks, want 0 and 2", len(a.Locks()), len(b.Locks()))
		}
	})
}

func TestWaitThenGrant(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		l, err := a.Lock(ctx, "res", PW)
		if err != nil {
			t.Fatal(err)
		}
		p, err := b.LockAsync("res", PR)
		if err != nil {
			t.Fatal(err)
		}
		notDone(t, p)
		bl := <-l.Blocking()
		if bl.Lock != l || bl.Mode != PR || bl.Blocked != p.Lock().ID() {
			t.Fatalf("blocking notification %+v: want lock %v blocking %v for PR", bl, l.ID(), p.Lock().ID())
		}
		select {
		case cb := <-a.Blocking():
			if cb.Lock != l {
				t.Fatalf("client blocking notification for %v, want %v", cb.Lock, l)
			}
		case <-time.After(time.Second):
			t.Fatal("no blocking notification on the client's channel")
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		l2, err := p.Wait(ctx)
		if err != nil || l2.Mode() != PR {
			t.Fatalf("waiting PR after the PW holder left: %v %v", l2, err)
		}
		if l2.Token() <= l.Token() {
			t.Fatalf("token %d after %d", l2.Token(), l.Token())
		}
	})
}

func TestConvert(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		la, err := a.Lock(ctx, "res", PR)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := b.Lock(ctx, "res", PR)
		if err != nil {
			t.Fatal(err)
		}
		if err := la.Convert(ctx, EX, NoQueue()); !errors.Is(err, ErrNotQueued) {
			t.Fatalf("PR->EX NoQueue with another PR holder: %v, want ErrNotQueued", err)
		}
		if la.Mode() != PR {
			t.Fatalf("a refused conversion left the lock %v, want PR", la.Mode())
		}
		p, err := la.ConvertAsync(EX)
		if err != nil {
			t.Fatal(err)
		}
		notDone(t, p)
		if _, err := la.ConvertAsync(NL); !errors.Is(err, ErrWrongState) {
			t.Fatalf("a second conversion while one waits: %v, want ErrWrongState", err)
		}
		if err := lb.Convert(ctx, NL); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if la.Mode() != EX {
			t.Fatalf("after the conversion: %v, want EX", la.Mode())
		}
		if err := la.Convert(ctx, CR); err != nil || la.Mode() != CR {
			t.Fatalf("down-conversion: %v, mode %v", err, la.Mode())
		}
	})
}

func TestValueBlock(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		l, err := a.Lock(ctx, "cfg", EX, ValueBlock())
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := l.Value(); !ok || v != (Value{}) {
			t.Fatalf("a new resource's value block: %v valid %v, want zero and valid", v, ok)
		}
		var v1 Value
		copy(v1[:], "generation 1")
		if err := l.Convert(ctx, NL, WithValue(v1)); err != nil {
			t.Fatal(err)
		}
		lb, err := b.Lock(ctx, "cfg", PR, ValueBlock())
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := lb.Value(); !ok || v != v1 {
			t.Fatalf("reader sees %q valid %v, want %q", v[:12], ok, v1[:12])
		}
		if err := lb.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Convert(ctx, EX, ValueBlock()); err != nil {
			t.Fatal(err)
		}
		var v2 Value
		copy(v2[:], "generation 2")
		if err := l.Unlock(ctx, WithValue(v2)); err == nil {
			// The resource went away with its last lock: a new one starts
			// with a zero value. Keep an NL lock to keep the value.
		} else {
			t.Fatal(err)
		}
		if _, err := a.Lock(ctx, "cfg", EX, WithValue(v2)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("WithValue on a new lock: %v, want ErrInvalid", err)
		}
	})
}

func TestContextCancelsWaitingRequest(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		l, err := a.Lock(ctx, "res", EX)
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		_, err = b.Lock(short, "res", EX)
		if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("lock with an expired context: %v, want ErrCanceled and DeadlineExceeded", err)
		}
		if !strings.Contains(err.Error(), "gave up waiting") {
			t.Fatalf("message %q does not say the caller gave up", err)
		}
		waitFor(t, "the canceled request to leave the lock manager", func() bool { return len(r.held()) == 1 })
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if len(b.Locks()) != 0 {
			t.Fatalf("the canceled request is still among b's locks: %v", b.Locks())
		}
	})
}

func TestPendingCancel(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		l, err := a.Lock(ctx, "res", EX)
		if err != nil {
			t.Fatal(err)
		}
		p, err := b.LockAsync("res", CR)
		if err != nil {
			t.Fatal(err)
		}
		notDone(t, p)
		p.Cancel()
		if _, err := result(t, p); !errors.Is(err, ErrCanceled) {
			t.Fatalf("canceled request: %v, want ErrCanceled", err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "no locks", func() bool { return len(r.held()) == 0 })
	})
}

// A request granted after its caller gave up is released.
func TestAbandonedGrantIsReleased(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		l, err := a.Lock(ctx, "res", EX)
		if err != nil {
			t.Fatal(err)
		}
		p, err := b.LockAsync("res", EX)
		if err != nil {
			t.Fatal(err)
		}
		notDone(t, p)
		// The caller gives up, but its cancel loses the race with the grant.
		b.mu.Lock()
		p.abandoned = true
		b.mu.Unlock()
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the late grant to be released", func() bool { return len(r.held()) == 0 })
	})
}

func TestUnlockWaitingRequest(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		if _, err := a.Lock(ctx, "res", EX); err != nil {
			t.Fatal(err)
		}
		p, err := b.LockAsync("res", EX)
		if err != nil {
			t.Fatal(err)
		}
		notDone(t, p)
		if err := p.Lock().Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := result(t, p); !errors.Is(err, ErrCanceled) {
			t.Fatalf("request unlocked while waiting: %v, want ErrCanceled", err)
		}
	})
}

func TestDeadlock(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		if _, err := a.Lock(ctx, "A", EX); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Lock(ctx, "B", EX); err != nil {
			t.Fatal(err)
		}
		pa, err := a.LockAsync("B", EX)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := b.LockAsync("A", EX)
		if err != nil {
			t.Fatal(err)
		}
		var victims []cluster.LockID
		waitFor(t, "the deadlock to show in the wait-for graph", func() bool {
			victims = cluster.FindDeadlocks(r.srv.WaitEdges())
			return len(victims) == 1
		})
		if err := r.srv.AbortDeadlock(victims[0]); err != nil {
			t.Fatal(err)
		}
		var loser, winner *Pending
		select {
		case <-pa.Done():
			loser, winner = pa, pb
		case <-pb.Done():
			loser, winner = pb, pa
		case <-time.After(5 * time.Second):
			t.Fatal("no deadlock victim was told")
		}
		if loser.Lock().ID() != fromCluster(victims[0]) {
			t.Fatalf("%v completed, but the victim is %v", loser.Lock().ID(), victims[0])
		}
		if _, err := loser.Result(); !errors.Is(err, ErrDeadlock) || !strings.Contains(err.Error(), "victim of a deadlock") {
			t.Fatalf("victim: %v, want ErrDeadlock", err)
		}
		notDone(t, winner)
	})
}

func TestSubLocks(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a := r.client()
		parent, err := a.Lock(ctx, "db", CR, Lockspace("app"))
		if err != nil {
			t.Fatal(err)
		}
		child, err := a.Lock(ctx, "table1", EX, Lockspace("app"), Parent(parent))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Lock(ctx, "table1", EX, Parent(parent), Lockspace("other")); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a sub-lock in another lockspace than its parent: %v, want ErrInvalid", err)
		}
		child2, err := a.Lock(ctx, "table2", EX, Parent(parent))
		if err != nil || child2.Lockspace() != "app" {
			t.Fatalf("a sub-lock without Lockspace: %v in %q, want its parent's lockspace", err, child2.Lockspace())
		}
		if err := child2.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := parent.Unlock(ctx); !errors.Is(err, ErrHasChildren) {
			t.Fatalf("unlock of a parent with a sub-lock: %v, want ErrHasChildren", err)
		}
		if err := child.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := parent.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		other := r.client()
		if _, err := other.Lock(ctx, "x", EX, Lockspace("app"), Parent(child)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a sub-lock of another session's lock: %v, want ErrInvalid", err)
		}
	})
}

func TestLeaseLoss(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a := r.client()
		l, err := a.Lock(ctx, "res", EX)
		if err != nil {
			t.Fatal(err)
		}
		lostCh := l.Lost()
		if n := r.srv.Lose("the lease of m1 is ending"); n != 1 {
			t.Fatalf("Lose told %d locks, want 1", n)
		}
		select {
		case <-lostCh:
		case <-time.After(5 * time.Second):
			t.Fatal("the lock was not reported lost")
		}
		select {
		case <-a.Lost():
		case <-time.After(5 * time.Second):
			t.Fatal("the client was not reported lost")
		}
		if err := l.Err(); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "lease of m1 is ending") {
			t.Fatalf("lost lock's error: %v", err)
		}
		if _, err := a.Lock(ctx, "other", EX); !errors.Is(err, ErrLost) {
			t.Fatalf("lock after the session was lost: %v, want ErrLost", err)
		}
		if err := l.Unlock(ctx); !errors.Is(err, ErrLost) {
			t.Fatalf("unlock of a lost lock: %v, want ErrLost", err)
		}
	})
}

func TestNotMember(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a := r.client()
		l, err := a.Lock(ctx, "res", EX)
		if err != nil {
			t.Fatal(err)
		}
		lost := l.Lost()
		if err := r.srv.SetView(server.View{Number: 2, Members: map[string]uint64{"m2": 7}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-lost:
		case <-time.After(5 * time.Second):
			t.Fatal("the lock was not reported lost when the member left the view")
		}
		if !errors.Is(l.Err(), ErrLost) || !errors.Is(l.Err(), cluster.ErrNotMember) && !strings.Contains(l.Err().Error(), "not in the lock manager view") {
			t.Fatalf("lock lost by leaving the view: %v", l.Err())
		}
		if _, err := a.Lock(ctx, "res", EX); !errors.Is(err, ErrNotMember) {
			t.Fatalf("lock outside the view: %v, want ErrNotMember", err)
		}
	})
}

func TestCloseReleases(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		ctx := ctxT(t)
		a, b := r.client(), r.client()
		l, err := a.Lock(ctx, "res", EX)
		if err != nil {
			t.Fatal(err)
		}
		p, err := a.LockAsync("res2", EX)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Lock(ctx, "res", EX, NoQueue()); err != nil {
			t.Fatalf("after the holder closed its session: %v", err)
		}
		if err := l.Unlock(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("unlock after Close: %v, want ErrClosed", err)
		}
		if _, err := a.Lock(ctx, "res", EX); !errors.Is(err, ErrClosed) {
			t.Fatalf("lock after Close: %v, want ErrClosed", err)
		}
	})
}

func TestValidation(t *testing.T) {
	r := newRig(t, "local")
	a := r.client()
	ctx := ctxT(t)
	held, err := a.Lock(ctx, "held", EX)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 65)
	for _, tc := range []struct {
		name string
		do   func() error
		want string
	}{
		{"empty name", func() error { _, err := a.Lock(ctx, "", EX); return err }, "resource name is 0 bytes long"},
		{"long name", func() error { _, err := a.Lock(ctx, long, EX); return err }, "resource name is 65 bytes long: give 1 to 64"},
		{"long lockspace", func() error { _, err := a.Lock(ctx, "r", EX, Lockspace(long)); return err }, "lockspace name is 65 bytes"},
		{"bad mode", func() error { _, err := a.Lock(ctx, "r", Mode(9)); return err }, "unknown lock mode 9"},
		{"expedite EX", func() error { _, err := a.Lock(ctx, "r", EX, Expedite()); return err }, "Expedite is only for a new NL request"},
		{"quecvt new", func() error { _, err := a.Lock(ctx, "r", EX, QueueConvert()); return err }, "QueueConvert is only for Convert"},
		{"convert lockspace", func() error { return held.Convert(ctx, PR, Lockspace("x")) }, "conversion keeps the lock's resource"},
		{"convert bad mode", func() error { return held.Convert(ctx, Mode(6)) }, "unknown lock mode 6"},
		{"unlock noqueue", func() error { return held.Unlock(ctx, NoQueue()) }, "takes only WithValue"},
	} {
		err := tc.do()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalid saying %q", tc.name, err, tc.want)
		}
	}
	if r.kind == "local" {
		if _, err := a.Lock(ctx, "\xff", EX); err != nil {
			t.Errorf("a name that is not UTF-8, in process: %v", err)
		}
	}
	sr := newRig(t, "socket")
	if _, err := sr.client().Lock(ctx, "\xff", EX); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("a name that is not UTF-8 over the socket: %v", err)
	}
	if _, err := ParseMode("pw"); err != nil {
		t.Error(err)
	}
	if _, err := ParseMode("XX"); err == nil || !strings.Contains(err.Error(), "use one of NL, CR, CW, PR, PW, EX") {
		t.Errorf("ParseMode(XX): %v", err)
	}
}

// Local completes a request granted at once within the call: no goroutine
// has to run for it.
func TestLocalGrantWithinCall(t *testing.T) {
	r := newRig(t, "local")
	c := r.client()
	p, err := c.LockAsync("res", EX)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("an uncontended Local request was not complete when LockAsync returned")
	}
	l, err := p.Result()
	if err != nil || l.Token() == 0 {
		t.Fatalf("%v %v", l, err)
	}
	p2, err := c.LockAsync("res", PR, NoQueue())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p2.Done():
	default:
		t.Fatal("a refused NoQueue Local request was not complete when LockAsync returned")
	}
	if _, err := p2.Result(); !errors.Is(err, ErrNotQueued) {
		t.Fatalf("%v, want ErrNotQueued", err)
	}
}

// TestLeaseLossWithoutLocks: a session with no lock also learns that it is
// lost (the server's session-level notice), so a later request fails at
// once instead of waiting.
func TestLeaseLossWithoutLocks(t *testing.T) {
	both(t, func(t *testing.T, r *rig) {
		a := r.client()
		if n := r.srv.Lose("the lease of m1 is ending"); n != 0 {
			t.Fatalf("Lose told %d locks, want 0", n)
		}
		select {
		case <-a.Lost():
		case <-time.After(5 * time.Second):
			t.Fatal("the client was not reported lost")
		}
		if _, err := a.Lock(ctxT(t), "other", EX); !errors.Is(err, ErrLost) {
			t.Fatalf("lock after the session was lost: %v, want ErrLost", err)
		}
	})
}

// TestLocalServerCloses: a Local client hears when the lock manager in its
// process shuts down: its lock is lost and a waiting request ends.
func TestLocalServerCloses(t *testing.T) {
	r := newRig(t, "local")
	a, b := r.client(), r.client()
	ctx := ctxT(t)
	l, err := a.Lock(ctx, "res", EX)
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.LockAsync("res", EX)
	if err != nil {
		t.Fatal(err)
	}
	r.srv.Close()
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the held lock was not reported lost")
	}
	if _, err := p.Wait(ctx); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("the waiting request ended with %v, want ErrLost naming the shutdown", err)
	}
}
