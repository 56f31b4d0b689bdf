package agents

import (
	"encoding/xml"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

const dummyMetadata = `<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="Dummy" version="1.0">
<version>1.0</version>
<longdesc lang="en">
This is a Dummy Resource Agent.
</longdesc>
<shortdesc lang="en">Example stateless resource agent</shortdesc>
<parameters>
<parameter name="state" unique="1">
<longdesc lang="en">Location to store the resource state in.</longdesc>
<shortdesc lang="en">State file</shortdesc>
<content type="string" default="/run/resource-agents/Dummy-web-res.state" />
</parameter>
<parameter name="fake" unique="0">
<shortdesc lang="en">Fake attribute</shortdesc>
<content type="string" default="dummy" />
</parameter>
</parameters>
<actions>
<action name="start"        timeout="20s" />
<action name="stop"         timeout="20s" />
<action name="monitor"      timeout="20s" interval="10s" depth="0" />
<action name="meta-data"    timeout="5s" />
<action name="validate-all"   timeout="20s" />
</actions>
</resource-agent>
`

const selectMetadata = `<?xml version="1.0" encoding="UTF-8"?>
<resource-agent name="Sel">
<shortdesc lang="de">Auswahl</shortdesc>
<shortdesc lang="en">Selection</shortdesc>
<parameters>
<parameter name="mode" required="true">
<deprecated/>
<content type="select" default="fast"><option value="fast"/><option value="safe"/></content>
</parameter>
<parameter name="old" deprecated="1"><content type="boolean" default="false"/></parameter>
</parameters>
<actions>
<action name="monitor" timeout="2min" interval="500ms" role="Promoted"/>
<action name="promote" timeout="90"/>
<action name="notify" timeout="soon"/>
</actions>
<special tag="ignored"><x/></special>
</resource-agent>`

func TestParseMetadata(t *testing.T) {
	md, err := ParseMetadata([]byte(dummyMetadata))
	if err != nil {
		t.Fatal(err)
	}
	want := &Metadata{
		Name: "Dummy", Version: "1.0", ShortDesc: "Example stateless resource agent",
		Parameters: []Parameter{
			{Name: "state", Unique: true, ShortDesc: "State file", Type: "string", Default: "/run/resource-agents/Dummy-web-res.state"},
			{Name: "fake", ShortDesc: "Fake attribute", Type: "string", Default: "dummy"},
		},
		Actions: []Action{
			{Name: "start", Timeout: 20 * time.Second},
			{Name: "stop", Timeout: 20 * time.Second},
			{Name: "monitor", Timeout: 20 * time.Second, Interval: 10 * time.Second, Depth: "0"},
			{Name: "meta-data", Timeout: 5 * time.Second},
			{Name: "validate-all", Timeout: 20 * time.Second},
		},
	}
	if !reflect.DeepEqual(md, want) {
		t.Errorf("got  %+v\nwant %+v", md, want)
	}

	md, err = ParseMetadata([]byte(selectMetadata))
	if err != nil {
		t.Fatal(err)
	}
	want = &Metadata{
		Name: "Sel", ShortDesc: "Selection",
		Parameters: []Parameter{
			{Name: "mode", Required: true, Deprecated: true, Type: "select", Default: "fast", Options: []string{"fast", "safe"}},
			{Name: "old", Deprecated: true, Type: "boolean", Default: "false"},
		},
		Actions: []Action{
			{Name: "monitor", Timeout: 2 * time.Minute, Interval: 500 * time.Millisecond, Role: "Promoted"},
			{Name: "promote", Timeout: 90 * time.Second},
			{Name: "notify"},
		},
	}
	if !reflect.DeepEqual(md, want) {
		t.Errorf("got  %+v\nwant %+v", md, want)
	}

	md, err = ParseMetadata([]byte("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><resource-agent name=\"caf\xe9\"/>"))
	if err != nil || md.Name != "café" {
		t.Errorf("latin-1 meta-data: %+v, %v", md, err)
	}
}

func TestParseMetadataErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"  \n", "empty"},
		{"usage: Dummy {start|stop}", "not resource-agent XML"},
		{"<agent name='x'/>", "not resource-agent XML"},
		{"<resource-agent><parameters><parameter><content/></parameter></parameters></resource-agent>", "parameter 1 has no name"},
		{"<resource-agent><parameters><parameter name='a'/><parameter name=' a '/></parameters></resource-agent>", "parameter a is described twice"},
		{"<resource-agent><actions><action timeout='1s'/></actions></resource-agent>", "action 1 has no name"},
		{"<resource-agent><parameters>", "not resource-agent XML"},
		{`<?xml version="1.0" encoding="EBCDIC"?><resource-agent/>`, "not supported"},
		{"<resource-agent>" + strings.Repeat(" ", MaxMetadataSize) + "</resource-agent>", "at most"},
	} {
		_, err := ParseMetadata([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseMetadata(%.40q): %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

func TestParseOCFDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"20s": 20 * time.Second, "20": 20 * time.Second, " 20 s ": 20 * time.Second, "0": 0,
		"500ms": 500 * time.Millisecond, "500msec": 500 * time.Millisecond, "10us": 10 * time.Microsecond,
		"2m": 2 * time.Minute, "2min": 2 * time.Minute, "1h": time.Hour, "1hr": time.Hour, "1H": time.Hour,
		"": 0, "soon": 0, "-5s": 0, "1.5s": 0, "5 days": 0, "999999999h": 0, "9999999999": 0,
	} {
		if got := parseOCFDuration(in); got != want {
			t.Errorf("parseOCFDuration(%q) = %s, want %s", in, got, want)
		}
	}
}

// encodeMetadata writes m as agent XML (the inverse of ParseMetadata, for
// the fuzz test's round trip).
func encodeMetadata(m *Metadata) ([]byte, error) {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	dur := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		for _, u := range []struct {
			d    time.Duration
			name string
		}{{time.Hour, "h"}, {time.Minute, "min"}, {time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "us"}} {
			if d%u.d == 0 {
				return fmt.Sprintf("%d%s", d/u.d, u.name)
			}
		}
		return fmt.Sprintf("%dus", d/time.Microsecond)
	}
	x := xmlAgent{Name: m.Name, Version: m.Version}
	if m.ShortDesc != "" {
		x.ShortDesc = []xmlDesc{{Lang: "en", Text: m.ShortDesc}}
	}
	for _, p := range m.Parameters {
		xp := xmlParam{Name: p.Name, Required: b(p.Required), Unique: b(p.Unique), Deprecated: b(p.Deprecated),
			Content: xmlContent{Type: p.Type, Default: p.Default}}
		if p.ShortDesc != "" {
			xp.ShortDesc = []xmlDesc{{Lang: "en", Text: p.ShortDesc}}
		}
		for _, o := range p.Options {
			xp.Content.Options = append(xp.Content.Options, xmlOption{Value: o})
		}
		x.Parameters = append(x.Parameters, xp)
	}
	for _, a := range m.Actions {
		x.Actions = append(x.Actions, xmlAction{Name: a.Name, Timeout: dur(a.Timeout), Interval: dur(a.Interval), Depth: a.Depth, Role: a.Role})
	}
	return xml.Marshal(x)
}

// FuzzParseMetadata feeds the meta-data decoder arbitrary input: it must
// not panic, what it accepts must have named, distinct parameters and
// named actions, and writing what it accepted back out must parse to the
// same Metadata.
func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(dummyMetadata))
	f.Add([]byte(selectMetadata))
	f.Add([]byte(`<resource-agent name="x"><parameters><parameter name="a" required="yes"/></parameters></resource-agent>`))
	f.Add([]byte(`<resource-agent><actions><action name="start" timeout="999999999h"/></actions></resource-agent>`))
	f.Add([]byte(`<resource-agent name="&lt;&#x41;&amp;"><shortdesc>  a&#xD;b  </shortdesc></resource-agent>`))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY e "boom">]><resource-agent name="&e;"/>`))
	f.Add([]byte(`<resource-agent><parameters><parameter name="a"/><parameter name="a"/></parameters></resource-agent>`))
	f.Add([]byte("\xff\xfe<\x00r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		md, err := ParseMetadata(in)
		if err != nil {
			if md != nil {
				t.Fatalf("error %v with metadata %+v", err, md)
			}
			return
		}
		seen := map[string]bool{}
		for _, p := range md.Parameters {
			if p.Name == "" || seen[p.Name] {
				t.Fatalf("parameter name %q empty or repeated in %v", p.Name, md.ParamNames())
			}
			seen[p.Name] = true
		}
		for _, a := range md.Actions {
			if a.Name == "" || a.Timeout < 0 || a.Interval < 0 {
				t.Fatalf("bad action %+v", a)
			}
		}
		out, err := encodeMetadata(md)
		if err != nil {
			t.Fatalf("encode %+v: %v", md, err)
		}
		again, err := ParseMetadata(out)
		if err != nil {
			t.Fatalf("what was accepted does not parse again: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(md, again) {
			t.Fatalf("round trip changed the metadata:\n%+v\n%+v\n%s", md, again, out)
		}
	})
}
