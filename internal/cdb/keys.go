package cdb

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// The phases of a gossip key rotation (vigil keyring rotate): every member
// installs the new key (gossip is opened with both), then uses it (gossip
// is sealed with it), then removes the old one.
const (
	KeyInstall = "install"
	KeyUse     = "use"
	KeyRemove  = "remove"
)

// KeyRotation is a gossip key rotation under way.
type KeyRotation struct {
	// Sealed is the new key sealed (AES-GCM) with the key it replaces, so
	// the database, its snapshots and its backups do not hold it in the
	// clear.
	Sealed string `json:"sealed"`
	// ID and OldID name the keys (the start of their SHA-256), for messages.
	ID    string `json:"id"`
	OldID string `json:"old_id"`
	Phase string `json:"phase"`
	// Acks says, per member, the last phase it carried out.
	Acks    map[string]string `json:"acks,omitempty"`
	Started time.Time         `json:"started"`
	By      string            `json:"by,omitempty"`
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
	r := s.KeyRotation
	switch c.Op {
	case OpKeyBegin:
		k := c.KeyRotation
		if k == nil || k.Sealed == "" || k.ID == "" {
			return nil, refuse(ErrInvalid, "key rotation without a key")
		}
		if r != nil {
			return nil, refuse(ErrConflict, "a key rotation (key %s) is under way, in phase %s, waiting for %s: run vigil keyring rotate again to carry it on", r.ID, r.Phase, strings.Join(r.Waiting(s), ", "))
		}
		kc := *k
		kc.Phase, kc.Acks, kc.Started, kc.By = KeyInstall, map[string]string{}, c.At, c.By
		s.KeyRotation = &kc
		return nil, nil
	case OpKeyPhase:
		if r == nil || r.ID != c.Serial {
			return nil, refuse(ErrConflict, "no key rotation of key %s is under way", c.Serial)
		}
		if w := r.Waiting(s); len(w) > 0 {
			return nil, refuse(ErrRefused, "phase %s of the key rotation waits for %s", r.Phase, strings.Join(w, ", "))
		}
		switch {
		case r.Phase == KeyInstall && c.Phase == KeyUse, r.Phase == KeyUse && c.Phase == KeyRemove:
			r.Phase = c.Phase
		case r.Phase == KeyRemove && c.Phase == "done":
			s.KeyRotation = nil
		default:
			return nil, refuse(ErrInvalid, "the key rotation cannot go from phase %s to %s", r.Phase, c.Phase)
		}
		return nil, nil
	case OpKeyAck:
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
	return s.applyFencing(c)
}
