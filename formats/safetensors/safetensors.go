// Package safetensors reads and writes safetensors model files and opens sharded
// safetensors checkpoints (a *.safetensors.index.json and its shards).
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON (an
// object mapping tensor names to {"dtype", "shape", "data_offsets"}, plus an optional
// "__metadata__" object of strings), and a data section that the tensors cover exactly.
// NewFile enforces every check of the reference implementation (huggingface/safetensors
// Metadata::validate and read_metadata) and a few more that a security scanner needs:
// duplicate keys anywhere in the header, unpaired surrogate escapes, and a nesting limit.
// Every error is a *formats.FormatError with the absolute byte offset of the problem and
// one of the categories formats.ErrTruncated, ErrTooLarge, ErrInvalid or ErrUnsupported.
//
// Importing the package registers the format with formats.Open.
package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

// File is a parsed safetensors file.
type File struct {
	HeaderLen  uint64       // N, the length of the JSON header
	DataOffset int64        // 8+N, the absolute offset of the data section
	Size       int64        // the file size: DataOffset plus the data section
	Metadata   []formats.KV // __metadata__ in file order; string Values; Offset/Length span `"key":"value"`
	Tensors    []Tensor     // in header (JSON) order

	closer io.Closer
}

// Tensor is one tensor of a File.
type Tensor struct {
	Name       string
	DType      formats.DType
	Shape      []int64 // row-major; empty for a scalar
	Begin, End int64   // data_offsets, relative to the data section
	Offset     int64   // absolute offset of the first byte: File.DataOffset + Begin
	Length     int64   // byte length: End - Begin

	keyOff  int64 // absolute offset of the tensor's key in the header
	offsOff int64 // absolute offset of its data_offsets array
}

// Elements returns the number of elements of the tensor (1 for a scalar); NewFile
// guarantees that it does not overflow.
func (t *Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Tensor returns the tensor with the given name, or nil.
func (f *File) Tensor(name string) *Tensor {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i]
		}
	}
	return nil
}

// TensorInfos returns the tensors as formats.TensorInfo in header order, with File set to
// path.
func (f *File) TensorInfos(path string) []formats.TensorInfo {
	ts := make([]formats.TensorInfo, len(f.Tensors))
	for i, t := range f.Tensors {
		ts[i] = formats.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, File: path, Offset: t.Offset, Length: t.Length}
	}
	return ts
}

// Close closes the underlying file if the File was made by Open; otherwise it does nothing.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	c := f.closer
	f.closer = nil
	return c.Close()
}

// Open opens the named file and parses it with NewFile. Errors carry the path. Open
// refuses anything but a regular file (opening a FIFO would block).
func Open(path string) (*File, error) {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors: %s is not a regular file", path)
	}
	osf, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, err
	}
	f, err := NewFile(osf, st.Size())
	if err != nil {
		osf.Close()
		return nil, formats.WithFile(err, path)
	}
	f.closer = osf
	return f, nil
}

// errorf builds a safetensors *formats.FormatError.
func errorf(off int64, cat error, msgf string, args ...any) error {
	return formats.Errorf("safetensors", off, cat, msgf, args...)
}

// NewFile parses the safetensors file of the given size read from r. It reads the 8-byte
// header length and the header (never more than the file holds and never more than
// MaxHeaderSize) and validates the whole layout; it does not read tensor data.
func NewFile(r io.ReaderAt, size int64) (*File, error) {
	if size < 0 {
		return nil, errorf(0, formats.ErrInvalid, "negative file size %d", size)
	}
	if size < 8 {
		return nil, errorf(0, formats.ErrTruncated, "file is %d bytes, too short for the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if err := readFull(r, lenBuf[:], 0); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, errorf(0, formats.ErrTooLarge, "header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > uint64(size-8) { // size >= 8, and n <= MaxHeaderSize cannot overflow 8+n
		return nil, errorf(0, formats.ErrTruncated, "header length %d exceeds the %d bytes after the length field", n, size-8)
	}
	hdr := make([]byte, n)
	if err := readFull(r, hdr, 8); err != nil {
		return nil, err
	}
	if !utf8.Valid(hdr) {
		return nil, errorf(8+int64(invalidUTF8(hdr)), formats.ErrInvalid, "header is not valid UTF-8")
	}
	f := &File{HeaderLen: n, DataOffset: 8 + int64(n), Size: size}
	var err error
	f.Metadata, f.Tensors, err = parseHeader(hdr, 8)
	if err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// readFull reads len(p) bytes at off, reporting a short read as truncation.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf(off+int64(n), formats.ErrTruncated, "file ends after %d of the %d bytes at offset %d", n, len(p), off)
	}
	return fmt.Errorf("safetensors: reading %d bytes at offset %d: %w", len(p), off, err)
}

// invalidUTF8 returns the index of the first byte of b that starts no valid UTF-8 sequence.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// parseHeader reads the JSON header held in buf, which starts at absolute offset base.
func parseHeader(buf []byte, base int64) (meta []formats.KV, tensors []Tensor, err error) {
	s := &scanner{buf: buf, base: base, format: "safetensors"}
	if s.peek() != '{' {
		if s.pos >= len(buf) {
			return nil, nil, s.errorf(s.pos, formats.ErrInvalid, "header holds no JSON object (%d bytes of whitespace)", len(buf))
		}
		return nil, nil, s.errorf(s.pos, formats.ErrInvalid, "header is not a JSON object: it starts with %s", s.aDescribe(s.pos))
	}
	err = s.object(func(key string, keyPos int) error {
		if key == metadataKey {
			m, err := s.metadata()
			meta = m
			return withContext(err, metadataKey)
		}
		t, err := s.tensor(key, keyPos)
		if err != nil {
			return withContext(err, fmt.Sprintf("tensor %q", key))
		}
		tensors = append(tensors, t)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if s.skipSpace(); s.pos < len(buf) {
		return nil, nil, s.errorf(s.pos, formats.ErrInvalid, "unexpected %s after the header object (only whitespace may follow it)", s.describe(s.pos))
	}
	return meta, tensors, nil
}

// metadata reads the __metadata__ value: an object of strings, or null.
func (s *scanner) metadata() ([]formats.KV, error) {
	switch s.peek() {
	case 'n':
		return nil, s.literal("null")
	case '{':
	default:
		return nil, s.wrongType("value", "an object of strings")
	}
	meta := []formats.KV{}
	err := s.object(func(key string, keyPos int) error {
		if s.peek() != '"' {
			return s.wrongType(fmt.Sprintf("value of %q", key), "a string")
		}
		v, err := s.str()
		meta = append(meta, formats.KV{Key: key, Value: v, Offset: s.base + int64(keyPos), Length: int64(s.pos - keyPos)})
		return err
	})
	return meta, err
}

// tensor reads the entry of the tensor name, whose key is at keyPos, and checks its dtype,
// shape and the size of its data_offsets.
func (s *scanner) tensor(name string, keyPos int) (Tensor, error) {
	t := Tensor{Name: name, keyOff: s.base + int64(keyPos)}
	if s.peek() != '{' {
		return t, s.wrongType("entry", "an object")
	}
	entry := s.pos
	dtypePos, shapePos, offsPos := -1, -1, -1
	var offs [2]int64
	nOffs := 0
	err := s.object(func(key string, _ int) error {
		switch key {
		case "dtype":
			dtypePos = s.pos
			if s.peek() != '"' {
				return s.wrongType("dtype", "a string")
			}
			name, err := s.rawStr()
			if err != nil {
				return err
			}
			d, ok := dtypeByName[string(name)]
			if !ok {
				return s.errorf(dtypePos, formats.ErrUnsupported, "unknown dtype %q", name)
			}
			t.DType = d
		case "shape":
			shapePos = s.pos
			if s.peek() != '[' {
				return s.wrongType("shape", "an array")
			}
			s.dims = s.dims[:0]
			err := s.array(func(int) error {
				d, err := s.uint63("shape dimension")
				s.dims = append(s.dims, d)
				return err
			})
			t.Shape = append(make([]int64, 0, len(s.dims)), s.dims...)
			return err
		case "data_offsets":
			offsPos = s.pos
			if s.peek() != '[' {
				return s.wrongType("data_offsets", "an array [begin, end]")
			}
			return s.array(func(i int) error {
				if i >= 2 {
					return s.errorf(s.pos, formats.ErrInvalid, "data_offsets has more than 2 values")
				}
				v, err := s.uint63("data offset")
				offs[i] = v
				nOffs = i + 1
				return err
			})
		default:
			return s.skip() // unknown fields are ignored, as by the reference
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	switch {
	case dtypePos < 0:
		return t, s.errorf(entry, formats.ErrInvalid, "entry has no dtype")
	case shapePos < 0:
		return t, s.errorf(entry, formats.ErrInvalid, "entry has no shape")
	case offsPos < 0:
		return t, s.errorf(entry, formats.ErrInvalid, "entry has no data_offsets")
	case nOffs != 2:
		return t, s.errorf(offsPos, formats.ErrInvalid, "data_offsets has %d values, want 2", nOffs)
	}
	t.Begin, t.End = offs[0], offs[1]
	t.offsOff = s.base + int64(offsPos)
	if t.End < t.Begin {
		return t, s.errorf(offsPos, formats.ErrInvalid, "data_offsets [%d, %d] end before they begin", t.Begin, t.End)
	}
	n := uint64(1)
	for _, d := range t.Shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > 1<<63-1 {
			return t, s.errorf(shapePos, formats.ErrTooLarge, "shape %v: element count overflows", t.Shape)
		}
		n = lo
	}
	hi, nbits := bits.Mul64(n, dtypeBits(t.DType))
	if hi != 0 {
		return t, s.errorf(shapePos, formats.ErrTooLarge, "shape %v of %s: byte size overflows", t.Shape, t.DType)
	}
	if nbits%8 != 0 {
		return t, s.errorf(shapePos, formats.ErrInvalid, "shape %v of %s is %d bits, not a whole number of bytes", t.Shape, t.DType, nbits)
	}
	if size := nbits / 8; uint64(t.End-t.Begin) != size {
		return t, s.errorf(offsPos, formats.ErrInvalid, "data_offsets [%d, %d] span %d bytes, but %s %v takes %d", t.Begin, t.End, t.End-t.Begin, t.DType, t.Shape, size)
	}
	t.Length = t.End - t.Begin
	return t, nil
}

// validate checks that the tensors cover the data section exactly, in any order: sorted by
// (begin, end) they must run from 0 to the end of the file with no gap and no overlap. It
// sets the absolute offsets.
func (f *File) validate() error {
	dataSize := f.Size - f.DataOffset
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.End > dataSize {
			return errorf(t.offsOff, formats.ErrTruncated, "tensor %q: data_offsets [%d, %d] end past the %d-byte data section (file ends at %d)", t.Name, t.Begin, t.End, dataSize, f.Size)
		}
		t.Offset = f.DataOffset + t.Begin
	}
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ta, tb := &f.Tensors[a], &f.Tensors[b]
		switch {
		case ta.Begin != tb.Begin:
			return cmpInt(ta.Begin, tb.Begin)
		case ta.End != tb.End:
			return cmpInt(ta.End, tb.End)
		}
		return a - b
	})
	var end int64
	var prev *Tensor
	for _, i := range order {
		t := &f.Tensors[i]
		switch {
		case t.Begin > end && prev == nil:
			return errorf(f.DataOffset, formats.ErrInvalid, "%d bytes at the start of the data section belong to no tensor (the first tensor, %q, begins at %d)", t.Begin, t.Name, t.Begin)
		case t.Begin > end:
			return errorf(f.DataOffset+end, formats.ErrInvalid, "%d bytes between tensor %q (ends at %d) and tensor %q (begins at %d) belong to no tensor", t.Begin-end, prev.Name, end, t.Name, t.Begin)
		case t.Begin < end:
			return errorf(f.DataOffset+t.Begin, formats.ErrInvalid, "tensor %q [%d, %d) overlaps tensor %q [%d, %d)", t.Name, t.Begin, t.End, prev.Name, prev.Begin, prev.End)
		}
		end = t.End
		prev = t
	}
	if end < dataSize && prev == nil {
		return errorf(f.DataOffset, formats.ErrInvalid, "the header declares no tensors, but %d bytes follow it", dataSize)
	}
	if end < dataSize {
		return errorf(f.DataOffset+end, formats.ErrInvalid, "%d trailing bytes after the last tensor belong to no tensor", dataSize-end)
	}
	return nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
