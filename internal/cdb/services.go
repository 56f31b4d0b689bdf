package cdb

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/vigil-cluster/vigil/internal/director"
	"github.com/vigil-cluster/vigil/internal/spec"
)

// Service is a service in the cluster database: the operator's definition and
// requests, and the director's record of it.
type Service struct {
	Spec spec.Service `json:"spec"`
	// Target is `vigil service online|offline`.
	Target director.Target `json:"target,omitempty"`
	// RelocateTo and Clear are operator requests waiting for the director.
	RelocateTo string `json:"relocate_to,omitempty"`
	Clear      bool   `json:"clear,omitempty"`
	// LastRequest says how the last relocate request ended, for the CLI.
	LastRequest string          `json:"last_request,omitempty"`
	Status      director.Status `json:"status"`
	Applied     time.Time       `json:"applied"`
}

// PendingEvent is a report from a member's lrm that the director has not
// consumed yet.
type PendingEvent struct {
	Seq   uint64         `json:"seq"`
	At    time.Time      `json:"at"`
	Event director.Event `json:"event"`
}

// MaxPendingEvents bounds the reports waiting for the director; the oldest
// are dropped past it (a report is about an epoch, and a newer order makes
// an older report stale anyway).
const MaxPendingEvents = 4096

// ServiceNames returns the service names in order.
func (s *State) ServiceNames() []string {
	ns := make([]string, 0, len(s.Services))
	for n := range s.Services {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// ServiceRequest is an operator request on one service.
type ServiceRequest struct {
	Service    string          `json:"service"`
	Target     director.Target `json:"target,omitempty"`
	RelocateTo string          `json:"relocate_to,omitempty"`
	Clear      bool            `json:"clear,omitempty"`
}

// DecideArgs are what the director's loop writes after a Decide call.
type DecideArgs struct {
	Updates []director.Update `json:"updates,omitempty"`
	// Consumed is the sequence number of the last event the call saw.
	Consumed uint64 `json:"consumed"`
	// Done lists the operator requests carried out or refused.
	Done []director.Decision `json:"done,omitempty"`
}

// SameSpec reports whether two definitions are equal.
func SameSpec(a, b spec.Service) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func (s *State) applyService(c *Command) (any, error) {
	switch c.Op {
	case OpServicesApply:
		n := len(s.Services)
		for _, sp := range c.Services {
			if _, ok := s.Services[sp.Name]; !ok {
				n++
			}
		}
		if n > spec.MaxServices {
			return nil, refuse(ErrRefused, "too many services: %d, at most %d", n, spec.MaxServices)
		}
		for _, sp := range c.Services {
			if err := sp.Validate(); err != nil {
				return nil, refuse(ErrInvalid, "service %s: %v", sp.Name, err)
			}
		}
		for _, sp := range c.Services {
			if cur, ok := s.Services[sp.Name]; ok {
				cur.Spec, cur.Applied = sp, c.At
				continue
			}
			s.Services[sp.Name] = &Service{Spec: sp, Target: director.TargetOnline, Applied: c.At,
				Status: director.Status{State: director.StateOffline, Reason: "just applied; waiting for the director"}}
		}
		return nil, nil

	case OpServiceDelete:
		sv, ok := s.Services[c.Member]
		if !ok {
			return nil, refuse(ErrNotFound, "service %s does not exist (see `vigil service list`)", c.Member)
		}
		if sv.Status.Owner != "" {
			return nil, refuse(ErrRefused, "service %s still has an owner (%s, %s): take it offline first with `vigil service offline %s`", c.Member, sv.Status.Owner, sv.Status.State, c.Member)
		}
		delete(s.Services, c.Member)
		return nil, nil

	case OpServiceRequest:
		r := c.Request
		if r == nil {
			return nil, refuse(ErrInvalid, "service request without arguments")
		}
		sv, ok := s.Services[r.Service]
		if !ok {
			return nil, refuse(ErrNotFound, "service %s does not exist (see `vigil service list`)", r.Service)
		}
		if r.Target != "" {
			sv.Target = r.Target
		}
		if r.RelocateTo != "" {
			if _, ok := s.Members[r.RelocateTo]; !ok {
				return nil, refuse(ErrNotFound, "member %s is not in the cluster (see `vigil members`)", r.RelocateTo)
			}
			sv.RelocateTo, sv.LastRequest = r.RelocateTo, ""
			sv.Target = director.TargetOnline
		}
		if r.Clear {
			sv.Clear = true
		}
		return nil, nil

	case OpMemberDrain:
		m, ok := s.Members[c.Member]
		if !ok {
			return nil, refuse(ErrNotFound, "member %s is not in the cluster (see `vigil members`)", c.Member)
		}
		m.Draining = c.Flag
		return nil, nil

	case OpMaintenance:
		s.Maintenance = c.Flag
		return nil, nil

	case OpReport:
		if c.Report == nil {
			return nil, refuse(ErrInvalid, "report without an event")
		}
		s.EventSeq++
		s.Events = append(s.Events, PendingEvent{Seq: s.EventSeq, At: c.At, Event: *c.Report})
		if len(s.Events) > MaxPendingEvents {
			s.Events = s.Events[len(s.Events)-MaxPendingEvents:]
		}
		return nil, nil

	case OpDecide:
		d := c.Decide
		if d == nil {
			return nil, refuse(ErrInvalid, "decide without arguments")
		}
		for _, u := range d.Updates {
			if sv, ok := s.Services[u.Service]; ok {
				sv.Status = u.Status
			}
		}
		for _, dec := range d.Done {
			sv, ok := s.Services[dec.Service]
			if !ok {
				continue
			}
			switch dec.Kind {
			case director.Cleared:
				sv.Clear = false
			case director.RelocateDone:
				sv.RelocateTo, sv.LastRequest = "", "relocated to "+dec.Member
			case director.RelocateRefused:
				sv.RelocateTo, sv.LastRequest = "", "relocation to "+dec.Member+" refused: "+dec.Reason
			}
		}
		keep := s.Events[:0]
		for _, e := range s.Events {
			if e.Seq > d.Consumed {
				keep = append(keep, e)
			}
		}
		s.Events = keep
		return nil, nil
	}
	return s.applyAPIToken(c)
}
