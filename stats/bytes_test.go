package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestEntropyChiSquare(t *testing.T) {
	var uniform, constant, twoVals, random [256]int64
	for v := range 256 {
		uniform[v] = 100
	}
	constant[7] = 1000
	twoVals[0], twoVals[255] = 500, 500
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1<<16)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	ByteHistogram(&random, buf)
	tests := []struct {
		name          string
		h             []int64
		entropy, chi2 float64
		tol           float64
	}{
		{"uniform", uniform[:], 8, 0, 1e-12},
		{"constant", constant[:], 0, 1000, 1e-9}, // χ² = Σh²/e − n = n·(k−1)
		{"two values", twoVals[:], 1, 127000.0 / 255, 1e-9},
		{"random bytes", random[:], 8, 1, 0.2},
	}
	for _, tt := range tests {
		if got := Entropy(tt.h); math.Abs(got-tt.entropy) > math.Max(tt.tol, 0.01) {
			t.Errorf("%s: Entropy = %v, want %v", tt.name, got, tt.entropy)
		}
		if got := ChiSquareUniform(tt.h); math.Abs(got-tt.chi2) > tt.tol*math.Max(1, tt.chi2) {
			t.Errorf("%s: ChiSquareUniform = %v, want %v", tt.name, got, tt.chi2)
		}
	}
	var n int64
	for _, c := range random {
		n += c
	}
	if n != int64(len(buf)) {
		t.Errorf("ByteHistogram counted %d bytes, want %d", n, len(buf))
	}
	if !math.IsNaN(ChiSquareUniform(make([]int64, 256))) {
		t.Errorf("ChiSquareUniform of an empty histogram is not NaN")
	}
}

func TestAUROC(t *testing.T) {
	tests := []struct {
		pos, neg []float64
		want     float64
	}{
		{[]float64{3, 4}, []float64{1, 2}, 1},
		{[]float64{1, 2}, []float64{3, 4}, 0},
		{[]float64{1, 3}, []float64{2, 2}, 0.5},
		{[]float64{2}, []float64{2}, 0.5},
	}
	for _, tt := range tests {
		if got := AUROC(tt.pos, tt.neg); got != tt.want {
			t.Errorf("AUROC(%v, %v) = %v, want %v", tt.pos, tt.neg, got, tt.want)
		}
	}
	if !math.IsNaN(AUROC(nil, []float64{1})) {
		t.Errorf("AUROC with no positives is not NaN")
	}
}
