// Package stats holds kensa's numerics: pure functions and small accumulators over float32
// slices, accumulated in float64. NaN and ±Inf are counted apart and never enter the moments,
// so one bad value cannot hide the distribution of the rest.
package stats

import "math"

// Moments accumulates count, mean, variance, minimum and maximum of a stream of values,
// plus the number of NaN and infinite values, which are excluded from everything else.
//
// It uses Welford's update within a batch and Chan et al.'s pairwise merge between batches:
//
//	n = na + nb,  δ = mb − ma,  mean = ma + δ·nb/n,  M2 = M2a + M2b + δ²·na·nb/n
//
// which keeps the variance accurate for long streams with a large mean, where the naive
// Σx² − n·mean² cancels catastrophically. The zero value is an empty accumulator.
type Moments struct {
	N        int64   // finite values
	Mean     float64 // mean of the finite values
	M2       float64 // sum of squared deviations from Mean
	Min, Max float64 // of the finite values (0 when N == 0)
	NaN      int64
	Inf      int64
}

// Add adds the values of xs.
func (m *Moments) Add(xs []float32) {
	var b Moments
	// Sum and sum of squares of deviations from a shift (the first finite value) in float64:
	// exact enough for float32 data and twice as fast as per-element Welford.
	var shift float64
	found := false
	var s, s2 float64
	lo, hi := math.Inf(1), math.Inf(-1)
	var n int64
	for _, x := range xs {
		v := float64(x)
		if math.IsNaN(v) {
			b.NaN++
			continue
		}
		if math.IsInf(v, 0) {
			b.Inf++
			continue
		}
		if !found {
			shift, found = v, true
		}
		d := v - shift
		s += d
		s2 += d * d
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
		n++
	}
	if n > 0 {
		b.N = n
		b.Mean = shift + s/float64(n)
		b.M2 = s2 - s*s/float64(n)
		if b.M2 < 0 {
			b.M2 = 0
		}
		b.Min, b.Max = lo, hi
	}
	m.Merge(b)
}

// Merge adds the values accumulated in o.
func (m *Moments) Merge(o Moments) {
	m.NaN += o.NaN
	m.Inf += o.Inf
	if o.N == 0 {
		return
	}
	if m.N == 0 {
		nan, inf := m.NaN, m.Inf
		*m = o
		m.NaN, m.Inf = nan, inf
		return
	}
	n := m.N + o.N
	d := o.Mean - m.Mean
	m.Mean += d * float64(o.N) / float64(n)
	m.M2 += o.M2 + d*d*float64(m.N)*float64(o.N)/float64(n)
	m.N = n
	m.Min = math.Min(m.Min, o.Min)
	m.Max = math.Max(m.Max, o.Max)
}

// Var returns the population variance M2/N (NaN when N == 0).
func (m *Moments) Var() float64 {
	if m.N == 0 {
		return math.NaN()
	}
	return m.M2 / float64(m.N)
}

// Std returns the population standard deviation sqrt(M2/N) (NaN when N == 0).
func (m *Moments) Std() float64 { return math.Sqrt(m.Var()) }

// Count returns every value seen: finite, NaN and infinite.
func (m *Moments) Count() int64 { return m.N + m.NaN + m.Inf }
