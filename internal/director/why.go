package director

import (
	"strconv"
	"strings"
	"time"
)

// explainer keeps what Decide worked out, so that the explanations are
// written only when asked for: writing them for every service on every
// call would cost more than deciding.
type explainer struct {
	d *decider
}

// Why explains, in plain language, where the service named name runs and
// why, or why it does not run: what was decided, and for every member
// whether it can run the service, and if not, why not. Members with the
// same answer share a line. It reads the Input that was given to Decide, so
// that must not change until the explanations have been read.
func (o Output) Why(name string) string {
	if o.x == nil {
		return ""
	}
	d := o.x.d
	if i, ok := d.svcIdx[name]; ok {
		return d.explain(i)
	}
	return name + ": no such service"
}

func (d *decider) explain(i int) string {
	s := &d.in.Services[i]
	w := &d.work[i]
	st := &w.st
	var b strings.Builder
	b.WriteString(s.Name + ": " + stateLine(st))
	line := func(t string) {
		b.WriteString("\n  ")
		b.WriteString(t)
	}
	decs := w.decs
	prefix := ""
	if w.frozen != "" {
		line("frozen: " + w.frozen)
		decs = w.would
		prefix = "when the freeze ends: "
	}
	for _, dec := range decs {
		line(prefix + actionText(dec))
	}
	for _, l := range w.lines {
		line(prefix + l)
	}
	if len(decs) == 0 && len(w.lines) == 0 {
		if t := d.summary(s, w); t != "" {
			line(prefix + t)
		}
	}
	for _, r := range w.book {
		if r.Kind == Cleared {
			line("cleared by the operator: " + r.Reason)
		}
	}
	for _, r := range w.reqs {
		switch r.Kind {
		case RelocateDone:
			line("relocation to " + r.Member + " done: " + r.Reason)
		case RelocateRefused:
			line("relocation to " + r.Member + " refused: " + r.Reason)
		}
	}
	if w.frozen == "" && len(w.reqs) == 0 && len(w.decs) == 0 && s.Spec.RelocateTo != "" {
		line("relocation to " + s.Spec.RelocateTo + " requested; waiting for the current step to finish")
	}
	d.memberLines(s, w, line)
	return b.String()
}

func stateLine(st *Status) string {
	state := st.State
	if state == StateFrozen {
		if st.Owner == "" {
			return "FROZEN (" + string(st.Held) + ")"
		}
		return "FROZEN (" + string(st.Held) + " on " + st.Owner + ", epoch " + strconv.FormatUint(st.Epoch, 10) + ")"
	}
	if st.Owner == "" {
		return string(state)
	}
	return string(state) + " on " + st.Owner + " (epoch " + strconv.FormatUint(st.Epoch, 10) + ")"
}

func actionText(d Decision) string {
	e := " (epoch " + strconv.FormatUint(d.Epoch, 10) + "): "
	switch d.Kind {
	case Assign:
		return "starting on " + d.Member + e + d.Reason
	case Restart:
		return "restarting on " + d.Member + e + d.Reason
	case Stop:
		return "stopping on " + d.Member + e + d.Reason
	}
	return d.String()
}

// summary explains a service that nothing was decided for (or, if it is
// frozen, that nothing would be decided for when the freeze ends).
func (d *decider) summary(s *Service, w *work) string {
	st := &w.st
	if st.State == StateFrozen {
		st = &w.wouldSt
	}
	switch st.State {
	case StateOnline:
		return d.stays(s, w)
	case StateStarting:
		t := "waiting for " + st.Owner + " to confirm the start (epoch " + strconv.FormatUint(st.Epoch, 10) + ")"
		if st.Reason != "" {
			t += ": " + st.Reason
		}
		return t
	case StateFailed:
		if st.Owner != "" {
			return st.Reason
		}
		return st.Reason + d.retryHint(s, w)
	}
	return st.Reason
}

// stays explains why a running service stays where it is, and where it
// would go if its owner failed.
func (d *decider) stays(s *Service, w *work) string {
	st := &w.st
	oi, o := d.member(st.Owner)
	if o == nil {
		return "runs on " + st.Owner
	}
	r := "runs on " + o.Name
	if k := favoredRank(&s.Spec, o.Name); k >= 0 {
		r += ", favored #" + strconv.Itoa(k+1)
	}
	if fb := d.favoredBefore(s, w, o.Name); fb >= 0 {
		m := &d.in.Members[fb]
		fav := m.Name + " (favored #" + strconv.Itoa(favoredRank(&s.Spec, m.Name)+1) + ")"
		if !s.Spec.Failback {
			return r + "; failback is off, so it stays there although " + fav + " can run it"
		}
		_, wait := d.failbackTarget(s, w, oi)
		return r + "; it fails back to " + fav + " in " + fmtDur(wait) + ", once " + m.Name +
			" has been UP for " + fmtDur(s.Spec.FailbackDelay) + " (the failback delay)"
	}
	best := d.next(s, w, oi)
	if best < 0 {
		return r + "; if " + o.Name + " fails, no other member can run it now"
	}
	return r + "; if " + o.Name + " fails, it moves to " + d.in.Members[best].Name
}

// retryHint says when a FAILED service is tried again.
func (d *decider) retryHint(s *Service, w *work) string {
	if fatalRecord(w.st.Fails) != nil {
		return ""
	}
	pol := policyOf(&s.Spec)
	h := "; run `vigil service clear " + s.Name + "` to try again now"
	if pol.timeout < 0 {
		return h
	}
	var first time.Duration
	found := false
	for _, r := range w.st.Fails {
		if r.Banned && !r.Hard {
			left := r.Last.Add(pol.timeout).Sub(d.now)
			if !found || left < first {
				first, found = left, true
			}
		}
	}
	if !found {
		return h
	}
	return "; it is tried again in " + fmtDur(first) + ", when its first fail record expires, or at once after `vigil service clear " + s.Name + "`"
}

// memberLines writes one line per member (members with the same text
// share a line), in member id order.
func (d *decider) memberLines(s *Service, w *work, line func(string)) {
	type group struct {
		names []string
		text  string
	}
	var groups []group
	add := func(name, text string) {
		for k := range groups {
			if groups[k].text == text {
				groups[k].names = append(groups[k].names, name)
				return
			}
		}
		groups = append(groups, group{names: []string{name}, text: text})
	}
	for _, j := range d.byID {
		m := &d.in.Members[j]
		add(m.Name, d.memberText(s, w, j))
	}
	for _, f := range s.Spec.Favored {
		if _, m := d.member(f); m == nil {
			add(f, "listed as favored, but not a member")
		}
	}
	for _, g := range groups {
		line(strings.Join(g.names, ", ") + ": " + g.text)
	}
}

func (d *decider) memberText(s *Service, w *work, j int) string {
	st := &w.st
	m := &d.in.Members[j]
	var v verdict
	if w.verdicts != nil {
		v = w.verdicts[j]
	} else {
		c, k := d.check(s, st, m)
		if c == okOther {
			k = d.counts[j]
		}
		v = verdict{code: c, n: int32(k)}
	}
	if m.Name == st.Owner {
		state := st.State
		if state == StateFrozen {
			state = st.Held
		}
		role := map[ServiceState]string{
			StateOnline: "runs it", StateStarting: "starting it", StateStopping: "stopping it", StateFailed: "failed here",
		}[state]
		if role == "" || m.State == MemberDown || m.State == MemberNetpar {
			role = "owner"
		}
		if m.State == MemberDown && !m.Fenced {
			at := d.certainAt(m)
			t := role + "; " + d.downText(m)
			if d.now.Before(at) {
				t += "; lease certainly over in " + fmtDur(at.Sub(d.now))
			}
			return t
		}
		switch v.code {
		case okFavored:
			return role + "; favored #" + strconv.Itoa(int(v.n)+1)
		case okOther:
			return role
		}
		return role + "; " + d.reasonText(s, st, m, v)
	}
	if !v.code.ok() {
		return "rejected: " + d.reasonText(s, st, m, v)
	}
	t := "eligible"
	if v.code == okFavored {
		t += ", favored #" + strconv.Itoa(int(v.n)+1)
	} else {
		if len(s.Spec.Favored) > 0 {
			t += ", not favored"
		}
		if s.Spec.Balanced {
			t += ", hosts " + strconv.Itoa(int(v.n)) + " service"
			if v.n != 1 {
				t += "s"
			}
		}
	}
	if k := failIndex(st.Fails, m.Name); k >= 0 {
		r := &st.Fails[k]
		t += "; failed here " + times(r.Count) + ", last: " + r.String()
	}
	return t
}

func (d *decider) downText(m *Member) string {
	t := "DOWN"
	if !m.DownSince.IsZero() && d.now.After(m.DownSince) {
		t += " for " + fmtDur(d.now.Sub(m.DownSince))
	}
	if m.Fenced {
		t += ", fenced"
	} else if m.FencePending {
		t += ", fence in progress"
	}
	return t
}

// reasonText says why member m cannot run s.
func (d *decider) reasonText(s *Service, st *Status, m *Member, v verdict) string {
	return d.reasonTextAt(s, st, m, v, true)
}

// reasonTextAt is reasonText; without timed, it leaves out how long things
// have lasted or will last, for reasons that are stored.
func (d *decider) reasonTextAt(s *Service, st *Status, m *Member, v verdict, timed bool) string {
	switch v.code {
	case noWitness:
		return "witness, never hosts services"
	case noDomain:
		return "in domain " + strconv.Itoa(m.Domain) + ", " + s.Name + " runs in domain " + strconv.Itoa(s.Spec.Domain)
	case noRestricted:
		return "not in the restricted set"
	case noRemoving:
		return "being removed"
	case noDown:
		if !timed {
			if m.Fenced {
				return "DOWN, fenced"
			}
			return "DOWN"
		}
		return d.downText(m)
	case noDisconnected:
		return "DISCONNECTED (lost its public links)"
	case noNetpar:
		return "NETPAR (seen only on a secondary link)"
	case noDraining:
		return "draining"
	case noFatal:
		f := fatalRecord(st.Fails)
		return "fatal error on " + f.Member + ": not anywhere until `vigil service clear " + s.Name + "`"
	case noHard, noBanned:
		k := failIndex(st.Fails, m.Name)
		if k < 0 {
			return "failed here"
		}
		r := &st.Fails[k]
		t := "failed here once: " + r.String()
		if r.Count > 1 {
			t = "failed here " + times(r.Count) + ", last: " + r.String()
		}
		if r.Hard || r.Fatal {
			return t + "; not here again until `vigil service clear " + s.Name + "`"
		}
		pol := policyOf(&s.Spec)
		if pol.timeout < 0 {
			return t + "; not here again until `vigil service clear " + s.Name + "`"
		}
		if !timed {
			return t
		}
		return t + "; eligible again in " + fmtDur(r.Last.Add(pol.timeout).Sub(d.now))
	}
	return "eligible"
}
