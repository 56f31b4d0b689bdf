package client

import "context"

// LockTable is what one member knows of the locks.
type LockTable struct {
	Member     string     `json:"member"`
	View       uint64     `json:"view"`
	Members    []string   `json:"members"` // the view's members
	Recovering bool       `json:"recovering"`
	Quorum     bool       `json:"quorum"`
	Out        bool       `json:"out"`             // the member is not in the view
	Error      string     `json:"error,omitempty"` // the member could not be asked
	Mastered   []LockInfo `json:"mastered"`        // locks on the resources this member masters, each resource's queues in order
	Held       []LockInfo `json:"held"`            // the locks of this member's clients
}

// LockInfo is one lock.
type LockInfo struct {
	Lock      string   `json:"lock"` // "m1#12"
	Lockspace string   `json:"lockspace"`
	Resource  []string `json:"resource"` // root first
	Parent    string   `json:"parent,omitempty"`
	Owner     string   `json:"owner"`               // "m1/3": member/client session
	Queue     string   `json:"queue"`               // granted, converting, waiting, or "" (not confirmed yet)
	Granted   string   `json:"granted,omitempty"`   // mode
	Requested string   `json:"requested,omitempty"` // mode
	Flags     string   `json:"flags,omitempty"`
	Token     uint64   `json:"token,omitempty"`
	Master    string   `json:"master,omitempty"`
	Pending   int      `json:"pending,omitempty"`
}

// Locks returns what every member knows of the lock manager's locks:
// holders, waiters and masters (GET /v1/locks).
func (c *Client) Locks(ctx context.Context) ([]LockTable, error) {
	var out []LockTable
	if err := c.do(ctx, "GET", "/v1/locks", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// LockProbeRequest asks the member that answers to time the lock manager
// from there (POST /v1/locks/probe): Workers sessions in the agent's own
// process each take and release N EX locks, one at a time, on resources of
// lockspace "fixed.vigil-probe" mastered by each of Masters in turn (empty:
// every member of the view). With Handoff the resources are those each
// master is the hash master of, in lockspace "vigil-probe", whose roots
// move to where they are used: after a first lock they are mastered by
// the probing member (what an application that locks names of its own
// sees).
type LockProbeRequest struct {
	Masters []string `json:"masters,omitempty"`
	N       int      `json:"n,omitempty"`       // locks per worker and master; 0: 2000
	Workers int      `json:"workers,omitempty"` // 0: 1
	Handoff bool     `json:"handoff,omitempty"`
}

// Limits of a LockProbeRequest.
const (
	MaxProbeLocks   = 100_000
	MaxProbeWorkers = 64
)

// LockProbe is the timing of the locks mastered by one member, taken from
// the member that ran the probe: the latency of Lock (until the grant) and
// the lock+unlock pairs per second of all workers together.
type LockProbe struct {
	From        string  `json:"from"`
	Master      string  `json:"master"`
	Workers     int     `json:"workers"`
	Locks       int     `json:"locks"`
	P50US       float64 `json:"p50_us"`
	P90US       float64 `json:"p90_us"`
	P99US       float64 `json:"p99_us"`
	PairsPerSec float64 `json:"pairs_per_sec"`
	Handoff     bool    `json:"handoff,omitempty"` // resources handed to the probing member
	Error       string  `json:"error,omitempty"`
}

// ProbeLocks times the lock manager from the member that answers.
func (c *Client) ProbeLocks(ctx context.Context, r LockProbeRequest) ([]LockProbe, error) {
	var out []LockProbe
	if err := c.do(ctx, "POST", "/v1/locks/probe", r, &out); err != nil {
		return nil, err
	}
	return out, nil
}
