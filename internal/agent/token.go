package agent

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/config"
)

// tokenPrefix starts every join token.
const tokenPrefix = "vigil-join-"

// maxToken bounds a join token's length.
const maxToken = 4096

// Token is a join token: what a new member needs to find the cluster and prove
// it was invited.
type Token struct {
	Version     int       `json:"v"`
	Cluster     string    `json:"c"`
	ID          string    `json:"t"`
	Secret      string    `json:"s"`
	Member      string    `json:"m"`
	Address     string    `json:"a"`
	Addrs       []string  `json:"p"`
	Fingerprint string    `json:"f"`
	Expires     time.Time `json:"e"`
}

// Encode renders the token for the operator to copy.
func (t *Token) Encode() string {
	b, _ := json.Marshal(t)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// DecodeToken parses and checks a join token.
func DecodeToken(s string) (*Token, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxToken {
		return nil, fmt.Errorf("join token is %d bytes, longer than %d: copy it again from the output of `vigil member add`", len(s), maxToken)
	}
	body, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return nil, fmt.Errorf("this is not a vigil join token (it must start with %q): copy it again from the output of `vigil member add`", tokenPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("join token is damaged (not base64url: %v): copy it again whole", err)
	}
	var t Token
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("join token is damaged (%v): copy it again whole", err)
	}
	if t.Version != 1 {
		return nil, fmt.Errorf("join token version %d is not supported by this vigil (it reads version 1): use the same vigil version on every member", t.Version)
	}
	if err := config.ValidName("cluster name in the token", t.Cluster); err != nil {
		return nil, err
	}
	if err := config.ValidName("member name in the token", t.Member); err != nil {
		return nil, err
	}
	if t.ID == "" || len(t.ID) > 64 || t.Secret == "" || len(t.Secret) > 128 || len(t.Fingerprint) != 64 {
		return nil, fmt.Errorf("join token is damaged (missing id, secret or CA fingerprint): copy it again whole")
	}
	if len(t.Addrs) == 0 || len(t.Addrs) > 64 {
		return nil, fmt.Errorf("join token lists %d member addresses, must be 1-64", len(t.Addrs))
	}
	for _, a := range t.Addrs {
		if err := config.ValidAddress("member address in the token", a); err != nil {
			return nil, err
		}
	}
	return &t, nil
}
