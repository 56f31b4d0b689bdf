package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func members(n int) []string {
	var ms []string
	for i := 1; i <= n; i++ {
		ms = append(ms, fmt.Sprintf("m%d", i))
	}
	return ms
}

// The directory is a fixed function: every member, in every release,
// computes the same master. These values pin the hash.
func TestMasterIsStable(t *testing.T) {
	v := View{Number: 1, Members: members(5)}
	got := []string{Master(v, "ls", "a"), Master(v, "ls", "b"), Master(v, "ls2", "a"), Master(v, "vigil", "db/orders"), Master(v, "a", "b\x01"), Master(v, "ab", "")}
	want := []string{"m4", "m3", "m5", "m5", "m3", "m1"}
	if !slices.Equal(got, want) {
		t.Errorf("masters %q, want %q: the directory's hash changed, which breaks mixed-version clusters", got, want)
	}
	if m := Master(View{Number: 1}, "ls", "a"); m != "" {
		t.Errorf("an empty view has master %q", m)
	}
	// The view number and the members' order do not matter.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		name := fmt.Sprintf("r%d", i)
		shuffled := slices.Clone(v.Members)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if a, b := Master(v, "ls", name), Master(View{Number: 99, Members: shuffled}, "ls", name); a != b {
			t.Fatalf("%s: %s in view %v, %s with the members shuffled", name, a, v, b)
		}
	}
	// Length prefixes: ("ab", "c") and ("a", "bc") are different names.
	diff := 0
	for i := range 100 {
		ls := fmt.Sprintf("l%d", i)
		if Master(v, ls+"x", "y") != Master(v, ls, "xy") {
			diff++
		}
	}
	if diff < 50 {
		t.Errorf("only %d of 100 (lockspace, name) splits of one string get a different master", diff)
	}
}

// Roots spread evenly over the members.
func TestMasterSpreads(t *testing.T) {
	for _, n := range []int{2, 3, 5, 8} {
		v := View{Number: 1, Members: members(n)}
		count := map[string]int{}
		const roots = 20000
		for i := range roots {
			count[Master(v, "ls", fmt.Sprintf("resource-%d", i))]++
		}
		for _, m := range v.Members {
			if c, want := count[m], roots/n; c < want*85/100 || c > want*115/100 {
				t.Errorf("%d members: %s masters %d of %d roots, want about %d", n, m, c, roots, want)
			}
		}
	}
}

// A view change moves only the roots of the members that left or joined.
func TestMasterMovesOnlyWhatItMust(t *testing.T) {
	five := View{Number: 1, Members: members(5)}
	six := View{Number: 2, Members: members(6)}
	four := View{Number: 3, Members: []string{"m1", "m2", "m4", "m5"}}
	moved, lost := 0, map[string]int{}
	const roots = 20000
	for i := range roots {
		name := fmt.Sprintf("resource-%d", i)
		a, b, c := Master(five, "ls", name), Master(six, "ls", name), Master(four, "ls", name)
		if a != b {
			moved++
			if b != "m6" {
				t.Fatalf("%s moved from %s to %s when m6 joined: only moves to the new member are allowed", name, a, b)
			}
		}
		if a != c {
			if a != "m3" {
				t.Fatalf("%s moved from %s to %s when m3 left: only m3's roots may move", name, a, c)
			}
			lost[c]++
		} else if a == "m3" {
			t.Fatalf("%s stayed on m3, which left", name)
		}
	}
	if want := roots / 6; moved < want*85/100 || moved > want*115/100 {
		t.Errorf("%d roots moved to the joining member, want about %d", moved, want)
	}
	for _, m := range four.Members {
		if want := roots / 5 / 4; lost[m] < want*75/100 || lost[m] > want*125/100 {
			t.Errorf("%s took %d of m3's roots, want about %d: they should spread", m, lost[m], want)
		}
	}
}

func TestViewCheck(t *testing.T) {
	for _, v := range []View{
		{Number: 0, Members: []string{"m1"}},
		{Number: 1, Members: []string{"m2", "m1"}},
		{Number: 1, Members: []string{"m1", "m1"}},
		{Number: 1, Members: []string{""}},
	} {
		if err := v.check(); err == nil {
			t.Errorf("view %v accepted", v)
		}
	}
	n, _ := New(Config{Member: "m1", Transport: endpoint{&network{q: map[pair][]Message{}}, "m1"}, Engine: DefaultConfig().Engine, MaxHeld: 1, MaxBatch: 1, MaxStash: 1})
	if _, err := n.SetView(t0, View{Number: 1, Members: []string{"m2", "m1"}}); err == nil {
		t.Errorf("SetView accepted unsorted members")
	}
}
