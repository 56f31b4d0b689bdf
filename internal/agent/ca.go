package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// RotateCA implements api.Backend (`vigil ca rotate`): a new cluster CA,
// taken through the phases of a rotation on every member (cdb/keys.go):
// trusted beside the old one, then issuing (each member takes a
// certificate of it, shown with the new CA cross-signed by the old), then
// the only one trusted. With stage, it stops once every member has a
// certificate of the new CA, both CAs trusted, for clients that use --ca
// to fetch the new one; the next call finishes it.
func (a *Agent) RotateCA(ctx context.Context, by string, stage bool) (*client.KeyringResult, error) {
	stopAt := ""
	if stage {
		stopAt = cdb.KeyUse
	}
	return a.rotate(ctx, by, caRotation, stopAt, func() (*cdb.KeyRotation, error) {
		old := a.id.Issuer()
		next, err := pki.NewCA(a.cfg.Cluster)
		if err != nil {
			return nil, err
		}
		cross, err := old.CrossSign(next)
		if err != nil {
			return nil, cdb.Refuse(cdb.ErrRefused, "cross-signing the new CA: %v", err)
		}
		sealed, err := sealKey(a.currentKey(), next.KeyPEM, sealCAKey)
		if err != nil {
			return nil, err
		}
		return &cdb.KeyRotation{Sealed: sealed, ID: pki.Fingerprint(next.Cert), OldID: pki.Fingerprint(old.Cert),
			Cert: string(next.CertPEM), Cross: string(cross)}, nil
	})
}

// syncCA carries out the phase of a CA rotation on this member and acks
// it; called from keyLoop. Each phase can be carried out again (after a
// restart half-way) with the same result.
func (a *Agent) syncCA(ctx context.Context) {
	var r *cdb.KeyRotation
	a.store.View(func(s *cdb.State) {
		r = s.CARotation.Clone()
	})
	if r == nil || r.Acks[a.cfg.Name] == r.Phase {
		return
	}
	a.certMu.Lock()
	defer a.certMu.Unlock()
	if err := a.caPhase(ctx, r); err != nil {
		a.log.Error("CA rotation: carrying out a phase", "phase", r.Phase, "ca", r.ID[:16], "err", err)
		return
	}
	a.log.Info("CA rotation: phase carried out", "phase", r.Phase, "ca", r.ID[:16])
	if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpCAAck, By: "member:" + a.cfg.Name, Member: a.cfg.Name, Serial: r.ID, Phase: r.Phase}); err != nil {
		a.log.Warn("CA rotation: acknowledging a phase", "phase", r.Phase, "err", err)
	}
}

func (a *Agent) caPhase(ctx context.Context, r *cdb.KeyRotation) error {
	_, keyPEM, err := a.openSealed(r.Sealed, sealCAKey)
	if err != nil {
		return fmt.Errorf("the new CA's key: %w", err)
	}
	next, err := pki.ParseCA([]byte(r.Cert), keyPEM)
	if err != nil {
		return err
	}
	if pki.Fingerprint(next.Cert) != r.ID {
		return fmt.Errorf("the new CA's certificate is not the one the rotation names")
	}
	issuer := a.id.Issuer()
	switch r.Phase {
	case cdb.KeyInstall:
		// Trust it beside the old one; on disk too, for a restart.
		if err := a.writeFile(pki.NextCACertFile, next.CertPEM); err != nil {
			return err
		}
		a.id.Trust(issuer.Cert, next.Cert)
	case cdb.KeyUse:
		if pki.Fingerprint(issuer.Cert) != r.ID {
			// The new CA issues from now on; the old one stays trusted
			// (ca.prev.crt) until the last phase.
			if err := a.writeFile(pki.PrevCACertFile, issuer.CertPEM); err != nil {
				return err
			}
			if err := a.writeFile(pki.CAKeyFile, next.KeyPEM); err != nil {
				return err
			}
			if err := a.writeFile(pki.CACertFile, next.CertPEM); err != nil {
				return err
			}
			os.Remove(filepath.Join(a.dir, pki.NextCACertFile))
			a.id.SetIssuer(next)
			a.id.Trust(next.Cert, issuer.Cert)
		}
		if _, leaf := a.id.Current(); pki.Fingerprint(issuer.Cert) == r.ID && leaf.CheckSignatureFrom(next.Cert) == nil {
			return nil // its certificate is of the new CA already
		}
		_, err := a.renew(ctx, "member:"+a.cfg.Name+" (CA rotation)", func() ([]byte, []byte, string, tls.Certificate, error) {
			return a.id.RenewWith(next, []byte(r.Cross))
		})
		return err
	case cdb.KeyRemove:
		a.id.Trust(next.Cert)
		os.Remove(filepath.Join(a.dir, pki.PrevCACertFile))
		// The cross-signed certificate is shown no more.
		cur, _ := a.id.Current()
		if len(pki.Chain(cur, true)) != len(pki.Chain(cur, false)) {
			keyPEM, err := os.ReadFile(filepath.Join(a.dir, pki.KeyFile))
			if err != nil {
				return err
			}
			certPEM := pki.Chain(cur, false)
			cert, err := pki.KeyPair(certPEM, keyPEM, next.CertPEM)
			if err != nil {
				return err
			}
			if err := a.writeFile(pki.CertFile, certPEM); err != nil {
				return err
			}
			return a.id.Replace(cert)
		}
	}
	return nil
}

// writeFile replaces a file of the data dir (written aside and renamed),
// mode 0600.
func (a *Agent) writeFile(name string, b []byte) error {
	p := filepath.Join(a.dir, name)
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// CA implements api.Backend (`vigil ca show`): the CAs this member trusts,
// the one that issues first, and a rotation under way.
func (a *Agent) CA(ctx context.Context) *client.CAInfo {
	out := &client.CAInfo{}
	issuer := a.id.Issuer()
	add := func(pemBytes []byte, role string) {
		c, err := pki.ParseCert(pemBytes)
		if err != nil {
			return
		}
		out.CAs = append(out.CAs, client.CACert{Fingerprint: pki.Fingerprint(c), Role: role, Subject: c.Subject.CommonName,
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, PEM: string(pemBytes)})
	}
	add(issuer.CertPEM, "issuing")
	for _, c := range a.id.Trusted() {
		if !c.Equal(issuer.Cert) {
			add(pki.PEM(c), "trusted")
		}
	}
	a.store.View(func(s *cdb.State) {
		if r := s.CARotation; r != nil {
			out.Rotation = &client.CARotation{CA: r.ID, Old: r.OldID, Phase: r.Phase, Waiting: r.Waiting(s), Started: r.Started, By: r.By}
		}
	})
	return out
}
