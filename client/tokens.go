package client

import (
	"context"
	"net/url"
	"time"
)

// APIToken is an API token as `vigil token list` shows it (never its
// secret).
type APIToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires,omitzero"`
	CreatedBy string    `json:"created_by,omitempty"`
	Expired   bool      `json:"expired,omitempty"`
}

// TokenCreateRequest is the body of POST /v1/tokens.
type TokenCreateRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// TTL is the token's lifetime; zero for no end.
	TTL time.Duration `json:"ttl,omitempty"`
}

// TokenCreateResponse carries the new token: the only time its secret is
// shown.
type TokenCreateResponse struct {
	APIToken
	Token string `json:"token"`
}

// WhoAmI is the answer of GET /v1/whoami: who the API takes the caller for.
type WhoAmI struct {
	Who  string `json:"who"`
	Role string `json:"role"`
}

// CreateToken makes an API token.
func (c *Client) CreateToken(ctx context.Context, r TokenCreateRequest) (*TokenCreateResponse, error) {
	var out TokenCreateResponse
	err := c.do(ctx, "POST", "/v1/tokens", r, &out)
	return &out, err
}

// Tokens lists the API tokens.
func (c *Client) Tokens(ctx context.Context) ([]APIToken, error) {
	var out []APIToken
	err := c.do(ctx, "GET", "/v1/tokens", nil, &out)
	return out, err
}

// RevokeToken revokes an API token by id or name.
func (c *Client) RevokeToken(ctx context.Context, idOrName string) error {
	return c.do(ctx, "DELETE", "/v1/tokens/"+url.PathEscape(idOrName), nil, nil)
}

// WhoAmI says who the API takes the caller for, and its role.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var out WhoAmI
	err := c.do(ctx, "GET", "/v1/whoami", nil, &out)
	return &out, err
}

// APITokenPrefix starts every API token.
const APITokenPrefix = "vigil-api-"

// CertInfo describes a member's certificate after a renewal.
type CertInfo struct {
	Member   string    `json:"member"`
	Serial   string    `json:"serial"`
	Previous string    `json:"previous"`
	NotAfter time.Time `json:"not_after"`
}

// RenewCert renews the answering member's certificate now.
func (c *Client) RenewCert(ctx context.Context) (*CertInfo, error) {
	var out CertInfo
	err := c.do(ctx, "POST", "/v1/cert/renew", nil, &out)
	return &out, err
}

// KeyringResult is how a gossip key or CA rotation went. Key and Old name
// the new and old keys (a CA by its fingerprint); Staged is the phase at
// which a rotation asked to stop there stopped (vigil ca rotate --stage).
type KeyringResult struct {
	Key    string   `json:"key"`
	Old    string   `json:"old"`
	Phases []string `json:"phases"`
	Took   string   `json:"took"`
	Staged string   `json:"staged,omitempty"`
}

// RotateKeys rotates the cluster's gossip key.
func (c *Client) RotateKeys(ctx context.Context) (*KeyringResult, error) {
	var out KeyringResult
	err := c.do(ctx, "POST", "/v1/keyring/rotate", nil, &out)
	return &out, err
}

// RotateCA rotates the cluster's CA; with stage it stops once every member
// has a certificate of the new CA, with both trusted.
func (c *Client) RotateCA(ctx context.Context, stage bool) (*KeyringResult, error) {
	var out KeyringResult
	path := "/v1/ca/rotate"
	if stage {
		path += "?stage=1"
	}
	err := c.do(ctx, "POST", path, nil, &out)
	return &out, err
}

// CA returns the cluster CA as the answering member sees it.
func (c *Client) CA(ctx context.Context) (*CAInfo, error) {
	var out CAInfo
	err := c.do(ctx, "GET", "/v1/ca", nil, &out)
	return &out, err
}
