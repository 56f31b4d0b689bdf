// Package membership owns liveness: one hashicorp/memberlist instance per
// link, encrypted and authenticated with the cluster key (AES-GCM), with
// timings from the timing profile. It reports which members are reachable on
// which link and what each one's agent says of itself. It must not decide
// what to do about a member that is gone; the director does that.
package membership

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vigil-cluster/vigil/internal/config"
)

// Meta is what each agent gossips about itself.
type Meta struct {
	ID         int    `json:"id"`
	ClusterID  string `json:"cid"`
	AgentState string `json:"st"`
	API        string `json:"api"`
}

// maxMeta is memberlist's limit on node metadata.
const maxMeta = memberlist.MetaMaxSize

// Link is a member's state on one link.
type Link struct {
	Addr  string    `json:"addr"`
	Up    bool      `json:"up"`
	Since time.Time `json:"since"`
}

// Peer is what this member knows of another member (or itself).
type Peer struct {
	Name  string
	Meta  Meta
	Links []Link
	// Seen is true once the peer was seen alive since this agent started.
	Seen bool
}

// Up reports whether the peer is alive on any link.
func (p *Peer) Up() bool {
	for _, l := range p.Links {
		if l.Up {
			return true
		}
	}
	return false
}

// Since is the time of the last change of Up.
func (p *Peer) Since() time.Time {
	var t time.Time
	up := p.Up()
	for _, l := range p.Links {
		if l.Up == up && (t.IsZero() || (up && l.Since.Before(t)) || (!up && l.Since.After(t))) {
			t = l.Since
		}
	}
	return t
}

// Options configure the membership of one member.
type Options struct {
	Name  string
	Links []string
	Key   []byte // 16, 24 or 32 bytes: the key gossip is sealed with
	// ExtraKeys are more keys gossip is opened with (a rotation under way).
	ExtraKeys [][]byte
	Profile   config.Profile
	Meta      Meta
	Logger    *slog.Logger
	// Debug turns on memberlist's debug lines.
	Debug func() bool
	// OnChange is called (from memberlist's goroutines) after any change.
	OnChange func()
	// OnMessage is called (from memberlist's goroutines, which it must
	// not hold up) with each datagram that another member's Send sent on
	// link.
	OnMessage func(link int, msg []byte)
}

// Membership is the member's liveness view over all its links.
type Membership struct {
	opts  Options
	lists []*memberlist.Memberlist
	log   *slog.Logger

	mu    sync.Mutex
	meta  []byte           // guarded by mu
	peers map[string]*Peer // guarded by mu

	probe *prober // the link statistics (probe.go)

	// rejected counts gossip dropped for lacking the cluster key.
	rejected atomic.Uint64
	// keyring holds the gossip keys, shared by every link (keys.go).
	keyring *memberlist.Keyring
}

// Rejected is how many gossip packets and streams were dropped because
// they were not sealed with the cluster key (another cluster, a stranger).
func (m *Membership) Rejected() uint64 { return m.rejected.Load() }

// Start binds every link and starts gossip.
func Start(opts Options) (*Membership, error) {
	m := &Membership{opts: opts, log: opts.Logger, peers: map[string]*Peer{}}
	if err := m.setMeta(opts.Meta); err != nil {
		return nil, err
	}
	kr, err := memberlist.NewKeyring(opts.ExtraKeys, opts.Key)
	if err != nil {
		return nil, fmt.Errorf("gossip keys: %w", err)
	}
	m.keyring = kr
	for i, addr := range opts.Links {
		ml, err := memberlist.Create(m.config(i, addr))
		if err != nil {
			m.Shutdown()
			return nil, fmt.Errorf("link %d (%s): %w", i, addr, err)
		}
		m.lists = append(m.lists, ml)
	}
	m.startProber(max(opts.Profile.ProbeInterval, 500*time.Millisecond))
	return m, nil
}

func (m *Membership) config(i int, addr string) *memberlist.Config {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	c := memberlist.DefaultLANConfig()
	c.Name = m.opts.Name
	c.BindAddr, c.BindPort = host, p
	c.AdvertiseAddr, c.AdvertisePort = host, p
	pr := m.opts.Profile
	c.ProbeInterval = pr.ProbeInterval
	c.ProbeTimeout = pr.ProbeTimeout
	c.SuspicionMult = pr.SuspicionMult
	c.SuspicionMaxTimeoutMult = pr.SuspicionMaxMult
	c.GossipInterval = pr.GossipInterval
	c.PushPullInterval = pr.PushPullInterval
	c.TCPTimeout = pr.TCPTimeout
	c.GossipToTheDeadTime = 10 * pr.ProbeInterval
	c.DeadNodeReclaimTime = pr.ProbeInterval
	// Each link's liveness is what its own UDP path says: a TCP fallback
	// probe would find another route and hide a dead link.
	c.DisableTcpPings = true
	c.Keyring = m.keyring
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	c.Delegate = &delegate{m: m, link: i}
	c.Events = &events{m: m, link: i}
	c.Logger = log.New(&logFilter{log: m.log, link: i, debug: m.opts.Debug, rejected: &m.rejected}, "", 0)
	return c
}

// Join contacts peers per link (addrs[i] for link i) and reports how many
// members each link reached.
func (m *Membership) Join(addrs [][]string) []error {
	errs := make([]error, len(m.lists))
	for i, ml := range m.lists {
		if i >= len(addrs) || len(addrs[i]) == 0 {
			continue
		}
		if _, err := ml.Join(addrs[i]); err != nil {
			errs[i] = err
		}
	}
	return errs
}

// Alone reports whether link i sees no other member.
func (m *Membership) Alone(i int) bool {
	return i < len(m.lists) && m.lists[i].NumMembers() <= 1
}

// LinksAlive reports, per link, whether this member sees any other member
// alive on it.
func (m *Membership) LinksAlive() []bool {
	out := make([]bool, len(m.opts.Links))
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, p := range m.peers {
		if n == m.opts.Name {
			continue
		}
		for i, l := range p.Links {
			if i < len(out) && l.Up {
				out[i] = true
			}
		}
	}
	return out
}

// SetMeta changes what this agent gossips about itself.
func (m *Membership) SetMeta(meta Meta) {
	if err := m.setMeta(meta); err != nil {
		m.log.Error("gossip metadata too large", "err", err)
		return
	}
	for i, ml := range m.lists {
		if err := m.announce(ml); err != nil {
			m.log.Warn("gossip metadata not announced", "link", i, "err", err)
		}
	}
}

// node is the part of a memberlist that announce uses.
type node interface {
	UpdateNode(timeout time.Duration) error
	LocalNode() *memberlist.Node
}

// announceTries bounds announce's attempts; each loses only to a
// refutation that raced it, which is rare.
const announceTries = 5

// announce gossips the current metadata on one link and checks that the
// link took it. memberlist's UpdateNode picks its incarnation before it
// takes the node lock; a refutation in between (a restarted member refutes
// what the others remember of its previous life) takes a higher one, with
// the old metadata, and UpdateNode's own alive message is then dropped in
// silence. The others would keep the old metadata until the next change:
// a restarted agent stayed INITIALIZING to its peers for good.
func (m *Membership) announce(ml node) error {
	for range announceTries {
		// The broadcast is queued whether or not this short wait sees it
		// sent; the check below is what matters.
		_ = ml.UpdateNode(time.Millisecond)
		m.mu.Lock()
		want := m.meta
		m.mu.Unlock()
		if bytes.Equal(ml.LocalNode().Meta, want) {
			return nil
		}
	}
	return fmt.Errorf("the link kept older metadata after %d tries", announceTries)
}

func (m *Membership) setMeta(meta Meta) error {
	b, _ := json.Marshal(meta)
	if len(b) > maxMeta {
		return fmt.Errorf("%d bytes, at most %d", len(b), maxMeta)
	}
	m.mu.Lock()
	m.meta = b
	m.mu.Unlock()
	return nil
}

// Peers returns a copy of the view, keyed by member name.
func (m *Membership) Peers() map[string]Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Peer, len(m.peers))
	for n, p := range m.peers {
		c := *p
		c.Links = append([]Link(nil), p.Links...)
		out[n] = c
	}
	return out
}

// Send sends msg to peer on link as one datagram, sealed with the cluster
// key like the gossip (so only a member can have sent it), whatever
// gossip thinks of the peer: it goes to the address the peer last had on
// that link. Nothing says whether it arrived.
func (m *Membership) Send(peer string, link int, msg []byte) error {
	if link < 0 || link >= len(m.lists) {
		return fmt.Errorf("no link %d", link)
	}
	ml := m.lists[link]
	for _, n := range ml.Members() {
		if n.Name == peer {
			return ml.SendBestEffort(n, msg)
		}
	}
	m.mu.Lock()
	var addr string
	if p, ok := m.peers[peer]; ok && link < len(p.Links) {
		addr = p.Links[link].Addr
	}
	m.mu.Unlock()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("no address of %s on link %d", peer, link)
	}
	pn, _ := strconv.Atoi(port)
	return ml.SendBestEffort(&memberlist.Node{Name: peer, Addr: net.ParseIP(host), Port: uint16(pn)}, msg)
}

// Leave announces a graceful departure on every link.
func (m *Membership) Leave(timeout time.Duration) {
	for _, ml := range m.lists {
		ml.Leave(timeout)
	}
}

// Shutdown stops gossip without announcing it.
func (m *Membership) Shutdown() {
	m.stopProber()
	for _, ml := range m.lists {
		ml.Shutdown()
	}
}

func (m *Membership) update(link int, n *memberlist.Node, up bool) {
	m.mu.Lock()
	p, ok := m.peers[n.Name]
	if !ok {
		p = &Peer{Name: n.Name, Links: make([]Link, len(m.opts.Links))}
		m.peers[n.Name] = p
	}
	if link < len(p.Links) {
		l := &p.Links[link]
		l.Addr = n.Address()
		if l.Up != up || l.Since.IsZero() {
			l.Up, l.Since = up, time.Now()
		}
	}
	if up {
		p.Seen = true
		var meta Meta
		if json.Unmarshal(n.Meta, &meta) == nil {
			p.Meta = meta
		}
	}
	m.mu.Unlock()
	if m.opts.OnChange != nil {
		m.opts.OnChange()
	}
}

type events struct {
	m    *Membership
	link int
}

func (e *events) NotifyJoin(n *memberlist.Node)   { e.m.update(e.link, n, true) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.m.update(e.link, n, false) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.m.update(e.link, n, true) }

type delegate struct {
	m    *Membership
	link int
}

func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.meta) > limit {
		return nil
	}
	return append([]byte(nil), d.m.meta...)
}

// NotifyMsg hands a datagram of Send's to OnMessage.
func (d *delegate) NotifyMsg(b []byte) {
	if d.m.opts.OnMessage != nil && len(b) > 0 {
		d.m.opts.OnMessage(d.link, append([]byte(nil), b...))
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// logFilter turns memberlist's log lines into slog records.
type logFilter struct {
	log      *slog.Logger
	link     int
	debug    func() bool
	rejected *atomic.Uint64
}

var _ io.Writer = (*logFilter)(nil)

func (f *logFilter) Write(b []byte) (int, error) {
	line := string(bytes.TrimSpace(b))
	switch {
	case bytes.Contains(b, []byte("[DEBUG]")):
		if f.debug != nil && f.debug() {
			f.log.Debug(line, "link", f.link)
		}
	case bytes.Contains(b, []byte("[ERR]")):
		// memberlist drops what the cluster key does not open: a UDP
		// packet ("Decrypt packet failed") or a TCP stream ("failed to
		// receive: ... decrypt ..."). Count both.
		if bytes.Contains(b, []byte("Decrypt packet failed")) || (bytes.Contains(b, []byte("failed to receive")) &&
			(bytes.Contains(b, []byte("decrypt")) || bytes.Contains(b, []byte("not encrypted")) || bytes.Contains(b, []byte("encryption")))) {
			if f.rejected != nil {
				f.rejected.Add(1)
			}
			f.log.Warn("gossip without the cluster key dropped: "+line, "link", f.link)
			break
		}
		f.log.Warn(line, "link", f.link)
	case bytes.Contains(b, []byte("[WARN]")):
		f.log.Info(line, "link", f.link)
	default:
		f.log.Debug(line, "link", f.link)
	}
	return len(b), nil
}
