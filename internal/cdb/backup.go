package cdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// BackupFormat and BackupVersion identify a backup file.
const (
	BackupFormat  = "vigil-cdb-backup"
	BackupVersion = 1
	// MaxBackupSize bounds a backup file.
	MaxBackupSize = 64 << 20
)

// Backup is the on-disk form of `vigil cdb backup`: a versioned envelope with
// the state and the SHA-256 of its bytes.
type Backup struct {
	Format    string          `json:"format"`
	Version   int             `json:"version"`
	Cluster   string          `json:"cluster"`
	ClusterID string          `json:"cluster_id"`
	Index     uint64          `json:"index"`
	Created   time.Time       `json:"created"`
	SHA256    string          `json:"sha256"`
	State     json.RawMessage `json:"state"`
}

// EncodeBackup makes a backup file of s.
func EncodeBackup(s *State, now time.Time) ([]byte, error) {
	st, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(st)
	b := Backup{Format: BackupFormat, Version: BackupVersion, Cluster: s.Cluster.Name, ClusterID: s.Cluster.ID,
		Index: s.Index, Created: now.UTC(), SHA256: hex.EncodeToString(sum[:]), State: st}
	return json.MarshalIndent(b, "", "  ")
}

// DecodeBackup checks and decodes a backup file. Every failure says what is
// wrong with the file.
func DecodeBackup(data []byte) (*Backup, *State, error) {
	if len(data) > MaxBackupSize {
		return nil, nil, fmt.Errorf("backup is %d bytes, larger than the %d-byte limit: this is not a vigil backup", len(data), MaxBackupSize)
	}
	var b Backup
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, nil, fmt.Errorf("not a vigil backup (it does not decode: %v)", err)
	}
	if b.Format != BackupFormat {
		return nil, nil, fmt.Errorf("not a vigil backup (format %q, want %q)", b.Format, BackupFormat)
	}
	if b.Version < 1 || b.Version > BackupVersion {
		return nil, nil, fmt.Errorf("backup version %d is not supported: this vigil reads version 1 to %d; restore it with a newer vigil", b.Version, BackupVersion)
	}
	// The sum is of the compact state; the file holds it indented.
	var compact bytes.Buffer
	if err := json.Compact(&compact, b.State); err != nil {
		return nil, nil, fmt.Errorf("backup is corrupt: its state is not JSON: %v", err)
	}
	sum := sha256.Sum256(compact.Bytes())
	if hex.EncodeToString(sum[:]) != b.SHA256 {
		return nil, nil, fmt.Errorf("backup is corrupt: the checksum of its state does not match (the file was changed or truncated)")
	}
	s := NewState()
	sd := json.NewDecoder(bytes.NewReader(b.State))
	sd.DisallowUnknownFields()
	if err := sd.Decode(s); err != nil {
		return nil, nil, fmt.Errorf("backup is corrupt: its state does not decode: %v", err)
	}
	s.fill()
	if s.Cluster.ID != b.ClusterID || s.Cluster.Name != b.Cluster {
		return nil, nil, fmt.Errorf("backup is corrupt: its header names cluster %s (%s) but its state is of %s (%s)", b.Cluster, b.ClusterID, s.Cluster.Name, s.Cluster.ID)
	}
	return &b, s, nil
}
