package agents

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ipaddr2Path is Debian's resource-agents IPaddr2.
const ipaddr2Path = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"

// The lab of TestLabIPaddr2: a veth pair from the test's throwaway network
// namespace to a peer namespace, addresses of 198.18.0.0/15 only.
const (
	ipaddr2Nic  = "vglipa0"     // in the test's namespace, where IPaddr2 adds the address
	ipaddr2Peer = "vglipa1"     // in the peer namespace
	ipaddr2VIP  = "198.18.2.10" // the floating address
	ipaddr2Mask = "24"
	ipaddr2Near = "198.18.2.2/24" // the peer's own address
)

// TestLabIPaddr2 runs Debian's unmodified ocf:heartbeat:IPaddr2 through
// Validate and New in a throwaway network namespace: validate, probe,
// start, monitor, reachable from a peer namespace, stop, monitor, stop
// again.
func TestLabIPaddr2(t *testing.T) {
	if _, err := os.Stat(ipaddr2Path); err != nil {
		requireLab(t, ipaddr2Path+" is not installed (apt-get install resource-agents iputils-arping): "+err.Error())
	}
	if !inNamespace(t) {
		return
	}
	t0 := time.Now()
	defer func() { t.Logf("IPaddr2 lab took %s", time.Since(t0).Round(time.Millisecond)) }()

	peer := ipaddr2Lab(t)
	env := Env{RscTmp: filepath.Join(t.TempDir(), "rsctmp"), StateDir: t.TempDir(), Logger: testLogger(t)}
	params := map[string]string{"ip": ipaddr2VIP, "cidr_netmask": ipaddr2Mask, "nic": ipaddr2Nic}
	good := ocfRes("ocf:heartbeat:IPaddr2", params)
	good.Name = "vip"
	service := svcName("web")

	// Validate: meta-data parameters and validate-all.
	if err := Validate(service, good, env); err != nil {
		t.Fatalf("validate of good params: %v", err)
	}
	bad := good
	bad.Params = map[string]string{"ip": ipaddr2VIP, "netmask": ipaddr2Mask, "nic": ipaddr2Nic}
	err := Validate(service, bad, env)
	var ve *Error
	switch {
	case !errors.As(err, &ve):
		t.Errorf("validate of an unknown parameter: %v, want an *Error", err)
	case ve.Op != "validate" || !strings.Contains(err.Error(), "unknown parameter(s) netmask;") ||
		!strings.Contains(err.Error(), "ocf:heartbeat:IPaddr2 takes these parameters: ") ||
		!strings.Contains(err.Error(), "cidr_netmask"):
		t.Errorf("validate of an unknown parameter: op %q: %v", ve.Op, err)
	default:
		t.Logf("refused as it should be: %v", err)
	}
	bad.Params = map[string]string{"ip": ipaddr2VIP, "cidr_netmask": "33", "nic": ipaddr2Nic}
	err = Validate(service, bad, env)
	switch {
	case !errors.As(err, &ve):
		t.Errorf("validate of cidr_netmask=33: %v, want an *Error", err)
	case ve.Op != "validate-all" || !strings.Contains(err.Error(), "validate-all exited 6 (not configured)"):
		t.Errorf("validate of cidr_netmask=33: op %q: %v", ve.Op, err)
	default:
		t.Logf("refused as it should be: %v", err)
	}

	vip := mustNew(t, service, good, env)
	monitor := Call{Interval: 10 * time.Second}
	runWant(t, vip, Probe, Call{}, NotRunning)
	if onNic(t) {
		t.Fatalf("%s on %s before start", ipaddr2VIP, ipaddr2Nic)
	}

	runOK(t, vip, Start, Call{})
	if !onNic(t) {
		t.Fatalf("%s not on %s after start: %s", ipaddr2VIP, ipaddr2Nic, sh(t, "ip", "-o", "addr", "show", "dev", ipaddr2Nic))
	}
	runOK(t, vip, Check, monitor)
	runOK(t, vip, Probe, Call{})
	peer.reaches(t, ipaddr2VIP)

	stop := runOK(t, vip, Stop, Call{})
	if stop.Note != "" {
		t.Errorf("stop of a running address: note %q", stop.Note)
	}
	if onNic(t) {
		t.Fatalf("%s still on %s after stop: %s", ipaddr2VIP, ipaddr2Nic, sh(t, "ip", "-o", "addr", "show", "dev", ipaddr2Nic))
	}
	runWant(t, vip, Check, monitor, NotRunning)
	runOK(t, vip, Stop, Call{}) // idempotent
	runWant(t, vip, Probe, Call{}, NotRunning)
}

// ipaddr2PeerNS is the peer network namespace, held by a process.
type ipaddr2PeerNS struct{ pid int }

// ipaddr2Lab makes the veth pair, moves one end into a peer namespace with
// an address of the subnet, and returns the peer. The peer process is
// killed at the end of the test (and with the test process, by its
// parent-death signal), which removes its namespace and the veth pair.
func ipaddr2Lab(t *testing.T) ipaddr2PeerNS {
	t.Helper()
	sh(t, "ip", "link", "add", ipaddr2Nic, "type", "veth", "peer", "name", ipaddr2Peer)
	sh(t, "ip", "link", "set", ipaddr2Nic, "up")

	cmd := exec.Command("unshare", "-n", "sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("peer namespace: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := ipaddr2PeerNS{pid: cmd.Process.Pid}
	// Until unshare has run, the process is still in this namespace.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "peer process in its own network namespace", func() bool {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(p.pid) + "/ns/net")
		return err == nil && ns != self
	})
	sh(t, "ip", "link", "set", ipaddr2Peer, "netns", strconv.Itoa(p.pid))
	p.sh(t, "ip", "link", "set", ipaddr2Peer, "up")
	p.sh(t, "ip", "addr", "add", ipaddr2Near, "dev", ipaddr2Peer)
	return p
}

// sh runs a command in the peer namespace.
func (p ipaddr2PeerNS) sh(t *testing.T, argv ...string) string {
	t.Helper()
	return sh(t, append([]string{"nsenter", "-t", strconv.Itoa(p.pid), "-n", "--"}, argv...)...)
}

// reaches checks that the peer reaches addr: ICMP echo with ping, and an
// ARP request with arping, with whichever of them is installed.
func (p ipaddr2PeerNS) reaches(t *testing.T, addr string) {
	t.Helper()
	tried := false
	if _, err := exec.LookPath("ping"); err == nil {
		t.Log(p.sh(t, "ping", "-c", "1", "-W", "5", addr))
		tried = true
	}
	if _, err := exec.LookPath("arping"); err == nil {
		t.Log(p.sh(t, "arping", "-c", "1", "-w", "5", "-I", ipaddr2Peer, addr))
		tried = true
	}
	if !tried {
		requireLab(t, "neither ping (iputils-ping) nor arping (iputils-arping) is installed to check the address from the peer namespace")
	}
}

// onNic reports whether the floating address is on the interface.
func onNic(t *testing.T) bool {
	t.Helper()
	return strings.Contains(sh(t, "ip", "-o", "addr", "show", "dev", ipaddr2Nic), " inet "+ipaddr2VIP+"/"+ipaddr2Mask+" ")
}
