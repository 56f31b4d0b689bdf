// Package rpc owns node-to-node traffic on a member's cluster port: one TLS 1.3
// listener whose connections are routed by ALPN to Raft ("vigil-raft") or to
// the gRPC node service ("h2"), the Raft stream layer over it, and the typed
// gRPC client and server of the node service. It must not hold cluster state;
// it carries requests to a Node implementation.
package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vigil-cluster/vigil/internal/pki"
)

// ALPN protocol names.
const (
	ProtoRaft = "vigil-raft"
	ProtoGRPC = "h2"
	// ProtoDLM carries the lock manager's batches (dlm.go): framed JSON
	// on a raw TLS stream, one reader and one writer per side, fewer
	// goroutine hand-offs than a gRPC stream.
	ProtoDLM = "vigil-dlm"
	// ProtoDLM2 is ProtoDLM with binary frames (dlmcodec.go); members
	// prefer it and fall back to ProtoDLM with an older one.
	ProtoDLM2 = "vigil-dlm/2"
)

// The lock manager protocols a member accepts and offers, the newest
// first (variables for the tests of a mixed-version cluster).
var (
	serveDLMProtos = []string{ProtoDLM2, ProtoDLM}
	dialDLMProtos  = []string{ProtoDLM2, ProtoDLM}
)

// handshakeTimeout bounds a TLS handshake on the cluster port.
const handshakeTimeout = 5 * time.Second

// Mux accepts TLS connections on the cluster port and routes them.
type Mux struct {
	ln   net.Listener
	id   *pki.Identity
	log  *slog.Logger
	raft chan net.Conn
	grpc chan net.Conn
	dlm  chan net.Conn
	done chan struct{}
	once sync.Once
	// Allow, when set, says whether a verified certificate (common name,
	// serial in hex) still speaks for a member; a removed member's
	// certificate is refused. Set once by Listen.
	Allow func(cn, serial string) bool
}

// Listen opens the cluster port. allow (may be nil) says whether a verified
// certificate still speaks for a member.
func Listen(addr string, id *pki.Identity, log *slog.Logger, allow func(cn, serial string) bool) (*Mux, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &Mux{ln: ln, id: id, log: log, raft: make(chan net.Conn, 16), grpc: make(chan net.Conn, 16), dlm: make(chan net.Conn, 16), done: make(chan struct{}), Allow: allow}
	go m.serve()
	return m, nil
}

// Addr is the listening address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close stops accepting.
func (m *Mux) Close() error {
	m.once.Do(func() { close(m.done) })
	return m.ln.Close()
}

func (m *Mux) serve() {
	cfg := m.id.ServerConfig(append([]string{ProtoRaft, ProtoGRPC}, serveDLMProtos...)...)
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			m.log.Warn("cluster port accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go m.route(tls.Server(c, cfg))
	}
}

func (m *Mux) route(c *tls.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		m.log.Debug("TLS handshake on cluster port failed", "from", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	st := c.ConnectionState()
	var ch chan net.Conn
	switch st.NegotiatedProtocol {
	case ProtoRaft, ProtoDLM, ProtoDLM2:
		what := map[string]string{ProtoRaft: "Raft", ProtoDLM: "lock manager", ProtoDLM2: "lock manager"}[st.NegotiatedProtocol]
		leaf := pki.PeerLeaf(st)
		if leaf == nil {
			m.log.Warn("refused "+what+" connection without a cluster certificate", "from", c.RemoteAddr())
			c.Close()
			return
		}
		if m.Allow != nil && !m.Allow(leaf.Subject.CommonName, pki.Serial(leaf.SerialNumber)) {
			m.log.Warn("refused "+what+" connection from a certificate that no longer speaks for a member", "from", c.RemoteAddr(), "cn", leaf.Subject.CommonName)
			c.Close()
			return
		}
		ch = m.raft
		if st.NegotiatedProtocol != ProtoRaft {
			ch = m.dlm
		}
	case ProtoGRPC:
		ch = m.grpc
	default:
		m.log.Warn("refused connection with unknown protocol", "from", c.RemoteAddr(), "alpn", st.NegotiatedProtocol)
		c.Close()
		return
	}
	select {
	case ch <- c:
	case <-m.done:
		c.Close()
	}
}

// AcceptDLM returns the next lock manager connection (its peer's
// certificate verified and allowed).
func (m *Mux) AcceptDLM() (*tls.Conn, error) {
	select {
	case c := <-m.dlm:
		return c.(*tls.Conn), nil
	case <-m.done:
		return nil, errors.New("cluster port closed")
	}
}

// RaftLayer returns the Raft stream layer on this mux.
func (m *Mux) RaftLayer() raft.StreamLayer { return &raftLayer{m: m} }

type raftLayer struct{ m *Mux }

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raft:
		return c, nil
	case <-l.m.done:
		return nil, errors.New("cluster port closed")
	}
}
func (l *raftLayer) Close() error   { return nil }
func (l *raftLayer) Addr() net.Addr { return l.m.ln.Addr() }
func (l *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(addr), l.m.id.ClientConfig(ProtoRaft))
}

// grpcListener hands the mux's gRPC connections to a grpc.Server.
type grpcListener struct {
	m      *Mux
	closed chan struct{}
	once   sync.Once
}

func newGRPCListener(m *Mux) *grpcListener { return &grpcListener{m: m, closed: make(chan struct{})} }

func (l *grpcListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.grpc:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *grpcListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}
func (l *grpcListener) Addr() net.Addr { return l.m.ln.Addr() }
