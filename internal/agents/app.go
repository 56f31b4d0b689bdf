package agents

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// Methods is every method an app resource (a Sun Cluster style method agent
// directory) may implement.
var Methods = []string{"START", "START_NET", "STOP", "STOP_NET", "ABORT", "ABORT_NET", "FM_INIT", "FM_START", "FM_STOP", "FM_CHECK"}

// appMethods maps a phase to the method that runs in it, and the method run
// instead when that one is missing: ABORT is STOP done in a hurry, and a
// member that must give its services up at once must not skip stopping them.
var appMethods = map[Phase][2]string{
	Start:    {"START"},
	StartNet: {"START_NET"},
	FMInit:   {"FM_INIT"},
	FMStart:  {"FM_START"},
	FMStop:   {"FM_STOP"},
	StopNet:  {"STOP_NET"},
	Stop:     {"STOP"},
	AbortNet: {"ABORT_NET", "STOP_NET"},
	Abort:    {"ABORT", "STOP"},
	Check:    {"FM_CHECK"},
	Probe:    {"FM_CHECK"},
}

// appResource runs the methods of a method agent directory, each as
// `METHOD <hosted,services> <not,hosted,services> <timeout-seconds>`.
type appResource struct {
	base
}

// Run implements Resource.
func (a *appResource) Run(ctx context.Context, p Phase, c Call) Result {
	t0 := time.Now()
	names, ok := appMethods[p]
	if !ok {
		if !known(p) {
			return a.done(a.unknownPhase(p), t0)
		}
		return a.skipped(p)
	}
	method, path := "", ""
	for _, m := range names {
		if m == "" {
			continue
		}
		pth := filepath.Join(a.res.Dir, m)
		if _, err := os.Stat(pth); err == nil {
			method, path = m, pth
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			r := a.result(p, m)
			r.Status, r.Severity, r.Err = Failed, Hard, fmt.Sprintf("method %s cannot be read: %v", pth, err)
			return a.done(r, t0)
		}
	}
	if method == "" {
		if p == Probe {
			// Without FM_CHECK nothing can tell; a probe that cannot
			// tell reports not running.
			r := a.result(p, "")
			r.Status, r.Severity, r.RC = NotRunning, Soft, 0
			r.Err = "not running, as far as can be told: the method directory has no FM_CHECK"
			return a.done(r, t0)
		}
		return a.skipped(p)
	}
	r := a.result(p, method)
	if method != names[0] {
		r.Note = fmt.Sprintf("no %s method; ran %s instead", names[0], method)
	}
	timeout := a.timeout(p, c)
	o := run{
		argv:    []string{path, strings.Join(c.Hosted, ","), strings.Join(c.NotHosted, ","), secondsArg(timeout)},
		env:     append(baseEnv(), vigilEnv(a.service, a.res.Name, p, c)...),
		dir:     a.res.Dir,
		timeout: timeout,
	}.exec(ctx)
	r.RC, r.Output = o.rc, o.output
	switch {
	case o.ok():
		r.Status = OK
	case o.startErr != nil:
		r.Status, r.Severity = Failed, Hard
		r.Err = o.describe(method, timeout) + " (is it executable, with a #! line?)"
	case p == Probe && !o.timedOut && !o.canceled:
		r.Status, r.Severity = NotRunning, Soft
		r.Err = "not running: " + o.describe(method, timeout)
	default:
		r.Status, r.Severity = Failed, Soft
		r.Err = o.describe(method, timeout)
	}
	return a.done(r, t0)
}

func validateApp(r spec.Resource) error {
	if !filepath.IsAbs(r.Dir) {
		return fmt.Errorf("dir %q must be the absolute path of the method directory", r.Dir)
	}
	ents, err := os.ReadDir(r.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("dir %s does not exist on this member", r.Dir)
		}
		return fmt.Errorf("dir %s: %v", r.Dir, err)
	}
	found := 0
	for _, e := range ents {
		name := e.Name()
		isMethod := false
		for _, m := range Methods {
			if name == m {
				isMethod = true
			} else if strings.EqualFold(name, m) {
				return fmt.Errorf("dir %s: file %s is not run: method names are upper case (%s)", r.Dir, name, m)
			}
		}
		if !isMethod {
			continue
		}
		found++
		if err := executable(filepath.Join(r.Dir, name)); err != nil {
			return fmt.Errorf("method %s: %v", name, err)
		}
	}
	if found == 0 {
		return fmt.Errorf("dir %s has none of the methods %s", r.Dir, strings.Join(Methods, ", "))
	}
	return nil
}
