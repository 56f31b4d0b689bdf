package socket

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// unixEnds returns the two ends of a Unix socket connection.
func unixEnds(t *testing.T) (agent, client *net.UnixConn) {
	t.Helper()
	c, a := unixPair(t)
	return a.(*net.UnixConn), c.(*net.UnixConn)
}

// budget returns a spin budget of d.
func budget(d time.Duration) func() time.Duration { return func() time.Duration { return d } }

// ringPair opens a ring session between two groups: the agent's end and
// the client's.
func ringPair(t *testing.T, ag, cg *RingGroup, spin time.Duration) (agent, client *RingConn) {
	t.Helper()
	a, c := unixEnds(t)
	done := make(chan error, 1)
	go func() {
		magic := make([]byte, len(MagicRing))
		if _, err := io.ReadFull(a, magic); err != nil || string(magic) != MagicRing {
			done <- errors.New("no magic")
			return
		}
		var err error
		agent, err = ServeRing(a, ag, budget(spin))
		done <- err
	}()
	client, err := DialRing(c, cg, budget(spin))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close(); client.Close() })
	return agent, client
}

// TestRingStream sends bytes both ways in pieces of every size, some
// larger than a ring, with spinning and parked readers, and checks that
// every byte arrives in order.
func TestRingStream(t *testing.T) {
	for _, spin := range []time.Duration{0, 50 * time.Microsecond, time.Second} {
		t.Run(spin.String(), func(t *testing.T) {
			var ag, cg RingGroup
			agent, client := ringPair(t, &ag, &cg, spin)
			const total = 3 * RingSize
			src := make([]byte, total)
			for i := range src {
				src[i] = byte(rand.Uint32())
			}
			var wg sync.WaitGroup
			send := func(w *RingConn) {
				defer wg.Done()
				rest := src
				for len(rest) > 0 {
					n := min(len(rest), 1+rand.IntN(RingSize+RingSize/2))
					if _, err := w.Write(rest[:n]); err != nil {
						t.Error(err)
						return
					}
					rest = rest[n:]
					if rand.IntN(8) == 0 {
						time.Sleep(time.Millisecond) // the reader parks
					}
				}
			}
			recv := func(r *RingConn) {
				defer wg.Done()
				got := make([]byte, 0, total)
				buf := make([]byte, 1+rand.IntN(3*RingSize))
				for len(got) < total {
					n, err := r.Read(buf[:1+rand.IntN(len(buf))])
					if err != nil {
						t.Error(err)
						return
					}
					got = append(got, buf[:n]...)
				}
				if !bytes.Equal(got, src) {
					t.Error("the bytes read are not those written")
				}
			}
			wg.Add(4)
			go send(agent)
			go send(client)
			go recv(agent)
			go recv(client)
			wg.Wait()
		})
	}
}

// TestRingEnd: what was written before the peer went away is read, then
// the end of the connection.
func TestRingEnd(t *testing.T) {
	var ag, cg RingGroup
	agent, client := ringPair(t, &ag, &cg, 50*time.Microsecond)
	if _, err := client.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(agent)
	if err != nil || string(got) != "last words" {
		t.Fatalf("read %q, %v; want the last words, then the end", got, err)
	}
}

// TestRingCorrupt: positions that cannot be end the agent's reads and
// writes with an error; nothing panics.
func TestRingCorrupt(t *testing.T) {
	var ag, cg RingGroup
	agent, client := ringPair(t, &ag, &cg, 0)
	client.out.tail.Store(RingSize + 1) // written more than the ring holds
	if _, err := agent.Read(make([]byte, 10)); !errors.Is(err, errRingCorrupt) {
		t.Fatalf("read of a corrupt ring: %v", err)
	}
	client.in.head.Store(5) // read what was never written
	if _, err := agent.Write([]byte("x")); !errors.Is(err, errRingCorrupt) {
		t.Fatalf("write to a corrupt ring: %v", err)
	}
	if !strings.Contains(errRingCorrupt.Error(), "session ends") {
		t.Fatal(errRingCorrupt)
	}
}

// TestRingFollowers: sessions of one group wait in turns (one leads, the
// others follow or park); each gets its own messages, at once, in every
// state, and a Close or Stop wakes a waiting reader.
func TestRingFollowers(t *testing.T) {
	var ag, cg RingGroup
	const n = 4
	var agents, clients [n]*RingConn
	for i := range n {
		agents[i], clients[i] = ringPair(t, &ag, &cg, 20*time.Millisecond)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { // an echo server
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				k, err := agents[i].Read(buf)
				if err != nil {
					return
				}
				agents[i].Write(buf[:k])
			}
		}()
	}
	for round := range 300 {
		for i := range n {
			if round%100 == 99 {
				time.Sleep(25 * time.Millisecond) // every reader parks
			}
			msg := []byte{byte(i), byte(round)}
			if _, err := clients[i].Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 2)
			if _, err := io.ReadFull(clients[i], got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("session %d round %d: got %v, %v", i, round, got, err)
			}
		}
	}
	// Readers waiting with a message just gone by: Stop and Close wake
	// them, whether they lead, follow or park.
	for i := range n {
		clients[i].Write([]byte{1})
	}
	time.Sleep(time.Millisecond)
	for i := range n {
		if i%2 == 0 {
			agents[i].Stop()
		} else {
			agents[i].Close()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop and Close did not end the agents' reads")
	}
}

// TestRingKickDeadline: a kick wakes a parked read without failing it; a
// deadline in the past fails it.
func TestRingKickDeadline(t *testing.T) {
	var ag, cg RingGroup
	agent, client := ringPair(t, &ag, &cg, 0)
	got := make(chan error, 1)
	go func() {
		_, err := agent.Read(make([]byte, 8))
		got <- err
	}()
	time.Sleep(5 * time.Millisecond)
	agent.Kick()
	select {
	case err := <-got:
		t.Fatalf("a kick ended the read: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	client.Write([]byte("x"))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	agent.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := agent.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after its deadline: %v", err)
	}
}

// TestRingRefused: an agent that answers the ring's magic with an end
// frame, or (older) with a line of text, is a RingRefused.
func TestRingRefused(t *testing.T) {
	for _, answer := range [][]byte{AppendEndFrame(nil, "no"), []byte(errUnknownProtocol)} {
		a, c := unixEnds(t)
		go func() {
			io.ReadFull(a, make([]byte, len(MagicRing)))
			a.Write(answer)
		}()
		var g RingGroup
		_, err := DialRing(c, &g, budget(0))
		var refused *RingRefused
		if !errors.As(err, &refused) || refused.First != answer[0] {
			t.Fatalf("answer %q: %v", answer[:8], err)
		}
	}
}

// TestRingWriterPeerGone: a writer waiting for room in a full ring stops
// when its side's reader finds the peer gone.
func TestRingWriterPeerGone(t *testing.T) {
	var ag, cg RingGroup
	agent, client := ringPair(t, &ag, &cg, 0)
	go io.Copy(io.Discard, client) // the client's reader
	wrote := make(chan error, 1)
	go func() {
		_, err := client.Write(make([]byte, 3*RingSize))
		wrote <- err
	}()
	time.Sleep(10 * time.Millisecond)
	agent.Close()
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("a write into a ring nobody reads succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer still waits for room after the agent went away")
	}
}
