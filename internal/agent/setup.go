package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
	"github.com/vigil-cluster/vigil/internal/pki"
	"github.com/vigil-cluster/vigil/internal/rpc"
)

// Version is vigil's version.
var Version = "0.1.0-dev"

// CreateParams are the arguments of `vigil cluster create`.
type CreateParams struct {
	Cluster    string
	Member     string
	ID         int
	Links      []string
	API        string
	DataDir    string
	Profile    string
	Domain     int
	Attributes map[string]string // declared cluster-wide
}

// prepareDataDir makes dir (0700) and refuses one that already holds a member.
func prepareDataDir(dir string) error {
	if dir == "" {
		return errors.New("--data-dir is empty")
	}
	if _, err := os.Stat(filepath.Join(dir, config.FileName)); err == nil {
		return fmt.Errorf("%s already holds a member (%s exists): use another --data-dir, or wipe it with `vigil member reset --data-dir %s`", dir, config.FileName, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// Create writes the data dir of the first member of a new cluster. The agent
// forms the Raft group and writes the first state at its first start.
func Create(p CreateParams) (*config.Member, error) {
	m := config.Default()
	m.Cluster, m.ClusterID, m.Name, m.ID = p.Cluster, randomHex(8), p.Member, p.ID
	if m.ID == 0 {
		m.ID = 1
	}
	m.Links, m.API, m.Domain, m.Attributes, m.Bootstrap = p.Links, p.API, p.Domain, p.Attributes, true
	if p.Profile != "" {
		m.Profile = p.Profile
	}
	if err := m.Validate(); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	if err := prepareDataDir(p.DataDir); err != nil {
		return nil, err
	}
	ca, err := pki.NewCA(m.Cluster)
	if err != nil {
		return nil, err
	}
	_, keyPEM, pub, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	cert, serial, err := ca.Issue(m.Name, pub, hostsOf(m.Links, m.API))
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFiles(p.DataDir, ca.CertPEM, ca.KeyPEM, cert, keyPEM); err != nil {
		return nil, err
	}
	admin := randomSecret()
	if err := writeSecret(p.DataDir, ClusterKeyFile, randomHex(32)); err != nil {
		return nil, err
	}
	if err := writeSecret(p.DataDir, AdminTokenFile, admin); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(admin))
	init := cdb.InitArgs{
		Cluster: cdb.Cluster{Name: m.Cluster, ID: m.ClusterID, Profile: m.Profile, Created: time.Now().UTC(),
			Attributes: p.Attributes, CAFingerprint: pki.Fingerprint(ca.Cert)},
		Member:         memberRecord(&m, time.Now().UTC()),
		AdminTokenHash: hex.EncodeToString(sum[:]),
	}
	init.Member.CertSerial = serial
	b, _ := json.MarshalIndent(init, "", "  ")
	if err := os.WriteFile(filepath.Join(p.DataDir, BootstrapFile), b, 0o600); err != nil {
		return nil, err
	}
	return &m, m.Save(p.DataDir)
}

func memberRecord(m *config.Member, at time.Time) cdb.Member {
	return cdb.Member{Name: m.Name, ID: m.ID, Links: m.Links, API: m.API, Votes: m.Votes, Domain: m.Domain,
		Witness: m.Witness, Attributes: m.Attributes, Joined: at}
}

func hostsOf(addrs ...any) []string {
	var hosts []string
	add := func(a string) {
		if h, _, err := net.SplitHostPort(a); err == nil {
			hosts = append(hosts, h)
		}
	}
	for _, a := range addrs {
		switch v := a.(type) {
		case string:
			add(v)
		case []string:
			for _, s := range v {
				add(s)
			}
		}
	}
	return hosts
}

// JoinParams are the arguments of `vigil member join`.
type JoinParams struct {
	Token      string
	Member     string
	ID         int
	Links      []string
	API        string
	DataDir    string
	Witness    bool
	Profile    string
	Attributes map[string]string
}

// Join asks the cluster named in the token to admit this machine and writes
// its data dir. Nothing is written unless the cluster accepts.
func Join(ctx context.Context, p JoinParams) (*config.Member, error) {
	t, err := DecodeToken(p.Token)
	if err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	if p.Member == "" {
		p.Member = t.Member
	}
	if len(p.Links) == 0 {
		p.Links = []string{t.Address}
	}
	m := config.Default()
	m.Cluster, m.Name, m.ID, m.Links, m.API = t.Cluster, p.Member, p.ID, p.Links, p.API
	m.Witness, m.Attributes = p.Witness, p.Attributes
	if p.Profile != "" {
		m.Profile = p.Profile
	}
	check := m
	if check.ID == 0 {
		check.ID = 1 // assigned by the cluster
	}
	check.ClusterID = "pending"
	if err := check.Validate(); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	if err := prepareDataDir(p.DataDir); err != nil {
		return nil, err
	}
	// Hold every address we will use, so the cluster can check it reaches
	// them and so a port taken by something else is found now.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for _, a := range append(append([]string{}, m.Links...), config.RPCAddress(m.Links[0]), m.API) {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("cannot listen on %s: %v (is it an address of this machine, and is the port free?)", a, err)
		}
		held = append(held, l)
		go acceptAndClose(l)
	}
	key, keyPEM, pub, err := pki.NewKey()
	_ = key
	if err != nil {
		return nil, err
	}
	req := &rpc.JoinRequest{TokenID: t.ID, Secret: t.Secret, PublicKey: pub, Version: Version, Profile: p.Profile,
		Member: cdb.Member{Name: m.Name, ID: p.ID, Links: m.Links, API: m.API, Witness: m.Witness, Attributes: m.Attributes}}
	var resp *rpc.JoinResponse
	var failures []string
	for _, addr := range t.Addrs {
		resp, err = rpc.Join(ctx, addr, t.Fingerprint, req)
		if err == nil {
			break
		}
		if errors.Is(err, cdb.ErrUnreachable) || isDial(err) {
			failures = append(failures, fmt.Sprintf("%s: %v", addr, err))
			continue
		}
		return nil, fmt.Errorf("member %s cannot join cluster %s: %v", m.Name, t.Cluster, err)
	}
	if resp == nil {
		return nil, cdb.Refuse(cdb.ErrUnreachable, "member %s cannot join cluster %s: no member in the token answered:\n  %s\ncheck that their agents run and that this machine reaches those addresses", m.Name, t.Cluster, strings.Join(failures, "\n  "))
	}
	m.ClusterID, m.ID = resp.Cluster.ID, resp.Member.ID
	m.Votes, m.Domain, m.Witness, m.Profile = resp.Member.Votes, resp.Member.Domain, resp.Member.Witness, resp.Cluster.Profile
	m.Attributes = resp.Member.Attributes
	m.Peers = resp.Peers
	if err := pki.WriteFiles(p.DataDir, resp.CACert, resp.CAKey, resp.Cert, keyPEM); err != nil {
		return nil, err
	}
	if err := writeSecret(p.DataDir, ClusterKeyFile, hex.EncodeToString(resp.ClusterKey)); err != nil {
		return nil, err
	}
	if err := writeSecret(p.DataDir, AdminTokenFile, resp.AdminToken); err != nil {
		return nil, err
	}
	return &m, m.Save(p.DataDir)
}

func acceptAndClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func isDial(err error) bool {
	var ne *net.OpError
	if errors.As(err, &ne) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "connection error") || strings.Contains(s, "no route") || strings.Contains(s, "i/o timeout")
}
