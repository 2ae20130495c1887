package safetensors_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
)

// entry returns a tensor entry of the header.
func entry(dtype, shape string, begin, end int64) string {
	return fmt.Sprintf(`{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, dtype, shape, begin, end)
}

// pos returns the absolute file offset of the n-th (1-based) occurrence of sub in the
// header h (which starts at offset 8).
func pos(h, sub string, n int) int64 {
	off := 0
	for i := 1; ; i++ {
		j := strings.Index(h[off:], sub)
		if j < 0 {
			panic(fmt.Sprintf("%q: occurrence %d of %q not found", h, n, sub))
		}
		if i == n {
			return 8 + int64(off+j)
		}
		off += j + len(sub)
	}
}

// hostile is a malformed file and the error NewFile must return for it.
type hostile struct {
	name string
	file []byte
	err  error  // category
	off  int64  // FormatError.Offset
	msg  string // part of the message
}

// hostileCases returns the malformed-file table (also the fuzz seeds).
func hostileCases() []hostile {
	var cs []hostile
	add := func(name string, file []byte, err error, off int64, msg string) {
		cs = append(cs, hostile{name, file, err, off, msg})
	}
	// one header with its data: h is the JSON, data the data section
	hd := func(name, h string, data []byte, err error, off int64, msg string) {
		add(name, headerFile(h, data), err, off, msg)
	}
	a := entry("F32", "[2]", 0, 8)
	d8 := make([]byte, 8)

	// header length
	add("empty file", nil, formats.ErrTruncated, 0, "too short")
	add("7 bytes", []byte{2, 0, 0, 0, 0, 0, 0}, formats.ErrTruncated, 0, "too short")
	add("length 2^63", rawFile(1<<63, "{}", nil), formats.ErrTooLarge, 0, "header length 9223372036854775808 exceeds the limit")
	add("length 2^64-1", rawFile(math.MaxUint64, "{}", nil), formats.ErrTooLarge, 0, "exceeds the limit")
	add("length over 100 MB", rawFile(safetensors.MaxHeaderSize+1, "{}", nil), formats.ErrTooLarge, 0, "exceeds the limit of 100000000")
	add("length 100 MB past the file", rawFile(safetensors.MaxHeaderSize, "{}", nil), formats.ErrTruncated, 0, "exceeds the 2 bytes")
	add("length past the file", rawFile(100, "{}", nil), formats.ErrTruncated, 0, "header length 100 exceeds the 2 bytes")
	add("length 0", rawFile(0, "", nil), formats.ErrInvalid, 8, "no JSON object")
	hd("whitespace only", " \t\r\n    ", nil, formats.ErrInvalid, 16, "no JSON object")

	// UTF-8
	hd("invalid UTF-8", `{"a`+"\xff"+`b":`+a+`}`, d8, formats.ErrInvalid, 11, "not valid UTF-8")
	hd("overlong UTF-8", `{"a":`+a+`,"`+"\xc0\xaf"+`":1}`, d8, formats.ErrInvalid, 8+int64(len(`{"a":`+a+`,"`)), "not valid UTF-8")
	hd("UTF-8 surrogate", `{"`+"\xed\xa0\x80"+`":`+a+`}`, d8, formats.ErrInvalid, 10, "not valid UTF-8")

	// not an object
	hd("array", `[]`, nil, formats.ErrInvalid, 8, "not a JSON object: it starts with an array")
	hd("string", `"{}"`, nil, formats.ErrInvalid, 8, "not a JSON object")
	hd("null", `null    `, nil, formats.ErrInvalid, 8, "not a JSON object")
	hd("number", `12345678`, nil, formats.ErrInvalid, 8, "not a JSON object")
	hd("nested arrays at top", strings.Repeat("[", 100_000), nil, formats.ErrInvalid, 8, "not a JSON object")
	hd("nested objects at top", strings.Repeat(`{"a":`, 100_000), nil, formats.ErrTooLarge, 8+64*5, "nested deeper than 64")

	// nesting, in the only place a valid header may nest: an ignored field
	{
		pre := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":`
		h := pre + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "}}"
		hd("100000 nested arrays", h, d8, formats.ErrTooLarge, 8+int64(len(pre))+62, "nested deeper than 64")
		h = pre + strings.Repeat(`{"k":`, 100_000) + "1" + strings.Repeat("}", 100_000) + "}}"
		hd("100000 nested objects", h, d8, formats.ErrTooLarge, 8+int64(len(pre))+62*5, "nested deeper than 64")
		h = pre + strings.Repeat("[", 63) + strings.Repeat("]", 63) + "}}"
		hd("65 levels", h, d8, formats.ErrTooLarge, 8+int64(len(pre))+62, "nested deeper than 64")
		h = pre + strings.Repeat("[", 100_000)
		hd("100000 unclosed arrays", h, d8, formats.ErrTooLarge, 8+int64(len(pre))+62, "nested deeper than 64")
		h = `{"__metadata__":{"k":` + strings.Repeat("[", 100_000)
		hd("nested in metadata", h, nil, formats.ErrInvalid, 8+21, `__metadata__: value of "k" is an array, want a string`)
	}

	// JSON syntax
	hd("trailing garbage", `{} x`, nil, formats.ErrInvalid, 11, `unexpected 'x' after the header object`)
	hd("NUL padding", "{}\x00\x00\x00\x00\x00\x00", nil, formats.ErrInvalid, 10, "byte 0x00 after the header object")
	hd("two objects", `{}{}`, nil, formats.ErrInvalid, 10, "after the header object")
	hd("cut after colon", `{"a":`, nil, formats.ErrInvalid, 13, `tensor "a": entry: unexpected end of JSON, want an object`)
	hd("cut in key", `{"a`, nil, formats.ErrInvalid, 9, "unterminated string")
	hd("cut in escape", `{"a\`, nil, formats.ErrInvalid, 9, "unterminated string")
	hd("unclosed object", `{"a":`+a, d8, formats.ErrInvalid, 8+5+int64(len(a)), "unexpected end of JSON, want ',' or '}'")
	hd("trailing comma", `{"a":`+a+`,}`, d8, formats.ErrInvalid, 8+6+int64(len(a)), "unexpected '}', want string key")
	hd("missing colon", `{"a" `+a+`}`, d8, formats.ErrInvalid, 13, "want ':'")
	hd("unquoted key", `{a:1}`, nil, formats.ErrInvalid, 9, "want string key")
	hd("single quotes", `{'a':1}`, nil, formats.ErrInvalid, 9, "want string key")
	hd("bad escape", `{"a\x":`+a+`}`, d8, formats.ErrInvalid, 11, `invalid escape \x`)
	hd("short \\u", `{"\u12":`+a+`}`, d8, formats.ErrInvalid, 10, `invalid \u escape`)
	hd("lone high surrogate", `{"\ud800":`+a+`}`, d8, formats.ErrInvalid, 10, "unpaired surrogate")
	hd("lone low surrogate", `{"\udc00":`+a+`}`, d8, formats.ErrInvalid, 10, "unpaired surrogate")
	hd("high surrogate then letter", `{"\ud800\u0041":`+a+`}`, d8, formats.ErrInvalid, 10, "unpaired surrogate")
	hd("control character", "{\"a\tb\":"+a+"}", d8, formats.ErrInvalid, 11, "control character 0x09")
	hd("bad literal", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":tru}}`, d8, formats.ErrInvalid, pos(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":tru}}`, "tru", 1), "invalid literal, want true")
	hd("bad number", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":-}}`, d8, formats.ErrInvalid, pos(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":-}}`, "-", 1), "invalid number")
	hd("leading zero", `{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}`, d8, formats.ErrInvalid, 8+30, "want ',' or ']'")
	hd("plus sign", `{"a":{"dtype":"F32","shape":[+2],"data_offsets":[0,8]}}`, d8, formats.ErrInvalid, 8+29, "shape dimension is '+', want a non-negative integer")

	// duplicate keys
	{
		h := `{"a":` + a + `,"a":` + entry("F32", "[2]", 8, 16) + `}`
		hd("duplicate tensor", h, make([]byte, 16), formats.ErrInvalid, pos(h, `"a"`, 2), `duplicate key "a" (first at offset 9)`)
		h = `{"a":` + a + `,"\u0061":` + entry("F32", "[2]", 8, 16) + `}`
		hd("duplicate tensor after unescaping", h, make([]byte, 16), formats.ErrInvalid, pos(h, `"\u0061"`, 1), `duplicate key "a"`)
		h = `{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
		hd("duplicate dtype", h, d8, formats.ErrInvalid, pos(h, `"dtype"`, 2), `tensor "a": duplicate key "dtype"`)
		h = `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"data_offsets":[0,8]}}`
		hd("duplicate data_offsets", h, d8, formats.ErrInvalid, pos(h, `"data_offsets"`, 2), `duplicate key "data_offsets"`)
		h = `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":{"k":1,"k":2}}}`
		hd("duplicate in ignored field", h, d8, formats.ErrInvalid, pos(h, `"k"`, 2), `duplicate key "k"`)
		h = `{"__metadata__":{},"a":` + a + `,"__metadata__":{}}`
		hd("duplicate __metadata__", h, d8, formats.ErrInvalid, pos(h, `"__metadata__"`, 2), `duplicate key "__metadata__"`)
		h = `{"__metadata__":{"k":"1","k":"2"}}`
		hd("duplicate metadata key", h, nil, formats.ErrInvalid, pos(h, `"k"`, 2), `__metadata__: duplicate key "k"`)
		var b strings.Builder
		b.WriteString(`{`)
		for i := range 20 {
			fmt.Fprintf(&b, `"t%d":%s,`, i, entry("U8", "[1]", int64(i), int64(i+1)))
		}
		b.WriteString(`"t17":` + entry("U8", "[1]", 20, 21) + `}`)
		h = b.String()
		hd("duplicate among many", h, make([]byte, 21), formats.ErrInvalid, pos(h, `"t17"`, 2), `duplicate key "t17"`)
	}

	// __metadata__
	hd("metadata number", `{"__metadata__":{"k":1}}`, nil, formats.ErrInvalid, 8+21, `__metadata__: value of "k" is a number, want a string`)
	hd("metadata null value", `{"__metadata__":{"k":null}}`, nil, formats.ErrInvalid, 8+21, `value of "k" is null`)
	hd("metadata object value", `{"__metadata__":{"k":{}}}`, nil, formats.ErrInvalid, 8+21, `value of "k" is an object`)
	hd("metadata array", `{"__metadata__":[]}`, nil, formats.ErrInvalid, 8+16, "want an object of strings")
	hd("metadata string", `{"__metadata__":"pt"}`, nil, formats.ErrInvalid, 8+16, "want an object of strings")

	// tensor entries
	hd("entry array", `{"a":[0,8]}`, d8, formats.ErrInvalid, 13, `tensor "a": entry is an array, want an object`)
	hd("entry string", `{"a":"F32"}`, d8, formats.ErrInvalid, 13, `entry is a string`)
	hd("no dtype", `{"a":{"shape":[2],"data_offsets":[0,8]}}`, d8, formats.ErrInvalid, 13, `tensor "a": entry has no dtype`)
	hd("no shape", `{"a":{"dtype":"F32","data_offsets":[0,8]}}`, d8, formats.ErrInvalid, 13, "entry has no shape")
	hd("no data_offsets", `{"a":{"dtype":"F32","shape":[2]}}`, d8, formats.ErrInvalid, 13, "entry has no data_offsets")
	hd("dtype number", `{"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}`, d8, formats.ErrInvalid, 8+14, "dtype is a number")
	hd("unknown dtype", `{"a":`+entry("F128", "[2]", 0, 8)+`}`, d8, formats.ErrUnsupported, 8+14, `tensor "a": unknown dtype "F128"`)
	hd("ggml dtype", `{"a":`+entry("Q4_0", "[32]", 0, 18)+`}`, make([]byte, 18), formats.ErrUnsupported, 8+14, `unknown dtype "Q4_0"`)
	hd("lower-case dtype", `{"a":`+entry("f32", "[2]", 0, 8)+`}`, d8, formats.ErrUnsupported, 8+14, `unknown dtype "f32"`)
	hd("shape number", `{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, d8, formats.ErrInvalid, 8+28, "shape is a number, want an array")
	hd("negative dim", `{"a":`+entry("F32", "[-1]", 0, 8)+`}`, d8, formats.ErrInvalid, 8+29, "shape dimension -1 is negative")
	hd("negative zero dim", `{"a":`+entry("F32", "[-0]", 0, 0)+`}`, nil, formats.ErrInvalid, 8+29, "shape dimension -0 is negative")
	hd("fractional dim", `{"a":`+entry("F32", "[1.5]", 0, 8)+`}`, d8, formats.ErrInvalid, 8+29, "shape dimension 1.5 is not an integer")
	hd("float dim", `{"a":`+entry("F32", "[2.0]", 0, 8)+`}`, d8, formats.ErrInvalid, 8+29, "2.0 is not an integer")
	hd("exponent dim", `{"a":`+entry("F32", "[2e0]", 0, 8)+`}`, d8, formats.ErrInvalid, 8+29, "2e0 is not an integer")
	hd("string dim", `{"a":`+entry("F32", `["2"]`, 0, 8)+`}`, d8, formats.ErrInvalid, 8+29, "shape dimension is a string")
	hd("null dim", `{"a":`+entry("F32", `[null]`, 0, 8)+`}`, d8, formats.ErrInvalid, 8+29, "shape dimension is null, want a non-negative integer")
	hd("nested dim", `{"a":`+entry("F32", `[[2]]`, 0, 8)+`}`, d8, formats.ErrInvalid, 8+29, "shape dimension is an array")
	hd("dim 2^63", `{"a":`+entry("U8", "[9223372036854775808]", 0, 8)+`}`, d8, formats.ErrTooLarge, 8+28, "9223372036854775808 exceeds 2^63-1")
	hd("dim 2^64", `{"a":`+entry("U8", "[18446744073709551616]", 0, 8)+`}`, d8, formats.ErrTooLarge, 8+28, "exceeds 2^63-1")
	hd("shape overflow", `{"a":`+entry("F32", "[4294967296,4294967296,4294967296]", 0, 8)+`}`, d8, formats.ErrTooLarge, 8+28, "element count overflows")
	hd("shape overflow before a zero", `{"a":`+entry("U8", "[4294967296,4294967296,0]", 0, 0)+`}`, nil, formats.ErrTooLarge, 8+27, "element count overflows")
	hd("element count 2^63", `{"a":`+entry("U8", "[4294967296,2147483648]", 0, 8)+`}`, d8, formats.ErrTooLarge, 8+27, "element count overflows")
	hd("byte size overflow", `{"a":`+entry("F32", "[4611686018427387904]", 0, 8)+`}`, d8, formats.ErrTooLarge, 8+28, "byte size overflows")
	hd("F4 partial byte", `{"a":`+entry("F4", "[3]", 0, 2)+`}`, make([]byte, 2), formats.ErrInvalid, 8+27, "12 bits, not a whole number of bytes")
	hd("F6 partial byte", `{"a":`+entry("F6_E2M3", "[2]", 0, 2)+`}`, make([]byte, 2), formats.ErrInvalid, 8+32, "not a whole number of bytes")
	hd("data_offsets number", `{"a":{"dtype":"F32","shape":[2],"data_offsets":8}}`, d8, formats.ErrInvalid, 8+47, "data_offsets is a number")
	hd("one offset", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}}`, d8, formats.ErrInvalid, 8+47, "data_offsets has 1 values, want 2")
	hd("no offsets", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[]}}`, d8, formats.ErrInvalid, 8+47, "data_offsets has 0 values")
	hd("three offsets", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, d8, formats.ErrInvalid, 8+52, "more than 2 values")
	hd("negative offset", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, d8, formats.ErrInvalid, 8+48, "data offset -8 is negative")
	hd("end before begin", `{"a":`+entry("F32", "[2]", 8, 0)+`}`, d8, formats.ErrInvalid, 8+47, "data_offsets [8, 0] end before they begin")
	hd("size mismatch", `{"a":`+entry("F32", "[2]", 0, 4)+`}`, make([]byte, 4), formats.ErrInvalid, 8+47, "data_offsets [0, 4] span 4 bytes, but F32 [2] takes 8")
	hd("size mismatch long", `{"a":`+entry("F32", "[2]", 0, 12)+`}`, make([]byte, 12), formats.ErrInvalid, 8+47, "span 12 bytes")
	hd("scalar size", `{"a":`+entry("F64", "[]", 0, 4)+`}`, make([]byte, 4), formats.ErrInvalid, 8+46, "F64 [] takes 8")

	// layout of the data section
	{
		h := `{"a":` + a + `,"b":` + entry("F32", "[2]", 4, 12) + `}`
		dataOff := 8 + int64(len(h))
		hd("overlap", h, make([]byte, 12), formats.ErrInvalid, dataOff+4, `tensor "b" [4, 12) overlaps tensor "a" [0, 8)`)
		h = `{"b":` + entry("F32", "[2]", 4, 12) + `,"a":` + a + `}`
		hd("overlap out of order", h, make([]byte, 12), formats.ErrInvalid, dataOff+4, `tensor "b" [4, 12) overlaps tensor "a" [0, 8)`)
		h = `{"a":` + a + `,"b":` + a + `}`
		hd("alias", h, d8, formats.ErrInvalid, 8+int64(len(h)), `tensor "b" [0, 8) overlaps tensor "a" [0, 8)`)
		h = `{"a":` + a + `,"z":` + entry("F32", "[0]", 4, 4) + `}`
		hd("empty tensor inside another", h, d8, formats.ErrInvalid, 8+int64(len(h))+4, `tensor "z" [4, 4) overlaps tensor "a"`)
		h = `{"a":` + a + `,"b":` + entry("F32", "[2]", 12, 20) + `}`
		hd("gap", h, make([]byte, 20), formats.ErrInvalid, 8+int64(len(h))+8, `4 bytes between tensor "a" (ends at 8) and tensor "b" (begins at 12)`)
		h = `{"a":` + entry("F32", "[2]", 4, 12) + `}`
		hd("gap at start", h, make([]byte, 12), formats.ErrInvalid, 8+int64(len(h)), `4 bytes at the start of the data section`)
		h = `{"a":` + a + `}`
		hd("past the end", h, make([]byte, 4), formats.ErrTruncated, pos(h, "[0,8]", 1), `data_offsets [0, 8] end past the 4-byte data section`)
		h = `{"a":` + entry("U8", "[1152921504606846976]", 0, 1152921504606846976) + `}`
		hd("huge offsets", h, nil, formats.ErrTruncated, pos(h, "[0,", 1), `end past the 0-byte data section`)
		h = `{"a":` + entry("U8", "[8]", 9223372036854775799, 9223372036854775807) + `}`
		hd("offsets near 2^63", h, nil, formats.ErrTruncated, pos(h, "[9", 1), `data_offsets [9223372036854775799, 9223372036854775807] end past the 0-byte data section`)
		h = `{"a":` + a + `}`
		hd("trailing bytes", h, make([]byte, 13), formats.ErrInvalid, 8+int64(len(h))+8, "5 trailing bytes after the last tensor")
		hd("data but no tensors", `{}`, make([]byte, 3), formats.ErrInvalid, 10, "declares no tensors, but 3 bytes follow it")
		hd("data but only metadata", `{"__metadata__":{"a":"b"}}`, make([]byte, 3), formats.ErrInvalid, 34, "declares no tensors")
	}
	return cs
}

func TestHostile(t *testing.T) {
	categories := []error{formats.ErrTruncated, formats.ErrTooLarge, formats.ErrInvalid, formats.ErrUnsupported}
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f, err := parse(tc.file)
			runtime.ReadMemStats(&after)
			// The header is read into memory (it is in the file); beyond that, parsing a
			// hostile header must cost little, whatever the header claims.
			alloc := after.TotalAlloc - before.TotalAlloc
			if alloc > 1<<20+uint64(len(tc.file)) {
				t.Errorf("NewFile allocated %d bytes for a %d-byte file", alloc, len(tc.file))
			}
			t.Logf("%d-byte file: NewFile allocated %d bytes", len(tc.file), alloc)
			if f != nil || err == nil {
				t.Fatalf("NewFile = %v, nil; want error %v", f, tc.err)
			}
			for _, c := range categories {
				if got, want := errors.Is(err, c), c == tc.err; got != want {
					t.Errorf("errors.Is(%q, %v) = %v, want %v", err, c, got, want)
				}
			}
			var fe *formats.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q (%T) is not a *formats.FormatError", err, err)
			}
			if fe.Format != "safetensors" || fe.Offset != tc.off || !strings.Contains(fe.Msg, tc.msg) {
				t.Errorf("error = %q (format %q, offset %d),\nwant offset %d and a message containing %q", err, fe.Format, fe.Offset, tc.off, tc.msg)
			}
			if fe.Offset < 0 || fe.Offset > int64(len(tc.file)) {
				t.Errorf("offset %d is outside the %d-byte file", fe.Offset, len(tc.file))
			}
			if !strings.HasPrefix(err.Error(), "safetensors: ") {
				t.Errorf("error %q lacks the safetensors prefix", err)
			}
		})
	}
}

// TestTruncated cuts a valid file at every byte: each prefix must fail with ErrTruncated.
func TestTruncated(t *testing.T) {
	b := writeFile(t, []safetensors.WriteTensor{
		{Name: "w", DType: formats.F32, Shape: []int64{2, 2}, Data: make([]byte, 16)},
		{Name: "b", DType: formats.BF16, Shape: []int64{3}, Data: []byte{1, 2, 3, 4, 5, 6}},
		{Name: "e", DType: formats.I8, Shape: []int64{0}},
		{Name: "s", DType: formats.U8, Shape: []int64{}, Data: []byte{7}},
	}, []formats.KV{{Key: "format", Value: "pt"}})
	if _, err := parse(b); err != nil {
		t.Fatalf("whole file: %v", err)
	}
	for i := range len(b) {
		f, err := parse(b[:i])
		var fe *formats.FormatError
		if f != nil || !errors.Is(err, formats.ErrTruncated) || !errors.As(err, &fe) || fe.Offset < 0 || fe.Offset > int64(i) {
			t.Errorf("cut at %d of %d: NewFile = %v, %v; want ErrTruncated at an offset within the file", i, len(b), f, err)
		}
	}
}

// shortReader claims more bytes than it has.
type shortReader struct{ b []byte }

func (r shortReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// failReader fails every read.
type failReader struct{}

var errDisk = errors.New("disk on fire")

func (failReader) ReadAt(p []byte, off int64) (int, error) { return 0, errDisk }

func TestReaderErrors(t *testing.T) {
	b := writeFile(t, []safetensors.WriteTensor{{Name: "a", DType: formats.F32, Shape: []int64{2}, Data: make([]byte, 8)}}, nil)
	tests := []struct {
		name string
		r    io.ReaderAt
		size int64
		want error
	}{
		{"size beyond the reader's data", shortReader{b[:20]}, int64(len(b)), formats.ErrTruncated},
		{"size beyond, in the length", shortReader{b[:3]}, int64(len(b)), formats.ErrTruncated},
		{"negative size", shortReader{b}, -1, formats.ErrInvalid},
		{"I/O error", failReader{}, int64(len(b)), errDisk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := safetensors.NewFile(tt.r, tt.size)
			if !errors.Is(err, tt.want) {
				t.Errorf("NewFile error = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestValid lists headers that are unusual but valid.
func TestValid(t *testing.T) {
	a := entry("F32", "[2]", 0, 8)
	type tensor struct {
		name   string
		shape  []int64
		offset int64 // relative to the data section
	}
	tests := []struct {
		name   string
		header string
		data   int
		want   []tensor // in header order
		meta   []formats.KV
	}{
		{"leading whitespace", " \n\t\r{\"a\":" + a + "}", 8, []tensor{{"a", []int64{2}, 0}}, nil},
		{"whitespace everywhere", "{ \"a\" :\n{ \"dtype\" : \"F32\" , \"shape\" : [ 2 ] , \"data_offsets\" : [ 0 , 8 ] } }\n\t\r  ", 8, []tensor{{"a", []int64{2}, 0}}, nil},
		{"unsorted but contiguous", `{"b":` + entry("F32", "[2]", 8, 16) + `,"c":` + entry("U8", "[3]", 16, 19) + `,"a":` + a + `}`, 19,
			[]tensor{{"b", []int64{2}, 8}, {"c", []int64{3}, 16}, {"a", []int64{2}, 0}}, nil},
		{"empty tensors everywhere", `{"z3":` + entry("F32", "[0]", 8, 8) + `,"a":` + a + `,"z1":` + entry("F32", "[0,5]", 0, 0) + `,"z2":` + entry("BF16", "[5,0]", 8, 8) + `}`, 8,
			[]tensor{{"z3", []int64{0}, 8}, {"a", []int64{2}, 0}, {"z1", []int64{0, 5}, 0}, {"z2", []int64{5, 0}, 8}}, nil},
		{"zero times huge", `{"z":` + entry("U8", "[0,4611686018427387904,4611686018427387904]", 0, 0) + `}`, 0,
			[]tensor{{"z", []int64{0, 1 << 62, 1 << 62}, 0}}, nil},
		{"empty", `{}`, 0, nil, nil},
		{"empty padded", `{}      `, 0, nil, nil},
		{"metadata null", `{"__metadata__":null,"a":` + a + `}`, 8, []tensor{{"a", []int64{2}, 0}}, nil},
		{"metadata empty", `{"__metadata__":{},"a":` + a + `}`, 8, []tensor{{"a", []int64{2}, 0}}, []formats.KV{}},
		{"metadata last", `{"a":` + a + `,"__metadata__":{"z":"1","a":"2"}}`, 8, []tensor{{"a", []int64{2}, 0}},
			[]formats.KV{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}}},
		{"metadata escapes", `{"__metadata__":{"k\"\\\/\b\f\n\r\t":"\u00e9\ud83d\ude00\u0000"}}`, 0, nil,
			[]formats.KV{{Key: "k\"\\/\b\f\n\r\t", Value: "é😀\x00"}}},
		{"escaped name", `{"a\u00e9\n\"\/":` + a + `}`, 8, []tensor{{"aé\n\"/", []int64{2}, 0}}, nil},
		{"empty name", `{"":` + a + `}`, 8, []tensor{{"", []int64{2}, 0}}, nil},
		{"ignored fields", `{"a":{"x":[1,-2.5e+3,{"y":[true,false,null,"s"]}],"dtype":"F32","big":1e400,"shape":[2],"data_offsets":[0,8],"z":{}}}`, 8,
			[]tensor{{"a", []int64{2}, 0}}, nil},
		{"64 levels", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}}`, 8,
			[]tensor{{"a", []int64{2}, 0}}, nil},
		{"F4 and F6", `{"f4":` + entry("F4", "[2,3]", 0, 3) + `,"f6":` + entry("F6_E3M2", "[4]", 3, 6) + `}`, 6,
			[]tensor{{"f4", []int64{2, 3}, 0}, {"f6", []int64{4}, 3}}, nil},
		{"scalar", `{"s":` + entry("C64", "[]", 0, 8) + `}`, 8, []tensor{{"s", []int64{}, 0}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := headerFile(tt.header, make([]byte, tt.data))
			f, err := parse(b)
			if err != nil {
				t.Fatalf("NewFile: %v", err)
			}
			if f.DataOffset != 8+int64(len(tt.header)) || f.HeaderLen != uint64(len(tt.header)) || f.Size != int64(len(b)) {
				t.Errorf("DataOffset %d HeaderLen %d Size %d", f.DataOffset, f.HeaderLen, f.Size)
			}
			var got []tensor
			for _, ft := range f.Tensors {
				got = append(got, tensor{ft.Name, ft.Shape, ft.Offset - f.DataOffset})
			}
			if !slices.EqualFunc(got, tt.want, func(a, b tensor) bool {
				return a.name == b.name && slices.Equal(a.shape, b.shape) && a.offset == b.offset
			}) {
				t.Errorf("tensors = %v, want %v", got, tt.want)
			}
			checkSpans(t, b, f.Metadata)
			if len(f.Metadata) != len(tt.meta) || !slices.Equal(keyValues(f.Metadata), tt.meta) {
				t.Errorf("metadata = %v, want %v", f.Metadata, tt.meta)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	gguf := []byte("GGUF\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00")
	tests := []struct {
		name string
		head []byte
		want bool
	}{
		{"safetensors", rawFile(64, `{"a":1}`, nil), true},
		{"leading space", rawFile(64, ` {`, nil), true},
		{"leading newline", rawFile(64, "\n{", nil), true},
		{"length at the limit", rawFile(safetensors.MaxHeaderSize, "{", nil), true},
		{"length over the limit", rawFile(safetensors.MaxHeaderSize+1, "{", nil), false},
		{"length 1", rawFile(1, "{", nil), false},
		{"length 0", rawFile(0, "{", nil), false},
		{"array", rawFile(64, "[", nil), false},
		{"8 bytes", rawFile(64, "", nil), false},
		{"GGUF v3", gguf, false},
		{"GGUF v1", []byte("GGUF\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), false},
		{"GGUF big-endian", []byte("GGUF\x00\x00\x00\x03{{{{{{{{"), false},
		{"zip", []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := safetensors.Match(tt.head); got != tt.want {
			t.Errorf("%s: Match(% x) = %v, want %v", tt.name, tt.head, got, tt.want)
		}
	}
}

// TestOpenFile checks the file-level Open and Close and that errors carry the path.
func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, []safetensors.WriteTensor{{Name: "a", DType: formats.F32, Shape: []int64{2}, Data: make([]byte, 8)}}, nil)
	writeTemp(t, dir, "good.safetensors", good)
	writeTemp(t, dir, "bad.safetensors", good[:len(good)-1])
	f, err := safetensors.Open(dir + "/good.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if f.Tensor("a") == nil || f.Tensor("b") != nil {
		t.Errorf("Tensor lookups wrong: %v", f.Tensors)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = safetensors.Open(dir + "/bad.safetensors")
	var fe *formats.FormatError
	if !errors.As(err, &fe) || fe.File != dir+"/bad.safetensors" || !errors.Is(err, formats.ErrTruncated) {
		t.Errorf("Open(bad) error = %v, want ErrTruncated naming the file", err)
	}
	if _, err := safetensors.Open(dir + "/missing.safetensors"); err == nil {
		t.Error("Open(missing) succeeded")
	}
	if err := mkfifo(dir + "/fifo.safetensors"); err == nil {
		if _, err := safetensors.Open(dir + "/fifo.safetensors"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Open(FIFO) error = %v, want not a regular file", err)
		}
		fifoDir := t.TempDir()
		if err := mkfifo(fifoDir + "/model.safetensors"); err != nil {
			t.Fatal(err)
		}
		m, ok, err := safetensors.OpenDir(fifoDir) // refused without being opened
		if err == nil || ok || m != nil || !strings.Contains(err.Error(), `"model.safetensors" is not a regular file`) {
			t.Errorf("OpenDir with a FIFO = %v, %v, %v; want an error", m, ok, err)
		}
	}
	// NewFile's File has nothing to close
	g, err := parse(bytes.Clone(good))
	if err != nil || g.Close() != nil {
		t.Errorf("parse/Close: %v", err)
	}
}
