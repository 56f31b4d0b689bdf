package socket

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// unixPair returns the two ends of a Unix socket connection.
func unixPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		got <- c
	}()
	a, err = net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-got
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestSpinReader(t *testing.T) {
	for _, budget := range []time.Duration{0, 50 * time.Microsecond, time.Second} {
		t.Run(budget.String(), func(t *testing.T) {
			a, b := unixPair(t)
			var g SpinGroup
			r := NewSpinReader(b, &g, func() time.Duration { return budget })
			buf := make([]byte, 16)
			// Data already there, data that comes while it spins or
			// waits, then the end of the connection.
			for _, delay := range []time.Duration{0, 200 * time.Microsecond, 20 * time.Millisecond} {
				go func() {
					time.Sleep(delay)
					a.Write([]byte("ping"))
				}()
				n, err := r.Read(buf)
				if err != nil || string(buf[:n]) != "ping" {
					t.Fatalf("after %v: read %q, %v", delay, buf[:n], err)
				}
				if g.token.Load() {
					t.Fatal("the spinner token is still held after a read")
				}
			}
			a.Close()
			if n, err := r.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("at the end: %d, %v, want io.EOF", n, err)
			}
		})
	}
}

// A reader that does not get the token reads as the connection does; a
// deadline ends a wait; closing the connection ends a read with
// net.ErrClosed (once the spin is over).
func TestSpinReaderTokenDeadlineClose(t *testing.T) {
	_, b := unixPair(t)
	var g SpinGroup
	g.token.Store(true) // another reader spins
	r := NewSpinReader(b, &g, func() time.Duration { return 50 * time.Millisecond })
	b.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	start := time.Now()
	if _, err := r.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	if time.Since(start) > 40*time.Millisecond {
		t.Fatalf("the read without the token took %v: it must not spin", time.Since(start))
	}
	g.token.Store(false)
	b.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 4))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read of a closed connection: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the connection did not end the read")
	}
	if g.token.Load() {
		t.Fatal("the token is still held")
	}
}

// NewSpinReader of something that is not a socket is the connection.
func TestSpinReaderNotSocket(t *testing.T) {
	a, _ := net.Pipe()
	defer a.Close()
	var g SpinGroup
	if r := NewSpinReader(a, &g, func() time.Duration { return time.Second }); r != io.Reader(a) {
		t.Fatalf("NewSpinReader(pipe) = %T, want the pipe", r)
	}
}

// Kick wakes a read that waits, which goes on waiting (spinning first)
// rather than failing; Stop ends it, and a kick after Stop does not undo
// that.
func TestSpinReaderKickStop(t *testing.T) {
	for _, budget := range []time.Duration{0, 50 * time.Microsecond} {
		t.Run(budget.String(), func(t *testing.T) {
			a, b := unixPair(t)
			var g SpinGroup
			r := NewSpinReader(b, &g, func() time.Duration { return budget }).(*SpinReader)
			got := make(chan error, 1)
			buf := make([]byte, 8)
			go func() {
				n, err := r.Read(buf)
				if err == nil && string(buf[:n]) != "next" {
					err = errors.New("read " + string(buf[:n]))
				}
				got <- err
			}()
			for range 5 {
				time.Sleep(2 * time.Millisecond)
				r.Kick()
			}
			select {
			case err := <-got:
				t.Fatalf("a kicked read returned: %v", err)
			case <-time.After(10 * time.Millisecond):
			}
			a.Write([]byte("next"))
			if err := <-got; err != nil {
				t.Fatal(err)
			}
			r.Kick() // a kick with no read waiting: the next read is not hurt
			a.Write([]byte("next"))
			if n, err := r.Read(buf); err != nil || string(buf[:n]) != "next" {
				t.Fatalf("read after a kick: %q, %v", buf[:n], err)
			}
			go func() {
				_, err := r.Read(buf)
				got <- err
			}()
			time.Sleep(5 * time.Millisecond)
			r.Stop()
			r.Kick()
			if err := <-got; !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read after Stop: %v", err)
			}
			if _, err := r.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a later read after Stop and a kick: %v", err)
			}
		})
	}
}
