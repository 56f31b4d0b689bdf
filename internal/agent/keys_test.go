package agent

import (
	"bytes"
	"testing"
)

func TestSealKey(t *testing.T) {
	old, key := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	sealed, err := sealKey(old, key)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := openKey(old, sealed); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("open: %v", err)
	}
	if _, err := openKey(key, sealed); err == nil {
		t.Fatal("a sealed key opened with another key")
	}
	if _, err := openKey(old, "!!"); err == nil {
		t.Fatal("garbage opened")
	}
}
