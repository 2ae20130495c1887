package gguf

import (
	"fmt"

	"github.com/kensa-scan/kensa/formats"
)

// Magic numbers. Every little-endian file, and big-endian files from older writers, start
// with the bytes "GGUF"; newer gguf-py writes big-endian files with the bytes "FUGG".
const (
	MagicLE = "GGUF"
	MagicBE = "FUGG"
)

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// MaxDims is the largest number of tensor dimensions (GGML_MAX_DIMS).
const MaxDims = 4

// MaxNesting is the deepest nesting of arrays in metadata that the reader accepts. The spec
// allows arrays of arrays; real files use none, and gguf.cpp rejects them altogether.
const MaxNesting = 8

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types.
const (
	TypeUint8     ValueType = 0
	TypeInt8      ValueType = 1
	TypeUint16    ValueType = 2
	TypeInt16     ValueType = 3
	TypeUint32    ValueType = 4
	TypeInt32     ValueType = 5
	TypeFloat32   ValueType = 6
	TypeBool      ValueType = 7
	TypeString    ValueType = 8
	TypeArray     ValueType = 9
	TypeUint64    ValueType = 10
	TypeInt64     ValueType = 11
	TypeFloat64   ValueType = 12
	numValueTypes ValueType = 13
)

var valueTypeNames = [...]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"}

// String returns the type's short name ("u32", "str", ...).
func (t ValueType) String() string {
	if t < numValueTypes {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size returns the encoded size of a fixed-size value type, or 0 for strings and arrays.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// ggml type ids (enum ggml_type) and their formats.DType. Ids 4, 5, 31-33 and 36-38 were
// removed from ggml and are invalid in files.
var ggmlTypes = map[uint32]formats.DType{
	0: formats.F32, 1: formats.F16, 2: formats.Q4_0, 3: formats.Q4_1,
	6: formats.Q5_0, 7: formats.Q5_1, 8: formats.Q8_0, 9: formats.Q8_1,
	10: formats.Q2_K, 11: formats.Q3_K, 12: formats.Q4_K, 13: formats.Q5_K, 14: formats.Q6_K, 15: formats.Q8_K,
	16: formats.IQ2_XXS, 17: formats.IQ2_XS, 18: formats.IQ3_XXS, 19: formats.IQ1_S, 20: formats.IQ4_NL,
	21: formats.IQ3_S, 22: formats.IQ2_S, 23: formats.IQ4_XS,
	24: formats.I8, 25: formats.I16, 26: formats.I32, 27: formats.I64, 28: formats.F64,
	29: formats.IQ1_M, 30: formats.BF16, 34: formats.TQ1_0, 35: formats.TQ2_0,
	39: formats.MXFP4, 40: formats.NVFP4, 41: formats.Q1_0, 42: formats.Q2_0,
}

var removedTypes = map[uint32]string{
	4: "Q4_2", 5: "Q4_3", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",
	36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8",
}

// DTypeOf returns the element type of a ggml type id, and false for unknown or removed ids.
func DTypeOf(id uint32) (formats.DType, bool) {
	d, ok := ggmlTypes[id]
	return d, ok
}

// TypeID returns the ggml type id of an element type, and false for types GGUF cannot hold.
func TypeID(d formats.DType) (uint32, bool) {
	for id, t := range ggmlTypes {
		if t == d {
			return id, true
		}
	}
	return 0, false
}
