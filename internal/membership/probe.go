package membership

import (
	"net"
	"slices"
	"sync"
	"time"
)

// ProbeWindow is how many of the latest probes of a peer on a link the
// link statistics cover.
const ProbeWindow = 30

// LinkStat is this member's measure of one peer on one link, over the last
// ProbeWindow probes (one per probe interval).
type LinkStat struct {
	Peer string
	Link int
	Addr string
	Up   bool
	// Sent and Lost count the probes in the window.
	Sent, Lost int
	// RTT is the median round trip of the answered probes in the window,
	// Max the largest.
	RTT, Max time.Duration
	// LastAck is when the peer last answered on this link.
	LastAck time.Time
}

type probeKey struct {
	peer string
	link int
}

// probeRing holds the latest probes of one peer on one link.
type probeRing struct {
	ok       [ProbeWindow]bool
	rtt      [ProbeWindow]time.Duration
	n, next  int
	inFlight bool
	lastAck  time.Time
}

func (r *probeRing) add(ok bool, rtt time.Duration, now time.Time) {
	r.ok[r.next], r.rtt[r.next] = ok, rtt
	r.next = (r.next + 1) % ProbeWindow
	r.n = min(r.n+1, ProbeWindow)
	if ok {
		r.lastAck = now
	}
}

// prober measures every link to every peer with memberlist's own UDP ping
// (encrypted with the cluster key, like the gossip), so that a flapping
// link shows as loss before memberlist declares anything.
type prober struct {
	mu    sync.Mutex
	rings map[probeKey]*probeRing // guarded by mu
	stop  chan struct{}
	once  sync.Once
}

func (m *Membership) startProber(every time.Duration) {
	m.probe = &prober{rings: map[probeKey]*probeRing{}, stop: make(chan struct{})}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-m.probe.stop:
				return
			case <-t.C:
				m.probeAll()
			}
		}
	}()
}

func (m *Membership) stopProber() {
	if m.probe != nil {
		m.probe.once.Do(func() { close(m.probe.stop) })
	}
}

// probeAll pings every known peer on every link, skipping a probe still in
// flight (a dead link holds one for the probe timeout).
func (m *Membership) probeAll() {
	type target struct {
		key  probeKey
		addr string
	}
	var ts []target
	m.mu.Lock()
	for n, p := range m.peers {
		if n == m.opts.Name {
			continue
		}
		for i, l := range p.Links {
			if l.Addr != "" && i < len(m.lists) {
				ts = append(ts, target{probeKey{n, i}, l.Addr})
			}
		}
	}
	m.mu.Unlock()
	pr := m.probe
	for _, t := range ts {
		pr.mu.Lock()
		r := pr.rings[t.key]
		if r == nil {
			r = &probeRing{}
			pr.rings[t.key] = r
		}
		busy := r.inFlight
		r.inFlight = true
		pr.mu.Unlock()
		if busy {
			continue
		}
		go func() {
			ok, rtt := false, time.Duration(0)
			if ua, err := net.ResolveUDPAddr("udp", t.addr); err == nil {
				d, err := m.lists[t.key.link].Ping(t.key.peer, ua)
				ok, rtt = err == nil, d
			}
			pr.mu.Lock()
			r.inFlight = false
			r.add(ok, rtt, time.Now())
			pr.mu.Unlock()
		}()
	}
}

// LinkStats returns the measure of every peer on every link, by peer and
// link.
func (m *Membership) LinkStats() []LinkStat {
	peers := m.Peers()
	var out []LinkStat
	pr := m.probe
	for n, p := range peers {
		if n == m.opts.Name {
			continue
		}
		for i, l := range p.Links {
			s := LinkStat{Peer: n, Link: i, Addr: l.Addr, Up: l.Up}
			if pr != nil {
				pr.mu.Lock()
				if r := pr.rings[probeKey{n, i}]; r != nil {
					var rtts []time.Duration
					for j := range r.n {
						s.Sent++
						if r.ok[j] {
							rtts = append(rtts, r.rtt[j])
						} else {
							s.Lost++
						}
					}
					s.LastAck = r.lastAck
					if len(rtts) > 0 {
						slices.Sort(rtts)
						s.RTT, s.Max = rtts[len(rtts)/2], rtts[len(rtts)-1]
					}
				}
				pr.mu.Unlock()
			}
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b LinkStat) int {
		if a.Peer != b.Peer {
			if a.Peer < b.Peer {
				return -1
			}
			return 1
		}
		return a.Link - b.Link
	})
	return out
}
