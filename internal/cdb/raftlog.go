package cdb

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// raftLogWindow is how long a repeated Raft message is held back. Raft
// retries a dead peer every few milliseconds and logs each failure; an
// operator needs the first line and a count, not thousands.
const raftLogWindow = 10 * time.Second

// raftLog turns hclog's lines into slog records (component=raft) and holds
// back repeats of the same message about the same peer.
type raftLog struct {
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	seen map[string]*repeat // guarded by mu
}

type repeat struct {
	first      time.Time
	suppressed int
}

func newRaftLog(log *slog.Logger) *raftLog {
	return &raftLog{log: log.With("component", "raft"), now: time.Now, seen: map[string]*repeat{}}
}

func (r *raftLog) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		r.line(line)
	}
	return len(b), nil
}

func (r *raftLog) line(line string) {
	level := slog.LevelInfo
	msg := line
	if i := strings.Index(line, "["); i >= 0 {
		if j := strings.Index(line[i:], "]"); j > 0 {
			switch strings.TrimSpace(line[i+1 : i+j]) {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "WARN":
				level = slog.LevelWarn
			case "ERROR":
				level = slog.LevelError
			}
			msg = strings.TrimSpace(line[i+j+1:])
		}
	}
	msg = strings.TrimPrefix(msg, "raft: ")
	key := msg
	if i := strings.Index(key, " error="); i >= 0 {
		key = key[:i]
	}
	if i := strings.Index(key, " backoff time="); i >= 0 {
		key = key[:i]
	}
	now := r.now()
	r.mu.Lock()
	rp, ok := r.seen[key]
	if ok && now.Sub(rp.first) < raftLogWindow {
		rp.suppressed++
		r.mu.Unlock()
		return
	}
	n := 0
	if ok {
		n = rp.suppressed
	}
	r.seen[key] = &repeat{first: now}
	if len(r.seen) > 1024 {
		for k, v := range r.seen {
			if now.Sub(v.first) >= raftLogWindow {
				delete(r.seen, k)
			}
		}
	}
	r.mu.Unlock()
	if n > 0 {
		msg = fmt.Sprintf("%s (and %d more like it in the last %s)", msg, n, raftLogWindow)
	}
	r.log.Log(context.Background(), level, msg)
}
