package stats

import "math"

// ByteHistogram counts the occurrences of each byte value in b.
func ByteHistogram(h *[256]int64, b []byte) {
	// Four interleaved tables break the store-to-load dependency when a value repeats.
	var c [4][256]int32
	i := 0
	for ; i+4 <= len(b) && i < 1<<30; i += 4 {
		c[0][b[i]]++
		c[1][b[i+1]]++
		c[2][b[i+2]]++
		c[3][b[i+3]]++
	}
	for ; i < len(b); i++ {
		h[b[i]]++
	}
	for v := 0; v < 256; v++ {
		h[v] += int64(c[0][v]) + int64(c[1][v]) + int64(c[2][v]) + int64(c[3][v])
	}
}

// Entropy returns the Shannon entropy, in bits per symbol, of a histogram:
//
//	H = −Σ p_i log2 p_i,  p_i = h_i / Σh
//
// 0 for an empty histogram; 8 for uniformly distributed bytes.
func Entropy(h []int64) float64 {
	var n int64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return 0
	}
	var e float64
	fn := float64(n)
	for _, c := range h {
		if c > 0 {
			p := float64(c) / fn
			e -= p * math.Log2(p)
		}
	}
	return e
}

// ChiSquareUniform returns Pearson's chi-square statistic of a histogram against the
// uniform distribution over its bins, divided by the degrees of freedom (len(h)−1), so
// that values near 1 mean "indistinguishable from uniform" whatever the number of bins:
//
//	χ²/df = Σ (h_i − n/k)² / (n/k) / (k − 1)
//
// NaN when the histogram is empty or has fewer than two bins.
func ChiSquareUniform(h []int64) float64 {
	k := len(h)
	var n int64
	for _, c := range h {
		n += c
	}
	if n == 0 || k < 2 {
		return math.NaN()
	}
	e := float64(n) / float64(k)
	var x float64
	for _, c := range h {
		d := float64(c) - e
		x += d * d / e
	}
	return x / float64(k-1)
}
