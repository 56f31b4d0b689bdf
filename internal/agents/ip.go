package agents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// Duplicate address check and announcements of a floating address.
const (
	// DefaultDADWait is how long IPUp listens for another host answering
	// for the address before it adds it (RFC 5227 waits seconds; a
	// failover cannot). Env.DADWait overrides it.
	DefaultDADWait = 150 * time.Millisecond
	// dadProbes probes are sent, spread evenly over the wait.
	dadProbes = 3
)

// announceAt is when the gratuitous ARP (IPv4) or unsolicited neighbour
// advertisement (IPv6) rounds go out, from the first one: the first is sent
// before IPUp returns, the others in the background, in case the first is
// lost.
var announceAt = []time.Duration{0, 250 * time.Millisecond, time.Second}

// ipResource is a floating address on an interface, managed through netlink.
// IPUp checks that no other host answers for the address (ARP probes for
// IPv4, neighbour solicitations for IPv6), adds it, then announces it
// (gratuitous ARP / unsolicited neighbour advertisement) so that the
// neighbours' caches point at this member at once. IPDown removes it; Check
// and Probe look for it on the interface.
type ipResource struct {
	base
	addr netip.Prefix

	mu sync.Mutex
	// stopAnnouncing ends the background announcements of the last IPUp.
	stopAnnouncing context.CancelFunc
}

func parseIPAddress(r spec.Resource) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(r.Address)
	if err != nil {
		return pfx, fmt.Errorf("address %q is not an address with a prefix length, such as 198.18.0.100/24", r.Address)
	}
	a := pfx.Addr()
	switch {
	case a.Is4In6():
		return pfx, fmt.Errorf("address %q is an IPv4-mapped IPv6 address: write the IPv4 address with its prefix length, such as %s/24", r.Address, a.Unmap())
	case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return pfx, fmt.Errorf("address %q cannot be a floating address: give a unicast address, such as 198.18.0.100/24", r.Address)
	}
	return pfx, nil
}

func validateInterface(name string) error {
	switch {
	case name == "":
		return errors.New("interface: give the network interface of the address")
	case len(name) >= unix.IFNAMSIZ || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("interface %q is not a network interface name (at most 15 characters, no '/', ':' or spaces)", name)
	}
	return nil
}

func newIP(b base) (*ipResource, error) {
	pfx, err := parseIPAddress(b.res)
	if err != nil {
		return nil, err
	}
	if err := validateInterface(b.res.Interface); err != nil {
		return nil, err
	}
	return &ipResource{base: b, addr: pfx}, nil
}

func validateIP(r spec.Resource) error {
	if _, err := parseIPAddress(r); err != nil {
		return err
	}
	return validateInterface(r.Interface)
}

// Run implements Resource.
func (x *ipResource) Run(ctx context.Context, p Phase, c Call) Result {
	t0 := time.Now()
	var r Result
	switch p {
	case IPUp:
		ctx, cancel := context.WithTimeout(ctx, x.timeout(p, c))
		r = x.up(ctx)
		cancel()
	case IPDown:
		r = x.down()
	case Check, Probe:
		r = x.check(p)
	default:
		if !known(p) {
			r = x.unknownPhase(p)
		} else {
			return x.skipped(p)
		}
	}
	return x.done(r, t0)
}

// family is the netlink address family of the address.
func (x *ipResource) family() int {
	if x.addr.Addr().Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// ipNet is the address as netlink wants it.
func (x *ipResource) ipNet() *net.IPNet {
	a := x.addr.Addr()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(x.addr.Bits(), a.BitLen())}
}

// fail fills r as a failure.
func fail(r *Result, sev Severity, format string, args ...any) {
	r.Status, r.Severity, r.Err = Failed, sev, fmt.Sprintf(format, args...)
}

// privileged reports whether err means the agent lacks a capability.
func privileged(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
}

// netlinkFailure fills r with a netlink error and what to do about it.
func (x *ipResource) netlinkFailure(r *Result, what string, err error) {
	if privileged(err) {
		fail(r, Hard, "%s on %s: %v: the agent must run as root (or with CAP_NET_ADMIN and CAP_NET_RAW)", what, x.res.Interface, err)
		return
	}
	fail(r, Soft, "%s on %s: %v: check the member's network configuration (ip addr show dev %s)", what, x.res.Interface, err, x.res.Interface)
}

// link looks up the interface. A nil link with a nil error means it does
// not exist.
func (x *ipResource) link() (netlink.Link, error) {
	l, err := netlink.LinkByName(x.res.Interface)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	return l, err
}

func (x *ipResource) noInterface() string {
	return fmt.Sprintf("interface %s does not exist on this member: check the service's interface or the member's network", x.res.Interface)
}

// addrList lists the addresses of the family on link (every link when link
// is nil), retrying a dump that a concurrent change interrupted.
func addrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	var err error
	for range 5 {
		var as []netlink.Addr
		as, err = netlink.AddrList(link, family)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return as, err
		}
	}
	return nil, err
}

// match is what a list of addresses says about the resource's address.
type match struct {
	exact *netlink.Addr // the address with the same prefix length
	other *netlink.Addr // the same address with another prefix length
}

// findAddr looks for the address among as.
func findAddr(as []netlink.Addr, want netip.Prefix) match {
	var m match
	for i := range as {
		a := &as[i]
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != want.Addr() {
			continue
		}
		if bits, _ := a.Mask.Size(); bits == want.Bits() {
			m.exact = a
		} else if m.other == nil {
			m.other = a
		}
	}
	return m
}

func (x *ipResource) check(p Phase) Result {
	r := x.result(p, "addr list")
	link, err := x.link()
	switch {
	case err != nil:
		x.netlinkFailure(&r, "cannot look up the interface", err)
		return r
	case link == nil && p == Probe:
		r.Status, r.RC, r.Err = NotRunning, 0, x.noInterface()
		return r
	case link == nil:
		fail(&r, Hard, "%s", x.noInterface())
		return r
	}
	as, err := addrList(link, x.family())
	if err != nil {
		x.netlinkFailure(&r, "cannot list the addresses", err)
		return r
	}
	switch m := findAddr(as, x.addr); {
	case m.exact != nil && m.exact.Flags&unix.IFA_F_DADFAILED != 0:
		fail(&r, Hard, "%s is on %s but the kernel found another host using it (dadfailed): find that host, then remove the address (ip addr del %s dev %s)", x.addr, x.res.Interface, x.addr, x.res.Interface)
	case m.exact != nil:
		r.Status, r.RC = OK, 0
	case m.other != nil:
		r.Status, r.RC = NotRunning, 0
		r.Err = fmt.Sprintf("%s is not on %s (%s is, with another prefix length)", x.addr, x.res.Interface, m.other.IPNet)
	default:
		r.Status, r.RC = NotRunning, 0
		r.Err = fmt.Sprintf("%s is not on %s", x.addr, x.res.Interface)
	}
	return r
}

func (x *ipResource) up(ctx context.Context) Result {
	r := x.result(IPUp, "addr add")
	link, err := x.link()
	switch {
	case err != nil:
		x.netlinkFailure(&r, "cannot look up the interface", err)
		return r
	case link == nil:
		fail(&r, Hard, "%s", x.noInterface())
		return r
	}
	la := link.Attrs()
	all, err := addrList(nil, x.family())
	if err != nil {
		x.netlinkFailure(&r, "cannot list the addresses", err)
		return r
	}
	var here []netlink.Addr
	for _, a := range all {
		if a.LinkIndex == la.Index {
			here = append(here, a)
		}
	}
	if m := findAddr(here, x.addr); m.exact != nil {
		r.Status, r.RC, r.Note = OK, 0, fmt.Sprintf("%s was already on %s", x.addr, x.res.Interface)
		return r
	} else if m.other != nil {
		fail(&r, Hard, "%s is already on %s with another prefix length: remove it (ip addr del %s dev %s) or fix the service's address", m.other.IPNet, x.res.Interface, m.other.IPNet, x.res.Interface)
		return r
	}
	if m := findAddr(all, x.addr); m.exact != nil || m.other != nil {
		a := m.exact
		if a == nil {
			a = m.other
		}
		name := fmt.Sprintf("interface #%d", a.LinkIndex)
		if l, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
			name = l.Attrs().Name
		}
		fail(&r, Hard, "%s is already on %s of this member, not on %s: remove it there (ip addr del %s dev %s) or fix the service's interface", a.IPNet, name, x.res.Interface, a.IPNet, name)
		return r
	}
	switch {
	case la.Flags&net.FlagUp == 0:
		fail(&r, Hard, "interface %s is down on this member: bring it up (ip link set %s up) or check the member's network", x.res.Interface, x.res.Interface)
		return r
	case la.OperState == netlink.OperDown || la.OperState == netlink.OperLowerLayerDown:
		fail(&r, Hard, "interface %s has no carrier on this member (operational state %s): check its cable, switch port or lower device", x.res.Interface, la.OperState)
		return r
	}

	ll := linkLayer{index: la.Index, mac: la.HardwareAddr}
	resolves := la.EncapType == "ether" && len(la.HardwareAddr) == 6 && la.RawFlags&unix.IFF_NOARP == 0
	if resolves {
		other, err := dad(ctx, ll, x.addr.Addr(), x.env.DADWait)
		switch {
		case other != nil:
			fail(&r, Hard, "%s already answers from %s; another host uses it: refusing to take it over (remove it from that host, or give the service another address)", x.addr.Addr(), other)
			return r
		case err != nil && ctx.Err() != nil:
			fail(&r, Soft, "the check that no other host uses %s did not end before the start timeout: %v", x.addr.Addr(), err)
			return r
		case privileged(err):
			fail(&r, Hard, "cannot check that no other host uses %s on %s: %v: the agent must run as root (or with CAP_NET_RAW)", x.addr.Addr(), x.res.Interface, err)
			return r
		case err != nil:
			fail(&r, Soft, "cannot check that no other host uses %s on %s: %v: check the interface (ip link show %s)", x.addr.Addr(), x.res.Interface, err, x.res.Interface)
			return r
		}
	}

	x.promoteSecondaries()
	a := &netlink.Addr{IPNet: x.ipNet()}
	if resolves && !x.addr.Addr().Is4() {
		// Checked above: the kernel's own duplicate address detection would
		// only keep the address unusable (tentative) for another second.
		a.Flags = unix.IFA_F_NODAD
	}
	if err := netlink.AddrAdd(link, a); err != nil && !errors.Is(err, syscall.EEXIST) {
		x.netlinkFailure(&r, "cannot add "+x.addr.String(), err)
		return r
	}
	r.Status, r.RC = OK, 0
	if !resolves {
		r.Note = fmt.Sprintf("%s does not resolve addresses (no Ethernet address or NOARP): added without a duplicate check or announcement", x.res.Interface)
		return r
	}
	r.Note = x.announce(ll)
	return r
}

// announce sends the first announcement of the address now and the others
// in the background, and says what it did.
func (x *ipResource) announce(ll linkLayer) string {
	frames := announcements(ll.mac, x.addr.Addr())
	what, check := "gratuitous ARP", fmt.Sprintf("no other host answered ARP probes for %s within %s", x.addr.Addr(), x.env.DADWait)
	if !x.addr.Addr().Is4() {
		what = "unsolicited neighbour advertisement"
		check = fmt.Sprintf("no other host answered neighbour solicitations for %s within %s", x.addr.Addr(), x.env.DADWait)
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.mu.Lock()
	if x.stopAnnouncing != nil {
		x.stopAnnouncing()
	}
	x.stopAnnouncing = cancel
	x.mu.Unlock()

	// The socket is closed in the background: closing a packet socket
	// waits for an RCU grace period (milliseconds).
	t0 := time.Now()
	fd, err := packetSocket(ll.index, 0, nil)
	if err == nil {
		if err = sendFrames(fd, ll.index, frames); err != nil {
			go unix.Close(fd)
		}
	}
	if err != nil {
		cancel()
		x.log.Warn(what+" failed: neighbours may keep sending to the previous owner until their caches expire", "address", x.addr.String(), "interface", x.res.Interface, "err", err)
		return fmt.Sprintf("%s; %s failed (%v): neighbours may reach %s only when their caches expire", check, what, err, x.addr.Addr())
	}
	go func() {
		defer unix.Close(fd)
		defer cancel()
		for i, at := range announceAt[1:] {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(t0.Add(at))):
			}
			if !x.stillUp(ll.index) {
				x.log.Debug("address gone: "+what+" stopped", "address", x.addr.String(), "interface", x.res.Interface)
				return
			}
			if err := sendFrames(fd, ll.index, frames); err != nil {
				x.log.Warn(what+" repeat failed", "address", x.addr.String(), "interface", x.res.Interface, "round", i+2, "err", err)
				return
			}
		}
		x.log.Debug(what+" sent", "address", x.addr.String(), "interface", x.res.Interface, "rounds", len(announceAt))
	}()
	return fmt.Sprintf("%s; %s sent from %s, repeated %d times within %s in the background", check, what, ll.mac, len(announceAt)-1, announceAt[len(announceAt)-1])
}

// stillUp reports whether the address is still on the interface with this
// index.
func (x *ipResource) stillUp(index int) bool {
	as, err := addrList(nil, x.family())
	if err != nil {
		return false
	}
	for _, a := range as {
		if a.LinkIndex == index && findAddr([]netlink.Addr{a}, x.addr).exact != nil {
			return true
		}
	}
	return false
}

// promoteSecondaries turns on promote_secondaries for the interface, so
// that removing one floating address never removes the other addresses of
// its subnet with it (the kernel's default when the first address of a
// subnet goes). Failing to is logged, not fatal.
func (x *ipResource) promoteSecondaries() {
	if !x.addr.Addr().Is4() {
		return
	}
	path := "/proc/sys/net/ipv4/conf/" + x.res.Interface + "/promote_secondaries"
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return
	}
	if err == nil {
		err = os.WriteFile(path, []byte("1\n"), 0o644)
	}
	if err != nil {
		x.log.Warn("cannot turn on promote_secondaries: removing the first address of a subnet would remove the others with it", "interface", x.res.Interface, "err", err)
		return
	}
	x.log.Info("turned on promote_secondaries, so removing one address of a subnet keeps the others", "interface", x.res.Interface)
}

func (x *ipResource) down() Result {
	x.mu.Lock()
	if x.stopAnnouncing != nil {
		x.stopAnnouncing()
		x.stopAnnouncing = nil
	}
	x.mu.Unlock()

	r := x.result(IPDown, "addr del")
	link, err := x.link()
	switch {
	case err != nil:
		x.netlinkFailure(&r, "cannot look up the interface", err)
		return r
	case link == nil:
		r.Status, r.RC = OK, 0
		r.Note = fmt.Sprintf("interface %s does not exist, so %s is not on it", x.res.Interface, x.addr)
		return r
	}
	as, err := addrList(link, x.family())
	if err == nil && findAddr(as, x.addr).exact == nil {
		r.Status, r.RC, r.Note = OK, 0, fmt.Sprintf("%s was not on %s", x.addr, x.res.Interface)
		return r
	}
	// When the listing failed, try the delete anyway.
	err = netlink.AddrDel(link, &netlink.Addr{IPNet: x.ipNet()})
	switch {
	case err == nil:
		r.Status, r.RC = OK, 0
	case errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENODEV):
		r.Status, r.RC, r.Note = OK, 0, fmt.Sprintf("%s was not on %s", x.addr, x.res.Interface)
	default:
		x.netlinkFailure(&r, "cannot remove "+x.addr.String(), err)
	}
	return r
}

// linkLayer is what the duplicate check and the announcements need of the
// interface.
type linkLayer struct {
	index int
	mac   net.HardwareAddr
}

// Ethernet types and addresses.
const (
	ethTypeARP  = 0x0806
	ethTypeIPv6 = 0x86dd
	ethHeader   = 14
	ipv6Header  = 40
	protoICMPv6 = 58
	ndNS        = 135 // neighbour solicitation
	ndNA        = 136 // neighbour advertisement
)

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes     = netip.MustParseAddr("ff02::1")
)

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// ethFrame is an Ethernet frame, padded to the minimum length.
func ethFrame(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := make([]byte, 0, max(60, ethHeader+len(payload)))
	f = append(f, dst...)
	f = append(f, src...)
	f = binary.BigEndian.AppendUint16(f, typ)
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

// arpFrame is a broadcast ARP packet for Ethernet and IPv4.
func arpFrame(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	p := make([]byte, 0, 28)
	p = binary.BigEndian.AppendUint16(p, 1)      // Ethernet
	p = binary.BigEndian.AppendUint16(p, 0x0800) // IPv4
	p = append(p, 6, 4)
	p = binary.BigEndian.AppendUint16(p, op)
	p = append(p, sha...)
	p = append(p, spa.AsSlice()...)
	p = append(p, tha...)
	p = append(p, tpa.AsSlice()...)
	return ethFrame(broadcastMAC, sha, ethTypeARP, p)
}

// icmp6Frame is an ICMPv6 packet with hop limit 255 (as neighbour discovery
// requires) in an Ethernet frame; it computes the checksum.
func icmp6Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, msg []byte) []byte {
	s, d := src.As16(), dst.As16()
	sum := uint32(0)
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(s[:])
	add(d[:])
	sum += uint32(len(msg)) + protoICMPv6
	msg[2], msg[3] = 0, 0
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))

	p := make([]byte, 0, ipv6Header+len(msg))
	p = append(p, 0x60, 0, 0, 0)
	p = binary.BigEndian.AppendUint16(p, uint16(len(msg)))
	p = append(p, protoICMPv6, 255)
	p = append(p, s[:]...)
	p = append(p, d[:]...)
	p = append(p, msg...)
	return ethFrame(dstMAC, srcMAC, ethTypeIPv6, p)
}

// multicastMAC is the Ethernet address of an IPv6 multicast group.
func multicastMAC(group netip.Addr) net.HardwareAddr {
	g := group.As16()
	return net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
}

// solicitedNode is the solicited-node multicast group of an address.
func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// probeFrame is an RFC 5227 ARP probe (sender address 0.0.0.0) for IPv4, or
// an RFC 4862 duplicate address detection neighbour solicitation (from ::
// to the solicited-node group) for IPv6.
func probeFrame(mac net.HardwareAddr, a netip.Addr) []byte {
	if a.Is4() {
		return arpFrame(1, mac, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), a)
	}
	t := a.As16()
	msg := append([]byte{ndNS, 0, 0, 0, 0, 0, 0, 0}, t[:]...)
	group := solicitedNode(a)
	return icmp6Frame(multicastMAC(group), mac, netip.IPv6Unspecified(), group, msg)
}

// announcements are the frames of one announcement round: for IPv4 an ARP
// announcement (a request with sender = target = the address, RFC 5227)
// and a gratuitous ARP reply (target hardware address = sender's, as Linux
// wants of gratuitous replies), for equipment that heeds only one kind; for
// IPv6 an unsolicited neighbour advertisement to all nodes with the
// override flag and the target link-layer address.
func announcements(mac net.HardwareAddr, a netip.Addr) [][]byte {
	if a.Is4() {
		return [][]byte{
			arpFrame(1, mac, a, make(net.HardwareAddr, 6), a),
			arpFrame(2, mac, a, mac, a),
		}
	}
	t := a.As16()
	msg := append([]byte{ndNA, 0, 0, 0, 0x20, 0, 0, 0}, t[:]...) // flags: override
	msg = append(msg, 2, 1)                                      // option: target link-layer address, 8 bytes
	msg = append(msg, mac...)
	return [][]byte{icmp6Frame(multicastMAC(allNodes), mac, a, allNodes, msg)}
}

// answerFrom returns the Ethernet address of another host that frame shows
// using address a (an ARP packet from a, or a neighbour advertisement for
// a), or nil.
func answerFrom(frame []byte, a netip.Addr, own net.HardwareAddr) net.HardwareAddr {
	if len(frame) < ethHeader {
		return nil
	}
	var mac net.HardwareAddr
	p := frame[ethHeader:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case ethTypeARP:
		if !a.Is4() || len(p) < 28 || binary.BigEndian.Uint16(p[0:]) != 1 || binary.BigEndian.Uint16(p[2:]) != 0x0800 || p[4] != 6 || p[5] != 4 {
			return nil
		}
		if netip.AddrFrom4([4]byte(p[14:18])) != a {
			return nil
		}
		mac = p[8:14]
	case ethTypeIPv6:
		if a.Is4() || len(p) < ipv6Header+24 || p[0]>>4 != 6 || p[6] != protoICMPv6 || p[7] != 255 {
			return nil
		}
		m := p[ipv6Header:]
		if n := int(binary.BigEndian.Uint16(p[4:])); n < len(m) {
			m = m[:n]
		}
		if len(m) < 24 || m[0] != ndNA || m[1] != 0 || netip.AddrFrom16([16]byte(m[8:24])) != a {
			return nil
		}
		mac = frame[6:12]
		for o := m[24:]; len(o) >= 8 && o[1] != 0 && len(o) >= 8*int(o[1]); o = o[8*int(o[1]):] {
			if o[0] == 2 {
				mac = o[2:8]
			}
		}
	default:
		return nil
	}
	if string(mac) == string(own) {
		return nil
	}
	return append(net.HardwareAddr(nil), mac...)
}

// packetSocket is an AF_PACKET socket bound to an interface for one
// Ethernet type (0: send only).
func packetSocket(index int, ethType uint16, filter []unix.SockFilter) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if ethType == 0 {
		return fd, nil
	}
	if len(filter) > 0 {
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("packet filter: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethType), Ifindex: index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind packet socket: %w", err)
	}
	return fd, nil
}

// send sends one Ethernet frame on the interface.
func send(fd, index int, frame []byte) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(binary.BigEndian.Uint16(frame[12:])), Ifindex: index, Halen: 6}
	copy(sa.Addr[:], frame[:6])
	return unix.Sendto(fd, frame, 0, sa)
}

// sendFrames sends frames on the interface.
func sendFrames(fd, index int, frames [][]byte) error {
	for _, f := range frames {
		if err := send(fd, index, f); err != nil {
			return err
		}
	}
	return nil
}

// naFilter passes only ICMPv6 neighbour advertisements (without extension
// headers, which neighbour discovery does not use).
var naFilter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: ethTypeIPv6, Jf: 5},
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: ethHeader + 6},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: protoICMPv6, Jf: 3},
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: ethHeader + ipv6Header},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: ndNA, Jf: 1},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

// dad sends probes for address a on the interface for wait and returns the
// Ethernet address of another host that answers, if any.
func dad(ctx context.Context, ll linkLayer, a netip.Addr, wait time.Duration) (net.HardwareAddr, error) {
	ethType, filter := uint16(ethTypeARP), []unix.SockFilter(nil)
	if !a.Is4() {
		ethType, filter = ethTypeIPv6, naFilter
	}
	fd, err := packetSocket(ll.index, ethType, filter)
	if err != nil {
		return nil, err
	}
	// Closing waits for an RCU grace period: not on the way of IPUp.
	defer func() { go unix.Close(fd) }()
	probe := probeFrame(ll.mac, a)
	t0 := time.Now()
	deadline := t0.Add(wait)
	sent := 0
	buf := make([]byte, 1600)
	for {
		now := time.Now()
		if sent < dadProbes && !now.Before(t0.Add(time.Duration(sent)*wait/dadProbes)) {
			if err := send(fd, ll.index, probe); err != nil {
				return nil, fmt.Errorf("send probe: %w", err)
			}
			sent++
			continue
		}
		if !now.Before(deadline) {
			return nil, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wake := deadline
		if sent < dadProbes {
			wake = t0.Add(time.Duration(sent) * wait / dadProbes)
		}
		ms := int((time.Until(wake) + time.Millisecond - 1) / time.Millisecond)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, max(0, min(ms, 20))); err != nil && !errors.Is(err, unix.EINTR) {
			return nil, fmt.Errorf("poll: %w", err)
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		for {
			n, from, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("receive: %w", err)
			}
			if sll, ok := from.(*unix.SockaddrLinklayer); ok && sll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if mac := answerFrom(buf[:n], a, ll.mac); mac != nil {
				return mac, nil
			}
		}
	}
}
