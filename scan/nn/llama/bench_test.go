package llama

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kensa-scan/kensa/internal/corpus"
)

// workerCounts are the worker counts every benchmark runs with: one core and all cores.
func workerCounts() []int {
	if n := runtime.NumCPU(); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

func BenchmarkMatVec(b *testing.B) {
	for _, sz := range []struct{ n, k int }{{256, 768}, {2048, 768}, {768, 2048}} {
		r := rand.New(rand.NewPCG(1, 2))
		w := make([]float32, sz.n*sz.k)
		for i := range w {
			w[i] = r.Float32() - 0.5
		}
		x := make([]float32, sz.k)
		for i := range x {
			x[i] = r.Float32() - 0.5
		}
		y := make([]float32, sz.n)
		for _, workers := range workerCounts() {
			b.Run(fmt.Sprintf("%dx%d/workers=%d", sz.n, sz.k, workers), func(b *testing.B) {
				m := &Model{Workers: workers}
				b.SetBytes(int64(4 * len(w)))
				start := time.Now()
				for b.Loop() {
					m.matmul(y, x, w, 1, sz.k, sz.n)
				}
				b.ReportMetric(2*float64(sz.n*sz.k)*float64(b.N)/time.Since(start).Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// benchModels returns the models to benchmark: stories260K from the corpus and the files
// of $KENSA_BENCH_134M (a list separated like $PATH, made by internal/gen134m).
func benchModels(b *testing.B) map[string]string {
	ms := map[string]string{}
	if p := storiesPathOK(); p != "" {
		ms["stories260K"] = p
	}
	for _, p := range filepath.SplitList(os.Getenv("KENSA_BENCH_134M")) {
		if p != "" {
			ms[strings.TrimSuffix(filepath.Base(p), ".gguf")] = p
		}
	}
	if len(ms) == 0 {
		b.Skip("no models: corpus absent and KENSA_BENCH_134M unset")
	}
	return ms
}

func storiesPathOK() string {
	if r := corpus.Root(); r != "" {
		p := filepath.Join(r, "realfiles", "llamacpp-stories260K.gguf")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

var loaded = map[string]*Model{}

func loadBench(b *testing.B, path string) *Model {
	if m := loaded[path]; m != nil {
		return m
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.Logf("%s: %d parameters, %.1f MiB of float32 weights (heap grew %.1f MiB)", filepath.Base(path),
		m.Config.Params(), float64(m.Bytes())/(1<<20), float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20))
	loaded[path] = m
	return m
}

const (
	benchPrompt  = 128 // tokens of a batched prompt
	benchContext = 256 // decoding runs over positions benchPrompt/4 … benchContext
)

func benchIDs(n, vocab int) []int {
	r := rand.New(rand.NewPCG(3, 4))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 3 + r.IntN(vocab-3)
	}
	return ids
}

func BenchmarkDecode(b *testing.B) {
	for name, path := range benchModels(b) {
		for _, workers := range workerCounts() {
			b.Run(fmt.Sprintf("%s/workers=%d", name, workers), func(b *testing.B) {
				m := loadBench(b, path)
				m.Workers = workers
				ids := benchIDs(benchContext, m.Config.Vocab)
				s := m.NewState(benchContext)
				prime := func() {
					s.Reset()
					if _, err := m.Forward(s, ids[:benchPrompt/4], false); err != nil {
						b.Fatal(err)
					}
				}
				prime()
				var elapsed time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if s.Len() == s.Cap() {
						b.StopTimer()
						prime()
						b.StartTimer()
					}
					t0 := time.Now()
					if _, err := m.Forward(s, ids[s.Len():s.Len()+1], false); err != nil {
						b.Fatal(err)
					}
					elapsed += time.Since(t0)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tokens/s")
			})
		}
	}
}

func BenchmarkPrompt(b *testing.B) {
	for name, path := range benchModels(b) {
		for _, workers := range workerCounts() {
			b.Run(fmt.Sprintf("%s/workers=%d", name, workers), func(b *testing.B) {
				m := loadBench(b, path)
				m.Workers = workers
				ids := benchIDs(benchPrompt, m.Config.Vocab)
				s := m.NewState(benchPrompt)
				start := time.Now()
				for b.Loop() {
					s.Reset()
					if _, err := m.Forward(s, ids, false); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(benchPrompt*b.N)/time.Since(start).Seconds(), "tokens/s")
			})
		}
	}
}
