package dlmclient

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm/socket"
)

// The targets: uncontended lock+unlock pairs on a resource this
// member masters, at least 200,000/s through Local and 30,000/s through the
// socket. Run with `nice -n 19 go test -run '^$' -bench . ./dlmclient`.

func reportPairs(b *testing.B, start time.Time, pairs int64) {
	b.ReportMetric(float64(pairs)/time.Since(start).Seconds(), "pairs/s")
}

// lockUnlock takes and releases EX on its own resources, n times.
func lockUnlock(b *testing.B, c *Client, names []string, n int) {
	ctx := context.Background()
	for i := range n {
		l, err := c.Lock(ctx, names[i%len(names)], EX)
		if err != nil {
			b.Error(err)
			return
		}
		if err := l.Unlock(ctx); err != nil {
			b.Error(err)
			return
		}
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// BenchmarkLocalPairs: one Local session, one goroutine.
func BenchmarkLocalPairs(b *testing.B) {
	srv := newServer(b)
	c, err := Local(srv)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ns := names("r", 64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	lockUnlock(b, c, ns, b.N)
	reportPairs(b, start, int64(b.N))
}

// BenchmarkSocketPairs: one session over the socket, one goroutine: every
// pair is two round trips.
func BenchmarkSocketPairs(b *testing.B) { socketPairs(b, dialRings) }

// BenchmarkSocketPairsRaw: the same with the raw protocol (frames through
// the socket).
func BenchmarkSocketPairsRaw(b *testing.B) { socketPairs(b, dialRaw) }

// BenchmarkSocketPairsPosted: the same with PostUnlocks (one round trip
// a pair).
func BenchmarkSocketPairsPosted(b *testing.B) {
	socketPairs(b, func(ctx context.Context, path string) (*Client, error) { return Dial(ctx, path, PostUnlocks()) })
}

// BenchmarkSocketPairsNoSpin: the same with a client that never polls
// the socket (Spin(0)) and an agent that does not either (dlm_spin 0).
func BenchmarkSocketPairsNoSpin(b *testing.B) {
	defer socket.Spin.Store(socket.Spin.Load())
	socket.Spin.Store(0)
	socketPairs(b, func(ctx context.Context, path string) (*Client, error) { return Dial(ctx, path, Spin(0)) })
}

// BenchmarkSocketPairsGRPC: the same over the socket's gRPC protocol.
func BenchmarkSocketPairsGRPC(b *testing.B) { socketPairs(b, DialGRPC) }

func socketPairs(b *testing.B, dial func(context.Context, string) (*Client, error)) {
	srv := newServer(b)
	c, err := dial(context.Background(), serve(b, srv))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ns := names("r", 64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	lockUnlock(b, c, ns, b.N)
	reportPairs(b, start, int64(b.N))
}

// BenchmarkSocketPairsParallel: goroutines taking pairs on their own
// resources, sharing one session or with one session each.
func BenchmarkSocketPairsParallel(b *testing.B) {
	for _, sessions := range []int{1, 4, 16} {
		for _, workers := range []int{4, 16} {
			if sessions > workers {
				continue
			}
			b.Run("sessions="+strconv.Itoa(sessions)+"/goroutines="+strconv.Itoa(workers), func(b *testing.B) {
				srv := newServer(b)
				path := serve(b, srv)
				cs := make([]*Client, sessions)
				for i := range cs {
					c, err := Dial(context.Background(), path)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					cs[i] = c
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ns := names("w"+strconv.Itoa(w)+"-", 16)
						c := cs[w%sessions]
						for next.Add(1) <= int64(b.N) {
							lockUnlock(b, c, ns, 1)
						}
					}()
				}
				wg.Wait()
				reportPairs(b, start, int64(b.N))
			})
		}
	}
}
