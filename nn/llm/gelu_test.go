package llm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// The tabulated GELU rounds its input to the nearest float16 (ties to even), as F16C's
// conversion does, returns the tabulated float16 value, and passes through outside ±10.
func TestGELUTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	xs := []float32{-10, -9.999, 0, 1e-8, -1e-8, 9.999, 10, 11, -11, 0.5, -0.5}
	for i := 0; i < 20000; i++ {
		xs = append(xs, float32(rng.NormFloat64()*3))
	}
	got := append([]float32(nil), xs...)
	geluTable16(got)
	for i, x := range xs {
		switch {
		case x <= -10:
			if got[i] != 0 {
				t.Fatalf("gelu(%v) = %v, want 0", x, got[i])
			}
			continue
		case x >= 10:
			if got[i] != x {
				t.Fatalf("gelu(%v) = %v, want x", x, got[i])
			}
			continue
		}
		h := float16.Fromfloat32(x)
		// nearest float16, ties to an even mantissa
		y := float64(h.Float32())
		for _, nb := range []uint16{h.Bits() + 1, h.Bits() - 1} {
			z := float64(float16.Frombits(nb).Float32())
			if math.IsNaN(z) || math.IsInf(z, 0) {
				continue
			}
			dy, dz := math.Abs(float64(x)-y), math.Abs(float64(x)-z)
			if dz < dy || dz == dy && h.Bits()&1 == 1 {
				t.Fatalf("%v rounds to float16 %v, %v is nearer or the even tie", x, y, z)
			}
		}
		want := float16.Fromfloat32(gelu32(h.Float32())).Float32()
		if got[i] != want {
			t.Fatalf("gelu(%v) = %v, want %v", x, got[i], want)
		}
		if d := math.Abs(float64(got[i]) - gelu64(float64(x))); d > 1e-3*math.Max(1, math.Abs(float64(x))) {
			t.Fatalf("gelu(%v) = %v, %.3g from the exact function", x, got[i], d)
		}
	}
}
