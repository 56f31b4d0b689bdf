package director

import (
	"fmt"
	"strings"
	"time"
)

// Defaults used when the corresponding field of Input or Spec is zero.
const (
	DefaultDrift          = 1.1
	DefaultMaxRestarts    = 3
	DefaultRestartWindow  = 10 * time.Minute
	DefaultFailureTimeout = 10 * time.Minute
)

// Limits on the input. Decide never fails, but Validate refuses input
// outside them, so that the loop can report the bad record instead.
const (
	MaxDomain   = 63
	MaxFavored  = 64
	MaxRestarts = 100
)

// Input is everything Decide looks at.
type Input struct {
	// Now is the director's monotonic time of this call.
	Now time.Time
	// TermStart is when this director took office (won the Raft election).
	// Until TermStart + Lease×Drift it does not know the leases the
	// previous director granted, so it does not move the services of a
	// member that is DOWN unless that member was fenced.
	TermStart time.Time
	// Lease is the length of a member's lease.
	Lease time.Duration
	// Drift is the clock-drift margin (≥ 1): a lease has certainly run out
	// Lease×Drift after it was last renewed. Zero means DefaultDrift.
	Drift float64
	// Quorum reports whether the director holds quorum.
	Quorum bool
	// NoQuorumPolicy says what happens to running services without quorum:
	// stop them (the default) or freeze them where they are.
	NoQuorumPolicy NoQuorumPolicy
	// Maintenance is `vigil maintenance on`: nothing is started, stopped or
	// moved; services stay as they are.
	Maintenance bool
	// Fencing reports whether fence agents are configured. Without them the
	// director never asks for a fence, and a failed stop leaves the service
	// FAILED until the operator clears it.
	Fencing bool
	// Director is the member the director runs on ("" when unknown).
	// Among members that rank equal for a service, placement leaves it
	// free: a crash of the director's member then costs an election, not
	// an election and a failover one after the other.
	Director string

	Members  []Member
	Services []Service
	// Events are the reports received since the last call, oldest first.
	Events []Event
}

// NoQuorumPolicy is the setting `no-quorum-policy`.
type NoQuorumPolicy string

// The no-quorum policies.
const (
	NoQuorumStop   NoQuorumPolicy = "stop"
	NoQuorumFreeze NoQuorumPolicy = "freeze"
)

// MemberState is the director's view of a member.
type MemberState string

// The member states (DESIGN.md).
const (
	// MemberUp: reachable on the interconnect, renewing its lease.
	MemberUp MemberState = "UP"
	// MemberDown: not heard from. Its services may still run until it is
	// fenced or its lease has certainly run out.
	MemberDown MemberState = "DOWN"
	// MemberDisconnected: it lost every monitored public link. Its services
	// are stopped there and moved.
	MemberDisconnected MemberState = "DISCONNECTED"
	// MemberNetpar: seen only on a secondary link. Its services keep running;
	// nothing is started or stopped there until the partition heals.
	MemberNetpar MemberState = "NETPAR"
)

// Member is one member as the director sees it.
type Member struct {
	Name  string
	ID    int
	State MemberState
	// Domain is the failover domain (0-63).
	Domain int
	// Witness members vote but never host services.
	Witness bool
	// Draining is `vigil member drain` (standby): services move away
	// gracefully and nothing new is placed here.
	Draining bool
	// Removing is `vigil member remove` on a member that still hosts
	// services: they move away first, then Decide reports it removable.
	Removing bool
	// LastRenewal is when the director last saw the member renew its lease
	// (zero if never during this term).
	LastRenewal time.Time
	// DownSince is when the member was last seen going DOWN (for the
	// explanations only).
	DownSince time.Time
	// UpSince is when the member last became UP (zero: long ago). Services
	// fail back to it only once it has been UP for their FailbackDelay.
	UpSince time.Time
	// Fenced reports that a fence agent confirmed the member is off since it
	// was last UP. The loop must clear it when the member is UP again.
	// Decide honours it only while the member is not UP.
	Fenced bool
	// FencePending reports that a fence was asked for and has not finished;
	// Decide does not ask again meanwhile.
	FencePending bool
	// NoFenceDevice reports that no fence device covers this member even
	// though fencing is configured. With a device, a DOWN member's services
	// wait for its fence, not only for its lease: a frozen host (a paused
	// VM, a stuck kernel) cannot stop them itself when its lease ends.
	NoFenceDevice bool
}

// Service is one service: what the operator declared and what it is now.
type Service struct {
	Name   string
	Spec   Spec
	Status Status
}

// Target is the state the operator wants a service in.
type Target string

// The targets. The empty Target means TargetOnline.
const (
	TargetOnline  Target = "online"
	TargetOffline Target = "offline"
)

// Spec is the operator's side of a service: its placement policy and the
// requests that are waiting to be carried out.
type Spec struct {
	// Favored lists members in order of preference.
	Favored []string
	// Restricted, when not empty, is the only set of members that may run
	// the service.
	Restricted []string
	// Balanced breaks ties between members that are not favored by the
	// number of services they run: fewest first.
	Balanced bool
	// Domain is the failover domain the service runs in (0-63).
	Domain int
	// Failback moves a running service back, gracefully, when a member more
	// favored than its owner can run it. Off (the default), a service stays
	// where it runs.
	Failback bool
	// FailbackDelay is how long a more favored member must have been UP
	// before the service fails back to it (keepalived's preempt_delay), so
	// that a flapping member does not make it bounce. Zero: at once.
	FailbackDelay time.Duration
	// MaxRestarts is how many times a soft failure is restarted in place
	// within RestartWindow before the service moves. Zero means
	// DefaultMaxRestarts; negative means never restart in place.
	MaxRestarts int
	// RestartWindow: zero means DefaultRestartWindow.
	RestartWindow time.Duration
	// FailureTimeout: a fail record whose last failure is older expires
	// (except hard and fatal ones, which wait for a clear). Zero means
	// DefaultFailureTimeout; negative means never.
	FailureTimeout time.Duration
	// Target is `vigil service online|offline`.
	Target Target
	// RelocateTo is `vigil service relocate S --to M`, waiting to be carried
	// out. Decide reports RelocateDone or RelocateRefused; the loop then
	// clears it.
	RelocateTo string
	// Clear is `vigil service clear S`, waiting to be carried out. Decide
	// reports Cleared; the loop then clears it.
	Clear bool
}

// ServiceState is the state of a service (DESIGN.md).
type ServiceState string

// The service states.
const (
	// StateOnline: running on Owner.
	StateOnline ServiceState = "ONLINE"
	// StateOffline: stopped because the operator wants it offline (or not
	// yet placed).
	StateOffline ServiceState = "OFFLINE"
	// StateStarting: Owner was ordered to start it (epoch Epoch).
	StateStarting ServiceState = "STARTING"
	// StateStopping: Owner was ordered to stop it (epoch Epoch).
	StateStopping ServiceState = "STOPPING"
	// StateFailed: it failed. With an Owner, it may still partly run there:
	// its recovery is pending (or its stop failed: StopFailed). Without
	// one, it failed on every member that may run it, or hit a fatal error.
	StateFailed ServiceState = "FAILED"
	// StateFrozen: no quorum, maintenance, or its owner is NETPAR. Held is
	// the state it is in underneath.
	StateFrozen ServiceState = "FROZEN"
	// StateUnassigned: it should run, but no member can run it now.
	StateUnassigned ServiceState = "UNASSIGNED"
)

// Status is the director's record of a service.
type Status struct {
	State ServiceState
	// Held is, for a FROZEN service, the state it will be in when the
	// freeze ends. Reports that arrive meanwhile update it.
	Held  ServiceState
	Owner string
	// Epoch is the epoch of the last order for this service.
	Epoch uint64
	// Reason says why it is in this state, in words an operator reads.
	Reason string
	// StopFailed: a stop (or the stop half of a restart) failed on Owner.
	StopFailed bool
	// Fails are the fail records, one per member, sorted by member name.
	Fails []FailRecord
	// Restarts are the restarts in place within the restart window.
	Restarts []RestartRecord
}

// FailRecord counts the failures of a service on one member.
type FailRecord struct {
	Member string
	// Count is the number of failures since the record was created.
	Count int
	// Last is the time of the last failure.
	Last time.Time
	// Banned: the service may not be placed on Member until the record
	// expires (a start failed there, or it failed there more often than its
	// restart policy allows).
	Banned bool
	// Hard: an OCF hard error. Not on Member again until cleared.
	Hard bool
	// Fatal: an OCF fatal error. Not anywhere until cleared.
	Fatal bool
	// Kind, Severity and Detail describe the last failure.
	Kind     EventKind
	Severity Severity
	Detail   string
}

// String describes the last failure, e.g. "monitor failed (soft): exit 7".
func (r FailRecord) String() string {
	s := strings.ReplaceAll(string(r.Kind), "-", " ")
	if r.Kind != StopFailed && r.Severity != "" {
		s += " (" + string(r.Severity) + ")"
	}
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}

// RestartRecord records one restart in place.
type RestartRecord struct {
	Member string
	At     time.Time
}

// EventKind names what a member reports about a service.
type EventKind string

// The event kinds.
const (
	StartSucceeded EventKind = "start-succeeded"
	StartFailed    EventKind = "start-failed"
	StopSucceeded  EventKind = "stop-succeeded"
	StopFailed     EventKind = "stop-failed"
	MonitorFailed  EventKind = "monitor-failed"
)

// Severity is the recovery an OCF-style failure allows.
type Severity string

// The severities. The empty Severity means Soft.
const (
	// Soft: may be restarted in place (OCF_ERR_GENERIC, OCF_NOT_RUNNING...).
	Soft Severity = "soft"
	// Hard: not on this member again until cleared (OCF_ERR_INSTALLED...).
	Hard Severity = "hard"
	// Fatal: not anywhere until cleared (OCF_ERR_CONFIGURED).
	Fatal Severity = "fatal"
)

// Event is one report from a member's lrm about an order it carried out.
type Event struct {
	Kind    EventKind
	Service string
	Member  string
	// Epoch is the epoch of the order the report is about. A report with
	// another epoch than the service's is stale and ignored.
	Epoch    uint64
	Severity Severity
	// Detail is what the agent said, e.g. "exit 7 (not running)".
	Detail string
}

// DecisionKind names a decision.
type DecisionKind string

// The decisions.
const (
	// Assign: Member is to start Service, with Epoch.
	Assign DecisionKind = "assign"
	// Restart: Member is to restart Service in place (stop, then start),
	// with Epoch.
	Restart DecisionKind = "restart"
	// Stop: Member is to stop Service, with Epoch.
	Stop DecisionKind = "stop"
	// Mark: Service's state changes to State, without an order.
	Mark DecisionKind = "mark"
	// Fence: Member is to be fenced.
	Fence DecisionKind = "fence"
	// RecordFailure: a failure of Service on Member is counted.
	RecordFailure DecisionKind = "record-failure"
	// ExpireFailures: the fail record of Service on Member has expired.
	ExpireFailures DecisionKind = "expire-failures"
	// Cleared: the operator's clear request was carried out: fail records,
	// restarts and the FAILED state were reset. The loop clears Spec.Clear.
	Cleared DecisionKind = "cleared"
	// RelocateDone: the operator's relocation to Member was carried out
	// (Service is assigned there). The loop clears Spec.RelocateTo.
	RelocateDone DecisionKind = "relocate-done"
	// RelocateRefused: the relocation to Member cannot be carried out,
	// Reason says why. The loop clears Spec.RelocateTo and tells the
	// operator.
	RelocateRefused DecisionKind = "relocate-refused"
	// Removable: Member is being removed and hosts no service any more: its
	// removal may go ahead.
	Removable DecisionKind = "removable"
)

// Decision is one thing the director decided.
type Decision struct {
	Kind    DecisionKind
	Service string
	Member  string
	// Epoch is the epoch of an Assign, Restart or Stop order.
	Epoch uint64
	// State is the new state, for Mark.
	State  ServiceState
	Reason string
}

// String formats d on one line, e.g. "assign web m2 epoch=4: m1 is DOWN".
func (d Decision) String() string {
	var b strings.Builder
	b.WriteString(string(d.Kind))
	if d.Service != "" {
		b.WriteString(" " + d.Service)
	}
	if d.State != "" {
		b.WriteString(" " + string(d.State))
	}
	if d.Member != "" {
		b.WriteString(" " + d.Member)
	}
	if d.Epoch != 0 {
		fmt.Fprintf(&b, " epoch=%d", d.Epoch)
	}
	if d.Reason != "" {
		b.WriteString(": " + d.Reason)
	}
	return b.String()
}

// Update is the new status of one service.
type Update struct {
	Service string
	Status  Status
}

// Output is what Decide returns.
type Output struct {
	// Decisions in order: per service in input order, then fences, then
	// removable members.
	Decisions []Decision
	// Updates hold the new status of every service whose status changed,
	// in input order. They are what the loop writes; Decisions say the
	// same thing step by step, for the event log and alert agents.
	Updates []Update
	// Ignored describes the events that were ignored, and why.
	Ignored []string

	x *explainer
}
