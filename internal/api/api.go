// Package api owns vigil's HTTP+JSON API: routes, request decoding with limits,
// authentication of TCP callers, and the one mapping from errors to HTTP
// status codes. It must not hold cluster state or decide anything; it calls a
// Backend (the agent).
package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// Limits on request bodies.
const (
	MaxBody    = 1 << 20
	MaxRestore = cdb.MaxBackupSize
)

// Backend is what the API needs from the agent.
type Backend interface {
	Status(ctx context.Context) *client.Status
	Config(ctx context.Context) *client.Config
	Settings(ctx context.Context) *client.Settings
	AddMember(ctx context.Context, r client.AddMemberRequest, by string) (*client.AddMemberResponse, error)
	RemoveMember(ctx context.Context, name, by string) error
	SetSettings(ctx context.Context, kv map[string]string, by string) (*client.WriteResult, error)
	SetLogLevel(ctx context.Context, r client.LogLevelRequest) ([]client.LogLevelResult, error)
	Backup(ctx context.Context) ([]byte, error)
	Restore(ctx context.Context, data []byte, by string) (*client.RestoreResponse, error)
	// AdminTokenHash is the SHA-256 (hex) of the admin token.
	AdminTokenHash() string
	ApplyServices(ctx context.Context, r client.ApplyRequest, by string) (*client.ApplyResult, error)
	Services(ctx context.Context) []client.ServiceInfo
	Service(ctx context.Context, name string) (*client.ServiceDetail, error)
	ServiceAction(ctx context.Context, name, action, to, by string) error
	DeleteService(ctx context.Context, name, by string) error
	Drain(ctx context.Context, member string, on bool, by string) error
	SetMaintenance(ctx context.Context, on bool, by string) error
	FenceDevices(ctx context.Context) []client.FenceDevice
	SetFenceDevice(ctx context.Context, d client.FenceDevice, by string) error
	RemoveFenceDevice(ctx context.Context, name, by string) error
	ConfirmFenced(ctx context.Context, member, by string) error
	// Locks is what every member knows of the lock manager's locks.
	Locks(ctx context.Context) []client.LockTable
	// ProbeLocks times the lock manager from this member.
	ProbeLocks(ctx context.Context, r client.LockProbeRequest) ([]client.LockProbe, error)
	// Events lists the events f selects; with f.Wait it waits for one.
	Events(ctx context.Context, f client.EventFilter) []client.Event
	// EventStream calls fn with the events f selects and then with each new
	// batch (nil batches keep the stream alive), until ctx ends or fn fails.
	EventStream(ctx context.Context, f client.EventFilter, fn func([]client.Event) error) error
	// Doctor checks the cluster from this member (`vigil doctor`).
	Doctor(ctx context.Context) *client.DoctorReport
	// Exec runs a command on members (`vigil exec`).
	Exec(ctx context.Context, r client.ExecRequest, by string) ([]client.ExecResult, error)
	// Links is every member's measure of its links to the others.
	Links(ctx context.Context) []client.LinkReport
	Alerts(ctx context.Context) []client.Alert
	SetAlert(ctx context.Context, a client.Alert, by string) error
	RemoveAlert(ctx context.Context, name, by string) error
	TestAlert(ctx context.Context, name, by string) (*client.Event, error)
	// APIToken finds an API token by id and secret: its name and role, or
	// why it is refused (revoked, expired).
	APIToken(id, secret string) (name, role string, err error)
	// Denied audits a request refused for its role.
	Denied(ctx context.Context, who, what, need string)
	CreateToken(ctx context.Context, r client.TokenCreateRequest, by string) (*client.TokenCreateResponse, error)
	Tokens(ctx context.Context) []client.APIToken
	RevokeToken(ctx context.Context, idOrName, by string) error
	// RotateKeys rotates the gossip key (`vigil keyring rotate`).
	RotateKeys(ctx context.Context, by string) (*client.KeyringResult, error)
	// RotateCA rotates the cluster CA (`vigil ca rotate [--stage]`).
	RotateCA(ctx context.Context, by string, stage bool) (*client.KeyringResult, error)
	// CA describes the CAs the answering member trusts and a rotation.
	CA(ctx context.Context) *client.CAInfo
	// RenewCert renews the answering member's certificate now.
	RenewCert(ctx context.Context, by string) (*client.CertInfo, error)
	// VerifyClient checks a client certificate chain against the cluster
	// CA and returns its leaf, or says why it is refused.
	VerifyClient(chain []*x509.Certificate) (*x509.Certificate, error)
	// AllowedCert says whether a member certificate (common name, serial
	// in hex) still speaks for a member.
	AllowedCert(cn, serial string) bool
}

// Server serves the API.
type Server struct {
	b   Backend
	log *slog.Logger
	mux *http.ServeMux
	// public is served to TCP callers without credentials: the dashboard's
	// static files, which hold no data (GET only).
	public *http.ServeMux
	// followers counts the event streams and long polls being served.
	followers atomic.Int64
}

// New builds the handler.
func New(b Backend, log *slog.Logger) *Server {
	s := &Server{b: b, log: log, mux: http.NewServeMux(), public: http.NewServeMux()}
	s.mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	s.mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Status(r.Context())) })
	s.mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Status(r.Context()).Members) })
	s.mux.HandleFunc("POST /v1/members", s.addMember)
	s.mux.HandleFunc("DELETE /v1/members/{name}", s.removeMember)
	s.mux.HandleFunc("GET /v1/settings", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Settings(r.Context())) })
	s.mux.HandleFunc("PUT /v1/settings", s.setSettings)
	s.mux.HandleFunc("PUT /v1/log-level", s.setLogLevel)
	s.mux.HandleFunc("GET /v1/cdb", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Config(r.Context())) })
	s.mux.HandleFunc("GET /v1/cdb/backup", s.backup)
	s.mux.HandleFunc("POST /v1/cdb/restore", s.restore)
	s.mux.HandleFunc("POST /v1/services/apply", func(w http.ResponseWriter, r *http.Request) {
		var req client.ApplyRequest
		if !decode(w, r, &req) {
			return
		}
		out, err := s.b.ApplyServices(r.Context(), req, Who(r.Context()))
		reply(w, out, err)
	})
	s.mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Services(r.Context())) })
	s.mux.HandleFunc("GET /v1/services/{name}", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.b.Service(r.Context(), r.PathValue("name"))
		reply(w, out, err)
	})
	s.mux.HandleFunc("POST /v1/services/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		var req client.ServiceRequest
		if r.ContentLength != 0 && !decode(w, r, &req) {
			return
		}
		err := s.b.ServiceAction(r.Context(), r.PathValue("name"), r.PathValue("action"), req.To, Who(r.Context()))
		reply(w, map[string]string{"service": r.PathValue("name"), "action": r.PathValue("action")}, err)
	})
	s.mux.HandleFunc("DELETE /v1/services/{name}", func(w http.ResponseWriter, r *http.Request) {
		err := s.b.DeleteService(r.Context(), r.PathValue("name"), Who(r.Context()))
		reply(w, map[string]string{"deleted": r.PathValue("name")}, err)
	})
	s.mux.HandleFunc("PUT /v1/members/{name}/drain", func(w http.ResponseWriter, r *http.Request) {
		var req client.Toggle
		if !decode(w, r, &req) {
			return
		}
		err := s.b.Drain(r.Context(), r.PathValue("name"), req.On, Who(r.Context()))
		reply(w, map[string]any{"member": r.PathValue("name"), "draining": req.On}, err)
	})
	s.mux.HandleFunc("PUT /v1/maintenance", func(w http.ResponseWriter, r *http.Request) {
		var req client.Toggle
		if !decode(w, r, &req) {
			return
		}
		reply(w, map[string]bool{"maintenance": req.On}, s.b.SetMaintenance(r.Context(), req.On, Who(r.Context())))
	})
	s.mux.HandleFunc("GET /v1/fencing", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.FenceDevices(r.Context())) })
	s.mux.HandleFunc("PUT /v1/fencing/{name}", func(w http.ResponseWriter, r *http.Request) {
		var d client.FenceDevice
		if !decode(w, r, &d) {
			return
		}
		if d.Name != r.PathValue("name") {
			writeError(w, cdb.Refuse(cdb.ErrInvalid, "the body names device %q, the path %q", d.Name, r.PathValue("name")))
			return
		}
		reply(w, map[string]string{"fence_device": d.Name}, s.b.SetFenceDevice(r.Context(), d, Who(r.Context())))
	})
	s.mux.HandleFunc("DELETE /v1/fencing/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"removed": r.PathValue("name")}, s.b.RemoveFenceDevice(r.Context(), r.PathValue("name"), Who(r.Context())))
	})
	s.mux.HandleFunc("POST /v1/members/{name}/fenced", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"fenced": r.PathValue("name")}, s.b.ConfirmFenced(r.Context(), r.PathValue("name"), Who(r.Context())))
	})
	s.mux.HandleFunc("GET /v1/locks", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Locks(r.Context())) })
	s.mux.HandleFunc("POST /v1/locks/probe", func(w http.ResponseWriter, r *http.Request) {
		var req client.LockProbeRequest
		if r.ContentLength != 0 && !decode(w, r, &req) {
			return
		}
		out, err := s.b.ProbeLocks(r.Context(), req)
		reply(w, out, err)
	})
	s.mux.HandleFunc("GET /v1/events", s.events)
	s.mux.HandleFunc("GET /v1/events/stream", s.eventStream)
	s.mux.HandleFunc("POST /v1/keyring/rotate", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.b.RotateKeys(r.Context(), Who(r.Context()))
		reply(w, out, err)
	})
	s.mux.HandleFunc("POST /v1/ca/rotate", func(w http.ResponseWriter, r *http.Request) {
		stage := r.URL.Query().Get("stage")
		if stage != "" && stage != "1" && stage != "true" {
			writeError(w, cdb.Refuse(cdb.ErrInvalid, "stage=%q: give stage=1, or nothing to rotate to the end", stage))
			return
		}
		out, err := s.b.RotateCA(r.Context(), Who(r.Context()), stage != "")
		reply(w, out, err)
	})
	s.mux.HandleFunc("GET /v1/ca", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.CA(r.Context())) })
	s.mux.HandleFunc("POST /v1/cert/renew", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.b.RenewCert(r.Context(), Who(r.Context()))
		reply(w, out, err)
	})
	s.mux.HandleFunc("GET /v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, client.WhoAmI{Who: Who(r.Context()), Role: RoleIn(r.Context())})
	})
	s.mux.HandleFunc("GET /v1/tokens", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Tokens(r.Context())) })
	s.mux.HandleFunc("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req client.TokenCreateRequest
		if !decode(w, r, &req) {
			return
		}
		out, err := s.b.CreateToken(r.Context(), req, Who(r.Context()))
		reply(w, out, err)
	})
	s.mux.HandleFunc("DELETE /v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"revoked": r.PathValue("id")}, s.b.RevokeToken(r.Context(), r.PathValue("id"), Who(r.Context())))
	})
	s.mux.HandleFunc("GET /v1/doctor", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Doctor(r.Context())) })
	s.mux.HandleFunc("POST /v1/exec", func(w http.ResponseWriter, r *http.Request) {
		var req client.ExecRequest
		if !decode(w, r, &req) {
			return
		}
		out, err := s.b.Exec(r.Context(), req, Who(r.Context()))
		reply(w, out, err)
	})
	s.mux.HandleFunc("GET /v1/links", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Links(r.Context())) })
	s.mux.HandleFunc("GET /v1/alerts", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Alerts(r.Context())) })
	s.mux.HandleFunc("PUT /v1/alerts/{name}", func(w http.ResponseWriter, r *http.Request) {
		var al client.Alert
		if !decode(w, r, &al) {
			return
		}
		if al.Name != r.PathValue("name") {
			writeError(w, cdb.Refuse(cdb.ErrInvalid, "the body names alert %q, the path %q", al.Name, r.PathValue("name")))
			return
		}
		reply(w, map[string]string{"alert": al.Name}, s.b.SetAlert(r.Context(), al, Who(r.Context())))
	})
	s.mux.HandleFunc("DELETE /v1/alerts/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"removed": r.PathValue("name")}, s.b.RemoveAlert(r.Context(), r.PathValue("name"), Who(r.Context())))
	})
	s.mux.HandleFunc("POST /v1/alerts/test", func(w http.ResponseWriter, r *http.Request) {
		var req client.AlertTestRequest
		if r.ContentLength != 0 && !decode(w, r, &req) {
			return
		}
		out, err := s.b.TestAlert(r.Context(), req.Name, Who(r.Context()))
		reply(w, out, err)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, cdb.Refuse(cdb.ErrNotFound, "no API route %s %s: see docs/API.md for the routes", r.Method, r.URL.Path))
	})
	return s
}

// Handle mounts another handler (the metrics, the dashboard) behind the same
// authentication as the API's routes.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Public mounts a handler that TCP callers reach without credentials: only
// for files that hold no data (the dashboard's page and script).
func (s *Server) Public(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.public.Handle(pattern, h)
}

type ctxKey struct{}

// Who names the caller of a request, for the audit trail.
func Who(ctx context.Context) string {
	if s, ok := ctx.Value(ctxKey{}).(string); ok {
		return s
	}
	return "unknown"
}

// Local serves callers on the root-only Unix socket: they are admins.
func (s *Server) Local() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, caller{who: "root@socket", role: client.RoleAdmin})
	})
}

// Remote serves TCP callers: each must show a certificate of the cluster CA
// (an admin: it speaks for a member), the admin token, or an API token,
// whose role decides what it may do.
func (s *Server) Remote() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := s.public.Handler(r); pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		c, err := s.identify(r)
		if err != nil {
			s.log.Warn("refused API call", "from", r.RemoteAddr, "path", r.URL.Path, "why", err)
			writeError(w, err)
			return
		}
		c.who += "@" + r.RemoteAddr
		s.serve(w, r, c)
	})
}

// caller is who makes a request, and the role it has.
type caller struct{ who, role string }

// identify finds the caller of a TCP request.
func (s *Server) identify(r *http.Request) (caller, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		leaf, err := s.b.VerifyClient(r.TLS.PeerCertificates)
		if err != nil {
			return caller{}, cdb.Refuse(cdb.ErrDenied, "%v", err)
		}
		if s.b.AllowedCert(leaf.Subject.CommonName, pki.Serial(leaf.SerialNumber)) {
			return caller{who: "member:" + leaf.Subject.CommonName, role: client.RoleAdmin}, nil
		}
		return caller{}, cdb.Refuse(cdb.ErrDenied, "the certificate of %s no longer speaks for a member of this cluster (removed, or replaced): use a current member's data dir or an API token", leaf.Subject.CommonName)
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return caller{}, cdb.Refuse(cdb.ErrDenied, "this API needs a client certificate of the cluster CA, the admin token or an API token (Authorization: Bearer …); the vigil CLI finds the first two in --data-dir, or takes --token")
	}
	if id, secret, ok := strings.Cut(strings.TrimPrefix(tok, client.APITokenPrefix), "."); ok && strings.HasPrefix(tok, client.APITokenPrefix) {
		name, role, err := s.b.APIToken(id, secret)
		if err != nil {
			return caller{}, err
		}
		return caller{who: "token:" + name, role: role}, nil
	}
	sum := sha256.Sum256([]byte(tok))
	if want := s.b.AdminTokenHash(); want != "" && subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(want)) == 1 {
		return caller{who: "admin-token", role: client.RoleAdmin}, nil
	}
	return caller{}, cdb.Refuse(cdb.ErrDenied, "this token is not valid here (mistyped, revoked, or of another cluster): the API takes a client certificate of the cluster CA, the admin token, or an API token; ask an admin for one (`vigil token create`)")
}

// serve checks the caller's role against the route's and serves it; a
// refusal is audited.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, c caller) {
	_, pattern := s.mux.Handler(r)
	need := RoleOf(pattern)
	if rank(c.role) < rank(need) {
		what := r.Method + " " + r.URL.Path
		s.log.Warn("refused API call: role too low", "who", c.who, "role", c.role, "call", what, "needs", need)
		s.b.Denied(r.Context(), c.who+" ["+c.role+"]", what, need)
		writeError(w, cdb.Refuse(cdb.ErrDenied, "role %s may not %s: it needs role %s; ask an admin for a token with `vigil token create --role %s`", c.role, what, need, need))
		return
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, c.who+" ["+c.role+"]")
	ctx = context.WithValue(ctx, roleKey{}, c.role)
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

type roleKey struct{}

// RoleIn is the caller's role (admin when unknown: in-process callers).
func RoleIn(ctx context.Context) string {
	if r, ok := ctx.Value(roleKey{}).(string); ok {
		return r
	}
	return client.RoleAdmin
}

func rank(role string) int { return slices.Index(client.Roles, role) }

// routeRoles are the roles below admin that may use a route; every other
// route (writes, secrets) needs admin.
var routeRoles = map[string]string{
	"GET /v1/health": client.RoleViewer, "GET /v1/status": client.RoleViewer, "GET /v1/members": client.RoleViewer,
	"GET /v1/settings": client.RoleViewer, "GET /v1/cdb": client.RoleViewer, "GET /v1/services": client.RoleViewer,
	"GET /v1/services/{name}": client.RoleViewer, "GET /v1/locks": client.RoleViewer, "GET /v1/events": client.RoleViewer,
	"GET /v1/events/stream": client.RoleViewer, "GET /v1/alerts": client.RoleViewer, "GET /v1/links": client.RoleViewer,
	"GET /metrics": client.RoleViewer, "GET /v1/whoami": client.RoleViewer, "GET /v1/ca": client.RoleViewer,

	"POST /v1/services/{name}/{action}": client.RoleOperator, "PUT /v1/members/{name}/drain": client.RoleOperator,
	"PUT /v1/maintenance": client.RoleOperator, "POST /v1/locks/probe": client.RoleOperator,
	"POST /v1/alerts/test": client.RoleOperator, "GET /v1/doctor": client.RoleOperator,
	// The catch-all answers "no such route" to anyone.
	"/": client.RoleViewer,
}

// RoleOf is the least role a route needs.
func RoleOf(pattern string) string {
	if r, ok := routeRoles[pattern]; ok {
		return r
	}
	return client.RoleAdmin
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request) {
	var req client.AddMemberRequest
	if !decode(w, r, &req) {
		return
	}
	out, err := s.b.AddMember(r.Context(), req, Who(r.Context()))
	reply(w, out, err)
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) {
	err := s.b.RemoveMember(r.Context(), r.PathValue("name"), Who(r.Context()))
	reply(w, map[string]string{"removed": r.PathValue("name")}, err)
}

func (s *Server) setSettings(w http.ResponseWriter, r *http.Request) {
	var req client.Settings
	if !decode(w, r, &req) {
		return
	}
	if len(req.Settings) == 0 {
		writeError(w, cdb.Refuse(cdb.ErrInvalid, "no settings given: send {\"settings\": {\"KEY\": \"VALUE\"}}"))
		return
	}
	out, err := s.b.SetSettings(r.Context(), req.Settings, Who(r.Context()))
	reply(w, out, err)
}

func (s *Server) setLogLevel(w http.ResponseWriter, r *http.Request) {
	var req client.LogLevelRequest
	if !decode(w, r, &req) {
		return
	}
	out, err := s.b.SetLogLevel(r.Context(), req)
	reply(w, out, err)
}

func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	b, err := s.b.Backup(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxRestore+1))
	if err != nil {
		writeError(w, cdb.Refuse(cdb.ErrInvalid, "reading the backup: %v", err))
		return
	}
	if len(data) > MaxRestore {
		writeError(w, cdb.Refuse(cdb.ErrInvalid, "backup is larger than %d bytes: this is not a vigil backup", MaxRestore))
		return
	}
	out, err := s.b.Restore(r.Context(), data, Who(r.Context()))
	reply(w, out, err)
}

// decode reads a JSON body strictly, within MaxBody; on failure it has
// already answered.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		writeError(w, cdb.Refuse(cdb.ErrInvalid, "reading the request body: %v", err))
		return false
	}
	if len(data) > MaxBody {
		writeError(w, cdb.Refuse(cdb.ErrInvalid, "request body is larger than %d bytes", MaxBody))
		return false
	}
	if err := DecodeStrict(data, v); err != nil {
		writeError(w, err)
		return false
	}
	return true
}

// DecodeStrict decodes one JSON value, refusing unknown fields and trailing
// data, with an error that names the problem.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return cdb.Refuse(cdb.ErrInvalid, "request body is empty: send a JSON object")
		}
		return cdb.Refuse(cdb.ErrInvalid, "request body is not valid: %v", err)
	}
	if rest := bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return cdb.Refuse(cdb.ErrInvalid, "request body has data after the JSON object")
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, v)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// StatusOf is the one mapping from errors to HTTP status and API code.
func StatusOf(err error) (int, string) {
	switch {
	case errors.Is(err, cdb.ErrNoQuorum):
		return http.StatusServiceUnavailable, client.CodeNoQuorum
	case errors.Is(err, cdb.ErrUnreachable), errors.Is(err, cdb.ErrNotLeader), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, client.CodeUnreachable
	case errors.Is(err, cdb.ErrNotFound):
		return http.StatusNotFound, client.CodeNotFound
	case errors.Is(err, cdb.ErrConflict):
		return http.StatusConflict, client.CodeConflict
	case errors.Is(err, cdb.ErrInvalid):
		return http.StatusBadRequest, client.CodeInvalid
	case errors.Is(err, cdb.ErrDenied):
		return http.StatusForbidden, client.CodeDenied
	case errors.Is(err, cdb.ErrRefused):
		return http.StatusConflict, client.CodeRefused
	}
	return http.StatusInternalServerError, client.CodeInternal
}

func writeError(w http.ResponseWriter, err error) {
	code, name := StatusOf(err)
	msg := err.Error()
	if name == client.CodeInternal {
		msg = fmt.Sprintf("internal error: %v", err)
	}
	writeJSON(w, code, client.ErrorBody{Code: name, Message: msg})
}
