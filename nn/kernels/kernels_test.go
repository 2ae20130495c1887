package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/quant"
	"github.com/x448/float16"
)

// Error bounds (ε = 2^-24, the float32 unit roundoff).
//
// Integer path (kernel vs Σ w_i·a_i in float64, w_i the weights as formats decodes them and
// a_i the activations dequantized from their blocks): the integer sums are exact, so the
// kernel's error is the float32 rounding of at most 4 operations per block term, the
// float32 sum of nb block terms (γ_nb), and the decoder's own rounding of w_i (at most 2
// roundings of the scale and min parts); all are relative to mag = Σ_i (|s_i|+|m_i|)·|a_i|
// (w_i = s_i − m_i): bound2 = (nb + 6)·ε·mag. Q4_1 and Q5_1 add ggml's rounding of the
// Q8_1 sum s = binary16(d·Σq) (d before its own rounding to binary16): per block
// |m|·(|Σq|·d·(2·2^-11 + ε) + 2^-25).
//
// Activation quantization (kernel vs Σ w_i·x_i with the original float32 x): add
// |Σ w_i·(x_i − a_i)| ≤ Σ_blocks δ·Σ_{i∈block} |w_i| where δ bounds |x_i − a_i| in the block:
//   - Q8_0/Q8_1 (d = amax/127, q = round(x·(1/d)), a = binary16(d)·q): the rounding to an
//     integer is at most 1/2, the float32 products and quotient add 382ε (|x/d| ≤ 127),
//     and the binary16 scale is off by at most 2^-11·d (plus 2^-25 if subnormal), times
//     |q| ≤ 127: δ = d·(1/2 + 382ε + 127·2^-11) + 127·2^-25 ≈ 0.562·d.
//   - Q8_K (iscale = −127/max, q = round(iscale·x), d = 1/iscale, float32): δ = |d|·(1/2 + 256ε).
// With d/2 alone (the brief's Σ|w_i|·d/2) the binary16 rounding of d would not be covered.
//
// Float types (F32, F16, BF16 and the fallback): each product is rounded to float32 (ε),
// sums are in float64 and the result is rounded once: bound = 2ε·Σ|w_i·x_i| + 2^-140.

const eps = 1.0 / (1 << 24)

var quantTypes = []formats.DType{
	formats.Q8_0, formats.Q4_0, formats.Q4_1, formats.Q5_0, formats.Q5_1,
	formats.Q2_K, formats.Q3_K, formats.Q4_K, formats.Q5_K, formats.Q6_K,
}

var floatTypes = []formats.DType{formats.F32, formats.F16, formats.BF16}

// fallbackTypes are decodable ggml types without a dedicated kernel.
var fallbackTypes = []formats.DType{
	formats.Q8_1, formats.Q8_K, formats.IQ2_XXS, formats.IQ2_XS, formats.IQ2_S, formats.IQ3_XXS,
	formats.IQ3_S, formats.IQ1_S, formats.IQ1_M, formats.IQ4_NL, formats.IQ4_XS, formats.TQ1_0,
	formats.TQ2_0, formats.MXFP4, formats.NVFP4, formats.Q1_0, formats.Q2_0, formats.F64,
	formats.F8_E4M3, formats.I8,
}

// scaleFields lists the byte offsets of the binary16 scale fields (d, and m or dmin) of a
// quantized block.
var scaleFields = map[formats.DType][]int{
	formats.Q8_0: {0}, formats.Q4_0: {0}, formats.Q4_1: {0, 2}, formats.Q5_0: {0}, formats.Q5_1: {0, 2},
	formats.Q2_K: {80, 82}, formats.Q3_K: {108}, formats.Q4_K: {0, 2}, formats.Q5_K: {0, 2},
	formats.Q6_K: {208},
}

func putH(b []byte, v float32) {
	binary.LittleEndian.PutUint16(b, float16.Fromfloat32(v).Bits())
}

// randomRow returns cols elements of type t: random quant bytes with binary16 scales
// drawn from ±[2^-12, 2^-3] (both signs: any half is a valid scale), random finite values
// for the float types, random bytes for the fallback types.
func randomRow(r *rand.Rand, t formats.DType, cols int) []byte {
	be, bb := t.BlockElems(), t.BlockBytes()
	b := make([]byte, cols/be*bb)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	switch t {
	case formats.F32:
		for i := 0; i < cols; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(r.NormFloat64())))
		}
	case formats.F16:
		for i := 0; i < cols; i++ {
			putH(b[2*i:], float32(r.NormFloat64()))
		}
	case formats.BF16:
		for i := 0; i < cols; i++ {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(float32(r.NormFloat64()))>>16))
		}
	case formats.F64:
		for i := 0; i < cols; i++ {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(r.NormFloat64()))
		}
	}
	if fs, ok := scaleFields[t]; ok {
		for blk := 0; blk < len(b)/bb; blk++ {
			for _, off := range fs {
				v := float32(math.Ldexp(0.5+r.Float64()/2, -2-r.IntN(10)))
				if r.IntN(4) == 0 {
					v = -v
				}
				putH(b[blk*bb+off:], v)
			}
		}
	}
	return b
}

// tameRow is randomRow redrawn until the row decodes to values below 1e20 (random bytes
// of Q8_K or F64 can hold scales near the float32 limit, where the float32 products
// overflow and the float bound does not hold).
func tameRow(r *rand.Rand, t formats.DType, cols int) []byte {
	b := randomRow(r, t, cols)
	be, bb := t.BlockElems(), t.BlockBytes()
	y := make([]float32, be)
	for i := 0; i < len(b); i += bb {
		for {
			t.Decode(y, b[i:i+bb])
			ok := true
			for _, v := range y {
				ok = ok && math.Abs(float64(v)) < 1e20
			}
			if ok {
				break
			}
			for j := i; j < i+bb; j++ {
				b[j] = byte(r.Uint32())
			}
		}
	}
	return b
}

// randomActs returns n activations: normal, with a few outliers, some all-zero blocks of
// 32 and occasional exact ties for the rounding (values k·amax/254).
func randomActs(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
		switch r.IntN(50) {
		case 0:
			x[i] *= 30
		case 1:
			x[i] = 0
		}
	}
	for b := 0; b+32 <= n; b += 32 {
		if r.IntN(16) == 0 {
			clear(x[b : b+32])
		}
	}
	return x
}

func decodeRow(t formats.DType, w []byte, cols int) []float32 {
	y := make([]float32, cols)
	t.Decode(y, w)
	return y
}

// dequantActs returns the activations as the kernels of t see them.
func dequantActs(t formats.DType, a *Activations) []float32 {
	y := make([]float32, a.Len())
	switch kernelOf(t).form {
	case formQ8:
		for i, b := range a.q8 {
			for j, q := range b.qs {
				y[32*i+j] = b.d * float32(q)
			}
		}
	case formQ8K:
		for i, b := range a.q8k {
			for j, q := range b.qs {
				y[256*i+j] = b.d * float32(q)
			}
		}
	default:
		copy(y, a.x)
	}
	return y
}

func dot64(w, x []float32) (s, abs float64) {
	for i := range w {
		p := float64(w[i]) * float64(x[i])
		s += p
		abs += math.Abs(p)
	}
	return s, abs
}

// refDot is the naive reference of a quantized type.
func refDot(t formats.DType, w []byte, a *Activations) (float32, float64) {
	if kernelOf(t).form == formQ8 {
		return refDotLegacy(t, w, a.q8)
	}
	return refDotK(t, w, a.q8k)
}

// actDelta returns Σ_blocks δ_b·Σ|w_i| and the Q8_1 s-rounding term (see the bounds).
func actDelta(t formats.DType, w []float32, wb []byte, x []float32, a *Activations) (delta, sterm float64) {
	if kernelOf(t).form == formQ8 {
		for i, b := range a.q8 {
			var amax, sw float64
			for j := 0; j < 32; j++ {
				amax = math.Max(amax, math.Abs(float64(x[32*i+j])))
				sw += math.Abs(float64(w[32*i+j]))
			}
			d := amax / 127
			delta += (d*(0.5+382*eps+127.0/2048) + 127.0/(1<<25)) * sw
			if t == formats.Q4_1 || t == formats.Q5_1 {
				m := math.Abs(float64(h16(wb[i*t.BlockBytes()+2:])))
				sterm += m * (math.Abs(float64(b.sum))*d*(2.0/2048+eps) + 1.0/(1<<25))
			}
		}
		return delta, sterm
	}
	for i, b := range a.q8k {
		var sw float64
		for j := 0; j < 256; j++ {
			sw += math.Abs(float64(w[256*i+j]))
		}
		delta += math.Abs(float64(b.d)) * (0.5 + 256*eps) * sw
	}
	return delta, 0
}

// pureGo switches every dot variable to its pure-Go version for the rest of the test (the
// tests that hold the kernels to ggml's generic order bit for bit), restoring the
// dispatched ones at cleanup. The assembly kernels have their own tests, which compare
// them with the pure-Go ones within the error bounds of a different summation order.
func pureGo(t *testing.T) {
	type saved struct{ restore func() }
	var all []saved
	swap := func(restore func()) { all = append(all, saved{restore}) }
	for _, p := range []struct {
		v *dotQ8Func
		g dotQ8Func
	}{{&dotQ8_0, dotQ8_0Go}, {&dotQ4_0, dotQ4_0Go}, {&dotQ4_1, dotQ4_1Go}, {&dotQ5_0, dotQ5_0Go}, {&dotQ5_1, dotQ5_1Go}} {
		old := *p.v
		*p.v = p.g
		swap(func() { *p.v = old })
	}
	for _, p := range []struct {
		v *dotQ8x4Func
		g dotQ8x4Func
	}{{&dot4Q8_0, dot4Q8_0Go}, {&dot4Q4_0, dot4Q4_0Go}, {&dot4Q4_1, dot4Q4_1Go}, {&dot4Q5_0, dot4Q5_0Go}, {&dot4Q5_1, dot4Q5_1Go}} {
		old := *p.v
		*p.v = p.g
		swap(func() { *p.v = old })
	}
	for _, p := range []struct {
		v *dotQKFunc
		g dotQKFunc
	}{{&dotQ2_K, dotQ2_KGo}, {&dotQ3_K, dotQ3_KGo}, {&dotQ4_K, dotQ4_KGo}, {&dotQ5_K, dotQ5_KGo}, {&dotQ6_K, dotQ6_KGo}} {
		old := *p.v
		*p.v = p.g
		swap(func() { *p.v = old })
	}
	for _, p := range []struct {
		v *dotQKx4Func
		g dotQKx4Func
	}{{&dot4Q2_K, dot4Q2_KGo}, {&dot4Q3_K, dot4Q3_KGo}, {&dot4Q4_K, dot4Q4_KGo}, {&dot4Q5_K, dot4Q5_KGo}, {&dot4Q6_K, dot4Q6_KGo}} {
		old := *p.v
		*p.v = p.g
		swap(func() { *p.v = old })
	}
	for _, p := range []struct {
		v *dotFFunc
		g dotFFunc
	}{{&dotF32, dotF32Go}, {&dotF16, dotF16Go}, {&dotBF16, dotBF16Go}} {
		old := *p.v
		*p.v = p.g
		swap(func() { *p.v = old })
	}
	for _, p := range []struct {
		v *dotFx4Func
		g dotFx4Func
	}{{&dot4F32, dot4F32Go}, {&dot4F16, dot4F16Go}, {&dot4BF16, dot4BF16Go}} {
		old := *p.v
		*p.v = p.g
		swap(func() { *p.v = old })
	}
	t.Cleanup(func() {
		for _, s := range all {
			s.restore()
		}
	})
}

func same(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// TestQuantizedDots checks every quantized type's pure-Go kernel against the naive
// reference bit for bit, and the dispatched kernel (through MulVec) against the float64
// dot of the decoded weights with the dequantized activations (bound2) and with the
// original activations (bound2 + the activation quantization bound).
func TestQuantizedDots(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, typ := range quantTypes {
		t.Run(typ.String(), func(t *testing.T) {
			be := typ.BlockElems()
			worst1, worst2 := 0.0, 0.0
			for _, nb := range []int{1, 2, 3, 8, 16} {
				cols := nb * be
				if kernelOf(typ).form == formQ8 && nb > 8 {
					cols = 256 // 8 blocks of 32 so that Q8_K-sized rows are tried too
				}
				nbk := cols / be
				const rows = 12
				var data []byte
				for i := 0; i < rows; i++ {
					data = append(data, randomRow(r, typ, cols)...)
				}
				m, err := NewMatrix(typ, rows, cols, data)
				if err != nil {
					t.Fatal(err)
				}
				for trial := 0; trial < 6; trial++ {
					x := randomActs(r, cols)
					a := Prepare(x, typ)
					dst := make([]float32, rows)
					m.MulVec(dst, a, 0, rows)
					xa := dequantActs(typ, a)
					for row := 0; row < rows; row++ {
						wb := data[row*m.RowBytes : (row+1)*m.RowBytes]
						want, mag := refDot(typ, wb, a)
						// the pure-Go kernel is ggml's generic order bit for bit; the
						// dispatched one (assembly where the CPU has it) sums in its own
						// order and is held to the error bounds below
						if got := dispatchDot(typ, wb, a); !same(got, want) {
							t.Fatalf("cols %d row %d: pure Go %v, naive reference %v", cols, row, got, want)
						}
						w := decodeRow(typ, wb, cols)
						e2, _ := dot64(w, xa)
						delta, sterm := actDelta(typ, w, wb, x, a)
						b2 := float64(nbk+8)*eps*mag + sterm + 1e-30 // the kernel's (nb+6)ε from exact, plus the decoder's own 2ε
						if d := math.Abs(float64(dst[row]) - e2); !(d <= b2) {
							t.Fatalf("cols %d row %d: kernel %v, Σ w·dequant(a) %v: |diff| %g > bound %g", cols, row, dst[row], e2, d, b2)
						} else {
							worst2 = max(worst2, d/b2)
						}
						e1, _ := dot64(w, x)
						b1 := b2 + delta
						if d := math.Abs(float64(dst[row]) - e1); !(d <= b1) {
							t.Fatalf("cols %d row %d: kernel %v, Σ w·x %v: |diff| %g > bound %g", cols, row, dst[row], e1, d, b1)
						} else {
							worst1 = max(worst1, d/b1)
						}
					}
				}
			}
			t.Logf("largest |error|/bound: %.3g against Σw·x, %.3g against Σw·dequant(a)", worst1, worst2)
		})
	}
}

// dispatchDot calls the pure-Go dot of t directly (not through the variable).
func dispatchDot(t formats.DType, w []byte, a *Activations) float32 {
	switch t {
	case formats.Q8_0:
		return dotQ8_0Go(w, a.q8)
	case formats.Q4_0:
		return dotQ4_0Go(w, a.q8)
	case formats.Q4_1:
		return dotQ4_1Go(w, a.q8)
	case formats.Q5_0:
		return dotQ5_0Go(w, a.q8)
	case formats.Q5_1:
		return dotQ5_1Go(w, a.q8)
	case formats.Q2_K:
		return dotQ2_KGo(w, a.q8k)
	case formats.Q3_K:
		return dotQ3_KGo(w, a.q8k)
	case formats.Q4_K:
		return dotQ4_KGo(w, a.q8k)
	case formats.Q5_K:
		return dotQ5_KGo(w, a.q8k)
	case formats.Q6_K:
		return dotQ6_KGo(w, a.q8k)
	case formats.F32:
		return dotF32Go(w, a.x)
	case formats.F16:
		return dotF16Go(w, a.x)
	case formats.BF16:
		return dotBF16Go(w, a.x)
	}
	panic("no kernel for " + t.String())
}

// TestFloatDots checks F32, F16, BF16 and the dequantizing fallback against the float64
// dot of the decoded row with x.
func TestFloatDots(t *testing.T) {
	pureGo(t)
	r := rand.New(rand.NewPCG(3, 4))
	types := append(append([]formats.DType(nil), floatTypes...), fallbackTypes...)
	for _, typ := range types {
		t.Run(typ.String(), func(t *testing.T) {
			for _, cols := range []int{256, 512, 1024 + 256} {
				const rows = 6
				var data []byte
				for i := 0; i < rows; i++ {
					data = append(data, tameRow(r, typ, cols)...)
				}
				m, err := NewMatrix(typ, rows, cols, data)
				if err != nil {
					t.Fatal(err)
				}
				if Kernel(typ) == (typ != formats.F32 && typ != formats.F16 && typ != formats.BF16) {
					t.Fatalf("Kernel(%v) = %v", typ, Kernel(typ))
				}
				x := randomActs(r, cols)
				a := Prepare(x, typ)
				dst := make([]float32, rows)
				m.MulVec(dst, a, 0, rows)
				for row := 0; row < rows; row++ {
					wb := data[row*m.RowBytes : (row+1)*m.RowBytes]
					w := decodeRow(typ, wb, cols)
					e, abs := dot64(w, x)
					bound := 2*eps*abs + 0x1p-140
					if d := math.Abs(float64(dst[row]) - e); !(d <= bound) && !(math.IsNaN(e) && math.IsNaN(float64(dst[row]))) &&
						!(math.Abs(e) > math.MaxFloat32*(1-eps) && math.IsInf(float64(dst[row]), int(math.Copysign(1, e)))) {
						t.Fatalf("cols %d row %d: %v, want %v (|diff| %g > %g)", cols, row, dst[row], e, d, bound)
					}
					if Kernel(typ) {
						if got := dispatchDot(typ, wb, a); !same(got, dst[row]) {
							t.Fatalf("pure Go %v, dispatched %v", got, dst[row])
						}
					}
				}
			}
		})
	}
}

// TestMulMat checks that MulMat gives MulVec's bits for 1..9 activation vectors (the
// four-vector dots and the remainder) and for a row range.
func TestMulMat(t *testing.T) {
	pureGo(t)
	r := rand.New(rand.NewPCG(5, 6))
	types := append(append(append([]formats.DType(nil), quantTypes...), floatTypes...), formats.IQ4_XS, formats.TQ2_0)
	for _, typ := range types {
		t.Run(typ.String(), func(t *testing.T) {
			const rows, cols = 10, 768
			var data []byte
			for i := 0; i < rows; i++ {
				data = append(data, randomRow(r, typ, cols)...)
			}
			m, err := NewMatrix(typ, rows, cols, data)
			if err != nil {
				t.Fatal(err)
			}
			for _, nx := range []int{1, 3, 4, 5, 8, 9} {
				xs := make([]*Activations, nx)
				dst := make([][]float32, nx)
				for i := range xs {
					xs[i] = Prepare(randomActs(r, cols), typ)
					dst[i] = make([]float32, rows)
				}
				lo, hi := 2, 9
				m.MulMat(dst, xs, lo, hi)
				for i, x := range xs {
					want := make([]float32, rows)
					m.MulVec(want, x, lo, hi)
					for row := range want {
						if !same(dst[i][row], want[row]) {
							t.Fatalf("%d vectors: vector %d row %d: MulMat %v, MulVec %v", nx, i, row, dst[i][row], want[row])
						}
					}
				}
			}
		})
	}
}

// TestQuantizeQ8 checks the activation blocks against ggml's reference quantizers written
// out literally (float32 arithmetic, roundf and nearest_int), and the lane words against
// the quants.
func TestQuantizeQ8(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 50; trial++ {
		x := randomActs(r, 512)
		if trial%5 == 0 { // exact halves: x·id lands on .5
			for i := range x {
				x[i] = float32(r.IntN(255)-127) / 2
			}
			x[0] = 127
		}
		a := Prepare(x, formats.Q4_0)
		a.Add(formats.Q4_1)
		a.Add(formats.Q4_K)
		for i, b := range a.q8 {
			xb := x[32*i : 32*i+32]
			var amax float32
			for _, v := range xb {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			d := amax / 127
			var id float32
			if d != 0 {
				id = 1 / d
			}
			var sum int32
			for j, v := range xb {
				q := int8(math.Round(float64(v * id)))
				if b.qs[j] != q {
					t.Fatalf("Q8_0 block %d elem %d: q %d, want %d", i, j, b.qs[j], q)
				}
				sum += int32(q)
			}
			if b.sum != sum || b.d != float16.Fromfloat32(d).Float32() || b.s != float16.Fromfloat32(float32(sum)*d).Float32() {
				t.Fatalf("Q8_0 block %d: sum %d d %v s %v", i, b.sum, b.d, b.s)
			}
			checkWords(t, b.w[:], b.qs[:])
		}
		for i, b := range a.q8k {
			xb := x[256*i : 256*i+256]
			var amax, maxv float32
			for _, v := range xb {
				if av := float32(math.Abs(float64(v))); av > amax {
					amax, maxv = av, v
				}
			}
			if amax == 0 {
				if b.d != 0 {
					t.Fatal("zero block with d != 0")
				}
				continue
			}
			iscale := -127 / maxv
			for j, v := range xb {
				f := float32(iscale * v)                                             // rounded: no multiply-add fused with the next line (arm64)
				nearest := int(math.Float32bits(f+12582912)&0x007fffff) - 0x00400000 // ggml's nearest_int
				if int(b.qs[j]) != min(127, nearest) {
					t.Fatalf("Q8_K block %d elem %d: q %d, want %d", i, j, b.qs[j], nearest)
				}
			}
			for k := 0; k < 16; k++ {
				var s int
				for _, q := range b.qs[16*k : 16*k+16] {
					s += int(q)
				}
				if int(b.bsums[k]) != s {
					t.Fatalf("bsums[%d] = %d, want %d", k, b.bsums[k], s)
				}
			}
			if b.d != 1/iscale {
				t.Fatalf("Q8_K d %v, want %v", b.d, 1/iscale)
			}
			checkWords(t, b.w[:], b.qs[:])
		}
	}
}

func checkWords(t *testing.T, w []int64, q []int8) {
	t.Helper()
	for g := 0; g < len(q)/8; g++ {
		for par := 0; par < 2; par++ {
			// extract each lane by multiplying with a one-hot weight word
			for i := 0; i < 4; i++ {
				one := int64(1) << (16 * i) // weight 1 in lane i
				if got := ext(one * w[2*g+par]); got != int64(q[8*g+2*i+par]) {
					t.Fatalf("group %d word %d lane for element %d: %d, want %d", g, par, 8*g+2*i+par, got, q[8*g+2*i+par])
				}
			}
		}
	}
}

// TestLaneBounds drives every kernel with the extreme quants (all weight bits set or
// clear, activations ±127) that the ext bounds are derived for, against the reference.
func TestLaneBounds(t *testing.T) {
	pureGo(t)
	for _, typ := range quantTypes {
		for _, wfill := range []byte{0x00, 0xff, 0x55, 0xaa, 0x0f, 0xf0} {
			for _, xs := range []float32{1, -1, 0} {
				cols := 512
				w := make([]byte, cols/typ.BlockElems()*typ.BlockBytes())
				for i := range w {
					w[i] = wfill
				}
				bb := typ.BlockBytes()
				for blk := 0; blk < len(w)/bb; blk++ {
					for _, off := range scaleFields[typ] {
						putH(w[blk*bb+off:], 1)
					}
				}
				x := make([]float32, cols)
				for i := range x {
					x[i] = xs
					if xs == 0 && i%2 == 1 {
						x[i] = -1
					} else if xs == 0 {
						x[i] = 1
					}
				}
				a := Prepare(x, typ)
				m, err := NewMatrix(typ, 1, cols, w)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]float32, 1)
				m.MulVec(got, a, 0, 1)
				want, _ := refDot(typ, w, a)
				if !same(got[0], want) {
					t.Fatalf("%v fill %#x x %v: kernel %v, reference %v", typ, wfill, xs, got[0], want)
				}
				xsAll := []*Activations{a, a, a, a}
				dst := [][]float32{{0}, {0}, {0}, {0}}
				m.MulMat(dst, xsAll, 0, 1)
				if !same(dst[3][0], want) {
					t.Fatalf("%v fill %#x x %v: MulMat %v, reference %v", typ, wfill, xs, dst[3][0], want)
				}
			}
		}
	}
}

// TestZeroRows: all-zero weights give zero for the kernel types, and the fallback gives
// what its decoded row gives.
func TestZeroRows(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	types := append(append(append([]formats.DType(nil), quantTypes...), floatTypes...), fallbackTypes...)
	for _, typ := range types {
		cols := 256
		m, err := NewMatrix(typ, 3, cols, make([]byte, 3*cols/typ.BlockElems()*typ.BlockBytes()))
		if err != nil {
			t.Fatal(err)
		}
		x := randomActs(r, cols)
		a := Prepare(x, typ)
		dst := []float32{1, 1, 1}
		m.MulVec(dst, a, 0, 3)
		w := decodeRow(typ, m.Data[:m.RowBytes], cols)
		want, _ := dot64(w, x)
		for _, v := range dst {
			if float64(v) != want || (Kernel(typ) && v != 0) {
				t.Fatalf("%v: zero row gives %v, want %v", typ, v, want)
			}
		}
	}
}

// TestNonFinite: NaN scales give NaN, infinite scales a non-finite result, subnormal
// scales stay within the bounds (TestQuantizedDots' check through the reference); NaN or
// infinite activations make every quantized dot NaN. Nothing panics.
func TestNonFinite(t *testing.T) {
	pureGo(t)
	r := rand.New(rand.NewPCG(11, 12))
	for _, typ := range quantTypes {
		cols := 512
		bb := typ.BlockBytes()
		for _, scale := range []uint16{0x7e00, 0x7c01, 0xfc00, 0x7c00, 0x0001, 0x8001, 0x03ff} {
			w := randomRow(r, typ, cols)
			putH16 := func(off int) { binary.LittleEndian.PutUint16(w[off:], scale) }
			putH16(bb + scaleFields[typ][0]) // the d of the second block
			m, _ := NewMatrix(typ, 1, cols, w)
			a := Prepare(randomActs(r, cols), typ)
			got := make([]float32, 1)
			m.MulVec(got, a, 0, 1)
			want, _ := refDot(typ, w, a)
			if !same(got[0], want) {
				t.Fatalf("%v scale %#04x: kernel %v, reference %v", typ, scale, got[0], want)
			}
			v := float64(got[0])
			switch {
			case scale&0x7c00 == 0x7c00 && scale&0x3ff != 0:
				if !math.IsNaN(v) {
					t.Fatalf("%v: NaN scale gives %v", typ, v)
				}
			case scale&0x7fff == 0x7c00:
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					t.Fatalf("%v: infinite scale gives %v", typ, v)
				}
			}
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			w := randomRow(r, typ, cols)
			m, _ := NewMatrix(typ, 1, cols, w)
			x := randomActs(r, cols)
			x[300] = bad
			got := make([]float32, 1)
			m.MulVec(got, Prepare(x, typ), 0, 1)
			if !math.IsNaN(float64(got[0])) {
				t.Fatalf("%v: activation %v gives %v, want NaN", typ, bad, got[0])
			}
		}
	}
	for _, typ := range floatTypes {
		w := randomRow(r, typ, 64)
		m, _ := NewMatrix(typ, 1, 64, w)
		x := randomActs(r, 64)
		x[5] = float32(math.NaN())
		got := make([]float32, 1)
		m.MulVec(got, Prepare(x, typ), 0, 1)
		if !math.IsNaN(float64(got[0])) {
			t.Fatalf("%v: NaN activation gives %v", typ, got[0])
		}
	}
}

// TestTinyActivations: activations so small that 1/d overflows (subnormal scales) and
// mixed huge and tiny blocks: no panic, quants stay in [-127, 127], results finite.
func TestTinyActivations(t *testing.T) {
	pureGo(t)
	r := rand.New(rand.NewPCG(13, 14))
	for _, typ := range quantTypes {
		x := make([]float32, 512)
		for i := range x {
			x[i] = float32(r.NormFloat64()) * 1e-39
			if i >= 256 {
				x[i] = float32(r.NormFloat64()) * 1e-44
			}
		}
		x[0] = 1e-38
		a := Prepare(x, typ)
		for _, b := range a.q8 {
			for _, q := range b.qs {
				if q < -127 {
					t.Fatal("quant -128")
				}
			}
		}
		w := randomRow(r, typ, 512)
		m, _ := NewMatrix(typ, 1, 512, w)
		got := make([]float32, 1)
		m.MulVec(got, a, 0, 1)
		want, _ := refDot(typ, w, a)
		if !same(got[0], want) || math.IsNaN(float64(got[0])) {
			t.Fatalf("%v: %v, reference %v", typ, got[0], want)
		}
	}
}

// TestEncodedWeights runs weights quantized by formats/quant's encoder from smooth
// values (realistic blocks rather than random bytes) through the checks of
// TestQuantizedDots.
func TestEncodedWeights(t *testing.T) {
	pureGo(t)
	r := rand.New(rand.NewPCG(15, 16))
	for _, typ := range []formats.DType{formats.Q8_0, formats.Q4_0, formats.Q4_1, formats.Q5_0, formats.Q5_1, formats.Q4_K, formats.Q6_K} {
		const rows, cols = 8, 1024
		src := make([]float32, rows*cols)
		for i := range src {
			src[i] = float32(r.NormFloat64() * 0.02)
		}
		data, err := quant.Encode(typ.String(), src)
		if err != nil {
			t.Fatal(err)
		}
		m, err := NewMatrix(typ, rows, cols, data)
		if err != nil {
			t.Fatal(err)
		}
		x := randomActs(r, cols)
		a := Prepare(x, typ)
		dst := make([]float32, rows)
		m.MulVec(dst, a, 0, rows)
		for row := 0; row < rows; row++ {
			wb := data[row*m.RowBytes : (row+1)*m.RowBytes]
			want, mag := refDot(typ, wb, a)
			if !same(dst[row], want) {
				t.Fatalf("%v row %d: %v, reference %v", typ, row, dst[row], want)
			}
			w := decodeRow(typ, wb, cols)
			e1, _ := dot64(w, x)
			delta, sterm := actDelta(typ, w, wb, x, a)
			if d := math.Abs(float64(dst[row]) - e1); d > float64(cols/typ.BlockElems()+6)*eps*mag+sterm+delta {
				t.Fatalf("%v row %d: %v, Σ w·x %v", typ, row, dst[row], e1)
			}
		}
	}
}

func TestNewMatrixErrors(t *testing.T) {
	for _, c := range []struct {
		t          formats.DType
		rows, cols int
		bytes      int
		want       string
	}{
		{formats.Q4_K, 2, 300, 10000, "whole number"},
		{formats.Q4_0, 2, 48, 10000, "whole number"},
		{formats.Q4_0, 2, 0, 10000, "whole number"},
		{formats.F32, 2, -4, 10000, "whole number"},
		{formats.Q8_0, -1, 32, 10000, "rows"},
		{formats.Q8_0, 3, 64, 3*68 - 1, "needs"},
		{formats.C64, 1, 4, 100, "not supported"},
		{formats.Invalid, 1, 4, 100, "not supported"},
		{formats.Q4_0, 1 << 60, 1 << 20, 100, "needs"},
	} {
		_, err := NewMatrix(c.t, c.rows, c.cols, make([]byte, c.bytes))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewMatrix(%v, %d, %d, %d bytes) = %v, want an error with %q", c.t, c.rows, c.cols, c.bytes, err, c.want)
		}
	}
	if m, err := NewMatrix(formats.Q8_0, 3, 64, make([]byte, 3*68+5)); err != nil || len(m.Data) != 3*68 || m.RowBytes != 68 {
		t.Errorf("NewMatrix with spare bytes: %+v, %v", m, err)
	}
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestMisuse(t *testing.T) {
	m, _ := NewMatrix(formats.Q4_K, 2, 256, make([]byte, 2*144))
	x := make([]float32, 256)
	mustPanic(t, "unprepared form", func() { m.MulVec(make([]float32, 2), Prepare(x, formats.Q4_0), 0, 2) })
	mustPanic(t, "wrong length", func() { m.MulVec(make([]float32, 2), Prepare(x[:32], formats.F32), 0, 2) })
	mustPanic(t, "row range", func() { m.MulVec(make([]float32, 3), Prepare(x, formats.Q4_K), 1, 3) })
	mustPanic(t, "short dst", func() { m.MulVec(make([]float32, 1), Prepare(x, formats.Q4_K), 0, 2) })
	mustPanic(t, "Q8_K of 32", func() { Prepare(x[:32], formats.Q6_K) })
	mustPanic(t, "unsupported", func() { Prepare(x, formats.C64) })
	bad := *m
	bad.RowBytes = 100
	mustPanic(t, "malformed", func() { bad.MulVec(make([]float32, 2), Prepare(x, formats.Q4_K), 0, 2) })
	mustPanic(t, "MulMat lengths", func() { m.MulMat(make([][]float32, 1), nil, 0, 2) })

	// Set reuses the buffers and drops the other forms.
	a := Prepare(x, formats.Q4_K)
	a.Add(formats.Q8_0)
	if !a.Has(formats.Q4_K) || !a.Has(formats.Q4_0) || !a.Has(formats.F16) || a.Has(formats.C64) {
		t.Fatal("Has")
	}
	a.Set(x, formats.F32)
	if a.Has(formats.Q4_K) || a.Has(formats.Q8_0) {
		t.Fatal("Set kept old forms")
	}
	if allocs := testing.AllocsPerRun(10, func() { a.Set(x, formats.Q4_K); a.Add(formats.Q8_0) }); allocs != 0 {
		t.Errorf("Set allocates %v times", allocs)
	}
	dst := make([]float32, 2)
	if allocs := testing.AllocsPerRun(10, func() { m.MulVec(dst, a, 0, 2) }); allocs != 0 {
		t.Errorf("MulVec allocates %v times", allocs)
	}
	f, _ := NewMatrix(formats.IQ4_XS, 2, 256, make([]byte, 2*136))
	f.MulVec(dst, a, 0, 2)
	if allocs := testing.AllocsPerRun(10, func() { f.MulVec(dst, a, 0, 2) }); allocs != 0 {
		t.Errorf("fallback MulVec allocates %v times", allocs)
	}
}

// TestConcurrent splits the rows of one product over goroutines (the intended use) and
// compares with one call; run with -race.
func TestConcurrent(t *testing.T) {
	pureGo(t)
	r := rand.New(rand.NewPCG(17, 18))
	for _, typ := range []formats.DType{formats.Q4_K, formats.Q8_0, formats.F16, formats.IQ4_XS} {
		const rows, cols = 64, 512
		var data []byte
		for i := 0; i < rows; i++ {
			data = append(data, tameRow(r, typ, cols)...)
		}
		m, _ := NewMatrix(typ, rows, cols, data)
		x := Prepare(randomActs(r, cols), typ)
		want := make([]float32, rows)
		m.MulVec(want, x, 0, rows)
		got := make([]float32, rows)
		done := make(chan bool)
		for g := 0; g < 4; g++ {
			go func(lo int) {
				m.MulVec(got, x, lo, lo+rows/4)
				done <- true
			}(g * rows / 4)
		}
		for g := 0; g < 4; g++ {
			<-done
		}
		for i := range want {
			if !same(got[i], want[i]) {
				t.Fatalf("%v row %d: %v, want %v", typ, i, got[i], want[i])
			}
		}
	}
}
