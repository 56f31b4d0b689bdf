package agents

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// appDir makes a method directory whose methods append
// "METHOD hosted nothosted timeout" to record, and run body after.
func appDir(t *testing.T, record string, methods map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for m, body := range methods {
		script(t, filepath.Join(dir, m), fmt.Sprintf(`echo "$(basename "$0") [$1] [$2] [$3] $VIGIL_SERVICE $VIGIL_EPOCH $VIGIL_PHASE" >> %s
%s`, record, body))
	}
	return dir
}

func appRes(dir string) spec.Resource {
	return spec.Resource{Name: "db", Kind: spec.KindApp, Dir: dir,
		Timeouts: spec.Timeouts{Start: spec.Duration(10 * time.Second), Stop: spec.Duration(20 * time.Second), Monitor: spec.Duration(3 * time.Second)}}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
}

// TestAppSequence runs the whole start and stop halves against a method
// directory with a subset of the methods, and checks which ran, in which
// order, with which arguments.
func TestAppSequence(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "calls")
	dir := appDir(t, rec, map[string]string{
		"START": "", "START_NET": "", "STOP_NET": "", "STOP": "", "FM_START": "", "FM_STOP": "", "FM_CHECK": "",
	})
	res := mustNew(t, "db2", appRes(dir), testEnv(t))
	c := Call{Epoch: 9, Hosted: []string{"db2", "web"}, NotHosted: []string{"mail"}}
	var ran []string
	for _, seq := range [][]Phase{StartSequence, StopSequence} {
		for _, p := range seq {
			r := res.Run(context.Background(), p, c)
			logResult(t, r)
			if r.Status != OK {
				t.Fatalf("%s: %s %q", p, r.Status, r.Err)
			}
			if !r.Skipped {
				ran = append(ran, r.Method)
			}
		}
	}
	want := []string{"START", "START_NET", "FM_START", "FM_STOP", "STOP_NET", "STOP"}
	if strings.Join(ran, " ") != strings.Join(want, " ") {
		t.Errorf("ran %v, want %v", ran, want)
	}
	calls := readLines(t, rec)
	wantCalls := []string{
		"START [db2,web] [mail] [10] db2 9 start",
		"START_NET [db2,web] [mail] [10] db2 9 start-net",
		"FM_START [db2,web] [mail] [10] db2 9 fm-start",
		"FM_STOP [db2,web] [mail] [20] db2 9 fm-stop",
		"STOP_NET [db2,web] [mail] [20] db2 9 stop-net",
		"STOP [db2,web] [mail] [20] db2 9 stop",
	}
	if strings.Join(calls, "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(wantCalls, "\n"))
	}
}

func TestAppEmptyListsAndCallTimeout(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "calls")
	res := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{"START": ""})), testEnv(t))
	runOK(t, res, Start, Call{Timeout: 1500 * time.Millisecond})
	if got := readLines(t, rec); len(got) != 1 || !strings.HasPrefix(got[0], "START [] [] [2] ") {
		t.Errorf("calls %q: want empty lists and the timeout rounded up to 2 s", got)
	}
}

func TestAppFailureAndOutput(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "calls")
	res := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{
		"START": `i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo "line $i"; done
head -c 2000 /dev/zero | tr '\0' x; echo
echo "cannot attach shared memory" >&2
exit 4`,
	})), testEnv(t))
	r := runWant(t, res, Start, Call{}, Failed)
	if r.RC != 4 || r.Severity != Soft || r.Err != "START exited with status 4" {
		t.Errorf("rc %d severity %s err %q", r.RC, r.Severity, r.Err)
	}
	if len(r.Output) != MaxOutputLines || r.Output[len(r.Output)-1] != "cannot attach shared memory" || r.Output[0] != "line 83" {
		t.Errorf("output has %d lines, first %q last %q; want the last %d lines", len(r.Output), r.Output[0], r.Output[len(r.Output)-1], MaxOutputLines)
	}
	for _, l := range r.Output {
		if len(l) > MaxLineBytes {
			t.Errorf("output line of %d bytes, at most %d", len(l), MaxLineBytes)
		}
	}
}

func TestAppTimeoutKillsProcessGroup(t *testing.T) {
	tmp := t.TempDir()
	rec, bg := filepath.Join(tmp, "calls"), filepath.Join(tmp, "bg")
	res := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{
		"STOP": `sleep 300 & echo $! > ` + bg + `; echo stopping; sleep 300`,
	})), testEnv(t))
	r := runWant(t, res, Stop, Call{Timeout: 300 * time.Millisecond}, Failed)
	if r.Err != "STOP timed out after 300ms and was killed (with its whole process group)" || r.RC != -1 {
		t.Errorf("err %q rc %d", r.Err, r.RC)
	}
	if !containsLine(r.Output, "stopping") {
		t.Errorf("output %q", r.Output)
	}
	child := readPidFromFile(t, bg)
	eventually(t, 5*time.Second, "the method's background child killed", func() bool { return gone(child) })
}

func TestAppContextCancelKillsMethod(t *testing.T) {
	tmp := t.TempDir()
	rec, started := filepath.Join(tmp, "calls"), filepath.Join(tmp, "started")
	res := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{
		"START": `echo $$ > ` + started + `; sleep 300`,
	})), testEnv(t))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(started); err == nil {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	r := res.Run(ctx, Start, Call{})
	logResult(t, r)
	if r.Status != Failed || !strings.Contains(r.Err, "interrupted") {
		t.Fatalf("%s %q", r.Status, r.Err)
	}
	pid := readPidFromFile(t, started)
	eventually(t, 5*time.Second, "method killed", func() bool { return gone(pid) })
}

// TestAppMethodLeavesDaemon checks that a START that leaves a process
// behind holding its output returns soon, and that the process lives on.
func TestAppMethodLeavesDaemon(t *testing.T) {
	tmp := t.TempDir()
	rec, bg := filepath.Join(tmp, "calls"), filepath.Join(tmp, "bg")
	res := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{
		"START": `sleep 300 & echo $! > ` + bg + `; echo daemon started`,
	})), testEnv(t))
	r := runOK(t, res, Start, Call{})
	if !containsLine(r.Output, "daemon started") {
		t.Errorf("output %q", r.Output)
	}
	d := readPidFromFile(t, bg)
	defer syscall.Kill(d, syscall.SIGKILL)
	if gone(d) {
		t.Errorf("the daemon START left behind was killed")
	}
}

func TestAppCheckAndProbe(t *testing.T) {
	tmp := t.TempDir()
	rec, flag := filepath.Join(tmp, "calls"), filepath.Join(tmp, "up")
	res := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{
		"FM_CHECK": `[ -f ` + flag + ` ] || { echo "db2 instance down"; exit 1; }`,
	})), testEnv(t))
	r := runWant(t, res, Check, Call{}, Failed)
	if r.Severity != Soft || r.RC != 1 || !containsLine(r.Output, "db2 instance down") {
		t.Errorf("check: %+v", r)
	}
	runWant(t, res, Probe, Call{}, NotRunning)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	runOK(t, res, Check, Call{})
	runOK(t, res, Probe, Call{})
	// A hung FM_CHECK is killed at the monitor timeout and is a failure
	// even for a probe: it says nothing about whether the service runs.
	slow := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{"FM_CHECK": "sleep 300"})), testEnv(t))
	pr := runWant(t, slow, Probe, Call{Timeout: 200 * time.Millisecond}, Failed)
	if !strings.Contains(pr.Err, "timed out after 200ms") {
		t.Errorf("probe err %q", pr.Err)
	}
}

func TestAppMissingMethods(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "calls")
	res := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{"STOP": "", "STOP_NET": ""})), testEnv(t))
	// No FM_CHECK: Check takes no part; Probe cannot tell, so not running.
	if r := res.Run(context.Background(), Check, Call{}); !r.Skipped || r.Status != OK {
		t.Errorf("check without FM_CHECK: %+v", r)
	}
	if r := runWant(t, res, Probe, Call{}, NotRunning); !strings.Contains(r.Err, "FM_CHECK") {
		t.Errorf("probe err %q", r.Err)
	}
	if r := res.Run(context.Background(), Start, Call{}); !r.Skipped {
		t.Errorf("start without START: %+v", r)
	}
	// No ABORT: Abort runs STOP, and says so.
	for _, p := range AbortSequence {
		res.Run(context.Background(), p, Call{})
	}
	calls := readLines(t, rec)
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "STOP_NET ") || !strings.HasPrefix(calls[1], "STOP ") {
		t.Errorf("abort sequence ran %q; want STOP_NET then STOP", calls)
	}
	if r := res.Run(context.Background(), Abort, Call{}); r.Method != "STOP" || !strings.Contains(r.Note, "no ABORT") {
		t.Errorf("abort: method %q note %q", r.Method, r.Note)
	}
}

func TestAppAbortPrefersABORT(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "calls")
	res := mustNew(t, "s", appRes(appDir(t, rec, map[string]string{"STOP": "", "ABORT": "", "ABORT_NET": ""})), testEnv(t))
	for _, p := range AbortSequence {
		runOK(t, res, p, Call{})
	}
	calls := readLines(t, rec)
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "ABORT_NET ") || !strings.HasPrefix(calls[1], "ABORT ") {
		t.Errorf("abort sequence ran %q", calls)
	}
}

func TestAppNotExecutable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "START"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runWant(t, mustNew(t, "s", appRes(dir), testEnv(t)), Start, Call{}, Failed)
	if r.Severity != Hard || !strings.Contains(r.Err, "could not be started") {
		t.Errorf("severity %s err %q", r.Severity, r.Err)
	}
}

func TestAppValidate(t *testing.T) {
	good := appDir(t, "/dev/null", map[string]string{"START": "", "STOP": ""})
	if err := os.WriteFile(filepath.Join(good, "README"), []byte("helper files are fine"), 0o644); err != nil {
		t.Fatal(err)
	}
	lower := appDir(t, "/dev/null", map[string]string{"START": "", "stop": ""})
	noexec := appDir(t, "/dev/null", map[string]string{"START": ""})
	if err := os.Chmod(filepath.Join(noexec, "START"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, c := range []struct {
		dir, want string
	}{
		{good, ""},
		{lower, "method names are upper case (STOP)"},
		{noexec, "method START: program " + filepath.Join(noexec, "START") + " is not executable"},
		{empty, "has none of the methods"},
		{"/nonexistent/vigil-app", "does not exist"},
		{"relative/dir", "absolute"},
	} {
		err := Validate("s", appRes(c.dir), Env{})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.dir, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error containing %q", c.dir, err, c.want)
		case err != nil:
			t.Logf("%v", err)
		}
	}
}
