package check

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Probe is one HTTP request of the failover prober: the line format is
// "SENT_NS DONE_NS STATUS BODY" where STATUS is an HTTP status code or 0 for
// a failed request (timeout, refused) and BODY is the trimmed response body
// without spaces ("-" when none).
//
// In the line, BODY is escaped so that any body reads back unchanged: "-"
// stands for the empty body, and the bytes '%', space, control characters
// and DEL (and a body that is exactly "-") are written as %XX. A plain body
// such as "m2" is written as is.
type Probe struct {
	Sent, Done int64
	Status     int
	Body       string
}

// OK reports whether the probe got an answer: Status == 200.
func (p Probe) OK() bool { return p.Status == 200 }

// ParseProbes reads prober lines, with the same malformed-line rules as
// ParseRecords. A line is malformed unless both times are non-negative, DONE
// is not before SENT, STATUS is 0 or 100..599 and BODY is correctly escaped.
func ParseProbes(r io.Reader) ([]Probe, []string, error) {
	var probes []Probe
	bad, err := eachLine(r, func(line string) error {
		p, err := parseProbe(line)
		if err == nil {
			probes = append(probes, p)
		}
		return err
	})
	return probes, bad, err
}

func parseProbe(line string) (Probe, error) {
	f, err := fields(line, "SENT_NS", "DONE_NS", "STATUS", "BODY")
	if err != nil {
		return Probe{}, err
	}
	sent, err := nonNegative("sent time", f[0])
	if err != nil {
		return Probe{}, err
	}
	done, err := nonNegative("done time", f[1])
	if err != nil {
		return Probe{}, err
	}
	if done < sent {
		return Probe{}, fmt.Errorf("done time %d is before sent time %d", done, sent)
	}
	status, err := strconv.Atoi(f[2])
	if err != nil || (status != 0 && (status < 100 || status > 599)) {
		return Probe{}, fmt.Errorf("status %s is neither 0 (no answer) nor an HTTP status code 100..599", quote(f[2]))
	}
	body, err := decodeBody(f[3])
	if err != nil {
		return Probe{}, err
	}
	return Probe{Sent: sent, Done: done, Status: status, Body: body}, nil
}

// FormatProbe returns the prober's line for p, with its newline;
// ParseProbes reads it back as p. A probe that ParseProbes rejects (a
// negative time, Done before Sent, a status other than 0 and 100..599) is
// written as is and reads back as a malformed line.
func FormatProbe(p Probe) string {
	return strconv.FormatInt(p.Sent, 10) + " " + strconv.FormatInt(p.Done, 10) + " " +
		strconv.Itoa(p.Status) + " " + encodeBody(p.Body) + "\n"
}

func mustEscape(c byte) bool { return c <= ' ' || c == 0x7f || c == '%' }

func encodeBody(b string) string {
	switch b {
	case "":
		return "-"
	case "-":
		return "%2D"
	}
	if strings.IndexFunc(b, func(r rune) bool { return r < 0x80 && mustEscape(byte(r)) }) < 0 {
		return b
	}
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		if c := b[i]; mustEscape(c) {
			sb.WriteByte('%')
			sb.WriteByte(hex[c>>4])
			sb.WriteByte(hex[c&15])
		} else {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

func decodeBody(s string) (string, error) {
	if s == "-" {
		return "", nil
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
				return "", fmt.Errorf("body %s: %% must be followed by two hex digits (write %%25 for a literal %%)", quote(s))
			}
			sb.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
		case mustEscape(c):
			return "", fmt.Errorf("body %s contains a control character", quote(s))
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// FirstAnswer returns the earliest Done (> after) of an OK probe whose Body
// is not `not`; ok is false when there is none. The probes need not be
// sorted. With `not` set to the member that failed, this is when another
// member first answered.
func FirstAnswer(probes []Probe, after int64, not string) (done int64, ok bool) {
	for _, p := range probes {
		if p.OK() && p.Body != not && p.Done > after && (!ok || p.Done < done) {
			done, ok = p.Done, true
		}
	}
	return done, ok
}

// ProbeCoverage is Cover for probes: up time between consecutive OK answers
// no more than gap apart (using Done times). Failed and non-200 probes only
// leave holes.
func ProbeCoverage(probes []Probe, from, to int64, gap time.Duration) Coverage {
	var times []int64
	for _, p := range probes {
		if p.OK() {
			times = append(times, p.Done)
		}
	}
	slices.Sort(times)
	return cover(times, from, to, gap)
}
