package cluster

import (
	"strconv"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// LockID names a lock in the whole cluster: the member whose client
// created it and that member's counter. It does not change when the
// resource moves to another master (each master keeps its own engine ids
// and a map). The zero LockID is no lock.
type LockID struct {
	Member string `json:"m"`
	N      uint64 `json:"n"`
}

// IsZero reports whether id is the zero LockID.
func (id LockID) IsZero() bool { return id.N == 0 && id.Member == "" }

// String returns "member#n".
func (id LockID) String() string { return id.Member + "#" + strconv.FormatUint(id.N, 10) }

func compareID(a, b LockID) int {
	if a.Member != b.Member {
		if a.Member < b.Member {
			return -1
		}
		return 1
	}
	switch {
	case a.N < b.N:
		return -1
	case a.N > b.N:
		return 1
	}
	return 0
}

// Request is one $ENQ by a client of this member: a new lock, or with the
// Convert flag a conversion of the lock Lock. The fields mean what they mean
// in dlm.Request; Parent and Lock are cluster lock ids.
type Request struct {
	Lockspace string
	Name      string
	Parent    LockID
	Owner     dlm.OwnerID
	Mode      dlm.Mode
	Flags     dlm.Flags
	Lock      LockID
	Value     *dlm.Value
}

// EventKind says what an Event reports. The first five are dlm's.
type EventKind uint8

// The events. Granted, NotQueued, Canceled and Deadlock are completions,
// Blocking is a blocking notification, as in package dlm.
const (
	EventGranted   = EventKind(dlm.EventGranted)
	EventNotQueued = EventKind(dlm.EventNotQueued)
	EventCanceled  = EventKind(dlm.EventCanceled)
	EventDeadlock  = EventKind(dlm.EventDeadlock)
	EventBlocking  = EventKind(dlm.EventBlocking)
	// EventRefused: the master refused the operation Op on Lock (Err says
	// why); nothing changed. For a new request it is its completion.
	EventRefused EventKind = 16
	// EventLost: the lock is gone without its owner's doing: this member
	// left the view (Err is ErrNotMember).
	EventLost EventKind = 17
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventRefused:
		return "refused"
	case EventLost:
		return "lost"
	}
	return dlm.EventKind(k).String()
}

// Event is a notification for one client (Owner) of a member. On the wire
// (Message.Events) only the first five kinds travel, without Err.
type Event struct {
	Kind  EventKind   `json:"k"`
	Lock  LockID      `json:"l"`
	Owner dlm.OwnerID `json:"o"`
	// Mode: as in dlm.Event; for EventRefused the mode of the request.
	Mode    dlm.Mode `json:"md,omitempty"`
	Token   uint64   `json:"t,omitempty"`
	Blocked LockID   `json:"b,omitzero"`
	// ValBlk: the grant reports the value block (the request had ValBlk):
	// Value and ValueValid are set.
	ValBlk     bool      `json:"vb,omitempty"`
	ValueValid bool      `json:"vv,omitempty"`
	Value      dlm.Value `json:"v,omitzero"`
	// Op is the refused operation (EventRefused).
	Op  OpKind `json:"op,omitempty"`
	Err error  `json:"-"`
}

// OpKind is the kind of a client operation.
type OpKind uint8

// The operations a member sends to a master.
const (
	OpEnqueue OpKind = iota + 1 // a new lock
	OpConvert                   // a conversion
	OpUnlock
	OpCancel
	OpPurge    // PurgeOwner: the client disconnected
	OpDeadlock // abort a deadlock victim's request (no reply)
)

var opNames = [...]string{"", "enqueue", "convert", "unlock", "cancel", "disconnect", "deadlock"}

// String returns the operation's name.
func (k OpKind) String() string {
	if int(k) < len(opNames) && k != 0 {
		return opNames[k]
	}
	return "OpKind(" + strconv.Itoa(int(k)) + ")"
}

// Op is one client operation sent to the master of its resource.
type Op struct {
	Kind OpKind `json:"k"`
	// Req numbers the requests of the sending member; the reply carries it.
	// 0: no reply (OpDeadlock).
	Req  uint64 `json:"r,omitempty"`
	Lock LockID `json:"l,omitzero"`
	// Lockspace and Path name the resource (root first): the master checks
	// that it masters the root. Empty for OpPurge and OpDeadlock.
	Lockspace string      `json:"ls,omitempty"`
	Path      []string    `json:"p,omitempty"`
	Parent    LockID      `json:"pa,omitzero"`
	Owner     dlm.OwnerID `json:"o"`
	Mode      dlm.Mode    `json:"md,omitempty"`
	Flags     dlm.Flags   `json:"f,omitempty"`
	Value     *dlm.Value  `json:"v,omitempty"`
	// Roots: OpPurge: the roots of the owner's locks that the receiver
	// masters or routes (a hash master forwards the purge to the members
	// it handed some of them to).
	Roots []Root `json:"rt,omitempty"`
}

func (op *Op) root() string { return op.Path[0] }

// Reply answers one request: Err is "" when the master accepted it,
// otherwise the error kind ("invalid", "unknown-lock", "wrong-state",
// "has-children", "limit", "not-master", "busy") and Msg the reason.
type Reply struct {
	Req uint64 `json:"r"`
	Err string `json:"e,omitempty"`
	Msg string `json:"m,omitempty"`
	// Roots: the roots of an OpPurge this reply covers (a purge can be
	// carried out in parts, by a hash master and the members it handed
	// roots to; each part answers for its roots).
	Roots []Root `json:"rt,omitempty"`
}

// LockState is a lock as its master holds it after an operation, sent to
// the member of its owner, which keeps a copy (to rebuild the lock on a new
// master). Gone: the lock no longer exists.
type LockState struct {
	Lock         LockID     `json:"l"`
	Gone         bool       `json:"g,omitempty"`
	Queue        dlm.Queue  `json:"q,omitempty"`
	Granted      dlm.Mode   `json:"gm,omitempty"`
	Requested    dlm.Mode   `json:"rm,omitempty"`
	Flags        dlm.Flags  `json:"f,omitempty"`
	Seq          uint64     `json:"s,omitempty"`
	PendingValue *dlm.Value `json:"pv,omitempty"`
}

// LockRecord is one lock of a member's client, sent in recovery to the new
// master of its resource, with what the owner knows: its queue, modes,
// flags and sequence number at the old master, and the last value block and
// token it saw.
type LockRecord struct {
	Lock         LockID      `json:"l"`
	Lockspace    string      `json:"ls"`
	Path         []string    `json:"p"`
	Parent       LockID      `json:"pa,omitzero"`
	Owner        dlm.OwnerID `json:"o"`
	Queue        dlm.Queue   `json:"q"`
	Granted      dlm.Mode    `json:"gm,omitempty"`
	Requested    dlm.Mode    `json:"rm,omitempty"`
	Flags        dlm.Flags   `json:"f,omitempty"`
	Seq          uint64      `json:"s,omitempty"`
	PendingValue *dlm.Value  `json:"pv,omitempty"`
	// Token is the last fencing token the owner saw for the lock.
	Token uint64 `json:"t,omitempty"`
	// Vouch: the owner certainly holds PW or EX, and Value is the value
	// block it saw valid at its grant: nobody can have written since.
	Vouch bool      `json:"vo,omitempty"`
	Value dlm.Value `json:"v,omitzero"`
}

// ResourceValue is the value block and last token of one resource, sent by
// the old master that still holds it to its new master.
type ResourceValue struct {
	Lockspace string    `json:"ls"`
	Path      []string  `json:"p"`
	Value     dlm.Value `json:"v,omitzero"`
	Valid     bool      `json:"ok,omitempty"`
	Token     uint64    `json:"t,omitempty"`
}

// Root names a root resource.
type Root struct {
	Lockspace string `json:"ls"`
	Name      string `json:"n"`
}

// MessageKind is the kind of a Message.
type MessageKind uint8

// The messages between members.
const (
	// MsgRequest: a client operation (Op) for the master of its resource.
	MsgRequest MessageKind = iota + 1
	// MsgUpdate: from a master to the member of the clients concerned:
	// the Reply to one of its requests, Events for its clients and the new
	// States of its clients' locks.
	MsgUpdate
	// MsgFlush: recovery step 1: the sender entered view View; nothing it
	// sends after this is about an older view. Floor is its engine's token
	// floor.
	MsgFlush
	// MsgLocks: recovery step 2: Records for the locks whose resources the
	// receiver now masters, Values of resources the sender stopped
	// mastering, and Dropped: roots the sender stopped mastering on which
	// the receiver's clients have locks. More: another MsgLocks follows.
	MsgLocks
	// MsgDone: recovery step 3: the sender rebuilt what it masters in view
	// View.
	MsgDone
	// MsgHandoff: from the hash master of Root, which holds no lock on it,
	// to the member whose client asked for it first: the receiver masters
	// Root from now on, in this view. Floor is the sender's token floor;
	// Op is the enqueue that asked for Root (the receiver's own client's),
	// to be run there.
	MsgHandoff
	// MsgForward: a client operation Op of member Op.Owner.Member,
	// forwarded by the hash master of its root to the member it handed the
	// root to, or sent back by that member after it returned the root.
	MsgForward
	// MsgReturn: the receiver of a hand-off gives Root back to its hash
	// master (it holds no lock on it and has not used it for a while).
	// Count is the number of operations on Root it received from the hash
	// master since the hand-off; Floor its token floor.
	MsgReturn
)

// String returns the kind's name.
func (k MessageKind) String() string {
	switch k {
	case MsgRequest:
		return "request"
	case MsgUpdate:
		return "update"
	case MsgFlush:
		return "flush"
	case MsgLocks:
		return "locks"
	case MsgDone:
		return "done"
	case MsgHandoff:
		return "handoff"
	case MsgForward:
		return "forward"
	case MsgReturn:
		return "return"
	}
	return "MessageKind(" + strconv.Itoa(int(k)) + ")"
}

// Message is everything members send each other, as a tagged struct of
// plain exported fields (JSON-encodable). View is the sender's view number
// when it sent the message.
type Message struct {
	Kind MessageKind `json:"k"`
	View uint64      `json:"vw"`

	Op *Op `json:"op,omitempty"`

	Reply  *Reply      `json:"re,omitempty"`
	Events []Event     `json:"ev,omitempty"`
	States []LockState `json:"st,omitempty"`

	Floor uint64 `json:"fl,omitempty"`

	Root  *Root  `json:"ro,omitempty"`
	Count uint64 `json:"n,omitempty"`

	Records []LockRecord    `json:"rc,omitempty"`
	Values  []ResourceValue `json:"va,omitempty"`
	Dropped []Root          `json:"dr,omitempty"`
	More    bool            `json:"mo,omitempty"`
}

// Transport sends messages to other members. While both are members,
// messages from one member to another must all arrive, in the order sent
// (one reliable stream per pair, like TCP); a stream that breaks must end
// the membership of one of them (a new view). Different pairs interleave
// freely. Send must not block and must not call back into the Node; the
// Node does not touch a message after sending it.
type Transport interface {
	Send(to string, m Message)
}
