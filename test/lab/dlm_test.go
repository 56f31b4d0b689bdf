package labtest

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/lab"
	"github.com/vigil-cluster/vigil/internal/lab/check"
)

// waitDLM polls the lock workload's logs until found returns true.
func waitDLM(t *testing.T, d *lab.DLMLoad, within time.Duration, what string, found func([]check.DLMEvent, []check.DLMOp) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		evs, ops, _, err := d.Read()
		must(t, err)
		if found(evs, ops) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLabDLMPause is the scenario fencing tokens exist for. A worker holds
// an EX lock and writes under it; its member is paused (a frozen VM) for
// longer than its lease; another member's worker gets the lock. When the
// paused member resumes, its worker, which has not noticed (it ignores lost
// notifications), writes on with its old token: the store must refuse every
// such write, and the old lock's unlock must fail. Without fencing (the lab's
// power switch) the lock manager frees the lock once the paused member's
// lease is certainly over.
func TestLabDLMPause(t *testing.T) {
	requireLab(t)
	l := up(t, lab.Options{Members: 3, NoFencing: true, NoService: true})
	ctx := t.Context()
	// One worker per member, each holding f1 in EX for 15 s once it gets it,
	// writing every 50 ms.
	d, err := l.StartDLMLoad(ctx, lab.DLMLoadOptions{Workers: 1, Resources: []string{"f1"}, Seed: 1,
		Worker: func(member string, i int, o *lab.DLMWorkerOptions) {
			o.Modes = []string{check.ModeEX}
			o.MinOps, o.MaxOps = 300, 300
			o.GapMin, o.GapMax = 50*time.Millisecond, 50*time.Millisecond
			o.Timeout = time.Minute
			o.IgnoreLost = true
		}})
	must(t, err)
	defer d.Stop(0)

	var victim check.DLMEvent
	waitDLM(t, d, 30*time.Second, "a worker holding f1", func(evs []check.DLMEvent, ops []check.DLMOp) bool {
		for _, e := range evs {
			if e.Event == check.DLMGrant {
				victim = e
				return len(ops) >= 3
			}
		}
		return false
	})
	t.Logf("%s holds f1 (lock %s, token %d); pausing %s", victim.Client, victim.Lock, victim.Token, victim.Member)
	must(t, l.Pause(victim.Member))
	paused := lab.Mono()

	var next check.DLMEvent
	waitDLM(t, d, 30*time.Second, "another member's worker granted f1 while "+victim.Member+" is paused", func(evs []check.DLMEvent, ops []check.DLMOp) bool {
		for _, e := range evs {
			if e.Event == check.DLMGrant && e.Member != victim.Member {
				next = e
				for _, o := range ops {
					if o.Lock == e.Lock && o.Accepted {
						return true // the store has seen the new token
					}
				}
			}
		}
		return false
	})
	t.Logf("%s got f1 (lock %s, token %d) %s after the pause", next.Client, next.Lock, next.Token, time.Duration(next.Mono-paused).Round(time.Millisecond))
	if next.Mono < paused || next.Token <= victim.Token {
		t.Fatalf("the new grant (mono %d, token %d) must come after the pause (mono %d) with a token above %d", next.Mono, next.Token, paused, victim.Token)
	}
	must(t, l.Resume(victim.Member))
	resumed := lab.Mono()
	waitDLM(t, d, 20*time.Second, "the resumed worker's write under its old lock", func(evs []check.DLMEvent, ops []check.DLMOp) bool {
		for _, o := range ops {
			if o.Lock == victim.Lock && o.Client == victim.Client && o.Arrived > resumed {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second)
	d.Stop(15 * time.Second)

	evs, ops, bad, err := d.Read()
	must(t, err)
	if len(bad) > 0 {
		t.Errorf("malformed log lines: %q", bad)
	}
	rep := check.CheckDLM(evs, ops)
	t.Logf("lock workload:\n%s", rep)
	for _, v := range rep.Violations {
		t.Errorf("VIOLATION %s", v)
	}
	stale, firstNew := 0, int64(-1)
	for _, o := range ops {
		if o.Lock == next.Lock && o.Accepted && firstNew < 0 {
			firstNew = o.Arrived
		}
		if o.Lock != victim.Lock || o.Client != victim.Client {
			continue
		}
		switch {
		case o.Accepted && firstNew >= 0:
			t.Errorf("the store accepted the paused holder's write (token %d, seq %d) after the new holder's (token %d)", o.Token, o.Seq, next.Token)
		case !o.Accepted && o.Arrived > resumed:
			stale++
			if !strings.Contains(o.Reason, "stale token") {
				t.Errorf("refused for %q, want a stale token", o.Reason)
			}
		}
	}
	if stale == 0 {
		t.Error("no write of the paused holder was refused after the resume")
	}
	for _, e := range evs {
		if e.Event == check.DLMUnlock && e.Client == victim.Client && e.Lock == victim.Lock && e.OK {
			t.Errorf("the paused holder's unlock of %s succeeded after its lock was given to %s", victim.Lock, next.Client)
		}
	}
	t.Logf("after the resume the store refused %d writes of %s with the stale token %d", stale, victim.Client, victim.Token)
}
