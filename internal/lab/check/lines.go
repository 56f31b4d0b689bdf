package check

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// MaxLineLen is the longest log line, in bytes without its newline, that the
// parsers accept; a longer line is reported as malformed.
const MaxLineLen = 64 << 10

// eachLine calls parse for every line of r, without its newline. A terminated
// line that parse rejects (or that is longer than MaxLineLen) is reported in
// bad as "line N: ..."; a final line without a newline that parse rejects is
// skipped silently. err is set only when r fails.
func eachLine(r io.Reader, parse func(line string) error) (bad []string, err error) {
	br := bufio.NewReader(r)
	var line []byte
	for n := 1; ; n++ {
		line = line[:0]
		size, long := 0, false
		var rerr error
		for {
			chunk, e := br.ReadSlice('\n')
			size += len(chunk)
			if !long {
				if len(line)+len(chunk) > MaxLineLen+1 { // +1: the newline
					long = true
				} else {
					line = append(line, chunk...)
				}
			}
			if !errors.Is(e, bufio.ErrBufferFull) {
				rerr = e
				break
			}
		}
		switch {
		case rerr == nil: // a whole line, newline included
			if long {
				bad = append(bad, fmt.Sprintf("line %d: longer than %d bytes", n, MaxLineLen))
				continue
			}
			if e := parse(string(line[:len(line)-1])); e != nil {
				bad = append(bad, fmt.Sprintf("line %d: %v", n, e))
			}
		case rerr == io.EOF:
			if size > 0 && !long {
				_ = parse(string(line)) // unterminated: kept when well formed, else dropped
			}
			return bad, nil
		default:
			return bad, fmt.Errorf("reading line %d: %w", n, rerr)
		}
	}
}

// fields splits line at single spaces into exactly len(names) non-empty fields.
func fields(line string, names ...string) ([]string, error) {
	want := strings.Join(names, " ")
	if line == "" {
		return nil, fmt.Errorf("empty line, want %q", want)
	}
	f := strings.SplitN(line, " ", len(names)+1)
	for i, s := range f[:min(len(f), len(names))] {
		if s == "" {
			return nil, fmt.Errorf("empty %s field (two spaces in a row, or a space at an end?) in %s", names[i], quote(line))
		}
	}
	if len(f) != len(names) {
		return nil, fmt.Errorf("want %d fields %q separated by single spaces, got %s", len(names), want, quote(line))
	}
	return f, nil
}

// nonNegative parses a decimal int64 that must be >= 0.
func nonNegative(what, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s %s is not a non-negative decimal integer below 2^63", what, quote(s))
	}
	return v, nil
}

// quote quotes s for an error message, shortened to about 60 bytes.
func quote(s string) string {
	const limit = 60
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}

// fmtMono formats a mono time or an offset in nanoseconds as seconds with
// three decimals ("12345.678s"), truncated toward zero, exactly.
func fmtMono(ns int64) string {
	sign := ""
	u := uint64(ns)
	if ns < 0 {
		sign, u = "-", -u
	}
	return fmt.Sprintf("%s%d.%03ds", sign, u/1e9, u%1e9/1e6)
}

// fmtDur formats d with three significant digits: "1.40s", "37.0ms", "812µs".
func fmtDur(d time.Duration) string {
	sign := ""
	u := uint64(d)
	if d < 0 {
		sign, u = "-", -u
	}
	var v float64
	var unit string
	switch {
	case u < 1e3:
		return fmt.Sprintf("%s%dns", sign, u)
	case u < 1e6:
		v, unit = float64(u)/1e3, "µs"
	case u < 1e9:
		v, unit = float64(u)/1e6, "ms"
	default:
		v, unit = float64(u)/1e9, "s"
	}
	switch {
	case v < 10:
		return fmt.Sprintf("%s%.2f%s", sign, v, unit)
	case v < 100:
		return fmt.Sprintf("%s%.1f%s", sign, v, unit)
	default:
		return fmt.Sprintf("%s%.0f%s", sign, v, unit)
	}
}
