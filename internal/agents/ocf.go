package agents

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// OCF exit codes.
const (
	ocfSuccess          = 0
	ocfErrGeneric       = 1
	ocfErrArgs          = 2
	ocfErrUnimplemented = 3
	ocfErrPerm          = 4
	ocfErrInstalled     = 5
	ocfErrConfigured    = 6
	ocfNotRunning       = 7
	ocfRunningMaster    = 8
	ocfFailedMaster     = 9
)

// ocfCode is what an OCF exit code means to vigil.
type ocfCode struct {
	name     string
	status   Status
	severity Severity
	hint     string
}

var ocfCodes = map[int]ocfCode{
	ocfSuccess:          {"success", OK, Soft, ""},
	ocfErrGeneric:       {"generic error", Failed, Soft, ""},
	ocfErrArgs:          {"invalid argument", Failed, Hard, "check the resource's params"},
	ocfErrUnimplemented: {"unimplemented feature", Failed, Hard, ""},
	ocfErrPerm:          {"insufficient privileges", Failed, Hard, "the agent needs privileges it does not have on this member"},
	ocfErrInstalled:     {"not installed", Failed, Hard, "install what the agent needs on this member"},
	ocfErrConfigured:    {"not configured", Failed, Fatal, "fix the resource's params; it will not run on any member until cleared"},
	ocfNotRunning:       {"not running", NotRunning, Soft, ""},
	ocfRunningMaster:    {"running as master", OK, Soft, ""},
	ocfFailedMaster:     {"failed as master", Failed, Soft, ""},
}

// ocfExitReason is the prefix agents print the reason of a failure with
// (ocf_exit_reason).
const ocfExitReason = "ocf-exit-reason:"

// ocfResource runs an unmodified OCF resource agent,
// $OCF_ROOT/resource.d/PROVIDER/TYPE: start at Start, stop at Stop and
// Abort, monitor at Check and Probe.
type ocfResource struct {
	base
	provider, typ, path string
}

func newOCF(b base) (*ocfResource, error) {
	prov, typ, err := spec.ParseOCFAgent(b.res.Agent)
	if err != nil {
		return nil, err
	}
	return &ocfResource{base: b, provider: prov, typ: typ,
		path: filepath.Join(b.env.OCFRoot, "resource.d", prov, typ)}, nil
}

// instance is OCF_RESOURCE_INSTANCE.
func (o *ocfResource) instance() string { return o.service + "-" + o.res.Name }

// Run implements Resource.
func (o *ocfResource) Run(ctx context.Context, p Phase, c Call) Result {
	t0 := time.Now()
	var action string
	interval := time.Duration(-1) // not a monitor
	switch p {
	case Start:
		action = "start"
	case Stop, Abort:
		action = "stop"
	case Check:
		action = "monitor"
		interval = c.Interval
		if interval <= 0 {
			// Interval 0 makes a monitor a probe (ocf_is_probe).
			interval = spec.DefaultMonitorInterval
		}
	case Probe:
		action, interval = "monitor", 0
	default:
		if !known(p) {
			return o.done(o.unknownPhase(p), t0)
		}
		return o.skipped(p)
	}
	r := o.result(p, action)
	timeout := o.timeout(p, c)
	if _, err := os.Stat(o.path); err != nil {
		r.Status, r.Severity = Failed, Hard
		r.Err = fmt.Sprintf("%s is not installed on this member: %v", o.res.Agent, err)
		return o.done(r, t0)
	}
	out, err := o.action(ctx, action, timeout, interval)
	if err != nil {
		r.Status, r.Severity, r.Err = Failed, Hard, err.Error()
		return o.done(r, t0)
	}
	r.RC, r.Output = out.rc, out.output
	what := o.res.Agent + " " + action
	switch {
	case out.startErr != nil:
		r.Status, r.Severity = Failed, Hard
		r.Err = out.describe(what, timeout)
	case out.timedOut || out.canceled || out.signal != "":
		r.Status, r.Severity = Failed, Soft
		r.Err = out.describe(what, timeout)
	default:
		code, ok := ocfCodes[out.rc]
		if !ok {
			code = ocfCode{name: "not an OCF exit code", status: Failed, severity: Soft}
		}
		r.Status, r.Severity = code.status, code.severity
		switch {
		case action == "stop" && out.rc == ocfNotRunning:
			r.Status, r.Severity = OK, Soft
			r.Note = "the agent says it was not running"
		case action == "start" && code.status == NotRunning:
			r.Status = Failed
		}
		if r.Status != OK {
			r.Err = fmt.Sprintf("%s exited %d (%s)", what, out.rc, code.name)
			if out.marked != "" {
				r.Err += ": " + out.marked
			}
			if code.hint != "" {
				r.Err += "; " + code.hint
			}
		}
	}
	return o.done(r, t0)
}

// action runs one OCF action. interval < 0 means not a monitor.
func (o *ocfResource) action(ctx context.Context, action string, timeout, interval time.Duration) (outcome, error) {
	if err := os.MkdirAll(o.env.RscTmp, 0o755); err != nil {
		return outcome{}, fmt.Errorf("cannot create HA_RSCTMP %s: %v", o.env.RscTmp, err)
	}
	return run{
		argv:    []string{o.path, action},
		env:     o.environ(timeout, interval),
		dir:     "/",
		timeout: timeout,
		marker:  ocfExitReason,
	}.exec(ctx), nil
}

// environ is the OCF environment of one action. It starts from baseEnv, so
// OCF_TRACE_RA and the like of the agent's own environment never reach it.
func (o *ocfResource) environ(timeout, interval time.Duration) []string {
	env := append(baseEnv(),
		"OCF_ROOT="+o.env.OCFRoot,
		"OCF_FUNCTIONS_DIR="+filepath.Join(o.env.OCFRoot, "lib", "heartbeat"),
		"OCF_RA_VERSION_MAJOR=1",
		"OCF_RA_VERSION_MINOR=0",
		"OCF_RESOURCE_INSTANCE="+o.instance(),
		"OCF_RESOURCE_TYPE="+o.typ,
		"OCF_RESOURCE_PROVIDER="+o.provider,
		"HA_RSCTMP="+o.env.RscTmp,
		fmt.Sprintf("OCF_RESKEY_CRM_meta_timeout=%d", timeout.Milliseconds()),
	)
	if interval >= 0 {
		env = append(env, fmt.Sprintf("OCF_RESKEY_CRM_meta_interval=%d", interval.Milliseconds()))
	}
	keys := make([]string, 0, len(o.res.Params))
	for k := range o.res.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, "OCF_RESKEY_"+k+"="+o.res.Params[k])
	}
	return env
}

// Bounds of the apply-time runs of meta-data and validate-all.
const (
	metadataTimeout    = 10 * time.Second
	validateAllDefault = 20 * time.Second
	validateAllMax     = time.Minute
)

// validateOCF is Validate for ocf resources. It returns the step that
// failed ("validate", "meta-data", "validate-all").
func validateOCF(ctx context.Context, service string, r spec.Resource, env Env) (string, error) {
	o, err := newOCF(base{service: service, res: r, env: env, log: env.Logger})
	if err != nil {
		return "validate", err
	}
	if err := executable(o.path); err != nil {
		return "validate", fmt.Errorf("%s is not installed on this member: %v (install the package that provides it, such as resource-agents)", r.Agent, err)
	}
	md, err := o.Metadata(ctx)
	if err != nil {
		return "meta-data", err
	}
	allowed := md.ParamNames()
	var unknown, missing []string
	for k := range r.Params {
		if _, ok := md.Param(k); !ok {
			unknown = append(unknown, k)
		}
	}
	for _, p := range md.Parameters {
		if _, ok := r.Params[p.Name]; p.Required && !ok {
			missing = append(missing, p.Name)
		}
	}
	sort.Strings(unknown)
	sort.Strings(missing)
	sort.Strings(allowed)
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("unknown parameter(s) %s", strings.Join(unknown, ", ")))
	}
	if len(missing) > 0 {
		msgs = append(msgs, fmt.Sprintf("missing required parameter(s) %s", strings.Join(missing, ", ")))
	}
	if len(msgs) > 0 {
		takes := "no parameters"
		if len(allowed) > 0 {
			takes = "these parameters: " + strings.Join(allowed, ", ")
		}
		return "validate", fmt.Errorf("params: %s; %s takes %s", strings.Join(msgs, "; "), r.Agent, takes)
	}
	a, ok := md.Action("validate-all")
	if !ok {
		return "", nil // the agent has no validate-all
	}
	timeout := validateAllDefault
	if a.Timeout > 0 {
		timeout = min(a.Timeout, validateAllMax)
	}
	out, err := o.action(ctx, "validate-all", timeout, -1)
	if err != nil {
		return "validate-all", err
	}
	what := r.Agent + " validate-all"
	switch {
	case out.ok(), out.startErr == nil && !out.timedOut && !out.canceled && out.rc == ocfErrUnimplemented:
		return "", nil
	case out.startErr != nil || out.timedOut || out.canceled || out.signal != "":
		return "validate-all", fmt.Errorf("%s%s", out.describe(what, timeout), outputSuffix(out.output))
	}
	code, ok := ocfCodes[out.rc]
	if !ok {
		code.name = "not an OCF exit code"
	}
	msg := fmt.Sprintf("%s exited %d (%s)", what, out.rc, code.name)
	if out.marked != "" {
		msg += ": " + out.marked
	} else {
		msg += outputSuffix(out.output)
	}
	return "validate-all", fmt.Errorf("%s", msg)
}

// AgentMetadata runs the meta-data action of the OCF agent
// ("ocf:PROVIDER:TYPE") installed under env.OCFRoot and parses it.
func AgentMetadata(ctx context.Context, agent string, env Env) (*Metadata, error) {
	env = env.withDefaults()
	o, err := newOCF(base{res: spec.Resource{Kind: spec.KindOCF, Agent: agent}, env: env, log: env.Logger})
	if err != nil {
		return nil, err
	}
	if err := executable(o.path); err != nil {
		return nil, fmt.Errorf("%s is not installed on this member: %v", agent, err)
	}
	return o.Metadata(ctx)
}

// Metadata runs the agent's meta-data action and parses what it printed.
func (o *ocfResource) Metadata(ctx context.Context) (*Metadata, error) {
	if err := os.MkdirAll(o.env.RscTmp, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create HA_RSCTMP %s: %v", o.env.RscTmp, err)
	}
	out := run{
		argv:    []string{o.path, "meta-data"},
		env:     o.environ(metadataTimeout, -1),
		dir:     "/",
		timeout: metadataTimeout,
		capture: MaxMetadataSize,
	}.exec(ctx)
	if !out.ok() {
		return nil, fmt.Errorf("%s%s", out.describe(o.res.Agent+" meta-data", metadataTimeout), outputSuffix(out.output))
	}
	if out.overflow {
		return nil, fmt.Errorf("%s meta-data printed more than %d bytes", o.res.Agent, MaxMetadataSize)
	}
	md, err := ParseMetadata(out.stdout)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", o.res.Agent, err)
	}
	return md, nil
}

// outputSuffix quotes the last lines of output for an error message.
func outputSuffix(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return "; it printed: " + strings.Join(lines, " / ")
}
