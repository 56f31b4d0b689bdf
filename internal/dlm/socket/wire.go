package socket

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/server"
)

// File is the name of the socket in the agent's data dir.
const File = "dlm.sock"

// The gRPC service: one bidirectional stream per session.
const (
	ServiceName = "vigil.DLM"
	// Method is the full name of the Session stream.
	Method = "/" + ServiceName + "/Session"
)

// Limits of the wire.
const (
	// MaxRequests bounds the requests of one ClientFrame.
	MaxRequests = 4096
	// MaxMessages bounds the messages of one ServerFrame.
	MaxMessages = 1024
	// MaxFrame bounds an encoded frame in bytes, either way.
	MaxFrame = 4 << 20
	// MaxPending bounds the messages queued for one session that its
	// client has not read yet. Beyond it the session ends.
	MaxPending = 1_000_000
)

// The operations of a Request.
const (
	OpEnqueue = "enqueue" // a new lock
	OpConvert = "convert" // a conversion of the granted lock Lock
	OpUnlock  = "unlock"  // release Lock (or cancel it while it waits)
	OpCancel  = "cancel"  // cancel the waiting request or conversion of Lock
)

// Request is one operation of a client. Tag is the client's number for
// it (from 1), repeated in the answer.
type Request struct {
	Tag uint64 `json:"tag"`
	Op  string `json:"op"`
	// Lock: the lock to convert, unlock or cancel.
	Lock cluster.LockID `json:"lock,omitzero"`
	// Lockspace, Name and Parent name the resource of an enqueue: a root
	// resource, or with Parent the sub-resource Name of the parent lock's.
	Lockspace string         `json:"lockspace,omitempty"`
	Name      string         `json:"name,omitempty"`
	Parent    cluster.LockID `json:"parent,omitzero"`
	// Mode: NL, CR, CW, PR, PW or EX (enqueue, convert).
	Mode string `json:"mode,omitempty"`
	// Flags: the bits of dlm.Flags: NoQueue 0x1, QueCvt 0x4 (convert),
	// Expedite 0x8 (enqueue NL), NoDlckWt 0x10, ValBlk 0x20 (unlock:
	// the only one), NoBlock 0x40. Convert 0x2 is the op's.
	Flags uint16 `json:"flags,omitempty"`
	// Value: the value block a PW or EX holder writes (convert, unlock,
	// with ValBlk): up to 64 bytes, padded with zeros.
	Value []byte `json:"value,omitempty"`
}

// ClientFrame is what a client sends: requests, answered in order.
type ClientFrame struct {
	Requests []Request `json:"reqs"`
}

// The events of a Message.
const (
	EventOpen      = "open" // the first message of a session: Session is its owner
	EventGranted   = "granted"
	EventNotQueued = "not-queued"
	EventCanceled  = "canceled"
	EventDeadlock  = "deadlock"
	EventBlocking  = "blocking"
	EventRefused   = "refused"
	EventLost      = "lost"
)

// Message is what the server sends: the answer to a request (Event empty)
// or an event. Messages come in the order the server made them; the
// answer to an enqueue comes before any event of its lock.
type Message struct {
	// Tag is the request answered (answers only).
	Tag   uint64 `json:"tag,omitempty"`
	Event string `json:"event,omitempty"`
	// Lock: the new lock (answer to an enqueue), or the event's lock.
	Lock cluster.LockID `json:"lock,omitzero"`
	// Mode: the mode granted (granted), wanted by the blocked request
	// (blocking), or requested (other completions).
	Mode  string `json:"mode,omitempty"`
	Token uint64 `json:"token,omitempty"`
	// Blocked is the waiting lock that Lock blocks (blocking).
	Blocked cluster.LockID `json:"blocked,omitzero"`
	// ValBlk: the grant reports the value block: Value (64 bytes) and
	// Valid.
	ValBlk bool   `json:"valblk,omitempty"`
	Valid  bool   `json:"valid,omitempty"`
	Value  []byte `json:"value,omitempty"`
	// Op is the refused operation (refused).
	Op string `json:"op,omitempty"`
	// Err is the kind of error of a refused answer, refused or lost
	// event (one of the Kind* names) and Msg the reason.
	Err string `json:"err,omitempty"`
	Msg string `json:"msg,omitempty"`
	// Session is the owner of the session's locks, "member/n" (open).
	Session string `json:"session,omitempty"`
}

// ServerFrame is what the server sends.
type ServerFrame struct {
	Messages []Message `json:"msgs"`
}

// The kinds of error on the wire (Message.Err).
const (
	KindInvalid         = "invalid"
	KindUnknownLock     = "unknown-lock"
	KindUnknownResource = "unknown-resource"
	KindWrongState      = "wrong-state"
	KindHasChildren     = "has-children"
	KindLimit           = "limit"
	KindNotMaster       = "not-master"
	KindBusy            = "busy"
	KindNotMember       = "not-member"
	KindRecovering      = "recovering"
	KindLost            = "lost"
	KindClosed          = "closed"
)

var kinds = []struct {
	name string
	err  error
}{
	{KindInvalid, dlm.ErrInvalid},
	{KindUnknownLock, dlm.ErrUnknownLock},
	{KindUnknownResource, dlm.ErrUnknownResource},
	{KindWrongState, dlm.ErrWrongState},
	{KindHasChildren, dlm.ErrHasChildren},
	{KindLimit, dlm.ErrLimit},
	{KindNotMaster, cluster.ErrNotMaster},
	{KindBusy, cluster.ErrBusy},
	{KindNotMember, cluster.ErrNotMember},
	{KindRecovering, cluster.ErrRecovering},
	{KindLost, server.ErrLost},
	{KindClosed, server.ErrClosed},
}

// Kind returns the wire name of err's kind (KindInvalid when it has none
// of the lock manager's).
func Kind(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return KindInvalid
}

// Reason returns what err says, without the "dlm op: " prefix of the lock
// manager's errors.
func Reason(err error) string {
	var ce *cluster.Error
	if errors.As(err, &ce) {
		return ce.Msg
	}
	var de *dlm.Error
	if errors.As(err, &de) {
		return de.Msg
	}
	return err.Error()
}

var modeNames = [dlm.NumModes]string{"NL", "CR", "CW", "PR", "PW", "EX"}

// ModeName returns the wire name of a mode.
func ModeName(m dlm.Mode) string {
	if m.Valid() {
		return modeNames[m]
	}
	return ""
}

// ParseMode parses a wire mode name (exactly "NL" ... "EX").
func ParseMode(s string) (dlm.Mode, bool) {
	for i, n := range modeNames {
		if s == n {
			return dlm.Mode(i), true
		}
	}
	return 0, false
}

var opNames = map[cluster.OpKind]string{
	cluster.OpEnqueue: OpEnqueue, cluster.OpConvert: OpConvert,
	cluster.OpUnlock: OpUnlock, cluster.OpCancel: OpCancel,
}

// Op is a Request checked and decoded: what the server calls.
type Op struct {
	Kind   cluster.OpKind
	Lock   cluster.LockID
	Ls     string
	Name   string
	Parent cluster.LockID
	Mode   dlm.Mode
	Flags  dlm.Flags
	Value  *dlm.Value
}

const (
	enqueueFlags = dlm.NoQueue | dlm.Expedite | dlm.NoDlckWt | dlm.ValBlk | dlm.NoBlock
	convertFlags = dlm.NoQueue | dlm.QueCvt | dlm.NoDlckWt | dlm.ValBlk | dlm.NoBlock
	unlockFlags  = dlm.ValBlk
)

// Check validates every field of a request and returns the operation. An
// error names the field, what is wrong and what to send instead.
func (r *Request) Check() (Op, error) {
	var op Op
	bad := func(format string, args ...any) (Op, error) {
		return Op{}, fmt.Errorf("request %d (%s): %s", r.Tag, r.Op, fmt.Sprintf(format, args...))
	}
	if r.Tag == 0 {
		return bad("tag is 0: number the requests of a session from 1")
	}
	var allowed dlm.Flags
	switch r.Op {
	case OpEnqueue:
		op.Kind, allowed = cluster.OpEnqueue, enqueueFlags
	case OpConvert:
		op.Kind, allowed = cluster.OpConvert, convertFlags
	case OpUnlock:
		op.Kind, allowed = cluster.OpUnlock, unlockFlags
	case OpCancel:
		op.Kind = cluster.OpCancel
	default:
		return bad("op %s is unknown: use enqueue, convert, unlock or cancel", strconv.Quote(clip(r.Op)))
	}
	if op.Kind == cluster.OpEnqueue {
		switch {
		case !r.Lock.IsZero():
			return bad("lock is set: an enqueue makes a new lock; to change a lock use op convert")
		case len(r.Lockspace) == 0 || len(r.Lockspace) > dlm.MaxNameLen:
			return bad("lockspace is %d bytes long: give 1 to %d bytes", len(r.Lockspace), dlm.MaxNameLen)
		case len(r.Name) == 0 || len(r.Name) > dlm.MaxNameLen:
			return bad("name is %d bytes long: give 1 to %d bytes", len(r.Name), dlm.MaxNameLen)
		}
		if err := checkID(r.Parent, "parent", true); err != nil {
			return bad("%v", err)
		}
		op.Ls, op.Name, op.Parent = r.Lockspace, r.Name, r.Parent
	} else {
		switch {
		case r.Lockspace != "" || r.Name != "":
			return bad("lockspace and name are only for an enqueue: a %s names the lock alone", r.Op)
		case !r.Parent.IsZero():
			return bad("parent is only for an enqueue")
		}
		if err := checkID(r.Lock, "lock", false); err != nil {
			return bad("%v", err)
		}
		op.Lock = r.Lock
	}
	switch op.Kind {
	case cluster.OpEnqueue, cluster.OpConvert:
		m, ok := ParseMode(r.Mode)
		if !ok {
			return bad("mode %s is unknown: use NL, CR, CW, PR, PW or EX", strconv.Quote(clip(r.Mode)))
		}
		op.Mode = m
	default:
		if r.Mode != "" {
			return bad("mode is only for an enqueue or a convert")
		}
	}
	f := dlm.Flags(r.Flags)
	switch {
	case f&dlm.Convert != 0:
		return bad("flags have Convert (0x2): send op convert instead")
	case f&^allowed != 0:
		return bad("flags %#x are not valid for %s: it takes %s", uint16(f&^allowed), r.Op, flagList(allowed))
	case f&dlm.Expedite != 0 && op.Mode != dlm.NL:
		return bad("flag Expedite is only for a new NL request, not %v", op.Mode)
	}
	op.Flags = f
	if r.Value != nil {
		switch {
		case op.Kind != cluster.OpConvert && op.Kind != cluster.OpUnlock:
			return bad("value is only written by a convert or an unlock from PW or EX")
		case len(r.Value) > dlm.ValueSize:
			return bad("value is %d bytes: a value block holds at most %d", len(r.Value), dlm.ValueSize)
		case f&dlm.ValBlk == 0:
			return bad("value is set without flag ValBlk (0x20): set ValBlk to write the value block")
		}
		var v dlm.Value
		copy(v[:], r.Value)
		op.Value = &v
	}
	return op, nil
}

func checkID(id cluster.LockID, field string, optional bool) error {
	switch {
	case id.IsZero() && optional:
		return nil
	case id.IsZero():
		return fmt.Errorf("%s is missing: give the lock id the enqueue was answered with", field)
	case id.Member == "" || len(id.Member) > 255:
		return fmt.Errorf("%s %v has a member name of %d bytes: give the lock id the enqueue was answered with", field, clip(id.String()), len(id.Member))
	case id.N == 0:
		return fmt.Errorf("%s %v has number 0: give the lock id the enqueue was answered with", field, clip(id.String()))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func flagList(f dlm.Flags) string {
	if f == 0 {
		return "none"
	}
	return f.String()
}

// EventMessage is the message of a session event.
func EventMessage(ev cluster.Event) Message {
	m := Message{Lock: ev.Lock, Mode: ModeName(ev.Mode), Token: ev.Token}
	switch ev.Kind {
	case cluster.EventGranted:
		m.Event = EventGranted
		if ev.ValBlk {
			m.ValBlk, m.Valid = true, ev.ValueValid
			m.Value = append([]byte(nil), ev.Value[:]...)
		}
	case cluster.EventNotQueued:
		m.Event = EventNotQueued
	case cluster.EventCanceled:
		m.Event = EventCanceled
	case cluster.EventDeadlock:
		m.Event = EventDeadlock
	case cluster.EventBlocking:
		m.Event, m.Blocked = EventBlocking, ev.Blocked
	case cluster.EventRefused:
		m.Event, m.Op = EventRefused, opNames[ev.Op]
	case cluster.EventLost:
		m.Event = EventLost
	default:
		m.Event = "event-" + strconv.Itoa(int(ev.Kind))
	}
	if ev.Err != nil {
		m.Err, m.Msg = Kind(ev.Err), Reason(ev.Err)
	}
	return m
}
