package quant

import "fmt"

// Block sizes of the ggml quantizations (QK4_0, QK_K, ...).
const (
	qk32 = 32  // legacy types, IQ4_NL, MXFP4
	qkK  = 256 // k-quants, IQ types except IQ4_NL, TQ types
)

// allKernels lists every kernel. The swap field lists follow the C structs of ggml-common.h
// (offsets in bytes); see each decoder for the layout.
func allKernels() []Kernel {
	return []Kernel{
		// Plain types shared by GGUF and safetensors.
		{"F32", 1, 4, decodeF32, swapElems(4, 4)},
		{"F16", 1, 2, decodeF16, swapElems(2, 2)},
		{"BF16", 1, 2, decodeBF16, swapElems(2, 2)},
		{"F64", 1, 8, decodeF64, swapElems(8, 8)},
		{"I8", 1, 1, decodeI8, nil},
		{"I16", 1, 2, decodeI16, swapElems(2, 2)},
		{"I32", 1, 4, decodeI32, swapElems(4, 4)},
		{"I64", 1, 8, decodeI64, swapElems(8, 8)},

		// safetensors only.
		{"BOOL", 1, 1, decodeBOOL, nil},
		{"U8", 1, 1, decodeU8, nil},
		{"U16", 1, 2, decodeU16, swapElems(2, 2)},
		{"U32", 1, 4, decodeU32, swapElems(4, 4)},
		{"U64", 1, 8, decodeU64, swapElems(8, 8)},
		{"C64", 1, 8, nil, swapElems(8, 4)}, // complex64: two float32 (real, imaginary)
		{"F8_E4M3", 1, 1, decodeF8E4M3, nil},
		{"F8_E5M2", 1, 1, decodeF8E5M2, nil},
		{"F8_E8M0", 1, 1, decodeF8E8M0, nil},
		{"F8_E4M3FNUZ", 1, 1, decodeF8E4M3FNUZ, nil},
		{"F8_E5M2FNUZ", 1, 1, decodeF8E5M2FNUZ, nil},
		{"F4", 2, 1, decodeF4, nil},
		{"F6_E2M3", 4, 3, decodeF6E2M3, nil},
		{"F6_E3M2", 4, 3, decodeF6E3M2, nil},

		// ggml quantizations: half d first unless noted.
		{"Q4_0", qk32, 18, decodeQ4_0, swapFields(18, f16At(0))},
		{"Q4_1", qk32, 20, decodeQ4_1, swapFields(20, f16At(0), f16At(2))},
		{"Q5_0", qk32, 22, decodeQ5_0, swapFields(22, f16At(0))},
		{"Q5_1", qk32, 24, decodeQ5_1, swapFields(24, f16At(0), f16At(2))},
		{"Q8_0", qk32, 34, decodeQ8_0, swapFields(34, f16At(0))},
		{"Q8_1", qk32, 36, decodeQ8_1, swapFields(36, f16At(0), f16At(2))},
		{"Q2_K", qkK, 84, decodeQ2_K, swapFields(84, f16At(80), f16At(82))},
		{"Q3_K", qkK, 110, decodeQ3_K, swapFields(110, f16At(108))},
		{"Q4_K", qkK, 144, decodeQ4_K, swapFields(144, f16At(0), f16At(2))},
		{"Q5_K", qkK, 176, decodeQ5_K, swapFields(176, f16At(0), f16At(2))},
		{"Q6_K", qkK, 210, decodeQ6_K, swapFields(210, f16At(208))},
		{"Q8_K", qkK, 292, decodeQ8_K, swapFields(292, field{0, 4, 1}, field{260, 2, 16})},
		{"IQ2_XXS", qkK, 66, decodeIQ2_XXS, swapFields(66, f16At(0), field{2, 2, 32})},
		{"IQ2_XS", qkK, 74, decodeIQ2_XS, swapFields(74, f16At(0), field{2, 2, 32})},
		{"IQ2_S", qkK, 82, decodeIQ2_S, swapFields(82, f16At(0))},
		{"IQ3_XXS", qkK, 98, decodeIQ3_XXS, swapFields(98, f16At(0))},
		{"IQ3_S", qkK, 110, decodeIQ3_S, swapFields(110, f16At(0))},
		{"IQ1_S", qkK, 50, decodeIQ1_S, swapFields(50, f16At(0), field{34, 2, 8})},
		{"IQ1_M", qkK, 56, decodeIQ1_M, nil}, // only u8 arrays; the scale is spread over scales[8]
		{"IQ4_NL", qk32, 18, decodeIQ4_NL, swapFields(18, f16At(0))},
		{"IQ4_XS", qkK, 136, decodeIQ4_XS, swapFields(136, f16At(0), f16At(2))},
		{"TQ1_0", qkK, 54, decodeTQ1_0, swapFields(54, f16At(52))},
		{"TQ2_0", qkK, 66, decodeTQ2_0, swapFields(66, f16At(64))},
		{"MXFP4", qk32, 17, decodeMXFP4, nil},
		{"NVFP4", 64, 36, decodeNVFP4, nil},
		{"Q1_0", 128, 18, decodeQ1_0, swapFields(18, f16At(0))},
		{"Q2_0", 64, 18, decodeQ2_0, swapFields(18, f16At(0))},
	}
}

// field is a run of count multi-byte fields of size bytes each, starting at byte off of a block.
type field struct{ off, size, count int }

// f16At is one 2-byte field (a ggml_half or uint16) at byte off.
func f16At(off int) field { return field{off, 2, 1} }

// swapFields returns a SwapToLE function for blocks of blockBytes bytes that reverses the
// bytes of each listed field.
func swapFields(blockBytes int, fields ...field) func([]byte) {
	return func(b []byte) {
		if len(b) != blockBytes {
			panic(fmt.Sprintf("quant: SwapToLE: block of %d bytes, want %d", len(b), blockBytes))
		}
		for _, f := range fields {
			for i := 0; i < f.count; i++ {
				reverse(b[f.off+i*f.size : f.off+(i+1)*f.size])
			}
		}
	}
}

// swapElems returns a SwapToLE function for a plain type of blockBytes bytes made of
// fields of size bytes (C64 is two 4-byte floats).
func swapElems(blockBytes, size int) func([]byte) {
	return swapFields(blockBytes, field{0, size, blockBytes / size})
}

func reverse(b []byte) {
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
}
