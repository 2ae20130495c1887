package llm

import (
	"sync"

	"github.com/kensa-scan/kensa/formats"
)

// matrix is a weight matrix of rows × cols (outputs × inputs) in the form the runtime keeps
// it. Every matrix product of the forward pass, and every embedding lookup, goes through
// this interface, so the storage can change without touching the forward pass: f32Matrix
// holds float32 values; storedMatrix keeps a tensor in its stored ggml type, read in place
// from the file's mapping.
type matrix interface {
	rows() int
	cols() int
	// mul writes y[t*rows()+n] = Σ_k x[t*cols()+k]·W[n,k] for every position t < T and
	// every row n, splitting the rows over run's workers.
	mul(run runner, y, x []float32, T int)
	// row writes row n, as float32, to dst[:cols()] (embedding lookups).
	row(n int, dst []float32)
	// sub returns rows [lo, hi) as a matrix sharing the storage (halves of fused tensors,
	// one expert of a stacked tensor).
	sub(lo, hi int) matrix
}

// linear is one matrix product with its optional bias: y = x·Wᵀ + b.
type linear struct {
	w matrix
	b []float32 // nil without a bias
}

func (l *linear) out() int { return l.w.rows() }

// runner runs f over [0, n) in contiguous parts, possibly concurrently.
type runner func(n int, f func(lo, hi int))

// mul computes dst[T × out] = x[T × in]·Wᵀ (+ b), splitting the output rows across run's
// workers so that each weight row is read once for all T positions.
func (l *linear) mul(run runner, dst, x []float32, T int) {
	N, K := l.w.rows(), l.w.cols()
	dst, x = dst[:T*N], x[:T*K]
	if T*K*N < 1<<18 { // too little work to pay for goroutines
		run = serial
	}
	l.w.mul(run, dst, x, T)
	addBias(dst, l.b, T)
}

// f32Matrix is a row-major float32 matrix.
type f32Matrix struct {
	w    []float32 // [n × k]
	n, k int
}

func newF32Matrix(w []float32, n, k int) *f32Matrix {
	return &f32Matrix{w: w[: n*k : n*k], n: n, k: k}
}

func (m *f32Matrix) rows() int { return m.n }
func (m *f32Matrix) cols() int { return m.k }

func (m *f32Matrix) row(n int, dst []float32) { copy(dst[:m.k], m.w[n*m.k:(n+1)*m.k]) }

func (m *f32Matrix) sub(lo, hi int) matrix {
	return newF32Matrix(m.w[lo*m.k:hi*m.k], hi-lo, m.k)
}

func (m *f32Matrix) mul(run runner, y, x []float32, T int) {
	run(m.n, func(lo, hi int) { m.mulRows(y, x, T, lo, hi) })
}

// rowBlock is the number of weight rows a worker sweeps over all positions of a batch
// before moving on: 16 rows of 768-2048 floats stay in L2 while the batch streams through L1.
const rowBlock = 16

// mulRows: blocks of two weight rows and four positions share their loads (dot2x4); the
// remaining positions use dot.
func (m *f32Matrix) mulRows(y, x []float32, T, lo, hi int) {
	K, N, w := m.k, m.n, m.w
	y, x = y[:T*N], x[:T*K]
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
				y0[n], y1[n], y2[n], y3[n] = dot(x0, wn), dot(x1, wn), dot(x2, wn), dot(x3, wn)
			}
		}
		for ; t < T; t++ {
			xt := x[t*K : (t+1)*K]
			for n := n0; n < n1; n++ {
				y[t*N+n] = dot(xt, w[n*K:(n+1)*K])
			}
		}
	}
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

// dot returns Σ a[i]·b[i] with eight independent accumulators.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
		s4 += aa[4] * bb[4]
		s5 += aa[5] * bb[5]
		s6 += aa[6] * bb[6]
		s7 += aa[7] * bb[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

func addBias(a, b []float32, T int) {
	if b == nil {
		return
	}
	n := len(b)
	for t := 0; t < T; t++ {
		r := a[t*n : (t+1)*n]
		for i := range r {
			r[i] += b[i]
		}
	}
}

func serial(n int, f func(lo, hi int)) { f(0, n) }

// faultBox keeps the first memory fault of a forward pass's workers.
type faultBox struct {
	mu  sync.Mutex
	err error
}

func (b *faultBox) set(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

func (b *faultBox) get() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// runner returns the parallel runner of one forward pass: f over [0, n) in contiguous
// parts, one per worker, the calling goroutine taking the first. The other workers read
// the mapped weights under formats.Guard, and their faults go to fe (the calling
// goroutine is guarded by the forward pass itself).
func (m *Model) runner(fe *faultBox) runner { return newRunner(max(m.Workers, 1), m.path, fe) }

func newRunner(w int, path string, fe *faultBox) runner {
	return func(n int, f func(lo, hi int)) {
		if w == 1 || n < 2*w {
			f(0, n)
			return
		}
		var wg sync.WaitGroup
		for i := 1; i < w; i++ {
			lo, hi := i*n/w, (i+1)*n/w
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := formats.Guard(path, func() error { f(lo, hi); return nil }); err != nil {
					fe.set(err)
				}
			}()
		}
		f(0, n/w)
		wg.Wait()
	}
}
