package socket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// readAll reads what the server writes on c until it closes c.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading until the server closes the connection: %v", err)
	}
	return string(b)
}

// A connection that opens with neither the gRPC preface nor the magic is
// told so in one line and closed; so is one that says nothing in time.
func TestSniffUnknown(t *testing.T) {
	defer func(d time.Duration) { sniffWait = d }(sniffWait)
	sniffWait = 200 * time.Millisecond
	srv := newServer(t)
	path := serveOn(t, srv)
	for _, first := range []string{"GET / HTTP/1.1\r\n\r\n", "VDLM2\n", "PRI * HTTP/1.1\r\n", "\x00\x00\x00\x10"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(first))
		got := readAll(t, c)
		c.Close()
		if !strings.HasPrefix(got, "vigil lock manager socket: unknown protocol: open the connection with the HTTP/2 preface") ||
			!strings.Contains(got, strconv.Quote(Magic)) || strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
			t.Errorf("after %q the server wrote %q, want one line naming both protocols", first, got)
		}
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("VDL")) // a beginning, and nothing more
	if got := readAll(t, c); !strings.Contains(got, "nothing received") {
		t.Errorf("a silent client got %q", got)
	}
	if n := srv.Stats().Sessions; n != 0 {
		t.Errorf("%d sessions opened", n)
	}
}

// The magic may come in pieces, and with the first frame.
func TestSniffPieces(t *testing.T) {
	srv := newServer(t)
	c, err := net.Dial("unix", serveOn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(Magic[:2]))
	time.Sleep(10 * time.Millisecond)
	b := append([]byte(Magic[2:]), AppendRawRequests(nil, []Request{{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Mode: "EX"}})...)
	c.Write(b)
	fr := NewFrameReader(c)
	var msgs []Message
	for len(msgs) < 3 {
		p, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		var f ServerFrame
		if err := (Codec{}).Unmarshal(p, &f); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, f.Messages...)
	}
	if msgs[0].Event != EventOpen || msgs[1].Tag != 1 || msgs[1].Err != "" || msgs[2].Event != EventGranted {
		t.Fatalf("messages %+v: want open, the answer, the grant", msgs)
	}
}

// A raw frame longer than MaxFrame ends the session with the limit named;
// its bytes are not read.
func TestRawFrameTooLong(t *testing.T) {
	srv := newServer(t)
	s := open(t, "raw", serveOn(t, srv))
	s.send(enqueue("r", "EX"))
	s.next()
	s.next()
	var h [HeaderSize]byte
	binary.BigEndian.PutUint32(h[:], MaxFrame+1)
	s.stream.(*rawStream).c.Write(h[:])
	err := s.end()
	var end *EndError
	if !errors.As(err, &end) || !strings.Contains(err.Error(), "a frame of 4194305 bytes is too long: send at most 4194304 bytes per frame") {
		t.Fatalf("after a frame too long: %v", err)
	}
	waitFor(t, "the session's locks to be released", func() bool { return len(srv.Locks().Held) == 0 && srv.Stats().Sessions == 0 })
}

// A connection that ends inside a frame ends the session.
func TestRawTruncatedFrame(t *testing.T) {
	srv := newServer(t)
	s := open(t, "raw", serveOn(t, srv))
	s.send(enqueue("r", "EX"))
	s.next()
	s.next()
	full := AppendRawRequests(nil, []Request{enqueue("q", "EX")})
	full[HeaderSize+2] = 'X' // never decoded: the frame is cut short
	c := s.stream.(*rawStream).c
	c.Write(full[:len(full)-5])
	c.CloseWrite()
	waitFor(t, "the session's locks to be released", func() bool { return len(srv.Locks().Held) == 0 && srv.Stats().Sessions == 0 })
	err := s.end()
	if !strings.Contains(err.Error(), "the connection ended inside a frame of") {
		t.Fatalf("after a cut frame: %v", err)
	}
}

// Stopping the server ends its raw sessions.
func TestStopEndsRawSessions(t *testing.T) {
	srv := newServer(t)
	dir := t.TempDir()
	ln, err := net.Listen("unix", dir+"/"+File)
	if err != nil {
		t.Fatal(err)
	}
	g := Serve(ln, srv, nil)
	s := open(t, "raw", dir+"/"+File)
	s.send(enqueue("r", "EX"))
	s.next()
	g.Stop()
	s.end()
	waitFor(t, "the session's locks to be released", func() bool { return len(srv.Locks().Held) == 0 && srv.Stats().Sessions == 0 })
}

func TestFrameReader(t *testing.T) {
	reqs := []Request{{Tag: 1, Op: OpUnlock, Lock: idN(3)}, {Tag: 2, Op: OpCancel, Lock: idN(4)}}
	b := AppendRawRequests(nil, reqs)
	b = AppendRawFrame(b, []byte(`{"reqs":[]}`))
	b = AppendEndFrame(b, "over")
	fr := NewFrameReader(bytes.NewReader(b))
	if fr.Whole() {
		t.Fatal("a frame is whole before any read")
	}
	p, err := fr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if f, err := DecodeFrame(p); err != nil || len(f.Requests) != 2 || f.Requests[1].Lock != idN(4) {
		t.Fatalf("first frame %q: %v", p, err)
	}
	if !fr.Whole() {
		t.Fatal("the second frame is buffered but not whole")
	}
	if p, err := fr.Next(); err != nil || string(p) != `{"reqs":[]}` {
		t.Fatalf("second frame %q %v", p, err)
	}
	var end *EndError
	if _, err := fr.Next(); !errors.As(err, &end) || end.Reason != "over" {
		t.Fatalf("end frame: %v", err)
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v", err)
	}
	var fe *FrameError
	if _, err := NewFrameReader(bytes.NewReader([]byte{0, 0})).Next(); !errors.As(err, &fe) || !strings.Contains(err.Error(), "inside a frame's header") {
		t.Fatalf("a cut header: %v", err)
	}

	// Many requests make several frames, each within the limits.
	many := make([]Request, 3*MaxRequests+1)
	for i := range many {
		many[i] = Request{Tag: uint64(i + 1), Op: OpEnqueue, Lockspace: strings.Repeat("l", 64), Name: strings.Repeat("\u00e9", 32), Mode: "EX"}
	}
	fr = NewFrameReader(bytes.NewReader(AppendRawRequests(nil, many)))
	n := 0
	for {
		p, err := fr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f, err := DecodeFrame(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range f.Requests {
			n++
			if r.Tag != uint64(n) {
				t.Fatalf("request %d has tag %d", n, r.Tag)
			}
		}
	}
	if n != len(many) {
		t.Fatalf("%d requests read back of %d", n, len(many))
	}
}

// FuzzReadFrame: whatever a client sends after the magic, reading frames
// neither panics nor returns a frame beyond MaxFrame, and what decodes
// encodes to frames that read back the same.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendRawRequests(nil, []Request{{Tag: 1, Op: OpEnqueue, Lockspace: "ls", Name: "r", Mode: "EX"}}))
	f.Add(AppendRawFrame(AppendRawFrame(nil, []byte(seeds[0])), []byte(seeds[1])))
	f.Add(AppendEndFrame(nil, "the end"))
	f.Add([]byte{0x00, 0x40, 0x00, 0x01, '{'})
	f.Add([]byte{0x00, 0x00, 0x00, 0x09, '{', '"', 'r'})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bytes.NewReader(b))
		for range 16 {
			p, err := fr.Next()
			if err != nil {
				if err.Error() == "" {
					t.Fatal("empty error")
				}
				return
			}
			if len(p) > MaxFrame {
				t.Fatalf("a frame of %d bytes let through", len(p))
			}
			frame, err := DecodeFrame(p)
			if err != nil || len(frame.Requests) == 0 {
				continue
			}
			enc := AppendRawRequests(nil, frame.Requests)
			again, err := NewFrameReader(bytes.NewReader(enc)).Next()
			if err != nil {
				t.Fatalf("%q does not read back: %v", enc, err)
			}
			f2, err := DecodeFrame(again)
			if err != nil {
				t.Fatalf("%q does not decode back: %v", again, err)
			}
			if enc2 := AppendRawRequests(nil, f2.Requests); !bytes.Equal(enc, enc2) {
				t.Fatalf("%q encodes to %q, then to %q", p, enc, enc2)
			}
		}
	})
}

func idN(n uint64) cluster.LockID { return cluster.LockID{Member: "m1", N: n} }
