package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/x448/float16"
)

// The tests call the pure-Go dots directly on prepared activations (comparing them with
// the installed ones), so every quantization must fill the lane words; TestLaneWords turns
// this off to check the skipping.
func init() { forceLanes = true }

// refQuantizeQ8 and refQuantizeQ8K are the Go quantizers as they were before the fast
// paths (ggml's quantize_row_q8_1_ref and quantize_row_q8_K_ref bit for bit), lane words
// included.
func refQuantizeQ8(blocks []q8Block, x []float32) {
	for i := range blocks {
		b := &blocks[i]
		xb := (*[32]float32)(x[32*i:])
		amax, _ := refAbsMaxBits(xb[:])
		if amax >= f32Inf {
			*b = q8Block{d: float32(math.NaN()), s: float32(math.NaN())}
			continue
		}
		d := math.Float32frombits(amax) / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		var sum int32
		for j, v := range xb {
			q := clampQ(math.Round(float64(v * id)))
			b.qs[j] = q
			sum += int32(q)
		}
		b.sum = sum
		b.d = float16.Fromfloat32(d).Float32()
		b.s = float16.Fromfloat32(float32(sum) * d).Float32()
		refPackGroups(b.w[:], b.qs[:])
	}
}

func refQuantizeQ8K(blocks []q8KBlock, x []float32) {
	for i := range blocks {
		b := &blocks[i]
		xb := (*[256]float32)(x[256*i:])
		amax, maxv := refAbsMaxBits(xb[:])
		switch {
		case amax >= f32Inf:
			*b = q8KBlock{d: float32(math.NaN())}
			continue
		case amax == 0:
			*b = q8KBlock{}
			continue
		}
		iscale := -127 / maxv
		for j, v := range xb {
			b.qs[j] = clampQ(math.RoundToEven(float64(iscale * v)))
		}
		for k := range b.bsums {
			var s int16
			for _, q := range b.qs[16*k : 16*k+16] {
				s += int16(q)
			}
			b.bsums[k] = s
		}
		b.d = 1 / iscale
		refPackGroups(b.w[:], b.qs[:])
	}
}

func refAbsMaxBits(x []float32) (amax uint32, signed float32) {
	for _, v := range x {
		if b := math.Float32bits(v) &^ (1 << 31); b > amax {
			amax, signed = b, v
		}
	}
	return amax, signed
}

func refPackGroups(words []int64, q []int8) {
	for g := 0; g < len(q)/8; g++ {
		e := (*[8]int8)(q[8*g:])
		words[2*g] = packWord(e[0], e[2], e[4], e[6])
		words[2*g+1] = packWord(e[1], e[3], e[5], e[7])
	}
}

func f32b(v float32) uint32 { return math.Float32bits(v) }

// sameQ8 compares two blocks bit for bit (lane words only if lanes).
func sameQ8(a, b *q8Block, lanes bool) bool {
	return a.qs == b.qs && a.sum == b.sum && f32b(a.d) == f32b(b.d) && f32b(a.s) == f32b(b.s) && (!lanes || a.w == b.w)
}

func sameQ8K(a, b *q8KBlock, lanes bool) bool {
	return a.qs == b.qs && a.bsums == b.bsums && f32b(a.d) == f32b(b.d) && (!lanes || a.w == b.w)
}

// quantVectors returns test vectors of n elements (n a multiple of 256): blocks of random
// values at magnitudes from subnormal to near MaxFloat32, exact ties of both roundings
// (halves of a power-of-two scale), the near-ties k·amax/254 of arbitrary amax, zeros,
// signed zeros, single large elements, NaN and ±Inf at various places, and the smallest
// subnormals (where 1/d overflows).
func quantVectors(r *rand.Rand, n int) [][]float32 {
	var out [][]float32
	scales := []float64{1, 1e-3, 1e3, 1e-20, 1e20, 1e-36, 1e-38, 1e-40, 1e-44, 1e30, 1e36, 3e38, 0.02, 65504 * 127, 65520 * 127}
	for _, sc := range scales {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * sc)
		}
		out = append(out, x)
	}
	// exact ties: a block with max ±127·2^e and elements (k + ½)·2^e (and k·2^e)
	for _, e := range []int{0, -3, 5, -60, 60, -120, -126, -130, 100} {
		x := make([]float32, n)
		u := math.Ldexp(1, e)
		for i := range x {
			switch {
			case i%32 == 7 || i%256 == 100:
				x[i] = float32(127 * u * float64(1-2*(i/32&1)))
			default:
				k := r.IntN(254) - 127
				x[i] = float32((float64(k) + 0.5*float64(r.IntN(2))) * u)
			}
		}
		out = append(out, x)
	}
	// near-ties k·amax/254 (rounded to float32) and k·amax/127
	for trial := 0; trial < 8; trial++ {
		x := make([]float32, n)
		amax := float32(math.Exp(r.NormFloat64() * 10))
		for i := range x {
			k := r.IntN(255) - 127
			if i%32 == 3 {
				x[i] = amax
				continue
			}
			if i%2 == 0 {
				x[i] = float32(k) * amax / 254
			} else {
				x[i] = float32(k) * amax / 127
			}
		}
		out = append(out, x)
	}
	// zeros, signed zeros, a lone element per block
	{
		z := make([]float32, n)
		nz := make([]float32, n)
		one := make([]float32, n)
		for i := range nz {
			nz[i] = float32(math.Copysign(0, -1))
			if i%37 == 0 {
				one[i] = float32(r.NormFloat64())
			}
		}
		out = append(out, z, nz, one)
	}
	// non-finite elements in some blocks, tiny subnormal blocks among ordinary ones
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00001), math.Float32frombits(0xff800001)}
	for _, s := range specials {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		for i := r.IntN(32); i < n; i += 32 + r.IntN(300) {
			x[i] = s
		}
		out = append(out, x)
	}
	{
		x := make([]float32, n)
		for i := range x {
			switch b := i / 32 % 4; b {
			case 0:
				x[i] = math.Float32frombits(uint32(r.IntN(64))) // 1/d overflows
				if r.IntN(2) == 0 {
					x[i] = -x[i]
				}
			case 1:
				x[i] = math.Float32frombits(uint32(r.IntN(1 << 23)))
			default:
				x[i] = float32(r.NormFloat64())
			}
		}
		out = append(out, x)
	}
	// equal magnitudes of both signs (the first one decides Q8_K's sign)
	{
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
			if i%64 == 10 {
				x[i] = -8
			}
			if i%64 == 40 {
				x[i] = 8
			}
		}
		out = append(out, x)
	}
	return out
}

// checkQuantizers compares quantizeQ8 and quantizeQ8K with the reference on vectors of
// several lengths.
func checkQuantizers(t *testing.T, r *rand.Rand) {
	t.Helper()
	for _, n := range []int{256, 512, 2048, 5632} {
		for vi, x := range quantVectors(r, n) {
			want, got := make([]q8Block, n/32), make([]q8Block, n/32)
			refQuantizeQ8(want, x)
			for i := range got { // garbage in the destination must not leak
				got[i].sum, got[i].qs[5], got[i].w[3] = 99, 17, 12345
			}
			quantizeQ8(got, x)
			for i := range want {
				if !sameQ8(&got[i], &want[i], true) {
					t.Fatalf("Q8_0 n %d vector %d block %d: got %+v, want %+v (x %v)", n, vi, i, got[i], want[i], x[32*i:32*i+32])
				}
			}
			wantK, gotK := make([]q8KBlock, n/256), make([]q8KBlock, n/256)
			refQuantizeQ8K(wantK, x)
			for i := range gotK {
				gotK[i].bsums[3], gotK[i].qs[200], gotK[i].w[60] = 99, 17, 12345
			}
			quantizeQ8K(gotK, x)
			for i := range wantK {
				if !sameQ8K(&gotK[i], &wantK[i], true) {
					t.Fatalf("Q8_K n %d vector %d block %d: got %+v, want %+v", n, vi, i, gotK[i], wantK[i])
				}
			}
		}
	}
}

// TestQuantizeBitIdentical: the quantizers as dispatched (assembly where the CPU has it)
// and the pure-Go ones alone give the reference's bits.
func TestQuantizeBitIdentical(t *testing.T) {
	t.Run("dispatched", func(t *testing.T) { checkQuantizers(t, rand.New(rand.NewPCG(41, 42))) })
	t.Run("go", func(t *testing.T) {
		f, fk := quantQ8Fast, quantQ8KFast
		defer func() { quantQ8Fast, quantQ8KFast = f, fk }()
		quantQ8Fast = func([]q8Block, []float32) int { return 0 }
		quantQ8KFast = func([]q8KBlock, []float32) int { return 0 }
		checkQuantizers(t, rand.New(rand.NewPCG(41, 42)))
	})
}

// TestQuantizeRandomBlocks: many random single blocks of random scale and length.
func TestQuantizeRandomBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	x := make([]float32, 256*8)
	want, got := make([]q8Block, len(x)/32), make([]q8Block, len(x)/32)
	wantK, gotK := make([]q8KBlock, len(x)/256), make([]q8KBlock, len(x)/256)
	for trial := 0; trial < 300; trial++ {
		for i := range x {
			// random bit patterns of finite floats, and normal values of a random scale
			if trial%3 == 0 {
				for {
					x[i] = math.Float32frombits(r.Uint32())
					if f32b(x[i])&f32Inf != f32Inf {
						break
					}
				}
			} else {
				x[i] = float32(r.NormFloat64() * math.Exp(float64(trial%40-20)))
			}
		}
		refQuantizeQ8(want, x)
		quantizeQ8(got, x)
		for i := range want {
			if !sameQ8(&got[i], &want[i], true) {
				t.Fatalf("Q8_0 trial %d block %d: got %+v, want %+v", trial, i, got[i], want[i])
			}
		}
		refQuantizeQ8K(wantK, x)
		quantizeQ8K(gotK, x)
		for i := range wantK {
			if !sameQ8K(&gotK[i], &wantK[i], true) {
				t.Fatalf("Q8_K trial %d block %d: got %+v, want %+v", trial, i, gotK[i], wantK[i])
			}
		}
	}
}

// TestQuantizeScaleRounding: d's binary16 rounding and s over many exponents and the
// binary16 ties (amax chosen so that amax/127 is near a binary16 rounding boundary).
func TestQuantizeScaleRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	const nb = 64
	x := make([]float32, 32*nb)
	want, got := make([]q8Block, nb), make([]q8Block, nb)
	for trial := 0; trial < 400; trial++ {
		for i := 0; i < nb; i++ {
			// a binary16 value (normal or subnormal) or a midpoint, times 127, ±1 ulp
			h := float64(float16.Frombits(uint16(r.IntN(0x7c00))).Float32())
			h2 := float64(float16.Frombits(uint16(r.IntN(0x7c00) + 1)).Float32())
			d := float32(h)
			if r.IntN(2) == 0 {
				d = float32((h + h2) / 2)
			}
			amax := math.Float32frombits(f32b(d*127) + uint32(r.IntN(3)) - 1)
			xb := x[32*i : 32*i+32]
			for j := range xb {
				xb[j] = float32(r.Float64()*2-1) * amax
			}
			xb[r.IntN(32)] = amax
		}
		refQuantizeQ8(want, x)
		quantizeQ8(got, x)
		for i := range want {
			if !sameQ8(&got[i], &want[i], true) {
				t.Fatalf("trial %d block %d: got %+v, want %+v", trial, i, got[i], want[i])
			}
		}
	}
}

// TestPackGroups: the lane words equal packWord's for random and extreme quants.
func TestPackGroups(t *testing.T) {
	r := rand.New(rand.NewPCG(47, 48))
	q := make([]int8, 256)
	got, want := make([]int64, 64), make([]int64, 64)
	for trial := 0; trial < 200; trial++ {
		for i := range q {
			switch trial % 4 {
			case 0:
				q[i] = int8(r.IntN(255) - 127)
			case 1:
				q[i] = int8(127 - 254*r.IntN(2))
			case 2:
				q[i] = int8(r.IntN(256) - 128) // -128 too, outside the quants' range
			default:
				q[i] = int8(r.IntN(3) - 1)
			}
		}
		packGroups(got, q)
		refPackGroups(want, q)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("trial %d word %d: %#x, want %#x", trial, i, got[i], want[i])
			}
		}
	}
}

// TestLaneWords: with lane words skipped where the installed dots do not read them, every
// weight type's MulVec and MulMat give the same bits as with them; the pure-Go dots
// (pureGo) make them needed again.
func TestLaneWords(t *testing.T) {
	forceLanes = false
	defer func() { forceLanes = true }()
	r := rand.New(rand.NewPCG(49, 50))
	t.Logf("lane words needed: Q8 %v, Q8_K %v (%s)", lanesNeeded(formQ8), lanesNeeded(formQ8K), Features())
	const rows, cols = 8, 512
	for _, typ := range quantTypes {
		m, err := NewMatrix(typ, rows, cols, func() (d []byte) {
			for i := 0; i < rows; i++ {
				d = append(d, randomRow(r, typ, cols)...)
			}
			return d
		}())
		if err != nil {
			t.Fatal(err)
		}
		x := randomActs(r, cols)
		var a, b Activations
		a.Set(x, typ)
		forceLanes = true
		b.Set(x, typ)
		forceLanes = false
		got, want := make([]float32, rows), make([]float32, rows)
		m.MulVec(got, &a, 0, rows)
		m.MulVec(want, &b, 0, rows)
		for i := range got {
			if f32b(got[i]) != f32b(want[i]) {
				t.Fatalf("%v row %d: without lane words %v, with %v", typ, i, got[i], want[i])
			}
		}
		if kernelOf(typ).form == formQ8 && !lanesNeeded(formQ8) {
			for i := range a.q8 {
				if a.q8[i].w != ([8]int64{}) {
					t.Fatalf("%v: lane words filled though not needed", typ)
				}
			}
		}
	}
	t.Run("pureGo", func(t *testing.T) {
		pureGo(t)
		if !lanesNeeded(formQ8) || !lanesNeeded(formQ8K) {
			t.Fatal("lane words not needed by the pure-Go dots")
		}
		x := randomActs(r, 512)
		a := Prepare(x, formats.Q8_0)
		a.Add(formats.Q4_K)
		var w [64]int64
		for i := range a.q8 {
			refPackGroups(w[:8], a.q8[i].qs[:])
			if a.q8[i].w != [8]int64(w[:8]) {
				t.Fatalf("Q8 block %d: lane words %v, want %v", i, a.q8[i].w, w[:8])
			}
		}
		for i := range a.q8k {
			refPackGroups(w[:], a.q8k[i].qs[:])
			if a.q8k[i].w != w {
				t.Fatalf("Q8_K block %d: lane words wrong", i)
			}
		}
	})
}

// BenchmarkQuantize: Activations.Set of one 2048-element vector for the Q8 and Q8_K
// forms, with the lane words as the installed dots need them (auto: none with assembly
// dots) and always filled (lanes, as the tests and BenchmarkPrepare run).
func BenchmarkQuantize(b *testing.B) {
	x := randomActs(rand.New(rand.NewPCG(3, 3)), 2048)
	for _, t := range []formats.DType{formats.Q8_0, formats.Q4_K} {
		for _, force := range []bool{false, true} {
			name := kernelOf(t).formName() + "/auto"
			if force {
				name = kernelOf(t).formName() + "/lanes"
			}
			b.Run(name, func(b *testing.B) {
				defer func(f bool) { forceLanes = f }(forceLanes)
				forceLanes = force
				a := Prepare(x, t)
				b.SetBytes(4 * 2048)
				for i := 0; i < b.N; i++ {
					a.Set(x, t)
				}
			})
		}
	}
}
