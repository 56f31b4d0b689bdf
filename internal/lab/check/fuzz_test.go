package check

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseRecords: any input parses without panic; every record kept is
// valid and reads back the same from FormatRecord; every malformed line is
// reported with its line number.
func FuzzParseRecords(f *testing.F) {
	f.Add([]byte("m1 4 1000\nm2 5 2000\n"))
	f.Add([]byte("m1 4 1000\nm1 four 1500\n\nm1  4 5\nm1 4 -1\nm2 5"))
	f.Add([]byte("m1 18446744073709551615 9223372036854775807\nm\x7f 1 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, bad, err := ParseRecords(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("error from a bytes.Reader: %v", err)
		}
		lines := bytes.Count(data, []byte("\n"))
		if len(recs)+len(bad) > lines+1 {
			t.Fatalf("%d records and %d bad lines from %d lines", len(recs), len(bad), lines+1)
		}
		for _, b := range bad {
			if !strings.HasPrefix(b, "line ") {
				t.Fatalf("bad line message %q does not name the line", b)
			}
		}
		var again strings.Builder
		for _, r := range recs {
			if r.Member == "" || r.Mono < 0 || strings.ContainsAny(r.Member, " \n") {
				t.Fatalf("invalid record %+v", r)
			}
			again.WriteString(FormatRecord(r))
		}
		recs2, bad2, err := ParseRecords(strings.NewReader(again.String()))
		if err != nil || len(bad2) > 0 || len(recs2) != len(recs) {
			t.Fatalf("re-reading %d records: %d records, bad %q, err %v", len(recs), len(recs2), bad2, err)
		}
		for i := range recs {
			if recs[i] != recs2[i] {
				t.Fatalf("record %+v read back as %+v", recs[i], recs2[i])
			}
		}
	})
}

// FuzzParseProbes: any input parses without panic, and FormatProbe of any
// valid probe (any body at all) reads back as the same probe.
func FuzzParseProbes(f *testing.F) {
	f.Add([]byte("100 200 200 m1\n300 1300 0 -\n400 450 503 a%20b\n1 2 200 %2"), int64(100), int64(200), 200, "m1")
	f.Add([]byte("200 100 200 m1\n1 2 99 -\n-1 2 200 -\n1 2 200 m1 x\n"), int64(0), int64(0), 0, "")
	f.Add([]byte("1 2 200 %zz\n\n"), int64(5), int64(9), 503, "-")
	f.Add([]byte{}, int64(1), int64(2), 200, "a b\n%2D\x00\xff€")
	f.Fuzz(func(t *testing.T, data []byte, sent, done int64, status int, body string) {
		probes, bad, err := ParseProbes(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("error from a bytes.Reader: %v", err)
		}
		for _, b := range bad {
			if !strings.HasPrefix(b, "line ") {
				t.Fatalf("bad line message %q does not name the line", b)
			}
		}
		for _, p := range probes {
			if p.Sent < 0 || p.Done < p.Sent {
				t.Fatalf("invalid probe %+v", p)
			}
			line := FormatProbe(p)
			got, bad, _ := ParseProbes(strings.NewReader(line))
			if len(bad) > 0 || len(got) != 1 || got[0] != p {
				t.Fatalf("parsed probe %+v formats as %q, which reads back as %v %q", p, line, got, bad)
			}
		}

		p := Probe{Sent: sent, Done: done, Status: status, Body: body}
		valid := sent >= 0 && done >= sent && (status == 0 || (status >= 100 && status <= 599))
		line := FormatProbe(p)
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || strings.Count(line, " ") != 3 {
			t.Fatalf("FormatProbe(%+v) = %q: not one line of four fields", p, line)
		}
		got, bad, err := ParseProbes(strings.NewReader(line))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case valid && (len(bad) > 0 || len(got) != 1 || got[0] != p):
			t.Fatalf("FormatProbe(%+v) = %q reads back as %v, bad %q", p, line, got, bad)
		case !valid && (len(got) > 0 || len(bad) != 1):
			t.Fatalf("invalid probe %+v (%q) read back as %v, bad %q", p, line, got, bad)
		}
	})
}
