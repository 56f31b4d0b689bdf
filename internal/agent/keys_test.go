package agent

import (
	"bytes"
	"testing"
)

func TestSealKey(t *testing.T) {
	old, key := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	sealed, err := sealKey(old, key, sealGossipKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := openKey(old, sealed, sealGossipKey); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("open: %v", err)
	}
	if _, err := openKey(key, sealed, sealGossipKey); err == nil {
		t.Fatal("a sealed key opened with another key")
	}
	if _, err := openKey(old, "!!", sealGossipKey); err == nil {
		t.Fatal("garbage opened")
	}
}

func TestSealPurpose(t *testing.T) {
	k := bytes.Repeat([]byte{1}, 32)
	sealed, err := sealKey(k, []byte("ca key"), sealCAKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openKey(k, sealed, sealGossipKey); err == nil {
		t.Fatal("a CA key opened as a gossip key")
	}
}
