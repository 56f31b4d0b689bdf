// Package server runs vigil's lock manager inside an agent: it owns the
// member's cluster.Node, serializes every call to it under one lock, gives
// the clients of this member sessions whose events it routes, and carries
// the Node's messages to the other members in order, again and again until
// they arrive or the peer leaves the view (the reliable per-pair FIFO stream
// the Node's Transport contract asks for).
//
// It must not decide views, quorum or deadlock victims: the agent feeds it
// the view the director wrote to the CDB ([Server.SetView]), the quorum its
// lease gives ([Server.SetQuorum]) and the director's deadlock aborts. It
// does no network I/O itself: [Config.Send] carries a [Batch] to a peer's
// [Server.Receive] (the agent uses its node service).
//
// # Incarnations
//
// Every Server has a random incarnation, reported to the director with the
// member's lease renewals and written into the view next to the member's
// name. A restarted agent has a new incarnation: until the director has
// written a view without it and then one with its new incarnation, it
// treats itself as outside the view (its clients get ErrNotMember), and the
// other members refuse its messages. That is the Node's rule that a
// restarted member leaves the view before it joins again.
//
// # The stream to each peer
//
// Messages to one peer incarnation are numbered batches sent one at a time
// by one goroutine; a batch is sent again (with backoff) until the peer
// acknowledges it, and the peer applies each number once, in order. A peer
// that answers with another incarnation has restarted: its stream is
// dropped, and the director will change the view.
package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// View is a lock manager view as the director writes it: a number and the
// incarnation of each member's lock manager.
type View struct {
	Number  uint64            `json:"number"`
	Members map[string]uint64 `json:"members"`
}

// Names returns the view's members, sorted.
func (v View) Names() []string {
	out := make([]string, 0, len(v.Members))
	for m := range v.Members {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Batch is a run of messages from one member's lock manager to another's.
// Stream numbers the sender's streams (one per peer and view membership,
// growing); Seq numbers the batches of one stream from 1. A receiver
// applies each (stream, seq) once, in order, and refuses batches of an
// older stream than one it has seen: a member that leaves the sender's
// view and comes back (with the same incarnation) gets a new stream.
type Batch struct {
	From    string            `json:"from"`
	FromInc uint64            `json:"from_inc"`
	To      string            `json:"to"`
	ToInc   uint64            `json:"to_inc"`
	Stream  uint64            `json:"stream"`
	Seq     uint64            `json:"seq"`
	Msgs    []cluster.Message `json:"msgs"`
}

// AckCode is a receiver's answer to a Batch.
type AckCode uint8

// The answers.
const (
	// AckOK: applied now or before (a batch sent again).
	AckOK AckCode = iota
	// AckRetry: the receiver cannot take it yet (it has not applied the
	// view that has the sender, or it is out of order): send it again.
	AckRetry
	// AckGone: the receiver is another incarnation than the batch names:
	// drop the stream.
	AckGone
)

// Ack answers a Batch.
type Ack struct {
	// Seq is the batch answered.
	Seq  uint64  `json:"seq,omitempty"`
	Code AckCode `json:"code"`
	Msg  string  `json:"msg,omitempty"`
}

// Link is an open stream of batches to one member and of its acks back, in
// order (a gRPC stream). Recv returns the acks in the order of the batches.
// Close ends it and makes a blocked Recv return.
type Link interface {
	Send(b *Batch) error
	Recv() (Ack, error)
	Close()
}

// DialFunc opens a Link to member to.
type DialFunc func(ctx context.Context, to string) (Link, error)

// SendFunc delivers b to the member b.To (its Server.Receive) and returns
// its answer, or an error when it could not reach it (it is tried again).
// The Server calls it from one goroutine per peer, one batch at a time.
type SendFunc func(ctx context.Context, b *Batch) (Ack, error)

// Config configures a Server.
type Config struct {
	// Member is this member's name.
	Member string
	// Incarnation identifies this run of the lock manager; 0 draws a
	// random one.
	Incarnation uint64
	// Node configures the member's Node; Member and Transport are set by
	// New. Zero: cluster.DefaultConfig().
	Node cluster.Config
	// Send carries batches to the other members one at a time (each waits
	// for its ack). Dial, when set, is used instead: batches stream on an
	// open Link without waiting for the acks of earlier ones (up to
	// Window), which saves a round trip per batch.
	Send SendFunc
	Dial DialFunc
	// Window bounds the batches sent on a Link and not acknowledged yet
	// (default 64).
	Window int
	// AckTimeout is how long a Link may leave a batch unacknowledged before
	// it is closed and dialed again (perhaps over another link); default
	// 1s.
	AckTimeout time.Duration
	// MaxBatch bounds the messages of one Batch (default 512).
	MaxBatch int
	// Logger receives the lock manager's log (nil: none).
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Errors of a Session.
var (
	// ErrClosed: the session or the server is closed.
	ErrClosed = errors.New("lock session closed")
	// ErrLost: the session's locks were lost (the member's lease ended);
	// open a new session.
	ErrLost = errors.New("lock session lost")
)

// Server is the lock manager of one running member.
type Server struct {
	cfg    Config
	nodeCf cluster.Config // for the Node of a new incarnation
	self   string
	inc    atomic.Uint64 // changed under mu (Lose); read anywhere
	log    *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	node     *cluster.Node       // guarded by mu
	view     View                // guarded by mu; the last view given
	hasView  bool                // guarded by mu
	quorum   bool                // guarded by mu
	until    time.Time           // guarded by mu: quorum ends then (zero: when SetQuorum(false))
	sessions map[uint64]*Session // guarded by mu
	nextID   uint64              // guarded by mu
	peers    map[string]*peer    // guarded by mu: streams to the view's members
	inbound  map[string]inbound  // guarded by mu: last batch applied per sender
	closed   bool                // guarded by mu
	streams  uint64              // guarded by mu: the last stream number given
	lostWhy  string              // guarded by mu: why the last Lose happened
	stats    Stats               // guarded by mu
	ctx      context.Context     // cancels the peers' sends at Close
	cancel   context.CancelFunc  //
	wg       sync.WaitGroup      // the peers' goroutines
}

type inbound struct {
	inc    uint64
	stream uint64
	last   uint64
}

// Stats counts what the server did, for metrics and benchmarks.
type Stats struct {
	Sessions      int    // open sessions
	BatchesSent   uint64 // batches acknowledged by peers
	MessagesSent  uint64 // messages in them
	Retries       uint64 // batch sends that failed or were asked to retry
	BatchesIn     uint64 // batches applied
	MessagesIn    uint64 // messages in them
	Refused       uint64 // batches refused (retry or gone)
	Dropped       uint64 // messages dropped with a stream (peer gone)
	EventsRouted  uint64 // events delivered to sessions
	ViewsApplied  uint64
	LostSessions  uint64 // sessions whose locks were lost (Lose)
	Enqueues      uint64 // requests and conversions of this member's sessions
	Unlocks       uint64
	Cancels       uint64
	LastViewError string
	Handed        int // roots this member masters by hash and handed to another member
	Owned         int // roots other members handed to this one
}

// New returns a Server with no view and no quorum: client operations are
// held until the agent gives it both.
func New(cfg Config) (*Server, error) {
	if cfg.Member == "" {
		return nil, errors.New("dlm server: Member is empty: set it to this member's name")
	}
	if cfg.Send == nil && cfg.Dial == nil {
		return nil, errors.New("dlm server: Send and Dial are nil: give the server a way to reach the other members")
	}
	if cfg.Window == 0 {
		cfg.Window = 64
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = time.Second
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 512
	}
	if cfg.MaxBatch < 1 || cfg.MaxBatch > 1<<16 {
		return nil, fmt.Errorf("dlm server: MaxBatch is %d: it must be between 1 and %d (default 512)", cfg.MaxBatch, 1<<16)
	}
	if cfg.Incarnation == 0 {
		cfg.Incarnation = randomIncarnation()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	nc := cfg.Node
	if nc.MaxHeld == 0 && nc.MaxBatch == 0 && nc.MaxStash == 0 {
		def := cluster.DefaultConfig()
		if nc.Engine != (dlm.Options{}) {
			def.Engine = nc.Engine
		}
		def.Logger = nc.Logger
		nc = def
	}
	if nc.Logger == nil {
		nc.Logger = log
	}
	s := &Server{cfg: cfg, self: cfg.Member, log: log, now: cfg.Now,
		sessions: map[uint64]*Session{}, peers: map[string]*peer{}, inbound: map[string]inbound{}}
	s.inc.Store(cfg.Incarnation)
	nc.Member, nc.Transport = cfg.Member, transport{s}
	node, err := cluster.New(nc)
	if err != nil {
		return nil, err
	}
	s.node, s.nodeCf = node, nc
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func randomIncarnation() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if v := binary.LittleEndian.Uint64(b[:]) >> 1; v != 0 {
			return v
		}
	}
}

// Member is this member's name.
func (s *Server) Member() string { return s.self }

// Incarnation identifies this run of the lock manager: it changes when
// the process starts and when Lose ends the member's locks.
func (s *Server) Incarnation() uint64 { return s.inc.Load() }

// Close ends every session (each hears a session-level EventLost) and
// stops the streams to the peers.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	// The sessions in this process (dlmclient.Local) hear of it: their
	// locks and open requests end here. (A socket's client sees its
	// stream end.)
	why := fmt.Errorf("%w: the lock manager of %s is shutting down", ErrClosed, s.self)
	for _, id := range sortedSessionIDs(s.sessions) {
		ss := s.sessions[id]
		if ss.lost == nil {
			ss.deliver(cluster.Event{Kind: cluster.EventLost, Owner: ss.owner, Err: why})
		}
		ss.closed = true
	}
	clear(s.sessions)
	for _, p := range s.peers {
		p.stop()
	}
	clear(s.peers)
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// transport is the Node's Transport: called with s.mu held.
type transport struct{ s *Server }

func (t transport) Send(to string, m cluster.Message) {
	p := t.s.peers[to]
	if p == nil {
		t.s.stats.Dropped++
		return
	}
	p.push(m)
}

// nodeView is v as the Node must see it: this member is in it only with
// this incarnation.
func (s *Server) nodeView(v View) cluster.View {
	cv := cluster.View{Number: v.Number}
	for _, m := range v.Names() {
		if m == s.self && v.Members[m] != s.inc.Load() {
			continue
		}
		cv.Members = append(cv.Members, m)
	}
	return cv
}

// SetView applies a view the director wrote. An older or equal view is
// ignored.
func (s *Server) SetView(v View) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.hasView && v.Number <= s.view.Number {
		return nil
	}
	s.expire()
	cv := s.nodeView(v)
	in := cv.Has(s.self)
	// Streams first: what the Node sends while entering the view goes to
	// the view's incarnations.
	for name, p := range s.peers {
		if inc, ok := v.Members[name]; !in || !ok || inc != p.inc {
			s.stats.Dropped += uint64(p.stop())
			delete(s.peers, name)
		}
	}
	if in {
		for name, inc := range v.Members {
			if name != s.self && s.peers[name] == nil {
				s.peers[name] = s.startPeer(name, inc)
			}
		}
	}
	// A sender's place in its stream is kept while it is only absent from
	// the view: a member dropped without hearing of it (cut off, then taken
	// back with the same incarnation) goes on with the stream it had, and
	// its next batch must not look out of order. Another incarnation starts
	// afresh.
	for name, ib := range s.inbound {
		if inc, ok := v.Members[name]; ok && inc != ib.inc {
			delete(s.inbound, name)
		}
	}
	old := s.view
	s.view, s.hasView = View{Number: v.Number, Members: cloneMap(v.Members)}, true
	evs, err := s.node.SetView(s.now(), cv)
	if err != nil {
		s.stats.LastViewError = err.Error()
		return err
	}
	s.stats.ViewsApplied++
	s.log.Info("dlm: view applied", "view", cv.String(), "previous", old.Number, "in_view", in)
	s.route(evs)
	return nil
}

func cloneMap(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// View returns the last view applied.
func (s *Server) View() View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return View{Number: s.view.Number, Members: cloneMap(s.view.Members)}
}

// SetQuorum says whether this member may grant: it holds a lease from a
// director with quorum. SetQuorumUntil bounds it in time.
func (s *Server) SetQuorum(q bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.until = time.Time{}
	s.setQuorum(q)
}

// SetQuorumUntil gives quorum until the time until (the point where the
// member's lease tells it to abort): after it the member grants nothing,
// even if the caller cannot run to take quorum away (a process stopped
// and continued, an overloaded host), until quorum is given again.
func (s *Server) SetQuorumUntil(until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.until = until
	s.setQuorum(s.now().Before(until))
}

func (s *Server) setQuorum(q bool) {
	if s.closed || s.quorum == q {
		return
	}
	s.quorum = q
	s.route(s.node.SetQuorum(s.now(), q))
}

// expire ends the incarnation (Lose) once its quorum's time is over
// without a renewal: the lease is ending, and the survivors may purge its
// locks once it has. Called with s.mu held before every operation that may
// grant.
func (s *Server) expire() {
	if s.quorum && !s.until.IsZero() && !s.now().Before(s.until) {
		late := s.now().Sub(s.until).Round(time.Millisecond)
		s.log.Warn("dlm: quorum ran out before it was renewed (the agent did not run in time?): this member's locks are lost", "late", late)
		s.lose(fmt.Sprintf("the lease of %s ran out %v ago without a renewal (the agent did not run in time)", s.self, late))
	}
}

// Lose tells every session that its locks are lost (EventLost for each of
// them, with reason); the sessions refuse further operations with ErrLost.
// The agent calls it before its lease ends when it cannot renew: the
// survivors may purge the locks once the lease is over. Then this
// incarnation ends: the member drops all its lock state, stops its streams
// and takes a new incarnation, which the next view must take in (as after
// a restart). So it can never act on the view it had when it lost its
// lease: views may drop it meanwhile, and it might not hear of them before
// it has a lease again.
func (s *Server) Lose(reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	return s.lose(reason)
}

// lose is Lose with s.mu held.
func (s *Server) lose(reason string) int {
	s.until = time.Time{}
	s.setQuorum(false)
	why := fmt.Errorf("%w: %s", ErrLost, reason)
	held := s.node.Locks().Held
	n := 0
	for _, id := range sortedSessionIDs(s.sessions) {
		ss := s.sessions[id]
		if ss.lost != nil {
			continue
		}
		for _, l := range held {
			if l.Owner == ss.owner {
				ss.deliver(cluster.Event{Kind: cluster.EventLost, Lock: l.Lock, Owner: ss.owner, Err: why})
				n++
			}
		}
		// Then the session itself (no lock): a request still open on a
		// lock no longer in the table ends with it.
		ss.deliver(cluster.Event{Kind: cluster.EventLost, Owner: ss.owner, Err: why})
		ss.lost = why
		s.stats.LostSessions++
	}
	s.lostWhy = reason
	if n > 0 {
		s.log.Warn("dlm: locks lost: this member's clients were told", "locks", n, "reason", reason)
	}
	s.reincarnate()
	return n
}

// reincarnate starts this member's lock manager afresh under a new
// incarnation, outside every view until one takes the new incarnation in.
// Called with s.mu held.
func (s *Server) reincarnate() {
	for name, p := range s.peers {
		s.stats.Dropped += uint64(p.stop())
		delete(s.peers, name)
	}
	node, err := cluster.New(s.nodeCf)
	if err != nil { // the config was accepted at New
		panic(fmt.Sprintf("dlm server: a new incarnation's node: %v", err))
	}
	old := s.inc.Load()
	inc := randomIncarnation()
	for inc == old {
		inc = randomIncarnation()
	}
	s.inc.Store(inc)
	s.node = node
	if s.hasView {
		if evs, err := s.node.SetView(s.now(), s.nodeView(s.view)); err == nil {
			s.route(evs)
		}
	}
	s.log.Info("dlm: a new incarnation: this member is out of the lock manager's view until the director takes it back", "incarnation", fmt.Sprintf("%x", inc), "previous", fmt.Sprintf("%x", old))
}

func sortedSessionIDs(m map[uint64]*Session) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Receive applies a batch from another member (the node service calls
// it).
func (s *Server) Receive(b *Batch) Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Ack{Seq: b.Seq, Code: AckRetry, Msg: "lock manager of " + s.self + " is shutting down"}
	}
	s.expire() // first: it may end this incarnation
	if b.To != s.self || b.ToInc != s.inc.Load() {
		s.stats.Refused++
		return Ack{Seq: b.Seq, Code: AckGone, Msg: fmt.Sprintf("this is %s incarnation %x, not %s incarnation %x: it restarted or lost its lease", s.self, s.inc.Load(), b.To, b.ToInc)}
	}
	if inc, ok := s.view.Members[b.From]; !ok || inc != b.FromInc {
		s.stats.Refused++
		return Ack{Seq: b.Seq, Code: AckRetry, Msg: fmt.Sprintf("%s incarnation %x is not in view %d here yet", b.From, b.FromInc, s.view.Number)}
	}
	ib := s.inbound[b.From]
	switch {
	case ib.inc != b.FromInc || b.Stream > ib.stream:
		ib = inbound{inc: b.FromInc, stream: b.Stream}
	case b.Stream < ib.stream:
		s.stats.Refused++
		return Ack{Seq: b.Seq, Code: AckGone, Msg: fmt.Sprintf("stream %d from %s is older than its stream %d", b.Stream, b.From, ib.stream)}
	}
	switch {
	case b.Seq <= ib.last:
		return Ack{Seq: b.Seq, Code: AckOK}
	case b.Seq != ib.last+1:
		s.stats.Refused++
		return Ack{Seq: b.Seq, Code: AckRetry, Msg: fmt.Sprintf("batch %d from %s arrived before batch %d", b.Seq, b.From, ib.last+1)}
	}
	now := s.now()
	for _, m := range b.Msgs {
		s.route(s.node.Deliver(now, b.From, m))
	}
	ib.last = b.Seq
	s.inbound[b.From] = ib
	s.stats.BatchesIn++
	s.stats.MessagesIn += uint64(len(b.Msgs))
	return Ack{Seq: b.Seq}
}

// route hands events to their sessions. Called with s.mu held.
func (s *Server) route(evs []cluster.Event) {
	for _, ev := range evs {
		ss := s.sessions[ev.Owner.Client]
		if ss == nil || ev.Owner.Member != s.self {
			continue
		}
		ss.deliver(ev)
		s.stats.EventsRouted++
	}
}

// Locks returns what this member knows of the locks.
func (s *Server) Locks() cluster.Table {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node.Locks()
}

// WaitEdges returns the wait-for edges of the resources this member
// masters, for the director's deadlock search.
func (s *Server) WaitEdges() []cluster.Edge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node.WaitEdges(s.now())
}

// AbortDeadlock aborts the waiting request of a deadlock victim.
func (s *Server) AbortDeadlock(id cluster.LockID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.expire()
	evs, err := s.node.AbortDeadlock(s.now(), id)
	s.route(evs)
	return err
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Sessions = len(s.sessions)
	h := s.node.Handoffs()
	st.Handed, st.Owned = h.Handed, h.Owned
	return st
}

// Sweep gives back to their hash masters the roots handed to this member
// that have been unused and free for a while (cluster.Config.IdleReturn).
// Call it about once a second.
func (s *Server) Sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node.Sweep(s.now())
}

// Ready reports whether the lock manager grants now: it has a view with
// this member, has rebuilt it and has quorum.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node.Ready()
}

// Session is one client of the lock manager on this member: the owner of
// its locks. Its locks are released when it closes.
type Session struct {
	s       *Server
	owner   dlm.OwnerID
	onEvent func(cluster.Event)
	closed  bool  // guarded by s.mu
	lost    error // guarded by s.mu
}

// Open starts a session. onEvent receives the session's events (completions,
// blocking notifications, refusals, lost locks) in order; it is called with
// the server's lock held, so it must not block and must not call the
// Server or the Session.
func (s *Server) Open(onEvent func(cluster.Event)) (*Session, error) {
	if onEvent == nil {
		return nil, errors.New("dlm session: onEvent is nil: the session needs somewhere to deliver its notifications")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.nextID++
	ss := &Session{s: s, owner: dlm.OwnerID{Member: s.self, Client: s.nextID}, onEvent: onEvent}
	s.sessions[ss.owner.Client] = ss
	return ss, nil
}

// Owner is the session's owner id.
func (ss *Session) Owner() dlm.OwnerID { return ss.owner }

func (ss *Session) deliver(ev cluster.Event) { ss.onEvent(ev) }

func (ss *Session) check() error {
	switch {
	case ss.closed:
		return ErrClosed
	case ss.lost != nil:
		return ss.lost
	}
	return nil
}

// Enqueue requests a new lock or (with dlm.Convert) a conversion. The
// completion comes as an event, possibly before Enqueue returns.
func (ss *Session) Enqueue(r cluster.Request) (cluster.LockID, error) {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	if err := ss.check(); err != nil {
		return cluster.LockID{}, err
	}
	if r.Flags&dlm.Convert != 0 {
		if err := ss.mine("convert", r.Lock); err != nil {
			return cluster.LockID{}, err
		}
	}
	r.Owner = ss.owner
	s.stats.Enqueues++
	id, evs, err := s.node.Enqueue(s.now(), r)
	if err != nil {
		return cluster.LockID{}, err
	}
	s.route(evs)
	return id, nil
}

// Unlock releases a lock (or cancels it while it waits).
func (ss *Session) Unlock(id cluster.LockID, flags dlm.Flags, v *dlm.Value) error {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	if err := ss.check(); err != nil {
		return err
	}
	if err := ss.mine("unlock", id); err != nil {
		return err
	}
	s.stats.Unlocks++
	evs, err := s.node.Unlock(s.now(), id, flags, v)
	s.route(evs)
	return err
}

// Cancel cancels a waiting request or conversion.
func (ss *Session) Cancel(id cluster.LockID) error {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	if err := ss.check(); err != nil {
		return err
	}
	if err := ss.mine("cancel", id); err != nil {
		return err
	}
	s.stats.Cancels++
	evs, err := s.node.Cancel(s.now(), id)
	s.route(evs)
	return err
}

// mine refuses an operation on a lock of another session: sessions are
// separate clients. Called with s.mu held.
func (ss *Session) mine(op string, id cluster.LockID) error {
	if o, ok := ss.s.node.OwnerOf(id); ok && o != ss.owner {
		return &cluster.Error{Op: op, Lock: id, Kind: dlm.ErrUnknownLock,
			Msg: fmt.Sprintf("lock %v is not a lock of this session (it belongs to %v)", id, o)}
	}
	return nil
}

// Close ends the session: every lock it holds or waits for is released.
func (ss *Session) Close() error {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.closed {
		return nil
	}
	ss.closed = true
	delete(s.sessions, ss.owner.Client)
	if s.closed {
		return nil
	}
	s.expire()
	evs, err := s.node.Disconnect(s.now(), ss.owner)
	s.route(evs)
	if err != nil && !errors.Is(err, cluster.ErrNotMember) {
		return err
	}
	return nil
}
