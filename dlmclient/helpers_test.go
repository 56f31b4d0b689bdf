package dlmclient

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
)

// newServer returns a ready lock manager of one member, m1, with a short
// deadlock wait.
func newServer(tb testing.TB) *server.Server {
	tb.Helper()
	srv, err := server.New(server.Config{
		Member: "m1",
		Send:   func(context.Context, *server.Batch) (server.Ack, error) { return server.Ack{}, nil },
		Node:   cluster.Config{Engine: dlm.Options{DeadlockWait: time.Millisecond, MaxLocks: 1 << 22}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	if err := srv.SetView(server.View{Number: 1, Members: map[string]uint64{"m1": srv.Incarnation()}}); err != nil {
		tb.Fatal(err)
	}
	srv.SetQuorum(true)
	waitFor(tb, "the lock manager to be ready", srv.Ready)
	return srv
}

// serve serves srv on a Unix socket in a fresh directory and returns its
// path.
func serve(tb testing.TB, srv *server.Server) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "dlm")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, socket.File)
	ln, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	g := socket.Serve(ln, srv, nil)
	tb.Cleanup(g.Stop)
	return path
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// rig opens clients on one lock manager: in-process ("local"), or over its
// socket with the ring protocol ("socket"), the raw protocol ("raw") or
// gRPC ("grpc").
type rig struct {
	tb   testing.TB
	srv  *server.Server
	kind string
	path string
}

func newRig(tb testing.TB, kind string) *rig {
	r := &rig{tb: tb, srv: newServer(tb), kind: kind}
	if kind != "local" {
		r.path = serve(tb, r.srv)
	}
	return r
}

func (r *rig) client() *Client {
	r.tb.Helper()
	var (
		c   *Client
		err error
	)
	switch r.kind {
	case "socket":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err = Dial(ctx, r.path)
	case "raw":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err = dialRaw(ctx, r.path)
	case "grpc":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err = DialGRPC(ctx, r.path)
	default:
		c, err = Local(r.srv)
	}
	if err != nil {
		r.tb.Fatal(err)
	}
	r.tb.Cleanup(func() { c.Close() })
	return c
}

// held returns the locks the lock manager holds for its clients.
func (r *rig) held() []cluster.LockInfo { return r.srv.Locks().Held }

// both runs f for a Local client rig and a socket one of each protocol.
func both(t *testing.T, f func(t *testing.T, r *rig)) {
	for _, kind := range []string{"local", "socket", "raw", "grpc"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f(t, newRig(t, kind))
		})
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// notDone fails when p completed.
func notDone(t *testing.T, p *Pending) {
	t.Helper()
	select {
	case <-p.Done():
		l, err := p.Result()
		t.Fatalf("request completed early: %v %v", l, err)
	case <-time.After(20 * time.Millisecond):
	}
}

// result waits at most 5 s for p and returns its result.
func result(t *testing.T, p *Pending) (*Lock, error) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not complete within 5s")
	}
	return p.Result()
}

// dialRaw is Dial with the raw protocol.
func dialRaw(ctx context.Context, path string) (*Client, error) { return Dial(ctx, path, NoRings()) }

// dialRings is Dial with its default options: shared rings.
func dialRings(ctx context.Context, path string) (*Client, error) { return Dial(ctx, path) }
