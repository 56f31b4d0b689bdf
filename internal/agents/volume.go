package agents

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// volumeResource runs the shared-storage hooks of a service: its import
// command at Import, deport at Deport and check at Check and Probe (as
// `vxdg import/deport` in Sun Cluster).
type volumeResource struct {
	base
}

// Run implements Resource.
func (v *volumeResource) Run(ctx context.Context, p Phase, c Call) Result {
	t0 := time.Now()
	var argv []string
	var method string
	switch p {
	case Import:
		argv, method = v.res.Import, "import"
	case Deport:
		argv, method = v.res.Deport, "deport"
	case Check, Probe:
		argv, method = v.res.Check, "check"
		if len(argv) == 0 {
			if p == Check {
				return v.skipped(p)
			}
			r := v.result(p, "")
			r.Status, r.RC = NotRunning, 0
			r.Err = "not imported, as far as can be told: the volume has no check command"
			return v.done(r, t0)
		}
	default:
		if !known(p) {
			return v.done(v.unknownPhase(p), t0)
		}
		return v.skipped(p)
	}
	r := v.command(ctx, p, c, method, argv)
	if p == Probe && r.Status == Failed && r.RC > 0 {
		r.Status, r.Severity = NotRunning, Soft
		r.Err = "not imported: " + r.Err
	}
	return v.done(r, t0)
}

// command runs argv bounded by the phase's timeout: exit 0 is OK, a
// program that cannot be started is a Hard failure, anything else Soft.
func (b *base) command(ctx context.Context, p Phase, c Call, method string, argv []string) Result {
	r := b.result(p, method)
	timeout := b.timeout(p, c)
	o := run{
		argv:    argv,
		env:     append(baseEnv(), vigilEnv(b.service, b.res.Name, p, c)...),
		dir:     "/",
		timeout: timeout,
	}.exec(ctx)
	r.RC, r.Output = o.rc, o.output
	if o.ok() {
		r.Status = OK
		return r
	}
	r.Status, r.Severity = Failed, Soft
	if o.startErr != nil {
		r.Severity = Hard
	}
	r.Err = o.describe(fmt.Sprintf("%s (%s)", method, quoteArgv(argv)), timeout)
	return r
}

// quoteArgv shows a command line, cut to a readable length.
func quoteArgv(argv []string) string {
	s := strings.Join(argv, " ")
	return cutUTF8(s, 200)
}

func validateVolume(r spec.Resource) error {
	for _, c := range []struct {
		name string
		argv []string
	}{{"import", r.Import}, {"deport", r.Deport}, {"check", r.Check}} {
		if len(c.argv) == 0 {
			if c.name == "check" {
				continue
			}
			return fmt.Errorf("%s: give the argv list of the command", c.name)
		}
		if err := executable(c.argv[0]); err != nil {
			return fmt.Errorf("%s: %v", c.name, err)
		}
	}
	return nil
}
