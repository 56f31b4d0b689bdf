package check

import (
	"bytes"
	"encoding/json"
	"reflect"
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

// FuzzParseDLM: any input parses, as worker events and as store ops,
// without panic; every record kept is valid and reads back the same from
// its JSON; every malformed line is reported with its line number; and the
// checker runs on whatever was kept without panic.
func FuzzParseDLM(f *testing.F) {
	f.Add([]byte(`{"mono":20,"event":"grant","member":"m1","client":"m1/w1","resource":"r1","mode":"EX","lock":"m1#1","token":4,"asked":15}
{"mono":30,"event":"unlock","member":"m1","client":"m1/w1","resource":"r1","lock":"m1#1","token":4,"done":31,"ok":true}
{"mono":35,"event":"lost","member":"m1","client":"m1/w1"}
`))
	f.Add([]byte(`{"resource":"r1","member":"m1","client":"m1/w1","lock":"m1#1","token":4,"mode":"EX","kind":"write","seq":1,"sent":5,"arrived":6,"accepted":true}
{"resource":"r1","member":"m1","client":"m1/w1","lock":"m1#1","token":3,"mode":"PR","kind":"read","seq":2,"sent":5,"arrived":7,"reason":"stale"}
{"resource":"r1"} {"mono":1}
{"MONO":1,"Event":"stop","member":"\u0000","client":"\xff"}
{"mono":1e3,"event":"start","member":"m","client":"c"}
{"mono":20,"event":"grant","member":"m1","client":"m1/w1","resource":"r1","mode":"EX","lock":"m1#1","token":18446744073709551615,"asked":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, bad, err := ParseDLMEvents(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("error from a bytes.Reader: %v", err)
		}
		ops, bad2, err := ParseDLMOps(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("error from a bytes.Reader: %v", err)
		}
		for _, b := range append(bad, bad2...) {
			if !strings.HasPrefix(b, "line ") {
				t.Fatalf("bad line message %q does not name the line", b)
			}
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		if len(evs)+len(bad) > lines || len(ops)+len(bad2) > lines {
			t.Fatalf("%d events and %d bad, %d ops and %d bad, from %d lines", len(evs), len(bad), len(ops), len(bad2), lines)
		}
		var again strings.Builder
		for _, e := range evs {
			if err := e.Validate(); err != nil {
				t.Fatalf("kept an invalid event %+v: %v", e, err)
			}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			again.Write(b)
			again.WriteByte('\n')
		}
		evs2, bad, _ := ParseDLMEvents(strings.NewReader(again.String()))
		if len(bad) > 0 || !reflect.DeepEqual(evs, evs2) {
			t.Fatalf("events %+v read back as %+v, bad %q", evs, evs2, bad)
		}
		again.Reset()
		for _, o := range ops {
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			again.Write(b)
			again.WriteByte('\n')
		}
		ops2, bad, _ := ParseDLMOps(strings.NewReader(again.String()))
		if len(bad) > 0 || !reflect.DeepEqual(ops, ops2) {
			t.Fatalf("ops %+v read back as %+v, bad %q", ops, ops2, bad)
		}
		rep := CheckDLM(evs, ops)
		if rep.Accepted+rep.Refused != len(ops) || rep.Grants > len(evs) {
			t.Fatalf("report %+v from %d events and %d ops", rep, len(evs), len(ops))
		}
	})
}
