package ffn

import (
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

func benchmarkBatch(b *testing.B, file string, opt Options, workers int) {
	m := open(b, filepath.Join(corpus.Dir(b, "dev/digits"), file))
	n, err := Build(m, opt)
	if err != nil {
		b.Fatal(err)
	}
	xs := randInputs(1, 4096, n.InputSize(), 1)
	b.ResetTimer()
	for b.Loop() {
		n.ForwardBatch(xs, workers)
	}
	b.ReportMetric(float64(len(xs)*b.N)/b.Elapsed().Seconds(), "inputs/s")
}

// BenchmarkForwardBatch measures throughput in inputs per second on the digits networks,
// on one goroutine and on GOMAXPROCS.
func BenchmarkForwardBatch(b *testing.B) {
	for _, w := range []struct {
		name    string
		workers int
	}{{"1", 1}, {"all", 0}} {
		b.Run("mlp/workers="+w.name, func(b *testing.B) { benchmarkBatch(b, "mlp80_0_clean.safetensors", Options{}, w.workers) })
		b.Run("cnn/workers="+w.name, func(b *testing.B) { benchmarkBatch(b, "cnn8_0_clean.safetensors", digitsCNNOpt, w.workers) })
	}
}
