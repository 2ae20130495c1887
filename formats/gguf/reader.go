// Package gguf reads and writes GGUF model files (versions 1 to 3, little- and big-endian),
// the format of llama.cpp and ggml.
//
// The reader trusts nothing in a file: every count and length is checked against the bytes
// that remain before anything is allocated, element counts and byte sizes are computed with
// overflow checks, type ids are looked up in the ggml type table, and tensor data must lie
// inside the file. Layouts that gguf.cpp rejects but that can still be read safely (tensors
// that overlap, gaps, trailing bytes, unaligned offsets) are accepted and reported by
// (*File).Layout, because a scanner must look at such files rather than refuse them.
package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"

	"github.com/kensa-scan/kensa/formats"
)

// KV is one metadata entry as stored.
type KV struct {
	Key    string
	Type   ValueType // TypeArray for arrays
	Elem   ValueType // element type of an array (TypeArray for arrays of arrays)
	Value  any       // see formats.KV
	Offset int64     // absolute offset of the entry (its key length field)
	Length int64     // byte length of the entry: key, type and value
}

// TensorInfo is one tensor as described in the file header.
type TensorInfo struct {
	Name       string
	Dims       []uint64 // ne[]: Dims[0] is the innermost (row) dimension
	TypeID     uint32   // ggml type id
	DType      formats.DType
	RelOffset  uint64 // offset relative to the data section, as stored
	Offset     int64  // absolute offset of the data in the file
	Length     int64  // byte size of the data
	InfoOffset int64  // absolute offset of the tensor's entry in the header
}

// Shape returns the dimensions in row-major order (Dims reversed).
func (t *TensorInfo) Shape() []int64 {
	s := make([]int64, len(t.Dims))
	for i, d := range t.Dims {
		s[len(t.Dims)-1-i] = int64(d)
	}
	return s
}

// File is a parsed GGUF header.
type File struct {
	Version     uint32
	BigEndian   bool
	EndianRule  string // how big-endian was detected: "FUGG magic" or "byte-swapped version"; "" for little-endian
	TensorCount uint64
	KVCount     uint64
	KV          []KV
	Tensors     []TensorInfo
	Alignment   uint64
	HeaderEnd   int64 // offset just past the last tensor info (or the last KV)
	DataOffset  int64 // start of the data section (HeaderEnd padded to Alignment when there are tensors)
	Size        int64 // file size
}

// Lookup returns the metadata entry with key, or nil.
func (f *File) Lookup(key string) *KV {
	for i := range f.KV {
		if f.KV[i].Key == key {
			return &f.KV[i]
		}
	}
	return nil
}

// ByteOrder returns the byte order of the file.
func (f *File) ByteOrder() binary.ByteOrder {
	if f.BigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// Open opens and parses the GGUF file at path (header only: tensor data is not read).
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	f, err := NewFile(fh, st.Size())
	return f, formats.WithFile(err, path)
}

// minimum encoded sizes, used to bound counts by the bytes that remain.
func (r *reader) strMin() uint64 {
	if r.v1 {
		return 4
	}
	return 8
}

type reader struct {
	br   *bufio.Reader
	pos  int64
	size int64
	bo   binary.ByteOrder
	v1   bool
	buf  [8]byte
}

func (r *reader) remaining() uint64 { return uint64(r.size - r.pos) }

func errAt(off int64, err error, format string, args ...any) error {
	return formats.Errorf("gguf", off, err, format, args...)
}

func (r *reader) bytes(n int, what string) ([]byte, error) {
	if uint64(n) > r.remaining() {
		return nil, errAt(r.pos, formats.ErrTruncated, "%s: need %d bytes, file ends after %d", what, n, r.remaining())
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		return nil, errAt(r.pos, formats.ErrTruncated, "%s: %v", what, err)
	}
	r.pos += int64(n)
	return b, nil
}

func (r *reader) u8(what string) (uint8, error) {
	b, err := r.bytes(1, what)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) u16(what string) (uint16, error) {
	b, err := r.bytes(2, what)
	if err != nil {
		return 0, err
	}
	return r.bo.Uint16(b), nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return r.bo.Uint32(b), nil
}

func (r *reader) u64(what string) (uint64, error) {
	b, err := r.bytes(8, what)
	if err != nil {
		return 0, err
	}
	return r.bo.Uint64(b), nil
}

// count reads a length or count field: u32 in v1, u64 in v2 and v3.
func (r *reader) count(what string) (uint64, error) {
	if r.v1 {
		v, err := r.u32(what)
		return uint64(v), err
	}
	return r.u64(what)
}

// fits reports whether n items of at least min bytes each fit in the bytes that remain.
func (r *reader) fits(n, min uint64) bool {
	hi, lo := bits.Mul64(n, min)
	return hi == 0 && lo <= r.remaining()
}

// relabel puts what in front of the message of a FormatError made without context.
func relabel(err error, what string) error {
	if fe, ok := err.(*formats.FormatError); ok {
		fe.Msg = what + fe.Msg
	}
	return err
}

func (r *reader) str(what string) (string, error) {
	off := r.pos
	n, err := r.count(what)
	if err != nil {
		return "", err
	}
	if n > r.remaining() {
		return "", errAt(off, formats.ErrTruncated, "%s length %d exceeds the %d bytes left in the file", what, n, r.remaining())
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.br, b); err != nil {
		return "", errAt(r.pos, formats.ErrTruncated, "%s: %v", what, err)
	}
	r.pos += int64(n)
	return string(b), nil
}

// NewFile parses the GGUF header of the file r of the given size: header fields, metadata and
// tensor infos. It reads no tensor data.
func NewFile(r io.ReaderAt, size int64) (*File, error) {
	if size < 0 {
		return nil, errAt(0, formats.ErrInvalid, "negative file size %d", size)
	}
	rd := &reader{br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: size, bo: binary.LittleEndian}
	f := &File{Size: size}

	magic, err := rd.bytes(4, "magic")
	if err != nil {
		return nil, err
	}
	switch string(magic) {
	case MagicLE:
	case MagicBE:
		f.BigEndian, f.EndianRule = true, "FUGG magic"
	default:
		return nil, errAt(0, formats.ErrInvalid, "bad magic % x (want %q)", magic, MagicLE)
	}
	vb, err := rd.bytes(4, "version")
	if err != nil {
		return nil, err
	}
	v := binary.LittleEndian.Uint32(vb)
	if !f.BigEndian && v != 0 && v&0xFFFF == 0 {
		f.BigEndian, f.EndianRule = true, "byte-swapped version"
	}
	if f.BigEndian {
		rd.bo = binary.BigEndian
		v = binary.BigEndian.Uint32(vb)
	}
	if v < 1 || v > 3 {
		return nil, errAt(4, formats.ErrUnsupported, "version %d (kensa reads 1 to 3)", v)
	}
	f.Version = v
	rd.v1 = v == 1

	const kvMin, kvMinV1 = 8 + 4 + 1, 4 + 4 + 1
	const tiMin, tiMinV1 = 8 + 4 + 4 + 8, 4 + 4 + 4 + 8
	kvm, tim := uint64(kvMin), uint64(tiMin)
	if rd.v1 {
		kvm, tim = kvMinV1, tiMinV1
	}
	off := rd.pos
	if f.TensorCount, err = rd.count("tensor count"); err != nil {
		return nil, err
	}
	if !rd.fits(f.TensorCount, tim) {
		return nil, errAt(off, formats.ErrTooLarge, "tensor count %d exceeds what the file can hold", f.TensorCount)
	}
	off = rd.pos
	if f.KVCount, err = rd.count("metadata count"); err != nil {
		return nil, err
	}
	if !rd.fits(f.KVCount, kvm) {
		return nil, errAt(off, formats.ErrTooLarge, "metadata count %d exceeds what the file can hold", f.KVCount)
	}

	f.KV = make([]KV, 0, f.KVCount)
	seen := make(map[string]int64, f.KVCount)
	for i := uint64(0); i < f.KVCount; i++ {
		kv, err := rd.kv()
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[kv.Key]; dup {
			return nil, errAt(kv.Offset, formats.ErrInvalid, "duplicate metadata key %q (first at offset %d)", kv.Key, prev)
		}
		seen[kv.Key] = kv.Offset
		f.KV = append(f.KV, kv)
	}

	f.Alignment = DefaultAlignment
	if a := f.Lookup("general.alignment"); a != nil {
		if a.Type != TypeUint32 {
			return nil, errAt(a.Offset, formats.ErrInvalid, "general.alignment has type %s, want u32", a.Type)
		}
		al := a.Value.(uint32)
		if al == 0 || al&(al-1) != 0 {
			return nil, errAt(a.Offset, formats.ErrInvalid, "general.alignment %d is not a power of two", al)
		}
		f.Alignment = uint64(al)
	}

	f.Tensors = make([]TensorInfo, 0, f.TensorCount)
	names := make(map[string]int64, f.TensorCount)
	for i := uint64(0); i < f.TensorCount; i++ {
		t, err := rd.tensorInfo()
		if err != nil {
			return nil, err
		}
		if prev, dup := names[t.Name]; dup {
			return nil, errAt(t.InfoOffset, formats.ErrInvalid, "duplicate tensor name %q (first at offset %d)", t.Name, prev)
		}
		names[t.Name] = t.InfoOffset
		f.Tensors = append(f.Tensors, t)
	}
	f.HeaderEnd = rd.pos
	f.DataOffset = rd.pos
	if f.TensorCount > 0 {
		pad := (f.Alignment - uint64(rd.pos)%f.Alignment) % f.Alignment
		if pad > rd.remaining() {
			return nil, errAt(rd.pos, formats.ErrTruncated, "file ends inside the %d bytes of padding before the data section", pad)
		}
		f.DataOffset = rd.pos + int64(pad)
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.RelOffset > uint64(size-f.DataOffset) {
			return nil, errAt(t.InfoOffset, formats.ErrTruncated, "tensor %q: data offset %d is past the end of the file (data section starts at %d, file is %d bytes)", t.Name, t.RelOffset, f.DataOffset, size)
		}
		t.Offset = f.DataOffset + int64(t.RelOffset)
		if t.Length > size-t.Offset {
			return nil, errAt(t.InfoOffset, formats.ErrTruncated, "tensor %q: data [%d, %d) extends past the end of the file (%d bytes)", t.Name, t.Offset, uint64(t.Offset)+uint64(t.Length), size)
		}
	}
	return f, nil
}

func (r *reader) kv() (KV, error) {
	kv := KV{Offset: r.pos}
	var err error
	if kv.Key, err = r.str("metadata key"); err != nil {
		return kv, err
	}
	if kv.Key == "" {
		return kv, errAt(kv.Offset, formats.ErrInvalid, "empty metadata key")
	}
	toff := r.pos
	t, err := r.u32(fmt.Sprintf("type of %q", kv.Key))
	if err != nil {
		return kv, err
	}
	kv.Type = ValueType(t)
	if kv.Type >= numValueTypes {
		return kv, errAt(toff, formats.ErrInvalid, "metadata %q: unknown value type %d", kv.Key, t)
	}
	kv.Value, kv.Elem, err = r.value(kv.Type, kv.Key, 0)
	kv.Length = r.pos - kv.Offset
	return kv, err
}

// value reads one value of type t. For arrays it also returns the element type.
func (r *reader) value(t ValueType, key string, depth int) (any, ValueType, error) {
	off := r.pos
	switch t {
	case TypeUint8:
		v, err := r.u8(key)
		return v, 0, err
	case TypeInt8:
		v, err := r.u8(key)
		return int8(v), 0, err
	case TypeUint16:
		v, err := r.u16(key)
		return v, 0, err
	case TypeInt16:
		v, err := r.u16(key)
		return int16(v), 0, err
	case TypeUint32:
		v, err := r.u32(key)
		return v, 0, err
	case TypeInt32:
		v, err := r.u32(key)
		return int32(v), 0, err
	case TypeFloat32:
		v, err := r.u32(key)
		return math.Float32frombits(v), 0, err
	case TypeUint64:
		v, err := r.u64(key)
		return v, 0, err
	case TypeInt64:
		v, err := r.u64(key)
		return int64(v), 0, err
	case TypeFloat64:
		v, err := r.u64(key)
		return math.Float64frombits(v), 0, err
	case TypeBool:
		v, err := r.u8(key)
		if err == nil && v > 1 {
			err = errAt(off, formats.ErrInvalid, "metadata %q: bool value %d is neither 0 nor 1", key, v)
		}
		return v == 1, 0, err
	case TypeString:
		v, err := r.str(fmt.Sprintf("metadata %q string", key))
		return v, 0, err
	case TypeArray:
		return r.array(key, depth)
	}
	return nil, 0, errAt(off, formats.ErrInvalid, "metadata %q: unknown value type %d", key, uint32(t))
}

func (r *reader) array(key string, depth int) (any, ValueType, error) {
	off := r.pos
	if depth >= MaxNesting {
		return nil, 0, errAt(off, formats.ErrTooLarge, "metadata %q: arrays nested deeper than %d", key, MaxNesting)
	}
	et, err := r.u32(fmt.Sprintf("metadata %q array type", key))
	if err != nil {
		return nil, 0, err
	}
	elem := ValueType(et)
	if elem >= numValueTypes {
		return nil, 0, errAt(off, formats.ErrInvalid, "metadata %q: unknown array element type %d", key, et)
	}
	coff := r.pos
	n, err := r.count(fmt.Sprintf("metadata %q array count", key))
	if err != nil {
		return nil, 0, err
	}
	min := uint64(elem.size())
	switch elem {
	case TypeString:
		min = r.strMin()
	case TypeArray:
		min = 4 + r.strMin()
	}
	if !r.fits(n, min) {
		return nil, 0, errAt(coff, formats.ErrTooLarge, "metadata %q: array of %d %s needs at least %d bytes per element, the file has %d left", key, n, elem, min, r.remaining())
	}
	switch elem {
	case TypeUint8:
		return readFixed(r, n, key, func(b []byte) uint8 { return b[0] })
	case TypeInt8:
		return readFixed(r, n, key, func(b []byte) int8 { return int8(b[0]) })
	case TypeUint16:
		return readFixed(r, n, key, func(b []byte) uint16 { return r.bo.Uint16(b) })
	case TypeInt16:
		return readFixed(r, n, key, func(b []byte) int16 { return int16(r.bo.Uint16(b)) })
	case TypeUint32:
		return readFixed(r, n, key, func(b []byte) uint32 { return r.bo.Uint32(b) })
	case TypeInt32:
		return readFixed(r, n, key, func(b []byte) int32 { return int32(r.bo.Uint32(b)) })
	case TypeFloat32:
		return readFixed(r, n, key, func(b []byte) float32 { return math.Float32frombits(r.bo.Uint32(b)) })
	case TypeUint64:
		return readFixed(r, n, key, func(b []byte) uint64 { return r.bo.Uint64(b) })
	case TypeInt64:
		return readFixed(r, n, key, func(b []byte) int64 { return int64(r.bo.Uint64(b)) })
	case TypeFloat64:
		return readFixed(r, n, key, func(b []byte) float64 { return math.Float64frombits(r.bo.Uint64(b)) })
	case TypeBool:
		vs := make([]bool, n)
		for i := range vs {
			boff := r.pos
			v, err := r.u8("")
			if err != nil {
				return nil, 0, err
			}
			if v > 1 {
				return nil, 0, errAt(boff, formats.ErrInvalid, "metadata %q element %d: bool value %d is neither 0 nor 1", key, i, v)
			}
			vs[i] = v == 1
		}
		return vs, elem, nil
	case TypeString:
		vs := make([]string, n)
		for i := range vs {
			if vs[i], err = r.str(""); err != nil {
				return nil, 0, relabel(err, fmt.Sprintf("metadata %q element %d", key, i))
			}
		}
		return vs, elem, nil
	case TypeArray:
		vs := make([]any, n)
		for i := range vs {
			if vs[i], _, err = r.array(key, depth+1); err != nil {
				return nil, 0, err
			}
		}
		return vs, elem, nil
	}
	return nil, 0, errAt(off, formats.ErrInvalid, "metadata %q: unknown array element type %d", key, et)
}

func readFixed[T any](r *reader, n uint64, key string, dec func([]byte) T) (any, ValueType, error) {
	var zero T
	sz := int(binary.Size(zero))
	vs := make([]T, n)
	for i := range vs {
		b, err := r.bytes(sz, "")
		if err != nil {
			return nil, 0, errAt(r.pos, formats.ErrTruncated, "metadata %q element %d: file ends", key, i)
		}
		vs[i] = dec(b)
	}
	return vs, elemTypeOf(zero), nil
}

func elemTypeOf(v any) ValueType {
	switch v.(type) {
	case uint8:
		return TypeUint8
	case int8:
		return TypeInt8
	case uint16:
		return TypeUint16
	case int16:
		return TypeInt16
	case uint32:
		return TypeUint32
	case int32:
		return TypeInt32
	case float32:
		return TypeFloat32
	case uint64:
		return TypeUint64
	case int64:
		return TypeInt64
	case float64:
		return TypeFloat64
	}
	panic("gguf: no value type for " + fmt.Sprintf("%T", v))
}

func (r *reader) tensorInfo() (TensorInfo, error) {
	t := TensorInfo{InfoOffset: r.pos}
	var err error
	if t.Name, err = r.str("tensor name"); err != nil {
		return t, err
	}
	noff := r.pos
	nd, err := r.u32(fmt.Sprintf("tensor %q n_dims", t.Name))
	if err != nil {
		return t, err
	}
	if nd > MaxDims {
		return t, errAt(noff, formats.ErrInvalid, "tensor %q: %d dimensions (at most %d)", t.Name, nd, MaxDims)
	}
	t.Dims = make([]uint64, nd)
	nel := uint64(1)
	overflow := false
	for j := range t.Dims {
		doff := r.pos
		d, err := r.count(fmt.Sprintf("tensor %q dimension %d", t.Name, j))
		if err != nil {
			return t, err
		}
		if d > math.MaxInt64 {
			return t, errAt(doff, formats.ErrInvalid, "tensor %q: dimension %d is %d (negative as int64)", t.Name, j, d)
		}
		t.Dims[j] = d
		hi, lo := bits.Mul64(nel, d)
		if hi != 0 || lo > math.MaxInt64 {
			overflow = true
		}
		nel = lo
	}
	// A zero dimension makes the tensor empty whatever the others are.
	for _, d := range t.Dims {
		if d == 0 {
			overflow, nel = false, 0
		}
	}
	if overflow {
		return t, errAt(noff, formats.ErrTooLarge, "tensor %q: element count of dimensions %v overflows int64", t.Name, t.Dims)
	}
	toff := r.pos
	if t.TypeID, err = r.u32(fmt.Sprintf("tensor %q type", t.Name)); err != nil {
		return t, err
	}
	dt, ok := ggmlTypes[t.TypeID]
	if !ok {
		if name, removed := removedTypes[t.TypeID]; removed {
			return t, errAt(toff, formats.ErrUnsupported, "tensor %q: ggml type %d (%s) was removed from GGUF", t.Name, t.TypeID, name)
		}
		return t, errAt(toff, formats.ErrUnsupported, "tensor %q: unknown ggml type id %d", t.Name, int32(t.TypeID))
	}
	t.DType = dt
	if nd > 0 && t.Dims[0]%uint64(dt.BlockElems()) != 0 {
		return t, errAt(noff, formats.ErrInvalid, "tensor %q: row length %d is not a multiple of the %s block size %d", t.Name, t.Dims[0], dt, dt.BlockElems())
	}
	nb, err := dt.ByteSize(nel)
	if err != nil {
		return t, errAt(noff, formats.ErrTooLarge, "tensor %q: %v", t.Name, err)
	}
	t.Length = int64(nb)
	if t.RelOffset, err = r.u64(fmt.Sprintf("tensor %q offset", t.Name)); err != nil {
		return t, err
	}
	return t, nil
}

// Model returns the formats.Model of a parsed file; data is read through mf.
func (f *File) Model(mf *formats.File) *formats.Model {
	m := &formats.Model{
		Format:    "gguf",
		Version:   int(f.Version),
		Path:      mf.Path,
		Files:     []*formats.File{mf},
		BigEndian: f.BigEndian,
		Metadata:  make([]formats.KV, len(f.KV)),
		Tensors:   make([]formats.TensorInfo, len(f.Tensors)),
	}
	order := "little-endian"
	if f.BigEndian {
		order = "big-endian (" + f.EndianRule + ")"
	}
	m.Header = []formats.KV{
		{Key: "version", Value: f.Version},
		{Key: "byte_order", Value: order},
		{Key: "tensor_count", Value: f.TensorCount},
		{Key: "kv_count", Value: f.KVCount},
		{Key: "alignment", Value: f.Alignment},
		{Key: "data_offset", Value: f.DataOffset},
	}
	for i, kv := range f.KV {
		m.Metadata[i] = formats.KV{Key: kv.Key, Value: kv.Value, Offset: kv.Offset, Length: kv.Length}
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		m.Tensors[i] = formats.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape(), File: mf.Path, Offset: t.Offset, Length: t.Length}
	}
	return m
}

func init() {
	formats.Register(formats.Format{
		Name:     "gguf",
		Priority: 20,
		Match: func(head []byte) bool {
			return len(head) >= 4 && (string(head[:4]) == MagicLE || string(head[:4]) == MagicBE)
		},
		Open: func(mf *formats.File) (*formats.Model, error) {
			f, err := NewFile(mf, mf.Size)
			if err != nil {
				return nil, err
			}
			return f.Model(mf), nil
		},
		OpenDir: openDir,
	})
}
