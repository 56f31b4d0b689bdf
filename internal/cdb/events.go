package cdb

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/director"
)

// The event log's size: setting event-log-size, with its default and range.
const (
	DefaultEventLogSize = 10000
	MinEventLogSize     = 100
	MaxEventLogSize     = 1000000
)

// Limits on the events a member records (OpEvents).
const (
	MaxEventsPerCommand = 256
	MaxEventMessage     = 2048
	MaxSteps            = 64
)

// eventLog is the cluster's event log: the newest events, oldest first. It
// lives next to State, not in it, so that copies of the state (made on every
// change) do not copy the log. Apply appends to it deterministically, so
// every member holds the same log; snapshots carry it.
type eventLog struct {
	mu     sync.RWMutex
	events []client.Event // guarded by mu
	seq    uint64         // guarded by mu: the last Seq given
	// wake is closed and replaced when events are added.
	wake chan struct{} // guarded by mu
}

func newEventLog() *eventLog { return &eventLog{wake: make(chan struct{})} }

// add appends events, numbering them, and drops the oldest past size.
func (l *eventLog) add(size int, evs []client.Event) {
	if len(evs) == 0 {
		return
	}
	l.mu.Lock()
	for _, e := range evs {
		l.seq++
		e.Seq = l.seq
		l.events = append(l.events, e)
	}
	if over := len(l.events) - size; over > 0 {
		l.events = slices.Delete(l.events, 0, over)
	}
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

// restore replaces the log (a snapshot).
func (l *eventLog) restore(seq uint64, evs []client.Event) {
	l.mu.Lock()
	l.events, l.seq = evs, seq
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

func (l *eventLog) snapshot() (uint64, []client.Event) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.seq, slices.Clone(l.events)
}

// query returns the events f selects (the newest f.Limit of them when
// Limit > 0), and a channel closed when more are added.
func (l *eventLog) query(f client.EventFilter) ([]client.Event, <-chan struct{}) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	// Events are in Seq order: skip to After at once.
	i, _ := slices.BinarySearchFunc(l.events, f.After+1, func(e client.Event, seq uint64) int {
		switch {
		case e.Seq < seq:
			return -1
		case e.Seq > seq:
			return 1
		}
		return 0
	})
	var out []client.Event
	for j := i; j < len(l.events); j++ {
		if f.Match(&l.events[j]) {
			out = append(out, l.events[j])
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return slices.Clone(out), l.wake
}

// Events returns the events f selects, oldest first, and a channel that is
// closed when the log changes (to wait for more).
func (s *Store) Events(f client.EventFilter) ([]client.Event, <-chan struct{}) {
	return s.fsm.log.query(f)
}

// EventsChanged returns a channel closed when events are next added.
func (s *Store) EventsChanged() <-chan struct{} {
	l := s.fsm.log
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.wake
}

// EventLogSize is the setting event-log-size.
func (s *State) EventLogSize() int {
	if n, err := strconv.Atoi(s.Settings["event-log-size"]); err == nil {
		return n
	}
	return DefaultEventLogSize
}

func validEventLogSize(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < MinEventLogSize || n > MaxEventLogSize {
		return fmt.Errorf("must be a number of events from %d to %d", MinEventLogSize, MaxEventLogSize)
	}
	return nil
}

// checkEvents validates the events a member asks to record.
func checkEvents(evs []client.Event) error {
	if len(evs) == 0 || len(evs) > MaxEventsPerCommand {
		return refuse(ErrInvalid, "%d events in one command: send 1 to %d", len(evs), MaxEventsPerCommand)
	}
	for i, e := range evs {
		if !slices.Contains(client.EventKinds, e.Kind) {
			return refuse(ErrInvalid, "event %d: kind %q is not known: use one of %s", i, e.Kind, strings.Join(client.EventKinds, ", "))
		}
		if e.Message == "" || len(e.Message) > MaxEventMessage {
			return refuse(ErrInvalid, "event %d: the message is %d bytes: send 1 to %d", i, len(e.Message), MaxEventMessage)
		}
		if len(e.Steps) > MaxSteps {
			return refuse(ErrInvalid, "event %d: %d steps, at most %d", i, len(e.Steps), MaxSteps)
		}
	}
	return nil
}

// eventsOf returns the events a command makes, given the state before
// (old, a shallow view of what the command changed) and after it. It must be
// deterministic: every member derives the same events from the same log.
func eventsOf(c *Command, before *commandBefore, s *State, err error) []client.Event {
	ev := func(kind, member, service, msg string) client.Event {
		return client.Event{At: c.At, Kind: kind, Member: member, Service: service, By: c.By, Message: msg}
	}
	if err != nil {
		// A refused operator command is worth a line: who tried what.
		if c.By == "" || c.By == "director" || strings.HasPrefix(c.By, "lrm:") || c.Op == OpEvents {
			return nil
		}
		return []client.Event{ev(client.EventOperator, c.Member, serviceOf(c), fmt.Sprintf("%s refused: %v", describe(c), err))}
	}
	switch c.Op {
	case OpEvents:
		out := make([]client.Event, len(c.Events))
		for i, e := range c.Events {
			e.Seq = 0
			if e.At.IsZero() {
				e.At = c.At
			}
			out[i] = e
		}
		return out
	case OpReport:
		return []client.Event{reportEvent(c)}
	case OpDecide:
		return decideEvents(c, before, s)
	case OpJoin:
		return []client.Event{ev(client.EventMember, c.Join.Member.Name, "", fmt.Sprintf("member %s joined the cluster (id %d, link %s)", c.Join.Member.Name, s.Members[c.Join.Member.Name].ID, first(c.Join.Member.Links)))}
	case OpInit:
		return []client.Event{ev(client.EventConfig, c.Init.Member.Name, "", fmt.Sprintf("cluster %s created with member %s", c.Init.Cluster.Name, c.Init.Member.Name))}
	case OpMemberRemove:
		return []client.Event{ev(client.EventMember, c.Member, "", "member "+c.Member+" was removed from the cluster")}
	case OpFenced:
		switch {
		case c.Flag && strings.HasPrefix(c.Settings["device"], "confirmed by "):
			return []client.Event{ev(client.EventFence, c.Member, "", "member "+c.Member+" is recorded as fenced (off): "+c.Settings["device"])}
		case c.Flag && c.Settings["device"] != "":
			return []client.Event{ev(client.EventFence, c.Member, "", "member "+c.Member+" is fenced (off) by device "+c.Settings["device"])}
		case c.Flag:
			return []client.Event{ev(client.EventFence, c.Member, "", "member "+c.Member+" is recorded as fenced (off): confirmed by "+c.By)}
		}
		return []client.Event{ev(client.EventFence, c.Member, "", "fence record of member "+c.Member+" cleared: it is UP again")}
	case OpDLMView, OpTokensPrune, OpKeyAck, OpCAAck:
		return nil
	case OpKeyBegin:
		return []client.Event{ev(client.EventConfig, "", "", fmt.Sprintf("gossip key rotation began: key %s replaces %s; every member installs it", c.KeyRotation.ID, c.KeyRotation.OldID))}
	case OpKeyPhase:
		what := map[string]string{KeyUse: "every member has the new key: gossip is sealed with it now", KeyRemove: "every member seals gossip with the new key: the old one is removed",
			"done": "gossip key rotation done: key " + c.Serial + " is the only one"}[c.Phase]
		return []client.Event{ev(client.EventConfig, "", "", what)}
	case OpCABegin:
		return []client.Event{ev(client.EventConfig, "", "", fmt.Sprintf("CA rotation began: CA %s replaces %s; every member trusts both", short(c.KeyRotation.ID), short(c.KeyRotation.OldID)))}
	case OpCAPhase:
		what := map[string]string{KeyUse: "every member trusts the new CA: each takes a certificate of it now (shown with the new CA cross-signed by the old)",
			KeyRemove: "every member has a certificate of the new CA: the old CA is no longer trusted",
			"done":    "CA rotation done: CA " + short(c.Serial) + " is the only one; give clients that use --ca its certificate (vigil ca show --pem)"}[c.Phase]
		return []client.Event{ev(client.EventConfig, "", "", what)}
	case OpCertRenew:
		return []client.Event{ev(client.EventConfig, c.Member, "", fmt.Sprintf("member %s renewed its certificate: serial %s replaces %s (which is accepted until it expires)", c.Member, c.Serial, c.PrevSerial))}
	}
	if c.By == "" {
		return nil
	}
	kind := client.EventOperator
	switch c.Op {
	case OpServicesApply, OpServiceDelete, OpSettingsSet, OpFenceSet, OpFenceRemove, OpRestore, OpTokenCreate, OpAlertSet, OpAlertRemove,
		OpAPITokenCreate, OpAPITokenRevoke:
		kind = client.EventConfig
	}
	return []client.Event{ev(kind, c.Member, serviceOf(c), describe(c))}
}

// commandBefore is what eventsOf needs of the state before a command.
type commandBefore struct {
	status map[string]director.Status
}

// before notes what c may change that its events describe.
func (s *State) before(c *Command) *commandBefore {
	if c.Op != OpDecide || c.Decide == nil {
		return nil
	}
	b := &commandBefore{status: map[string]director.Status{}}
	for _, u := range c.Decide.Updates {
		if sv, ok := s.Services[u.Service]; ok {
			b.status[u.Service] = sv.Status
		}
	}
	return b
}

func serviceOf(c *Command) string {
	switch {
	case c.Request != nil:
		return c.Request.Service
	case c.Op == OpServiceDelete:
		return c.Member
	case len(c.Services) == 1:
		return c.Services[0].Name
	}
	return ""
}

// describe says what an operator command asked, in words.
func describe(c *Command) string {
	switch c.Op {
	case OpServicesApply:
		names := make([]string, len(c.Services))
		for i, s := range c.Services {
			names[i] = s.Name
		}
		return "applied service definitions: " + strings.Join(names, ", ")
	case OpServiceDelete:
		return "deleted service " + c.Member
	case OpServiceRequest:
		r := c.Request
		var parts []string
		if r.Target != "" {
			parts = append(parts, "set "+r.Service+" "+string(r.Target))
		}
		if r.RelocateTo != "" {
			parts = append(parts, "relocate "+r.Service+" to "+r.RelocateTo)
		}
		if r.Clear {
			parts = append(parts, "clear "+r.Service)
		}
		return strings.Join(parts, ", ")
	case OpMemberDrain:
		if c.Flag {
			return "drain member " + c.Member
		}
		return "undrain member " + c.Member
	case OpMaintenance:
		if c.Flag {
			return "maintenance on"
		}
		return "maintenance off"
	case OpSettingsSet:
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(c.Settings)) {
			kv = append(kv, k+"="+c.Settings[k])
		}
		return "settings: " + strings.Join(kv, " ")
	case OpFenceSet:
		return "set fence device " + c.Fence.Name
	case OpFenceRemove:
		return "removed fence device " + c.Member
	case OpRestore:
		return "restored a backup"
	case OpTokenCreate:
		return "made a join token for member " + c.Token.Member
	case OpAlertSet:
		return "set alert " + c.Alert.Name + " (" + c.Alert.Path + ")"
	case OpAlertRemove:
		return "removed alert " + c.Member
	case OpMemberRemove:
		return "remove member " + c.Member
	case OpAPITokenCreate:
		return "made API token " + c.APIToken.Name + " (" + c.APIToken.ID + ") with role " + c.APIToken.Role
	case OpAPITokenRevoke:
		return "revoked API token " + c.Member
	}
	return string(c.Op)
}

func reportEvent(c *Command) client.Event {
	r := c.Report
	e := client.Event{At: c.At, Kind: client.EventMethod, Member: r.Member, Service: r.Service, Epoch: r.Epoch,
		Steps: c.Steps}
	what := strings.ReplaceAll(string(r.Kind), "-", " ")
	e.Message = fmt.Sprintf("%s: %s on %s (epoch %d)", r.Service, what, r.Member, r.Epoch)
	if r.Detail != "" {
		e.Message += ": " + r.Detail
	}
	for _, st := range c.Steps {
		if st.Error != "" {
			rc := st.RC
			e.RC = &rc
			break
		}
	}
	return e
}

func decideEvents(c *Command, b *commandBefore, s *State) []client.Event {
	var out []client.Event
	for _, u := range c.Decide.Updates {
		old, had := b.status[u.Service]
		n := u.Status
		if had && old.State == n.State && old.Owner == n.Owner && old.Epoch == n.Epoch && old.Held == n.Held {
			continue
		}
		msg := u.Service + ": " + string(n.State)
		if n.State == director.StateFrozen && n.Held != "" {
			msg += " (" + string(n.Held) + " underneath)"
		}
		if n.Owner != "" {
			msg += " on " + n.Owner
		}
		if had && (old.State != n.State || old.Owner != n.Owner) {
			from := string(old.State)
			if old.Owner != "" {
				from += " on " + old.Owner
			}
			msg += ", was " + from
		}
		if n.Reason != "" {
			msg += ": " + n.Reason
		}
		out = append(out, client.Event{At: c.At, Kind: client.EventService, Member: n.Owner, Service: u.Service, Epoch: n.Epoch,
			State: string(n.State), Message: msg})
	}
	for _, d := range c.Decide.Done {
		if d.Kind == director.RelocateRefused {
			out = append(out, client.Event{At: c.At, Kind: client.EventService, Member: d.Member, Service: d.Service,
				Message: "relocation of " + d.Service + " to " + d.Member + " refused: " + d.Reason})
		}
	}
	return out
}
