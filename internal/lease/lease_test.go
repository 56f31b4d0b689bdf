package lease

import (
	"math/rand"
	"testing"
	"time"
)

var cfg = Config{Length: 2 * time.Second, Renew: 500 * time.Millisecond, Drift: 1.1, AbortBefore: 300 * time.Millisecond}

func TestConfigValidate(t *testing.T) {
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Config{
		{Length: 0, Renew: 1, Drift: 1},
		{Length: time.Second, Renew: 500 * time.Millisecond, Drift: 1.1},
		{Length: time.Second, Renew: 100 * time.Millisecond, Drift: 0.9},
		{Length: time.Second, Renew: 100 * time.Millisecond, Drift: 1.1, AbortBefore: time.Second},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestHolderAbortsBeforeLeaseEnds(t *testing.T) {
	h := NewHolder(cfg)
	if h.Valid(0) || !h.MustAbort(0) {
		t.Fatal("no lease yet: services must not run")
	}
	h.Asking(100 * time.Millisecond)
	h.Granted(100 * time.Millisecond)
	if !h.Valid(time.Second) || h.MustAbort(time.Second) {
		t.Fatal("a fresh lease is valid")
	}
	// The lease runs from when the request was sent: 0.1 s + 2 s.
	if h.MustAbort(1799*time.Millisecond) || !h.MustAbort(1800*time.Millisecond) {
		t.Errorf("abort must start 300 ms before 2.1 s")
	}
	if h.Valid(2100*time.Millisecond) || h.Remaining(2100*time.Millisecond) != 0 {
		t.Error("the lease ends at 2.1 s")
	}
	// A late answer to an old request never extends beyond its own send time.
	h.Granted(50 * time.Millisecond)
	if h.Valid(2100 * time.Millisecond) {
		t.Error("an older grant extended the lease")
	}
}

func TestNewDirectorWaitsOneLease(t *testing.T) {
	g := NewGrantor(cfg, 10*time.Second)
	if g.CertainlyOver("m1", 12*time.Second) {
		t.Error("a new director must wait Length*Drift (2.2 s) from its start")
	}
	if !g.CertainlyOver("m1", 12200*time.Millisecond) {
		t.Error("after 2.2 s the lease of a member it never granted is over")
	}
	g.Grant("m2", 11*time.Second)
	if g.CertainlyOver("m2", 13*time.Second) || !g.CertainlyOver("m2", 13200*time.Millisecond) {
		t.Error("a granted member's lease is over Length*Drift after the grant")
	}
}

// TestNeverTwoHolders is the safety property: with any message delays, a
// member never believes it holds a lease at a moment the director already
// counts that lease as over (on clocks that drift by less than the margin).
func TestNeverTwoHolders(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for run := 0; run < 2000; run++ {
		rate := 1 + (rng.Float64()*2-1)*0.09 // member clock runs 0.91x..1.09x the director's
		h := NewHolder(cfg)
		g := NewGrantor(cfg, 0)
		var dirNow time.Duration
		var lastGrant time.Duration
		for step := 0; step < 20; step++ {
			dirNow += time.Duration(rng.Int63n(int64(cfg.Renew)))
			send := dirNow
			memSend := time.Duration(float64(send) * rate)
			h.Asking(memSend)
			arrive := send + time.Duration(rng.Int63n(int64(300*time.Millisecond)))
			if rng.Intn(4) == 0 {
				continue // lost
			}
			g.Grant("m1", arrive)
			lastGrant = arrive
			h.Granted(memSend)
			// Every director instant at which the lease is certainly over,
			// the member (on its own clock) must not think it valid.
			over := g.SafeAt("m1")
			memAt := time.Duration(float64(over) * rate)
			if h.Valid(memAt) {
				t.Fatalf("run %d: member holds its lease at %s (director %s) though the director counts it over; last grant %s rate %.3f", run, memAt, over, lastGrant, rate)
			}
		}
	}
}
