package cdb

import (
	"crypto/subtle"
	"slices"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/config"
)

// APIToken is an API token as the cluster keeps it: only the hash of its
// secret (docs/SECURITY.md).
type APIToken struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	SecretHash string    `json:"secret_hash"`
	Created    time.Time `json:"created"`
	// Expires is zero for a token without an end.
	Expires   time.Time `json:"expires,omitzero"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// Limits on API tokens.
const (
	MaxAPITokens = 1000
	MaxTokenTTL  = 10 * 365 * 24 * time.Hour
)

// ValidRole reports whether r names a role.
func ValidRole(r string) bool { return slices.Contains(client.Roles, r) }

func checkAPIToken(t *APIToken) error {
	if t == nil || t.ID == "" || t.SecretHash == "" {
		return refuse(ErrInvalid, "token without id or secret")
	}
	if len(t.ID) > 32 || strings.ContainsAny(t.ID, ". \n") {
		return refuse(ErrInvalid, "token id %q is not valid", t.ID)
	}
	if err := config.ValidName("token name", t.Name); err != nil {
		return refuse(ErrInvalid, "%v", err)
	}
	if !ValidRole(t.Role) {
		return refuse(ErrInvalid, "role %q is not known: use one of %s", t.Role, strings.Join(client.Roles, ", "))
	}
	return nil
}

func (s *State) applyAPIToken(c *Command) (any, error) {
	switch c.Op {
	case OpAPITokenCreate:
		t := c.APIToken
		if err := checkAPIToken(t); err != nil {
			return nil, err
		}
		for _, x := range s.APITokens {
			if x.Name == t.Name {
				return nil, refuse(ErrConflict, "a token named %s exists (id %s): pick another name, or revoke it first with `vigil token revoke %s`", t.Name, x.ID, x.ID)
			}
		}
		if _, ok := s.APITokens[t.ID]; ok {
			return nil, refuse(ErrConflict, "token id %s exists", t.ID)
		}
		if len(s.APITokens) >= MaxAPITokens {
			return nil, refuse(ErrRefused, "too many API tokens: at most %d; revoke some with `vigil token revoke`", MaxAPITokens)
		}
		if s.APITokens == nil {
			s.APITokens = map[string]*APIToken{}
		}
		tc := *t
		tc.Created = c.At
		tc.CreatedBy = c.By
		s.APITokens[t.ID] = &tc
		return nil, nil
	case OpAPITokenRevoke:
		t, ok := s.APITokens[c.Member]
		if !ok {
			for _, x := range s.APITokens {
				if x.Name == c.Member {
					t, ok = x, true
				}
			}
		}
		if !ok {
			return nil, refuse(ErrNotFound, "no API token %s (see `vigil token list`)", c.Member)
		}
		delete(s.APITokens, t.ID)
		return nil, nil
	}
	return s.applyKeys(c)
}

// APITokenFor finds the token of a secret "ID.SECRET" (the part after the
// prefix), checking its hash in constant time and its expiry at now.
func (s *State) APITokenFor(id, secret string, now time.Time) (*APIToken, error) {
	t, ok := s.APITokens[id]
	if !ok || subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(t.SecretHash)) != 1 {
		return nil, refuse(ErrDenied, "this API token is not valid here (revoked, mistyped, or of another cluster): ask an admin for a new one (`vigil token create`)")
	}
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return nil, refuse(ErrDenied, "API token %s (%s) expired at %s: ask an admin for a new one (`vigil token create`)", t.Name, t.ID, t.Expires.UTC().Format(time.RFC3339))
	}
	return t, nil
}
