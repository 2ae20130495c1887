package llm

import (
	"github.com/kensa-scan/kensa/nn/kernels"

	"math"
	"sync"

	"github.com/x448/float16"
)

// GELU as llama.cpp's CPU backend computes it. ggml builds with GGML_GELU_FP16: its
// ggml_vec_gelu_f32 returns 0 for x ≤ -10 and x itself for x ≥ 10, and otherwise rounds x
// to float16 (round to nearest even) and looks the result up in a table of 65536 float16
// values, each the float32 tanh approximation of GELU at that float16 input rounded to
// float16. Imitating the table lands within a few 1e-4 of llama.cpp's logits where the
// exact function lands 2e-3 to 6e-3 away (the error is the table's, not llama.cpp's
// arithmetic's): an f32 input close to a float16 rounding boundary can still round the
// other way.

const (
	geluCoefA    = float32(0.044715)
	sqrt2OverPi  = float32(0.79788456080286535587989211986876)
	geluTableMin = -10
	geluTableMax = 10
)

var (
	geluOnce  sync.Once
	geluTable []float32 // by float16 bit pattern: float16(gelu32(float16 value)) as float32
)

// gelu32 is ggml_gelu_f32 in float32 steps: (0.5·x)·(1 + tanh((√(2/π)·x)·(1 + a·x·x))),
// with a·x·x + 1 fused into one multiply-add as GCC compiles it.
func gelu32(x float32) float32 {
	inner := float32(math.FMA(float64(geluCoefA*x), float64(x), 1))
	t := float32(math.Tanh(float64(sqrt2OverPi * x * inner)))
	return 0.5 * x * (1 + t)
}

func initGELUTable() {
	geluTable = make([]float32, 1<<16)
	for i := range geluTable {
		f := float16.Frombits(uint16(i)).Float32()
		geluTable[i] = float16.Fromfloat32(gelu32(f)).Float32()
	}
}

// geluTable16 applies llama.cpp's tabulated GELU in place.
func geluTable16(v []float32) {
	geluOnce.Do(initGELUTable)
	tab := geluTable
	for i, x := range v {
		switch {
		case x <= geluTableMin:
			v[i] = 0
		case x >= geluTableMax:
			// unchanged
		default:
			v[i] = tab[float16.Fromfloat32(x).Bits()]
		}
	}
}

// geluTanh applies the tanh approximation of GELU in place, in float64 (what PyTorch's
// gelu(approximate="tanh") computes for Hugging Face models).
func geluTanh(v []float32) {
	for i, x := range v {
		f := float64(x)
		v[i] = float32(0.5 * f * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(f+0.044715*f*f*f))))
	}
}

// silu applies x·sigmoid(x) in place.
func silu(v []float32) {
	for i, x := range v {
		v[i] = x / (1 + kernels.Exp(-x))
	}
}
