package director

import (
	"errors"
	"fmt"
)

// Validate reports what is wrong with in, naming the record and the field.
// Decide does not need valid input (it never panics, and treats what it
// cannot use as absent), but the loop should refuse to act on input that
// does not validate, and say why.
func (in *Input) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if in.Lease <= 0 {
		bad("lease is %v: it must be positive", in.Lease)
	}
	if in.Drift != 0 && (in.Drift < 1 || in.Drift > 2) {
		bad("drift margin is %v: it must be between 1 and 2 (0 means %v)", in.Drift, DefaultDrift)
	}
	switch in.NoQuorumPolicy {
	case "", NoQuorumStop, NoQuorumFreeze:
	default:
		bad("no-quorum-policy is %q: it must be stop or freeze", in.NoQuorumPolicy)
	}
	names := map[string]bool{}
	ids := map[int]string{}
	for _, m := range in.Members {
		switch {
		case m.Name == "":
			bad("a member has no name")
		case names[m.Name]:
			bad("member %s is listed twice", m.Name)
		}
		names[m.Name] = true
		if other, dup := ids[m.ID]; dup {
			bad("members %s and %s have the same id %d", other, m.Name, m.ID)
		}
		ids[m.ID] = m.Name
		if m.Domain < 0 || m.Domain > MaxDomain {
			bad("member %s: domain is %d: it must be 0-%d", m.Name, m.Domain, MaxDomain)
		}
		switch m.State {
		case MemberUp, MemberDown, MemberDisconnected, MemberNetpar:
		default:
			bad("member %s: state is %q: it must be UP, DOWN, DISCONNECTED or NETPAR", m.Name, m.State)
		}
	}
	services := map[string]bool{}
	for _, s := range in.Services {
		switch {
		case s.Name == "":
			bad("a service has no name")
		case services[s.Name]:
			bad("service %s is listed twice", s.Name)
		}
		services[s.Name] = true
		sp, st := &s.Spec, &s.Status
		if sp.Domain < 0 || sp.Domain > MaxDomain {
			bad("service %s: domain is %d: it must be 0-%d", s.Name, sp.Domain, MaxDomain)
		}
		if len(sp.Favored) > MaxFavored {
			bad("service %s: %d favored members: at most %d", s.Name, len(sp.Favored), MaxFavored)
		}
		if sp.MaxRestarts > MaxRestarts {
			bad("service %s: restarts is %d: at most %d", s.Name, sp.MaxRestarts, MaxRestarts)
		}
		if sp.FailbackDelay < 0 {
			bad("service %s: failback delay is %v: it must not be negative", s.Name, sp.FailbackDelay)
		}
		if sp.RestartWindow < 0 {
			bad("service %s: restart window is %v: it must not be negative", s.Name, sp.RestartWindow)
		}
		switch sp.Target {
		case "", TargetOnline, TargetOffline:
		default:
			bad("service %s: target is %q: it must be online or offline", s.Name, sp.Target)
		}
		switch st.State {
		case "", StateOffline, StateUnassigned:
		case StateOnline, StateStarting, StateStopping:
			if st.Owner == "" {
				bad("service %s: state %s without an owner", s.Name, st.State)
			}
		case StateFailed, StateFrozen:
		default:
			bad("service %s: state is %q: it must be one of ONLINE, OFFLINE, STARTING, STOPPING, FAILED, FROZEN, UNASSIGNED", s.Name, st.State)
		}
		if st.Held != "" && st.State != StateFrozen {
			bad("service %s: held state %s, but it is not FROZEN", s.Name, st.Held)
		}
	}
	for k, e := range in.Events {
		switch e.Kind {
		case StartSucceeded, StartFailed, StopSucceeded, StopFailed, MonitorFailed:
		default:
			bad("event %d: kind is %q: it must be one of start-succeeded, start-failed, stop-succeeded, stop-failed, monitor-failed", k, e.Kind)
		}
		switch e.Severity {
		case "", Soft, Hard, Fatal:
		default:
			bad("event %d: severity is %q: it must be soft, hard or fatal", k, e.Severity)
		}
	}
	return errors.Join(errs...)
}
