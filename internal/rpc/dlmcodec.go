package rpc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
)

// The binary frames of ProtoDLM2. JSON (ProtoDLM) cost about a third of
// the CPU of a remote lock, and a fifth of its time in one process; this
// encoding is a plain walk of the same structs: unsigned varints, strings
// and byte lists with a varint length, one byte for small enums and flag
// sets. The recovery fields of a message (Records, Values, Dropped), sent a
// few times per view change, travel as JSON inside it.

// Message field flags.
const (
	mfOp = 1 << iota
	mfReply
	mfRoot
	mfMore
	mfRecovery
)

// Event and state flag bits.
const (
	efValBlk = 1 << iota
	efValueValid
	efValue
)

const sfGone = 1

type encoder struct{ b []byte }

func (e *encoder) uv(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) byte1(v uint8) { e.b = append(e.b, v) }
func (e *encoder) str(s string)  { e.uv(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) id(id cluster.LockID) {
	e.str(id.Member)
	e.uv(id.N)
}
func (e *encoder) owner(o dlm.OwnerID) {
	e.str(o.Member)
	e.uv(o.Client)
}
func (e *encoder) value(v *dlm.Value) {
	if v == nil {
		e.byte1(0)
		return
	}
	e.byte1(1)
	e.b = append(e.b, v[:]...)
}
func (e *encoder) roots(rs []cluster.Root) {
	e.uv(uint64(len(rs)))
	for _, r := range rs {
		e.str(r.Lockspace)
		e.str(r.Name)
	}
}

// recoveryPart is the JSON part of a message.
type recoveryPart struct {
	Records []cluster.LockRecord    `json:"rc,omitempty"`
	Values  []cluster.ResourceValue `json:"va,omitempty"`
	Dropped []cluster.Root          `json:"dr,omitempty"`
}

// appendBatch appends the binary encoding of b.
func appendBatch(dst []byte, b *server.Batch) ([]byte, error) {
	e := encoder{dst}
	e.str(b.From)
	e.uv(b.FromInc)
	e.str(b.To)
	e.uv(b.ToInc)
	e.uv(b.Stream)
	e.uv(b.Seq)
	e.uv(uint64(len(b.Msgs)))
	for i := range b.Msgs {
		if err := e.message(&b.Msgs[i]); err != nil {
			return nil, err
		}
	}
	return e.b, nil
}

func (e *encoder) message(m *cluster.Message) error {
	var f uint8
	if m.Op != nil {
		f |= mfOp
	}
	if m.Reply != nil {
		f |= mfReply
	}
	if m.Root != nil {
		f |= mfRoot
	}
	if m.More {
		f |= mfMore
	}
	rec := len(m.Records) > 0 || len(m.Values) > 0 || len(m.Dropped) > 0
	if rec {
		f |= mfRecovery
	}
	e.byte1(uint8(m.Kind))
	e.byte1(f)
	e.uv(m.View)
	e.uv(m.Floor)
	e.uv(m.Count)
	if op := m.Op; op != nil {
		e.byte1(uint8(op.Kind))
		e.uv(op.Req)
		e.id(op.Lock)
		e.str(op.Lockspace)
		e.uv(uint64(len(op.Path)))
		for _, p := range op.Path {
			e.str(p)
		}
		e.id(op.Parent)
		e.owner(op.Owner)
		e.byte1(uint8(op.Mode))
		e.uv(uint64(op.Flags))
		e.value(op.Value)
		e.roots(op.Roots)
	}
	if r := m.Reply; r != nil {
		e.uv(r.Req)
		e.str(r.Err)
		e.str(r.Msg)
		e.roots(r.Roots)
	}
	e.uv(uint64(len(m.Events)))
	for i := range m.Events {
		ev := &m.Events[i]
		var ef uint8
		if ev.ValBlk {
			ef |= efValBlk
		}
		if ev.ValueValid {
			ef |= efValueValid
		}
		if ev.Value != (dlm.Value{}) {
			ef |= efValue
		}
		e.byte1(uint8(ev.Kind))
		e.byte1(ef)
		e.id(ev.Lock)
		e.owner(ev.Owner)
		e.byte1(uint8(ev.Mode))
		e.uv(ev.Token)
		e.id(ev.Blocked)
		e.byte1(uint8(ev.Op))
		if ef&efValue != 0 {
			e.b = append(e.b, ev.Value[:]...)
		}
	}
	e.uv(uint64(len(m.States)))
	for i := range m.States {
		s := &m.States[i]
		var sf uint8
		if s.Gone {
			sf |= sfGone
		}
		e.id(s.Lock)
		e.byte1(sf)
		e.byte1(uint8(s.Queue))
		e.byte1(uint8(s.Granted))
		e.byte1(uint8(s.Requested))
		e.uv(uint64(s.Flags))
		e.uv(s.Seq)
		e.value(s.PendingValue)
	}
	if m.Root != nil {
		e.str(m.Root.Lockspace)
		e.str(m.Root.Name)
	}
	if rec {
		j, err := json.Marshal(recoveryPart{m.Records, m.Values, m.Dropped})
		if err != nil {
			return err
		}
		e.str(string(j))
	}
	return nil
}

func appendAck(dst []byte, a *server.Ack) []byte {
	e := encoder{dst}
	e.uv(a.Seq)
	e.byte1(uint8(a.Code))
	e.str(a.Msg)
	return e.b
}

var errShort = errors.New("truncated")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) uv() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("a number is %w", errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("a byte is %w", errShort)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%d bytes announced, %d left: %w", n, len(d.b), errShort)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes(d.uv())) }

// count reads a list length, at most what the rest of the frame can hold
// at min bytes an item.
func (d *decoder) count(min int) int {
	n := d.uv()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.fail("a list of %d items in %d bytes: %w", n, len(d.b), errShort)
		return 0
	}
	return int(n)
}

func (d *decoder) id() cluster.LockID {
	m := d.str()
	return cluster.LockID{Member: m, N: d.uv()}
}

func (d *decoder) owner() dlm.OwnerID {
	m := d.str()
	return dlm.OwnerID{Member: m, Client: d.uv()}
}

func (d *decoder) value() *dlm.Value {
	switch d.byte1() {
	case 0:
		return nil
	case 1:
		var v dlm.Value
		copy(v[:], d.bytes(dlm.ValueSize))
		return &v
	}
	d.fail("a value block marker is neither 0 nor 1")
	return nil
}

func (d *decoder) roots() []cluster.Root {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	rs := make([]cluster.Root, n)
	for i := range rs {
		rs[i].Lockspace = d.str()
		rs[i].Name = d.str()
	}
	return rs
}

// decodeBatch decodes a ProtoDLM2 batch frame.
func decodeBatch(b []byte, out *server.Batch) error {
	d := decoder{b: b}
	out.From = d.str()
	out.FromInc = d.uv()
	out.To = d.str()
	out.ToInc = d.uv()
	out.Stream = d.uv()
	out.Seq = d.uv()
	n := d.count(7)
	if n > 0 {
		out.Msgs = make([]cluster.Message, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		d.message(&out.Msgs[i])
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes after the batch", len(d.b))
	}
	return d.err
}

func (d *decoder) message(m *cluster.Message) {
	m.Kind = cluster.MessageKind(d.byte1())
	f := d.byte1()
	m.View = d.uv()
	m.Floor = d.uv()
	m.Count = d.uv()
	m.More = f&mfMore != 0
	if f&mfOp != 0 {
		op := &cluster.Op{}
		op.Kind = cluster.OpKind(d.byte1())
		op.Req = d.uv()
		op.Lock = d.id()
		op.Lockspace = d.str()
		if n := d.count(1); n > 0 {
			op.Path = make([]string, n)
			for i := range op.Path {
				op.Path[i] = d.str()
			}
		}
		op.Parent = d.id()
		op.Owner = d.owner()
		op.Mode = dlm.Mode(d.byte1())
		op.Flags = dlm.Flags(d.uv())
		op.Value = d.value()
		op.Roots = d.roots()
		m.Op = op
	}
	if f&mfReply != 0 {
		r := &cluster.Reply{}
		r.Req = d.uv()
		r.Err = d.str()
		r.Msg = d.str()
		r.Roots = d.roots()
		m.Reply = r
	}
	if n := d.count(9); n > 0 {
		m.Events = make([]cluster.Event, n)
		for i := 0; i < n && d.err == nil; i++ {
			ev := &m.Events[i]
			ev.Kind = cluster.EventKind(d.byte1())
			ef := d.byte1()
			ev.Lock = d.id()
			ev.Owner = d.owner()
			ev.Mode = dlm.Mode(d.byte1())
			ev.Token = d.uv()
			ev.Blocked = d.id()
			ev.Op = cluster.OpKind(d.byte1())
			ev.ValBlk, ev.ValueValid = ef&efValBlk != 0, ef&efValueValid != 0
			if ef&efValue != 0 {
				copy(ev.Value[:], d.bytes(dlm.ValueSize))
			}
		}
	}
	if n := d.count(9); n > 0 {
		m.States = make([]cluster.LockState, n)
		for i := 0; i < n && d.err == nil; i++ {
			s := &m.States[i]
			s.Lock = d.id()
			sf := d.byte1()
			s.Gone = sf&sfGone != 0
			s.Queue = dlm.Queue(d.byte1())
			s.Granted = dlm.Mode(d.byte1())
			s.Requested = dlm.Mode(d.byte1())
			s.Flags = dlm.Flags(d.uv())
			s.Seq = d.uv()
			s.PendingValue = d.value()
		}
	}
	if f&mfRoot != 0 {
		ls := d.str()
		m.Root = &cluster.Root{Lockspace: ls, Name: d.str()}
	}
	if f&mfRecovery != 0 {
		j := d.bytes(d.uv())
		if d.err != nil {
			return
		}
		var rp recoveryPart
		if err := json.Unmarshal(j, &rp); err != nil {
			d.fail("the recovery part does not decode: %v", err)
			return
		}
		m.Records, m.Values, m.Dropped = rp.Records, rp.Values, rp.Dropped
	}
}

// decodeAck decodes a ProtoDLM2 ack frame.
func decodeAck(b []byte, out *server.Ack) error {
	d := decoder{b: b}
	out.Seq = d.uv()
	out.Code = server.AckCode(d.byte1())
	out.Msg = d.str()
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes after the ack", len(d.b))
	}
	return d.err
}
