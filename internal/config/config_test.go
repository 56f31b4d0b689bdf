package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// valid returns a member that passes Validate; each case below breaks one
// field of it.
func valid() Member {
	m := Default()
	m.Cluster = "c1"
	m.ClusterID = "0123456789abcdef"
	m.Name = "m1"
	m.ID = 1
	m.Links = []string{"198.18.0.1:7000", "198.19.0.1:7000"}
	m.API = "198.18.0.1:8000"
	return m
}

func TestValidateAcceptsValid(t *testing.T) {
	m := valid()
	if err := m.Validate(); err != nil {
		t.Fatalf("valid member refused: %v", err)
	}
	// The edges of every range are allowed.
	m.ID, m.Votes, m.Domain, m.Witness = 65535, 1, 63, true
	m.Links = []string{"a:1", "b:2", "c:3", "d:4", "e:5", "f:6", "g:7", "h:65534"}
	m.Profile, m.LogLevel = "wan", ""
	m.Attributes = map[string]string{"rack": strings.Repeat("x", 256)}
	if err := m.Validate(); err != nil {
		t.Fatalf("member at the edges of every range refused: %v", err)
	}
}

func TestValidateNamesFieldAndRange(t *testing.T) {
	many := map[string]string{}
	for i := range 65 {
		many[fmt.Sprintf("a%d", i)] = "v"
	}
	for _, tc := range []struct {
		name   string
		change func(*Member)
		want   []string // every one must be in the message
	}{
		{"cluster empty", func(m *Member) { m.Cluster = "" }, []string{"cluster name", "1-32"}},
		{"cluster upper", func(m *Member) { m.Cluster = "Prod" }, []string{"cluster name", `"Prod"`}},
		{"cluster too long", func(m *Member) { m.Cluster = strings.Repeat("a", 33) }, []string{"cluster name", "1-32"}},
		{"name dash end", func(m *Member) { m.Name = "m1-" }, []string{"member name", `"m1-"`}},
		{"id zero", func(m *Member) { m.ID = 0 }, []string{"id 0", "1-65535"}},
		{"id too big", func(m *Member) { m.ID = 65536 }, []string{"id 65536", "1-65535"}},
		{"id negative", func(m *Member) { m.ID = -1 }, []string{"id -1", "1-65535"}},
		{"no links", func(m *Member) { m.Links = nil }, []string{"links", "0 given", "1-8"}},
		{"nine links", func(m *Member) {
			m.Links = nil
			for i := range 9 {
				m.Links = append(m.Links, fmt.Sprintf("198.18.0.%d:7000", i+1))
			}
		}, []string{"links", "9 given", "1-8"}},
		{"link not host:port", func(m *Member) { m.Links[1] = "198.19.0.1" }, []string{"links[1]", "HOST:PORT"}},
		{"link port zero", func(m *Member) { m.Links[0] = "198.18.0.1:0" }, []string{"links[0]", "1-65534"}},
		{"link port 65535", func(m *Member) { m.Links[0] = "198.18.0.1:65535" }, []string{"links[0]", "1-65534"}},
		{"link wildcard", func(m *Member) { m.Links[0] = "0.0.0.0:7000" }, []string{"links[0]", "wildcard"}},
		{"link twice", func(m *Member) { m.Links[1] = m.Links[0] }, []string{"links[1]", "twice"}},
		{"api missing", func(m *Member) { m.API = "" }, []string{"api", "HOST:PORT"}},
		{"api no host", func(m *Member) { m.API = ":8000" }, []string{"api", "no host"}},
		{"votes 2", func(m *Member) { m.Votes = 2 }, []string{"votes 2", "0 or 1"}},
		{"votes -1", func(m *Member) { m.Votes = -1 }, []string{"votes -1", "0 or 1"}},
		{"witness without vote", func(m *Member) { m.Witness, m.Votes = true, 0 }, []string{"witness", "votes 1"}},
		{"domain 64", func(m *Member) { m.Domain = 64 }, []string{"domain 64", "0-63"}},
		{"domain -1", func(m *Member) { m.Domain = -1 }, []string{"domain -1", "0-63"}},
		{"profile unknown", func(m *Member) { m.Profile = "mars" }, []string{"profile", `"mars"`, "fast, lan, campus, wan"}},
		{"profile empty", func(m *Member) { m.Profile = "" }, []string{"profile", "lan"}},
		{"attribute name", func(m *Member) { m.Attributes = map[string]string{"1rack": "a"} }, []string{"attribute name", `"1rack"`}},
		{"attribute value", func(m *Member) { m.Attributes = map[string]string{"rack": strings.Repeat("x", 257)} }, []string{"attribute rack", "257 bytes", "at most 256"}},
		{"too many attributes", func(m *Member) { m.Attributes = many }, []string{"attributes", "65 given", "at most 64"}},
		{"log level", func(m *Member) { m.LogLevel = "loud" }, []string{"log level", `"loud"`, "debug, info, warn or error"}},
		{"dlm spin unit", func(m *Member) { m.DLMSpin = "50" }, []string{"dlm_spin", `"50"`, "0 (never spin) to 1ms"}},
		{"dlm spin long", func(m *Member) { m.DLMSpin = "2ms" }, []string{"dlm_spin", `"2ms"`, "to 1ms"}},
		{"dlm spin negative", func(m *Member) { m.DLMSpin = "-1us" }, []string{"dlm_spin", "from 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.change(&m)
			err := m.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", m)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDLMSpin(t *testing.T) {
	for in, want := range map[string]time.Duration{"": DefaultDLMSpin, "0": 0, "0s": 0, "20us": 20 * time.Microsecond, "1ms": time.Millisecond} {
		m := valid()
		m.DLMSpin = in
		if err := m.Validate(); err != nil {
			t.Fatalf("dlm_spin %q: %v", in, err)
		}
		if d, _ := m.DLMSpinD(); d != want {
			t.Errorf("dlm_spin %q: %v, want %v", in, d, want)
		}
	}
}

func TestValidAddress(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string // "" means valid; else a part of the message
	}{
		{"198.18.0.1:7000", ""},
		{"[2001:db8::1]:7000", ""},
		{"node-1.example.com:1", ""},
		{"localhost:65534", ""},
		{"198.18.0.1", "is not HOST:PORT"},
		{"198.18.0.1:7000:1", "is not HOST:PORT"},
		{"2001:db8::1:7000", "is not HOST:PORT"},
		{"", "is not HOST:PORT"},
		{":7000", "has no host"},
		{"0.0.0.0:7000", "wildcard"},
		{"[::]:7000", "wildcard"},
		{"198.18.0.1:0", "1-65534"},
		{"198.18.0.1:65535", "1-65534"},
		{"198.18.0.1:-1", "1-65534"},
		{"198.18.0.1:http", "1-65534"},
		{"198.18.0.1:", "1-65534"},
		{"[fe80::1%eth0]:7000", ""},
		{"node_1.example.com.:7000", ""},
		{"198.18.0.1 :7000", "neither an IP address nor a host name"},
		{"a<b>c:7000", "neither an IP address nor a host name"},
		{"-node:7000", "neither an IP address nor a host name"},
		{"a..b:7000", "neither an IP address nor a host name"},
		{strings.Repeat("a.", 127) + "ab:7000", "neither an IP address nor a host name"},
	} {
		err := ValidAddress("link", tc.addr)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidAddress(%q) = %v, want ok", tc.addr, err)
		case tc.want != "" && err == nil:
			t.Errorf("ValidAddress(%q) accepted it, want an error with %q", tc.addr, tc.want)
		case tc.want != "" && (!strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "link ")):
			t.Errorf("ValidAddress(%q) = %q, want it to name the field and contain %q", tc.addr, err, tc.want)
		case err != nil:
			t.Logf("%q: %v", tc.addr, err)
		}
	}
}

func TestRPCAddress(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.1:7000":    "198.18.0.1:7001",
		"[2001:db8::1]:7000": "[2001:db8::1]:7001",
		"node-1:65534":       "node-1:65535",
		"not an address":     "not an address",
	} {
		if got := RPCAddress(in); got != want {
			t.Errorf("RPCAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseAttributes(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want map[string]string
		err  string
	}{
		{"none", nil, nil, ""},
		{"empty list", []string{}, nil, ""},
		{"one", []string{"rack=r1"}, map[string]string{"rack": "r1"}, ""},
		{"value with =", []string{"cmd=a=b"}, map[string]string{"cmd": "a=b"}, ""},
		{"empty value", []string{"zone="}, map[string]string{"zone": ""}, ""},
		{"last wins", []string{"rack=r1", "rack=r2", "site.name=x_1"}, map[string]string{"rack": "r2", "site.name": "x_1"}, ""},
		{"no =", []string{"rack"}, nil, `attribute "rack" is not KEY=VALUE`},
		{"bad name", []string{"9rack=r1"}, nil, `attribute name "9rack" is not valid`},
		{"empty name", []string{"=r1"}, nil, `attribute name "" is not valid`},
		{"long value", []string{"rack=" + strings.Repeat("v", 257)}, nil, "at most 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAttributes(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseAttributes(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatalf("ParseAttributes(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseAttributes(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

const goodYAML = `cluster: c1
cluster_id: 0123456789abcdef
name: m2
id: 2
links:
  - 198.18.0.2:7000
api: 198.18.0.2:8000
votes: 0
domain: 3
profile: fast
attributes:
  rack: r2
`

func TestParseDefaultsAndFields(t *testing.T) {
	m, err := Parse("/d/vigil.yaml", []byte(goodYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := Member{Cluster: "c1", ClusterID: "0123456789abcdef", Name: "m2", ID: 2,
		Links: []string{"198.18.0.2:7000"}, API: "198.18.0.2:8000", Votes: 0, Domain: 3,
		Profile: "fast", Attributes: map[string]string{"rack": "r2"}, LogLevel: "info"}
	if !reflect.DeepEqual(*m, want) {
		t.Fatalf("Parse = %+v\nwant    %+v", *m, want)
	}
	// Fields left out keep their defaults.
	short := strings.NewReplacer("votes: 0\n", "", "profile: fast\n", "").Replace(goodYAML)
	m, err = Parse("/d/vigil.yaml", []byte(short))
	if err != nil {
		t.Fatal(err)
	}
	if m.Votes != 1 || m.Profile != "lan" || m.LogLevel != "info" {
		t.Fatalf("defaults not kept: votes %d profile %q log_level %q", m.Votes, m.Profile, m.LogLevel)
	}
	// Document markers and empty documents around the settings are fine.
	for _, s := range []string{"---\n" + goodYAML, goodYAML + "...\n", goodYAML + "---\n", goodYAML + "---\n# end\n---\n~\n"} {
		if _, err := Parse("/d/vigil.yaml", []byte(s)); err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		}
	}
}

func TestParseStrict(t *testing.T) {
	const path = "/var/lib/vigil/vigil.yaml"
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown field", strings.Replace(goodYAML, "domain: 3\n", "domain: 3\ndomian: 4\n", 1),
			[]string{path, "line 10", "domian"}},
		{"wrong type", strings.Replace(goodYAML, "id: 2", "id: two", 1),
			[]string{path, "line 4", "two"}},
		{"list for a string", strings.Replace(goodYAML, "api: 198.18.0.2:8000", "api: [a, b]", 1),
			[]string{path, "line 7"}},
		{"string for a list", strings.Replace(goodYAML, "links:\n  - 198.18.0.2:7000", "links: 198.18.0.2:7000", 1),
			[]string{path, "line 5"}},
		{"not yaml", "cluster: [c1\n", []string{path, "line"}},
		{"second document", goodYAML + "---\nbogus: field\n", []string{path, "more than one YAML document"}},
		{"second document, broken", goodYAML + "---\n[\n", []string{path, "more than one YAML document"}},
		{"third document", goodYAML + "---\n---\nbogus: field\n", []string{path, "more than one YAML document"}},
		{"empty file", "", []string{path, "empty", "vigil cluster create"}},
		{"comments only", "# nothing\n", []string{path, "empty"}},
		{"invalid value", strings.Replace(goodYAML, "domain: 3", "domain: 99", 1),
			[]string{path, "domain 99", "0-63"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(path, []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tc.yaml)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "vigil cluster create") {
		t.Fatalf("Load of an empty dir = %v, want advice to create or join", err)
	}
	m := valid()
	m.Attributes = map[string]string{"rack": "r1"}
	m.Peers = []string{"198.18.0.2:7001"}
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", FileName, fi.Mode().Perm())
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, m) {
		t.Fatalf("Load = %+v\nsaved  %+v", *got, m)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".tmp")); !os.IsNotExist(err) {
		t.Errorf("temp file left behind: %v", err)
	}
}

func TestProfiles(t *testing.T) {
	if got, want := ProfileNames(), []string{"fast", "lan", "campus", "wan"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ProfileNames = %v, want %v", got, want)
	}
	for name, p := range Profiles {
		if p.Name != name {
			t.Errorf("profile %s has Name %q", name, p.Name)
		}
		// Raft needs the lease shorter than the heartbeat timeout, and a
		// probe must time out before the next one starts.
		if p.LeaderLeaseTimeout > p.HeartbeatTimeout {
			t.Errorf("profile %s: leader lease %v > heartbeat timeout %v", name, p.LeaderLeaseTimeout, p.HeartbeatTimeout)
		}
		if p.ProbeTimeout >= p.ProbeInterval {
			t.Errorf("profile %s: probe timeout %v >= probe interval %v", name, p.ProbeTimeout, p.ProbeInterval)
		}
		if p.ApplyTimeout <= p.ElectionTimeout {
			t.Errorf("profile %s: apply timeout %v <= election timeout %v", name, p.ApplyTimeout, p.ElectionTimeout)
		}
	}
	for in, ok := range map[string]bool{"debug": true, "INFO": true, "warning": true, "error": true, "trace": false, "": false} {
		if _, err := ParseLevel(in); (err == nil) != ok {
			t.Errorf("ParseLevel(%q) error = %v", in, err)
		}
	}
}

func FuzzParseMember(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte(strings.Replace(goodYAML, "id: 2", "id: two", 1)))
	f.Add([]byte("cluster: c1\nname: m1\nid: 1\nlinks: [\"[::1]:7000\"]\napi: localhost:8000\nwitness: true\n"))
	f.Add([]byte("{}"))
	f.Add([]byte(""))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("cluster: &a c1\nname: *a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		const path = "/d/vigil.yaml"
		m, err := Parse(path, b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), path+": ") {
				t.Fatalf("error does not name the file: %q", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse returned a member that does not validate: %v", err)
		}
		// What was accepted survives a save and a load.
		dir := t.TempDir()
		if err := m.Save(dir); err != nil {
			t.Fatalf("Save: %v", err)
		}
		m2, err := Load(dir)
		if err != nil {
			t.Fatalf("a saved member does not load: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the member:\n%+v\n%+v", m, m2)
		}
	})
}
