package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
)

// Limits on event queries.
const (
	DefaultEventLimit = 1000
	MaxEventLimit     = 100000
	MaxEventWait      = 25 * time.Second
	// MaxEventFollowers bounds the event streams and long polls an agent
	// serves at once.
	MaxEventFollowers = 256
)

// follow takes a place for a stream or long poll; false when all are taken
// (it has answered).
func (s *Server) follow(w http.ResponseWriter) bool {
	if s.followers.Add(1) > MaxEventFollowers {
		s.followers.Add(-1)
		writeError(w, cdb.Refuse(cdb.ErrUnreachable, "this agent already serves %d event streams and long polls: try again later, or ask another member (--api)", MaxEventFollowers))
		return false
	}
	return true
}

// EventFilter parses the query of GET /v1/events (and of the stream).
func EventFilter(r *http.Request) (client.EventFilter, error) {
	q := r.URL.Query()
	f := client.EventFilter{Service: q.Get("service"), Member: q.Get("member"), Kind: q.Get("kind"), Limit: DefaultEventLimit}
	for k := range q {
		if !slices.Contains([]string{"after", "since", "service", "member", "kind", "limit", "wait"}, k) {
			return f, cdb.Refuse(cdb.ErrInvalid, "unknown query parameter %q: use after, since, service, member, kind, limit or wait", k)
		}
	}
	if f.Kind != "" && !slices.Contains(client.EventKinds, f.Kind) {
		return f, cdb.Refuse(cdb.ErrInvalid, "kind %q is not an event kind: use one of %s", f.Kind, strings.Join(client.EventKinds, ", "))
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return f, cdb.Refuse(cdb.ErrInvalid, "after=%q is not an event number", v)
		}
		f.After = n
	}
	if v := q.Get("since"); v != "" {
		t, err := ParseSince(v, time.Now())
		if err != nil {
			return f, err
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxEventLimit {
			return f, cdb.Refuse(cdb.ErrInvalid, "limit=%q must be a number from 1 to %d", v, MaxEventLimit)
		}
		f.Limit = n
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxEventWait {
			return f, cdb.Refuse(cdb.ErrInvalid, "wait=%q must be a duration up to %s, such as 20s", v, MaxEventWait)
		}
		f.Wait = d
	}
	return f, nil
}

// ParseSince reads a time: RFC 3339, or a duration back from now ("10m").
func ParseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, cdb.Refuse(cdb.ErrInvalid, "since=%q is neither a time such as 2026-12-04T21:00:00Z nor a duration back from now such as 10m", v)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	f, err := EventFilter(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if f.Wait > 0 {
		if !s.follow(w) {
			return
		}
		defer s.followers.Add(-1)
	}
	out := s.b.Events(r.Context(), f)
	if out == nil {
		out = []client.Event{}
	}
	writeJSON(w, 200, out)
}

// eventStream serves the event log as server-sent events: each event is an
// SSE message with its Seq as id, so a client that reconnects with
// Last-Event-ID misses nothing still in the log.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request) {
	f, err := EventFilter(r)
	if err != nil {
		writeError(w, err)
		return
	}
	f.Wait = 0
	if !s.follow(w) {
		return
	}
	defer s.followers.Add(-1)
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		if n, err := strconv.ParseUint(id, 10, 64); err == nil {
			f.After = n
		}
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	s.b.EventStream(r.Context(), f, func(evs []client.Event) error {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if len(evs) == 0 {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return err
			}
		}
		for i := range evs {
			b, _ := json.Marshal(&evs[i])
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", evs[i].Seq, evs[i].Kind, b); err != nil {
				return err
			}
		}
		return rc.Flush()
	})
}
