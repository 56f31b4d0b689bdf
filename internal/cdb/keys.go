package cdb

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// The phases of a gossip key rotation (vigil keyring rotate): every member
// installs the new key (gossip is opened with both), then uses it (gossip
// is sealed with it), then removes the old one. A CA rotation (vigil ca
// rotate) has the same phases: every member trusts the new CA as well as
// the old, then takes a certificate of the new one (shown with the new
// CA cross-signed by the old, for clients that trust only the old) and
// issues with it, then trusts only the new CA.
const (
	KeyInstall = "install"
	KeyUse     = "use"
	KeyRemove  = "remove"
)

// KeyRotation is a gossip key or CA rotation under way.
type KeyRotation struct {
	// Sealed is the new key sealed (AES-GCM) with the gossip key it
	// replaces (a CA's key: with the gossip key), so the database, its
	// snapshots and its backups do not hold it in the clear.
	Sealed string `json:"sealed"`
	// ID and OldID name the keys (the start of their SHA-256; a CA's
	// fingerprint), for messages.
	ID    string `json:"id"`
	OldID string `json:"old_id"`
	// Cert is the new CA's certificate and Cross the same name and key
	// certified by the old CA (PEM; CA rotations only).
	Cert  string `json:"cert,omitempty"`
	Cross string `json:"cross,omitempty"`
	Phase string `json:"phase"`
	// Acks says, per member, the last phase it carried out.
	Acks    map[string]string `json:"acks,omitempty"`
	Started time.Time         `json:"started"`
	By      string            `json:"by,omitempty"`
}

// Clone copies r, acks too, for use outside the state's lock (the state
// changes its acks in place); nil for nil.
func (r *KeyRotation) Clone() *KeyRotation {
	if r == nil {
		return nil
	}
	c := *r
	c.Acks = maps.Clone(r.Acks)
	return &c
}

// Waiting lists the members that have not carried out the phase yet.
func (r *KeyRotation) Waiting(s *State) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(s.Members)) {
		if r.Acks[n] != r.Phase {
			out = append(out, n)
		}
	}
	return out
}

func (s *State) applyKeys(c *Command) (any, error) {
	switch c.Op {
	case OpKeyBegin, OpKeyPhase, OpKeyAck:
		return s.applyRotation(c, &s.KeyRotation, "key", s.CARotation)
	case OpCABegin, OpCAPhase, OpCAAck:
		return s.applyRotation(c, &s.CARotation, "CA", s.KeyRotation)
	}
	return s.applyFencing(c)
}

// applyRotation applies a step of the rotation *rp (what: "key" or "CA");
// other is the other kind's rotation, which must not be under way when one
// begins (each seals its secret with the gossip key).
func (s *State) applyRotation(c *Command, rp **KeyRotation, what string, other *KeyRotation) (any, error) {
	r := *rp
	rerun := map[string]string{"key": "vigil keyring rotate", "CA": "vigil ca rotate"}[what]
	switch c.Op {
	case OpKeyBegin, OpCABegin:
		k := c.KeyRotation
		if k == nil || k.Sealed == "" || k.ID == "" || (what == "CA" && (k.Cert == "" || k.Cross == "")) {
			return nil, refuse(ErrInvalid, "%s rotation without a key", what)
		}
		if r != nil {
			return nil, refuse(ErrConflict, "a %s rotation (%s %s) is under way, in phase %s, waiting for %s: run %s again to carry it on", what, what, short(r.ID), r.Phase, strings.Join(r.Waiting(s), ", "), rerun)
		}
		if other != nil {
			return nil, refuse(ErrConflict, "a %s rotation is under way, in phase %s: finish it first (run %s again)", map[string]string{"key": "CA", "CA": "key"}[what], other.Phase, map[string]string{"key": "vigil ca rotate", "CA": "vigil keyring rotate"}[what])
		}
		kc := *k
		kc.Phase, kc.Acks, kc.Started, kc.By = KeyInstall, map[string]string{}, c.At, c.By
		*rp = &kc
		return nil, nil
	case OpKeyPhase, OpCAPhase:
		if r == nil || r.ID != c.Serial {
			return nil, refuse(ErrConflict, "no %s rotation of %s %s is under way", what, what, short(c.Serial))
		}
		if w := r.Waiting(s); len(w) > 0 {
			return nil, refuse(ErrRefused, "phase %s of the %s rotation waits for %s", r.Phase, what, strings.Join(w, ", "))
		}
		switch {
		case r.Phase == KeyInstall && c.Phase == KeyUse, r.Phase == KeyUse && c.Phase == KeyRemove:
			r.Phase = c.Phase
		case r.Phase == KeyRemove && c.Phase == "done":
			*rp = nil
			if what == "CA" {
				s.Cluster.CAFingerprint = r.ID
			}
		default:
			return nil, refuse(ErrInvalid, "the %s rotation cannot go from phase %s to %s", what, r.Phase, c.Phase)
		}
		return nil, nil
	default: // an ack
		if r == nil || r.ID != c.Serial {
			return nil, nil // a late ack of a finished rotation
		}
		if _, ok := s.Members[c.Member]; !ok {
			return nil, refuse(ErrNotFound, "member %s is not in the cluster", c.Member)
		}
		if c.Phase == r.Phase {
			r.Acks[c.Member] = c.Phase
		}
		return nil, nil
	}
}

// short shortens a CA fingerprint for messages; key ids are short already.
func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}
