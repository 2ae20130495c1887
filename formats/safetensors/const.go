package safetensors

import "github.com/kensa-scan/kensa/formats"

// Constants of the safetensors format (huggingface/safetensors, safetensors/src/tensor.rs).
const (
	// MaxHeaderSize is the largest header length the reference implementation accepts
	// (MAX_HEADER_SIZE); longer headers are rejected with ErrTooLarge.
	MaxHeaderSize = 100_000_000

	// MaxIndexSize is the largest sharded-checkpoint index (*.safetensors.index.json) that
	// OpenDir reads. Real indexes are well under 10 MB.
	MaxIndexSize = 100_000_000

	// MaxDepth is the deepest JSON nesting the header and index parsers accept. A valid
	// header needs 3 levels (object, tensor entry, shape); deeper values can only occur in
	// fields that are ignored. serde_json, which the reference uses, stops at 128.
	MaxDepth = 64

	// headerAlign is the multiple the reference writer pads the header length to, with
	// spaces, so that the data section starts 8-byte aligned.
	headerAlign = 8

	// metadataKey is the header key of the free-form string-to-string metadata.
	metadataKey = "__metadata__"

	// indexSuffix ends the name of every sharded-checkpoint index; defaultIndex is the one
	// transformers writes and OpenDir prefers.
	indexSuffix  = ".safetensors.index.json"
	defaultIndex = "model.safetensors.index.json"
	fileSuffix   = ".safetensors"
)

// dtypeOrder lists the safetensors dtypes in the order of the reference's Dtype enum, which
// "MUST be in increasing alignment order". The writer sorts tensors by this order,
// descending. A formats.DType missing from this list (the ggml quantizations) is not a
// safetensors dtype.
var dtypeOrder = [...]formats.DType{
	formats.BOOL,
	formats.F4,
	formats.F6_E2M3,
	formats.F6_E3M2,
	formats.U8,
	formats.I8,
	formats.F8_E5M2,
	formats.F8_E4M3,
	formats.F8_E8M0,
	formats.F8_E4M3FNUZ,
	formats.F8_E5M2FNUZ,
	formats.I16,
	formats.U16,
	formats.F16,
	formats.BF16,
	formats.I32,
	formats.U32,
	formats.F32,
	formats.C64,
	formats.F64,
	formats.I64,
	formats.U64,
}

var (
	dtypeByName = make(map[string]formats.DType, len(dtypeOrder))
	dtypeRank   = make(map[formats.DType]int, len(dtypeOrder))
)

func init() {
	for i, d := range dtypeOrder {
		dtypeByName[d.String()] = d
		dtypeRank[d] = i
	}
}

// IsDType reports whether d is a safetensors dtype (every formats.DType but the ggml
// quantizations).
func IsDType(d formats.DType) bool {
	_, ok := dtypeRank[d]
	return ok
}

// dtypeBits returns the number of bits of one element of d (4 for F4, 6 for F6_*).
func dtypeBits(d formats.DType) uint64 {
	return uint64(d.BlockBytes()*8) / uint64(d.BlockElems())
}
