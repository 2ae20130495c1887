//go:build arm64 && !purego

package kernels

// arm64 Advanced SIMD (NEON) kernels, hand-written Go assembly in neon_arm64.s: F32 (FMLA
// with many float32 partial sums), Q8_0 and Q4_0, Q4_K and Q6_K. Each quantized kernel
// exists twice, with SDOT (FEAT_DotProd, used when the CPU has it) and with
// SMULL/SADALP (any ARMv8.0 CPU). The integer sums of each block are exact; the float32
// block terms are accumulated in several partial sums with FMA, so the results differ
// from the pure-Go dots (ggml's order) by float32 rounding within the bounds the tests
// check.

//go:noescape
func dotF32NEON(w *byte, x *float32, n int) float32

//go:noescape
func dot4F32NEON(dst *[4]float32, w *byte, x0, x1, x2, x3 *float32, n int)

//go:noescape
func dotQ8_0SDOT(w *byte, a *q8Block, n int) float32

//go:noescape
func dotQ4_0SDOT(w *byte, a *q8Block, n int) float32

//go:noescape
func dot4Q8_0SDOT(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8Block, n int)

//go:noescape
func dot4Q4_0SDOT(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8Block, n int)

//go:noescape
func dotQ8_0NEON(w *byte, a *q8Block, n int) float32

//go:noescape
func dotQ4_0NEON(w *byte, a *q8Block, n int) float32

//go:noescape
func dot4Q8_0NEON(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8Block, n int)

//go:noescape
func dot4Q4_0NEON(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8Block, n int)

//go:noescape
func dotQ4_KSDOT(w *byte, a *q8KBlock, n int) float32

//go:noescape
func dot4Q4_KSDOT(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8KBlock, n int)

//go:noescape
func dotQ6_KSDOT(w *byte, a *q8KBlock, n int) float32

//go:noescape
func dot4Q6_KSDOT(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8KBlock, n int)

//go:noescape
func dotQ4_KNEON(w *byte, a *q8KBlock, n int) float32

//go:noescape
func dot4Q4_KNEON(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8KBlock, n int)

//go:noescape
func dotQ6_KNEON(w *byte, a *q8KBlock, n int) float32

//go:noescape
func dot4Q6_KNEON(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8KBlock, n int)

// The signatures of the assembly dots: n blocks (elements for F32), every pointer to the
// first of them.
type (
	q8Asm   func(w *byte, a *q8Block, n int) float32
	q8x4Asm func(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8Block, n int)
	qkAsm   func(w *byte, a *q8KBlock, n int) float32
	qkx4Asm func(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8KBlock, n int)
)

// neonQ8 adapts an assembly dot over blocks of bs weight bytes to dotQ8Func.
func neonQ8(f q8Asm, bs int) dotQ8Func {
	return func(w []byte, a []q8Block) float32 {
		n := len(a)
		if n == 0 {
			return 0
		}
		w = w[:bs*n]
		return f(&w[0], &a[0], n)
	}
}

func neonQ8x4(f q8x4Asm, bs int) dotQ8x4Func {
	return func(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8Block) {
		n := len(a0)
		if n == 0 {
			*dst = [4]float32{}
			return
		}
		w = w[:bs*n]
		a1, a2, a3 = a1[:n], a2[:n], a3[:n]
		f(dst, &w[0], &a0[0], &a1[0], &a2[0], &a3[0], n)
	}
}

func neonQK(f qkAsm, bs int) dotQKFunc {
	return func(w []byte, a []q8KBlock) float32 {
		n := len(a)
		if n == 0 {
			return 0
		}
		w = w[:bs*n]
		return f(&w[0], &a[0], n)
	}
}

func neonQKx4(f qkx4Asm, bs int) dotQKx4Func {
	return func(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8KBlock) {
		n := len(a0)
		if n == 0 {
			*dst = [4]float32{}
			return
		}
		w = w[:bs*n]
		a1, a2, a3 = a1[:n], a2[:n], a3[:n]
		f(dst, &w[0], &a0[0], &a1[0], &a2[0], &a3[0], n)
	}
}

func dotF32NEONGo(w []byte, x []float32) float32 {
	n := len(x)
	if n == 0 {
		return 0
	}
	w = w[:4*n]
	return dotF32NEON(&w[0], &x[0], n)
}

func dot4F32NEONGo(dst *[4]float32, w []byte, x0, x1, x2, x3 []float32) {
	n := len(x0)
	if n == 0 {
		*dst = [4]float32{}
		return
	}
	w = w[:4*n]
	x1, x2, x3 = x1[:n], x2[:n], x3[:n]
	dot4F32NEON(dst, &w[0], &x0[0], &x1[0], &x2[0], &x3[0], n)
}

// neonSet is one path's quantized dots.
type neonSet struct {
	q8_0, q4_0   dotQ8Func
	q8_0x4       dotQ8x4Func
	q4_0x4       dotQ8x4Func
	q4_K, q6_K   dotQKFunc
	q4_Kx4       dotQKx4Func
	q6_Kx4       dotQKx4Func
	needsDotProd bool
}

var (
	neonSDOT = neonSet{
		q8_0: neonQ8(dotQ8_0SDOT, 34), q4_0: neonQ8(dotQ4_0SDOT, 18),
		q8_0x4: neonQ8x4(dot4Q8_0SDOT, 34), q4_0x4: neonQ8x4(dot4Q4_0SDOT, 18),
		q4_K: neonQK(dotQ4_KSDOT, 144), q6_K: neonQK(dotQ6_KSDOT, 210),
		q4_Kx4: neonQKx4(dot4Q4_KSDOT, 144), q6_Kx4: neonQKx4(dot4Q6_KSDOT, 210),
		needsDotProd: true,
	}
	neonSMULL = neonSet{
		q8_0: neonQ8(dotQ8_0NEON, 34), q4_0: neonQ8(dotQ4_0NEON, 18),
		q8_0x4: neonQ8x4(dot4Q8_0NEON, 34), q4_0x4: neonQ8x4(dot4Q4_0NEON, 18),
		q4_K: neonQK(dotQ4_KNEON, 144), q6_K: neonQK(dotQ6_KNEON, 210),
		q4_Kx4: neonQKx4(dot4Q4_KNEON, 144), q6_Kx4: neonQKx4(dot4Q6_KNEON, 210),
	}
)

func init() {
	if !useNEON {
		return
	}
	dotF32, dot4F32 = dotF32NEONGo, dot4F32NEONGo
	s := &neonSMULL
	if useSDOT {
		s = &neonSDOT
	}
	dotQ8_0, dot4Q8_0 = s.q8_0, s.q8_0x4
	dotQ4_0, dot4Q4_0 = s.q4_0, s.q4_0x4
	dotQ4_K, dot4Q4_K = s.q4_K, s.q4_Kx4
	dotQ6_K, dot4Q6_K = s.q6_K, s.q6_Kx4
}
