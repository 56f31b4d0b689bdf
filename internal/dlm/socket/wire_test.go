package socket

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

func TestCheck(t *testing.T) {
	id := cluster.LockID{Member: "m1", N: 3}
	long := strings.Repeat("n", 65)
	for _, tc := range []struct {
		name string
		r    Request
		want string // "" for valid
	}{
		{"enqueue", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Mode: "EX", Flags: uint16(dlm.NoQueue | dlm.ValBlk)}, ""},
		{"sub-lock", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Parent: id, Mode: "NL", Flags: uint16(dlm.Expedite)}, ""},
		{"convert", Request{Tag: 1, Op: OpConvert, Lock: id, Mode: "NL", Flags: uint16(dlm.ValBlk | dlm.QueCvt), Value: []byte("v")}, ""},
		{"unlock", Request{Tag: 1, Op: OpUnlock, Lock: id, Flags: uint16(dlm.ValBlk), Value: make([]byte, 64)}, ""},
		{"cancel", Request{Tag: 1, Op: OpCancel, Lock: id}, ""},
		{"tag 0", Request{Op: OpCancel, Lock: id}, "tag is 0: number the requests of a session from 1"},
		{"unknown op", Request{Tag: 1, Op: "grab"}, `op "grab" is unknown: use enqueue, convert, unlock or cancel`},
		{"no name", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Mode: "EX"}, "name is 0 bytes long: give 1 to 64 bytes"},
		{"long name", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: long, Mode: "EX"}, "name is 65 bytes long"},
		{"long lockspace", Request{Tag: 1, Op: OpEnqueue, Lockspace: long, Name: "r", Mode: "EX"}, "lockspace is 65 bytes long"},
		{"bad mode", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Mode: "ex"}, `mode "ex" is unknown: use NL, CR, CW, PR, PW or EX`},
		{"enqueue with lock", Request{Tag: 1, Op: OpEnqueue, Lock: id, Lockspace: "ls", Name: "r", Mode: "EX"}, "lock is set: an enqueue makes a new lock"},
		{"half parent", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Parent: cluster.LockID{N: 2}, Mode: "EX"}, "parent #2 has a member name of 0 bytes"},
		{"convert without lock", Request{Tag: 1, Op: OpConvert, Mode: "EX"}, "lock is missing"},
		{"lock number 0", Request{Tag: 1, Op: OpUnlock, Lock: cluster.LockID{Member: "m1"}}, "has number 0"},
		{"convert with name", Request{Tag: 1, Op: OpConvert, Lock: id, Name: "r", Mode: "EX"}, "lockspace and name are only for an enqueue"},
		{"unlock with mode", Request{Tag: 1, Op: OpUnlock, Lock: id, Mode: "EX"}, "mode is only for an enqueue or a convert"},
		{"convert flag", Request{Tag: 1, Op: OpConvert, Lock: id, Mode: "EX", Flags: uint16(dlm.Convert)}, "send op convert instead"},
		{"unknown flags", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Mode: "EX", Flags: 0x100}, "flags 0x100 are not valid for enqueue"},
		{"quecvt on enqueue", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Mode: "EX", Flags: uint16(dlm.QueCvt)}, "flags 0x4 are not valid for enqueue: it takes NoQueue|Expedite|NoDlckWt|ValBlk|NoBlock"},
		{"unlock noqueue", Request{Tag: 1, Op: OpUnlock, Lock: id, Flags: uint16(dlm.NoQueue)}, "not valid for unlock: it takes ValBlk"},
		{"cancel flags", Request{Tag: 1, Op: OpCancel, Lock: id, Flags: uint16(dlm.ValBlk)}, "not valid for cancel: it takes none"},
		{"expedite EX", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Mode: "EX", Flags: uint16(dlm.Expedite)}, "Expedite is only for a new NL request"},
		{"value on enqueue", Request{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Mode: "EX", Flags: uint16(dlm.ValBlk), Value: []byte("x")}, "value is only written by a convert or an unlock"},
		{"long value", Request{Tag: 1, Op: OpUnlock, Lock: id, Flags: uint16(dlm.ValBlk), Value: make([]byte, 65)}, "value is 65 bytes: a value block holds at most 64"},
		{"value without valblk", Request{Tag: 1, Op: OpConvert, Lock: id, Mode: "NL", Value: []byte("x")}, "value is set without flag ValBlk (0x20)"},
	} {
		op, err := tc.r.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error saying %q", tc.name, err, tc.want)
		case tc.want == "" && op.Mode.String() != tc.r.Mode && tc.r.Mode != "":
			t.Errorf("%s: mode %v, want %s", tc.name, op.Mode, tc.r.Mode)
		}
	}
	// The padding of a short value.
	op, err := (&Request{Tag: 1, Op: OpUnlock, Lock: id, Flags: uint16(dlm.ValBlk), Value: []byte("ab")}).Check()
	if err != nil || op.Value == nil || op.Value[0] != 'a' || op.Value[2] != 0 {
		t.Errorf("short value: %v %v", op.Value, err)
	}
}

func randString(r *rand.Rand) string {
	const chars = `abcXYZ019 -_/"\é<>&` + "\x00\n\xff"
	n := r.IntN(8)
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[r.IntN(len(chars))]
	}
	return string(b)
}

func randID(r *rand.Rand) cluster.LockID {
	if r.IntN(3) == 0 {
		return cluster.LockID{}
	}
	return cluster.LockID{Member: randString(r), N: r.Uint64() >> r.IntN(64)}
}

func randBytes(r *rand.Rand) []byte {
	if r.IntN(3) == 0 {
		return nil
	}
	b := make([]byte, r.IntN(70))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Frames written by the encoders read back the same through the fast
// decoders and through encoding/json.
func TestCodecRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var cf ClientFrame
		for range r.IntN(4) {
			cf.Requests = append(cf.Requests, Request{Tag: r.Uint64(), Op: randString(r), Lock: randID(r), Lockspace: randString(r),
				Name: randString(r), Parent: randID(r), Mode: randString(r), Flags: uint16(r.Uint32()), Value: randBytes(r)})
		}
		var sf ServerFrame
		for range r.IntN(4) {
			sf.Messages = append(sf.Messages, Message{Tag: r.Uint64(), Event: randString(r), Lock: randID(r), Mode: randString(r),
				Token: r.Uint64(), Blocked: randID(r), ValBlk: r.IntN(2) == 0, Valid: r.IntN(2) == 0, Value: randBytes(r),
				Op: randString(r), Err: randString(r), Msg: randString(r), Session: randString(r)})
		}
		cb, _ := Codec{}.Marshal(&cf)
		sb, _ := Codec{}.Marshal(&sf)
		var viaJSON ClientFrame
		if err := json.Unmarshal(cb, &viaJSON); err != nil {
			t.Fatalf("encoding/json cannot read %s: %v", cb, err)
		}
		var viaCodec ClientFrame
		if err := (Codec{}).Unmarshal(cb, &viaCodec); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(viaJSON, viaCodec) {
			t.Fatalf("%s:\nencoding/json %+v\ncodec         %+v", cb, viaJSON, viaCodec)
		}
		var sJSON, sCodec ServerFrame
		if err := json.Unmarshal(sb, &sJSON); err != nil {
			t.Fatalf("encoding/json cannot read %s: %v", sb, err)
		}
		if err := (Codec{}).Unmarshal(sb, &sCodec); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(sJSON, sCodec) {
			t.Fatalf("%s:\nencoding/json %+v\ncodec         %+v", sb, sJSON, sCodec)
		}
		// What the encoders write is what encoding/json writes, read back.
		want, _ := json.Marshal(&viaJSON)
		var again ClientFrame
		json.Unmarshal(want, &again)
		if !reflect.DeepEqual(again, viaJSON) {
			t.Fatalf("%s does not mean what %s means", cb, want)
		}
	}
}

// seeds are frames for the fuzz targets.
var seeds = []string{
	`{"reqs":[{"tag":1,"op":"enqueue","lockspace":"default","name":"r1","mode":"EX","flags":1}]}`,
	`{"reqs":[{"tag":2,"op":"convert","lock":{"m":"m1","n":7},"mode":"NL","flags":32,"value":"aGVsbG8="}]}`,
	`{"reqs":[{"tag":3,"op":"unlock","lock":{"m":"m1","n":7}},{"tag":4,"op":"cancel","lock":{"m":"m1","n":8}}]}`,
	`{"reqs":[{"tag":5,"op":"enqueue","lockspace":"a","name":"b","parent":{"m":"m1","n":1},"mode":"NL","flags":8}]}`,
	` { "reqs" : [ ] } `,
	`{"reqs":[{"TAG":1,"Op":"cancel","lock":{"m":"m1","n":1}}]}`,
	`{"reqs":[{"tag":1,"op":"enq\u0075eue","name":"\u00e9","lockspace":"x","mode":"PR"}]}`,
	`{"reqs":[{"tag":1e3}],"reqs":null}`,
	`{"msgs":[{"tag":1,"lock":{"m":"m1","n":2}},{"event":"granted","lock":{"m":"m1","n":2},"mode":"EX","token":9,"valblk":true,"valid":true,"value":"AAAA"}]}`,
	`{"msgs":[{"event":"refused","lock":{"m":"m1","n":2},"op":"unlock","err":"has-children","msg":"lock has sub-locks"}]}`,
}

// FuzzDecodeRequests: whatever a client sends, decoding and checking
// neither panics nor lets through a request outside the limits, and the
// fast decoder never disagrees with encoding/json.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast ClientFrame
		fastErr := decodeClientFrame(b, &fast)
		var slow ClientFrame
		slowErr := json.Unmarshal(b, &slow)
		if fastErr == nil {
			if slowErr != nil {
				t.Fatalf("fast decoder took %q, encoding/json refuses it: %v", b, slowErr)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q:\nfast %+v\njson %+v", b, fast, slow)
			}
		}
		frame, err := DecodeFrame(b)
		// Into a frame that held other requests, the same frame.
		reused := ClientFrame{Requests: []Request{{Tag: 9, Op: OpEnqueue, Lockspace: "x", Name: "y", Mode: "EX", Flags: 0x20, Value: []byte("v"), Lock: cluster.LockID{Member: "m9", N: 9}}}}
		reusedErr := DecodeFrameInto(b, &reused)
		if (err == nil) != (reusedErr == nil) || err == nil && !reflect.DeepEqual(*frame, reused) {
			t.Fatalf("%q: decoded into a used frame %+v (%v), into a new one %+v (%v)", b, reused, reusedErr, frame, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(frame.Requests) > MaxRequests {
			t.Fatalf("%d requests let through", len(frame.Requests))
		}
		for i := range frame.Requests {
			r := &frame.Requests[i]
			op, err := r.Check()
			if err != nil {
				if !strings.HasPrefix(err.Error(), "request ") {
					t.Fatalf("error %q does not name the request", err)
				}
				continue
			}
			switch {
			case r.Tag == 0:
				t.Fatalf("tag 0 let through: %+v", r)
			case op.Kind == cluster.OpEnqueue && (len(op.Ls) == 0 || len(op.Ls) > dlm.MaxNameLen || len(op.Name) == 0 || len(op.Name) > dlm.MaxNameLen):
				t.Fatalf("bad names let through: %+v", r)
			case op.Kind != cluster.OpEnqueue && (op.Lock.Member == "" || op.Lock.N == 0):
				t.Fatalf("no lock let through: %+v", r)
			case !op.Mode.Valid():
				t.Fatalf("bad mode let through: %+v", r)
			case op.Flags&dlm.Convert != 0:
				t.Fatalf("Convert flag let through: %+v", r)
			case op.Value != nil && op.Flags&dlm.ValBlk == 0:
				t.Fatalf("value without ValBlk let through: %+v", r)
			}
		}
	})
}

// FuzzDecodeMessages: the client's decoder of the server's frames agrees
// with encoding/json.
func FuzzDecodeMessages(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast ServerFrame
		if decodeServerFrame(b, &fast) != nil {
			return
		}
		var slow ServerFrame
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast decoder took %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %+v\njson %+v", b, fast, slow)
		}
		// Into a frame that held other messages, the same frame.
		reused := ServerFrame{Messages: []Message{{Tag: 3, Event: EventGranted, Lock: cluster.LockID{Member: "m9", N: 9}, Mode: "EX", Token: 4, ValBlk: true, Valid: true, Value: []byte("v"), Msg: "x"}}}
		if err := (Codec{}).Unmarshal(b, &reused); err != nil || !reflect.DeepEqual(fast, reused) {
			t.Fatalf("%q: decoded into a used frame %+v (%v), into a new one %+v", b, reused, err, fast)
		}
	})
}

func TestEventMessage(t *testing.T) {
	id := cluster.LockID{Member: "m1", N: 4}
	var v dlm.Value
	v[0] = 7
	m := EventMessage(cluster.Event{Kind: cluster.EventGranted, Lock: id, Mode: dlm.PW, Token: 12, ValBlk: true, ValueValid: true, Value: v})
	if m.Event != EventGranted || m.Lock != id || m.Mode != "PW" || m.Token != 12 || !m.ValBlk || !m.Valid || len(m.Value) != 64 || m.Value[0] != 7 {
		t.Errorf("granted: %+v", m)
	}
	m = EventMessage(cluster.Event{Kind: cluster.EventRefused, Lock: id, Op: cluster.OpUnlock,
		Err: &cluster.Error{Op: "unlock", Kind: dlm.ErrHasChildren, Msg: "lock has sub-locks"}})
	if m.Event != EventRefused || m.Op != OpUnlock || m.Err != KindHasChildren || m.Msg != "lock has sub-locks" {
		t.Errorf("refused: %+v", m)
	}
	m = EventMessage(cluster.Event{Kind: cluster.EventBlocking, Lock: id, Blocked: cluster.LockID{Member: "m2", N: 1}, Mode: dlm.EX})
	if m.Event != EventBlocking || m.Blocked.Member != "m2" || m.Mode != "EX" {
		t.Errorf("blocking: %+v", m)
	}
}
