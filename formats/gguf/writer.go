package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/kensa-scan/kensa/formats"
)

// WriteTensor is a tensor to write: Shape is row-major (it is stored reversed as ne[]) and
// Data holds its bytes little-endian, exactly Shape's size in DType.
type WriteTensor struct {
	Name  string
	DType formats.DType
	Shape []int64
	Data  []byte
}

// WriteOptions control the writer. The zero value writes a little-endian v3 file.
type WriteOptions struct {
	Version   uint32 // 1, 2 or 3 (0 means 3)
	BigEndian bool   // write big-endian (header, metadata and tensor data)
	BEMagic   bool   // with BigEndian: write the "FUGG" magic instead of "GGUF"
}

// Write writes a canonical GGUF file: metadata in the given order (a value's GGUF type
// follows its Go type, see formats.KV; general.alignment, when present, must be a uint32
// power of two and sets the alignment), then the tensor infos, then the tensors back to back
// in the given order, each padded with zeros to the alignment.
func Write(w io.Writer, kvs []formats.KV, tensors []WriteTensor, opt *WriteOptions) error {
	var o WriteOptions
	if opt != nil {
		o = *opt
	}
	if o.Version == 0 {
		o.Version = 3
	}
	if o.Version > 3 {
		return fmt.Errorf("gguf: cannot write version %d", o.Version)
	}
	bw := bufio.NewWriter(w)
	e := &encoder{w: bw, bo: binary.LittleEndian, v1: o.Version == 1}
	if o.BigEndian {
		e.bo = binary.BigEndian
	}
	align := uint64(DefaultAlignment)
	for _, kv := range kvs {
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("gguf: general.alignment must be a uint32 power of two, got %T %v", kv.Value, kv.Value)
			}
			align = uint64(a)
		}
	}
	if o.BigEndian && o.BEMagic {
		e.raw([]byte(MagicBE))
	} else {
		e.raw([]byte(MagicLE))
	}
	e.u32(o.Version)
	e.count(uint64(len(tensors)))
	e.count(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		if err := e.value(kv.Value, true); err != nil {
			return fmt.Errorf("gguf: metadata %q: %w", kv.Key, err)
		}
	}
	var off uint64
	pad := func(x uint64) uint64 { return (x + align - 1) / align * align }
	for _, t := range tensors {
		id, ok := TypeID(t.DType)
		if !ok {
			return fmt.Errorf("gguf: tensor %q: type %s cannot be stored in GGUF", t.Name, t.DType)
		}
		n := uint64(1)
		for _, d := range t.Shape {
			n *= uint64(d)
		}
		if len(t.Shape) > 0 && t.Shape[len(t.Shape)-1]%int64(t.DType.BlockElems()) != 0 {
			return fmt.Errorf("gguf: tensor %q: row length %d is not a multiple of the %s block size %d", t.Name, t.Shape[len(t.Shape)-1], t.DType, t.DType.BlockElems())
		}
		size, err := t.DType.ByteSize(n)
		if err != nil || size != uint64(len(t.Data)) {
			return fmt.Errorf("gguf: tensor %q: %d bytes of data for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
		}
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for i := len(t.Shape) - 1; i >= 0; i-- {
			e.count(uint64(t.Shape[i]))
		}
		e.u32(id)
		e.u64(off)
		off = pad(off + size)
	}
	if len(tensors) > 0 {
		e.zeros(pad(e.n) - e.n)
	}
	for _, t := range tensors {
		data := t.Data
		if o.BigEndian {
			data = append([]byte(nil), data...)
			t.DType.SwapByteOrder(data)
		}
		e.raw(data)
		e.zeros(pad(uint64(len(data))) - uint64(len(data)))
	}
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

type encoder struct {
	w   *bufio.Writer
	bo  binary.ByteOrder
	v1  bool
	n   uint64
	err error
	b   [8]byte
}

func (e *encoder) raw(p []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(p)
	e.n += uint64(len(p))
}

func (e *encoder) zeros(n uint64) {
	for ; n > 0; n-- {
		e.raw([]byte{0})
	}
}

func (e *encoder) u8(v uint8)   { e.raw([]byte{v}) }
func (e *encoder) u16(v uint16) { e.bo.PutUint16(e.b[:2], v); e.raw(e.b[:2]) }
func (e *encoder) u32(v uint32) { e.bo.PutUint32(e.b[:4], v); e.raw(e.b[:4]) }
func (e *encoder) u64(v uint64) { e.bo.PutUint64(e.b[:8], v); e.raw(e.b[:8]) }

func (e *encoder) count(n uint64) {
	if e.v1 {
		if n > math.MaxUint32 && e.err == nil {
			e.err = fmt.Errorf("gguf: count %d does not fit a v1 file", n)
		}
		e.u32(uint32(n))
		return
	}
	e.u64(n)
}

func (e *encoder) str(s string) {
	e.count(uint64(len(s)))
	e.raw([]byte(s))
}

// typeOf returns the GGUF type of a Go value (and of its elements, for arrays).
func typeOf(v any) (ValueType, error) {
	switch v.(type) {
	case uint8:
		return TypeUint8, nil
	case int8:
		return TypeInt8, nil
	case uint16:
		return TypeUint16, nil
	case int16:
		return TypeInt16, nil
	case uint32:
		return TypeUint32, nil
	case int32:
		return TypeInt32, nil
	case float32:
		return TypeFloat32, nil
	case bool:
		return TypeBool, nil
	case string:
		return TypeString, nil
	case uint64:
		return TypeUint64, nil
	case int64:
		return TypeInt64, nil
	case float64:
		return TypeFloat64, nil
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64, []any:
		return TypeArray, nil
	}
	return 0, fmt.Errorf("no GGUF type for Go type %T", v)
}

// value writes a value, preceded by its type tag when tagged.
func (e *encoder) value(v any, tagged bool) error {
	t, err := typeOf(v)
	if err != nil {
		return err
	}
	if tagged {
		e.u32(uint32(t))
	}
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case []uint8:
		return writeArray(e, TypeUint8, x)
	case []int8:
		return writeArray(e, TypeInt8, x)
	case []uint16:
		return writeArray(e, TypeUint16, x)
	case []int16:
		return writeArray(e, TypeInt16, x)
	case []uint32:
		return writeArray(e, TypeUint32, x)
	case []int32:
		return writeArray(e, TypeInt32, x)
	case []float32:
		return writeArray(e, TypeFloat32, x)
	case []bool:
		return writeArray(e, TypeBool, x)
	case []string:
		return writeArray(e, TypeString, x)
	case []uint64:
		return writeArray(e, TypeUint64, x)
	case []int64:
		return writeArray(e, TypeInt64, x)
	case []float64:
		return writeArray(e, TypeFloat64, x)
	case []any:
		// an array of arrays: every element must itself be an array
		for i, el := range x {
			if et, err := typeOf(el); err != nil || et != TypeArray {
				return fmt.Errorf("element %d of an array of arrays is %T", i, el)
			}
		}
		return writeArray(e, TypeArray, x)
	}
	return nil
}

func writeArray[T any](e *encoder, et ValueType, xs []T) error {
	e.u32(uint32(et))
	e.count(uint64(len(xs)))
	for _, x := range xs {
		if err := e.value(x, false); err != nil {
			return err
		}
	}
	return nil
}
