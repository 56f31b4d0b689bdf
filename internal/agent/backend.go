package agent

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/api"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
	"github.com/vigil-cluster/vigil/internal/director"
	"github.com/vigil-cluster/vigil/internal/pki"
	"github.com/vigil-cluster/vigil/internal/rpc"
)

// The agent is the API's backend.

// AdminTokenHash implements api.Backend.
func (a *Agent) AdminTokenHash() string {
	sum := sha256.Sum256([]byte(a.adminToken))
	return hex.EncodeToString(sum[:])
}

// VerifyClient implements api.Backend.
func (a *Agent) VerifyClient(chain []*x509.Certificate) (*x509.Certificate, error) {
	return pki.VerifyClient(a.id.Roots(), chain, time.Now())
}

// AllowedCert implements api.Backend.
func (a *Agent) AllowedCert(cn, serial string) bool {
	store := a.storeReady.Load()
	if store == nil {
		return true // nothing known yet: any certificate of the cluster CA
	}
	ok := true
	store.View(func(s *cdb.State) { ok = s.Allowed(cn, serial) })
	return ok
}

// staleness says whether local reads may be behind, and why.
func (a *Agent) staleness() (bool, string) {
	present, expected, needed := a.quorum()
	if expected > 0 && present < needed {
		return true, "no quorum: this is the local copy of the cluster database and may be stale"
	}
	if _, id := a.store.Leader(); id == "" {
		return true, "no director: this is the local copy of the cluster database and may be stale"
	}
	return false, ""
}

// Status implements api.Backend.
func (a *Agent) Status(ctx context.Context) *client.Status {
	st := a.store.State()
	peers := a.ml.Peers()
	_, leader := a.store.Leader()
	servers, _ := a.store.Configuration()
	inRaft := map[string]cdb.Server{}
	for _, s := range servers {
		inRaft[s.ID] = s
	}
	present, expected, needed := a.quorum()
	out := &client.Status{Cluster: st.Cluster.Name, ClusterID: st.Cluster.ID, Profile: st.Cluster.Profile,
		Local: a.cfg.Name, Director: leader, ExpectedVotes: expected, VotesPresent: present,
		QuorumNeeded: needed, Quorum: expected > 0 && present >= needed, Index: st.Index}
	out.Stale, out.StaleReason = a.staleness()
	if st.Cluster.Name == "" {
		out.Cluster = a.cfg.Cluster
	}
	for _, n := range st.MemberNames() {
		m := st.Members[n]
		row := client.Member{Name: m.Name, ID: m.ID, API: m.API, Votes: m.Votes, Domain: m.Domain,
			Witness: m.Witness, Draining: m.Draining, Joined: m.Joined, Attributes: m.Attributes}
		p, seen := peers[n]
		for i, l := range m.Links {
			lk := client.Link{Addr: l}
			if n == a.cfg.Name {
				lk.Up, lk.Since = true, a.started
			} else if seen && i < len(p.Links) {
				lk.Up, lk.Since = p.Links[i].Up, p.Links[i].Since
			}
			row.Links = append(row.Links, lk)
		}
		switch {
		case n == a.cfg.Name:
			row.State, row.AgentState, row.Since = client.MemberUp, a.localAgentState(), a.started
		case !seen || !p.Seen:
			row.State, row.AgentState = client.MemberDown, client.AgentUnknown
		case !p.Up():
			row.State, row.AgentState, row.Since = client.MemberDown, client.AgentDown, p.Since()
		default:
			row.State, row.Since = client.MemberUp, p.Since()
			var onLinks []bool
			for _, l := range p.Links {
				onLinks = append(onLinks, l.Up)
			}
			// Seen from here; the director also knows what the member
			// reports of its own links (DISCONNECTED).
			switch memberCondition(false, true, onLinks, a.term.reportedLinks(n)) {
			case director.MemberNetpar:
				row.State = client.MemberNetpar
			case director.MemberDisconnected:
				row.State = client.MemberDisconnected
			}
			row.AgentState = p.Meta.AgentState
			if p.Meta.ID != m.ID || p.Meta.ClusterID != st.Cluster.ID || row.AgentState == "" {
				row.AgentState = client.AgentInvalid
			}
		}
		switch s, ok := inRaft[n]; {
		case n == leader:
			row.Role = client.RoleDirector
		case ok && s.Voter:
			row.Role = client.RoleVoter
		case ok:
			row.Role = client.RoleNonVoter
		default:
			row.Role = client.RolePending
		}
		out.Members = append(out.Members, row)
	}
	return out
}

// Config implements api.Backend.
func (a *Agent) Config(ctx context.Context) *client.Config {
	st := a.store.State()
	c := st.Cluster
	out := &client.Config{Cluster: client.ClusterInfo{Name: c.Name, ID: c.ID, Profile: c.Profile, Created: c.Created,
		Attributes: c.Attributes, CAFingerprint: c.CAFingerprint}, Settings: st.Settings, Index: st.Index}
	out.Stale, _ = a.staleness()
	for _, n := range st.MemberNames() {
		m := st.Members[n]
		out.Members = append(out.Members, client.ConfigMember{Name: m.Name, ID: m.ID, Links: m.Links, API: m.API,
			Votes: m.Votes, Domain: m.Domain, Witness: m.Witness, Attributes: m.Attributes, Joined: m.Joined})
	}
	for _, t := range st.Tokens {
		out.JoinTokens = append(out.JoinTokens, client.TokenInfo{ID: t.ID, Member: t.Member, Expires: t.Expires, UsedBy: t.UsedBy})
	}
	sort.Slice(out.JoinTokens, func(i, j int) bool { return out.JoinTokens[i].Expires.Before(out.JoinTokens[j].Expires) })
	return out
}

// Settings implements api.Backend.
func (a *Agent) Settings(ctx context.Context) *client.Settings {
	st := a.store.State()
	stale, _ := a.staleness()
	return &client.Settings{Settings: st.Settings, Stale: stale}
}

// AddMember implements api.Backend.
func (a *Agent) AddMember(ctx context.Context, r client.AddMemberRequest, by string) (*client.AddMemberResponse, error) {
	if err := config.ValidName("member name", r.Name); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	if err := config.ValidAddress("--address", r.Address); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	votes := 1
	if r.Votes != nil {
		votes = *r.Votes
	}
	if votes < 0 || votes > 1 {
		return nil, cdb.Refuse(cdb.ErrInvalid, "--votes %d is out of range: must be 0 or 1", votes)
	}
	if r.Witness && votes != 1 {
		return nil, cdb.Refuse(cdb.ErrInvalid, "a witness has one vote: leave --votes out or give 1")
	}
	if r.Domain < 0 || r.Domain > 63 {
		return nil, cdb.Refuse(cdb.ErrInvalid, "--domain %d is out of range: must be 0-63", r.Domain)
	}
	st := a.store.State()
	ttl := r.TTL
	if ttl == 0 {
		ttl = st.TokenTTL()
	}
	if ttl < time.Minute || ttl > 7*24*time.Hour {
		return nil, cdb.Refuse(cdb.ErrInvalid, "--ttl %s is out of range: must be 1m to 168h", ttl)
	}
	now := time.Now().UTC()
	secret := randomSecret()
	t := &cdb.JoinToken{ID: randomHex(8), SecretHash: cdb.HashSecret(secret), Member: r.Name, Address: r.Address,
		Votes: votes, Domain: r.Domain, Witness: r.Witness, Created: now, Expires: now.Add(ttl)}
	if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpTokenCreate, At: now, By: by, Token: t}); err != nil {
		return nil, err
	}
	var addrs []string
	for _, n := range st.MemberNames() {
		addrs = append(addrs, config.RPCAddress(st.Members[n].Links[0]))
	}
	tok := Token{Version: 1, Cluster: st.Cluster.Name, ID: t.ID, Secret: secret, Member: r.Name, Address: r.Address,
		Addrs: addrs, Fingerprint: pki.Fingerprint(a.id.Issuer().Cert), Expires: t.Expires}
	a.log.Info("join token created", "for", r.Name, "expires", t.Expires, "by", by)
	return &client.AddMemberResponse{Token: tok.Encode(), Expires: t.Expires}, nil
}

// RemoveMember implements api.Backend.
func (a *Agent) RemoveMember(ctx context.Context, name, by string) error {
	if name == a.cfg.Name {
		return cdb.Refuse(cdb.ErrRefused, "member %s is the member this command runs on: run `vigil member remove %s` against another member (--api HOST:PORT)", name, name)
	}
	if err := a.checkQuorum(); err != nil {
		return err
	}
	if err := a.checkRemoval(name); err != nil {
		return err
	}
	if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpMemberRemove, By: by, Member: name}); err != nil {
		return err
	}
	a.log.Info("member removed", "removed", name, "by", by)
	a.poke()
	return nil
}

// checkRemoval refuses a removal that would leave the cluster without quorum
// or without a voter.
func (a *Agent) checkRemoval(name string) error {
	st := a.store.State()
	m, ok := st.Members[name]
	if !ok {
		return cdb.Refuse(cdb.ErrNotFound, "member %s is not in the cluster (see `vigil members`)", name)
	}
	voters := a.voters()
	if !voters[name] {
		return nil
	}
	if len(voters) == 1 {
		return cdb.Refuse(cdb.ErrRefused, "member %s is the last voter: the cluster database needs one; give another member a vote first", name)
	}
	present, expected, _ := a.quorum()
	p, seen := a.ml.Peers()[name]
	if seen && p.Up() {
		present -= m.Votes
	}
	expected -= m.Votes
	if needed := cdb.QuorumNeeded(expected); present < needed {
		var down []string
		peers := a.ml.Peers()
		for n := range voters {
			if pp, ok := peers[n]; n != name && n != a.cfg.Name && (!ok || !pp.Up()) {
				down = append(down, n)
			}
		}
		return cdb.Refuse(cdb.ErrRefused, "removing %s would leave %d of %d votes present, %d needed: bring %v back first, or remove those members first", name, present, expected, needed, down)
	}
	return nil
}

// SetSettings implements api.Backend.
func (a *Agent) SetSettings(ctx context.Context, kv map[string]string, by string) (*client.WriteResult, error) {
	for k, v := range kv {
		if v == "" {
			continue
		}
		if err := cdb.ValidSetting(k, v); err != nil {
			return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
		}
	}
	res, err := a.write(ctx, &cdb.Command{Op: cdb.OpSettingsSet, By: by, Settings: kv})
	if err != nil {
		return nil, err
	}
	return &client.WriteResult{Index: res.Index}, nil
}

// SetLogLevel implements api.Backend.
func (a *Agent) SetLogLevel(ctx context.Context, r client.LogLevelRequest) ([]client.LogLevelResult, error) {
	if _, err := config.ParseLevel(r.Level); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	st := a.store.State()
	var targets []string
	switch {
	case r.All:
		targets = st.MemberNames()
	case r.Member != "" && r.Member != a.cfg.Name:
		if _, ok := st.Members[r.Member]; !ok {
			return nil, cdb.Refuse(cdb.ErrNotFound, "member %s is not in the cluster (see `vigil members`)", r.Member)
		}
		targets = []string{r.Member}
	default:
		targets = []string{a.cfg.Name}
	}
	a.emit(client.Event{Kind: client.EventOperator, By: api.Who(ctx),
		Message: fmt.Sprintf("log level %s on %s", r.Level, strings.Join(targets, ", "))})
	var out []client.LogLevelResult
	for _, n := range targets {
		res := client.LogLevelResult{Member: n}
		var err error
		if n == a.cfg.Name {
			err = a.setLocalLevel(r.Level)
		} else {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err = a.pool.Call(cctx, config.RPCAddress(st.Members[n].Links[0]), "LogLevel", &rpc.LogLevelRequest{Level: r.Level}, &rpc.Empty{})
			cancel()
		}
		if err != nil {
			res.Error = err.Error()
		}
		out = append(out, res)
	}
	return out, nil
}

// Backup implements api.Backend: the director makes the backup after a
// barrier, so it holds every acknowledged write.
func (a *Agent) Backup(ctx context.Context) ([]byte, error) {
	if err := a.checkQuorum(); err != nil {
		return nil, err
	}
	if a.store.IsLeader() {
		return a.backupLocal()
	}
	addr, _ := a.store.Leader()
	if addr == "" {
		return nil, a.noDirector()
	}
	var resp rpc.BackupResponse
	if err := a.pool.Call(ctx, addr, "Backup", &rpc.Empty{}, &resp); err != nil {
		return nil, err
	}
	return resp.Data, nil
}

// Restore implements api.Backend.
func (a *Agent) Restore(ctx context.Context, data []byte, by string) (*client.RestoreResponse, error) {
	b, s, err := cdb.DecodeBackup(data)
	if err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	var id, name string
	a.store.View(func(cur *cdb.State) { id, name = cur.Cluster.ID, cur.Cluster.Name })
	if b.ClusterID != id {
		return nil, cdb.Refuse(cdb.ErrRefused, "backup is of cluster %s (id %s), this is cluster %s (id %s): a backup restores only on the cluster it was taken of", b.Cluster, b.ClusterID, name, id)
	}
	res, err := a.write(ctx, &cdb.Command{Op: cdb.OpRestore, By: by, Restore: s})
	if err != nil {
		return nil, err
	}
	a.log.Warn("cluster database restored from a backup", "backup_index", b.Index, "backup_created", b.Created, "by", by)
	return &client.RestoreResponse{Index: res.Index, Created: b.Created.Format(time.RFC3339)}, nil
}
