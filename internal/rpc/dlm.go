package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm/server"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// The lock manager's connections (ProtoDLM): each frame is a 4-byte
// big-endian length and that many bytes of JSON: server.Batch from the
// dialing member, server.Ack back, in order.

// MaxDLMFrame bounds one frame.
const MaxDLMFrame = MaxMessage

// WriteFrame writes v as one frame to w (not flushed).
func WriteFrame(w *bufio.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxDLMFrame {
		return fmt.Errorf("lock manager frame of %d bytes is over the limit of %d", len(b), MaxDLMFrame)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	w.Write(n[:])
	_, err = w.Write(b)
	return err
}

// ReadFrame reads one frame from r into v.
func ReadFrame(r *bufio.Reader, v any) error {
	b, err := readFrameBytes(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("lock manager frame does not decode: %w", err)
	}
	return nil
}

// readFrameBytes reads one frame's payload.
func readFrameBytes(r *bufio.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxDLMFrame {
		return nil, fmt.Errorf("lock manager frame of %d bytes is over the limit of %d", size, MaxDLMFrame)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// writeFrameBytes writes one frame with payload b (not flushed).
func writeFrameBytes(w *bufio.Writer, b []byte) error {
	if len(b) > MaxDLMFrame {
		return fmt.Errorf("lock manager frame of %d bytes is over the limit of %d", len(b), MaxDLMFrame)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	w.Write(n[:])
	_, err := w.Write(b)
	return err
}

// readBatch reads one batch frame, binary (ProtoDLM2) or JSON.
func readBatch(r *bufio.Reader, bin bool, b *server.Batch) error {
	if !bin {
		return ReadFrame(r, b)
	}
	p, err := readFrameBytes(r)
	if err != nil {
		return err
	}
	if err := decodeBatch(p, b); err != nil {
		return fmt.Errorf("lock manager frame does not decode: %w", err)
	}
	return nil
}

// DLMConn is the dialing end of a lock manager connection: a server.Link.
type DLMConn struct {
	c   *tls.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	bin bool   // ProtoDLM2: binary frames
	buf []byte // the frame being written, reused
}

// DialDLM opens a lock manager connection to the member at addr, giving
// up after timeout.
func (p *Pool) DialDLM(ctx context.Context, addr string, timeout time.Duration) (*DLMConn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: p.id.ClientConfig(dialDLMProtos...)}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	proto := tc.ConnectionState().NegotiatedProtocol
	if proto != ProtoDLM && proto != ProtoDLM2 {
		tc.Close()
		return nil, fmt.Errorf("the member at %s does not speak %s (an older vigil?)", addr, ProtoDLM)
	}
	return &DLMConn{c: tc, r: bufio.NewReaderSize(tc, 64<<10), w: bufio.NewWriterSize(tc, 64<<10), bin: proto == ProtoDLM2}, nil
}

// Send writes a batch.
func (l *DLMConn) Send(b *server.Batch) error {
	if !l.bin {
		if err := WriteFrame(l.w, b); err != nil {
			return err
		}
		return l.w.Flush()
	}
	p, err := appendBatch(l.buf[:0], b)
	if err != nil {
		return err
	}
	if cap(p) <= 1<<20 {
		l.buf = p
	}
	if err := writeFrameBytes(l.w, p); err != nil {
		return err
	}
	return l.w.Flush()
}

// Recv reads the next ack.
func (l *DLMConn) Recv() (server.Ack, error) {
	var a server.Ack
	if !l.bin {
		err := ReadFrame(l.r, &a)
		return a, err
	}
	p, err := readFrameBytes(l.r)
	if err != nil {
		return a, err
	}
	if err := decodeAck(p, &a); err != nil {
		return a, fmt.Errorf("lock manager frame does not decode: %w", err)
	}
	return a, nil
}

// Close closes the connection.
func (l *DLMConn) Close() { l.c.Close() }

// ServeDLM serves one accepted lock manager connection: every batch must
// come from the member its certificate names; each is applied by recv and
// answered in order. It returns when the connection ends.
func ServeDLM(c *tls.Conn, apply func(*server.Batch) server.Ack) error {
	defer c.Close()
	st := c.ConnectionState()
	leaf := pki.PeerLeaf(st)
	if leaf == nil {
		return fmt.Errorf("lock manager connection without a member certificate")
	}
	peer := leaf.Subject.CommonName
	bin := st.NegotiatedProtocol == ProtoDLM2
	r, w := bufio.NewReaderSize(c, 64<<10), bufio.NewWriterSize(c, 64<<10)
	var abuf []byte
	// Acks are off the lock path (the answers to requests travel as
	// batches the other way): they are flushed in bursts, every ackBurst
	// or ackDelay after the first one waiting, which saves a write on
	// this side and a read on the other for most batches.
	var (
		mu      sync.Mutex // guards w, waiting, armed
		waiting int
		armed   bool
		werr    error
	)
	timer := time.AfterFunc(time.Hour, func() {
		mu.Lock()
		defer mu.Unlock()
		armed = false
		if waiting > 0 {
			waiting = 0
			if err := w.Flush(); err != nil {
				werr = err
				c.Close()
			}
		}
	})
	timer.Stop()
	defer timer.Stop()
	for {
		var b server.Batch
		if err := readBatch(r, bin, &b); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if b.From != peer {
			return fmt.Errorf("member %s sent lock manager batches as %s", peer, b.From)
		}
		ack := apply(&b)
		mu.Lock()
		err := werr
		if err == nil {
			if bin {
				abuf = appendAck(abuf[:0], &ack)
				err = writeFrameBytes(w, abuf)
			} else {
				err = WriteFrame(w, &ack)
			}
			waiting++
		}
		if err == nil && r.Buffered() == 0 {
			switch {
			case waiting >= ackBurst || ack.Code != server.AckOK:
				waiting = 0
				err = w.Flush()
			case !armed:
				armed = true
				timer.Reset(ackDelay)
			}
		}
		mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Ack flushing of ServeDLM.
const (
	ackBurst = 16
	ackDelay = time.Millisecond
)
