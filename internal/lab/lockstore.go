package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/internal/lab/check"
)

// LockStorePort is where the lock store listens, in the client namespace.
const LockStorePort = 7100

// maxOpBody bounds an operation's request body.
const maxOpBody = 64 << 10

// fence is the lock store's rule, per resource: a write is accepted only
// if its token is at least the highest token the store accepted on the
// resource, a read only if its token is at least the highest token of an
// accepted write (a PR holder granted before a later EX is stale). It is
// the pure core of the store; check.CheckDLM replays the store's log
// against the same rule.
type fence struct {
	res map[string]*fenceState
}

type fenceState struct {
	maxAny, maxWrite uint64
	anyBy, writeBy   string // who the highest tokens came from
}

// decide accepts or refuses op, and says why it refused.
func (f *fence) decide(op *check.DLMOp) (bool, string) {
	if f.res == nil {
		f.res = map[string]*fenceState{}
	}
	st := f.res[op.Resource]
	if st == nil {
		st = &fenceState{}
		f.res[op.Resource] = st
	}
	switch {
	case op.Kind == check.OpWrite && op.Token < st.maxAny:
		return false, fmt.Sprintf("stale token %d: the store has accepted token %d on %s (from %s)", op.Token, st.maxAny, op.Resource, st.anyBy)
	case op.Kind == check.OpRead && op.Token < st.maxWrite:
		return false, fmt.Sprintf("stale token %d: the store has accepted a write with token %d on %s (from %s)", op.Token, st.maxWrite, op.Resource, st.writeBy)
	}
	who := op.Lock + " of " + op.Client
	if op.Token >= st.maxAny {
		st.maxAny, st.anyBy = op.Token, who
	}
	if op.Kind == check.OpWrite && op.Token >= st.maxWrite {
		st.maxWrite, st.writeBy = op.Token, who
	}
	return true, ""
}

// OpAnswer is the lock store's answer to an operation.
type OpAnswer struct {
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"`
}

// lockStore is the HTTP face of the fence: it decides and logs each
// operation under one mutex, so the log's order is the order of decisions.
type lockStore struct {
	mu    sync.Mutex
	fence fence     // guarded by mu
	log   io.Writer // guarded by mu
	err   error     // guarded by mu: the first failed log write
}

func (s *lockStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/op" {
		http.Error(w, "POST an operation to /op", http.StatusNotFound)
		return
	}
	var op check.DLMOp
	d := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOpBody))
	d.DisallowUnknownFields()
	if err := d.Decode(&op); err != nil {
		http.Error(w, "the body is not a lock store operation: "+err.Error(), http.StatusBadRequest)
		return
	}
	op.Arrived, op.Accepted, op.Reason = 0, false, ""
	if err := op.ValidateRequest(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ans, err := s.apply(&op)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if !ans.Accepted {
		w.WriteHeader(http.StatusConflict)
	}
	json.NewEncoder(w).Encode(ans)
}

// apply decides op and appends it to the log.
func (s *lockStore) apply(op *check.DLMOp) (OpAnswer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return OpAnswer{}, fmt.Errorf("the lock store cannot log: %v", s.err)
	}
	op.Arrived = Mono()
	op.Accepted, op.Reason = s.fence.decide(op)
	b, err := json.Marshal(op)
	if err != nil {
		return OpAnswer{}, err
	}
	if _, err := s.log.Write(append(b, '\n')); err != nil {
		s.err = err
		return OpAnswer{}, fmt.Errorf("the lock store cannot log: %v", err)
	}
	return OpAnswer{Accepted: op.Accepted, Reason: op.Reason}, nil
}

// ServeLockStore is the lock store (vigil-lab lockstore): it answers POST
// /op until ctx ends, appending every operation with its decision to the
// log file, one JSON object (check.DLMOp) per line. Once it listens it
// writes "listening on ADDR" to ready.
func ServeLockStore(ctx context.Context, listen, logFile string, ready io.Writer) error {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(ready, "listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: &lockStore{log: f}, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
