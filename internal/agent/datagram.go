package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/internal/cdb"
)

// Renewals by datagram. A member renews its lease with the director over
// TCP (renewOnce), once a renewal period, on every link at once. On a link
// that loses packets, TCP retransmits a lost segment after 200 ms, then
// 400, then 800, and every renewal behind it waits in the same stream: at
// 30% loss each way the director heard nothing from a healthy member for
// more than a lease, found it DOWN and fenced it (docs/BUGS.md). So each
// member also sends its renewal as a datagram on every link, four times a
// renewal period, through the gossip layer (sealed with the cluster key).
// The director grants one, by a datagram back, only when it has not
// renewed the member for a renewal period by either path: the datagrams
// stand in for the renewals that do not come, and the member is renewed
// no more often than before (more often would make the director find a
// crashed member DOWN later: it waits a lease after the last renewal).
//
// The lease's rules are the same on both paths: the director grants only
// while it is the settled director and the member is not fenced (a fenced
// member's first grant clears the fence record, which only the RPC path
// does); the member counts a grant from when it sent the request. A
// datagram names its sender inside the seal, so any holder of the cluster
// key could forge one, as it could forge gossip; the director refuses a
// request that is not newer than the last it took from that member (a
// replay), or whose send time is more than datagramSkew away from its own
// clock (a replay from long ago, or clocks too far apart: the RPC path
// still renews).

// datagramMagic opens every renewal datagram; the byte after it says
// which kind.
const datagramMagic = "vigil-renew/1"

const (
	dgRequest = 'r'
	dgGrant   = 'g'
)

// datagramSkew bounds how far a request's send time may be from the
// director's clock.
const datagramSkew = 5 * time.Second

// maxDatagram bounds a renewal datagram (a member name is at most 63
// bytes; links at most 8).
const maxDatagram = 256

// renewRequest is a member's request for its lease.
type renewRequest struct {
	Member string
	Sent   int64 // when it was sent, unix nanoseconds: its id
	Links  []bool
	DLM    uint64 // the member's lock manager incarnation
}

// renewGrant is the director's grant of one request.
type renewGrant struct {
	Member string // whose request
	Sent   int64  // the request's Sent
	Index  uint64 // the director's state machine index at the grant
}

var errDatagram = errors.New("not a renewal datagram")

func appendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

func (r *renewRequest) encode() []byte {
	b := append([]byte(datagramMagic), dgRequest)
	b = appendString(b, r.Member)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Sent))
	var bits byte
	for i, up := range r.Links {
		if up {
			bits |= 1 << i
		}
	}
	b = append(b, byte(len(r.Links)), bits)
	return binary.BigEndian.AppendUint64(b, r.DLM)
}

func (g *renewGrant) encode() []byte {
	b := append([]byte(datagramMagic), dgGrant)
	b = appendString(b, g.Member)
	b = binary.BigEndian.AppendUint64(b, uint64(g.Sent))
	return binary.BigEndian.AppendUint64(b, g.Index)
}

// reader takes a datagram apart; any shortfall makes it fail.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) str() string { return string(r.take(int(r.byte()))) }

// decodeDatagram returns a *renewRequest or a *renewGrant.
func decodeDatagram(b []byte) (any, error) {
	if len(b) > maxDatagram || len(b) <= len(datagramMagic) || string(b[:len(datagramMagic)]) != datagramMagic {
		return nil, errDatagram
	}
	r := &reader{b: b[len(datagramMagic)+1:]}
	var v any
	switch b[len(datagramMagic)] {
	case dgRequest:
		q := &renewRequest{Member: r.str(), Sent: int64(r.u64())}
		n, bits := int(r.byte()), r.byte()
		if n > 8 || n < 8 && bits>>n != 0 {
			// At most 8 links; no bit set past the last.
			return nil, errDatagram
		}
		for i := range n {
			q.Links = append(q.Links, bits&(1<<i) != 0)
		}
		q.DLM = r.u64()
		v = q
	case dgGrant:
		v = &renewGrant{Member: r.str(), Sent: int64(r.u64()), Index: r.u64()}
	default:
		return nil, errDatagram
	}
	if r.bad || len(r.b) != 0 {
		return nil, errDatagram
	}
	return v, nil
}

// datagrams is a member's side of renewals by datagram: the requests in
// flight.
type datagrams struct {
	mu      sync.Mutex
	last    int64                   // guarded by mu: the latest Sent
	pending map[int64]time.Duration // guarded by mu: Sent -> the agent's monotonic clock at sending
}

// next returns the Sent of a new request (later than any before) and
// records when it was sent; requests older than keep are forgotten.
func (d *datagrams) next(now time.Time, mono, keep time.Duration) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	sent := max(now.UnixNano(), d.last+1)
	d.last = sent
	if d.pending == nil {
		d.pending = map[int64]time.Duration{}
	}
	for k, at := range d.pending {
		if mono-at > keep {
			delete(d.pending, k)
		}
	}
	d.pending[sent] = mono
	return sent
}

// granted returns when the request sent was sent, once; false for a
// request this member did not send lately.
func (d *datagrams) granted(sent int64) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.pending[sent]
	delete(d.pending, sent)
	return at, ok
}

// datagramLoop sends this member's renewal datagrams, four a renewal
// period, to the director on every link.
func (a *Agent) datagramLoop(ctx context.Context) {
	t := time.NewTicker(a.prof.Renew / 4)
	defer t.Stop()
	for {
		if !a.wait(ctx, t.C, nil) {
			return
		}
		if a.store.IsLeader() {
			continue // renewOnce grants this member its own lease
		}
		_, leader := a.store.Leader()
		if leader == "" {
			if l := a.lastLeader.Load(); l != nil {
				leader = *l
			}
		}
		if leader == "" || leader == a.cfg.Name {
			continue
		}
		req := renewRequest{Member: a.cfg.Name, Links: a.ml.LinksAlive(), DLM: a.dlm.Incarnation()}
		req.Sent = a.dgrams.next(time.Now(), a.mono(), a.prof.Lease)
		b := req.encode()
		for i := range a.cfg.Links {
			a.ml.Send(leader, i, b)
		}
	}
}

// onDatagram takes a renewal datagram that came on link (from memberlist's
// goroutines).
func (a *Agent) onDatagram(link int, b []byte) {
	if !a.datagramsReady.Load() {
		return
	}
	v, err := decodeDatagram(b)
	if err != nil {
		a.log.Debug("datagram dropped", "link", link, "err", err)
		return
	}
	switch m := v.(type) {
	case *renewRequest:
		a.grantDatagram(link, m)
	case *renewGrant:
		if m.Member != a.cfg.Name {
			return
		}
		asked, ok := a.dgrams.granted(m.Sent)
		if !ok {
			return // a duplicate, or one sent too long ago
		}
		a.holderMu.Lock()
		a.holder.Granted(asked)
		if m.Index > a.grantIndex {
			a.grantIndex = m.Index
		}
		a.holderMu.Unlock()
	}
}

// grantDatagram is the director's side: RenewRequest's rules, and no
// replays.
func (a *Agent) grantDatagram(link int, r *renewRequest) {
	now := time.Now()
	if r.Member == a.cfg.Name || !a.store.IsLeader() {
		return
	}
	if d := now.Sub(time.Unix(0, r.Sent)); d > datagramSkew || d < -datagramSkew {
		a.log.Debug("renewal datagram refused: its send time is too far from this clock", "member", r.Member, "off_by", d)
		return
	}
	var member, fenced bool
	a.store.View(func(s *cdb.State) {
		_, member = s.Members[r.Member]
		_, fenced = s.FencedMembers[r.Member]
	})
	if !member || fenced {
		return
	}
	if !a.term.grantSent(r.Member, r.Sent, now, r.Links, r.DLM, a.prof.Renew) {
		return
	}
	g := renewGrant{Member: r.Member, Sent: r.Sent, Index: a.store.FSMIndex()}
	a.ml.Send(r.Member, link, g.encode())
}
