package client

import (
	"context"
	"time"
)

// ExecRequest is the body of POST /v1/exec: run Command on the members.
type ExecRequest struct {
	// Members names the members; All takes every member instead.
	Members []string `json:"members,omitempty"`
	All     bool     `json:"all,omitempty"`
	// Command is the program and its arguments (no shell: use sh -c).
	Command []string `json:"command"`
	// Timeout bounds each member's run (default 30s, at most 10m).
	Timeout time.Duration `json:"timeout,omitempty"`
}

// ExecResult is how the command ended on one member.
type ExecResult struct {
	Member string `json:"member"`
	// RC is the exit code; -1 when the command did not run to its end
	// (killed at the timeout, not found, member unreachable).
	RC         int    `json:"rc"`
	Output     string `json:"output"`
	Truncated  bool   `json:"truncated,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// Error says why it did not run or finish ("" when it exited).
	Error string `json:"error,omitempty"`
}

// Exec runs a command on members through their agents.
func (c *Client) Exec(ctx context.Context, r ExecRequest) ([]ExecResult, error) {
	var out []ExecResult
	err := c.do(ctx, "POST", "/v1/exec", r, &out)
	return out, err
}
