package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// TestCARotate replaces the cluster CA on a running cluster with a service
// online: staged first (every member on a certificate of the new CA, both
// trusted; a client that holds only the old CA still gets in through the
// cross-signed certificate), a member restarted half-way, then finished: the
// old CA opens nothing, the new one everything, and nothing failed over.
func TestCARotate(t *testing.T) {
	c := startCluster(t, 3)
	if out, err := c.Apply(t.Context(), 0, recorder(t.TempDir()+"/rec.log", "m1, m2, m3")); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, _ := c.waitOnline(0, "rec", "", 30*time.Second)
	dir := t.TempDir()
	oldCA := filepath.Join(dir, "old-ca.crt")
	b, err := os.ReadFile(filepath.Join(c.Members[0].Dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(oldCA, b, 0o600)
	oldKey, _ := os.ReadFile(filepath.Join(c.Members[0].Dir, pki.CAKeyFile))
	lines := strings.Split(strings.TrimSpace(c.mustCLI(0, "token", "create", "watcher", "--role", "viewer")), "\n")
	tok := lines[len(lines)-1]
	// A client with a token and a CA file, no data dir.
	as := func(i int, caFile string, args ...string) result {
		return c.cli(i, append([]string{"--data-dir", filepath.Join(dir, "none"), "--api", c.Members[i].API, "--token", tok, "--ca", caFile}, args...)...)
	}
	c.eventually(10*time.Second, "a client with the CA file", func() (bool, string) {
		r := as(1, oldCA, "status") // the token reaches m2 as the database does
		return r.code == 0, r.out
	})

	out := c.mustCLI(1, "ca", "rotate", "--stage")
	if !strings.Contains(out, "staged") {
		t.Fatalf("ca rotate --stage: %s", out)
	}
	show := c.mustCLI(2, "ca", "show")
	if !strings.Contains(show, "issuing") || !strings.Contains(show, "trusted") || !strings.Contains(show, "phase use") {
		t.Errorf("ca show while staged: %s", show)
	}
	newCA := func(i int) *x509.Certificate {
		b, err := os.ReadFile(filepath.Join(c.Members[i].Dir, pki.CACertFile))
		if err != nil {
			t.Fatal(err)
		}
		ca, err := pki.ParseCert(b)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	next := newCA(0)
	for i, m := range c.Members {
		if got := newCA(i); !got.Equal(next) {
			t.Errorf("%s issues with another CA than m1", m.Name)
		}
		if _, err := os.Stat(filepath.Join(m.Dir, pki.PrevCACertFile)); err != nil {
			t.Errorf("%s does not keep the old CA while staged: %v", m.Name, err)
		}
		leaf := memberCert(t, m.Dir)
		if err := leaf.CheckSignatureFrom(next); err != nil {
			t.Errorf("%s's certificate is not of the new CA: %v", m.Name, err)
		}
	}
	// Through the cross-signed certificate, the old CA still gets in.
	if r := as(1, oldCA, "status"); r.code != 0 {
		t.Errorf("staged: a client with only the old CA is refused: %s", r.out)
	}
	// A member restarted half-way comes back with both CAs.
	c.Stop(2)
	if err := c.StartAgent(2); err != nil {
		t.Fatal(err)
	}
	c.waitState(0, "m3", client.MemberUp, 30*time.Second)

	out = c.mustCLI(0, "ca", "rotate")
	if !strings.Contains(out, "replaced by") {
		t.Fatalf("ca rotate: %s", out)
	}
	for _, m := range c.Members {
		for _, f := range []string{pki.PrevCACertFile, pki.NextCACertFile} {
			if _, err := os.Stat(filepath.Join(m.Dir, f)); err == nil {
				t.Errorf("%s still holds %s after the rotation", m.Name, f)
			}
		}
	}
	r := as(1, oldCA, "status")
	if r.code == 0 || !strings.Contains(r.out, "if the cluster's CA was rotated, get the new one (vigil ca show --pem") {
		t.Errorf("after the rotation, a client with the old CA: exit %d: %s", r.code, r.out)
	}
	newFile := filepath.Join(dir, "new-ca.crt")
	os.WriteFile(newFile, []byte(c.mustCLI(0, "ca", "show", "--pem")), 0o600)
	if r := as(2, newFile, "status"); r.code != 0 {
		t.Errorf("a client with the new CA: %s", r.out)
	}
	if show := c.mustCLI(1, "cdb", "show"); !strings.Contains(show, pki.Fingerprint(next)) {
		t.Errorf("the cluster's CA fingerprint is not the new one: %s", show)
	}
	// A certificate of the old CA opens no API any more.
	old, err := pki.ParseCA(b, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	_, keyPEM, pub, _ := pki.NewKey()
	certPEM, _, err := old.Issue("m1", pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	code, body := apiGet(t, c.Members[0].API, "/v1/status", []tls.Certificate{cert})
	if code != 403 || !strings.Contains(body, "not signed by this cluster's CA") {
		t.Errorf("a certificate of the old CA: %d %s", code, body)
	}
	c.undisturbed("the rotation", s)
	if out := c.mustCLI(0, "events", "--kind", "config"); !strings.Contains(out, "CA rotation done") {
		t.Errorf("no rotation events: %s", out)
	}
	// Every member restarted after the rotation talks to the others.
	for i := range c.Members {
		c.Stop(i)
		if err := c.StartAgent(i); err != nil {
			t.Fatal(err)
		}
		c.waitState((i+1)%3, c.Members[i].Name, client.MemberUp, 30*time.Second)
	}
	// A new member joins with a token made after the rotation.
	if _, err := c.Add(t.Context(), false); err != nil {
		t.Fatalf("a member joining after the rotation: %v", err)
	}
}

func memberCert(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, pki.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
