package agents

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// nsEnv marks a test binary re-run inside its own namespaces.
const nsEnv = "VIGIL_AGENTS_IN_NAMESPACE"

// inNamespace reports whether the test runs inside the throwaway network
// and mount namespaces. When it does not, it re-runs the test there
// (`unshare -n -m --propagation private`, so addresses and mounts vanish
// with the process) and reports false: the caller then returns. Without
// root or namespaces the test is skipped, or fails under
// VIGIL_REQUIRE_LAB=1.
func inNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(nsEnv) == "1" {
		return true
	}
	if os.Geteuid() != 0 {
		requireLab(t, "this test adds addresses and mounts file systems in a throwaway namespace, which needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		requireLab(t, "unshare (util-linux) is not installed")
	}
	if out, err := exec.Command(unshare, "-n", "-m", "--propagation", "private", "true").CombinedOutput(); err != nil {
		requireLab(t, "cannot create network and mount namespaces: "+strings.TrimSpace(string(out))+": "+err.Error())
	}
	cmd := exec.Command(unshare, "-n", "-m", "--propagation", "private",
		os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		t.Log(l)
	}
	switch {
	case err != nil:
		t.Fatalf("%s in its namespace: %v", t.Name(), err)
	case strings.Contains(out.String(), "--- SKIP: "+t.Name()):
		t.Skip("skipped in its namespace (see above)")
	case !strings.Contains(out.String(), "--- PASS: "+t.Name()):
		t.Fatalf("%s did not run in its namespace", t.Name())
	}
	return false
}

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func ipRes(name, addr, iface string) spec.Resource {
	return spec.Resource{Name: name, Kind: spec.KindIP, Address: addr, Interface: iface,
		Timeouts: spec.Timeouts{Start: spec.Duration(5 * time.Second), Stop: spec.Duration(5 * time.Second), Monitor: spec.Duration(5 * time.Second)}}
}

// TestLabIP adds and removes floating addresses on an interface of a
// throwaway network namespace.
func TestLabIP(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	// A dummy interface where the kernel has the module, else a veth pair.
	if err := exec.Command("ip", "link", "add", "vgl0", "type", "dummy").Run(); err != nil {
		sh(t, "ip", "link", "add", "vgl0", "type", "veth", "peer", "name", "vgl1")
		sh(t, "ip", "link", "set", "vgl1", "up")
	}
	sh(t, "ip", "link", "set", "vgl0", "up")
	waitOperUp(t, "vgl0")
	env := testEnv(t)

	vip := mustNew(t, "web", ipRes("vip", "198.18.0.100/24", "vgl0"), env)
	runWant(t, vip, Probe, Call{}, NotRunning)
	runWant(t, vip, Check, Call{}, NotRunning)
	up := runOK(t, vip, IPUp, Call{})
	if up.Method != "addr add" || !strings.Contains(up.Note, "gratuitous ARP sent") {
		t.Errorf("ip up: method %q note %q (want what was done about gratuitous ARP)", up.Method, up.Note)
	}
	if !strings.Contains(sh(t, "ip", "-o", "addr", "show", "dev", "vgl0"), "inet 198.18.0.100/24") {
		t.Fatal("address not on vgl0 after IPUp")
	}
	runOK(t, vip, Check, Call{})
	runOK(t, vip, Probe, Call{})
	if again := runOK(t, vip, IPUp, Call{}); !strings.Contains(again.Note, "already") {
		t.Errorf("second ip up: note %q", again.Note)
	}
	for _, p := range []Phase{Start, Stop, Mount, StartNet} {
		if r := vip.Run(context.Background(), p, Call{}); !r.Skipped {
			t.Errorf("%s: an ip takes part: %+v", p, r)
		}
	}

	// A second address of the same subnet survives the first going.
	vip2 := mustNew(t, "mail", ipRes("vip", "198.18.0.101/24", "vgl0"), env)
	runOK(t, vip2, IPUp, Call{})
	runOK(t, vip, IPDown, Call{})
	runWant(t, vip, Check, Call{}, NotRunning)
	runOK(t, vip2, Check, Call{})
	if down := runOK(t, vip, IPDown, Call{}); !strings.Contains(down.Note, "was not on") {
		t.Errorf("second ip down: note %q", down.Note)
	}
	runOK(t, vip2, IPDown, Call{})
	if out := sh(t, "ip", "-o", "addr", "show", "dev", "vgl0"); strings.Contains(out, "198.18.") {
		t.Errorf("addresses left on vgl0: %s", out)
	}

	// IPv6.
	v6 := mustNew(t, "web", ipRes("vip6", "fd00:198:18:0::100/64", "vgl0"), env)
	if up := runOK(t, v6, IPUp, Call{}); !strings.Contains(up.Note, "unsolicited neighbour advertisement sent") {
		t.Errorf("ip up (IPv6): note %q", up.Note)
	}
	runOK(t, v6, Check, Call{})
	runOK(t, v6, IPDown, Call{})
	runWant(t, v6, Check, Call{}, NotRunning)

	// An interface this member does not have.
	none := mustNew(t, "web", ipRes("vip", "198.18.0.102/24", "vglnone"), env)
	if r := runWant(t, none, IPUp, Call{}, Failed); r.Severity != Hard || r.Err != "interface vglnone does not exist on this member: check the service's interface or the member's network" {
		t.Errorf("ip up on a missing interface: %s %q", r.Severity, r.Err)
	}
	if r := runWant(t, none, Check, Call{}, Failed); r.Severity != Hard {
		t.Errorf("check on a missing interface: %+v", r)
	}
	runWant(t, none, Probe, Call{}, NotRunning)
	runOK(t, none, IPDown, Call{})

	// The address with another prefix length, or on another interface.
	sh(t, "ip", "addr", "add", "198.18.0.103/25", "dev", "vgl0")
	sh(t, "ip", "addr", "add", "198.18.0.104/32", "dev", "lo")
	if r := runWant(t, mustNew(t, "web", ipRes("vip", "198.18.0.103/24", "vgl0"), env), IPUp, Call{}, Failed); r.Severity != Hard ||
		r.Err != "198.18.0.103/25 is already on vgl0 with another prefix length: remove it (ip addr del 198.18.0.103/25 dev vgl0) or fix the service's address" {
		t.Errorf("ip up of an address with another prefix length: %s %q", r.Severity, r.Err)
	}
	if r := runWant(t, mustNew(t, "web", ipRes("vip", "198.18.0.104/24", "vgl0"), env), IPUp, Call{}, Failed); r.Severity != Hard ||
		!strings.HasPrefix(r.Err, "198.18.0.104/32 is already on lo of this member, not on vgl0: remove it there") {
		t.Errorf("ip up of an address on another interface: %s %q", r.Severity, r.Err)
	}

	// An interface that is down.
	sh(t, "ip", "link", "set", "vgl0", "down")
	if r := runWant(t, mustNew(t, "web", ipRes("vip", "198.18.0.105/24", "vgl0"), env), IPUp, Call{}, Failed); r.Severity != Hard ||
		r.Err != "interface vgl0 is down on this member: bring it up (ip link set vgl0 up) or check the member's network" {
		t.Errorf("ip up on a down interface: %s %q", r.Severity, r.Err)
	}

	if err := Validate("web", ipRes("vip", "198.18.0.100/24", "vgl0"), Env{}); err != nil {
		t.Errorf("validate: %v", err)
	}
}

func fsRes(name, device, mountpoint, fstype, options string) spec.Resource {
	return spec.Resource{Name: name, Kind: spec.KindFS, Device: device, Mountpoint: mountpoint, FSType: fstype, Options: options,
		Timeouts: spec.Timeouts{Start: spec.Duration(10 * time.Second), Stop: spec.Duration(10 * time.Second), Monitor: spec.Duration(5 * time.Second)}}
}

// TestLabFS mounts and unmounts file systems in a throwaway mount
// namespace: a tmpfs, and an ext4 image checked with fsck.
func TestLabFS(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	env := testEnv(t)
	mp := filepath.Join(t.TempDir(), "srv", "data") // created by Mount
	tmpfs := mustNew(t, "web", fsRes("data", "/dev/vigil-test-tmpfs", mp, "tmpfs", "size=4m,mode=0755"), env)

	runWant(t, tmpfs, Probe, Call{}, NotRunning)
	if r := tmpfs.Run(context.Background(), Fsck, Call{}); !r.Skipped {
		t.Errorf("fsck without fsck: true: %+v", r)
	}
	runOK(t, tmpfs, Mount, Call{})
	runOK(t, tmpfs, Check, Call{})
	if again := runOK(t, tmpfs, Mount, Call{}); !strings.Contains(again.Note, "already mounted") {
		t.Errorf("second mount: note %q", again.Note)
	}
	if err := os.WriteFile(filepath.Join(mp, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	um := runOK(t, tmpfs, Unmount, Call{})
	if um.Method != "umount" || um.Note != "" {
		t.Errorf("unmount: method %q note %q", um.Method, um.Note)
	}
	runWant(t, tmpfs, Check, Call{}, NotRunning)
	if _, err := os.Stat(filepath.Join(mp, "f")); !os.IsNotExist(err) {
		t.Errorf("file of the tmpfs visible after unmount: %v", err)
	}
	if again := runOK(t, tmpfs, Unmount, Call{}); !strings.Contains(again.Note, "was not mounted") {
		t.Errorf("second unmount: note %q", again.Note)
	}

	// Busy: umount fails, umount -l detaches it.
	runOK(t, tmpfs, Mount, Call{})
	busy := exec.Command("sleep", "300")
	busy.Dir = mp
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Process.Kill(); _ = busy.Wait() }()
	lazy := runOK(t, tmpfs, Unmount, Call{})
	if lazy.Method != "umount -l" || !strings.Contains(lazy.Note, "lazily") || !containsLine(lazy.Output, "busy") {
		t.Errorf("busy unmount: method %q note %q output %q", lazy.Method, lazy.Note, lazy.Output)
	}
	runWant(t, tmpfs, Check, Call{}, NotRunning)

	// A file system type the kernel does not know.
	bad := mustNew(t, "web", fsRes("bad", "/dev/vigil-test-none", filepath.Join(t.TempDir(), "bad"), "vigilnosuchfs", ""), env)
	if r := runWant(t, bad, Mount, Call{}, Failed); r.RC == 0 || !strings.Contains(r.Err, "mount (mount -t vigilnosuchfs") {
		t.Errorf("mount of an unknown type: rc %d err %q", r.RC, r.Err)
	}

	// fsck of a device that is not there.
	gone := fsRes("gone", "/dev/vigil-test-no-such-disk", filepath.Join(t.TempDir(), "gone"), "ext4", "")
	gone.Fsck = true
	if r := runWant(t, mustNew(t, "web", gone, env), Fsck, Call{}, Failed); r.Severity != Hard || r.RC&8 == 0 {
		t.Errorf("fsck of a missing device: rc %d %s %q", r.RC, r.Severity, r.Err)
	}

	if err := Validate("web", fsRes("data", "/dev/sdb1", "/srv/data", "ext4", ""), Env{}); err != nil {
		t.Errorf("validate: %v", err)
	}
	if err := Validate("web", fsRes("data", "/dev/sdb1", "/", "ext4", ""), Env{}); err == nil {
		t.Errorf("validate of an fs on /: no error")
	}

	t.Run("ext4", func(t *testing.T) {
		if _, err := exec.LookPath("mkfs.ext4"); err != nil {
			t.Skip("mkfs.ext4 (e2fsprogs) is not installed")
		}
		img := filepath.Join(t.TempDir(), "disk.img")
		sh(t, "truncate", "-s", "16M", img)
		sh(t, "mkfs.ext4", "-q", "-F", img)
		r := fsRes("disk", img, filepath.Join(t.TempDir(), "disk"), "ext4", "loop")
		r.Fsck = true
		disk := mustNew(t, "db", r, env)
		if f := runOK(t, disk, Fsck, Call{}); f.RC != 0 || f.Method != "fsck" {
			t.Errorf("fsck: %+v", f)
		}
		if m := disk.Run(context.Background(), Mount, Call{}); m.Status != OK {
			logResult(t, m)
			t.Skipf("cannot mount an image with -o loop here: %s", m.Err)
		}
		runOK(t, disk, Check, Call{})
		runOK(t, disk, Unmount, Call{})
		runWant(t, disk, Check, Call{}, NotRunning)
	})
}

func TestMountinfo(t *testing.T) {
	info := []byte(`22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
63 43 0:39 / /srv/my\040data rw,relatime - tmpfs /vigil-x rw,size=1024k
64 43 0:40 / /tmp/back\134slash rw - tmpfs x rw
65 43 0:41 / /tmp/bad\9escape rw - tmpfs x rw
short line
`)
	got := mountPoints(info)
	want := []string{"/", "/srv/my data", `/tmp/back\slash`, `/tmp/bad\9escape`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("mount points %q, want %q", got, want)
	}
	if ok, err := mounted("/proc"); err != nil || !ok {
		t.Errorf("mounted(/proc) = %v, %v", ok, err)
	}
	if ok, err := mounted(t.TempDir()); err != nil || ok {
		t.Errorf("mounted(a temp dir) = %v, %v", ok, err)
	}
}
