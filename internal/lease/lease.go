// Package lease holds the deterministic core of vigil's leases (DESIGN.md
// "lease keeper"): the member side, which knows when it must give up its
// services because it could not renew in time, and the director side, which
// knows when a silent member's lease has certainly run out so its services
// may start elsewhere. Time is passed in as monotonic readings; the package
// has no clock, goroutines or I/O, and it must not decide placement.
package lease

import (
	"fmt"
	"time"
)

// Config is a lease policy, from the timing profile.
type Config struct {
	// Length is how long a grant lets a member keep its services.
	Length time.Duration
	// Renew is how often a member asks; several renewals fit in a lease.
	Renew time.Duration
	// Drift is the clock-drift margin (>= 1): the director counts a lease
	// as over only after Length*Drift has passed on its own clock.
	Drift float64
	// AbortBefore is how long before its lease ends a member that could
	// not renew starts ABORT, so its services are down before the lease is.
	AbortBefore time.Duration
}

// Validate checks the policy.
func (c Config) Validate() error {
	switch {
	case c.Length <= 0:
		return fmt.Errorf("lease length %s must be positive", c.Length)
	case c.Renew <= 0 || c.Renew*3 > c.Length:
		return fmt.Errorf("lease renewal %s must be positive and fit at least 3 times in the lease (%s)", c.Renew, c.Length)
	case c.Drift < 1 || c.Drift > 2:
		return fmt.Errorf("lease drift margin %.2f is out of range: must be 1 to 2", c.Drift)
	case c.AbortBefore < 0 || c.AbortBefore >= c.Length:
		return fmt.Errorf("abort-before %s must be 0 or more and shorter than the lease (%s)", c.AbortBefore, c.Length)
	}
	return nil
}

// Holder is the member side. A grant is measured from when the member sent
// the request that earned it (not when the answer came), so network delay
// only shortens what the member believes it has.
type Holder struct {
	cfg   Config
	until time.Duration // monotonic reading at which the lease ends; 0 = none
	asked time.Duration // when the request in flight was sent
}

// NewHolder returns a member side with no lease.
func NewHolder(cfg Config) *Holder { return &Holder{cfg: cfg} }

// Asking records that a renewal request is sent at now.
func (h *Holder) Asking(now time.Duration) { h.asked = now }

// Granted records the director's grant of the request sent at asked.
func (h *Holder) Granted(asked time.Duration) {
	if end := asked + h.cfg.Length; end > h.until {
		h.until = end
	}
}

// Lost forgets the lease (quorum lost, member removed).
func (h *Holder) Lost() { h.until = 0 }

// Valid reports whether the member may run services at now.
func (h *Holder) Valid(now time.Duration) bool { return h.until != 0 && now < h.until }

// MustAbort reports whether the member must now abort its services: its
// lease ends within AbortBefore (or has ended) and no renewal came.
func (h *Holder) MustAbort(now time.Duration) bool {
	return h.until == 0 || now >= h.until-h.cfg.AbortBefore
}

// AbortIn is how long after now MustAbort turns true (0 when it is).
func (h *Holder) AbortIn(now time.Duration) time.Duration {
	if h.MustAbort(now) {
		return 0
	}
	return h.until - h.cfg.AbortBefore - now
}

// Remaining is the lease left at now (0 when over).
func (h *Holder) Remaining(now time.Duration) time.Duration {
	if !h.Valid(now) {
		return 0
	}
	return h.until - now
}

// Grantor is the director side.
type Grantor struct {
	cfg Config
	// since is when this director took office (monotonic); a new director
	// does not know what its predecessor granted, so it assumes a full
	// lease was granted just before.
	since  time.Duration
	grants map[string]time.Duration // member -> monotonic time of the last grant
}

// NewGrantor starts a director's term at now.
func NewGrantor(cfg Config, now time.Duration) *Grantor {
	return &Grantor{cfg: cfg, since: now, grants: map[string]time.Duration{}}
}

// Grant records a renewal granted to member at now.
func (g *Grantor) Grant(member string, now time.Duration) { g.grants[member] = now }

// Forget drops a removed member.
func (g *Grantor) Forget(member string) { delete(g.grants, member) }

// CertainlyOver reports whether member's lease has certainly ended at now:
// Length*Drift after the last grant this director made, and never within
// Length*Drift of this director's own start.
func (g *Grantor) CertainlyOver(member string, now time.Duration) bool {
	return now >= g.SafeAt(member)
}

// SafeAt is the monotonic time from which member's lease is certainly over.
func (g *Grantor) SafeAt(member string) time.Duration {
	margin := time.Duration(float64(g.cfg.Length) * g.cfg.Drift)
	last := g.since
	if t, ok := g.grants[member]; ok && t > last {
		last = t
	}
	return last + margin
}
