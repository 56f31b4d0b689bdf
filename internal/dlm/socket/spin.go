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
// The readers of a process (one SpinGroup per side) spin one at a time:
// spinning readers would otherwise take every processor from the work
// they wait for. While one spins, it also watches the connections of the
// group's parked readers, and parks as soon as one of them has something
// to read: its thread then runs the network poller, which hands that
// reader its data, instead of a woken thread that would wait for a
// processor the spinner holds (on Linux, until the spinner's time slice
// ends: milliseconds).

// Spin is how long the agent's reader of a session spins for its next
// request after one (a ring reader: after the last message either way),
// in nanoseconds: the agent's dlm_spin (0: never). It is the process's:
// set it before serving.
var Spin atomic.Int64

// DefaultSpin is Spin's default (config.DefaultDLMSpin).
const DefaultSpin = 200 * time.Microsecond

// SpinLinger is how long a client's reader spins after a message when it
// waits for nothing: its caller may send the next request at once.
const SpinLinger = 50 * time.Microsecond

// SpinDue is how long a client's reader spins, by default, while an
// answer or a request's completion is due: long enough for a lock that a
// member across a LAN masters.
const SpinDue = time.Millisecond

func init() { Spin.Store(int64(DefaultSpin)) }

// A SpinGroup is the readers of one process and side that spin in turn.
type SpinGroup struct {
	token atomic.Bool // held by the reader that spins

	mu     sync.Mutex
	parked map[int32]int // guarded by mu: the descriptors of parked readers, and how many
	gen    atomic.Uint64 // changes with parked
}

// park records that a reader of fd waits in the network poller.
func (g *SpinGroup) park(fd int32) {
	g.mu.Lock()
	if g.parked == nil {
		g.parked = map[int32]int{}
	}
	g.parked[fd]++
	g.gen.Add(1)
	g.mu.Unlock()
}

// unpark records that it no longer does.
func (g *SpinGroup) unpark(fd int32) {
	g.mu.Lock()
	if g.parked[fd]--; g.parked[fd] <= 0 {
		delete(g.parked, fd)
	}
	g.gen.Add(1)
	g.mu.Unlock()
}

// others appends the descriptors of the parked readers but self's to
// fds.
func (g *SpinGroup) others(self int32, fds []unix.PollFd) []unix.PollFd {
	g.mu.Lock()
	defer g.mu.Unlock()
	for fd := range g.parked {
		if fd != self {
			fds = append(fds, unix.PollFd{Fd: fd, Events: unix.POLLIN})
		}
	}
	return fds
}

// A SpinReader reads a connection, first polling it for up to what its
// budget says, then in the network poller. One goroutine reads it.
type SpinReader struct {
	c      net.Conn
	rc     syscall.RawConn
	g      *SpinGroup
	budget func() time.Duration
	poll   func(fd uintptr) bool // s.pollFD, made once

	// Kicks (Kick, Stop): a read deadline in the past wakes a read that
	// waits in the network poller.
	dmu     sync.Mutex
	kicked  bool // guarded by dmu: the deadline is a kick's, not the owner's
	stopped bool // guarded by dmu

	// The read in progress.
	b      []byte
	n      int
	err    error
	start  time.Time
	held   bool  // the token
	parked int32 // the descriptor recorded in g.parked, or -1

	// fd, then the parked readers' descriptors, as of generation gen.
	fds []unix.PollFd
	gen uint64
}

// NewSpinReader returns a reader of c, one of g's, that spins for
// budget() (asked again while it spins) when it holds g's token; c must
// be a socket (otherwise the reader is c).
func NewSpinReader(c net.Conn, g *SpinGroup, budget func() time.Duration) io.Reader {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &SpinReader{c: c, rc: rc, g: g, budget: budget, parked: -1, gen: ^uint64(0)}
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
	if len(b) == 0 {
		return 0, nil
	}
	s.b, s.n, s.err, s.start = b, 0, nil, time.Now()
	s.held = s.budget() > 0 && s.g.token.CompareAndSwap(false, true)
	err := s.rc.Read(s.poll)
	s.release()
	s.unpark()
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

// pollFD reads fd until it gives something, the budget is spent or a
// parked reader of the group has something to read; false makes the
// network poller wait for fd.
func (s *SpinReader) pollFD(fd uintptr) bool {
	s.unpark()
	others := false // a parked reader has something to read
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
		for !others && s.held && time.Since(s.start) < s.budget() {
			runtime.Gosched()
			var mine bool
			if mine, others = s.ready(int32(fd)); mine {
				break
			}
		}
		if others || !s.held || time.Since(s.start) >= s.budget() {
			s.release()
			s.parked = int32(fd)
			s.g.park(s.parked)
			return false
		}
	}
}

// ready says whether fd has something to read, and whether a parked
// reader of the group does: one poll(2) of them all, or none when no
// reader is parked (fd's read then tells).
func (s *SpinReader) ready(fd int32) (mine, others bool) {
	if gen := s.g.gen.Load(); gen != s.gen {
		s.fds = append(s.fds[:0], unix.PollFd{Fd: fd, Events: unix.POLLIN})
		s.fds, s.gen = s.g.others(fd, s.fds), gen
	}
	if len(s.fds) <= 1 {
		return true, false
	}
	s.fds[0].Fd = fd
	if n, err := unix.Poll(s.fds, 0); err != nil || n == 0 {
		return false, false
	}
	for _, p := range s.fds[1:] {
		if p.Revents != 0 {
			others = true
		}
	}
	return s.fds[0].Revents != 0, others
}

func (s *SpinReader) release() {
	if s.held {
		s.held = false
		s.g.token.Store(false)
	}
}

func (s *SpinReader) unpark() {
	if s.parked >= 0 {
		s.g.unpark(s.parked)
		s.parked = -1
	}
}
