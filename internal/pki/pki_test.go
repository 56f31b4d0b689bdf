package pki

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func issue(t *testing.T, ca *CA, member string) *x509.Certificate {
	t.Helper()
	_, _, pubDER, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(member, pubDER, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyClient(t *testing.T) {
	ca, err := NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCA("c2")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	good := issue(t, ca, "m1")
	now := time.Now()
	if leaf, err := VerifyClient(pool, []*x509.Certificate{good}, now); err != nil || leaf.Subject.CommonName != "m1" {
		t.Fatalf("a good certificate: %v", err)
	}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		at    time.Time
		want  string
	}{
		{"expired", []*x509.Certificate{good}, good.NotAfter.Add(time.Hour), "the client certificate of m1 expired at " + good.NotAfter.UTC().Format(time.RFC3339)},
		{"not yet valid", []*x509.Certificate{good}, good.NotBefore.Add(-time.Hour), "is not valid before"},
		{"another CA", []*x509.Certificate{issue(t, other, "m9")}, now, "the client certificate of m9 is not signed by this cluster's CA"},
		{"none", nil, now, "no client certificate"},
	} {
		if _, err := VerifyClient(pool, tc.chain, tc.at); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
