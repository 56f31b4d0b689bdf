package check

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The lock manager's workload in the lab: lock workers on every member take
// EX and PR locks on a few resources and, while they hold one, send
// operations (writes under EX, reads under PR) carrying the lock's fencing
// token to a lock store in the client namespace. The store accepts a write
// only if its token is at least the highest token it has accepted on the
// resource, and a read only if its token is at least the highest token of an
// accepted write. Workers log DLMEvents, the store logs DLMOps, one JSON
// object per line; CheckDLM reads both.

// The events of a lock worker's log (DLMEvent.Event).
const (
	DLMStart     = "start"      // the worker started
	DLMConnected = "connected"  // a session with the agent's lock manager opened
	DLMDialError = "dial-error" // no session (the agent is down): the first failure of a run of them
	DLMGrant     = "grant"      // a lock was granted: Asked is when it was requested, Mono when the grant came
	DLMTimeout   = "timeout"    // a lock request was given up after the worker's timeout
	DLMLockError = "lock-error" // a lock request failed
	DLMGaveUp    = "gave-up"    // a lock request abandoned because the worker stops
	DLMOpDone    = "op"         // an operation the worker sent to the store, and its answer
	DLMUnlock    = "unlock"     // an unlock: Mono when it started, Done when it returned, OK if it succeeded
	DLMLost      = "lost"       // the lock manager said the lock is lost (the member's lease is ending)
	DLMStop      = "stop"       // the worker stops
)

// The lock modes and operation kinds of the workload.
const (
	ModeEX    = "EX"
	ModePR    = "PR"
	OpWrite   = "write" // under EX
	OpRead    = "read"  // under PR
	maxDLMStr = 1024
)

// DLMEvent is one line of a lock worker's log. Times are mono ns.
type DLMEvent struct {
	Mono     int64  `json:"mono"`
	Event    string `json:"event"`
	Member   string `json:"member"`
	Client   string `json:"client"` // the worker process: unique in a run
	Resource string `json:"resource,omitempty"`
	Mode     string `json:"mode,omitempty"`
	Lock     string `json:"lock,omitempty"` // the lock manager's lock id
	Token    uint64 `json:"token,omitempty"`
	Asked    int64  `json:"asked,omitempty"` // grant, timeout, lock-error: when the lock was requested
	Done     int64  `json:"done,omitempty"`  // unlock, op: when the answer came
	OK       bool   `json:"ok,omitempty"`    // unlock: succeeded; op: accepted
	Kind     string `json:"kind,omitempty"`  // op: write or read
	Seq      uint64 `json:"seq,omitempty"`   // op: the worker's operation number
	Err      string `json:"err,omitempty"`   // why, when something failed or was refused
}

// Validate says what is wrong with e, or nil.
func (e *DLMEvent) Validate() error {
	if e.Mono < 0 || e.Asked < 0 || e.Done < 0 {
		return fmt.Errorf("negative time in %s event", quote(e.Event))
	}
	if e.Member == "" || e.Client == "" {
		return fmt.Errorf("%s event without member or client", quote(e.Event))
	}
	if err := checkStrings(e.Event, e.Member, e.Client, e.Resource, e.Mode, e.Lock, e.Kind, e.Err); err != nil {
		return err
	}
	needLock := func() error {
		if e.Resource == "" || e.Lock == "" {
			return fmt.Errorf("%s event without resource or lock", e.Event)
		}
		return nil
	}
	needMode := func() error {
		if e.Mode != ModeEX && e.Mode != ModePR {
			return fmt.Errorf("%s event with mode %s, want EX or PR", e.Event, quote(e.Mode))
		}
		if e.Resource == "" {
			return fmt.Errorf("%s event without resource", e.Event)
		}
		if e.Asked > e.Mono {
			return fmt.Errorf("%s event asked at %d, after it happened (%d)", e.Event, e.Asked, e.Mono)
		}
		return nil
	}
	switch e.Event {
	case DLMStart, DLMConnected, DLMDialError, DLMStop:
		return nil
	case DLMGrant:
		if err := needMode(); err != nil {
			return err
		}
		return needLock()
	case DLMTimeout, DLMLockError, DLMGaveUp:
		return needMode()
	case DLMOpDone:
		if e.Kind != OpWrite && e.Kind != OpRead {
			return fmt.Errorf("op event of kind %s, want write or read", quote(e.Kind))
		}
		if e.Done != 0 && e.Done < e.Mono {
			return fmt.Errorf("op event answered at %d, before it was sent (%d)", e.Done, e.Mono)
		}
		return needLock()
	case DLMUnlock:
		if e.Done != 0 && e.Done < e.Mono {
			return fmt.Errorf("unlock event returned at %d, before it started (%d)", e.Done, e.Mono)
		}
		return needLock()
	case DLMLost:
		return nil
	}
	return fmt.Errorf("unknown event %s", quote(e.Event))
}

// DLMOp is one operation sent to the lock store, as the store logged it: the
// request (Resource to Sent) and the store's answer (Arrived, Accepted,
// Reason). Arrived is mono ns, taken when the store decided, in log order.
type DLMOp struct {
	Resource string `json:"resource"`
	Member   string `json:"member"`
	Client   string `json:"client"`
	Lock     string `json:"lock"`
	Token    uint64 `json:"token"`
	Mode     string `json:"mode"` // the lock's mode: EX or PR
	Kind     string `json:"kind"` // write (under EX) or read
	Seq      uint64 `json:"seq"`
	Sent     int64  `json:"sent"` // the worker's mono ns when it sent the op
	Arrived  int64  `json:"arrived,omitempty"`
	Accepted bool   `json:"accepted,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// ValidateRequest says what is wrong with o as a request to the store, or
// nil: a resource, member, client and lock, a mode of EX or PR, and a write
// only under EX.
func (o *DLMOp) ValidateRequest() error {
	if o.Resource == "" || o.Member == "" || o.Client == "" || o.Lock == "" {
		return fmt.Errorf("op without resource, member, client or lock")
	}
	if err := checkStrings(o.Resource, o.Member, o.Client, o.Lock, o.Mode, o.Kind, o.Reason); err != nil {
		return err
	}
	if o.Mode != ModeEX && o.Mode != ModePR {
		return fmt.Errorf("op with mode %s, want EX or PR", quote(o.Mode))
	}
	switch o.Kind {
	case OpWrite:
		if o.Mode != ModeEX {
			return fmt.Errorf("a write under a %s lock: writes need EX", o.Mode)
		}
	case OpRead:
	default:
		return fmt.Errorf("op of kind %s, want write or read", quote(o.Kind))
	}
	if o.Sent < 0 || o.Arrived < 0 {
		return fmt.Errorf("op with a negative time")
	}
	return nil
}

// checkStrings bounds the length of a record's strings.
func checkStrings(ss ...string) error {
	for _, s := range ss {
		if len(s) > maxDLMStr {
			return fmt.Errorf("string %s is longer than %d bytes", quote(s), maxDLMStr)
		}
	}
	return nil
}

// ParseDLMEvents reads a lock worker's log, with the malformed-line rules of
// ParseRecords: a line that is not one JSON object of a valid event is
// reported in bad and skipped.
func ParseDLMEvents(r io.Reader) (evs []DLMEvent, bad []string, err error) {
	bad, err = eachLine(r, func(line string) error {
		var e DLMEvent
		if err := decodeLine(line, &e); err != nil {
			return err
		}
		if err := e.Validate(); err != nil {
			return err
		}
		evs = append(evs, e)
		return nil
	})
	return evs, bad, err
}

// ParseDLMOps reads the lock store's log, with the rules of ParseDLMEvents.
func ParseDLMOps(r io.Reader) (ops []DLMOp, bad []string, err error) {
	bad, err = eachLine(r, func(line string) error {
		var o DLMOp
		if err := decodeLine(line, &o); err != nil {
			return err
		}
		if err := o.ValidateRequest(); err != nil {
			return err
		}
		ops = append(ops, o)
		return nil
	})
	return ops, bad, err
}

// decodeLine decodes one JSON object, with nothing after it.
func decodeLine(line string, v any) error {
	d := json.NewDecoder(strings.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("not a JSON record: %v", err)
	}
	if d.More() {
		return fmt.Errorf("more than one JSON value on the line")
	}
	return nil
}

// DLMReport is what CheckDLM found.
type DLMReport struct {
	Grants       int // locks granted (EX + PR)
	GrantsEX     int
	Survived     int // granted locks whose unlock succeeded
	Lost         int // granted locks the lock manager said were lost
	Timeouts     int // lock requests given up
	LockErrors   int // lock requests that failed
	UnlockFailed int // unlocks that failed (the lock was lost, the agent was gone)
	Ops          int // operations the store answered
	Accepted     int
	Refused      int // refused as stale: fencing at work
	// Wait is the time from a lock request to its grant.
	WaitP50, WaitP99, WaitMax time.Duration
	// LongestGap is the longest time a resource had no granted lock while
	// a worker waited for it; GapResource and GapAt say where and when
	// (mono ns).
	LongestGap  time.Duration
	GapResource string
	GapAt       int64
	Violations  []string
}

// String is the report in a few lines.
func (r *DLMReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "grants %d (EX %d, PR %d), released %d, lost %d, lock timeouts %d, lock errors %d, failed unlocks %d\n",
		r.Grants, r.GrantsEX, r.Grants-r.GrantsEX, r.Survived, r.Lost, r.Timeouts, r.LockErrors, r.UnlockFailed)
	fmt.Fprintf(&b, "store ops %d: accepted %d, refused as stale %d\n", r.Ops, r.Accepted, r.Refused)
	fmt.Fprintf(&b, "lock wait p50 %s p99 %s max %s; longest a resource had no holder while wanted: %s",
		fmtDur(r.WaitP50), fmtDur(r.WaitP99), fmtDur(r.WaitMax), fmtDur(r.LongestGap))
	if r.LongestGap > 0 {
		fmt.Fprintf(&b, " (%s from mono %s)", r.GapResource, fmtMono(r.GapAt))
	}
	return b.String()
}

// grant is a granted lock with what became of it.
type grant struct {
	DLMEvent
	unlock *DLMEvent // its unlock, if the worker logged one
	lost   *DLMEvent // its lost notification, if any
	last   int64     // the last thing its worker logged about it, or after it
}

func (g *grant) survived() bool { return g.unlock != nil && g.unlock.OK && g.lost == nil }

func (g *grant) String() string {
	return fmt.Sprintf("%s lock %s (token %d) of %s", g.Mode, g.Lock, g.Token, g.Client)
}

// held is how long the lock was held, as far as the logs tell: to its
// unlock or its lost notification, else to the last line its worker wrote
// (it died or stopped).
func (g *grant) heldUntil() int64 {
	end := g.last
	if g.unlock != nil {
		end = g.unlock.Mono
	}
	if g.lost != nil && g.lost.Mono < end {
		end = g.lost.Mono
	}
	return max(end, g.Mono)
}

type grantKey struct {
	client, lock string
	token        uint64
}

// CheckDLM checks the lock workload: evs are every worker's events (any
// order), ops the store's log in its order. It reports a violation when
//   - two incompatible locks on a resource whose unlocks both succeeded
//     were held at once, by their workers' clocks (from the grant to the
//     start of the unlock);
//   - the store's decisions do not follow its rule (replayed in order);
//   - the store accepted an operation whose token no worker was granted on
//     that resource for that lock (a write: under EX);
//   - two grants on a resource carry the same token;
//   - a grant's token is not above the token of a grant on the resource
//     that its worker received before this one was requested, or of an
//     incompatible grant that both survived and came earlier.
func CheckDLM(evs []DLMEvent, ops []DLMOp) *DLMReport {
	rep := &DLMReport{}
	viol := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	evs = slices.Clone(evs)
	slices.SortStableFunc(evs, func(a, b DLMEvent) int { return cmp.Compare(a.Mono, b.Mono) })

	// Grants, and what became of them.
	var grants []*grant
	byKey := map[grantKey]*grant{}
	byLock := map[[2]string]*grant{} // client, lock: its latest grant
	current := map[string]*grant{}   // client: its last grant
	lastSeen := map[string]int64{}   // client: its last event
	var waits []time.Duration
	wants := map[string][]span{} // resource: lock requests, from asking to the answer
	for i := range evs {
		e := &evs[i]
		lastSeen[e.Client] = max(lastSeen[e.Client], e.Mono, e.Done)
		switch e.Event {
		case DLMGrant:
			g := &grant{DLMEvent: *e, last: e.Mono}
			grants = append(grants, g)
			k := grantKey{e.Client, e.Lock, e.Token}
			if _, dup := byKey[k]; dup {
				viol("%s: %s logged the grant of lock %s (token %d) twice", e.Resource, e.Client, e.Lock, e.Token)
			}
			byKey[k] = g
			byLock[[2]string{e.Client, e.Lock}] = g
			current[e.Client] = g
			rep.Grants++
			if e.Mode == ModeEX {
				rep.GrantsEX++
			}
			waits = append(waits, time.Duration(e.Mono-e.Asked))
			wants[e.Resource] = append(wants[e.Resource], span{e.Asked, e.Mono})
		case DLMTimeout, DLMLockError, DLMGaveUp:
			switch e.Event {
			case DLMTimeout:
				rep.Timeouts++
			case DLMLockError:
				rep.LockErrors++
			}
			wants[e.Resource] = append(wants[e.Resource], span{e.Asked, e.Mono})
		case DLMUnlock:
			if g := byKey[grantKey{e.Client, e.Lock, e.Token}]; g != nil && g.unlock == nil {
				g.unlock = e
			}
			if !e.OK {
				rep.UnlockFailed++
			}
		case DLMLost:
			g := byKey[grantKey{e.Client, e.Lock, e.Token}]
			if g == nil && e.Token == 0 {
				g = byLock[[2]string{e.Client, e.Lock}]
			}
			if g == nil && e.Lock == "" {
				g = current[e.Client] // a lost session: its lock, if it held one
				if g != nil && g.unlock != nil {
					g = nil
				}
			}
			if g != nil && g.lost == nil {
				g.lost = e
			}
		}
	}
	for _, g := range grants {
		g.last = max(g.last, lastSeen[g.Client])
		if g.survived() {
			rep.Survived++
		}
		if g.lost != nil {
			rep.Lost++
		}
	}
	if len(waits) > 0 {
		slices.Sort(waits)
		rep.WaitP50, rep.WaitP99, rep.WaitMax = percentile(waits, 50), percentile(waits, 99), waits[len(waits)-1]
	}

	// Per resource, in grant order.
	byRes := map[string][]*grant{}
	for _, g := range grants {
		byRes[g.Resource] = append(byRes[g.Resource], g)
	}
	resources := make([]string, 0, len(byRes)+len(wants))
	for r := range byRes {
		resources = append(resources, r)
	}
	for r := range wants {
		if _, ok := byRes[r]; !ok {
			resources = append(resources, r)
		}
	}
	slices.Sort(resources)
	byToken := map[string]map[uint64]*grant{}
	for _, res := range resources {
		gs := byRes[res]
		slices.SortStableFunc(gs, func(a, b *grant) int { return cmp.Compare(a.Mono, b.Mono) })
		toks := map[uint64]*grant{}
		byToken[res] = toks
		for _, g := range gs {
			if o := toks[g.Token]; o != nil {
				viol("%s: token %d was granted twice: to %s and to %s", res, g.Token, o, g)
				continue
			}
			toks[g.Token] = g
		}
		checkOverlaps(res, gs, viol)
		checkTokenOrder(res, gs, viol)

		// The longest time the resource had no holder while wanted.
		var held []span
		for _, g := range gs {
			held = append(held, span{g.Mono, g.heldUntil()})
		}
		if d, at := longestUncovered(wants[res], held); time.Duration(d) > rep.LongestGap {
			rep.LongestGap, rep.GapResource, rep.GapAt = time.Duration(d), res, at
		}
	}

	// The store: replay its decisions, and trace every accepted token to
	// a grant.
	type maxes struct{ any, write uint64 }
	state := map[string]*maxes{}
	for _, o := range ops {
		rep.Ops++
		st := state[o.Resource]
		if st == nil {
			st = &maxes{}
			state[o.Resource] = st
		}
		var want bool
		if o.Kind == OpWrite {
			want = o.Token >= st.any
		} else {
			want = o.Token >= st.write
		}
		switch {
		case o.Accepted && !want:
			viol("%s: the store accepted a stale %s: token %d of lock %s (%s) after it had accepted token %d (a write: %d)",
				o.Resource, o.Kind, o.Token, o.Lock, o.Client, st.any, st.write)
		case !o.Accepted && want:
			viol("%s: the store refused a valid %s: token %d of lock %s (%s), the highest it had accepted being %d (a write: %d)",
				o.Resource, o.Kind, o.Token, o.Lock, o.Client, st.any, st.write)
		}
		if !o.Accepted {
			rep.Refused++
			continue
		}
		rep.Accepted++
		st.any = max(st.any, o.Token)
		if o.Kind == OpWrite {
			st.write = max(st.write, o.Token)
		}
		g := byToken[o.Resource][o.Token]
		switch {
		case g == nil:
			viol("%s: the store accepted a %s with token %d (lock %s of %s) that no worker reported granted",
				o.Resource, o.Kind, o.Token, o.Lock, o.Client)
		case g.Lock != o.Lock || g.Client != o.Client:
			viol("%s: the store accepted a %s with token %d from lock %s of %s, but that token was granted to %s",
				o.Resource, o.Kind, o.Token, o.Lock, o.Client, g)
		case o.Kind == OpWrite && g.Mode != ModeEX:
			viol("%s: the store accepted a write with token %d, granted to %s (not EX)", o.Resource, o.Token, g)
		}
	}
	return rep
}

// incompatible reports whether two of the workload's modes conflict: only
// PR with PR is compatible.
func incompatible(a, b string) bool { return a == ModeEX || b == ModeEX }

// checkOverlaps reports every pair of incompatible locks, both released by
// a successful unlock, whose holding intervals [grant, unlock start]
// overlap. gs is sorted by grant time.
func checkOverlaps(res string, gs []*grant, viol func(string, ...any)) {
	var open []*grant // survivors that may still overlap a later grant
	for _, g := range gs {
		if !g.survived() {
			continue
		}
		keep := open[:0]
		for _, o := range open {
			if o.unlock.Mono > g.Mono {
				keep = append(keep, o)
			}
		}
		open = keep
		for _, o := range open {
			if o.Client != g.Client && incompatible(o.Mode, g.Mode) {
				end := min(o.unlock.Mono, g.unlock.Mono)
				viol("%s: %s and %s were held at once for %s from mono %s, and both unlocks succeeded",
					res, o, g, fmtDur(time.Duration(end-g.Mono)), fmtMono(g.Mono))
			}
		}
		open = append(open, g)
	}
}

// checkTokenOrder reports grants whose token is below an earlier grant's
// (an equal one is a duplicate, reported on its own) where the order is certain: the earlier grant was received before
// this one was requested, or both survived and are incompatible (their
// holds cannot interleave at the master). gs is sorted by grant time; equal
// times are ties and not checked.
func checkTokenOrder(res string, gs []*grant, viol func(string, ...any)) {
	// Prefix maxima: over grants received so far (for the causal rule),
	// and over surviving grants and surviving EX grants.
	type best struct{ g *grant }
	higher := func(b best, g *grant) best {
		if b.g == nil || g.Token > b.g.Token {
			return best{g}
		}
		return b
	}
	recv := make([]best, len(gs)) // recv[i]: max token of gs[:i+1]
	var all, surv, survEX best
	survBefore := make([][2]best, len(gs)) // before gs[i] (strictly earlier times)
	j := 0
	for i, g := range gs {
		for ; j < i && gs[j].Mono < g.Mono; j++ {
			if gs[j].survived() {
				surv = higher(surv, gs[j])
				if gs[j].Mode == ModeEX {
					survEX = higher(survEX, gs[j])
				}
			}
		}
		survBefore[i] = [2]best{surv, survEX}
		all = higher(all, g)
		recv[i] = all
	}
	for i, g := range gs {
		// Causal: the grants received before g was asked for.
		k, _ := slices.BinarySearchFunc(gs, g.Asked, func(x *grant, t int64) int {
			if x.Mono < t {
				return -1
			}
			return 1
		})
		if k > 0 {
			if a := recv[k-1].g; a.Token > g.Token {
				viol("%s: %s was requested at mono %s, after %s had been granted (mono %s): fencing tokens must grow with every grant",
					res, g, fmtMono(g.Asked), a, fmtMono(a.Mono))
				continue
			}
		}
		if !g.survived() {
			continue
		}
		a := survBefore[i][1].g // an earlier surviving EX conflicts with anything
		if g.Mode == ModeEX {
			a = survBefore[i][0].g
		}
		if a != nil && a.Token > g.Token {
			viol("%s: %s was granted at mono %s, after %s (granted at mono %s, both released by their holders): fencing tokens must grow with every grant",
				res, g, fmtMono(g.Mono), a, fmtMono(a.Mono))
		}
	}
}

// longestUncovered returns the longest stretch covered by some interval of
// want and by none of held, and where it begins.
func longestUncovered(want, held []span) (d, at int64) {
	type edge struct {
		t     int64
		dWant int
		dHeld int
	}
	var es []edge
	for _, w := range want {
		if w.to > w.from {
			es = append(es, edge{w.from, 1, 0}, edge{w.to, -1, 0})
		}
	}
	for _, h := range held {
		if h.to > h.from {
			es = append(es, edge{h.from, 0, 1}, edge{h.to, 0, -1})
		}
	}
	slices.SortFunc(es, func(a, b edge) int { return cmp.Compare(a.t, b.t) })
	nw, nh := 0, 0
	start, in := int64(0), false
	for i := 0; i < len(es); {
		t := es[i].t
		for ; i < len(es) && es[i].t == t; i++ {
			nw += es[i].dWant
			nh += es[i].dHeld
		}
		now := nw > 0 && nh == 0
		switch {
		case now && !in:
			start, in = t, true
		case !now && in:
			if t-start > d {
				d, at = t-start, start
			}
			in = false
		}
	}
	return d, at
}

// span is a stretch of mono time.
type span struct{ from, to int64 }

// percentile is the nearest-rank p-th percentile of sorted ds.
func percentile(ds []time.Duration, p int) time.Duration {
	i := (p*len(ds)+99)/100 - 1
	return ds[max(i, 0)]
}
