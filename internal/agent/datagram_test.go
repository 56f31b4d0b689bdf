package agent

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func TestDatagramRoundTrip(t *testing.T) {
	for _, v := range []any{
		&renewRequest{Member: "m2", Sent: 1764900000123456789, Links: []bool{true, false, true}, DLM: 7},
		&renewRequest{Member: "a-member-name-of-sixty-three-bytes-abcdefghijklmnopqrstuvwxyz-01", Sent: 1, Links: []bool{true, true, true, true, true, true, true, true}},
		&renewRequest{Member: "m1"},
		&renewGrant{Member: "m3", Sent: 42, Index: 1 << 40},
	} {
		var b []byte
		switch m := v.(type) {
		case *renewRequest:
			b = m.encode()
		case *renewGrant:
			b = m.encode()
		}
		got, err := decodeDatagram(b)
		if err != nil {
			t.Fatalf("%+v: %v", v, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("decoded %+v, want %+v", got, v)
		}
		// Every shorter datagram, and one with a byte more, is refused.
		for n := range len(b) {
			if _, err := decodeDatagram(b[:n]); err == nil {
				t.Errorf("%+v cut to %d bytes decoded", v, n)
			}
		}
		if _, err := decodeDatagram(append(bytes.Clone(b), 0)); err == nil {
			t.Errorf("%+v with a byte more decoded", v)
		}
	}
	for _, b := range [][]byte{nil, []byte("vigil-renew/1"), []byte("vigil-renew/1x"), []byte("vigil-renew/2r"), []byte("gossip")} {
		if _, err := decodeDatagram(b); err == nil {
			t.Errorf("%q decoded", b)
		}
	}
}

func FuzzDecodeDatagram(f *testing.F) {
	f.Add((&renewRequest{Member: "m2", Sent: 99, Links: []bool{true, false}, DLM: 3}).encode())
	f.Add((&renewGrant{Member: "m2", Sent: 99, Index: 12}).encode())
	f.Add([]byte("vigil-renew/1r\x09"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeDatagram(b)
		if err != nil {
			return
		}
		// What decodes encodes back to the same bytes.
		var again []byte
		switch m := v.(type) {
		case *renewRequest:
			again = m.encode()
		case *renewGrant:
			again = m.encode()
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("%q decoded to %+v, which encodes to %q", b, v, again)
		}
	})
}

// The director takes a member's renewal datagrams in order, once each.
func TestGrantSentRefusesReplays(t *testing.T) {
	var tm term
	now := time.Now()
	const every = 200 * time.Millisecond
	if tm.grantSent("m2", 10, now, nil, 0, every) {
		t.Fatal("granted outside a term")
	}
	tm.begin(now)
	for _, tc := range []struct {
		member string
		sent   int64
		at     time.Duration
		want   bool
	}{
		{"m2", 10, 0, true},
		{"m2", 10, every, false},     // the same again
		{"m2", 9, 2 * every, false},  // an older one
		{"m2", 11, every / 2, false}, // renewed too lately
		{"m2", 12, every, true},
		{"m3", 5, every, true}, // another member's count is its own
	} {
		if got := tm.grantSent(tc.member, tc.sent, now.Add(tc.at), nil, 0, every); got != tc.want {
			t.Errorf("%s sent %d at +%s: granted %v, want %v", tc.member, tc.sent, tc.at, got, tc.want)
		}
		if tc.want {
			now = now.Add(tc.at)
		}
	}
	// A renewal over RPC counts too.
	tm.grant("m3", now.Add(every), nil, 0)
	if tm.grantSent("m3", 6, now.Add(every+every/2), nil, 0, every) {
		t.Error("a datagram was granted half a renewal period after an RPC renewal")
	}
	if _, renewals := tm.snapshot(); renewals["m2"].IsZero() || renewals["m3"].IsZero() {
		t.Error("the datagrams granted are not renewals")
	}
	tm.end()
	tm.begin(now)
	if !tm.grantSent("m2", 12, now, nil, 0, every) {
		t.Error("a new term refused a datagram the last one took")
	}
}

// A member counts a grant from when it sent the request, takes each grant
// once, and forgets requests older than the lease.
func TestDatagramsPending(t *testing.T) {
	var d datagrams
	now := time.Unix(100, 0)
	a := d.next(now, time.Second, time.Second)
	b := d.next(now, 2*time.Second, time.Second) // the same wall clock: still later
	if b <= a {
		t.Fatalf("sent %d then %d", a, b)
	}
	if at, ok := d.granted(b); !ok || at != 2*time.Second {
		t.Fatalf("grant of b: %v %v", at, ok)
	}
	if _, ok := d.granted(b); ok {
		t.Error("a grant taken twice")
	}
	d.next(now, 3*time.Second, time.Second) // a, sent at 1 s, is too old now
	if _, ok := d.granted(a); ok {
		t.Error("a grant of a request older than the lease was taken")
	}
}
