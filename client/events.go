package client

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// The event kinds of the cluster's event log.
const (
	// EventMember: a member's state changed (UP, DOWN, DISCONNECTED,
	// NETPAR), as the director sees it; also joins and removals.
	EventMember = "member"
	// EventQuorum: a member gained or lost quorum.
	EventQuorum = "quorum"
	// EventDirector: a member became the director.
	EventDirector = "director"
	// EventService: a service changed state, owner or epoch.
	EventService = "service"
	// EventMethod: a member carried out an order of the director (start,
	// stop, monitor): every method that ran, its exit code, its duration
	// and the tail of its output.
	EventMethod = "method"
	// EventFence: a fence agent was run, or an operator confirmed a fence.
	EventFence = "fence"
	// EventOperator: an operator command (who, what, from where).
	EventOperator = "operator"
	// EventConfig: a change of the configuration (services, settings,
	// fence devices, alerts, members).
	EventConfig = "config"
	// EventAlert: an alert agent failed, or `vigil alert test` was run.
	EventAlert = "alert"
)

// EventKinds lists every kind, for checks and help texts.
var EventKinds = []string{EventMember, EventQuorum, EventDirector, EventService, EventMethod, EventFence, EventOperator, EventConfig, EventAlert}

// Event is one entry of the cluster's event log.
type Event struct {
	// Seq numbers the events of the cluster in the order they were
	// recorded; it never goes back.
	Seq uint64 `json:"seq"`
	// At is when it happened (the clock of the member that saw it).
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Member  string    `json:"member,omitempty"`
	Service string    `json:"service,omitempty"`
	Epoch   uint64    `json:"epoch,omitempty"`
	// By names who asked, for operator commands and configuration changes:
	// the user or token and the address it came from.
	By string `json:"by,omitempty"`
	// Message says what happened, in words an operator reads.
	Message string `json:"message"`
	// RC is an exit code where one applies (a failed method, fence or
	// alert); nil otherwise.
	RC *int `json:"rc,omitempty"`
	// Steps are the methods an order ran, in order.
	Steps []Step `json:"steps,omitempty"`
	// Alert names the alert agent an alert event is about.
	Alert string `json:"alert,omitempty"`
	// State is a service event's new state (ONLINE, STARTING, ...).
	State string `json:"state,omitempty"`
	// Test marks the event of `vigil alert test`: it goes to the alert
	// named by Alert (to every alert when Alert is empty), whatever kinds
	// the alert selects, and its outcome is recorded either way.
	Test bool `json:"test,omitempty"`
}

// Step is one method run by a member for an order.
type Step struct {
	Resource string `json:"resource"`
	Method   string `json:"method"`
	RC       int    `json:"rc"`
	// DurationMS is how long it ran, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Output is the tail of what it printed.
	Output []string `json:"output,omitempty"`
	// Error says why it failed ("" when it did not).
	Error string `json:"error,omitempty"`
}

// EventFilter selects events. The zero filter selects every event.
type EventFilter struct {
	// After selects events with a larger Seq.
	After uint64
	// Since selects events at or after the time.
	Since   time.Time
	Service string
	Member  string
	Kind    string
	// Limit keeps the newest Limit events (0: the API's default).
	Limit int
	// Wait, with After, makes the call wait up to Wait for an event when
	// none matches yet (a long poll, for following the log).
	Wait time.Duration
}

// Query encodes the filter as URL query parameters.
func (f EventFilter) Query() url.Values {
	q := url.Values{}
	if f.After != 0 {
		q.Set("after", strconv.FormatUint(f.After, 10))
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	for k, v := range map[string]string{"service": f.Service, "member": f.Member, "kind": f.Kind} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Wait != 0 {
		q.Set("wait", f.Wait.String())
	}
	return q
}

// Match reports whether the filter selects e.
func (f EventFilter) Match(e *Event) bool {
	return e.Seq > f.After && (f.Since.IsZero() || !e.At.Before(f.Since)) &&
		(f.Service == "" || e.Service == f.Service) && (f.Member == "" || e.Member == f.Member) &&
		(f.Kind == "" || e.Kind == f.Kind)
}

// Events lists the events the filter selects, oldest first.
func (c *Client) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	var out []Event
	path := "/v1/events"
	if q := f.Query().Encode(); q != "" {
		path += "?" + q
	}
	err := c.do(ctx, "GET", path, nil, &out)
	return out, err
}

// Alert is an alert agent: an executable the director runs for the events
// of the kinds it selects, with the event in VIGIL_ALERT_* environment
// variables (see docs/EVENTS.md).
type Alert struct {
	Name string `json:"name"`
	// Path is the executable, the same on every member.
	Path string `json:"path"`
	// Kinds selects event kinds; empty selects every kind but alert.
	Kinds []string `json:"kinds,omitempty"`
	// Timeout is how long one run may take (a Go duration, default 30s).
	Timeout string `json:"timeout,omitempty"`
	// Recipient is passed as VIGIL_ALERT_RECIPIENT: a file, an address.
	Recipient string `json:"recipient,omitempty"`
}

// AlertTestRequest asks for a test event sent to one alert, or to all.
type AlertTestRequest struct {
	Name string `json:"name,omitempty"`
}

// Alerts lists the alert agents.
func (c *Client) Alerts(ctx context.Context) ([]Alert, error) {
	var out []Alert
	err := c.do(ctx, "GET", "/v1/alerts", nil, &out)
	return out, err
}

// SetAlert adds or replaces an alert agent.
func (c *Client) SetAlert(ctx context.Context, a Alert) error {
	return c.do(ctx, "PUT", "/v1/alerts/"+url.PathEscape(a.Name), a, nil)
}

// RemoveAlert removes an alert agent.
func (c *Client) RemoveAlert(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/alerts/"+url.PathEscape(name), nil, nil)
}

// TestAlert records a test event that the named alert (or every alert,
// with name "") is run for.
func (c *Client) TestAlert(ctx context.Context, name string) (*Event, error) {
	var out Event
	err := c.do(ctx, "POST", "/v1/alerts/test", AlertTestRequest{Name: name}, &out)
	return &out, err
}

// LinkStat is one member's measure of another member on one link, over its
// latest probes (docs/OPERATIONS.md).
type LinkStat struct {
	From string `json:"from"`
	To   string `json:"to"`
	Link int    `json:"link"`
	Addr string `json:"addr"`
	// Up is memberlist's view: the peer is alive on the link.
	Up   bool `json:"up"`
	Sent int  `json:"sent"`
	Lost int  `json:"lost"`
	// RTTMicros is the median round trip of the answered probes, MaxMicros
	// the largest, in microseconds.
	RTTMicros int64     `json:"rtt_us"`
	MaxMicros int64     `json:"max_us"`
	LastAck   time.Time `json:"last_ack,omitzero"`
}

// LinkReport is what one member measures of every link to every other.
type LinkReport struct {
	Member string     `json:"member"`
	Links  []LinkStat `json:"links"`
	// Error says why the member did not answer.
	Error string `json:"error,omitempty"`
}

// Links returns every member's link measures.
func (c *Client) Links(ctx context.Context) ([]LinkReport, error) {
	var out []LinkReport
	err := c.do(ctx, "GET", "/v1/links", nil, &out)
	return out, err
}

// The roles of API callers, least to most (docs/SECURITY.md).
const (
	// RoleViewer reads: status, services, events, metrics, locks, doctor.
	RoleViewer = "viewer"
	// RoleOperator also acts on services and members: online, offline,
	// relocate, clear, drain, maintenance, lock probes.
	RoleOperator = "operator"
	// RoleAdmin does everything: members, services, settings, fencing,
	// alerts, tokens, exec, backups.
	RoleAdmin = "admin"
)

// Roles lists the roles, least to most.
var Roles = []string{RoleViewer, RoleOperator, RoleAdmin}
