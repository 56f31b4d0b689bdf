package cdb

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func logOf(index uint64, c *Command) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: c.Encode()}
}

func TestFSMApply(t *testing.T) {
	var notified atomic.Int32
	f := &fsm{log: newEventLog(), state: NewState(), notify: func() { notified.Add(1) }}
	if res := f.Apply(logOf(1, initCmd())); res != nil {
		t.Fatalf("init: %v", res)
	}
	if res := f.Apply(logOf(2, tokenCmd("t2", "s", "m2", t0.Add(time.Hour)))); res != nil {
		t.Fatalf("token-create: %v", res)
	}
	res := f.Apply(logOf(3, joinCmd(t0, "t2", "s", "m2", 0)))
	if m, ok := res.(Member); !ok || m.ID != 2 {
		t.Fatalf("join returned %#v, want member m2 with id 2", res)
	}
	// A refusal is the result, and the index still moves.
	res = f.Apply(logOf(4, joinCmd(t0, "t2", "s", "m2", 0)))
	if err, ok := res.(error); !ok || !errors.Is(err, ErrRefused) {
		t.Fatalf("replayed join returned %#v, want a refusal", res)
	}
	res = f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand, Data: []byte("{not json")})
	if err, ok := res.(error); !ok || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "log entry 5 does not decode") {
		t.Fatalf("garbage entry returned %#v", res)
	}
	if f.state.Index != 4 {
		t.Fatalf("index %d after a garbage entry at 5, want 4 (an entry that does not decode is not applied)", f.state.Index)
	}
	if got := notified.Load(); got != 4 {
		t.Fatalf("notified %d times, want once per applied entry (4)", got)
	}
}

func TestFSMPreviewUntilCaughtUp(t *testing.T) {
	preview := NewState()
	preview.Cluster.Name, preview.Index = "from-preview", 2
	f := &fsm{log: newEventLog(), state: NewState(), preview: preview}
	if f.current() != preview {
		t.Fatalf("reads do not see the preview")
	}
	f.Apply(logOf(1, initCmd()))
	if f.current() != preview {
		t.Fatalf("preview dropped at index 1, before Raft reached its index 2")
	}
	f.Apply(logOf(2, tokenCmd("t2", "s", "m2", t0.Add(time.Hour))))
	if f.current() != f.state || f.preview != nil {
		t.Fatalf("preview kept after Raft applied its index")
	}

	// A restored snapshot at or past the preview's index drops it too.
	f = &fsm{log: newEventLog(), state: NewState(), preview: preview}
	snap := NewState()
	snap.Index = 1
	if err := f.Restore(io.NopCloser(strings.NewReader(dumpOf(t, snap)))); err != nil {
		t.Fatal(err)
	}
	if f.current() != preview {
		t.Fatalf("preview dropped by a snapshot older than it")
	}
	snap.Index = 3
	if err := f.Restore(io.NopCloser(strings.NewReader(dumpOf(t, snap)))); err != nil {
		t.Fatal(err)
	}
	if f.preview != nil {
		t.Fatalf("preview kept after a newer snapshot")
	}
}

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	fail              bool
	closed, cancelled bool
}

func (s *memSink) ID() string { return "mem" }
func (s *memSink) Write(p []byte) (int, error) {
	if s.fail {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := &fsm{log: newEventLog(), state: NewState()}
	for i, c := range []*Command{initCmd(), tokenCmd("t2", "s", "m2", t0.Add(time.Hour)), joinCmd(t0, "t2", "s", "m2", 0),
		tokenCmd("t3", "s", "m3", t0.Add(time.Hour)), settingsCmd(map[string]string{"user.a": "1"})} {
		f.Apply(logOf(uint64(i+1), c))
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	// Changes after the snapshot are not in it.
	f.Apply(logOf(6, settingsCmd(map[string]string{"user.b": "2"})))

	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}
	var notified atomic.Int32
	g := &fsm{log: newEventLog(), state: NewState(), notify: func() { notified.Add(1) }}
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if notified.Load() != 1 {
		t.Fatalf("restore did not notify")
	}
	if g.state.Index != 5 || g.state.Members["m2"] == nil || g.state.Tokens["t3"] == nil || g.state.Settings["user.a"] != "1" {
		t.Fatalf("restored state is not the snapshot's: %s", dumpOf(t, g.state))
	}
	if _, ok := g.state.Settings["user.b"]; ok {
		t.Fatalf("the snapshot holds a change made after it")
	}
	// The restored state keeps working.
	if res := g.Apply(logOf(6, joinCmd(t0, "t3", "s", "m3", 0))); res.(Member).ID != 3 {
		t.Fatalf("join after restore gave %#v", res)
	}

	fail := memSink{fail: true}
	if err := snap.Persist(&fail); err == nil || !fail.cancelled {
		t.Fatalf("a failed write: err %v, cancelled %v; want an error and a cancelled sink", err, fail.cancelled)
	}
	before := dumpOf(t, g.state)
	if err := g.Restore(io.NopCloser(strings.NewReader("{broken"))); err == nil || !strings.Contains(err.Error(), "snapshot does not decode") {
		t.Fatalf("restore of garbage: %v", err)
	}
	if dumpOf(t, g.state) != before {
		t.Fatalf("a failed restore changed the state")
	}
}

// previewLog builds a log store holding the entries, from index 1.
func previewLog(t *testing.T, entries ...*raft.Log) *raft.InmemStore {
	t.Helper()
	logs := raft.NewInmemStore()
	for i, l := range entries {
		l.Index = uint64(i + 1)
		if err := logs.StoreLog(l); err != nil {
			t.Fatal(err)
		}
	}
	return logs
}

func confLog() *raft.Log {
	return &raft.Log{Type: raft.LogConfiguration, Data: []byte("not a command")}
}

func TestBuildPreview(t *testing.T) {
	hl := hclog.NewNullLogger()
	t.Run("empty", func(t *testing.T) {
		if p := buildPreview(raft.NewInmemSnapshotStore(), raft.NewInmemStore(), hl); p != nil {
			t.Fatalf("preview of nothing = %s, want nil", dumpOf(t, p))
		}
	})
	t.Run("no cluster yet", func(t *testing.T) {
		logs := previewLog(t, confLog(), &raft.Log{Type: raft.LogNoop})
		if p := buildPreview(raft.NewInmemSnapshotStore(), logs, hl); p != nil {
			t.Fatalf("preview without an init = %s, want nil", dumpOf(t, p))
		}
	})
	t.Run("log only", func(t *testing.T) {
		logs := previewLog(t, confLog(), logOf(0, initCmd()), &raft.Log{Type: raft.LogNoop},
			logOf(0, tokenCmd("t2", "s", "m2", t0.Add(time.Hour))), logOf(0, joinCmd(t0, "t2", "s", "m2", 0)),
			&raft.Log{Type: raft.LogCommand, Data: []byte("garbage")}, &raft.Log{Type: raft.LogBarrier})
		p := buildPreview(raft.NewInmemSnapshotStore(), logs, hl)
		if p == nil {
			t.Fatal("no preview")
		}
		if p.Cluster.Name != "c1" || p.Members["m2"] == nil || p.Members["m2"].ID != 2 || p.Tokens["t2"].UsedBy != "m2" {
			t.Fatalf("preview did not replay the commands: %s", dumpOf(t, p))
		}
		if p.Index != 5 {
			t.Fatalf("preview index %d, want 5 (the last command that decodes)", p.Index)
		}
	})
	t.Run("snapshot then log", func(t *testing.T) {
		// The snapshot holds entries 1-3; the log still has them (trailing
		// logs) and two more.
		s := NewState()
		s.apply(initCmd())
		s.apply(tokenCmd("t2", "s", "m2", t0.Add(time.Hour)))
		s.apply(tokenCmd("t3", "s", "m3", t0.Add(time.Hour)))
		s.Index = 3
		snaps := raft.NewInmemSnapshotStore()
		sink, err := snaps.Create(raft.SnapshotVersionMax, 3, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		sink.Write([]byte(dumpOf(t, s)))
		sink.Close()
		logs := previewLog(t, logOf(0, initCmd()),
			// Entry 2 was later compacted into the snapshot; were it replayed
			// on top of the snapshot, user.replayed would appear.
			logOf(0, &Command{Op: OpSettingsSet, At: t0, Settings: map[string]string{"user.replayed": "yes"}}),
			logOf(0, tokenCmd("t3", "s", "m3", t0.Add(time.Hour))),
			logOf(0, joinCmd(t0, "t2", "s", "m2", 0)), logOf(0, joinCmd(t0, "t3", "s", "m3", 0)))
		p := buildPreview(snaps, logs, hl)
		if p == nil {
			t.Fatal("no preview")
		}
		if p.Index != 5 || p.Members["m2"] == nil || p.Members["m3"] == nil {
			t.Fatalf("preview = %s, want the snapshot plus entries 4-5", dumpOf(t, p))
		}
		if _, ok := p.Settings["user.replayed"]; ok {
			t.Fatalf("preview replayed an entry the snapshot already holds")
		}
	})
	t.Run("unreadable snapshot", func(t *testing.T) {
		snaps := raft.NewInmemSnapshotStore()
		sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		sink.Write([]byte("{torn"))
		sink.Close()
		if p := buildPreview(snaps, previewLog(t, logOf(0, initCmd())), hl); p != nil {
			t.Fatalf("preview from a torn snapshot = %s, want nil", dumpOf(t, p))
		}
	})
}

// tcpLayer is a raft.StreamLayer on a plain TCP listener.
type tcpLayer struct{ net.Listener }

func (l tcpLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(a), timeout)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openStore(t *testing.T, dir string, onChange func()) (*Store, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, LocalID: "m1", Stream: tcpLayer{ln},
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil)), RaftLogLevel: hclog.Error, OnChange: onChange})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	return s, ln.Addr().String()
}

func waitLeader(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !s.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 20s: raft state %s", s.RaftState())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStoreSingleMember(t *testing.T) {
	dir := t.TempDir()
	var changes atomic.Int32
	s, addr := openStore(t, dir, func() { changes.Add(1) })
	if s.HasState() {
		t.Fatalf("a new store has state")
	}
	if p := s.State(); p.Cluster.Name != "" {
		t.Fatalf("a new store has a cluster: %s", dumpOf(t, p))
	}
	ctx := context.Background()
	if _, _, err := s.Apply(ctx, initCmd()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply before bootstrap: %v, want ErrNotLeader", err)
	}
	if err := s.Bootstrap(addr); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, s)
	for _, c := range []*Command{initCmd(), tokenCmd("t2", "s", "m2", t0.Add(time.Hour))} {
		if _, _, err := s.Apply(ctx, c); err != nil {
			t.Fatalf("%s: %v", c.Op, err)
		}
	}
	res, idx, err := s.Apply(ctx, joinCmd(t0, "t2", "s", "m2", 0))
	if err != nil || res.(Member).ID != 2 || idx == 0 {
		t.Fatalf("join: %#v at %d, %v", res, idx, err)
	}
	_, idx2, err := s.Apply(ctx, joinCmd(t0, "t2", "s", "m2", 0))
	if !errors.Is(err, ErrRefused) || idx2 <= idx {
		t.Fatalf("replayed join: index %d, %v; want a refusal at a later index", idx2, err)
	}
	if err := s.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if s.AppliedIndex() < idx2 {
		t.Fatalf("applied index %d < %d after a barrier", s.AppliedIndex(), idx2)
	}
	if changes.Load() < 4 {
		t.Fatalf("OnChange called %d times for 4 commands", changes.Load())
	}
	conf, err := s.Configuration()
	if err != nil || len(conf) != 1 || conf[0].ID != "m1" || !conf[0].Voter || conf[0].Address != addr {
		t.Fatalf("configuration %+v, %v", conf, err)
	}
	if err := s.TransferLeadership(); err == nil {
		t.Fatalf("TransferLeadership with no other voter succeeded")
	}
	want := dumpOf(t, s.State())
	var viewed string
	s.View(func(st *State) { viewed = dumpOf(t, st) })
	if viewed != want {
		t.Fatalf("View and State differ")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart the state is readable at once, from the local log,
	// before Raft has formed.
	s, _ = openStore(t, dir, nil)
	defer s.Close()
	if !s.HasState() {
		t.Fatalf("a restarted store has no state")
	}
	if got := dumpOf(t, s.State()); got != want {
		t.Fatalf("state read at restart:\n%s\nwant\n%s", got, want)
	}
	waitLeader(t, s)
	if err := s.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := dumpOf(t, s.State()); got != want {
		t.Fatalf("state once Raft caught up:\n%s\nwant\n%s", got, want)
	}
	if _, _, err := s.Apply(ctx, settingsCmd(map[string]string{"user.after": "restart"})); err != nil {
		t.Fatal(err)
	}
	if s.State().Settings["user.after"] != "restart" {
		t.Fatalf("write after restart not seen")
	}
}

func FuzzApplyCommand(f *testing.F) {
	f.Add(initCmd().Encode())
	f.Add(tokenCmd("t2", "s", "m2", t0.Add(time.Hour)).Encode())
	f.Add(joinCmd(t0, "t2", "s", "m2", 0).Encode())
	f.Add(joinCmd(t0, "t9", "s", "m1", 1).Encode())
	f.Add(settingsCmd(map[string]string{"token-ttl": "2h", "user.a": "", "x": "y"}).Encode())
	f.Add((&Command{Op: OpMemberRemove, Member: "m1"}).Encode())
	f.Add((&Command{Op: OpRestore, Restore: &State{Cluster: Cluster{ID: "id-c1"}, Settings: map[string]string{"user.a": "1"}}}).Encode())
	f.Add((&Command{Op: OpTokensPrune, At: t0.Add(2 * time.Hour)}).Encode())
	f.Add([]byte(`{"op":"join","join":null}`))
	f.Add([]byte(`{"op":"restore","restore":{"members":{"x":null},"tokens":{"y":null}}}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		base := NewState()
		for i, c := range []*Command{initCmd(), tokenCmd("t2", "s", "m2", t0.Add(time.Hour)),
			settingsCmd(map[string]string{"user.a": "1"})} {
			if _, err := base.apply(c); err != nil {
				t.Fatal(err)
			}
			base.Index = uint64(i + 1)
		}
		f1 := &fsm{log: newEventLog(), state: base.Clone()}
		f2 := &fsm{log: newEventLog(), state: base.Clone()}
		r1 := f1.Apply(&raft.Log{Index: 4, Type: raft.LogCommand, Data: data})
		r2 := f2.Apply(&raft.Log{Index: 4, Type: raft.LogCommand, Data: data})
		if err, ok := r1.(error); ok {
			var ce *Error
			if !errors.As(err, &ce) || ce.Msg == "" {
				t.Fatalf("refusal %T %q is not a *cdb.Error with a message", err, err)
			}
			switch {
			case errors.Is(err, ErrRefused), errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
			default:
				t.Fatalf("refusal of an unexpected kind: %v", err)
			}
		}
		// Every member computes the same state, and it still snapshots.
		a, b := dumpOf(t, f1.state), dumpOf(t, f2.state)
		if a != b {
			t.Fatalf("one entry gave two states:\n%s\n%s", a, b)
		}
		if dumpOf(t, r1) != dumpOf(t, r2) {
			t.Fatalf("one entry gave two results: %v, %v", r1, r2)
		}
		snap, err := f1.Snapshot()
		if err != nil {
			t.Fatalf("snapshot after the entry: %v", err)
		}
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			t.Fatal(err)
		}
		g := &fsm{log: newEventLog(), state: NewState()}
		if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
			t.Fatalf("the snapshot does not restore: %v", err)
		}
		if c := dumpOf(t, g.state); c != a {
			t.Fatalf("snapshot round trip changed the state:\n%s\n%s", c, a)
		}
		f1.state.Clone()
		// The state keeps working: later commands neither panic nor
		// corrupt it.
		for i, c := range []*Command{joinCmd(t0, "t2", "s", "m2", 0), {Op: OpTokensPrune, At: t0.Add(48 * time.Hour)},
			{Op: OpMemberRemove, At: t0, Member: "m2"}, settingsCmd(map[string]string{"user.z": "1"})} {
			f1.Apply(logOf(uint64(5+i), c))
		}
		f1.state.Clone()
	})
}
