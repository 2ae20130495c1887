package safetensors_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
)

// sample is a tensor of one dtype with hand-encoded data and the float32 values that data
// holds (nil when the dtype cannot be decoded).
type sample struct {
	dtype formats.DType
	shape []int64
	data  []byte
	want  []float32
}

// f6 packs four 6-bit codes per 3 bytes, little-endian: v = c0 | c1<<6 | c2<<12 | c3<<18.
func f6(codes ...uint32) []byte {
	var b []byte
	for i := 0; i < len(codes); i += 4 {
		v := codes[i] | codes[i+1]<<6 | codes[i+2]<<12 | codes[i+3]<<18
		b = append(b, byte(v), byte(v>>8), byte(v>>16))
	}
	return b
}

// samples returns a [2,3] (or [2,4] for the 6-bit floats) tensor for every dtype, with the
// encodings written out by hand from the format definitions.
func samples() []sample {
	vals := []float32{0, 1, -2, 0.5, 1.5, -0.25}
	ints := []float32{0, 1, -2, 3, -4, 5}
	uints := []float32{0, 1, 2, 3, 200, 5}
	s23 := []int64{2, 3}
	f32 := make([]byte, 0, 24)
	f64 := make([]byte, 0, 48)
	for _, v := range vals {
		f32 = append(f32, le32(math.Float32bits(v))...)
		f64 = append(f64, le64(math.Float64bits(float64(v)))...)
	}
	c64 := le32(math.Float32bits(1), math.Float32bits(-1), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	return []sample{
		{formats.F32, s23, f32, vals},
		{formats.F64, s23, f64, vals},
		{formats.F16, s23, le16(0, 0x3c00, 0xc000, 0x3800, 0x3e00, 0xb400), vals},
		{formats.BF16, s23, le16(0, 0x3f80, 0xc000, 0x3f00, 0x3fc0, 0xbe80), vals},
		{formats.F8_E4M3, s23, []byte{0, 0x38, 0xc0, 0x30, 0x3c, 0xa8}, vals},
		{formats.F8_E5M2, s23, []byte{0, 0x3c, 0xc0, 0x38, 0x3e, 0xb4}, vals},
		{formats.F8_E4M3FNUZ, s23, []byte{0, 0x40, 0xc8, 0x38, 0x44, 0xb0}, vals},
		{formats.F8_E5M2FNUZ, s23, []byte{0, 0x40, 0xc4, 0x3c, 0x42, 0xb8}, vals},
		{formats.F8_E8M0, s23, []byte{127, 128, 126, 125, 129, 127}, []float32{1, 2, 0.5, 0.25, 4, 1}},
		// E2M1 nibbles, first element in the low nibble: 0 1 -2 | 0.5 1.5 6
		{formats.F4, s23, []byte{0x20, 0x1c, 0x73}, []float32{0, 1, -2, 0.5, 1.5, 6}},
		// E2M3: 0 1 -2 0.5 | 1.5 -0.25 7.5 -7.5
		{formats.F6_E2M3, []int64{2, 4}, f6(0, 8, 48, 4, 12, 34, 31, 63), []float32{0, 1, -2, 0.5, 1.5, -0.25, 7.5, -7.5}},
		// E3M2: 0 1 -2 0.5 | 1.5 -0.25 28 -28
		{formats.F6_E3M2, []int64{2, 4}, f6(0, 12, 48, 8, 14, 36, 31, 63), []float32{0, 1, -2, 0.5, 1.5, -0.25, 28, -28}},
		{formats.BOOL, s23, []byte{0, 1, 1, 0, 1, 0}, []float32{0, 1, 1, 0, 1, 0}},
		{formats.U8, s23, []byte{0, 1, 2, 3, 200, 5}, uints},
		{formats.I8, s23, []byte{0, 1, 0xfe, 3, 0xfc, 5}, ints},
		{formats.U16, s23, le16(0, 1, 2, 3, 200, 5), uints},
		{formats.I16, s23, le16(0, 1, 0xfffe, 3, 0xfffc, 5), ints},
		{formats.U32, s23, le32(0, 1, 2, 3, 200, 5), uints},
		{formats.I32, s23, le32(0, 1, 0xfffffffe, 3, 0xfffffffc, 5), ints},
		{formats.U64, s23, le64(0, 1, 2, 3, 200, 5), uints},
		{formats.I64, s23, le64(0, 1, 1<<64-2, 3, 1<<64-4, 5), ints},
		{formats.C64, s23, c64, nil},
	}
}

func TestRoundTrip(t *testing.T) {
	var wt []safetensors.WriteTensor
	want := map[string]sample{}
	add := func(name string, s sample) {
		wt = append(wt, safetensors.WriteTensor{Name: name, DType: s.dtype, Shape: s.shape, Data: s.data})
		want[name] = s
	}
	for _, s := range samples() {
		d := s.dtype.String()
		add(d+"/values", s)
		// empty tensors: a 0 dimension anywhere
		var none []float32
		if s.want != nil {
			none = []float32{}
		}
		add(d+"/empty", sample{dtype: s.dtype, shape: []int64{0}, data: []byte{}, want: none})
		add(d+"/empty3", sample{dtype: s.dtype, shape: []int64{2, 0, 3}, data: nil, want: none})
		// a scalar, for dtypes whose one element fills whole bytes
		if bits := s.dtype.BlockBytes() * 8 / s.dtype.BlockElems(); bits%8 == 0 {
			n := bits / 8
			var sw []float32
			if s.want != nil {
				sw = s.want[1:2]
			}
			add(d+"/scalar", sample{dtype: s.dtype, shape: []int64{}, data: s.data[n : 2*n], want: sw})
		}
	}
	if !slices.ContainsFunc(wt, func(w safetensors.WriteTensor) bool { return w.DType == formats.F4 }) {
		t.Fatal("no F4 sample")
	}
	meta := []formats.KV{{Key: "format", Value: "pt"}, {Key: "note", Value: "quote \" backslash \\ newline \n tab \t nul \x00 del \x7f é ☃"}}
	b := writeFile(t, wt, meta)

	f, err := parse(b)
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	if f.HeaderLen%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", f.HeaderLen)
	}
	checkSpans(t, b, f.Metadata)
	if !reflect.DeepEqual(keyValues(f.Metadata), meta) {
		t.Errorf("metadata = %v, want %v", f.Metadata, meta)
	}
	if got := len(f.Tensors); got != len(wt) {
		t.Fatalf("%d tensors, want %d", got, len(wt))
	}
	// canonical order: dtype alignment descending, then name
	rank := func(d formats.DType) int {
		order := []formats.DType{formats.BOOL, formats.F4, formats.F6_E2M3, formats.F6_E3M2, formats.U8, formats.I8,
			formats.F8_E5M2, formats.F8_E4M3, formats.F8_E8M0, formats.F8_E4M3FNUZ, formats.F8_E5M2FNUZ,
			formats.I16, formats.U16, formats.F16, formats.BF16, formats.I32, formats.U32, formats.F32,
			formats.C64, formats.F64, formats.I64, formats.U64}
		return slices.Index(order, d)
	}
	for i := 1; i < len(f.Tensors); i++ {
		a, c := f.Tensors[i-1], f.Tensors[i]
		if ra, rc := rank(a.DType), rank(c.DType); ra < rc || ra == rc && a.Name >= c.Name {
			t.Errorf("tensor %q (%s) precedes %q (%s): not in canonical order", a.Name, a.DType, c.Name, c.DType)
		}
	}
	m, err := model(b)
	if err != nil {
		t.Fatalf("Model: %v", err)
	}
	for i, ft := range f.Tensors {
		s := want[ft.Name]
		if ft.DType != s.dtype || !slices.Equal(ft.Shape, s.shape) {
			t.Errorf("%s: dtype %s shape %v, want %s %v", ft.Name, ft.DType, ft.Shape, s.dtype, s.shape)
		}
		if got := b[ft.Offset : ft.Offset+ft.Length]; !bytes.Equal(got, s.data) {
			t.Errorf("%s: data % x, want % x", ft.Name, got, s.data)
		}
		// natural alignment of whole-byte elements
		if bits := ft.DType.BlockBytes() * 8 / ft.DType.BlockElems(); bits%8 == 0 && ft.Offset%int64(bits/8) != 0 {
			t.Errorf("%s: offset %d is not aligned to %d", ft.Name, ft.Offset, bits/8)
		}
		ti := &m.Tensors[i]
		if ti.Name != ft.Name || ti.Offset != ft.Offset || ti.Length != ft.Length || ti.File != "mem.safetensors" {
			t.Errorf("model tensor %d = %+v, want %q at %d+%d", i, ti, ft.Name, ft.Offset, ft.Length)
		}
		r, err := m.NewTensorReader(ti)
		if s.want == nil {
			if !errors.Is(err, formats.ErrUnsupported) {
				t.Errorf("%s: NewTensorReader error %v, want ErrUnsupported", ft.Name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: NewTensorReader: %v", ft.Name, err)
		}
		got := make([]float32, ti.Elements())
		if err := r.ReadElements(0, got); err != nil {
			t.Fatalf("%s: ReadElements: %v", ft.Name, err)
		}
		if !slices.Equal(got, s.want) {
			t.Errorf("%s: values %v, want %v", ft.Name, got, s.want)
		}
	}

	// Write is canonical: writing the parsed file again gives the same bytes, whatever the
	// order of the input.
	var again []safetensors.WriteTensor
	for _, ft := range slices.Backward(f.Tensors) {
		again = append(again, safetensors.WriteTensor{Name: ft.Name, DType: ft.DType, Shape: ft.Shape, Data: b[ft.Offset : ft.Offset+ft.Length]})
	}
	if b2 := writeFile(t, again, f.Metadata); !bytes.Equal(b2, b) {
		t.Errorf("rewriting the parsed file changed it")
	}
}

// TestWriteGolden checks Write against the byte vectors of the reference implementation's
// own tests (safetensors/src/tensor.rs: test_serialization, test_empty,
// test_serialization_forced_alignement).
func TestWriteGolden(t *testing.T) {
	f32 := le32(0, math.Float32bits(1), math.Float32bits(2), math.Float32bits(3), math.Float32bits(4), math.Float32bits(5))
	tests := []struct {
		name    string
		tensors []safetensors.WriteTensor
		meta    []formats.KV
		want    []byte
	}{
		{"serialization", []safetensors.WriteTensor{{Name: "attn.0", DType: formats.F32, Shape: []int64{1, 2, 3}, Data: f32}}, nil,
			rawFile(64, `{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`, f32)},
		{"forced alignment", []safetensors.WriteTensor{{Name: "attn0", DType: formats.F32, Shape: []int64{1, 1, 2, 3}, Data: f32}}, nil,
			rawFile(72, `{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       `, f32)},
		{"empty", nil, nil, rawFile(8, "{}      ", nil)},
		{"empty with metadata", nil, []formats.KV{{Key: "framework", Value: "pt"}},
			rawFile(40, `{"__metadata__":{"framework":"pt"}}     `, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := writeFile(t, tt.tensors, tt.meta)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Write =\n%q\nwant\n%q", got, tt.want)
			}
			if _, err := parse(got); err != nil {
				t.Errorf("NewFile: %v", err)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	f32 := func(name string, shape []int64, n int) safetensors.WriteTensor {
		return safetensors.WriteTensor{Name: name, DType: formats.F32, Shape: shape, Data: make([]byte, n)}
	}
	tests := []struct {
		name    string
		tensors []safetensors.WriteTensor
		meta    []formats.KV
		want    string
	}{
		{"short data", []safetensors.WriteTensor{f32("a", []int64{2}, 7)}, nil, "7 bytes of data"},
		{"long data", []safetensors.WriteTensor{f32("a", []int64{}, 5)}, nil, "5 bytes of data"},
		{"negative dim", []safetensors.WriteTensor{f32("a", []int64{-1}, 0)}, nil, "negative dimension"},
		{"overflow", []safetensors.WriteTensor{f32("a", []int64{1 << 32, 1 << 32, 1 << 32}, 0)}, nil, "overflows"},
		{"duplicate", []safetensors.WriteTensor{f32("a", nil, 4), f32("a", nil, 4)}, nil, "duplicate name"},
		{"reserved", []safetensors.WriteTensor{f32("__metadata__", nil, 4)}, nil, "reserved"},
		{"bad utf8", []safetensors.WriteTensor{f32("a\xff", nil, 4)}, nil, "UTF-8"},
		{"ggml dtype", []safetensors.WriteTensor{{Name: "q", DType: formats.Q4_0, Shape: []int64{32}, Data: make([]byte, 18)}}, nil, "not a safetensors dtype"},
		{"partial F4 byte", []safetensors.WriteTensor{{Name: "f", DType: formats.F4, Shape: []int64{3}, Data: make([]byte, 2)}}, nil, "whole bytes"},
		{"non-string metadata", nil, []formats.KV{{Key: "n", Value: 1}}, "want a string"},
		{"duplicate metadata", nil, []formats.KV{{Key: "k", Value: "a"}, {Key: "k", Value: "b"}}, "duplicate key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := safetensors.Write(&b, tt.tensors, tt.meta)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "safetensors: ") {
				t.Errorf("Write error = %v, want one containing %q", err, tt.want)
			}
			if b.Len() != 0 {
				t.Errorf("Write wrote %d bytes before failing", b.Len())
			}
		})
	}
}
