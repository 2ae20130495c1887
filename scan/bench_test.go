package scan_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/scan"
)

// BenchmarkScan scans a generated 64 MiB BF16 llama-shaped safetensors model with every
// data-free detector (page-cached after the first iteration) and reports MB/s of model.
func BenchmarkScan(b *testing.B) {
	dir := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	bf16 := func(n int, std float64) []byte {
		out := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			u := math.Float32bits(float32(rng.NormFloat64() * std))
			binary.LittleEndian.PutUint16(out[2*i:], uint16(u>>16))
		}
		return out
	}
	var ts []safetensors.WriteTensor
	add := func(name string, rows, cols int, std float64) {
		ts = append(ts, safetensors.WriteTensor{Name: name, DType: formats.BF16, Shape: []int64{int64(rows), int64(cols)}, Data: bf16(rows*cols, std)})
	}
	add("model.embed_tokens.weight", 8192, 512, 0.02)
	for l := 0; l < 8; l++ {
		p := "model.layers." + strconv.Itoa(l) + "."
		add(p+"self_attn.q_proj.weight", 512, 512, 0.04)
		add(p+"self_attn.k_proj.weight", 512, 512, 0.04)
		add(p+"self_attn.v_proj.weight", 512, 512, 0.04)
		add(p+"self_attn.o_proj.weight", 512, 512, 0.04)
		add(p+"mlp.gate_proj.weight", 1536, 512, 0.04)
		add(p+"mlp.up_proj.weight", 1536, 512, 0.04)
		add(p+"mlp.down_proj.weight", 512, 1536, 0.025)
	}
	add("lm_head.weight", 8192, 512, 0.02)
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, nil); err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, hash := range []bool{false, true} {
		name := "no-hash"
		if hash {
			name = "sha256"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(buf.Len()))
			for b.Loop() {
				if _, err := scan.Run(context.Background(), []string{p}, scan.Options{NoHash: !hash}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
