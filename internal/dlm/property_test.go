package dlm_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/model"
)

var (
	seedFlag  = flag.Uint64("dlm.seed", 0, "run the engine/model property test for this seed only")
	seqsFlag  = flag.Int("dlm.seqs", 3000, "number of random sequences of the property test")
	stepsFlag = flag.Int("dlm.steps", 120, "operations per sequence of the property test")
)

// TestEngineMatchesModel runs random operation sequences on the engine and
// on the reference model and compares, after every operation, the returned
// ids, error kinds and events, and the whole exported state; it also checks
// the invariants and round-trips Export/Import in the middle of sequences.
// Replay a failure with: go test ./internal/dlm -run TestEngineMatchesModel -dlm.seed=N -v
func TestEngineMatchesModel(t *testing.T) {
	seqs, steps := *seqsFlag, *stepsFlag
	if testing.Short() {
		seqs = min(seqs, 300)
	} else if dlm.RaceEnabled {
		seqs = min(seqs, 1000)
	}
	first := uint64(1)
	if *seedFlag != 0 {
		first, seqs = *seedFlag, 1
	}
	stats := map[string]int{}
	for seed := first; seed < first+uint64(seqs); seed++ {
		r := newRunner(&randChooser{rand.New(rand.NewPCG(seed, 0x5eed))})
		for i := 0; i < steps; i++ {
			if err := r.step(); err != nil {
				t.Fatalf("seed %d, step %d: %v\nlast operations:\n%s\nreplay: go test ./internal/dlm -run TestEngineMatchesModel -dlm.seed=%d -v",
					seed, i, err, r.tail(40), seed)
			}
		}
		for k, v := range r.stats {
			stats[k] += v
		}
	}
	// The generator must reach every kind of outcome, or the test proves
	// little.
	for _, k := range []string{"granted", "not-queued", "canceled", "deadlock", "blocking",
		"err:" + dlm.ErrInvalid.Error(), "err:" + dlm.ErrUnknownLock.Error(), "err:" + dlm.ErrWrongState.Error(),
		"err:" + dlm.ErrHasChildren.Error(), "err:" + dlm.ErrLimit.Error(), "roundtrip", "split-import", "value-written", "invalid-value"} {
		if stats[k] == 0 && *seedFlag == 0 {
			t.Errorf("no %q outcome in %d sequences: the generator is too narrow", k, seqs)
		}
	}
	t.Logf("outcomes: %v", stats)
}

// FuzzEngineMatchesModel drives the same operations from fuzz bytes.
func FuzzEngineMatchesModel(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("\x00\x10\x05\x02\x00\x00\x00\x00\x00\x00\x00\x01\x03\x05\x00\x00\x00\x01\x05"))
	for seed := uint64(1); seed <= 8; seed++ {
		b := make([]byte, 400)
		g := rand.New(rand.NewPCG(seed, 1))
		for i := range b {
			b[i] = byte(g.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &byteChooser{b: data}
		r := newRunner(c)
		for i := 0; i < 400 && !c.done; i++ {
			if err := r.step(); err != nil {
				t.Fatalf("step %d: %v\nlast operations:\n%s", i, err, r.tail(40))
			}
		}
	})
}

// chooser picks numbers: from a seeded generator, or from fuzz bytes.
type chooser interface{ n(k int) int }

type randChooser struct{ r *rand.Rand }

func (c *randChooser) n(k int) int { return c.r.IntN(k) }

type byteChooser struct {
	b    []byte
	done bool
}

func (c *byteChooser) n(k int) int {
	v := 0
	for need := k; need > 1; need >>= 8 {
		if len(c.b) == 0 {
			c.done = true
			return 0
		}
		v = v<<8 | int(c.b[0])
		c.b = c.b[1:]
	}
	return v % k
}

type runner struct {
	c     chooser
	opts  dlm.Options
	e     *dlm.Engine
	m     *model.Model
	now   time.Time
	ids   []dlm.LockID
	log   []string
	stats map[string]int
}

var (
	owners  = []dlm.OwnerID{{Member: "m1", Client: 1}, {Member: "m1", Client: 2}, {Member: "m2", Client: 1}, {Member: "m3"}}
	members = []string{"m1", "m2", "m3", "m4"}
	roots   = []string{"a", "b", "c"}
	kids    = []string{"x", "y"}
	spaces  = []string{"ls", "ls", "ls", "ls2"}
)

func newRunner(c chooser) *runner {
	opts := dlm.DefaultOptions()
	opts.DeadlockWait = []time.Duration{0, 500 * time.Millisecond, time.Second}[c.n(3)]
	opts.MaxLocks = 6 + c.n(30)
	e, err := dlm.New(opts)
	if err != nil {
		panic(err)
	}
	return &runner{c: c, opts: opts, e: e, m: model.New(opts),
		now:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		stats: map[string]int{}}
}

func (r *runner) tail(n int) string {
	l := r.log
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (r *runner) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

// pickID picks a lock id: mostly a live lock, sometimes a released one, 0
// or one that never existed.
func (r *runner) pickID() dlm.LockID {
	if len(r.ids) == 0 || r.c.n(15) == 0 {
		return dlm.LockID([]int{0, 1, 999}[r.c.n(3)])
	}
	if r.c.n(4) != 0 {
		var live []dlm.LockID
		for _, id := range r.ids[max(0, len(r.ids)-16):] {
			if _, ok := r.e.Lock(id); ok {
				live = append(live, id)
			}
		}
		if len(live) > 0 {
			return live[r.c.n(len(live))]
		}
	}
	return r.ids[len(r.ids)-1-r.c.n(min(len(r.ids), 12))]
}

func (r *runner) mode() dlm.Mode {
	if r.c.n(25) == 0 {
		return dlm.Mode(6 + r.c.n(3))
	}
	return dlm.Mode(r.c.n(6))
}

func (r *runner) flag(f dlm.Flags, oneIn int) dlm.Flags {
	if r.c.n(oneIn) == 0 {
		return f
	}
	return 0
}

func (r *runner) value() *dlm.Value {
	if r.c.n(2) == 0 {
		return nil
	}
	var v dlm.Value
	v[0] = byte('a' + r.c.n(26))
	v[63] = byte(r.c.n(256))
	return &v
}

func kind(err error) error {
	for _, k := range []error{dlm.ErrInvalid, dlm.ErrUnknownLock, dlm.ErrUnknownResource, dlm.ErrWrongState, dlm.ErrHasChildren, dlm.ErrLimit} {
		if errors.Is(err, k) {
			return k
		}
	}
	if err != nil {
		return fmt.Errorf("no known kind: %w", err)
	}
	return nil
}

// compare checks one operation's results of the engine against the model's.
func (r *runner) compare(ee, me []dlm.Event, eerr, merr error) error {
	if kind(eerr) != kind(merr) {
		return fmt.Errorf("errors differ:\n engine %v\n model  %v", eerr, merr)
	}
	if eerr != nil {
		var de *dlm.Error
		if !errors.As(eerr, &de) {
			return fmt.Errorf("engine error %v is not a *dlm.Error", eerr)
		}
		r.stats["err:"+kind(eerr).Error()]++
		r.logf("   -> error %v", eerr)
	}
	if !slices.Equal(ee, me) && !(len(ee) == 0 && len(me) == 0) {
		return fmt.Errorf("events differ:\n engine %s\n model  %s", showEvents(ee), showEvents(me))
	}
	if len(ee) > 0 {
		r.logf("   -> %s", showEvents(ee))
	}
	for _, ev := range ee {
		r.stats[ev.Kind.String()]++
		if ev.Kind == dlm.EventGranted && !ev.ValueValid && ev.Value != (dlm.Value{}) {
			r.stats["invalid-value"]++
		}
		if ev.Kind == dlm.EventGranted && ev.ValueValid && ev.Value != (dlm.Value{}) {
			r.stats["value-written"]++
		}
	}
	return r.sameState()
}

// sameRecord is reflect.DeepEqual for records, without reflection (the
// property test spends most of its time here).
func sameRecord(a, b *dlm.Record) bool {
	pa, pb := a.PendingValue, b.PendingValue
	return a.ID == b.ID && a.Lockspace == b.Lockspace && slices.Equal(a.Path, b.Path) && a.Parent == b.Parent &&
		a.Owner == b.Owner && a.Queue == b.Queue && a.Granted == b.Granted && a.Requested == b.Requested &&
		a.Flags == b.Flags && a.Seq == b.Seq && a.ValueValid == b.ValueValid && a.Token == b.Token &&
		a.Value == b.Value && (pa == nil) == (pb == nil) && (pa == nil || *pa == *pb)
}

func sameSnapshot(a, b dlm.Snapshot) bool {
	return a.NextLockID == b.NextLockID && a.TokenFloor == b.TokenFloor &&
		slices.EqualFunc(a.Locks, b.Locks, func(x, y dlm.Record) bool { return sameRecord(&x, &y) })
}

func (r *runner) sameState() error {
	se, sm := r.e.Export(), r.m.Export()
	if !sameSnapshot(se, sm) {
		return fmt.Errorf("states differ:\n engine %s\n model  %s", showSnap(se), showSnap(sm))
	}
	if err := dlm.CheckSnapshot(se); err != nil {
		return err
	}
	if se.NextLockID > 0 && len(se.Locks) != r.e.Len() {
		return fmt.Errorf("Len %d but %d locks exported", r.e.Len(), len(se.Locks))
	}
	for _, rec := range se.Locks {
		if got, ok := r.e.Lock(rec.ID); !ok || !sameRecord(&got, &rec) {
			return fmt.Errorf("Lock(%d) = %+v, %v; Export has %+v", rec.ID, got, ok, rec)
		}
	}
	return nil
}

func (r *runner) step() error {
	c := r.c
	switch op := c.n(100); {
	case op < 35:
		q := dlm.Request{Lockspace: spaces[c.n(len(spaces))], Owner: owners[c.n(len(owners))], Mode: r.mode(),
			Flags: r.flag(dlm.NoQueue, 5) | r.flag(dlm.Expedite, 10) | r.flag(dlm.NoDlckWt, 8) | r.flag(dlm.ValBlk, 2) |
				r.flag(dlm.NoBlock, 6) | r.flag(dlm.QueCvt, 60) | r.flag(0x400, 100)}
		if q.Flags&dlm.Expedite != 0 && c.n(5) != 0 {
			q.Mode = dlm.NL
		}
		if c.n(4) == 0 {
			q.Parent, q.Name = r.pickID(), kids[c.n(len(kids))]
		} else {
			q.Name = roots[c.n(len(roots))]
		}
		switch c.n(60) {
		case 0:
			q.Name = ""
		case 1:
			q.Owner = dlm.OwnerID{}
		case 2:
			q.Value = r.value()
		case 3:
			q.Name = strings.Repeat("z", 65)
		}
		r.logf("enqueue %s %s/%s parent=%d %v %v", q.Owner, q.Lockspace, q.Name, q.Parent, q.Mode, q.Flags)
		ie, ee, eerr := r.e.Enqueue(r.now, q)
		im, me, merr := r.m.Enqueue(r.now, q)
		if ie != im {
			return fmt.Errorf("ids differ: engine %d, model %d", ie, im)
		}
		if ie != 0 {
			r.ids = append(r.ids, ie)
		}
		return r.compare(ee, me, eerr, merr)
	case op < 55:
		q := dlm.Request{Lock: r.pickID(), Mode: r.mode(),
			Flags: dlm.Convert | r.flag(dlm.QueCvt, 3) | r.flag(dlm.NoQueue, 5) | r.flag(dlm.ValBlk, 2) |
				r.flag(dlm.NoDlckWt, 8) | r.flag(dlm.NoBlock, 6) | r.flag(dlm.Expedite, 80)}
		if c.n(3) == 0 {
			q.Value = r.value()
		}
		if q.Value != nil && c.n(6) != 0 {
			q.Flags |= dlm.ValBlk
		}
		r.logf("convert %d %v %v value=%v", q.Lock, q.Mode, q.Flags, q.Value != nil)
		ie, ee, eerr := r.e.Enqueue(r.now, q)
		im, me, merr := r.m.Enqueue(r.now, q)
		if ie != im {
			return fmt.Errorf("ids differ: engine %d, model %d", ie, im)
		}
		return r.compare(ee, me, eerr, merr)
	case op < 68:
		id, f := r.pickID(), r.flag(dlm.ValBlk, 2)|r.flag(dlm.NoQueue, 40)
		v := r.value()
		if v != nil && c.n(8) != 0 {
			f |= dlm.ValBlk
		}
		r.logf("unlock %d %v value=%v", id, f, v != nil)
		ee, eerr := r.e.Unlock(id, f, v)
		me, merr := r.m.Unlock(id, f, v)
		return r.compare(ee, me, eerr, merr)
	case op < 76:
		id := r.pickID()
		r.logf("cancel %d", id)
		ee, eerr := r.e.Cancel(id)
		me, merr := r.m.Cancel(id)
		return r.compare(ee, me, eerr, merr)
	case op < 84:
		d := time.Duration(c.n(1500)) * time.Millisecond
		r.now = r.now.Add(d)
		r.logf("advance %v", d)
		return nil
	case op < 88:
		r.logf("detect")
		return r.compare(r.e.Detect(r.now), r.m.Detect(r.now), nil, nil)
	case op < 90:
		id := r.pickID()
		r.logf("deadlock %d", id)
		ee, eerr := r.e.Deadlock(r.now, id)
		me, merr := r.m.Deadlock(r.now, id)
		return r.compare(ee, me, eerr, merr)
	case op < 93:
		ee, me := r.e.WaitEdges(r.now), r.m.WaitEdges(r.now)
		r.logf("wait edges: %v", ee)
		if !(len(ee) == 0 && len(me) == 0) && !reflect.DeepEqual(ee, me) {
			return fmt.Errorf("wait edges differ:\n engine %v\n model  %v", ee, me)
		}
		if ve, vm := dlm.FindDeadlocks(ee), model.FindDeadlocks(ee); !slices.Equal(ve, vm) {
			return fmt.Errorf("victims differ for %v:\n engine %v\n model  %v", ee, ve, vm)
		}
		return nil
	case op < 95:
		o, inv := owners[c.n(len(owners))], c.n(2) == 0
		r.logf("purge owner %v invalidate=%v", o, inv)
		return r.compare(r.e.PurgeOwner(o, inv), r.m.PurgeOwner(o, inv), nil, nil)
	case op < 96:
		m, inv := members[c.n(len(members))], c.n(2) == 0
		r.logf("purge member %v invalidate=%v", m, inv)
		return r.compare(r.e.PurgeMember(m, inv), r.m.PurgeMember(m, inv), nil, nil)
	case op < 98:
		ls, path := spaces[c.n(len(spaces))], []string{roots[c.n(len(roots))]}
		if c.n(3) == 0 {
			path = append(path, kids[c.n(len(kids))])
		}
		r.logf("invalidate %s %v", ls, path)
		return r.compare(nil, nil, r.e.InvalidateValue(ls, path), r.m.InvalidateValue(ls, path))
	default:
		return r.roundTrip()
	}
}

// roundTrip moves both to new instances through Export/Import, sometimes
// split in two sources (by root resource, so each resource is in one).
func (r *runner) roundTrip() error {
	s := r.e.Export()
	srcs := []dlm.Snapshot{s}
	split := r.c.n(2) == 0
	if split {
		a := dlm.Snapshot{NextLockID: s.NextLockID, TokenFloor: s.TokenFloor}
		b := a
		for _, rec := range s.Locks {
			if rec.Path[0] == "a" {
				b.Locks = append(b.Locks, rec)
			} else {
				a.Locks = append(a.Locks, rec)
			}
		}
		srcs = []dlm.Snapshot{b, a}
		r.stats["split-import"]++
	}
	r.stats["roundtrip"]++
	r.logf("export/import split=%v", split)
	e2, _ := dlm.New(r.opts)
	m2 := model.New(r.opts)
	ee, eerr := e2.Import(r.now, srcs...)
	me, merr := m2.Import(r.now, srcs...)
	if eerr != nil || merr != nil {
		return fmt.Errorf("import of an export failed: engine %v, model %v", eerr, merr)
	}
	r.e, r.m = e2, m2
	if err := r.compare(ee, me, nil, nil); err != nil {
		return err
	}
	if s2 := r.e.Export(); !split && !sameSnapshot(s, s2) {
		return fmt.Errorf("round trip changed the state:\n before %s\n after  %s", showSnap(s), showSnap(s2))
	}
	return nil
}

func showEvents(evs []dlm.Event) string {
	var b []string
	for _, e := range evs {
		s := fmt.Sprintf("%v(lock %d %v %v", e.Kind, e.Lock, e.Owner, e.Mode)
		switch e.Kind {
		case dlm.EventGranted:
			s += fmt.Sprintf(" token %d valid %v value %q", e.Token, e.ValueValid, strings.TrimRight(string(e.Value[:]), "\x00"))
		case dlm.EventBlocking:
			s += fmt.Sprintf(" blocks %d", e.Blocked)
		}
		b = append(b, s+")")
	}
	return "[" + strings.Join(b, " ") + "]"
}

func showSnap(s dlm.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "next %d floor %d", s.NextLockID, s.TokenFloor)
	for _, r := range s.Locks {
		fmt.Fprintf(&b, "\n   %d %s%v p%d %v %v %v->%v %v seq%d tok%d valid%v pend%v", r.ID, r.Lockspace, r.Path, r.Parent, r.Owner,
			r.Queue, r.Granted, r.Requested, r.Flags, r.Seq, r.Token, r.ValueValid, r.PendingValue != nil)
	}
	return b.String()
}

// FuzzImport feeds made-up snapshots to Import: it must refuse or accept
// without panicking, and what it accepts must keep the invariants and
// round-trip exactly.
func FuzzImport(f *testing.F) {
	f.Add([]byte{1, 1, 0, 1, 5, 0, 0, 0})
	f.Add([]byte{1, 1, 0, 1, 5, 0, 0, 0, 2, 1, 0, 1, 5, 0, 0, 0})
	f.Add([]byte{1, 1, 0, 1, 3, 0, 0, 0, 2, 2, 1, 2, 3, 4, 1, 0, 3, 1, 0, 3, 2, 5, 2, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &byteChooser{b: data}
		var s dlm.Snapshot
		s.NextLockID = dlm.LockID(c.n(8))
		s.TokenFloor = uint64(c.n(8))
		for len(s.Locks) < 40 {
			id := dlm.LockID(c.n(12))
			if c.done {
				break
			}
			rec := dlm.Record{ID: id, Lockspace: spaces[c.n(4)], Path: []string{roots[c.n(3)]}, Parent: dlm.LockID(c.n(6)),
				Owner: owners[c.n(4)], Queue: dlm.Queue(c.n(5)), Granted: dlm.Mode(c.n(7)), Requested: dlm.Mode(c.n(7)),
				Flags: dlm.Flags(c.n(128)), Seq: uint64(c.n(16)), Token: uint64(c.n(16)), ValueValid: c.n(2) == 0}
			if c.n(3) == 0 {
				rec.Path = append(rec.Path, kids[c.n(2)])
			} else if c.n(2) == 0 {
				rec.Parent = 0
			}
			rec.Value[0] = byte(c.n(3))
			if c.n(4) == 0 {
				rec.PendingValue = &dlm.Value{1}
			}
			s.Locks = append(s.Locks, rec)
		}
		e, _ := dlm.New(dlm.DefaultOptions())
		now := time.Unix(0, 0)
		if _, err := e.Import(now, s); err != nil {
			if e.Len() != 0 {
				t.Fatalf("refused import (%v) left %d locks", err, e.Len())
			}
			return
		}
		out := e.Export()
		if err := dlm.CheckSnapshot(out); err != nil {
			t.Fatal(err)
		}
		e2, _ := dlm.New(dlm.DefaultOptions())
		if _, err := e2.Import(now, out); err != nil {
			t.Fatalf("re-import of an export failed: %v", err)
		}
		if out2 := e2.Export(); !reflect.DeepEqual(out, out2) {
			t.Fatalf("round trip differs:\n%s\n%s", showSnap(out), showSnap(out2))
		}
		// And it keeps working.
		for _, rec := range out.Locks {
			e2.Unlock(rec.ID, 0, nil)
			e2.Cancel(rec.ID)
		}
		e2.Detect(now.Add(time.Hour))
		if err := dlm.CheckSnapshot(e2.Export()); err != nil {
			t.Fatal(err)
		}
	})
}
