package client_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/api"
	"github.com/vigil-cluster/vigil/internal/cdb"
)

const token = "tok-0123456789"

// backend answers from fixed data and records what it was sent.
type backend struct {
	mu       sync.Mutex
	removed  string // guarded by mu
	restored []byte // guarded by mu
	settings map[string]string
	err      error
}

func (b *backend) Status(context.Context) *client.Status {
	return &client.Status{Cluster: "c1", QuorumNeeded: 2, Members: []client.Member{{Name: "m1", ID: 1}}}
}
func (b *backend) Config(context.Context) *client.Config {
	return &client.Config{Cluster: client.ClusterInfo{Name: "c1"}, Index: 3}
}
func (b *backend) Settings(context.Context) *client.Settings {
	return &client.Settings{Settings: map[string]string{"description": "d"}}
}
func (b *backend) AddMember(_ context.Context, r client.AddMemberRequest, _ string) (*client.AddMemberResponse, error) {
	if b.err != nil {
		return nil, b.err
	}
	return &client.AddMemberResponse{Token: "vigil-join-" + r.Name}, nil
}
func (b *backend) RemoveMember(_ context.Context, name, _ string) error {
	b.mu.Lock()
	b.removed = name
	b.mu.Unlock()
	return b.err
}
func (b *backend) SetSettings(_ context.Context, kv map[string]string, _ string) (*client.WriteResult, error) {
	b.mu.Lock()
	b.settings = kv
	b.mu.Unlock()
	return &client.WriteResult{Index: 5}, b.err
}
func (b *backend) SetLogLevel(_ context.Context, r client.LogLevelRequest) ([]client.LogLevelResult, error) {
	return []client.LogLevelResult{{Member: "m1"}, {Member: "m2", Error: "unreachable"}}, b.err
}
func (b *backend) Backup(context.Context) ([]byte, error) { return []byte("{\"backup\": 1}\n"), b.err }
func (b *backend) Restore(_ context.Context, data []byte, _ string) (*client.RestoreResponse, error) {
	b.mu.Lock()
	b.restored = data
	b.mu.Unlock()
	return &client.RestoreResponse{Index: 8}, b.err
}
func (b *backend) AllowedCert(cn, serial string) bool { return true }

func (b *backend) AdminTokenHash() string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// sent returns what the backend was sent.
func (b *backend) sent() (removed string, restored []byte, settings map[string]string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.removed, b.restored, b.settings
}

// serveSocket serves the API's Local handler on a Unix socket.
func serveSocket(t *testing.T, b api.Backend) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api.New(b, slog.New(slog.NewTextHandler(io.Discard, nil))).Local()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestClientOverSocket(t *testing.T) {
	b := &backend{}
	c := client.New(client.Options{Socket: serveSocket(t, b), Timeout: 10 * time.Second})
	defer c.Close()
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.Cluster != "c1" || len(st.Members) != 1 || st.QuorumNeeded != 2 {
		t.Fatalf("Status: %+v, %v", st, err)
	}
	add, err := c.AddMember(ctx, client.AddMemberRequest{Name: "m2", Address: "198.18.0.2:7000"})
	if err != nil || add.Token != "vigil-join-m2" {
		t.Fatalf("AddMember: %+v, %v", add, err)
	}
	// A name that is not a path segment still reaches the backend whole.
	if err := c.RemoveMember(ctx, "a/b c"); err != nil {
		t.Fatal(err)
	}
	if removed, _, _ := b.sent(); removed != "a/b c" {
		t.Fatalf("backend asked to remove %q", removed)
	}
	wr, err := c.SetSettings(ctx, map[string]string{"user.a": "1", "user.b": ""})
	_, _, settings := b.sent()
	if err != nil || wr.Index != 5 || settings["user.a"] != "1" {
		t.Fatalf("SetSettings: %+v, %v, backend got %v", wr, err, settings)
	}
	if v, ok := settings["user.b"]; !ok || v != "" {
		t.Fatalf("an empty value (unset) was not sent: %v", settings)
	}
	if s, err := c.Settings(ctx); err != nil || s.Settings["description"] != "d" {
		t.Fatalf("Settings: %+v, %v", s, err)
	}
	ll, err := c.SetLogLevel(ctx, client.LogLevelRequest{Level: "debug", All: true})
	if err != nil || len(ll) != 2 || ll[1].Error != "unreachable" {
		t.Fatalf("SetLogLevel: %+v, %v", ll, err)
	}
	if cfg, err := c.Config(ctx); err != nil || cfg.Index != 3 {
		t.Fatalf("Config: %+v, %v", cfg, err)
	}
	data, err := c.Backup(ctx)
	if err != nil || string(data) != "{\"backup\": 1}\n" {
		t.Fatalf("Backup: %q, %v", data, err)
	}
	// Restore sends the file as it is, not re-encoded.
	file := []byte("not json at all \x00\xff")
	r, err := c.Restore(ctx, file)
	if _, restored, _ := b.sent(); err != nil || r.Index != 8 || string(restored) != string(file) {
		t.Fatalf("Restore: %+v, %v; backend got %q", r, err, restored)
	}
}

func TestClientErrors(t *testing.T) {
	b := &backend{err: cdb.Refuse(cdb.ErrConflict, "a member named m2 is already in the cluster")}
	c := client.New(client.Options{Socket: serveSocket(t, b)})
	defer c.Close()
	ctx := context.Background()
	_, err := c.AddMember(ctx, client.AddMemberRequest{Name: "m2"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 409 || ce.Code != client.CodeConflict || ce.Message != "a member named m2 is already in the cluster" {
		t.Fatalf("AddMember error: %#v", err)
	}
	if err.Error() != ce.Message {
		t.Fatalf("Error() = %q, want the message alone", err)
	}
	c2 := client.New(client.Options{Socket: serveSocket(t, &backend{err: cdb.Refuse(cdb.ErrNoQuorum, "no quorum: 1 of 3 votes")})})
	defer c2.Close()
	if err := c2.RemoveMember(ctx, "m3"); !errors.As(err, &ce) || ce.Code != client.CodeNoQuorum || ce.Status != 503 {
		t.Fatalf("RemoveMember error: %#v", err)
	}

	// No agent at all.
	dead := client.New(client.Options{Socket: filepath.Join(t.TempDir(), "none.sock")})
	defer dead.Close()
	_, err = dead.Status(ctx)
	if !errors.Is(err, client.ErrUnreachable) || !strings.Contains(err.Error(), "vigil agent") || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("Status of a missing agent: %v", err)
	}
}

func TestClientNonJSONError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway from a proxy", http.StatusBadGateway)
	}))
	defer srv.Close()
	sock := filepath.Join(t.TempDir(), "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Config.Handler}
	go hs.Serve(ln)
	defer hs.Close()
	c := client.New(client.Options{Socket: sock})
	defer c.Close()
	_, err = c.Status(context.Background())
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 502 || ce.Code != client.CodeInternal || !strings.Contains(ce.Message, "bad gateway from a proxy") {
		t.Fatalf("error from a non-JSON answer: %#v", err)
	}
}

func TestClientTLSToken(t *testing.T) {
	b := &backend{}
	srv := httptest.NewTLSServer(api.New(b, slog.New(slog.NewTextHandler(io.Discard, nil))).Remote())
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tc := &tls.Config{RootCAs: pool}
	addr := srv.Listener.Addr().String()
	ctx := context.Background()

	c := client.New(client.Options{Address: addr, TLS: tc, Token: token})
	defer c.Close()
	if st, err := c.Status(ctx); err != nil || st.Cluster != "c1" {
		t.Fatalf("Status with the admin token: %+v, %v", st, err)
	}
	for _, tok := range []string{"", "wrong"} {
		c := client.New(client.Options{Address: addr, TLS: tc, Token: tok})
		_, err := c.Status(ctx)
		c.Close()
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 403 || ce.Code != client.CodeDenied {
			t.Fatalf("Status with token %q: %#v", tok, err)
		}
	}
}

func (b *backend) ApplyServices(ctx context.Context, r client.ApplyRequest, by string) (*client.ApplyResult, error) {
	return &client.ApplyResult{}, nil
}
func (b *backend) Services(ctx context.Context) []client.ServiceInfo { return nil }
func (b *backend) Service(ctx context.Context, name string) (*client.ServiceDetail, error) {
	return nil, cdb.Refuse(cdb.ErrNotFound, "no service %s", name)
}
func (b *backend) ServiceAction(ctx context.Context, name, action, to, by string) error { return nil }
func (b *backend) DeleteService(ctx context.Context, name, by string) error             { return nil }
func (b *backend) Drain(ctx context.Context, member string, on bool, by string) error   { return nil }
func (b *backend) SetMaintenance(ctx context.Context, on bool, by string) error         { return nil }
func (b *backend) FenceDevices(ctx context.Context) []client.FenceDevice                { return nil }
func (b *backend) SetFenceDevice(ctx context.Context, d client.FenceDevice, by string) error {
	return nil
}
func (b *backend) RemoveFenceDevice(ctx context.Context, name, by string) error { return nil }
func (b *backend) ConfirmFenced(ctx context.Context, member, by string) error   { return nil }
func (b *backend) ProbeLocks(ctx context.Context, r client.LockProbeRequest) ([]client.LockProbe, error) {
	return []client.LockProbe{{From: "m1", Master: "m1", Workers: 1, Locks: 1}}, nil
}

func (b *backend) Locks(ctx context.Context) []client.LockTable {
	return []client.LockTable{{Member: "m1", View: 1, Members: []string{"m1"}, Quorum: true, Mastered: []client.LockInfo{}, Held: []client.LockInfo{}}}
}

func (b *backend) Events(ctx context.Context, f client.EventFilter) []client.Event {
	return []client.Event{{Seq: 1, Kind: client.EventService, Service: "web", Message: "web: ONLINE on m1"}}
}

func (b *backend) EventStream(ctx context.Context, f client.EventFilter, fn func([]client.Event) error) error {
	return fn(b.Events(ctx, f))
}

func (b *backend) Alerts(context.Context) []client.Alert { return []client.Alert{} }

func (b *backend) SetAlert(context.Context, client.Alert, string) error { return nil }

func (b *backend) RemoveAlert(context.Context, string, string) error { return nil }

func (b *backend) TestAlert(context.Context, string, string) (*client.Event, error) {
	return &client.Event{Kind: client.EventAlert, Test: true, Message: "test"}, nil
}

func (b *backend) Links(context.Context) []client.LinkReport { return []client.LinkReport{} }

func (b *backend) Exec(context.Context, client.ExecRequest, string) ([]client.ExecResult, error) {
	return []client.ExecResult{}, nil
}

func (b *backend) Doctor(context.Context) *client.DoctorReport {
	return &client.DoctorReport{Findings: []client.Finding{{Check: "quorum", Result: client.CheckOK, Message: "with quorum"}}, OK: 1}
}

func (b *backend) APIToken(id, secret string) (string, string, error) {
	return "", "", errors.New("no")
}

func (b *backend) Denied(context.Context, string, string, string) {}

func (b *backend) CreateToken(context.Context, client.TokenCreateRequest, string) (*client.TokenCreateResponse, error) {
	return &client.TokenCreateResponse{}, nil
}

func (b *backend) Tokens(context.Context) []client.APIToken { return []client.APIToken{} }

func (b *backend) RevokeToken(context.Context, string, string) error { return nil }

func (b *backend) VerifyClient(chain []*x509.Certificate) (*x509.Certificate, error) {
	return chain[0], nil
}

func (b *backend) RenewCert(context.Context, string) (*client.CertInfo, error) {
	return &client.CertInfo{}, nil
}

func (b *backend) RotateKeys(context.Context, string) (*client.KeyringResult, error) {
	return &client.KeyringResult{}, nil
}

func (b *backend) RotateCA(context.Context, string, bool) (*client.KeyringResult, error) {
	return &client.KeyringResult{}, nil
}

func (b *backend) CA(context.Context) *client.CAInfo { return &client.CAInfo{} }
