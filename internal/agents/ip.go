package agents

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// arpTimeout bounds the gratuitous ARP sent after an address comes up.
const arpTimeout = 5 * time.Second

// ipResource is a floating address: `ip addr add` at IPUp (then a
// gratuitous ARP with arping, when installed, in the background), `ip addr
// del` at IPDown, `ip -o addr show` at Check and Probe. It is kept small:
// netlink may replace the ip commands.
type ipResource struct {
	base
	addr netip.Prefix
}

// errNoInterface is the outcome of a lookup on an interface that does not
// exist on this member.
var errNoInterface = errors.New("no such interface")

func newIP(b base) (*ipResource, error) {
	pfx, err := netip.ParsePrefix(b.res.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q is not an address with a prefix length, such as 198.18.0.100/24", b.res.Address)
	}
	if b.res.Interface == "" {
		return nil, errors.New("interface: give the network interface of the address")
	}
	return &ipResource{base: b, addr: pfx}, nil
}

func validateIP(r spec.Resource) error {
	if _, err := netip.ParsePrefix(r.Address); err != nil {
		return fmt.Errorf("address %q is not an address with a prefix length, such as 198.18.0.100/24", r.Address)
	}
	return executable("ip")
}

// Run implements Resource.
func (x *ipResource) Run(ctx context.Context, p Phase, c Call) Result {
	t0 := time.Now()
	var r Result
	switch p {
	case IPUp:
		r = x.up(ctx, c)
	case IPDown:
		r = x.down(ctx, c)
	case Check, Probe:
		r = x.result(p, "ip addr show")
		up, res := x.present(ctx, p, c)
		switch {
		case res != nil && errors.Is(res.err, errNoInterface) && p == Probe:
			r.Status, r.RC, r.Err = NotRunning, 0, res.Err
		case res != nil:
			r = res.Result
		case up:
			r.Status, r.RC = OK, 0
		default:
			r.Status, r.RC = NotRunning, 0
			r.Err = fmt.Sprintf("%s is not on %s", x.addr, x.res.Interface)
		}
	default:
		if !known(p) {
			r = x.unknownPhase(p)
		} else {
			return x.skipped(p)
		}
	}
	return x.done(r, t0)
}

// failure is a Result that ended a lookup, with its cause.
type failure struct {
	Result
	err error
}

// present reports whether the address is on the interface.
func (x *ipResource) present(ctx context.Context, p Phase, c Call) (bool, *failure) {
	show := x.command(ctx, p, c, "ip addr show", []string{"ip", "-o", "addr", "show", "dev", x.res.Interface})
	if show.Status != OK {
		f := &failure{Result: show}
		for _, l := range show.Output {
			if strings.Contains(l, "does not exist") {
				f.Status, f.Severity = Failed, Hard
				f.Err = fmt.Sprintf("interface %s does not exist on this member", x.res.Interface)
				f.err = errNoInterface
			}
		}
		return false, f
	}
	return hasAddr(show.Output, x.addr), nil
}

// hasAddr looks for the address in the lines of `ip -o addr show`
// ("2: eth0    inet 198.18.0.10/24 brd ... scope global eth0 ...").
func hasAddr(lines []string, want netip.Prefix) bool {
	for _, l := range lines {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet" && f[i] != "inet6" {
				continue
			}
			if got, err := netip.ParsePrefix(f[i+1]); err == nil && got == want {
				return true
			}
		}
	}
	return false
}

func (x *ipResource) up(ctx context.Context, c Call) Result {
	up, fail := x.present(ctx, IPUp, c)
	if fail != nil {
		fail.Phase = IPUp
		return fail.Result
	}
	if up {
		r := x.result(IPUp, "ip addr add")
		r.Status, r.RC, r.Note = OK, 0, fmt.Sprintf("%s was already on %s", x.addr, x.res.Interface)
		return r
	}
	x.promoteSecondaries()
	r := x.command(ctx, IPUp, c, "ip addr add", []string{"ip", "addr", "add", x.addr.String(), "dev", x.res.Interface})
	if r.Status == OK {
		r.Note = x.announce()
	}
	return r
}

// announce sends a gratuitous ARP for an IPv4 address in the background,
// so that the start half does not wait for it, and says what it did.
func (x *ipResource) announce() string {
	if !x.addr.Addr().Is4() {
		x.log.Info("no unsolicited neighbour advertisement sent for an IPv6 address (not implemented with the ip command)", "address", x.addr.String())
		return "no unsolicited neighbour advertisement sent (IPv6)"
	}
	arping, err := exec.LookPath("arping")
	if err != nil {
		x.log.Info("arping not found; no gratuitous ARP sent (install arping)", "address", x.addr.String(), "interface", x.res.Interface)
		return "arping not found; no gratuitous ARP sent"
	}
	argv := []string{arping, "-U", "-c", "2", "-I", x.res.Interface, x.addr.Addr().String()}
	go func() {
		o := run{argv: argv, env: baseEnv(), dir: "/", timeout: arpTimeout}.exec(context.Background())
		if o.ok() {
			x.log.Info("gratuitous ARP sent", "address", x.addr.String(), "interface", x.res.Interface)
			return
		}
		x.log.Warn("gratuitous ARP failed", "err", o.describe("arping", arpTimeout), "output", strings.Join(o.output, " / "))
	}()
	return "gratuitous ARP sent in the background (arping -U -c 2)"
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

func (x *ipResource) down(ctx context.Context, c Call) Result {
	up, fail := x.present(ctx, IPDown, c)
	if fail != nil && errors.Is(fail.err, errNoInterface) {
		r := x.result(IPDown, "ip addr del")
		r.Status, r.RC = OK, 0
		r.Note = fmt.Sprintf("interface %s does not exist, so %s is not on it", x.res.Interface, x.addr)
		return r
	}
	if fail == nil && !up {
		r := x.result(IPDown, "ip addr del")
		r.Status, r.RC, r.Note = OK, 0, fmt.Sprintf("%s was not on %s", x.addr, x.res.Interface)
		return r
	}
	// When the lookup failed for another reason, try the delete anyway.
	return x.command(ctx, IPDown, c, "ip addr del", []string{"ip", "addr", "del", x.addr.String(), "dev", x.res.Interface})
}
