package cluster

import (
	"errors"
	"fmt"

	"github.com/vigil-cluster/vigil/internal/dlm"
)

// Errors that callers act on, besides the engine's (dlm.ErrInvalid,
// dlm.ErrUnknownLock, dlm.ErrWrongState, dlm.ErrHasChildren, dlm.ErrLimit),
// which a Node returns or reports with the same meaning. Every error a Node
// returns or reports is an *Error whose Kind is one of them (errors.Is
// works).
var (
	// ErrNotMember: this member is not in the current view. Its clients'
	// locks are lost (every master purged them); nothing is accepted until
	// a view includes the member again.
	ErrNotMember = errors.New("not a member of the lock manager view")
	// ErrRecovering: the lock manager is rebuilding its masters for a new
	// view, or has no quorum; a deadlock abort is refused (search again
	// later). Client operations are held instead.
	ErrRecovering = errors.New("lock manager recovering or without quorum")
	// ErrBusy: too many operations are held (Config.MaxHeld) while the
	// lock manager recovers or has no quorum. Retry later.
	ErrBusy = errors.New("too many held lock operations")
	// ErrNotMaster: a request reached a member that does not master its
	// resource in its view (a member with another directory: a bug).
	ErrNotMaster = errors.New("not the master of the resource")

	errInvalid = dlm.ErrInvalid
)

// Error is a refused operation with the reason an operator reads.
type Error struct {
	Op   string // "enqueue", "convert", "unlock", "cancel", "disconnect", "deadlock", "view", ...
	Lock LockID // the lock concerned, zero when none
	Kind error  // a sentinel: ErrNotMember ... or one of dlm's
	Msg  string // what was wrong and what to do
}

func (e *Error) Error() string { return "dlm " + e.Op + ": " + e.Msg }

// Unwrap returns the sentinel kind.
func (e *Error) Unwrap() error { return e.Kind }

func fail(op string, id LockID, kind error, format string, args ...any) *Error {
	return &Error{Op: op, Lock: id, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// The error kinds on the wire (Reply.Err).
var wireKinds = []struct {
	name string
	err  error
}{
	{"invalid", dlm.ErrInvalid},
	{"unknown-lock", dlm.ErrUnknownLock},
	{"unknown-resource", dlm.ErrUnknownResource},
	{"wrong-state", dlm.ErrWrongState},
	{"has-children", dlm.ErrHasChildren},
	{"limit", dlm.ErrLimit},
	{"not-master", ErrNotMaster},
	{"busy", ErrBusy},
	{"not-member", ErrNotMember},
}

func kindName(err error) string {
	for _, k := range wireKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "invalid"
}

func kindErr(name string) error {
	for _, k := range wireKinds {
		if k.name == name {
			return k.err
		}
	}
	return dlm.ErrInvalid
}

// errMsg returns the message of err without the "dlm op: " prefix.
func errMsg(err error) string {
	var de *dlm.Error
	if errors.As(err, &de) {
		return de.Msg
	}
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Msg
	}
	return err.Error()
}
