package dlmclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
)

// localTransport calls a server.Session in this process.
type localTransport struct {
	c     *Client
	ss    *server.Session
	enqMu sync.Mutex // one enqueue at a time: events of its new lock come before its id
}

func (t *localTransport) do(o *op) {
	switch o.kind {
	case cluster.OpEnqueue:
		t.enqMu.Lock()
		defer t.enqMu.Unlock()
		t.c.mu.Lock()
		t.c.enqueuing = true
		t.c.mu.Unlock()
		id, err := t.ss.Enqueue(cluster.Request{Lockspace: o.lock.ls, Name: o.lock.name, Parent: o.id, Mode: o.mode, Flags: o.flags})
		t.c.answered(o, fromCluster(id), err)
	case cluster.OpConvert:
		_, err := t.ss.Enqueue(cluster.Request{Lock: o.id, Mode: o.mode, Flags: o.flags, Value: o.value})
		t.c.answered(o, LockID{}, err)
	case cluster.OpUnlock:
		t.c.answered(o, LockID{}, t.ss.Unlock(o.id, o.flags, o.value))
	case cluster.OpCancel:
		t.c.answered(o, LockID{}, t.ss.Cancel(o.id))
	}
}

func (t *localTransport) close() error { return t.ss.Close() }
func (t *localTransport) posts() bool  { return false }

// abort is not called: a Local unlock is not posted.
func (t *localTransport) abort(string) {}

// socketTransport speaks to the agent over its Unix socket: one raw
// connection or one gRPC stream (a sessionConn). Callers' requests are sent
// by whichever caller finds no send running (it sends everything queued
// meanwhile in one write); one goroutine reads answers and events.
type socketTransport struct {
	c    *Client
	path string
	conn sessionConn
	done chan struct{} // closed when the reader ends

	sendMu sync.Mutex // serializes send and closeSend

	mu      sync.Mutex
	nextTag uint64           // guarded by mu
	calls   map[uint64]*op   // guarded by mu: sent, not answered
	queue   []socket.Request // guarded by mu: to send
	sending bool             // guarded by mu: a caller is sending the queue
	err     error            // guarded by mu: the stream ended
	closing bool             // guarded by mu: Close was called
	aborted string           // guarded by mu: why the client ended the session (abort)
	post    bool             // unlocks are posted (PostUnlocks); set before use
}

// A sessionConn carries one session's frames to the agent.
type sessionConn interface {
	// send sends requests (one caller at a time).
	send(reqs []socket.Request) error
	// recv reads the next frame of messages (one reader).
	recv(f *socket.ServerFrame) error
	// closeSend tells the agent that the client ends the session.
	closeSend() error
	// close ends the connection.
	close() error
}

// A DialOption sets how Dial's session works.
type DialOption struct {
	spin    *time.Duration
	post    bool
	noRings bool
}

// PostUnlocks makes Lock.Unlock of a granted lock with nothing on its way
// return once the release is sent, as Linux DLM's unlock does, instead of
// once the lock manager took it: a lock+unlock pair is then one round trip
// to the agent, not two. The agent runs a session's requests in order, so
// whatever the session asks next comes after the release; but the nil
// error no longer says that the lock was still held when it was released
// (a member paused with its clients, for one, may have lost it meanwhile):
// Client.Sync says that, for every release sent before it.
func PostUnlocks() DialOption { return DialOption{post: true} }

// Spin sets how long the session's reader watches for the lock manager's
// next message (in the memory shared with the agent, or with NoRings by
// polling the socket) while the session waits for it (an answer, or a
// request's completion), counted from the last message either way, before
// it waits in the runtime's network poller; when nothing is due it watches
// for at most socket.SpinLinger. Watching costs the CPU it spins for and
// saves the wake-ups that, on a small virtual machine, cost more than a
// lock (docs/DLM.md, "Spinning" and "Shared rings"). The readers of a
// process's sessions watch by turns: one spins and watches the others.
// The default is socket.SpinDue (1ms, long enough for a lock mastered
// across a LAN); 0 never watches; more than MaxSpin is MaxSpin.
func Spin(d time.Duration) DialOption { return DialOption{spin: &d} }

// MaxSpin bounds Spin.
const MaxSpin = 10 * time.Millisecond

// NoRings makes the session carry its frames through the socket instead
// of the memory it shares with the agent: slower, for an agent that cannot
// share memory (one older than the ring protocol is found out and spoken
// to without it anyway).
func NoRings() DialOption { return DialOption{noRings: true} }

// Dial opens a session on the lock manager of the agent whose socket is at
// path (DATA/dlm.sock). Its frames go through two rings in memory shared
// with the agent (the ring protocol; docs/DLM.md), or with NoRings through
// the socket (the raw protocol). ctx bounds the connection, not the
// session.
func Dial(ctx context.Context, path string, opts ...DialOption) (*Client, error) {
	if err := checkSocket(path); err != nil {
		return nil, err
	}
	rc := &rawConn{spinDue: socket.SpinDue}
	post, rings := false, true
	for _, o := range opts {
		if o.spin != nil {
			rc.spinDue = min(max(*o.spin, 0), MaxSpin)
		}
		post = post || o.post
		rings = rings && !o.noRings
	}
	c, err := dial(ctx, path, rc, rings)
	var refused *socket.RingRefused
	if errors.As(err, &refused) {
		c, err = dial(ctx, path, &rawConn{spinDue: rc.spinDue}, false)
	}
	if err == nil {
		c.t.(*socketTransport).post = post
	}
	return c, err
}

// dial opens a session through rc, with rings or the raw protocol. An
// agent that does not open a ring (older than the ring protocol, or out of
// memory or descriptors) is a *socket.RingRefused.
func dial(ctx context.Context, path string, rc *rawConn, rings bool) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, dialError(ctx, path, err, err)
	}
	// The context bounds the opening: a deadline in the past ends a
	// read or write that waits.
	var ring atomic.Pointer[socket.RingConn]
	stop := context.AfterFunc(ctx, func() {
		nc.SetDeadline(time.Unix(1, 0))
		if r := ring.Load(); r != nil {
			r.SetDeadline(time.Unix(1, 0))
		}
	})
	fail := func(err error) (*Client, error) {
		stop()
		rc.close()
		nc.Close()
		var end *socket.EndError
		if errors.As(err, &end) {
			return nil, &Error{Op: "dial", Kind: ErrNoAgent, Err: err, Msg: fmt.Sprintf("the lock manager at %s refused a session: %s", path, end.Reason)}
		}
		if ctx.Err() == nil && (errors.Is(err, io.EOF) || errors.As(err, new(*socket.FrameError)) || errors.Is(err, syscall.ECONNRESET)) {
			err = fmt.Errorf("%w (is the agent older than this client? DialGRPC speaks the protocol of every version)", err)
		}
		return nil, dialError(ctx, path, nil, err)
	}
	if rings {
		uc, ok := nc.(*net.UnixConn)
		if !ok {
			return fail(errors.New("not a Unix socket"))
		}
		r, err := socket.DialRing(uc, &clientRings, rc.spinBudget)
		var refused *socket.RingRefused
		switch {
		case errors.As(err, &refused):
			// An agent older than the ring protocol, or one that cannot
			// share memory now (it says why in its log).
			stop()
			nc.Close()
			return nil, err
		case err != nil:
			return fail(err)
		}
		ring.Store(r)
		rc.c = r
		rc.fr = socket.NewFrameReader(r)
	} else {
		rc.c = nc
		rc.fr = socket.NewFrameReader(socket.NewSpinReader(nc, &clientSpinners, rc.spinBudget))
		if _, err := io.WriteString(nc, socket.Magic); err != nil {
			return fail(err)
		}
	}
	var first socket.ServerFrame
	if err := rc.recv(&first); err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(ctx.Err())
	}
	rc.c.SetDeadline(time.Time{})
	return open(path, rc, &first, fail)
}

// DialGRPC is Dial with the socket's gRPC protocol (the service vigil.DLM,
// which clients in other languages use): the same session, slower.
func DialGRPC(ctx context.Context, path string) (*Client, error) {
	if err := checkSocket(path); err != nil {
		return nil, err
	}
	var (
		dialMu  sync.Mutex
		dialErr error
	)
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		dialMu.Lock()
		dialErr = err
		dialMu.Unlock()
		return conn, err
	}
	cc, err := grpc.NewClient("passthrough:///dlm.sock",
		grpc.WithContextDialer(dialer),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(socket.CallOptions()...),
		grpc.WithReadBufferSize(64<<10), grpc.WithWriteBufferSize(64<<10),
		grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(4<<20),
	)
	if err != nil {
		return nil, &Error{Op: "dial", Kind: ErrNoAgent, Err: err, Msg: err.Error()}
	}
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	fail := func(err error) (*Client, error) {
		cancel()
		cc.Close()
		dialMu.Lock()
		de := dialErr
		dialMu.Unlock()
		return nil, dialError(ctx, path, de, err)
	}
	stream, err := cc.NewStream(sctx, &socket.StreamDesc, socket.Method)
	if err != nil {
		return fail(err)
	}
	var first socket.ServerFrame
	if err := stream.RecvMsg(&first); err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(ctx.Err())
	}
	return open(path, &grpcConn{cc: cc, stream: stream, cancel: cancel}, &first, fail)
}

// checkSocket checks that path is a socket this process may use.
func checkSocket(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &Error{Op: "dial", Kind: ErrNoAgent, Err: err,
			Msg: fmt.Sprintf("%s does not exist: the vigil agent is not running on this member", path)}
	case errors.Is(err, os.ErrPermission):
		return &Error{Op: "dial", Kind: ErrNoAgent, Err: err,
			Msg: fmt.Sprintf("cannot reach %s: permission denied (the lock manager's socket is for root only)", path)}
	case err != nil:
		return &Error{Op: "dial", Kind: ErrNoAgent, Err: err, Msg: err.Error()}
	case fi.Mode()&os.ModeSocket == 0:
		return &Error{Op: "dial", Kind: ErrNoAgent,
			Msg: fmt.Sprintf("%s is not a socket: give the lock manager's socket (DATA/%s)", path, socket.File)}
	}
	return nil
}

// dialError explains why no session opened: de is the error of connecting
// to the socket (if any), err what ended the opening.
func dialError(ctx context.Context, path string, de, err error) error {
	switch {
	case errors.Is(de, syscall.ECONNREFUSED):
		return &Error{Op: "dial", Kind: ErrNoAgent, Err: de,
			Msg: fmt.Sprintf("nothing listens on %s: the vigil agent is not running on this member (the socket is left from an earlier run)", path)}
	case errors.Is(de, syscall.EACCES) || errors.Is(de, syscall.EPERM):
		return &Error{Op: "dial", Kind: ErrNoAgent, Err: de,
			Msg: fmt.Sprintf("cannot connect to %s: permission denied (the lock manager's socket is for root only)", path)}
	case ctx.Err() != nil:
		return &Error{Op: "dial", Kind: ErrNoAgent, Err: ctx.Err(),
			Msg: fmt.Sprintf("no session from the lock manager at %s in time (%v): is the agent overloaded or stuck?", path, ctx.Err())}
	case de != nil:
		return &Error{Op: "dial", Kind: ErrNoAgent, Err: de, Msg: fmt.Sprintf("cannot connect to %s: %v", path, de)}
	}
	if s, ok := status.FromError(err); ok {
		return &Error{Op: "dial", Kind: ErrNoAgent, Err: err, Msg: fmt.Sprintf("the lock manager at %s refused a session: %s", path, s.Message())}
	}
	return &Error{Op: "dial", Kind: ErrNoAgent, Err: err, Msg: fmt.Sprintf("no session from the lock manager at %s: %v", path, err)}
}

// open makes the client of a session whose first frame is first.
func open(path string, conn sessionConn, first *socket.ServerFrame, fail func(error) (*Client, error)) (*Client, error) {
	if len(first.Messages) == 0 || first.Messages[0].Event != socket.EventOpen {
		return fail(errors.New("the first message is not the session's opening: is this a vigil lock manager socket?"))
	}
	c := newClient()
	t := &socketTransport{c: c, path: path, conn: conn, done: make(chan struct{}), calls: map[uint64]*op{}}
	if rc, ok := conn.(*rawConn); ok {
		rc.client.Store(c)
	}
	c.t, c.owner = t, first.Messages[0].Session
	for i := range first.Messages[1:] {
		t.handle(&first.Messages[1+i])
	}
	go t.read()
	return c, nil
}

// rawConn is a session on the socket's raw protocol.
type rawConn struct {
	client  atomic.Pointer[Client] // once the session opened
	spinDue time.Duration
	c       net.Conn
	fr      *socket.FrameReader
	buf     []byte // guarded by socketTransport.sendMu
}

// clientSpinners and clientRings are the spin groups of the process's
// sessions.
var (
	clientSpinners socket.SpinGroup
	clientRings    socket.RingGroup
)

// spinBudget is how long the reader of r spins (socket.SpinReader): for
// spinDue while the client waits for the lock manager, else for at most
// socket.SpinLinger (its caller may send the next request at once); not
// before the session opened.
func (r *rawConn) spinBudget() time.Duration {
	c := r.client.Load()
	switch {
	case c == nil:
		return 0
	case c.due.Load() > 0:
		return r.spinDue
	}
	return min(r.spinDue, socket.SpinLinger)
}

func (r *rawConn) send(reqs []socket.Request) error {
	r.buf = socket.AppendRawRequests(r.buf[:0], reqs)
	_, err := r.c.Write(r.buf)
	if cap(r.buf) > 1<<20 {
		r.buf = nil // a burst's large buffer is not kept
	}
	return err
}

func (r *rawConn) recv(f *socket.ServerFrame) error {
	b, err := r.fr.Next()
	if err != nil {
		return err
	}
	return socket.Codec{}.Unmarshal(b, f)
}

func (r *rawConn) closeSend() error {
	if cw, ok := r.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return r.c.Close()
}

func (r *rawConn) close() error {
	if r.c == nil {
		return nil
	}
	return r.c.Close()
}

// grpcConn is a session on the socket's gRPC stream.
type grpcConn struct {
	cc     *grpc.ClientConn
	stream grpc.ClientStream
	cancel context.CancelFunc
}

func (g *grpcConn) send(reqs []socket.Request) error {
	return g.stream.SendMsg(&socket.ClientFrame{Requests: reqs})
}

func (g *grpcConn) recv(f *socket.ServerFrame) error { return g.stream.RecvMsg(f) }
func (g *grpcConn) closeSend() error                 { return g.stream.CloseSend() }

func (g *grpcConn) close() error {
	g.cancel()
	return g.cc.Close()
}

func (t *socketTransport) do(o *op) {
	if o.kind == cluster.OpEnqueue && (!utf8.ValidString(o.lock.ls) || !utf8.ValidString(o.lock.name)) {
		t.c.answered(o, LockID{}, o.lock.fail(ErrInvalid, "the resource or lockspace name is not valid UTF-8: names sent over the agent's socket must be UTF-8 text"))
		return
	}
	r := socket.Request{Op: socketOps[o.kind], Flags: uint16(o.flags &^ dlm.Convert)}
	switch o.kind {
	case cluster.OpEnqueue:
		r.Lockspace, r.Name, r.Parent, r.Mode = o.lock.ls, o.lock.name, o.id, socket.ModeName(o.mode)
	case cluster.OpConvert:
		r.Lock, r.Mode = o.id, socket.ModeName(o.mode)
	default:
		r.Lock = o.id
	}
	if o.value != nil {
		r.Value = o.value[:]
	}
	t.mu.Lock()
	if t.err != nil {
		err := t.err
		t.mu.Unlock()
		t.c.answered(o, LockID{}, err)
		return
	}
	t.nextTag++
	r.Tag = t.nextTag
	t.calls[r.Tag] = o
	t.c.due.Add(1)
	t.queue = append(t.queue, r)
	if t.sending {
		t.mu.Unlock()
		return
	}
	t.sending = true
	for len(t.queue) > 0 {
		batch := t.queue
		if len(batch) > socket.MaxRequests {
			batch, t.queue = batch[:socket.MaxRequests:socket.MaxRequests], batch[socket.MaxRequests:]
		} else {
			t.queue = nil
		}
		t.mu.Unlock()
		t.sendMu.Lock()
		err := t.conn.send(batch)
		t.sendMu.Unlock()
		t.mu.Lock()
		if err != nil {
			// The reader sees the stream end and fails every call.
			t.queue = nil
			break
		}
	}
	t.sending = false
	t.mu.Unlock()
}

var socketOps = map[cluster.OpKind]string{
	cluster.OpEnqueue: socket.OpEnqueue, cluster.OpConvert: socket.OpConvert,
	cluster.OpUnlock: socket.OpUnlock, cluster.OpCancel: socket.OpCancel,
}

// read handles the server's messages until the stream ends.
func (t *socketTransport) read() {
	defer close(t.done)
	var f socket.ServerFrame // its messages are handled before the next frame
	for {
		if err := t.conn.recv(&f); err != nil {
			t.fail(err)
			return
		}
		for i := range f.Messages {
			t.handle(&f.Messages[i])
		}
	}
}

func (t *socketTransport) handle(m *socket.Message) {
	if m.Event == "" {
		t.mu.Lock()
		o := t.calls[m.Tag]
		delete(t.calls, m.Tag)
		if o != nil {
			t.c.due.Add(-1)
		}
		t.mu.Unlock()
		if o == nil {
			return // an answer to nothing: ignore it
		}
		var err error
		if m.Err != "" {
			err = answerErr(o, m)
		}
		t.c.answered(o, fromCluster(m.Lock), err)
		return
	}
	ev := event{lock: fromCluster(m.Lock), token: m.Token, blocked: fromCluster(m.Blocked), valBlk: m.ValBlk, valid: m.Valid}
	if md, ok := socket.ParseMode(m.Mode); ok {
		ev.mode = Mode(md)
	}
	copy(ev.value[:], m.Value)
	switch m.Event {
	case socket.EventGranted:
		ev.kind = cluster.EventGranted
	case socket.EventNotQueued:
		ev.kind = cluster.EventNotQueued
	case socket.EventCanceled:
		ev.kind = cluster.EventCanceled
	case socket.EventDeadlock:
		ev.kind = cluster.EventDeadlock
	case socket.EventBlocking:
		ev.kind = cluster.EventBlocking
	case socket.EventRefused:
		ev.kind = cluster.EventRefused
		for k, n := range socketOps {
			if n == m.Op {
				ev.op = k
			}
		}
	case socket.EventLost:
		ev.kind = cluster.EventLost
	default:
		return // an event this client does not know
	}
	if m.Err != "" {
		ev.err = &wireError{kind: m.Err, msg: m.Msg}
	}
	t.c.mu.Lock()
	t.c.dispatchLocked(ev)
	t.c.mu.Unlock()
}

// wireError is an error the server sent: its kind's name and reason.
type wireError struct{ kind, msg string }

func (e *wireError) Error() string { return e.msg }

// Is makes socket.Kind find the kind's sentinel.
func (e *wireError) Is(target error) bool {
	return kindByName(e.kind) == target || wireSentinel(e.kind) == target
}

// wireSentinel maps a wire kind to the lock manager's sentinel, for
// socket.Kind.
func wireSentinel(kind string) error {
	switch kind {
	case socket.KindLost:
		return server.ErrLost
	case socket.KindClosed:
		return server.ErrClosed
	case socket.KindNotMember:
		return cluster.ErrNotMember
	case socket.KindBusy:
		return cluster.ErrBusy
	case socket.KindRecovering:
		return cluster.ErrRecovering
	case socket.KindWrongState:
		return dlm.ErrWrongState
	case socket.KindUnknownLock:
		return dlm.ErrUnknownLock
	case socket.KindUnknownResource:
		return dlm.ErrUnknownResource
	case socket.KindHasChildren:
		return dlm.ErrHasChildren
	case socket.KindLimit:
		return dlm.ErrLimit
	case socket.KindNotMaster:
		return cluster.ErrNotMaster
	}
	return dlm.ErrInvalid
}

func answerErr(o *op, m *socket.Message) error {
	name := "lock"
	switch o.kind {
	case cluster.OpConvert:
		name = "convert"
	case cluster.OpUnlock:
		name = "unlock"
	case cluster.OpCancel:
		name = "cancel"
	}
	l := o.lock
	return &Error{Op: name, Lockspace: l.ls, Resource: l.name, Lock: l.id, Kind: kindByName(m.Err), Msg: m.Msg}
}

// fail ends the session after the stream broke or was closed.
func (t *socketTransport) fail(err error) {
	t.mu.Lock()
	closing := t.closing
	var e *Error
	switch {
	case t.aborted != "":
		e = &Error{Op: "session", Kind: ErrLost, Err: err, Msg: t.aborted + ": the client ended the session, and the lock manager released its locks: open a new session"}
	case closing:
		e = &Error{Op: "session", Kind: ErrClosed, Msg: "the lock client was closed: the lock manager released this session's locks"}
	case errors.Is(err, io.EOF):
		e = &Error{Op: "session", Kind: ErrLost, Err: err,
			Msg: fmt.Sprintf("the lock manager at %s ended the session: it released this session's locks", t.path)}
	default:
		why := err.Error()
		var (
			end *socket.EndError
			ne  *net.OpError
		)
		switch {
		case errors.As(err, &end):
			why = end.Reason
		case errors.As(err, &ne):
			why = "the agent stopped or the connection broke (" + err.Error() + ")"
		}
		if s, ok := status.FromError(err); ok {
			why = s.Message()
			if s.Code() == codes.Unavailable {
				why = "the agent stopped or the connection broke (" + s.Message() + ")"
			}
		}
		e = &Error{Op: "session", Kind: ErrLost, Err: err,
			Msg: fmt.Sprintf("the session with the lock manager at %s ended: %s: it released this session's locks", t.path, why)}
	}
	t.err = e
	calls := t.calls
	t.calls = map[uint64]*op{}
	t.c.due.Add(-int64(len(calls)))
	t.mu.Unlock()
	t.c.mu.Lock()
	t.c.endLocked(e, !closing)
	t.c.mu.Unlock()
	for _, o := range calls {
		t.c.answered(o, LockID{}, e)
	}
}

func (t *socketTransport) posts() bool { return t.post }

// abort ends the connection: the agent ends the session and releases its
// locks; the reader then fails the session with why.
func (t *socketTransport) abort(why string) {
	t.mu.Lock()
	if t.aborted != "" || t.closing {
		t.mu.Unlock()
		return
	}
	t.aborted = why
	t.mu.Unlock()
	t.conn.close()
}

func (t *socketTransport) close() error {
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	go func() {
		t.sendMu.Lock()
		t.conn.closeSend()
		t.sendMu.Unlock()
	}()
	// The server ends the session once it has released the locks.
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
	}
	err := t.conn.close()
	<-t.done
	return err
}
