package rpc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// dlmPair is two lock managers in one process that talk as members do:
// TLS connections on each one's cluster port (loopback), ProtoDLM frames.
type dlmPair struct {
	srvs map[string]*server.Server
	view cluster.View
}

func newDLMPair(tb testing.TB) *dlmPair {
	tb.Helper()
	ca, err := pki.NewCA("bench")
	if err != nil {
		tb.Fatal(err)
	}
	names := []string{"m1", "m2"}
	addrs := map[string]string{}
	pools := map[string]*Pool{}
	muxes := map[string]*Mux{}
	for _, m := range names {
		dir := tb.TempDir()
		_, keyPEM, pub, err := pki.NewKey()
		if err != nil {
			tb.Fatal(err)
		}
		cert, _, err := ca.Issue(m, pub, []string{"127.0.0.1"})
		if err != nil {
			tb.Fatal(err)
		}
		if err := pki.WriteFiles(dir, ca.CertPEM, nil, cert, keyPEM); err != nil {
			tb.Fatal(err)
		}
		id, err := pki.Load(dir)
		if err != nil {
			tb.Fatal(err)
		}
		mux, err := Listen("127.0.0.1:0", id, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { mux.Close() })
		addrs[m], pools[m], muxes[m] = mux.Addr().String(), NewPool(id), mux
	}
	p := &dlmPair{srvs: map[string]*server.Server{}, view: cluster.View{Number: 1, Members: names}}
	v := server.View{Number: 1, Members: map[string]uint64{}}
	for _, m := range names {
		pool := pools[m]
		s, err := server.New(server.Config{Member: m, Dial: func(ctx context.Context, to string) (server.Link, error) {
			return pool.DialDLM(ctx, addrs[to], time.Second)
		}})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(s.Close)
		p.srvs[m] = s
		v.Members[m] = s.Incarnation()
		mux := muxes[m]
		go func() {
			for {
				c, err := mux.AcceptDLM()
				if err != nil {
					return
				}
				go ServeDLM(c, s.Receive)
			}
		}()
	}
	for _, s := range p.srvs {
		s.SetView(v)
		s.SetQuorum(true)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range p.srvs {
		for !s.Ready() {
			if time.Now().After(deadline) {
				tb.Fatal("the lock managers did not get ready")
			}
			time.Sleep(time.Millisecond)
		}
	}
	return p
}

// BenchmarkDLMRemoteLock: a client of m1 takes and releases EX on a
// resource mastered on m2, one lock at a time, over real TLS connections
// on loopback: the latency of the remote path without the agents' sockets.
// The unlock is not waited for (it has no answer); the next lock of the
// same resource queues behind it if it has not arrived.
func BenchmarkDLMRemoteLock(b *testing.B) {
	p := newDLMPair(b)
	evs := make(chan cluster.Event, 64)
	ss, err := p.srvs["m1"].Open(func(ev cluster.Event) { evs <- ev })
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for i := 0; len(names) < 16; i++ {
		if n := fmt.Sprintf("r%d", i); cluster.Master(p.view, cluster.FixedPrefix+"bench", n) == "m2" {
			names = append(names, n)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		id, err := ss.Enqueue(cluster.Request{Lockspace: cluster.FixedPrefix + "bench", Name: names[i%len(names)], Mode: dlm.EX})
		if err != nil {
			b.Fatal(err)
		}
		for ev := range evs {
			if ev.Lock == id && ev.Kind == cluster.EventGranted {
				break
			}
		}
		lat = append(lat, time.Since(start))
		if err := ss.Unlock(id, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// A member of a newer release and one of an older one (ProtoDLM only)
// agree on JSON frames, either way round; two new ones on binary frames.
func TestDLMProtocolFallback(t *testing.T) {
	defer func(s, d []string) { serveDLMProtos, dialDLMProtos = s, d }(serveDLMProtos, dialDLMProtos)
	for _, tc := range []struct {
		name        string
		serve, dial []string
	}{
		{"new-new", []string{ProtoDLM2, ProtoDLM}, []string{ProtoDLM2, ProtoDLM}},
		{"old-server", []string{ProtoDLM}, []string{ProtoDLM2, ProtoDLM}},
		{"old-dialer", []string{ProtoDLM2, ProtoDLM}, []string{ProtoDLM}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serveDLMProtos, dialDLMProtos = tc.serve, tc.dial
			p := newDLMPair(t)
			evs := make(chan cluster.Event, 64)
			ss, err := p.srvs["m1"].Open(func(ev cluster.Event) { evs <- ev })
			if err != nil {
				t.Fatal(err)
			}
			ls := cluster.FixedPrefix + "t"
			var name string
			for i := 0; name == ""; i++ {
				if n := fmt.Sprintf("r%d", i); cluster.Master(p.view, ls, n) == "m2" {
					name = n
				}
			}
			id, err := ss.Enqueue(cluster.Request{Lockspace: ls, Name: name, Mode: dlm.EX})
			if err != nil {
				t.Fatal(err)
			}
			timeout := time.After(10 * time.Second)
			for {
				select {
				case ev := <-evs:
					if ev.Lock == id && ev.Kind == cluster.EventGranted {
						return
					}
				case <-timeout:
					t.Fatal("no grant from the remote master")
				}
			}
		})
	}
}
