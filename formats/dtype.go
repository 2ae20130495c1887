package formats

import (
	"fmt"
	"math/bits"

	"github.com/kensa-scan/kensa/formats/quant"
)

// DType is an element type of a tensor: a safetensors dtype or a ggml type. Types the two
// formats share (F32, F16, BF16, F64, I8, I16, I32, I64) are one DType. Every DType is
// stored in blocks of BlockElems elements taking BlockBytes bytes (1 element for plain
// types, 2 for F4, 4 for the 6-bit floats, 32 or 256 for ggml quantizations).
type DType uint8

// The element types. Names follow the formats: ggml's for ggml types, safetensors' for the
// others.
const (
	Invalid DType = iota
	F32
	F16
	BF16
	F64
	I8
	I16
	I32
	I64
	// safetensors only
	BOOL
	U8
	U16
	U32
	U64
	C64
	F8_E4M3
	F8_E5M2
	F8_E8M0
	F8_E4M3FNUZ
	F8_E5M2FNUZ
	F4
	F6_E2M3
	F6_E3M2
	// ggml only
	Q4_0
	Q4_1
	Q5_0
	Q5_1
	Q8_0
	Q8_1
	Q2_K
	Q3_K
	Q4_K
	Q5_K
	Q6_K
	Q8_K
	IQ2_XXS
	IQ2_XS
	IQ3_XXS
	IQ1_S
	IQ4_NL
	IQ3_S
	IQ2_S
	IQ4_XS
	IQ1_M
	TQ1_0
	TQ2_0
	MXFP4
	NVFP4
	Q1_0
	Q2_0
	numDTypes
)

var dtypeNames = [numDTypes]string{
	Invalid: "invalid",
	F32:     "F32", F16: "F16", BF16: "BF16", F64: "F64",
	I8: "I8", I16: "I16", I32: "I32", I64: "I64",
	BOOL: "BOOL", U8: "U8", U16: "U16", U32: "U32", U64: "U64", C64: "C64",
	F8_E4M3: "F8_E4M3", F8_E5M2: "F8_E5M2", F8_E8M0: "F8_E8M0",
	F8_E4M3FNUZ: "F8_E4M3FNUZ", F8_E5M2FNUZ: "F8_E5M2FNUZ",
	F4: "F4", F6_E2M3: "F6_E2M3", F6_E3M2: "F6_E3M2",
	Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1", Q8_0: "Q8_0", Q8_1: "Q8_1",
	Q2_K: "Q2_K", Q3_K: "Q3_K", Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K", Q8_K: "Q8_K",
	IQ2_XXS: "IQ2_XXS", IQ2_XS: "IQ2_XS", IQ3_XXS: "IQ3_XXS", IQ1_S: "IQ1_S",
	IQ4_NL: "IQ4_NL", IQ3_S: "IQ3_S", IQ2_S: "IQ2_S", IQ4_XS: "IQ4_XS", IQ1_M: "IQ1_M",
	TQ1_0: "TQ1_0", TQ2_0: "TQ2_0", MXFP4: "MXFP4", NVFP4: "NVFP4", Q1_0: "Q1_0", Q2_0: "Q2_0",
}

var kernels [numDTypes]quant.Kernel

func init() {
	for d := DType(1); d < numDTypes; d++ {
		k, ok := quant.Lookup(dtypeNames[d])
		if !ok || k.BlockElems <= 0 || k.BlockBytes <= 0 {
			panic("formats: no kernel for " + dtypeNames[d])
		}
		kernels[d] = k
	}
}

// String returns the type's name as the file formats spell it ("F32", "Q4_K", "F8_E4M3").
func (d DType) String() string {
	if d < numDTypes {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// MarshalText encodes the type by name.
func (d DType) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ParseDType returns the DType with the given name, and false if there is none.
func ParseDType(name string) (DType, bool) {
	for d := DType(1); d < numDTypes; d++ {
		if dtypeNames[d] == name {
			return d, true
		}
	}
	return Invalid, false
}

// Valid reports whether d is a known type.
func (d DType) Valid() bool { return d > Invalid && d < numDTypes }

// BlockElems is the number of elements in one storage block.
func (d DType) BlockElems() int { return d.kernel().BlockElems }

// BlockBytes is the number of bytes of one storage block.
func (d DType) BlockBytes() int { return d.kernel().BlockBytes }

// Quantized reports whether d is a ggml block quantization (blocks of more than one element
// that share scales), as opposed to a plain or packed element type.
func (d DType) Quantized() bool { return d >= Q4_0 && d < numDTypes }

// Float reports whether the values of d are real numbers meant as weights (every float and
// quantized type), as opposed to integers, booleans and complex numbers.
func (d DType) Float() bool {
	switch d {
	case F32, F16, BF16, F64, F8_E4M3, F8_E5M2, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, F4, F6_E2M3, F6_E3M2:
		return true
	}
	return d.Quantized()
}

// Decodable reports whether Decode can turn values of d into float32 (every type but C64).
func (d DType) Decodable() bool { return d.Valid() && d.kernel().Decode != nil }

func (d DType) kernel() *quant.Kernel {
	if !d.Valid() {
		panic("formats: invalid DType " + d.String())
	}
	return &kernels[d]
}

// Decode decodes whole blocks of src into dst: len(dst) must be a multiple of BlockElems and
// len(src) must be len(dst)/BlockElems*BlockBytes (it panics otherwise, or if d is not
// Decodable). src is little-endian.
func (d DType) Decode(dst []float32, src []byte) {
	k := d.kernel()
	if k.Decode == nil {
		panic("formats: " + d.String() + " cannot be decoded to float32")
	}
	k.Decode(dst, src)
}

// swapToLE converts one big-endian block to little-endian in place (nil: nothing to swap).
func (d DType) swapToLE() func([]byte) { return d.kernel().SwapToLE }

// ByteSize returns the number of bytes that n elements of d take, with an error when n is not
// a whole number of blocks or the size overflows int64.
func (d DType) ByteSize(n uint64) (uint64, error) {
	k := d.kernel()
	be := uint64(k.BlockElems)
	if n%be != 0 {
		return 0, fmt.Errorf("%d elements are not a whole number of %s blocks of %d", n, d, be)
	}
	hi, lo := bits.Mul64(n/be, uint64(k.BlockBytes))
	if hi != 0 || lo > 1<<63-1 {
		return 0, fmt.Errorf("%d elements of %s overflow the byte size", n, d)
	}
	return lo, nil
}

// ByteSizeBits returns the number of bytes that n elements of d take when d packs elements
// into a bit stream (safetensors semantics: n*bits must be a whole number of bytes), with an
// error on overflow or a partial byte. For block types it equals ByteSize.
func (d DType) ByteSizeBits(n uint64) (uint64, error) {
	k := d.kernel()
	if k.BlockElems == 1 || d.Quantized() {
		return d.ByteSize(n)
	}
	// packed: BlockBytes*8/BlockElems bits per element
	bitsPer := uint64(k.BlockBytes*8) / uint64(k.BlockElems)
	hi, lo := bits.Mul64(n, bitsPer)
	if hi != 0 || lo/8 > 1<<63-1 {
		return 0, fmt.Errorf("%d elements of %s overflow the byte size", n, d)
	}
	if lo%8 != 0 {
		return 0, fmt.Errorf("%d elements of %s (%d bits each) do not fill whole bytes", n, d, bitsPer)
	}
	return lo / 8, nil
}

// SwapByteOrder reverses the byte order of every multi-byte field of the whole blocks in b,
// in place: it turns big-endian data little-endian and back. len(b) must be a whole number
// of blocks.
func (d DType) SwapByteOrder(b []byte) {
	k := d.kernel()
	if len(b)%k.BlockBytes != 0 {
		panic("formats: SwapByteOrder of a partial block")
	}
	if k.SwapToLE == nil {
		return
	}
	for i := 0; i < len(b); i += k.BlockBytes {
		k.SwapToLE(b[i : i+k.BlockBytes])
	}
}
