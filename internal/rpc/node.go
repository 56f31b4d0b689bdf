package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// JoinRequest is what `vigil member join` sends. It needs no certificate: the
// token's secret is the proof.
type JoinRequest struct {
	TokenID string     `json:"token_id"`
	Secret  string     `json:"secret"`
	Member  cdb.Member `json:"member"`
	Profile string     `json:"profile,omitempty"`
	// PublicKey is the joiner's public key (PKIX DER) to certify.
	PublicKey []byte `json:"public_key"`
	// Version is the joiner's vigil version.
	Version string `json:"version"`
}

// JoinResponse carries everything a new member needs.
type JoinResponse struct {
	Cluster    cdb.Cluster `json:"cluster"`
	Member     cdb.Member  `json:"member"`
	ClusterKey []byte      `json:"cluster_key"`
	CACert     []byte      `json:"ca_cert"`
	CAKey      []byte      `json:"ca_key"`
	Cert       []byte      `json:"cert"`
	AdminToken string      `json:"admin_token"`
	Peers      []string    `json:"peers"`
}

// ForwardResponse is the result of a command applied by the director.
type ForwardResponse struct {
	Member *cdb.Member `json:"member,omitempty"`
	Index  uint64      `json:"index"`
}

// LogLevelRequest sets a member's log level.
type LogLevelRequest struct {
	Level string `json:"level"`
}

// BackupResponse is a backup file made by the director.
type BackupResponse struct {
	Data []byte `json:"data"`
}

// RenewRequest asks the director to renew the caller's lease.
type RenewRequest struct {
	Member string `json:"member"`
	// Links says, per link, whether the member sees any other member on
	// it (for DISCONNECTED).
	Links []bool `json:"links,omitempty"`
	// DLM is the incarnation of the member's lock manager (for the lock
	// manager's view).
	DLM uint64 `json:"dlm,omitempty"`
}

// RenewResponse answers a renewal.
type RenewResponse struct {
	Granted bool `json:"granted"`
	// Index is the index of the last command the director's state machine
	// had applied at the grant: the member acts on orders only once its own
	// state is that far, so it never acts on an order the director has
	// already replaced.
	Index uint64 `json:"index"`
}

// Empty is an empty message.
type Empty struct{}

// Node is the node service a member offers to the others.
type Node interface {
	Join(context.Context, *JoinRequest) (*JoinResponse, error)
	Forward(context.Context, *cdb.Command) (*ForwardResponse, error)
	LogLevel(context.Context, *LogLevelRequest) (*Empty, error)
	Backup(context.Context, *Empty) (*BackupResponse, error)
	Renew(context.Context, *RenewRequest) (*RenewResponse, error)

	// The lock manager's director deadlock search and `vigil locks` (its
	// batches between members travel on ProtoDLM connections).
	DLMEdges(context.Context, *Empty) (*DLMEdgesResponse, error)
	DLMAbort(context.Context, *DLMAbortRequest) (*Empty, error)
	DLMLocks(context.Context, *Empty) (*cluster.Table, error)

	// Links is the member's measure of its links to the others.
	Links(context.Context, *Empty) (*LinksResponse, error)
	// Doctor is what the member checks of itself for `vigil doctor`.
	Doctor(context.Context, *Empty) (*DoctorFacts, error)
	// Exec runs a command on the member for `vigil exec`.
	Exec(context.Context, *ExecRequest) (*client.ExecResult, error)
}

// DoctorFacts are what a member reports of itself to `vigil doctor`.
type DoctorFacts struct {
	Member    string `json:"member"`
	ClusterID string `json:"cluster_id"`
	Version   string `json:"version"`
	Profile   string `json:"profile"`
	// Now is the member's clock when the call arrived; Took is how long
	// its checks took after that (for the clock skew).
	Now       time.Time         `json:"now"`
	Took      time.Duration     `json:"took"`
	CertUntil time.Time         `json:"cert_until"`
	CAUntil   time.Time         `json:"ca_until"`
	CAPrint   string            `json:"ca_fingerprint"`
	Attrs     map[string]string `json:"attributes,omitempty"`
	// Findings are the member's own checks (resource agents, fence and
	// alert executables, file modes).
	Findings []client.Finding `json:"findings,omitempty"`
}

// ExecRequest asks a member to run a command; By is who asked (audited by
// the member that took the request).
type ExecRequest struct {
	Command []string      `json:"command"`
	Timeout time.Duration `json:"timeout"`
	By      string        `json:"by"`
}

// LinksResponse carries a member's link measures.
type LinksResponse struct {
	Links []client.LinkStat `json:"links"`
}

// DLMEdgesResponse carries the wait-for edges of a member's masters.
type DLMEdgesResponse struct {
	Edges []cluster.Edge `json:"edges"`
}

// DLMAbortRequest asks the member of a deadlock victim's client to abort
// its request.
type DLMAbortRequest struct {
	Lock cluster.LockID `json:"lock"`
}

const serviceName = "vigil.Node"

func method[Req, Resp any](name string, fn func(Node, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		req := new(Req)
		if err := dec(req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s: request does not decode: %v", name, err)
		}
		h := func(ctx context.Context, r any) (any, error) {
			resp, err := fn(srv.(Node), ctx, r.(*Req))
			if err != nil {
				return nil, toStatus(err)
			}
			return resp, nil
		}
		if ic == nil {
			return h(ctx, req)
		}
		return ic(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + serviceName + "/" + name}, h)
	}}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*Node)(nil),
	Methods: []grpc.MethodDesc{
		method("Join", Node.Join),
		method("Forward", Node.Forward),
		method("LogLevel", Node.LogLevel),
		method("Backup", Node.Backup),
		method("Renew", Node.Renew),
		method("DLMEdges", Node.DLMEdges),
		method("DLMAbort", Node.DLMAbort),
		method("DLMLocks", Node.DLMLocks),
		method("Links", Node.Links),
		method("Exec", Node.Exec),
		method("Doctor", Node.Doctor),
	},
}

// MaxMessage bounds a node-service message.
const MaxMessage = 16 << 20

// Serve runs the node service on the mux until it is closed.
func Serve(m *Mux, n Node, log *slog.Logger) *grpc.Server {
	s := grpc.NewServer(
		grpc.Creds(muxCreds{}),
		grpc.ForceServerCodec(jsonCodec{}),
		grpc.MaxRecvMsgSize(MaxMessage),
		grpc.UnaryInterceptor(requireMember(log, m)),
	)
	s.RegisterService(&serviceDesc, n)
	go s.Serve(newGRPCListener(m))
	return s
}

// requireMember refuses every method but Join from a peer without a
// certificate of the cluster CA.
func requireMember(log *slog.Logger, m *Mux) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == "/"+serviceName+"/Join" {
			return h(ctx, req)
		}
		if PeerMember(ctx) == "" {
			p, _ := peer.FromContext(ctx)
			log.Warn("refused node call without a cluster certificate", "method", info.FullMethod, "from", p.Addr)
			return nil, status.Error(codes.Unauthenticated, "this call needs a member certificate of this cluster")
		}
		if cn, serial := peerCert(ctx); m.Allow != nil && !m.Allow(cn, serial) {
			log.Warn("refused node call from a certificate that no longer speaks for a member", "method", info.FullMethod, "cn", cn, "from", PeerAddr(ctx))
			return nil, status.Errorf(codes.PermissionDenied, "the certificate of %s does not speak for a member of this cluster (removed?)", cn)
		}
		return h(ctx, req)
	}
}

// PeerMember is the member name of a verified peer, or "".
func PeerMember(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || pki.PeerLeaf(ti.State) == nil {
		return ""
	}
	return pki.PeerLeaf(ti.State).Subject.CommonName
}

func peerCert(ctx context.Context) (string, string) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || pki.PeerLeaf(ti.State) == nil {
		return "", ""
	}
	leaf := pki.PeerLeaf(ti.State)
	return leaf.Subject.CommonName, pki.Serial(leaf.SerialNumber)
}

// PeerAddr is the remote address of the caller.
func PeerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	return ""
}

var kindCodes = []struct {
	kind error
	code codes.Code
}{
	{cdb.ErrNoQuorum, codes.Unavailable},
	{cdb.ErrUnreachable, codes.DeadlineExceeded},
	{cdb.ErrNotFound, codes.NotFound},
	{cdb.ErrConflict, codes.AlreadyExists},
	{cdb.ErrDenied, codes.PermissionDenied},
	{cdb.ErrInvalid, codes.InvalidArgument},
	{cdb.ErrRefused, codes.FailedPrecondition},
	{cdb.ErrNotLeader, codes.Aborted},
}

func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, kc := range kindCodes {
		if errors.Is(err, kc.kind) {
			return status.Error(kc.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.Unavailable && !strings.HasPrefix(st.Message(), "no quorum") {
		return cdb.Refuse(cdb.ErrUnreachable, "%s", st.Message())
	}
	for _, kc := range kindCodes {
		if st.Code() == kc.code {
			return cdb.Refuse(kc.kind, "%s", st.Message())
		}
	}
	return errors.New(st.Message())
}

// Pool keeps one client connection per member address.
type Pool struct {
	id    *pki.Identity
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // guarded by mu
}

// NewPool returns a pool that dials with the member identity.
func NewPool(id *pki.Identity) *Pool { return &Pool{id: id, conns: map[string]*grpc.ClientConn{}} }

func (p *Pool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(p.id.ClientConfig(""))),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(jsonCodec{}), grpc.MaxCallRecvMsgSize(MaxMessage)))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

// Renew makes every later call dial again (with the identity's current
// certificate, after a renewal); the old connections are closed after
// grace, so calls under way on them finish.
func (p *Pool) Renew(grace time.Duration) {
	p.mu.Lock()
	old := p.conns
	p.conns = map[string]*grpc.ClientConn{}
	p.mu.Unlock()
	time.AfterFunc(grace, func() {
		for _, c := range old {
			c.Close()
		}
	})
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		c.Close()
		delete(p.conns, a)
	}
}

// Call invokes a node-service method on the member at addr.
func (p *Pool) Call(ctx context.Context, addr, name string, req, resp any) error {
	c, err := p.conn(addr)
	if err != nil {
		return err
	}
	return invoke(ctx, c, name, req, resp)
}

func invoke(ctx context.Context, c *grpc.ClientConn, name string, req, resp any) error {
	if err := c.Invoke(ctx, "/"+serviceName+"/"+name, req, resp); err != nil {
		return fromStatus(err)
	}
	return nil
}

// Join sends a join request to the member at addr, trusting it only if its
// CA has the token's fingerprint.
func Join(ctx context.Context, addr, fingerprint string, req *JoinRequest) (*JoinResponse, error) {
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(pki.PinnedConfig(fingerprint, ProtoGRPC))),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(jsonCodec{}), grpc.MaxCallRecvMsgSize(MaxMessage)))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var resp JoinResponse
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := invoke(ctx, c, "Join", req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Cert) == 0 {
		return nil, fmt.Errorf("the member at %s answered the join without a certificate", addr)
	}
	return &resp, nil
}
