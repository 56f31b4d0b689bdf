package cdb

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/director"
	"github.com/vigil-cluster/vigil/internal/spec"
)

// eventLines formats events one per line for comparisons.
func eventLines(evs []client.Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Kind + " " + e.Message + "\n")
	}
	return b.String()
}

func webSpec() spec.Service {
	s := spec.Service{Name: "web", Resources: []spec.Resource{{Name: "a", Kind: spec.KindExec, Command: []string{"/bin/true"}}}}
	s.SetDefaults()
	return s
}

func TestEventsOfCommands(t *testing.T) {
	f := newFSM(nil)
	rc := 7
	cmds := []*Command{
		initCmd(),
		tokenCmd("t2", "s", "m2", t0.Add(time.Hour)),
		joinCmd(t0, "t2", "s", "m2", 0),
		{Op: OpServicesApply, At: t0, By: "root@socket", Services: []spec.Service{webSpec()}},
		{Op: OpDecide, At: t0, By: "director", Decide: &DecideArgs{Updates: []director.Update{{Service: "web",
			Status: director.Status{State: director.StateStarting, Owner: "m1", Epoch: 1, Reason: "placed on m1"}}}}},
		{Op: OpReport, At: t0, By: "lrm:m1", Report: &director.Event{Kind: director.StartFailed, Service: "web", Member: "m1", Epoch: 1, Detail: "exit 7"},
			Steps: []client.Step{{Resource: "a", Method: "start", RC: rc, DurationMS: 12, Output: []string{"no such file"}, Error: "exit 7"}}},
		{Op: OpServiceRequest, At: t0, By: "member:m1@198.18.0.1:5000", Request: &ServiceRequest{Service: "web", RelocateTo: "m9"}},
		{Op: OpServiceRequest, At: t0, By: "member:m1@198.18.0.1:5000", Request: &ServiceRequest{Service: "web", RelocateTo: "m2"}},
		{Op: OpEvents, At: t0, By: "member:m1", Events: []client.Event{{Kind: client.EventQuorum, Member: "m1", Message: "m1 lost quorum"}}},
		{Op: OpEvents, At: t0, By: "member:m1", Events: []client.Event{{Kind: "bogus", Message: "x"}}},
		{Op: OpDLMView, At: t0, By: "director", DLMView: &DLMView{Number: 1}},
	}
	for i, c := range cmds {
		f.Apply(logOf(uint64(i+1), c))
	}
	got, _ := f.log.query(client.EventFilter{})
	want := `config cluster c1 created with member m1
member member m2 joined the cluster (id 2, link 198.18.0.9:7000)
config applied service definitions: web
service web: STARTING on m1, was OFFLINE: placed on m1
method web: start failed on m1 (epoch 1): exit 7
operator relocate web to m9 refused: member m9 is not in the cluster (see ` + "`vigil members`" + `)
operator relocate web to m2
quorum m1 lost quorum
`
	if g := eventLines(got); g != want {
		t.Fatalf("events:\n%s\nwant:\n%s", g, want)
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	if m := got[4]; m.RC == nil || *m.RC != 7 || len(m.Steps) != 1 || m.Steps[0].Output[0] != "no such file" {
		t.Fatalf("method event lost its steps: %+v", m)
	}
	// Filters.
	if evs, _ := f.log.query(client.EventFilter{Service: "web", Kind: client.EventOperator}); len(evs) != 2 {
		t.Fatalf("service+kind filter: %s", eventLines(evs))
	}
	if evs, _ := f.log.query(client.EventFilter{After: 6, Limit: 1}); len(evs) != 1 || evs[0].Seq != 8 {
		t.Fatalf("after+limit: %+v", evs)
	}
}

func TestEventLogBoundAndSnapshot(t *testing.T) {
	f := newFSM(nil)
	f.Apply(logOf(1, initCmd()))
	f.Apply(logOf(2, settingsCmd(map[string]string{"event-log-size": "100"})))
	_, wake := f.log.query(client.EventFilter{})
	for i := range 150 {
		f.Apply(logOf(uint64(3+i), &Command{Op: OpEvents, At: t0, Events: []client.Event{{Kind: client.EventMember, Message: "e"}}}))
	}
	select {
	case <-wake:
	default:
		t.Fatal("adding events did not wake a waiter")
	}
	evs, _ := f.log.query(client.EventFilter{})
	if len(evs) != 100 || evs[0].Seq != 52 || evs[99].Seq != 151 {
		t.Fatalf("log holds %d events, seq %d..%d; want 100, 52..151", len(evs), evs[0].Seq, evs[len(evs)-1].Seq)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	g.Apply(logOf(152, &Command{Op: OpEvents, At: t0, Events: []client.Event{{Kind: client.EventMember, Message: "after"}}}))
	evs, _ = g.log.query(client.EventFilter{After: 149})
	if len(evs) != 3 || evs[2].Seq != 152 || evs[2].Message != "after" {
		t.Fatalf("after restore: %+v", evs)
	}
	// A snapshot of a state without a log (an older vigil) restores too.
	h := newFSM(nil)
	if err := h.Restore(io.NopCloser(strings.NewReader(`{"cluster":{"name":"c"},"members":{},"index":3}`))); err != nil {
		t.Fatal(err)
	}
}

func TestEventLogSizeSetting(t *testing.T) {
	for _, v := range []string{"99", "1000001", "x", "-5"} {
		if err := ValidSetting("event-log-size", v); err == nil {
			t.Errorf("event-log-size=%s accepted", v)
		}
	}
	if err := ValidSetting("event-log-size", "5000"); err != nil {
		t.Error(err)
	}
}

func TestCheckAlert(t *testing.T) {
	for _, tc := range []struct {
		a    client.Alert
		want string
	}{
		{client.Alert{Name: "Bad", Path: "/bin/true"}, "alert name"},
		{client.Alert{Name: "a", Path: "rel/path"}, "absolute path"},
		{client.Alert{Name: "a", Path: "/x", Kinds: []string{"nope"}}, `event kind "nope" is not known`},
		{client.Alert{Name: "a", Path: "/x", Timeout: "0.5s"}, "from 1s"},
		{client.Alert{Name: "a", Path: "/x", Timeout: "1h"}, "from 1s"},
		{client.Alert{Name: "a", Path: "/x", Recipient: "a\nb"}, "one line"},
		{client.Alert{Name: "a", Path: "/x", Kinds: []string{"service"}, Timeout: "5s"}, ""},
	} {
		err := CheckAlert(&tc.a)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.a, err, tc.want)
		}
	}
	a := client.Alert{Name: "a", Path: "/x"}
	if !Selects(&a, client.EventService) || Selects(&a, client.EventAlert) {
		t.Error("an alert without kinds selects every kind but alert")
	}
}

func TestAPITokens(t *testing.T) {
	s := newInit(t)
	tok := &APIToken{ID: "ab12", Name: "ops", Role: "operator", SecretHash: HashSecret("sekrit"), Expires: t0.Add(time.Hour)}
	mustApply(t, s, &Command{Op: OpAPITokenCreate, At: t0, By: "root@socket", APIToken: tok})
	mustRefuse(t, s, &Command{Op: OpAPITokenCreate, At: t0, APIToken: &APIToken{ID: "cd34", Name: "ops", Role: "viewer", SecretHash: "x"}}, ErrConflict, "a token named ops exists")
	mustRefuse(t, s, &Command{Op: OpAPITokenCreate, At: t0, APIToken: &APIToken{ID: "cd34", Name: "x", Role: "root", SecretHash: "x"}}, ErrInvalid, `role "root" is not known`)
	if got, err := s.APITokenFor("ab12", "sekrit", t0.Add(time.Minute)); err != nil || got.Role != "operator" || got.CreatedBy != "root@socket" {
		t.Fatalf("lookup: %+v %v", got, err)
	}
	if _, err := s.APITokenFor("ab12", "guess", t0); err == nil || !strings.Contains(err.Error(), "not valid here") {
		t.Errorf("a wrong secret: %v", err)
	}
	if _, err := s.APITokenFor("ab12", "sekrit", t0.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("an expired token: %v", err)
	}
	mustApply(t, s, &Command{Op: OpAPITokenRevoke, At: t0, Member: "ops"})
	if _, err := s.APITokenFor("ab12", "sekrit", t0); err == nil {
		t.Error("a revoked token still works")
	}
	mustRefuse(t, s, &Command{Op: OpAPITokenRevoke, At: t0, Member: "ops"}, ErrNotFound, "no API token ops")
}

func TestKeyRotationPhases(t *testing.T) {
	s := newInit(t)
	mustApply(t, s, tokenCmd("t2", "s", "m2", t0.Add(time.Hour)))
	mustApply(t, s, joinCmd(t0, "t2", "s", "m2", 0))
	mustApply(t, s, &Command{Op: OpKeyBegin, At: t0, KeyRotation: &KeyRotation{Sealed: "x", ID: "k2", OldID: "k1"}})
	mustRefuse(t, s, &Command{Op: OpKeyBegin, At: t0, KeyRotation: &KeyRotation{Sealed: "y", ID: "k3"}}, ErrConflict, "under way, in phase install, waiting for m1, m2")
	mustRefuse(t, s, &Command{Op: OpKeyPhase, At: t0, Serial: "k2", Phase: KeyUse}, ErrRefused, "waits for m1, m2")
	for _, m := range []string{"m1", "m2"} {
		mustApply(t, s, &Command{Op: OpKeyAck, At: t0, Member: m, Serial: "k2", Phase: KeyInstall})
	}
	mustRefuse(t, s, &Command{Op: OpKeyPhase, At: t0, Serial: "k2", Phase: KeyRemove}, ErrInvalid, "cannot go from phase install to remove")
	mustApply(t, s, &Command{Op: OpKeyPhase, At: t0, Serial: "k2", Phase: KeyUse})
	// An ack of the phase before does not count for this one.
	mustApply(t, s, &Command{Op: OpKeyAck, At: t0, Member: "m1", Serial: "k2", Phase: KeyInstall})
	if w := s.KeyRotation.Waiting(s); len(w) != 2 {
		t.Fatalf("waiting %v", w)
	}
	for _, ph := range []string{KeyUse, KeyRemove} {
		for _, m := range []string{"m1", "m2"} {
			mustApply(t, s, &Command{Op: OpKeyAck, At: t0, Member: m, Serial: "k2", Phase: ph})
		}
		next := map[string]string{KeyUse: KeyRemove, KeyRemove: "done"}[ph]
		mustApply(t, s, &Command{Op: OpKeyPhase, At: t0, Serial: "k2", Phase: next})
	}
	if s.KeyRotation != nil {
		t.Fatalf("rotation still under way: %+v", s.KeyRotation)
	}
	mustApply(t, s, &Command{Op: OpKeyAck, At: t0, Member: "m1", Serial: "k2", Phase: KeyRemove}) // late: ignored
}

func TestCARotationPhases(t *testing.T) {
	s := newInit(t)
	mustApply(t, s, tokenCmd("t2", "s", "m2", t0.Add(time.Hour)))
	mustApply(t, s, tokenCmd("t3", "s", "m3", t0.Add(time.Hour)))
	mustApply(t, s, joinCmd(t0, "t2", "s", "m2", 0))
	ca := &KeyRotation{Sealed: "x", ID: "ab12cd34ef56ab12cd34ef56", OldID: "99", Cert: "pem", Cross: "pem"}
	mustRefuse(t, s, &Command{Op: OpCABegin, At: t0, KeyRotation: &KeyRotation{Sealed: "x", ID: "c"}}, ErrInvalid, "CA rotation without a key")
	mustApply(t, s, &Command{Op: OpKeyBegin, At: t0, KeyRotation: &KeyRotation{Sealed: "x", ID: "k2", OldID: "k1"}})
	mustRefuse(t, s, &Command{Op: OpCABegin, At: t0, KeyRotation: ca}, ErrConflict, "a key rotation is under way, in phase install: finish it first (run vigil keyring rotate again)")
	s.KeyRotation = nil
	mustApply(t, s, &Command{Op: OpCABegin, At: t0, KeyRotation: ca})
	mustRefuse(t, s, &Command{Op: OpKeyBegin, At: t0, KeyRotation: &KeyRotation{Sealed: "x", ID: "k3"}}, ErrConflict, "a CA rotation is under way")
	mustRefuse(t, s, joinCmd(t0, "t3", "s", "m3", 0), ErrConflict, "a CA rotation is under way (phase install): no member joins until it ends")
	for _, ph := range []string{KeyInstall, KeyUse, KeyRemove} {
		for _, m := range []string{"m1", "m2"} {
			mustApply(t, s, &Command{Op: OpCAAck, At: t0, Member: m, Serial: ca.ID, Phase: ph})
		}
		next := map[string]string{KeyInstall: KeyUse, KeyUse: KeyRemove, KeyRemove: "done"}[ph]
		mustApply(t, s, &Command{Op: OpCAPhase, At: t0, Serial: ca.ID, Phase: next})
	}
	if s.CARotation != nil || s.Cluster.CAFingerprint != ca.ID {
		t.Fatalf("after the rotation: %+v, fingerprint %s", s.CARotation, s.Cluster.CAFingerprint)
	}
	mustApply(t, s, joinCmd(t0, "t3", "s", "m3", 0))
}
