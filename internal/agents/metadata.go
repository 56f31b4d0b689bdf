package agents

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxMetadataSize bounds the meta-data an OCF agent may print.
const MaxMetadataSize = 1 << 20

// Metadata is what an OCF resource agent describes of itself with its
// meta-data action (the OCF resource agent API's XML).
type Metadata struct {
	Name       string
	Version    string
	ShortDesc  string
	Parameters []Parameter
	Actions    []Action
}

// Parameter is one parameter an OCF agent takes (OCF_RESKEY_<Name>).
type Parameter struct {
	Name       string
	Required   bool
	Unique     bool
	Deprecated bool
	ShortDesc  string
	Type       string   // content type: string, integer, boolean, select, ...
	Default    string   // as the agent printed it
	Options    []string // the values of a select
}

// Action is one action an OCF agent lists, with its advised timeouts.
type Action struct {
	Name     string
	Timeout  time.Duration // 0 when not given or not understood
	Interval time.Duration // 0 when not given or not understood
	Depth    string
	Role     string
}

// Param returns the parameter called name.
func (m *Metadata) Param(name string) (Parameter, bool) {
	for _, p := range m.Parameters {
		if p.Name == name {
			return p, true
		}
	}
	return Parameter{}, false
}

// Action returns the first action called name.
func (m *Metadata) Action(name string) (Action, bool) {
	for _, a := range m.Actions {
		if a.Name == name {
			return a, true
		}
	}
	return Action{}, false
}

// ParamNames returns the parameter names in the agent's order.
func (m *Metadata) ParamNames() []string {
	n := make([]string, len(m.Parameters))
	for i, p := range m.Parameters {
		n[i] = p.Name
	}
	return n
}

// The XML as agents print it.
type xmlAgent struct {
	XMLName     xml.Name    `xml:"resource-agent"`
	Name        string      `xml:"name,attr"`
	VersionAttr string      `xml:"version,attr"`
	Version     string      `xml:"version"`
	ShortDesc   []xmlDesc   `xml:"shortdesc"`
	Parameters  []xmlParam  `xml:"parameters>parameter"`
	Actions     []xmlAction `xml:"actions>action"`
}

type xmlDesc struct {
	Lang string `xml:"lang,attr"`
	Text string `xml:",chardata"`
}

type xmlParam struct {
	Name         string     `xml:"name,attr"`
	Required     string     `xml:"required,attr"`
	Unique       string     `xml:"unique,attr"`
	Deprecated   string     `xml:"deprecated,attr"`
	DeprecatedEl *xmlIgnore `xml:"deprecated"`
	ShortDesc    []xmlDesc  `xml:"shortdesc"`
	Content      xmlContent `xml:"content"`
}

type xmlContent struct {
	Type    string      `xml:"type,attr"`
	Default string      `xml:"default,attr"`
	Options []xmlOption `xml:"option"`
}

type xmlOption struct {
	Value string `xml:"value,attr"`
}

type xmlAction struct {
	Name     string `xml:"name,attr"`
	Timeout  string `xml:"timeout,attr"`
	Interval string `xml:"interval,attr"`
	Depth    string `xml:"depth,attr"`
	Role     string `xml:"role,attr"`
}

type xmlIgnore struct{}

// ParseMetadata decodes the meta-data XML of an OCF agent. It refuses
// input larger than MaxMetadataSize, a root element other than
// resource-agent, and parameters or actions without a name or parameters
// given twice; it ignores elements it does not know.
func ParseMetadata(b []byte) (*Metadata, error) {
	if len(b) > MaxMetadataSize {
		return nil, fmt.Errorf("meta-data is %d bytes, at most %d", len(b), MaxMetadataSize)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("meta-data is empty")
	}
	var x xmlAgent
	d := xml.NewDecoder(bytes.NewReader(b))
	d.CharsetReader = func(charset string, r io.Reader) (io.Reader, error) {
		// Agents are ASCII in practice; declared single-byte charsets
		// are read as they are.
		switch strings.ToLower(charset) {
		case "us-ascii", "ascii", "utf8":
			return r, nil
		case "iso-8859-1", "latin1":
			return latin1Reader(r)
		}
		return nil, fmt.Errorf("charset %q is not supported: print UTF-8", charset)
	}
	if err := d.Decode(&x); err != nil {
		return nil, fmt.Errorf("meta-data is not resource-agent XML: %v", err)
	}
	m := &Metadata{
		Name:      strings.TrimSpace(x.Name),
		Version:   strings.TrimSpace(x.Version),
		ShortDesc: pickDesc(x.ShortDesc),
	}
	if m.Version == "" {
		m.Version = strings.TrimSpace(x.VersionAttr)
	}
	seen := map[string]bool{}
	for i, xp := range x.Parameters {
		p := Parameter{
			Name:       strings.TrimSpace(xp.Name),
			Required:   ocfBool(xp.Required),
			Unique:     ocfBool(xp.Unique),
			Deprecated: ocfBool(xp.Deprecated) || xp.DeprecatedEl != nil,
			ShortDesc:  pickDesc(xp.ShortDesc),
			Type:       strings.TrimSpace(xp.Content.Type),
			Default:    xp.Content.Default,
		}
		for _, o := range xp.Content.Options {
			p.Options = append(p.Options, o.Value)
		}
		if p.Name == "" {
			return nil, fmt.Errorf("meta-data: parameter %d has no name", i+1)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("meta-data: parameter %s is described twice", p.Name)
		}
		seen[p.Name] = true
		m.Parameters = append(m.Parameters, p)
	}
	for i, xa := range x.Actions {
		a := Action{
			Name:     strings.TrimSpace(xa.Name),
			Timeout:  parseOCFDuration(xa.Timeout),
			Interval: parseOCFDuration(xa.Interval),
			Depth:    strings.TrimSpace(xa.Depth),
			Role:     strings.TrimSpace(xa.Role),
		}
		if a.Name == "" {
			return nil, fmt.Errorf("meta-data: action %d has no name", i+1)
		}
		m.Actions = append(m.Actions, a)
	}
	return m, nil
}

// pickDesc picks the English description, else the first.
func pickDesc(ds []xmlDesc) string {
	for _, d := range ds {
		if d.Lang == "" || strings.HasPrefix(d.Lang, "en") {
			return strings.TrimSpace(d.Text)
		}
	}
	if len(ds) > 0 {
		return strings.TrimSpace(ds[0].Text)
	}
	return ""
}

// ocfBool reads the booleans of meta-data attributes ("1", "true", "yes").
func ocfBool(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on", "y":
		return true
	}
	return false
}

var ocfDurationRE = regexp.MustCompile(`^([0-9]{1,9})\s*(ms|msec|us|usec|s|sec|m|min|h|hr)?$`)

// parseOCFDuration reads the durations of meta-data ("20s", "20", "2min",
// "500ms"); a bare number is seconds. It returns 0 for what it does not
// understand.
func parseOCFDuration(s string) time.Duration {
	m := ocfDurationRE.FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return 0
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0
	}
	unit := time.Second
	switch m[2] {
	case "ms", "msec":
		unit = time.Millisecond
	case "us", "usec":
		unit = time.Microsecond
	case "m", "min":
		unit = time.Minute
	case "h", "hr":
		unit = time.Hour
	}
	if n > math.MaxInt64/int64(unit) {
		return 0 // longer than any timeout
	}
	return time.Duration(n) * unit
}

// latin1Reader converts ISO-8859-1 to UTF-8: each byte is the rune of the
// same number. The input is already bounded by MaxMetadataSize.
func latin1Reader(r io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxMetadataSize))
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	out.Grow(len(b))
	for _, c := range b {
		out.WriteRune(rune(c))
	}
	return strings.NewReader(out.String()), nil
}
