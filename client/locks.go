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
