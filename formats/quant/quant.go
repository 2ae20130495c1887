// Package quant decodes raw tensor bytes to float32: every ggml tensor type (plain, legacy
// 32-element quantizations, k-quants, IQ quantizations, ternary and FP4 types) and every
// safetensors dtype that has a float value.
//
// Each encoding is described by a [Kernel]: data is a sequence of blocks of BlockBytes
// bytes, each decoding to BlockElems consecutive values (row-major order). Plain types have
// one element per block. Multi-byte fields are little-endian; [Kernel.SwapToLE] converts a
// block of a big-endian GGUF file first.
//
// The ggml kernels are bit-exact ports of ggml's reference dequantize_row_* functions
// (ggml-quants.c): they perform the same float32 operations in the same order, without
// fused multiply-adds, so they produce the same bits as llama.cpp and gguf-py. Scales of
// type ggml_half are IEEE binary16 converted exactly (subnormals, infinities; NaNs are made
// quiet with their payload kept, as x86 F16C and github.com/x448/float16 do). The
// guarantee covers every non-NaN result; when a scale is itself NaN, the sign and payload of
// the resulting NaNs follow the hardware's multiplication rules and can differ from a C
// build that turns a multiplication by -1 into a negation.
//
// The safetensors-only floating-point types follow the OCP Microscaling (MX) and
// PyTorch conventions; see [Lookup] for the exact semantics of each.
//
// The decoders do not allocate. They panic only on caller bugs (buffer lengths that do not
// match); any byte content decodes to some value, possibly NaN or ±Inf.
package quant

//go:generate go run ./internal/gentables -in ../../../shared/corpus/quant/iq-tables.json

import (
	"fmt"
	"sort"

	"github.com/x448/float16"
)

// Func decodes whole blocks: len(dst) is a multiple of the kernel's BlockElems and
// len(src) == len(dst)/BlockElems*BlockBytes. It panics if the lengths do not match (caller bug).
type Func func(dst []float32, src []byte)

// Kernel describes one element/block encoding.
type Kernel struct {
	Name       string // "Q4_K", "F16", "F8_E4M3", ... (ggml names upper-case as in ggml's GGML_TYPE_*; safetensors dtype names)
	BlockElems int    // elements per block (1 for plain types; 2 for F4; 4 for F6_*)
	BlockBytes int    // bytes per block
	Decode     Func   // nil if the type cannot be decoded to float32 (C64 only)
	// SwapToLE converts ONE block, stored big-endian (big-endian GGUF files), to the
	// little-endian layout Decode expects, in place: it byte-swaps each multi-byte field of the
	// block struct (f16 d/dmin, u16 arrays, f32 d of Q8_K, i16 bsums, the element itself for
	// plain multi-byte types); u8/i8 arrays untouched. nil when the block has no multi-byte field.
	SwapToLE func(block []byte)
}

var (
	kernelList    []Kernel          // sorted by name
	kernelsByName map[string]Kernel // same kernels
)

func init() {
	kernelList = allKernels()
	sort.Slice(kernelList, func(i, j int) bool { return kernelList[i].Name < kernelList[j].Name })
	kernelsByName = make(map[string]Kernel, len(kernelList))
	for _, k := range kernelList {
		if _, dup := kernelsByName[k.Name]; dup {
			panic("quant: duplicate kernel " + k.Name)
		}
		kernelsByName[k.Name] = k
	}
}

// Lookup returns the kernel for a type name. Names are case-sensitive and spelled as in
// ggml's GGML_TYPE_* constants for ggml types (F32 F16 BF16 F64 I8 I16 I32 I64 Q4_0 Q4_1
// Q5_0 Q5_1 Q8_0 Q8_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S
// IQ1_M IQ4_NL IQ4_XS TQ1_0 TQ2_0 MXFP4 NVFP4 Q1_0 Q2_0) and as in safetensors for the
// others (BOOL U8 U16 U32 U64 F8_E4M3 F8_E5M2 F8_E8M0 F8_E4M3FNUZ F8_E5M2FNUZ F4 F6_E2M3
// F6_E3M2 C64).
//
// Integer types decode to their value as float32 (64-bit integers rounded to nearest); BOOL
// decodes 0 to 0 and anything else to 1. C64 has a kernel for sizing and byte swapping but
// no Decode. The 8-, 6- and 4-bit float formats all have subnormals:
//
//   - F8_E4M3 is E4M3FN (OCP, torch.float8_e4m3fn): bias 7, no infinities, 0x7F and 0xFF
//     are NaN (decoded as ±0x7FF00000, the bits PyTorch produces), max 448.
//   - F8_E5M2 (torch.float8_e5m2): bias 15, IEEE-like with ±Inf and NaN; it is the high byte
//     of a binary16 and decodes exactly as F16 does.
//   - F8_E8M0 (OCP MX scale, torch.float8_e8m0fnu): 2^(e-127), unsigned; 0xFF is NaN.
//   - F8_E4M3FNUZ: bias 8, no infinities, no negative zero: 0x80 is the only NaN; max 240.
//   - F8_E5M2FNUZ: bias 16, no infinities, no negative zero: 0x80 is the only NaN; max 57344.
//   - F4 is FP4 E2M1 (OCP MX): values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, two per byte, the
//     first element in the low nibble (torch.float4_e2m1fn_x2).
//   - F6_E2M3 (bias 1, max 7.5) and F6_E3M2 (bias 3, max 28) have no Inf or NaN. Four
//     values are packed in 3 bytes as in the OCP MX / PyTorch-ao packing: the bytes are a
//     little-endian 24-bit integer and element i is in bits [6i, 6i+6), sign in the top
//     bit of each 6-bit field.
//
// Unless stated otherwise, NaN results are the quiet NaN 0x7FC00000.
func Lookup(name string) (Kernel, bool) {
	k, ok := kernelsByName[name]
	return k, ok
}

// Kernels returns all kernels sorted by name.
func Kernels() []Kernel {
	return append([]Kernel(nil), kernelList...)
}

// blocks checks the buffer lengths of a Func call and returns the number of blocks.
func blocks(name string, dst []float32, src []byte, elems, size int) int {
	n := len(dst) / elems
	if len(dst)%elems != 0 || len(src) != n*size {
		panic(fmt.Sprintf("quant: %s decode: len(dst)=%d, len(src)=%d; want len(dst) a multiple of %d and len(src)=len(dst)/%d*%d",
			name, len(dst), len(src), elems, elems, size))
	}
	return n
}

// f16Table maps every IEEE binary16 bit pattern to its float32 value.
var f16Table [1 << 16]float32

func init() {
	for i := range f16Table {
		f16Table[i] = float16.Frombits(uint16(i)).Float32()
	}
}

// f16 returns the value of the little-endian binary16 stored in b0, b1.
func f16(b0, b1 byte) float32 {
	return f16Table[uint16(b0)|uint16(b1)<<8]
}
