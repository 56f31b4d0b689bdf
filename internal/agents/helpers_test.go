package agents

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// testLogger logs to t.Log until the test ends (background goroutines may
// log later; those lines are dropped).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.over = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	over bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.over {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testEnv is an Env with a fresh state directory.
func testEnv(t *testing.T) Env {
	return Env{StateDir: t.TempDir(), Logger: testLogger(t)}
}

// mustNew builds a resource or fails the test.
func mustNew(t *testing.T, service string, r spec.Resource, env Env) Resource {
	t.Helper()
	res, err := New(service, r, env)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return res
}

// runOK runs a phase and fails the test unless it ends OK.
func runOK(t *testing.T, res Resource, p Phase, c Call) Result {
	t.Helper()
	r := res.Run(context.Background(), p, c)
	logResult(t, r)
	if r.Status != OK {
		t.Fatalf("%s: status %s, want ok: %s (output %q)", p, r.Status, r.Err, r.Output)
	}
	return r
}

// runWant runs a phase and fails the test unless it ends with status want.
func runWant(t *testing.T, res Resource, p Phase, c Call, want Status) Result {
	t.Helper()
	r := res.Run(context.Background(), p, c)
	logResult(t, r)
	if r.Status != want {
		t.Fatalf("%s: status %s, want %s: err %q note %q output %q", p, r.Status, want, r.Err, r.Note, r.Output)
	}
	return r
}

func logResult(t *testing.T, r Result) {
	t.Helper()
	t.Logf("%s %s %s: method=%q skipped=%v status=%s severity=%s rc=%d dur=%s err=%q note=%q output=%q",
		r.Kind, r.Resource, r.Phase, r.Method, r.Skipped, r.Status, r.Severity, r.RC, r.Duration.Round(time.Millisecond), r.Err, r.Note, r.Output)
}

// eventually polls cond every 10ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports that no live process has this pid.
func gone(pid int) bool {
	st, err := readStat(pid)
	return err != nil || st.zombie()
}

// reaped reports that the pid has no /proc entry at all (not even a zombie).
func reaped(pid int) bool {
	_, err := readStat(pid)
	return err != nil
}

// script writes an executable shell script.
func script(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// readPidFromFile reads a pid a test script wrote.
func readPidFromFile(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, 5*time.Second, "pid in "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		_, err = fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	})
	return pid
}

// requireLab skips a test that needs the lab (root, namespaces, packages),
// or fails it when VIGIL_REQUIRE_LAB=1.
func requireLab(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("VIGIL_REQUIRE_LAB") == "1" {
		t.Fatalf("VIGIL_REQUIRE_LAB=1 but %s", reason)
	}
	t.Skip(reason)
}

// svcName returns a service name unique to this test process, so that
// tests running at once on one machine do not share OCF state files.
func svcName(base string) string {
	return fmt.Sprintf("%s-%d", base, os.Getpid())
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
