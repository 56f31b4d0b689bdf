package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMakeInstall installs into a staging dir as a packager would and checks
// what a machine gets: the binary, a systemd unit systemd accepts, a man
// page per command, completions for three shells and the sample alerts.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dest := t.TempDir()
	cmd := exec.Command("make", "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/usr")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/bin/vigil", "etc/systemd/system/vigil.service", "usr/share/man/man1/vigil.1",
		"usr/share/man/man1/vigil-doctor.1", "usr/share/man/man1/vigil-exec.1", "usr/share/bash-completion/completions/vigil",
		"usr/share/zsh/site-functions/_vigil", "usr/share/fish/vendor_completions.d/vigil.fish", "usr/lib/vigil/alerts/alert-file.sh"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install did not install %s: %v", f, err)
		}
	}
	out, err := exec.Command(filepath.Join(dest, "usr/bin/vigil"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "vigil ") {
		t.Errorf("the installed vigil: %v %s", err, out)
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/vigil.service"))
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecStart=/usr/bin/vigil agent --data-dir /var/lib/vigil"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q:\n%s", want, unit)
		}
	}
	if bash, _ := os.ReadFile(filepath.Join(dest, "usr/share/bash-completion/completions/vigil")); !strings.Contains(string(bash), "__start_vigil") {
		t.Error("the bash completion has no __start_vigil")
	}
	if man, _ := os.ReadFile(filepath.Join(dest, "usr/share/man/man1/vigil-doctor.1")); !strings.Contains(string(man), "vigil-doctor - check the cluster") {
		t.Errorf("the doctor's man page: %.300s", man)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// systemd checks the unit; ExecStart must name a file that exists.
		u := filepath.Join(t.TempDir(), "vigil.service")
		os.WriteFile(u, []byte(strings.ReplaceAll(string(unit), "/usr/bin/vigil", filepath.Join(dest, "usr/bin/vigil"))), 0o644)
		if out, err := exec.Command(sa, "verify", "--man=no", u).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}

// TestSystemdNotify runs an agent as systemd would with Type=notify and
// WatchdogSec: it says READY=1 once it serves, its state in STATUS=, pets
// the watchdog, and says STOPPING=1 when stopped.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "1000000")
	c := startCluster(t, 1)
	got := map[string]int{}
	var all []string
	read := func(until time.Time, done func() bool) {
		buf := make([]byte, 4096)
		for time.Now().Before(until) && !done() {
			conn.SetReadDeadline(until)
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				all = append(all, line)
				k, _, _ := strings.Cut(line, "=")
				got[k]++
				if strings.HasPrefix(line, "STATUS=") && strings.Contains(line, "RUNNING") {
					got["running"]++
				}
			}
		}
	}
	read(time.Now().Add(15*time.Second), func() bool { return got["READY"] > 0 && got["running"] > 0 && got["WATCHDOG"] >= 2 })
	c.Stop(0)
	read(time.Now().Add(5*time.Second), func() bool { return got["STOPPING"] > 0 })
	t.Logf("sd_notify messages: %q", all)
	if got["READY"] != 1 || got["running"] == 0 || got["WATCHDOG"] < 2 || got["STOPPING"] != 1 {
		t.Errorf("want READY=1 once, a RUNNING status, WATCHDOG=1 at least twice and STOPPING=1; got %v", got)
	}
}
