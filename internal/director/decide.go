package director

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Decide takes the cluster's state, the events since the last call and the
// time, and returns what to do. It is deterministic, does not modify in, and
// never panics on malformed input: unknown members and services are treated
// as absent (an owner that is not a member is treated as DOWN and unfenced).
//
// Services are decided in the order given, and balanced placement counts the
// services placed earlier in the same call, so give them in a stable order
// (the cluster database keeps them sorted by name).
func Decide(in Input) Output {
	d := newDecider(&in)
	d.applyEvents()
	d.countOwners()
	for i := range d.in.Services {
		d.decide(i)
	}
	d.memberDecisions()
	d.out.x = &explainer{d: d}
	return d.out
}

// Explain returns the plain-language explanation of where the service named
// name runs and why, or why it does not run, as `vigil service why` prints it.
func Explain(in Input, name string) string {
	out := Decide(in)
	return out.Why(name)
}

// policy is a service's restart policy with the defaults applied.
type policy struct {
	max     int
	window  time.Duration
	timeout time.Duration
}

func policyOf(sp *Spec) policy {
	p := policy{max: sp.MaxRestarts, window: sp.RestartWindow, timeout: sp.FailureTimeout}
	if p.max == 0 {
		p.max = DefaultMaxRestarts
	}
	if p.max < 0 {
		p.max = 0
	}
	if p.window <= 0 {
		p.window = DefaultRestartWindow
	}
	if p.timeout == 0 {
		p.timeout = DefaultFailureTimeout
	}
	return p
}

// reasonCode says whether a member may run a service, and if not, why.
type reasonCode uint8

// The codes, in the order they are checked: one member gets the first that
// applies.
const (
	okFavored reasonCode = iota
	okOther
	noWitness
	noDomain
	noRestricted
	noRemoving
	noDown
	noDisconnected
	noNetpar
	noDraining
	noFatal
	noHard
	noBanned
)

func (c reasonCode) ok() bool { return c <= okOther }

// failureCode reports whether c rejects a member because of the service's
// own failures there (as opposed to the member's state or the policy).
func (c reasonCode) failureCode() bool { return c == noFatal || c == noHard || c == noBanned }

// verdict is one member's eligibility for one service.
type verdict struct {
	code reasonCode
	// n is the favored rank (okFavored) or the number of services the
	// member ran when the choice was made (okOther).
	n int32
}

// work is the decision in progress for one service.
type work struct {
	st Status // its status; State is never FROZEN here until the end
	// ownFails and ownRestarts report that st's slices were copied, so
	// they may be changed without touching the input.
	ownFails, ownRestarts bool
	// prevOwner is the owner once the events were applied: the owner the
	// counts of services per member hold for it.
	prevOwner string
	// cause is why the service lost its owner in this call; it prefixes the
	// reason of the assignment that follows.
	cause string
	// retryStop: a failed stop was cleared; stop it again first.
	retryStop bool

	book []Decision // bookkeeping: failures recorded, expired, cleared
	decs []Decision // orders: assign, restart, stop
	reqs []Decision // answers to operator requests

	// For the explanation.
	lines    []string // what happens and why, one sentence a line
	verdicts []verdict
	frozen   string     // why it is frozen
	would    []Decision // what it would do when the freeze ends
	wouldSt  Status     // and the status it would have then
	fence    int        // member index to fence, or -1
}

type decider struct {
	in      *Input
	now     time.Time
	certain time.Duration  // Lease × Drift
	byName  map[string]int // member name -> index
	svcIdx  map[string]int // service name -> index
	byID    []int          // member indexes by id, then name
	counts  []int          // services owned, per member index
	work    []work
	fence   map[int]string
	// freeze is why everything is frozen ("" if not).
	freeze string
	// stopAll: no quorum and no-quorum-policy=stop.
	stopAll bool
	arena   []verdict
	out     Output
}

func newDecider(in *Input) *decider {
	d := &decider{in: in, now: in.Now}
	drift := in.Drift
	if !(drift >= 1 && drift <= 10) { // also catches NaN
		drift = DefaultDrift
	}
	d.certain = time.Duration(float64(in.Lease) * drift)
	d.byName = make(map[string]int, len(in.Members))
	for i, m := range in.Members {
		if _, dup := d.byName[m.Name]; !dup {
			d.byName[m.Name] = i
		}
	}
	d.byID = make([]int, len(in.Members))
	for i := range d.byID {
		d.byID[i] = i
	}
	slices.SortStableFunc(d.byID, func(a, b int) int {
		ma, mb := &in.Members[a], &in.Members[b]
		switch {
		case ma.ID < mb.ID:
			return -1
		case ma.ID > mb.ID:
			return 1
		}
		return strings.Compare(ma.Name, mb.Name)
	})
	d.counts = make([]int, len(in.Members))
	d.svcIdx = make(map[string]int, len(in.Services))
	for i := range in.Services {
		if _, dup := d.svcIdx[in.Services[i].Name]; !dup {
			d.svcIdx[in.Services[i].Name] = i
		}
	}
	d.work = make([]work, len(in.Services))
	for i := range in.Services {
		w := &d.work[i]
		w.fence = -1
		w.st = in.Services[i].Status
		if w.st.State == StateFrozen {
			// Thaw it in the working copy; it is frozen again below if
			// the freeze goes on.
			w.st.State = w.st.Held
			w.st.Reason = "no longer frozen"
			if w.st.State == "" || w.st.State == StateFrozen {
				w.st.State = StateOnline
				if w.st.Owner == "" {
					w.st.State = StateUnassigned
				}
			}
		}
		w.st.Held = ""
		if w.st.State == "" {
			w.st.State = StateOffline
			if w.st.Owner != "" {
				w.st.State = StateOnline
			}
		}
	}
	// Maintenance comes first: the operator said hands off, and that holds
	// even without quorum (as Pacemaker's maintenance-mode does).
	switch {
	case in.Maintenance && !in.Quorum:
		d.freeze = "maintenance mode is on (and there is no quorum): nothing is started, stopped or moved"
	case in.Maintenance:
		d.freeze = "maintenance mode is on: nothing is started, stopped or moved"
	case !in.Quorum && in.NoQuorumPolicy == NoQuorumFreeze:
		d.freeze = "no quorum (no-quorum-policy=freeze): nothing is started, stopped or moved until quorum returns"
	case !in.Quorum:
		d.stopAll = true
	}
	return d
}

// member returns the member named name, or nil.
func (d *decider) member(name string) (int, *Member) {
	i, ok := d.byName[name]
	if !ok {
		return -1, nil
	}
	return i, &d.in.Members[i]
}

func (d *decider) applyEvents() {
	for _, e := range d.in.Events {
		i, ok := d.svcIdx[e.Service]
		if !ok {
			d.ignore(e, "no such service")
			continue
		}
		d.applyEvent(&d.in.Services[i], &d.work[i], e)
	}
}

func (d *decider) ignore(e Event, why string) {
	d.out.Ignored = append(d.out.Ignored, fmt.Sprintf("%s %s %s epoch=%d: %s", e.Kind, e.Service, e.Member, e.Epoch, why))
}

func (d *decider) applyEvent(s *Service, w *work, e Event) {
	st := &w.st
	switch {
	case e.Epoch != st.Epoch:
		d.ignore(e, fmt.Sprintf("stale: %s is at epoch %d", s.Name, st.Epoch))
		return
	case e.Member != st.Owner:
		owner := st.Owner
		if owner == "" {
			owner = "nobody"
		}
		d.ignore(e, fmt.Sprintf("%s is not %s's owner (the owner is %s)", e.Member, s.Name, owner))
		return
	}
	sev := e.Severity
	if sev == "" {
		sev = Soft
	}
	notNow := func() { d.ignore(e, fmt.Sprintf("%s is %s, so the report does not apply", s.Name, st.State)) }
	switch e.Kind {
	case StartSucceeded:
		if st.State != StateStarting {
			notNow()
			return
		}
		st.State = StateOnline
		st.Reason = "started on " + e.Member
	case StartFailed:
		if st.State != StateStarting {
			notNow()
			return
		}
		d.recordFailure(s, w, e, sev, true)
		st.Reason = failOn(&st.Fails[failIndex(st.Fails, e.Member)])
		st.State = StateFailed
	case MonitorFailed:
		if st.State != StateOnline {
			notNow()
			return
		}
		d.recordFailure(s, w, e, sev, false)
		st.Reason = failOn(&st.Fails[failIndex(st.Fails, e.Member)])
		st.State = StateFailed
	case StopSucceeded:
		if st.State != StateStopping && (st.State != StateFailed || !st.StopFailed) {
			notNow()
			return
		}
		w.cause = st.Reason
		st.Owner = ""
		st.StopFailed = false
		st.State = StateOffline
		st.Reason = "stopped on " + e.Member
	case StopFailed:
		if st.State != StateStopping && st.State != StateStarting {
			notNow()
			return
		}
		d.recordFailure(s, w, e, sev, false)
		st.Reason = failOn(&st.Fails[failIndex(st.Fails, e.Member)])
		st.State = StateFailed
		st.StopFailed = true
	default:
		d.ignore(e, "unknown kind of event")
	}
}

// recordFailure counts a failure of s on e.Member.
func (d *decider) recordFailure(s *Service, w *work, e Event, sev Severity, ban bool) {
	d.ownFails(w)
	st := &w.st
	i, found := slices.BinarySearchFunc(st.Fails, e.Member, func(r FailRecord, m string) int {
		switch {
		case r.Member < m:
			return -1
		case r.Member > m:
			return 1
		}
		return 0
	})
	if !found {
		st.Fails = slices.Insert(st.Fails, i, FailRecord{Member: e.Member})
	}
	r := &st.Fails[i]
	r.Count++
	r.Last = d.now
	r.Kind, r.Severity, r.Detail = e.Kind, sev, e.Detail
	switch sev {
	case Hard:
		r.Hard = true
	case Fatal:
		r.Fatal = true
	}
	if ban {
		r.Banned = true
	}
	w.book = append(w.book, Decision{Kind: RecordFailure, Service: s.Name, Member: e.Member,
		Reason: "failure " + strconv.Itoa(r.Count) + " there: " + r.String()})
}

// failOn describes failure r with its member: "start failed on m1 (soft)".
func failOn(r *FailRecord) string {
	t := r.String()
	verb := strings.ReplaceAll(string(r.Kind), "-", " ")
	return verb + " on " + r.Member + t[len(verb):]
}

func (d *decider) ownFails(w *work) {
	if !w.ownFails {
		w.st.Fails = slices.Clone(w.st.Fails)
		w.ownFails = true
	}
}

func (d *decider) ownRestarts(w *work) {
	if !w.ownRestarts {
		w.st.Restarts = slices.Clone(w.st.Restarts)
		w.ownRestarts = true
	}
}

func (d *decider) countOwners() {
	for i := range d.work {
		w := &d.work[i]
		w.prevOwner = w.st.Owner
		if j, m := d.member(w.st.Owner); m != nil {
			d.counts[j]++
		}
	}
}

// decide decides for service i.
func (d *decider) decide(i int) {
	s := &d.in.Services[i]
	w := &d.work[i]
	pol := policyOf(&s.Spec)
	d.expire(s, w, pol)
	if s.Spec.Clear {
		d.clear(s, w)
	}
	pre := w.st
	// The plan works on copies, so that pre stays as it is.
	w.ownFails, w.ownRestarts = false, false
	if d.stopAll {
		d.planNoQuorum(s, w)
		if w.frozen != "" {
			// Work out, for the explanation, what happens when quorum
			// returns.
			why := w.frozen
			w.lines = nil
			w.cause = ""
			d.plan(s, w, pol)
			w.frozen = why
		}
	} else {
		d.plan(s, w, pol)
	}
	if w.frozen == "" && d.freeze != "" {
		w.frozen = d.freeze
	}
	if w.frozen != "" {
		w.would = w.decs
		w.wouldSt = w.st
		w.decs, w.reqs = nil, nil
		w.fence = -1
		held := pre.State
		w.st = pre
		w.st.Held = held
		w.st.State = StateFrozen
		w.st.Reason = w.frozen
	}
	d.commit(s, w)
}

// expire drops the fail records and restarts that are too old to count.
func (d *decider) expire(s *Service, w *work, pol policy) {
	st := &w.st
	if pol.timeout > 0 {
		for k := 0; k < len(st.Fails); k++ {
			r := &st.Fails[k]
			if r.Hard || r.Fatal || d.now.Sub(r.Last) < pol.timeout {
				continue
			}
			w.book = append(w.book, Decision{Kind: ExpireFailures, Service: s.Name, Member: r.Member,
				Reason: "no failure there for " + fmtDur(pol.timeout)})
			d.ownFails(w)
			st.Fails = slices.Delete(st.Fails, k, k+1)
			k--
		}
	}
	for k := 0; k < len(st.Restarts); k++ {
		if d.now.Sub(st.Restarts[k].At) < pol.window {
			continue
		}
		d.ownRestarts(w)
		st.Restarts = slices.Delete(st.Restarts, k, k+1)
		k--
	}
}

// clear carries out `vigil service clear`.
func (d *decider) clear(s *Service, w *work) {
	st := &w.st
	st.Fails, st.Restarts = nil, nil
	w.ownFails, w.ownRestarts = true, true
	if st.StopFailed {
		// The operator was told to make sure it is stopped, then clear:
		// the stop is tried again before anything else.
		w.retryStop = true
	}
	st.StopFailed = false
	if st.State == StateFailed {
		if st.Owner == "" {
			st.State = StateUnassigned
		}
		st.Reason = "cleared by the operator"
	}
	w.book = append(w.book, Decision{Kind: Cleared, Service: s.Name,
		Reason: "fail counts, restarts and the FAILED state are reset"})
}

// issue gives an order to member m: Assign, Restart or Stop.
func (d *decider) issue(s *Service, w *work, kind DecisionKind, m, reason string) {
	st := &w.st
	st.Epoch++
	st.Owner = m
	st.Reason = reason
	st.StopFailed = false
	switch kind {
	case Assign, Restart:
		st.State = StateStarting
	case Stop:
		st.State = StateStopping
	}
	w.decs = append(w.decs, Decision{Kind: kind, Service: s.Name, Member: m, Epoch: st.Epoch, Reason: reason})
}

// certainAt returns when member m's lease has certainly run out, as this
// director can tell.
func (d *decider) certainAt(m *Member) time.Time {
	from := d.in.TermStart
	if m != nil && m.LastRenewal.After(from) {
		from = m.LastRenewal
	}
	return from.Add(d.certain)
}

// planNoQuorum: without quorum, with no-quorum-policy=stop, running services
// are stopped where they run and everything else is frozen.
func (d *decider) planNoQuorum(s *Service, w *work) {
	st := &w.st
	_, o := d.member(st.Owner)
	reachable := o != nil && (o.State == MemberUp || o.State == MemberDisconnected)
	switch {
	case reachable && (st.State == StateOnline || st.State == StateStarting || st.State == StateFailed && !st.StopFailed):
		d.issue(s, w, Stop, st.Owner, "no quorum (no-quorum-policy=stop)")
		w.lines = append(w.lines, "it starts again when quorum returns")
	case reachable && st.State == StateStopping:
		w.lines = append(w.lines, "waiting for "+st.Owner+" to confirm the stop (epoch "+strconv.FormatUint(st.Epoch, 10)+"): "+st.Reason)
	default:
		w.frozen = "no quorum (no-quorum-policy=stop): nothing is started or moved until quorum returns"
	}
}

// plan decides for one service as if nothing were frozen. It may set
// w.frozen (its owner is NETPAR); decide then throws the orders away.
func (d *decider) plan(s *Service, w *work, pol policy) {
	st := &w.st
	if st.Owner != "" {
		oi, o := d.member(st.Owner)
		switch {
		case o != nil && o.State != MemberUp && o.Fenced:
			w.cause = st.Owner + " is " + string(o.State) + " and was fenced"
			d.lostOwner(w)
		case o == nil || o.State == MemberDown:
			at := d.certainAt(o)
			if d.in.Lease > 0 && !d.now.Before(at) && o != nil && d.in.Fencing && !o.NoFenceDevice {
				// Its lease is over, but a frozen host cannot have
				// stopped anything: with a fence device, only the
				// fence ends the wait.
				d.waitForFence(s, w, oi, o)
				return
			}
			if d.in.Lease > 0 && !d.now.Before(at) {
				if o == nil {
					w.cause = st.Owner + " is no longer a member and its lease has certainly run out"
				} else {
					w.cause = st.Owner + " is DOWN and its lease has certainly run out"
				}
				d.lostOwner(w)
				break
			}
			d.waitForLease(s, w, oi, o, at)
			return
		case o.State == MemberNetpar:
			w.frozen = st.Owner + " is NETPAR (seen only on a secondary link): " + s.Name +
				" keeps running there, but nothing is started or stopped there until the partition heals"
			// Still work out what would happen, for the explanation.
			d.planOwned(s, w, pol, oi)
			return
		default:
			d.planOwned(s, w, pol, oi)
			return
		}
	}
	d.place(s, w)
}

// lostOwner forgets an owner that can no longer run the service.
func (d *decider) lostOwner(w *work) {
	st := &w.st
	if st.State == StateStopping {
		w.cause = st.Reason + "; " + w.cause
	}
	st.Owner = ""
	st.StopFailed = false
	st.State = StateOffline
}

// waitForFence holds the services of a DOWN member whose lease is over
// until its fence is confirmed.
func (d *decider) waitForFence(s *Service, w *work, oi int, o *Member) {
	name := w.st.Owner
	w.lines = append(w.lines, name+" is DOWN and its lease has run out, but a host that froze (a paused VM, a stuck kernel) cannot have stopped "+
		s.Name+" itself; with a fence device configured, "+s.Name+" waits until "+name+" is fenced")
	if o.FencePending {
		w.lines = append(w.lines, "a fence of "+name+" is in progress; "+s.Name+" moves as soon as it is confirmed")
		return
	}
	w.fence = oi
	w.lines = append(w.lines, "fencing "+name+"; if every fence device keeps failing, confirm by hand that "+name+" is off with `vigil fence confirm "+name+"`")
}

func (d *decider) waitForLease(s *Service, w *work, oi int, o *Member, at time.Time) {
	name := w.st.Owner
	if d.in.Lease <= 0 {
		// Without a lease length nothing says when it has run out: only
		// a fence can end the wait.
		w.lines = append(w.lines, name+" is DOWN and the lease length is not set: "+s.Name+" waits until "+name+" is fenced")
		if o != nil && d.in.Fencing && !o.FencePending {
			w.fence = oi
		}
		return
	}
	line := name + " is DOWN: " + s.Name + " waits until " + name + " is fenced or its lease has certainly run out (in " +
		fmtDur(at.Sub(d.now)) + ")"
	if o == nil {
		line = name + " is not a member: " + s.Name + " waits until its lease has certainly run out (in " + fmtDur(at.Sub(d.now)) + ")"
	} else if o.LastRenewal.Before(d.in.TermStart) {
		line += "; this director took office " + fmtDur(d.now.Sub(d.in.TermStart)) + " ago and waits one whole lease (" +
			fmtDur(d.certain) + " with the drift margin) for leases it did not grant"
	}
	w.lines = append(w.lines, line+", so that it never runs on two members")
	if o == nil {
		return
	}
	switch {
	case !d.in.Fencing:
		w.lines = append(w.lines, "no fencing is configured, so only the lease can end the wait")
	case o.FencePending:
		w.lines = append(w.lines, "a fence of "+name+" is in progress; "+s.Name+" moves as soon as it is confirmed")
	default:
		w.fence = oi
		w.lines = append(w.lines, "fencing "+name+"; "+s.Name+" moves as soon as the fence is confirmed")
	}
}

// planOwned decides for a service whose owner is reachable (UP or
// DISCONNECTED; or NETPAR, for the explanation only).
func (d *decider) planOwned(s *Service, w *work, pol policy, oi int) {
	st := &w.st
	o := &d.in.Members[oi]
	switch st.State {
	case StateStopping:
		w.lines = append(w.lines, "waiting for "+st.Owner+" to confirm the stop (epoch "+strconv.FormatUint(st.Epoch, 10)+"): "+st.Reason)
		return
	case StateFailed:
		if st.StopFailed {
			d.stopFailed(s, w, oi, o)
			return
		}
		d.recover(s, w, pol, oi, o)
		return
	}
	// ONLINE or STARTING (or a state that should have no owner: treat it
	// as running, the safe side).
	if s.Spec.Target == TargetOffline {
		d.issue(s, w, Stop, st.Owner, "taken offline by the operator")
		return
	}
	if why := d.leaveReason(s, o); why != "" {
		d.issue(s, w, Stop, st.Owner, why)
		if next := d.next(s, w, oi); next >= 0 {
			w.lines = append(w.lines, "once the stop is confirmed, it starts on "+d.in.Members[next].Name)
		} else {
			w.lines = append(w.lines, "no other member can run it now: once stopped, it waits UNASSIGNED")
		}
		return
	}
	if to := s.Spec.RelocateTo; to != "" {
		if to == st.Owner {
			w.reqs = append(w.reqs, Decision{Kind: RelocateDone, Service: s.Name, Member: to,
				Reason: s.Name + " is already on " + to})
		} else if refused := d.relocateRefusal(s, w, to); refused != "" {
			w.reqs = append(w.reqs, Decision{Kind: RelocateRefused, Service: s.Name, Member: to, Reason: refused})
		} else {
			d.issue(s, w, Stop, st.Owner, "relocating to "+to+" at the operator's request")
			w.lines = append(w.lines, "once the stop is confirmed, it starts on "+to)
			return
		}
	}
	if s.Spec.Failback && st.State == StateOnline {
		if fb, wait := d.failbackTarget(s, w, oi); fb >= 0 && wait <= 0 {
			m := &d.in.Members[fb]
			d.issue(s, w, Stop, st.Owner, "failing back to "+m.Name+" (favored #"+strconv.Itoa(favoredRank(&s.Spec, m.Name)+1)+")")
			w.lines = append(w.lines, "once the stop is confirmed, it starts on "+m.Name)
			return
		}
	}
}

// leaveReason says why a running service must leave member o, or "".
func (d *decider) leaveReason(s *Service, o *Member) string {
	switch c, _ := d.check(s, nil, o); c {
	case noWitness:
		return o.Name + " is a witness, which never hosts services"
	case noDomain:
		return o.Name + " is in domain " + strconv.Itoa(o.Domain) + ", " + s.Name + " runs in domain " + strconv.Itoa(s.Spec.Domain)
	case noRestricted:
		return o.Name + " is not in " + s.Name + "'s restricted set"
	case noRemoving:
		return o.Name + " is being removed"
	case noDisconnected:
		return o.Name + " is DISCONNECTED (it lost its public links)"
	case noDraining:
		return o.Name + " is draining"
	case noNetpar, noDown:
		// Not reachable now; this is what happens once it is UP again.
		if o.Draining {
			return o.Name + " is draining"
		}
	}
	return ""
}

func (d *decider) stopFailed(s *Service, w *work, oi int, o *Member) {
	name := o.Name
	switch {
	case !d.in.Fencing:
		w.lines = append(w.lines, "the stop failed on "+name+", so "+s.Name+" may still run there, and no fencing is configured: make sure it is stopped on "+
			name+", then run `vigil service clear "+s.Name+"`")
	case o.FencePending:
		w.lines = append(w.lines, "the stop failed on "+name+", so "+s.Name+" may still run there; a fence of "+name+" is in progress, and "+
			s.Name+" moves once it is confirmed")
	default:
		w.fence = oi
		w.lines = append(w.lines, "the stop failed on "+name+", so "+s.Name+" may still run there; fencing "+name+", and "+
			s.Name+" moves once the fence is confirmed")
	}
}

// recover decides what follows a failure on the owner: restart in place or
// stop (to move it, or to give up).
func (d *decider) recover(s *Service, w *work, pol policy, oi int, o *Member) {
	st := &w.st
	name := st.Owner
	what := st.Reason
	var rec *FailRecord
	if k := failIndex(st.Fails, name); k >= 0 {
		rec = &st.Fails[k]
		what = failOn(rec)
	}
	if f := fatalRecord(st.Fails); f != nil {
		d.issue(s, w, Stop, name, failOn(f)+"; not started anywhere until cleared")
		return
	}
	if w.retryStop {
		why := "the stop is tried again after `vigil service clear " + s.Name + "`"
		if leave := d.leaveReason(s, o); leave != "" {
			why += "; " + leave
		}
		d.issue(s, w, Stop, name, why)
		return
	}
	switch {
	case rec != nil && rec.Hard:
		d.issue(s, w, Stop, name, what+"; not on "+name+" again until cleared")
		return
	case rec != nil && rec.Banned:
		d.issue(s, w, Stop, name, what+"; trying another member")
		return
	case s.Spec.Target == TargetOffline:
		d.issue(s, w, Stop, name, what+"; taken offline by the operator")
		return
	}
	if why := d.leaveReason(s, o); why != "" {
		d.issue(s, w, Stop, name, what+"; "+why)
		return
	}
	if to := s.Spec.RelocateTo; to != "" && to != name && d.relocateRefusal(s, w, to) == "" {
		d.issue(s, w, Stop, name, what+"; relocating to "+to+" at the operator's request")
		return
	}
	n := 0
	for _, r := range st.Restarts {
		if r.Member == name {
			n++
		}
	}
	if n < pol.max {
		d.ownRestarts(w)
		st.Restarts = append(st.Restarts, RestartRecord{Member: name, At: d.now})
		d.issue(s, w, Restart, name, what+"; restart "+strconv.Itoa(n+1)+" of "+strconv.Itoa(pol.max)+
			" within "+fmtDur(pol.window))
		return
	}
	// Out of restarts: keep it off this member until its fail record
	// expires, and move it.
	count := 1
	d.ownFails(w)
	if k := failIndex(st.Fails, name); k >= 0 {
		st.Fails[k].Banned = true
		count = st.Fails[k].Count
	}
	why := what + "; failed " + times(count) + " there, "
	if pol.max == 0 {
		why += "and restarts in place are off"
	} else {
		why += "restarted " + times(n) + " within " + fmtDur(pol.window) + " (the limit)"
	}
	if d.next(s, w, oi) < 0 {
		why += ": stopping it; no other member can run it"
	} else {
		why += ": moving it"
	}
	d.issue(s, w, Stop, name, why)
}

// relocateRefusal says why the operator's relocation to member to cannot be
// carried out, or "".
func (d *decider) relocateRefusal(s *Service, w *work, to string) string {
	_, t := d.member(to)
	if t == nil {
		return to + " is not a member"
	}
	c, _ := d.check(s, &w.st, t)
	if !c.ok() {
		return to + " cannot run " + s.Name + ": " + d.reasonTextAt(s, &w.st, t, verdict{code: c}, false)
	}
	if s.Spec.Failback {
		if fb := d.favoredBefore(s, w, to); fb >= 0 {
			m := &d.in.Members[fb]
			return "failback is on and " + m.Name + " (favored #" + strconv.Itoa(favoredRank(&s.Spec, m.Name)+1) +
				") can run " + s.Name + ", so it would move straight back; turn failback off or drain " + m.Name + " first"
		}
	}
	return ""
}

// failbackTarget returns the most favored eligible member that is more
// favored than the owner oi, or -1, and how long it must still stay UP
// before the service fails back to it (the failback delay).
func (d *decider) failbackTarget(s *Service, w *work, oi int) (int, time.Duration) {
	fb := d.favoredBefore(s, w, d.in.Members[oi].Name)
	if fb < 0 {
		return -1, 0
	}
	m := &d.in.Members[fb]
	if m.UpSince.IsZero() || s.Spec.FailbackDelay <= 0 {
		return fb, 0
	}
	return fb, m.UpSince.Add(s.Spec.FailbackDelay).Sub(d.now)
}

// favoredBefore returns the first eligible member of the favored list that
// comes before member name (or anywhere in the list, if name is not in it),
// or -1.
func (d *decider) favoredBefore(s *Service, w *work, name string) int {
	for _, f := range s.Spec.Favored {
		if f == name {
			return -1
		}
		fi, m := d.member(f)
		if m == nil {
			continue
		}
		if c, _ := d.check(s, &w.st, m); c.ok() {
			return fi
		}
	}
	return -1
}

// check says whether member m may run service s. st, when not nil, brings
// the fail records into it.
func (d *decider) check(s *Service, st *Status, m *Member) (reasonCode, int) {
	sp := &s.Spec
	switch {
	case m.Witness:
		return noWitness, 0
	case m.Domain != sp.Domain:
		return noDomain, 0
	case len(sp.Restricted) > 0 && !slices.Contains(sp.Restricted, m.Name):
		return noRestricted, 0
	case m.Removing:
		return noRemoving, 0
	}
	switch m.State {
	case MemberUp:
	case MemberDisconnected:
		return noDisconnected, 0
	case MemberNetpar:
		return noNetpar, 0
	default:
		return noDown, 0
	}
	if m.Draining {
		return noDraining, 0
	}
	if st != nil {
		for k := range st.Fails {
			r := &st.Fails[k]
			if r.Fatal {
				return noFatal, 0
			}
			if r.Member != m.Name {
				continue
			}
			if r.Hard {
				return noHard, 0
			}
			if r.Banned {
				return noBanned, 0
			}
		}
	}
	if k := favoredRank(sp, m.Name); k >= 0 {
		return okFavored, k
	}
	return okOther, 0
}

func favoredRank(sp *Spec, name string) int {
	return slices.Index(sp.Favored, name)
}

func failIndex(fails []FailRecord, member string) int {
	for k := range fails {
		if fails[k].Member == member {
			return k
		}
	}
	return -1
}

func fatalRecord(fails []FailRecord) *FailRecord {
	for k := range fails {
		if fails[k].Fatal {
			return &fails[k]
		}
	}
	return nil
}

// next returns the member s would be placed on if member oi could not run
// it, or -1.
func (d *decider) next(s *Service, w *work, oi int) int {
	best := -1
	var bv verdict
	for _, j := range d.byID {
		if j == oi {
			continue
		}
		c, k := d.check(s, &w.st, &d.in.Members[j])
		if !c.ok() {
			continue
		}
		if c == okOther {
			k = d.counts[j]
		}
		v := verdict{code: c, n: int32(k)}
		if best < 0 || d.better(s, v, bv) {
			best, bv = j, v
		}
	}
	return best
}

// verdicts evaluates every member for s, in member index order.
func (d *decider) verdicts(s *Service, w *work) []verdict {
	n := len(d.in.Members)
	if len(d.arena) < n {
		d.arena = make([]verdict, max(n*256, 1024))
	}
	vs := d.arena[:n:n]
	d.arena = d.arena[n:]
	for j := range d.in.Members {
		c, k := d.check(s, &w.st, &d.in.Members[j])
		if c == okOther {
			k = d.counts[j]
		}
		vs[j] = verdict{code: c, n: int32(k)}
	}
	return vs
}

// best returns the member to place s on, or -1: the first eligible favored
// member, then any eligible member, by fewest services when s is balanced,
// then not the director's own member, then by member id.
func (d *decider) best(s *Service, vs []verdict) int {
	best := -1
	for _, j := range d.byID {
		v := vs[j]
		if !v.code.ok() {
			continue
		}
		if best < 0 || d.better(s, v, vs[best]) ||
			!d.better(s, vs[best], v) && d.isDirector(best) && !d.isDirector(j) {
			best = j
		}
	}
	return best
}

func (d *decider) isDirector(j int) bool {
	return d.in.Director != "" && d.in.Members[j].Name == d.in.Director
}

// better reports whether a ranks before b (ties go to the earlier one).
func (d *decider) better(s *Service, a, b verdict) bool {
	switch {
	case a.code == okFavored && b.code == okFavored:
		return a.n < b.n
	case a.code == okFavored:
		return true
	case b.code == okFavored:
		return false
	case s.Spec.Balanced:
		return a.n < b.n
	}
	return false
}

// place decides for a service that no member runs.
func (d *decider) place(s *Service, w *work) {
	st := &w.st
	if f := fatalRecord(st.Fails); f != nil {
		d.refuseRelocation(s, w, s.Name+" hit a fatal error; run `vigil service clear "+s.Name+"` first")
		w.cause = ""
		d.settle(w, StateFailed, failOn(f)+"; not started anywhere until `vigil service clear "+s.Name+"`")
		return
	}
	if s.Spec.Target == TargetOffline {
		d.refuseRelocation(s, w, s.Name+" is offline; bring it online with `vigil service online "+s.Name+"` first")
		d.settle(w, StateOffline, "taken offline by the operator")
		return
	}
	vs := d.verdicts(s, w)
	w.verdicts = vs
	prefix := ""
	if w.cause != "" {
		prefix = w.cause + "; "
	}
	if to := s.Spec.RelocateTo; to != "" {
		if why := d.relocateRefusal(s, w, to); why != "" {
			w.reqs = append(w.reqs, Decision{Kind: RelocateRefused, Service: s.Name, Member: to, Reason: why})
			if strings.Contains(w.cause, "relocating to "+to) {
				prefix = "relocation to " + to + " refused (" + why + "); "
			}
		} else {
			reason := "relocated to " + to + " at the operator's request"
			if w.cause != "" && !strings.Contains(w.cause, "relocating to "+to) {
				reason = prefix + reason
			}
			d.issue(s, w, Assign, to, reason)
			w.reqs = append(w.reqs, Decision{Kind: RelocateDone, Service: s.Name, Member: to, Reason: s.Name + " is assigned to " + to})
			return
		}
	}
	if b := d.best(s, vs); b >= 0 {
		name := d.in.Members[b].Name
		reason := prefix + d.choice(s, vs, b)
		if strings.HasPrefix(w.cause, "failing back to "+name+" ") {
			reason = w.cause
		}
		d.issue(s, w, Assign, name, reason)
		return
	}
	// Nowhere to go. FAILED if its own failures ruled out every member the
	// policy allows, UNASSIGNED otherwise (it starts when a member can run
	// it).
	allowed, failed := 0, 0
	var names []string
	for _, j := range d.byID {
		if v := vs[j]; v.code >= noRemoving { // passes witness, domain and restricted
			allowed++
			if v.code.failureCode() {
				failed++
				names = append(names, d.in.Members[j].Name)
			}
		}
	}
	if allowed > 0 && failed == allowed {
		w.cause = ""
		d.settle(w, StateFailed, "failed on every member that may run it ("+strings.Join(names, ", ")+")")
		return
	}
	d.settle(w, StateUnassigned, "no member can run it now")
}

// refuseRelocation answers a pending relocation that cannot happen.
func (d *decider) refuseRelocation(s *Service, w *work, why string) {
	if to := s.Spec.RelocateTo; to != "" {
		w.reqs = append(w.reqs, Decision{Kind: RelocateRefused, Service: s.Name, Member: to, Reason: why})
	}
}

// settle puts an unowned service in a state without an order.
func (d *decider) settle(w *work, state ServiceState, reason string) {
	st := &w.st
	if w.cause != "" && w.cause != reason {
		reason = w.cause + "; " + reason
	} else if w.cause == "" && st.State == state && st.Reason != "" && st.Reason != "no longer frozen" && st.Reason != "cleared by the operator" {
		// Keep the reason it was given, so that the record does not
		// change on every call.
		return
	}
	st.State = state
	st.Reason = reason
}

// choice says why member b was chosen.
func (d *decider) choice(s *Service, vs []verdict, b int) string {
	m := &d.in.Members[b]
	v := vs[b]
	if v.code == okFavored {
		return m.Name + " is favored #" + strconv.Itoa(int(v.n)+1)
	}
	r := ""
	if len(s.Spec.Favored) > 0 {
		r = "no favored member can run it; "
	}
	eligible := 0
	for _, v := range vs {
		if v.code.ok() {
			eligible++
		}
	}
	if eligible == 1 {
		return r + m.Name + " is the only member that can run it"
	}
	spared := ""
	for _, j := range d.byID {
		if j == b {
			break
		}
		if vs[j].code.ok() && d.isDirector(j) && !d.better(s, vs[j], v) && !d.better(s, v, vs[j]) {
			spared = ", leaving " + d.in.Director + " to the director (one crash then never costs an election and a failover)"
		}
	}
	if s.Spec.Balanced {
		return r + m.Name + " hosts the fewest services (" + strconv.Itoa(int(v.n)) + ")" + spared
	}
	return r + m.Name + " has the lowest id of the members that can run it" + spared
}

// commit records the outcome for service s.
func (d *decider) commit(s *Service, w *work) {
	st := &w.st
	if st.Owner != w.prevOwner {
		if j, m := d.member(w.prevOwner); m != nil {
			d.counts[j]--
		}
		if j, m := d.member(st.Owner); m != nil {
			d.counts[j]++
		}
	}
	d.out.Decisions = append(d.out.Decisions, w.book...)
	d.out.Decisions = append(d.out.Decisions, w.decs...)
	old := s.Status.State
	if st.State != old && len(w.decs) == 0 {
		d.out.Decisions = append(d.out.Decisions, Decision{Kind: Mark, Service: s.Name, State: st.State, Reason: st.Reason})
	}
	d.out.Decisions = append(d.out.Decisions, w.reqs...)
	if w.fence >= 0 {
		if d.fence == nil {
			d.fence = map[int]string{}
		}
		name := d.in.Members[w.fence].Name
		why := name + " is DOWN and its services may still run there; fencing it lets them move"
		if w.st.StopFailed {
			why = "stop of " + s.Name + " failed on " + name
		}
		if _, ok := d.fence[w.fence]; !ok || w.st.StopFailed {
			d.fence[w.fence] = why
		}
	}
	if !sameStatus(&s.Status, st) {
		d.out.Updates = append(d.out.Updates, Update{Service: s.Name, Status: *st})
	}
}

func sameStatus(a, b *Status) bool {
	return a.State == b.State && a.Held == b.Held && a.Owner == b.Owner && a.Epoch == b.Epoch &&
		a.Reason == b.Reason && a.StopFailed == b.StopFailed &&
		slices.EqualFunc(a.Fails, b.Fails, func(x, y FailRecord) bool {
			return x.Member == y.Member && x.Count == y.Count && x.Last.Equal(y.Last) && x.Banned == y.Banned &&
				x.Hard == y.Hard && x.Fatal == y.Fatal && x.Kind == y.Kind && x.Severity == y.Severity && x.Detail == y.Detail
		}) &&
		slices.EqualFunc(a.Restarts, b.Restarts, func(x, y RestartRecord) bool { return x.Member == y.Member && x.At.Equal(y.At) })
}

// memberDecisions adds the fences and the members ready for removal.
func (d *decider) memberDecisions() {
	if !d.in.Quorum || d.in.Maintenance {
		return
	}
	for _, j := range d.byID {
		why, ok := d.fence[j]
		if !ok {
			continue
		}
		m := &d.in.Members[j]
		if m.Fenced || m.FencePending {
			continue
		}
		d.out.Decisions = append(d.out.Decisions, Decision{Kind: Fence, Member: m.Name, Reason: why})
	}
	for _, j := range d.byID {
		m := &d.in.Members[j]
		if m.Removing && d.counts[j] == 0 {
			d.out.Decisions = append(d.out.Decisions, Decision{Kind: Removable, Member: m.Name,
				Reason: m.Name + " hosts no service any more: its removal may go ahead"})
		}
	}
}

// times formats a count of times: "once", "twice", "3 times".
func times(n int) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return strconv.Itoa(n) + " times"
}

// fmtDur formats a duration for people: "1.5s", "9m30s", "10m", "2h".
func fmtDur(t time.Duration) string {
	if t < 0 {
		t = 0
	}
	switch {
	case t >= time.Minute:
		t = t.Round(time.Second)
	case t >= 10*time.Second:
		t = t.Round(100 * time.Millisecond)
	case t >= time.Second:
		t = t.Round(10 * time.Millisecond)
	default:
		t = t.Round(time.Millisecond)
	}
	r := t.String()
	if strings.HasSuffix(r, "m0s") {
		r = r[:len(r)-2]
	}
	if strings.HasSuffix(r, "h0m") {
		r = r[:len(r)-2]
	}
	return r
}
