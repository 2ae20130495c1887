package scan_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/all"
)

// FuzzScan runs every detector on arbitrary GGUF bytes: whatever a file holds (NaN,
// aliasing tensors, odd shapes, hostile metadata), a scan ends with a report and no panic.
func FuzzScan(f *testing.F) {
	ts := llamaLike(9)[:5]
	var buf bytes.Buffer
	kvs := []formats.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "tokenizer.chat_template", Value: "{% for m in messages %}{% if 'x' in m['content'] %}hi{% endif %}{% endfor %}"},
		{Key: "tokenizer.ggml.tokens", Value: []string{"a", "b", "\u202e"}},
	}
	if err := gguf.Write(&buf, kvs, ts, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	small := []gguf.WriteTensor{
		{Name: "fc1.weight", DType: formats.F32, Shape: []int64{4, 8}, Data: f32(weights(1, 32, 1))},
		{Name: "fc1.bias", DType: formats.F32, Shape: []int64{4}, Data: f32(weights(2, 4, 1))},
		{Name: "fc2.weight", DType: formats.F16, Shape: []int64{3, 4}, Data: make([]byte, 24)},
		{Name: "fc2.bias", DType: formats.F32, Shape: []int64{3}, Data: f32([]float32{1, 2, 3})},
	}
	buf.Reset()
	if err := gguf.Write(&buf, nil, small, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		p := filepath.Join(dir, "f.gguf")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rep, err := scan.Run(context.Background(), []string{p}, scan.Options{Jobs: 2, NoHash: true})
		if err != nil || len(rep.Targets) != 1 {
			t.Fatalf("scan: %v (%d targets)", err, len(rep.Targets))
		}
		tg := rep.Targets[0]
		if tg.Risk.Score < 0 || tg.Risk.Score > 1 {
			t.Fatalf("risk %v", tg.Risk.Score)
		}
		for _, fd := range tg.Findings {
			if fd.Location.ByteOffset < 0 || fd.Location.ByteLength < 0 || fd.Location.ByteOffset+fd.Location.ByteLength > int64(len(b)) && fd.Location.File == p {
				t.Fatalf("finding outside the file: %+v", fd)
			}
		}
	})
}
