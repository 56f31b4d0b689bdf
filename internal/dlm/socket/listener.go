package socket

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/status"
)

// listener is what the gRPC server serves: it reads the first bytes of
// every connection it accepts, hands those that open with Preface to the
// gRPC server (its Accept) and serves those that open with Magic itself.
// Closing it, as the gRPC server's Stop does, ends its raw sessions too.
type listener struct {
	net.Listener
	svc *service

	grpc   chan net.Conn // connections for the gRPC server
	done   chan struct{} // closed by Close
	broken chan struct{} // closed when accepting failed
	err    error         // why accepting failed (set before broken is closed)
	once   sync.Once

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu: connections being sniffed or in a raw session
	closed bool                  // guarded by mu
}

func newListener(ln net.Listener, svc *service) *listener {
	l := &listener{Listener: ln, svc: svc, grpc: make(chan net.Conn), done: make(chan struct{}),
		broken: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go l.accept()
	return l
}

// accept accepts connections until the listener fails or is closed.
func (l *listener) accept() {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Out of file descriptors and the like: wait a little.
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(pause):
					continue
				case <-l.done:
					return
				}
			}
			l.err = err
			close(l.broken)
			return
		}
		pause = 0
		if !l.track(c) {
			c.Close()
			return
		}
		go l.handle(c)
	}
}

// track adds c to the connections that Close ends; false when closed.
func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

// swap makes Close end rc instead of c (a ring session's connection, whose
// reader does not watch the socket while messages flow); false when
// closed.
func (l *listener) swap(c, rc net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	delete(l.conns, c)
	l.conns[rc] = struct{}{}
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// handle sniffs a connection and serves it.
func (l *listener) handle(c net.Conn) {
	proto, got, err := sniff(c)
	switch {
	case err != nil:
		// The client went away or said nothing in time.
		l.untrack(c)
		if !errors.Is(err, io.EOF) {
			c.SetWriteDeadline(time.Now().Add(endWait))
			io.WriteString(c, "vigil lock manager socket: nothing received: a client must open with the HTTP/2 preface (gRPC) or "+`"VDLM1\n"`+"\n")
		}
		c.Close()
	case proto == protoGRPC:
		l.untrack(c)
		select {
		case l.grpc <- &prefixConn{Conn: c, pre: got}:
		case <-l.done:
			c.Close()
		}
	case proto == protoRaw:
		l.svc.raw(&prefixConn{Conn: c, pre: got})
		l.untrack(c)
		c.Close()
	case proto == protoRing:
		l.svc.ring(c, l.swap)
		l.untrack(c)
		c.Close()
	default:
		l.untrack(c)
		c.SetWriteDeadline(time.Now().Add(endWait))
		io.WriteString(c, errUnknownProtocol)
		c.Close()
	}
}

// Accept returns the next gRPC connection.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.grpc:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.broken:
		return nil, l.err
	}
}

// Close closes the listener and ends the raw sessions and the connections
// not handed to the gRPC server yet.
func (l *listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.mu.Lock()
		l.closed = true
		for c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// raw serves a session of the raw protocol on c, whose magic was read.
func (s *service) raw(c net.Conn) {
	w := &rawWire{c: c, clean: true}
	st := newStream(w, s.log)
	r, sr := spinReader(c, st.spinBudget)
	w.fr = NewFrameReader(r)
	stopRead := func() { c.SetReadDeadline(longAgo) }
	if sr != nil {
		st.kick, stopRead = sr.Kick, sr.Stop
	}
	s.serveRaw(c, w, st, stopRead)
}

// agentRings is the ring group of the agent's session readers.
var agentRings RingGroup

// ring serves a session of the ring protocol on c, whose magic was read;
// swap trades connections in the listener's (listener.swap).
func (s *service) ring(c net.Conn, swap func(old, new net.Conn) bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.SetWriteDeadline(time.Now().Add(endWait))
		c.Write(AppendEndFrame(nil, "shared rings need a Unix socket: dial with the raw protocol ("+strconv.Quote(Magic)+")"))
		return
	}
	var st *stream
	rc, err := ServeRing(uc, &agentRings, func() time.Duration { return st.spinBudget() })
	if err != nil {
		s.log.Warn("dlm session refused", "err", err)
		return
	}
	defer rc.Close()
	if !swap(c, rc) {
		return
	}
	defer swap(rc, c)
	w := &rawWire{c: rc, clean: true}
	st = newStream(w, s.log)
	w.fr = NewFrameReader(rc)
	st.kick = rc.Kick
	s.serveRaw(rc, w, st, rc.Stop)
}

// serveRaw serves a session of raw frames on c.
func (s *service) serveRaw(c net.Conn, w *rawWire, st *stream, stopRead func()) {
	if err := st.open(s.srv); err != nil {
		s.log.Info("dlm session refused", "err", err)
		w.end(err)
		return
	}
	end, quiet := st.serve(func() {
		// Unblock the reader now and the writer soon.
		stopRead()
		c.SetWriteDeadline(time.Now().Add(endWait))
	})
	switch {
	case end == nil:
		st.log.Debug("dlm session closed by its client")
		return
	case isGone(end):
		st.log.Debug("dlm session ended: client gone", "err", end)
		return
	}
	st.log.Info("dlm session ended", "err", end)
	if quiet {
		w.end(end)
	}
}

// isGone says whether err is the client going away.
func isGone(err error) bool {
	var ne *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// rawWire is a session's raw connection.
type rawWire struct {
	c  net.Conn
	fr *FrameReader

	// The sending side: owned by one goroutine at a time (stream.writing).
	buf      []byte // frames being written
	left     []byte // what a send with soon did not write
	deadline bool   // a write deadline is set
	clean    bool   // no frame was cut short: an end frame can follow

	frame ClientFrame // the frame recv returned last
}

func (w *rawWire) recv() (*ClientFrame, error) {
	b, err := w.fr.Next()
	if err != nil {
		return nil, err
	}
	// The reader runs a frame's requests before it receives the next.
	if err := DecodeFrameInto(b, &w.frame); err != nil {
		return nil, err
	}
	return &w.frame, nil
}

func (w *rawWire) send(msgs []Message, soon bool) (bool, error) {
	if !soon && w.deadline {
		w.c.SetWriteDeadline(time.Time{})
		w.deadline = false
	}
	if len(w.left) > 0 {
		if _, err := w.c.Write(w.left); err != nil {
			w.clean = false
			return false, err
		}
		w.left = w.left[:0]
	}
	if len(msgs) == 0 {
		return false, nil
	}
	w.buf = AppendRawMessages(w.buf[:0], msgs)
	if soon {
		w.c.SetWriteDeadline(time.Now().Add(directWait))
		w.deadline = true
	}
	n, err := w.c.Write(w.buf)
	if cap(w.buf) > 1<<20 {
		defer func() { w.buf = nil }() // a burst's large buffer is not kept
	}
	if err != nil {
		var ne net.Error
		if soon && errors.As(err, &ne) && ne.Timeout() {
			w.left = append(w.left[:0], w.buf[n:]...)
			return true, nil
		}
		if n > 0 {
			w.clean = false
		}
		return false, err
	}
	return false, nil
}

func (w *rawWire) direct() bool { return true }
func (w *rawWire) whole() bool  { return w.fr.Whole() }

// end writes the end frame: why the session ended.
func (w *rawWire) end(err error) {
	if !w.clean || len(w.left) > 0 {
		return
	}
	reason := err.Error()
	if s, ok := status.FromError(err); ok {
		reason = s.Message()
	}
	w.c.SetWriteDeadline(time.Now().Add(endWait))
	w.c.Write(AppendEndFrame(nil, reason))
}

// agentSpinners is the spin group of the agent's session readers.
var agentSpinners SpinGroup

// spinReader returns the reader of a session's connection c, spinning
// for budget() after each request, and its SpinReader (nil when c is not
// a socket).
func spinReader(c net.Conn, budget func() time.Duration) (io.Reader, *SpinReader) {
	pc, ok := c.(*prefixConn)
	if !ok {
		return c, nil
	}
	sr, ok := NewSpinReader(pc.Conn, &agentSpinners, budget).(*SpinReader)
	if !ok {
		return c, nil
	}
	if len(pc.pre) > 0 {
		// What came with the magic comes first.
		return io.MultiReader(bytes.NewReader(pc.pre), sr), sr
	}
	return sr, sr
}
