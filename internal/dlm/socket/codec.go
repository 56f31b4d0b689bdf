package socket

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// The frames are JSON, as the node service's messages are, but written and
// read by hand: encoding/json's reflection was most of the socket's cost
// per lock. The encoders write what encoding/json would read back as the
// same frame; the decoders take the plain JSON these encoders write
// (fields in any order, strings without escapes) and hand anything else
// (escapes, unknown or differently cased keys, nulls, odd numbers) to
// encoding/json, so what a frame means never depends on which decoder read
// it (FuzzDecode checks that).

// Codec is the gRPC codec of the service (clients must use it too).
type Codec struct{}

// Marshal encodes a frame.
func (Codec) Marshal(v any) ([]byte, error) {
	switch f := v.(type) {
	case *ClientFrame:
		return AppendClientFrame(make([]byte, 0, 64+96*len(f.Requests)), f), nil
	case *ServerFrame:
		return AppendServerFrame(make([]byte, 0, 64+112*len(f.Messages)), f), nil
	}
	return json.Marshal(v)
}

// Unmarshal decodes a frame; a ClientFrame is checked as DecodeFrame does.
func (Codec) Unmarshal(b []byte, v any) error {
	switch f := v.(type) {
	case *ClientFrame:
		d, err := DecodeFrame(b)
		if err != nil {
			return err
		}
		*f = *d
		return nil
	case *ServerFrame:
		if err := decodeServerFrame(b, f); err == nil {
			return nil
		}
		*f = ServerFrame{}
		return json.Unmarshal(b, f)
	}
	return json.Unmarshal(b, v)
}

// Name is the codec's name.
func (Codec) Name() string { return "json" }

// DecodeFrame decodes a ClientFrame and checks its size (not its
// requests: see Request.Check).
func DecodeFrame(b []byte) (*ClientFrame, error) {
	var f ClientFrame
	if err := DecodeFrameInto(b, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// DecodeFrameInto is DecodeFrame into f, whose array of requests it
// reuses (a reader that decodes frame after frame allocates less).
func DecodeFrameInto(b []byte, f *ClientFrame) error {
	if len(b) > MaxFrame {
		return errors.New("a frame of " + strconv.Itoa(len(b)) + " bytes is too long: send at most " + strconv.Itoa(MaxFrame) + " bytes per message")
	}
	if err := decodeClientFrame(b, f); err != nil {
		*f = ClientFrame{}
		if err := json.Unmarshal(b, f); err != nil {
			return errors.New("a frame does not decode as JSON requests: " + err.Error())
		}
	}
	if len(f.Requests) > MaxRequests {
		return errors.New("a frame holds " + strconv.Itoa(len(f.Requests)) + " requests: send at most " + strconv.Itoa(MaxRequests) + " per message")
	}
	return nil
}

// reuse returns s emptied, to be appended to again: its array when it is
// small, else a new one.
func reuse[T any](s []T) []T {
	if cap(s) == 0 || cap(s) > 64 {
		return make([]T, 0, 4)
	}
	clear(s[:cap(s)])
	return s[:0]
}

// Encoding.

// AppendClientFrame appends f as JSON.
func AppendClientFrame(b []byte, f *ClientFrame) []byte {
	b = append(b, `{"reqs":`...)
	if f.Requests == nil {
		return append(b, "null}"...)
	}
	b = append(b, '[')
	for i := range f.Requests {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRequest(b, &f.Requests[i])
	}
	return append(b, "]}"...)
}

func appendRequest(b []byte, r *Request) []byte {
	b = append(b, `{"tag":`...)
	b = strconv.AppendUint(b, r.Tag, 10)
	b = append(b, `,"op":`...)
	b = appendString(b, r.Op)
	if !r.Lock.IsZero() {
		b = append(b, `,"lock":`...)
		b = appendID(b, r.Lock)
	}
	if r.Lockspace != "" {
		b = append(b, `,"lockspace":`...)
		b = appendString(b, r.Lockspace)
	}
	if r.Name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, r.Name)
	}
	if !r.Parent.IsZero() {
		b = append(b, `,"parent":`...)
		b = appendID(b, r.Parent)
	}
	if r.Mode != "" {
		b = append(b, `,"mode":`...)
		b = appendString(b, r.Mode)
	}
	if r.Flags != 0 {
		b = append(b, `,"flags":`...)
		b = strconv.AppendUint(b, uint64(r.Flags), 10)
	}
	if len(r.Value) > 0 {
		b = append(b, `,"value":`...)
		b = appendBytes(b, r.Value)
	}
	return append(b, '}')
}

// AppendServerFrame appends f as JSON.
func AppendServerFrame(b []byte, f *ServerFrame) []byte {
	b = append(b, `{"msgs":`...)
	if f.Messages == nil {
		return append(b, "null}"...)
	}
	b = append(b, '[')
	for i := range f.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMessage(b, &f.Messages[i])
	}
	return append(b, "]}"...)
}

func appendMessage(b []byte, m *Message) []byte {
	b = append(b, '{')
	n := len(b)
	sep := func(b []byte) []byte {
		if len(b) > n {
			b = append(b, ',')
		}
		return b
	}
	if m.Tag != 0 {
		b = append(b, `"tag":`...)
		b = strconv.AppendUint(b, m.Tag, 10)
	}
	if m.Event != "" {
		b = append(sep(b), `"event":`...)
		b = appendString(b, m.Event)
	}
	if !m.Lock.IsZero() {
		b = append(sep(b), `"lock":`...)
		b = appendID(b, m.Lock)
	}
	if m.Mode != "" {
		b = append(sep(b), `"mode":`...)
		b = appendString(b, m.Mode)
	}
	if m.Token != 0 {
		b = append(sep(b), `"token":`...)
		b = strconv.AppendUint(b, m.Token, 10)
	}
	if !m.Blocked.IsZero() {
		b = append(sep(b), `"blocked":`...)
		b = appendID(b, m.Blocked)
	}
	if m.ValBlk {
		b = append(sep(b), `"valblk":true`...)
	}
	if m.Valid {
		b = append(sep(b), `"valid":true`...)
	}
	if len(m.Value) > 0 {
		b = append(sep(b), `"value":`...)
		b = appendBytes(b, m.Value)
	}
	if m.Op != "" {
		b = append(sep(b), `"op":`...)
		b = appendString(b, m.Op)
	}
	if m.Err != "" {
		b = append(sep(b), `"err":`...)
		b = appendString(b, m.Err)
	}
	if m.Msg != "" {
		b = append(sep(b), `"msg":`...)
		b = appendString(b, m.Msg)
	}
	if m.Session != "" {
		b = append(sep(b), `"session":`...)
		b = appendString(b, m.Session)
	}
	return append(b, '}')
}

func appendID(b []byte, id cluster.LockID) []byte {
	b = append(b, `{"m":`...)
	b = appendString(b, id.Member)
	b = append(b, `,"n":`...)
	b = strconv.AppendUint(b, id.N, 10)
	return append(b, '}')
}

func appendBytes(b []byte, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendString appends s quoted: printable ASCII as it is, anything else
// as encoding/json writes it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Decoding.

// errSlow sends a frame to encoding/json.
var errSlow = errors.New("not a plain frame")

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and returns the next byte (0 at the end).
func (s *scanner) next() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) eat(c byte) bool {
	if s.next() == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes or invalid UTF-8 (as encoding/json
// would take it unchanged).
func (s *scanner) str() ([]byte, error) {
	if !s.eat('"') {
		return nil, errSlow
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(v) {
				return nil, errSlow
			}
			return v, nil
		case c == '\\' || c < 0x20:
			return nil, errSlow
		case c >= utf8.RuneSelf:
			ascii = false
		}
		s.i++
	}
	return nil, errSlow
}

func (s *scanner) uint(max uint64) (uint64, error) {
	s.ws()
	start := s.i
	var v uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := uint64(s.b[s.i] - '0')
		if v > (max-d)/10 {
			return 0, errSlow
		}
		v = v*10 + d
		s.i++
	}
	n := s.i - start
	if n == 0 || n > 1 && s.b[start] == '0' {
		return 0, errSlow
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return 0, errSlow
		}
	}
	return v, nil
}

func (s *scanner) boolean() (bool, error) {
	s.ws()
	switch {
	case len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "true":
		s.i += 4
		return true, nil
	case len(s.b)-s.i >= 5 && string(s.b[s.i:s.i+5]) == "false":
		s.i += 5
		return false, nil
	}
	return false, errSlow
}

func (s *scanner) bytes() ([]byte, error) {
	v, err := s.str()
	if err != nil {
		return nil, err
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Decode(out, v)
	if err != nil {
		return nil, errSlow
	}
	return out[:n], nil
}

// key reads the next key of an object whose '{' was read, and its ':';
// more is false at the object's end.
func (s *scanner) key(first bool) (k []byte, more bool, err error) {
	switch {
	case first && s.eat('}'):
		return nil, false, nil
	case !first && s.eat('}'):
		return nil, false, nil
	case !first && !s.eat(','):
		return nil, false, errSlow
	}
	if k, err = s.str(); err != nil {
		return nil, false, err
	}
	if !s.eat(':') {
		return nil, false, errSlow
	}
	return k, true, nil
}

// elem moves to the next element of an array whose '[' was read; more is
// false at the array's end.
func (s *scanner) elem(first bool) (more bool, err error) {
	switch {
	case s.eat(']'):
		return false, nil
	case !first && !s.eat(','):
		return false, errSlow
	}
	return true, nil
}

func (s *scanner) id(id *cluster.LockID) error {
	if !s.eat('{') {
		return errSlow
	}
	for first := true; ; first = false {
		k, more, err := s.key(first)
		if err != nil || !more {
			return err
		}
		switch string(k) {
		case "m":
			v, err := s.str()
			if err != nil {
				return err
			}
			id.Member = string(v)
		case "n":
			if id.N, err = s.uint(1<<64 - 1); err != nil {
				return err
			}
		default:
			return errSlow
		}
	}
}

func (s *scanner) end() error {
	if s.next() != 0 || s.i != len(s.b) {
		return errSlow
	}
	return nil
}

// frame reads {"name":[...]} calling elem for each element; seen says
// whether the key was there.
func (s *scanner) frame(name string, elem func() error) (seen bool, err error) {
	if !s.eat('{') {
		return false, errSlow
	}
	for first := true; ; first = false {
		k, more, err := s.key(first)
		if err != nil {
			return seen, err
		}
		if !more {
			break
		}
		if string(k) != name || seen {
			return seen, errSlow // another key, or a repeated one (encoding/json merges those)
		}
		seen = true
		if !s.eat('[') {
			return seen, errSlow
		}
		for first := true; ; first = false {
			more, err := s.elem(first)
			if err != nil {
				return seen, err
			}
			if !more {
				break
			}
			if err := elem(); err != nil {
				return seen, err
			}
		}
	}
	return seen, s.end()
}

func decodeClientFrame(b []byte, f *ClientFrame) error {
	s := &scanner{b: b}
	f.Requests = reuse(f.Requests)
	seen, err := s.frame("reqs", func() error {
		f.Requests = append(f.Requests, Request{})
		return s.request(&f.Requests[len(f.Requests)-1])
	})
	if !seen {
		f.Requests = nil // as encoding/json leaves it
	}
	return err
}

func (s *scanner) request(r *Request) error {
	if !s.eat('{') {
		return errSlow
	}
	for first := true; ; first = false {
		k, more, err := s.key(first)
		if err != nil || !more {
			return err
		}
		var v []byte
		switch string(k) {
		case "tag":
			r.Tag, err = s.uint(1<<64 - 1)
		case "op":
			v, err = s.str()
			r.Op = intern(v)
		case "lock":
			err = s.id(&r.Lock)
		case "lockspace":
			v, err = s.str()
			r.Lockspace = string(v)
		case "name":
			v, err = s.str()
			r.Name = string(v)
		case "parent":
			err = s.id(&r.Parent)
		case "mode":
			v, err = s.str()
			r.Mode = intern(v)
		case "flags":
			var n uint64
			n, err = s.uint(1<<16 - 1)
			r.Flags = uint16(n)
		case "value":
			r.Value, err = s.bytes()
		default:
			err = errSlow
		}
		if err != nil {
			return err
		}
	}
}

func decodeServerFrame(b []byte, f *ServerFrame) error {
	s := &scanner{b: b}
	f.Messages = reuse(f.Messages)
	seen, err := s.frame("msgs", func() error {
		f.Messages = append(f.Messages, Message{})
		return s.message(&f.Messages[len(f.Messages)-1])
	})
	if !seen {
		f.Messages = nil
	}
	return err
}

func (s *scanner) message(m *Message) error {
	if !s.eat('{') {
		return errSlow
	}
	for first := true; ; first = false {
		k, more, err := s.key(first)
		if err != nil || !more {
			return err
		}
		var v []byte
		switch string(k) {
		case "tag":
			m.Tag, err = s.uint(1<<64 - 1)
		case "event":
			v, err = s.str()
			m.Event = intern(v)
		case "lock":
			err = s.id(&m.Lock)
		case "mode":
			v, err = s.str()
			m.Mode = intern(v)
		case "token":
			m.Token, err = s.uint(1<<64 - 1)
		case "blocked":
			err = s.id(&m.Blocked)
		case "valblk":
			m.ValBlk, err = s.boolean()
		case "valid":
			m.Valid, err = s.boolean()
		case "value":
			m.Value, err = s.bytes()
		case "op":
			v, err = s.str()
			m.Op = intern(v)
		case "err":
			v, err = s.str()
			m.Err = intern(v)
		case "msg":
			v, err = s.str()
			m.Msg = string(v)
		case "session":
			v, err = s.str()
			m.Session = string(v)
		default:
			err = errSlow
		}
		if err != nil {
			return err
		}
	}
}

// interned are the strings that come again and again: no allocation.
var interned = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{EventOpen, EventGranted, EventNotQueued, EventCanceled, EventDeadlock, EventBlocking,
		EventRefused, EventLost, OpEnqueue, OpConvert, OpUnlock, OpCancel, "NL", "CR", "CW", "PR", "PW", "EX",
		KindInvalid, KindUnknownLock, KindUnknownResource, KindWrongState, KindHasChildren, KindLimit,
		KindNotMaster, KindBusy, KindNotMember, KindRecovering, KindLost, KindClosed} {
		m[s] = s
	}
	return m
}()

func intern(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}
