package cdb

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRaftLogHoldsBackRepeats(t *testing.T) {
	var buf bytes.Buffer
	r := newRaftLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	line := `[ERROR] raft: failed to appendEntries to: peer="{Voter m3 127.0.0.1:7001}" error="dial tcp: connection refused"` + "\n"
	for i := 0; i < 50; i++ {
		r.Write([]byte(line))
		now = now.Add(10 * time.Millisecond)
	}
	r.Write([]byte(`[ERROR] raft: failed to appendEntries to: peer="{Voter m2 127.0.0.1:7011}" error=EOF` + "\n"))
	now = now.Add(raftLogWindow)
	r.Write([]byte(line))
	out := buf.String()
	t.Log(out)
	if n := strings.Count(out, "m3 127.0.0.1:7001"); n != 2 {
		t.Errorf("the repeated message was logged %d times, want 2 (first, then with a count)", n)
	}
	if !strings.Contains(out, "and 49 more like it") {
		t.Error("the count of held-back repeats is missing")
	}
	if !strings.Contains(out, "m2 127.0.0.1:7011") || !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "component=raft") {
		t.Error("another peer's message, the level or the component is missing")
	}
}
