package e2e

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// apiGet calls GET path on an agent's HTTPS API with the given client
// certificates (none for nil), not checking the server (the test checks
// the server's answer, not its identity).
func apiGet(t *testing.T, api, path string, certs []tls.Certificate) (int, string) {
	t.Helper()
	tc := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if len(certs) > 0 {
		// Sent whatever CAs the server names, as a hostile client would.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := hc.Get("https://" + api + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHostileClients: a client with a certificate of another cluster's CA,
// with an expired certificate of this cluster's CA, or with none, is
// refused with a message that says why; a host gossiping with another
// cluster key cannot join or be heard, and its packets are counted.
func TestHostileClients(t *testing.T) {
	c := startCluster(t, 3)
	api := c.Members[0].API

	// Another cluster's member certificate.
	other := filepath.Join(t.TempDir(), "other")
	runVigil(t, "", "cluster", "create", "--name", "other", "--member", "x1", "--address", "127.0.0.1:"+freePort(t),
		"--api", "127.0.0.1:"+freePort(t), "--data-dir", other)
	oid, err := pki.Load(other)
	if err != nil {
		t.Fatal(err)
	}
	code, body := apiGet(t, api, "/v1/status", []tls.Certificate{oid.Cert})
	if code != 403 || !strings.Contains(body, "the client certificate of x1 is not signed by this cluster's CA") {
		t.Errorf("another CA's certificate: %d %s", code, body)
	}

	// This cluster's CA, but expired.
	id, err := pki.Load(c.Members[0].Dir)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: "m1"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, id.Issuer().Cert, id.Cert.Leaf.PublicKey, id.Issuer().Key)
	if err != nil {
		t.Fatal(err)
	}
	expired := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.Cert.PrivateKey}
	code, body = apiGet(t, api, "/v1/status", []tls.Certificate{expired})
	if code != 403 || !strings.Contains(body, "the client certificate of m1 expired at "+tmpl.NotAfter.UTC().Format(time.RFC3339)) {
		t.Errorf("an expired certificate: %d %s", code, body)
	}
	code, body = apiGet(t, api, "/v1/status", nil)
	if code != 403 || !strings.Contains(body, "needs a client certificate of the cluster CA") {
		t.Errorf("no credentials: %d %s", code, body)
	}
	code, _ = apiGet(t, api, "/v1/status", []tls.Certificate{id.Cert})
	if code != 200 {
		t.Errorf("the member's own certificate: %d", code)
	}

	// A stranger with another cluster key tries to join m2's gossip.
	key := make([]byte, 32)
	rand.Read(key)
	cfg := memberlist.DefaultLANConfig()
	cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.AdvertiseAddr = "intruder", "127.0.0.1", 0, "127.0.0.1"
	cfg.SecretKey, cfg.GossipVerifyIncoming, cfg.GossipVerifyOutgoing = key, true, true
	cfg.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	if n, err := ml.Join([]string{c.Members[1].Address}); err == nil {
		t.Errorf("a host with another cluster key joined the gossip (%d contacted)", n)
	}
	// Its UDP pings are dropped too.
	addr, _ := netUDPAddr(c.Members[1].Address)
	for range 3 {
		ml.Ping("m2", addr)
	}
	c.eventually(10*time.Second, "m2 counts the strangers' gossip", func() (bool, string) {
		m := scrape(t, c.Members[1].Dir)
		n := metricValue(m, "vigil_gossip_rejected_total")
		return n >= 2, fmt.Sprintf("vigil_gossip_rejected_total %v", n)
	})
	var ms []client.Member
	if err := json.Unmarshal([]byte(c.mustCLI(1, "members", "--json")), &ms); err != nil || len(ms) != 3 {
		t.Errorf("the members after the intrusion: %v %+v", err, ms)
	}
}

var metricRE = regexp.MustCompile(`(?m)^(\S+) (\S+)$`)

// metricValue is the value of a metric without labels, -1 when absent.
func metricValue(text, name string) float64 {
	for _, m := range metricRE.FindAllStringSubmatch(text, -1) {
		if m[1] == name {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	return -1
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func netUDPAddr(hostport string) (*net.UDPAddr, error) { return net.ResolveUDPAddr("udp", hostport) }

// TestCertRenewal renews a member's certificate on a running cluster: the
// others accept the new one at once, connections and the old certificate
// go on working until a second renewal retires it, and nothing fails over.
func TestCertRenewal(t *testing.T) {
	c := startCluster(t, 3)
	if out, err := c.Apply(t.Context(), 0, recorder(t.TempDir()+"/rec.log", "m1, m2, m3")); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, _ := c.waitOnline(0, "rec", "", 30*time.Second)
	old, err := pki.Load(c.Members[1].Dir)
	if err != nil {
		t.Fatal(err)
	}
	out := c.mustCLI(1, "cert", "renew")
	now, err := pki.Load(c.Members[1].Dir)
	if err != nil {
		t.Fatal(err)
	}
	if now.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 || !strings.Contains(out, "m2's certificate renewed: serial "+pki.Serial(now.Leaf.SerialNumber)) {
		t.Fatalf("renewal: %s", out)
	}
	// The new and the old certificate both open the API of another member.
	for name, id := range map[string]*pki.Identity{"new": now, "old": old} {
		if code, body := apiGet(t, c.Members[0].API, "/v1/status", []tls.Certificate{id.Cert}); code != 200 {
			t.Errorf("the %s certificate: %d %s", name, code, body)
		}
	}
	// The member keeps talking to the others on its new certificate.
	time.Sleep(3 * time.Second)
	c.mustCLI(1, "cert", "renew") // retires the first one
	if code, body := apiGet(t, c.Members[0].API, "/v1/status", []tls.Certificate{old.Cert}); code != 403 || !strings.Contains(body, "no longer speaks for a member") {
		t.Errorf("the certificate renewed twice ago: %d %s", code, body)
	}
	time.Sleep(2 * time.Second)
	st, err := c.status(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if m.State != client.MemberUp {
			t.Errorf("after the renewals %s is %s", m.Name, m.State)
		}
	}
	if s2, _ := c.service(0, "rec"); s2.Owner != s.Owner || s2.Epoch != s.Epoch {
		t.Errorf("the renewals moved rec: %s epoch %d, was %s epoch %d", s2.Owner, s2.Epoch, s.Owner, s.Epoch)
	}
	if out := c.mustCLI(2, "events", "--kind", "config"); !strings.Contains(out, "member m2 renewed its certificate") {
		t.Errorf("no renewal event: %s", out)
	}
	// A restart reads the renewed files.
	c.Stop(1)
	if err := c.StartAgent(1); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
}

// TestKeyringRotate replaces the gossip key on a running cluster with a
// service: nothing fails over, every member's key file holds the new key,
// a host with the old key can no longer join, and a restarted member gossips
// with the new one.
func TestKeyringRotate(t *testing.T) {
	c := startCluster(t, 3)
	if out, err := c.Apply(t.Context(), 0, recorder(t.TempDir()+"/rec.log", "m1, m2, m3")); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, _ := c.waitOnline(0, "rec", "", 30*time.Second)
	oldKey, err := os.ReadFile(filepath.Join(c.Members[0].Dir, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	out := c.mustCLI(1, "keyring", "rotate")
	if !strings.Contains(out, "replaced by") {
		t.Fatalf("rotate: %s", out)
	}
	var keys []string
	for _, m := range c.Members {
		b, err := os.ReadFile(filepath.Join(m.Dir, "cluster.key"))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, string(b))
		if _, err := os.Stat(filepath.Join(m.Dir, "cluster.key.next")); err == nil {
			t.Errorf("%s still holds a second key after the rotation", m.Name)
		}
	}
	if keys[0] == string(oldKey) || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Fatalf("the key files after the rotation: %q (old %q)", keys, oldKey)
	}
	c.undisturbed("the rotation", s)
	// The old key opens nothing any more.
	old, _ := hex.DecodeString(strings.TrimSpace(string(oldKey)))
	cfg := memberlist.DefaultLANConfig()
	cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.AdvertiseAddr = "old-key", "127.0.0.1", 0, "127.0.0.1"
	cfg.SecretKey, cfg.GossipVerifyIncoming, cfg.GossipVerifyOutgoing = old, true, true
	cfg.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	if _, err := ml.Join([]string{c.Members[2].Address}); err == nil {
		t.Error("a host with the old key joined the gossip")
	}
	if out := c.mustCLI(0, "events", "--kind", "config"); !strings.Contains(out, "gossip key rotation done") {
		t.Errorf("no rotation events: %s", out)
	}
	// A member restarted after the rotation gossips with the new key.
	c.Stop(2)
	if err := c.StartAgent(2); err != nil {
		t.Fatal(err)
	}
	c.waitState(0, "m3", client.MemberUp, 30*time.Second)
}

// undisturbed checks, two seconds after what, that every member is UP and
// that service s has neither moved nor started again.
func (c *cluster) undisturbed(what string, s *client.ServiceInfo) {
	c.t.Helper()
	time.Sleep(2 * time.Second)
	st, _ := c.status(0)
	for _, m := range st.Members {
		if m.State != client.MemberUp {
			c.t.Errorf("after %s %s is %s", what, m.Name, m.State)
		}
	}
	if s2, _ := c.service(0, s.Name); s2.Owner != s.Owner || s2.Epoch != s.Epoch {
		c.t.Errorf("%s moved %s: %s epoch %d, was %s epoch %d", what, s.Name, s2.Owner, s2.Epoch, s.Owner, s.Epoch)
	}
}
