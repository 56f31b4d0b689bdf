package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// This file is the rig of the property tests: real Servers on real
// goroutines (their peer streams), connected by an in-process wire that
// encodes every Batch and Ack with encoding/json (as the agent's node
// service does), either one batch per call (Config.Send) or streamed on
// Links (Config.Dial), and that delays and breaks them at random.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// wire carries batches between the rig's servers.
type wire struct {
	mu      sync.Mutex
	srvs    map[string]*Server         // guarded by mu: the live servers
	streams map[streamKey]*streamState // guarded by mu
	rng     *rand.Rand                 // guarded by mu
	fail    int                        // guarded by mu: percent of sends, dials and deliveries that fail
	delay   time.Duration              // guarded by mu: longest random delay of a delivery
	bad     string                     // guarded by mu: the first encoding error
	stats   map[string]int             // guarded by mu
	active  atomic.Int64               // Sends in progress and batches on Links not delivered yet
	calls   atomic.Uint64              // things the wire did: sends, dials, deliveries, acks read
}

var errDown = errors.New("injected: link down")

// streamKey names one numbered stream: a sender incarnation to a receiver
// incarnation.
type streamKey struct {
	from    string
	fromInc uint64
	to      string
	toInc   uint64
}

// streamState: the highest batch number sent and the highest the sender
// was told was taken.
type streamState struct{ sent, acked uint64 }

func newWire(seed uint64) *wire {
	return &wire{srvs: map[string]*Server{}, streams: map[streamKey]*streamState{},
		rng: rand.New(rand.NewPCG(seed, 0x1113)), stats: map[string]int{}}
}

func (w *wire) set(failPct int, delay time.Duration) {
	w.mu.Lock()
	w.fail, w.delay = failPct, delay
	w.mu.Unlock()
}

func (w *wire) send(ctx context.Context, b *Batch) (Ack, error) {
	w.calls.Add(1)
	w.active.Add(1)
	defer w.active.Add(-1)
	w.sent(b)
	w.mu.Lock()
	to := w.srvs[b.To]
	w.mu.Unlock()
	fail, d := w.roll()
	failBefore, failAfter := false, false
	if fail {
		failBefore = w.rng2()
		failAfter = !failBefore
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Ack{}, ctx.Err()
		}
	}
	if failBefore {
		w.count("send:fail-before")
		return Ack{}, errDown
	}
	if to == nil {
		w.count("send:unreachable")
		return Ack{}, errors.New("unreachable: the member is down")
	}
	c, err := roundTrip(b)
	if err != nil {
		w.broken(err.Error())
		return Ack{}, err
	}
	ack, err := roundTrip(ptr(to.Receive(c)))
	if err != nil {
		w.broken(err.Error())
		return Ack{}, err
	}
	if failAfter {
		w.count("send:fail-after")
		return Ack{}, errors.New("injected: the answer was lost")
	}
	w.count(ackName(ack.Code))
	if ack.Code == AckOK {
		w.acked(streamKey{b.From, b.FromInc, b.To, b.ToInc}, b.Seq)
	}
	return *ack, nil
}

func ptr[T any](v T) *T { return &v }

func ackName(c AckCode) string {
	switch c {
	case AckOK:
		return "ack:ok"
	case AckRetry:
		return "ack:retry"
	case AckGone:
		return "ack:gone"
	}
	return fmt.Sprintf("ack:%d", c)
}

// roundTrip encodes v with encoding/json and decodes it into a new value,
// which must be deeply equal to v.
func roundTrip[T any](v *T) (*T, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%T does not encode: %v", v, err)
	}
	c := new(T)
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%T does not decode: %v\n%s", v, err, data)
	}
	if !reflect.DeepEqual(v, c) {
		return nil, fmt.Errorf("%T changes through encoding/json:\n  sent     %+v\n  received %+v\n  wire     %s", v, v, c, data)
	}
	return c, nil
}

func (w *wire) broken(msg string) {
	w.mu.Lock()
	if w.bad == "" {
		w.bad = msg
	}
	w.mu.Unlock()
}

func (w *wire) count(k string) {
	w.mu.Lock()
	w.stats[k]++
	w.mu.Unlock()
}

func (w *wire) stream(k streamKey) streamState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st := w.streams[k]; st != nil {
		return *st
	}
	return streamState{}
}

// sent records that batch b was handed to the wire.
func (w *wire) sent(b *Batch) *streamState {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := streamKey{b.From, b.FromInc, b.To, b.ToInc}
	st := w.streams[k]
	if st == nil {
		st = &streamState{}
		w.streams[k] = st
	}
	st.sent = max(st.sent, b.Seq)
	return st
}

// roll draws a failure (percent w.fail) and a delay.
func (w *wire) roll() (fail bool, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.delay > 0 && w.rng.IntN(3) == 0 {
		d = time.Duration(w.rng.Int64N(int64(w.delay)))
	}
	return w.fail > 0 && w.rng.IntN(100) < w.fail, d
}

// dial opens a wlink to the live server of member to (Config.Dial).
func (w *wire) dial(ctx context.Context, to string) (Link, error) {
	w.calls.Add(1)
	w.mu.Lock()
	srv := w.srvs[to]
	l := &wlink{w: w, to: srv, in: make(chan *Batch, 1024), acks: make(chan linkAck, 1024), done: make(chan struct{})}
	if w.fail > 0 {
		if w.rng.IntN(100) < w.fail {
			w.mu.Unlock()
			w.count("dial:fail")
			return nil, errDown
		}
		l.budget = 1 + w.rng.IntN(40)
		l.linger = w.rng.IntN(2) == 0
	}
	w.mu.Unlock()
	if srv == nil {
		w.count("dial:unreachable")
		return nil, errors.New("unreachable: the member is down")
	}
	go l.run()
	return l, nil
}

// wlink is a Link of the wire: one goroutine applies its batches to the
// receiver in order and queues the acks; both cross encoding/json. It may
// break when a batch is sent, or after the receiver took one (the ack is
// lost), or lose an ack and stay open (the sender's AckTimeout must
// notice). A lingering link, once broken, still delivers the batches
// already on it (as data in flight on a dead connection still arrives).
type wlink struct {
	w      *wire
	to     *Server
	in     chan *Batch
	acks   chan linkAck
	done   chan struct{}
	once   sync.Once
	budget int  // batches before the link breaks (0: never)
	linger bool // deliver what is in flight after breaking
	sends  int  // guarded by the sender (one goroutine)
}

func (l *wlink) Send(b *Batch) error {
	l.w.calls.Add(1)
	l.w.sent(b)
	select {
	case <-l.done:
		return errDown
	default:
	}
	l.sends++
	if l.budget > 0 && l.sends >= l.budget {
		l.w.count("link:break-on-send")
		l.Close()
		return errDown
	}
	l.w.active.Add(1)
	select {
	case l.in <- b:
		return nil
	default: // cannot happen: a Window is far below the buffer
		l.w.active.Add(-1)
		l.w.broken("a link's buffer is full")
		return errDown
	}
}

func (l *wlink) Recv() (Ack, error) {
	select {
	case a := <-l.acks:
		l.w.calls.Add(1)
		if a.ack.Code == AckOK {
			l.w.acked(a.k, a.ack.Seq)
		}
		return a.ack, nil
	case <-l.done:
		return Ack{}, errDown
	}
}

func (l *wlink) Close() { l.once.Do(func() { close(l.done) }) }

func (l *wlink) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *wlink) run() {
	for {
		select {
		case b := <-l.in:
			l.deliver(b)
			l.w.active.Add(-1)
		case <-l.done:
			if !l.linger {
				for {
					select {
					case <-l.in:
						l.w.active.Add(-1)
					default:
						return
					}
				}
			}
			for {
				select {
				case b := <-l.in:
					l.deliver(b)
					l.w.active.Add(-1)
				default:
					return
				}
			}
		}
	}
}

func (l *wlink) deliver(b *Batch) {
	fail, d := l.w.roll()
	if d > 0 {
		time.Sleep(d)
	}
	if l.closed() && !l.linger {
		return
	}
	c, err := roundTrip(b)
	if err != nil {
		l.w.broken(err.Error())
		return
	}
	ack, err := roundTrip(ptr(l.to.Receive(c)))
	if err != nil {
		l.w.broken(err.Error())
		return
	}
	l.w.calls.Add(1)
	if l.closed() {
		l.w.count("link:delivered-after-break")
		return
	}
	if fail {
		if l.w.rng2() {
			l.w.count("link:break-after-delivery")
			l.Close()
		} else {
			l.w.count("link:ack-lost")
		}
		return
	}
	l.w.count(ackName(ack.Code))
	select {
	case l.acks <- linkAck{*ack, streamKey{b.From, b.FromInc, b.To, b.ToInc}}:
	case <-l.done:
	}
}

// linkAck is an ack on a wlink and the stream it answers.
type linkAck struct {
	ack Ack
	k   streamKey
}

func (w *wire) rng2() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rng.IntN(2) == 0
}

// acked records that the sender was told batch seq of stream k was
// taken.
func (w *wire) acked(k streamKey, seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st := w.streams[k]; st != nil {
		st.acked = max(st.acked, seq)
	}
}

// pclient is one session of the rig and the events it received.
type pclient struct {
	member string
	owner  dlm.OwnerID
	ss     *Session

	mu  sync.Mutex
	evs []cluster.Event // guarded by mu: not taken yet
}

func (c *pclient) on(ev cluster.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, ev)
}

// take returns and forgets the events received so far.
func (c *pclient) take() []cluster.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	evs := c.evs
	c.evs = nil
	return evs
}

// prig runs N servers on the wire.
type prig struct {
	t       testing.TB
	seed    uint64
	rng     *rand.Rand
	w       *wire
	engine  dlm.Options
	srvs    map[string]*Server    // live servers
	dead    map[string]bool       // members down (closed, not started again)
	deaf    map[string]bool       // members cut off: they hear no view until one takes them back
	view    View                  // the director's latest view
	clients map[string][]*pclient // each live member's open sessions
	trace   []string
	step    int
	stats   map[string]int
	late    int  // settles that needed a second look
	links   bool // the servers stream on Links (Config.Dial), not Send
	size    int  // members at the start
}

func newPrig(t testing.TB, seed uint64, members int) *prig {
	r := &prig{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5e4e)), w: newWire(seed),
		srvs: map[string]*Server{}, dead: map[string]bool{}, deaf: map[string]bool{}, clients: map[string][]*pclient{}, stats: map[string]int{}, size: members}
	r.links = r.rng.IntN(2) == 0
	r.engine = dlm.DefaultOptions()
	r.engine.DeadlockWait = 0
	r.engine.MaxLocks = 100_000
	t.Cleanup(r.closeAll)
	r.view = View{Number: 1, Members: map[string]uint64{}}
	for i := 1; i <= members; i++ {
		m := fmt.Sprintf("m%d", i)
		s := r.start(m)
		r.view.Members[m] = s.Incarnation()
	}
	r.logf("view %d %v", r.view.Number, r.view.Names())
	for _, m := range r.live() {
		if err := r.srvs[m].SetView(r.view); err != nil {
			r.fatalf("SetView on %s: %v", m, err)
		}
		r.srvs[m].SetQuorum(true)
	}
	return r
}

// start runs a new incarnation of member m, with two sessions.
func (r *prig) start(m string) *Server {
	r.t.Helper()
	nc := cluster.DefaultConfig()
	nc.Engine = r.engine
	nc.MaxBatch = 1 + r.rng.IntN(8) // recovery messages in several parts
	cfg := Config{Member: m, Node: nc, Send: r.w.send, MaxBatch: 1 + r.rng.IntN(16), Now: func() time.Time { return t0 }}
	if r.links {
		cfg.Send, cfg.Dial = nil, r.w.dial
		cfg.Window = 1 + r.rng.IntN(8)
		cfg.AckTimeout = 10 * time.Millisecond
	}
	s, err := New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.srvs[m] = s
	delete(r.dead, m)
	r.w.mu.Lock()
	r.w.srvs[m] = s
	r.w.mu.Unlock()
	r.clients[m] = nil
	for range 2 {
		r.open(m)
	}
	return s
}

func (r *prig) open(m string) *pclient {
	r.t.Helper()
	c := &pclient{member: m}
	ss, err := r.srvs[m].Open(c.on)
	if err != nil {
		r.fatalf("open a session on %s: %v", m, err)
	}
	c.ss, c.owner = ss, ss.Owner()
	r.clients[m] = append(r.clients[m], c)
	return c
}

// kill stops member m: its server closes and its sessions end with it.
func (r *prig) kill(m string) {
	s := r.srvs[m]
	r.w.mu.Lock()
	delete(r.w.srvs, m)
	r.w.mu.Unlock()
	delete(r.srvs, m)
	delete(r.clients, m)
	delete(r.deaf, m)
	r.dead[m] = true
	s.Close()
}

func (r *prig) closeAll() {
	for _, m := range r.live() {
		r.srvs[m].Close()
	}
}

func (r *prig) live() []string {
	out := make([]string, 0, len(r.srvs))
	for m := range r.srvs {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func (r *prig) allClients() []*pclient {
	var out []*pclient
	for _, m := range r.live() {
		out = append(out, r.clients[m]...)
	}
	return out
}

func (r *prig) count(k string) { r.stats[k]++ }

func (r *prig) logf(format string, args ...any) {
	r.trace = append(r.trace, fmt.Sprintf("%d: ", r.step)+fmt.Sprintf(format, args...))
}

func (r *prig) fatalf(format string, args ...any) {
	r.t.Helper()
	tail := r.trace
	if n := *traceFlag; len(tail) > n {
		tail = tail[len(tail)-n:]
	}
	r.t.Fatalf("seed %d, %d members, step %d: %s\noperations so far (the last %d):\n  %s\nreplay: go test ./internal/dlm/server -run '%s' -server.seed=%d -v",
		r.seed, r.size, r.step, fmt.Sprintf(format, args...), len(tail), strings.Join(tail, "\n  "), r.t.Name(), r.seed)
}

// setView makes the director write a view with these members (at their
// current incarnations) and gives it to every live server, in a random
// order.
func (r *prig) setView(members []string) {
	r.t.Helper()
	v := View{Number: r.view.Number + 1, Members: map[string]uint64{}}
	for _, m := range members {
		if s := r.srvs[m]; s != nil {
			v.Members[m] = s.Incarnation()
		} else {
			v.Members[m] = r.view.Members[m] // down, not dropped yet
		}
	}
	r.view = v
	r.logf("view %d %v", v.Number, v.Names())
	live := r.live()
	r.rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	for _, m := range live {
		if r.deaf[m] {
			if _, back := v.Members[m]; !back {
				continue // cut off: it does not hear of this view
			}
			delete(r.deaf, m)
			r.logf("%s hears again: it jumps to view %d", m, v.Number)
		}
		if err := r.srvs[m].SetView(v); err != nil {
			r.fatalf("SetView %d on %s: %v", v.Number, m, err)
		}
	}
}

// activity is what changes while messages move.
type activity struct {
	calls uint64
	in    uint64
	sent  uint64
	evs   uint64
}

// idle reports whether nothing moves: no Send in progress or started
// while it looks, every stream between live servers has nothing queued
// and every batch sent was taken, every peer goroutine waits in a select,
// no operation of a member waits for a master's answer, and every member
// in the view is ready. Streams to members that are down are left out
// (they retry until the director's next view drops them). why says what
// still moves. Only the peer goroutines move messages (the test's own
// goroutine is here), so an idle cluster stays idle.
func (r *prig) idle() (a activity, why string) {
	a.calls = r.w.calls.Load()
	if n := r.w.active.Load(); n != 0 {
		return a, fmt.Sprintf("%d sends in progress", n)
	}
	for _, m := range r.live() {
		s := r.srvs[m]
		s.mu.Lock()
		a.in += s.stats.BatchesIn
		a.sent += s.stats.BatchesSent
		a.evs += s.stats.EventsRouted
		for name, p := range s.peers {
			if live := r.srvs[name]; live == nil || live.inc.Load() != p.inc {
				continue
			}
			p.mu.Lock()
			q := len(p.queue)
			p.mu.Unlock()
			st := r.w.stream(streamKey{m, p.from, name, p.inc})
			if q > 0 || st.acked != st.sent {
				s.mu.Unlock()
				return a, fmt.Sprintf("stream %s>%s: %d queued, batch %d sent, %d taken", m, name, q, st.sent, st.acked)
			}
		}
		in := s.hasView && s.nodeView(s.view).Has(m)
		if in && !s.node.Ready() {
			s.mu.Unlock()
			return a, m + " is not ready"
		}
		if in {
			for _, l := range s.node.Locks().Held {
				if l.Pending > 0 {
					s.mu.Unlock()
					return a, fmt.Sprintf("%s: lock %v has %d operations unanswered", m, l.Lock, l.Pending)
				}
			}
		}
		s.mu.Unlock()
	}
	// A peer that took its messages before its queue was looked at, and
	// has not given them to the wire, is busy; any Send that started
	// meanwhile makes all of the above stale.
	if ok, busy := peersParked(); !ok {
		return a, busy
	}
	if r.w.active.Load() != 0 || r.w.calls.Load() != a.calls {
		return a, "sends started while looking"
	}
	return a, ""
}

// peersParked reports whether every peer goroutine of the process waits
// in a select (for messages, or for its next attempt): one that is
// running or runnable may have taken messages from its queue and not
// given them to the wire yet, the one state idle cannot see from the
// servers' fields.
func peersParked() (bool, string) {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "server.(*peer).") {
			continue
		}
		head, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(head, " [select") && !strings.Contains(head, " [chan receive") {
			return false, "a peer goroutine is busy: " + head
		}
	}
	return true, ""
}

// settle waits until the servers are idle, twice in a row a little apart
// with nothing moved in between (once would do; twice costs little).
func (r *prig) settle() {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last activity
	stable := 0
	for i := 0; ; i++ {
		a, why := r.idle()
		if why == "" && a == last {
			stable++
			if stable >= 1 {
				break
			}
		} else {
			stable = 0
		}
		last = a
		r.w.mu.Lock()
		bad := r.w.bad
		r.w.mu.Unlock()
		if bad != "" {
			r.fatalf("wire: %s", bad)
		}
		if time.Now().After(deadline) {
			r.fatalf("the servers do not settle within 20s: %s", why)
		}
		pause(i)
	}
	r.w.mu.Lock()
	bad := r.w.bad
	r.w.mu.Unlock()
	if bad != "" {
		r.fatalf("wire: %s", bad)
	}
}

// pause waits a little before the next look: about 20µs for the first
// thousand looks (time.Sleep may take a millisecond), then 1ms.
func pause(i int) {
	if i >= 1000 {
		time.Sleep(time.Millisecond)
		return
	}
	for start := time.Now(); time.Since(start) < 20*time.Microsecond; {
		runtime.Gosched()
	}
}

// frozen runs f with every live server's lock held: a consistent cut of
// the whole cluster (no server calls another while it holds its own lock).
func (r *prig) frozen(f func(tables map[string]cluster.Table)) {
	live := r.live()
	for _, m := range live {
		r.srvs[m].mu.Lock()
	}
	tables := map[string]cluster.Table{}
	for _, m := range live {
		tables[m] = r.srvs[m].node.Locks()
	}
	for i := len(live) - 1; i >= 0; i-- {
		r.srvs[live[i]].mu.Unlock()
	}
	f(tables)
}

type resKey string

func keyOf(ls string, path []string) resKey { return resKey(ls + "/" + strings.Join(path, "/")) }

// checkCompatible checks DESIGN.md invariant 3 on a cut: on every
// resource, the locks granted (converting ones at their granted mode) on
// all masters together are compatible, and each root has one master.
func (r *prig) checkCompatible(tables map[string]cluster.Table) {
	r.t.Helper()
	type held struct {
		master string
		l      cluster.LockInfo
	}
	by := map[resKey][]held{}
	rootAt := map[cluster.Root]string{}
	for _, m := range sortedNames(tables) {
		for _, l := range tables[m].Mastered {
			root := cluster.Root{Lockspace: l.Lockspace, Name: l.Path[0]}
			if at, ok := rootAt[root]; ok && at != m {
				r.fatalf("root %v is mastered by %s and %s at once", root, at, m)
			}
			rootAt[root] = m
			if l.Queue == dlm.QueueWaiting {
				continue
			}
			k := keyOf(l.Lockspace, l.Path)
			for _, o := range by[k] {
				if !dlm.Compatible(o.l.Granted, l.Granted) {
					r.fatalf("invariant 3: %v (%v, %v on %s) and %v (%v, %v on %s) are granted on %s at once",
						o.l.Lock, o.l.Owner, o.l.Granted, o.master, l.Lock, l.Owner, l.Granted, m, k)
				}
			}
			by[k] = append(by[k], held{m, l})
		}
	}
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkCopies checks, on a settled cluster, that every member's copy of
// its clients' locks is what their master holds, and that every lock on a
// master belongs to a live member's client that knows it.
func (r *prig) checkCopies(tables map[string]cluster.Table) {
	r.t.Helper()
	mastered := map[cluster.LockID]cluster.LockInfo{}
	for _, m := range sortedNames(tables) {
		for _, l := range tables[m].Mastered {
			mastered[l.Lock] = l
		}
	}
	held := map[cluster.LockID]bool{}
	for _, m := range sortedNames(tables) {
		tb := tables[m]
		if tb.Out {
			continue
		}
		for _, l := range tb.Held {
			held[l.Lock] = true
			ml, ok := mastered[l.Lock]
			switch {
			case !ok:
				r.fatalf("%s: its client's lock %v (%v %v on %s%v) is on no master", m, l.Lock, l.Queue, l.Granted, l.Lockspace, l.Path)
			case ml.Master != l.Master || ml.Queue != l.Queue || ml.Granted != l.Granted || ml.Requested != l.Requested ||
				ml.Flags != l.Flags || ml.Seq != l.Seq || ml.Owner != l.Owner || ml.Parent != l.Parent || !slices.Equal(ml.Path, l.Path):
				r.fatalf("%s: its copy of %v differs from its master's:\n  copy   %+v\n  master %+v", m, l.Lock, l, ml)
			case l.Pending != 0:
				r.fatalf("%s: lock %v has %d operations pending on a settled cluster", m, l.Lock, l.Pending)
			}
		}
	}
	for id, l := range mastered {
		if !held[id] {
			r.fatalf("%s masters %v of %v (%v on %s%v), which no live member's client holds", l.Master, id, l.Owner, l.Queue, l.Lockspace, l.Path)
		}
	}
}

// errKind names the kind of a lock manager error.
func errKind(err error) string {
	if err == nil {
		return "ok"
	}
	for _, k := range []struct {
		name string
		err  error
	}{
		{"invalid", dlm.ErrInvalid}, {"unknown-lock", dlm.ErrUnknownLock}, {"unknown-resource", dlm.ErrUnknownResource},
		{"wrong-state", dlm.ErrWrongState}, {"has-children", dlm.ErrHasChildren}, {"limit", dlm.ErrLimit},
		{"not-master", cluster.ErrNotMaster}, {"busy", cluster.ErrBusy}, {"not-member", cluster.ErrNotMember},
		{"recovering", cluster.ErrRecovering}, {"lost", ErrLost}, {"closed", ErrClosed},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other(" + err.Error() + ")"
}

// evString prints every field of an event a client can see.
func evString(ev cluster.Event) string {
	s := fmt.Sprintf("%v %v %v %v", ev.Kind, ev.Lock, ev.Owner, ev.Mode)
	switch ev.Kind {
	case cluster.EventGranted:
		s += fmt.Sprintf(" tok%d", ev.Token)
		if ev.ValBlk {
			s += fmt.Sprintf(" valid=%v %q", ev.ValueValid, strings.TrimRight(string(ev.Value[:]), "\x00"))
		} else if ev.ValueValid || ev.Value != (dlm.Value{}) {
			s += " value without ValBlk"
		}
	case cluster.EventBlocking:
		s += fmt.Sprintf(" blocks %v", ev.Blocked)
	case cluster.EventRefused, cluster.EventLost:
		s += fmt.Sprintf(" %v: %s", ev.Op, errKind(ev.Err))
	}
	return s
}

func evStrings(evs []cluster.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, evString(ev))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// isCompletion reports whether ev completes a request of op kind Enqueue
// or Convert.
func isCompletion(ev cluster.Event) bool {
	switch ev.Kind {
	case cluster.EventGranted, cluster.EventNotQueued, cluster.EventCanceled, cluster.EventDeadlock:
		return true
	case cluster.EventRefused:
		return ev.Op == cluster.OpEnqueue || ev.Op == cluster.OpConvert
	}
	return false
}
