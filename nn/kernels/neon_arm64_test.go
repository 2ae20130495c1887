//go:build arm64 && !purego

package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/kensa-scan/kensa/formats"
	"golang.org/x/sys/cpu"
)

// The assembly reads the activation blocks at fixed offsets (the Q8_* and QK_* constants
// of neon_arm64.s).
func TestNEONOffsets(t *testing.T) {
	var b q8Block
	var k q8KBlock
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"q8Block.d", unsafe.Offsetof(b.d), 64},
		{"q8Block.qs", unsafe.Offsetof(b.qs), 76},
		{"sizeof q8Block", unsafe.Sizeof(b), 112},
		{"q8KBlock.d", unsafe.Offsetof(k.d), 512},
		{"q8KBlock.bsums", unsafe.Offsetof(k.bsums), 516},
		{"q8KBlock.qs", unsafe.Offsetof(k.qs), 548},
		{"sizeof q8KBlock", unsafe.Sizeof(k), 808},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, neon_arm64.s assumes %d", c.name, c.got, c.want)
		}
	}
}

// neonPaths are the two sets of quantized kernels; the SDOT one runs only on CPUs with
// FEAT_DotProd (under qemu: QEMU_CPU=max; QEMU_CPU=cortex-a53 has none).
func neonPaths(t *testing.T) []struct {
	name string
	s    *neonSet
} {
	if !cpu.ARM64.HasASIMD {
		t.Skip("no Advanced SIMD")
	}
	p := []struct {
		name string
		s    *neonSet
	}{{"SMULL", &neonSMULL}}
	if cpu.ARM64.HasASIMDDP {
		p = append(p, struct {
			name string
			s    *neonSet
		}{"SDOT", &neonSDOT})
	} else {
		t.Log("CPU without SDOT: only the SMULL/SADALP path is tested")
	}
	return p
}

// neonDots returns the single and four-row dots of typ in s (through the adapters of
// dotQ8Func... to a common form on *Activations) and the pure-Go single dot.
func neonDots(s *neonSet, typ formats.DType) (one func(w []byte, a *Activations) float32,
	four func(dst *[4]float32, w []byte, a [4]*Activations), ref func(w []byte, a *Activations) float32) {
	q8 := func(f dotQ8Func, f4 dotQ8x4Func, g dotQ8Func) {
		one = func(w []byte, a *Activations) float32 { return f(w, a.q8) }
		four = func(dst *[4]float32, w []byte, a [4]*Activations) { f4(dst, w, a[0].q8, a[1].q8, a[2].q8, a[3].q8) }
		ref = func(w []byte, a *Activations) float32 { return g(w, a.q8) }
	}
	qk := func(f dotQKFunc, f4 dotQKx4Func, g dotQKFunc) {
		one = func(w []byte, a *Activations) float32 { return f(w, a.q8k) }
		four = func(dst *[4]float32, w []byte, a [4]*Activations) { f4(dst, w, a[0].q8k, a[1].q8k, a[2].q8k, a[3].q8k) }
		ref = func(w []byte, a *Activations) float32 { return g(w, a.q8k) }
	}
	switch typ {
	case formats.Q8_0:
		q8(s.q8_0, s.q8_0x4, dotQ8_0Go)
	case formats.Q4_0:
		q8(s.q4_0, s.q4_0x4, dotQ4_0Go)
	case formats.Q4_K:
		qk(s.q4_K, s.q4_Kx4, dotQ4_KGo)
	case formats.Q6_K:
		qk(s.q6_K, s.q6_Kx4, dotQ6_KGo)
	default:
		panic("no NEON kernel for " + typ.String())
	}
	return one, four, ref
}

var neonTypes = []formats.DType{formats.Q8_0, formats.Q4_0, formats.Q4_K, formats.Q6_K}

// extremeRow is randomRow with every byte but the binary16 scales set to fill (quants at
// their extremes or zero; for the k-quants the sub-block scales too).
func extremeRow(r *rand.Rand, typ formats.DType, cols int, fill byte) []byte {
	w := randomRow(r, typ, cols)
	bb := typ.BlockBytes()
	for blk := 0; blk < len(w)/bb; blk++ {
		b := w[blk*bb : (blk+1)*bb]
		keep := map[int]bool{}
		for _, off := range scaleFields[typ] {
			keep[off], keep[off+1] = true, true
		}
		for i := range b {
			if !keep[i] {
				b[i] = fill
			}
		}
	}
	return w
}

// extremeActs returns ±1 activations (every quant ±127), or all +1.
func extremeActs(r *rand.Rand, n int, signs bool) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = 1
		if signs && r.IntN(2) == 0 {
			x[i] = -1
		}
	}
	return x
}

// checkQuant holds got to the error bound of the assembly dots against the float64 dot of
// the decoded weights with the dequantized activations. The integer sum of each block is
// exact (SDOT, or SMULL products of at most 128·127 < 2^15 paired by SADALP into int32;
// |Σ per block| < 2^31). Each block term then takes at most 4 roundings of its own (dx·dy,
// dmin·dy, the float32 conversion of the integer sum, and in dot4Q4_K the product
// summ·(dmin·dy) and the fused difference of the two parts; the other products are fused
// into the accumulation) and passes through the additions of its partial sum: at most
// nb in all (Q4_K's two sums and their difference: nb + 1 with 2 own roundings; Q8_0's
// four lanes and scalar tail: nb/4 + 3 with 1). Every term thus sees at most nb + 4
// roundings, and the decoder's own rounding of the weights adds 2 as in
// TestQuantizedDots: |error| ≤ (nb + 6)·ε·mag, with mag the Σ|block terms| bound of the
// references (to first order, as in TestQuantizedDots: (nb + 6)·ε < 2^-16 for these rows).
func checkQuant(t *testing.T, what string, typ formats.DType, got float32, w []byte, a *Activations, nb int) (ratio, bound float64) {
	t.Helper()
	_, mag := refDot(typ, w, a)
	e, _ := dot64(decodeRow(typ, w, a.Len()), dequantActs(typ, a))
	bound = float64(nb+6)*eps*mag + 1e-30
	d := math.Abs(float64(got) - e)
	if !(d <= bound) {
		t.Fatalf("%s: %v, want %v (|diff| %g > bound %g)", what, got, e, d, bound)
	}
	return d / bound, bound
}

func TestNEONQuantDots(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, p := range neonPaths(t) {
		for _, typ := range neonTypes {
			t.Run(p.name+"/"+typ.String(), func(t *testing.T) {
				one, four, goDot := neonDots(p.s, typ)
				be := typ.BlockElems()
				counts := []int{1, 2, 3, 4, 5, 7, 8, 9, 31, 2048 / 32, 5632 / 32}
				if be == 256 {
					counts = []int{1, 2, 3, 4, 5, 2048 / 256, 5632 / 256}
				}
				worst := 0.0
				for _, nb := range counts {
					cols := nb * be
					for trial := 0; trial < 8; trial++ {
						var w []byte
						switch trial {
						case 0:
							w = extremeRow(r, typ, cols, 0xff)
						case 1:
							w = extremeRow(r, typ, cols, 0x80)
						case 2:
							w = extremeRow(r, typ, cols, 0x00)
						case 3:
							w = extremeRow(r, typ, cols, 0x7f)
						default:
							w = randomRow(r, typ, cols)
						}
						var acts [4]*Activations
						for i := range acts {
							var x []float32
							switch {
							case trial < 4 && i < 2:
								x = extremeActs(r, cols, i == 0)
							default:
								x = randomActs(r, cols)
							}
							acts[i] = Prepare(x, typ)
						}
						var out [4]float32
						four(&out, w, acts)
						for i, a := range acts {
							got := one(w, a)
							r1, bound := checkQuant(t, "single", typ, got, w, a, nb)
							r4, _ := checkQuant(t, "four-row", typ, out[i], w, a, nb)
							worst = max(worst, r1, r4)
							// the pure-Go dot is within the same bound of the exact value
							if g := goDot(w, a); !(math.Abs(float64(got)-float64(g)) <= 2*bound) {
								t.Fatalf("single %v, pure Go %v: further apart than twice the bound %g", got, g, bound)
							}
						}
					}
				}
				t.Logf("largest |error|/bound %.3g", worst)
			})
		}
	}
}

// TestNEONQuantSpecial: zero rows give +0, NaN scales NaN, infinite scales a non-finite
// result, an activation block with a NaN (NaN d) NaN; in every lane of the four-row dots.
func TestNEONQuantSpecial(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, p := range neonPaths(t) {
		for _, typ := range neonTypes {
			one, four, _ := neonDots(p.s, typ)
			be, bb := typ.BlockElems(), typ.BlockBytes()
			for _, nb := range []int{1, 3, 6} {
				cols := nb * be
				var acts [4]*Activations
				for i := range acts {
					acts[i] = Prepare(randomActs(r, cols), typ)
				}
				var out [4]float32
				zero := make([]byte, nb*bb)
				four(&out, zero, acts)
				for i, a := range acts {
					if v := one(zero, a); v != 0 || math.Signbit(float64(v)) || out[i] != 0 || math.Signbit(float64(out[i])) {
						t.Fatalf("%s %v: zero row gives %v, four-row %v", p.name, typ, v, out[i])
					}
				}
				for _, off := range scaleFields[typ] {
					for _, h := range []uint16{0x7e00, 0x7c01, 0x7c00, 0xfc00} {
						w := randomRow(r, typ, cols)
						binary.LittleEndian.PutUint16(w[(nb-1)*bb+off:], h)
						four(&out, w, acts)
						for i, a := range acts {
							for _, v := range []float32{one(w, a), out[i]} {
								f := float64(v)
								if h&0x3ff != 0 && !math.IsNaN(f) || !math.IsNaN(f) && !math.IsInf(f, 0) {
									// a zero integer sum times an infinite scale is NaN, else ±Inf
									t.Fatalf("%s %v: scale %#04x at %d gives %v", p.name, typ, h, off, v)
								}
							}
						}
					}
				}
				w := randomRow(r, typ, cols)
				x := randomActs(r, cols)
				x[cols-1] = float32(math.NaN())
				bad := Prepare(x, typ)
				four(&out, w, [4]*Activations{acts[0], bad, acts[2], acts[3]})
				if v := one(w, bad); !math.IsNaN(float64(v)) || !math.IsNaN(float64(out[1])) {
					t.Fatalf("%s %v: NaN activation gives %v, four-row %v", p.name, typ, v, out[1])
				}
				for _, i := range []int{0, 2, 3} {
					if math.IsNaN(float64(out[i])) {
						t.Fatalf("%s %v: NaN in lane 1 leaked into lane %d", p.name, typ, i)
					}
				}
			}
		}
	}
}

// F32: in dotF32NEON each of the 32 lanes of partial sums adds at most n/32 + 7 products
// by FMA (the loop of 32, then up to seven steps of four into V0), five additions combine
// the lanes and at most 3 FMAs add the last n mod 4 products; in dot4F32NEON each row's 16
// lanes add at most n/16 + 3 products, then 4 additions and 3 FMAs. So every product
// passes through at most k = n/16 + 15 roundings and |error| ≤ γ_k·Σ|w_i·x_i| with
// γ_k = kε/(1-kε) < (k+1)·ε here, plus 2^-140 for subnormal products.
func f32Bound(n int, abs float64) float64 { return (float64(n)/16+16)*eps*abs + 0x1p-140 }

func TestNEONF32(t *testing.T) {
	if !cpu.ARM64.HasASIMD {
		t.Skip("no Advanced SIMD")
	}
	r := rand.New(rand.NewPCG(25, 26))
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 256, 1000, 2048, 5632} {
		for trial := 0; trial < 6; trial++ {
			w := randomRow(r, formats.F32, n)
			wf := decodeRow(formats.F32, w, n)
			var xs [4][]float32
			for i := range xs {
				xs[i] = randomActs(r, n)
				if trial == 0 { // equal signs: no cancellation
					for j := range xs[i] {
						xs[i][j] = float32(math.Abs(float64(xs[i][j]))) * float32(math.Copysign(1, float64(wf[j])))
					}
				}
			}
			var out [4]float32
			dot4F32NEONGo(&out, w, xs[0], xs[1], xs[2], xs[3])
			for i, x := range xs {
				e, abs := dot64(wf, x)
				b := f32Bound(n, abs)
				for _, v := range []float32{dotF32NEONGo(w, x), out[i]} {
					if d := math.Abs(float64(v) - e); !(d <= b) {
						t.Fatalf("n %d: %v, want %v (|diff| %g > %g)", n, v, e, d, b)
					}
				}
			}
		}
		// NaN in the last element (the scalar tail) and in the first (the vector part)
		for _, at := range []int{0, n - 1} {
			w := randomRow(r, formats.F32, n)
			xs := [4][]float32{randomActs(r, n), randomActs(r, n), randomActs(r, n), randomActs(r, n)}
			xs[2][at] = float32(math.NaN())
			var out [4]float32
			dot4F32NEONGo(&out, w, xs[0], xs[1], xs[2], xs[3])
			if v := dotF32NEONGo(w, xs[2]); !math.IsNaN(float64(v)) || !math.IsNaN(float64(out[2])) || math.IsNaN(float64(out[1])) {
				t.Fatalf("n %d NaN at %d: %v, four-row %v", n, at, v, out)
			}
		}
	}
}
