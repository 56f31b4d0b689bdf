package dlmclient

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
)

func TestDialErrors(t *testing.T) {
	t.Run("rings", func(t *testing.T) { testDialErrors(t, dialRings) })
	t.Run("raw", func(t *testing.T) { testDialErrors(t, dialRaw) })
	t.Run("grpc", func(t *testing.T) { testDialErrors(t, DialGRPC) })
}

func testDialErrors(t *testing.T, Dial func(context.Context, string) (*Client, error)) {
	dir, err := os.MkdirTemp("", "dlm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := ctxT(t)

	missing := filepath.Join(dir, "missing.sock")
	_, err = Dial(ctx, missing)
	if !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), missing+" does not exist: the vigil agent is not running on this member") {
		t.Errorf("missing socket: %v", err)
	}

	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err = Dial(ctx, file); !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("a plain file: %v", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err = Dial(ctx, stale); !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), "nothing listens on "+stale) {
		t.Errorf("a stale socket: %v", err)
	}

	// A listener that never speaks: Dial gives up with its context.
	mute := filepath.Join(dir, "mute.sock")
	ln, err = net.Listen("unix", mute)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err = Dial(short, mute); !errors.Is(err, ErrNoAgent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a mute socket: %v", err)
	}
}

// When the agent goes away, the session's locks are lost and the agent
// released them.
func TestConnectionLost(t *testing.T) {
	for _, dial := range []func(context.Context, string) (*Client, error){dialRings, dialRaw, DialGRPC} {
		testConnectionLost(t, dial)
	}
}

func testConnectionLost(t *testing.T, dial func(context.Context, string) (*Client, error)) {
	srv := newServer(t)
	dir, err := os.MkdirTemp("", "dlm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, socket.File)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g := socket.Serve(ln, srv, nil)
	ctx := ctxT(t)
	c, err := dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.Lock(ctx, "res", EX)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.LockAsync("other", EX, NoQueue())
	if err != nil {
		t.Fatal(err)
	}
	p.Wait(ctx)
	g.Stop()
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was not reported lost when the agent went away")
	}
	<-c.Lost()
	if err := l.Err(); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "released this session's locks") {
		t.Errorf("lost lock: %v", err)
	}
	if _, err := c.Lock(ctx, "res", EX); !errors.Is(err, ErrLost) {
		t.Errorf("lock after the connection broke: %v", err)
	}
	waitFor(t, "the agent to release the locks", func() bool { return len(srv.Locks().Held) == 0 })
}

// Many goroutines share one session over the socket.
func TestConcurrentSocketSession(t *testing.T) {
	for _, kind := range []string{"socket", "raw", "grpc"} {
		t.Run(kind, func(t *testing.T) { testConcurrentSocketSession(t, kind) })
	}
}

func testConcurrentSocketSession(t *testing.T, kind string) {
	r := newRig(t, kind)
	c := r.client()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := []string{"shared", "mine" + string(rune('a'+w))}
			for i := range 100 {
				l, err := c.Lock(ctx, res[i%2], EX)
				if err != nil {
					errs <- err
					return
				}
				if err := l.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(r.held()); n != 0 {
		t.Fatalf("%d locks left", n)
	}
}

// pair is two lock managers that reach each other in-process.
func pair(t *testing.T) (map[string]*server.Server, server.View) {
	t.Helper()
	var mu sync.Mutex
	srvs := map[string]*server.Server{}
	send := func(ctx context.Context, b *server.Batch) (server.Ack, error) {
		mu.Lock()
		to := srvs[b.To]
		mu.Unlock()
		if to == nil {
			return server.Ack{}, errors.New("unreachable")
		}
		return to.Receive(b), nil
	}
	v := server.View{Number: 1, Members: map[string]uint64{}}
	for _, m := range []string{"m1", "m2"} {
		s, err := server.New(server.Config{Member: m, Send: send})
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
		if err := s.SetView(v); err != nil {
			t.Fatal(err)
		}
		s.SetQuorum(true)
	}
	for _, s := range srvs {
		waitFor(t, "ready", s.Ready)
	}
	return srvs, v
}

// rootOn returns a resource name that member m masters.
func rootOn(v server.View, ls, m string) string {
	cv := cluster.View{Number: v.Number, Members: v.Names()}
	for i := 0; ; i++ {
		r := "res" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		if cluster.Master(cv, ls, r) == m {
			return r
		}
	}
}

// Locks mastered on another member: completions and refusals come later
// than the answers.
func TestRemoteMaster(t *testing.T) {
	srvs, v := pair(t)
	const ls = "fixed.remote" // each resource stays on its hash master
	res := rootOn(v, ls, "m2")
	for _, kind := range []string{"local", "socket", "raw", "grpc"} {
		t.Run(kind, func(t *testing.T) {
			ctx := ctxT(t)
			open := func(s *server.Server) *Client {
				var c *Client
				var err error
				switch kind {
				case "local":
					c, err = Local(s)
				case "socket":
					c, err = Dial(ctx, serve(t, s))
				case "raw":
					c, err = dialRaw(ctx, serve(t, s))
				default:
					c, err = DialGRPC(ctx, serve(t, s))
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			a, b := open(srvs["m1"]), open(srvs["m2"])
			l, err := a.Lock(ctx, res, PW, ValueBlock(), Lockspace(ls))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Lock(ctx, res, EX, NoQueue(), Lockspace(ls)); !errors.Is(err, ErrNotQueued) {
				t.Fatalf("EX NoQueue against a remote PW: %v", err)
			}
			p, err := b.LockAsync(res, PR, ValueBlock(), Lockspace(ls))
			if err != nil {
				t.Fatal(err)
			}
			select {
			case bl := <-l.Blocking():
				if bl.Mode != PR {
					t.Fatalf("blocking %+v", bl)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no blocking notification from the remote master")
			}
			var val Value
			copy(val[:], "remote")
			if err := l.Convert(ctx, CR, WithValue(val)); err != nil {
				t.Fatal(err)
			}
			lb, err := p.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := lb.Value(); !ok || got != val {
				t.Fatalf("value %q valid %v", got[:6], ok)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := lb.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "no locks", func() bool {
				return len(srvs["m1"].Locks().Held) == 0 && len(srvs["m2"].Locks().Held) == 0
			})
		})
	}
}

// With PostUnlocks, Unlock returns once the release is sent: the
// session's next request comes after it, and Sync waits until the lock
// manager took it.
func TestPostedUnlock(t *testing.T) {
	r := newRig(t, "socket")
	a, b := dialT(t, r.path, PostUnlocks()), r.client()
	ctx := ctxT(t)
	for i := range 200 {
		l, err := a.Lock(ctx, "res", EX, NoQueue())
		if err != nil {
			t.Fatalf("lock %d right after the session's unlock: %v", i, err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if len(a.Locks()) != 0 {
			t.Fatalf("the session still lists %d locks after Unlock", len(a.Locks()))
		}
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(r.held()); n != 0 {
		t.Fatalf("%d locks held after Sync", n)
	}
	// Another session sees the release once Sync returned.
	l, err := a.Lock(ctx, "res", PW, NoQueue())
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock(ctx)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(ctx, "res", EX, NoQueue()); err != nil {
		t.Fatalf("another session's lock after Sync: %v", err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatalf("Sync with nothing sent: %v", err)
	}
}

// fakeAgent serves one raw session on a socket, as an agent older than the
// ring protocol (so the client falls back to the raw protocol): it grants every lock and
// answers every other request with refusal (a lock manager that refuses a
// release the client could not foresee).
func fakeAgent(t *testing.T, refusal socket.Message) (path string, ended <-chan error) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "dlm.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		var c net.Conn
		for {
			var err error
			if c, err = ln.Accept(); err != nil {
				done <- err
				return
			}
			magic := make([]byte, len(socket.Magic))
			if _, err := io.ReadFull(c, magic); err != nil {
				done <- err
				return
			}
			if string(magic) == socket.Magic {
				break
			}
			// An agent older than the ring protocol.
			io.WriteString(c, "vigil lock manager socket: unknown protocol\n")
			c.Close()
		}
		defer c.Close()
		send := func(msgs ...socket.Message) error {
			_, err := c.Write(socket.AppendRawMessages(nil, msgs))
			return err
		}
		if err := send(socket.Message{Event: socket.EventOpen, Session: "m1/1"}); err != nil {
			done <- err
			return
		}
		fr := socket.NewFrameReader(c)
		n := uint64(0)
		for {
			b, err := fr.Next()
			if err != nil {
				done <- err
				return
			}
			f, err := socket.DecodeFrame(b)
			if err != nil {
				done <- err
				return
			}
			for _, r := range f.Requests {
				if r.Op != socket.OpEnqueue {
					m := refusal
					m.Tag = r.Tag
					send(m)
					continue
				}
				n++
				id := cluster.LockID{Member: "m1", N: n}
				send(socket.Message{Tag: r.Tag, Lock: id}, socket.Message{Event: socket.EventGranted, Lock: id, Mode: "EX", Token: n})
			}
		}
	}()
	return path, done
}

// dialT opens a raw session on the socket at path, closed at the test's end.
func dialT(t *testing.T, path string, opts ...DialOption) *Client {
	t.Helper()
	c, err := Dial(ctxT(t), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPostedUnlockRefused(t *testing.T) {
	path, ended := fakeAgent(t, socket.Message{Err: socket.KindBusy, Msg: "the lock manager is busy"})
	ctx := ctxT(t)
	c := dialT(t, path, PostUnlocks())
	l, err := c.Lock(ctx, "res", EX)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("posted unlock: %v", err)
	}
	select {
	case <-c.Lost():
	case <-ctx.Done():
		t.Fatal("the session did not end after the lock manager refused a posted release")
	}
	err = c.Err()
	if !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "refused the release") || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("session error: %v", err)
	}
	if err := <-ended; !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the agent's side of the connection: %v", err)
	}
	if _, err := c.Lock(ctx, "res", EX); !errors.Is(err, ErrLost) {
		t.Fatalf("lock after the session ended: %v", err)
	}
}

// A posted release that finds its lock gone leaves the session working;
// Sync reports that the lock was lost before Unlock (once).
func TestPostedUnlockAlreadyGone(t *testing.T) {
	path, _ := fakeAgent(t, socket.Message{Err: socket.KindUnknownLock, Msg: "lock m1/1 is not a lock of this member's clients"})
	ctx := ctxT(t)
	c := dialT(t, path, PostUnlocks())
	for range 3 {
		l, err := c.Lock(ctx, "res", EX)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Sync(ctx); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "already gone") {
		t.Fatalf("Sync after releases of lost locks: %v, want ErrLost", err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatalf("a second Sync: %v", err)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
}

// Without PostUnlocks, Unlock waits for the lock manager: a release that
// finds its lock gone is Unlock's error.
func TestUnlockWaitsByDefault(t *testing.T) {
	path, _ := fakeAgent(t, socket.Message{Err: socket.KindUnknownLock, Msg: "lock m1/1 is not a lock of this member's clients"})
	ctx := ctxT(t)
	c := dialT(t, path)
	l, err := c.Lock(ctx, "res", EX)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, ErrUnknownLock) {
		t.Fatalf("unlock of a lock the agent no longer has: %v, want ErrUnknownLock", err)
	}
}
