package agent

import (
	"testing"

	"github.com/vigil-cluster/vigil/internal/director"
)

func TestMemberCondition(t *testing.T) {
	cases := []struct {
		name           string
		self, fresh    bool
		seen, reported []bool
		want           director.MemberState
	}{
		{"self", true, false, nil, nil, director.MemberUp},
		{"silent", false, false, []bool{true}, []bool{true}, director.MemberDown},
		{"one link up", false, true, []bool{true}, nil, director.MemberUp},
		{"interconnect lost, public seen", false, true, []bool{false, true}, []bool{false, true}, director.MemberNetpar},
		{"every link seen", false, true, []bool{true, true}, []bool{true, true}, director.MemberUp},
		{"public links lost", false, true, []bool{true, false}, []bool{true, false}, director.MemberDisconnected},
		{"public links lost, two of them", false, true, []bool{true, false, false}, []bool{true, false, false}, director.MemberDisconnected},
		{"one of two public links left", false, true, []bool{true, false, true}, []bool{true, false, true}, director.MemberUp},
		{"no report yet", false, true, []bool{true, true}, nil, director.MemberUp},
		{"netpar wins over its own report", false, true, []bool{false, true}, []bool{false, false}, director.MemberNetpar},
	}
	for _, tc := range cases {
		if got := memberCondition(tc.self, tc.fresh, tc.seen, tc.reported); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}
