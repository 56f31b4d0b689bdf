package socket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
)

func newServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{Member: "m1",
		Send: func(context.Context, *server.Batch) (server.Ack, error) { return server.Ack{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.SetView(server.View{Number: 1, Members: map[string]uint64{"m1": srv.Incarnation()}}); err != nil {
		t.Fatal(err)
	}
	srv.SetQuorum(true)
	waitFor(t, "ready", srv.Ready)
	return srv
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The protocols of the socket, for tests that run over both.
var protos = []string{"grpc", "raw"}

// serveOn serves srv on a socket and returns its path.
func serveOn(t *testing.T, srv *server.Server) string {
	t.Helper()
	return serveLog(t, srv, nil)
}

// serveLog is serveOn with a logger.
func serveLog(t *testing.T, srv *server.Server, log *slog.Logger) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dlm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, File)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g := Serve(ln, srv, log)
	t.Cleanup(g.Stop)
	return path
}

// clientStream is a client's side of a session: a gRPC stream or a raw
// connection. SendMsg takes a *ClientFrame or the bytes of one.
type clientStream interface {
	SendMsg(m any) error
	RecvMsg(m any) error
	CloseSend() error
}

// dial opens a stream of proto to the socket at path.
func dial(t *testing.T, proto, path string, opts ...grpc.CallOption) (clientStream, context.CancelFunc) {
	t.Helper()
	if proto == "raw" {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte(Magic)); err != nil {
			t.Fatal(err)
		}
		return &rawStream{c: c.(*net.UnixConn), fr: NewFrameReader(c)}, func() { c.Close() }
	}
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := cc.NewStream(ctx, &StreamDesc, Method, append(CallOptions(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return st, cancel
}

// rawStream is a client of the raw protocol.
type rawStream struct {
	c  *net.UnixConn
	fr *FrameReader
}

func (r *rawStream) SendMsg(m any) error {
	var b []byte
	switch f := m.(type) {
	case *ClientFrame:
		b = AppendRawRequests(nil, f.Requests)
	case []byte:
		b = AppendRawFrame(nil, f)
	}
	_, err := r.c.Write(b)
	return err
}

func (r *rawStream) RecvMsg(m any) error {
	b, err := r.fr.Next()
	if err != nil {
		return err
	}
	return Codec{}.Unmarshal(b, m)
}

func (r *rawStream) CloseSend() error { return r.c.CloseWrite() }

// session is a raw client of the service.
type session struct {
	t      *testing.T
	stream clientStream
	cancel context.CancelFunc
	owner  string
	tag    uint64
	got    []Message // read, not taken yet
}

func open(t *testing.T, proto, path string, opts ...grpc.CallOption) *session {
	t.Helper()
	st, cancel := dial(t, proto, path, opts...)
	s := &session{t: t, stream: st, cancel: cancel}
	m := s.next()
	if m.Event != EventOpen || !strings.HasPrefix(m.Session, "m1/") {
		t.Fatalf("first message %+v, want the open event", m)
	}
	s.owner = m.Session
	return s
}

// each runs f over each protocol.
func each(t *testing.T, f func(t *testing.T, proto string)) {
	for _, proto := range protos {
		t.Run(proto, func(t *testing.T) { f(t, proto) })
	}
}

func (s *session) send(reqs ...Request) {
	s.t.Helper()
	for i := range reqs {
		if reqs[i].Tag == 0 {
			s.tag++
			reqs[i].Tag = s.tag
		}
	}
	if err := s.stream.SendMsg(&ClientFrame{Requests: reqs}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *session) next() Message {
	s.t.Helper()
	for len(s.got) == 0 {
		var f ServerFrame
		if err := s.stream.RecvMsg(&f); err != nil {
			s.t.Fatalf("stream ended: %v", err)
		}
		s.got = f.Messages
	}
	m := s.got[0]
	s.got = s.got[1:]
	return m
}

// end reads until the stream ends and returns why.
func (s *session) end() error {
	for {
		var f ServerFrame
		if err := s.stream.RecvMsg(&f); err != nil {
			return err
		}
	}
}

func enqueue(name, mode string) Request {
	return Request{Op: OpEnqueue, Lockspace: "ls", Name: name, Mode: mode}
}

func TestAnswerBeforeEvents(t *testing.T) { each(t, testAnswerBeforeEvents) }

func testAnswerBeforeEvents(t *testing.T, proto string) {
	srv := newServer(t)
	s := open(t, proto, serveOn(t, srv))
	s.send(enqueue("r", "EX"))
	a := s.next()
	if a.Tag != 1 || a.Event != "" || a.Err != "" || a.Lock.Member != "m1" {
		t.Fatalf("answer %+v", a)
	}
	g := s.next()
	if g.Event != EventGranted || g.Lock != a.Lock || g.Mode != "EX" || g.Token == 0 {
		t.Fatalf("after the answer %+v, want the grant of %v", g, a.Lock)
	}
	// A waiting request, then its grant from another session's unlock.
	o := open(t, proto, serveOn(t, srv))
	o.send(enqueue("r", "PR"))
	wa := o.next()
	if wa.Err != "" {
		t.Fatal(wa)
	}
	if b := s.next(); b.Event != EventBlocking || b.Lock != a.Lock || b.Blocked != wa.Lock || b.Mode != "PR" {
		t.Fatalf("holder got %+v, want a blocking notification", b)
	}
	s.send(Request{Op: OpUnlock, Lock: a.Lock})
	if u := s.next(); u.Tag != 2 || u.Err != "" {
		t.Fatalf("unlock answer %+v", u)
	}
	if g := o.next(); g.Event != EventGranted || g.Lock != wa.Lock || g.Mode != "PR" {
		t.Fatalf("waiter got %+v, want its grant", g)
	}
}

func TestRefusalsAreAnswers(t *testing.T) { each(t, testRefusalsAreAnswers) }

func testRefusalsAreAnswers(t *testing.T, proto string) {
	srv := newServer(t)
	s := open(t, proto, serveOn(t, srv))
	s.send(enqueue("p", "EX"))
	p := s.next()
	s.next() // granted
	s.send(Request{Op: OpEnqueue, Lockspace: "ls", Name: "c", Parent: p.Lock, Mode: "EX"})
	c := s.next()
	if c.Err != "" {
		t.Fatal(c)
	}
	s.next() // granted
	s.send(Request{Op: OpUnlock, Lock: p.Lock})
	if a := s.next(); a.Tag != 3 || a.Err != KindHasChildren || !strings.Contains(a.Msg, "sub-lock") {
		t.Fatalf("unlock of a parent: %+v, want a has-children answer", a)
	}
	s.send(Request{Op: OpCancel, Lock: c.Lock})
	if a := s.next(); a.Err != KindWrongState {
		t.Fatalf("cancel of a granted lock: %+v, want a wrong-state answer", a)
	}
	s.send(Request{Op: OpUnlock, Lock: cluster.LockID{Member: "m1", N: 999}})
	if a := s.next(); a.Err != KindUnknownLock {
		t.Fatalf("unlock of no lock: %+v", a)
	}
	s.send(Request{Op: OpEnqueue, Lockspace: "ls", Name: "x", Mode: "XX"})
	if a := s.next(); a.Err != KindInvalid || !strings.Contains(a.Msg, `mode "XX" is unknown`) {
		t.Fatalf("bad mode: %+v", a)
	}
	// The session still works, and no refused event was left behind.
	s.send(Request{Op: OpUnlock, Lock: c.Lock})
	if a := s.next(); a.Err != "" || a.Tag != 7 {
		t.Fatalf("unlock after the refusals: %+v", a)
	}
}

func TestDisconnectReleases(t *testing.T) { each(t, testDisconnectReleases) }

func testDisconnectReleases(t *testing.T, proto string) {
	srv := newServer(t)
	path := serveOn(t, srv)
	s := open(t, proto, path)
	s.send(enqueue("r", "EX"), enqueue("q", "PW"))
	s.next()
	s.next()
	waitFor(t, "two locks", func() bool { return len(srv.Locks().Held) == 2 })
	s.cancel()
	waitFor(t, "the locks to be released", func() bool { return len(srv.Locks().Held) == 0 && srv.Stats().Sessions == 0 })

	// A client that closes its side: the server ends the stream after
	// releasing.
	s = open(t, proto, path)
	s.send(enqueue("r", "EX"))
	s.next()
	if err := s.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := s.end(); !errors.Is(err, io.EOF) {
		t.Fatalf("the stream ended with %v, want EOF", err)
	}
	if n := len(srv.Locks().Held); n != 0 {
		t.Fatalf("%d locks left after the stream ended", n)
	}
}

// rawCodec sends bytes as they are.
type rawCodec struct{ Codec }

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }

func TestBadFrameEndsSession(t *testing.T) { each(t, testBadFrameEndsSession) }

func testBadFrameEndsSession(t *testing.T, proto string) {
	srv := newServer(t)
	path := serveOn(t, srv)
	s := open(t, proto, path, grpc.ForceCodec(rawCodec{}))
	if err := s.stream.SendMsg([]byte(`{"reqs":[{"tag":1,`)); err != nil {
		t.Fatal(err)
	}
	err := s.end()
	if err == nil || !strings.Contains(err.Error(), "does not decode as JSON requests") {
		t.Fatalf("after a broken frame: %v", err)
	}
	big := `{"reqs":[` + strings.Repeat(`{"tag":1,"op":"cancel"},`, MaxRequests) + `{"tag":1}]}`
	s = open(t, proto, path, grpc.ForceCodec(rawCodec{}))
	s.stream.SendMsg([]byte(big))
	err = s.end()
	if err == nil || !strings.Contains(err.Error(), "send at most "+strconv.Itoa(MaxRequests)) {
		t.Fatalf("after a frame of too many requests: %v", err)
	}
	waitFor(t, "the sessions to end", func() bool { return srv.Stats().Sessions == 0 })
}

// A session's queue holds at most maxPending messages; the callback ends
// the session beyond.
func TestQueueBound(t *testing.T) {
	srv := newServer(t)
	defer func(n int) { maxPending = n }(maxPending)
	maxPending = 10
	st := &stream{wake: make(chan struct{}, 1), dead: make(chan struct{})}
	ss, err := srv.Open(st.onEvent)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	for i := range 11 {
		if _, err := ss.Enqueue(cluster.Request{Lockspace: "ls", Name: "r" + strconv.Itoa(i), Mode: dlm.EX}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-st.dead:
	default:
		t.Fatalf("11 grants and no reader: the queue has %d messages and the session goes on", len(st.out))
	}
	if len(st.out) != 10 || status.Code(st.failed) != codes.ResourceExhausted || !strings.Contains(st.failed.Error(), "does not read its notifications") {
		t.Fatalf("queue %d, failure %v", len(st.out), st.failed)
	}
}

// A client that sends and never reads loses its session, and its locks.
func TestSlowReaderLosesSession(t *testing.T) { each(t, testSlowReaderLosesSession) }

func testSlowReaderLosesSession(t *testing.T, proto string) {
	srv := newServer(t)
	defer func(n int) { maxPending = n }(maxPending)
	maxPending = 100
	if proto == "raw" {
		// More than the reader queues before it writes (MaxMessages and
		// a frame's answers and grants).
		maxPending = 5000
	}
	var logged syncBuffer
	s := open(t, proto, serveLog(t, srv, slog.New(slog.NewTextHandler(&logged, nil))))
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for i := 0; err == nil; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the session of a client that never reads did not end")
		}
		reqs := make([]Request, 100)
		for j := range reqs {
			reqs[j] = enqueue("r"+strconv.Itoa(i*100+j), "NL")
			s.tag++
			reqs[j].Tag = s.tag
		}
		err = s.stream.SendMsg(&ClientFrame{Requests: reqs})
		if srv.Stats().Sessions == 0 {
			break
		}
	}
	waitFor(t, "the session to end", func() bool { return srv.Stats().Sessions == 0 })
	waitFor(t, "its locks to be released", func() bool { return len(srv.Locks().Held) == 0 })
	read := 0
	for {
		var f ServerFrame
		if err = s.stream.RecvMsg(&f); err != nil {
			break
		}
		read += len(f.Messages)
	}
	if proto == "raw" {
		// The reason comes only if no frame was cut short by the end;
		// the connection ends either way, once the socket's buffers were
		// full and maxPending more messages waited.
		var end *EndError
		if errors.As(err, &end) && !strings.Contains(err.Error(), "does not read its notifications") {
			t.Fatalf("the connection ended with %v", err)
		}
		if !strings.Contains(logged.String(), "does not read its notifications") {
			t.Fatalf("the session ended after %d messages, not for not reading: %s", read, logged.String())
		}
		return
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "does not read its notifications") {
		t.Fatalf("the stream ended with %v", err)
	}
}

func TestServerClosed(t *testing.T) { each(t, testServerClosed) }

func testServerClosed(t *testing.T, proto string) {
	srv := newServer(t)
	path := serveOn(t, srv)
	srv.Close()
	st, _ := dial(t, proto, path)
	var f ServerFrame
	err := st.RecvMsg(&f)
	if !strings.Contains(fmt.Sprint(err), "cannot open a session") {
		t.Fatalf("session on a closed lock manager: %v", err)
	}
	if proto == "grpc" && status.Code(err) != codes.Unavailable {
		t.Fatalf("session on a closed lock manager: %v, want Unavailable", err)
	}
	var end *EndError
	if proto == "raw" && !errors.As(err, &end) {
		t.Fatalf("session on a closed lock manager: %v, want the end frame", err)
	}
}

// syncBuffer is a buffer for a logger that several goroutines use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
