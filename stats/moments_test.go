package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestMoments(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		name              string
		xs                []float32
		n, nanN, infN     int64
		mean, std, lo, hi float64
	}{
		{"empty", nil, 0, 0, 0, math.NaN(), math.NaN(), 0, 0},
		{"one", []float32{3}, 1, 0, 0, 3, 0, 3, 3},
		{"simple", []float32{1, 2, 3, 4}, 4, 0, 0, 2.5, math.Sqrt(1.25), 1, 4},
		{"nonfinite excluded", []float32{1, nan, 3, inf, -inf}, 2, 1, 2, 2, 1, 1, 3},
		{"large offset", []float32{1e6 + 1, 1e6 + 2, 1e6 + 3}, 3, 0, 0, 1e6 + 2, math.Sqrt(2.0 / 3), 1e6 + 1, 1e6 + 3},
	}
	for _, tt := range tests {
		var m Moments
		m.Add(tt.xs)
		got := []float64{float64(m.N), float64(m.NaN), float64(m.Inf), m.Mean, m.Std(), m.Min, m.Max}
		want := []float64{float64(tt.n), float64(tt.nanN), float64(tt.infN), tt.mean, tt.std, tt.lo, tt.hi}
		for i := range got {
			if m.N == 0 && (i == 3 || i == 4) {
				if i == 4 && !math.IsNaN(got[i]) {
					t.Errorf("%s: std of nothing = %v, want NaN", tt.name, got[i])
				}
				continue
			}
			if math.Abs(got[i]-want[i]) > 1e-9*math.Max(1, math.Abs(want[i])) {
				t.Errorf("%s: field %d = %v, want %v", tt.name, i, got[i], want[i])
			}
		}
	}
}

// Merging the moments of pieces must equal the moments of the whole.
func TestMomentsMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	xs := make([]float32, 10007)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64()*3 + 100)
	}
	var whole Moments
	whole.Add(xs)
	var parts Moments
	for lo := 0; lo < len(xs); lo += 997 {
		var p Moments
		p.Add(xs[lo:min(lo+997, len(xs))])
		parts.Merge(p)
	}
	// reference: two-pass in float64
	var s float64
	for _, x := range xs {
		s += float64(x)
	}
	mean := s / float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (float64(x) - mean) * (float64(x) - mean)
	}
	for _, m := range []Moments{whole, parts} {
		if m.N != int64(len(xs)) || math.Abs(m.Mean-mean) > 1e-9*mean || math.Abs(m.M2-ss) > 1e-6*ss {
			t.Errorf("moments = n %d mean %v M2 %v, want n %d mean %v M2 %v", m.N, m.Mean, m.M2, len(xs), mean, ss)
		}
	}
}
