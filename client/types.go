// Package client is the typed Go client of vigil's HTTP API, used by the CLI,
// the web UI and the tests. It owns the API's wire types. It must not import
// the agent's internals.
package client

import "time"

// Member states.
const (
	MemberUp           = "UP"
	MemberDown         = "DOWN"
	MemberDisconnected = "DISCONNECTED"
	MemberNetpar       = "NETPAR"
)

// Agent states.
const (
	AgentRunning      = "RUNNING"
	AgentInitializing = "INITIALIZING"
	AgentDown         = "DOWN"
	AgentUnknown      = "UNKNOWN"
	AgentInvalid      = "INVALID"
)

// Roles.
const (
	RoleDirector = "director"
	RoleVoter    = "voter"
	RoleNonVoter = "non-voter"
	// RolePending is a member that joined but has not yet been seen by the
	// director, so it has no place in the Raft configuration and its votes do
	// not count yet.
	RolePending = "pending"
)

// Link is a member's state on one link, as the answering member sees it.
type Link struct {
	Addr  string    `json:"addr"`
	Up    bool      `json:"up"`
	Since time.Time `json:"since,omitzero"`
}

// Member is one row of `vigil members`.
type Member struct {
	Name       string            `json:"name"`
	ID         int               `json:"id"`
	Links      []Link            `json:"links"`
	API        string            `json:"api"`
	Votes      int               `json:"votes"`
	Domain     int               `json:"domain"`
	Witness    bool              `json:"witness,omitempty"`
	Draining   bool              `json:"draining,omitempty"`
	State      string            `json:"state"`
	AgentState string            `json:"agent_state"`
	Role       string            `json:"role"`
	Since      time.Time         `json:"since,omitzero"`
	Joined     time.Time         `json:"joined"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Status is the cluster summary and the members, as the answering member
// sees them.
type Status struct {
	Cluster       string `json:"cluster"`
	ClusterID     string `json:"cluster_id"`
	Profile       string `json:"profile"`
	Local         string `json:"local"`
	Director      string `json:"director"`
	ExpectedVotes int    `json:"expected_votes"`
	VotesPresent  int    `json:"votes_present"`
	QuorumNeeded  int    `json:"quorum_needed"`
	Quorum        bool   `json:"quorum"`
	// Stale is true when the answer comes from a local copy that may be
	// behind the cluster (no quorum or no director).
	Stale       bool     `json:"stale"`
	StaleReason string   `json:"stale_reason,omitempty"`
	Index       uint64   `json:"index"`
	Members     []Member `json:"members"`
}

// AddMemberRequest is the body of POST /v1/members.
type AddMemberRequest struct {
	Name    string        `json:"name"`
	Address string        `json:"address"`
	Votes   *int          `json:"votes,omitempty"`
	Domain  int           `json:"domain,omitempty"`
	Witness bool          `json:"witness,omitempty"`
	TTL     time.Duration `json:"ttl,omitempty"`
}

// AddMemberResponse carries the join token.
type AddMemberResponse struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// Settings is the body of GET and PUT /v1/settings. On PUT an empty value
// removes the key.
type Settings struct {
	Settings map[string]string `json:"settings"`
	Stale    bool              `json:"stale,omitempty"`
}

// LogLevelRequest is the body of PUT /v1/log-level.
type LogLevelRequest struct {
	Level  string `json:"level"`
	Member string `json:"member,omitempty"`
	All    bool   `json:"all,omitempty"`
}

// LogLevelResult is one member's answer.
type LogLevelResult struct {
	Member string `json:"member"`
	Error  string `json:"error,omitempty"`
}

// Config is GET /v1/cdb: the cluster database as an operator reads it
// (secrets left out).
type Config struct {
	Cluster    ClusterInfo       `json:"cluster"`
	Members    []ConfigMember    `json:"members"`
	Settings   map[string]string `json:"settings"`
	JoinTokens []TokenInfo       `json:"join_tokens"`
	Index      uint64            `json:"index"`
	Stale      bool              `json:"stale,omitempty"`
}

// ClusterInfo is the cluster's identity.
type ClusterInfo struct {
	Name          string            `json:"name"`
	ID            string            `json:"id"`
	Profile       string            `json:"profile"`
	Created       time.Time         `json:"created"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	CAFingerprint string            `json:"ca_fingerprint"`
}

// ConfigMember is a member's configuration.
type ConfigMember struct {
	Name       string            `json:"name"`
	ID         int               `json:"id"`
	Links      []string          `json:"links"`
	API        string            `json:"api"`
	Votes      int               `json:"votes"`
	Domain     int               `json:"domain"`
	Witness    bool              `json:"witness,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Joined     time.Time         `json:"joined"`
}

// TokenInfo describes a join token without its secret.
type TokenInfo struct {
	ID      string    `json:"id"`
	Member  string    `json:"member"`
	Expires time.Time `json:"expires"`
	UsedBy  string    `json:"used_by,omitempty"`
}

// RestoreResponse reports a restore.
type RestoreResponse struct {
	Index   uint64 `json:"index"`
	Created string `json:"created"`
}

// WriteResult reports the CDB index of an acknowledged write.
type WriteResult struct {
	Index uint64 `json:"index"`
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ApplyRequest is the body of POST /v1/services/apply: the YAML documents of
// one file.
type ApplyRequest struct {
	File   string `json:"file"`
	YAML   string `json:"yaml"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// Change is what applying does to one service.
type Change struct {
	Service string   `json:"service"`
	Action  string   `json:"action"` // created, updated, unchanged
	Diff    []string `json:"diff,omitempty"`
}

// ApplyResult answers an apply or a diff.
type ApplyResult struct {
	Changes []Change `json:"changes"`
	Index   uint64   `json:"index,omitempty"`
}

// FailInfo is one fail record of a service.
type FailInfo struct {
	Member string    `json:"member"`
	Count  int       `json:"count"`
	Last   time.Time `json:"last"`
	Banned bool      `json:"banned,omitempty"`
	What   string    `json:"what"`
}

// ServiceInfo is one row of `vigil service list`.
type ServiceInfo struct {
	Name        string     `json:"name"`
	State       string     `json:"state"`
	Owner       string     `json:"owner,omitempty"`
	Epoch       uint64     `json:"epoch"`
	Target      string     `json:"target"`
	Reason      string     `json:"reason,omitempty"`
	Resources   int        `json:"resources"`
	Fails       []FailInfo `json:"fails,omitempty"`
	LastRequest string     `json:"last_request,omitempty"`
}

// ServiceDetail is `vigil service show`.
type ServiceDetail struct {
	ServiceInfo
	Spec any    `json:"spec"`
	Why  string `json:"why"`
}

// ServiceRequest is the body of POST /v1/services/{name}/{action}.
type ServiceRequest struct {
	To string `json:"to,omitempty"`
}

// Toggle is the body of PUT /v1/maintenance and PUT /v1/members/{name}/drain.
type Toggle struct {
	On bool `json:"on"`
}

// FenceDevice is a fence agent configured for some members.
type FenceDevice struct {
	Name    string            `json:"name"`
	Agent   string            `json:"agent"`
	Members []string          `json:"members"`
	Options map[string]string `json:"options,omitempty"`
	Level   int               `json:"level"`
	Timeout time.Duration     `json:"timeout"`
}

// CAInfo is the cluster CA as a member sees it (vigil ca show): the CA
// that issues certificates first, then any other it trusts (during a
// rotation), and the rotation under way.
type CAInfo struct {
	CAs      []CACert    `json:"cas"`
	Rotation *CARotation `json:"rotation,omitempty"`
}

// CACert is one CA certificate. Role: issuing or trusted.
type CACert struct {
	Fingerprint string    `json:"fingerprint"`
	Role        string    `json:"role"`
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	PEM         string    `json:"pem"`
}

// CARotation is a CA rotation under way: its phase (install, use, remove)
// and the members that have not carried it out.
type CARotation struct {
	CA      string    `json:"ca"`
	Old     string    `json:"old"`
	Phase   string    `json:"phase"`
	Waiting []string  `json:"waiting,omitempty"`
	Started time.Time `json:"started"`
	By      string    `json:"by,omitempty"`
}
