package dlm

import (
	"strconv"
	"strings"
)

// Mode is a lock mode. The numeric order is VMS's: NL < CR < CW < PR < PW < EX.
type Mode uint8

// The six lock modes.
const (
	NL Mode = iota // null: no access, holds the resource (and its value block) in existence
	CR             // concurrent read
	CW             // concurrent write
	PR             // protected read
	PW             // protected write
	EX             // exclusive
)

// NumModes is the number of lock modes.
const NumModes = 6

var modeNames = [NumModes]string{"NL", "CR", "CW", "PR", "PW", "EX"}

// String returns "NL" ... "EX", or "Mode(n)" for an invalid mode.
func (m Mode) String() string {
	if m < NumModes {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Valid reports whether m is one of the six modes.
func (m Mode) Valid() bool { return m < NumModes }

// ParseMode parses "NL", "CR", "CW", "PR", "PW" or "EX", in any case.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(i), nil
		}
	}
	return 0, &Error{Op: "parse mode", Kind: ErrInvalid,
		Msg: "unknown lock mode " + strconv.Quote(s) + ": use one of NL, CR, CW, PR, PW, EX"}
}

// compat[a] has bit b set when modes a and b may be granted at once.
var compat = [NumModes]uint8{
	NL: 0b111111,
	CR: 0b011111, // all but EX
	CW: 0b000111, // NL CR CW
	PR: 0b001011, // NL CR PR
	PW: 0b000011, // NL CR
	EX: 0b000001, // NL
}

// Compatible reports whether locks in modes a and b may be granted on one
// resource at the same time (the standard VMS matrix). Invalid modes are
// compatible with nothing.
func Compatible(a, b Mode) bool {
	return a < NumModes && b < NumModes && compat[a]&(1<<b) != 0
}

// Flags modify a request ($ENQ flags).
type Flags uint16

// The request flags.
const (
	// NoQueue: if the request cannot be granted at once, complete it with
	// EventNotQueued instead of queueing it.
	NoQueue Flags = 1 << iota
	// Convert: the request converts the granted lock Request.Lock.
	Convert
	// QueCvt: a conversion that could be granted in place joins the end of
	// the conversion queue instead when conversions are already queued.
	QueCvt
	// Expedite: a new NL request is granted at once even when requests are
	// queued. Only valid for new NL requests.
	Expedite
	// NoDlckWt: the wait of this request is left out of deadlock detection.
	NoDlckWt
	// ValBlk: grants report the value block; with Request.Value (or the
	// value of Unlock) a PW or EX holder writes it.
	ValBlk
	// NoBlock: this lock gets no blocking notifications (VMS: no blocking
	// AST given).
	NoBlock

	allFlags = NoQueue | Convert | QueCvt | Expedite | NoDlckWt | ValBlk | NoBlock
)

var flagNames = [...]string{"NoQueue", "Convert", "QueCvt", "Expedite", "NoDlckWt", "ValBlk", "NoBlock"}

// String returns the flags joined by "|" ("0" when none).
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var b strings.Builder
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n)
		}
	}
	if rest := f &^ allFlags; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x" + strconv.FormatUint(uint64(rest), 16))
	}
	return b.String()
}

// OwnerID identifies who holds locks: a client of the agent on a member.
// Deadlocks are between owners, and PurgeOwner releases one owner's locks.
// The zero Client is the agent itself. Member must not be empty.
type OwnerID struct {
	Member string
	Client uint64
}

// String returns "member/client".
func (o OwnerID) String() string { return o.Member + "/" + strconv.FormatUint(o.Client, 10) }

func ownerLess(a, b OwnerID) bool {
	if a.Member != b.Member {
		return a.Member < b.Member
	}
	return a.Client < b.Client
}

// LockID names a lock within one engine. The engine assigns them in
// increasing order and never reuses one; 0 is never a lock.
type LockID uint64

// ValueSize is the size of a lock value block in bytes.
const ValueSize = 64

// Value is a lock value block.
type Value [ValueSize]byte

// Limits on names.
const (
	// MaxNameLen is the longest resource or lockspace name, in bytes.
	MaxNameLen = 64
	// MaxDepth is the deepest resource tree: a root resource is at depth 1.
	MaxDepth = 16
)

// Queue says where a lock is on its resource.
type Queue uint8

// The queues. A converting lock is granted at its old mode while it waits
// in the conversion queue.
const (
	QueueGranted Queue = iota + 1
	QueueConverting
	QueueWaiting
)

// String returns "granted", "converting" or "waiting".
func (q Queue) String() string {
	switch q {
	case QueueGranted:
		return "granted"
	case QueueConverting:
		return "converting"
	case QueueWaiting:
		return "waiting"
	}
	return "Queue(" + strconv.Itoa(int(q)) + ")"
}

// EventKind says what an Event reports.
type EventKind uint8

// The events. The first four are completions: every accepted request gets
// exactly one of them for its lock.
const (
	// EventGranted: the request was granted (Mode, Token; Value and
	// ValueValid when the request had ValBlk).
	EventGranted EventKind = iota + 1
	// EventNotQueued: a NoQueue request could not be granted at once. A new
	// request leaves no lock; a conversion leaves the lock at its mode.
	EventNotQueued
	// EventCanceled: the request was canceled (Cancel, or Unlock of a lock
	// that was waiting or converting). A canceled conversion leaves the
	// lock granted at its old mode.
	EventCanceled
	// EventDeadlock: the request was chosen as a deadlock victim and
	// aborted. A conversion leaves the lock granted at its old mode.
	EventDeadlock
	// EventBlocking: the granted lock Lock blocks the waiting request
	// Blocked, which wants Mode.
	EventBlocking
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventGranted:
		return "granted"
	case EventNotQueued:
		return "not-queued"
	case EventCanceled:
		return "canceled"
	case EventDeadlock:
		return "deadlock"
	case EventBlocking:
		return "blocking"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is a notification for one lock's owner.
type Event struct {
	Kind EventKind
	// Lock is the lock concerned: the completed request's lock, or for
	// EventBlocking the granted lock that blocks.
	Lock LockID
	// Owner owns Lock: the event is delivered to it.
	Owner OwnerID
	// Mode is, for EventGranted, the mode now granted; for EventBlocking,
	// the mode the blocked request waits for; for the other completions,
	// the mode that was requested.
	Mode Mode
	// Token is the fencing token of an EventGranted.
	Token uint64
	// Blocked is the waiting lock of an EventBlocking.
	Blocked LockID
	// ValueValid and Value: the value block, for an EventGranted of a
	// request with ValBlk. ValueValid false means the value is not valid
	// (a PW or EX holder was lost, or InvalidateValue).
	ValueValid bool
	Value      Value
	// Tag is Lock's tag (Request.Tag).
	Tag uint64
}
