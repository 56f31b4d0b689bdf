package agents

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// testAgent is an OCF agent for the tests: it records its environment in
// $OCF_RESKEY_out.ACTION, prints $OCF_RESKEY_reason as the exit reason,
// sleeps $OCF_RESKEY_sleep seconds and exits $OCF_RESKEY_rc.
const testAgent = `#!/bin/sh
action=$1
[ -n "$OCF_RESKEY_out" ] && env | grep -E '^(OCF_|HA_)' | sort > "$OCF_RESKEY_out.$action"
if [ "$action" = meta-data ]; then
cat <<'END'
<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="Env" version="0.1">
<version>1.0</version>
<longdesc lang="en">Records its environment.</longdesc>
<shortdesc lang="en">test agent</shortdesc>
<parameters>
<parameter name="out" required="1" unique="1"><content type="string"/></parameter>
<parameter name="rc"><content type="integer" default="0"/></parameter>
<parameter name="reason"><content type="string"/></parameter>
<parameter name="sleep"><content type="integer" default="0"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="stop" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s" depth="0"/>
<action name="validate-all" timeout="1s"/>
<action name="meta-data" timeout="5s"/>
</actions>
</resource-agent>
END
exit 0
fi
echo "running $action"
[ -n "$OCF_RESKEY_reason" ] && echo "ocf-exit-reason:$OCF_RESKEY_reason" >&2
[ "${OCF_RESKEY_sleep:-0}" != 0 ] && sleep "$OCF_RESKEY_sleep"
exit ${OCF_RESKEY_rc:-0}
`

// ocfRoot makes an OCF root holding the test agent as ocf:vigil-test:Env.
func ocfRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	p := filepath.Join(root, "resource.d", "vigil-test", "Env")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(testAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func ocfEnv(t *testing.T, root string) Env {
	return Env{OCFRoot: root, RscTmp: filepath.Join(t.TempDir(), "rsctmp"), StateDir: t.TempDir(), Logger: testLogger(t)}
}

func ocfRes(agent string, params map[string]string) spec.Resource {
	return spec.Resource{Name: "res", Kind: spec.KindOCF, Agent: agent, Params: params,
		Timeouts: spec.Timeouts{Start: spec.Duration(20 * time.Second), Stop: spec.Duration(30 * time.Second), Monitor: spec.Duration(10 * time.Second)}}
}

// readEnv reads what the test agent recorded.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range readLines(t, path) {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	if len(m) == 0 {
		t.Fatalf("%s: the agent recorded no environment", path)
	}
	return m
}

func TestOCFEnvironment(t *testing.T) {
	t.Setenv("OCF_TRACE_RA", "1") // must not reach the agent
	t.Setenv("HA_debug", "1")
	root := ocfRoot(t)
	env := ocfEnv(t, root)
	out := filepath.Join(t.TempDir(), "env")
	res := mustNew(t, "web", ocfRes("ocf:vigil-test:Env", map[string]string{"out": out, "reason": "a b=c"}), env)
	runOK(t, res, Start, Call{})
	runOK(t, res, Check, Call{Interval: 2500 * time.Millisecond})
	runOK(t, res, Probe, Call{})
	runOK(t, res, Stop, Call{Timeout: 7 * time.Second})

	start := readEnv(t, out+".start")
	want := map[string]string{
		"OCF_ROOT":                    root,
		"OCF_FUNCTIONS_DIR":           filepath.Join(root, "lib", "heartbeat"),
		"OCF_RESOURCE_INSTANCE":       "web-res",
		"OCF_RESOURCE_TYPE":           "Env",
		"OCF_RESOURCE_PROVIDER":       "vigil-test",
		"OCF_RESKEY_out":              out,
		"OCF_RESKEY_reason":           "a b=c",
		"OCF_RESKEY_CRM_meta_timeout": "20000",
		"HA_RSCTMP":                   env.RscTmp,
	}
	for k, v := range want {
		if start[k] != v {
			t.Errorf("start: %s=%q, want %q", k, start[k], v)
		}
	}
	for _, k := range []string{"OCF_TRACE_RA", "HA_debug", "OCF_RESKEY_CRM_meta_interval"} {
		if v, ok := start[k]; ok {
			t.Errorf("start: %s=%q is set; want it unset", k, v)
		}
	}
	if st, err := os.Stat(env.RscTmp); err != nil || !st.IsDir() {
		t.Errorf("HA_RSCTMP %s not created: %v", env.RscTmp, err)
	}
	// The monitor's interval and timeout, in milliseconds; a probe has
	// interval 0 (ocf_is_probe).
	mon := readEnv(t, out+".monitor")
	if mon["OCF_RESKEY_CRM_meta_interval"] != "0" || mon["OCF_RESKEY_CRM_meta_timeout"] != "10000" {
		t.Errorf("probe (the last monitor): interval %q timeout %q", mon["OCF_RESKEY_CRM_meta_interval"], mon["OCF_RESKEY_CRM_meta_timeout"])
	}
	if stop := readEnv(t, out+".stop"); stop["OCF_RESKEY_CRM_meta_timeout"] != "7000" {
		t.Errorf("stop timeout %q, want the call's 7000", stop["OCF_RESKEY_CRM_meta_timeout"])
	}
}

func TestOCFMonitorInterval(t *testing.T) {
	root := ocfRoot(t)
	out := filepath.Join(t.TempDir(), "env")
	res := mustNew(t, "web", ocfRes("ocf:vigil-test:Env", map[string]string{"out": out}), ocfEnv(t, root))
	runOK(t, res, Check, Call{Interval: 2500 * time.Millisecond})
	if v := readEnv(t, out+".monitor")["OCF_RESKEY_CRM_meta_interval"]; v != "2500" {
		t.Errorf("check interval %q, want 2500", v)
	}
	runOK(t, res, Check, Call{})
	if v := readEnv(t, out+".monitor")["OCF_RESKEY_CRM_meta_interval"]; v == "0" || v == "" {
		t.Errorf("check without an interval: %q; a monitor with interval 0 is a probe to OCF agents", v)
	}
}

// TestOCFExitCodes checks what every OCF exit code means in every phase.
func TestOCFExitCodes(t *testing.T) {
	root := ocfRoot(t)
	env := ocfEnv(t, root)
	type want struct {
		st  Status
		sev Severity
	}
	ok, nr := want{OK, Soft}, want{NotRunning, Soft}
	soft, hard, fatal := want{Failed, Soft}, want{Failed, Hard}, want{Failed, Fatal}
	cases := []struct {
		rc                       int
		start, stop, check, prob want
	}{
		{0, ok, ok, ok, ok},
		{1, soft, soft, soft, soft},
		{2, hard, hard, hard, hard},
		{3, hard, hard, hard, hard},
		{4, hard, hard, hard, hard},
		{5, hard, hard, hard, hard},
		{6, fatal, fatal, fatal, fatal},
		{7, soft, ok, nr, nr},
		{8, ok, ok, ok, ok},
		{9, soft, soft, soft, soft},
		{42, soft, soft, soft, soft},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint("rc", c.rc), func(t *testing.T) {
			res := mustNew(t, "s", ocfRes("ocf:vigil-test:Env", map[string]string{"rc": fmt.Sprint(c.rc)}), env)
			for _, pw := range []struct {
				p Phase
				w want
			}{{Start, c.start}, {Stop, c.stop}, {Abort, c.stop}, {Check, c.check}, {Probe, c.prob}} {
				r := res.Run(context.Background(), pw.p, Call{})
				if r.RC != c.rc || r.Status != pw.w.st || (r.Status != OK && r.Severity != pw.w.sev) {
					t.Errorf("rc %d at %s: rc %d %s/%s, want %s/%s (err %q)", c.rc, pw.p, r.RC, r.Status, r.Severity, pw.w.st, pw.w.sev, r.Err)
				}
				if r.Status != OK && !strings.Contains(r.Err, fmt.Sprintf("exited %d (", c.rc)) {
					t.Errorf("rc %d at %s: err %q does not give the exit code and its meaning", c.rc, pw.p, r.Err)
				}
				if !containsLine(r.Output, "running "+r.Method) {
					t.Errorf("rc %d at %s: output %q", c.rc, pw.p, r.Output)
				}
			}
		})
	}
}

func TestOCFExitReasonAndTimeout(t *testing.T) {
	root := ocfRoot(t)
	env := ocfEnv(t, root)
	res := mustNew(t, "s", ocfRes("ocf:vigil-test:Env", map[string]string{"rc": "1", "reason": "disk on fire"}), env)
	r := runWant(t, res, Start, Call{}, Failed)
	if r.Err != "ocf:vigil-test:Env start exited 1 (generic error): disk on fire" {
		t.Errorf("err %q", r.Err)
	}
	slow := mustNew(t, "s", ocfRes("ocf:vigil-test:Env", map[string]string{"sleep": "300"}), env)
	r = runWant(t, slow, Stop, Call{Timeout: 300 * time.Millisecond}, Failed)
	if r.Err != "ocf:vigil-test:Env stop timed out after 300ms and was killed (with its whole process group)" || r.RC != -1 {
		t.Errorf("err %q rc %d", r.Err, r.RC)
	}
}

func TestOCFNotInstalled(t *testing.T) {
	env := ocfEnv(t, ocfRoot(t))
	r := ocfRes("ocf:vigil-test:Nope", nil)
	res := mustNew(t, "s", r, env)
	got := runWant(t, res, Start, Call{}, Failed)
	if got.Severity != Hard || !strings.Contains(got.Err, "not installed") {
		t.Errorf("start of a missing agent: %s %q", got.Severity, got.Err)
	}
	if res.Run(context.Background(), IPUp, Call{}).Skipped != true {
		t.Errorf("an ocf resource takes part in IPUp")
	}
	err := Validate("s", r, env)
	if err == nil || !strings.Contains(err.Error(), "ocf:vigil-test:Nope is not installed") {
		t.Errorf("validate of a missing agent: %v", err)
	}
}

func TestOCFValidate(t *testing.T) {
	env := ocfEnv(t, ocfRoot(t))
	out := filepath.Join(t.TempDir(), "env")
	for _, c := range []struct {
		name   string
		params map[string]string
		want   string
	}{
		{"ok", map[string]string{"out": out}, ""},
		{"unknown", map[string]string{"out": out, "colour": "red", "bogus": "1"},
			"validate: params: unknown parameter(s) bogus, colour; ocf:vigil-test:Env takes these parameters: out, rc, reason, sleep"},
		{"missing", map[string]string{"rc": "0"},
			"validate: params: missing required parameter(s) out; ocf:vigil-test:Env takes these parameters: out, rc, reason, sleep"},
		{"validate-all fails", map[string]string{"out": out, "rc": "2", "reason": "rc must be a number"},
			"validate-all: ocf:vigil-test:Env validate-all exited 2 (invalid argument): rc must be a number"},
		{"validate-all unimplemented", map[string]string{"out": out, "rc": "3"}, ""},
		{"validate-all hangs", map[string]string{"out": out, "sleep": "300"}, "validate-all timed out after 1s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Validate("s", ocfRes("ocf:vigil-test:Env", c.params), env)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("error %v\nwant one containing %q", err, c.want)
			case err != nil:
				t.Logf("%v", err)
			}
		})
	}
	if _, err := os.Stat(out + ".validate-all"); err != nil {
		t.Errorf("validate-all did not run: %v", err)
	}
}

// dummyPath is Debian's resource-agents Dummy.
const dummyPath = "/usr/lib/ocf/resource.d/heartbeat/Dummy"

func needDummy(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(dummyPath); err != nil {
		requireLab(t, dummyPath+" is not installed (apt-get install resource-agents)")
	}
}

// TestOCFDummy runs the real ocf:heartbeat:Dummy through its life.
func TestOCFDummy(t *testing.T) {
	needDummy(t)
	env := Env{RscTmp: t.TempDir(), Logger: testLogger(t)}
	state := filepath.Join(t.TempDir(), "dummy.state")
	res := mustNew(t, "web", ocfRes("ocf:heartbeat:Dummy", map[string]string{"state": state}), env)
	runWant(t, res, Probe, Call{}, NotRunning)
	runWant(t, res, Check, Call{Interval: time.Second}, NotRunning)
	runOK(t, res, Start, Call{})
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("Dummy start made no state file: %v", err)
	}
	runOK(t, res, Check, Call{Interval: time.Second})
	runOK(t, res, Probe, Call{})
	// Gone behind the agent's back: the monitor says so, with its reason.
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	r := runWant(t, res, Check, Call{Interval: time.Second}, NotRunning)
	if !strings.Contains(r.Err, "exited 7 (not running)") || !strings.Contains(r.Err, "No process state file found") {
		t.Errorf("check err %q: want the exit code and Dummy's exit reason", r.Err)
	}
	runOK(t, res, Start, Call{})
	runOK(t, res, Stop, Call{})
	runWant(t, res, Probe, Call{}, NotRunning)
	runOK(t, res, Stop, Call{}) // stopping what is stopped is OK
	runOK(t, res, Start, Call{})
	runOK(t, res, Abort, Call{})
	runWant(t, res, Check, Call{Interval: time.Second}, NotRunning)
}

// TestOCFDummyDefaultState runs Dummy without params: its state file is
// HA_RSCTMP/Dummy-OCF_RESOURCE_INSTANCE.state.
func TestOCFDummyDefaultState(t *testing.T) {
	needDummy(t)
	env := Env{RscTmp: t.TempDir(), Logger: testLogger(t)}
	service := svcName("dflt")
	res := mustNew(t, service, ocfRes("ocf:heartbeat:Dummy", nil), env)
	runOK(t, res, Start, Call{})
	state := filepath.Join(env.RscTmp, "Dummy-"+service+"-res.state")
	if _, err := os.Stat(state); err != nil {
		t.Errorf("no state file %s: %v", state, err)
	}
	runOK(t, res, Probe, Call{})
	runOK(t, res, Stop, Call{})
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file after stop: %v", err)
	}
}

func TestOCFDummyValidate(t *testing.T) {
	needDummy(t)
	env := Env{RscTmp: t.TempDir(), Logger: testLogger(t)}
	state := filepath.Join(t.TempDir(), "dummy.state")
	if err := Validate("web", ocfRes("ocf:heartbeat:Dummy", map[string]string{"state": state, "fake": "x"}), env); err != nil {
		t.Errorf("valid Dummy: %v", err)
	}
	err := Validate("web", ocfRes("ocf:heartbeat:Dummy", map[string]string{"state": state, "colour": "red"}), env)
	if err == nil || !strings.Contains(err.Error(), "unknown parameter(s) colour; ocf:heartbeat:Dummy takes these parameters: fake, state") {
		t.Errorf("Dummy with a bad parameter: %v", err)
	} else {
		t.Log(err)
	}
	err = Validate("web", ocfRes("ocf:heartbeat:Dummy", map[string]string{"state": "/nonexistent/vigil/dummy.state"}), env)
	if err == nil || !strings.Contains(err.Error(), "validate-all exited 2 (invalid argument)") || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("Dummy with an unwritable state file: %v", err)
	} else {
		t.Log(err)
	}
}

// TestOCFRealMetadata parses the meta-data of real agents of Debian's
// resource-agents and checks what vigil relies on.
func TestOCFRealMetadata(t *testing.T) {
	needDummy(t)
	env := Env{RscTmp: t.TempDir(), Logger: testLogger(t)}
	for _, c := range []struct {
		agent    string
		required []string
		params   []string
	}{
		{"ocf:heartbeat:Dummy", nil, []string{"state", "fake"}},
		{"ocf:heartbeat:IPaddr2", []string{"ip"}, []string{"ip", "nic", "cidr_netmask"}},
		{"ocf:heartbeat:Filesystem", []string{"device", "directory", "fstype"}, []string{"options"}},
	} {
		t.Run(c.agent, func(t *testing.T) {
			o, err := newOCF(base{service: "s", res: ocfRes(c.agent, nil), env: env.withDefaults()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(o.path); err != nil {
				t.Skipf("%s: %v", c.agent, err)
			}
			md, err := o.Metadata(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range c.params {
				if _, ok := md.Param(p); !ok {
					t.Errorf("parameter %s missing from %v", p, md.ParamNames())
				}
			}
			for _, p := range c.required {
				if q, _ := md.Param(p); !q.Required {
					t.Errorf("parameter %s not required", p)
				}
			}
			for _, a := range []string{"start", "stop", "monitor"} {
				if act, ok := md.Action(a); !ok || act.Timeout <= 0 {
					t.Errorf("action %s: %+v %v", a, act, ok)
				}
			}
		})
	}
	if md, err := AgentMetadata(t.Context(), "ocf:heartbeat:Dummy", env); err != nil || md.Name != "Dummy" {
		t.Errorf("AgentMetadata(Dummy): %+v %v", md, err)
	}
	if _, err := AgentMetadata(t.Context(), "ocf:heartbeat:VigilNoSuchAgent", env); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("AgentMetadata of a missing agent: %v", err)
	}
	err := Validate("s", ocfRes("ocf:heartbeat:IPaddr2", map[string]string{"nic": "eth0"}), env)
	if err == nil || !strings.Contains(err.Error(), "missing required parameter(s) ip") {
		t.Errorf("IPaddr2 without ip: %v", err)
	}
}
