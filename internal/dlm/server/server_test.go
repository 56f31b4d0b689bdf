package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// net connects servers in one process: Send calls the peer's Receive.
type net struct {
	mu   sync.Mutex
	srvs map[string]*Server
	cut  map[string]bool // "a>b": batches from a to b fail
}

func (n *net) send(ctx context.Context, b *Batch) (Ack, error) {
	n.mu.Lock()
	to, cut := n.srvs[b.To], n.cut[b.From+">"+b.To]
	n.mu.Unlock()
	if to == nil || cut {
		return Ack{}, errors.New("unreachable")
	}
	return to.Receive(b), nil
}

type recorder struct {
	mu  sync.Mutex
	evs []cluster.Event
	ch  chan cluster.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan cluster.Event, 1024)} }

func (r *recorder) on(ev cluster.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	r.ch <- ev
}

func (r *recorder) next(t *testing.T) cluster.Event {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return cluster.Event{}
}

func newNet(t *testing.T, names ...string) (*net, View) {
	t.Helper()
	n := &net{srvs: map[string]*Server{}, cut: map[string]bool{}}
	v := View{Number: 1, Members: map[string]uint64{}}
	for _, m := range names {
		s, err := New(Config{Member: m, Send: n.send})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		n.srvs[m] = s
		v.Members[m] = s.Incarnation()
	}
	for _, s := range n.srvs {
		if err := s.SetView(v); err != nil {
			t.Fatal(err)
		}
		s.SetQuorum(true)
	}
	return n, v
}

func waitReady(t *testing.T, srvs ...*Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range srvs {
		for !s.Ready() {
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready: %+v", s.Member(), s.Locks())
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// rootOn finds a resource name mastered by member m in view v.
func rootOn(v View, m string) string {
	names := v.Names()
	for i := 0; ; i++ {
		r := "res" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		if cluster.Master(cluster.View{Number: v.Number, Members: names}, appLS, r) == m {
			return r
		}
	}
}

func TestRemoteLockAndBlocking(t *testing.T) {
	n, v := newNet(t, "m1", "m2", "m3")
	waitReady(t, n.srvs["m1"], n.srvs["m2"], n.srvs["m3"])
	res := rootOn(v, "m3")
	r1, r2 := newRecorder(), newRecorder()
	s1, _ := n.srvs["m1"].Open(r1.on)
	s2, _ := n.srvs["m2"].Open(r2.on)
	id1, err := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX})
	if err != nil {
		t.Fatal(err)
	}
	if ev := r1.next(t); ev.Kind != cluster.EventGranted || ev.Lock != id1 || ev.Token == 0 {
		t.Fatalf("m1 got %+v", ev)
	}
	id2, err := s2.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.PR})
	if err != nil {
		t.Fatal(err)
	}
	if ev := r1.next(t); ev.Kind != cluster.EventBlocking || ev.Lock != id1 || ev.Blocked != id2 {
		t.Fatalf("m1 got %+v, want blocking", ev)
	}
	if err := s1.Unlock(id1, 0, nil); err != nil {
		t.Fatal(err)
	}
	if ev := r2.next(t); ev.Kind != cluster.EventGranted || ev.Lock != id2 {
		t.Fatalf("m2 got %+v", ev)
	}
	// Closing a session releases its locks.
	s2.Close()
	id3, _ := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX})
	if ev := r1.next(t); ev.Kind != cluster.EventGranted || ev.Lock != id3 {
		t.Fatalf("m1 got %+v", ev)
	}
}

func TestRetriesUntilDelivered(t *testing.T) {
	n, v := newNet(t, "m1", "m2")
	waitReady(t, n.srvs["m1"], n.srvs["m2"])
	res := rootOn(v, "m2")
	n.mu.Lock()
	n.cut["m1>m2"] = true
	n.mu.Unlock()
	r1 := newRecorder()
	s1, _ := n.srvs["m1"].Open(r1.on)
	id, _ := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX})
	time.Sleep(30 * time.Millisecond)
	if len(r1.ch) != 0 {
		t.Fatal("granted through a cut link")
	}
	n.mu.Lock()
	n.cut["m1>m2"] = false
	n.mu.Unlock()
	if ev := r1.next(t); ev.Kind != cluster.EventGranted || ev.Lock != id {
		t.Fatalf("got %+v", ev)
	}
	if st := n.srvs["m1"].Stats(); st.Retries == 0 {
		t.Fatalf("no retries counted: %+v", st)
	}
}

func TestLoseTellsClients(t *testing.T) {
	n, v := newNet(t, "m1", "m2")
	waitReady(t, n.srvs["m1"], n.srvs["m2"])
	res := rootOn(v, "m2")
	r1, r2 := newRecorder(), newRecorder()
	s1, _ := n.srvs["m1"].Open(r1.on)
	s2, _ := n.srvs["m2"].Open(r2.on)
	id, _ := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX})
	r1.next(t)
	id2, _ := s2.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX})
	if got := n.srvs["m1"].Lose("lease ending"); got != 1 {
		t.Fatalf("Lose told %d locks", got)
	}
	// m1's clients hear of the loss at once.
	ev := r1.next(t)
	if ev.Kind == cluster.EventBlocking {
		ev = r1.next(t)
	}
	if ev.Kind != cluster.EventLost || ev.Lock != id || !errors.Is(ev.Err, ErrLost) {
		t.Fatalf("got %+v", ev)
	}
	if _, err := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX}); !errors.Is(err, ErrLost) {
		t.Fatalf("enqueue after loss: %v", err)
	}
	// m1 is a new incarnation now, out of the view: its new sessions wait
	// for a view with it.
	m1 := n.srvs["m1"]
	if m1.Incarnation() == v.Members["m1"] {
		t.Fatal("Lose kept the incarnation")
	}
	m1.SetQuorum(true)
	r1 = newRecorder()
	s1, _ = m1.Open(r1.on)
	if _, err := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX}); !errors.Is(err, cluster.ErrNotMember) {
		t.Fatalf("enqueue on the new incarnation before a view has it: %v", err)
	}
	// The director drops the old incarnation (m2 purges its lock: the EX
	// goes to m2's waiter) and takes the new one back.
	v2 := View{Number: 2, Members: map[string]uint64{"m2": v.Members["m2"]}}
	v3 := View{Number: 3, Members: map[string]uint64{"m1": m1.Incarnation(), "m2": v.Members["m2"]}}
	n.srvs["m2"].SetView(v2)
	if ev := r2.next(t); ev.Kind != cluster.EventGranted || ev.Lock != id2 {
		t.Fatalf("m2 got %+v", ev)
	}
	for _, s := range n.srvs {
		s.SetView(v3)
	}
	waitReady(t, n.srvs["m1"], n.srvs["m2"])
	id3, err := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.PR, Flags: dlm.NoQueue})
	if err != nil {
		t.Fatal(err)
	}
	if ev := r1.next(t); ev.Kind != cluster.EventNotQueued || ev.Lock != id3 {
		t.Fatalf("m1 got %+v: m2's EX must hold", ev)
	}
}

// TestQuorumUntil: a member whose quorum ran out grants nothing, though
// nobody took its quorum away (its agent did not run): its clients are told
// their locks are lost, and it takes a new incarnation (as Lose).
func TestQuorumUntil(t *testing.T) {
	n, v := newNet(t, "m1")
	s := n.srvs["m1"]
	waitReady(t, s)
	r := newRecorder()
	ss, _ := s.Open(r.on)
	s.SetQuorumUntil(time.Now().Add(time.Hour))
	id, err := ss.Enqueue(cluster.Request{Lockspace: appLS, Name: rootOn(v, "m1"), Mode: dlm.EX})
	if err != nil {
		t.Fatal(err)
	}
	if ev := r.next(t); ev.Kind != cluster.EventGranted {
		t.Fatalf("got %+v", ev)
	}
	s.SetQuorumUntil(time.Now().Add(-time.Millisecond))
	if s.Ready() {
		t.Fatal("ready with its quorum over")
	}
	s.SetQuorumUntil(time.Now().Add(20 * time.Millisecond))
	time.Sleep(30 * time.Millisecond)
	if _, err := ss.Enqueue(cluster.Request{Lockspace: appLS, Name: "other", Mode: dlm.EX}); !errors.Is(err, ErrLost) {
		t.Fatalf("enqueue after the quorum ran out: %v, want ErrLost", err)
	}
	if ev := r.next(t); ev.Kind != cluster.EventLost || ev.Lock != id || !strings.Contains(ev.Err.Error(), "ran out") {
		t.Fatalf("got %+v", ev)
	}
	if s.Incarnation() == v.Members["m1"] {
		t.Fatal("the incarnation stayed")
	}
}

func TestRestartedMemberIsOutUntilViewChanges(t *testing.T) {
	n, v := newNet(t, "m1", "m2")
	waitReady(t, n.srvs["m1"], n.srvs["m2"])
	res := rootOn(v, "m1")
	r1 := newRecorder()
	s1, _ := n.srvs["m1"].Open(r1.on)
	s1.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX})
	r1.next(t)
	// m2 restarts: a new incarnation sees the old view.
	old := n.srvs["m2"]
	old.Close()
	m2, _ := New(Config{Member: "m2", Send: n.send})
	t.Cleanup(m2.Close)
	n.mu.Lock()
	n.srvs["m2"] = m2
	n.mu.Unlock()
	m2.SetView(v)
	m2.SetQuorum(true)
	r2 := newRecorder()
	s2, _ := m2.Open(r2.on)
	if _, err := s2.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.EX}); !errors.Is(err, cluster.ErrNotMember) {
		t.Fatalf("restarted member enqueued: %v", err)
	}
	// The director drops it, then takes it back with its new incarnation.
	v2 := View{Number: 2, Members: map[string]uint64{"m1": v.Members["m1"]}}
	v3 := View{Number: 3, Members: map[string]uint64{"m1": v.Members["m1"], "m2": m2.Incarnation()}}
	for _, vv := range []View{v2, v3} {
		n.srvs["m1"].SetView(vv)
		m2.SetView(vv)
	}
	waitReady(t, n.srvs["m1"], m2)
	s2, _ = m2.Open(r2.on)
	id, err := s2.Enqueue(cluster.Request{Lockspace: appLS, Name: res, Mode: dlm.PR, Flags: dlm.NoQueue})
	if err != nil {
		t.Fatal(err)
	}
	if ev := r2.next(t); ev.Kind != cluster.EventNotQueued || ev.Lock != id {
		t.Fatalf("m2 got %+v: m1's EX must survive", ev)
	}
}

// TestSessionsAreSeparate: a session cannot convert, unlock or cancel
// another session's lock on the same member.
func TestSessionsAreSeparate(t *testing.T) {
	n, _ := newNet(t, "m1")
	waitReady(t, n.srvs["m1"])
	r1, r2 := newRecorder(), newRecorder()
	s1, _ := n.srvs["m1"].Open(r1.on)
	s2, _ := n.srvs["m1"].Open(r2.on)
	id, _ := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: "r", Mode: dlm.EX})
	r1.next(t)
	if err := s2.Unlock(id, 0, nil); !errors.Is(err, dlm.ErrUnknownLock) {
		t.Fatalf("unlock of another session's lock: %v", err)
	}
	if err := s2.Cancel(id); !errors.Is(err, dlm.ErrUnknownLock) {
		t.Fatalf("cancel of another session's lock: %v", err)
	}
	if _, err := s2.Enqueue(cluster.Request{Lock: id, Mode: dlm.NL, Flags: dlm.Convert}); !errors.Is(err, dlm.ErrUnknownLock) {
		t.Fatalf("convert of another session's lock: %v", err)
	}
	if l := n.srvs["m1"].Locks().Held; len(l) != 1 || l[0].Granted != dlm.EX {
		t.Fatalf("the lock changed: %+v", l)
	}
}

// TestRejoinSameIncarnation: a member the view drops without a restart (a
// fence record, a lease the director could not see) and takes back with
// the same incarnation gets new streams, which its peers must not mistake
// for batches already applied. Found by the lab's chaos: recovery hung.
func TestRejoinSameIncarnation(t *testing.T) {
	for _, dial := range []bool{false, true} {
		n, v := newNet(t, "m1", "m2", "m3")
		if dial {
			n, v = newStreamNet(t, "m1", "m2", "m3")
		}
		waitReady(t, n.srvs["m1"], n.srvs["m2"], n.srvs["m3"])
		r1 := newRecorder()
		s1, _ := n.srvs["m1"].Open(r1.on)
		lockOn := func(m string, view View) {
			t.Helper()
			id, err := s1.Enqueue(cluster.Request{Lockspace: appLS, Name: rootOn(view, m), Mode: dlm.EX})
			if err != nil {
				t.Fatal(err)
			}
			if ev := r1.next(t); ev.Kind != cluster.EventGranted || ev.Lock != id {
				t.Fatalf("got %+v", ev)
			}
			s1.Unlock(id, 0, nil)
		}
		lockOn("m2", v)
		without := View{Number: 2, Members: map[string]uint64{"m1": v.Members["m1"], "m3": v.Members["m3"]}}
		back := View{Number: 3, Members: v.Members}
		for _, vv := range []View{without, back} {
			for _, s := range n.srvs {
				s.SetView(vv)
			}
		}
		waitReady(t, n.srvs["m1"], n.srvs["m2"], n.srvs["m3"])
		lockOn("m2", back)
		lockOn("m3", back)
	}
}

// TestRejoinUnseenDrop: the view drops a member that never hears of it (it
// is cut off, then the director takes it back with the same incarnation):
// its streams go on where they were, and its peers must take them up where
// they were too. Found by the lab's chaos (5 members): the peers had
// forgotten the member's stream, refused its next batch as out of order
// for ever, and recovery hung.
func TestRejoinUnseenDrop(t *testing.T) {
	for _, dial := range []bool{false, true} {
		n, v := newNet(t, "m1", "m2", "m3")
		if dial {
			n, v = newStreamNet(t, "m1", "m2", "m3")
		}
		waitReady(t, n.srvs["m1"], n.srvs["m2"], n.srvs["m3"])
		r2 := newRecorder()
		s2, _ := n.srvs["m2"].Open(r2.on)
		lockOn := func(m string, view View) {
			t.Helper()
			id, err := s2.Enqueue(cluster.Request{Lockspace: appLS, Name: rootOn(view, m), Mode: dlm.EX})
			if err != nil {
				t.Fatal(err)
			}
			if ev := r2.next(t); ev.Kind != cluster.EventGranted || ev.Lock != id {
				t.Fatalf("got %+v", ev)
			}
			if err := s2.Unlock(id, 0, nil); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			lockOn("m1", v)
			lockOn("m3", v)
		}
		// The last unlocks arrive (there is no answer to wait for): the
		// drop must find nothing of m2's to purge, as when its lease ended.
		for _, m := range []string{"m1", "m3"} {
			deadline := time.Now().Add(5 * time.Second)
			for len(n.srvs[m].Locks().Mastered) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s still masters %+v", m, n.srvs[m].Locks().Mastered)
				}
				time.Sleep(time.Millisecond)
			}
		}
		without := View{Number: 2, Members: map[string]uint64{"m1": v.Members["m1"], "m3": v.Members["m3"]}}
		back := View{Number: 3, Members: v.Members}
		for _, m := range []string{"m1", "m3"} {
			n.srvs[m].SetView(without)
		}
		waitReady(t, n.srvs["m1"], n.srvs["m3"])
		for _, m := range []string{"m1", "m3", "m2"} {
			n.srvs[m].SetView(back)
		}
		waitReady(t, n.srvs["m1"], n.srvs["m2"], n.srvs["m3"])
		lockOn("m1", back)
		lockOn("m3", back)
	}
}

// newStreamNet is newNet with Links (Config.Dial) instead of Send.
func newStreamNet(t *testing.T, names ...string) (*net, View) {
	t.Helper()
	n := &net{srvs: map[string]*Server{}, cut: map[string]bool{}}
	dial := func(ctx context.Context, to string) (Link, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		s := n.srvs[to]
		if s == nil {
			return nil, errors.New("no such member")
		}
		return newPipe(s, 0), nil
	}
	v := View{Number: 1, Members: map[string]uint64{}}
	for _, m := range names {
		s, err := New(Config{Member: m, Dial: dial})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		n.srvs[m] = s
		v.Members[m] = s.Incarnation()
	}
	for _, s := range n.srvs {
		s.SetView(v)
		s.SetQuorum(true)
	}
	return n, v
}

// appLS is the tests' lockspace: fixed, so that each resource stays on the
// master rootOn chose (in other lockspaces it moves to its first user).
const appLS = cluster.FixedPrefix + "app"
