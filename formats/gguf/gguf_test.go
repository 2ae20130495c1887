package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

// raw builds GGUF bytes field by field, for inputs the writer refuses to produce.
type raw struct {
	bytes.Buffer
	bo binary.AppendByteOrder
	v1 bool
}

func newRaw(version uint32) *raw {
	r := &raw{bo: binary.LittleEndian, v1: version == 1}
	r.WriteString("GGUF")
	r.u32(version)
	return r
}

func (r *raw) u8(v uint8)   { r.WriteByte(v) }
func (r *raw) u32(v uint32) { r.Write(r.bo.AppendUint32(nil, v)) }
func (r *raw) u64(v uint64) { r.Write(r.bo.AppendUint64(nil, v)) }
func (r *raw) n(v uint64) {
	if r.v1 {
		r.u32(uint32(v))
	} else {
		r.u64(v)
	}
}
func (r *raw) str(s string) { r.n(uint64(len(s))); r.WriteString(s) }
func (r *raw) off() int64   { return int64(r.Len()) }

// tensorInfo writes one tensor info with ne dims (innermost first).
func (r *raw) tensorInfo(name string, ne []uint64, typ uint32, off uint64) {
	r.str(name)
	r.u32(uint32(len(ne)))
	for _, d := range ne {
		r.n(d)
	}
	r.u32(typ)
	r.u64(off)
}

func (r *raw) pad(align int) {
	for r.Len()%align != 0 {
		r.WriteByte(0)
	}
}

func f32bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func parse(b []byte) (*File, error) { return NewFile(bytes.NewReader(b), int64(len(b))) }

// sampleKVs holds one value of every metadata type, including nested arrays.
func sampleKVs() []formats.KV {
	return []formats.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "t.u8", Value: uint8(200)}, {Key: "t.i8", Value: int8(-100)},
		{Key: "t.u16", Value: uint16(60000)}, {Key: "t.i16", Value: int16(-30000)},
		{Key: "t.u32", Value: uint32(4000000000)}, {Key: "t.i32", Value: int32(-2000000000)},
		{Key: "t.f32", Value: float32(0.1)}, {Key: "t.bool", Value: true},
		{Key: "t.u64", Value: uint64(1) << 63}, {Key: "t.i64", Value: int64(-1) << 62},
		{Key: "t.f64", Value: math.Pi}, {Key: "t.str", Value: "héllo\x00world"},
		{Key: "t.arr.u8", Value: []uint8{1, 2, 3}}, {Key: "t.arr.i8", Value: []int8{-1, 2}},
		{Key: "t.arr.u16", Value: []uint16{1, 65535}}, {Key: "t.arr.i16", Value: []int16{-5}},
		{Key: "t.arr.u32", Value: []uint32{7}}, {Key: "t.arr.i32", Value: []int32{-7, 8}},
		{Key: "t.arr.f32", Value: []float32{1.5, -2}}, {Key: "t.arr.bool", Value: []bool{true, false}},
		{Key: "t.arr.str", Value: []string{"a", "", "ccc"}}, {Key: "t.arr.u64", Value: []uint64{1 << 40}},
		{Key: "t.arr.i64", Value: []int64{-1}}, {Key: "t.arr.f64", Value: []float64{2.5}},
		{Key: "t.arr.empty", Value: []string{}},
		{Key: "t.arr.nested", Value: []any{[]int32{1, 2}, []int32{}, []any{[]string{"deep"}}}},
	}
}

func sampleTensors() []WriteTensor {
	q := make([]byte, 2*34) // two Q8_0 blocks
	for i := range q {
		q[i] = byte(i * 7)
	}
	q[0], q[1], q[34], q[35] = 0x00, 0x3c, 0x00, 0x40 // d = 1.0 and 2.0 in f16
	return []WriteTensor{
		{Name: "a", DType: formats.F32, Shape: []int64{2, 3}, Data: f32bytes(1, 2, 3, 4, 5, 6)},
		{Name: "b.scalar", DType: formats.F32, Shape: []int64{}, Data: f32bytes(7)},
		{Name: "q", DType: formats.Q8_0, Shape: []int64{2, 32}, Data: q},
		{Name: "empty", DType: formats.F16, Shape: []int64{0, 4}, Data: nil},
		{Name: "h", DType: formats.F16, Shape: []int64{3}, Data: []byte{0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c}},
	}
}

// The writer and the reader agree for every version, both byte orders and every value type.
func TestRoundTrip(t *testing.T) {
	for _, opt := range []WriteOptions{
		{Version: 3}, {Version: 2}, {Version: 1},
		{Version: 3, BigEndian: true}, {Version: 3, BigEndian: true, BEMagic: true},
		{Version: 2, BigEndian: true},
	} {
		kvs := sampleKVs()
		ts := sampleTensors()
		var buf bytes.Buffer
		if err := Write(&buf, kvs, ts, &opt); err != nil {
			t.Fatalf("%+v: Write: %v", opt, err)
		}
		f, err := parse(buf.Bytes())
		if err != nil {
			t.Fatalf("%+v: NewFile: %v", opt, err)
		}
		if f.Version != opt.Version || f.BigEndian != opt.BigEndian {
			t.Errorf("%+v: version %d big-endian %v", opt, f.Version, f.BigEndian)
		}
		if len(f.KV) != len(kvs) {
			t.Fatalf("%+v: %d KVs, want %d", opt, len(f.KV), len(kvs))
		}
		for i, kv := range kvs {
			if f.KV[i].Key != kv.Key || !reflect.DeepEqual(f.KV[i].Value, kv.Value) {
				t.Errorf("%+v: KV %d = %q %#v, want %q %#v", opt, i, f.KV[i].Key, f.KV[i].Value, kv.Key, kv.Value)
			}
		}
		mf := formats.NewFile("x.gguf", bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		m := f.Model(mf)
		issues, err := f.Layout(mf)
		if err != nil || len(issues) != 0 {
			t.Errorf("%+v: canonical file has layout issues %v (%v)", opt, issues, err)
		}
		for i, wt := range ts {
			ti := &m.Tensors[i]
			if ti.Name != wt.Name || ti.DType != wt.DType || !reflect.DeepEqual(ti.Shape, append([]int64{}, wt.Shape...)) || ti.Length != int64(len(wt.Data)) {
				t.Errorf("%+v: tensor %d = %+v, want %s %s %v len %d", opt, i, ti, wt.Name, wt.DType, wt.Shape, len(wt.Data))
			}
			if ti.Offset%int64(f.Alignment) != 0 {
				t.Errorf("%+v: tensor %q offset %d not aligned", opt, ti.Name, ti.Offset)
			}
			// decoded values equal those of the little-endian data
			want := make([]float32, ti.Elements())
			if len(want) > 0 {
				ti.DType.Decode(want, wt.Data)
			}
			rd, err := m.NewTensorReader(ti)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, ti.Elements())
			if err := rd.ReadElements(0, got); err != nil {
				t.Fatalf("%+v: %q: %v", opt, ti.Name, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%+v: %q decoded %v, want %v", opt, ti.Name, got, want)
			}
		}
	}
}

func TestReadRowsPartial(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, nil, sampleTensors(), nil); err != nil {
		t.Fatal(err)
	}
	f, err := parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m := f.Model(formats.NewFile("x", bytes.NewReader(buf.Bytes()), int64(buf.Len())))
	rd, _ := m.NewTensorReader(m.Tensor("a"))
	got := make([]float32, 3)
	if err := rd.ReadRows(1, got); err != nil || !reflect.DeepEqual(got, []float32{4, 5, 6}) {
		t.Errorf("ReadRows(1) = %v, %v; want [4 5 6]", got, err)
	}
	if err := rd.ReadRows(2, got); err == nil {
		t.Errorf("ReadRows past the end: no error")
	}
	rq, _ := m.NewTensorReader(m.Tensor("q"))
	all := make([]float32, 64)
	rq.ReadElements(0, all)
	part := make([]float32, 5)
	if err := rq.ReadElements(30, part); err != nil || !reflect.DeepEqual(part, all[30:35]) {
		t.Errorf("ReadElements(30, 5) across a block boundary = %v, %v; want %v", part, err, all[30:35])
	}
}

type hostile struct {
	name string
	data []byte
	cat  error
	off  int64 // expected FormatError offset (-2: any offset inside the file)
}

func hostileCases() []hostile {
	var cs []hostile
	add := func(name string, r *raw, cat error, off int64) {
		cs = append(cs, hostile{name, append([]byte(nil), r.Bytes()...), cat, off})
	}

	add("empty file", &raw{bo: binary.LittleEndian}, formats.ErrTruncated, 0)
	r := &raw{bo: binary.LittleEndian}
	r.WriteString("GGML")
	r.u32(3)
	add("bad magic", r, formats.ErrInvalid, 0)
	for _, v := range []uint32{0, 4, 1000} {
		r = newRaw(v)
		r.u64(0)
		r.u64(0)
		add(fmt.Sprintf("version %d", v), r, formats.ErrUnsupported, 4)
	}
	r = newRaw(3)
	r.u64(1 << 63)
	r.u64(0)
	add("tensor count 2^63", r, formats.ErrTooLarge, 8)
	r = newRaw(3)
	r.u64(0)
	r.u64(math.MaxUint64)
	add("kv count 2^64-1", r, formats.ErrTooLarge, 16)
	r = newRaw(3)
	r.u64(0)
	r.u64(1)
	r.u64(1 << 40)
	r.WriteString("abcdefghijk")
	add("key length past EOF", r, formats.ErrTruncated, 24)

	kvHead := func(key string, typ uint32) *raw {
		r := newRaw(3)
		r.u64(0)
		r.u64(1)
		r.str(key)
		r.u32(typ)
		return r
	}
	r = kvHead("s", uint32(TypeString))
	o := r.off()
	r.u64(1 << 62)
	add("string value length past EOF", r, formats.ErrTruncated, o)
	r = kvHead("a", uint32(TypeArray))
	r.u32(uint32(TypeUint8))
	o = r.off()
	r.u64(1 << 63)
	add("u8 array count 2^63", r, formats.ErrTooLarge, o)
	r = kvHead("a", uint32(TypeArray))
	r.u32(uint32(TypeString))
	o = r.off()
	r.u64(1000)
	r.str("only one")
	add("string array count past EOF", r, formats.ErrTooLarge, o)
	r = kvHead("a", uint32(TypeArray))
	r.u32(uint32(TypeUint64))
	o = r.off()
	r.u64(math.MaxUint64/8 + 1) // n*8 overflows to a small number
	r.u64(0)
	add("array count whose byte size overflows", r, formats.ErrTooLarge, o)
	r = kvHead("t", 13)
	add("unknown value type", r, formats.ErrInvalid, 24+8+1)
	r = kvHead("a", uint32(TypeArray))
	r.u32(77)
	r.u64(1)
	add("unknown array element type", r, formats.ErrInvalid, 24+8+1+4)
	r = kvHead("b", uint32(TypeBool))
	r.u8(2)
	add("bool value 2", r, formats.ErrInvalid, 24+8+1+4)
	r = kvHead("", uint32(TypeUint8))
	r.u8(1)
	add("empty key", r, formats.ErrInvalid, 24)

	// arrays nested 100,000 deep: rejected at the depth limit, long before the end
	r = kvHead("deep", uint32(TypeArray))
	for i := 0; i < 100000; i++ {
		r.u32(uint32(TypeArray))
		r.u64(1)
	}
	r.u32(uint32(TypeUint8))
	r.u64(0)
	add("arrays nested 100000 deep", r, formats.ErrTooLarge, -2)

	r = newRaw(3)
	r.u64(0)
	r.u64(2)
	r.str("k")
	r.u32(uint32(TypeUint8))
	r.u8(1)
	o = r.off()
	r.str("k")
	r.u32(uint32(TypeUint8))
	r.u8(2)
	add("duplicate key", r, formats.ErrInvalid, o)

	align := func(typ uint32, val func(*raw)) *raw {
		r := newRaw(3)
		r.u64(0)
		r.u64(1)
		r.str("general.alignment")
		r.u32(typ)
		val(r)
		return r
	}
	add("alignment 0", align(uint32(TypeUint32), func(r *raw) { r.u32(0) }), formats.ErrInvalid, 24)
	add("alignment 3", align(uint32(TypeUint32), func(r *raw) { r.u32(3) }), formats.ErrInvalid, 24)
	add("alignment as u64", align(uint32(TypeUint64), func(r *raw) { r.u64(32) }), formats.ErrInvalid, 24)
	add("alignment as string", align(uint32(TypeString), func(r *raw) { r.str("32") }), formats.ErrInvalid, 24)

	tens := func(ne []uint64, typ uint32, off uint64) (*raw, int64) {
		r := newRaw(3)
		r.u64(1)
		r.u64(0)
		o := r.off()
		r.tensorInfo("w", ne, typ, off)
		r.pad(32)
		r.Write(make([]byte, 64))
		return r, o
	}
	r, o = tens([]uint64{1, 1, 1, 1, 1}, 0, 0)
	add("n_dims 5", r, formats.ErrInvalid, o+8+1)
	r, o = tens([]uint64{1 << 32, 1 << 32, 1 << 32}, 0, 0)
	add("ne product overflows", r, formats.ErrTooLarge, o+8+1)
	r, o = tens([]uint64{1 << 62, 4}, 0, 0)
	add("ne product past int64", r, formats.ErrTooLarge, o+8+1)
	r, o = tens([]uint64{1 << 63}, 0, 0)
	add("dimension 2^63", r, formats.ErrInvalid, o+8+1+4)
	r, o = tens([]uint64{1 << 61}, 0, 0)
	add("byte size overflows (2^61 f32)", r, formats.ErrTooLarge, o+8+1)
	r, o = tens([]uint64{4}, 99, 0)
	add("unknown type id 99", r, formats.ErrUnsupported, o+8+1+4+8)
	r, o = tens([]uint64{4}, 0xFFFFFFFF, 0)
	add("negative type id", r, formats.ErrUnsupported, o+8+1+4+8)
	r, o = tens([]uint64{32}, 4, 0)
	add("removed type Q4_2", r, formats.ErrUnsupported, o+8+1+4+8)
	r, o = tens([]uint64{33}, 2, 0)
	add("row not a whole Q4_0 block", r, formats.ErrInvalid, o+8+1)
	r, o = tens([]uint64{4}, 0, 1<<40)
	add("tensor offset past EOF", r, formats.ErrTruncated, o)
	r, o = tens([]uint64{32}, 0, 0) // 128 bytes of data, 64 present
	add("tensor data past EOF", r, formats.ErrTruncated, o)

	r = newRaw(3)
	r.u64(2)
	r.u64(0)
	r.tensorInfo("w", []uint64{4}, 0, 0)
	o = r.off()
	r.tensorInfo("w", []uint64{4}, 0, 32)
	r.pad(32)
	r.Write(make([]byte, 64))
	add("duplicate tensor name", r, formats.ErrInvalid, o)

	r = newRaw(3)
	r.u64(1)
	r.u64(0)
	r.str("w")
	r.u32(2)
	r.u64(4)
	r.u32(0) // the second dimension and the rest are missing
	add("tensor info truncated", r, formats.ErrTruncated, -2)
	return cs
}

// Every hostile input fails with the right category, at the right offset, without panicking
// and without allocating more than a few MB.
func TestHostile(t *testing.T) {
	for _, c := range hostileCases() {
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		_, err := parse(c.data)
		runtime.ReadMemStats(&ms1)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !errors.Is(err, c.cat) {
			t.Errorf("%s: error %q is not %v", c.name, err, c.cat)
		}
		var fe *formats.FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%s: error %q is not a *formats.FormatError", c.name, err)
			continue
		}
		if c.off >= 0 && fe.Offset != c.off || c.off == -2 && (fe.Offset < 0 || fe.Offset > int64(len(c.data))) {
			t.Errorf("%s: offset %d, want %d (%v)", c.name, fe.Offset, c.off, err)
		}
		if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 4<<20+2*uint64(len(c.data)) {
			t.Errorf("%s: allocated %d bytes", c.name, alloc)
		}
	}
}

// Truncating a valid file at any byte before the end of its last tensor is an error.
func TestTruncateEveryByte(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, sampleKVs(), sampleTensors(), nil); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	f, err := parse(full)
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	for _, ti := range f.Tensors {
		end = max(end, ti.Offset+ti.Length)
	}
	for n := int64(0); n < end; n++ {
		_, err := parse(full[:n])
		if err == nil {
			t.Errorf("truncated at %d of %d: no error", n, len(full))
			continue
		}
		if !errors.Is(err, formats.ErrTruncated) && !errors.Is(err, formats.ErrTooLarge) {
			t.Errorf("truncated at %d: %v is neither truncated nor too large", n, err)
		}
	}
}

// Non-canonical layouts parse, and Layout reports each departure with its bytes.
func TestLayoutIssues(t *testing.T) {
	build := func(offs []uint64, extra int, padByte byte) []byte {
		r := newRaw(3)
		r.u64(uint64(len(offs)))
		r.u64(0)
		for i, o := range offs {
			r.tensorInfo(string(rune('a'+i)), []uint64{8}, 0, o)
		}
		r.pad(32)
		data := make([]byte, 128+extra)
		for i := range data {
			data[i] = 0
		}
		data[40] = padByte // inside the padding after a 32-byte tensor at 0 (when nothing is at 32)
		r.Write(data)
		return r.Bytes()
	}
	kinds := func(b []byte) []string {
		f, err := parse(b)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		is, err := f.Layout(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, i := range is {
			ks = append(ks, i.Kind)
		}
		return ks
	}
	tests := []struct {
		name string
		data []byte
		want []string
	}{
		{"canonical", build([]uint64{0, 32, 64, 96}, 0, 0), nil},
		{"alias", build([]uint64{0, 0, 64, 96}, 0, 0), []string{IssueOrder, IssueOrder, IssueAlias, IssueGap}},
		{"overlap", build([]uint64{0, 16, 64, 96}, 0, 0), []string{IssueMisaligned, IssueOrder, IssueOverlap}},
		{"unsorted", build([]uint64{32, 0, 64, 96}, 0, 0), []string{IssueOrder, IssueOrder, IssueOrder}},
		{"trailing", build([]uint64{0, 32, 64, 96}, 50, 0), []string{IssueTrailing}},
		{"gap", build([]uint64{0, 64, 96}, 0, 0), []string{IssueOrder, IssueGap}},
		{"nonzero padding", build([]uint64{0, 64, 96}, 0, 0xAA), []string{IssueOrder, IssueGap}},
	}
	for _, tt := range tests {
		got := kinds(tt.data)
		sortStrings(got)
		sortStrings(tt.want)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: issues %v, want %v", tt.name, got, tt.want)
		}
	}
	// Padding that is not zero, in a canonical layout: tensor of 8 bytes padded to 32.
	r := newRaw(3)
	r.u64(1)
	r.u64(0)
	r.tensorInfo("a", []uint64{2}, 0, 0)
	r.pad(32)
	r.Write(make([]byte, 8))
	r.Write(append(make([]byte, 20), 0xEE, 0, 0, 0))
	if got := kinds(r.Bytes()); !reflect.DeepEqual(got, []string{IssuePadding}) {
		t.Errorf("non-zero padding: issues %v, want [padding]", got)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// BenchmarkHostile times the rejection of each hostile input (the issue's bound is 100 ms).
func BenchmarkHostile(b *testing.B) {
	for _, c := range hostileCases() {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parse(c.data); err == nil {
					b.Fatal("no error")
				}
			}
		})
	}
}

// A file of many tensors that all alias the same bytes: parsing and Layout stay linear.
func TestManyAliasingTensors(t *testing.T) {
	const n = 50000
	r := newRaw(3)
	r.u64(n)
	r.u64(0)
	for i := 0; i < n; i++ {
		r.tensorInfo(fmt.Sprintf("t%d", i), []uint64{8}, 0, 0)
	}
	r.pad(32)
	r.Write(make([]byte, 32))
	f, err := parse(r.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	is, err := f.Layout(bytes.NewReader(r.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var alias int
	for _, i := range is {
		if i.Kind == IssueAlias {
			alias++
		}
	}
	if alias != n-1 {
		t.Errorf("%d alias issues, want %d", alias, n-1)
	}
}

// The writer refuses what the reader would reject: rows that are not whole blocks.
func TestWriteRowNotWholeBlocks(t *testing.T) {
	err := Write(&bytes.Buffer{}, nil, []WriteTensor{{Name: "w", DType: formats.Q8_0, Shape: []int64{64, 48}, Data: make([]byte, 64*48/32*34)}}, nil)
	if err == nil {
		t.Errorf("a Q8_0 tensor with 48-element rows was written")
	}
}
