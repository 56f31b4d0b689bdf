package agent

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Files of a data dir besides vigil.yaml and the certificates.
const (
	ClusterKeyFile = "cluster.key"
	AdminTokenFile = "admin.token"
	BootstrapFile  = "bootstrap.json"
	SocketFile     = "vigil.sock"
	DLMSocketFile  = "dlm.sock" // the lock manager's local API (gRPC)
	MembersFile    = "members.json"
	RemovedFile    = "removed"
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ReadClusterKey reads the gossip key of a data dir.
func ReadClusterKey(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, ClusterKeyFile))
	if err != nil {
		return nil, fmt.Errorf("reading the cluster key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s is not a 32-byte hex key", filepath.Join(dir, ClusterKeyFile))
	}
	return k, nil
}

// ReadAdminToken reads the admin API token of a data dir.
func ReadAdminToken(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSecret(dir, name, content string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600)
}

// ReadMembersCache reads DATA_DIR/members.json, the agent's last list of
// members and their API addresses.
func ReadMembersCache(dir string) []CachedMember {
	b, err := os.ReadFile(filepath.Join(dir, MembersFile))
	if err != nil {
		return nil
	}
	var ms []CachedMember
	if json.Unmarshal(b, &ms) != nil {
		return nil
	}
	return ms
}

// Wipe removes a member's state from its data dir: the files vigil wrote,
// nothing else.
func Wipe(dir string) error {
	for _, n := range []string{"vigil.yaml", "vigil.yaml.tmp", "ca.crt", "ca.key", "member.crt", "member.key", ClusterKeyFile,
		AdminTokenFile, BootstrapFile, SocketFile, MembersFile, MembersFile + ".tmp", RemovedFile, "raft"} {
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}
