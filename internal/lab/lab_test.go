package lab

import (
	"strings"
	"testing"

	"github.com/vigil-cluster/vigil/internal/spec"
)

func testState(links int) *State {
	s := &State{Dir: "/tmp/lab", LabBin: "/opt/vigil-lab", Links: links}
	for i := 1; i <= 3; i++ {
		m := &Member{Name: "m" + string(rune('0'+i))}
		for k := 0; k < links; k++ {
			m.Addrs = append(m.Addrs, "198.18.0.1")
		}
		s.Members = append(s.Members, m)
	}
	return s
}

// The services the lab applies must pass vigil's own strict parser.
func TestLabServicesParse(t *testing.T) {
	for _, links := range []int{1, 2} {
		s := testState(links)
		web, err := spec.Parse("web.yaml", []byte(webYAML(s)))
		if err != nil {
			t.Fatalf("links %d: web: %v", links, err)
		}
		ip := web[0].Resources[1]
		if want := s.Floating() + "/24"; ip.Address != want || ip.Interface != "eth"+string(rune('0'+links-1)) {
			t.Errorf("links %d: web's address %s on %s, want %s on the public link", links, ip.Address, ip.Interface, want)
		}
		names, yaml := recServices(s)
		recs, err := spec.Parse("rec.yaml", []byte(yaml))
		if err != nil {
			t.Fatalf("links %d: rec: %v", links, err)
		}
		if len(recs) != len(names) || recs[0].Placement.Favored[0] != "m1" || recs[1].Placement.Favored[0] != "m2" {
			t.Errorf("rec services: %+v", recs)
		}
	}
}

func TestKeepalivedConfIsDefaults(t *testing.T) {
	s := testState(2)
	c := keepalivedConf(s, s.Members[0])
	for _, want := range []string{"advert_int 1", "interface eth1", "198.18.1.100/24 dev eth1", "state BACKUP"} {
		if !strings.Contains(c, want) {
			t.Errorf("keepalived.conf lacks %q:\n%s", want, c)
		}
	}
	if strings.Contains(c, "priority") || strings.Contains(c, "nopreempt") {
		t.Errorf("keepalived.conf changes a default:\n%s", c)
	}
}

func TestFenceAgentErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"action=off\nnodename=m1\n", "no dir=LABDIR option"},
		{"action=off\nthis is not a pair\n", "is not KEY=VALUE"},
		{"action=off\nnodename=m1\ndir=/nonexistent/lab\n", "no lab is up in /nonexistent/lab"},
	} {
		var out strings.Builder
		err := FenceAgent(strings.NewReader(c.in), &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one saying %q", c.in, err, c.want)
		}
	}
}

func TestLabIDPerDirectory(t *testing.T) {
	if labID("/a") != labID("/a") || labID("/a") == labID("/b") {
		t.Error("lab ids must be stable per directory and differ between directories")
	}
	if n := len(labID("/a") + "-client"); n > 15 {
		t.Errorf("namespace names get long: %d", n)
	}
}
