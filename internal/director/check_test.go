package director

import (
	"fmt"
	"slices"
	"time"
)

// cloneInput copies in deeply, so that a test can check that Decide left
// it alone.
func cloneInput(in Input) Input {
	c := in
	c.Members = slices.Clone(in.Members)
	c.Events = slices.Clone(in.Events)
	c.Services = slices.Clone(in.Services)
	for i := range c.Services {
		s := &c.Services[i]
		s.Spec.Favored = slices.Clone(s.Spec.Favored)
		s.Spec.Restricted = slices.Clone(s.Spec.Restricted)
		s.Status.Fails = slices.Clone(s.Status.Fails)
		s.Status.Restarts = slices.Clone(s.Status.Restarts)
	}
	return c
}

// checkOutput checks out against the safety rules, written again here
// without looking at how Decide works: a second opinion.
func checkOutput(in *Input, out *Output) error {
	members := map[string]*Member{}
	for i := range in.Members {
		members[in.Members[i].Name] = &in.Members[i]
	}
	services := map[string]*Service{}
	for i := range in.Services {
		services[in.Services[i].Name] = &in.Services[i]
	}
	drift := in.Drift
	if !(drift >= 1 && drift <= 10) {
		drift = DefaultDrift
	}
	certain := func(m *Member) bool {
		from := in.TermStart
		if m != nil && m.LastRenewal.After(from) {
			from = m.LastRenewal
		}
		return !in.Now.Before(from.Add(durationTimes(in.Lease, drift)))
	}
	// gone reports whether the old owner p can no longer run s.
	gone := func(s *Service) bool {
		p := s.Status.Owner
		if p == "" {
			return true
		}
		for _, e := range in.Events {
			if e.Kind == StopSucceeded && e.Service == s.Name && e.Member == p && e.Epoch == s.Status.Epoch {
				return true
			}
		}
		m := members[p]
		if m != nil && m.State != MemberUp && m.Fenced {
			return true
		}
		return (m == nil || m.State == MemberDown) && in.Lease > 0 && certain(m)
	}
	updates := map[string]*Status{}
	for i := range out.Updates {
		u := &out.Updates[i]
		if updates[u.Service] != nil {
			return fmt.Errorf("two updates for %s", u.Service)
		}
		s := services[u.Service]
		if s == nil {
			return fmt.Errorf("update for unknown service %s", u.Service)
		}
		if u.Status.Epoch < s.Status.Epoch {
			return fmt.Errorf("%s: epoch went back from %d to %d", u.Service, s.Status.Epoch, u.Status.Epoch)
		}
		updates[u.Service] = &u.Status
	}
	final := func(s *Service) *Status {
		if st := updates[s.Name]; st != nil {
			return st
		}
		return &s.Status
	}
	orders := map[string]int{}
	for _, d := range out.Decisions {
		switch d.Kind {
		case Assign, Restart, Stop:
		case Fence:
			if !in.Fencing || !in.Quorum || in.Maintenance {
				return fmt.Errorf("%v: fencing is off, or no quorum, or maintenance", d)
			}
			continue
		default:
			continue
		}
		s := services[d.Service]
		if s == nil {
			return fmt.Errorf("%v: unknown service", d)
		}
		orders[d.Service]++
		if orders[d.Service] > 1 {
			return fmt.Errorf("%v: a second order for %s in one call", d, d.Service)
		}
		if d.Epoch != s.Status.Epoch+1 {
			return fmt.Errorf("%v: epoch should be %d", d, s.Status.Epoch+1)
		}
		st := final(s)
		if st.Epoch != d.Epoch || st.Owner != d.Member {
			return fmt.Errorf("%v: the new status says owner %q epoch %d", d, st.Owner, st.Epoch)
		}
		if in.Maintenance {
			return fmt.Errorf("%v: in maintenance mode", d)
		}
		if !in.Quorum && d.Kind != Stop {
			return fmt.Errorf("%v: without quorum", d)
		}
		m := members[d.Member]
		if m == nil {
			return fmt.Errorf("%v: not a member", d)
		}
		switch d.Kind {
		case Stop:
			if d.Member != s.Status.Owner {
				return fmt.Errorf("%v: %s is not the owner (%s)", d, d.Member, s.Status.Owner)
			}
			if m.State != MemberUp && m.State != MemberDisconnected {
				return fmt.Errorf("%v: %s is %s", d, d.Member, m.State)
			}
			continue
		case Restart:
			if d.Member != s.Status.Owner {
				return fmt.Errorf("%v: %s is not the owner (%s)", d, d.Member, s.Status.Owner)
			}
		case Assign:
			if !gone(s) {
				return fmt.Errorf("%v: %s may still run on %s", d, d.Service, s.Status.Owner)
			}
		}
		sp := &s.Spec
		switch {
		case m.State != MemberUp:
			return fmt.Errorf("%v: %s is %s", d, m.Name, m.State)
		case m.Witness:
			return fmt.Errorf("%v: %s is a witness", d, m.Name)
		case m.Draining || m.Removing:
			return fmt.Errorf("%v: %s is draining or being removed", d, m.Name)
		case m.Domain != sp.Domain:
			return fmt.Errorf("%v: %s is in domain %d, not %d", d, m.Name, m.Domain, sp.Domain)
		case len(sp.Restricted) > 0 && !slices.Contains(sp.Restricted, m.Name):
			return fmt.Errorf("%v: %s is not in the restricted set", d, m.Name)
		case sp.Target == TargetOffline:
			return fmt.Errorf("%v: the target is offline", d)
		}
		for _, r := range st.Fails {
			if r.Fatal || (r.Member == m.Name && (r.Hard || (r.Banned && d.Kind == Assign))) {
				return fmt.Errorf("%v: fail record %+v forbids it", d, r)
			}
		}
	}
	// An owner is only ever dropped when it can no longer run the service,
	// and only ever set by an order.
	for _, s := range in.Services {
		st := final(&s)
		if st.Owner != s.Status.Owner && orders[s.Name] == 0 {
			if st.Owner != "" {
				return fmt.Errorf("%s: owner changed from %q to %q without an order", s.Name, s.Status.Owner, st.Owner)
			}
			if !gone(&s) {
				return fmt.Errorf("%s: owner %s dropped, but it may still run it", s.Name, s.Status.Owner)
			}
		}
		if st.State != StateFrozen && st.Held != "" {
			return fmt.Errorf("%s: held state %s on a %s service", s.Name, st.Held, st.State)
		}
	}
	return nil
}

func durationTimes(d time.Duration, f float64) time.Duration {
	return time.Duration(float64(d) * f)
}
