package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Encode then the bit-exact decoder gives back the values within the type's rounding: the
// RMS error relative to the values' RMS stays near step/√12 for the type's grid (a 4-bit
// grid over ±3σ: ≈ 0.1; a wrong layout lands near √2).
func TestEncodeRoundTrip(t *testing.T) {
	bounds := map[string]float64{"Q8_0": 0.01, "Q4_0": 0.16, "Q4_1": 0.16, "Q5_0": 0.08, "Q5_1": 0.08, "Q4_K": 0.16, "Q6_K": 0.04}
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 256*64)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 0.02)
		if i%997 == 0 {
			x[i] *= 8 // outliers, as real weights have
		}
	}
	for name, bound := range bounds {
		b, err := Encode(name, x)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := Lookup(name)
		if len(b) != len(x)/k.BlockElems*k.BlockBytes {
			t.Fatalf("%s: %d bytes", name, len(b))
		}
		y := make([]float32, len(x))
		k.Decode(y, b)
		var se, sx float64
		for i := range x {
			e := float64(y[i] - x[i])
			se += e * e
			sx += float64(x[i]) * float64(x[i])
		}
		rel := math.Sqrt(se / sx)
		t.Logf("%s: relative RMS error %.4f", name, rel)
		if !(rel < bound) {
			t.Errorf("%s: relative RMS error %.4f, want < %.2f", name, rel, bound)
		}
	}
	if _, err := Encode("Q4_0", x[:33]); err == nil {
		t.Error("a partial block was accepted")
	}
	if _, err := Encode("IQ2_XS", x); err == nil {
		t.Error("a type without an encoder was accepted")
	}
	// zeros stay zeros
	z := make([]float32, 256)
	for name := range bounds {
		b, _ := Encode(name, z)
		k, _ := Lookup(name)
		y := make([]float32, 256)
		k.Decode(y, b)
		for _, v := range y {
			if v != 0 {
				t.Errorf("%s: zeros decode to %v", name, v)
				break
			}
		}
	}
}
