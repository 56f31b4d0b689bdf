package cluster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// chooser picks numbers from fuzz bytes.
type chooser struct {
	b    []byte
	done bool
}

func (c *chooser) n(k int) int {
	if len(c.b) == 0 {
		c.done = true
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % k
}

var fuzzMembers = []string{"m1", "m2", "m3", "zz"}

func (c *chooser) id() LockID {
	if c.n(6) == 0 {
		return LockID{}
	}
	return LockID{Member: fuzzMembers[c.n(4)], N: uint64(c.n(8))}
}

func (c *chooser) name() string {
	return []string{"a", "b", "x", "", strings.Repeat("n", 70)}[c.n(5)]
}

func (c *chooser) path() []string {
	k := c.n(5)
	if k == 4 {
		k = 17
	}
	p := make([]string, k)
	for i := range p {
		p[i] = c.name()
	}
	return p
}

func (c *chooser) owner() dlm.OwnerID {
	return dlm.OwnerID{Member: fuzzMembers[c.n(4)], Client: uint64(c.n(3))}
}

func (c *chooser) value() *dlm.Value {
	if c.n(3) != 0 {
		return nil
	}
	return &dlm.Value{byte(c.n(256))}
}

func (c *chooser) message() Message {
	m := Message{Kind: MessageKind(c.n(10)), View: uint64(c.n(7)), Floor: uint64(c.n(4)) << 40, More: c.n(4) == 0, Count: uint64(c.n(4))}
	if c.n(2) == 0 {
		m.Op = &Op{Kind: OpKind(c.n(8)), Req: uint64(c.n(5)), Lock: c.id(), Lockspace: c.name(), Path: c.path(),
			Parent: c.id(), Owner: c.owner(), Mode: dlm.Mode(c.n(8)), Flags: dlm.Flags(c.n(256)), Value: c.value()}
		for range c.n(3) {
			m.Op.Roots = append(m.Op.Roots, Root{c.name(), c.name()})
		}
	}
	if c.n(2) == 0 {
		m.Root = &Root{c.name(), c.name()}
	}
	if c.n(3) == 0 {
		m.Reply = &Reply{Req: uint64(c.n(8)), Err: []string{"", "invalid", "busy", "??"}[c.n(4)], Msg: "fuzz"}
		if c.n(2) == 0 {
			m.Reply.Roots = []Root{{c.name(), c.name()}}
		}
	}
	for range c.n(4) {
		m.Events = append(m.Events, Event{Kind: EventKind(c.n(20)), Lock: c.id(), Owner: c.owner(), Mode: dlm.Mode(c.n(8)),
			Token: uint64(c.n(9)), Blocked: c.id(), ValBlk: c.n(2) == 0, ValueValid: c.n(2) == 0})
	}
	for range c.n(4) {
		m.States = append(m.States, LockState{Lock: c.id(), Gone: c.n(4) == 0, Queue: dlm.Queue(c.n(5)), Granted: dlm.Mode(c.n(8)),
			Requested: dlm.Mode(c.n(8)), Flags: dlm.Flags(c.n(256)), Seq: uint64(c.n(9)), PendingValue: c.value()})
	}
	for range c.n(5) {
		m.Records = append(m.Records, LockRecord{Lock: c.id(), Lockspace: c.name(), Path: c.path(), Parent: c.id(), Owner: c.owner(),
			Queue: dlm.Queue(c.n(5)), Granted: dlm.Mode(c.n(8)), Requested: dlm.Mode(c.n(8)), Flags: dlm.Flags(c.n(256)),
			Seq: uint64(c.n(9)), PendingValue: c.value(), Token: uint64(c.n(9)), Vouch: c.n(2) == 0})
	}
	for range c.n(3) {
		m.Values = append(m.Values, ResourceValue{Lockspace: c.name(), Path: c.path(), Valid: c.n(2) == 0, Token: uint64(c.n(9))})
	}
	for range c.n(3) {
		m.Dropped = append(m.Dropped, Root{c.name(), c.name()})
	}
	return m
}

// fuzzRig is three members with a few locks, m1 under test.
func fuzzRig(t *testing.T) *rig {
	r := newRigWith(t, true, "m1", "m2", "m3")
	a, b := owner("m1", 1), owner("m2", 1)
	for _, x := range []string{"a", "b", "x"} {
		l := r.enqueue(a, Request{Name: x, Mode: dlm.PR, Flags: dlm.ValBlk})
		r.enqueue(a, Request{Name: "x", Parent: l, Mode: dlm.NL})
		r.enqueue(b, Request{Name: x, Mode: dlm.EX})
	}
	r.deliverAll()
	for _, n := range r.nodes {
		n.hooks.anomaly = nil // made-up input makes the node complain, and that is fine
	}
	return r
}

// checkNode checks that a node's maps and engine hold together.
func checkNode(t *testing.T, n *Node) {
	t.Helper()
	held := map[string][]dlm.Mode{}
	for _, r := range n.eng.Export().Locks {
		g, ok := n.gidOK(r.ID)
		if !ok || n.byG[g] != r.ID {
			t.Fatalf("engine lock %d has no cluster id", r.ID)
		}
		if r.Queue != dlm.QueueWaiting {
			k := r.Lockspace + "/" + strings.Join(r.Path, "/")
			for _, m := range held[k] {
				if !dlm.Compatible(m, r.Granted) {
					t.Fatalf("incompatible locks granted on %s", k)
				}
			}
			held[k] = append(held[k], r.Granted)
		}
	}
	if len(n.byG) != n.eng.Len() {
		t.Fatalf("%d cluster ids, %d locks", len(n.byG), n.eng.Len())
	}
	n.Locks()
}

// FuzzDeliver feeds made-up messages, views and operations to a member: it
// must not panic, and its engine and maps must hold together.
func FuzzDeliver(f *testing.F) {
	f.Add([]byte{3, 0, 1, 1, 0, 0, 1, 2, 3})
	f.Add([]byte("\x05\x04\x02\x01\x00\x03\x03\x01\x01\x00\x02\x01\x01\x00\x00\x05"))
	f.Add([]byte("\x03\x03\x01\x00\x01\x01\x00\x00\x00\x03\x02\x04\x00\x01\x02\x00\x01\x01\x02\x03\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := fuzzRig(t)
		n := r.nodes["m1"]
		c := &chooser{b: data}
		for i := 0; i < 40 && !c.done; i++ {
			switch c.n(12) {
			case 0:
				ms := []string{"m1"}
				for _, m := range []string{"m2", "m3", "zz"} {
					if c.n(2) == 0 {
						ms = append(ms, m)
					}
				}
				if c.n(5) == 0 {
					ms = ms[1:]
				}
				n.SetView(r.h.now, View{Number: n.view.Number + uint64(c.n(3)), Members: ms})
			case 1:
				n.SetQuorum(r.h.now, c.n(4) != 0)
			case 2:
				n.Enqueue(r.h.now, Request{Lockspace: c.name(), Name: c.name(), Parent: c.id(), Owner: c.owner(), Mode: dlm.Mode(c.n(8)),
					Flags: dlm.Flags(c.n(256)), Lock: c.id(), Value: c.value()})
			case 3:
				n.Unlock(r.h.now, c.id(), dlm.Flags(c.n(256)), c.value())
				n.Cancel(r.h.now, c.id())
			case 4:
				n.Disconnect(r.h.now, c.owner())
				n.AbortDeadlock(r.h.now, c.id())
				n.WaitEdges(r.h.now)
			default:
				n.Deliver(r.h.now, fuzzMembers[c.n(4)], c.message())
			}
			checkNode(t, n)
		}
	})
}

// FuzzDeliverJSON decodes a message as JSON (the wire format to come) and
// delivers it: no panic, and the member holds together.
func FuzzDeliverJSON(f *testing.F) {
	for _, m := range []Message{
		{Kind: MsgRequest, View: 1, Op: &Op{Kind: OpEnqueue, Req: 1, Lock: LockID{"m2", 9}, Lockspace: "ls", Path: []string{"a"}, Owner: owner("m2", 1), Mode: dlm.EX}},
		{Kind: MsgUpdate, View: 1, Reply: &Reply{Req: 1}, Events: []Event{{Kind: EventGranted, Lock: LockID{"m1", 1}, Owner: owner("m1", 1), Mode: dlm.EX, Token: 7}},
			States: []LockState{{Lock: LockID{"m1", 1}, Queue: dlm.QueueGranted, Granted: dlm.EX, Requested: dlm.EX}}},
		{Kind: MsgFlush, View: 2, Floor: 1 << 41},
		{Kind: MsgLocks, View: 2, Records: []LockRecord{{Lock: LockID{"m2", 3}, Lockspace: "ls", Path: []string{"a"}, Owner: owner("m2", 1), Queue: dlm.QueueGranted, Granted: dlm.PR}},
			Values: []ResourceValue{{Lockspace: "ls", Path: []string{"a"}, Valid: true, Token: 5}}, Dropped: []Root{{"ls", "a"}}},
		{Kind: MsgDone, View: 2},
		{Kind: MsgHandoff, View: 1, Root: &Root{"ls", "a"}, Floor: 9, Op: &Op{Kind: OpEnqueue, Req: 1, Lock: LockID{"m1", 1}, Lockspace: "ls", Path: []string{"a"}, Owner: owner("m1", 1), Mode: dlm.EX}},
		{Kind: MsgForward, View: 1, Op: &Op{Kind: OpPurge, Req: 2, Owner: owner("m3", 1), Roots: []Root{{"ls", "a"}}}},
		{Kind: MsgReturn, View: 1, Root: &Root{"ls", "a"}, Count: 3, Floor: 9},
	} {
		b, _ := json.Marshal(m)
		f.Add(b, uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, from uint8) {
		var m Message
		if json.Unmarshal(data, &m) != nil {
			return
		}
		r := fuzzRig(t)
		n := r.nodes["m1"]
		sender := fuzzMembers[int(from)%len(fuzzMembers)]
		n.Deliver(r.h.now, sender, m)
		n.SetView(r.h.now, View{Number: 2, Members: []string{"m1", "m2", "m3"}})
		n.Deliver(r.h.now, sender, m)
		checkNode(t, n)
	})
}
