package agent

import (
	"maps"
	"testing"

	"github.com/vigil-cluster/vigil/internal/cdb"
)

func TestNextDLMView(t *testing.T) {
	st := cdb.NewState()
	for i, n := range []string{"m1", "m2", "m3"} {
		st.Members[n] = &cdb.Member{Name: n, ID: i + 1}
	}
	cur := &cdb.DLMView{Number: 4, Members: map[string]uint64{"m1": 11, "m2": 22, "m3": 33}}
	none := func(string) bool { return false }
	incs := map[string]uint64{"m1": 11, "m2": 22, "m3": 33}
	cases := []struct {
		name   string
		cur    *cdb.DLMView
		live   map[string]bool
		incs   map[string]uint64
		over   func(string) bool
		fenced func(string) bool
		want   map[string]uint64 // nil: no new view
	}{
		{"steady", cur, map[string]bool{"m1": true, "m2": true, "m3": true}, incs, none, none, nil},
		{"silent but its lease may run", cur, map[string]bool{"m1": true, "m2": true}, incs, none, none, nil},
		{"lease certainly over", cur, map[string]bool{"m1": true, "m2": true}, incs, func(m string) bool { return m == "m3" }, none,
			map[string]uint64{"m1": 11, "m2": 22}},
		{"fenced", cur, map[string]bool{"m1": true, "m2": true}, incs, none, func(m string) bool { return m == "m3" },
			map[string]uint64{"m1": 11, "m2": 22}},
		{"fenced but renewing again stays", cur, map[string]bool{"m1": true, "m2": true, "m3": true}, incs, none, func(m string) bool { return m == "m3" }, nil},
		{"restarted leaves first", cur, map[string]bool{"m1": true, "m2": true, "m3": true}, map[string]uint64{"m1": 11, "m2": 22, "m3": 99}, none, none,
			map[string]uint64{"m1": 11, "m2": 22}},
		{"joins with its incarnation", &cdb.DLMView{Number: 5, Members: map[string]uint64{"m1": 11, "m2": 22}},
			map[string]bool{"m1": true, "m2": true, "m3": true}, map[string]uint64{"m1": 11, "m2": 22, "m3": 99}, none, none,
			map[string]uint64{"m1": 11, "m2": 22, "m3": 99}},
		{"no incarnation yet: not added", &cdb.DLMView{Number: 5, Members: map[string]uint64{"m1": 11}},
			map[string]bool{"m1": true, "m2": true}, map[string]uint64{"m1": 11}, none, none, nil},
		{"first view", nil, map[string]bool{"m1": true}, map[string]uint64{"m1": 11}, none, none, map[string]uint64{"m1": 11}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := nextDLMView(c.cur, st, c.live, func(m string) uint64 { return c.incs[m] }, c.over, c.fenced)
			switch {
			case c.want == nil && got != nil:
				t.Fatalf("new view %+v, want none", got)
			case c.want != nil && got == nil:
				t.Fatalf("no new view, want %v", c.want)
			case c.want != nil && !maps.Equal(got.Members, c.want):
				t.Fatalf("view %v, want %v", got.Members, c.want)
			case got != nil && c.cur != nil && got.Number != c.cur.Number+1:
				t.Fatalf("number %d after %d", got.Number, c.cur.Number)
			}
		})
	}
}
