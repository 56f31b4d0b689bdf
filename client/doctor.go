package client

import "context"

// The results of a doctor check.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
)

// Finding is one check of `vigil doctor`.
type Finding struct {
	Check  string `json:"check"`
	Member string `json:"member,omitempty"`
	Result string `json:"result"`
	// Message says what was found and, when it is not ok, what to do.
	Message string `json:"message"`
}

// DoctorReport is the answer of GET /v1/doctor.
type DoctorReport struct {
	Findings []Finding `json:"findings"`
	OK       int       `json:"ok"`
	Warnings int       `json:"warnings"`
	Failures int       `json:"failures"`
}

// Doctor checks the cluster from the answering member.
func (c *Client) Doctor(ctx context.Context) (*DoctorReport, error) {
	var out DoctorReport
	err := c.do(ctx, "GET", "/v1/doctor", nil, &out)
	return &out, err
}
