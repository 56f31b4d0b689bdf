package check

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// hold is one lock held by a worker in a hand-made history: granted at
// grant (asked at ask), unlocked at unlock (0: never; negative: the unlock
// failed at -unlock).
type hold struct {
	client, res, mode, lock string
	token                   uint64
	ask, grant, unlock      int64
}

func (h hold) events() []DLMEvent {
	member, _, _ := strings.Cut(h.client, "/")
	evs := []DLMEvent{{Mono: h.grant, Event: DLMGrant, Member: member, Client: h.client, Resource: h.res, Mode: h.mode,
		Lock: h.lock, Token: h.token, Asked: h.ask}}
	switch {
	case h.unlock > 0:
		evs = append(evs, DLMEvent{Mono: h.unlock, Event: DLMUnlock, Member: member, Client: h.client, Resource: h.res,
			Lock: h.lock, Token: h.token, Done: h.unlock + ms, OK: true})
	case h.unlock < 0:
		evs = append(evs, DLMEvent{Mono: -h.unlock, Event: DLMUnlock, Member: member, Client: h.client, Resource: h.res,
			Lock: h.lock, Token: h.token, Done: -h.unlock + ms, Err: "lock session lost"})
	}
	return evs
}

// op is an operation of h at the store.
func (h hold) op(at int64, accepted bool) DLMOp {
	member, _, _ := strings.Cut(h.client, "/")
	kind := OpRead
	if h.mode == ModeEX {
		kind = OpWrite
	}
	return DLMOp{Resource: h.res, Member: member, Client: h.client, Lock: h.lock, Token: h.token, Mode: h.mode, Kind: kind,
		Sent: at - ms, Arrived: at, Accepted: accepted}
}

func history(hs ...hold) []DLMEvent {
	var evs []DLMEvent
	for _, h := range hs {
		evs = append(evs, h.events()...)
	}
	return evs
}

func wantViolations(t *testing.T, rep *DLMReport, want ...string) {
	t.Helper()
	if len(rep.Violations) != len(want) {
		t.Fatalf("violations %q, want %d containing %q", rep.Violations, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(rep.Violations[i], w) {
			t.Errorf("violation %q does not contain %q", rep.Violations[i], w)
		}
	}
}

func TestCheckDLMOverlap(t *testing.T) {
	a := hold{"m1/w1", "r1", ModeEX, "m1#1", 1, 0, 10 * ms, 100 * ms}
	tests := []struct {
		name string
		hs   []hold
		want []string
	}{
		{name: "one after the other",
			hs: []hold{a, {"m2/w1", "r1", ModeEX, "m2#1", 2, 5 * ms, 100 * ms, 200 * ms}}},
		{name: "EX then EX overlapping",
			hs:   []hold{a, {"m2/w1", "r1", ModeEX, "m2#1", 2, 5 * ms, 90 * ms, 200 * ms}},
			want: []string{"r1: EX lock m1#1 (token 1) of m1/w1 and EX lock m2#1 (token 2) of m2/w1 were held at once for 10.0ms from mono 0.090s"}},
		{name: "EX and PR overlapping",
			hs:   []hold{a, {"m2/w1", "r1", ModePR, "m2#1", 2, 5 * ms, 50 * ms, 60 * ms}},
			want: []string{"EX lock m1#1 (token 1) of m1/w1 and PR lock m2#1 (token 2) of m2/w1 were held at once for 10.0ms"}},
		{name: "PR and PR overlap freely",
			hs: []hold{{"m1/w1", "r1", ModePR, "m1#1", 1, 0, 10 * ms, 100 * ms}, {"m2/w1", "r1", ModePR, "m2#1", 2, 5 * ms, 20 * ms, 60 * ms}}},
		{name: "other resources overlap freely",
			hs: []hold{a, {"m2/w1", "r2", ModeEX, "m2#1", 2, 5 * ms, 50 * ms, 60 * ms}}},
		{name: "a lock whose unlock failed is not checked",
			hs: []hold{{"m1/w1", "r1", ModeEX, "m1#1", 1, 0, 10 * ms, -100 * ms}, {"m2/w1", "r1", ModeEX, "m2#1", 2, 5 * ms, 50 * ms, 60 * ms}}},
		{name: "a lock never unlocked (its worker died) is not checked",
			hs: []hold{{"m1/w1", "r1", ModeEX, "m1#1", 1, 0, 10 * ms, 0}, {"m2/w1", "r1", ModeEX, "m2#1", 2, 5 * ms, 50 * ms, 60 * ms}}},
		{name: "touching intervals do not overlap",
			hs: []hold{a, {"m2/w1", "r1", ModeEX, "m2#1", 2, 5 * ms, 100 * ms, 200 * ms}, {"m3/w1", "r1", ModePR, "m3#1", 3, 5 * ms, 200 * ms, 300 * ms}}},
		{name: "a long holder overlapping two later ones",
			hs: []hold{{"m1/w1", "r1", ModeEX, "m1#1", 1, 0, 0, sec}, {"m2/w1", "r1", ModePR, "m2#1", 2, 0, 100 * ms, 200 * ms},
				{"m3/w1", "r1", ModePR, "m3#1", 3, 0, 300 * ms, 400 * ms}},
			want: []string{"PR lock m2#1", "PR lock m3#1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := CheckDLM(history(tt.hs...), nil)
			wantViolations(t, rep, tt.want...)
			if rep.Grants != len(tt.hs) {
				t.Errorf("grants %d, want %d", rep.Grants, len(tt.hs))
			}
		})
	}
}

// A lock lost before its unlock did not survive: it is not held against a
// later holder, even when the unlock claims success.
func TestCheckDLMLost(t *testing.T) {
	a := hold{"m1/w1", "r1", ModeEX, "m1#1", 1, 0, 10 * ms, 2 * sec}
	b := hold{"m2/w1", "r1", ModeEX, "m2#1", 2, 5 * ms, sec, sec + 10*ms}
	evs := history(a, b)
	evs = append(evs, DLMEvent{Mono: 1900 * ms, Event: DLMLost, Member: "m1", Client: "m1/w1", Resource: "r1", Lock: "m1#1", Token: 1, Err: "lease"})
	rep := CheckDLM(evs, nil)
	wantViolations(t, rep)
	if rep.Lost != 1 || rep.Survived != 1 {
		t.Errorf("lost %d survived %d, want 1 and 1", rep.Lost, rep.Survived)
	}
	// A session-wide lost (no lock named) applies to the lock its worker holds.
	evs = history(a, b)
	evs = append(evs, DLMEvent{Mono: 1900 * ms, Event: DLMLost, Member: "m1", Client: "m1/w1"})
	wantViolations(t, CheckDLM(evs, nil))
	// Named by its lock alone (the worker had let go of it).
	evs = history(a, b)
	evs = append(evs, DLMEvent{Mono: 2100 * ms, Event: DLMLost, Member: "m1", Client: "m1/w1", Lock: "m1#1"})
	if rep := CheckDLM(evs, nil); len(rep.Violations) != 0 || rep.Lost != 1 {
		t.Errorf("lost by lock id: %+v", rep)
	}
	// Without it, the overlap is a violation.
	wantViolations(t, CheckDLM(history(a, b), nil), "held at once")
}

func TestCheckDLMTokens(t *testing.T) {
	tests := []struct {
		name string
		hs   []hold
		want []string
	}{
		{name: "growing tokens",
			hs: []hold{{"m1/w1", "r1", ModeEX, "m1#1", 5, 0, 10 * ms, 20 * ms}, {"m2/w1", "r1", ModeEX, "m2#1", 7, 15 * ms, 30 * ms, 40 * ms}}},
		{name: "a token granted twice",
			hs:   []hold{{"m1/w1", "r1", ModeEX, "m1#1", 5, 0, 10 * ms, 20 * ms}, {"m2/w1", "r1", ModeEX, "m2#1", 5, 15 * ms, 30 * ms, 40 * ms}},
			want: []string{"r1: token 5 was granted twice: to EX lock m1#1 (token 5) of m1/w1 and to EX lock m2#1 (token 5) of m2/w1"}},
		{name: "the same token on two resources is fine",
			hs: []hold{{"m1/w1", "r1", ModeEX, "m1#1", 5, 0, 10 * ms, 20 * ms}, {"m2/w1", "r2", ModeEX, "m2#1", 5, 15 * ms, 30 * ms, 40 * ms}}},
		{name: "a smaller token requested after a grant",
			hs:   []hold{{"m1/w1", "r1", ModeEX, "m1#1", 9, 0, 10 * ms, 20 * ms}, {"m2/w1", "r1", ModePR, "m2#1", 7, 15 * ms, 30 * ms, -40 * ms}},
			want: []string{"r1: PR lock m2#1 (token 7) of m2/w1 was requested at mono 0.015s, after EX lock m1#1 (token 9) of m1/w1 had been granted"}},
		{name: "concurrent PR grants may arrive in either order",
			hs: []hold{{"m1/w1", "r1", ModePR, "m1#1", 9, 0, 12 * ms, 20 * ms}, {"m2/w1", "r1", ModePR, "m2#1", 8, 0, 10 * ms, 20 * ms}}},
		{name: "surviving incompatible grants in time order",
			hs:   []hold{{"m1/w1", "r1", ModeEX, "m1#1", 9, 0, 10 * ms, 20 * ms}, {"m2/w1", "r1", ModePR, "m2#1", 8, 0, 30 * ms, 40 * ms}},
			want: []string{"r1: PR lock m2#1 (token 8) of m2/w1 was granted at mono 0.030s, after EX lock m1#1 (token 9) of m1/w1"}},
		{name: "a lost grant says nothing about the order",
			hs: []hold{{"m1/w1", "r1", ModeEX, "m1#1", 9, 0, 10 * ms, -20 * ms}, {"m2/w1", "r1", ModePR, "m2#1", 8, 0, 30 * ms, 40 * ms}}},
		{name: "a request at the instant of a grant is a tie",
			hs: []hold{{"m1/w1", "r1", ModeEX, "m1#1", 9, 0, 10 * ms, 20 * ms}, {"m2/w1", "r1", ModeEX, "m2#1", 8, 10 * ms, 30 * ms, -40 * ms}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantViolations(t, CheckDLM(history(tt.hs...), nil), tt.want...)
		})
	}
}

func TestCheckDLMStore(t *testing.T) {
	a := hold{"m1/w1", "r1", ModeEX, "m1#1", 5, 0, 10 * ms, 100 * ms}
	b := hold{"m2/w1", "r1", ModePR, "m2#1", 7, 0, 150 * ms, 200 * ms}
	c := hold{"m3/w1", "r1", ModeEX, "m3#1", 9, 0, 250 * ms, 300 * ms}
	d := hold{"m3/w2", "r1", ModePR, "m3#2", 6, 0, 120 * ms, 140 * ms}
	stale := func(o DLMOp) DLMOp { o.Reason = "stale"; return o }
	tests := []struct {
		name    string
		ops     []DLMOp
		want    []string
		refused int
	}{
		{name: "in order", ops: []DLMOp{a.op(20*ms, true), a.op(30*ms, true), b.op(160*ms, true), c.op(260*ms, true)}},
		{name: "a late write refused", ops: []DLMOp{a.op(20*ms, true), b.op(160*ms, true), stale(a.op(170*ms, false)), c.op(260*ms, true)}, refused: 1},
		{name: "a late read refused after a write", ops: []DLMOp{b.op(160*ms, true), c.op(260*ms, true), stale(b.op(270*ms, false))}, refused: 1},
		{name: "a read after a later read is fine", ops: []DLMOp{a.op(20*ms, true), d.op(130*ms, true), b.op(160*ms, true), d.op(165*ms, true)}},
		{name: "a stale write accepted", ops: []DLMOp{b.op(160*ms, true), a.op(170*ms, true)},
			want: []string{"r1: the store accepted a stale write: token 5 of lock m1#1 (m1/w1) after it had accepted token 7 (a write: 0)"}},
		{name: "a stale read accepted", ops: []DLMOp{c.op(260*ms, true), b.op(270*ms, true)},
			want: []string{"r1: the store accepted a stale read: token 7 of lock m2#1 (m2/w1) after it had accepted token 9 (a write: 9)"}},
		{name: "a valid op refused", ops: []DLMOp{a.op(20*ms, true), c.op(260*ms, false)}, refused: 1,
			want: []string{"r1: the store refused a valid write: token 9"}},
		{name: "a made-up token", ops: []DLMOp{hold{"m1/w1", "r1", ModeEX, "m1#1", 8, 0, 0, 0}.op(20*ms, true)},
			want: []string{"r1: the store accepted a write with token 8 (lock m1#1 of m1/w1) that no worker reported granted"}},
		{name: "a token of another resource", ops: []DLMOp{hold{"m1/w1", "r2", ModeEX, "m1#1", 5, 0, 0, 0}.op(20*ms, true)},
			want: []string{"r2: the store accepted a write with token 5 (lock m1#1 of m1/w1) that no worker reported granted"}},
		{name: "another lock's token", ops: []DLMOp{hold{"m2/w1", "r1", ModeEX, "m2#4", 5, 0, 0, 0}.op(20*ms, true)},
			want: []string{"r1: the store accepted a write with token 5 from lock m2#4 of m2/w1, but that token was granted to EX lock m1#1 (token 5) of m1/w1"}},
		{name: "a write under PR", ops: []DLMOp{func() DLMOp { o := b.op(160*ms, true); o.Kind = OpWrite; return o }()},
			want: []string{"r1: the store accepted a write with token 7, granted to PR lock m2#1 (token 7) of m2/w1 (not EX)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := CheckDLM(history(a, b, c, d), tt.ops)
			wantViolations(t, rep, tt.want...)
			if rep.Refused != tt.refused || rep.Ops != len(tt.ops) || rep.Accepted != len(tt.ops)-tt.refused {
				t.Errorf("ops %d accepted %d refused %d, want %d %d %d", rep.Ops, rep.Accepted, rep.Refused, len(tt.ops), len(tt.ops)-tt.refused, tt.refused)
			}
		})
	}
}

func TestCheckDLMStats(t *testing.T) {
	hs := []hold{
		{"m1/w1", "r1", ModeEX, "m1#1", 1, 0, 10 * ms, 100 * ms},
		{"m2/w1", "r1", ModeEX, "m2#1", 2, 50 * ms, 110 * ms, 200 * ms},    // waited 60ms; no gap (100-110 is 10ms)
		{"m3/w1", "r1", ModePR, "m3#1", 3, 150 * ms, 1200 * ms, 1300 * ms}, // waited 1.05s; gap 200ms..1200ms
		{"m1/w2", "r2", ModePR, "m1#2", 1, 0, 5 * ms, -50 * ms},            // unlock failed
		{"m2/w2", "r2", ModePR, "m2#2", 2, 400 * ms, 400 * ms, 0},          // never unlocked; its worker's last line at 600ms
		{"m3/w2", "r2", ModeEX, "m3#2", 3, 500 * ms, 1000 * ms, 1100 * ms}, // gap 600..1000 on r2: shorter
		{"m1/w3", "r3", ModeEX, "m1#3", 1, 2000 * ms, 2000 * ms, 2100 * ms}}
	evs := history(hs...)
	evs = append(evs,
		DLMEvent{Mono: 600 * ms, Event: DLMStop, Member: "m2", Client: "m2/w2"},
		DLMEvent{Mono: 3000 * ms, Event: DLMTimeout, Member: "m2", Client: "m2/w1", Resource: "r3", Mode: ModeEX, Asked: 2500 * ms},
		DLMEvent{Mono: 3100 * ms, Event: DLMLockError, Member: "m2", Client: "m2/w1", Resource: "r3", Mode: ModeEX, Asked: 3050 * ms, Err: "no quorum"},
		DLMEvent{Mono: 3200 * ms, Event: DLMGaveUp, Member: "m2", Client: "m2/w1", Resource: "r3", Mode: ModePR, Asked: 3100 * ms},
	)
	rep := CheckDLM(evs, nil)
	wantViolations(t, rep)
	if rep.Grants != 7 || rep.GrantsEX != 4 || rep.Survived != 5 || rep.UnlockFailed != 1 || rep.Timeouts != 1 || rep.LockErrors != 1 {
		t.Errorf("counts %+v", rep)
	}
	// waits: 10, 60, 1050, 5, 0, 500, 0 ms
	if rep.WaitP50 != 10*time.Millisecond || rep.WaitP99 != 1050*time.Millisecond || rep.WaitMax != 1050*time.Millisecond {
		t.Errorf("waits p50 %v p99 %v max %v", rep.WaitP50, rep.WaitP99, rep.WaitMax)
	}
	// r3: wanted from 2.5s to 3.2s with nothing held: 700ms, less than r1's 1s.
	if rep.LongestGap != time.Second || rep.GapResource != "r1" || rep.GapAt != 200*ms {
		t.Errorf("longest gap %v on %q at %d, want 1s on r1 at 200ms", rep.LongestGap, rep.GapResource, rep.GapAt)
	}
	s := rep.String()
	for _, w := range []string{"grants 7 (EX 4, PR 3), released 5", "lock wait p50 10.0ms p99 1.05s max 1.05s", "no holder while wanted: 1.00s (r1 from mono 0.200s)"} {
		if !strings.Contains(s, w) {
			t.Errorf("report %q does not contain %q", s, w)
		}
	}
}

func TestParseDLM(t *testing.T) {
	in := `{"mono":10,"event":"start","member":"m1","client":"m1/w1"}
{"mono":20,"event":"grant","member":"m1","client":"m1/w1","resource":"r1","mode":"EX","lock":"m1#1","token":4,"asked":15}
{"mono":20,"event":"grant","member":"m1","client":"m1/w1","resource":"r1","mode":"CW","lock":"m1#1","token":4,"asked":15}
{"mono":20,"event":"grant","member":"m1","client":"m1/w1","resource":"r1","mode":"EX","lock":"m1#1","token":4,"asked":25}
{"mono":20,"event":"grant","member":"m1","client":"m1/w1","resource":"r1","mode":"EX","token":4,"asked":15}
{"mono":20,"event":"nap","member":"m1","client":"m1/w1"}
{"mono":20,"event":"stop","member":"m1","client":"m1/w1","extra":1}
{"mono":20,"event":"stop","member":"m1","client":"m1/w1"} {}
{"mono":-1,"event":"stop","member":"m1","client":"m1/w1"}
{"mono":20,"event":"stop","member":"","client":"m1/w1"}
{"mono":30,"event":"unlock","member":"m1","client":"m1/w1","resource":"r1","lock":"m1#1","token":4,"done":29}
{"mono":40,"event":"stop","member":"m1","client":"m1/w1"}
{"mono":50,"event":"st`
	evs, bad, err := ParseDLMEvents(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[1].Token != 4 || evs[2].Event != DLMStop {
		t.Errorf("events %+v", evs)
	}
	want := []string{`line 3: grant event with mode "CW"`, "line 4: grant event asked at 25", "line 5: grant event without resource or lock",
		`line 6: unknown event "nap"`, `line 7: not a JSON record: json: unknown field "extra"`, "line 8: more than one JSON value",
		"line 9: negative time", "line 10: \"stop\" event without member", "line 11: unlock event returned at 29"}
	if len(bad) != len(want) {
		t.Fatalf("bad %q, want %d", bad, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(bad[i], want[i]) {
			t.Errorf("bad[%d] = %q, want prefix %q", i, bad[i], want[i])
		}
	}

	ops, bad, err := ParseDLMOps(strings.NewReader(`{"resource":"r1","member":"m1","client":"m1/w1","lock":"m1#1","token":4,"mode":"EX","kind":"write","seq":1,"sent":5,"arrived":6,"accepted":true}
{"resource":"r1","member":"m1","client":"m1/w1","lock":"m1#1","token":4,"mode":"PR","kind":"write","seq":1,"sent":5,"arrived":6}
{"resource":"r1","member":"m1","client":"m1/w1","lock":"m1#1","token":4,"mode":"PR","kind":"scan","seq":1,"sent":5,"arrived":6}
`))
	if err != nil || len(ops) != 1 || !ops[0].Accepted || len(bad) != 2 ||
		!strings.HasPrefix(bad[0], "line 2: a write under a PR lock") || !strings.HasPrefix(bad[1], `line 3: op of kind "scan"`) {
		t.Errorf("ops %+v bad %q err %v", ops, bad, err)
	}
	b, _ := json.Marshal(ops[0])
	if again, _, _ := ParseDLMOps(strings.NewReader(string(b) + "\n")); len(again) != 1 || again[0] != ops[0] {
		t.Errorf("op %+v reads back as %+v", ops[0], again)
	}
}
