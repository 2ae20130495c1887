package safetensors_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
)

// fuzzSeeds returns generated files: valid ones of every dtype and the hostile table.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	var all []safetensors.WriteTensor
	for i, s := range samples() {
		wt := safetensors.WriteTensor{Name: fmt.Sprintf("t%d", i), DType: s.dtype, Shape: s.shape, Data: s.data}
		seeds = append(seeds, writeFile(t, []safetensors.WriteTensor{wt}, nil))
		all = append(all, wt)
	}
	seeds = append(seeds,
		writeFile(t, all, []formats.KV{{Key: "format", Value: "pt"}}),
		writeFile(t, nil, nil),
		writeFile(t, []safetensors.WriteTensor{{Name: "e", DType: formats.F4, Shape: []int64{0, 3}}, {Name: "s", DType: formats.F64, Shape: []int64{}, Data: make([]byte, 8)}}, nil),
		headerFile(`{"b":`+entry("F32", "[2]", 8, 16)+`,"a":`+entry("F32", "[2]", 0, 8)+`}`, make([]byte, 16)),
		headerFile(` {"a\u00e9":{"x":[{"y":null}],"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]}}`, make([]byte, 4)),
	)
	for _, h := range hostileCases() {
		if len(h.file) <= 4096 {
			seeds = append(seeds, h.file)
		}
	}
	return seeds
}

func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	if dir := realFilesDir(); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFile(t, b)
	})
}

// checkFile parses b and, when it is valid, checks every invariant of the result and
// exercises every accessor.
func checkFile(t *testing.T, b []byte) {
	size := int64(len(b))
	sf, err := parse(b)
	if err != nil {
		if sf != nil {
			t.Fatalf("NewFile returned a File and an error")
		}
		var fe *formats.FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("error %q (%T) is not a *formats.FormatError", err, err)
		}
		if fe.Offset < 0 || fe.Offset > size {
			t.Fatalf("error %q: offset %d outside the %d-byte file", err, fe.Offset, size)
		}
		n := 0
		for _, c := range []error{formats.ErrTruncated, formats.ErrTooLarge, formats.ErrInvalid, formats.ErrUnsupported} {
			if errors.Is(err, c) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %q wraps %d categories", err, n)
		}
		return
	}
	hdr := b[8:sf.DataOffset]
	if sf.DataOffset != 8+int64(sf.HeaderLen) || sf.Size != size || sf.HeaderLen > safetensors.MaxHeaderSize {
		t.Fatalf("DataOffset %d HeaderLen %d Size %d for a %d-byte file", sf.DataOffset, sf.HeaderLen, sf.Size, size)
	}

	// Differential: encoding/json must agree that the header is JSON and on its content
	// (it cannot see duplicates, which NewFile rejected).
	if !json.Valid(hdr) {
		t.Fatalf("NewFile accepted a header that encoding/json rejects: %q", hdr)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &top); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	if raw, ok := top["__metadata__"]; ok {
		var meta map[string]string
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatalf("encoding/json metadata: %v", err)
		}
		if len(meta) != len(sf.Metadata) {
			t.Fatalf("metadata: %d entries, encoding/json %d", len(sf.Metadata), len(meta))
		}
		for _, kv := range sf.Metadata {
			if v, ok := meta[kv.Key]; !ok || v != kv.Value {
				t.Fatalf("metadata %q = %q, encoding/json %q", kv.Key, kv.Value, v)
			}
		}
		delete(top, "__metadata__")
	} else if len(sf.Metadata) != 0 {
		t.Fatalf("metadata without a __metadata__ key")
	}
	checkSpans(t, b, sf.Metadata)
	if len(top) != len(sf.Tensors) {
		t.Fatalf("%d tensors, encoding/json sees %d keys", len(sf.Tensors), len(top))
	}

	dataSize := size - sf.DataOffset
	var covered int64
	for i := range sf.Tensors {
		tt := &sf.Tensors[i]
		var entry map[string]json.RawMessage
		if err := json.Unmarshal(top[tt.Name], &entry); err != nil {
			t.Fatalf("tensor %q: encoding/json: %v", tt.Name, err)
		}
		var dtype string
		var shape []int64
		var offs []int64
		if json.Unmarshal(entry["dtype"], &dtype) != nil || json.Unmarshal(entry["shape"], &shape) != nil || json.Unmarshal(entry["data_offsets"], &offs) != nil {
			t.Fatalf("tensor %q: encoding/json cannot read the entry %s", tt.Name, top[tt.Name])
		}
		if dtype != tt.DType.String() || !slices.Equal(shape, tt.Shape) || !slices.Equal(offs, []int64{tt.Begin, tt.End}) {
			t.Fatalf("tensor %q: %s %v [%d %d], encoding/json %s %v %v", tt.Name, tt.DType, tt.Shape, tt.Begin, tt.End, dtype, shape, offs)
		}
		if !safetensors.IsDType(tt.DType) {
			t.Fatalf("tensor %q: dtype %s", tt.Name, tt.DType)
		}
		if tt.Begin < 0 || tt.End < tt.Begin || tt.End > dataSize || tt.Offset != sf.DataOffset+tt.Begin || tt.Length != tt.End-tt.Begin {
			t.Fatalf("tensor %q: begin %d end %d offset %d length %d in a %d-byte data section", tt.Name, tt.Begin, tt.End, tt.Offset, tt.Length, dataSize)
		}
		n := tt.Elements()
		if n < 0 {
			t.Fatalf("tensor %q: %d elements", tt.Name, n)
		}
		if sz, err := tt.DType.ByteSizeBits(uint64(n)); err != nil || int64(sz) != tt.Length {
			t.Fatalf("tensor %q: %d elements of %s take %d bytes (%v), length %d", tt.Name, n, tt.DType, sz, err, tt.Length)
		}
		if got := sf.Tensor(tt.Name); got != tt {
			t.Fatalf("Tensor(%q) = %p, want %p", tt.Name, got, tt)
		}
		covered += tt.Length
	}
	if covered != dataSize {
		t.Fatalf("tensors cover %d of %d data bytes", covered, dataSize)
	}

	// The model view, and decoding of every small enough tensor.
	m, err := model(b)
	if err != nil {
		t.Fatalf("Model: %v", err)
	}
	if m.Parameters() < 0 || len(m.Tensors) != len(sf.Tensors) || len(m.Metadata) != len(sf.Metadata) {
		t.Fatalf("model: %d parameters, %d tensors, %d metadata", m.Parameters(), len(m.Tensors), len(m.Metadata))
	}
	for _, kv := range m.Metadata {
		if _, ok := m.Meta(kv.Key); !ok {
			t.Fatalf("Meta(%q) missing", kv.Key)
		}
	}
	var buf []float32
	for i := range m.Tensors {
		ti := &m.Tensors[i]
		if m.Tensor(ti.Name) == nil || m.File(ti.File) == nil {
			t.Fatalf("tensor %q or its file not found", ti.Name)
		}
		r, err := m.NewTensorReader(ti)
		if !ti.DType.Decodable() {
			if err == nil {
				t.Fatalf("NewTensorReader(%q, %s) succeeded", ti.Name, ti.DType)
			}
			continue
		}
		if err != nil {
			t.Fatalf("NewTensorReader(%q): %v", ti.Name, err)
		}
		n := ti.Elements()
		if n > 1<<20 {
			continue
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		if err := r.ReadElements(0, buf); err != nil {
			t.Fatalf("ReadElements(%q): %v", ti.Name, err)
		}
		if rl := ti.RowLen(); n > 0 && rl > 0 {
			if err := r.ReadRows(ti.Rows()-1, buf[:rl]); err != nil {
				t.Fatalf("ReadRows(%q): %v", ti.Name, err)
			}
		}
	}

	// Write reproduces the tensors.
	var wt []safetensors.WriteTensor
	for _, tt := range sf.Tensors {
		wt = append(wt, safetensors.WriteTensor{Name: tt.Name, DType: tt.DType, Shape: tt.Shape, Data: b[tt.Offset : tt.Offset+tt.Length]})
	}
	var out bytes.Buffer
	if err := safetensors.Write(&out, wt, sf.Metadata); err != nil {
		if len(hdr) > safetensors.MaxHeaderSize-1024 {
			return // re-encoding may grow a header that is at the limit
		}
		t.Fatalf("Write: %v", err)
	}
	g, err := parse(out.Bytes())
	if err != nil {
		t.Fatalf("re-written file: %v", err)
	}
	if len(g.Tensors) != len(sf.Tensors) || !slices.Equal(keyValues(g.Metadata), keyValues(sf.Metadata)) {
		t.Fatalf("re-written file has %d tensors and metadata %v, want %d and %v", len(g.Tensors), g.Metadata, len(sf.Tensors), sf.Metadata)
	}
	for _, gt := range g.Tensors {
		ft := sf.Tensor(gt.Name)
		if ft == nil || ft.DType != gt.DType || !slices.Equal(ft.Shape, gt.Shape) || !bytes.Equal(out.Bytes()[gt.Offset:gt.Offset+gt.Length], b[ft.Offset:ft.Offset+ft.Length]) {
			t.Fatalf("tensor %q differs after rewrite", gt.Name)
		}
	}
}

// TestFuzzSeeds runs the fuzz checks over the generated seeds in every test run.
func TestFuzzSeeds(t *testing.T) {
	for _, s := range fuzzSeeds(t) {
		checkFile(t, s)
	}
}

func BenchmarkNewFile(b *testing.B) {
	run := func(b *testing.B, data []byte) {
		f, err := parse(data)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(f.HeaderLen))
		b.ReportAllocs()
		r := bytes.NewReader(data)
		for b.Loop() {
			if _, err := safetensors.NewFile(r, int64(len(data))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(f.Tensors)), "tensors")
	}
	b.Run("diffusers-lora", func(b *testing.B) {
		dir := realFilesDir()
		if dir == "" {
			b.Skip("conformance corpus not found (KENSA_CORPUS)")
		}
		data, err := os.ReadFile(filepath.Join(dir, "diffusers-sd15-lora.pytorch_lora_weights.safetensors"))
		if err != nil {
			b.Skip(err)
		}
		run(b, data)
	})
	b.Run("generated-256", func(b *testing.B) {
		var wt []safetensors.WriteTensor
		for i := range 256 {
			wt = append(wt, safetensors.WriteTensor{
				Name:  fmt.Sprintf("down_blocks.%d.attentions.%d.transformer_blocks.0.attn1.processor.to_k_lora.down.weight", i/16, i%16),
				DType: formats.F32, Shape: []int64{4, 4}, Data: make([]byte, 64),
			})
		}
		run(b, writeFile(b, wt, []formats.KV{{Key: "format", Value: "pt"}}))
	})
}
