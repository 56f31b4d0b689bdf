package lrm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/agents"
	"github.com/vigil-cluster/vigil/internal/spec"
)

// methodDir writes a method agent whose every method appends
// "NAME METHOD ARGS" to log, and fails the methods listed in fail.
func methodDir(t *testing.T, name, log string, fail ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"START", "START_NET", "STOP", "STOP_NET", "ABORT", "ABORT_NET", "FM_INIT", "FM_START", "FM_STOP", "FM_CHECK"} {
		rc := 0
		for _, f := range fail {
			if f == m {
				rc = 1
			}
		}
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $(basename $0) $*\" >> %s\nexit %d\n", name, log, rc)
		if err := os.WriteFile(filepath.Join(dir, m), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func logScript(t *testing.T, log, line string) []string {
	return []string{"/bin/sh", "-c", fmt.Sprintf("echo %q >> %s", line, log)}
}

// orderedService is a volume, an app, an exec and a second app.
func orderedService(t *testing.T, log string, failApp2 ...string) spec.Service {
	execCmd := fmt.Sprintf("trap 'echo exec stop >> %s; exit 0' TERM; echo exec start >> %s; while :; do sleep 0.05; done", log, log)
	s := spec.Service{Name: "web", Resources: []spec.Resource{
		{Name: "vol", Kind: spec.KindVolume, Import: logScript(t, log, "vol import"), Deport: logScript(t, log, "vol deport")},
		{Name: "app1", Kind: spec.KindApp, Dir: methodDir(t, "app1", log)},
		{Name: "daemon", Kind: spec.KindExec, Command: []string{"/bin/sh", "-c", execCmd}},
		{Name: "app2", Kind: spec.KindApp, Dir: methodDir(t, "app2", log, failApp2...)},
	}}
	s.SetDefaults()
	for i := range s.Resources {
		s.Resources[i].Timeouts.Stop = spec.Duration(5 * time.Second)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func readLog(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func resetLog(t *testing.T, log string) {
	t.Helper()
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitLines waits until the log has n lines (an exec resource logs from its
// own process).
func waitLines(t *testing.T, log string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := readLog(t, log)
		if len(lines) >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s order:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestSequenceOrder checks DESIGN.md's failover sequence call by call: the
// start half, the stop half, and the method agents' arguments.
func TestSequenceOrder(t *testing.T) {
	log := filepath.Join(t.TempDir(), "calls.log")
	resetLog(t, log)
	env := agents.Env{StateDir: t.TempDir()}
	seq, err := NewSequence(orderedService(t, log), env)
	if err != nil {
		t.Fatal(err)
	}
	call := agents.Call{Service: "web", Epoch: 1, Hosted: []string{"web", "db"}, NotHosted: []string{"mail"}}
	ctx := context.Background()
	rep := seq.Start(ctx, call)
	if !rep.OK() {
		t.Fatalf("start failed: %+v", rep.Failed)
	}
	equalLines(t, "start", waitLines(t, log, 10), []string{
		"vol import",
		"app1 START web,db mail 60",
		"exec start",
		"app2 START web,db mail 60",
		"app1 START_NET web,db mail 60",
		"app2 START_NET web,db mail 60",
		"app1 FM_INIT web,db mail 60",
		"app2 FM_INIT web,db mail 60",
		"app1 FM_START web,db mail 60",
		"app2 FM_START web,db mail 60",
	})
	resetLog(t, log)
	if rep := seq.Check(ctx, call); !rep.OK() {
		t.Errorf("check failed: %+v", rep.Failed)
	}
	resetLog(t, log)
	rep = seq.Stop(ctx, call, false)
	if !rep.OK() {
		t.Fatalf("stop failed: %+v", rep.Failed)
	}
	equalLines(t, "stop", readLog(t, log), []string{
		"app2 FM_STOP web,db mail 5",
		"app1 FM_STOP web,db mail 5",
		"app2 STOP_NET web,db mail 5",
		"app1 STOP_NET web,db mail 5",
		"app2 STOP web,db mail 5",
		"exec stop",
		"app1 STOP web,db mail 5",
		"vol deport",
	})
}

// TestSequenceAbort: ABORT and ABORT_NET replace STOP and STOP_NET.
func TestSequenceAbort(t *testing.T) {
	log := filepath.Join(t.TempDir(), "calls.log")
	resetLog(t, log)
	seq, err := NewSequence(orderedService(t, log), agents.Env{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	call := agents.Call{Service: "web", Hosted: []string{"web"}}
	if rep := seq.Start(context.Background(), call); !rep.OK() {
		t.Fatalf("start: %+v", rep.Failed)
	}
	waitLines(t, log, 10)
	resetLog(t, log)
	seq.Stop(context.Background(), call, true)
	got := readLog(t, log)
	joined := strings.Join(got, "\n")
	for _, want := range []string{"app2 ABORT_NET", "app1 ABORT_NET", "app2 ABORT ", "app1 ABORT ", "vol deport"} {
		if !strings.Contains(joined, want) {
			t.Errorf("abort half lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "STOP_NET") || strings.Contains(joined, " STOP ") {
		t.Errorf("abort half ran STOP methods:\n%s", joined)
	}
}

// TestStartFailureStopsEverything: when a start method fails, the start
// half ends there and the stop half releases what was started.
func TestStartFailureStopsEverything(t *testing.T) {
	log := filepath.Join(t.TempDir(), "calls.log")
	resetLog(t, log)
	seq, err := NewSequence(orderedService(t, log, "START_NET"), agents.Env{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	call := agents.Call{Service: "web", Hosted: []string{"web"}}
	rep := seq.Start(context.Background(), call)
	if rep.OK() || rep.Failed.Resource != "app2" || rep.Failed.Method != "START_NET" {
		t.Fatalf("want app2 START_NET to fail, got %+v", rep.Failed)
	}
	lines := readLog(t, log)
	joined := strings.Join(lines, "\n")
	if strings.Contains(joined, "FM_INIT") || strings.Contains(joined, "FM_START") {
		t.Errorf("the start half went on after the failure:\n%s", joined)
	}
	if !strings.Contains(joined, "exec stop") || !strings.HasSuffix(joined, "vol deport") {
		t.Errorf("the stop half did not release everything:\n%s", joined)
	}
	if _, running := seq.Probe(context.Background(), call); running {
		// app agents' FM_CHECK exits 0 in this fixture, so only the exec
		// resource tells; make sure it is gone.
		for _, r := range seq.Resources {
			if res := r.Run(context.Background(), agents.Probe, call); res.Kind == spec.KindExec && res.Status == agents.OK {
				t.Error("the exec resource still runs after a failed start")
			}
		}
	}
}
