package cdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/config"
)

// unknownOutcome marks errors after which a write may or may not be applied;
// such a write must not be retried blindly.
const unknownOutcome = "may or may not be applied"

// UnknownOutcome reports whether err leaves a write's fate unknown.
func UnknownOutcome(err error) bool {
	return err != nil && strings.Contains(err.Error(), unknownOutcome)
}

// ErrNotLeader means the write must go to the director.
var ErrNotLeader = errors.New("this member is not the director")

// fsm applies commands to the state. mu guards state and preview.
type fsm struct {
	mu    sync.RWMutex
	state *State // guarded by mu
	// preview is the state rebuilt from this member's own snapshot and log at
	// start-up. Reads use it until Raft has applied as far, so a restarted
	// member answers from its data dir before it reaches the cluster.
	preview *State // guarded by mu
	// cache and appliedCache are copies of what State and Applied return,
	// made once per change and shared by every reader; an apply or restore
	// drops them.
	cache, appliedCache *State // guarded by mu
	// gen counts changes, so a copy made outside mu is cached only if no
	// change came meanwhile.
	gen uint64 // guarded by mu
	// notify is called after every apply, outside mu.
	notify func()
	// log is the event log, which Apply writes after mu is released.
	log *eventLog
}

func newFSM(notify func()) *fsm {
	return &fsm{state: NewState(), notify: notify, log: newEventLog()}
}

// snapshotDoc is a snapshot: the state and the event log.
type snapshotDoc struct {
	*State
	EventLog    []client.Event `json:"event_log,omitempty"`
	EventLogSeq uint64         `json:"event_log_seq,omitempty"`
}

func (f *fsm) Apply(l *raft.Log) any {
	var c Command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return refuse(ErrRefused, "log entry %d does not decode: %v", l.Index, err)
	}
	f.mu.Lock()
	before := f.state.before(&c)
	res, err := f.state.apply(&c)
	evs := eventsOf(&c, before, f.state, err)
	size := f.state.EventLogSize()
	f.state.Index = l.Index
	f.cache, f.appliedCache = nil, nil
	f.gen++
	if f.preview != nil && l.Index >= f.preview.Index {
		f.preview = nil
	}
	// The log is written under mu too, so that a snapshot holds the state
	// and the log of the same index.
	f.log.add(size, evs)
	f.mu.Unlock()
	if f.notify != nil {
		f.notify()
	}
	if err != nil {
		return err
	}
	return res
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	seq, evs := f.log.snapshot()
	b, err := json.Marshal(snapshotDoc{State: f.state, EventLog: evs, EventLogSeq: seq})
	f.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s := NewState()
	doc := snapshotDoc{State: s}
	if err := json.NewDecoder(rc).Decode(&doc); err != nil {
		return fmt.Errorf("snapshot does not decode: %w", err)
	}
	s.fill()
	f.mu.Lock()
	f.state = s
	f.log.restore(doc.EventLogSeq, doc.EventLog)
	f.cache, f.appliedCache = nil, nil
	f.gen++
	if f.preview != nil && s.Index >= f.preview.Index {
		f.preview = nil
	}
	f.mu.Unlock()
	if f.notify != nil {
		f.notify()
	}
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (s snapshot) Release() {}

// Options configure a Store.
type Options struct {
	Dir                string // data dir; Raft files go to Dir/raft
	LocalID            string // member name
	Stream             raft.StreamLayer
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	Logger             *slog.Logger
	RaftLogLevel       hclog.Level
	// OnChange is called after every applied command or restored snapshot.
	OnChange func()
	// OnApply, if set, is told how long each Apply of this member (the
	// director) took and how it ended.
	OnApply func(op string, d time.Duration, err error)
}

// Store is a member's replica of the cluster database and its Raft node.
type Store struct {
	raft    *raft.Raft
	fsm     *fsm
	trans   *raft.NetworkTransport
	logs    *raftboltdb.BoltStore
	log     *slog.Logger
	hclog   hclog.Logger
	localID raft.ServerID
	onApply func(op string, d time.Duration, err error)
}

// Open opens (or creates) the Raft state in opts.Dir/raft.
func Open(opts Options) (*Store, error) {
	dir := filepath.Join(opts.Dir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: opts.RaftLogLevel, Output: newRaftLog(opts.Logger), DisableTime: true})
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bbolt.Options{Timeout: time.Second}})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w (is another agent running on this data dir?)", filepath.Join(dir, "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, hl)
	if err != nil {
		bolt.Close()
		return nil, err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: opts.Stream, MaxPool: 4, Timeout: 5 * time.Second, Logger: hl,
	})
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(opts.LocalID)
	cfg.HeartbeatTimeout = opts.HeartbeatTimeout
	cfg.ElectionTimeout = opts.ElectionTimeout
	cfg.LeaderLeaseTimeout = opts.LeaderLeaseTimeout
	cfg.CommitTimeout = opts.CommitTimeout
	cfg.SnapshotThreshold = 1024
	cfg.TrailingLogs = 2048
	cfg.SnapshotInterval = 30 * time.Second
	cfg.Logger = hl
	f := newFSM(opts.OnChange)
	f.preview = buildPreview(snaps, bolt, hl)
	r, err := raft.NewRaft(cfg, f, bolt, bolt, snaps, trans)
	if err != nil {
		trans.Close()
		bolt.Close()
		return nil, err
	}
	return &Store{raft: r, fsm: f, trans: trans, logs: bolt, log: opts.Logger, hclog: hl, localID: cfg.LocalID, onApply: opts.OnApply}, nil
}

// HasState reports whether this member's Raft has ever had a configuration.
func (s *Store) HasState() bool {
	return s.raft.LastIndex() > 0
}

// Bootstrap forms a one-member Raft group with this member as voter.
func (s *Store) Bootstrap(addr string) error {
	return s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: s.localID, Address: raft.ServerAddress(addr), Suffrage: raft.Voter},
	}}).Error()
}

// SetRaftLogLevel changes Raft's log level at run time.
func (s *Store) SetRaftLogLevel(l hclog.Level) { s.hclog.SetLevel(l) }

// Close shuts Raft down.
func (s *Store) Close() error {
	err := s.raft.Shutdown().Error()
	s.trans.Close()
	s.logs.Close()
	return err
}

// State returns a copy of the local replica. The copy is shared by every
// caller until the next change: callers must not modify it.
func (s *Store) State() *State { return s.fsm.copyOf(false) }

// Applied returns a copy of the state Raft has applied here, never the
// start-up preview: what the lrm acts on. Shared like State's: do not
// modify it.
func (s *Store) Applied() *State { return s.fsm.copyOf(true) }

// copyOf returns the cached copy, or makes one: it encodes under the read
// lock (so Raft's apply waits only for that) and decodes outside any lock.
func (f *fsm) copyOf(applied bool) *State {
	f.mu.RLock()
	c := f.cache
	src := f.current()
	if applied {
		c, src = f.appliedCache, f.state
	}
	if c != nil {
		f.mu.RUnlock()
		return c
	}
	b, err := json.Marshal(src)
	gen := f.gen
	f.mu.RUnlock()
	if err != nil {
		panic(fmt.Sprintf("cdb: state does not marshal: %v", err))
	}
	c = NewState()
	if err := json.Unmarshal(b, c); err != nil {
		panic(fmt.Sprintf("cdb: state does not unmarshal: %v", err))
	}
	c.fill()
	f.mu.Lock()
	if f.gen == gen {
		if applied {
			f.appliedCache = c
		} else {
			f.cache = c
		}
	}
	f.mu.Unlock()
	return c
}

// View runs fn with the local replica under a read lock; fn must not keep it.
func (s *Store) View(fn func(*State)) {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	fn(s.fsm.current())
}

// current is the state reads see. Callers hold mu.
func (f *fsm) current() *State {
	if f.preview != nil {
		return f.preview
	}
	return f.state
}

// buildPreview replays this member's latest snapshot and the commands of its
// log after it. The log may end with entries not yet committed; the preview
// is only read, never replicated, and is dropped once Raft has applied as far.
func buildPreview(snaps raft.SnapshotStore, logs raft.LogStore, hl hclog.Logger) *State {
	st := NewState()
	metas, err := snaps.List()
	if err == nil && len(metas) > 0 {
		_, rc, err := snaps.Open(metas[0].ID)
		if err == nil {
			err = json.NewDecoder(rc).Decode(st)
			rc.Close()
		}
		if err != nil {
			hl.Warn("preview: snapshot unreadable", "error", err)
			return nil
		}
		st.fill()
	}
	first, _ := logs.FirstIndex()
	last, _ := logs.LastIndex()
	if first == 0 && st.Index == 0 {
		return nil
	}
	for i := max(first, st.Index+1); i <= last && i > 0; i++ {
		var l raft.Log
		if logs.GetLog(i, &l) != nil || l.Type != raft.LogCommand {
			continue
		}
		var c Command
		if json.Unmarshal(l.Data, &c) != nil {
			continue
		}
		st.apply(&c)
		st.Index = i
	}
	if st.Cluster.Name == "" {
		return nil
	}
	return st
}

// IsLeader reports whether this member leads the Raft group.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's address and id, empty if none is known.
func (s *Store) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// LeaderCh reports leadership changes of this member.
func (s *Store) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// RaftState is the local Raft state (Leader, Follower, Candidate, Shutdown).
func (s *Store) RaftState() string { return s.raft.State().String() }

// Stats returns Raft's statistics.
func (s *Store) Stats() map[string]string { return s.raft.Stats() }

// Apply commits a command; only the leader may call it. It returns the
// command's result or its refusal.
func (s *Store) Apply(ctx context.Context, c *Command) (any, uint64, error) {
	t0 := time.Now()
	res, idx, err := s.apply(ctx, c)
	if s.onApply != nil {
		s.onApply(string(c.Op), time.Since(t0), err)
	}
	return res, idx, err
}

func (s *Store) apply(ctx context.Context, c *Command) (any, uint64, error) {
	if !s.IsLeader() {
		return nil, 0, ErrNotLeader
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := s.raft.Apply(c.Encode(), timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			// Not enqueued: safe to send again to the new director.
			return nil, 0, ErrNotLeader
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, 0, Refuse(ErrUnreachable, "the write was not taken within %s: the director is overloaded or stepping down; try again", timeout.Round(time.Millisecond))
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
			return nil, 0, Refuse(ErrUnreachable, "%s: the write %s (the director lost its role while committing it); check with `vigil cdb show` before trying again", err, unknownOutcome)
		}
		return nil, 0, err
	}
	if err, ok := f.Response().(error); ok {
		return nil, f.Index(), err
	}
	return f.Response(), f.Index(), nil
}

// VerifyLeader confirms, with a round to a quorum, that this member still
// leads.
func (s *Store) VerifyLeader() error { return s.raft.VerifyLeader().Error() }

// Barrier waits until every committed entry is applied here (leader only).
func (s *Store) Barrier(timeout time.Duration) error { return s.raft.Barrier(timeout).Error() }

// Server is one entry of the Raft configuration.
type Server struct {
	ID      string
	Address string
	Voter   bool
}

// Configuration returns the current Raft configuration.
func (s *Store) Configuration() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Server
	for _, sv := range f.Configuration().Servers {
		out = append(out, Server{ID: string(sv.ID), Address: string(sv.Address), Voter: sv.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddServer adds or updates a server (leader only).
func (s *Store) AddServer(id, addr string, voter bool, timeout time.Duration) error {
	if voter {
		return s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error()
	}
	return s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error()
}

// DemoteServer turns a voter into a non-voter (leader only).
func (s *Store) DemoteServer(id string, timeout time.Duration) error {
	return s.raft.DemoteVoter(raft.ServerID(id), 0, timeout).Error()
}

// RemoveServer removes a server (leader only).
func (s *Store) RemoveServer(id string, timeout time.Duration) error {
	return s.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error()
}

// TransferLeadership hands leadership to another voter, if there is one.
func (s *Store) TransferLeadership() error {
	servers, err := s.Configuration()
	if err != nil {
		return err
	}
	voters := 0
	for _, sv := range servers {
		if sv.Voter {
			voters++
		}
	}
	if voters < 2 {
		return errors.New("no other voter")
	}
	return s.raft.LeadershipTransfer().Error()
}

// FSMIndex is the index of the last command the state machine has applied
// here (Raft's AppliedIndex counts entries handed to it, which runs ahead).
func (s *Store) FSMIndex() uint64 {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return s.fsm.state.Index
}

// AppliedIndex is the index of the last command applied here.
func (s *Store) AppliedIndex() uint64 { return s.raft.AppliedIndex() }

// Recover rewrites this member's Raft configuration to the given voters, for
// a cluster that lost a majority of its voters for good (the role of VMS's
// SET CLUSTER/EXPECTED_VOTES). The agent must be stopped, and every surviving
// voter named must be recovered with the same list before any is started.
func Recover(dir, localID string, voters []string, log *slog.Logger) error {
	rdir := filepath.Join(dir, "raft")
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: newRaftLog(log), DisableTime: true})
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(rdir, "raft.db"), BoltOptions: &bbolt.Options{Timeout: time.Second}})
	if err != nil {
		return fmt.Errorf("opening %s: %w (is the agent still running?)", filepath.Join(rdir, "raft.db"), err)
	}
	defer bolt.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(rdir, 3, hl)
	if err != nil {
		return err
	}
	st := buildPreview(snaps, bolt, hl)
	if st == nil {
		return errors.New("this member's cluster database is empty: there is nothing to recover")
	}
	conf := raft.Configuration{}
	for _, v := range voters {
		m, ok := st.Members[v]
		if !ok {
			return Refuse(ErrInvalid, "member %s is not in this member's copy of the cluster database (members: %v)", v, st.MemberNames())
		}
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(v), Address: raft.ServerAddress(config.RPCAddress(m.Links[0])), Suffrage: raft.Voter})
	}
	found := false
	for _, v := range voters {
		found = found || v == localID
	}
	if !found {
		return Refuse(ErrInvalid, "the voters must include this member (%s)", localID)
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(localID)
	cfg.Logger = hl
	_, trans := raft.NewInmemTransport(raft.ServerAddress(localID))
	return raft.RecoverCluster(cfg, newFSM(nil), bolt, bolt, snaps, trans, conf)
}
