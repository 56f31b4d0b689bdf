// Package agents owns the resource agents: the code that runs one phase of
// the failover sequence (DESIGN.md) for one resource of one service on this
// member, and reports what happened. It implements the resource kinds exec
// (a long-running command supervised by vigil), app (a Sun Cluster style
// method agent directory), ocf (unmodified OCF resource agents), volume
// (import/deport/check commands), fs (fsck, mount, unmount) and ip (a
// floating address).
//
// Every method run is a real process in its own process group, bounded by
// its timeout: when the timeout passes the whole group is killed and the run
// counts as failed. The Result of a run says what ran, how it ended, how long
// it took and the last lines it printed.
//
// The package must not decide anything. It does not order resources, retry,
// restart, count failures, relocate, or read the cluster database: it runs
// one phase of one resource when the local resource manager (lrm) tells it
// to, and classifies the outcome (Status and Severity) so that the lrm and
// the director can decide. It keeps no state beyond what a run needs, except
// the pid files and output logs of exec resources in Env.StateDir, so that an
// agent that restarts can probe what still runs.
package agents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// Phase is one step of the failover sequence.
type Phase string

// The phases. The start half runs Import to FMStart in this order, resources
// in list order; the stop half runs FMStop to Deport in this order, resources
// in reverse list order. AbortNet and Abort replace StopNet and Stop when a
// member must give up its services at once (lost lease or quorum).
const (
	Import   Phase = "import"    // import volumes
	Fsck     Phase = "fsck"      // check file systems
	Mount    Phase = "mount"     // mount file systems
	Start    Phase = "start"     // START, OCF start, exec
	IPUp     Phase = "ip-up"     // add floating addresses, gratuitous ARP
	StartNet Phase = "start-net" // START_NET
	FMInit   Phase = "fm-init"   // FM_INIT
	FMStart  Phase = "fm-start"  // FM_START

	FMStop  Phase = "fm-stop"  // FM_STOP
	StopNet Phase = "stop-net" // STOP_NET
	IPDown  Phase = "ip-down"  // remove floating addresses
	Stop    Phase = "stop"     // STOP, OCF stop, SIGTERM of exec resources
	Unmount Phase = "unmount"  // unmount file systems
	Deport  Phase = "deport"   // deport volumes

	AbortNet Phase = "abort-net" // ABORT_NET (else STOP_NET)
	Abort    Phase = "abort"     // ABORT (else STOP), OCF stop, SIGKILL of exec resources

	Check Phase = "check" // the monitor (FM_CHECK, OCF monitor, exec: process alive)
	Probe Phase = "probe" // at agent start: is this resource running here?
)

// The sequences. Callers must not modify them.
var (
	StartSequence = []Phase{Import, Fsck, Mount, Start, IPUp, StartNet, FMInit, FMStart}
	StopSequence  = []Phase{FMStop, StopNet, IPDown, Stop, Unmount, Deport}
	AbortSequence = []Phase{FMStop, AbortNet, IPDown, Abort, Unmount, Deport}
)

// Reverse reports whether resources run in reverse list order in this phase
// (the stop half: unmount in reverse etc.).
func Reverse(p Phase) bool {
	switch p {
	case FMStop, StopNet, IPDown, Stop, Unmount, Deport, AbortNet, Abort:
		return true
	}
	return false
}

// known reports whether p is one of the phases above.
func known(p Phase) bool {
	switch p {
	case Check, Probe:
		return true
	}
	for _, s := range [][]Phase{StartSequence, StopSequence, AbortSequence} {
		for _, q := range s {
			if q == p {
				return true
			}
		}
	}
	return false
}

// stopping reports whether p belongs to the stop half (its default timeout
// is the stop timeout).
func stopping(p Phase) bool { return Reverse(p) }

// Call is what the lrm passes with every run.
type Call struct {
	// Member is the member running the call (VIGIL_MEMBER).
	Member    string
	Service   string
	Epoch     uint64
	Hosted    []string // services hosted on this member (for method agents' arguments)
	NotHosted []string
	// Timeout bounds the run. Zero means the resource's own timeout for the
	// phase: timeouts.start for the start half, timeouts.stop for the stop
	// half, timeouts.monitor for Check and Probe.
	Timeout  time.Duration
	Interval time.Duration // monitor interval (OCF_RESKEY_CRM_meta_interval)
}

// Status is how a run ended.
type Status int

// Statuses.
const (
	OK         Status = iota // the phase did what it should; for Check and Probe: running
	NotRunning               // Check or Probe: the resource is not running here
	Failed                   // the phase failed (see Severity and Err)
)

var statusNames = []string{"ok", "not running", "failed"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// MarshalText writes the name (JSON, logs).
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the name.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if n == string(b) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("status %q is not one of %s", b, strings.Join(statusNames, ", "))
}

// Severity says how far the consequence of a failure reaches. It is a
// classification of the outcome, not a decision: the director decides.
type Severity int

// Severities.
const (
	Soft  Severity = iota // restart in place allowed
	Hard                  // not on this member again until cleared
	Fatal                 // not anywhere until cleared
)

var severityNames = []string{"soft", "hard", "fatal"}

func (s Severity) String() string {
	if s >= 0 && int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText writes the name (JSON, logs).
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the name.
func (s *Severity) UnmarshalText(b []byte) error {
	for i, n := range severityNames {
		if n == string(b) {
			*s = Severity(i)
			return nil
		}
	}
	return fmt.Errorf("severity %q is not one of %s", b, strings.Join(severityNames, ", "))
}

// Limits of a Result's output.
const (
	MaxOutputLines = 20
	MaxLineBytes   = 512
)

// Result is the outcome of one run.
type Result struct {
	Resource, Kind string
	Phase          Phase
	Method         string // what ran: "START", "start", "exec", "mount", ...
	Skipped        bool   // the resource takes no part in this phase
	Status         Status
	Severity       Severity // meaningful when Status != OK
	RC             int      // exit code; -1 when the process was killed or did not run
	Duration       time.Duration
	Output         []string // last lines (at most 20, each at most 512 bytes) of what it printed
	// Err is the plain-language reason when Status != OK, e.g. "START timed
	// out after 5s and was killed".
	Err string
	// Note says what else happened when it matters to an operator, e.g.
	// "did not exit within 5s of SIGTERM; killed with SIGKILL", or "already
	// running as pid 1234".
	Note string
}

// Env is what every agent needs from the member.
type Env struct {
	OCFRoot string // default /usr/lib/ocf
	// StateDir is where exec resources keep pid files and output logs (the
	// agent's data dir /run subdir). Created when missing.
	StateDir string
	// RscTmp is HA_RSCTMP for OCF agents, default /run/resource-agents.
	// Created when missing.
	RscTmp string
	Logger *slog.Logger // default: discard
	// DADWait is how long a floating address's duplicate check listens
	// for another host answering for it (default DefaultDADWait). The
	// timing profile sets it: a quiet LAN answers ARP in well under 1 ms.
	DADWait time.Duration
}

// Defaults of Env.
const (
	DefaultOCFRoot = "/usr/lib/ocf"
	DefaultRscTmp  = "/run/resource-agents"
)

func (e Env) withDefaults() Env {
	if e.OCFRoot == "" {
		e.OCFRoot = DefaultOCFRoot
	}
	if e.RscTmp == "" {
		e.RscTmp = DefaultRscTmp
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.DADWait <= 0 {
		e.DADWait = DefaultDADWait
	}
	return e
}

// Resource is one configured resource of one service on this member.
// Run may be called from several goroutines; Abort never waits for another
// run of the same resource to end.
type Resource interface {
	// Run runs phase p and reports the outcome. It returns within the
	// call's timeout plus a short grace (to kill and reap), or sooner when
	// ctx is done, in which case whatever runs is killed and the run fails.
	Run(ctx context.Context, p Phase, c Call) Result
}

// Supervised is implemented by the resources whose process vigil itself
// supervises (exec).
type Supervised interface {
	Resource
	// Exited returns a channel closed when the process this agent started
	// exits, or nil when there is no such process.
	Exited() <-chan struct{}
}

// ErrUnknownKind is returned by New and Validate for a kind they do not know.
var ErrUnknownKind = errors.New("unknown resource kind")

// Error is the error of New and Validate: which resource and what went wrong.
type Error struct {
	Service, Resource, Kind string
	Op                      string // "new", "validate", "meta-data", "validate-all"
	Err                     error
}

func (e *Error) Error() string {
	return fmt.Sprintf("service %s resource %s (%s): %s: %v", e.Service, e.Resource, e.Kind, e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns the agent of resource r of the service. It checks only what
// it needs to run; Validate is the thorough apply-time check.
func New(service string, r spec.Resource, env Env) (Resource, error) {
	env = env.withDefaults()
	b := base{service: service, res: r, env: env, log: env.Logger.With("service", service, "resource", r.Name, "kind", r.Kind)}
	wrap := func(err error) error {
		return &Error{Service: service, Resource: r.Name, Kind: r.Kind, Op: "new", Err: err}
	}
	switch r.Kind {
	case spec.KindExec:
		x, err := newExec(b)
		if err != nil {
			return nil, wrap(err)
		}
		return x, nil
	case spec.KindApp:
		if r.Dir == "" {
			return nil, wrap(errors.New("dir: give the method directory"))
		}
		return &appResource{base: b}, nil
	case spec.KindOCF:
		o, err := newOCF(b)
		if err != nil {
			return nil, wrap(err)
		}
		return o, nil
	case spec.KindVolume:
		if len(r.Import) == 0 || len(r.Deport) == 0 {
			return nil, wrap(errors.New("a volume needs an import and a deport command (argv lists)"))
		}
		return &volumeResource{base: b}, nil
	case spec.KindFS:
		if r.Device == "" || r.Mountpoint == "" {
			return nil, wrap(errors.New("an fs needs a device and a mountpoint"))
		}
		return &fsResource{base: b}, nil
	case spec.KindIP:
		x, err := newIP(b)
		if err != nil {
			return nil, wrap(err)
		}
		return x, nil
	}
	return nil, wrap(fmt.Errorf("%w %q: use one of %s", ErrUnknownKind, r.Kind, strings.Join(spec.Kinds, ", ")))
}

// Validate is the apply-time check of resource r: for ocf, it runs
// meta-data, parses its XML and refuses unknown parameters and missing
// required ones (the message names them and lists the allowed ones), then
// runs validate-all; for app, the directory exists and its method files are
// executable; for exec, the program exists and is executable; for volume,
// the commands exist and are executable; for fs and ip, the tools exist.
func Validate(service string, r spec.Resource, env Env) error {
	env = env.withDefaults()
	var err error
	op := "validate"
	switch r.Kind {
	case spec.KindExec:
		err = validateExec(r)
	case spec.KindApp:
		err = validateApp(r)
	case spec.KindOCF:
		op, err = validateOCF(context.Background(), service, r, env)
	case spec.KindVolume:
		err = validateVolume(r)
	case spec.KindFS:
		err = validateFS(r)
	case spec.KindIP:
		err = validateIP(r)
	default:
		err = fmt.Errorf("%w %q: use one of %s", ErrUnknownKind, r.Kind, strings.Join(spec.Kinds, ", "))
	}
	if err != nil {
		return &Error{Service: service, Resource: r.Name, Kind: r.Kind, Op: op, Err: err}
	}
	return nil
}

// base is what every kind shares.
type base struct {
	service string
	res     spec.Resource
	env     Env
	log     *slog.Logger
}

// timeout is the bound of a run of phase p.
func (b *base) timeout(p Phase, c Call) time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	t := b.res.Timeouts
	switch {
	case p == Check || p == Probe:
		return orDefault(t.Monitor.D(), spec.DefaultMonitorTimeout)
	case stopping(p):
		return orDefault(t.Stop.D(), spec.DefaultStopTimeout)
	}
	return orDefault(t.Start.D(), spec.DefaultStartTimeout)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// result starts the Result of a run.
func (b *base) result(p Phase, method string) Result {
	return Result{Resource: b.res.Name, Kind: b.res.Kind, Phase: p, Method: method, RC: -1}
}

// skipped is the Result of a phase the resource takes no part in.
func (b *base) skipped(p Phase) Result {
	r := b.result(p, "")
	r.Skipped = true
	r.RC = 0
	return r
}

// unknownPhase is the Result of a phase this package does not know.
func (b *base) unknownPhase(p Phase) Result {
	r := b.result(p, "")
	r.Status = Failed
	r.Severity = Hard
	r.Err = fmt.Sprintf("phase %q is not a phase of the failover sequence (a bug in the caller)", p)
	return r
}

// done finishes a Result: duration, invariants, log line.
func (b *base) done(r Result, t0 time.Time) Result {
	r.Duration = time.Since(t0)
	if r.Status == OK {
		r.Severity = Soft
	} else if r.Err == "" {
		r.Err = fmt.Sprintf("%s %s: %s", r.Kind, r.Phase, r.Status)
	}
	if r.Skipped {
		return r
	}
	lvl := slog.LevelInfo
	if r.Status == Failed {
		lvl = slog.LevelWarn
	}
	if r.Phase == Check && r.Status == OK {
		lvl = slog.LevelDebug
	}
	attrs := []any{"phase", string(r.Phase), "method", r.Method, "status", r.Status.String(), "rc", r.RC, "duration", r.Duration.Round(time.Millisecond)}
	if r.Status != OK {
		attrs = append(attrs, "severity", r.Severity.String(), "err", r.Err)
	}
	if r.Note != "" {
		attrs = append(attrs, "note", r.Note)
	}
	b.log.Log(context.Background(), lvl, "resource "+string(r.Phase), attrs...)
	return r
}

// baseEnv is the environment every process starts from: PATH only, so that
// nothing of the agent's own environment (OCF_TRACE_RA, proxies, secrets)
// leaks into resources.
func baseEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return []string{"PATH=" + path}
}

// vigilEnv is what exec and app processes learn about their run.
func vigilEnv(service, resource string, p Phase, c Call) []string {
	return []string{
		"VIGIL_SERVICE=" + service,
		"VIGIL_MEMBER=" + c.Member,
		"VIGIL_RESOURCE=" + resource,
		"VIGIL_PHASE=" + string(p),
		fmt.Sprintf("VIGIL_EPOCH=%d", c.Epoch),
	}
}

// secondsArg is the timeout argument of a method: whole seconds, at least 1.
func secondsArg(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return fmt.Sprint(s)
}
