package socket

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spinning. A sequential client of the socket sends a request and waits
// for the answer; the agent reads the next request right after its answer.
// Waiting in the runtime's network poller costs each side two thread
// wake-ups per message (the poller's, then a thread to run the reader),
// and on a small virtual machine a wake-up costs more than a lock: a
// round trip between two processes takes about 50 µs that way, and 15 µs
// when one side polls the socket instead. So the reader of a session
// first polls its connection for a short while, yielding to the other
// goroutines of its process between polls, and only then parks.
//
// One reader per process and side spins at a time (the spinner token):
// spinning readers would otherwise take every processor from the work
// they wait for.

// Spin is how long the agent's reader of a session spins for its next
// request after one: the agent's dlm_spin (0: never).
var Spin atomic.Int64

// SpinDue is how long a client's reader spins while an answer or
// completion is due; with nothing due it spins for Spin.
const SpinDue = 1000 * time.Microsecond

// DefaultSpin is Spin's default.
const DefaultSpin = 50 * time.Microsecond

func init() { Spin.Store(int64(DefaultSpin)) }

// A SpinReader reads a connection, first polling it for up to what its
// budget says, then in the network poller. One goroutine reads it.
type SpinReader struct {
	c      net.Conn
	rc     syscall.RawConn
	token  *atomic.Bool
	budget func() time.Duration
	poll   func(fd uintptr) bool // s.pollFD, made once

	// Kicks (Kick, Stop): a read deadline in the past wakes a read that
	// waits in the network poller.
	dmu     sync.Mutex
	kicked  bool // guarded by dmu: the deadline is a kick's, not the owner's
	stopped bool // guarded by dmu

	// The read in progress.
	b     []byte
	n     int
	err   error
	start time.Time
	held  bool // the token
}

// NewSpinReader returns a reader of c that spins for budget() (asked
// again while it spins) when it holds token; c must be a socket
// (otherwise the reader is c).
func NewSpinReader(c net.Conn, token *atomic.Bool, budget func() time.Duration) io.Reader {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &SpinReader{c: c, rc: rc, token: token, budget: budget}
	s.poll = s.pollFD
	return s
}

// Kick wakes a read that waits in the network poller, which then spins
// again for its budget: for a reader whose peer is about to send (the
// agent has just sent the completion the client waited for). The
// connection's read deadline is the reader's: the owner sets it only
// through Stop.
func (s *SpinReader) Kick() {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if !s.stopped {
		s.kicked = true
		s.c.SetReadDeadline(longAgo)
	}
}

// Stop ends the read in progress and every later one with
// os.ErrDeadlineExceeded.
func (s *SpinReader) Stop() {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.stopped = true
	s.c.SetReadDeadline(longAgo)
}

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

func (s *SpinReader) Read(b []byte) (int, error) {
	for {
		n, err := s.read(b)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		s.dmu.Lock()
		kicked := s.kicked && !s.stopped
		if kicked {
			s.kicked = false
			s.c.SetReadDeadline(time.Time{})
		}
		s.dmu.Unlock()
		if !kicked {
			return n, err
		}
	}
}

func (s *SpinReader) read(b []byte) (int, error) {
	if len(b) == 0 || s.budget() <= 0 || !s.token.CompareAndSwap(false, true) {
		return s.c.Read(b)
	}
	s.b, s.n, s.err, s.start, s.held = b, 0, nil, time.Now(), true
	err := s.rc.Read(s.poll)
	s.release()
	n, rerr := s.n, s.err
	s.b, s.err = nil, nil
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: s.c.LocalAddr().Network(), Source: s.c.LocalAddr(), Addr: s.c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// pollFD reads fd until it gives something or the budget is spent; false
// makes the network poller wait for fd.
func (s *SpinReader) pollFD(fd uintptr) bool {
	for {
		s.n, s.err = unix.Read(int(fd), s.b)
		if s.err == unix.EINTR {
			continue
		}
		if s.err != unix.EAGAIN {
			if s.n < 0 {
				s.n = 0
			}
			return true
		}
		if !s.held || time.Since(s.start) >= s.budget() {
			s.release()
			return false
		}
		runtime.Gosched()
	}
}

func (s *SpinReader) release() {
	if s.held {
		s.held = false
		s.token.Store(false)
	}
}
