// Package socket is the local API of vigil's lock manager: what the agent
// serves on a Unix socket in its data dir ([File], mode 0600), through
// which the processes of a member (the Go package dlmclient, `vigil lock`)
// take locks. It owns the wire messages ([Request], [Message] and their
// frames, encoded as JSON by a codec of its own, with no generated code),
// their validation, the three protocols that carry them, and one session of
// the lock manager per stream.
//
// It must not hold lock state or decide anything about locks: every
// operation goes to a server.Session, every event comes from it. Nor does it
// create or secure the socket: the agent listens (root only) and calls
// [Serve].
//
// # Three protocols on one socket
//
// [Serve] reads the first bytes of every connection. [Preface], the
// HTTP/2 client preface, goes to the gRPC service vigil.DLM: its one
// method, Session, is a bidirectional stream of ClientFrames and
// ServerFrames (the API for clients in any language). [Magic] opens the
// raw protocol: the same frames, each after its length (4 bytes,
// big-endian, at most [MaxFrame]), with nothing else on the connection;
// the server's last frame may be an end frame ([EndBit]) saying why it
// ended the session. [MagicRing] opens the ring protocol, which dlmclient
// speaks: the raw protocol's frames, through two rings in memory the agent
// shares with the client (ring.go), with the socket left for doorbells
// and for the session's end. Both spare HTTP/2's hand-offs and wake-ups;
// the rings also spare a system call per message and per look. Anything
// else is told so in one line and closed.
//
// # The session
//
// Opening a stream (or a raw connection) opens a server.Session; its first
// message is the event "open" naming the session's owner. The client sends
// ClientFrames of Requests, each with a tag of its choosing; the server
// answers every request, in order, with a Message carrying the tag (and
// for an enqueue the new lock's id, or an error kind and reason), and sends
// the session's events (granted, not-queued, canceled, deadlock, blocking,
// refused, lost) as Messages without a tag. Answers and events leave
// through one ordered queue, so the answer to an enqueue always comes
// before the events of its lock; a refusal the lock manager makes at once
// (a lock mastered on this member) comes as the answer's error, not as a
// refused event. The end of the stream, for whatever reason (the client
// closes it, its process dies, the socket breaks, a frame does not decode),
// closes the session: the lock manager releases every lock it held or
// waited for.
//
// The server side of a session has a reader goroutine, which decodes
// requests and calls the session, and a writer goroutine, which sends what
// the reader does not. On a raw or ring connection the reader itself writes the
// answers and events queued once it has run the frames it received (one
// write), unless a write is under way; the writer is woken only for events
// that come on their own (grants after a wait, blocking notifications), or
// to finish a write the client did not take within a short time, so that
// the reader goes on reading. On a gRPC stream the writer sends the whole
// queue. The session's event callback, called under the lock manager's
// lock, only appends to the queue. A client that does not read lets the
// queue grow to [MaxPending] messages; then its session ends.
package socket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
)

// StreamDesc describes the Session stream, for clients.
var StreamDesc = grpc.StreamDesc{StreamName: "Session", ServerStreams: true, ClientStreams: true}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Session",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(*service).session(stream)
		},
	}},
}

// Serve serves the lock manager srv on ln, both protocols, until the
// returned server is stopped. Stop it with Stop: it closes ln and ends
// every session of either protocol. (GracefulStop waits for the gRPC
// sessions to end, and sessions last as long as their clients want.)
func Serve(ln net.Listener, srv *server.Server, log *slog.Logger) *grpc.Server {
	if log == nil {
		log = discard
	}
	g := NewServer(srv, log)
	go g.Serve(newListener(ln, &service{srv: srv, log: log}))
	return g
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// NewServer returns the gRPC server of the lock manager srv, not serving
// yet. Its Serve takes gRPC connections only: Serve takes both protocols.
func NewServer(srv *server.Server, log *slog.Logger) *grpc.Server {
	if log == nil {
		log = discard
	}
	g := grpc.NewServer(
		grpc.ForceServerCodec(Codec{}),
		grpc.MaxRecvMsgSize(MaxFrame),
		grpc.MaxSendMsgSize(MaxFrame),
		// Fixed windows turn off gRPC's bandwidth probing, whose pings
		// cost a round of syscalls per message on a local socket.
		grpc.InitialWindowSize(1<<20),
		grpc.InitialConnWindowSize(4<<20),
	)
	g.RegisterService(&serviceDesc, &service{srv: srv, log: log})
	return g
}

type service struct {
	srv *server.Server
	log *slog.Logger
}

// maxPending is MaxPending, lowered by tests.
var maxPending = MaxPending

// errNotReading ends a session whose client does not read.
var errNotReading = status.Errorf(codes.ResourceExhausted,
	"the client does not read its notifications: %d are waiting: the session ends and its locks are released (read the stream while you hold locks)", MaxPending)

// errCannotOpen is the end of a session the lock manager did not open.
func errCannotOpen(err error) error {
	return status.Errorf(codes.Unavailable, "the lock manager cannot open a session: %v", err)
}

// A wire carries the frames of one session: a gRPC stream or a raw
// connection.
type wire interface {
	// recv reads the next frame of requests; io.EOF when the client
	// ended the session.
	recv() (*ClientFrame, error)
	// send writes msgs. With soon (only when direct) it waits at most
	// directWait for the client: what the client did not take by then is
	// kept and left is true; the next send without soon writes it first.
	send(msgs []Message, soon bool) (left bool, err error)
	// direct says whether the reader may write (send with soon).
	direct() bool
	// whole says whether recv can return a frame without waiting.
	whole() bool
}

// stream is one session on one wire. Its reader decodes requests and
// calls the session; the answers and events leave through one queue,
// written by whoever owns the wire's sending side (writing): the reader
// itself after a frame (direct wires), or the writer goroutine, which is
// woken only for what the reader does not write.
type stream struct {
	ss  *server.Session
	log *slog.Logger
	w   wire

	wake chan struct{} // cap 1: the queue has something, the writer must finish a send, or the stream fails
	dead chan struct{} // closed when failed is set

	mu      sync.Mutex
	out     []Message // guarded by mu: to send, in order
	spare   []Message // guarded by mu: an empty array for out, once sent
	later   []Message // guarded by mu: events that came while a request ran
	running bool      // guarded by mu: a request is running (events go to later)
	writing bool      // guarded by mu: someone owns the sending side and will send out before letting go
	carry   bool      // guarded by mu: the reader's send was cut short: the writer owns the sending side and must finish it
	stopped bool      // guarded by mu: the writer must stop
	failed  error     // guarded by mu: the session must end

	waiting atomic.Bool // the last request answered waits for its completion
	kick    func()      // wakes the reader to spin for the next request (raw wires; may be nil)
}

func newStream(w wire, log *slog.Logger) *stream {
	return &stream{w: w, log: log, wake: make(chan struct{}, 1), dead: make(chan struct{})}
}

func (st *stream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// onEvent is the session's callback: it runs under the lock manager's
// lock and only queues.
func (st *stream) onEvent(ev cluster.Event) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.failed != nil || st.stopped {
		return
	}
	if len(st.out)+len(st.later) >= maxPending {
		st.failed = errNotReading
		close(st.dead)
		st.signal()
		return
	}
	m := EventMessage(ev)
	if st.running {
		st.later = append(st.later, m)
		return
	}
	st.out = append(st.out, m)
	if len(st.out) == 1 && !st.writing {
		st.signal()
	}
}

// open opens the session of st on srv and queues its first message.
func (st *stream) open(srv *server.Server) error {
	ss, err := srv.Open(st.onEvent)
	if err != nil {
		return errCannotOpen(err)
	}
	st.ss = ss
	st.log = st.log.With("session", ss.Owner().String())
	st.log.Debug("dlm session opened")
	st.out = append(st.out, Message{Event: EventOpen, Session: ss.Owner().String()})
	return nil
}

// serve serves the opened session until it ends, then closes it (the lock
// manager releases its locks) and stops the writer; stop, when not nil,
// unblocks the wire's pending reads and writes. It returns why the
// session ended (nil: the client ended it) and whether the reader and
// writer have returned.
func (st *stream) serve(stop func()) (end error, quiet bool) {
	wrote := make(chan error, 1)
	go func() { wrote <- st.write() }()
	read := make(chan error, 1)
	go func() { read <- st.read() }()
	st.signal()

	readDone, wroteDone := false, false
	select {
	case end = <-read:
		readDone = true
	case end = <-wrote:
		wroteDone = true
	case <-st.dead:
		st.mu.Lock()
		end = st.failed
		st.mu.Unlock()
	}
	// The session ends first: its locks are released whatever the
	// stream does next.
	if err := st.ss.Close(); err != nil {
		st.log.Warn("dlm session close", "err", err)
	}
	st.mu.Lock()
	st.stopped = true
	st.mu.Unlock()
	st.signal()
	if stop != nil {
		stop()
	}
	timeout := time.NewTimer(endWait)
	defer timeout.Stop()
	for !wroteDone || (stop != nil && !readDone) {
		select {
		case <-wrote:
			wroteDone = true
		case <-read:
			readDone = true
		case <-timeout.C:
			// A write is stuck: the client does not read. Ending the
			// connection unblocks it.
			return end, false
		}
	}
	return end, true
}

func (s *service) session(gs grpc.ServerStream) error {
	st := newStream(&grpcWire{gs: gs}, s.log)
	if err := st.open(s.srv); err != nil {
		return err
	}
	end, _ := st.serve(nil)
	switch {
	case end == nil || errors.Is(end, io.EOF):
		st.log.Debug("dlm session closed by its client")
		return nil
	case status.Code(end) == codes.Canceled || errors.Is(end, context.Canceled):
		st.log.Debug("dlm session ended: client gone")
		return nil
	}
	st.log.Info("dlm session ended", "err", end)
	if _, ok := status.FromError(end); ok {
		return end
	}
	return status.Error(codes.InvalidArgument, end.Error())
}

// read decodes requests and runs them until the stream ends. On a direct
// wire it then sends the queue itself, once the frames already received
// have run, unless someone else is sending.
func (st *stream) read() error {
	direct := st.w.direct()
	mine := false // the reader owns the sending side
	for {
		f, err := st.w.recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if direct && !mine {
			st.mu.Lock()
			if !st.writing && !st.stopped {
				st.writing, mine = true, true
			}
			st.mu.Unlock()
		}
		for i := range f.Requests {
			st.run(&f.Requests[i])
		}
		if mine && (!st.w.whole() || st.queued() >= MaxMessages) {
			mine = false
			if err := st.drain(true, false); err != nil {
				return err
			}
		}
	}
}

// queued returns the length of the queue.
func (st *stream) queued() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.out)
}

// run runs one request and queues its answer, then the events it caused.
func (st *stream) run(r *Request) {
	ans := Message{Tag: r.Tag}
	op, err := r.Check()
	if err != nil {
		ans.Err, ans.Msg = KindInvalid, err.Error()
		st.answer(ans, "")
		return
	}
	st.mu.Lock()
	st.running = true
	st.mu.Unlock()
	var id cluster.LockID
	switch op.Kind {
	case cluster.OpEnqueue:
		id, err = st.ss.Enqueue(cluster.Request{Lockspace: op.Ls, Name: op.Name, Parent: op.Parent, Mode: op.Mode, Flags: op.Flags})
	case cluster.OpConvert:
		id, err = st.ss.Enqueue(cluster.Request{Lock: op.Lock, Mode: op.Mode, Flags: op.Flags | dlm.Convert, Value: op.Value})
	case cluster.OpUnlock:
		id, err = op.Lock, st.ss.Unlock(op.Lock, op.Flags, op.Value)
	case cluster.OpCancel:
		id, err = op.Lock, st.ss.Cancel(op.Lock)
	}
	ans.Lock = id
	if err != nil {
		ans.Err, ans.Msg = Kind(err), Reason(err)
		if op.Kind != cluster.OpEnqueue {
			ans.Lock = cluster.LockID{}
		}
	}
	st.answer(ans, r.Op)
}

// answer queues ans and the events that came while its request ran. A
// refusal of the request itself among them becomes the answer's error.
func (st *stream) answer(ans Message, op string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.running = false
	if st.failed != nil || st.stopped {
		st.later = st.later[:0]
		return
	}
	// A request that waits for its completion (a remote master, a
	// queue) leaves its client waiting: the reader need not spin for the
	// next request.
	st.waiting.Store(ans.Err == "" && (op == OpEnqueue || op == OpConvert) && !completes(st.later, ans.Lock))
	if ans.Err == "" && op != "" {
		for i, m := range st.later {
			if m.Event == EventRefused && m.Lock == ans.Lock && m.Op == op {
				ans.Err, ans.Msg = m.Err, m.Msg
				if op != OpEnqueue {
					ans.Lock = cluster.LockID{}
				}
				st.later = append(st.later[:i], st.later[i+1:]...)
				break
			}
		}
	}
	was := len(st.out)
	st.out = append(st.out, ans)
	st.out = append(st.out, st.later...)
	clear(st.later)
	st.later = st.later[:0]
	if cap(st.later) > MaxMessages {
		st.later = nil // a burst's large array is not kept
	}
	if was == 0 && !st.writing {
		st.signal()
	}
}

// completes says whether msgs hold the completion of lock id's request.
func completes(msgs []Message, id cluster.LockID) bool {
	for _, m := range msgs {
		if m.Lock != id {
			continue
		}
		switch m.Event {
		case EventGranted, EventNotQueued, EventCanceled, EventDeadlock, EventRefused:
			return true
		}
	}
	return false
}

// completesAny says whether msgs hold a request's completion.
func completesAny(msgs []Message) bool {
	for _, m := range msgs {
		switch m.Event {
		case EventGranted, EventNotQueued, EventCanceled, EventDeadlock, EventRefused:
			return true
		}
	}
	return false
}

// spinBudget is how long the reader spins for the next request: Spin,
// unless the last request waits for its completion.
func (st *stream) spinBudget() time.Duration {
	if st.waiting.Load() {
		return 0
	}
	return time.Duration(Spin.Load())
}

// write is the writer goroutine: it sends what nobody else sends, in
// order, until the session stops.
func (st *stream) write() error {
	for {
		st.mu.Lock()
		for !st.stopped && st.failed == nil && !st.carry && (st.writing || len(st.out) == 0) {
			st.mu.Unlock()
			<-st.wake
			st.mu.Lock()
		}
		if st.stopped || st.failed != nil {
			err := st.failed
			st.mu.Unlock()
			return err
		}
		// The writer owns the sending side: it was handed a send cut
		// short, or takes it.
		carry := st.carry
		st.carry, st.writing = false, true
		st.mu.Unlock()
		if err := st.drain(false, carry); err != nil {
			return err
		}
	}
}

// drain sends the queue until it is empty, then lets go of the sending
// side, which the caller owns. With soon (the reader) a send the client
// does not take at once is handed to the writer goroutine; with carry (the
// writer so handed it) the first send finishes it, even with nothing
// queued.
func (st *stream) drain(soon, carry bool) error {
	for {
		st.mu.Lock()
		if st.stopped || st.failed != nil || len(st.out) == 0 && !carry {
			st.writing = false
			st.mu.Unlock()
			return nil
		}
		carry = false
		batch := st.out
		whole := len(batch) <= MaxMessages
		if whole {
			st.out, st.spare = st.spare, nil
		} else {
			batch, st.out = batch[:MaxMessages:MaxMessages], batch[MaxMessages:]
		}
		st.mu.Unlock()
		left, err := st.w.send(batch, soon)
		if err != nil {
			return err
		}
		if st.waiting.Load() && completesAny(batch) {
			// The client's wait is over: its next request comes soon,
			// and the reader spins for it again (kicked if it parked:
			// the writer sent this).
			st.waiting.Store(false)
			if !soon && st.kick != nil {
				st.kick()
			}
		}
		if whole && cap(batch) <= 4*MaxMessages {
			// The next batch is appended to this one's array (a
			// burst's large array is not kept).
			clear(batch)
			st.mu.Lock()
			if st.spare == nil {
				st.spare = batch[:0]
			}
			st.mu.Unlock()
		}
		if left {
			st.mu.Lock()
			st.carry = true
			st.mu.Unlock()
			st.signal()
			return nil
		}
	}
}

// grpcWire is a session's gRPC stream.
type grpcWire struct{ gs grpc.ServerStream }

func (w *grpcWire) recv() (*ClientFrame, error) {
	f := new(ClientFrame)
	if err := w.gs.RecvMsg(f); err != nil {
		return nil, err
	}
	return f, nil
}

func (w *grpcWire) send(msgs []Message, _ bool) (bool, error) {
	return false, w.gs.SendMsg(&ServerFrame{Messages: msgs})
}

func (w *grpcWire) direct() bool { return false }
func (w *grpcWire) whole() bool  { return false }

// CallOptions are the options a client's calls need.
func CallOptions() []grpc.CallOption {
	return []grpc.CallOption{grpc.ForceCodec(Codec{}), grpc.MaxCallRecvMsgSize(MaxFrame), grpc.MaxCallSendMsgSize(MaxFrame)}
}

// String describes a request for logs and errors.
func (r *Request) String() string {
	return fmt.Sprintf("%s tag %d lock %v %s/%s mode %s flags %#x", r.Op, r.Tag, r.Lock, r.Lockspace, r.Name, r.Mode, r.Flags)
}
