package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Error codes an API error carries; the CLI maps them to exit codes.
const (
	CodeNoQuorum    = "no_quorum"
	CodeUnreachable = "unreachable"
	CodeNotFound    = "not_found"
	CodeConflict    = "conflict"
	CodeInvalid     = "invalid"
	CodeDenied      = "denied"
	CodeRefused     = "refused"
	CodeInternal    = "internal"
)

// Error is an error answered by the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// ErrUnreachable wraps failures to reach the agent at all.
var ErrUnreachable = errors.New("agent not reachable")

// Client talks to one agent.
type Client struct {
	base  string
	http  *http.Client
	token string
	// Where describes the agent for messages.
	Where string
}

// Options say how to reach an agent: a Unix socket, or an HTTPS address with
// a client certificate and/or a token.
type Options struct {
	Socket  string
	Address string
	TLS     *tls.Config
	Token   string
	Timeout time.Duration
}

// New returns a client.
func New(o Options) *Client {
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	tr := &http.Transport{TLSClientConfig: o.TLS, MaxIdleConnsPerHost: 4, ResponseHeaderTimeout: o.Timeout}
	c := &Client{http: &http.Client{Transport: tr, Timeout: o.Timeout}, token: o.Token}
	if o.Socket != "" {
		sock := o.Socket
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		c.base, c.Where = "http://vigil", sock
	} else {
		c.base, c.Where = "https://"+o.Address, o.Address
	}
	return c
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if b, ok := in.([]byte); ok {
		body = bytes.NewReader(b)
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	var ua x509.UnknownAuthorityError
	if err != nil && errors.As(err, &ua) {
		return fmt.Errorf("%w: the vigil agent at %s shows a certificate the CA given (--ca) did not sign: if the cluster's CA was rotated, get the new one (vigil ca show --pem, on a member) (%v)", ErrUnreachable, c.Where, unwrapURL(err))
	}
	if err != nil {
		return fmt.Errorf("%w: cannot reach the vigil agent at %s: %v (is `vigil agent` running? pick another member with --api)", ErrUnreachable, c.Where, unwrapURL(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%w: reading the answer of %s: %v", ErrUnreachable, c.Where, err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Message == "" {
			eb = ErrorBody{Code: CodeInternal, Message: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))}
		}
		return &Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Message}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("answer of %s does not decode: %v", c.Where, err)
		}
	}
	return nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Status returns the cluster summary and members.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// AddMember records a new member and returns its join token.
func (c *Client) AddMember(ctx context.Context, r AddMemberRequest) (*AddMemberResponse, error) {
	var out AddMemberResponse
	return &out, c.do(ctx, "POST", "/v1/members", r, &out)
}

// RemoveMember removes a member from the cluster.
func (c *Client) RemoveMember(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/members/"+url.PathEscape(name), nil, nil)
}

// Settings returns the cluster settings.
func (c *Client) Settings(ctx context.Context) (*Settings, error) {
	var s Settings
	return &s, c.do(ctx, "GET", "/v1/settings", nil, &s)
}

// SetSettings changes settings; an empty value removes a key.
func (c *Client) SetSettings(ctx context.Context, kv map[string]string) (*WriteResult, error) {
	var r WriteResult
	return &r, c.do(ctx, "PUT", "/v1/settings", Settings{Settings: kv}, &r)
}

// SetLogLevel changes log levels.
func (c *Client) SetLogLevel(ctx context.Context, r LogLevelRequest) ([]LogLevelResult, error) {
	var out []LogLevelResult
	return out, c.do(ctx, "PUT", "/v1/log-level", r, &out)
}

// Config returns the cluster database as configuration.
func (c *Client) Config(ctx context.Context) (*Config, error) {
	var cfg Config
	return &cfg, c.do(ctx, "GET", "/v1/cdb", nil, &cfg)
}

// Backup returns a backup file of the cluster database.
func (c *Client) Backup(ctx context.Context) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, "GET", "/v1/cdb/backup", nil, &b)
}

// Restore restores a backup file.
func (c *Client) Restore(ctx context.Context, data []byte) (*RestoreResponse, error) {
	var r RestoreResponse
	return &r, c.do(ctx, "POST", "/v1/cdb/restore", data, &r)
}

// Apply applies (or with DryRun previews) service definitions.
func (c *Client) Apply(ctx context.Context, r ApplyRequest) (*ApplyResult, error) {
	var out ApplyResult
	return &out, c.do(ctx, "POST", "/v1/services/apply", r, &out)
}

// Services lists the services.
func (c *Client) Services(ctx context.Context) ([]ServiceInfo, error) {
	var out []ServiceInfo
	return out, c.do(ctx, "GET", "/v1/services", nil, &out)
}

// Service shows one service with its explanation.
func (c *Client) Service(ctx context.Context, name string) (*ServiceDetail, error) {
	var out ServiceDetail
	return &out, c.do(ctx, "GET", "/v1/services/"+url.PathEscape(name), nil, &out)
}

// ServiceAction asks for online, offline, clear or relocate (with to).
func (c *Client) ServiceAction(ctx context.Context, name, action, to string) error {
	return c.do(ctx, "POST", "/v1/services/"+url.PathEscape(name)+"/"+action, ServiceRequest{To: to}, nil)
}

// DeleteService stops a service and deletes it.
func (c *Client) DeleteService(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/services/"+url.PathEscape(name), nil, nil)
}

// Drain moves services away from a member (on) or lets it host again (off).
func (c *Client) Drain(ctx context.Context, member string, on bool) error {
	return c.do(ctx, "PUT", "/v1/members/"+url.PathEscape(member)+"/drain", Toggle{On: on}, nil)
}

// Maintenance turns maintenance mode on or off.
func (c *Client) Maintenance(ctx context.Context, on bool) error {
	return c.do(ctx, "PUT", "/v1/maintenance", Toggle{On: on}, nil)
}

// FenceDevices lists the fence devices.
func (c *Client) FenceDevices(ctx context.Context) ([]FenceDevice, error) {
	var out []FenceDevice
	return out, c.do(ctx, "GET", "/v1/fencing", nil, &out)
}

// SetFenceDevice adds or replaces a fence device.
func (c *Client) SetFenceDevice(ctx context.Context, d FenceDevice) error {
	return c.do(ctx, "PUT", "/v1/fencing/"+url.PathEscape(d.Name), d, nil)
}

// ConfirmFenced records that a DOWN member is off, checked by hand.
func (c *Client) ConfirmFenced(ctx context.Context, member string) error {
	return c.do(ctx, "POST", "/v1/members/"+url.PathEscape(member)+"/fenced", nil, nil)
}

// RemoveFenceDevice removes a fence device.
func (c *Client) RemoveFenceDevice(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/fencing/"+url.PathEscape(name), nil, nil)
}
