package stats

import (
	"math"
	"sort"
)

// Median returns the median of xs (the mean of the two middle values for an even count),
// ignoring NaN values; NaN when there are none. xs is not modified.
func Median(xs []float64) float64 {
	s := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return math.NaN()
	}
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MAD returns the median absolute deviation from the median, scaled by 1.4826 so that it
// estimates the standard deviation of normally distributed data:
//
//	MAD = 1.4826 · median_i |x_i − median(x)|
//
// NaN values are ignored; NaN when there are none.
func MAD(xs []float64) float64 {
	m := Median(xs)
	if math.IsNaN(m) {
		return m
	}
	d := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			d = append(d, math.Abs(x-m))
		}
	}
	return 1.4826 * Median(d)
}

// RobustZ returns (x − median) / MAD of x against the sample xs: how many robust standard
// deviations x lies from the bulk. A floor on the scale (minScale, in x's units) keeps
// near-constant samples from turning tiny differences into huge scores; ±Inf when the
// scale is still zero and x differs from the median.
func RobustZ(x float64, xs []float64, minScale float64) float64 {
	m, s := Median(xs), math.Max(MAD(xs), minScale)
	if s == 0 {
		switch {
		case x > m:
			return math.Inf(1)
		case x < m:
			return math.Inf(-1)
		}
		return 0
	}
	return (x - m) / s
}

func nan() float64 { return math.NaN() }
