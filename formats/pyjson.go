package formats

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Python-compatible JSON.
//
// The companion files of a Hugging Face model (config.json, tokenizer_config.json, ...) are
// read by transformers with Python's json module, which is more lenient than RFC 8259: a file
// that encoding/json rejects may still load, so a scanner that uses encoding/json can miss
// (or lose) what the runtime reads. The functions here accept what Python's json.loads (with
// its defaults, applied to the text of a file opened with encoding="utf-8") accepts:
//
//   - strict JSON, plus the bare tokens NaN, Infinity and -Infinity as numbers (float64
//     NaN, +Inf and -Inf), anywhere a value may stand;
//   - numbers beyond float64's range: 1e400 is +Inf, as Python's float() makes it;
//   - duplicate object keys: the last one wins (DecodePyJSON), every occurrence is reported
//     (PyJSONMembers);
//   - \u escapes of lone surrogates: Python keeps them in its str; Go strings cannot hold
//     them, so each becomes U+FFFD, as encoding/json does.
//
// Like Python they reject: a byte order mark, trailing commas, comments, single quotes,
// control characters (below U+0020) inside strings, invalid UTF-8 (Python's utf-8 codec
// fails before the parser runs), other spellings (nan, inf, +Infinity, -NaN), leading zeros
// and anything after the value but whitespace (space, tab, newline, carriage return).
//
// Where they differ from Python: integers are float64, so integers beyond 2^53 lose
// precision (Python keeps them exact, and Python 3.11+ refuses integers of more than 4300
// digits, which these accept); nesting is limited to PyJSONMaxDepth levels where Python
// stops at its recursion limit (about 1000); -0 is float64 -0 where Python has int 0.
//
// Values are nil, bool, float64, string, []any and map[string]any. Parsing is bounded by the
// input: nothing is allocated from a size the input declares, strings are never longer than
// their encoding, and each array element or object member costs at least two input bytes.

// PyJSONMaxDepth is the deepest nesting of arrays and objects accepted.
const PyJSONMaxDepth = 512

// DecodePyJSON parses b as Python's json.loads does (see above). On a syntax error it
// returns a *FormatError (Format "json", Offset the byte offset in b, wrapping ErrTruncated
// when the input ends too early, ErrTooLarge for nesting beyond PyJSONMaxDepth and
// ErrInvalid otherwise) together with what parsed before the error: every object and array
// still open at the error holds its complete members up to there (an open container is a
// member of its parent), so the value is nil only when the error came before any container
// was opened. After a complete value followed by other data ("Extra data"), the value is
// complete.
func DecodePyJSON(b []byte) (any, error) {
	p := &pyParser{b: b, build: true}
	p.ws()
	v, have := p.value()
	if p.err == nil {
		p.end()
	}
	if p.err != nil {
		if !have {
			v = nil
		}
		return v, p.err
	}
	return v, nil
}

// ValidPyJSON reports whether b is one JSON value as Python's json.loads accepts it, with
// the error DecodePyJSON would return. It builds no values.
func ValidPyJSON(b []byte) error {
	p := &pyParser{b: b}
	p.ws()
	p.value()
	if p.err == nil {
		p.end()
	}
	if p.err != nil {
		return p.err
	}
	return nil
}

// JSONMember is one member of a top-level JSON object, with the byte range of its value.
type JSONMember struct {
	Key    string
	Value  any   // the decoded value; nil when the member was not wanted
	Offset int64 // offset in the input of the value's first byte
	Length int64 // bytes of the value as stored (up to the error for a partial value)
	// Partial: the value is an object or array cut short by a syntax error; it holds the
	// complete members before the error.
	Partial bool
}

// PyJSONMembers parses b, which must hold a JSON object, as Python's json.loads does, and
// returns the object's members in file order, duplicates included (Python keeps the last
// one). The values of members for whose key want returns true are decoded (see DecodePyJSON);
// the others are only checked, not built, so that a large file costs no more memory than its
// members of interest; a nil want decodes none. On a syntax error it returns the members
// complete before the error (plus a wanted object or array cut short, with Partial set) and a
// *FormatError as DecodePyJSON does. A document whose top level is not an object is an error
// (ErrInvalid) at its first byte.
func PyJSONMembers(b []byte, want func(key string) bool) ([]JSONMember, error) {
	p := &pyParser{b: b}
	p.ws()
	if p.pos >= len(b) {
		p.failEOF("expecting value")
		return nil, p.err
	}
	if b[p.pos] != '{' {
		what := "a JSON value"
		switch c := b[p.pos]; {
		case c == '[':
			what = "an array"
		case c == '"':
			what = "a string"
		case c == 't' || c == 'f':
			what = "a boolean"
		case c == 'n':
			what = "null"
		case c == '-' || c >= '0' && c <= '9' || c == 'N' || c == 'I':
			what = "a number"
		default:
			p.value() // for the syntax error
			if p.err != nil {
				return nil, p.err
			}
		}
		p.fail(p.pos, ErrInvalid, "top level is "+what+", not an object")
		return nil, p.err
	}
	var out []JSONMember
	p.top = func(key string, start int, v any, complete bool) {
		end := p.pos
		if !complete {
			end = int(p.err.Offset)
		}
		out = append(out, JSONMember{Key: key, Value: v, Offset: int64(start), Length: int64(end - start), Partial: !complete})
	}
	p.want = want
	p.value()
	if p.err == nil {
		p.end()
	}
	if p.err != nil {
		return out, p.err
	}
	return out, nil
}

// CompatJSON rewrites the tokens NaN, Infinity and -Infinity that stand outside strings
// into null, so that encoding/json can decode what Python reads (into structs, for example);
// it returns the offsets in b of the tokens it rewrote. The result is not the same length as
// b (NaN grows by a byte, Infinity shrinks by four, -Infinity by five), so offsets in an error
// of encoding/json on the result are not offsets in b after the first rewrite. With nothing to
// rewrite, b itself is returned (not a copy). CompatJSON does not validate: it only tracks
// strings, so a document that is invalid stays invalid (and one that Python accepts becomes
// one encoding/json accepts, save for the differences listed above: invalid UTF-8, which
// encoding/json replaces, and nesting depth). A decoder of the result sees null, so a float
// field keeps its zero value: callers to whom the difference matters check the offsets.
func CompatJSON(b []byte) ([]byte, []int64) {
	var out []byte
	var offs []int64
	last := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case 'N', 'I', '-':
			n := 0
			switch {
			case c == 'N' && hasPrefixAt(b, i, "NaN"):
				n = 3
			case c == 'I' && hasPrefixAt(b, i, "Infinity"):
				n = 8
			case c == '-' && hasPrefixAt(b, i, "-Infinity"):
				n = 9
			}
			if n == 0 {
				continue
			}
			if out == nil {
				out = make([]byte, 0, len(b)+len(b)/3+1)
			}
			out = append(out, b[last:i]...)
			out = append(out, "null"...)
			offs = append(offs, int64(i))
			i += n - 1
			last = i + 1
		}
	}
	if out == nil {
		return b, nil
	}
	return append(out, b[last:]...), offs
}

func hasPrefixAt(b []byte, i int, s string) bool {
	return len(b)-i >= len(s) && string(b[i:i+len(s)]) == s
}

type pyParser struct {
	b     []byte
	pos   int
	depth int
	build bool // construct values; false: only check them
	err   *FormatError

	// top, when set, receives the members of the top-level object instead of a map; want
	// selects the members whose values are built.
	top  func(key string, start int, v any, complete bool)
	want func(key string) bool
}

func (p *pyParser) fail(off int, cat error, msg string) {
	if p.err == nil {
		p.err = &FormatError{Format: "json", Offset: int64(off), Msg: msg, Err: cat}
	}
}

func (p *pyParser) failEOF(msg string) {
	p.fail(len(p.b), ErrTruncated, msg+" before the end of the input")
}

func (p *pyParser) ws() {
	for p.pos < len(p.b) {
		switch p.b[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// end checks that only whitespace follows the value.
func (p *pyParser) end() {
	p.ws()
	if p.pos < len(p.b) {
		p.fail(p.pos, ErrInvalid, "extra data after the value")
	}
}

// value parses the value at p.pos. On error it returns the partial value of an object or
// array with have set (when building), and nothing otherwise.
func (p *pyParser) value() (v any, have bool) {
	if p.pos >= len(p.b) {
		p.failEOF("expecting value")
		return nil, false
	}
	switch c := p.b[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, ok := p.str(p.build)
		return s, ok
	case c == 'n':
		return nil, p.literal("null")
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'N':
		return pyNaN(), p.literal("NaN")
	case c == 'I':
		return pyInf(1), p.literal("Infinity")
	case c == '-' && p.pos+1 < len(p.b) && p.b[p.pos+1] == 'I':
		return pyInf(-1), p.literal("-Infinity")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 0xEF && hasPrefixAt(p.b, p.pos, "\xEF\xBB\xBF"):
		p.fail(p.pos, ErrInvalid, "unexpected UTF-8 byte order mark")
	default:
		p.fail(p.pos, ErrInvalid, "expecting value")
	}
	return nil, false
}

func pyNaN() float64 {
	var zero float64
	return zero / zero
}

func pyInf(sign int) float64 {
	var zero float64
	return float64(sign) / zero
}

func (p *pyParser) literal(s string) bool {
	n := min(len(s), len(p.b)-p.pos)
	if string(p.b[p.pos:p.pos+n]) != s[:n] {
		p.fail(p.pos, ErrInvalid, "expecting value")
		return false
	}
	if n < len(s) {
		p.failEOF("expecting value")
		return false
	}
	p.pos += n
	return true
}

// number parses -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? as Python's scanner does: a
// fraction or exponent that does not continue with digits is not part of the number (and
// then fails as what follows the number).
func (p *pyParser) number() (any, bool) {
	b, start, i := p.b, p.pos, p.pos
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		p.failEOF("expecting value")
		return nil, false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		p.fail(start, ErrInvalid, "expecting value")
		return nil, false
	}
	if i+1 < len(b) && b[i] == '.' && isDigit(b[i+1]) {
		for i += 2; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		j := i + 1
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j < len(b) && isDigit(b[j]) {
			for j++; j < len(b) && isDigit(b[j]); j++ {
			}
			i = j
		}
	}
	p.pos = i
	if !p.build {
		return nil, true
	}
	// The syntax is checked; ParseFloat's only error left is ErrRange, with ±Inf (or 0 for
	// an underflow), which is what Python's float() returns.
	f, _ := strconv.ParseFloat(string(b[start:i]), 64)
	return f, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// str parses the string at p.pos (a '"'), returning its value when build is set.
func (p *pyParser) str(build bool) (string, bool) {
	b, start := p.b, p.pos
	escaped := false
	i := start + 1
	for {
		if i >= len(b) {
			p.fail(start, ErrTruncated, "unterminated string")
			return "", false
		}
		c := b[i]
		switch {
		case c == '"':
			p.pos = i + 1
			if !build {
				return "", true
			}
			if !escaped {
				return string(b[start+1 : i]), true
			}
			return unescape(b[start+1 : i]), true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				p.fail(start, ErrTruncated, "unterminated string")
				return "", false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := 2; k < 6; k++ {
					if i+k >= len(b) {
						p.fail(start, ErrTruncated, "unterminated string")
						return "", false
					}
					if !isHex(b[i+k]) {
						p.fail(i, ErrInvalid, `invalid \uXXXX escape`)
						return "", false
					}
				}
				i += 6
			default:
				p.fail(i, ErrInvalid, `invalid \escape`)
				return "", false
			}
		case c < 0x20:
			p.fail(i, ErrInvalid, "invalid control character in string")
			return "", false
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				p.fail(i, ErrInvalid, "invalid UTF-8 in string")
				return "", false
			}
			i += n
		}
	}
}

// unescape decodes the checked body of a string with escapes. Its result is never longer
// than s.
func unescape(s []byte) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		e := s[i+1]
		i += 2
		switch e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(s[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				// a pair decodes to one rune; a lone surrogate is U+FFFD (as in encoding/json)
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(s[i+2:])); d != utf8.RuneError {
						r = d
						i += 6
						out = utf8.AppendRune(out, r)
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default: // " \ /
			out = append(out, e)
		}
	}
	return string(out)
}

func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

func (p *pyParser) enter() bool {
	p.depth++
	if p.depth > PyJSONMaxDepth {
		p.fail(p.pos, ErrTooLarge, "arrays and objects nested deeper than "+strconv.Itoa(PyJSONMaxDepth)+" levels")
		return false
	}
	return true
}

func (p *pyParser) object() (any, bool) {
	if !p.enter() {
		return nil, false
	}
	defer func() { p.depth-- }()
	top := p.top != nil && p.depth == 1
	build := p.build && !top
	var m map[string]any
	if build {
		m = map[string]any{}
	}
	p.pos++ // {
	p.ws()
	if p.pos < len(p.b) && p.b[p.pos] == '}' {
		p.pos++
		return m, true
	}
	for {
		if p.pos >= len(p.b) {
			p.failEOF("expecting property name enclosed in double quotes")
			return m, build
		}
		if p.b[p.pos] != '"' {
			p.fail(p.pos, ErrInvalid, "expecting property name enclosed in double quotes")
			return m, build
		}
		key, ok := p.str(build || top)
		if !ok {
			return m, build
		}
		p.ws()
		if p.pos >= len(p.b) {
			p.failEOF("expecting ':' delimiter")
			return m, build
		}
		if p.b[p.pos] != ':' {
			p.fail(p.pos, ErrInvalid, "expecting ':' delimiter")
			return m, build
		}
		p.pos++
		p.ws()
		start := p.pos
		if top {
			p.build = p.want != nil && p.want(key)
		}
		v, have := p.value()
		if top {
			wanted := p.build
			p.build = false
			if !wanted {
				v = nil
			}
			if p.err == nil || have && wanted {
				p.top(key, start, v, p.err == nil)
			}
		} else if build && (p.err == nil || have) {
			m[key] = v
		}
		if p.err != nil {
			return m, build
		}
		p.ws()
		if p.pos >= len(p.b) {
			p.failEOF("expecting ',' delimiter")
			return m, build
		}
		switch p.b[p.pos] {
		case ',':
			p.pos++
			p.ws()
		case '}':
			p.pos++
			return m, true
		default:
			p.fail(p.pos, ErrInvalid, "expecting ',' delimiter")
			return m, build
		}
	}
}

func (p *pyParser) array() (any, bool) {
	if !p.enter() {
		return nil, false
	}
	defer func() { p.depth-- }()
	build := p.build
	var a []any
	if build {
		a = []any{}
	}
	p.pos++ // [
	p.ws()
	if p.pos < len(p.b) && p.b[p.pos] == ']' {
		p.pos++
		return a, true
	}
	for {
		v, have := p.value()
		if build && (p.err == nil || have) {
			a = append(a, v)
		}
		if p.err != nil {
			return a, build
		}
		p.ws()
		if p.pos >= len(p.b) {
			p.failEOF("expecting ',' delimiter")
			return a, build
		}
		switch p.b[p.pos] {
		case ',':
			p.pos++
			p.ws()
		case ']':
			p.pos++
			return a, true
		default:
			p.fail(p.pos, ErrInvalid, "expecting ',' delimiter")
			return a, build
		}
	}
}
