// Package agent owns the vigil agent process: it wires the cluster database,
// membership, the node service and the API together, keeps the Raft
// configuration in step with the member list while it is director, and
// answers the API. It must not contain decision logic that can be written as
// a pure function; that belongs to the director.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/api"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/lease"
	"github.com/vigil-cluster/vigil/internal/lrm"
	"github.com/vigil-cluster/vigil/internal/membership"
	"github.com/vigil-cluster/vigil/internal/pki"
	"github.com/vigil-cluster/vigil/internal/rpc"
	"github.com/vigil-cluster/vigil/internal/ui"
	"github.com/vigil-cluster/vigil/internal/watchdog"
)

// agentGCPercent is the agent's GOGC unless the environment sets one.
const agentGCPercent = 50

// ErrRemoved means this member was removed from the cluster.
var ErrRemoved = errors.New("this member was removed from the cluster")

// Agent is one running member.
type Agent struct {
	dir        string
	cfg        *config.Member
	prof       config.Profile
	id         *pki.Identity
	key        []byte
	adminToken string
	log        *slog.Logger
	baseLog    *slog.Logger // log without the member attribute
	level      *slog.LevelVar
	started    time.Time

	mux   *rpc.Mux   // the first link's cluster port: Raft and gRPC
	muxes []*rpc.Mux // every link's cluster port (gRPC only beyond the first)
	grpcs []*grpc.Server
	pool  *rpc.Pool
	store *cdb.Store
	ml    *membership.Membership
	https *http.Server
	unix  *http.Server

	kick       chan struct{}
	decideKick chan struct{}
	removed    chan struct{}

	lrm      *lrm.Manager // set by lrmLoop before it closes lrmReady
	lrmReady chan struct{}
	lrmKick  chan struct{}

	term     term
	holderMu sync.Mutex
	holder   *lease.Holder // guarded by holderMu
	// grantIndex is the director's applied index at the last grant.
	grantIndex uint64 // guarded by holderMu
	// watchdog is the optional watchdog device, petted by lrmLoop.
	watchdog *watchdog.Device

	mu         sync.Mutex
	agentState string // guarded by mu
	wasMember  bool   // guarded by mu
	removedOne sync.Once
	stopOnce   sync.Once
	// storeReady is the store once opened, for the connection checks that
	// start before it (the cluster ports).
	storeReady atomic.Pointer[cdb.Store]
	// lastLeader is the last director this member knew of.
	lastLeader atomic.Pointer[string]
	// dgrams holds this member's renewal datagrams in flight; datagramsReady
	// says that onDatagram may use the agent (datagram.go).
	dgrams         datagrams
	datagramsReady atomic.Bool

	// The lock manager (dlm.go).
	dlm             *server.Server
	dlmGRPC         *grpc.Server // the local socket API (gRPC and raw sessions: Stop ends both)
	dlmKick         chan struct{}
	dlmLinkMu       sync.Mutex
	dlmLink         map[string]int // guarded by dlmLinkMu: the link that last worked per member
	dlmDeadlockWait time.Duration

	// evq holds events waiting to be written to the event log (events.go).
	evq *eventQueue
	// metrics are the Prometheus metrics (metrics.go).
	metrics *metrics
	// sd speaks to systemd when the agent runs under it (systemd.go).
	sd *systemd
	// certMu serializes certificate renewals (certs.go).
	certMu sync.Mutex
	// The gossip key rotation (keys.go): the key gossip is sealed with,
	// and the keys of the rotation under way.
	keyMu          sync.Mutex
	keyCur         atomic.Pointer[[]byte]
	rotID          string // guarded by keyMu
	rotOld, rotNew []byte // guarded by keyMu
}

// New loads the data dir. logOut receives the logs.
func New(dir string, level *slog.LevelVar, log *slog.Logger) (*Agent, error) {
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, err
	}
	id, err := pki.Load(dir)
	if err != nil {
		return nil, err
	}
	key, err := ReadClusterKey(dir)
	if err != nil {
		return nil, err
	}
	admin, err := ReadAdminToken(dir)
	if err != nil {
		return nil, err
	}
	if cfg.LogLevel != "" {
		l, _ := config.ParseLevel(cfg.LogLevel)
		level.Set(l)
	}
	a := &Agent{dir: dir, cfg: cfg, prof: config.Profiles[cfg.Profile], id: id, key: key, adminToken: admin,
		log: log.With("member", cfg.Name), baseLog: log, level: level, started: time.Now(), kick: make(chan struct{}, 1),
		removed: make(chan struct{}), agentState: client.AgentInitializing,
		decideKick: make(chan struct{}, 1), dlmKick: make(chan struct{}, 1), dlmDeadlockWait: time.Second, lrmReady: make(chan struct{}), lrmKick: make(chan struct{}, 1), evq: newEventQueue(), metrics: newMetrics(), sd: newSystemd(), holder: lease.NewHolder(leaseConfig(config.Profiles[cfg.Profile]))}
	a.metrics.reg.MustRegister(stateCollector{a})
	return a, nil
}

func (a *Agent) rpcAddr() string { return config.RPCAddress(a.cfg.Links[0]) }

func hcLevel(l slog.Level) hclog.Level {
	switch {
	case l <= slog.LevelDebug:
		return hclog.Debug
	case l <= slog.LevelInfo:
		return hclog.Info
	case l <= slog.LevelWarn:
		return hclog.Warn
	}
	return hclog.Error
}

// Run runs the agent until ctx ends or the member is removed.
func (a *Agent) Run(ctx context.Context) (err error) {
	if b, err := os.ReadFile(filepath.Join(a.dir, RemovedFile)); err == nil {
		return fmt.Errorf("member %s was removed from cluster %s (%s); wipe it with `vigil member reset --data-dir %s` before it joins again", a.cfg.Name, a.cfg.Cluster, strings.TrimSpace(string(b)), a.dir)
	}
	defer func() {
		if err != nil {
			a.shutdown()
		}
	}()
	if os.Getenv("GOGC") == "" {
		// The agent's memory is long-lived tables (locks, the CDB): half
		// the default headroom costs little collection work and keeps the
		// resident memory near 1.5x the live heap (1,000,000 locks: under
		// 900 MiB instead of 1.2 GiB). GOGC in the environment overrides.
		debug.SetGCPercent(agentGCPercent)
	}
	if a.cfg.Watchdog != "" {
		timeout, _ := a.cfg.WatchdogTimeoutD()
		if err := watchdog.Fits(timeout, a.prof.Renew/2, a.prof.Lease, leaseDrift); err != nil {
			return fmt.Errorf("watchdog %s: %w", a.cfg.Watchdog, err)
		}
		if a.watchdog, err = watchdog.Open(a.cfg.Watchdog, timeout); err != nil {
			return err
		}
		a.log.Info("watchdog armed: this member is reset if its agent hangs", "device", a.cfg.Watchdog, "timeout", timeout)
	}
	a.log.Info("agent starting", "cluster", a.cfg.Cluster, "id", a.cfg.ID, "links", a.cfg.Links, "api", a.cfg.API, "profile", a.cfg.Profile, "version", Version)
	for i, l := range a.cfg.Links {
		m, err := rpc.Listen(config.RPCAddress(l), a.id, a.log, a.AllowedCert)
		if err != nil {
			return fmt.Errorf("cluster port of link %d, %s: %w", i, config.RPCAddress(l), err)
		}
		a.muxes = append(a.muxes, m)
	}
	a.mux = a.muxes[0]
	a.pool = rpc.NewPool(a.id)
	var store *cdb.Store
	store, err = cdb.Open(cdb.Options{
		Dir: a.dir, LocalID: a.cfg.Name, Stream: a.mux.RaftLayer(),
		HeartbeatTimeout: a.prof.HeartbeatTimeout, ElectionTimeout: a.prof.ElectionTimeout,
		LeaderLeaseTimeout: a.prof.LeaderLeaseTimeout, CommitTimeout: a.prof.CommitTimeout,
		Logger: a.log, RaftLogLevel: hcLevel(a.level.Level()), OnChange: a.poke, OnApply: a.metrics.applied,
	})
	if err != nil {
		return err
	}
	a.store = store
	a.storeReady.Store(store)
	if a.cfg.Bootstrap && !a.store.HasState() {
		if err := a.store.Bootstrap(a.rpcAddr()); err != nil {
			return fmt.Errorf("forming the cluster: %w", err)
		}
		a.log.Info("formed a new cluster", "cluster", a.cfg.Cluster)
	}
	a.ml, err = membership.Start(membership.Options{
		Name: a.cfg.Name, Links: a.cfg.Links, Key: a.currentKey(), ExtraKeys: readNextKey(a.dir), Profile: a.prof, Logger: a.log,
		Meta:      membership.Meta{ID: a.cfg.ID, ClusterID: a.cfg.ClusterID, AgentState: client.AgentInitializing, API: a.cfg.API},
		Debug:     func() bool { return a.level.Level() <= slog.LevelDebug },
		OnChange:  a.poke,
		OnMessage: a.onDatagram,
	})
	if err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	if err := a.startDLM(); err != nil {
		return err
	}
	for _, m := range a.muxes {
		a.grpcs = append(a.grpcs, rpc.Serve(m, &node{a: a}, a.log))
		go a.serveDLMConns(m)
	}
	if err := a.serveAPI(); err != nil {
		return err
	}
	go a.joinLoop(ctx)
	a.datagramsReady.Store(true)
	go a.leaseLoop(ctx)
	go a.datagramLoop(ctx)
	go a.directorLoop(ctx)
	go a.dlmLoop(ctx)
	go a.dlmDeadlockLoop(ctx)
	go a.eventLoop(ctx)
	go a.alertLoop(ctx)
	go a.countEvents(ctx)
	go a.certLoop(ctx)
	go a.keyLoop(ctx)
	lrmCtx, stopLRM := context.WithCancel(context.Background())
	defer stopLRM()
	go a.lrmLoop(lrmCtx)
	a.sd.ready(fmt.Sprintf("member %s of cluster %s: %s", a.cfg.Name, a.cfg.Cluster, a.localAgentState()))
	a.loop(ctx)
	a.sd.stopping()
	a.stopServices()
	stopLRM()
	a.shutdown()
	select {
	case <-a.removed:
		return ErrRemoved
	default:
	}
	return nil
}

func (a *Agent) serveAPI() error {
	srv := api.New(a, a.log)
	srv.Handle("GET /metrics", a.MetricsHandler())
	srv.Public("GET /ui", ui.Handler())
	srv.Public("GET /ui/", ui.Handler())
	ln, err := net.Listen("tcp", a.cfg.API)
	if err != nil {
		return fmt.Errorf("API address %s: %w", a.cfg.API, err)
	}
	a.https = &http.Server{Handler: srv.Remote(), TLSConfig: a.id.APIServerConfig("h2", "http/1.1"),
		ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	go a.https.ServeTLS(ln, "", "")
	sock := filepath.Join(a.dir, SocketFile)
	os.Remove(sock)
	ul, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("API socket %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		return err
	}
	a.unix = &http.Server{Handler: srv.Local(), ReadHeaderTimeout: 10 * time.Second}
	go a.unix.Serve(ul)
	return nil
}

func (a *Agent) shutdown() { a.stopOnce.Do(a.stop) }

func (a *Agent) stop() {
	if a.ml != nil {
		a.ml.Leave(500 * time.Millisecond)
		a.ml.Shutdown()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if a.https != nil {
		a.https.Shutdown(ctx)
	}
	if a.unix != nil {
		a.unix.Shutdown(ctx)
		os.Remove(filepath.Join(a.dir, SocketFile))
	}
	for _, g := range a.grpcs {
		// Let calls in flight (forwarded writes) finish, briefly.
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			g.Stop()
		}
	}
	a.stopDLM()
	if a.store != nil {
		if a.store.IsLeader() {
			// Hand the director role over rather than make the others wait
			// for an election.
			if err := a.store.TransferLeadership(); err == nil {
				a.log.Info("handed the director role over before stopping")
			}
		}
		a.store.Close()
	}
	for _, m := range a.muxes {
		m.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
	if a.watchdog != nil {
		a.watchdog.Close()
	}
	a.log.Info("agent stopped")
}

// wait blocks until tick or kick (nil: none) fires, and reports false when
// the agent must stop instead (ctx done, or this member removed). Every
// background loop of the agent waits through it.
func (a *Agent) wait(ctx context.Context, tick <-chan time.Time, kick <-chan struct{}) bool {
	select {
	case <-ctx.Done():
		return false
	case <-a.removed:
		return false
	case <-tick:
	case <-kick:
	}
	return true
}

func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
	a.kickDirector()
	select {
	case a.lrmKick <- struct{}{}:
	default:
	}
	select {
	case a.dlmKick <- struct{}{}:
	default:
	}
}

// loop keeps the agent state current and, on the director, the Raft
// configuration in step with the member list.
func (a *Agent) loop(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var lastIndex uint64
	var lastCache time.Time
	lastPrune := time.Now()
	settled := false // the director has applied everything committed before its term
	for {
		if !a.wait(ctx, tick.C, a.kick) {
			return
		}
		a.sd.pet(time.Now())
		a.updateAgentState()
		if !a.store.IsLeader() {
			settled = false
			a.term.end()
		} else {
			if !settled {
				// Decide from the whole log, never from a state behind
				// the configuration (a just-joined member would look
				// removed).
				if err := a.store.Barrier(a.prof.ApplyTimeout); err != nil {
					continue
				}
				settled = true
				a.term.begin(time.Now())
				a.log.Info("director: took office; services of silent members wait one lease", "lease", a.prof.Lease)
				a.emit(client.Event{Kind: client.EventDirector, Member: a.cfg.Name,
					Message: fmt.Sprintf("%s is the director (Raft term %s)", a.cfg.Name, a.store.Stats()["term"])})
			}
			a.initIfBootstrap(ctx)
			a.reconcile()
			if time.Since(lastPrune) > time.Minute {
				lastPrune = time.Now()
				a.pruneTokens(ctx)
			}
		}
		// The member list changes rarely: write the cache at most once a
		// second, not on every apply.
		if idx := a.store.FSMIndex(); idx != lastIndex && time.Since(lastCache) > time.Second {
			lastIndex, lastCache = idx, time.Now()
			a.writeMembersCache()
		}
	}
}

func (a *Agent) updateAgentState() {
	var inCDB, initialized bool
	a.store.View(func(s *cdb.State) {
		initialized = s.Cluster.Name != ""
		_, inCDB = s.Members[a.cfg.Name]
	})
	_, leader := a.store.Leader()
	st := client.AgentInitializing
	if initialized && inCDB && leader != "" {
		st = client.AgentRunning
	}
	a.mu.Lock()
	was := a.wasMember
	if initialized && inCDB {
		a.wasMember = true
	}
	changed := a.agentState != st
	a.agentState = st
	a.mu.Unlock()
	if was && initialized && !inCDB {
		a.log.Warn("this member was removed from the cluster; the agent stops. Wipe its state with `vigil member reset` before it joins again")
		os.WriteFile(filepath.Join(a.dir, RemovedFile), []byte(fmt.Sprintf("removed, seen at %s\n", time.Now().UTC().Format(time.RFC3339))), 0o600)
		a.removedOne.Do(func() { close(a.removed) })
		return
	}
	role := "member"
	if leader == a.cfg.Name {
		role = "director"
	}
	a.sd.status(fmt.Sprintf("member %s of cluster %s: %s, %s", a.cfg.Name, a.cfg.Cluster, st, role))
	if changed {
		a.log.Info("agent state", "state", st)
		a.ml.SetMeta(membership.Meta{ID: a.cfg.ID, ClusterID: a.cfg.ClusterID, AgentState: st, API: a.cfg.API})
	}
}

func (a *Agent) localAgentState() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agentState
}

// initIfBootstrap writes the first state after the cluster was formed.
func (a *Agent) initIfBootstrap(ctx context.Context) {
	path := filepath.Join(a.dir, BootstrapFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var initialized bool
	a.store.View(func(s *cdb.State) { initialized = s.Cluster.Name != "" })
	if !initialized {
		var args cdb.InitArgs
		if err := json.Unmarshal(b, &args); err != nil {
			a.log.Error("bootstrap file does not decode", "path", path, "err", err)
			return
		}
		cctx, cancel := context.WithTimeout(ctx, a.prof.ApplyTimeout)
		_, _, err := a.store.Apply(cctx, &cdb.Command{Op: cdb.OpInit, At: time.Now().UTC(), By: "cluster create", Init: &args})
		cancel()
		if err != nil {
			a.log.Error("writing the first cluster state", "err", err)
			return
		}
		a.log.Info("cluster database initialized", "cluster", args.Cluster.Name)
	}
	os.Remove(path)
	a.cfg.Bootstrap = false
	if err := a.cfg.Save(a.dir); err != nil {
		a.log.Error("saving vigil.yaml", "err", err)
	}
}

// maxVoters is the largest Raft voter set.
const maxVoters = 7

// reconcile makes the Raft configuration follow the member list: live members
// that are missing are added (voters while there are fewer than 7), removed
// members are taken out one at a time.
func (a *Agent) reconcile() {
	st := a.store.State()
	if st.Cluster.Name == "" {
		return
	}
	servers, err := a.store.Configuration()
	if err != nil {
		return
	}
	in := map[string]cdb.Server{}
	voters := 0
	for _, s := range servers {
		in[s.ID] = s
		if s.Voter {
			voters++
		}
	}
	peers := a.ml.Peers()
	timeout := a.prof.ApplyTimeout
	for _, s := range servers {
		if _, ok := st.Members[s.ID]; !ok {
			a.log.Info("removing member from the Raft configuration", "removed", s.ID)
			if err := a.store.RemoveServer(s.ID, timeout); err != nil {
				a.log.Warn("removing from Raft", "removed", s.ID, "err", err)
			}
			return // one change at a time
		}
	}
	for _, name := range st.MemberNames() {
		m := st.Members[name]
		s, ok := in[name]
		if ok {
			if s.Voter && m.Votes == 0 {
				a.store.DemoteServer(name, timeout)
				return
			}
			if !s.Voter && m.Votes == 1 && voters < maxVoters {
				if p, up := peers[name]; up && p.Up() {
					a.log.Info("promoting member to voter", "promoted", name)
					a.store.AddServer(name, config.RPCAddress(m.Links[0]), true, timeout)
					return
				}
			}
			continue
		}
		if p, ok := peers[name]; !ok || !p.Up() {
			continue
		}
		voter := m.Votes == 1 && voters < maxVoters
		a.log.Info("adding member to the Raft configuration", "added", name, "voter", voter)
		if err := a.store.AddServer(name, config.RPCAddress(m.Links[0]), voter, timeout); err != nil {
			a.log.Warn("adding to Raft", "added", name, "err", err)
		}
		return
	}
}

func (a *Agent) pruneTokens(ctx context.Context) {
	expired := false
	now := time.Now()
	a.store.View(func(s *cdb.State) {
		for _, t := range s.Tokens {
			if now.After(t.Expires.Add(time.Hour)) {
				expired = true
			}
		}
	})
	if expired {
		cctx, cancel := context.WithTimeout(ctx, a.prof.ApplyTimeout)
		defer cancel()
		a.store.Apply(cctx, &cdb.Command{Op: cdb.OpTokensPrune, At: now.Add(-time.Hour).UTC(), By: "director"})
	}
}

// joinLoop keeps every link joined to the other members it knows of.
func (a *Agent) joinLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		addrs := make([][]string, len(a.cfg.Links))
		any := false
		a.store.View(func(s *cdb.State) {
			for i := range a.cfg.Links {
				if !a.ml.Alone(i) {
					continue
				}
				for _, n := range s.MemberNames() {
					m := s.Members[n]
					if n != a.cfg.Name && i < len(m.Links) {
						addrs[i] = append(addrs[i], m.Links[i])
						any = true
					}
				}
			}
		})
		if a.ml.Alone(0) && len(addrs[0]) == 0 {
			for _, p := range a.cfg.Peers {
				if p != a.cfg.Links[0] {
					addrs[0] = append(addrs[0], p)
					any = true
				}
			}
		}
		if any {
			a.ml.Join(addrs)
		}
		if !a.wait(ctx, t.C, nil) {
			return
		}
	}
}

// CachedMember is an entry of DATA_DIR/members.json, which the CLI reads to
// find other members when the local agent is down.
type CachedMember struct {
	Name string `json:"name"`
	API  string `json:"api"`
}

func (a *Agent) writeMembersCache() {
	var ms []CachedMember
	a.store.View(func(s *cdb.State) {
		for _, n := range s.MemberNames() {
			ms = append(ms, CachedMember{Name: n, API: s.Members[n].API})
		}
	})
	if len(ms) == 0 {
		return
	}
	b, _ := json.MarshalIndent(ms, "", "  ")
	config.WriteFileAtomic(filepath.Join(a.dir, MembersFile), b, 0o600)
}
