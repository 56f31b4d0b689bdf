// Package lrm is the local resource manager of a member: it runs the exact
// start and stop halves of the failover sequence over a service's resources,
// probes them at start-up and runs their monitors. This file holds the
// sequencer, which knows the order and nothing else: it must not decide where
// a service runs (the director does) nor talk to the cluster database.
package lrm

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-cluster/vigil/internal/agents"
	"github.com/vigil-cluster/vigil/internal/spec"
)

// Sequence is one service's resources on this member, in spec order.
type Sequence struct {
	Service   string
	Resources []agents.Resource
}

// NewSequence builds the agents of a service.
func NewSequence(s spec.Service, env agents.Env) (*Sequence, error) {
	seq := &Sequence{Service: s.Name}
	for _, r := range s.Resources {
		a, err := agents.New(s.Name, r, env)
		if err != nil {
			return nil, fmt.Errorf("service %s: resource %s: %w", s.Name, r.Name, err)
		}
		seq.Resources = append(seq.Resources, a)
	}
	return seq, nil
}

// Report is the outcome of running a half (or a check) of the sequence.
type Report struct {
	// Results holds every run that was not skipped, in the order they ran.
	Results []agents.Result
	// Failed is the first run that failed, nil if none did.
	Failed   *agents.Result
	Duration time.Duration
}

// OK reports whether nothing failed.
func (r *Report) OK() bool { return r.Failed == nil }

func (r *Report) add(res agents.Result) {
	if res.Skipped {
		return
	}
	r.Results = append(r.Results, res)
	if res.Status != agents.OK && r.Failed == nil {
		f := res
		r.Failed = &f
	}
}

// runPhases runs the phases in order, each over every resource (in reverse
// list order for the stop half). With stopAtFailure it stops at the first
// failure; otherwise it goes on (a stop half must release everything it can).
func (s *Sequence) runPhases(ctx context.Context, phases []agents.Phase, c agents.Call, stopAtFailure bool, okIfNotRunning bool) Report {
	t0 := time.Now()
	var rep Report
	for _, p := range phases {
		for i := range s.Resources {
			j := i
			if agents.Reverse(p) {
				j = len(s.Resources) - 1 - i
			}
			res := s.Resources[j].Run(ctx, p, c)
			if okIfNotRunning && res.Status == agents.NotRunning {
				res.Status = agents.OK
			}
			rep.add(res)
			if stopAtFailure && rep.Failed != nil {
				rep.Duration = time.Since(t0)
				return rep
			}
		}
	}
	rep.Duration = time.Since(t0)
	return rep
}

// Start runs the start half: import volumes, fsck, mount, START, addresses
// up, START_NET, FM_INIT, FM_START. At the first failure it stops and runs the
// stop half, so nothing stays half started; the report then holds the start
// runs, the stop runs, and the start failure as Failed.
func (s *Sequence) Start(ctx context.Context, c agents.Call) Report {
	rep := s.runPhases(ctx, agents.StartSequence, c, true, false)
	if rep.Failed == nil {
		return rep
	}
	failed := rep.Failed
	cleanup := s.Stop(ctx, c, false)
	rep.Results = append(rep.Results, cleanup.Results...)
	rep.Duration += cleanup.Duration
	rep.Failed = failed
	return rep
}

// Stop runs the stop half (FM_STOP, STOP_NET, addresses down, STOP, unmount
// in reverse, deport), or with abort the abort half (ABORT_NET and ABORT in
// place of STOP_NET and STOP). It goes on after a failure, so it releases all
// it can; Failed is the first failure.
func (s *Sequence) Stop(ctx context.Context, c agents.Call, abort bool) Report {
	phases := agents.StopSequence
	if abort {
		phases = agents.AbortSequence
	}
	return s.runPhases(ctx, phases, c, false, true)
}

// Check runs every resource's monitor. A resource that is not running makes
// the check fail (Failed.Status says NotRunning).
func (s *Sequence) Check(ctx context.Context, c agents.Call) Report {
	return s.runPhases(ctx, []agents.Phase{agents.Check}, c, false, false)
}

// Probe asks every resource whether it runs here. Running reports whether
// any does.
func (s *Sequence) Probe(ctx context.Context, c agents.Call) (rep Report, running bool) {
	rep = s.runPhases(ctx, []agents.Phase{agents.Probe}, c, false, false)
	for _, r := range rep.Results {
		if r.Status == agents.OK {
			running = true
		}
	}
	return rep, running
}
