package socket

import (
	"encoding/json"
	"testing"

	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

var benchServer = &ServerFrame{Messages: []Message{
	{Tag: 12345, Lock: cluster.LockID{Member: "m1", N: 987654}},
	{Event: EventGranted, Lock: cluster.LockID{Member: "m1", N: 987654}, Mode: "EX", Token: 1099511627777},
	{Tag: 12346},
}}

var benchClient = &ClientFrame{Requests: []Request{
	{Tag: 12345, Op: OpEnqueue, Lockspace: "default", Name: "resource-17", Mode: "EX"},
	{Tag: 12346, Op: OpUnlock, Lock: cluster.LockID{Member: "m1", N: 987654}},
}}

// The codec against encoding/json on the frames of one lock+unlock pair.
func BenchmarkCodec(b *testing.B) {
	sb, _ := Codec{}.Marshal(benchServer)
	cb, _ := Codec{}.Marshal(benchClient)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			Codec{}.Marshal(benchServer)
			Codec{}.Marshal(benchClient)
		}
	})
	b.Run("encode-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			json.Marshal(benchServer)
			json.Marshal(benchClient)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var s ServerFrame
			var c ClientFrame
			Codec{}.Unmarshal(sb, &s)
			Codec{}.Unmarshal(cb, &c)
		}
	})
	b.Run("decode-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var s ServerFrame
			var c ClientFrame
			json.Unmarshal(sb, &s)
			json.Unmarshal(cb, &c)
		}
	})
}
