package server

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// pipe is an in-process Link: batches are JSON-encoded, applied by the
// receiving server in order on one goroutine, and acked back. breakAfter
// makes it fail after that many batches (0: never).
type pipe struct {
	in     chan []byte
	acks   chan Ack
	done   chan struct{}
	once   sync.Once
	budget int
}

func newPipe(to *Server, breakAfter int) *pipe {
	p := &pipe{in: make(chan []byte, 256), acks: make(chan Ack, 256), done: make(chan struct{}), budget: breakAfter}
	go func() {
		for {
			select {
			case raw := <-p.in:
				var b Batch
				if err := json.Unmarshal(raw, &b); err != nil {
					panic(err)
				}
				select {
				case p.acks <- to.Receive(&b):
				case <-p.done:
					return
				}
			case <-p.done:
				return
			}
		}
	}()
	return p
}

func (p *pipe) Send(b *Batch) error {
	if p.budget > 0 {
		p.budget--
		if p.budget == 0 {
			p.Close()
		}
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	select {
	case p.in <- raw:
		return nil
	case <-p.done:
		return errors.New("pipe closed")
	}
}

func (p *pipe) Recv() (Ack, error) {
	select {
	case a := <-p.acks:
		return a, nil
	case <-p.done:
		return Ack{}, errors.New("pipe closed")
	}
}

func (p *pipe) Close() { p.once.Do(func() { close(p.done) }) }

// TestStreamedBatchesSurviveBrokenLinks: lock traffic between three members
// over Links that break after a few batches arrives whole and in order.
func TestStreamedBatchesSurviveBrokenLinks(t *testing.T) {
	var mu sync.Mutex
	srvs := map[string]*Server{}
	rng := rand.New(rand.NewPCG(1, 2))
	dial := func(ctx context.Context, to string) (Link, error) {
		mu.Lock()
		defer mu.Unlock()
		s := srvs[to]
		if s == nil {
			return nil, errors.New("no such member")
		}
		return newPipe(s, 1+rng.IntN(6)), nil
	}
	v := View{Number: 1, Members: map[string]uint64{}}
	for _, m := range []string{"m1", "m2", "m3"} {
		s, err := New(Config{Member: m, Dial: dial, Window: 4, AckTimeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		mu.Lock()
		srvs[m] = s
		mu.Unlock()
		v.Members[m] = s.Incarnation()
	}
	for _, s := range srvs {
		s.SetView(v)
		s.SetQuorum(true)
	}
	waitReady(t, srvs["m1"], srvs["m2"], srvs["m3"])
	// Every member's client takes and releases EX on resources mastered
	// elsewhere, in turn; each grant must come, with growing tokens.
	res := rootOn(v, "m3")
	recs := map[string]*recorder{}
	sess := map[string]*Session{}
	for _, m := range []string{"m1", "m2"} {
		recs[m] = newRecorder()
		sess[m], _ = srvs[m].Open(recs[m].on)
	}
	var last uint64
	for i := range 100 {
		m := []string{"m1", "m2"}[i%2]
		id, err := sess[m].Enqueue(cluster.Request{Lockspace: "app", Name: res, Mode: dlm.EX})
		if err != nil {
			t.Fatal(err)
		}
		ev := recs[m].next(t)
		for ev.Kind == cluster.EventBlocking { // the other's unlock may still be on its way
			ev = recs[m].next(t)
		}
		if ev.Kind != cluster.EventGranted || ev.Lock != id || ev.Token <= last {
			t.Fatalf("round %d: %s got %+v after token %d", i, m, ev, last)
		}
		last = ev.Token
		if err := sess[m].Unlock(id, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	if st := srvs["m1"].Stats(); st.Retries == 0 {
		t.Fatalf("links never broke: %+v", st)
	}
}
