package safetensors

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

// normalize turns the scanner's int64 values into the float64 encoding/json produces.
func normalize(v any) any {
	switch v := v.(type) {
	case int64:
		return float64(v)
	case []any:
		for i := range v {
			v[i] = normalize(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = normalize(v[k])
		}
	}
	return v
}

// checkScanner compares the scanner with encoding/json on one input. The scanner is
// stricter in exactly three ways: it rejects duplicate keys, unpaired surrogate escapes and
// nesting deeper than MaxDepth.
func checkScanner(t *testing.T, in []byte) {
	if !utf8.Valid(in) {
		return // the scanner's input is always checked for UTF-8 first
	}
	s := &scanner{buf: in, format: "test"}
	got, err := s.value()
	if err == nil {
		if s.skipSpace(); s.pos < len(in) {
			err = s.unexpected("end")
		}
	}
	if err == nil {
		// value and skip agree
		s2 := &scanner{buf: in, format: "test"}
		err := s2.skip()
		if s2.skipSpace(); err != nil || s2.pos != s.pos {
			t.Fatalf("%q: skip = %v at %d, value ended at %d", in, err, s2.pos, s.pos)
		}
	}
	var want any
	jerr := json.Unmarshal(in, &want)
	switch {
	case err == nil && jerr != nil:
		t.Fatalf("%q: scanner accepts what encoding/json rejects: %v", in, jerr)
	case err != nil && jerr == nil:
		var fe *formats.FormatError
		if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "surrogate") && !strings.Contains(fe.Msg, "nested deeper") && !strings.Contains(fe.Msg, "duplicate key") {
			t.Fatalf("%q: scanner rejects valid JSON: %v", in, err)
		}
	case err == nil:
		if g := normalize(got); !reflect.DeepEqual(g, want) {
			t.Fatalf("%q: scanner reads %#v, encoding/json %#v", in, g, want)
		}
	default:
		var fe *formats.FormatError
		if !errors.As(err, &fe) || fe.Offset < 0 || fe.Offset > int64(len(in)) {
			t.Fatalf("%q: error %v has no offset in the input", in, err)
		}
	}
}

var scannerSeeds = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `-0.0e-0`, `1E+2`, `true`, `false`, `null`, ` {"a" : [1, 2.5, "x"] } `,
	`"\u00e9\ud83d\ude00\n\t\"\\\/\b\f\r"`, `"\ud800"`, `"\udc00"`, `"\ud800\udbff"`, `"\uD834\uDD1E"`,
	`{"a":1,"a":2}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `-`, `1e`, `"a` + "\x01" + `"`, `"\x"`, `tru`, `nul`,
	`{"a":{"b":{"c":[[[{"d":null}]]]}}}`, strings.Repeat("[", 65) + strings.Repeat("]", 65),
	strings.Repeat("[", 64) + strings.Repeat("]", 64), `9223372036854775807`, `9223372036854775808`,
	`-9223372036854775809`, `1e400`, `"é"`, `{"k":"v"} x`,
}

func TestScanner(t *testing.T) {
	for _, s := range scannerSeeds {
		checkScanner(t, []byte(s))
	}
}

func TestScannerStrings(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"plain"`, "plain"},
		{`""`, ""},
		{`"a\"b\\c\/d"`, `a"b\c/d`},
		{`"\b\f\n\r\t"`, "\b\f\n\r\t"},
		{`"\u0000\u001f\u007F"`, "\x00\x1f\x7f"},
		{`"\u00e9\u00E9é"`, "ééé"},
		{`"\ud83d\ude00"`, "😀"},
		{`"\uD834\uDD1Ex"`, "𝄞x"},
		{`"\uffff"`, "\uffff"},
	}
	for _, tt := range tests {
		s := &scanner{buf: []byte(tt.in), format: "test"}
		got, err := s.str()
		if err != nil || got != tt.want || s.pos != len(tt.in) {
			t.Errorf("str(%s) = %q, %v (pos %d), want %q", tt.in, got, err, s.pos, tt.want)
		}
	}
}

// FuzzScanner compares the JSON scanner with encoding/json.
func FuzzScanner(f *testing.F) {
	for _, s := range scannerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkScanner)
}
