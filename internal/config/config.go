// Package config owns a member's own settings file, DATA_DIR/vigil.yaml, and the
// timing profiles. It parses strictly and validates every field with its allowed
// range. It must not reach the network or the cluster database.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FileName is the member's settings file inside its data dir.
const FileName = "vigil.yaml"

// Member is the content of DATA_DIR/vigil.yaml.
type Member struct {
	// Cluster is the cluster's name.
	Cluster string `yaml:"cluster"`
	// ClusterID is a random id chosen at cluster create; backups carry it.
	ClusterID string `yaml:"cluster_id"`
	// Name is the member's unique name.
	Name string `yaml:"name"`
	// ID is the member's unique numeric id (1-65535).
	ID int `yaml:"id"`
	// Links are the addresses the member is reached on, the interconnect first.
	// Gossip for link i uses Links[i]; Raft and gRPC use the port after Links[0].
	Links []string `yaml:"links"`
	// API is the HTTP API address (HOST:PORT).
	API string `yaml:"api"`
	// Votes is 0 or 1.
	Votes int `yaml:"votes"`
	// Domain is the failover domain, 0-63.
	Domain int `yaml:"domain"`
	// Witness members vote but never host services.
	Witness bool `yaml:"witness,omitempty"`
	// Profile names the timing profile: lan, fast, campus or wan.
	Profile string `yaml:"profile"`
	// Attributes are the member's attributes; the cluster-wide ones must equal
	// the cluster's.
	Attributes map[string]string `yaml:"attributes,omitempty"`
	// Bootstrap is true on the member that created the cluster until its first
	// start has formed the Raft group.
	Bootstrap bool `yaml:"bootstrap,omitempty"`
	// Peers are cluster addresses (RPC) known at join time, used to find the
	// cluster when the CDB is empty.
	Peers []string `yaml:"peers,omitempty"`
	// LogLevel is the starting log level: debug, info, warn or error.
	LogLevel string `yaml:"log_level,omitempty"`
	// Watchdog is an optional watchdog device (/dev/watchdog) the agent
	// pets while this member may run services; WatchdogTimeout its timeout
	// (whole seconds, such as 2s).
	Watchdog        string `yaml:"watchdog,omitempty"`
	WatchdogTimeout string `yaml:"watchdog_timeout,omitempty"`
	// DLMSpin is how long the lock manager watches for a client's next
	// request after the last message either way (in the memory it shares
	// with the client, or by polling the socket), before it waits in the
	// network poller (docs/DLM.md, "Spinning" and "Shared rings"): from 0
	// (never) to 1ms, default 200us.
	DLMSpin string `yaml:"dlm_spin,omitempty"`
}

// Default returns a Member with every optional field at its default.
func Default() Member {
	return Member{Votes: 1, Profile: "lan", LogLevel: "info"}
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// ValidName checks a cluster or member name.
func ValidName(what, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%s %q is not valid: use 1-32 lower-case letters, digits and '-', starting and ending with a letter or digit", what, s)
	}
	return nil
}

// hostRE matches a DNS host name: dot-separated labels of letters, digits,
// '-' and '_'.
var hostRE = regexp.MustCompile(`^([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?)(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?)*\.?$`)

// ValidAddress checks a HOST:PORT address with a literal IP or host name and a
// port in 1-65534 (the next port is used for Raft and gRPC).
func ValidAddress(what, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%s %q is not HOST:PORT: %v", what, s, err)
	}
	if host == "" {
		return fmt.Errorf("%s %q has no host: give the address other members reach this one on, such as 198.18.0.1:7000", what, s)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%s %q is a wildcard: give the address other members reach this one on", what, s)
	}
	if _, err := netip.ParseAddr(host); err != nil && (len(host) > 253 || !hostRE.MatchString(host)) {
		return fmt.Errorf("%s %q: host %q is neither an IP address nor a host name", what, s, host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65534 {
		return fmt.Errorf("%s %q: port must be 1-65534 (port+1 carries Raft and gRPC)", what, s)
	}
	return nil
}

// RPCAddress is the Raft/gRPC address derived from a link address: same host,
// next port.
func RPCAddress(link string) string {
	host, port, err := net.SplitHostPort(link)
	if err != nil {
		return link
	}
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

// Validate checks every field and names the first that is wrong with its
// allowed range.
func (m *Member) Validate() error {
	if err := ValidName("cluster name", m.Cluster); err != nil {
		return err
	}
	if err := ValidName("member name", m.Name); err != nil {
		return err
	}
	if m.ID < 1 || m.ID > 65535 {
		return fmt.Errorf("id %d is out of range: must be 1-65535", m.ID)
	}
	if len(m.Links) == 0 || len(m.Links) > 8 {
		return fmt.Errorf("links: %d given, must be 1-8 addresses", len(m.Links))
	}
	seen := map[string]bool{}
	for i, l := range m.Links {
		if err := ValidAddress(fmt.Sprintf("links[%d]", i), l); err != nil {
			return err
		}
		if seen[l] {
			return fmt.Errorf("links[%d] %q is listed twice", i, l)
		}
		seen[l] = true
	}
	if err := ValidAddress("api", m.API); err != nil {
		return err
	}
	if m.Votes < 0 || m.Votes > 1 {
		return fmt.Errorf("votes %d is out of range: must be 0 or 1", m.Votes)
	}
	if m.Witness && m.Votes != 1 {
		return fmt.Errorf("a witness must have votes 1 (has %d)", m.Votes)
	}
	if m.Domain < 0 || m.Domain > 63 {
		return fmt.Errorf("domain %d is out of range: must be 0-63", m.Domain)
	}
	if _, ok := Profiles[m.Profile]; !ok {
		return fmt.Errorf("profile %q is not known: use one of %s", m.Profile, strings.Join(ProfileNames(), ", "))
	}
	if err := ValidAttributes(m.Attributes); err != nil {
		return err
	}
	if m.LogLevel != "" {
		if _, err := ParseLevel(m.LogLevel); err != nil {
			return err
		}
	}
	if m.Watchdog != "" {
		if !filepath.IsAbs(m.Watchdog) {
			return fmt.Errorf("watchdog %q must be the absolute path of a watchdog device, such as /dev/watchdog", m.Watchdog)
		}
		if _, err := m.WatchdogTimeoutD(); err != nil {
			return err
		}
	}
	if _, err := m.DLMSpinD(); err != nil {
		return err
	}
	return nil
}

// DefaultDLMSpin is DLMSpin's default (socket.DefaultSpin).
const DefaultDLMSpin = 200 * time.Microsecond

// DLMSpinD is the lock manager's spin (default DefaultDLMSpin).
func (m *Member) DLMSpinD() (time.Duration, error) {
	if m.DLMSpin == "" {
		return DefaultDLMSpin, nil
	}
	d, err := time.ParseDuration(m.DLMSpin)
	if err != nil || d < 0 || d > time.Millisecond {
		return 0, fmt.Errorf("dlm_spin %q is not valid: give a duration from 0 (never spin) to 1ms, such as 200us", m.DLMSpin)
	}
	return d, nil
}

// WatchdogTimeoutD is the watchdog timeout (default 2s).
func (m *Member) WatchdogTimeoutD() (time.Duration, error) {
	if m.WatchdogTimeout == "" {
		return 2 * time.Second, nil
	}
	d, err := time.ParseDuration(m.WatchdogTimeout)
	if err != nil || d < time.Second || d > time.Minute || d%time.Second != 0 {
		return 0, fmt.Errorf("watchdog_timeout %q is not valid: whole seconds from 1s to 60s", m.WatchdogTimeout)
	}
	return d, nil
}

var attrRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]{0,62}$`)

// ValidAttributes checks attribute names and values.
func ValidAttributes(a map[string]string) error {
	if len(a) > 64 {
		return fmt.Errorf("attributes: %d given, at most 64", len(a))
	}
	for k, v := range a {
		if !attrRE.MatchString(k) {
			return fmt.Errorf("attribute name %q is not valid: use a letter then up to 62 letters, digits, '_', '.', '-'", k)
		}
		if len(v) > 256 {
			return fmt.Errorf("attribute %s: value is %d bytes, at most 256", k, len(v))
		}
	}
	return nil
}

// ParseAttributes turns KEY=VALUE strings into a map.
func ParseAttributes(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("attribute %q is not KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, ValidAttributes(m)
}

// Load reads and validates DATA_DIR/vigil.yaml.
func Load(dataDir string) (*Member, error) {
	path := filepath.Join(dataDir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist: run `vigil cluster create` or `vigil member join` with --data-dir %s first", path, dataDir)
		}
		return nil, err
	}
	m, err := Parse(path, b)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Parse decodes strictly (unknown fields and wrong types are errors with the
// line) and validates.
func Parse(path string, b []byte) (*Member, error) {
	m := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the file is empty: it should hold this member's settings, written by `vigil cluster create` or `vigil member join`", path)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	for {
		// Only empty documents may follow.
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || len(more.Content) != 1 || more.Content[0].ShortTag() != "!!null" {
			return nil, fmt.Errorf("%s: holds more than one YAML document (a line with ---): keep only this member's settings", path)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &m, nil
}

// Save writes the file atomically with mode 0600.
func (m *Member) Save(dataDir string) error {
	b, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dataDir, FileName), b, 0o600)
}

// WriteFileAtomic writes through a temp file and a rename.
func WriteFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// SortedKeys returns the keys of a string map in order.
func SortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
