// Package cdb owns the cluster database: the Raft-replicated state (cluster
// identity, members, join tokens, settings), the commands that change it, its
// snapshots and its backup file format. Every member applies the same log, so
// every member can read the whole state. It must not decide anything: it
// checks a command against the state and applies it, nothing more.
package cdb

import (
	"encoding/json"
	"fmt"
	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/config"
	"sort"
	"strings"
	"time"
)

// State is the replicated cluster database.
type State struct {
	Cluster  Cluster               `json:"cluster"`
	Members  map[string]*Member    `json:"members"`
	Tokens   map[string]*JoinToken `json:"tokens,omitempty"`
	Settings map[string]string     `json:"settings,omitempty"`
	// AdminTokenHash is the SHA-256 (hex) of the cluster's admin API token.
	AdminTokenHash string `json:"admin_token_hash,omitempty"`
	// Index is the Raft index of the last applied command.
	Index uint64 `json:"index"`

	Services    map[string]*Service `json:"services,omitempty"`
	Maintenance bool                `json:"maintenance,omitempty"`
	// Events are the lrm reports the director has not consumed yet.
	Events   []PendingEvent `json:"events,omitempty"`
	EventSeq uint64         `json:"event_seq,omitempty"`

	Fencing map[string]*FenceDevice `json:"fencing,omitempty"`
	// FencedMembers are members a fence confirmed off since they were last
	// UP; the director clears an entry when the member is UP again.
	FencedMembers map[string]Fenced `json:"fenced_members,omitempty"`

	// DLMView is the lock manager's view, written by the director.
	DLMView *DLMView `json:"dlm_view,omitempty"`

	// Alerts are the alert agents, by name.
	Alerts map[string]*client.Alert `json:"alerts,omitempty"`
	// APITokens are the API tokens, by id (docs/SECURITY.md).
	APITokens map[string]*APIToken `json:"api_tokens,omitempty"`
	// KeyRotation is a gossip key rotation under way.
	KeyRotation *KeyRotation `json:"key_rotation,omitempty"`
	// CARotation is a CA rotation under way.
	CARotation *KeyRotation `json:"ca_rotation,omitempty"`
}

// Cluster holds the cluster-wide identity and attributes.
type Cluster struct {
	Name    string    `json:"name"`
	ID      string    `json:"id"`
	Profile string    `json:"profile"`
	Created time.Time `json:"created"`
	// Attributes are declared cluster-wide: every member must have the same
	// values.
	Attributes map[string]string `json:"attributes,omitempty"`
	// CAFingerprint identifies the cluster CA.
	CAFingerprint string `json:"ca_fingerprint"`
}

// Member is one member as the cluster knows it.
type Member struct {
	Name       string            `json:"name"`
	ID         int               `json:"id"`
	Links      []string          `json:"links"`
	API        string            `json:"api"`
	Votes      int               `json:"votes"`
	Domain     int               `json:"domain"`
	Witness    bool              `json:"witness,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Joined     time.Time         `json:"joined"`
	// CertSerial is the serial (hex) of the certificate issued to the
	// member; only that certificate speaks for it.
	CertSerial string `json:"cert_serial,omitempty"`
	// PrevCertSerial is the certificate CertSerial renewed: it still speaks
	// for the member until it expires, so connections made before the
	// renewal and a member that restarts with its old files keep working.
	PrevCertSerial string `json:"prev_cert_serial,omitempty"`
	// Draining is `vigil member drain`: services move away, nothing new
	// is placed here.
	Draining bool `json:"draining,omitempty"`
}

// JoinToken is the cluster's record of a token made by `vigil member add`.
// Only the hash of its secret is kept.
type JoinToken struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secret_hash"`
	Member     string    `json:"member"`
	Address    string    `json:"address"`
	Votes      int       `json:"votes"`
	Domain     int       `json:"domain"`
	Witness    bool      `json:"witness,omitempty"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	UsedBy     string    `json:"used_by,omitempty"`
	UsedAt     time.Time `json:"used_at,omitzero"`
	// UsedKey is the SHA-256 of the public key certified at the join, so a
	// joiner that lost the answer can ask again with the same key.
	UsedKey string `json:"used_key,omitempty"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Members: map[string]*Member{}, Tokens: map[string]*JoinToken{}, Settings: map[string]string{}, Services: map[string]*Service{}}
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("cdb: state does not marshal: %v", err))
	}
	c := NewState()
	if err := json.Unmarshal(b, c); err != nil {
		panic(fmt.Sprintf("cdb: state does not unmarshal: %v", err))
	}
	c.fill()
	return c
}

func (s *State) fill() {
	if s.Members == nil {
		s.Members = map[string]*Member{}
	}
	if s.Tokens == nil {
		s.Tokens = map[string]*JoinToken{}
	}
	if s.Settings == nil {
		s.Settings = map[string]string{}
	}
	if s.Services == nil {
		s.Services = map[string]*Service{}
	}
}

// MemberNames returns the member names ordered by id.
func (s *State) MemberNames() []string {
	ns := make([]string, 0, len(s.Members))
	for n := range s.Members {
		ns = append(ns, n)
	}
	sort.Slice(ns, func(i, j int) bool { return s.Members[ns[i]].ID < s.Members[ns[j]].ID })
	return ns
}

// MemberByID finds a member by its id.
func (s *State) MemberByID(id int) *Member {
	for _, m := range s.Members {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// ExpectedVotes is the sum of the votes of every member.
func (s *State) ExpectedVotes() int {
	n := 0
	for _, m := range s.Members {
		n += m.Votes
	}
	return n
}

// QuorumNeeded is floor(expected/2)+1, VMS's (EXPECTED_VOTES+2)/2.
func QuorumNeeded(expected int) int {
	return expected/2 + 1
}

// Allowed reports whether a certificate (its common name and serial in hex)
// speaks for a current member. Before the state is initialized (a member
// that has not replicated anything yet) every certificate of the cluster CA
// is allowed.
func (s *State) Allowed(cn, serial string) bool {
	if s.Cluster.Name == "" {
		return true
	}
	m, ok := s.Members[cn]
	return ok && (m.CertSerial == "" || m.CertSerial == serial || (m.PrevCertSerial != "" && m.PrevCertSerial == serial))
}

// checkMember validates a member record carried by a command.
func checkMember(m *Member) error {
	if err := config.ValidName("member name", m.Name); err != nil {
		return refuse(ErrInvalid, "%v", err)
	}
	if m.ID < 0 || m.ID > 65535 {
		return refuse(ErrInvalid, "member id %d is out of range: must be 1-65535", m.ID)
	}
	if len(m.Links) == 0 || len(m.Links) > 8 {
		return refuse(ErrInvalid, "member %s has %d links, must be 1-8", m.Name, len(m.Links))
	}
	for i, l := range m.Links {
		if err := config.ValidAddress(fmt.Sprintf("link %d", i), l); err != nil {
			return refuse(ErrInvalid, "%v", err)
		}
	}
	if m.Votes < 0 || m.Votes > 1 || m.Domain < 0 || m.Domain > 63 {
		return refuse(ErrInvalid, "member %s: votes %d (0-1) or domain %d (0-63) out of range", m.Name, m.Votes, m.Domain)
	}
	return nil
}

// NextID is the lowest free member id.
func (s *State) NextID() int {
	for id := 1; ; id++ {
		if s.MemberByID(id) == nil {
			return id
		}
	}
}

// Settings known to vigil, with their check. Keys under "user." are free.
var knownSettings = map[string]func(string) error{
	"description": func(v string) error {
		if len(v) > 256 {
			return fmt.Errorf("is %d bytes, at most 256", len(v))
		}
		return nil
	},
	"event-log-size": validEventLogSize,
	"no-quorum-policy": func(v string) error {
		if v != "stop" && v != "freeze" {
			return fmt.Errorf("must be stop or freeze")
		}
		return nil
	},
	"token-ttl": func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("is not a duration such as 30m or 2h")
		}
		if d < time.Minute || d > 7*24*time.Hour {
			return fmt.Errorf("%s is out of range: must be 1m to 168h", v)
		}
		return nil
	},
}

// Limits on the settings map.
const (
	MaxSettings     = 1024
	MaxSettingValue = 4096
)

// ValidSetting checks one setting.
func ValidSetting(key, value string) error {
	if strings.HasPrefix(key, "user.") && len(key) > len("user.") && len(key) <= 128 {
		if len(value) > MaxSettingValue {
			return fmt.Errorf("setting %s: value is %d bytes, at most %d", key, len(value), MaxSettingValue)
		}
		return nil
	}
	check, ok := knownSettings[key]
	if !ok {
		ks := make([]string, 0, len(knownSettings))
		for k := range knownSettings {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return fmt.Errorf("setting %q is not known: use one of %s, or a key under user. (up to 128 bytes)", key, strings.Join(ks, ", "))
	}
	if err := check(value); err != nil {
		return fmt.Errorf("setting %s: %q %v", key, value, err)
	}
	return nil
}

// TokenTTL is the default lifetime of a join token.
func (s *State) TokenTTL() time.Duration {
	if d, err := time.ParseDuration(s.Settings["token-ttl"]); err == nil {
		return d
	}
	return time.Hour
}
