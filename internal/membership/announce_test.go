package membership

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// racedNode is a link whose refutations win the first lost updates, as
// memberlist's do when one lands between UpdateNode's choice of incarnation
// and its taking of the node lock.
type racedNode struct {
	meta  []byte // what the link gossips about this member
	lost  int    // updates still to lose
	calls int
	m     *Membership
}

func (n *racedNode) UpdateNode(time.Duration) error {
	n.calls++
	if n.lost > 0 {
		n.lost--
		return nil
	}
	n.m.mu.Lock()
	n.meta = append([]byte(nil), n.m.meta...)
	n.m.mu.Unlock()
	return nil
}

func (n *racedNode) LocalNode() *memberlist.Node { return &memberlist.Node{Meta: n.meta} }

func TestAnnounceRetriesALostUpdate(t *testing.T) {
	for _, tc := range []struct {
		lost, calls int
		err         string
	}{
		{lost: 0, calls: 1},
		{lost: 1, calls: 2},
		{lost: announceTries - 1, calls: announceTries},
		{lost: announceTries, calls: announceTries, err: "older metadata"},
	} {
		m := &Membership{log: slog.New(slog.DiscardHandler)}
		if err := m.setMeta(Meta{AgentState: "INITIALIZING"}); err != nil {
			t.Fatal(err)
		}
		n := &racedNode{meta: append([]byte(nil), m.meta...), lost: tc.lost, m: m}
		if err := m.setMeta(Meta{AgentState: "RUNNING"}); err != nil {
			t.Fatal(err)
		}
		err := m.announce(n)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%d lost: err %v, want %q", tc.lost, err, tc.err)
		}
		if n.calls != tc.calls {
			t.Errorf("%d lost: %d calls, want %d", tc.lost, n.calls, tc.calls)
		}
		if tc.err == "" && !strings.Contains(string(n.meta), "RUNNING") {
			t.Errorf("%d lost: the link gossips %s", tc.lost, n.meta)
		}
	}
}
