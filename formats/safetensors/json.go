package safetensors

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

// scanner is a small JSON reader over a header held in memory. It exists instead of
// encoding/json because the header must be read exactly: duplicate keys are errors (Go's
// decoder and serde both let the last one win), every error carries the offset of the token
// that causes it, nesting is limited to MaxDepth without deep recursion, and nothing is
// allocated beyond the strings and numbers that are kept. It accepts exactly RFC 8259 JSON;
// in addition, like serde_json, it rejects \u escapes that leave a surrogate unpaired
// (encoding/json would turn them into U+FFFD). The input must already be valid UTF-8.
type scanner struct {
	buf    []byte
	pos    int
	base   int64  // absolute file offset of buf[0]
	format string // FormatError.Format
	depth  int
	dims   []int64 // scratch space for a shape
}

func (s *scanner) errorf(pos int, cat error, msgf string, args ...any) error {
	return formats.Errorf(s.format, s.base+int64(pos), cat, msgf, args...)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (s *scanner) skipSpace() {
	for s.pos < len(s.buf) && isSpace(s.buf[s.pos]) {
		s.pos++
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end of the input.
func (s *scanner) peek() byte {
	s.skipSpace()
	if s.pos >= len(s.buf) {
		return 0
	}
	return s.buf[s.pos]
}

// describe names the byte at pos for an error message.
func (s *scanner) describe(pos int) string {
	if pos >= len(s.buf) {
		return "end of JSON"
	}
	c := s.buf[pos]
	switch {
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '-' || isDigit(c):
		return "number"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c > ' ' && c < 0x7f:
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// aDescribe is describe with an indefinite article where it needs one ("an array").
func (s *scanner) aDescribe(pos int) string {
	switch d := s.describe(pos); d {
	case "object", "array":
		return "an " + d
	case "string", "number", "boolean":
		return "a " + d
	default:
		return d
	}
}

// wrongType reports that the value at the current position, what, is not the wanted kind.
func (s *scanner) wrongType(what, want string) error {
	if s.pos >= len(s.buf) {
		return s.errorf(s.pos, formats.ErrInvalid, "%s: unexpected end of JSON, want %s", what, want)
	}
	return s.errorf(s.pos, formats.ErrInvalid, "%s is %s, want %s", what, s.aDescribe(s.pos), want)
}

// unexpected reports the token at the current position, which is not the wanted one.
func (s *scanner) unexpected(want string) error {
	if s.pos >= len(s.buf) {
		return s.errorf(s.pos, formats.ErrInvalid, "unexpected end of JSON, want %s", want)
	}
	return s.errorf(s.pos, formats.ErrInvalid, "unexpected %s, want %s", s.describe(s.pos), want)
}

// enter and leave count nesting levels; enter fails beyond MaxDepth.
func (s *scanner) enter() error {
	s.depth++
	if s.depth > MaxDepth {
		return s.errorf(s.pos, formats.ErrTooLarge, "JSON nested deeper than %d levels", MaxDepth)
	}
	return nil
}

func (s *scanner) leave() { s.depth-- }

// keySet detects duplicate keys in one object: a linear search for the first few keys, a
// map beyond.
type keySet struct {
	small [8]struct {
		key string
		pos int
	}
	n int
	m map[string]int
}

// add records key at pos and returns the position of an earlier equal key, if any.
func (k *keySet) add(key string, pos int) (first int, dup bool) {
	if k.m != nil {
		if p, ok := k.m[key]; ok {
			return p, true
		}
		k.m[key] = pos
		return 0, false
	}
	for _, e := range k.small[:k.n] {
		if e.key == key {
			return e.pos, true
		}
	}
	if k.n < len(k.small) {
		k.small[k.n].key, k.small[k.n].pos = key, pos
		k.n++
		return 0, false
	}
	k.m = make(map[string]int, 4*len(k.small))
	for _, e := range k.small {
		k.m[e.key] = e.pos
	}
	k.m[key] = pos
	return 0, false
}

// object reads the object at the current position (which must be '{'). For each member it
// calls member with the key and the key's position, with the scanner at the value, which
// member must consume. A duplicate key is an error.
func (s *scanner) object(member func(key string, keyPos int) error) error {
	if s.peek() != '{' {
		return s.unexpected("object")
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	if s.peek() == '}' {
		s.pos++
		s.leave()
		return nil
	}
	var keys keySet
	for {
		if s.peek() != '"' {
			return s.unexpected("string key")
		}
		keyPos := s.pos
		key, err := s.str()
		if err != nil {
			return err
		}
		if first, dup := keys.add(key, keyPos); dup {
			return s.errorf(keyPos, formats.ErrInvalid, "duplicate key %q (first at offset %d)", key, s.base+int64(first))
		}
		if s.peek() != ':' {
			return s.unexpected("':'")
		}
		s.pos++
		s.skipSpace()
		if err := member(key, keyPos); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			s.leave()
			return nil
		default:
			return s.unexpected("',' or '}'")
		}
	}
}

// array reads the array at the current position (which must be '['), calling elem for each
// element with the scanner at the element, which elem must consume.
func (s *scanner) array(elem func(i int) error) error {
	if s.peek() != '[' {
		return s.unexpected("array")
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	if s.peek() == ']' {
		s.pos++
		s.leave()
		return nil
	}
	for i := 0; ; i++ {
		s.skipSpace()
		if err := elem(i); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.leave()
			return nil
		default:
			return s.unexpected("',' or ']'")
		}
	}
}

// str reads the string at the current position (which must be '"').
func (s *scanner) str() (string, error) {
	b, err := s.rawStr()
	if err != nil {
		return "", err
	}
	return intern(b), nil
}

// intern returns b as a string, without allocating for the keys every header repeats.
func intern(b []byte) string {
	switch string(b) { // compiled without a conversion
	case "dtype":
		return "dtype"
	case "shape":
		return "shape"
	case "data_offsets":
		return "data_offsets"
	case metadataKey:
		return metadataKey
	}
	return string(b)
}

// rawStr reads the string at the current position (which must be '"') and returns its
// bytes: a sub-slice of the input when it has no escapes, which the caller must not keep
// or modify.
func (s *scanner) rawStr() ([]byte, error) {
	start := s.pos
	for i := start + 1; i < len(s.buf); i++ {
		switch c := s.buf[i]; {
		case c == '"':
			s.pos = i + 1
			return s.buf[start+1 : i], nil
		case c == '\\' || c < 0x20:
			return s.strEscaped(start, i)
		}
	}
	return nil, s.errorf(start, formats.ErrInvalid, "unterminated string")
}

// strEscaped finishes reading the string that starts at start, whose first byte needing
// attention (an escape or a control character) is at i.
func (s *scanner) strEscaped(start, i int) ([]byte, error) {
	b := make([]byte, 0, i-start+16)
	b = append(b, s.buf[start+1:i]...)
	for i < len(s.buf) {
		c := s.buf[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return b, nil
		case c < 0x20:
			return nil, s.errorf(i, formats.ErrInvalid, "control character 0x%02x in string", c)
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(s.buf) {
			break
		}
		switch e := s.buf[i+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := s.hex4(i + 2)
			if !ok {
				return nil, s.errorf(i, formats.ErrInvalid, "invalid \\u escape in string")
			}
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if r < 0xdc00 && i+7 < len(s.buf) && s.buf[i+6] == '\\' && s.buf[i+7] == 'u' {
					r2, ok = s.hex4(i + 8)
				}
				if !ok || r2 < 0xdc00 || r2 > 0xdfff {
					return nil, s.errorf(i, formats.ErrInvalid, "unpaired surrogate \\u%04x in string", r)
				}
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			b = utf8.AppendRune(b, r)
			i += 6
			continue
		default:
			return nil, s.errorf(i, formats.ErrInvalid, "invalid escape \\%c in string", rune(e))
		}
		i += 2
	}
	return nil, s.errorf(start, formats.ErrInvalid, "unterminated string")
}

// hex4 decodes the 4 hex digits at i.
func (s *scanner) hex4(i int) (rune, bool) {
	if i+4 > len(s.buf) {
		return 0, false
	}
	var r rune
	for _, c := range s.buf[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number reads the number at the current position and returns its text.
func (s *scanner) number() ([]byte, error) {
	start, i, b := s.pos, s.pos, s.buf
	digits := func() bool {
		j := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return nil, s.errorf(start, formats.ErrInvalid, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return nil, s.errorf(start, formats.ErrInvalid, "invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return nil, s.errorf(start, formats.ErrInvalid, "invalid number")
		}
	}
	s.pos = i
	return b[start:i], nil
}

// literal reads true, false or null.
func (s *scanner) literal(word string) error {
	if len(s.buf)-s.pos < len(word) || string(s.buf[s.pos:s.pos+len(word)]) != word {
		return s.errorf(s.pos, formats.ErrInvalid, "invalid literal, want %s", word)
	}
	s.pos += len(word)
	return nil
}

// uint63 reads a non-negative integer that fits in an int64 (what the reference reads as a
// usize: no sign, fraction or exponent). what names the value in errors.
func (s *scanner) uint63(what string) (int64, error) {
	pos := s.pos
	if pos >= len(s.buf) || (s.buf[pos] != '-' && !isDigit(s.buf[pos])) {
		return 0, s.wrongType(what, "a non-negative integer")
	}
	lit, err := s.number()
	if err != nil {
		return 0, err
	}
	var v int64
	for _, c := range lit {
		if !isDigit(c) {
			if lit[0] == '-' {
				return 0, s.errorf(pos, formats.ErrInvalid, "%s %s is negative", what, lit)
			}
			return 0, s.errorf(pos, formats.ErrInvalid, "%s %s is not an integer", what, lit)
		}
		d := int64(c - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, s.errorf(pos, formats.ErrTooLarge, "%s %s exceeds 2^63-1", what, lit)
		}
		v = v*10 + d
	}
	return v, nil
}

// skip reads and discards any value, checking it and its nesting.
func (s *scanner) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func(string, int) error { return s.skip() })
	case c == '[':
		return s.array(func(int) error { return s.skip() })
	case c == '"':
		_, err := s.rawStr()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || isDigit(c):
		_, err := s.number()
		return err
	}
	return s.unexpected("value")
}

// value reads any value into a Go value: string, bool, nil, int64 (an integer that fits),
// float64 (any other number), []any, or map[string]any.
func (s *scanner) value() (any, error) {
	switch c := s.peek(); {
	case c == '{':
		m := map[string]any{}
		err := s.object(func(k string, _ int) error {
			v, err := s.value()
			m[k] = v
			return err
		})
		return m, err
	case c == '[':
		a := []any{}
		err := s.array(func(int) error {
			v, err := s.value()
			a = append(a, v)
			return err
		})
		return a, err
	case c == '"':
		return s.str()
	case c == 't':
		return true, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == 'n':
		return nil, s.literal("null")
	case c == '-' || isDigit(c):
		pos := s.pos
		lit, err := s.number()
		if err != nil {
			return nil, err
		}
		if i, err := strconv.ParseInt(string(lit), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(lit), 64)
		if err != nil && errors.Is(err, strconv.ErrRange) {
			return nil, s.errorf(pos, formats.ErrInvalid, "number %s is out of the float64 range", lit)
		}
		return f, err
	}
	return nil, s.unexpected("value")
}

// withContext prefixes the message of a *formats.FormatError with ctx.
func withContext(err error, ctx string) error {
	var fe *formats.FormatError
	if errors.As(err, &fe) {
		fe.Msg = ctx + ": " + fe.Msg
	}
	return err
}
