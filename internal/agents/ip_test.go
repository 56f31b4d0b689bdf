package agents

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// The ip lab: this test process, in its throwaway network namespace, is the
// switch and a client on it (a bridge, vglbr0, with 198.18.0.1/24 and
// fd00:198:18::1/64); each member is this test binary started again in a
// network namespace of its own (memberEnv), joined to the bridge by a veth
// pair, and running ip resources when told to. Everything vanishes with the
// processes.

// memberEnv marks the test binary started as a member of the ip lab.
const memberEnv = "VIGIL_AGENTS_IP_MEMBER"

// memberTag starts every reply of a member.
const memberTag = "VIGIL-MEMBER "

func init() {
	if os.Getenv(memberEnv) == "1" {
		os.Exit(memberMain(os.Stdin, os.Stdout))
	}
}

// memberReply is what a member says to a command.
type memberReply struct {
	Err    string  `json:",omitempty"`
	Result *Result `json:",omitempty"`
}

// memberMain reads commands, one a line, and replies to each:
//
//	link NAME                 wait for the interface, bring it up
//	run PHASE ADDRESS IFACE   run an ip resource (one per address and interface)
func memberMain(in io.Reader, out io.Writer) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	state, err := os.MkdirTemp("", "vigil-ip-member-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(state)
	env := Env{StateDir: state, Logger: log}
	resources := map[string]Resource{}
	reply := func(r memberReply) {
		b, _ := json.Marshal(r)
		fmt.Fprintf(out, "%s%s\n", memberTag, b)
	}
	reply(memberReply{}) // ready: in the new namespace
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "link":
			if err := linkUp(f[1]); err != nil {
				reply(memberReply{Err: err.Error()})
				continue
			}
			reply(memberReply{})
		case len(f) == 4 && f[0] == "run":
			key := f[2] + " " + f[3]
			res := resources[key]
			if res == nil {
				if res, err = New("web", ipRes("vip", f[2], f[3]), env); err != nil {
					reply(memberReply{Err: err.Error()})
					continue
				}
				resources[key] = res
			}
			r := res.Run(context.Background(), Phase(f[1]), Call{})
			reply(memberReply{Result: &r})
		default:
			reply(memberReply{Err: fmt.Sprintf("unknown command %q", sc.Text())})
		}
	}
	return 0
}

// linkUp waits for an interface to appear, brings it up and waits for its
// carrier.
func linkUp(name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := netlink.LinkByName(name)
		if err == nil {
			if l.Attrs().Flags&net.FlagUp == 0 {
				if err := netlink.LinkSetUp(l); err != nil {
					return err
				}
			}
			if l.Attrs().OperState == netlink.OperUp {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("interface %s not up within 5s (last: %v)", name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitOperUp waits until an interface has its carrier.
func waitOperUp(t *testing.T, name string) {
	t.Helper()
	eventually(t, 5*time.Second, name+" up", func() bool {
		l, err := netlink.LinkByName(name)
		return err == nil && (l.Attrs().OperState == netlink.OperUp || l.Attrs().OperState == netlink.OperUnknown)
	})
}

// Addresses of the lab.
var (
	clientMAC = net.HardwareAddr{0x02, 0x42, 0xc6, 0x12, 0x00, 0xfe}
	staleMAC  = net.HardwareAddr{0x02, 0x42, 0xc6, 0x12, 0x00, 0x99}
	client4   = netip.MustParsePrefix("198.18.0.1/24")
	client6   = netip.MustParsePrefix("fd00:198:18::1/64")
	vip4      = "198.18.0.100/24"
	vip6      = "fd00:198:18::100/64"
)

func memberMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x42, 0xc6, 0x12, 0x00, byte(i)}
}

type ipLab struct {
	t  *testing.T
	br netlink.Link
}

// newIPLab builds the bridge; the test must run in its namespace.
func newIPLab(t *testing.T) *ipLab {
	t.Helper()
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vglbr0", HardwareAddr: clientMAC}, MulticastSnooping: &off}
	if err := netlink.LinkAdd(br); err != nil {
		requireLab(t, "cannot create a bridge in the namespace: "+err.Error())
	}
	l, err := netlink.LinkByName("vglbr0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{client4, client6} {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(l, a); err != nil {
			t.Fatalf("add %s: %v", p, err)
		}
	}
	return &ipLab{t: t, br: l}
}

// member is a member of the lab: a process in a network namespace of its
// own, with interface vglm<i> (its peer on the bridge is vglm<i>p).
type member struct {
	t       *testing.T
	name    string
	iface   string
	mac     net.HardwareAddr
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan memberReply
	killed  bool
}

func (l *ipLab) member(i int) *member {
	t := l.t
	t.Helper()
	m := &member{t: t, name: fmt.Sprintf("member%d", i), iface: fmt.Sprintf("vglm%d", i), mac: memberMAC(i), replies: make(chan memberReply, 1)}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: m.iface + "p", MasterIndex: l.br.Attrs().Index}, PeerName: m.iface, PeerHardwareAddr: m.mac}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth for %s: %v", m.name, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}

	m.cmd = exec.Command("unshare", "-n", os.Args[0])
	m.cmd.Env = append(os.Environ(), memberEnv+"=1")
	var err error
	if m.in, err = m.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stderr = lineLogger(t, m.name+": ")
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", m.name, err)
	}
	go func() {
		defer close(m.replies)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), memberTag)
			if !ok {
				continue
			}
			var r memberReply
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				r.Err = fmt.Sprintf("bad reply %q: %v", line, err)
			}
			m.replies <- r
		}
	}()
	t.Cleanup(func() {
		_ = m.in.Close()
		done := make(chan error, 1)
		go func() { done <- m.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil && !m.killed {
				t.Errorf("%s exited: %v", m.name, err)
			}
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Kill()
			<-done
			t.Errorf("%s did not exit within 10s of the end of its input", m.name)
		}
	})
	m.reply() // ready, in its own namespace
	peer, err := netlink.LinkByName(m.iface)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsPid(peer, m.cmd.Process.Pid); err != nil {
		t.Fatalf("move %s to %s: %v", m.iface, m.name, err)
	}
	if r := m.do("link " + m.iface); r.Err != "" {
		t.Fatalf("%s: %s", m.name, r.Err)
	}
	return m
}

func (m *member) reply() memberReply {
	m.t.Helper()
	select {
	case r, ok := <-m.replies:
		if !ok {
			m.t.Fatalf("%s ended", m.name)
		}
		return r
	case <-time.After(30 * time.Second):
		m.t.Fatalf("%s did not answer within 30s", m.name)
	}
	return memberReply{}
}

func (m *member) do(cmd string) memberReply {
	m.t.Helper()
	if _, err := fmt.Fprintln(m.in, cmd); err != nil {
		m.t.Fatalf("%s: %v", m.name, err)
	}
	return m.reply()
}

// run runs a phase of the ip resource of address on the member.
func (m *member) run(p Phase, address string) Result {
	m.t.Helper()
	r := m.do(fmt.Sprintf("run %s %s %s", p, address, m.iface))
	if r.Err != "" || r.Result == nil {
		m.t.Fatalf("%s: run %s %s: %s", m.name, p, address, r.Err)
	}
	m.t.Logf("%s: %s %s: status=%s severity=%s dur=%s err=%q note=%q", m.name, p, address, r.Result.Status, r.Result.Severity, r.Result.Duration.Round(time.Millisecond), r.Result.Err, r.Result.Note)
	return *r.Result
}

func (m *member) runOK(p Phase, address string) Result {
	m.t.Helper()
	r := m.run(p, address)
	if r.Status != OK {
		m.t.Fatalf("%s: %s %s: %s: %s", m.name, p, address, r.Status, r.Err)
	}
	return r
}

// kill is a crash: the process dies, its namespace and interfaces with it.
func (m *member) kill() {
	m.killed = true
	_ = m.cmd.Process.Kill()
}

// lineLogger logs what is written to it, line by line, until the test ends.
func lineLogger(t *testing.T, prefix string) io.Writer {
	pr, pw := io.Pipe()
	w := &testWriter{t: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			_, _ = w.Write([]byte(prefix + sc.Text()))
		}
	}()
	t.Cleanup(func() {
		_ = pw.Close()
		<-done
		w.mu.Lock()
		w.over = true
		w.mu.Unlock()
	})
	return pw
}

// neigh is the client's neighbour entry of an address (nil when none).
func (l *ipLab) neigh(a netip.Addr) *netlink.Neigh {
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := netlink.NeighList(l.br.Attrs().Index, fam)
	if err != nil {
		l.t.Fatal(err)
	}
	for i := range ns {
		if ip, ok := netip.AddrFromSlice(ns[i].IP); ok && ip.Unmap() == a {
			return &ns[i]
		}
	}
	return nil
}

// setStale gives the client a stale neighbour entry of a with mac.
func (l *ipLab) setStale(a netip.Addr, mac net.HardwareAddr) {
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{LinkIndex: l.br.Attrs().Index, Family: fam, State: netlink.NUD_STALE, IP: a.AsSlice(), HardwareAddr: mac}
	if err := netlink.NeighSet(n); err != nil {
		l.t.Fatalf("neigh set %s: %v", a, err)
	}
}

// resolve has the client talk to a, so that it resolves it, and returns
// the Ethernet address it resolved.
func (l *ipLab) resolve(a netip.Addr) net.HardwareAddr {
	l.t.Helper()
	c, err := net.Dial("udp", netip.AddrPortFrom(a, 9).String())
	if err != nil {
		l.t.Fatal(err)
	}
	defer c.Close()
	var mac net.HardwareAddr
	eventually(l.t, 5*time.Second, "the client resolves "+a.String(), func() bool {
		_, _ = c.Write([]byte("x"))
		n := l.neigh(a)
		if n != nil && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 && len(n.HardwareAddr) == 6 {
			mac = n.HardwareAddr
			return true
		}
		return false
	})
	return mac
}

// waitNeigh waits until the client's entry of a has mac, and returns when
// it saw it.
func (l *ipLab) waitNeigh(a netip.Addr, mac net.HardwareAddr, within time.Duration) time.Time {
	l.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if n := l.neigh(a); n != nil && n.HardwareAddr.String() == mac.String() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			n := l.neigh(a)
			l.t.Fatalf("the client's neighbour entry of %s is %+v, not %s, %s later", a, n, mac, within)
		}
		time.Sleep(time.Millisecond)
	}
}

// frame is a captured Ethernet frame.
type frame struct {
	at   time.Time
	data []byte
}

// capture records what arrives from a member on its bridge port until stop
// is called.
type capture struct {
	fd     int
	mu     sync.Mutex
	frames []frame
	stop   chan struct{}
	done   chan struct{}
}

func (l *ipLab) capture(m *member) *capture {
	l.t.Helper()
	port, err := netlink.LinkByName(m.iface + "p")
	if err != nil {
		l.t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		l.t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: port.Attrs().Index}); err != nil {
		unix.Close(fd)
		l.t.Fatal(err)
	}
	index := port.Attrs().Index
	c := &capture{fd: fd, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 10); n <= 0 {
				continue
			}
			n, from, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			if err != nil {
				continue
			}
			if sll, ok := from.(*unix.SockaddrLinklayer); !ok || sll.Ifindex != index || sll.Pkttype == unix.PACKET_OUTGOING {
				continue // not from the member
			}
			c.mu.Lock()
			c.frames = append(c.frames, frame{at: time.Now(), data: slices.Clone(buf[:n])})
			c.mu.Unlock()
		}
	}()
	l.t.Cleanup(c.end)
	return c
}

func (c *capture) end() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
		<-c.done
		unix.Close(c.fd)
	}
}

// result ends the capture and returns what it saw.
func (c *capture) result() []frame {
	c.end()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// arpPkt is a decoded ARP packet.
type arpPkt struct {
	at       time.Time
	ethDst   net.HardwareAddr
	op       uint16
	sha, tha net.HardwareAddr
	spa, tpa netip.Addr
}

func (p arpPkt) String() string {
	return fmt.Sprintf("+%s op=%d eth-dst=%s sha=%s spa=%s tha=%s tpa=%s", p.at.Format("15:04:05.000"), p.op, p.ethDst, p.sha, p.spa, p.tha, p.tpa)
}

// arps decodes the ARP packets of frames.
func arps(frames []frame) []arpPkt {
	var ps []arpPkt
	for _, f := range frames {
		d := f.data
		if len(d) < 42 || binary.BigEndian.Uint16(d[12:]) != 0x0806 {
			continue
		}
		a := d[14:]
		ps = append(ps, arpPkt{at: f.at, ethDst: d[0:6], op: binary.BigEndian.Uint16(a[6:]),
			sha: a[8:14], spa: netip.AddrFrom4([4]byte(a[14:18])), tha: a[18:24], tpa: netip.AddrFrom4([4]byte(a[24:28]))})
	}
	return ps
}

// ndPkt is a decoded neighbour solicitation or advertisement.
type ndPkt struct {
	at       time.Time
	ethDst   net.HardwareAddr
	src, dst netip.Addr
	hops     byte
	typ      byte
	flags    byte
	target   netip.Addr
	lladdr   net.HardwareAddr // source or target link-layer address option
	checksum bool             // the checksum is right
}

// nds decodes the neighbour solicitations and advertisements of frames.
func nds(frames []frame) []ndPkt {
	var ps []ndPkt
	for _, f := range frames {
		d := f.data
		if len(d) < 14+40+24 || binary.BigEndian.Uint16(d[12:]) != 0x86dd || d[14+6] != 58 {
			continue
		}
		ip := d[14:]
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if len(ip) < 40+plen {
			continue
		}
		m := ip[40 : 40+plen]
		if m[0] != 135 && m[0] != 136 {
			continue
		}
		p := ndPkt{at: f.at, ethDst: d[0:6], src: netip.AddrFrom16([16]byte(ip[8:24])), dst: netip.AddrFrom16([16]byte(ip[24:40])),
			hops: ip[7], typ: m[0], flags: m[4], target: netip.AddrFrom16([16]byte(m[8:24]))}
		for o := m[24:]; len(o) >= 8 && o[1] > 0 && len(o) >= 8*int(o[1]); o = o[8*int(o[1]):] {
			if o[0] == 1 || o[0] == 2 {
				p.lladdr = o[2:8]
			}
		}
		// One's complement sum over the pseudo-header and the message,
		// checksum included, is 0xffff when the checksum is right.
		sum := uint32(0)
		for _, b := range [][]byte{ip[8:40], {0, 0, byte(plen >> 8), byte(plen), 0, 0, 0, 58}, m} {
			for i := 0; i < len(b); i += 2 {
				w := uint32(b[i]) << 8
				if i+1 < len(b) {
					w |= uint32(b[i+1])
				}
				sum += w
			}
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		p.checksum = sum == 0xffff
		ps = append(ps, p)
	}
	return ps
}

// TestLabIPAnnounce shows what a member puts on the wire when it takes an
// address: the duplicate check first (ARP probes, neighbour solicitations
// from ::), then the announcements, which update a neighbour's stale cache
// entry at once; and that IPDown ends the background announcements.
func TestLabIPAnnounce(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	lab := newIPLab(t)
	m1 := lab.member(1)
	a4, a6 := netip.MustParsePrefix(vip4).Addr(), netip.MustParsePrefix(vip6).Addr()
	lab.setStale(a4, staleMAC)
	lab.setStale(a6, staleMAC)

	c := lab.capture(m1)
	t0 := time.Now()
	up4 := m1.runOK(IPUp, vip4)
	seen4 := lab.waitNeigh(a4, m1.mac, 2*time.Second)
	t1 := time.Now()
	up6 := m1.runOK(IPUp, vip6)
	seen6 := lab.waitNeigh(a6, m1.mac, 2*time.Second)
	time.Sleep(1500 * time.Millisecond) // the background rounds
	frames := c.result()
	t.Logf("FIGURE IPv4: IPUp took %s; the client's stale entry had the member's MAC %s after IPUp began",
		up4.Duration.Round(time.Millisecond), seen4.Sub(t0).Round(time.Millisecond))
	t.Logf("FIGURE IPv6: IPUp took %s; the client's stale entry had the member's MAC %s after IPUp began",
		up6.Duration.Round(time.Millisecond), seen6.Sub(t1).Round(time.Millisecond))
	for _, up := range []Result{up4, up6} {
		if up.Duration < DefaultDADWait {
			t.Errorf("IPUp took %s: the duplicate check waits %s", up.Duration, DefaultDADWait)
		}
	}

	t.Run("ARP", func(t *testing.T) {
		var probes, reqs, replies []arpPkt
		for _, p := range arps(frames) {
			t.Log(p)
			switch {
			case p.tpa != a4 || p.sha.String() != m1.mac.String() || p.ethDst.String() != broadcastMAC.String():
			case p.op == 1 && p.spa == netip.IPv4Unspecified() && p.tha.String() == "00:00:00:00:00:00":
				probes = append(probes, p)
			case p.op == 1 && p.spa == a4:
				reqs = append(reqs, p)
			case p.op == 2 && p.spa == a4 && p.tha.String() == m1.mac.String():
				replies = append(replies, p)
			}
		}
		if len(probes) != dadProbes {
			t.Fatalf("%d ARP probes, want %d", len(probes), dadProbes)
		}
		if len(reqs) != len(announceAt) || len(replies) != len(announceAt) {
			t.Fatalf("%d ARP announcements and %d gratuitous replies, want %d of each", len(reqs), len(replies), len(announceAt))
		}
		if last, first := probes[len(probes)-1].at, reqs[0].at; !first.After(last) || first.Sub(probes[0].at) < DefaultDADWait-20*time.Millisecond {
			t.Errorf("first announcement %s after the first probe, %s after the last: want after the whole check (%s)", first.Sub(probes[0].at), first.Sub(last), DefaultDADWait)
		}
		for i := range announceAt[1:] {
			if gap := reqs[i+1].at.Sub(reqs[0].at); gap < announceAt[i+1]-20*time.Millisecond || gap > announceAt[i+1]+500*time.Millisecond {
				t.Errorf("announcement %d came %s after the first, want about %s", i+2, gap, announceAt[i+1])
			}
		}
	})
	t.Run("ND", func(t *testing.T) {
		var sols, advs []ndPkt
		for _, p := range nds(frames) {
			if p.target != a6 {
				continue
			}
			t.Logf("+%s type=%d eth-dst=%s %s -> %s hops=%d flags=%#x lladdr=%s checksum-ok=%v", p.at.Format("15:04:05.000"), p.typ, p.ethDst, p.src, p.dst, p.hops, p.flags, p.lladdr, p.checksum)
			switch {
			case !p.checksum || p.hops != 255:
				t.Errorf("bad packet: checksum ok %v, hop limit %d", p.checksum, p.hops)
			case p.typ == 135 && p.src == netip.IPv6Unspecified() && p.dst == netip.MustParseAddr("ff02::1:ff00:100") &&
				p.ethDst.String() == "33:33:ff:00:01:00" && p.lladdr == nil:
				sols = append(sols, p)
			case p.typ == 136 && p.src == a6 && p.dst == netip.MustParseAddr("ff02::1") && p.ethDst.String() == "33:33:00:00:00:01" &&
				p.flags == 0x20 && p.lladdr.String() == m1.mac.String():
				advs = append(advs, p)
			}
		}
		if len(sols) != dadProbes {
			t.Fatalf("%d duplicate address detection solicitations, want %d", len(sols), dadProbes)
		}
		if len(advs) != len(announceAt) {
			t.Fatalf("%d unsolicited advertisements (override, target link-layer address), want %d", len(advs), len(announceAt))
		}
		if !advs[0].at.After(sols[len(sols)-1].at) {
			t.Errorf("first advertisement before the last solicitation")
		}
	})

	// IPDown ends the background announcements.
	const vip = "198.18.0.102/24"
	c = lab.capture(m1)
	m1.runOK(IPUp, vip)
	m1.runOK(IPDown, vip)
	time.Sleep(1500 * time.Millisecond)
	n := 0
	for _, p := range arps(c.result()) {
		if p.op == 1 && p.spa == netip.MustParseAddr("198.18.0.102") {
			n++
		}
	}
	if n < 1 || n >= len(announceAt) {
		t.Errorf("%d ARP announcements after IPUp then IPDown: want the first one and none after IPDown", n)
	}
}

// TestLabIPDuplicate refuses an address another host answers for.
func TestLabIPDuplicate(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	lab := newIPLab(t)
	m1, m2 := lab.member(1), lab.member(2)
	m1.runOK(IPUp, vip4)
	m1.runOK(IPUp, vip6)
	for _, c := range []struct {
		address string
		owner   net.HardwareAddr
	}{
		{vip4, m1.mac},
		{vip6, m1.mac},
		{client4.String(), clientMAC},
		{client6.String(), clientMAC},
	} {
		r := m2.run(IPUp, c.address)
		want := fmt.Sprintf("%s already answers from %s; another host uses it: refusing to take it over", netip.MustParsePrefix(c.address).Addr(), c.owner)
		if r.Status != Failed || r.Severity != Hard || !strings.HasPrefix(r.Err, want) {
			t.Errorf("IPUp of %s held by %s: %s %s %q, want failed hard %q", c.address, c.owner, r.Status, r.Severity, r.Err, want)
		}
		if r.Duration > DefaultDADWait+200*time.Millisecond {
			t.Errorf("refusal took %s", r.Duration)
		}
		if r := m2.run(Check, c.address); r.Status != NotRunning {
			t.Errorf("after the refusal, %s on member2: %s", c.address, r.Status)
		}
		t.Logf("FIGURE duplicate %s found in %s", c.address, r.Duration.Round(time.Millisecond))
	}
	// Free addresses are taken.
	m2.runOK(IPUp, "198.18.0.101/24")
	m2.runOK(IPUp, "fd00:198:18::101/64")
	// Once the owner lets go, the address can move.
	m1.runOK(IPDown, vip4)
	m2.runOK(IPUp, vip4)
}

// TestLabIPFailover moves an address between two members, gracefully and
// after a crash, and measures when a client's neighbour cache follows.
func TestLabIPFailover(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	lab := newIPLab(t)
	m1, m2 := lab.member(1), lab.member(2)
	addrs := []string{vip4, vip6}
	for _, a := range addrs {
		m1.runOK(IPUp, a)
		if mac := lab.resolve(netip.MustParsePrefix(a).Addr()); mac.String() != m1.mac.String() {
			t.Fatalf("the client resolved %s to %s, not member1's %s", a, mac, m1.mac)
		}
	}

	move := func(how string, to *member) {
		t.Helper()
		for _, a := range addrs {
			addr := netip.MustParsePrefix(a).Addr()
			if n := lab.neigh(addr); n == nil || n.HardwareAddr.String() == to.mac.String() {
				t.Fatalf("before the move the client has %+v for %s", n, addr)
			}
			t0 := time.Now()
			up := to.runOK(IPUp, a)
			seen := lab.waitNeigh(addr, to.mac, 2*time.Second)
			t.Logf("FIGURE %s of %s to %s: IPUp took %s (duplicate check %s); the client's cache had the new MAC %s after IPUp began",
				how, a, to.name, up.Duration.Round(time.Millisecond), DefaultDADWait, seen.Sub(t0).Round(time.Millisecond))
			if d := seen.Sub(t0); d > time.Second {
				t.Errorf("the client's cache followed %s after IPUp began", d)
			}
		}
	}

	// Graceful: the stop half on member1, then the start half on member2.
	for _, a := range addrs {
		m1.runOK(IPDown, a)
	}
	move("relocation", m2)

	// Crash: member2 dies with its namespace; member1 takes the addresses.
	m2.kill()
	eventually(t, 5*time.Second, "member2's port gone", func() bool {
		_, err := netlink.LinkByName(m2.iface + "p")
		return err != nil
	})
	move("failover", m1)
	for _, a := range addrs {
		m1.runOK(Check, a)
	}
}

func TestFindAddr(t *testing.T) {
	addr := func(s string) netlink.Addr {
		p := netip.MustParsePrefix(s)
		return netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	}
	as := []netlink.Addr{addr("127.0.0.1/8"), addr("198.18.0.100/24"), addr("fd00:198:18::100/64"), {}}
	for want, m := range map[string]string{
		"198.18.0.100/24": "exact", "198.18.0.100/25": "other", "198.18.0.10/24": "",
		"fd00:198:18:0::100/64": "exact", "fd00:198:18::100/128": "other", "fd00:198:18::1/64": "",
	} {
		got := findAddr(as, netip.MustParsePrefix(want))
		switch {
		case m == "exact" && got.exact == nil, m == "other" && (got.other == nil || got.exact != nil), m == "" && (got.exact != nil || got.other != nil):
			t.Errorf("findAddr(%s) = %+v, want %s", want, got, m)
		}
	}
}

func TestIPFrames(t *testing.T) {
	own := memberMAC(1)
	other := memberMAC(2)
	a4 := netip.MustParseAddr("198.18.0.100")
	a6 := netip.MustParseAddr("fd00:198:18::100")
	now := time.Now()

	probe := arps([]frame{{now, probeFrame(own, a4)}})
	if len(probe) != 1 || probe[0].op != 1 || probe[0].spa != netip.IPv4Unspecified() || probe[0].tpa != a4 || probe[0].sha.String() != own.String() || len(probeFrame(own, a4)) != 60 {
		t.Errorf("ARP probe: %v", probe)
	}
	ann := announcements(own, a4)
	if ps := arps([]frame{{now, ann[0]}, {now, ann[1]}}); len(ps) != 2 || ps[0].op != 1 || ps[1].op != 2 || ps[0].spa != a4 || ps[0].tpa != a4 || ps[1].tha.String() != own.String() {
		t.Errorf("ARP announcements: %v", ps)
	}
	ns := nds([]frame{{now, probeFrame(own, a6)}})
	if len(ns) != 1 || !ns[0].checksum || ns[0].typ != 135 || ns[0].src != netip.IPv6Unspecified() || ns[0].dst != netip.MustParseAddr("ff02::1:ff00:100") || ns[0].hops != 255 {
		t.Errorf("neighbour solicitation: %+v", ns)
	}
	na := nds([]frame{{now, announcements(own, a6)[0]}})
	if len(na) != 1 || !na[0].checksum || na[0].typ != 136 || na[0].flags != 0x20 || na[0].lladdr.String() != own.String() || na[0].target != a6 {
		t.Errorf("neighbour advertisement: %+v", na)
	}
	if g := solicitedNode(netip.MustParseAddr("fd00::12:3456:789a")); g != netip.MustParseAddr("ff02::1:ff56:789a") {
		t.Errorf("solicited-node group %s", g)
	}

	// What counts as another host using the address.
	for _, c := range []struct {
		name  string
		frame []byte
		a     netip.Addr
		want  net.HardwareAddr
	}{
		{"ARP reply from another host", arpFrame(2, other, a4, own, netip.IPv4Unspecified()), a4, other},
		{"ARP announcement of another host", announcements(other, a4)[0], a4, other},
		{"our own announcement", announcements(own, a4)[0], a4, nil},
		{"another host's probe", probeFrame(other, a4), a4, nil},
		{"ARP for another address", arpFrame(2, other, netip.MustParseAddr("198.18.0.7"), own, a4), a4, nil},
		{"advertisement from another host", announcements(other, a6)[0], a6, other},
		{"our own advertisement", announcements(own, a6)[0], a6, nil},
		{"advertisement of another address", announcements(other, netip.MustParseAddr("fd00:198:18::7"))[0], a6, nil},
		{"solicitation", probeFrame(other, a6), a6, nil},
		{"IPv6 frame for an IPv4 address", announcements(other, a6)[0], a4, nil},
		{"short", []byte{1, 2, 3}, a4, nil},
	} {
		if got := answerFrom(c.frame, c.a, own); got.String() != c.want.String() {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// A neighbour advertisement without the option: the Ethernet source.
	na6 := announcements(other, a6)[0]
	bare := slices.Clone(na6[:14+40+24])
	binary.BigEndian.PutUint16(bare[14+4:], 24)
	if got := answerFrom(bare, a6, own); got.String() != other.String() {
		t.Errorf("advertisement without a link-layer option: %s", got)
	}
	hop := slices.Clone(na6)
	hop[14+7] = 64
	if got := answerFrom(hop, a6, own); got != nil {
		t.Errorf("advertisement with hop limit 64 counted: %s", got)
	}
}

func TestValidateIP(t *testing.T) {
	for _, c := range []struct {
		address, iface string
		ok             bool
	}{
		{"198.18.0.100/24", "eth0", true},
		{"fd00:198:18::100/64", "bond0.100", true},
		{"198.18.0.100", "eth0", false},
		{"0.0.0.0/0", "eth0", false},
		{"224.0.0.1/4", "eth0", false},
		{"127.0.0.2/8", "eth0", false},
		{"::ffff:198.18.0.100/120", "eth0", false},
		{"198.18.0.100/24", "", false},
		{"198.18.0.100/24", "a-very-long-interface-name", false},
		{"198.18.0.100/24", "eth0:1", false},
	} {
		err := Validate("web", spec.Resource{Name: "vip", Kind: spec.KindIP, Address: c.address, Interface: c.iface}, Env{})
		if (err == nil) != c.ok {
			t.Errorf("Validate(%s on %q) = %v, want ok %v", c.address, c.iface, err, c.ok)
		}
		if err != nil && errors.Is(err, ErrUnknownKind) {
			t.Errorf("%v", err)
		}
	}
}
