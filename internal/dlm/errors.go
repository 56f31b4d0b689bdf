package dlm

import (
	"errors"
	"fmt"
)

// Errors that callers act on. Every error the engine returns is an *Error
// whose Kind is one of these (errors.Is works).
var (
	// ErrInvalid: the request itself is wrong (bad mode, flags, name, owner,
	// parent of another owner or lockspace, import data that does not hold
	// together). Retrying it unchanged fails again.
	ErrInvalid = errors.New("invalid request")
	// ErrUnknownLock: no lock has that id on this engine (never existed,
	// already released, or its new request was not queued).
	ErrUnknownLock = errors.New("unknown lock")
	// ErrUnknownResource: no lock exists on that resource.
	ErrUnknownResource = errors.New("unknown resource")
	// ErrWrongState: the lock is not in a state that allows the operation
	// (convert of a waiting lock, cancel of a granted lock, parent not
	// granted yet, deadlock abort of a lock that does not wait).
	ErrWrongState = errors.New("wrong lock state")
	// ErrHasChildren: the lock still has sub-locks, which must be released
	// first.
	ErrHasChildren = errors.New("lock has sub-locks")
	// ErrLimit: the engine holds Options.MaxLocks locks.
	ErrLimit = errors.New("lock limit reached")
)

// Error is a refused operation with the reason an operator reads.
type Error struct {
	Op   string // "enqueue", "convert", "unlock", "cancel", "deadlock", "invalidate", "import"
	Lock LockID // the lock concerned, 0 when none
	Kind error  // one of the Err* sentinels
	Msg  string // what was wrong and what to do
}

func (e *Error) Error() string { return "dlm " + e.Op + ": " + e.Msg }

// Unwrap returns the sentinel kind.
func (e *Error) Unwrap() error { return e.Kind }

func fail(op string, id LockID, kind error, format string, args ...any) error {
	return &Error{Op: op, Lock: id, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
