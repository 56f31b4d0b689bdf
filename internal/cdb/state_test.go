package cdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func initCmd() *Command {
	return &Command{Op: OpInit, At: t0, By: "root@socket", Init: &InitArgs{
		Cluster: Cluster{Name: "c1", ID: "id-c1", Profile: "lan", Created: t0,
			Attributes: map[string]string{"site": "a"}, CAFingerprint: strings.Repeat("f", 64)},
		Member:         Member{Name: "m1", ID: 1, Links: []string{"198.18.0.1:7000"}, API: "198.18.0.1:8000", Votes: 1, Joined: t0},
		AdminTokenHash: HashSecret("admin-secret"),
	}}
}

func tokenCmd(id, secret, member string, expires time.Time) *Command {
	return &Command{Op: OpTokenCreate, At: t0, Token: &JoinToken{ID: id, SecretHash: HashSecret(secret), Member: member,
		Address: "198.18.0.9:7000", Votes: 1, Created: t0, Expires: expires}}
}

func joinCmd(at time.Time, tokenID, secret, member string, id int) *Command {
	return &Command{Op: OpJoin, At: at, Join: &JoinArgs{TokenID: tokenID, Secret: secret,
		Member: Member{Name: member, ID: id, Links: []string{"198.18.0.9:7000"}, API: "198.18.0.9:8000", Votes: 1}}}
}

func settingsCmd(kv map[string]string) *Command {
	return &Command{Op: OpSettingsSet, At: t0, Settings: kv}
}

// apply runs c on s and fails the test on a refusal.
func mustApply(t *testing.T, s *State, c *Command) any {
	t.Helper()
	res, err := s.apply(c)
	if err != nil {
		t.Fatalf("%s refused: %v", c.Op, err)
	}
	return res
}

// mustRefuse runs c on s, checks the refusal's kind and message, and checks
// that s did not change.
func mustRefuse(t *testing.T, s *State, c *Command, kind error, msg ...string) {
	t.Helper()
	before := dump(t, s)
	res, err := s.apply(c)
	if err == nil {
		t.Fatalf("%s was applied (result %v), want a refusal of kind %v", c.Op, res, kind)
	}
	t.Logf("%s refused: %v", c.Op, err)
	if !errors.Is(err, kind) {
		t.Errorf("%s refused with %v, want kind %v", c.Op, err, kind)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Errorf("refusal %T is not a *cdb.Error", err)
	}
	for _, m := range msg {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("refusal %q does not contain %q", err, m)
		}
	}
	if after := dump(t, s); after != before {
		t.Errorf("a refused %s changed the state:\nbefore %s\nafter  %s", c.Op, before, after)
	}
}

func dump(t *testing.T, s *State) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newInit(t *testing.T) *State {
	t.Helper()
	s := NewState()
	mustApply(t, s, initCmd())
	return s
}

func TestApplyInit(t *testing.T) {
	s := NewState()
	mustRefuse(t, s, tokenCmd("t1", "s", "m2", t0.Add(time.Hour)), ErrRefused, "not initialized")
	mustRefuse(t, s, &Command{Op: OpInit, At: t0}, ErrRefused, "without arguments")
	mustApply(t, s, initCmd())
	if s.Cluster.Name != "c1" || s.Cluster.ID != "id-c1" || s.AdminTokenHash != HashSecret("admin-secret") {
		t.Fatalf("init did not set the cluster: %+v", s.Cluster)
	}
	if m := s.Members["m1"]; m == nil || m.ID != 1 || m.Votes != 1 {
		t.Fatalf("init did not add the first member: %+v", s.Members)
	}
	if got := s.ExpectedVotes(); got != 1 {
		t.Fatalf("ExpectedVotes = %d, want 1", got)
	}
	mustRefuse(t, s, initCmd(), ErrConflict, "already initialized", "c1")
}

func TestApplyTokenCreate(t *testing.T) {
	s := newInit(t)
	mustApply(t, s, tokenCmd("t1", "secret", "m2", t0.Add(time.Hour)))
	tok := s.Tokens["t1"]
	if tok == nil || tok.Member != "m2" || tok.SecretHash != HashSecret("secret") || tok.UsedBy != "" {
		t.Fatalf("token not recorded: %+v", tok)
	}
	if strings.Contains(dump(t, s), `"secret"`) {
		t.Fatalf("the state holds the token's secret in the clear: %s", dump(t, s))
	}
	mustRefuse(t, s, tokenCmd("t1", "other", "m3", t0.Add(time.Hour)), ErrConflict, "token id t1 exists")
	mustRefuse(t, s, tokenCmd("t2", "secret", "m1", t0.Add(time.Hour)), ErrConflict, "a member named m1 is already in the cluster", "198.18.0.1:7000")
	mustRefuse(t, s, &Command{Op: OpTokenCreate, At: t0}, ErrRefused, "without id or secret")
	mustRefuse(t, s, &Command{Op: OpTokenCreate, At: t0, Token: &JoinToken{ID: "t3", Member: "m3"}}, ErrRefused, "without id or secret")
	mustRefuse(t, s, &Command{Op: OpTokenCreate, At: t0, Token: &JoinToken{SecretHash: "x", Member: "m3"}}, ErrRefused, "without id or secret")
	// The command's token is copied, not kept.
	c := tokenCmd("t4", "s4", "m4", t0.Add(time.Hour))
	mustApply(t, s, c)
	c.Token.Member = "changed"
	if s.Tokens["t4"].Member != "m4" {
		t.Fatalf("the state shares the command's token")
	}
}

func TestApplyJoin(t *testing.T) {
	exp := t0.Add(time.Hour)
	setup := func(t *testing.T) *State {
		s := newInit(t)
		mustApply(t, s, tokenCmd("t2", "secret2", "m2", exp))
		return s
	}

	t.Run("success assigns the next id and uses the token", func(t *testing.T) {
		s := setup(t)
		at := t0.Add(time.Minute)
		res := mustApply(t, s, joinCmd(at, "t2", "secret2", "m2", 0))
		m, ok := res.(Member)
		if !ok {
			t.Fatalf("join returned %T, want Member", res)
		}
		if m.ID != 2 || m.Name != "m2" || !m.Joined.Equal(at) {
			t.Fatalf("join returned %+v, want m2 with id 2 joined at %v", m, at)
		}
		if got := s.Members["m2"]; got == nil || got.ID != 2 {
			t.Fatalf("m2 not in the state: %+v", s.Members)
		}
		if tok := s.Tokens["t2"]; tok.UsedBy != "m2" || !tok.UsedAt.Equal(at) {
			t.Fatalf("token not marked used: %+v", tok)
		}
		if got := s.MemberNames(); !reflect.DeepEqual(got, []string{"m1", "m2"}) {
			t.Fatalf("MemberNames = %v", got)
		}
		if got := s.ExpectedVotes(); got != 2 {
			t.Fatalf("ExpectedVotes = %d, want 2", got)
		}
	})

	t.Run("replay is refused and says the token was used", func(t *testing.T) {
		s := setup(t)
		mustApply(t, s, joinCmd(t0, "t2", "secret2", "m2", 0))
		mustRefuse(t, s, joinCmd(t0.Add(time.Second), "t2", "secret2", "m2", 0), ErrRefused,
			"already used by member m2", t0.Format(time.RFC3339), "vigil member add")
	})

	t.Run("explicit id is kept", func(t *testing.T) {
		s := setup(t)
		res := mustApply(t, s, joinCmd(t0, "t2", "secret2", "m2", 7))
		if res.(Member).ID != 7 || s.Members["m2"].ID != 7 {
			t.Fatalf("join with id 7 gave %+v", res)
		}
	})

	for _, tc := range []struct {
		name string
		cmd  *Command
		kind error
		msg  []string
	}{
		{"wrong secret", joinCmd(t0, "t2", "guess", "m2", 0), ErrRefused, []string{"secret does not match", "vigil member add m2"}},
		{"unknown token", joinCmd(t0, "t9", "secret2", "m2", 0), ErrRefused, []string{"secret does not match"}},
		{"no arguments", &Command{Op: OpJoin, At: t0}, ErrRefused, []string{"without arguments"}},
		{"expired", joinCmd(exp, "t2", "secret2", "m2", 0), ErrRefused, []string{"expired at " + exp.Format(time.RFC3339), "vigil member add m2"}},
		{"long expired", joinCmd(exp.Add(24*time.Hour), "t2", "secret2", "m2", 0), ErrRefused, []string{"expired"}},
		{"token for another member", joinCmd(t0, "t2", "secret2", "m3", 0), ErrRefused, []string{"for member m2, not m3", "--member m2"}},
		{"duplicate id", joinCmd(t0, "t2", "secret2", "m2", 1), ErrConflict, []string{"member id 1 is already used by member m1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			mustRefuse(t, s, tc.cmd, tc.kind, tc.msg...)
			if s.Tokens["t2"].UsedBy != "" {
				t.Fatalf("a refused join used the token")
			}
		})
	}

	t.Run("duplicate name", func(t *testing.T) {
		// Two tokens for one name: the second join finds the name taken.
		s := setup(t)
		mustApply(t, s, tokenCmd("t2b", "secret2b", "m2", exp))
		mustApply(t, s, joinCmd(t0, "t2", "secret2", "m2", 0))
		mustRefuse(t, s, joinCmd(t0, "t2b", "secret2b", "m2", 0), ErrConflict, "a member named m2 is already in the cluster (id 2")
	})
}

func TestNextID(t *testing.T) {
	s := newInit(t)
	for i, n := range []string{"m2", "m3", "m4"} {
		mustApply(t, s, tokenCmd(fmt.Sprintf("t%d", i), "s", n, t0.Add(time.Hour)))
		mustApply(t, s, joinCmd(t0, fmt.Sprintf("t%d", i), "s", n, 0))
	}
	mustApply(t, s, &Command{Op: OpMemberRemove, At: t0, Member: "m3"})
	if got := s.NextID(); got != 3 {
		t.Fatalf("NextID after removing id 3 = %d, want 3 (the lowest free id)", got)
	}
	mustApply(t, s, tokenCmd("t9", "s", "m9", t0.Add(time.Hour)))
	if res := mustApply(t, s, joinCmd(t0, "t9", "s", "m9", 0)); res.(Member).ID != 3 {
		t.Fatalf("join got id %d, want 3", res.(Member).ID)
	}
	if got := s.MemberByID(3); got == nil || got.Name != "m9" {
		t.Fatalf("MemberByID(3) = %+v", got)
	}
	if got := s.MemberByID(99); got != nil {
		t.Fatalf("MemberByID(99) = %+v, want nil", got)
	}
}

func TestApplyMemberRemove(t *testing.T) {
	s := newInit(t)
	mustRefuse(t, s, &Command{Op: OpMemberRemove, At: t0, Member: "m9"}, ErrNotFound, "member m9 is not in the cluster")
	mustRefuse(t, s, &Command{Op: OpMemberRemove, At: t0, Member: "m1"}, ErrRefused, "m1 is the last member")
	mustApply(t, s, tokenCmd("t2", "s", "m2", t0.Add(time.Hour)))
	mustApply(t, s, joinCmd(t0, "t2", "s", "m2", 0))
	mustApply(t, s, &Command{Op: OpMemberRemove, At: t0, Member: "m1"})
	if _, ok := s.Members["m1"]; ok || len(s.Members) != 1 {
		t.Fatalf("m1 not removed: %v", s.MemberNames())
	}
	mustRefuse(t, s, &Command{Op: OpMemberRemove, At: t0, Member: "m2"}, ErrRefused, "last member")
}

func TestApplySettings(t *testing.T) {
	s := newInit(t)
	mustApply(t, s, settingsCmd(map[string]string{"token-ttl": "2h", "description": "prod", "user.owner": "ops"}))
	if got := s.TokenTTL(); got != 2*time.Hour {
		t.Fatalf("TokenTTL = %v, want 2h", got)
	}
	for _, tc := range []struct {
		name string
		kv   map[string]string
		msg  []string
	}{
		{"unknown key", map[string]string{"colour": "red"}, []string{`setting "colour" is not known`, "description, event-log-size, no-quorum-policy, token-ttl", "user."}},
		{"ttl not a duration", map[string]string{"token-ttl": "soon"}, []string{"token-ttl", "30m or 2h"}},
		{"ttl too short", map[string]string{"token-ttl": "59s"}, []string{"token-ttl", "1m to 168h"}},
		{"ttl too long", map[string]string{"token-ttl": "169h"}, []string{"token-ttl", "1m to 168h"}},
		{"description too long", map[string]string{"description": strings.Repeat("d", 257)}, []string{"description", "at most 256"}},
		{"bare user.", map[string]string{"user.": "x"}, []string{`"user." is not known`}},
		{"user key too long", map[string]string{"user." + strings.Repeat("k", 124): "x"}, []string{"is not known", "up to 128 bytes"}},
		{"user value too long", map[string]string{"user.big": strings.Repeat("v", MaxSettingValue+1)}, []string{"user.big", "at most 4096"}},
		{"one bad among good", map[string]string{"user.a": "1", "description": "x", "token-ttl": "0s"}, []string{"token-ttl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustRefuse(t, s, settingsCmd(tc.kv), ErrRefused, tc.msg...)
		})
	}
	// Edges that are allowed.
	mustApply(t, s, settingsCmd(map[string]string{"token-ttl": "1m", "user." + strings.Repeat("k", 123): strings.Repeat("v", MaxSettingValue)}))
	mustApply(t, s, settingsCmd(map[string]string{"token-ttl": "168h"}))

	// An empty value removes the key, known or not, without checking it.
	mustApply(t, s, settingsCmd(map[string]string{"user.owner": "", "token-ttl": "", "no-such-key": ""}))
	if _, ok := s.Settings["user.owner"]; ok {
		t.Fatalf("user.owner not removed: %v", s.Settings)
	}
	if got := s.TokenTTL(); got != time.Hour {
		t.Fatalf("TokenTTL after unset = %v, want the 1h default", got)
	}
	if s.Settings["description"] != "prod" {
		t.Fatalf("unrelated setting changed: %v", s.Settings)
	}
}

func TestApplySettingsLimit(t *testing.T) {
	s := newInit(t)
	kv := map[string]string{}
	for i := range MaxSettings - 1 {
		kv[fmt.Sprintf("user.k%d", i)] = "v"
	}
	mustApply(t, s, settingsCmd(kv))
	mustRefuse(t, s, settingsCmd(map[string]string{"user.x": "1", "user.y": "1"}), ErrRefused,
		fmt.Sprintf("too many settings: %d, at most %d", MaxSettings+1, MaxSettings))
	mustApply(t, s, settingsCmd(map[string]string{"user.x": "1"}))
	if len(s.Settings) != MaxSettings {
		t.Fatalf("%d settings, want %d", len(s.Settings), MaxSettings)
	}
	mustRefuse(t, s, settingsCmd(map[string]string{"description": "one too many"}), ErrRefused, "too many settings")
	// At the limit, changing or removing a key still works.
	mustApply(t, s, settingsCmd(map[string]string{"user.x": "2", "user.k0": ""}))
	mustApply(t, s, settingsCmd(map[string]string{"description": "fits again"}))
	if len(s.Settings) != MaxSettings || s.Settings["user.x"] != "2" {
		t.Fatalf("%d settings, user.x=%q", len(s.Settings), s.Settings["user.x"])
	}
}

func TestApplyRestore(t *testing.T) {
	s := newInit(t)
	mustApply(t, s, settingsCmd(map[string]string{"description": "before", "user.a": "1"}))
	backup := s.Clone()
	backup.Settings = map[string]string{"description": "from backup", "user.b": "2"}
	backup.Cluster.Attributes = map[string]string{"site": "b"}
	// Since the backup: a member joined and a token was made.
	mustApply(t, s, tokenCmd("t2", "s", "m2", t0.Add(time.Hour)))
	mustApply(t, s, joinCmd(t0, "t2", "s", "m2", 0))
	mustApply(t, s, tokenCmd("t3", "s", "m3", t0.Add(time.Hour)))
	mustApply(t, s, settingsCmd(map[string]string{"user.c": "3"}))

	foreign := backup.Clone()
	foreign.Cluster.ID = "id-other"
	foreign.Cluster.Name = "other"
	mustRefuse(t, s, &Command{Op: OpRestore, At: t0, Restore: foreign}, ErrRefused, "cluster other (id id-other)", "this is cluster c1 (id id-c1)")
	mustRefuse(t, s, &Command{Op: OpRestore, At: t0}, ErrRefused, "without a state")

	members, tokens := dumpOf(t, s.Members), dumpOf(t, s.Tokens)
	mustApply(t, s, &Command{Op: OpRestore, At: t0, Restore: backup})
	if want := map[string]string{"description": "from backup", "user.b": "2"}; !reflect.DeepEqual(s.Settings, want) {
		t.Fatalf("settings after restore = %v, want %v", s.Settings, want)
	}
	if s.Cluster.Attributes["site"] != "b" {
		t.Fatalf("cluster attributes not restored: %v", s.Cluster.Attributes)
	}
	if dumpOf(t, s.Members) != members || dumpOf(t, s.Tokens) != tokens {
		t.Fatalf("restore changed members or tokens:\n%s\n%s", dumpOf(t, s.Members), dumpOf(t, s.Tokens))
	}
	if s.Tokens["t2"].UsedBy != "m2" {
		t.Fatalf("restore brought back a used token")
	}
	// The restored settings are the state's own, not the command's.
	backup.Settings["user.b"] = "changed"
	if s.Settings["user.b"] != "2" {
		t.Fatalf("the state shares the backup's settings map")
	}
}

func TestApplyRestoreChecksSettings(t *testing.T) {
	s := newInit(t)
	bad := s.Clone()
	bad.Settings = map[string]string{"token-ttl": "forever"}
	mustRefuse(t, s, &Command{Op: OpRestore, At: t0, Restore: bad}, ErrRefused, "token-ttl")
	big := s.Clone()
	for i := range MaxSettings + 1 {
		big.Settings[fmt.Sprintf("user.k%d", i)] = "v"
	}
	mustRefuse(t, s, &Command{Op: OpRestore, At: t0, Restore: big}, ErrRefused, "too many settings")
}

func dumpOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApplyTokensPrune(t *testing.T) {
	s := newInit(t)
	mustApply(t, s, tokenCmd("old", "s", "m2", t0.Add(time.Minute)))
	mustApply(t, s, tokenCmd("edge", "s", "m3", t0.Add(time.Hour)))
	mustApply(t, s, tokenCmd("new", "s", "m4", t0.Add(2*time.Hour)))
	mustApply(t, s, &Command{Op: OpTokensPrune, At: t0.Add(time.Hour)})
	var ids []string
	for id := range s.Tokens {
		ids = append(ids, id)
	}
	if !reflect.DeepEqual(ids, []string{"new"}) {
		t.Fatalf("tokens after prune at t0+1h: %v, want [new] (a token expiring at that instant is expired)", ids)
	}
}

func TestApplyUnknownOp(t *testing.T) {
	s := newInit(t)
	mustRefuse(t, s, &Command{Op: "service-add", At: t0}, ErrRefused, `unknown command "service-add"`, "upgrade")
	mustRefuse(t, s, &Command{At: t0}, ErrRefused, "unknown command")
}

// TestApplyDeterministic replays one log on two states and compares them:
// every member must compute the same state.
func TestApplyDeterministic(t *testing.T) {
	log := []*Command{initCmd(),
		tokenCmd("t2", "s2", "m2", t0.Add(time.Hour)), tokenCmd("t3", "s3", "m3", t0.Add(time.Hour)),
		joinCmd(t0, "t2", "s2", "m2", 0), joinCmd(t0, "t3", "s3", "m3", 0), joinCmd(t0, "t3", "s3", "m3", 0),
		settingsCmd(map[string]string{"a": "b", "user.x": "1"}), settingsCmd(map[string]string{"user.y": "2", "token-ttl": "3h"}),
		{Op: OpMemberRemove, At: t0, Member: "m2"}, {Op: OpTokensPrune, At: t0.Add(2 * time.Hour)},
	}
	run := func() string {
		s := NewState()
		var results []string
		for i, c := range log {
			// Every member decodes the command from the log.
			var d Command
			if err := json.Unmarshal(c.Encode(), &d); err != nil {
				t.Fatal(err)
			}
			res, err := s.apply(&d)
			s.Index = uint64(i + 1)
			results = append(results, fmt.Sprint(res, err))
		}
		return dump(t, s) + strings.Join(results, "\n")
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("two replays of one log differ:\n%s\n%s", a, b)
	}
}

func TestClone(t *testing.T) {
	s := newInit(t)
	mustApply(t, s, tokenCmd("t2", "s", "m2", t0.Add(time.Hour)))
	mustApply(t, s, settingsCmd(map[string]string{"user.a": "1"}))
	c := s.Clone()
	if dump(t, c) != dump(t, s) {
		t.Fatalf("clone differs:\n%s\n%s", dump(t, c), dump(t, s))
	}
	c.Members["m1"].Votes = 0
	c.Tokens["t2"].UsedBy = "x"
	c.Settings["user.a"] = "2"
	c.Cluster.Attributes["site"] = "z"
	if s.Members["m1"].Votes != 1 || s.Tokens["t2"].UsedBy != "" || s.Settings["user.a"] != "1" || s.Cluster.Attributes["site"] != "a" {
		t.Fatalf("clone shares memory with the original")
	}
	// An empty state's clone has usable maps.
	e := NewState()
	e.Tokens, e.Settings = nil, nil
	if c := e.Clone(); c.Tokens == nil || c.Settings == nil || c.Members == nil {
		t.Fatalf("clone of a state without maps has nil maps")
	}
}

func TestQuorumNeeded(t *testing.T) {
	for expected, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		if got := QuorumNeeded(expected); got != want {
			t.Errorf("QuorumNeeded(%d) = %d, want %d", expected, got, want)
		}
	}
}

func TestValidSetting(t *testing.T) {
	for _, tc := range []struct {
		k, v string
		ok   bool
	}{
		{"description", "", true},
		{"description", strings.Repeat("d", 256), true},
		{"token-ttl", "1h30m", true},
		{"token-ttl", "", false},
		{"token-ttl", "-1h", false},
		{"user.a", "", true},
		{"user.a.b-c", "anything at all", true},
		{"User.a", "x", false},
		{"", "x", false},
	} {
		err := ValidSetting(tc.k, tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("ValidSetting(%q, %q) = %v, want ok=%v", tc.k, tc.v, err, tc.ok)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	err := Refuse(ErrConflict, "member %s exists", "m2")
	if err.Error() != "member m2 exists" || !errors.Is(err, ErrConflict) || errors.Is(err, ErrRefused) {
		t.Fatalf("Refuse gave %v", err)
	}
	wrapped := fmt.Errorf("adding: %w", err)
	if !errors.Is(wrapped, ErrConflict) {
		t.Fatalf("a wrapped refusal loses its kind")
	}
}

// TestApplyRefusalIsDeterministic: with several bad settings, every member
// refuses with the same message, naming the first bad key in order.
func TestApplyRefusalIsDeterministic(t *testing.T) {
	kv := map[string]string{"user.ok": "1", "zz": "1", "token-ttl": "1s", "aa": "1", "mm": "1"}
	for _, c := range []*Command{settingsCmd(kv), {Op: OpRestore, At: t0, Restore: &State{Cluster: Cluster{ID: "id-c1"}, Settings: kv}}} {
		s := newInit(t)
		_, first := s.apply(c)
		if first == nil || !strings.Contains(first.Error(), `"aa"`) {
			t.Fatalf("%s: refusal %v does not name the first bad key, aa", c.Op, first)
		}
		for range 50 {
			if _, err := s.apply(c); err == nil || err.Error() != first.Error() {
				t.Fatalf("%s refused with %q, then with %q", c.Op, first, err)
			}
		}
	}
}
