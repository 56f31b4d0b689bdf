package agent

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
)

// nextKeyFile holds a second gossip key while a rotation is under way, so a
// member that restarts meanwhile opens gossip with both.
const nextKeyFile = "cluster.key.next"

// keyID names a key in messages: the start of its SHA-256.
func keyID(k []byte) string {
	s := sha256.Sum256(k)
	return hex.EncodeToString(s[:4])
}

// Purposes of sealed secrets (the AES-GCM additional data).
const (
	sealGossipKey = "vigil gossip key"
	sealCAKey     = "vigil CA key"
)

// sealKey seals a secret (a new gossip key, a new CA's key) with the gossip
// key old (AES-GCM), for the database.
func sealKey(old, key []byte, purpose string) (string, error) {
	b, err := aes.NewCipher(old)
	if err != nil {
		return "", err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, g.NonceSize())
	rand.Read(nonce)
	return base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, key, []byte(purpose))), nil
}

func openKey(old []byte, sealed, purpose string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(old)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	if len(raw) < g.NonceSize() {
		return nil, errors.New("sealed key too short")
	}
	return g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], []byte(purpose))
}

// openSealed opens a secret of a rotation with whichever gossip key this
// member has that sealed it; it returns that key too.
func (a *Agent) openSealed(sealed, purpose string) (key, secret []byte, err error) {
	for _, k := range append([][]byte{a.currentKey()}, readNextKey(a.dir)...) {
		if s, err := openKey(k, sealed, purpose); err == nil {
			return k, s, nil
		}
	}
	return nil, nil, errors.New("it does not open with this member's gossip keys")
}

// writeKeyFile replaces a key file (written aside and renamed).
func (a *Agent) writeKeyFile(name string, k []byte) error {
	p := filepath.Join(a.dir, name)
	if err := os.WriteFile(p+".tmp", []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// readNextKey reads the second gossip key of a rotation under way, if any.
func readNextKey(dir string) [][]byte {
	b, err := os.ReadFile(filepath.Join(dir, nextKeyFile))
	if err != nil {
		return nil
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil
	}
	return [][]byte{k}
}

// keyLoop carries out the phases of key and CA rotations on this member.
func (a *Agent) keyLoop(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for a.wait(ctx, t.C, nil) {
		a.syncKeys(ctx)
		a.syncCA(ctx)
	}
}

// syncKeys carries out the phase of a key rotation on this member and acks
// it; called from the main loop.
func (a *Agent) syncKeys(ctx context.Context) {
	var r *cdb.KeyRotation
	a.store.View(func(s *cdb.State) {
		r = s.KeyRotation.Clone()
	})
	if r == nil || r.Acks[a.cfg.Name] == r.Phase {
		return
	}
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	old, key := a.rotOld, a.rotNew
	if a.rotID != r.ID {
		var err error
		if old, key, err = a.openSealed(r.Sealed, sealGossipKey); err != nil {
			a.log.Error("gossip keys: the new key of the rotation cannot be opened", "key", r.ID, "err", err)
			return
		}
		a.rotID, a.rotOld, a.rotNew = r.ID, old, key
	}
	var err error
	switch r.Phase {
	case cdb.KeyInstall:
		if err = a.writeKeyFile(nextKeyFile, key); err == nil {
			if ok, _ := a.ml.HasKey(key); !ok {
				err = a.ml.InstallKey(key)
			}
		}
	case cdb.KeyUse:
		if ok, _ := a.ml.HasKey(key); !ok {
			err = a.ml.InstallKey(key)
		}
		if err == nil {
			err = a.ml.UseKey(key)
		}
		// The files: the new key first, the old one kept until removal.
		if err == nil {
			if err = a.writeKeyFile(nextKeyFile, old); err == nil {
				err = a.writeKeyFile(ClusterKeyFile, key)
			}
		}
		if err == nil {
			a.setCurrentKey(key)
		}
	case cdb.KeyRemove:
		if ok, _ := a.ml.HasKey(old); ok {
			err = a.ml.RemoveKey(old)
		}
		if err == nil {
			os.Remove(filepath.Join(a.dir, nextKeyFile))
		}
	}
	if err != nil {
		a.log.Error("gossip keys: carrying out a rotation phase", "phase", r.Phase, "err", err)
		return
	}
	a.log.Info("gossip keys: rotation phase carried out", "phase", r.Phase, "key", r.ID)
	if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpKeyAck, By: "member:" + a.cfg.Name, Member: a.cfg.Name, Serial: r.ID, Phase: r.Phase}); err != nil {
		a.log.Warn("gossip keys: acknowledging a rotation phase", "phase", r.Phase, "err", err)
	}
}

// RotateKeys implements api.Backend (`vigil keyring rotate`): a new gossip
// key, installed, used, then the old one removed, phase by phase on every
// member, with gossip working throughout. A rotation left under way (a
// member went away) is carried on by the next call.
func (a *Agent) RotateKeys(ctx context.Context, by string) (*client.KeyringResult, error) {
	return a.rotate(ctx, by, keyRotation, "", func() (*cdb.KeyRotation, error) {
		old := a.currentKey()
		key := make([]byte, 32)
		rand.Read(key)
		sealed, err := sealKey(old, key, sealGossipKey)
		if err != nil {
			return nil, err
		}
		return &cdb.KeyRotation{Sealed: sealed, ID: keyID(key), OldID: keyID(old)}, nil
	})
}

// rotationKind is what differs between the gossip key's rotations and the
// CA's: their commands, their place in the state, their words.
type rotationKind struct {
	what              string // for messages
	begin, phase, ack cdb.Op
	of                func(*cdb.State) *cdb.KeyRotation
	again             string // the command that carries one on
}

var (
	keyRotation = rotationKind{what: "gossip key", begin: cdb.OpKeyBegin, phase: cdb.OpKeyPhase, ack: cdb.OpKeyAck,
		of: func(s *cdb.State) *cdb.KeyRotation { return s.KeyRotation }, again: "vigil keyring rotate"}
	caRotation = rotationKind{what: "CA", begin: cdb.OpCABegin, phase: cdb.OpCAPhase, ack: cdb.OpCAAck,
		of: func(s *cdb.State) *cdb.KeyRotation { return s.CARotation }, again: "vigil ca rotate"}
)

// rotate starts a rotation of kind k (start makes its first step) unless
// one is under way, then takes it through its phases, each once every
// member has carried out the one before, up to and including stopAt ("":
// to the end).
func (a *Agent) rotate(ctx context.Context, by string, k rotationKind, stopAt string, start func() (*cdb.KeyRotation, error)) (*client.KeyringResult, error) {
	var r *cdb.KeyRotation
	a.store.View(func(s *cdb.State) {
		r = k.of(s).Clone()
	})
	t0 := time.Now()
	if r == nil {
		for _, m := range a.Status(ctx).Members {
			if m.State != client.MemberUp {
				return nil, cdb.Refuse(cdb.ErrRefused, "member %s is %s: a %s rotation needs every member up (a member away through it could not talk to the others after); bring it back or remove it first", m.Name, m.State, k.what)
			}
		}
		begin, err := start()
		if err != nil {
			return nil, err
		}
		if _, err := a.write(ctx, &cdb.Command{Op: k.begin, By: by, KeyRotation: begin}); err != nil {
			return nil, err
		}
		r = begin
	}
	res := &client.KeyringResult{Key: r.ID, Old: r.OldID}
	phase := r.Phase
	if phase == "" {
		phase = cdb.KeyInstall
	}
	for _, next := range []string{cdb.KeyInstall, cdb.KeyUse, cdb.KeyRemove, "done"} {
		if order(next) < order(phase) {
			continue
		}
		if stopAt != "" && order(next) > order(stopAt) {
			res.Staged = stopAt
			break
		}
		if next != phase && next != cdb.KeyInstall {
			if _, err := a.write(ctx, &cdb.Command{Op: k.phase, By: by, Serial: r.ID, Phase: next}); err != nil {
				return nil, err
			}
		}
		if next == "done" {
			break
		}
		if err := a.waitPhase(ctx, k, r.ID, next, 30*time.Second); err != nil {
			return nil, err
		}
		res.Phases = append(res.Phases, fmt.Sprintf("%s: every member after %s", next, time.Since(t0).Round(time.Millisecond)))
	}
	res.Took = time.Since(t0).Round(time.Millisecond).String()
	return res, nil
}

func order(phase string) int {
	return map[string]int{cdb.KeyInstall: 0, cdb.KeyUse: 1, cdb.KeyRemove: 2, "done": 3}[phase]
}

// waitPhase waits until every member has acked the phase of rotation id.
func (a *Agent) waitPhase(ctx context.Context, k rotationKind, id, phase string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var waiting []string
		a.store.View(func(s *cdb.State) {
			if r := k.of(s); r != nil && r.ID == id && r.Phase == phase {
				waiting = r.Waiting(s)
			}
		})
		if len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return cdb.Refuse(cdb.ErrUnreachable, "phase %s of the %s rotation still waits for %s after %s: the rotation stays there (the cluster works); bring them back and run %s again to carry it on", phase, k.what, strings.Join(waiting, ", "), limit, k.again)
		}
		a.poke()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// currentKey is the key gossip is sealed with.
func (a *Agent) currentKey() []byte {
	if k := a.keyCur.Load(); k != nil {
		return *k
	}
	return a.key
}

func (a *Agent) setCurrentKey(k []byte) {
	c := append([]byte(nil), k...)
	a.keyCur.Store(&c)
}
