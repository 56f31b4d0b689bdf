package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
)

// APIToken implements api.Backend: it reads this member's replica, so a
// revocation applies here as soon as this member has applied it.
func (a *Agent) APIToken(id, secret string) (name, role string, err error) {
	store := a.storeReady.Load()
	if store == nil {
		return "", "", cdb.Refuse(cdb.ErrUnreachable, "this agent is starting: try again in a moment")
	}
	store.View(func(s *cdb.State) {
		var t *cdb.APIToken
		if t, err = s.APITokenFor(id, secret, time.Now()); err == nil {
			name, role = t.Name, t.Role
		}
	})
	return name, role, err
}

// Denied implements api.Backend: a refused request is an operator event.
func (a *Agent) Denied(ctx context.Context, who, what, need string) {
	a.emit(client.Event{Kind: client.EventOperator, By: who, Message: "denied " + what + ": it needs role " + need})
}

// CreateToken implements api.Backend.
func (a *Agent) CreateToken(ctx context.Context, r client.TokenCreateRequest, by string) (*client.TokenCreateResponse, error) {
	if err := config.ValidName("token name", r.Name); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	if !cdb.ValidRole(r.Role) {
		return nil, cdb.Refuse(cdb.ErrInvalid, "role %q is not known: use one of %s", r.Role, strings.Join(client.Roles, ", "))
	}
	if r.TTL < 0 || r.TTL > cdb.MaxTokenTTL || (r.TTL > 0 && r.TTL < time.Minute) {
		return nil, cdb.Refuse(cdb.ErrInvalid, "ttl %s is out of range: 1m to %s, or 0 for a token without an end", r.TTL, cdb.MaxTokenTTL)
	}
	idb, secb := make([]byte, 6), make([]byte, 24)
	rand.Read(idb)
	rand.Read(secb)
	id, secret := hex.EncodeToString(idb), hex.EncodeToString(secb)
	now := time.Now().UTC()
	t := &cdb.APIToken{ID: id, Name: r.Name, Role: r.Role, SecretHash: cdb.HashSecret(secret)}
	if r.TTL > 0 {
		t.Expires = now.Add(r.TTL)
	}
	if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpAPITokenCreate, At: now, By: by, APIToken: t}); err != nil {
		return nil, err
	}
	return &client.TokenCreateResponse{Token: client.APITokenPrefix + id + "." + secret,
		APIToken: client.APIToken{ID: id, Name: r.Name, Role: r.Role, Created: now, Expires: t.Expires, CreatedBy: by}}, nil
}

// Tokens implements api.Backend.
func (a *Agent) Tokens(ctx context.Context) []client.APIToken {
	st := a.store.State()
	out := []client.APIToken{}
	now := time.Now()
	for _, t := range st.APITokens {
		out = append(out, client.APIToken{ID: t.ID, Name: t.Name, Role: t.Role, Created: t.Created, Expires: t.Expires,
			CreatedBy: t.CreatedBy, Expired: !t.Expires.IsZero() && !now.Before(t.Expires)})
	}
	slices.SortFunc(out, func(x, y client.APIToken) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// RevokeToken implements api.Backend.
func (a *Agent) RevokeToken(ctx context.Context, idOrName, by string) error {
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpAPITokenRevoke, By: by, Member: idOrName})
	return err
}
