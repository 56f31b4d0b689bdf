// Package spec owns the service definition: the YAML documents an operator
// applies with `vigil apply -f FILE`, decoded strictly (an unknown field or a
// wrong type is an error with the file and line) and validated field by field
// with the allowed range in the message. It must not run anything or read the
// cluster database.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Resource kinds.
const (
	KindIP     = "ip"
	KindVolume = "volume"
	KindFS     = "fs"
	KindApp    = "app"
	KindOCF    = "ocf"
	KindExec   = "exec"
)

// Kinds lists the resource kinds.
var Kinds = []string{KindIP, KindVolume, KindFS, KindApp, KindOCF, KindExec}

// Limits.
const (
	MaxResources = 32
	MaxFileSize  = 4 << 20
	MaxServices  = 1024
)

// Duration is a time.Duration written as "10s", "5m" in YAML and JSON.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as 30s or 5m", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 5m", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalText writes the duration string (JSON).
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses the duration string (JSON).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 30s or 5m", b)
	}
	*d = Duration(v)
	return nil
}

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Service is one service definition.
type Service struct {
	Name        string     `yaml:"service" json:"service"`
	Description string     `yaml:"description,omitempty" json:"description,omitempty"`
	Resources   []Resource `yaml:"resources" json:"resources"`
	Placement   Placement  `yaml:"placement,omitempty" json:"placement"`
	// Failback moves the service back to a more favored member when it
	// returns. The default, false, keeps it where it runs.
	Failback bool          `yaml:"failback,omitempty" json:"failback,omitempty"`
	Restart  RestartPolicy `yaml:"restart,omitempty" json:"restart"`
	// FailureTimeout expires fail counts (default 10m).
	FailureTimeout  Duration `yaml:"failure_timeout,omitempty" json:"failure_timeout"`
	MonitorInterval Duration `yaml:"monitor_interval,omitempty" json:"monitor_interval"`
	Timeouts        Timeouts `yaml:"timeouts,omitempty" json:"timeouts"`
}

// Placement says where a service may run and where it prefers to.
type Placement struct {
	Favored    []string `yaml:"favored,omitempty" json:"favored,omitempty"`
	Restricted bool     `yaml:"restricted,omitempty" json:"restricted,omitempty"`
	Balanced   bool     `yaml:"balanced,omitempty" json:"balanced,omitempty"`
	Domain     int      `yaml:"domain,omitempty" json:"domain,omitempty"`
}

// RestartPolicy restarts in place up to Max times within Window, then
// relocates.
type RestartPolicy struct {
	Max    int      `yaml:"max" json:"max"`
	Window Duration `yaml:"window" json:"window"`
}

// Timeouts bound the methods.
type Timeouts struct {
	Start   Duration `yaml:"start,omitempty" json:"start"`
	Stop    Duration `yaml:"stop,omitempty" json:"stop"`
	Monitor Duration `yaml:"monitor,omitempty" json:"monitor"`
}

// Resource is one part of a service. Which fields apply depends on Kind.
type Resource struct {
	Name string `yaml:"name" json:"name"`
	Kind string `yaml:"kind" json:"kind"`

	// ip
	Address   string `yaml:"address,omitempty" json:"address,omitempty"`
	Interface string `yaml:"interface,omitempty" json:"interface,omitempty"`
	// volume
	Import []string `yaml:"import,omitempty" json:"import,omitempty"`
	Deport []string `yaml:"deport,omitempty" json:"deport,omitempty"`
	Check  []string `yaml:"check,omitempty" json:"check,omitempty"`
	// fs
	Device     string `yaml:"device,omitempty" json:"device,omitempty"`
	Mountpoint string `yaml:"mountpoint,omitempty" json:"mountpoint,omitempty"`
	FSType     string `yaml:"fstype,omitempty" json:"fstype,omitempty"`
	Options    string `yaml:"options,omitempty" json:"options,omitempty"`
	Fsck       bool   `yaml:"fsck,omitempty" json:"fsck,omitempty"`
	// app
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// ocf
	Agent  string            `yaml:"agent,omitempty" json:"agent,omitempty"`
	Params map[string]string `yaml:"params,omitempty" json:"params,omitempty"`
	// exec
	Command []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Env     map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	WorkDir string            `yaml:"workdir,omitempty" json:"workdir,omitempty"`

	Timeouts Timeouts `yaml:"timeouts,omitempty" json:"timeouts"`
}

// Defaults.
const (
	DefaultRestartMax      = 3
	DefaultRestartWindow   = 10 * time.Minute
	DefaultFailureTimeout  = 10 * time.Minute
	DefaultMonitorInterval = 5 * time.Second
	DefaultStartTimeout    = 60 * time.Second
	DefaultStopTimeout     = 60 * time.Second
	DefaultMonitorTimeout  = 20 * time.Second
)

// SetDefaults fills every field left out.
func (s *Service) SetDefaults() {
	if s.Restart.Max == 0 && s.Restart.Window == 0 {
		s.Restart = RestartPolicy{Max: DefaultRestartMax, Window: Duration(DefaultRestartWindow)}
	}
	if s.FailureTimeout == 0 {
		s.FailureTimeout = Duration(DefaultFailureTimeout)
	}
	if s.MonitorInterval == 0 {
		s.MonitorInterval = Duration(DefaultMonitorInterval)
	}
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&s.Timeouts.Start, DefaultStartTimeout)
	def(&s.Timeouts.Stop, DefaultStopTimeout)
	def(&s.Timeouts.Monitor, DefaultMonitorTimeout)
	for i := range s.Resources {
		r := &s.Resources[i]
		def(&r.Timeouts.Start, s.Timeouts.Start.D())
		def(&r.Timeouts.Stop, s.Timeouts.Stop.D())
		def(&r.Timeouts.Monitor, s.Timeouts.Monitor.D())
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$`)

func validName(what, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%s %q is not valid: use 1-48 lower-case letters, digits and '-', starting and ending with a letter or digit", what, s)
	}
	return nil
}

func durRange(what string, d Duration, lo, hi time.Duration) error {
	if d.D() < lo || d.D() > hi {
		return fmt.Errorf("%s %s is out of range: must be %s to %s", what, d.D(), lo, hi)
	}
	return nil
}

// Validate checks the service after SetDefaults. Errors name the field.
func (s *Service) Validate() error {
	if err := validName("service name", s.Name); err != nil {
		return err
	}
	if len(s.Description) > 256 {
		return fmt.Errorf("description is %d bytes, at most 256", len(s.Description))
	}
	if len(s.Resources) == 0 {
		return errors.New("resources: none given; a service needs at least one resource")
	}
	if len(s.Resources) > MaxResources {
		return fmt.Errorf("resources: %d given, at most %d", len(s.Resources), MaxResources)
	}
	p := s.Placement
	if p.Domain < 0 || p.Domain > 63 {
		return fmt.Errorf("placement.domain %d is out of range: must be 0-63", p.Domain)
	}
	if p.Restricted && len(p.Favored) == 0 {
		return errors.New("placement.restricted needs placement.favored: the members it is restricted to")
	}
	if p.Balanced && len(p.Favored) > 0 && !p.Restricted {
		return errors.New("placement: give favored members or balanced, not both (balanced with restricted favored members is allowed)")
	}
	seen := map[string]bool{}
	for _, m := range p.Favored {
		if seen[m] {
			return fmt.Errorf("placement.favored lists member %s twice", m)
		}
		seen[m] = true
		if err := validName("placement.favored member", m); err != nil {
			return err
		}
	}
	if s.Restart.Max < 0 || s.Restart.Max > 100 {
		return fmt.Errorf("restart.max %d is out of range: must be 0-100", s.Restart.Max)
	}
	if err := durRange("restart.window", s.Restart.Window, time.Second, 24*time.Hour); err != nil {
		return err
	}
	if err := durRange("failure_timeout", s.FailureTimeout, time.Second, 7*24*time.Hour); err != nil {
		return err
	}
	if err := durRange("monitor_interval", s.MonitorInterval, 100*time.Millisecond, time.Hour); err != nil {
		return err
	}
	names := map[string]bool{}
	for i := range s.Resources {
		r := &s.Resources[i]
		if err := r.validate(); err != nil {
			return fmt.Errorf("resource %d (%s): %w", i+1, r.Name, err)
		}
		if names[r.Name] {
			return fmt.Errorf("resource %d: name %s is used twice", i+1, r.Name)
		}
		names[r.Name] = true
	}
	return nil
}

func (r *Resource) validate() error {
	if err := validName("name", r.Name); err != nil {
		return err
	}
	for what, d := range map[string]Duration{"timeouts.start": r.Timeouts.Start, "timeouts.stop": r.Timeouts.Stop, "timeouts.monitor": r.Timeouts.Monitor} {
		if err := durRange(what, d, 100*time.Millisecond, time.Hour); err != nil {
			return err
		}
	}
	used := r.fieldsUsed()
	allowed := map[string][]string{
		KindIP:     {"address", "interface"},
		KindVolume: {"import", "deport", "check"},
		KindFS:     {"device", "mountpoint", "fstype", "options", "fsck"},
		KindApp:    {"dir"},
		KindOCF:    {"agent", "params"},
		KindExec:   {"command", "env", "workdir"},
	}
	ok, known := allowed[r.Kind]
	if !known {
		return fmt.Errorf("kind %q is not known: use one of %s", r.Kind, strings.Join(Kinds, ", "))
	}
	for _, f := range used {
		if !contains(ok, f) {
			return fmt.Errorf("field %s does not apply to kind %s (it takes %s)", f, r.Kind, strings.Join(ok, ", "))
		}
	}
	switch r.Kind {
	case KindIP:
		pfx, err := netip.ParsePrefix(r.Address)
		if err != nil {
			return fmt.Errorf("address %q is not an address with a prefix length, such as 198.18.0.100/24: %v", r.Address, err)
		}
		if pfx.Addr().IsUnspecified() || pfx.Addr().IsMulticast() || pfx.Addr().IsLoopback() {
			return fmt.Errorf("address %s cannot float: give a unicast address", r.Address)
		}
		if r.Interface == "" || len(r.Interface) > 15 || strings.ContainsAny(r.Interface, "/ ") {
			return fmt.Errorf("interface %q is not a network interface name (1-15 characters)", r.Interface)
		}
	case KindVolume:
		if len(r.Import) == 0 || len(r.Deport) == 0 {
			return errors.New("a volume needs an import and a deport command (argv lists)")
		}
	case KindFS:
		if !strings.HasPrefix(r.Device, "/") || !filepath.IsAbs(r.Mountpoint) || r.Mountpoint == "/" {
			return fmt.Errorf("an fs needs an absolute device and an absolute mountpoint other than / (have %q on %q)", r.Device, r.Mountpoint)
		}
	case KindApp:
		if !filepath.IsAbs(r.Dir) {
			return fmt.Errorf("dir %q must be the absolute path of the method directory", r.Dir)
		}
	case KindOCF:
		if _, _, err := ParseOCFAgent(r.Agent); err != nil {
			return err
		}
		for k := range r.Params {
			if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`).MatchString(k) {
				return fmt.Errorf("params: %q is not an OCF parameter name", k)
			}
		}
	case KindExec:
		if len(r.Command) == 0 || r.Command[0] == "" {
			return errors.New("command: give the argv list of the program to run, such as [/usr/bin/python3, -m, http.server]")
		}
		for k := range r.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return fmt.Errorf("env: %q is not a variable name", k)
			}
		}
	}
	return nil
}

// ParseOCFAgent splits "ocf:PROVIDER:TYPE".
func ParseOCFAgent(s string) (provider, typ string, err error) {
	parts := strings.Split(s, ":")
	ok := regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	if len(parts) != 3 || parts[0] != "ocf" || !ok.MatchString(parts[1]) || !ok.MatchString(parts[2]) {
		return "", "", fmt.Errorf("agent %q is not ocf:PROVIDER:TYPE, such as ocf:heartbeat:Dummy", s)
	}
	return parts[1], parts[2], nil
}

func (r *Resource) fieldsUsed() []string {
	var f []string
	add := func(name string, used bool) {
		if used {
			f = append(f, name)
		}
	}
	add("address", r.Address != "")
	add("interface", r.Interface != "")
	add("import", len(r.Import) > 0)
	add("deport", len(r.Deport) > 0)
	add("check", len(r.Check) > 0)
	add("device", r.Device != "")
	add("mountpoint", r.Mountpoint != "")
	add("fstype", r.FSType != "")
	add("options", r.Options != "")
	add("fsck", r.Fsck)
	add("dir", r.Dir != "")
	add("agent", r.Agent != "")
	add("params", len(r.Params) > 0)
	add("command", len(r.Command) > 0)
	add("env", len(r.Env) > 0)
	add("workdir", r.WorkDir != "")
	return f
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// emptyDocument reports a document that holds nothing but null, such as the
// one after a trailing `---`.
func emptyDocument(n *yaml.Node) bool {
	return n.Kind == yaml.DocumentNode && len(n.Content) == 1 && n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null"
}

// Parse decodes every YAML document of a file into services, strictly, and
// validates each. Errors carry the file name and line.
func Parse(file string, data []byte) ([]Service, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is %d bytes, at most %d", file, len(data), MaxFileSize)
	}
	// Two decoders walk the same documents: one keeps the nodes (for line
	// numbers), the other decodes strictly.
	nodes := yaml.NewDecoder(bytes.NewReader(data))
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	var out []Service
	names := map[string]int{}
	for {
		var node yaml.Node
		err := nodes.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		var s Service
		serr := strict.Decode(&s)
		if node.Kind == 0 || (node.Kind == yaml.DocumentNode && len(node.Content) == 0) || emptyDocument(&node) {
			continue
		}
		if serr != nil {
			return nil, fmt.Errorf("%s: %v", file, serr)
		}
		line := lineOf(&node)
		s.SetDefaults()
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("%s:%d: service %s: %v", file, resourceLine(&node, err, line), s.Name, err)
		}
		if prev, dup := names[s.Name]; dup {
			return nil, fmt.Errorf("%s:%d: service %s is defined twice (first at line %d)", file, line, s.Name, prev)
		}
		names[s.Name] = line
		out = append(out, s)
		if len(out) > MaxServices {
			return nil, fmt.Errorf("%s: more than %d services", file, MaxServices)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no service in the file: a document starts with `service: NAME`", file)
	}
	return out, nil
}

func lineOf(n *yaml.Node) int {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0].Line
	}
	return n.Line
}

// resourceLine finds the line of resource N when err names one.
func resourceLine(doc *yaml.Node, err error, def int) int {
	var idx int
	if _, e := fmt.Sscanf(err.Error(), "resource %d", &idx); e != nil || idx < 1 {
		return def
	}
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "resources" && idx-1 < len(root.Content[i+1].Content) {
			return root.Content[i+1].Content[idx-1].Line
		}
	}
	return def
}

// Names returns the service names in order.
func Names(ss []Service) []string {
	n := make([]string, len(ss))
	for i, s := range ss {
		n[i] = s.Name
	}
	sort.Strings(n)
	return n
}
