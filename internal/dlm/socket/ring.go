package socket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Shared-memory rings. Through the socket, each message costs a write(2)
// by its sender and a read(2) by its receiver, and a receiver that waits
// for it polls with more reads: on a two-core machine busy with four
// sessions, more than half of the time of both processes went to the
// kernel. A session of the ring protocol ([MagicRing]) carries the same
// raw frames through two rings in memory that the agent shares with the
// client (a sealed memfd, passed once over the socket): one the client
// writes and the agent reads, one the other way. A waiting reader watches
// its ring's write position in memory, which costs no system call. The
// socket stays, for what memory cannot do:
//
//   - a reader that has spun for its budget parks, reading the socket in
//     the network poller; a writer that finds it parked writes one byte
//     (a doorbell) to wake it;
//   - the end of the connection is the end of the session, as with the
//     raw protocol: a client whose process dies loses its locks.
//
// Each ring has two positions, counts of the bytes written and read since
// the session began: the writer owns one, the reader the other, and each
// keeps its own copy. The agent trusts nothing the client writes in the
// shared memory: a position that moves backwards, or further than the
// ring, ends the session.
//
// As with spinning readers of the socket, one reader of a process spins
// at a time, and watches the rings of the others that wait (a RingGroup).

// MagicRing is what a client of the ring protocol writes first. The agent
// answers with one byte, RingReady, carrying the memfd (SCM_RIGHTS), or
// with a raw end frame saying why it cannot.
const MagicRing = "VDLMR\n"

// RingReady is the byte that carries the memfd.
const RingReady = 'R'

// The layout of the shared memory: a header page, then the ring the
// client writes, then the ring the agent writes.
const (
	ringMagic   = 0x56444c4d52494e47 // "VDLMRING"
	ringVersion = 1
	// RingSize is the size of each ring: a larger frame passes in pieces.
	RingSize = 64 << 10
	ringHead = 4096

	// Offsets in the header, each word on its own cache line.
	offMagic   = 0
	offVersion = 8
	offSize    = 16
	offC2ATail = 64  // written by the client
	offC2AHead = 128 // written by the agent
	offAgent   = 192 // the agent's reader: awake, watched or parked
	offA2CTail = 256 // written by the agent
	offA2CHead = 320 // written by the client
	offClient  = 384 // the client's reader
)

// A reader's state, in the shared memory: whether the writer must ring.
const (
	readerAwake   = 0 // reading, spinning or about to look again
	readerWatched = 1 // a follower: the leader of its group watches its ring
	readerParked  = 2 // parked: the writer must ring the doorbell
)

// ring is one direction of a session: a byte pipe in shared memory.
type ring struct {
	data []byte         // len is a power of two
	tail *atomic.Uint64 // bytes written
	head *atomic.Uint64 // bytes read
	pos  uint64         // this side's own copy of its position
}

func newRing(mem []byte, tail, head, off int) ring {
	return ring{data: mem[off : off+RingSize], tail: word(mem, tail), head: word(mem, head)}
}

func word(mem []byte, off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&mem[off])) }

func state(mem []byte, off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&mem[off])) }

// errRingCorrupt is a position that cannot be: the peer wrote over what is
// not its to write.
var errRingCorrupt = errors.New("the lock manager's shared ring is corrupt (a position moved backwards or past the ring's size): the session ends")

// avail is how many bytes the reader may read.
func (r *ring) avail() (uint64, error) {
	n := r.tail.Load() - r.pos
	if n > uint64(len(r.data)) {
		return 0, errRingCorrupt
	}
	return n, nil
}

// read copies what it can into b (reader side).
func (r *ring) read(b []byte) (int, error) {
	n, err := r.avail()
	if err != nil || n == 0 {
		return 0, err
	}
	n = min(n, uint64(len(b)))
	at := r.pos & uint64(len(r.data)-1)
	c := copy(b[:n], r.data[at:])
	copy(b[c:n], r.data)
	r.pos += n
	r.head.Store(r.pos)
	return int(n), nil
}

// write copies what fits of b (writer side).
func (r *ring) write(b []byte) (int, error) {
	used := r.pos - r.head.Load()
	if used > uint64(len(r.data)) {
		return 0, errRingCorrupt
	}
	n := min(uint64(len(r.data))-used, uint64(len(b)))
	if n == 0 {
		return 0, nil
	}
	at := r.pos & uint64(len(r.data)-1)
	c := copy(r.data[at:], b[:n])
	copy(r.data, b[c:n])
	r.pos += n
	r.tail.Store(r.pos)
	return int(n), nil
}

// A RingGroup is the ring readers of one process and side. Waiting
// readers take turns as leader and followers: the leader spins, watching
// its own ring and its followers'; a follower waits on a channel, with no
// system call to wake it and none for its writer to make, until the leader
// sees data in its ring, hands it the lead, or finds it idle (no message
// either way for its budget), when it parks in the network poller. Only
// parked readers need doorbells, and only they watch the socket for the
// end of the connection: an idle session's reader always parks.
type RingGroup struct {
	mu        sync.Mutex
	leader    *RingConn              // guarded by mu
	followers map[*RingConn]struct{} // guarded by mu
}

// Why a follower was woken.
const (
	wakeLook = iota + 1 // its ring has data, or it was stopped
	wakeLead            // it leads now
	wakePark            // it is idle: park
)

// dismiss wakes c with why if it follows; false if it does not.
func (g *RingGroup) dismiss(c *RingConn, why int32) bool {
	if _, ok := g.followers[c]; !ok {
		return false
	}
	delete(g.followers, c)
	c.woken.Store(why)
	c.wake <- struct{}{}
	return true
}

// sweep is the leader's look at its followers: it wakes those whose rings
// have data and parks the idle ones. Unless the leader's own ring has data
// (ready), it says whether the leader should give up the lead (it is
// idle, stopped or past its read deadline); either way it then hands the
// lead to a follower, if one is left.
func (g *RingGroup) sweep(r *RingConn, now int64, ready bool) (done bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.followers {
		switch {
		case c.ready():
			g.dismiss(c, wakeLook)
		case !c.active(now):
			g.dismiss(c, wakePark)
		}
	}
	if !ready && r.active(now) && !r.stopped.Load() && !r.late() {
		return false
	}
	g.handOff()
	return true
}

// handOff gives the lead to a follower, or to nobody (mu held).
func (g *RingGroup) handOff() {
	g.leader = nil
	for c := range g.followers {
		g.leader = c
		g.dismiss(c, wakeLead)
		return
	}
}

// A RingConn is a session's connection of the ring protocol: frames
// through the shared rings, doorbells and the session's end through the
// socket. One goroutine reads it and one at a time writes it.
type RingConn struct {
	uc     *net.UnixConn
	rc     syscall.RawConn
	mem    []byte
	in     ring
	out    ring
	rstate *atomic.Uint32 // this side's reader
	wstate *atomic.Uint32 // the peer's reader
	g      *RingGroup
	budget func() time.Duration

	// last is when a message last went either way (mono): the reader
	// waits for budget() after it before it parks.
	last atomic.Int64
	// A follower's wake-up (RingGroup.dismiss): why, then the signal.
	woken atomic.Int32
	wake  chan struct{}

	// Read deadlines and kicks, as SpinReader's: a socket read deadline
	// in the past wakes a parked read.
	dmu       sync.Mutex
	kicked    bool      // guarded by dmu
	deadline  time.Time // guarded by dmu: the owner's read deadline
	stopped   atomic.Bool
	rdeadline atomic.Int64 // deadline, in unix nanoseconds; 0: none
	eof       bool         // the socket ended (reader)
	// gone is set when the reader finds the socket ended or broken: a
	// writer waiting for room then stops waiting.
	gone atomic.Bool
	bell [64]byte

	wmu       sync.Mutex
	wdeadline atomic.Int64 // unix nanoseconds; 0: none

	// refs counts the calls inside Read and Write; closedBit is set by
	// Close. The memory is unmapped once both say so.
	refs    atomic.Int64
	unmap   sync.Once
	closeMu sync.Once
}

// epoch starts mono's clock.
var epoch = time.Now()

// mono is the time since epoch on the monotonic clock, in nanoseconds.
func mono() int64 { return int64(time.Since(epoch)) }

const closedBit = 1 << 62

// fullSpin is how long a writer that finds the ring full spins for room
// before it sleeps.
const fullSpin = 500 * time.Microsecond

// ServeRing makes the agent's side of a ring session on c, whose magic
// was read: it creates the shared memory and passes it to the client.
// When it cannot, it tells the client why in an end frame and returns the
// error.
func ServeRing(c *net.UnixConn, g *RingGroup, budget func() time.Duration) (*RingConn, error) {
	rc, err := newAgentRing(c, g, budget)
	if err != nil {
		c.SetWriteDeadline(time.Now().Add(endWait))
		c.Write(AppendEndFrame(nil, "the lock manager cannot share memory with this session ("+err.Error()+"): dial with the raw protocol"))
		return nil, err
	}
	return rc, nil
}

func newAgentRing(c *net.UnixConn, g *RingGroup, budget func() time.Duration) (*RingConn, error) {
	fd, err := unix.MemfdCreate("vigil-dlm-session", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	defer unix.Close(fd)
	size := ringHead + 2*RingSize
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return nil, fmt.Errorf("ftruncate: %w", err)
	}
	// Sealed, so that the client cannot shrink what the agent reads.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		return nil, fmt.Errorf("sealing the memfd: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	binary.LittleEndian.PutUint64(mem[offVersion:], ringVersion)
	binary.LittleEndian.PutUint64(mem[offSize:], RingSize)
	word(mem, offMagic).Store(ringMagic)
	c.SetWriteDeadline(time.Now().Add(endWait))
	_, _, err = c.WriteMsgUnix([]byte{RingReady}, unix.UnixRights(fd), nil)
	c.SetWriteDeadline(time.Time{})
	if err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("passing the memfd: %w", err)
	}
	r := newRingConn(c, mem, g, budget, false)
	return r, nil
}

// DialRing makes the client's side of a ring session on c: it writes
// MagicRing and maps the memory the agent passes. An agent that answers
// with anything else gives a *RingRefused holding what it said.
func DialRing(c *net.UnixConn, g *RingGroup, budget func() time.Duration) (*RingConn, error) {
	if _, err := io.WriteString(c, MagicRing); err != nil {
		return nil, err
	}
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(b[:], oob)
	fds := rights(oob[:oobn])
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	switch {
	case err != nil:
		return nil, err
	case n == 0:
		return nil, io.EOF
	case b[0] != RingReady || len(fds) != 1:
		return nil, &RingRefused{First: b[0]}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fds[0], &st); err != nil {
		return nil, fmt.Errorf("the lock manager's shared memory: %w", err)
	}
	size := ringHead + 2*RingSize
	if st.Size != int64(size) {
		return nil, fmt.Errorf("the lock manager's shared memory has %d bytes, not %d: is the agent of another version? (dial with the raw protocol)", st.Size, size)
	}
	mem, err := unix.Mmap(fds[0], 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the lock manager's shared memory: %w", err)
	}
	if word(mem, offMagic).Load() != ringMagic || binary.LittleEndian.Uint64(mem[offVersion:]) != ringVersion ||
		binary.LittleEndian.Uint64(mem[offSize:]) != RingSize {
		unix.Munmap(mem)
		return nil, errors.New("the lock manager's shared memory is of another version: dial with the raw protocol")
	}
	return newRingConn(c, mem, g, budget, true), nil
}

// RingRefused is an agent's answer to MagicRing that is not a ring: an
// end frame, or (an agent older than the ring protocol) a line of text.
type RingRefused struct{ First byte }

func (e *RingRefused) Error() string {
	return "the lock manager did not open a shared ring"
}

// rights returns the descriptors passed in oob.
func rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func newRingConn(c *net.UnixConn, mem []byte, g *RingGroup, budget func() time.Duration, client bool) *RingConn {
	r := &RingConn{uc: c, mem: mem, g: g, budget: budget, wake: make(chan struct{}, 1)}
	r.rc, _ = c.SyscallConn()
	c2a := newRing(mem, offC2ATail, offC2AHead, ringHead)
	a2c := newRing(mem, offA2CTail, offA2CHead, ringHead+RingSize)
	if client {
		r.in, r.out = a2c, c2a
		r.rstate, r.wstate = state(mem, offClient), state(mem, offAgent)
	} else {
		r.in, r.out = c2a, a2c
		r.rstate, r.wstate = state(mem, offAgent), state(mem, offClient)
	}
	return r
}

// enter counts a call that uses the memory; false when closed.
func (r *RingConn) enter() bool {
	if r.refs.Add(1)&closedBit != 0 {
		r.exit()
		return false
	}
	return true
}

func (r *RingConn) exit() {
	if r.refs.Add(-1) == closedBit {
		r.unmap.Do(func() { unix.Munmap(r.mem) })
	}
}

// Close ends the connection: the socket at once, the memory once no call
// uses it.
func (r *RingConn) Close() error {
	err := net.ErrClosed
	r.closeMu.Do(func() {
		r.stopped.Store(true)
		r.dismiss()
		err = r.uc.Close()
		if r.refs.Or(closedBit) == 0 {
			r.unmap.Do(func() { unix.Munmap(r.mem) })
		}
	})
	return err
}

// CloseWrite tells the peer that this side sends no more.
func (r *RingConn) CloseWrite() error { return r.uc.CloseWrite() }

func (r *RingConn) LocalAddr() net.Addr  { return r.uc.LocalAddr() }
func (r *RingConn) RemoteAddr() net.Addr { return r.uc.RemoteAddr() }

func (r *RingConn) SetDeadline(t time.Time) error {
	r.SetReadDeadline(t)
	return r.SetWriteDeadline(t)
}

// SetReadDeadline bounds the reads, spinning or parked.
func (r *RingConn) SetReadDeadline(t time.Time) error {
	r.dmu.Lock()
	r.deadline = t
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	r.rdeadline.Store(ns)
	var err error
	if !r.kicked {
		err = r.uc.SetReadDeadline(t)
	}
	r.dmu.Unlock()
	if !t.IsZero() && !time.Now().Before(t) {
		r.dismiss()
	}
	return err
}

// late says whether the owner's read deadline has passed.
func (r *RingConn) late() bool {
	dl := r.rdeadline.Load()
	return dl != 0 && time.Now().UnixNano() >= dl
}

// dismiss wakes the reader if it follows.
func (r *RingConn) dismiss() {
	r.g.mu.Lock()
	r.g.dismiss(r, wakeLook)
	r.g.mu.Unlock()
}

// SetWriteDeadline bounds a write's wait for room in the ring.
func (r *RingConn) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	r.wdeadline.Store(ns)
	return nil
}

// Kick wakes a parked read, which then spins again for its budget.
func (r *RingConn) Kick() {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	if !r.stopped.Load() && !r.kicked {
		r.kicked = true
		r.uc.SetReadDeadline(longAgo)
	}
}

// Stop ends the read in progress and every later one with
// os.ErrDeadlineExceeded.
func (r *RingConn) Stop() {
	r.dmu.Lock()
	r.stopped.Store(true)
	r.uc.SetReadDeadline(longAgo)
	r.dmu.Unlock()
	r.dismiss()
}

func (r *RingConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "unix", Source: r.uc.LocalAddr(), Addr: r.uc.RemoteAddr(), Err: err}
}

func (r *RingConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if !r.enter() {
		return 0, r.opError("read", net.ErrClosed)
	}
	defer r.exit()
	for {
		n, err := r.in.read(b)
		switch {
		case err != nil:
			return 0, err
		case n > 0:
			r.last.Store(mono())
			return n, nil
		case r.eof:
			return 0, io.EOF
		case r.refs.Load()&closedBit != 0:
			return 0, r.opError("read", net.ErrClosed)
		case r.stopped.Load() || r.late():
			return 0, r.opError("read", os.ErrDeadlineExceeded)
		}
		if err := r.wait(); err != nil {
			return 0, err
		}
	}
}

// ready says whether the reader has something to do: data (or a corrupt
// ring) to read, or a stop.
func (r *RingConn) ready() bool {
	n, err := r.in.avail()
	return n > 0 || err != nil || r.stopped.Load()
}

// active says whether a message went either way within the budget.
func (r *RingConn) active(now int64) bool {
	return now-r.last.Load() < int64(r.budget())
}

// wait waits for the ring's data: it leads, follows or parks; nil means
// look again.
func (r *RingConn) wait() error {
	g := r.g
	g.mu.Lock()
	switch {
	case !r.active(mono()):
		g.mu.Unlock()
		return r.park()
	case g.leader == nil:
		g.leader = r
		g.mu.Unlock()
		return r.lead()
	}
	if g.followers == nil {
		g.followers = map[*RingConn]struct{}{}
	}
	g.followers[r] = struct{}{}
	r.rstate.Store(readerWatched)
	g.mu.Unlock()
	if r.ready() {
		r.dismiss()
	}
	<-r.wake
	r.rstate.Store(readerAwake)
	switch r.woken.Load() {
	case wakeLead:
		return r.lead()
	case wakePark:
		return r.park()
	}
	return nil
}

// lead spins, watching its ring and its followers', until its ring has
// data or it is idle.
func (r *RingConn) lead() error {
	for i := 0; ; i++ {
		if r.ready() {
			r.g.sweep(r, mono(), true)
			return nil
		}
		if i&15 == 15 && r.g.sweep(r, mono(), false) {
			return r.park()
		}
		runtime.Gosched()
	}
}

// park waits in the network poller for a doorbell, a kick, the end of the
// connection or the read deadline.
func (r *RingConn) park() error {
	r.rstate.Store(readerParked)
	defer r.rstate.Store(readerAwake)
	if r.ready() {
		return nil
	}
	_, err := r.uc.Read(r.bell[:])
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		r.eof = true
		r.gone.Store(true)
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		r.dmu.Lock()
		kicked := r.kicked && !r.stopped.Load()
		if kicked {
			r.kicked = false
			r.uc.SetReadDeadline(r.deadline)
		}
		r.dmu.Unlock()
		if kicked {
			return nil
		}
		return err
	}
	r.gone.Store(true)
	return err
}

func (r *RingConn) Write(b []byte) (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if !r.enter() {
		return 0, r.opError("write", net.ErrClosed)
	}
	defer r.exit()
	written := 0
	var wait time.Duration
	var full int64 // since when the ring is full (mono)
	for len(b) > 0 {
		n, err := r.out.write(b)
		if err != nil {
			return written, err
		}
		if n > 0 {
			b, written, wait, full = b[n:], written+n, 0, 0
			r.last.Store(mono())
			r.ring()
			continue
		}
		// The ring is full: the reader is behind. A reader at work
		// empties it in microseconds, so spin a while; then sleep, a
		// little longer each time (a reader that does not read).
		if dl := r.wdeadline.Load(); dl != 0 && time.Now().UnixNano() >= dl {
			return written, r.opError("write", os.ErrDeadlineExceeded)
		}
		if r.refs.Load()&closedBit != 0 {
			return written, r.opError("write", net.ErrClosed)
		}
		if r.gone.Load() {
			return written, r.opError("write", syscall.EPIPE)
		}
		if full == 0 {
			full = mono()
		}
		if mono()-full < int64(fullSpin) {
			runtime.Gosched()
			continue
		}
		wait = max(wait, fullSpin/8)
		time.Sleep(wait)
		wait = min(2*wait, time.Millisecond)
	}
	return written, nil
}

// ring wakes the peer's reader if it is parked and nobody in its process
// watches it. The doorbell is not waited for: a full socket buffer holds
// doorbells enough.
func (r *RingConn) ring() {
	if r.wstate.Load() != readerParked || !r.wstate.CompareAndSwap(readerParked, readerAwake) {
		return
	}
	var err error
	r.rc.Write(func(fd uintptr) bool {
		_, err = unix.Write(int(fd), []byte{1})
		return err != unix.EINTR
	})
	if err != nil && err != unix.EAGAIN {
		// No doorbell went (EAGAIN: the socket holds unread ones): the
		// next write rings again.
		r.wstate.CompareAndSwap(readerAwake, readerParked)
	}
}
