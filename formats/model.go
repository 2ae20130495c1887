package formats

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
)

// TensorInfo describes one tensor of a model: where its bytes are and how to read them.
type TensorInfo struct {
	Name   string
	DType  DType
	Shape  []int64 // row-major (numpy / PyTorch order); GGUF's ne[] is reversed to match
	File   string  // path of the file that holds the tensor (Model.Files[i].Path)
	Offset int64   // absolute byte offset of the first byte in File
	Length int64   // byte length
}

// Elements returns the number of elements (1 for a scalar, 0 for an empty tensor).
// Readers guarantee that it does not overflow.
func (t *TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// RowLen returns the length of the innermost dimension (1 for a scalar).
func (t *TensorInfo) RowLen() int64 {
	if len(t.Shape) == 0 {
		return 1
	}
	return t.Shape[len(t.Shape)-1]
}

// Rows returns the number of rows: the product of all dimensions but the innermost.
func (t *TensorInfo) Rows() int64 {
	if t.RowLen() == 0 {
		return 0
	}
	return t.Elements() / t.RowLen()
}

// KV is one metadata entry. Value is one of bool, uint8, int8, uint16, int16, uint32, int32,
// uint64, int64, float32, float64, string, a slice of one of those for a typed array,
// []any for an array of arrays (GGUF) or a JSON array (safetensors index), map[string]any
// for a JSON object and nil for JSON null (safetensors index metadata).
type KV struct {
	Key    string
	Value  any
	Offset int64  // absolute offset of the entry in its file (0 with Length 0 when unknown)
	Length int64  // byte length of the entry (key and value as stored)
	File   string // the file holding the entry, when it is not the model's only file ("" otherwise)
}

// CodeRef is one thing loading a model would import or call.
type CodeRef struct {
	Module string // "posix", "torch._utils", "collections"; "" when not a Python global
	Name   string // "system", "_rebuild_tensor_v2", "OrderedDict"
	Kind   string // how it is reached: "GLOBAL", "STACK_GLOBAL", "INST", "REDUCE", "BUILD", "NEWOBJ", "keras Lambda", "hydra _target_", ...
	Called bool   // the object is called (REDUCE, INST, OBJ, NEWOBJ...), not only imported
	Args   string // a bounded, printable rendering of the call's arguments when known
	File   string // the file holding it (Model.Files[i].Path)
	Member string // the member inside an archive ("archive/data.pkl"), "" for a plain file
	Offset int64  // absolute byte offset of the opcode (in File, or in Member when set)
}

// File is one file of a model, open for reading. Files are memory-mapped where the platform
// allows it and read with ReadAt otherwise.
type File struct {
	Path string
	Size int64

	data []byte // the whole file when memory-mapped
	r    io.ReaderAt
	c    func() error
}

// ReadAt reads len(p) bytes at off. A memory fault while copying from a mapped file that
// shrank is returned as an error wrapping ErrFault.
func (f *File) ReadAt(p []byte, off int64) (n int, err error) {
	if f.data != nil {
		if off < 0 || off > int64(len(f.data)) {
			return 0, io.EOF
		}
		err = Guard(f.Path, func() error {
			n = copy(p, f.data[off:])
			return nil
		})
		if err != nil {
			return 0, err
		}
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	return f.r.ReadAt(p, off)
}

// Bytes returns the n bytes at off without copying when the file is mapped, and reads them
// into buf (grown as needed) otherwise. The result is valid until the next call with the
// same buf or until the file is closed; callers must not modify it.
func (f *File) Bytes(off, n int64, buf []byte) ([]byte, error) {
	if off < 0 || n < 0 || off > f.Size || n > f.Size-off {
		return nil, fmt.Errorf("formats: read of %d bytes at %d is outside %s (%d bytes)", n, off, f.Path, f.Size)
	}
	if f.data != nil {
		return f.data[off : off+n : off+n], nil
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := f.r.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("formats: %s: reading %d bytes at %d: %w", f.Path, n, off, err)
	}
	return buf, nil
}

// Close releases the file.
func (f *File) Close() error {
	if f.c == nil {
		return nil
	}
	c := f.c
	f.c, f.data, f.r = nil, nil, nil
	return c()
}

// NewFile wraps an io.ReaderAt of the given size as a model file (for readers and tests that
// do not read from disk).
func NewFile(path string, r io.ReaderAt, size int64) *File {
	return &File{Path: path, Size: size, r: r}
}

// OpenFile opens path for reading, memory-mapping it when possible.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, openFlags, 0)
	if err != nil {
		return nil, err
	}
	return newOSFile(path, f)
}

func newOSFile(path string, f *os.File) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("formats: %s is not a regular file", path)
	}
	mf := &File{Path: path, Size: st.Size(), r: f, c: f.Close}
	if data, unmap, ok := mapFile(f, st.Size()); ok {
		mf.data = data
		mf.c = func() error { unmap(); return f.Close() }
	}
	return mf, nil
}

// Model is an opened model: one file or several (shards), its metadata and its tensors.
type Model struct {
	Format    string // "gguf" or "safetensors"
	Version   int    // format version (GGUF 1-3); 0 when the format has none
	Path      string // what was opened: a file or a directory
	Files     []*File
	Header    []KV // format fields that are not metadata (GGUF counts, alignment, data offset, ...)
	Metadata  []KV // metadata keys and values, in file order
	Tensors   []TensorInfo
	BigEndian bool // GGUF stored big-endian: tensor data is converted when decoded
	// Code lists what loading the model would import or call, for formats that can run
	// code when loaded (pickle-based PyTorch, NumPy object arrays, Keras, ...): every
	// global a pickle names, every callable a config references. Readers only record
	// them; detectors judge them. Empty for safetensors and GGUF.
	Code []CodeRef

	filesOnce sync.Once
	files     map[string]*File
}

// Close closes every file of the model.
func (m *Model) Close() error {
	var errs []error
	for _, f := range m.Files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// Meta returns the value of a metadata key and whether it is present.
func (m *Model) Meta(key string) (any, bool) {
	for _, kv := range m.Metadata {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Tensor returns the tensor with the given name, or nil.
func (m *Model) Tensor(name string) *TensorInfo {
	for i := range m.Tensors {
		if m.Tensors[i].Name == name {
			return &m.Tensors[i]
		}
	}
	return nil
}

// File returns the model file with the given path, or nil.
// It is safe for concurrent use; Files must not change after the first call.
func (m *Model) File(path string) *File {
	m.filesOnce.Do(func() {
		m.files = make(map[string]*File, len(m.Files))
		for _, f := range m.Files {
			m.files[f.Path] = f
		}
	})
	return m.files[path]
}

// Parameters returns the total number of elements of all tensors.
func (m *Model) Parameters() int64 {
	var n int64
	for i := range m.Tensors {
		n += m.Tensors[i].Elements()
	}
	return n
}

// TensorReader decodes the values of one tensor to float32 in pieces, so that a tensor is
// never materialised whole. A TensorReader is not safe for concurrent use; make one per
// goroutine.
type TensorReader struct {
	t    *TensorInfo
	f    *File
	be   bool
	buf  []byte
	swap []byte
	tmp  []float32
}

// NewTensorReader returns a reader for t, which must belong to m.
func (m *Model) NewTensorReader(t *TensorInfo) (*TensorReader, error) {
	f := m.File(t.File)
	if f == nil {
		return nil, fmt.Errorf("formats: tensor %q: file %q is not part of the model", t.Name, t.File)
	}
	if !t.DType.Decodable() {
		return nil, fmt.Errorf("formats: tensor %q: %s values cannot be decoded to float32: %w", t.Name, t.DType, ErrUnsupported)
	}
	if t.Offset < 0 || t.Length < 0 || t.Offset > f.Size || t.Length > f.Size-t.Offset {
		return nil, fmt.Errorf("formats: tensor %q: bytes [%d, +%d) are outside %s: %w", t.Name, t.Offset, t.Length, f.Path, ErrInvalid)
	}
	return &TensorReader{t: t, f: f, be: m.BigEndian}, nil
}

// Tensor returns the tensor the reader decodes.
func (r *TensorReader) Tensor() *TensorInfo { return r.t }

// ReadRows decodes len(dst)/RowLen rows starting at row into dst; len(dst) must be a whole
// number of rows.
func (r *TensorReader) ReadRows(row int64, dst []float32) error {
	rl := r.t.RowLen()
	if rl == 0 || int64(len(dst))%rl != 0 {
		return fmt.Errorf("formats: tensor %q: buffer of %d values is not a whole number of %d-element rows", r.t.Name, len(dst), rl)
	}
	if row < 0 || row > math.MaxInt64/rl {
		return fmt.Errorf("formats: tensor %q: row %d out of range", r.t.Name, row)
	}
	return r.ReadElements(row*rl, dst)
}

// ReadElements decodes elements [start, start+len(dst)) in row-major order into dst.
func (r *TensorReader) ReadElements(start int64, dst []float32) error {
	_, err := r.Decode(start, dst)
	return err
}

// Decode is ReadElements that also returns the stored bytes the values were decoded from:
// the whole blocks covering them, as they are in the file (before any byte-order
// conversion). The bytes are only valid until the next call and must not be modified.
// A memory fault (the file truncated while mapped) is returned as an error wrapping
// ErrFault.
func (r *TensorReader) Decode(start int64, dst []float32) ([]byte, error) {
	raw, err := r.Bytes(start, int64(len(dst)))
	if err != nil {
		return nil, err
	}
	if err := Guard(r.f.Path, func() error { r.DecodeBytes(raw, start, dst); return nil }); err != nil {
		return nil, err
	}
	return raw, nil
}

// Bytes returns the stored bytes of elements [start, start+n): the whole storage blocks
// covering them, as they are in the file. They are valid until the next call of Bytes or
// Decode and must not be modified.
func (r *TensorReader) Bytes(start, n int64) ([]byte, error) {
	t := r.t
	total := t.Elements()
	if start < 0 || start > total || n < 0 || n > total-start {
		return nil, fmt.Errorf("formats: tensor %q: elements [%d, +%d) outside its %d elements", t.Name, start, n, total)
	}
	if n == 0 {
		return nil, nil
	}
	be, bb := int64(t.DType.BlockElems()), int64(t.DType.BlockBytes())
	b0 := start / be
	b1 := (start + n + be - 1) / be
	off, ln := b0*bb, (b1-b0)*bb
	if off+ln > t.Length {
		return nil, fmt.Errorf("formats: tensor %q: elements [%d, +%d) need bytes past its %d-byte length", t.Name, start, n, t.Length)
	}
	raw, err := r.f.Bytes(t.Offset+off, ln, r.buf)
	if err != nil {
		return nil, err
	}
	if r.f.data == nil {
		r.buf = raw[:0]
	}
	return raw, nil
}

// DecodeBytes decodes into dst the elements [start, start+len(dst)) from raw, the bytes
// Bytes(start, len(dst)) returned, converting big-endian data first.
func (r *TensorReader) DecodeBytes(raw []byte, start int64, dst []float32) {
	t := r.t
	n := int64(len(dst))
	if n == 0 {
		return
	}
	be, bb := int64(t.DType.BlockElems()), int64(t.DType.BlockBytes())
	b0 := start / be
	b1 := (start + n + be - 1) / be
	if int64(len(raw)) != (b1-b0)*bb {
		panic("formats: DecodeBytes: raw does not hold the blocks of the elements")
	}
	if r.be {
		if sw := t.DType.swapToLE(); sw != nil {
			ln := int64(len(raw))
			if int64(cap(r.swap)) < ln {
				r.swap = make([]byte, ln)
			}
			s := r.swap[:ln]
			copy(s, raw)
			for i := int64(0); i < ln; i += bb {
				sw(s[i : i+bb])
			}
			raw = s
		}
	}
	if start%be == 0 && n%be == 0 {
		t.DType.Decode(dst, raw)
		return
	}
	m := (b1 - b0) * be
	if int64(cap(r.tmp)) < m {
		r.tmp = make([]float32, m)
	}
	tmp := r.tmp[:m]
	t.DType.Decode(tmp, raw)
	copy(dst, tmp[start-b0*be:])
}
