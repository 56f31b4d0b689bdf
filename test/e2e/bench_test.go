package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/localcluster"
)

func benchCluster(b *testing.B, n int, profile string) *localcluster.Cluster {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lc, err := localcluster.Start(ctx, localcluster.Options{Bin: bin, Members: n, Dir: b.TempDir(), Profile: profile})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(lc.Close)
	return lc
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkCDBWrite measures acknowledged CDB writes on a 3-member cluster
// on one machine: one writer through the director, one through a follower
// (forwarded over gRPC), and 16 concurrent writers for throughput.
func BenchmarkCDBWrite(b *testing.B) {
	lc := benchCluster(b, 3, "lan")
	cl0 := lc.Client(0)
	st, err := cl0.Status(b.Context())
	cl0.Close()
	if err != nil {
		b.Fatal(err)
	}
	dir, follower := 0, 0
	for i, m := range lc.Members {
		if m.Name == st.Director {
			dir = i
		} else {
			follower = i
		}
	}
	for _, tc := range []struct {
		name string
		i    int
	}{{"director", dir}, {"follower", follower}} {
		b.Run(tc.name, func(b *testing.B) {
			cl := lc.Client(tc.i)
			defer cl.Close()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				t0 := time.Now()
				if _, err := cl.SetSettings(b.Context(), map[string]string{fmt.Sprintf("user.k%d", n%512): fmt.Sprint(n)}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(ms(percentile(lat, 0.5)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
		})
	}
	b.Run("throughput-16", func(b *testing.B) {
		var wg sync.WaitGroup
		per := b.N/16 + 1
		b.ResetTimer()
		t0 := time.Now()
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				cl := lc.Client(dir)
				defer cl.Close()
				for n := 0; n < per; n++ {
					if _, err := cl.SetSettings(context.Background(), map[string]string{fmt.Sprintf("user.w%d", w): fmt.Sprint(n)}); err != nil {
						b.Error(err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		b.ReportMetric(float64(16*per)/time.Since(t0).Seconds(), "writes/s")
	})
}

// BenchmarkFailover kills the director of a 3-member cluster once per
// iteration and measures, from a survivor's point of view, the time until it
// shows the dead member DOWN (detection) and until it names a new director
// (election). Run with -benchtime Nx.
func BenchmarkFailover(b *testing.B) {
	for _, profile := range []string{"lan", "fast"} {
		b.Run(profile, func(b *testing.B) {
			lc := benchCluster(b, 3, profile)
			var detect, elect []time.Duration
			for n := 0; n < b.N; n++ {
				cl := lc.Client(0)
				st, err := cl.Status(b.Context())
				cl.Close()
				if err != nil {
					b.Fatal(err)
				}
				victim := 0
				for i, m := range lc.Members {
					if m.Name == st.Director {
						victim = i
					}
				}
				watcher := (victim + 1) % 3
				wc := lc.Client(watcher)
				t0 := time.Now()
				lc.Kill(victim)
				var d, e time.Duration
				for (d == 0 || e == 0) && time.Since(t0) < 30*time.Second {
					s, err := wc.Status(b.Context())
					if err == nil {
						for _, m := range s.Members {
							if m.Name == st.Director && m.State == client.MemberDown && d == 0 {
								d = time.Since(t0)
							}
						}
						if s.Director != "" && s.Director != st.Director && e == 0 {
							e = time.Since(t0)
						}
					}
					time.Sleep(10 * time.Millisecond)
				}
				wc.Close()
				if d == 0 || e == 0 {
					b.Fatalf("round %d: detection %s election %s", n, d, e)
				}
				detect, elect = append(detect, d), append(elect, e)
				b.Logf("round %d: %s DOWN after %s, new director after %s", n, st.Director, d, e)
				if err := lc.StartAgent(victim); err != nil {
					b.Fatal(err)
				}
				if err := lc.WaitReady(b.Context(), 3); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ms(percentile(detect, 0.5)), "detect-p50-ms")
			b.ReportMetric(ms(percentile(detect, 1)), "detect-max-ms")
			b.ReportMetric(ms(percentile(elect, 0.5)), "elect-p50-ms")
			b.ReportMetric(ms(percentile(elect, 1)), "elect-max-ms")
		})
	}
}
