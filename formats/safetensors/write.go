package safetensors

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

// WriteTensor is one tensor for Write.
type WriteTensor struct {
	Name  string
	DType formats.DType
	Shape []int64
	Data  []byte // little-endian, row-major; exactly the size of Shape elements of DType
}

// Write writes a safetensors file holding tensors and metadata (string values), laid out
// the way the reference serializer (safetensors' prepare) does:
//
//   - tensors sorted by dtype in descending order of the reference's Dtype enum (which is
//     in increasing alignment order: U64, I64, F64, C64, F32, ..., F4, BOOL), then by
//     name (byte order), so every tensor is naturally aligned;
//   - the header is compact JSON: "__metadata__" first (omitted when metadata is empty),
//     then the tensors in that order, each {"dtype","shape","data_offsets"}; strings are
//     escaped as serde_json does (only '"', '\\' and control characters);
//   - the header is padded with spaces to a multiple of 8 bytes;
//   - the data of the tensors follows contiguously in the same order.
//
// The reference keeps metadata in a hash map; Write keeps the order given. Write checks that
// names are unique, non-reserved UTF-8, that dtypes are safetensors dtypes, and that each
// Data has exactly the size of its Shape.
func Write(w io.Writer, tensors []WriteTensor, metadata []formats.KV) error {
	meta := make([]string, len(metadata))
	seenKey := map[string]bool{}
	for i, kv := range metadata {
		v, ok := kv.Value.(string)
		if !ok {
			return fmt.Errorf("safetensors: metadata %q: value is a %T, want a string", kv.Key, kv.Value)
		}
		if !utf8.ValidString(kv.Key) || !utf8.ValidString(v) {
			return fmt.Errorf("safetensors: metadata %q: not valid UTF-8", kv.Key)
		}
		if seenKey[kv.Key] {
			return fmt.Errorf("safetensors: metadata %q: duplicate key", kv.Key)
		}
		seenKey[kv.Key] = true
		meta[i] = v
	}
	order := make([]int, len(tensors))
	seen := map[string]bool{}
	for i := range tensors {
		t := &tensors[i]
		if err := checkWriteTensor(t); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("safetensors: tensor %q: duplicate name", t.Name)
		}
		seen[t.Name] = true
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ta, tb := &tensors[a], &tensors[b]
		if c := cmp.Compare(dtypeRank[tb.DType], dtypeRank[ta.DType]); c != 0 {
			return c
		}
		return cmp.Compare(ta.Name, tb.Name)
	})

	h := []byte{'{'}
	if len(metadata) > 0 {
		h = appendJSONString(h, metadataKey)
		h = append(h, ':', '{')
		for i, kv := range metadata {
			if i > 0 {
				h = append(h, ',')
			}
			h = appendJSONString(h, kv.Key)
			h = append(h, ':')
			h = appendJSONString(h, meta[i])
		}
		h = append(h, '}')
	}
	var off int64
	for i, ti := range order {
		t := &tensors[ti]
		if i > 0 || len(metadata) > 0 {
			h = append(h, ',')
		}
		h = appendJSONString(h, t.Name)
		h = append(h, `:{"dtype":`...)
		h = appendJSONString(h, t.DType.String())
		h = append(h, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				h = append(h, ',')
			}
			h = strconv.AppendInt(h, d, 10)
		}
		h = append(h, `],"data_offsets":[`...)
		h = strconv.AppendInt(h, off, 10)
		h = append(h, ',')
		off += int64(len(t.Data))
		h = strconv.AppendInt(h, off, 10)
		h = append(h, ']', '}')
	}
	h = append(h, '}')
	for len(h)%headerAlign != 0 {
		h = append(h, ' ')
	}
	if len(h) > MaxHeaderSize {
		return fmt.Errorf("safetensors: header of %d bytes exceeds the limit of %d", len(h), MaxHeaderSize)
	}

	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := w.Write(n[:]); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	for _, ti := range order {
		if _, err := w.Write(tensors[ti].Data); err != nil {
			return fmt.Errorf("safetensors: write: %w", err)
		}
	}
	return nil
}

func checkWriteTensor(t *WriteTensor) error {
	if !utf8.ValidString(t.Name) {
		return fmt.Errorf("safetensors: tensor %q: name is not valid UTF-8", t.Name)
	}
	if t.Name == metadataKey {
		return fmt.Errorf("safetensors: tensor name %q is reserved", t.Name)
	}
	if !IsDType(t.DType) {
		return fmt.Errorf("safetensors: tensor %q: %v is not a safetensors dtype", t.Name, t.DType)
	}
	n := uint64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > 1<<63-1 {
			return fmt.Errorf("safetensors: tensor %q: shape %v overflows", t.Name, t.Shape)
		}
		n = lo
	}
	size, err := t.DType.ByteSizeBits(n)
	if err != nil {
		return fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
	}
	if uint64(len(t.Data)) != size {
		return fmt.Errorf("safetensors: tensor %q: %d bytes of data, but %s %v takes %d", t.Name, len(t.Data), t.DType, t.Shape, size)
	}
	return nil
}

// appendJSONString appends s as a JSON string, escaped like serde_json: '"', '\\', the
// short escapes \b \f \n \r \t, and \u00xx (lower-case hex) for other control characters.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
