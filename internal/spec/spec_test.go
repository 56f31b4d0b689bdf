package spec

import (
	"strings"
	"testing"
)

func TestParseErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"unknown field", "service: db\nbogus: 1\nresources: []\n", "svc.yaml: yaml: unmarshal errors:\n  line 2: field bogus not found"},
		{"wrong type", "service: db\nfailback: maybe\nresources: []\n", "line 2"},
		{"field of another kind", "service: web\nresources:\n  - name: www\n    kind: exec\n    command: [/bin/true]\n  - name: vip\n    kind: ip\n    address: 198.18.0.100/24\n    interface: eth0\n    command: [x]\n", "svc.yaml:6: service web: resource 2 (vip): field command does not apply to kind ip"},
		{"unknown kind", "service: web\nresources:\n  - name: a\n    kind: docker\n", `kind "docker" is not known`},
		{"bad address", "service: web\nresources:\n  - name: a\n    kind: ip\n    address: 198.18.0.100\n    interface: eth0\n", "is not an address with a prefix length"},
		{"bad ocf agent", "service: web\nresources:\n  - name: a\n    kind: ocf\n    agent: heartbeat/Dummy\n", "is not ocf:PROVIDER:TYPE"},
		{"no resources", "service: web\n", "needs at least one resource"},
		{"bad duration", "service: web\nmonitor_interval: soon\nresources:\n  - name: a\n    kind: exec\n    command: [/bin/true]\n", "line 2: \"soon\" is not a duration"},
		{"duration range", "service: web\nmonitor_interval: 2h\nresources:\n  - name: a\n    kind: exec\n    command: [/bin/true]\n", "monitor_interval 2h0m0s is out of range: must be 100ms to 1h0m0s"},
		{"domain range", "service: web\nplacement: {domain: 64}\nresources:\n  - name: a\n    kind: exec\n    command: [/bin/true]\n", "placement.domain 64 is out of range: must be 0-63"},
		{"twice", "service: web\nresources:\n  - name: a\n    kind: exec\n    command: [/bin/true]\n---\nservice: web\nresources:\n  - name: a\n    kind: exec\n    command: [/bin/true]\n", "svc.yaml:7: service web is defined twice (first at line 1)"},
		{"empty", "", "no service in the file"},
		{"second doc line", "service: a\nresources:\n  - name: a\n    kind: exec\n    command: [/bin/true]\n---\nservice: b\nresources:\n  - name: a\n    kind: exec\n    command: [/bin/true]\n    nope: 1\n", "line 12: field nope not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("svc.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	ss, err := Parse("svc.yaml", []byte("service: web\nplacement: {favored: [m1, m2]}\nresources:\n  - name: www\n    kind: exec\n    command: [/bin/sleep, '100']\n    timeouts: {start: 5s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := ss[0]
	if s.Restart.Max != 3 || s.Restart.Window.D().Minutes() != 10 || s.FailureTimeout.D().Minutes() != 10 || s.MonitorInterval.D().Seconds() != 5 {
		t.Errorf("defaults: %+v", s)
	}
	if s.Resources[0].Timeouts.Start.D().Seconds() != 5 || s.Resources[0].Timeouts.Stop.D().Seconds() != 60 {
		t.Errorf("resource timeouts: %+v", s.Resources[0].Timeouts)
	}
}

func TestParseSkipsEmptyDocuments(t *testing.T) {
	doc := "service: a\nresources:\n  - name: x\n    kind: exec\n    command: [/bin/true]\n"
	for _, text := range []string{"---\n" + doc, doc + "---\n", doc + "---\n---\n" + strings.Replace(doc, "a\n", "b\n", 1) + "---\n"} {
		ss, err := Parse("svc.yaml", []byte(text))
		if err != nil {
			t.Errorf("%q: %v", text, err)
		} else if len(ss) == 0 || ss[0].Name != "a" {
			t.Errorf("%q: got %d services", text, len(ss))
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("service: web\nresources:\n  - name: www\n    kind: exec\n    command: [/bin/true]\n"))
	f.Add([]byte("service: v\nresources:\n  - {name: a, kind: ip, address: 198.18.0.9/24, interface: eth0}\n---\n"))
	f.Add([]byte("- [\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := Parse("f.yaml", b)
		if err == nil && len(ss) == 0 {
			t.Fatal("no error and no service")
		}
		for _, s := range ss {
			if err := s.Validate(); err != nil {
				t.Fatalf("Parse returned an invalid service: %v", err)
			}
		}
	})
}
