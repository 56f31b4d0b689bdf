package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/localcluster"
)

// firstLineAfter returns the time of the first line the recorder wrote on
// member after t0 (0 if none yet).
func firstLineAfter(log, member string, t0 time.Time) time.Time {
	b, err := os.ReadFile(log)
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != member {
			continue
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err == nil && ns > t0.UnixNano() {
			return time.Unix(0, ns)
		}
	}
	return time.Time{}
}

// BenchmarkServiceFailover powers off the member running an exec service
// (agent and service killed; the member is not the director) once per
// iteration and measures the time until the service's own record shows it
// running on another member. It also measures a graceful relocation.
func BenchmarkServiceFailover(b *testing.B) {
	for _, profile := range []string{"lan", "fast"} {
		b.Run(profile, func(b *testing.B) {
			ctx := context.Background()
			logs := &logBuf{}
			lc, err := localcluster.Start(ctx, localcluster.Options{Bin: bin, Members: 3, Dir: b.TempDir(), Profile: profile, Log: logs})
			defer func() {
				if b.Failed() {
					b.Log(tail(logs.String(), 400))
				}
			}()
			if err != nil {
				b.Fatal(err)
			}
			defer lc.Close()
			log := filepath.Join(b.TempDir(), "rec.log")
			if out, err := lc.Apply(ctx, 0, recorder(log, "m2, m3, m1")); err != nil {
				b.Fatalf("apply: %v: %s", err, out)
			}
			status := func() (owner, director string) {
				for i := range lc.Members {
					if !lc.Members[i].Running() {
						continue
					}
					cl := lc.Client(i)
					d, err := cl.Service(ctx, "rec")
					st, err2 := cl.Status(ctx)
					cl.Close()
					if err == nil && err2 == nil && d.State == "ONLINE" {
						return d.Owner, st.Director
					}
				}
				return "", ""
			}
			waitOnline := func() (string, string) {
				for t0 := time.Now(); time.Since(t0) < 60*time.Second; time.Sleep(20 * time.Millisecond) {
					if o, d := status(); o != "" && d != "" {
						return o, d
					}
				}
				b.Fatal("service not ONLINE")
				return "", ""
			}
			var fails, relocs []time.Duration
			for n := 0; n < b.N; n++ {
				owner, dir := waitOnline()
				if owner == dir {
					// Measure a graceful relocation to a member that is not
					// the director, then crash that one.
					to := ""
					for _, m := range lc.Members {
						if m.Name != dir {
							to = m.Name
							break
						}
					}
					t0 := time.Now()
					out, err := lc.CLI(ctx, 0, "service", "relocate", "rec", "--to", to)
					if err != nil {
						b.Fatalf("relocate: %v %s", err, out)
					}
					for time.Since(t0) < 30*time.Second && firstLineAfter(log, to, t0).IsZero() {
						time.Sleep(5 * time.Millisecond)
					}
					first := firstLineAfter(log, to, t0)
					if first.IsZero() {
						b.Fatal("relocation did not happen")
					}
					relocs = append(relocs, first.Sub(t0))
					b.Logf("round %d: relocated %s -> %s in %s", n, owner, to, first.Sub(t0).Round(time.Millisecond))
					owner, _ = waitOnline()
				}
				victim := 0
				for i, m := range lc.Members {
					if m.Name == owner {
						victim = i
					}
				}
				time.Sleep(500 * time.Millisecond)
				t0 := time.Now()
				lc.Crash(victim)
				var first time.Time
				var to string
				for time.Since(t0) < 30*time.Second && first.IsZero() {
					for _, m := range lc.Members {
						if m.Name != owner {
							if f := firstLineAfter(log, m.Name, t0); !f.IsZero() {
								first, to = f, m.Name
							}
						}
					}
					time.Sleep(5 * time.Millisecond)
				}
				if first.IsZero() {
					b.Fatalf("round %d: the service did not come back", n)
				}
				fails = append(fails, first.Sub(t0))
				b.Logf("round %d: %s powered off, service running on %s after %s", n, owner, to, first.Sub(t0).Round(time.Millisecond))
				if err := lc.StartAgent(victim); err != nil {
					b.Fatal(err)
				}
				if err := lc.WaitReady(ctx, 3); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ms(percentile(fails, 0.5)), "failover-p50-ms")
			b.ReportMetric(ms(percentile(fails, 1)), "failover-max-ms")
			if len(relocs) > 0 {
				b.ReportMetric(ms(percentile(relocs, 0.5)), "relocate-p50-ms")
			}
			ivs := intervalsB(log)
			if msg := overlap(ivs); msg != "" {
				for _, iv := range ivs {
					b.Logf("%s epoch %s: %s .. %s", iv.member, iv.epoch, time.Unix(0, iv.start).Format("15:04:05.000"), time.Unix(0, iv.end).Format("15:04:05.000"))
				}
				b.Fatal(msg)
			}
		})
	}
}

// intervalsB and overlap are the benchmark's forms of the test helpers.
func intervalsB(log string) []interval {
	t := &testing.T{}
	defer func() { recover() }()
	return intervals(t, log)
}

func overlap(ivs []interval) string {
	for i := range ivs {
		for j := i + 1; j < len(ivs); j++ {
			a, c := ivs[i], ivs[j]
			if a.member != c.member && a.start <= c.end && c.start <= a.end {
				return fmt.Sprintf("split-brain: %s epoch %s and %s epoch %s overlap", a.member, a.epoch, c.member, c.epoch)
			}
		}
	}
	return ""
}

// BenchmarkRelocate moves an exec service back and forth with `vigil service
// relocate` and measures the time from the request to the service's first
// record on the new member. The exec agent's own part is the stop (SIGTERM
// until the process exits, a few ms for the recorder) and the start (the
// process writes at once); the rest is vigil's overhead: the request, the
// director's two orders and the lrm's reports through the CDB.
func BenchmarkRelocate(b *testing.B) {
	ctx := context.Background()
	lc, err := localcluster.Start(ctx, localcluster.Options{Bin: bin, Members: 3, Dir: b.TempDir(), Profile: "lan"})
	if err != nil {
		b.Fatal(err)
	}
	defer lc.Close()
	log := filepath.Join(b.TempDir(), "rec.log")
	if out, err := lc.Apply(ctx, 0, recorder(log, "m1, m2, m3")); err != nil {
		b.Fatalf("apply: %v: %s", err, out)
	}
	cl := lc.Client(0)
	defer cl.Close()
	for t0 := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if d, err := cl.Service(ctx, "rec"); err == nil && d.State == "ONLINE" {
			break
		}
		if time.Since(t0) > 30*time.Second {
			b.Fatal("not ONLINE")
		}
	}
	var took []time.Duration
	owner := "m1"
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		to := "m2"
		if owner == "m2" {
			to = "m1"
		}
		t0 := time.Now()
		if err := cl.ServiceAction(ctx, "rec", "relocate", to); err != nil {
			b.Fatal(err)
		}
		for time.Since(t0) < 30*time.Second && firstLineAfter(log, to, t0).IsZero() {
			time.Sleep(2 * time.Millisecond)
		}
		first := firstLineAfter(log, to, t0)
		if first.IsZero() {
			b.Fatalf("round %d: not relocated", n)
		}
		took = append(took, first.Sub(t0))
		for time.Since(t0) < 30*time.Second {
			if d, err := cl.Service(ctx, "rec"); err == nil && d.State == "ONLINE" && d.Owner == to {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		owner = to
		time.Sleep(200 * time.Millisecond)
	}
	b.ReportMetric(ms(percentile(took, 0.5)), "relocate-p50-ms")
	b.ReportMetric(ms(percentile(took, 1)), "relocate-max-ms")
	if msg := overlap(intervalsB(log)); msg != "" {
		b.Fatal(msg)
	}
}
