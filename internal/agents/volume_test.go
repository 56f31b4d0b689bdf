package agents

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

func TestVolume(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "imported")
	r := spec.Resource{Name: "data0", Kind: spec.KindVolume,
		Import:   []string{"sh", "-c", `echo "importing $VIGIL_SERVICE/$VIGIL_RESOURCE"; touch ` + flag},
		Deport:   []string{"rm", flag},
		Check:    []string{"test", "-f", flag},
		Timeouts: spec.Timeouts{Start: spec.Duration(5 * time.Second), Stop: spec.Duration(5 * time.Second), Monitor: spec.Duration(5 * time.Second)}}
	res := mustNew(t, "db", r, testEnv(t))
	runWant(t, res, Probe, Call{}, NotRunning)
	im := runOK(t, res, Import, Call{})
	if im.Method != "import" || !containsLine(im.Output, "importing db/data0") {
		t.Errorf("import: %+v", im)
	}
	runOK(t, res, Check, Call{})
	runOK(t, res, Probe, Call{})
	for _, p := range []Phase{Fsck, Mount, Start, IPUp, Stop, Abort, Unmount} {
		if got := res.Run(context.Background(), p, Call{}); !got.Skipped {
			t.Errorf("%s: a volume takes part: %+v", p, got)
		}
	}
	runOK(t, res, Deport, Call{})
	ck := runWant(t, res, Check, Call{}, Failed)
	if ck.RC != 1 || ck.Severity != Soft || ck.Err != "check (test -f "+flag+") exited with status 1" {
		t.Errorf("check after deport: rc %d %s %q", ck.RC, ck.Severity, ck.Err)
	}
	runWant(t, res, Probe, Call{}, NotRunning)
	dp := runWant(t, res, Deport, Call{}, Failed) // rm of a missing file
	if dp.Method != "deport" || !containsLine(dp.Output, "No such file") {
		t.Errorf("deport of a deported volume: %+v", dp)
	}
}

func TestVolumeTimeoutAndNoCheck(t *testing.T) {
	r := spec.Resource{Name: "slow", Kind: spec.KindVolume,
		Import: []string{"sleep", "300"}, Deport: []string{"true"}}
	res := mustNew(t, "db", r, testEnv(t))
	im := runWant(t, res, Import, Call{Timeout: 200 * time.Millisecond}, Failed)
	if im.Err != "import (sleep 300) timed out after 200ms and was killed (with its whole process group)" {
		t.Errorf("err %q", im.Err)
	}
	if ck := res.Run(context.Background(), Check, Call{}); !ck.Skipped {
		t.Errorf("check without a check command: %+v", ck)
	}
	if pr := runWant(t, res, Probe, Call{}, NotRunning); !strings.Contains(pr.Err, "no check command") {
		t.Errorf("probe err %q", pr.Err)
	}
	bad := mustNew(t, "db", spec.Resource{Name: "bad", Kind: spec.KindVolume, Import: []string{"/nonexistent/vxdg"}, Deport: []string{"true"}}, testEnv(t))
	if got := runWant(t, bad, Import, Call{}, Failed); got.Severity != Hard {
		t.Errorf("import with a missing program: %+v", got)
	}
}

func TestVolumeValidate(t *testing.T) {
	ok := spec.Resource{Name: "v", Kind: spec.KindVolume, Import: []string{"true"}, Deport: []string{"/bin/true"}}
	if err := Validate("s", ok, Env{}); err != nil {
		t.Error(err)
	}
	bad := ok
	bad.Check = []string{"/nonexistent/vxdg", "list"}
	if err := Validate("s", bad, Env{}); err == nil || !strings.Contains(err.Error(), "check: program /nonexistent/vxdg does not exist") {
		t.Errorf("validate: %v", err)
	}
}
