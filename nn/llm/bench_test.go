package llm

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

// BenchmarkMatVec measures float32 matrix-vector products (4096×4096, one worker) in
// GFLOP/s.
func BenchmarkMatVec(b *testing.B) {
	const K, N = 4096, 4096
	r := rand.New(rand.NewPCG(1, 1))
	w := make([]float32, K*N)
	x := make([]float32, K)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	y := make([]float32, N)
	m := &Model{Workers: 1}
	l := linear{w: newF32Matrix(w, N, K)}
	b.SetBytes(4 * K * N)
	for b.Loop() {
		l.mul(m.runner(new(faultBox)), y, x, 1)
	}
	b.ReportMetric(2*K*N*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func benchModel(b *testing.B, path string) {
	m, err := Open(path)
	if err != nil {
		b.Skip(err)
	}
	prompt := make([]int, 64)
	for i := range prompt {
		prompt[i] = 1 + i*7%(m.Config.Vocab-1)
	}
	for _, workers := range []int{1, 2} {
		m.Workers = workers
		b.Run("prompt64/workers="+string(rune('0'+workers)), func(b *testing.B) {
			for b.Loop() {
				if _, err := m.Forward(m.NewState(len(prompt)), prompt, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(prompt)*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
		b.Run("decode/workers="+string(rune('0'+workers)), func(b *testing.B) {
			// one token at a time, in sequences of up to 128 tokens (context 64-192)
			s := m.NewState(256)
			if _, err := m.Forward(s, prompt, false); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if s.Len() == 192 {
					b.StopTimer()
					s = m.NewState(256)
					m.Forward(s, prompt, false)
					b.StartTimer()
				}
				if _, err := m.Forward(s, []int{2 + i%100}, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkStories260K: prompt evaluation and decoding on the real stories260K model.
func BenchmarkStories260K(b *testing.B) {
	benchModel(b, filepath.Join(corpus.Dir(b, "realfiles"), "llamacpp-stories260K.gguf"))
}

// Benchmark134M: the same on the generated 134M-parameter model (go run ./testdata/gen
// -runtime -out DIR; KENSA_BENCH_134M=DIR), F32 and Q8_0 files.
func Benchmark134M(b *testing.B) {
	dir := os.Getenv("KENSA_BENCH_134M")
	if dir == "" {
		b.Skip("set KENSA_BENCH_134M to the directory written by go run ./testdata/gen -runtime")
	}
	for _, f := range []string{"llama-134m-f32.gguf", "llama-134m-q8_0.gguf", "llama-134m-q4_k_m.gguf"} {
		b.Run(f, func(b *testing.B) { benchModel(b, filepath.Join(dir, f)) })
	}
}
