package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/lab/check"
)

func TestFence(t *testing.T) {
	var f fence
	op := func(res, kind string, token uint64) check.DLMOp {
		mode := check.ModePR
		if kind == check.OpWrite {
			mode = check.ModeEX
		}
		return check.DLMOp{Resource: res, Member: "m1", Client: "m1/w1", Lock: fmt.Sprintf("m1#%d", token), Token: token, Mode: mode, Kind: kind}
	}
	steps := []struct {
		op     check.DLMOp
		ok     bool
		reason string
	}{
		{op("r1", check.OpWrite, 5), true, ""},
		{op("r1", check.OpWrite, 5), true, ""}, // the same holder again
		{op("r1", check.OpRead, 6), true, ""},
		{op("r1", check.OpRead, 5), true, ""}, // a PR holder older than another PR, newer than the write
		{op("r1", check.OpWrite, 5), false, "stale token 5: the store has accepted token 6 on r1 (from m1#6 of m1/w1)"},
		{op("r2", check.OpWrite, 1), true, ""}, // resources are independent
		{op("r1", check.OpWrite, 7), true, ""},
		{op("r1", check.OpRead, 6), false, "stale token 6: the store has accepted a write with token 7 on r1 (from m1#7 of m1/w1)"},
		{op("r1", check.OpRead, 8), true, ""},
		{op("r1", check.OpWrite, 7), false, "stale token 7: the store has accepted token 8"},
	}
	for i, s := range steps {
		ok, why := f.decide(&s.op)
		if ok != s.ok || !strings.HasPrefix(why, s.reason) || (s.ok && why != "") {
			t.Errorf("step %d: %s token %d on %s: %v %q, want %v %q", i, s.op.Kind, s.op.Token, s.op.Resource, ok, why, s.ok, s.reason)
		}
	}
}

func TestLockStoreHTTP(t *testing.T) {
	var log bytes.Buffer
	srv := httptest.NewServer(&lockStore{log: &log})
	defer srv.Close()
	post := func(body string) (int, OpAnswer) {
		resp, err := http.Post(srv.URL+"/op", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a OpAnswer
		json.NewDecoder(resp.Body).Decode(&a)
		return resp.StatusCode, a
	}
	w := `{"resource":"r1","member":"m1","client":"m1/w1","lock":"m1#2","token":9,"mode":"EX","kind":"write","seq":1,"sent":5}`
	if code, a := post(w); code != 200 || !a.Accepted {
		t.Errorf("write: %d %+v", code, a)
	}
	// The client cannot claim the store's fields.
	r := `{"resource":"r1","member":"m2","client":"m2/w1","lock":"m2#1","token":8,"mode":"PR","kind":"read","seq":1,"sent":6,"accepted":true,"arrived":1}`
	if code, a := post(r); code != http.StatusConflict || a.Accepted || !strings.Contains(a.Reason, "stale token 8") {
		t.Errorf("stale read: %d %+v", code, a)
	}
	for _, bad := range []string{`{"resource":"r1"}`, `not json`, `{"resource":"r1","member":"m1","client":"c","lock":"l","token":1,"mode":"PR","kind":"write"}`,
		`{"resource":"r1","member":"m1","client":"c","lock":"l","token":1,"mode":"EX","kind":"write","color":"red"}`} {
		if code, _ := post(bad); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", bad, code)
		}
	}
	if resp, err := http.Get(srv.URL + "/op"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /op: %v %v", resp.StatusCode, err)
	}
	ops, bad, err := check.ParseDLMOps(&log)
	if err != nil || len(bad) > 0 || len(ops) != 2 {
		t.Fatalf("the store's log: %+v %q %v", ops, bad, err)
	}
	if !ops[0].Accepted || ops[1].Accepted || ops[1].Arrived < ops[0].Arrived || ops[0].Arrived == 0 || ops[1].Reason == "" {
		t.Errorf("the store's log: %+v", ops)
	}
	if rep := check.CheckDLM(nil, ops); rep.Refused != 1 || len(rep.Violations) != 1 || !strings.Contains(rep.Violations[0], "no worker reported granted") {
		t.Errorf("check: %+v", rep)
	}
}

// fakeLM is an in-memory lock manager for the worker's tests: EX and PR on
// named resources, waiters polled, one token counter, and lose() to take
// a session's locks away as a lease ending would.
type fakeLM struct {
	mu     sync.Mutex
	token  uint64
	ids    int
	held   map[string][]*fakeLock // resource: granted locks
	dialOK atomic.Bool
}

type fakeSession struct {
	lm     *fakeLM
	name   string
	lost   chan dlmLostNote
	once   sync.Once
	closed atomic.Bool
	gone   atomic.Bool // lost: every operation fails
}

type fakeLock struct {
	s     *fakeSession
	res   string
	ex    bool
	id    string
	token uint64
}

func (l *fakeLock) ID() string    { return l.id }
func (l *fakeLock) Token() uint64 { return l.token }

func (l *fakeLock) Unlock(ctx context.Context) error {
	if l.s.gone.Load() {
		return errors.New("lock lost")
	}
	lm := l.s.lm
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for i, x := range lm.held[l.res] {
		if x == l {
			lm.held[l.res] = append(lm.held[l.res][:i:i], lm.held[l.res][i+1:]...)
			return nil
		}
	}
	return errors.New("unknown lock")
}

func (lm *fakeLM) dial(ctx context.Context, socket string) (dlmSession, error) {
	if !lm.dialOK.Load() {
		return nil, errors.New("dial unix " + socket + ": connect: no such file or directory")
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.ids++
	return &fakeSession{lm: lm, name: fmt.Sprintf("s%d", lm.ids), lost: make(chan dlmLostNote, 4)}, nil
}

func (s *fakeSession) Lock(ctx context.Context, res string, ex bool) (dlmHeld, error) {
	for {
		if s.gone.Load() {
			return nil, errors.New("lock session lost")
		}
		s.lm.mu.Lock()
		free := true
		for _, h := range s.lm.held[res] {
			free = free && !h.ex && !ex
		}
		if free {
			s.lm.token++
			s.lm.ids++
			l := &fakeLock{s: s, res: res, ex: ex, id: fmt.Sprintf("%s#%d", s.name, s.lm.ids), token: s.lm.token}
			if s.lm.held == nil {
				s.lm.held = map[string][]*fakeLock{}
			}
			s.lm.held[res] = append(s.lm.held[res], l)
			s.lm.mu.Unlock()
			return l, nil
		}
		s.lm.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (s *fakeSession) Lost() <-chan dlmLostNote { return s.lost }

func (s *fakeSession) Close() error {
	s.closed.Store(true)
	s.lm.drop(s)
	s.once.Do(func() { close(s.lost) })
	return nil
}

// drop releases every lock of s.
func (lm *fakeLM) drop(s *fakeSession) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for res, hs := range lm.held {
		var keep []*fakeLock
		for _, h := range hs {
			if h.s != s {
				keep = append(keep, h)
			}
		}
		lm.held[res] = keep
	}
}

// lose takes the locks of the session holding an EX lock on res away: they
// are released and the session is told.
func (lm *fakeLM) lose(res string) *fakeSession {
	lm.mu.Lock()
	var s *fakeSession
	for _, h := range lm.held[res] {
		if h.ex {
			s = h.s
		}
	}
	lm.mu.Unlock()
	if s == nil {
		return nil
	}
	s.gone.Store(true)
	lm.drop(s)
	s.lost <- dlmLostNote{Err: "the lease of m1 is ending"}
	return s
}

// runWorkers runs workers (options from mk) against lm and a real store
// until ctx ends, and returns their events and the store's ops.
func runWorkers(t *testing.T, ctx context.Context, lm *fakeLM, n int, mk func(i int, o *DLMWorkerOptions)) ([]check.DLMEvent, []check.DLMOp) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "store.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv := httptest.NewServer(&lockStore{log: f})
	defer srv.Close()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		o := DLMWorkerOptions{Socket: "/nonexistent/dlm.sock", Store: srv.URL, Member: fmt.Sprintf("m%d", i%2+1), Client: fmt.Sprintf("w%d", i),
			Resources: []string{"r1", "r2"}, Seed: uint64(i), Log: filepath.Join(dir, fmt.Sprintf("w%d.log", i)),
			GapMin: time.Millisecond, GapMax: 5 * time.Millisecond, Redial: 10 * time.Millisecond, dial: lm.dial}
		if mk != nil {
			mk(i, &o)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := RunDLMWorker(ctx, o); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var evs []check.DLMEvent
	for i := 0; i < n; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("w%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		e, bad, err := check.ParseDLMEvents(bytes.NewReader(b))
		if err != nil || len(bad) > 0 {
			t.Fatalf("worker %d's log: %q %v", i, bad, err)
		}
		evs = append(evs, e...)
	}
	b, err := os.ReadFile(filepath.Join(dir, "store.log"))
	if err != nil {
		t.Fatal(err)
	}
	ops, bad, err := check.ParseDLMOps(bytes.NewReader(b))
	if err != nil || len(bad) > 0 {
		t.Fatalf("the store's log: %q %v", bad, err)
	}
	return evs, ops
}

func count(evs []check.DLMEvent, kind string) int {
	n := 0
	for _, e := range evs {
		if e.Event == kind {
			n++
		}
	}
	return n
}

// Workers against a correct lock manager: the checker finds nothing, and
// the workers dial again while the socket is missing.
func TestDLMWorkers(t *testing.T) {
	lm := &fakeLM{}
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	go func() {
		time.Sleep(200 * time.Millisecond)
		lm.dialOK.Store(true)
	}()
	evs, ops := runWorkers(t, ctx, lm, 4, nil)
	rep := check.CheckDLM(evs, ops)
	t.Logf("%s", rep)
	if len(rep.Violations) > 0 {
		t.Errorf("violations: %q", rep.Violations)
	}
	if rep.Grants < 20 || rep.GrantsEX == 0 || rep.GrantsEX == rep.Grants || rep.Accepted < rep.Grants || rep.Survived < rep.Grants-4 {
		t.Errorf("too little work: %+v", rep)
	}
	if n := count(evs, check.DLMDialError); n != 4 {
		t.Errorf("%d dial-error events, want one per worker (the first of a run)", n)
	}
	if count(evs, check.DLMStart) != 4 || count(evs, check.DLMStop) != 4 || count(evs, check.DLMConnected) != 4 {
		t.Errorf("start %d stop %d connected %d, want 4 each", count(evs, check.DLMStart), count(evs, check.DLMStop), count(evs, check.DLMConnected))
	}
}

// A holder whose lock is lost and that keeps writing (IgnoreLost) is
// refused by the store once another worker took the lock, and the checker
// finds nothing wrong: fencing did its job.
func TestDLMWorkerFencing(t *testing.T) {
	lm := &fakeLM{}
	lm.dialOK.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	started := make(chan struct{})
	go func() {
		// Worker 0 takes r1 in EX and writes every 10 ms for a long time;
		// then its lock is lost and worker 1 gets r1.
		time.Sleep(100 * time.Millisecond)
		close(started)
		for lm.lose("r1") == nil {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		cancel()
	}()
	evs, ops := runWorkers(t, ctx, lm, 2, func(i int, o *DLMWorkerOptions) {
		o.Resources, o.Modes = []string{"r1"}, []string{check.ModeEX}
		if i == 0 {
			// Every hold of w0 sends 1000 operations, so that its first hold
			// lasts until r1 is taken away (the count is otherwise random).
			o.MinOps, o.MaxOps, o.GapMin, o.GapMax, o.IgnoreLost = 1000, 1000, 10*time.Millisecond, 10*time.Millisecond, true
			o.Seed = 1
		} else {
			o.dial = func(ctx context.Context, s string) (dlmSession, error) {
				<-started // after worker 0 holds r1
				return lm.dial(ctx, s)
			}
		}
	})
	rep := check.CheckDLM(evs, ops)
	t.Logf("%s", rep)
	if len(rep.Violations) > 0 {
		t.Errorf("violations: %q", rep.Violations)
	}
	if rep.Lost != 1 || rep.Refused == 0 {
		t.Errorf("lost %d refused %d, want 1 lost lock and its later writes refused", rep.Lost, rep.Refused)
	}
	for _, o := range ops {
		if o.Client == "w0" && o.Accepted && o.Token != ops[0].Token {
			t.Errorf("w0 wrote with a later lock: %+v", o)
		}
	}
	// The lost lock's unlock failed.
	if rep.UnlockFailed != 1 {
		t.Errorf("%d failed unlocks, want the lost lock's", rep.UnlockFailed)
	}
	for _, e := range evs {
		if e.Event == check.DLMUnlock && e.Client == "w0" && e.Token == ops[0].Token && e.OK {
			t.Errorf("the lost lock's unlock succeeded: %+v", e)
		}
	}
}

// stubSession fails or blocks every lock request.
type stubSession struct {
	err  error // nil: block until ctx ends
	lost chan dlmLostNote
}

func (s *stubSession) Lock(ctx context.Context, res string, ex bool) (dlmHeld, error) {
	if s.err != nil {
		return nil, s.err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}
func (s *stubSession) Lost() <-chan dlmLostNote { return s.lost }
func (s *stubSession) Close() error             { close(s.lost); return nil }

// A refused request is a lock error, retried after Redial; a request that
// waits past Timeout is a timeout.
func TestDLMWorkerLockErrors(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		kind      string
		min, most int
	}{
		{"refused", errors.New("member m2 is not in the lock manager view"), check.DLMLockError, 2, 6},
		{"timeout", nil, check.DLMTimeout, 2, 12},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
			defer cancel()
			log := filepath.Join(t.TempDir(), "w.log")
			err := RunDLMWorker(ctx, DLMWorkerOptions{Socket: "s", Store: "http://127.0.0.1:1", Member: "m1", Client: "w", Resources: []string{"r1"},
				Log: log, Timeout: 50 * time.Millisecond, Redial: 200 * time.Millisecond,
				dial: func(context.Context, string) (dlmSession, error) {
					return &stubSession{err: tt.err, lost: make(chan dlmLostNote)}, nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(log)
			evs, bad, _ := check.ParseDLMEvents(bytes.NewReader(b))
			if len(bad) > 0 {
				t.Fatalf("bad lines %q", bad)
			}
			n, other := count(evs, tt.kind), count(evs, check.DLMTimeout)+count(evs, check.DLMLockError)-count(evs, tt.kind)
			if n < tt.min || n > tt.most || other != 0 {
				t.Errorf("%d %s events and %d of the other kind in 700ms, want %d..%d and none", n, tt.kind, other, tt.min, tt.most)
			}
		})
	}
}
