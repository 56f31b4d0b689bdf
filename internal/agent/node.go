package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
	"github.com/vigil-cluster/vigil/internal/rpc"
)

// node serves the node service for the other members.
type node struct{ a *Agent }

func (n *node) Forward(ctx context.Context, c *cdb.Command) (*rpc.ForwardResponse, error) {
	if !n.a.store.IsLeader() {
		return nil, cdb.ErrNotLeader
	}
	if err := n.a.checkQuorum(); err != nil {
		return nil, err
	}
	return n.a.applyLocal(ctx, c)
}

func (n *node) LogLevel(ctx context.Context, r *rpc.LogLevelRequest) (*rpc.Empty, error) {
	return &rpc.Empty{}, n.a.setLocalLevel(r.Level)
}

func (n *node) Backup(ctx context.Context, _ *rpc.Empty) (*rpc.BackupResponse, error) {
	b, err := n.a.backupLocal()
	if err != nil {
		return nil, err
	}
	return &rpc.BackupResponse{Data: b}, nil
}

func (n *node) Join(ctx context.Context, r *rpc.JoinRequest) (*rpc.JoinResponse, error) {
	a := n.a
	from := rpc.PeerAddr(ctx)
	if !a.store.IsLeader() {
		addr, _ := a.store.Leader()
		if addr == "" || addr == a.rpcAddr() {
			return nil, a.noDirector()
		}
		var resp rpc.JoinResponse
		cctx, cancel := context.WithTimeout(ctx, 12*time.Second)
		defer cancel()
		if err := a.pool.Call(cctx, addr, "Join", r, &resp); err != nil {
			a.log.Warn("join refused", "joiner", r.Member.Name, "from", from, "reason", err)
			return nil, err
		}
		return &resp, nil
	}
	resp, err := a.admit(ctx, r)
	if err != nil {
		a.log.Warn("join refused", "joiner", r.Member.Name, "from", from, "reason", err)
		return nil, err
	}
	a.log.Info("member joined", "joiner", resp.Member.Name, "id", resp.Member.ID, "from", from)
	return resp, nil
}

// admit checks a join request on the director and, if it holds, commits the
// new member and certifies it.
func (a *Agent) admit(ctx context.Context, r *rpc.JoinRequest) (*rpc.JoinResponse, error) {
	if err := a.checkQuorum(); err != nil {
		return nil, err
	}
	st := a.store.State()
	// The secret first: a caller without it learns nothing else.
	t, ok := st.Tokens[r.TokenID]
	if !ok || cdb.HashSecret(r.Secret) != t.SecretHash {
		return nil, cdb.Refuse(cdb.ErrDenied, "join refused: the token's secret does not match any token of cluster %s (mistyped, or made by another cluster); make a new one with `vigil member add %s`", st.Cluster.Name, r.Member.Name)
	}
	m := r.Member
	if err := config.ValidName("member name", m.Name); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	if m.ID < 0 || m.ID > 65535 {
		return nil, cdb.Refuse(cdb.ErrInvalid, "id %d is out of range: must be 1-65535", m.ID)
	}
	if len(m.Links) == 0 || len(m.Links) > 8 {
		return nil, cdb.Refuse(cdb.ErrInvalid, "links: %d given, must be 1-8", len(m.Links))
	}
	for i, l := range m.Links {
		if err := config.ValidAddress(fmt.Sprintf("link %d address", i), l); err != nil {
			return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
		}
	}
	if err := config.ValidAddress("api address", m.API); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	if err := config.ValidAttributes(m.Attributes); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	// Cluster-wide attributes must match, as OpenVMS's must.
	if r.Profile != "" && r.Profile != st.Cluster.Profile {
		return nil, cdb.Refuse(cdb.ErrRefused, "member %s cannot join: timing profile does not match: cluster %s has %q, member %s has %q (join with --profile %s, or leave --profile out)", m.Name, st.Cluster.Name, st.Cluster.Profile, m.Name, r.Profile, st.Cluster.Profile)
	}
	attrs := map[string]string{}
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	for _, k := range config.SortedKeys(st.Cluster.Attributes) {
		want := st.Cluster.Attributes[k]
		if got, ok := m.Attributes[k]; ok && got != want {
			return nil, cdb.Refuse(cdb.ErrRefused, "member %s cannot join: cluster-wide attribute %s does not match: cluster %s has %q, member %s has %q (join with --attr %s=%s)", m.Name, k, st.Cluster.Name, want, m.Name, got, k, want)
		}
		attrs[k] = want
	}
	m.Attributes = attrs
	keySum := sha256.Sum256(r.PublicKey)
	keyHash := hex.EncodeToString(keySum[:])
	if t.UsedBy != "" && t.UsedBy == m.Name && t.UsedKey == keyHash {
		// The joiner lost our answer and asks again with the same key:
		// certify it again rather than strand a member that did join.
		if cur, ok := st.Members[m.Name]; ok {
			return a.joinAnswer(st, *cur, r.PublicKey, true)
		}
	}
	if t.UsedBy == "" && !time.Now().Before(t.Expires) {
		return nil, cdb.Refuse(cdb.ErrRefused, "join token expired at %s; make a new one with `vigil member add %s`", t.Expires.UTC().Format(time.RFC3339), t.Member)
	}
	if m.Witness && t.Votes == 0 {
		return nil, cdb.Refuse(cdb.ErrRefused, "member %s cannot join as a witness: its token grants 0 votes and a witness has 1; make a token with `vigil member add %s --witness`", m.Name, m.Name)
	}
	// Every address of the joiner must be reachable from here.
	for i, addr := range append(append([]string{}, m.Links...), config.RPCAddress(m.Links[0])) {
		what := fmt.Sprintf("link %d address %s", i, addr)
		if i == len(m.Links) {
			what = "cluster port " + addr
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return nil, cdb.Refuse(cdb.ErrRefused, "member %s cannot join: the director (%s) cannot reach its %s: %v; check the address, routes and firewalls", m.Name, a.cfg.Name, what, unwrapOp(err))
		}
		c.Close()
	}
	m.Votes, m.Domain = t.Votes, t.Domain
	m.Witness = m.Witness || t.Witness
	// Certify before committing, so a key we cannot certify never leaves a
	// member without a certificate behind.
	cert, serial, err := a.id.Issuer().Issue(m.Name, r.PublicKey, hostsOf(m.Links, m.API))
	if err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "member %s cannot join: %v", m.Name, err)
	}
	m.CertSerial = serial
	res, err := a.applyLocal(ctx, &cdb.Command{Op: cdb.OpJoin, At: time.Now().UTC(), By: "join from " + rpc.PeerAddr(ctx),
		Join: &cdb.JoinArgs{TokenID: r.TokenID, Secret: r.Secret, Member: m, KeyHash: keyHash}})
	if err != nil {
		return nil, err
	}
	resp, _ := a.joinAnswer(st, *res.Member, nil, false)
	resp.Cert = cert
	return resp, nil
}

// joinAnswer builds the answer to a join. With reissue it certifies the key
// again under the serial the cluster recorded for the member.
func (a *Agent) joinAnswer(st *cdb.State, joined cdb.Member, pub []byte, reissue bool) (*rpc.JoinResponse, error) {
	var peers []string
	for _, n := range st.MemberNames() {
		peers = append(peers, st.Members[n].Links[0])
	}
	resp := &rpc.JoinResponse{Cluster: st.Cluster, Member: joined, ClusterKey: a.currentKey(), CACert: a.id.Issuer().CertPEM,
		CAKey: a.id.Issuer().KeyPEM, AdminToken: a.adminToken, Peers: peers}
	if reissue {
		cert, _, err := a.id.Issuer().IssueSerial(joined.Name, pub, hostsOf(joined.Links, joined.API), joined.CertSerial)
		if err != nil {
			return nil, cdb.Refuse(cdb.ErrInvalid, "certifying member %s again: %v", joined.Name, err)
		}
		resp.Cert = cert
	}
	return resp, nil
}

func unwrapOp(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// applyLocal commits a command on this member, which must be the director.
func (a *Agent) applyLocal(ctx context.Context, c *cdb.Command) (*rpc.ForwardResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, a.prof.ApplyTimeout)
	defer cancel()
	res, idx, err := a.store.Apply(cctx, c)
	if err != nil {
		return nil, err
	}
	out := &rpc.ForwardResponse{Index: idx}
	if m, ok := res.(cdb.Member); ok {
		out.Member = &m
	}
	return out, nil
}

// quorum computes votes. A member's votes count once it has taken its place
// in the Raft voter set: a member that joined but never started does not
// raise the expected votes (VMS counts only members that took part, too), so
// the vote arithmetic and Raft's own majority always agree.
func (a *Agent) quorum() (present, expected, needed int) {
	peers := a.ml.Peers()
	voters := a.voters()
	a.store.View(func(s *cdb.State) {
		for n, m := range s.Members {
			if !voters[n] {
				continue
			}
			expected += m.Votes
			if p, ok := peers[n]; n == a.cfg.Name || (ok && p.Up()) {
				present += m.Votes
			}
		}
	})
	return present, expected, cdb.QuorumNeeded(expected)
}

// voters is the set of voters in the Raft configuration.
func (a *Agent) voters() map[string]bool {
	out := map[string]bool{}
	servers, _ := a.store.Configuration()
	for _, s := range servers {
		if s.Voter {
			out[s.ID] = true
		}
	}
	return out
}

func (a *Agent) checkQuorum() error {
	present, expected, needed := a.quorum()
	if expected == 0 {
		return nil // not initialized yet; Raft itself decides
	}
	if present < needed {
		return cdb.Refuse(cdb.ErrNoQuorum, "no quorum: %d of %d votes present, %d needed; writes are refused until enough members are back (see `vigil members`)", present, expected, needed)
	}
	return nil
}

func (a *Agent) noDirector() error {
	return cdb.Refuse(cdb.ErrNoQuorum, "no director: no member leads the cluster database right now (an election is running, or too few voters are up); try again in a few seconds, and see `vigil status`")
}

// write commits a command through the director, from any member.
func (a *Agent) write(ctx context.Context, c *cdb.Command) (*rpc.ForwardResponse, error) {
	if err := a.checkQuorum(); err != nil {
		return nil, err
	}
	if c.At.IsZero() {
		c.At = time.Now().UTC()
	}
	ctx, cancel := context.WithTimeout(ctx, a.prof.ApplyTimeout)
	defer cancel()
	for {
		var err error
		if a.store.IsLeader() {
			var res *rpc.ForwardResponse
			res, err = a.applyLocal(ctx, c)
			if err == nil {
				return res, nil
			}
		} else if addr, _ := a.store.Leader(); addr != "" {
			var res rpc.ForwardResponse
			err = a.pool.Call(ctx, addr, "Forward", c, &res)
			if err == nil {
				a.waitApplied(ctx, res.Index)
				return &res, nil
			}
		} else {
			err = a.noDirector()
		}
		if !retryable(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			if e := a.checkQuorum(); e != nil {
				return nil, e
			}
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitApplied waits (bounded by ctx) until this member has applied index, so
// a read here right after an acknowledged write sees it.
func (a *Agent) waitApplied(ctx context.Context, index uint64) {
	for a.store.FSMIndex() < index {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func retryable(err error) bool {
	for _, k := range []error{cdb.ErrNotLeader, cdb.ErrUnreachable, cdb.ErrNoQuorum} {
		if ok := errors.Is(err, k); ok {
			return !cdb.UnknownOutcome(err)
		}
	}
	return false
}

func (a *Agent) setLocalLevel(s string) error {
	l, err := config.ParseLevel(s)
	if err != nil {
		return cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	a.level.Set(l)
	a.store.SetRaftLogLevel(hcLevel(l))
	a.log.Warn("log level changed", "level", l.String())
	return nil
}

func (a *Agent) backupLocal() ([]byte, error) {
	if !a.store.IsLeader() {
		return nil, cdb.ErrNotLeader
	}
	if err := a.store.Barrier(a.prof.ApplyTimeout); err != nil {
		return nil, cdb.Refuse(cdb.ErrUnreachable, "backup: waiting for the cluster database to settle: %v", err)
	}
	return cdb.EncodeBackup(a.store.State(), time.Now())
}
