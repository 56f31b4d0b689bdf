package socket

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
	"unicode/utf8"
)

// The raw protocol: the same frames as the gRPC stream, each after its
// length, with nothing else on the connection.
const (
	// Magic is what a client of the raw protocol writes first.
	Magic = "VDLM1\n"
	// Preface is what a gRPC (HTTP/2) client writes first.
	Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// HeaderSize is the length of a raw frame's header: the length of the
	// frame that follows, 4 bytes big-endian. Lengths above MaxFrame are
	// errors, except with EndBit.
	HeaderSize = 4
	// EndBit in a server's header marks its last frame: not a ServerFrame
	// but why the server ended the session, as UTF-8 text.
	EndBit = 1 << 31
	// ReadBuffer is the buffer of a raw connection's reader: one read
	// takes many frames.
	ReadBuffer = 64 << 10
)

// Timeouts of the raw protocol's server side.
var (
	// sniffWait bounds the wait for a new connection's first bytes.
	sniffWait = 10 * time.Second
	// directWait bounds a write by the reader: when the client takes
	// longer, the writer goroutine finishes it and the reader goes on
	// reading requests (so that a client that does not read is caught by
	// MaxPending).
	directWait = 20 * time.Millisecond
	// endWait bounds the writes at the end of a session.
	endWait = time.Second
)

// maxEndReason bounds the text of an end frame.
const maxEndReason = 4096

// frameSplit is the size after which the appenders below start a new
// frame, well under MaxFrame: no request or message is near MaxFrame -
// frameSplit bytes.
const frameSplit = 1 << 20

// EndError is a session's end, as the server's end frame gave it.
type EndError struct{ Reason string }

func (e *EndError) Error() string {
	if e.Reason == "" {
		return "the lock manager ended the session without saying why"
	}
	return e.Reason
}

// FrameError is a raw frame that cannot be read.
type FrameError struct{ Msg string }

func (e *FrameError) Error() string { return e.Msg }

// FrameReader reads raw frames from a connection.
type FrameReader struct {
	r   *bufio.Reader
	buf []byte
}

// NewFrameReader returns a reader of r's frames with a buffer of
// ReadBuffer bytes.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, ReadBuffer)}
}

// Next reads the next frame and returns its payload, valid until the next
// call. The end of the connection between two frames is io.EOF; an end
// frame is an *EndError; a frame that is too long or cut short is a
// *FrameError.
func (fr *FrameReader) Next() ([]byte, error) {
	h, err := fr.r.Peek(HeaderSize)
	if err != nil {
		if len(h) > 0 && errors.Is(err, io.EOF) {
			return nil, &FrameError{Msg: "the connection ended inside a frame's header (" + strconv.Itoa(len(h)) + " of " + strconv.Itoa(HeaderSize) + " bytes)"}
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(h)
	end := n&EndBit != 0
	n &^= EndBit
	switch {
	case end && n > maxEndReason:
		return nil, &FrameError{Msg: "an end frame of " + strconv.FormatUint(uint64(n), 10) + " bytes is too long: it holds at most " + strconv.Itoa(maxEndReason)}
	case n > MaxFrame:
		return nil, &FrameError{Msg: "a frame of " + strconv.FormatUint(uint64(n), 10) + " bytes is too long: send at most " + strconv.Itoa(MaxFrame) + " bytes per frame (MaxFrame)"}
	}
	fr.r.Discard(HeaderSize)
	if cap(fr.buf) < int(n) || cap(fr.buf) > ReadBuffer && int(n) <= ReadBuffer {
		fr.buf = make([]byte, max(int(n), 4<<10))
	}
	b := fr.buf[:n]
	if got, err := io.ReadFull(fr.r, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, &FrameError{Msg: "the connection ended inside a frame of " + strconv.FormatUint(uint64(n), 10) + " bytes, after " + strconv.Itoa(got)}
		}
		return nil, err
	}
	if end {
		return nil, &EndError{Reason: string(b)}
	}
	return b, nil
}

// Whole says whether a whole frame is buffered: Next returns it without
// reading the connection.
func (fr *FrameReader) Whole() bool {
	if fr.r.Buffered() < HeaderSize {
		return false
	}
	h, _ := fr.r.Peek(HeaderSize)
	n := binary.BigEndian.Uint32(h) &^ EndBit
	return n <= MaxFrame && fr.r.Buffered()-HeaderSize >= int(n)
}

// beginFrame appends room for a header.
func beginFrame(b []byte) ([]byte, int) {
	return append(b, 0, 0, 0, 0), len(b)
}

// endFrame writes the header of the frame that starts at start.
func endFrame(b []byte, start int, bits uint32) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-HeaderSize)|bits)
	return b
}

// AppendRawRequests appends reqs as raw frames: as many as it takes to
// keep each within MaxRequests requests and well within MaxFrame.
func AppendRawRequests(b []byte, reqs []Request) []byte {
	for len(reqs) > 0 {
		b0, start := beginFrame(b)
		b = append(b0, `{"reqs":[`...)
		n := 0
		for n < len(reqs) && n < MaxRequests && (n == 0 || len(b)-start < frameSplit) {
			if n > 0 {
				b = append(b, ',')
			}
			b = appendRequest(b, &reqs[n])
			n++
		}
		b = endFrame(append(b, "]}"...), start, 0)
		reqs = reqs[n:]
	}
	return b
}

// AppendRawMessages appends msgs as raw server frames, each within
// MaxMessages messages and well within MaxFrame.
func AppendRawMessages(b []byte, msgs []Message) []byte {
	for len(msgs) > 0 {
		b0, start := beginFrame(b)
		b = append(b0, `{"msgs":[`...)
		n := 0
		for n < len(msgs) && n < MaxMessages && (n == 0 || len(b)-start < frameSplit) {
			if n > 0 {
				b = append(b, ',')
			}
			b = appendMessage(b, &msgs[n])
			n++
		}
		b = endFrame(append(b, "]}"...), start, 0)
		msgs = msgs[n:]
	}
	return b
}

// AppendRawFrame appends a raw frame holding payload as it is (tests,
// clients with their own encoder).
func AppendRawFrame(b []byte, payload []byte) []byte {
	b, start := beginFrame(b)
	return endFrame(append(b, payload...), start, 0)
}

// AppendEndFrame appends the server's end frame: why the session ended,
// cut to what an end frame holds.
func AppendEndFrame(b []byte, reason string) []byte {
	if len(reason) > maxEndReason {
		reason = reason[:maxEndReason]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	b, start := beginFrame(b)
	return endFrame(append(b, reason...), start, EndBit)
}

// errUnknownProtocol is written, as one line, to a connection that opens
// with neither Preface nor Magic.
var errUnknownProtocol = fmt.Sprintf("vigil lock manager socket: unknown protocol: open the connection with the HTTP/2 preface (gRPC service %s), with %q (shared rings) or with %q followed by frames of a 4-byte big-endian length and JSON (docs/DLM.md)\n", ServiceName, MagicRing, Magic)

// Protocols a connection opens with.
const (
	protoUnknown = iota
	protoGRPC
	protoRaw
	protoRing
)

// sniff reads a connection's first bytes: the protocol, and the bytes read
// that belong to it (the preface for gRPC; what came after the magic for
// the raw protocol).
func sniff(c net.Conn) (proto int, got []byte, err error) {
	c.SetReadDeadline(time.Now().Add(sniffWait))
	defer c.SetReadDeadline(time.Time{})
	var buf [len(Preface)]byte
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		b := buf[:n]
		switch {
		case n >= len(Magic) && string(b[:len(Magic)]) == Magic:
			return protoRaw, append([]byte(nil), b[len(Magic):]...), nil
		case n >= len(MagicRing) && string(b[:len(MagicRing)]) == MagicRing:
			// The client waits for the ring before it writes more.
			return protoRing, nil, nil
		case n == len(Preface) && string(b) == Preface:
			return protoGRPC, append([]byte(nil), b...), nil
		case !isPrefix(b, Magic) && !isPrefix(b, MagicRing) && !isPrefix(b, Preface):
			return protoUnknown, nil, nil
		case err != nil:
			return protoUnknown, nil, err
		}
	}
}

func isPrefix(b []byte, s string) bool {
	return len(b) <= len(s) && string(b) == s[:len(b)]
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
