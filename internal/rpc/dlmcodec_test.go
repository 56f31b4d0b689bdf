package rpc

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
)

// randBatch makes a batch with every field of a message used now and then.
func randBatch(rng *rand.Rand) *server.Batch {
	str := func() string {
		return []string{"", "m1", "ls", "a", "db/orders", strings.Repeat("x", 64), "é\x00\xff"}[rng.IntN(7)]
	}
	id := func() cluster.LockID { return cluster.LockID{Member: str(), N: rng.Uint64() >> rng.IntN(64)} }
	owner := func() dlm.OwnerID { return dlm.OwnerID{Member: str(), Client: rng.Uint64N(1000)} }
	val := func() *dlm.Value {
		if rng.IntN(3) > 0 {
			return nil
		}
		var v dlm.Value
		for i := range rng.IntN(dlm.ValueSize) {
			v[i] = byte(rng.Uint32())
		}
		return &v
	}
	roots := func() []cluster.Root {
		var rs []cluster.Root
		for range rng.IntN(3) {
			rs = append(rs, cluster.Root{Lockspace: str(), Name: str()})
		}
		return rs
	}
	b := &server.Batch{From: str(), FromInc: rng.Uint64(), To: str(), ToInc: rng.Uint64N(9), Stream: rng.Uint64N(99), Seq: rng.Uint64()}
	for range rng.IntN(5) {
		m := cluster.Message{Kind: cluster.MessageKind(rng.IntN(10)), View: rng.Uint64N(1 << 40), Floor: rng.Uint64(), Count: rng.Uint64N(5), More: rng.IntN(2) == 0}
		if rng.IntN(2) == 0 {
			op := &cluster.Op{Kind: cluster.OpKind(rng.IntN(8)), Req: rng.Uint64(), Lock: id(), Lockspace: str(), Parent: id(), Owner: owner(),
				Mode: dlm.Mode(rng.IntN(6)), Flags: dlm.Flags(rng.Uint32N(1 << 16)), Value: val(), Roots: roots()}
			for range rng.IntN(4) {
				op.Path = append(op.Path, str())
			}
			m.Op = op
		}
		if rng.IntN(3) == 0 {
			m.Reply = &cluster.Reply{Req: rng.Uint64(), Err: str(), Msg: str(), Roots: roots()}
		}
		for range rng.IntN(4) {
			ev := cluster.Event{Kind: cluster.EventKind(rng.IntN(18)), Lock: id(), Owner: owner(), Mode: dlm.Mode(rng.IntN(6)), Token: rng.Uint64(),
				Blocked: id(), ValBlk: rng.IntN(2) == 0, ValueValid: rng.IntN(2) == 0, Op: cluster.OpKind(rng.IntN(7))}
			if v := val(); v != nil {
				ev.Value = *v
			}
			m.Events = append(m.Events, ev)
		}
		for range rng.IntN(4) {
			m.States = append(m.States, cluster.LockState{Lock: id(), Gone: rng.IntN(4) == 0, Queue: dlm.Queue(rng.IntN(4)), Granted: dlm.Mode(rng.IntN(6)),
				Requested: dlm.Mode(rng.IntN(6)), Flags: dlm.Flags(rng.Uint32N(1 << 16)), Seq: rng.Uint64(), PendingValue: val()})
		}
		if rng.IntN(3) == 0 {
			m.Root = &cluster.Root{Lockspace: str(), Name: str()}
		}
		if rng.IntN(5) == 0 {
			// The recovery part travels as JSON, which keeps only valid
			// UTF-8 (as ProtoDLM always did).
			m.Records = []cluster.LockRecord{{Lock: cluster.LockID{Member: "m3", N: 4}, Lockspace: "ls", Path: []string{"a", "b"}, Owner: dlm.OwnerID{Member: "m3", Client: 2}, Queue: dlm.QueueGranted, Granted: dlm.PR, Token: 7, Vouch: true}}
			m.Values = []cluster.ResourceValue{{Lockspace: "ls", Path: []string{"a"}, Valid: true, Token: 3}}
			m.Dropped = []cluster.Root{{Lockspace: "ls", Name: "é"}}
		}
		b.Msgs = append(b.Msgs, m)
	}
	return b
}

// jsonOf is the JSON (ProtoDLM) form: the binary form must carry the same.
func jsonOf(t testing.TB, v any) string {
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

func TestBatchCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		in := randBatch(rng)
		p, err := appendBatch(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		var out server.Batch
		if err := decodeBatch(p, &out); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if a, b := jsonOf(t, in), jsonOf(t, &out); a != b {
			t.Fatalf("batch %d changed:\n  in  %s\n  out %s", i, a, b)
		}
		// Every proper prefix is refused, never taken for a shorter batch.
		for _, cut := range []int{0, len(p) / 3, len(p) - 1} {
			if cut < len(p) && decodeBatch(p[:cut], &server.Batch{}) == nil {
				t.Fatalf("batch %d: a prefix of %d of %d bytes decoded", i, cut, len(p))
			}
		}
	}
	for _, a := range []server.Ack{{}, {Seq: 1 << 60, Code: server.AckGone, Msg: "restarted"}} {
		var out server.Ack
		if err := decodeAck(appendAck(nil, &a), &out); err != nil || out != a {
			t.Errorf("ack %+v came back as %+v (%v)", a, out, err)
		}
	}
}

// The binary form is a fraction of the JSON one.
func TestBatchCodecSize(t *testing.T) {
	b := &server.Batch{From: "m2", FromInc: 3, To: "m1", ToInc: 5, Stream: 2, Seq: 991, Msgs: []cluster.Message{{
		Kind: cluster.MsgRequest, View: 4, Op: &cluster.Op{Kind: cluster.OpEnqueue, Req: 77, Lock: cluster.LockID{Member: "m2", N: 12},
			Lockspace: "default", Path: []string{"orders"}, Owner: dlm.OwnerID{Member: "m2", Client: 9}, Mode: dlm.EX}}}}
	p, _ := appendBatch(nil, b)
	j := jsonOf(t, b)
	t.Logf("a lock request: %d bytes binary, %d JSON", len(p), len(j))
	if len(p)*3 > len(j) {
		t.Errorf("binary %d bytes, JSON %d", len(p), len(j))
	}
}

func BenchmarkBatchCodec(b *testing.B) {
	in := &server.Batch{From: "m1", FromInc: 3, To: "m2", ToInc: 5, Stream: 2, Seq: 991, Msgs: []cluster.Message{{
		Kind: cluster.MsgUpdate, View: 4, Reply: &cluster.Reply{Req: 77},
		Events: []cluster.Event{{Kind: cluster.EventGranted, Lock: cluster.LockID{Member: "m2", N: 12}, Owner: dlm.OwnerID{Member: "m2", Client: 9}, Mode: dlm.EX, Token: 1 << 41}},
		States: []cluster.LockState{{Lock: cluster.LockID{Member: "m2", N: 12}, Queue: dlm.QueueGranted, Granted: dlm.EX, Requested: dlm.EX, Seq: 5}}}}}
	b.Run("binary", func(b *testing.B) {
		var buf []byte
		for range b.N {
			buf, _ = appendBatch(buf[:0], in)
			var out server.Batch
			if err := decodeBatch(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for range b.N {
			j, _ := json.Marshal(in)
			var out server.Batch
			if err := json.Unmarshal(j, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzDecodeBatch: no input makes the binary decoder panic or allocate
// past what the frame holds; what decodes encodes to the same batch.
func FuzzDecodeBatch(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		p, _ := appendBatch(nil, randBatch(rng))
		f.Add(p)
	}
	f.Add(appendAck(nil, &server.Ack{Seq: 3, Code: server.AckRetry, Msg: "later"}))
	f.Fuzz(func(t *testing.T, p []byte) {
		var a server.Ack
		_ = decodeAck(p, &a)
		var b server.Batch
		if decodeBatch(p, &b) != nil {
			return
		}
		q, err := appendBatch(nil, &b)
		if err != nil {
			return // a recovery part that JSON cannot encode again
		}
		var c server.Batch
		if err := decodeBatch(q, &c); err != nil {
			t.Fatalf("a decoded batch encodes to what does not decode: %v", err)
		}
		if !bytes.Equal([]byte(jsonOf(t, &b)), []byte(jsonOf(t, &c))) {
			t.Fatalf("a decoded batch changed on the way back:\n  %s\n  %s", jsonOf(t, &b), jsonOf(t, &c))
		}
	})
}
