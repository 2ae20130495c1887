package llama

import (
	"math"
	"sync"
)

// parallelMin is the number of multiply-adds below which a product runs on the calling
// goroutine: starting goroutines costs more than small products (stories260K's 64×64).
var parallelMin = 1 << 15

// parallel calls f on a partition of [0, n) into at most m.workers() contiguous ranges, one
// goroutine each (the last on the caller's), or on [0, n) at once when work (an estimate of
// the multiply-adds) is small.
func (m *Model) parallel(n, work int, f func(lo, hi int)) {
	w := min(m.workers(), n)
	if w <= 1 || work < parallelMin {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	wg.Add(w - 1)
	for i := 0; i < w-1; i++ {
		lo, hi := i*n/w, (i+1)*n/w
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	f((w-1)*n/w, n)
	wg.Wait()
}

// dot returns Σ a[i]·b[i] over len(a) elements (len(b) ≥ len(a)), accumulated in eight
// float32 lanes.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x := a[i : i+8 : i+8]
		y := b[i : i+8 : i+8]
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
		s4 += x[4] * y[4]
		s5 += x[5] * y[5]
		s6 += x[6] * y[6]
		s7 += x[7] * y[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// dot4 returns the dot products of w with x0…x3 (each at least len(w) long), loading each
// element of w once: a weight row is reused across four positions of a batch.
func dot4(w, x0, x1, x2, x3 []float32) (r0, r1, r2, r3 float32) {
	n := len(w)
	x0, x1, x2, x3 = x0[:n], x1[:n], x2[:n], x3[:n]
	var a0, a1, b0, b1, c0, c1, d0, d1 float32
	i := 0
	for ; i+2 <= n; i += 2 {
		ww := w[i : i+2 : i+2]
		p := x0[i : i+2 : i+2]
		q := x1[i : i+2 : i+2]
		r := x2[i : i+2 : i+2]
		s := x3[i : i+2 : i+2]
		a0 += ww[0] * p[0]
		a1 += ww[1] * p[1]
		b0 += ww[0] * q[0]
		b1 += ww[1] * q[1]
		c0 += ww[0] * r[0]
		c1 += ww[1] * r[1]
		d0 += ww[0] * s[0]
		d1 += ww[1] * s[1]
	}
	if i < n {
		a0 += w[i] * x0[i]
		b0 += w[i] * x1[i]
		c0 += w[i] * x2[i]
		d0 += w[i] * x3[i]
	}
	return a0 + a1, b0 + b1, c0 + c1, d0 + d1
}

// dot2x4 returns the dot products of the weight rows w0 and w1 (equal lengths) with x0…x3
// (each at least as long): a 2×4 register tile, so each loaded value feeds two or four
// multiply-adds.
func dot2x4(w0, w1, x0, x1, x2, x3 []float32) (r [8]float32) {
	n := len(w0)
	w1, x0, x1, x2, x3 = w1[:n], x0[:n], x1[:n], x2[:n], x3[:n]
	var a0, a1, a2, a3, b0, b1, b2, b3 float32
	for i, u := range w0 {
		v := w1[i]
		p, q, s, t := x0[i], x1[i], x2[i], x3[i]
		a0 += u * p
		a1 += u * q
		a2 += u * s
		a3 += u * t
		b0 += v * p
		b1 += v * q
		b2 += v * s
		b3 += v * t
	}
	return [8]float32{a0, a1, a2, a3, b0, b1, b2, b3}
}

// rowBlock is the number of weight rows a worker sweeps over all positions of a batch before
// moving on: 16 rows of 768–2048 floats stay in L2 while the batch streams through L1.
const rowBlock = 16

// matmul computes y[t·N+n] = Σ_k x[t·K+k]·w[n·K+k] for t < T and n < N: T positions of
// width K through an [N, K] weight, rows split over the workers. Blocks of two weight rows
// and four positions share their loads (dot2x4); a single position uses dot.
func (m *Model) matmul(y, x, w []float32, T, K, N int) {
	y, x, w = y[:T*N], x[:T*K], w[:N*K]
	m.parallel(N, T*N*K, func(lo, hi int) {
		for n0 := lo; n0 < hi; n0 += rowBlock {
			n1 := min(n0+rowBlock, hi)
			t := 0
			for ; t+4 <= T; t += 4 {
				x0, x1, x2, x3 := x[t*K:(t+1)*K], x[(t+1)*K:(t+2)*K], x[(t+2)*K:(t+3)*K], x[(t+3)*K:(t+4)*K]
				y0, y1, y2, y3 := y[t*N:(t+1)*N], y[(t+1)*N:(t+2)*N], y[(t+2)*N:(t+3)*N], y[(t+3)*N:(t+4)*N]
				n := n0
				for ; n+2 <= n1; n += 2 {
					r := dot2x4(w[n*K:(n+1)*K], w[(n+1)*K:(n+2)*K], x0, x1, x2, x3)
					y0[n], y1[n], y2[n], y3[n] = r[0], r[1], r[2], r[3]
					y0[n+1], y1[n+1], y2[n+1], y3[n+1] = r[4], r[5], r[6], r[7]
				}
				for ; n < n1; n++ {
					wn := w[n*K : (n+1)*K]
					y0[n], y1[n], y2[n], y3[n] = dot(wn, x0), dot(wn, x1), dot(wn, x2), dot(wn, x3)
				}
			}
			for ; t < T; t++ {
				xt := x[t*K : (t+1)*K]
				for n := n0; n < n1; n++ {
					y[t*N+n] = dot(w[n*K:(n+1)*K], xt)
				}
			}
		}
	})
}

// rmsnorm sets dst = x / sqrt(mean(x²) + eps) ⊙ w for one row (the sum of squares is
// accumulated in float64).
func rmsnorm(dst, x, w []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	r := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	w = w[:len(x)]
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = v * r * w[i]
	}
}

// silu returns x·σ(x).
func silu(x float32) float32 {
	return x / (1 + float32(math.Exp(float64(-x))))
}

// Argmax returns the index of the largest value of v (the first on ties; NaNs are skipped),
// or -1 when v is empty.
func Argmax(v []float32) int {
	best := -1
	for i, x := range v {
		if best < 0 && !math.IsNaN(float64(x)) || best >= 0 && x > v[best] {
			best = i
		}
	}
	return best
}
