package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/dlmclient"
	"github.com/vigil-cluster/vigil/internal/agent"
	dlmcluster "github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// benchLS is fixed: each resource stays on the master it was chosen for.
const benchLS = dlmcluster.FixedPrefix + "bench"

// masteredOn returns n resource names of lockspace benchLS that member m
// masters in view v.
func masteredOn(v dlmcluster.View, m string, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		name := fmt.Sprintf("bench-%d", i)
		if dlmcluster.Master(v, benchLS, name) == m {
			out = append(out, name)
		}
	}
	return out
}

// BenchmarkDLMLockLatency measures, on a 3-member cluster on one machine
// (loopback), the latency of Lock through m1's socket for resources
// mastered on m1 itself and on another member (one round trip of the node
// service), and lock+unlock pairs per second through the socket.
func BenchmarkDLMLockLatency(b *testing.B) {
	lc := benchCluster(b, 3, "lan")
	v := dlmcluster.View{Number: 1, Members: []string{"m1", "m2", "m3"}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dc, err := dlmclient.Dial(ctx, filepath.Join(lc.Members[0].Dir, agent.DLMSocketFile))
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	// Wait for the full view to be rebuilt: a lock on a resource of m3.
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := dc.Lock(ctx, masteredOn(v, "m3", 1)[0], dlmclient.EX, dlmclient.Lockspace(benchLS))
		if err == nil {
			l.Unlock(ctx)
			break
		}
		if time.Now().After(deadline) {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the view is [m1 m2 m3] once m3 renewed
	for _, on := range []string{"m1", "m2"} {
		names := masteredOn(v, on, 16)
		b.Run("master="+on, func(b *testing.B) {
			var lat []time.Duration
			for i := range b.N {
				t0 := time.Now()
				l, err := dc.Lock(ctx, names[i%len(names)], dlmclient.EX, dlmclient.Lockspace(benchLS))
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
	}
}
