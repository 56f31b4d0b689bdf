package cdb

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/director"
	"github.com/vigil-cluster/vigil/internal/spec"
	"maps"
	"slices"
	"time"
)

// Op names a command.
type Op string

// The commands.
const (
	OpInit         Op = "init"
	OpTokenCreate  Op = "token-create"
	OpJoin         Op = "join"
	OpMemberRemove Op = "member-remove"
	OpSettingsSet  Op = "settings-set"
	OpRestore      Op = "restore"
	OpTokensPrune  Op = "tokens-prune"

	OpServicesApply  Op = "services-apply"
	OpServiceDelete  Op = "service-delete"
	OpServiceRequest Op = "service-request"
	OpMemberDrain    Op = "member-drain"
	OpMaintenance    Op = "maintenance"
	OpReport         Op = "report"
	OpDecide         Op = "decide"
	OpFenceSet       Op = "fence-set"
	OpFenceRemove    Op = "fence-remove"
	OpFenced         Op = "fenced"
	OpDLMView        Op = "dlm-view"
	OpEvents         Op = "events"
	OpAlertSet       Op = "alert-set"
	OpAlertRemove    Op = "alert-remove"
	OpAPITokenCreate Op = "api-token-create"
	OpAPITokenRevoke Op = "api-token-revoke"
	OpCertRenew      Op = "cert-renew"
	OpKeyBegin       Op = "key-begin"
	OpKeyPhase       Op = "key-phase"
	OpKeyAck         Op = "key-ack"
	OpCABegin        Op = "ca-begin"
	OpCAPhase        Op = "ca-phase"
	OpCAAck          Op = "ca-ack"
)

// Command is one entry of the Raft log. At is the proposer's clock, so that
// applying a command never reads a clock and every member computes the same
// result.
type Command struct {
	Op Op        `json:"op"`
	At time.Time `json:"at"`
	// By names who asked (member, user or token), for the audit trail.
	By string `json:"by,omitempty"`

	Init     *InitArgs         `json:"init,omitempty"`
	Token    *JoinToken        `json:"token,omitempty"`
	Join     *JoinArgs         `json:"join,omitempty"`
	Member   string            `json:"member,omitempty"`
	Settings map[string]string `json:"settings,omitempty"`
	Restore  *State            `json:"restore,omitempty"`

	Services []spec.Service  `json:"services,omitempty"`
	Request  *ServiceRequest `json:"request,omitempty"`
	Flag     bool            `json:"flag,omitempty"`
	Report   *director.Event `json:"report,omitempty"`
	Decide   *DecideArgs     `json:"decide,omitempty"`
	Fence    *FenceDevice    `json:"fence,omitempty"`
	DLMView  *DLMView        `json:"dlm_view,omitempty"`
	// Events are recorded in the event log (OpEvents).
	Events []client.Event `json:"events,omitempty"`
	// Steps are the methods behind a Report, for the event log.
	Steps []client.Step `json:"steps,omitempty"`
	Alert *client.Alert `json:"alert,omitempty"`
	// APIToken is OpAPITokenCreate's token (its secret hashed).
	APIToken *APIToken `json:"api_token,omitempty"`
	// Serial and PrevSerial are OpCertRenew's new certificate serial and
	// the one it replaces (hex).
	Serial     string `json:"serial,omitempty"`
	PrevSerial string `json:"prev_serial,omitempty"`
	// KeyRotation starts a gossip key rotation (OpKeyBegin) or a CA
	// rotation (OpCABegin); Phase is a rotation's phase (OpKeyPhase,
	// OpKeyAck, OpCAPhase, OpCAAck), Serial its key id.
	KeyRotation *KeyRotation `json:"key_rotation,omitempty"`
	Phase       string       `json:"phase,omitempty"`
}

// InitArgs create the cluster's first state.
type InitArgs struct {
	Cluster        Cluster `json:"cluster"`
	Member         Member  `json:"member"`
	AdminTokenHash string  `json:"admin_token_hash"`
}

// JoinArgs consume a token and add a member.
type JoinArgs struct {
	TokenID string `json:"token_id"`
	// Secret is the token's secret. It is hashed before the command is
	// written to the log (see Command.Encode), so the log never holds it.
	Secret     string `json:"secret,omitempty"`
	SecretHash string `json:"secret_hash,omitempty"`
	Member     Member `json:"member"`
	// KeyHash is the SHA-256 (hex) of the certified public key.
	KeyHash string `json:"key_hash,omitempty"`
}

// Errors that callers act on.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrRefused     = errors.New("refused")
	ErrInvalid     = errors.New("invalid")
	ErrDenied      = errors.New("denied")
	ErrNoQuorum    = errors.New("no quorum")
	ErrUnreachable = errors.New("unreachable")
)

// Refuse builds an Error of the kind with the message.
func Refuse(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Error is a refused command with the reason an operator reads.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func refuse(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// HashSecret hashes a token secret for storage.
func HashSecret(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// apply changes s by c and returns the result (nil, or a value) or a refusal.
// It must be deterministic.
func (s *State) apply(c *Command) (any, error) {
	if c.Op != OpInit && s.Cluster.Name == "" {
		return nil, refuse(ErrRefused, "the cluster database is not initialized yet")
	}
	switch c.Op {
	case OpInit:
		if s.Cluster.Name != "" {
			return nil, refuse(ErrConflict, "the cluster database is already initialized (cluster %s)", s.Cluster.Name)
		}
		if c.Init == nil {
			return nil, refuse(ErrRefused, "init without arguments")
		}
		if err := checkMember(&c.Init.Member); err != nil {
			return nil, err
		}
		s.Cluster = c.Init.Cluster
		m := c.Init.Member
		s.Members[m.Name] = &m
		s.AdminTokenHash = c.Init.AdminTokenHash
		return nil, nil

	case OpTokenCreate:
		t := c.Token
		if t == nil || t.ID == "" || t.SecretHash == "" {
			return nil, refuse(ErrRefused, "token without id or secret")
		}
		if err := s.checkNewMember(t.Member, 0); err != nil {
			return nil, err
		}
		if _, ok := s.Tokens[t.ID]; ok {
			return nil, refuse(ErrConflict, "token id %s exists", t.ID)
		}
		tc := *t
		s.Tokens[t.ID] = &tc
		return nil, nil

	case OpJoin:
		j := c.Join
		if j == nil {
			return nil, refuse(ErrRefused, "join without arguments")
		}
		if r := s.CARotation; r != nil {
			return nil, refuse(ErrConflict, "a CA rotation is under way (phase %s): no member joins until it ends; finish it with vigil ca rotate, then join with a new token (vigil member add %s)", r.Phase, j.Member.Name)
		}
		hash := j.SecretHash
		if j.Secret != "" {
			hash = HashSecret(j.Secret)
		}
		t, ok := s.Tokens[j.TokenID]
		if !ok || subtle.ConstantTimeCompare([]byte(hash), []byte(t.SecretHash)) != 1 {
			return nil, refuse(ErrRefused, "join token is not valid for this cluster: its secret does not match (mistyped, or made by another cluster); make a new one with `vigil member add %s`", j.Member.Name)
		}
		if err := checkMember(&j.Member); err != nil {
			return nil, err
		}
		if t.UsedBy != "" {
			return nil, refuse(ErrRefused, "join token was already used by member %s at %s; a token works once: make a new one with `vigil member add`", t.UsedBy, t.UsedAt.UTC().Format(time.RFC3339))
		}
		if !c.At.Before(t.Expires) {
			return nil, refuse(ErrRefused, "join token expired at %s; make a new one with `vigil member add %s`", t.Expires.UTC().Format(time.RFC3339), t.Member)
		}
		if j.Member.Name != t.Member {
			return nil, refuse(ErrRefused, "this join token is for member %s, not %s: join with --member %s, or make a token for %s with `vigil member add %s`", t.Member, j.Member.Name, t.Member, j.Member.Name, j.Member.Name)
		}
		if err := s.checkNewMember(j.Member.Name, j.Member.ID); err != nil {
			return nil, err
		}
		m := j.Member
		if m.ID == 0 {
			m.ID = s.NextID()
		}
		m.Joined = c.At
		s.Members[m.Name] = &m
		t.UsedBy, t.UsedAt, t.UsedKey = m.Name, c.At, j.KeyHash
		return m, nil

	case OpMemberRemove:
		m, ok := s.Members[c.Member]
		if !ok {
			return nil, refuse(ErrNotFound, "member %s is not in the cluster (see `vigil members`)", c.Member)
		}
		if len(s.Members) == 1 {
			return nil, refuse(ErrRefused, "member %s is the last member; remove the cluster instead with `vigil member reset --force` on it", m.Name)
		}
		delete(s.Members, m.Name)
		return nil, nil

	case OpSettingsSet:
		if c.Settings["no-quorum-policy"] == "freeze" && len(s.Fencing) == 0 {
			return nil, refuse(ErrRefused, "no-quorum-policy=freeze needs fencing: without it a member cut off from the others could keep running services the others start too; add a fence device first with `vigil fence add`")
		}
		// In key order, so every member refuses with the same message.
		for _, k := range slices.Sorted(maps.Keys(c.Settings)) {
			v := c.Settings[k]
			if v == "" {
				continue
			}
			if err := ValidSetting(k, v); err != nil {
				return nil, refuse(ErrRefused, "%v", err)
			}
		}
		n := len(s.Settings)
		for k, v := range c.Settings {
			_, had := s.Settings[k]
			if v != "" && !had {
				n++
			}
		}
		if n > MaxSettings {
			return nil, refuse(ErrRefused, "too many settings: %d, at most %d; unset some with `vigil settings set KEY=`", n, MaxSettings)
		}
		for k, v := range c.Settings {
			if v == "" {
				delete(s.Settings, k)
			} else {
				s.Settings[k] = v
			}
		}
		return nil, nil

	case OpRestore:
		r := c.Restore
		if r == nil {
			return nil, refuse(ErrRefused, "restore without a state")
		}
		if r.Cluster.ID != s.Cluster.ID {
			return nil, refuse(ErrRefused, "backup is of cluster %s (id %s), this is cluster %s (id %s)", r.Cluster.Name, r.Cluster.ID, s.Cluster.Name, s.Cluster.ID)
		}
		// A backup's settings pass the checks of settings-set.
		if len(r.Settings) > MaxSettings {
			return nil, refuse(ErrRefused, "backup has too many settings: %d, at most %d (the file was changed by hand)", len(r.Settings), MaxSettings)
		}
		for _, k := range slices.Sorted(maps.Keys(r.Settings)) {
			if err := ValidSetting(k, r.Settings[k]); err != nil {
				return nil, refuse(ErrRefused, "backup cannot be restored: %v", err)
			}
		}
		// Members and tokens describe the live cluster and one-time secrets;
		// a backup must not bring back a removed member or a used token.
		s.Settings = map[string]string{}
		for k, v := range r.Settings {
			s.Settings[k] = v
		}
		s.Cluster.Attributes = r.Cluster.Attributes
		return nil, nil

	case OpEvents:
		return nil, checkEvents(c.Events)

	case OpAlertSet:
		if c.Alert == nil {
			return nil, refuse(ErrInvalid, "alert-set without an alert")
		}
		if err := CheckAlert(c.Alert); err != nil {
			return nil, err
		}
		if _, ok := s.Alerts[c.Alert.Name]; !ok && len(s.Alerts) >= MaxAlerts {
			return nil, refuse(ErrRefused, "too many alerts: at most %d; remove one first with `vigil alert remove`", MaxAlerts)
		}
		if s.Alerts == nil {
			s.Alerts = map[string]*client.Alert{}
		}
		al := *c.Alert
		s.Alerts[al.Name] = &al
		return nil, nil

	case OpAlertRemove:
		if _, ok := s.Alerts[c.Member]; !ok {
			return nil, refuse(ErrNotFound, "alert %s does not exist (see `vigil alert list`)", c.Member)
		}
		delete(s.Alerts, c.Member)
		return nil, nil

	case OpCertRenew:
		m, ok := s.Members[c.Member]
		if !ok {
			return nil, refuse(ErrNotFound, "member %s is not in the cluster", c.Member)
		}
		if c.Serial == "" || c.PrevSerial == "" {
			return nil, refuse(ErrInvalid, "cert-renew without the serials")
		}
		if m.CertSerial != "" && m.CertSerial != c.PrevSerial {
			return nil, refuse(ErrConflict, "member %s's certificate is %s, not %s: it was renewed meanwhile; try again", c.Member, m.CertSerial, c.PrevSerial)
		}
		m.PrevCertSerial, m.CertSerial = c.PrevSerial, c.Serial
		return nil, nil

	case OpTokensPrune:
		for id, t := range s.Tokens {
			if !c.At.Before(t.Expires) {
				delete(s.Tokens, id)
			}
		}
		return nil, nil
	}
	return s.applyService(c)
}

func (s *State) checkNewMember(name string, id int) error {
	if m, ok := s.Members[name]; ok {
		return refuse(ErrConflict, "a member named %s is already in the cluster (id %d, address %s); pick another name, or remove it first with `vigil member remove %s`", name, m.ID, first(m.Links), name)
	}
	if id != 0 {
		if m := s.MemberByID(id); m != nil {
			return refuse(ErrConflict, "member id %d is already used by member %s; pick another with --id, or leave --id out to get the next free id", id, m.Name)
		}
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return s[0]
}

// Encode marshals a command for the log. A join's secret is replaced by its
// hash.
func (c *Command) Encode() []byte {
	if c.Join != nil && c.Join.Secret != "" {
		j := *c.Join
		j.SecretHash, j.Secret = HashSecret(j.Secret), ""
		cc := *c
		cc.Join = &j
		c = &cc
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("cdb: command does not marshal: %v", err))
	}
	return b
}
