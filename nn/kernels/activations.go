package kernels

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/kensa-scan/kensa/formats"
	"github.com/x448/float16"
)

// form is a representation of an activation vector that a weight type's dot reads.
type form uint8

const (
	formF32 form = iota // the float32 values (F32, F16, BF16 and the fallback)
	formQ8              // Q8_0 blocks of 32, with the Q8_1 block sums (Q4_0..Q8_0)
	formQ8K             // Q8_K blocks of 256 (k-quants)
	numForms
)

var formNames = [numForms]string{"float32", "Q8_0/Q8_1", "Q8_K"}

// q8Block is one block of 32 activations quantized as ggml's block_q8_0 (and block_q8_1,
// which has the same d and qs plus s), with the packed lane words of the quants.
type q8Block struct {
	w   [8]int64 // lane words: 2g even, 2g+1 odd elements of group g (see lanes.go)
	d   float32  // the scale, rounded to binary16 (ggml stores it as ggml_half)
	s   float32  // Q8_1's s: binary16(d·Σqs) with d before rounding, as float32
	sum int32    // Σ qs
	qs  [32]int8 // the quants, in [-127, 127]
}

// q8KBlock is one block of 256 activations quantized as ggml's block_q8_K, with the packed
// lane words of the quants.
type q8KBlock struct {
	w     [64]int64 // lane words of the 32 groups of 8
	d     float32   // the scale (float32 in ggml too)
	bsums [16]int16 // sums of each 16 quants
	qs    [256]int8 // the quants, in [-127, 127]
}

// Activations is one activation vector prepared for the weight types it is multiplied
// with: its float32 values and, as needed, its quantized forms. Build it with [Prepare] or
// reuse one with [Activations.Set] (no allocation once the buffers have grown to the
// length), then add the forms of further weight types with [Activations.Add] before the
// vector is shared by goroutines: MulVec and MulMat only read it.
type Activations struct {
	x    []float32
	q8   []q8Block
	q8k  []q8KBlock
	have [numForms]bool
}

// Prepare returns x prepared for matrices of weight type t (x is copied). It panics as
// [Activations.Add] does.
func Prepare(x []float32, t formats.DType) *Activations {
	a := new(Activations)
	a.Set(x, t)
	return a
}

// Set makes a hold x (copied), prepared for weight type t, reusing a's buffers; the forms
// of other types that a held are dropped.
func (a *Activations) Set(x []float32, t formats.DType) {
	a.x = append(a.x[:0], x...)
	a.have = [numForms]bool{formF32: true}
	a.Add(t)
}

// Add prepares a also for weight type t (a no-op when t needs a form a already has). It
// panics if t has no kernel (see [Supported]) or if len(x) is not a multiple of the block
// of t's activation form (32 for Q8_0 and Q8_1, 256 for Q8_K).
func (a *Activations) Add(t formats.DType) {
	k := kernelOf(t)
	if k == nil {
		panic("kernels: no kernel for weight type " + t.String())
	}
	f := k.form
	if a.have[f] {
		return
	}
	switch f {
	case formQ8:
		if len(a.x)%32 != 0 {
			panic(fmt.Sprintf("kernels: %d activations are not a whole number of Q8_0 blocks of 32", len(a.x)))
		}
		a.q8 = grow(a.q8, len(a.x)/32)
		quantizeQ8(a.q8, a.x)
	case formQ8K:
		if len(a.x)%256 != 0 {
			panic(fmt.Sprintf("kernels: %d activations are not a whole number of Q8_K blocks of 256", len(a.x)))
		}
		a.q8k = grow(a.q8k, len(a.x)/256)
		quantizeQ8K(a.q8k, a.x)
	}
	a.have[f] = true
}

// Len returns the number of activations.
func (a *Activations) Len() int { return len(a.x) }

// Has reports whether a is prepared for weight type t.
func (a *Activations) Has(t formats.DType) bool {
	k := kernelOf(t)
	return k != nil && a.have[k.form]
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// absMaxBits returns the largest |x| of x as float32 bits (NaN sorts above +Inf) and the
// first element with that magnitude.
func absMaxBits(x []float32) (amax uint32, signed float32) {
	amax = absMax(x)
	for _, v := range x {
		if math.Float32bits(v)&^(1<<31) == amax {
			return amax, v
		}
	}
	return 0, 0 // x is empty
}

// absMax returns the largest |x| of x as float32 bits (NaN sorts above +Inf), in four
// independent running maxima.
func absMax(x []float32) uint32 {
	const abs = 1<<31 - 1
	var m0, m1, m2, m3 uint32
	for len(x) >= 4 {
		m0 = max(m0, math.Float32bits(x[0])&abs)
		m1 = max(m1, math.Float32bits(x[1])&abs)
		m2 = max(m2, math.Float32bits(x[2])&abs)
		m3 = max(m3, math.Float32bits(x[3])&abs)
		x = x[4:]
	}
	for _, v := range x {
		m0 = max(m0, math.Float32bits(v)&abs)
	}
	return max(m0, m1, m2, m3)
}

const f32Inf = 0x7f800000

// clampQ converts an already rounded quant to int8, clamped to [-127, 127] and NaN to 0.
// For finite blocks the rounded values are in range already; the clamp matters only when
// 1/d overflows (a block of tiny subnormals), where ggml's conversion is undefined.
func clampQ(v float64) int8 {
	switch {
	case v >= 127:
		return 127
	case v <= -127:
		return -127
	case v == v:
		return int8(v)
	}
	return 0
}

// Lane words. The packed words q8Block.w and q8KBlock.w are read by the pure-Go dots (the
// …Go functions of legacy.go and kquants.go) and by nothing else: the assembly dots read
// qs. So a form's words are filled only when some dispatch variable of that form still
// holds its pure-Go dot (lanesNeeded), which on amd64 with AVX2 is never the case; when
// they are skipped, w holds whatever it held before (no code reads it). Any other Go
// function assigned to a dispatch variable must therefore not read w either.

// forceLanes makes every quantization fill the lane words, whichever dots are installed.
// The tests set it: they call the pure-Go dots directly on prepared activations.
var forceLanes bool

// codePtr returns the entry point of the function f (F is a func type).
func codePtr[F any](f F) uintptr { return **(**uintptr)(unsafe.Pointer(&f)) }

// lanesNeeded reports whether the lane words of form f may be read by the dots installed
// now.
func lanesNeeded(f form) bool {
	if forceLanes {
		return true
	}
	switch f {
	case formQ8:
		return codePtr(dotQ8_0) == codePtr(dotQ8Func(dotQ8_0Go)) ||
			codePtr(dotQ4_0) == codePtr(dotQ8Func(dotQ4_0Go)) ||
			codePtr(dotQ4_1) == codePtr(dotQ8Func(dotQ4_1Go)) ||
			codePtr(dotQ5_0) == codePtr(dotQ8Func(dotQ5_0Go)) ||
			codePtr(dotQ5_1) == codePtr(dotQ8Func(dotQ5_1Go)) ||
			codePtr(dot4Q8_0) == codePtr(dotQ8x4Func(dot4Q8_0Go)) ||
			codePtr(dot4Q4_0) == codePtr(dotQ8x4Func(dot4Q4_0Go)) ||
			codePtr(dot4Q4_1) == codePtr(dotQ8x4Func(dot4Q4_1Go)) ||
			codePtr(dot4Q5_0) == codePtr(dotQ8x4Func(dot4Q5_0Go)) ||
			codePtr(dot4Q5_1) == codePtr(dotQ8x4Func(dot4Q5_1Go))
	case formQ8K:
		return codePtr(dotQ2_K) == codePtr(dotQKFunc(dotQ2_KGo)) ||
			codePtr(dotQ3_K) == codePtr(dotQKFunc(dotQ3_KGo)) ||
			codePtr(dotQ4_K) == codePtr(dotQKFunc(dotQ4_KGo)) ||
			codePtr(dotQ5_K) == codePtr(dotQKFunc(dotQ5_KGo)) ||
			codePtr(dotQ6_K) == codePtr(dotQKFunc(dotQ6_KGo)) ||
			codePtr(dot4Q2_K) == codePtr(dotQKx4Func(dot4Q2_KGo)) ||
			codePtr(dot4Q3_K) == codePtr(dotQKx4Func(dot4Q3_KGo)) ||
			codePtr(dot4Q4_K) == codePtr(dotQKx4Func(dot4Q4_KGo)) ||
			codePtr(dot4Q5_K) == codePtr(dotQKx4Func(dot4Q5_KGo)) ||
			codePtr(dot4Q6_K) == codePtr(dotQKx4Func(dot4Q6_KGo))
	}
	return false
}

// quantQ8Fast and quantQ8KFast quantize a prefix of the blocks (x holding 32 or 256
// elements per block) and return its length; the blocks after it are left to the Go code,
// which does the first one itself before trying again. Assembly replaces them on amd64;
// elsewhere they do nothing.
var (
	quantQ8Fast  = func([]q8Block, []float32) int { return 0 }
	quantQ8KFast = func([]q8KBlock, []float32) int { return 0 }
)

// quantizeQ8 quantizes x into blocks as ggml's quantize_row_q8_1_ref (whose d and qs are
// quantize_row_q8_0_ref's): d = amax/127, id = 1/d (0 when d is 0), qs = roundf(x·id)
// (round half away from zero), d stored as binary16, s = binary16(d·Σqs). A block holding
// a NaN or Inf has d = s = NaN and zero quants.
//
// quantQ8Fast (assembly where the CPU has it) does the blocks up to the first one it
// leaves to quantQ8Block (a non-finite block, or one whose 1/d overflows).
func quantizeQ8(blocks []q8Block, x []float32) {
	for i := 0; i < len(blocks); i++ {
		i += quantQ8Fast(blocks[i:], x[32*i:])
		if i < len(blocks) {
			quantQ8Block(&blocks[i], (*[32]float32)(x[32*i:]))
		}
	}
	if lanesNeeded(formQ8) {
		for i := range blocks {
			packGroups(blocks[i].w[:], blocks[i].qs[:])
		}
	}
}

// quantQ8Block quantizes one block as quantizeQ8 (without the lane words).
func quantQ8Block(b *q8Block, xb *[32]float32) {
	amax := absMax(xb[:])
	if amax >= f32Inf {
		*b = q8Block{d: float32(math.NaN()), s: float32(math.NaN())}
		return
	}
	d := math.Float32frombits(amax) / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	var sum int32
	if id <= math.MaxFloat32 {
		// |x·id| ≤ 127.00002: in range, and roundf(p) = trunc(p + copysign(½, p)) in
		// float64, where p + ½ is exact (p has 24 significant bits and |p| < 2^7) or,
		// for |p| < 2^-29, rounds to at most ½ + 2^-30 < 1.
		for j, v := range xb {
			p := float64(float32(v * id))
			q := int8(p + math.Float64frombits(math.Float64bits(p)&(1<<63)|0x3fe0000000000000))
			b.qs[j] = q
			sum += int32(q)
		}
	} else {
		for j, v := range xb {
			q := clampQ(math.Round(float64(v * id)))
			b.qs[j] = q
			sum += int32(q)
		}
	}
	b.sum = sum
	b.d = float16.Fromfloat32(d).Float32()
	b.s = float16.Fromfloat32(float32(sum) * d).Float32()
}

// quantizeQ8K quantizes x into blocks as ggml's quantize_row_q8_K_ref: with max the
// element of largest magnitude (the first of equals), iscale = -127/max,
// qs = min(127, nearest_int(iscale·x)) (round half to even), d = 1/iscale, and bsums the
// sums of each 16 quants. An all-zero block has d = 0, a block holding a NaN or Inf
// d = NaN and zero quants.
//
// quantQ8KFast (assembly where the CPU has it) does the blocks up to the first one it
// leaves to quantQ8KBlock (a zero or non-finite block, or one whose iscale overflows).
func quantizeQ8K(blocks []q8KBlock, x []float32) {
	for i := 0; i < len(blocks); i++ {
		i += quantQ8KFast(blocks[i:], x[256*i:])
		if i < len(blocks) {
			quantQ8KBlock(&blocks[i], (*[256]float32)(x[256*i:]))
		}
	}
	if lanesNeeded(formQ8K) {
		for i := range blocks {
			packGroups(blocks[i].w[:], blocks[i].qs[:])
		}
	}
}

// quantQ8KBlock quantizes one block as quantizeQ8K (without the lane words).
func quantQ8KBlock(b *q8KBlock, xb *[256]float32) {
	amax, maxv := absMaxBits(xb[:])
	switch {
	case amax >= f32Inf:
		*b = q8KBlock{d: float32(math.NaN())}
		return
	case amax == 0:
		*b = q8KBlock{}
		return
	}
	iscale := -127 / maxv
	if math.Abs(float64(iscale)) <= math.MaxFloat32 {
		// |iscale·x| ≤ 127.00002: nearest_int by adding and subtracting 1.5·2^23 in
		// float32 (round half to even, exact for |p| < 2^22)
		const magic = 0x1.8p23
		for j, v := range xb {
			b.qs[j] = int8(int32(float32(float32(v*iscale)+magic) - magic))
		}
	} else {
		for j, v := range xb {
			b.qs[j] = clampQ(math.RoundToEven(float64(iscale * v)))
		}
	}
	for k := range b.bsums {
		var s int16
		for _, q := range b.qs[16*k : 16*k+16] {
			s += int16(q)
		}
		b.bsums[k] = s
	}
	b.d = 1 / iscale
}
