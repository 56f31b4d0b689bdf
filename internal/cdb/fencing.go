package cdb

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"time"
)

// FenceDevice is a fence agent configured for some members, in the style of
// Pacemaker's fence agents: an executable that reads key=value lines
// (action=off|on|reboot|status, nodename=M, and the options) on stdin.
type FenceDevice struct {
	Name    string            `json:"name"`
	Agent   string            `json:"agent"`
	Members []string          `json:"members"`
	Options map[string]string `json:"options,omitempty"`
	// Level orders the devices of a member: level 1 is tried first, then
	// level 2 if it failed, and so on.
	Level   int           `json:"level"`
	Timeout time.Duration `json:"timeout"`
}

// Fenced records a fence that confirmed a member was off.
type Fenced struct {
	At     time.Time `json:"at"`
	Device string    `json:"device"`
}

var fenceNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)
var fenceOptRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,63}$`)

// Validate checks a fence device.
func (d *FenceDevice) Validate() error {
	if !fenceNameRE.MatchString(d.Name) {
		return fmt.Errorf("fence device name %q is not valid: use 1-32 lower-case letters, digits and '-'", d.Name)
	}
	if !filepath.IsAbs(d.Agent) {
		return fmt.Errorf("fence agent %q must be an absolute path to an executable", d.Agent)
	}
	if len(d.Members) == 0 {
		return fmt.Errorf("fence device %s fences no member: give --member at least once", d.Name)
	}
	if d.Level < 1 || d.Level > 9 {
		return fmt.Errorf("fence level %d is out of range: must be 1-9", d.Level)
	}
	if d.Timeout < time.Second || d.Timeout > 10*time.Minute {
		return fmt.Errorf("fence timeout %s is out of range: must be 1s to 10m", d.Timeout)
	}
	for k, v := range d.Options {
		if !fenceOptRE.MatchString(k) || k == "action" || k == "nodename" {
			return fmt.Errorf("fence option %q is not valid (lower-case name; action and nodename are set by vigil)", k)
		}
		if len(v) > 1024 || regexp.MustCompile(`[\n\r\x00]`).MatchString(v) {
			return fmt.Errorf("fence option %s: value must be one line of at most 1024 bytes", k)
		}
	}
	return nil
}

// FenceDevicesFor returns the devices that can fence member, by level then
// name.
func (s *State) FenceDevicesFor(member string) []FenceDevice {
	var out []FenceDevice
	for _, d := range s.Fencing {
		for _, m := range d.Members {
			if m == member {
				out = append(out, *d)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Level != out[j].Level {
			return out[i].Level < out[j].Level
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func (s *State) applyFencing(c *Command) (any, error) {
	switch c.Op {
	case OpFenceSet:
		d := c.Fence
		if d == nil {
			return nil, refuse(ErrInvalid, "fence device missing")
		}
		if err := d.Validate(); err != nil {
			return nil, refuse(ErrInvalid, "%v", err)
		}
		for _, m := range d.Members {
			if _, ok := s.Members[m]; !ok {
				return nil, refuse(ErrNotFound, "member %s is not in the cluster (see `vigil members`)", m)
			}
		}
		if s.Fencing == nil {
			s.Fencing = map[string]*FenceDevice{}
		}
		dc := *d
		s.Fencing[d.Name] = &dc
		return nil, nil
	case OpFenceRemove:
		if _, ok := s.Fencing[c.Member]; !ok {
			return nil, refuse(ErrNotFound, "fence device %s does not exist (see `vigil fence list`)", c.Member)
		}
		delete(s.Fencing, c.Member)
		if len(s.Fencing) == 0 && s.Settings["no-quorum-policy"] == "freeze" {
			s.Settings["no-quorum-policy"] = "stop"
		}
		return nil, nil
	case OpFenced:
		if s.FencedMembers == nil {
			s.FencedMembers = map[string]Fenced{}
		}
		if c.Flag {
			s.FencedMembers[c.Member] = Fenced{At: c.At, Device: c.Settings["device"]}
		} else {
			delete(s.FencedMembers, c.Member)
		}
		return nil, nil
	}
	return s.applyDLM(c)
}
