package labtest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/lab"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// TestLabHostile runs the hostile hosts and clients of the security issue
// from the lab's client namespace, over the lab network, against a running
// 3-member cluster: a host with another gossip key, clients with no
// certificate, another CA's, an expired one, a viewer's token, a revoked
// token, a replayed join token, and a removed member.
func TestLabHostile(t *testing.T) {
	requireLab(t)
	l := up(t, lab.Options{Members: 3, Links: 1})
	ctx := t.Context()
	st, err := l.State()
	if err != nil {
		t.Fatal(err)
	}
	clientIP := fmt.Sprintf("198.18.%d.2", st.Public())
	var ms []*lab.Member
	for _, n := range members3 {
		m, err := l.Member(n)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	dir := t.TempDir()
	run := func(where string, argv ...string) string {
		t.Helper()
		out, err := l.Exec(ctx, where, nil, argv...)
		t.Logf("%s$ %s\n%s(err %v)", where, strings.Join(argv, " "), out, err)
		return out
	}
	get := func(where, url string, extra ...string) (int, string) {
		t.Helper()
		out := run(where, append([]string{labBin, "tls-get", url}, extra...)...)
		code, body, _ := strings.Cut(out, "\n")
		n, err := strconv.Atoi(code)
		if err != nil {
			return 0, out
		}
		return n, body
	}
	api := func(m *lab.Member, path string) string { return "https://" + m.API() + path }
	m1cert := []string{"--cert", filepath.Join(ms[0].Data, pki.CertFile), "--key", filepath.Join(ms[0].Data, pki.KeyFile)}
	rejected := func() int {
		t.Helper()
		code, body := get("m1", api(ms[0], "/metrics"), m1cert...)
		if code != 200 {
			t.Fatalf("metrics: %d %s", code, body)
		}
		m := regexp.MustCompile(`(?m)^vigil_gossip_rejected_total (\d+)`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no vigil_gossip_rejected_total in the metrics")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}

	t.Run("another gossip key", func(t *testing.T) {
		before := rejected()
		key := make([]byte, 32)
		rand.Read(key)
		out := run("client", labBin, "gossip-join", "--key", hex.EncodeToString(key), "--bind", clientIP+":7946", "--to", ms[0].Addrs[0]+":7000")
		if !strings.Contains(out, "members seen: 1") || strings.Contains(out, "join: <nil>") {
			t.Errorf("a host with another key joined the gossip:\n%s", out)
		}
		if after := rejected(); after <= before {
			t.Errorf("m1 counted no rejected gossip: %d before, %d after", before, after)
		}
		if out := run("m2", vigilBin, "members"); strings.Contains(out, "intruder") || strings.Count(out, " UP ") != 3 {
			t.Errorf("members after the intruder:\n%s", out)
		}
	})

	// Certificates a hostile client might hold: another cluster's, and
	// this cluster's, expired.
	ca, err := pki.ParseCA(readFile(t, filepath.Join(ms[0].Data, pki.CACertFile)), readFile(t, filepath.Join(ms[0].Data, pki.CAKeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("other")
	writeCert(t, dir, "other", other, "m1", time.Now().Add(time.Hour))
	expiry := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeCert(t, dir, "expired", ca, "m1", expiry)
	certOf := func(name string) []string {
		return []string{"--cert", filepath.Join(dir, name+".crt"), "--key", filepath.Join(dir, name+".key")}
	}
	t.Run("refused certificates", func(t *testing.T) {
		for i, m := range ms {
			if code, body := get("client", api(m, "/v1/status")); code != 403 || !strings.Contains(body, "this API needs a client certificate of the cluster CA") {
				t.Errorf("m%d, no certificate: %d %s", i+1, code, body)
			}
			if code, body := get("client", api(m, "/v1/status"), certOf("other")...); code != 403 || !strings.Contains(body, "not signed by this cluster's CA") {
				t.Errorf("m%d, another CA's certificate: %d %s", i+1, code, body)
			}
			want := "expired at " + expiry.UTC().Format(time.RFC3339)
			if code, body := get("client", api(m, "/v1/status"), certOf("expired")...); code != 403 || !strings.Contains(body, want) {
				t.Errorf("m%d, an expired certificate: %d %s, want %q", i+1, code, body, want)
			}
		}
	})

	caFile := filepath.Join(ms[0].Data, pki.CACertFile)
	as := func(m *lab.Member, tok string, args ...string) string {
		return run("client", append([]string{vigilBin, "--data-dir", filepath.Join(dir, "none"), "--api", m.API(), "--ca", caFile, "--token", tok}, args...)...)
	}
	token := func(name, role string) string {
		out := run("m1", vigilBin, "token", "create", name, "--role", role)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return lines[len(lines)-1]
	}
	t.Run("viewer cannot relocate", func(t *testing.T) {
		v := token("watcher", "viewer")
		time.Sleep(500 * time.Millisecond)
		if out := as(ms[2], v, "status"); !strings.Contains(out, "partition WITH quorum") {
			t.Errorf("a viewer cannot read: %s", out)
		}
		if out := as(ms[2], v, "service", "relocate", "web", "--to", "m1"); !strings.Contains(out, "role viewer may not POST /v1/services/web/relocate: it needs role operator") {
			t.Errorf("a viewer relocated: %s", out)
		}
	})
	t.Run("revoked token", func(t *testing.T) {
		tok := token("soon-gone", "viewer")
		deadline := time.Now().Add(5 * time.Second)
		for _, m := range ms {
			for {
				code, _ := get("client", api(m, "/v1/whoami"), "--token", tok)
				if code == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the new token does not work on %s", m.Name)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		run("m1", vigilBin, "token", "revoke", "soon-gone")
		t0 := time.Now()
		var took []string
		for _, m := range ms {
			for {
				code, body := get("client", api(m, "/v1/whoami"), "--token", tok)
				if code == 401 || code == 403 {
					took = append(took, fmt.Sprintf("%s %v", m.Name, time.Since(t0).Round(time.Millisecond)))
					break
				}
				if time.Since(t0) > time.Second {
					t.Fatalf("%s still takes the revoked token %v after the revocation: %d %s", m.Name, time.Since(t0), code, body)
				}
			}
		}
		t.Logf("revoked token refused by: %s", strings.Join(took, ", "))
	})

	// A fourth member joins from the client namespace; its token replayed
	// is refused; once removed, its certificate opens no API.
	var tok string
	out := run("m1", vigilBin, "member", "add", "m4", "--address", clientIP+":7000", "--votes", "0", "--json")
	var add client.AddMemberResponse
	if err := json.Unmarshal([]byte(out), &add); err != nil || add.Token == "" {
		t.Fatalf("member add: %v: %s", err, out)
	}
	tok = add.Token
	m4 := filepath.Join(dir, "m4")
	join := func(data string) string {
		return run("client", vigilBin, "member", "join", tok, "--member", "m4", "--address", clientIP+":7000", "--api", clientIP+":7080", "--data-dir", data)
	}
	if out := join(m4); !strings.Contains(out, "joined") {
		t.Fatalf("m4 did not join: %s", out)
	}
	t.Run("replayed join token", func(t *testing.T) {
		if out := join(filepath.Join(dir, "m4-again")); !strings.Contains(out, "already used by member m4") {
			t.Errorf("a replayed join token: %s", out)
		}
	})
	t.Run("removed member", func(t *testing.T) {
		// While it is a member its certificate opens the API.
		if code, body := get("client", api(ms[1], "/v1/status"), "--cert", filepath.Join(m4, pki.CertFile), "--key", filepath.Join(m4, pki.KeyFile)); code != 200 {
			t.Fatalf("m4's certificate before its removal: %d %s", code, body)
		}
		run("m1", vigilBin, "member", "remove", "m4")
		for _, m := range ms {
			out := run("client", vigilBin, "--data-dir", m4, "--api", m.API(), "status")
			if !strings.Contains(out, "no longer speaks for a member of this cluster") {
				t.Errorf("the removed member reached %s's API: %s", m.Name, out)
			}
		}
	})
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeCert writes NAME.crt and NAME.key in dir: a client certificate for
// cn issued by ca, valid until notAfter.
func writeCert(t *testing.T, dir, name string, ca *pki.CA, cn string, notAfter time.Time) {
	t.Helper()
	key, keyPEM, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600)
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")); err != nil {
		t.Fatal(err)
	}
}
