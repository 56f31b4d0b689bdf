package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
)

const adminToken = "admin-token-0123456789"

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// fakeBackend records calls and answers from its fields.
type fakeBackend struct {
	mu        sync.Mutex
	calls     []string // guarded by mu
	by        string   // guarded by mu
	addReq    client.AddMemberRequest
	settings  map[string]string
	logReq    client.LogLevelRequest
	restored  []byte
	err       error // returned by every write
	adminHash string
}

func (f *fakeBackend) record(call, by string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	f.by = by
}

func (f *fakeBackend) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) Status(context.Context) *client.Status {
	f.record("Status", "")
	return &client.Status{Cluster: "c1", Members: []client.Member{{Name: "m1", ID: 1, State: client.MemberUp}}}
}
func (f *fakeBackend) Config(context.Context) *client.Config {
	f.record("Config", "")
	return &client.Config{Cluster: client.ClusterInfo{Name: "c1"}}
}
func (f *fakeBackend) Settings(context.Context) *client.Settings {
	f.record("Settings", "")
	return &client.Settings{Settings: map[string]string{"description": "x"}}
}
func (f *fakeBackend) AddMember(_ context.Context, r client.AddMemberRequest, by string) (*client.AddMemberResponse, error) {
	f.record("AddMember", by)
	f.addReq = r
	if f.err != nil {
		return nil, f.err
	}
	return &client.AddMemberResponse{Token: "vigil-join-x"}, nil
}
func (f *fakeBackend) RemoveMember(_ context.Context, name, by string) error {
	f.record("RemoveMember "+name, by)
	return f.err
}
func (f *fakeBackend) SetSettings(_ context.Context, kv map[string]string, by string) (*client.WriteResult, error) {
	f.record("SetSettings", by)
	f.settings = kv
	if f.err != nil {
		return nil, f.err
	}
	return &client.WriteResult{Index: 7}, nil
}
func (f *fakeBackend) SetLogLevel(_ context.Context, r client.LogLevelRequest) ([]client.LogLevelResult, error) {
	f.record("SetLogLevel", "")
	f.logReq = r
	if f.err != nil {
		return nil, f.err
	}
	return []client.LogLevelResult{{Member: "m1"}}, nil
}
func (f *fakeBackend) Backup(context.Context) ([]byte, error) {
	f.record("Backup", "")
	if f.err != nil {
		return nil, f.err
	}
	return []byte(`{"format":"vigil-cdb-backup"}`), nil
}
func (f *fakeBackend) Restore(_ context.Context, data []byte, by string) (*client.RestoreResponse, error) {
	f.record("Restore", by)
	f.restored = data
	if f.err != nil {
		return nil, f.err
	}
	// Like the agent: the backup file is checked before anything else.
	if _, _, err := cdb.DecodeBackup(data); err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	return &client.RestoreResponse{Index: 9}, nil
}
func (f *fakeBackend) AdminTokenHash() string             { return f.adminHash }
func (f *fakeBackend) AllowedCert(cn, serial string) bool { return true }

func newServer(t testing.TB) (*Server, *fakeBackend) {
	fb := &fakeBackend{adminHash: hashOf(adminToken)}
	return New(fb, slog.New(slog.NewTextHandler(io.Discard, nil))), fb
}

func do(h http.Handler, method, path string, body io.Reader, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// errorBody checks that w is a JSON error with the status and code.
func errorBody(t *testing.T, w *httptest.ResponseRecorder, status int, code string) client.ErrorBody {
	t.Helper()
	if w.Code != status {
		t.Errorf("status %d, want %d (body %.200s)", w.Code, status, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var eb client.ErrorBody
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body is not an ErrorBody: %v", err)
	}
	if eb.Code != code {
		t.Errorf("code %q, want %q", eb.Code, code)
	}
	if eb.Message == "" {
		t.Errorf("error without a message")
	}
	return eb
}

// bodyEndpoints are the routes that decode a JSON body, with a body of the
// wrong type for each.
var bodyEndpoints = []struct {
	method, path, good, wrongType string
}{
	{"POST", "/v1/members", `{"name":"m2","address":"198.18.0.2:7000"}`, `{"name":2}`},
	{"PUT", "/v1/settings", `{"settings":{"user.a":"1"}}`, `{"settings":["user.a"]}`},
	{"PUT", "/v1/log-level", `{"level":"debug","all":true}`, `{"level":"debug","all":"yes"}`},
	{"PUT", "/v1/alerts/a", `{"name":"a","path":"/bin/true"}`, `{"name":"a","path":7}`},
	{"POST", "/v1/exec", `{"all":true,"command":["uptime"]}`, `{"all":true,"command":"uptime"}`},
	{"POST", "/v1/tokens", `{"name":"t","role":"viewer"}`, `{"name":"t","role":1}`},
}

func TestBadBodies(t *testing.T) {
	big := `{"name":"` + strings.Repeat("a", MaxBody) + `"}`
	for _, ep := range bodyEndpoints {
		for _, tc := range []struct {
			name string
			body string
			want string
		}{
			{"malformed", `{"name":`, "not valid"},
			{"not json", `name=m2`, "not valid"},
			{"oversized", big, fmt.Sprintf("larger than %d bytes", MaxBody)},
			{"empty", ``, "empty"},
			{"white space", " \n\t", "empty"},
			{"trailing garbage", ep.good + ` x`, "data after the JSON object"},
			{"trailing brace", ep.good + `}`, "data after the JSON object"},
			{"trailing bracket", ep.good + "\n]", "data after the JSON object"},
			{"two objects", ep.good + ep.good, "data after the JSON object"},
			{"unknown field", `{"nmae":"m2"}`, `unknown field "nmae"`},
			{"wrong type", ep.wrongType, "cannot unmarshal"},
			{"array", `[]`, "cannot unmarshal array"},
			{"string", `"m2"`, "cannot unmarshal string"},
		} {
			t.Run(ep.path+"/"+tc.name, func(t *testing.T) {
				s, fb := newServer(t)
				w := do(s.Local(), ep.method, ep.path, strings.NewReader(tc.body))
				eb := errorBody(t, w, http.StatusBadRequest, client.CodeInvalid)
				if !strings.Contains(eb.Message, tc.want) {
					t.Errorf("message %q does not contain %q", eb.Message, tc.want)
				}
				if len(eb.Message) < 1000 {
					t.Log(eb.Message)
				}
				if c := fb.called(); len(c) != 0 {
					t.Errorf("the backend was called with a bad body: %v", c)
				}
			})
		}
	}
}

func TestGoodBodies(t *testing.T) {
	for _, ep := range bodyEndpoints {
		t.Run(ep.path, func(t *testing.T) {
			s, fb := newServer(t)
			w := do(s.Local(), ep.method, ep.path, strings.NewReader(ep.good+"\r\n"))
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("answer is not JSON: %s", w.Body)
			}
			if len(fb.called()) != 1 {
				t.Fatalf("backend calls: %v", fb.called())
			}
		})
	}
	s, fb := newServer(t)
	// A body of exactly MaxBody bytes is allowed.
	body := `{"name":"m2"}` + strings.Repeat(" ", MaxBody-len(`{"name":"m2"}`))
	if w := do(s.Local(), "POST", "/v1/members", strings.NewReader(body)); w.Code != 200 {
		t.Fatalf("body of exactly MaxBody bytes: %d %s", w.Code, w.Body)
	}
	if fb.addReq.Name != "m2" || fb.by != "root@socket [admin]" {
		t.Fatalf("backend got %+v from %q", fb.addReq, fb.by)
	}
	// No settings at all is refused before the backend.
	w := do(s.Local(), "PUT", "/v1/settings", strings.NewReader(`{"settings":{}}`))
	if eb := errorBody(t, w, 400, client.CodeInvalid); !strings.Contains(eb.Message, "no settings given") {
		t.Fatalf("message %q", eb.Message)
	}
}

func TestRoutes(t *testing.T) {
	s, fb := newServer(t)
	h := s.Local()
	for _, tc := range []struct {
		method, path string
		want         string // in the answer
	}{
		{"GET", "/v1/health", `"ok"`},
		{"GET", "/v1/status", `"cluster": "c1"`},
		{"GET", "/v1/members", `"name": "m1"`},
		{"GET", "/v1/settings", `"description"`},
		{"GET", "/v1/cdb", `"name": "c1"`},
		{"GET", "/v1/cdb/backup", `vigil-cdb-backup`},
		{"POST", "/v1/locks/probe", `"master": "m1"`},
		{"DELETE", "/v1/members/m2", `"removed": "m2"`},
	} {
		w := do(h, tc.method, tc.path, nil)
		if w.Code != 200 || !strings.Contains(w.Body.String(), tc.want) || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q %s", tc.method, tc.path, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
	}
	if c := fb.called(); c[len(c)-1] != "RemoveMember m2" {
		t.Fatalf("calls %v", c)
	}
	// Refusals of the backend map to their status and code.
	fb.err = cdb.Refuse(cdb.ErrConflict, "a member named m2 is already in the cluster")
	eb := errorBody(t, do(h, "POST", "/v1/members", strings.NewReader(`{"name":"m2"}`)), 409, client.CodeConflict)
	if eb.Message != "a member named m2 is already in the cluster" {
		t.Fatalf("message %q", eb.Message)
	}
	fb.err = cdb.Refuse(cdb.ErrNotFound, "member m9 is not in the cluster")
	errorBody(t, do(h, "DELETE", "/v1/members/m9", nil), 404, client.CodeNotFound)
	fb.err = cdb.Refuse(cdb.ErrNoQuorum, "no quorum")
	errorBody(t, do(h, "GET", "/v1/cdb/backup", nil), 503, client.CodeNoQuorum)
	eb = errorBody(t, do(h, "POST", "/v1/ca/rotate?stage=maybe", nil), 400, client.CodeInvalid)
	if !strings.Contains(eb.Message, `stage="maybe": give stage=1`) {
		t.Fatalf("message %q", eb.Message)
	}
	fb.err = errors.New("disk on fire")
	eb = errorBody(t, do(h, "PUT", "/v1/settings", strings.NewReader(`{"settings":{"a":"b"}}`)), 500, client.CodeInternal)
	if eb.Message != "internal error: disk on fire" {
		t.Fatalf("message %q", eb.Message)
	}
}

func TestRestoreBody(t *testing.T) {
	s, fb := newServer(t)
	st := cdb.NewState()
	st.Cluster = cdb.Cluster{Name: "c1", ID: "id-c1"}
	data, err := cdb.EncodeBackup(st, st.Cluster.Created)
	if err != nil {
		t.Fatal(err)
	}
	w := do(s.Local(), "POST", "/v1/cdb/restore", bytes.NewReader(data))
	if w.Code != 200 || !bytes.Equal(fb.restored, data) {
		t.Fatalf("restore: %d %s; backend got %d of %d bytes", w.Code, w.Body, len(fb.restored), len(data))
	}
	for _, body := range []string{"", "{}", "garbage"} {
		eb := errorBody(t, do(s.Local(), "POST", "/v1/cdb/restore", strings.NewReader(body)), 400, client.CodeInvalid)
		if !strings.Contains(eb.Message, "not a vigil backup") {
			t.Errorf("restore of %q: %q", body, eb.Message)
		}
	}
	// Larger than any backup: refused without reading it all or calling the
	// backend.
	fb.restored = nil
	calls := len(fb.called())
	big := io.LimitReader(zeros{}, MaxRestore+1)
	eb := errorBody(t, do(s.Local(), "POST", "/v1/cdb/restore", big), 400, client.CodeInvalid)
	if !strings.Contains(eb.Message, "larger than") || len(fb.called()) != calls {
		t.Fatalf("oversized restore: %q, calls %v", eb.Message, fb.called())
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestRemoteAuth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hdr   []string
		admin string // the backend's admin token; "" for none
		ok    bool
	}{
		{"no credentials", nil, adminToken, false},
		{"right token", []string{"Authorization", "Bearer " + adminToken}, adminToken, true},
		{"wrong token", []string{"Authorization", "Bearer guess"}, adminToken, false},
		{"token without Bearer", []string{"Authorization", adminToken}, adminToken, false},
		{"basic auth", []string{"Authorization", "Basic " + adminToken}, adminToken, false},
		{"token with a suffix", []string{"Authorization", "Bearer " + adminToken + "x"}, adminToken, false},
		{"empty token, no admin token set", []string{"Authorization", "Bearer "}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, fb := newServer(t)
			fb.adminHash = ""
			if tc.admin != "" {
				fb.adminHash = hashOf(tc.admin)
			}
			h := s.Remote()
			w := do(h, "DELETE", "/v1/members/m2", nil, tc.hdr...)
			if !tc.ok {
				eb := errorBody(t, w, http.StatusForbidden, client.CodeDenied)
				if !strings.Contains(eb.Message, "admin token") || !strings.Contains(eb.Message, "certificate") {
					t.Errorf("message %q does not say which credentials work", eb.Message)
				}
				if c := fb.called(); len(c) != 0 {
					t.Errorf("backend called without credentials: %v", c)
				}
				return
			}
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if want := "admin-token@192.0.2.1:1234 [admin]"; fb.by != want {
				t.Fatalf("caller recorded as %q, want %q", fb.by, want)
			}
		})
	}
}

func TestWho(t *testing.T) {
	if got := Who(context.Background()); got != "unknown" {
		t.Fatalf("Who of a bare context = %q", got)
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{cdb.ErrNoQuorum, 503, client.CodeNoQuorum},
		{cdb.ErrUnreachable, 503, client.CodeUnreachable},
		{cdb.ErrNotLeader, 503, client.CodeUnreachable},
		{context.DeadlineExceeded, 503, client.CodeUnreachable},
		{cdb.ErrNotFound, 404, client.CodeNotFound},
		{cdb.ErrConflict, 409, client.CodeConflict},
		{cdb.ErrInvalid, 400, client.CodeInvalid},
		{cdb.ErrDenied, 403, client.CodeDenied},
		{cdb.ErrRefused, 409, client.CodeRefused},
		{cdb.Refuse(cdb.ErrNoQuorum, "only 1 of 3 votes"), 503, client.CodeNoQuorum},
		{cdb.Refuse(cdb.ErrDenied, "x"), 403, client.CodeDenied},
		{fmt.Errorf("removing: %w", cdb.Refuse(cdb.ErrNotFound, "m9")), 404, client.CodeNotFound},
		{fmt.Errorf("write: %w", context.DeadlineExceeded), 503, client.CodeUnreachable},
		{context.Canceled, 500, client.CodeInternal},
		{errors.New("boom"), 500, client.CodeInternal},
	} {
		status, code := StatusOf(tc.err)
		if status != tc.status || code != tc.code {
			t.Errorf("StatusOf(%v) = %d %s, want %d %s", tc.err, status, code, tc.status, tc.code)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	var r client.LogLevelRequest
	if err := DecodeStrict([]byte(" {\"level\":\"warn\",\"member\":\"m2\"}\n"), &r); err != nil || r.Level != "warn" || r.Member != "m2" {
		t.Fatalf("DecodeStrict: %+v, %v", r, err)
	}
	err := DecodeStrict([]byte(`{"level":"warn"} {}`), &r)
	if !errors.Is(err, cdb.ErrInvalid) {
		t.Fatalf("trailing data: %v, want ErrInvalid", err)
	}
}

// requestTypes are the bodies the API decodes.
func requestTypes() []any {
	return []any{&client.AddMemberRequest{}, &client.Settings{}, &client.LogLevelRequest{}, &client.Alert{}, &client.ExecRequest{},
		&client.TokenCreateRequest{}, &client.AlertTestRequest{}, &client.LockProbeRequest{}, &client.ServiceRequest{}, &client.Toggle{},
		&client.FenceDevice{}}
}

func FuzzDecodeStrict(f *testing.F) {
	for _, ep := range bodyEndpoints {
		f.Add([]byte(ep.good))
		f.Add([]byte(ep.wrongType))
	}
	f.Add([]byte(`{"votes":1,"ttl":3600000000000,"witness":true}`))
	f.Add([]byte(`{}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range requestTypes() {
			err := DecodeStrict(data, v)
			if err != nil {
				if !errors.Is(err, cdb.ErrInvalid) || err.Error() == "" {
					t.Fatalf("DecodeStrict(%T) error %v is not a described ErrInvalid", v, err)
				}
				continue
			}
			if !json.Valid(data) {
				t.Fatalf("DecodeStrict(%T) accepted what is not one JSON value: %q", v, data)
			}
			// What was accepted, re-encoded, is accepted again.
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := DecodeStrict(b, v); err != nil {
				t.Fatalf("re-encoded %T refused: %v", v, err)
			}
		}
	})
}

// fuzzRoutes are the routes FuzzAPIBodies sends bodies to.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/members"}, {"PUT", "/v1/settings"}, {"PUT", "/v1/log-level"}, {"POST", "/v1/cdb/restore"},
	{"DELETE", "/v1/members/m2"}, {"GET", "/v1/status"}, {"PUT", "/v1/alerts/a"}, {"POST", "/v1/exec"}, {"POST", "/v1/tokens"},
	{"POST", "/v1/alerts/test"}, {"PUT", "/v1/maintenance"}, {"POST", "/v1/services/web/relocate"}, {"DELETE", "/v1/tokens/t"},
}

func FuzzAPIBodies(f *testing.F) {
	for i, ep := range bodyEndpoints {
		f.Add(uint8(i), []byte(ep.good))
		f.Add(uint8(i), []byte(ep.wrongType))
	}
	f.Add(uint8(3), []byte(`{"format":"vigil-cdb-backup","version":1}`))
	f.Add(uint8(4), []byte(`x`))
	f.Add(uint8(5), []byte{})
	f.Add(uint8(0), []byte(`{"name":"m2"}}`))
	s, _ := newServer(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		for _, h := range []http.Handler{s.Local(), s.Remote()} {
			w := do(h, rt.method, rt.path, bytes.NewReader(body), "Authorization", "Bearer "+adminToken)
			if w.Code >= 500 || w.Code < 200 || (w.Code >= 300 && w.Code < 400) {
				t.Fatalf("%s %s with %q: status %d: %s", rt.method, rt.path, body, w.Code, w.Body)
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("answer is not JSON: %q", w.Body)
			}
			if w.Code >= 400 {
				var eb client.ErrorBody
				if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Code == "" || eb.Message == "" {
					t.Fatalf("error answer without code or message: %q", w.Body)
				}
			}
		}
	})
}

func (f *fakeBackend) ApplyServices(ctx context.Context, r client.ApplyRequest, by string) (*client.ApplyResult, error) {
	return &client.ApplyResult{}, nil
}
func (f *fakeBackend) Services(ctx context.Context) []client.ServiceInfo { return nil }
func (f *fakeBackend) Service(ctx context.Context, name string) (*client.ServiceDetail, error) {
	return nil, cdb.Refuse(cdb.ErrNotFound, "no service %s", name)
}
func (f *fakeBackend) ServiceAction(ctx context.Context, name, action, to, by string) error {
	f.record("ServiceAction "+name+" "+action, by)
	return nil
}
func (f *fakeBackend) DeleteService(ctx context.Context, name, by string) error           { return nil }
func (f *fakeBackend) Drain(ctx context.Context, member string, on bool, by string) error { return nil }
func (f *fakeBackend) SetMaintenance(ctx context.Context, on bool, by string) error       { return nil }
func (f *fakeBackend) FenceDevices(ctx context.Context) []client.FenceDevice              { return nil }
func (f *fakeBackend) SetFenceDevice(ctx context.Context, d client.FenceDevice, by string) error {
	return nil
}
func (f *fakeBackend) RemoveFenceDevice(ctx context.Context, name, by string) error { return nil }
func (f *fakeBackend) ConfirmFenced(ctx context.Context, member, by string) error   { return nil }
func (f *fakeBackend) ProbeLocks(ctx context.Context, r client.LockProbeRequest) ([]client.LockProbe, error) {
	return []client.LockProbe{{From: "m1", Master: "m1", Workers: 1, Locks: 1}}, nil
}

func (f *fakeBackend) Locks(ctx context.Context) []client.LockTable {
	return []client.LockTable{{Member: "m1", View: 1, Members: []string{"m1"}, Quorum: true}}
}

func (f *fakeBackend) Events(ctx context.Context, fl client.EventFilter) []client.Event {
	f.record("Events", "")
	now := time.Now()
	evs := []client.Event{{Seq: 1, At: now, Kind: client.EventService, Service: "web", Message: "web: ONLINE on m1"},
		{Seq: 2, At: now, Kind: client.EventMember, Member: "m2", Message: "member m2 is DOWN, was UP"}}
	var out []client.Event
	for i := range evs {
		if fl.Match(&evs[i]) {
			out = append(out, evs[i])
		}
	}
	return out
}

func (f *fakeBackend) EventStream(ctx context.Context, fl client.EventFilter, fn func([]client.Event) error) error {
	return fn(f.Events(ctx, fl))
}

func (f *fakeBackend) Alerts(context.Context) []client.Alert {
	return []client.Alert{{Name: "a", Path: "/bin/true"}}
}

func (f *fakeBackend) SetAlert(ctx context.Context, a client.Alert, by string) error {
	f.record("SetAlert "+a.Name, by)
	return f.err
}

func (f *fakeBackend) RemoveAlert(ctx context.Context, name, by string) error {
	f.record("RemoveAlert "+name, by)
	return f.err
}

func (f *fakeBackend) TestAlert(ctx context.Context, name, by string) (*client.Event, error) {
	f.record("TestAlert "+name, by)
	return &client.Event{Kind: client.EventAlert, Alert: name, Test: true, Message: "test"}, f.err
}

func TestEventRoutes(t *testing.T) {
	s, _ := newServer(t)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/events", 200, `"seq": 2`},
		{"/v1/events?kind=member", 200, "m2 is DOWN"},
		{"/v1/events?service=web&after=0&limit=5&since=10m", 200, "ONLINE"},
		{"/v1/events?after=2", 200, "[]"},
		{"/v1/events?kind=nope", 400, `is not an event kind`},
		{"/v1/events?after=-1", 400, "not an event number"},
		{"/v1/events?limit=0", 400, "limit"},
		{"/v1/events?wait=1h", 400, "wait"},
		{"/v1/events?since=yesterday", 400, "neither a time"},
		{"/v1/events?colour=red", 400, `unknown query parameter`},
		{"/v1/events/stream?kind=service", 200, "id: 1\nevent: service\ndata: {"},
	} {
		w := do(s.Local(), "GET", tc.path, nil)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("GET %s: %d %q, want %d with %q", tc.path, w.Code, w.Body.String(), tc.code, tc.want)
		}
	}
}

func TestAlertRoutes(t *testing.T) {
	s, fb := newServer(t)
	if w := do(s.Local(), "PUT", "/v1/alerts/b", strings.NewReader(`{"name":"a","path":"/bin/true"}`)); w.Code != 400 {
		t.Errorf("mismatched name: %d %s", w.Code, w.Body.String())
	}
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/alerts/a", `{"name":"a","path":"/bin/true","kinds":["service"]}`},
		{"DELETE", "/v1/alerts/a", ""},
		{"POST", "/v1/alerts/test", `{"name":"a"}`},
		{"POST", "/v1/alerts/test", ""},
		{"GET", "/v1/alerts", ""},
	} {
		if w := do(s.Local(), tc.method, tc.path, strings.NewReader(tc.body)); w.Code != 200 {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, w.Code, w.Body.String())
		}
	}
	if got := strings.Join(fb.called(), ","); got != "SetAlert a,RemoveAlert a,TestAlert a,TestAlert " {
		t.Errorf("calls %q", got)
	}
}

func (f *fakeBackend) Links(context.Context) []client.LinkReport {
	return []client.LinkReport{{Member: "m1", Links: []client.LinkStat{{From: "m1", To: "m2", Up: true, Sent: 30, RTTMicros: 120}}}}
}

func TestPublicRoutes(t *testing.T) {
	s, fb := newServer(t)
	fb.adminHash = hashOf(adminToken)
	s.Public("GET /ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("page")) }))
	h := s.Remote()
	if w := do(h, "GET", "/ui/app.js", nil); w.Code != 200 || w.Body.String() != "page" {
		t.Errorf("GET /ui/app.js without credentials: %d %s", w.Code, w.Body)
	}
	// Only what was mounted public: the API and other methods still need credentials.
	for _, tc := range []struct{ method, path string }{{"GET", "/v1/status"}, {"POST", "/ui/app.js"}, {"GET", "/uix"}, {"GET", "/metrics"}} {
		if w := do(h, tc.method, tc.path, nil); w.Code != http.StatusForbidden {
			t.Errorf("%s %s without credentials: %d, want 403", tc.method, tc.path, w.Code)
		}
	}
}

func (f *fakeBackend) Exec(ctx context.Context, r client.ExecRequest, by string) ([]client.ExecResult, error) {
	f.record("Exec "+strings.Join(r.Command, " "), by)
	return []client.ExecResult{{Member: "m1", Output: "ok\n"}}, f.err
}

func (f *fakeBackend) Doctor(context.Context) *client.DoctorReport {
	return &client.DoctorReport{Findings: []client.Finding{{Check: "quorum", Result: client.CheckOK, Message: "with quorum"}}, OK: 1}
}

func (f *fakeBackend) APIToken(id, secret string) (string, string, error) {
	switch id + "." + secret {
	case "v1.s":
		return "watcher", client.RoleViewer, nil
	case "o1.s":
		return "ops", client.RoleOperator, nil
	case "a1.s":
		return "boss", client.RoleAdmin, nil
	case "x1.s":
		return "", "", cdb.Refuse(cdb.ErrDenied, "API token old (x1) expired at 2026-01-01T00:00:00Z")
	}
	return "", "", cdb.Refuse(cdb.ErrDenied, "this API token is not valid here")
}

func (f *fakeBackend) Denied(ctx context.Context, who, what, need string) {
	f.record("Denied "+what+" needs "+need, who)
}

func (f *fakeBackend) CreateToken(ctx context.Context, r client.TokenCreateRequest, by string) (*client.TokenCreateResponse, error) {
	f.record("CreateToken "+r.Name, by)
	return &client.TokenCreateResponse{Token: "vigil-api-x.y"}, f.err
}

func (f *fakeBackend) Tokens(context.Context) []client.APIToken { return []client.APIToken{} }

func (f *fakeBackend) RevokeToken(ctx context.Context, id, by string) error {
	f.record("RevokeToken "+id, by)
	return f.err
}

// TestRoles sends requests with tokens of each role: viewers read, operators
// also act on services and members, admins do everything; a refusal names
// the role needed and is audited.
func TestRoles(t *testing.T) {
	for _, tc := range []struct {
		token, method, path, body string
		code                      int
		want                      string
	}{
		{"v1.s", "GET", "/v1/status", "", 200, ""},
		{"v1.s", "GET", "/v1/events", "", 200, ""},
		{"v1.s", "GET", "/v1/whoami", "", 200, `"role": "viewer"`},
		{"v1.s", "POST", "/v1/services/web/relocate", `{"to":"m2"}`, 403, "role viewer may not POST /v1/services/web/relocate: it needs role operator"},
		{"v1.s", "PUT", "/v1/maintenance", `{"on":true}`, 403, "needs role operator"},
		{"v1.s", "GET", "/v1/tokens", "", 403, "needs role admin"},
		{"v1.s", "GET", "/v1/fencing", "", 403, "needs role admin"},
		{"o1.s", "POST", "/v1/services/web/relocate", `{"to":"m2"}`, 200, ""},
		{"o1.s", "PUT", "/v1/members/m1/drain", `{"on":true}`, 200, ""},
		{"o1.s", "PUT", "/v1/settings", `{"settings":{"user.a":"1"}}`, 403, "needs role admin"},
		{"o1.s", "POST", "/v1/exec", `{"all":true,"command":["id"]}`, 403, "needs role admin"},
		{"o1.s", "POST", "/v1/services/apply", `{}`, 403, "needs role admin"},
		{"o1.s", "GET", "/v1/cdb/backup", "", 403, "needs role admin"},
		{"a1.s", "POST", "/v1/tokens", `{"name":"t","role":"viewer"}`, 200, "vigil-api-x.y"},
		{"a1.s", "POST", "/v1/exec", `{"all":true,"command":["id"]}`, 200, ""},
		{"x1.s", "GET", "/v1/status", "", 403, "expired at 2026-01-01"},
		{"zz.s", "GET", "/v1/status", "", 403, "not valid here"},
		{"v1.s", "GET", "/v1/nope", "", 404, "no API route"},
	} {
		s, fb := newServer(t)
		w := do(s.Remote(), tc.method, tc.path, strings.NewReader(tc.body), "Authorization", "Bearer "+client.APITokenPrefix+tc.token)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s %s with %s: %d %s; want %d with %q", tc.method, tc.path, tc.token, w.Code, w.Body, tc.code, tc.want)
		}
		if tc.code == 403 && strings.Contains(tc.want, "needs role") {
			if c := fb.called(); len(c) != 1 || !strings.HasPrefix(c[0], "Denied "+tc.method) {
				t.Errorf("%s %s with %s: the refusal was not audited: %v", tc.method, tc.path, tc.token, c)
			}
		}
	}
	// Who(ctx) names the token and its role for the audit trail.
	s, fb := newServer(t)
	do(s.Remote(), "POST", "/v1/services/web/offline", nil, "Authorization", "Bearer "+client.APITokenPrefix+"o1.s")
	if fb.by != "token:ops@192.0.2.1:1234 [operator]" {
		t.Errorf("audited as %q", fb.by)
	}
}

func (f *fakeBackend) VerifyClient(chain []*x509.Certificate) (*x509.Certificate, error) {
	return chain[0], nil
}

// FuzzEventQuery sends any query to GET /v1/events: a filter or a described
// refusal, never a panic or a 500.
func FuzzEventQuery(f *testing.F) {
	for _, q := range []string{"", "after=3&kind=service", "since=10m&limit=5", "since=2026-12-04T21:00:00Z", "wait=1s&after=1",
		"limit=-1", "kind=%00", "after=99999999999999999999", "since=9999999h", "a=b&a=c"} {
		f.Add(q)
	}
	s, _ := newServer(f)
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/v1/events", nil)
		r.URL.RawQuery = q
		if _, err := EventFilter(r); err != nil && !errors.Is(err, cdb.ErrInvalid) {
			t.Fatalf("query %q: error %v is not a described ErrInvalid", q, err)
		}
		w := httptest.NewRecorder()
		r.URL.RawQuery = strings.ReplaceAll(q, "wait=", "x=") // no long polls in the fuzzer
		s.Local().ServeHTTP(w, r)
		if w.Code != 200 && w.Code != 400 {
			t.Fatalf("query %q: status %d: %s", q, w.Code, w.Body)
		}
	})
}

func (f *fakeBackend) RenewCert(context.Context, string) (*client.CertInfo, error) {
	return &client.CertInfo{}, nil
}

func TestEventFollowersLimit(t *testing.T) {
	s, _ := newServer(t)
	s.followers.Store(MaxEventFollowers)
	for _, path := range []string{"/v1/events/stream", "/v1/events?wait=1s"} {
		w := do(s.Local(), "GET", path, nil)
		if w.Code != 503 || !strings.Contains(w.Body.String(), "already serves 256 event streams") {
			t.Errorf("%s past the limit: %d %s", path, w.Code, w.Body)
		}
	}
	if w := do(s.Local(), "GET", "/v1/events", nil); w.Code != 200 {
		t.Errorf("a plain query is not limited: %d", w.Code)
	}
	if n := s.followers.Load(); n != MaxEventFollowers {
		t.Errorf("followers %d after refusals, want %d", n, MaxEventFollowers)
	}
}

func (f *fakeBackend) RotateKeys(context.Context, string) (*client.KeyringResult, error) {
	return &client.KeyringResult{}, nil
}

func (f *fakeBackend) RotateCA(context.Context, string, bool) (*client.KeyringResult, error) {
	return &client.KeyringResult{}, nil
}

func (f *fakeBackend) CA(context.Context) *client.CAInfo { return &client.CAInfo{} }
