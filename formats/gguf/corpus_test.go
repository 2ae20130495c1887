package gguf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/internal/corpus"
)

// TestCorpusQuantBigEndian reads every llama.cpp-quantized corpus file through the reader,
// checks each tensor against the golden listing and hash, then rewrites the file big-endian
// (both detection rules) and checks that it decodes to the same bits: the reader, the row
// decoder and every type's byte-swap agree.
func TestCorpusQuantBigEndian(t *testing.T) {
	dir := corpus.Dir(t, "quant")
	files, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	if len(files) == 0 {
		t.Skip("no GGUF files in " + dir)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		exp, err := corpus.ReadQuantExpected(p)
		if err != nil {
			exp = &corpus.QuantExpected{} // source-f32.gguf has no golden listing
		}
		f, err := parse(b)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
		m := f.Model(formats.NewFile(p, bytes.NewReader(b), int64(len(b))))
		le := hashes(t, m)
		for _, et := range exp.Tensors {
			ti := m.Tensor(et.Name)
			if ti == nil {
				t.Errorf("%s: no tensor %q", filepath.Base(p), et.Name)
				continue
			}
			if ti.DType.String() != et.DType || ti.Offset != et.Offset || ti.Length != et.Length || !equalShape(ti.Shape, et.Shape) {
				t.Errorf("%s: %q = %s %v @%d+%d, want %s %v @%d+%d", filepath.Base(p), et.Name, ti.DType, ti.Shape, ti.Offset, ti.Length, et.DType, et.Shape, et.Offset, et.Length)
			}
			if le[et.Name] != et.SHA256 {
				t.Errorf("%s: %q (%s) decodes to sha256 %s, want %s", filepath.Base(p), et.Name, et.DType, le[et.Name], et.SHA256)
			}
		}
		// rewrite big-endian
		var wt []WriteTensor
		for i := range m.Tensors {
			ti := &m.Tensors[i]
			wt = append(wt, WriteTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: b[ti.Offset : ti.Offset+ti.Length]})
		}
		for _, opt := range []WriteOptions{{BigEndian: true}, {BigEndian: true, BEMagic: true}} {
			var buf bytes.Buffer
			if err := Write(&buf, m.Metadata, wt, &opt); err != nil {
				t.Fatalf("%s: Write big-endian: %v", filepath.Base(p), err)
			}
			bf, err := parse(buf.Bytes())
			if err != nil || !bf.BigEndian {
				t.Fatalf("%s: big-endian copy: %v (big-endian %v)", filepath.Base(p), err, bf != nil && bf.BigEndian)
			}
			bm := bf.Model(formats.NewFile(p, bytes.NewReader(buf.Bytes()), int64(buf.Len())))
			for name, h := range hashes(t, bm) {
				if h != le[name] {
					t.Errorf("%s: big-endian %q decodes differently", filepath.Base(p), name)
				}
			}
		}
	}
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hashes decodes every tensor row by row and returns the SHA-256 of its float32 values.
func hashes(t *testing.T, m *formats.Model) map[string]string {
	out := map[string]string{}
	for i := range m.Tensors {
		ti := &m.Tensors[i]
		rd, err := m.NewTensorReader(ti)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		row := make([]float32, ti.RowLen())
		var bb []byte
		for r := int64(0); r < ti.Rows(); r++ {
			if err := rd.ReadRows(r, row); err != nil {
				t.Fatalf("%q row %d: %v", ti.Name, r, err)
			}
			bb = bb[:0]
			for _, v := range row {
				bb = binary.LittleEndian.AppendUint32(bb, math.Float32bits(v))
			}
			h.Write(bb)
		}
		out[ti.Name] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}
