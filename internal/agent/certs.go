package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// Certificate renewal: a member renews its own certificate (every member
// holds the CA key) when less than certRenewBefore of it is left.
const (
	certRenewBefore = 30 * 24 * time.Hour
	certCheckEvery  = 6 * time.Hour
)

// certLoop renews this member's certificate before it expires.
func (a *Agent) certLoop(ctx context.Context) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.removed:
			return
		case <-t.C:
		}
		if _, leaf := a.id.Current(); time.Until(leaf.NotAfter) < certRenewBefore {
			if _, err := a.RenewCert(ctx, "member:"+a.cfg.Name); err != nil {
				a.log.Error("certificate: renewal failed; trying again later", "expires", leaf.NotAfter, "err", err)
				t.Reset(10 * time.Minute)
				continue
			}
		}
		t.Reset(certCheckEvery)
	}
}

// RenewCert implements api.Backend: it issues this member a new certificate,
// records its serial in the cluster database (so the others accept it, and
// the old one until it expires), then writes the files and puts it in use.
func (a *Agent) RenewCert(ctx context.Context, by string) (*client.CertInfo, error) {
	a.certMu.Lock()
	defer a.certMu.Unlock()
	return a.renew(ctx, by, a.id.Renew)
}

// renew puts in use the certificate issue makes; called with certMu held.
func (a *Agent) renew(ctx context.Context, by string, issue func() ([]byte, []byte, string, tls.Certificate, error)) (*client.CertInfo, error) {
	_, old := a.id.Current()
	certPEM, keyPEM, serial, cert, err := issue()
	if err != nil {
		return nil, cdb.Refuse(cdb.ErrRefused, "renewing %s's certificate: %v", a.cfg.Name, err)
	}
	prev := pki.Serial(old.SerialNumber)
	if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpCertRenew, By: by, Member: a.cfg.Name, Serial: serial, PrevSerial: prev}); err != nil {
		return nil, err
	}
	// The files: written aside and renamed, so a crash leaves the old or
	// the new pair (both accepted), never half of each.
	for name, b := range map[string][]byte{pki.KeyFile: keyPEM, pki.CertFile: certPEM} {
		p := filepath.Join(a.dir, name)
		if err := os.WriteFile(p+".new", b, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
	}
	for _, name := range []string{pki.KeyFile, pki.CertFile} {
		p := filepath.Join(a.dir, name)
		if err := os.Rename(p+".new", p); err != nil {
			return nil, fmt.Errorf("replacing %s: %w", p, err)
		}
	}
	if err := a.id.Replace(cert); err != nil {
		return nil, err
	}
	// Node-service calls dial again with the new certificate; the old one
	// stays accepted until the next renewal, which is far longer than this.
	a.pool.Renew(30 * time.Second)
	_, leaf := a.id.Current()
	a.log.Warn("certificate renewed", "serial", serial, "previous", prev, "expires", leaf.NotAfter, "by", by)
	return &client.CertInfo{Member: a.cfg.Name, Serial: serial, Previous: prev, NotAfter: leaf.NotAfter}, nil
}
