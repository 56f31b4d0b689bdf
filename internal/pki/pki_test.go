package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
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

// TestCrossSign: during a CA rotation a member issued by the new CA shows
// the cross-signed certificate after its own, so a client that trusts only
// the old CA accepts it, as does one that trusts only the new; after the
// rotation, one that trusts only the new CA refuses the old CA's members.
func TestCrossSign(t *testing.T) {
	old, err := NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	next, _ := NewCA("c1")
	crossPEM, err := old.CrossSign(next)
	if err != nil {
		t.Fatal(err)
	}
	cross, err := ParseCert(crossPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(cs ...*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range cs {
			p.AddCert(c)
		}
		return p
	}
	leaf := issue(t, next, "m1")
	oldLeaf := issue(t, old, "m2")
	now := time.Now()
	for _, tc := range []struct {
		name  string
		pool  *x509.CertPool
		chain []*x509.Certificate
		ok    bool
	}{
		{"new leaf, old CA trusted, cross shown", pool(old.Cert), []*x509.Certificate{leaf, cross}, true},
		{"new leaf, old CA trusted, no cross", pool(old.Cert), []*x509.Certificate{leaf}, false},
		{"new leaf, new CA trusted, cross shown", pool(next.Cert), []*x509.Certificate{leaf, cross}, true},
		{"new leaf, both trusted", pool(old.Cert, next.Cert), []*x509.Certificate{leaf, cross}, true},
		{"old leaf, both trusted", pool(old.Cert, next.Cert), []*x509.Certificate{oldLeaf}, true},
		{"old leaf, new CA only", pool(next.Cert), []*x509.Certificate{oldLeaf, cross}, false},
	} {
		_, err := VerifyClient(tc.pool, tc.chain, now)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestTrustChanges: a server and client built from Identities accept each
// other after the trusted CAs change, with no new TLS configuration.
func TestTrustChanges(t *testing.T) {
	old, _ := NewCA("c1")
	next, _ := NewCA("c1")
	mk := func(ca *CA, name string, extra []byte) *Identity {
		_, keyPEM, pub, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		certPEM, _, err := ca.Issue(name, pub, nil)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := KeyPair(append(certPEM, extra...), keyPEM, ca.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		id := &Identity{Cert: pair}
		id.Leaf, _ = x509.ParseCertificate(pair.Certificate[0])
		id.SetIssuer(ca)
		id.Trust(ca.Cert)
		return id
	}
	crossPEM, _ := old.CrossSign(next)
	srv := mk(old, "m1", nil)
	cli := mk(next, "m2", crossPEM)
	handshake := func() error {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		errs := make(chan error, 1)
		go func() {
			s := tls.Server(a, srv.ServerConfig())
			err := s.Handshake()
			if err == nil && PeerLeaf(s.ConnectionState()) == nil {
				err = errors.New("no client certificate")
			}
			errs <- err
			a.Close()
		}()
		c := tls.Client(b, cli.ClientConfig(""))
		cerr := c.Handshake()
		b.Close()
		if serr := <-errs; serr != nil {
			return serr
		}
		return cerr
	}
	// The server trusts only the old CA: the client's cross-signed chain
	// passes; the client trusts only the new CA: the server's does not.
	if err := handshake(); err == nil {
		t.Fatal("a client that trusts only the new CA accepted a server of the old one")
	}
	cli.Trust(next.Cert, old.Cert)
	if err := handshake(); err != nil {
		t.Fatalf("both CAs trusted by the client: %v", err)
	}
	srv.Trust(next.Cert)
	if err := handshake(); err != nil {
		t.Fatalf("the server trusts only the new CA, the client shows a new certificate: %v", err)
	}
}
