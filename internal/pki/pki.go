// Package pki owns the cluster's certificate authority and member certificates:
// creating them, loading them from a data dir, and building the TLS
// configurations every node-to-node and API connection uses. It must not
// decide who may join; that is the agent's job.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"
)

// Files in a data dir.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	CertFile   = "member.crt"
	KeyFile    = "member.key"
	// During a CA rotation (vigil ca rotate): the new CA's certificate
	// before it is in use, and the old one's after.
	NextCACertFile = "ca.next.crt"
	PrevCACertFile = "ca.prev.crt"
)

// MemberCertLifetime is how long a member certificate is valid.
const MemberCertLifetime = 397 * 24 * time.Hour

// CA is the cluster's certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	KeyPEM  []byte
}

// NewCA creates a CA for the named cluster, valid for ten years. It may
// have one intermediate below it: the cross-signed certificate of the CA
// that replaces it (vigil ca rotate).
func NewCA(cluster string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		// The time in the name tells a CA from the one it replaces.
		Subject:               pkix.Name{CommonName: "vigil cluster CA " + cluster + " " + time.Now().UTC().Format("2006-01-02T15:04:05Z"), Organization: []string{"vigil:" + cluster}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pemEncode("CERTIFICATE", der), Key: key, KeyPEM: pemEncode("PRIVATE KEY", kb)}, nil
}

// ParseCA decodes a CA from its PEM files.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca := &CA{Cert: cert, CertPEM: certPEM}
	if keyPEM != nil {
		k, err := parseKey(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("CA key: %w", err)
		}
		ca.Key, ca.KeyPEM = k, keyPEM
	}
	return ca, nil
}

// CrossSign certifies next's key and name with ca's key: the certificate a
// member issued by next shows after its own during a CA rotation, so that a
// client that trusts only ca still accepts it (the chain leaf → cross → ca).
// It is valid as long as next is, and may have no CA below it.
func (ca *CA) CrossSign(next *CA) ([]byte, error) {
	if ca.Key == nil {
		return nil, errors.New("this member has no CA key, so it cannot cross-sign")
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               next.Cert.Subject,
		SubjectKeyId:          next.Cert.SubjectKeyId,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              next.Cert.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if ca.Cert.NotAfter.Before(tmpl.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, next.Cert.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	return pemEncode("CERTIFICATE", der), nil
}

// Fingerprint is the SHA-256 of the CA certificate, in hex.
func Fingerprint(cert *x509.Certificate) string {
	s := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(s[:])
}

// NewKey creates a member key and returns it with its PEM and the PKIX DER of
// its public key (what a joiner sends to be certified).
func NewKey() (crypto.Signer, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, pemEncode("PRIVATE KEY", kb), pub, nil
}

// Issue signs a member certificate for the public key (PKIX DER). The
// certificate names the member (CN) and carries the hosts as SANs; it serves
// both as server and client certificate. It returns the PEM and the serial
// in hex.
func (ca *CA) Issue(member string, pubDER []byte, hosts []string) ([]byte, string, error) {
	return ca.IssueSerial(member, pubDER, hosts, "")
}

// IssueSerial is Issue with a given serial (hex); empty means a new random
// one. A joiner that lost the answer to its join gets its certificate again
// under the serial the cluster recorded.
func (ca *CA) IssueSerial(member string, pubDER []byte, hosts []string, serialHex string) ([]byte, string, error) {
	if ca.Key == nil {
		return nil, "", errors.New("this member has no CA key, so it cannot issue certificates")
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return nil, "", fmt.Errorf("public key: %w", err)
	}
	switch pub.(type) {
	case *ecdsa.PublicKey:
	default:
		return nil, "", fmt.Errorf("public key: %T is not supported; vigil members use ECDSA P-256", pub)
	}
	sn := serial()
	if serialHex != "" {
		if _, ok := sn.SetString(serialHex, 16); !ok {
			return nil, "", fmt.Errorf("serial %q is not hex", serialHex)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: member, Organization: ca.Cert.Subject.Organization},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(MemberCertLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{member, "localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, "", err
	}
	return pemEncode("CERTIFICATE", der), Serial(tmpl.SerialNumber), nil
}

// Serial renders a certificate serial number.
func Serial(n *big.Int) string { return n.Text(16) }

// Identity is what a member loads from its data dir. Cert and Leaf are
// the certificate loaded; after a renewal (Replace) the TLS configurations
// of ServerConfig and ClientConfig offer the new one, and Current returns it.
// The CA that issues (Issuer) and the CAs trusted (Roots) change during a CA
// rotation (SetIssuer, Trust); every handshake after a change uses it.
type Identity struct {
	Cert tls.Certificate
	Leaf *x509.Certificate

	cur    atomic.Pointer[current] // set by Replace
	issuer atomic.Pointer[CA]
	roots  atomic.Pointer[roots]
}

type roots struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

// Issuer is the CA that issues member certificates: the cluster CA, or the
// new one from the second phase of a CA rotation.
func (id *Identity) Issuer() *CA { return id.issuer.Load() }

// SetIssuer puts ca in use for issuing.
func (id *Identity) SetIssuer(ca *CA) { id.issuer.Store(ca) }

// Roots is the pool of trusted CAs.
func (id *Identity) Roots() *x509.CertPool { return id.roots.Load().pool }

// Trusted lists the trusted CAs.
func (id *Identity) Trusted() []*x509.Certificate { return id.roots.Load().certs }

// Trust replaces the trusted CAs: one, or two during a CA rotation.
func (id *Identity) Trust(cas ...*x509.Certificate) {
	r := &roots{pool: x509.NewCertPool()}
	for _, c := range cas {
		if c != nil && !slices.ContainsFunc(r.certs, c.Equal) {
			r.pool.AddCert(c)
			r.certs = append(r.certs, c)
		}
	}
	id.roots.Store(r)
}

type current struct {
	cert tls.Certificate
	leaf *x509.Certificate
}

// Current returns the certificate in use and its leaf.
func (id *Identity) Current() (*tls.Certificate, *x509.Certificate) {
	if c := id.cur.Load(); c != nil {
		return &c.cert, c.leaf
	}
	return &id.Cert, id.Leaf
}

// Replace puts a renewed certificate in use: every handshake after it
// offers the new one.
func (id *Identity) Replace(cert tls.Certificate) error {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	id.cur.Store(&current{cert: cert, leaf: leaf})
	return nil
}

// Renew issues a new certificate for the member with a new key and serial,
// with the hosts of the old one, signed by the issuing CA (every member
// holds the CA key), followed by the certificates after the leaf in the
// one in use (a cross-signed CA during a CA rotation). It returns the PEM
// files and the TLS certificate, not yet in use.
func (id *Identity) Renew() (certPEM, keyPEM []byte, serial string, cert tls.Certificate, err error) {
	cur, _ := id.Current()
	return id.RenewWith(id.Issuer(), extraPEM(cur))
}

// RenewWith is Renew by the CA ca, with extra (PEM certificates) after the
// leaf in the certificate file.
func (id *Identity) RenewWith(ca *CA, extra []byte) (certPEM, keyPEM []byte, serial string, cert tls.Certificate, err error) {
	if ca == nil || ca.Key == nil {
		return nil, nil, "", cert, errors.New("this data dir has no CA key: a member cannot renew its certificate without it")
	}
	_, leaf := id.Current()
	_, keyPEM, pubDER, err := NewKey()
	if err != nil {
		return nil, nil, "", cert, err
	}
	var hosts []string
	for _, ip := range leaf.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	hosts = append(hosts, leaf.DNSNames...)
	certPEM, serial, err = ca.Issue(leaf.Subject.CommonName, pubDER, hosts)
	if err != nil {
		return nil, nil, "", cert, err
	}
	certPEM = append(certPEM, extra...)
	cert, err = KeyPair(certPEM, keyPEM, ca.CertPEM)
	return certPEM, keyPEM, serial, cert, err
}

// KeyPair is the TLS certificate of a member's files: the certificate file
// (the leaf, and during a CA rotation the cross-signed CA), then the CA.
func KeyPair(certPEM, keyPEM, caPEM []byte) (tls.Certificate, error) {
	return tls.X509KeyPair(append(append([]byte{}, certPEM...), caPEM...), keyPEM)
}

// Chain is the PEM certificate file of cert without its CA: the leaf and
// any certificate between it and the CA (the cross-signed one of a
// rotation), for writing back after a change of CA.
func Chain(cert *tls.Certificate, withExtra bool) []byte {
	if len(cert.Certificate) == 0 {
		return nil
	}
	out := pemEncode("CERTIFICATE", cert.Certificate[0])
	if withExtra {
		out = append(out, extraPEM(cert)...)
	}
	return out
}

// extraPEM is what a certificate shows between its leaf and its CA: the
// certificates after the leaf that are not self-signed (a cross-signed
// certificate may have its issuer's name: a CA made before CA names had
// a time).
func extraPEM(cert *tls.Certificate) []byte {
	var out []byte
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil || (bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil) {
			continue // a CA's own certificate
		}
		out = append(out, pemEncode("CERTIFICATE", der)...)
	}
	return out
}

// WriteFiles stores the CA and member files in dir with mode 0600.
func WriteFiles(dir string, caCert, caKey, cert, key []byte) error {
	for name, b := range map[string][]byte{CACertFile: caCert, CAKeyFile: caKey, CertFile: cert, KeyFile: key} {
		if b == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Load reads the identity files of a data dir.
func Load(dir string) (*Identity, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, name), err)
		}
		return b, nil
	}
	caPEM, err := read(CACertFile)
	if err != nil {
		return nil, err
	}
	caKey, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	ca, err := ParseCA(caPEM, caKey)
	if err != nil {
		return nil, err
	}
	certPEM, err := read(CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(KeyFile)
	if err != nil {
		return nil, err
	}
	pair, err := KeyPair(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, fmt.Errorf("member certificate in %s: %w", dir, err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	id := &Identity{Cert: pair, Leaf: leaf}
	id.SetIssuer(ca)
	// During a CA rotation a second CA is trusted: the next one, or the
	// one it replaced.
	trust := []*x509.Certificate{ca.Cert}
	for _, name := range []string{NextCACertFile, PrevCACertFile} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			c, err := ParseCert(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
			}
			trust = append(trust, c)
		}
	}
	id.Trust(trust...)
	return id, nil
}

// ServerConfig is the TLS 1.3 server side: it offers the member certificate,
// verifies a client certificate against the trusted CAs when one is given
// (the handshake fails if it does not verify), and advertises the
// protocols. The CAs are those of the moment of the handshake, which is
// why the check is the config's own and not crypto/tls's: use PeerLeaf,
// not VerifiedChains, to read who the client is.
func (id *Identity) ServerConfig(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, _ := id.Current()
			return c, nil
		},
		ClientAuth: tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			return verify(id.Roots(), cs.PeerCertificates, x509.ExtKeyUsageClientAuth, "")
		},
		NextProtos: protos,
	}
}

// PeerLeaf is the client certificate of a connection accepted with
// ServerConfig, verified in its handshake; nil when the client gave none.
func PeerLeaf(cs tls.ConnectionState) *x509.Certificate {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}

func verify(pool *x509.CertPool, chain []*x509.Certificate, usage x509.ExtKeyUsage, host string) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: host,
		KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// ClientConfig is the TLS 1.3 client side with the member certificate. The
// server's certificate is checked against the CAs trusted at the moment of
// the handshake.
func (id *Identity) ClientConfig(protos ...string) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, _ := id.Current()
			return c, nil
		},
		// Replaced by VerifyConnection, which reads the trusted CAs at
		// each handshake. Members are dialled by address; the certificate
		// names "localhost" too, and the member name is checked by the
		// caller where it matters.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server showed no certificate")
			}
			return verify(id.Roots(), cs.PeerCertificates, x509.ExtKeyUsageServerAuth, "localhost")
		},
	}
	for _, p := range protos {
		if p != "" {
			c.NextProtos = append(c.NextProtos, p)
		}
	}
	return c
}

// PinnedConfig is the client side used by a joiner that has no certificate
// yet: it accepts a server only if its chain ends at a CA with the given
// fingerprint.
func PinnedConfig(fingerprint, proto string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the fingerprint check below
		NextProtos:         []string{proto},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) < 2 {
				return errors.New("the member did not present its CA certificate")
			}
			var chain []*x509.Certificate
			for _, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			// The CA is the last certificate; during a CA rotation a
			// cross-signed one comes between.
			i := slices.IndexFunc(chain[1:], func(c *x509.Certificate) bool { return Fingerprint(c) == fingerprint })
			if i < 0 {
				return fmt.Errorf("the member's CA fingerprint is %s, the token says %s: the token belongs to another cluster, or the address is wrong, or the cluster's CA was rotated after the token was made (make a new one)", short(Fingerprint(chain[len(chain)-1])), short(fingerprint))
			}
			pool := x509.NewCertPool()
			pool.AddCert(chain[1+i])
			return verify(pool, chain, x509.ExtKeyUsageServerAuth, "")
		},
	}
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16] + "…"
	}
	return fp
}

// ParseCert decodes one PEM certificate.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not a PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("key cannot sign")
	}
	return s, nil
}

// PEM encodes a certificate.
func PEM(c *x509.Certificate) []byte { return pemEncode("CERTIFICATE", c.Raw) }

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// APIServerConfig is the HTTPS API's server side: it asks for a client
// certificate without checking it in the handshake, so that the API can
// refuse a bad one with an answer that says why (VerifyClient).
func (id *Identity) APIServerConfig(protos ...string) *tls.Config {
	c := id.ServerConfig(protos...)
	c.VerifyConnection = nil
	return c
}

// VerifyClient checks a client's certificate chain (leaf first) against
// the cluster CA at now, for client authentication, and says in words why
// it is refused.
func VerifyClient(pool *x509.CertPool, chain []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("no client certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err == nil {
		return leaf, nil
	}
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired && now.After(leaf.NotAfter):
		return nil, fmt.Errorf("the client certificate of %s expired at %s: renew it (a member renews its own before then; see vigil doctor)", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return nil, fmt.Errorf("the client certificate of %s is not valid before %s: check this machine's clock", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))
	case errors.As(err, &ua):
		return nil, fmt.Errorf("the client certificate of %s is not signed by this cluster's CA (it belongs to another cluster?): use this cluster's data dir, or an API token", leaf.Subject.CommonName)
	}
	return nil, fmt.Errorf("the client certificate of %s is refused: %v", leaf.Subject.CommonName, err)
}
