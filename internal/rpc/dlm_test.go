package rpc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	in := server.Batch{From: "m1", FromInc: 7, To: "m2", ToInc: 9, Seq: 3, Msgs: []cluster.Message{{Kind: cluster.MsgRequest, View: 4,
		Op: &cluster.Op{Kind: cluster.OpEnqueue, Req: 1, Lock: cluster.LockID{Member: "m1", N: 5}, Lockspace: "app", Path: []string{"r"},
			Owner: dlm.OwnerID{Member: "m1", Client: 2}, Mode: dlm.EX}}}}
	if err := WriteFrame(w, &in); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	var out server.Batch
	if err := ReadFrame(bufio.NewReader(&buf), &out); err != nil {
		t.Fatal(err)
	}
	if out.Seq != 3 || len(out.Msgs) != 1 || out.Msgs[0].Op.Path[0] != "r" || out.Msgs[0].Op.Mode != dlm.EX {
		t.Fatalf("got %+v", out)
	}
}

func TestFrameTooBig(t *testing.T) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], MaxDLMFrame+1)
	var b server.Batch
	if err := ReadFrame(bufio.NewReader(bytes.NewReader(n[:])), &b); err == nil {
		t.Fatal("an oversized frame was read")
	}
}

// FuzzReadFrame: no input makes the frame decoder panic or allocate past
// the frame limit.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0, 0, 0, 30, '{', '"', 'm', 's', 'g', 's', '"', ':', '[', '{', '"', 'o', 'p', '"', ':', '{', '"', 'p', '"', ':', '[', '1', ']', '}', '}', ']', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for range 4 {
			var b server.Batch
			if ReadFrame(r, &b) != nil {
				return
			}
		}
	})
}
