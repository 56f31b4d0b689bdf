package dlm

import (
	"runtime"
	"strconv"
	"testing"
)

func names(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = "res-" + strconv.Itoa(i)
	}
	return s
}

func mustNew(tb testing.TB) *Engine {
	e, err := New(DefaultOptions())
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// BenchmarkLockUnlockUncontended is one lock and its unlock per op. The
// target for the agent above is 200,000 pairs/s.
func BenchmarkLockUnlockUncontended(b *testing.B) {
	// Each pair creates and deletes its resource.
	b.Run("distinct-resources", func(b *testing.B) {
		e, ns := mustNew(b), names(1<<16)
		o := OwnerID{Member: "m1", Client: 1}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			id, _, err := e.Enqueue(t0, Request{Lockspace: "ls", Name: ns[i&(1<<16-1)], Owner: o, Mode: EX})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.Unlock(id, 0, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	})
	// The same with 1,000,000 other locks held: big maps, cold caches.
	b.Run("distinct-resources-1M-held", func(b *testing.B) {
		e, ns := mustNew(b), names(1<<20)
		for i := range 1_000_000 {
			e.Enqueue(t0, Request{Lockspace: "held", Name: ns[i], Owner: OwnerID{Member: "m2", Client: uint64(i % 1000)}, Mode: PR})
		}
		o := OwnerID{Member: "m1", Client: 1}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			id, _, _ := e.Enqueue(t0, Request{Lockspace: "ls", Name: ns[i&(1<<20-1)], Owner: o, Mode: EX})
			e.Unlock(id, 0, nil)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	})
	// One hot resource held in CR by 1,000 owners; many owners lock and
	// unlock it in NL and CR, which are compatible with everything there.
	b.Run("hot-resource-NL-CR", func(b *testing.B) {
		e := mustNew(b)
		for i := range 1000 {
			e.Enqueue(t0, Request{Lockspace: "ls", Name: "hot", Owner: OwnerID{Member: "m2", Client: uint64(i)}, Mode: CR})
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			o := OwnerID{Member: "m1", Client: uint64(i % 1000)}
			id, evs, err := e.Enqueue(t0, Request{Lockspace: "ls", Name: "hot", Owner: o, Mode: Mode(i & 1)})
			if err != nil || len(evs) != 1 || evs[0].Kind != EventGranted {
				b.Fatal(evs, err)
			}
			e.Unlock(id, 0, nil)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	})
}

// BenchmarkContendedEX: 8 owners take turns holding EX on one resource. One
// op is: the holder unlocks (the next waiter is granted and told it blocks
// the others), and requests EX again (it waits at the end of the queue).
func BenchmarkContendedEX(b *testing.B) {
	e := mustNew(b)
	const n = 8
	var queue []LockID // queue[0] holds EX, the rest wait in order
	var owners []OwnerID
	for i := range n {
		o := OwnerID{Member: "m1", Client: uint64(i)}
		id, _, err := e.Enqueue(t0, Request{Lockspace: "ls", Name: "hot", Owner: o, Mode: EX})
		if err != nil {
			b.Fatal(err)
		}
		queue, owners = append(queue, id), append(owners, o)
	}
	b.ReportAllocs()
	for b.Loop() {
		holder, o := queue[0], owners[0]
		evs, err := e.Unlock(holder, 0, nil)
		if err != nil || len(evs) == 0 || evs[0].Kind != EventGranted || evs[0].Lock != queue[1] {
			b.Fatalf("unlock %d: %v %v", holder, evs, err)
		}
		id, _, err := e.Enqueue(t0, Request{Lockspace: "ls", Name: "hot", Owner: o, Mode: EX})
		if err != nil {
			b.Fatal(err)
		}
		queue, owners = append(queue[1:], id), append(owners[1:], o)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handoffs/s")
}

// heapPerLock measures the heap bytes per granted lock for n locks held by
// 1,000 owners on `resources` resources (names allocated after the first
// reading: they are part of what the engine keeps).
func heapPerLock(tb testing.TB, n, resources int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := mustNew(tb)
	for i := range n {
		name := "resource-" + strconv.Itoa(i%resources)
		_, evs, err := e.Enqueue(t0, Request{Lockspace: "ls", Name: name, Owner: OwnerID{Member: "m1", Client: uint64(i % 1000)}, Mode: CR})
		if err != nil || len(evs) != 1 || evs[0].Kind != EventGranted {
			tb.Fatal(evs, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if e.Len() != n {
		tb.Fatalf("%d locks, want %d", e.Len(), n)
	}
	runtime.KeepAlive(e)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkHeapPerGrantedLock reports the heap bytes per granted lock with
// 1,000,000 granted locks (the agent must hold them in under 1 GiB).
func BenchmarkHeapPerGrantedLock(b *testing.B) {
	for _, c := range []struct {
		name      string
		resources int
	}{{"1M-resources", 1_000_000}, {"1000-resources", 1000}} {
		b.Run(c.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = heapPerLock(b, 1_000_000, c.resources)
			}
			b.ReportMetric(per, "B/lock")
		})
	}
}

// TestHeapPerGrantedLock holds 1,000,000 granted locks, each on its own
// resource (the worst case), in at most 400 bytes each.
func TestHeapPerGrantedLock(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("1,000,000 locks: not in -short or -race runs")
	}
	per := heapPerLock(t, 1_000_000, 1_000_000)
	t.Logf("%.0f heap bytes per granted lock (1,000,000 locks on as many resources)", per)
	if per > 400 {
		t.Errorf("%.0f heap bytes per granted lock, want at most 400", per)
	}
}
