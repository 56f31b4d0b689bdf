// Package socket is the local API of vigil's lock manager: the gRPC
// service that the agent serves on a Unix socket in its data dir
// ([File], mode 0600), through which the processes of a member (the Go
// package dlmclient, `vigil lock`) take locks. It owns the wire messages
// ([Request], [Message] and their frames, encoded as JSON by a codec of its
// own, with no generated code), their validation, and one session of the
// lock manager per stream.
//
// It must not hold lock state or decide anything about locks: every
// operation goes to a server.Session, every event comes from it. Nor does it
// create or secure the socket: the agent listens (root only) and calls
// [Serve].
//
// # The stream
//
// The service vigil.DLM has one method, Session: a bidirectional stream.
// Opening it opens a server.Session; its first message is the event "open"
// naming the session's owner. The client sends ClientFrames of Requests,
// each with a tag of its choosing; the server answers every request, in
// order, with a Message carrying the tag (and for an enqueue the new lock's
// id, or an error kind and reason), and sends the session's events
// (granted, not-queued, canceled, deadlock, blocking, refused, lost) as
// Messages without a tag. Answers and events leave through one ordered
// queue, so the answer to an enqueue always comes before the events of its
// lock; a refusal the lock manager makes at once (a lock mastered on this
// member) comes as the answer's error, not as a refused event. The end of
// the stream, for whatever reason (the client closes it, its process dies,
// the socket breaks), closes the session: the lock manager releases every
// lock it held or waited for.
//
// The server side of a stream has two goroutines: the reader, which
// decodes requests and calls the session, and the writer, which sends the
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

// Serve serves the lock manager srv on ln until the returned server is
// stopped. Stop it with Stop: GracefulStop waits for every session to end,
// and sessions last as long as their clients want.
func Serve(ln net.Listener, srv *server.Server, log *slog.Logger) *grpc.Server {
	g := NewServer(srv, log)
	go g.Serve(ln)
	return g
}

// NewServer returns the gRPC server of the lock manager srv, not serving
// yet.
func NewServer(srv *server.Server, log *slog.Logger) *grpc.Server {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
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

// stream is one session on one gRPC stream.
type stream struct {
	ss  *server.Session
	log *slog.Logger

	wake chan struct{} // cap 1: the queue has something, or the stream fails
	dead chan struct{} // closed when failed is set

	mu      sync.Mutex
	out     []Message // guarded by mu: to send, in order
	later   []Message // guarded by mu: events that came while a request ran
	running bool      // guarded by mu: a request is running (events go to later)
	stopped bool      // guarded by mu: the writer must stop
	failed  error     // guarded by mu: the session must end
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
	if len(st.out) == 1 {
		st.signal()
	}
}

func (s *service) session(gs grpc.ServerStream) error {
	st := &stream{log: s.log, wake: make(chan struct{}, 1), dead: make(chan struct{})}
	ss, err := s.srv.Open(st.onEvent)
	if err != nil {
		return status.Errorf(codes.Unavailable, "the lock manager cannot open a session: %v", err)
	}
	st.ss = ss
	log := s.log.With("session", ss.Owner().String())
	log.Debug("dlm session opened")
	st.out = append(st.out, Message{Event: EventOpen, Session: ss.Owner().String()})
	st.signal()

	wrote := make(chan error, 1)
	go func() { wrote <- st.write(gs) }()
	read := make(chan error, 1)
	go func() { read <- st.read(gs) }()

	var end error
	select {
	case end = <-read:
	case end = <-wrote:
	case <-st.dead:
		st.mu.Lock()
		end = st.failed
		st.mu.Unlock()
	}
	// The session ends first: its locks are released whatever the
	// stream does next.
	if err := ss.Close(); err != nil {
		log.Warn("dlm session close", "err", err)
	}
	st.mu.Lock()
	st.stopped = true
	st.mu.Unlock()
	st.signal()
	select {
	case <-wrote:
	case <-time.After(time.Second):
		// The writer is stuck in SendMsg: the client does not read.
		// Returning ends the stream, which unblocks it.
	}
	switch {
	case end == nil || errors.Is(end, io.EOF):
		log.Debug("dlm session closed by its client")
		return nil
	case status.Code(end) == codes.Canceled || errors.Is(end, context.Canceled):
		log.Debug("dlm session ended: client gone")
		return nil
	}
	log.Info("dlm session ended", "err", end)
	if _, ok := status.FromError(end); ok {
		return end
	}
	return status.Error(codes.InvalidArgument, end.Error())
}

// read decodes requests and runs them until the stream ends.
func (st *stream) read(gs grpc.ServerStream) error {
	for {
		var f ClientFrame
		if err := gs.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		for i := range f.Requests {
			st.run(&f.Requests[i])
		}
	}
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
	if was == 0 {
		st.signal()
	}
}

// write sends the queue, in order, until the session stops.
func (st *stream) write(gs grpc.ServerStream) error {
	var spare []Message
	for {
		st.mu.Lock()
		for len(st.out) == 0 && !st.stopped && st.failed == nil {
			st.mu.Unlock()
			<-st.wake
			st.mu.Lock()
		}
		if st.stopped || st.failed != nil {
			err := st.failed
			st.mu.Unlock()
			return err
		}
		batch := st.out
		whole := len(batch) <= MaxMessages
		if whole {
			st.out = spare[:0]
		} else {
			batch, st.out = batch[:MaxMessages:MaxMessages], batch[MaxMessages:]
		}
		st.mu.Unlock()
		if err := gs.SendMsg(&ServerFrame{Messages: batch}); err != nil {
			return err
		}
		spare = nil
		if whole && cap(batch) <= 4*MaxMessages {
			clear(batch) // a burst's large array is not kept
			spare = batch
		}
	}
}

// CallOptions are the options a client's calls need.
func CallOptions() []grpc.CallOption {
	return []grpc.CallOption{grpc.ForceCodec(Codec{}), grpc.MaxCallRecvMsgSize(MaxFrame), grpc.MaxCallSendMsgSize(MaxFrame)}
}

// String describes a request for logs and errors.
func (r *Request) String() string {
	return fmt.Sprintf("%s tag %d lock %v %s/%s mode %s flags %#x", r.Op, r.Tag, r.Lock, r.Lockspace, r.Name, r.Mode, r.Flags)
}
