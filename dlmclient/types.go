package dlmclient

import (
	"errors"
	"strconv"
	"strings"

	"github.com/vigil-cluster/vigil/internal/dlm"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// Mode is a lock mode. The order is VMS's: NL < CR < CW < PR < PW < EX.
type Mode uint8

// The six lock modes and what they allow to others.
const (
	NL Mode = iota // null: holds the resource (and its value block) in existence
	CR             // concurrent read: others may do anything but EX
	CW             // concurrent write: others may hold NL, CR, CW
	PR             // protected read: others may read (NL, CR, PR)
	PW             // protected write: others may hold NL, CR
	EX             // exclusive: others may hold NL only
)

var modeNames = [...]string{"NL", "CR", "CW", "PR", "PW", "EX"}

// String returns "NL" ... "EX", or "Mode(n)" for an invalid mode.
func (m Mode) String() string {
	if m.Valid() {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Valid reports whether m is one of the six modes.
func (m Mode) Valid() bool { return int(m) < len(modeNames) }

// Compatible reports whether locks in modes a and b may be granted on one
// resource at the same time.
func Compatible(a, b Mode) bool { return dlm.Compatible(dlm.Mode(a), dlm.Mode(b)) }

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

// LockID names a lock in the whole cluster: the member of the client that
// requested it and that member's number for it.
type LockID struct {
	Member string
	N      uint64
}

// String returns "member#n".
func (id LockID) String() string { return id.Member + "#" + strconv.FormatUint(id.N, 10) }

// IsZero reports whether id is the zero LockID (no lock).
func (id LockID) IsZero() bool { return id.N == 0 && id.Member == "" }

func fromCluster(id cluster.LockID) LockID { return LockID{Member: id.Member, N: id.N} }
func (id LockID) cluster() cluster.LockID  { return cluster.LockID{Member: id.Member, N: id.N} }

// ValueSize is the size of a lock value block.
const ValueSize = dlm.ValueSize

// Value is a lock value block: 64 bytes that travel with a resource's
// locks. A PW or EX holder writes it when it converts down or unlocks
// (WithValue); every grant of a request with ValueBlock reads it.
type Value [ValueSize]byte

// MaxNameLen is the longest resource or lockspace name, in bytes.
const MaxNameLen = dlm.MaxNameLen

// DefaultLockspace is the lockspace of locks requested without the
// Lockspace option.
const DefaultLockspace = "default"

// Errors that callers act on. Every error of this package is an *Error
// whose Kind is one of them (errors.Is works).
var (
	// ErrNotQueued: a NoQueue request could not be granted at once (the
	// resource is held in an incompatible mode). A conversion leaves the
	// lock at its mode.
	ErrNotQueued = errors.New("not granted at once")
	// ErrDeadlock: the request was chosen as the victim of a deadlock.
	// A conversion leaves the lock at its mode.
	ErrDeadlock = errors.New("deadlock victim")
	// ErrCanceled: the request was canceled (Cancel, Unlock, or its
	// context ended) before it was granted.
	ErrCanceled = errors.New("request canceled")
	// ErrLost: the lock is gone without its owner's doing: the member's
	// lease ended, or the connection to the agent broke. Whatever it
	// protected may now be held by someone else.
	ErrLost = errors.New("lock lost")
	// ErrNotMember: this member is not in the lock manager's view (it is
	// leaving or joining the cluster): its locks were released. Wait until
	// it joins again.
	ErrNotMember = errors.New("member not in the lock manager view")
	// ErrClosed: the client is closed.
	ErrClosed = errors.New("lock client closed")
	// ErrNoAgent: the lock manager's socket cannot be reached: the agent
	// does not run on this member, or the caller may not use the socket.
	ErrNoAgent = errors.New("lock manager not reachable")
	// ErrInvalid: the request itself is wrong (bad name, mode or option).
	ErrInvalid = errors.New("invalid lock request")
	// ErrUnknownLock: the lock does not exist (any more).
	ErrUnknownLock = errors.New("unknown lock")
	// ErrWrongState: the lock is not in a state that allows the operation
	// (a request on it is in progress, its parent is not granted, ...).
	ErrWrongState = errors.New("wrong lock state")
	// ErrHasChildren: the lock has sub-locks: release them first.
	ErrHasChildren = errors.New("lock has sub-locks")
	// ErrLimit: the lock manager holds as many locks as it may.
	ErrLimit = errors.New("lock limit reached")
	// ErrBusy: too many operations wait while the lock manager recovers
	// or has no quorum. Retry later.
	ErrBusy = errors.New("lock manager busy")
)

// Error is a failed operation with the reason an operator reads.
type Error struct {
	Op        string // "lock", "convert", "unlock", "cancel", "dial", ...
	Lockspace string
	Resource  string // the resource's name ("" when none)
	Lock      LockID // the lock concerned (zero when none)
	Kind      error  // one of the Err* sentinels
	Msg       string // what happened and what to do
	Err       error  // the cause, when there is one (a context's error)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("dlm ")
	b.WriteString(e.Op)
	if e.Resource != "" {
		b.WriteString(" ")
		b.WriteString(strconv.Quote(e.Resource))
		if e.Lockspace != "" && e.Lockspace != DefaultLockspace {
			b.WriteString(" in lockspace ")
			b.WriteString(strconv.Quote(e.Lockspace))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}
