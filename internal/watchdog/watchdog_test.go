package watchdog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFits(t *testing.T) {
	if err := Fits(time.Second, 200*time.Millisecond, time.Second, 1.1); err == nil {
		t.Error("a 1 s watchdog cannot protect a 1 s lease")
	}
	if err := Fits(time.Second, 600*time.Millisecond, 3*time.Second, 1.1); err != nil {
		t.Errorf("campus: %v", err)
	}
}

func TestPetsAndMagicClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(path, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d.Pet()
	d.Pet()
	d.Close()
	b, _ := os.ReadFile(path)
	if string(b) != "\x00\x00V" {
		t.Errorf("device got %q, want two pets and the magic close", b)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none"), time.Second); err == nil || !strings.Contains(err.Error(), "softdog") {
		t.Errorf("missing device: %v", err)
	}
	if _, err := Open(path, 500*time.Millisecond); err == nil {
		t.Error("a sub-second timeout was accepted")
	}
}
