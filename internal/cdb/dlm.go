package cdb

import "slices"

// DLMView is the lock manager's view (docs/DLM.md): the members among which
// lock resources are mastered, each with the incarnation of its lock
// manager. The director writes a new one when a member joins it (it renews
// its lease) or leaves it (it is fenced or its lease has certainly run
// out), or restarts (a new incarnation: first a view without it).
type DLMView struct {
	Number  uint64            `json:"number"`
	Members map[string]uint64 `json:"members"`
}

// Names returns the view's members, sorted.
func (v *DLMView) Names() []string {
	if v == nil {
		return nil
	}
	out := make([]string, 0, len(v.Members))
	for m := range v.Members {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func (s *State) applyDLM(c *Command) (any, error) {
	switch c.Op {
	case OpDLMView:
		v := c.DLMView
		if v == nil {
			return nil, refuse(ErrInvalid, "dlm view missing")
		}
		if s.DLMView != nil && v.Number <= s.DLMView.Number {
			return nil, refuse(ErrConflict, "dlm view %d is not newer than view %d", v.Number, s.DLMView.Number)
		}
		for m, inc := range v.Members {
			if _, ok := s.Members[m]; !ok {
				return nil, refuse(ErrNotFound, "dlm view %d names %s, which is not a member", v.Number, m)
			}
			if inc == 0 {
				return nil, refuse(ErrInvalid, "dlm view %d gives %s incarnation 0", v.Number, m)
			}
		}
		nv := DLMView{Number: v.Number, Members: map[string]uint64{}}
		for m, inc := range v.Members {
			nv.Members[m] = inc
		}
		s.DLMView = &nv
		return nil, nil
	}
	return nil, refuse(ErrRefused, "unknown command %q: this member's vigil is older than the one that wrote it; upgrade it", c.Op)
}
