package kernels

import (
	"fmt"
	"math"

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
	for _, v := range x {
		if b := math.Float32bits(v) &^ (1 << 31); b > amax {
			amax, signed = b, v
		}
	}
	return amax, signed
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

// quantizeQ8 quantizes x into blocks as ggml's quantize_row_q8_1_ref (whose d and qs are
// quantize_row_q8_0_ref's): d = amax/127, id = 1/d (0 when d is 0), qs = roundf(x·id)
// (round half away from zero), d stored as binary16, s = binary16(d·Σqs).
func quantizeQ8(blocks []q8Block, x []float32) {
	for i := range blocks {
		b := &blocks[i]
		xb := (*[32]float32)(x[32*i:])
		amax, _ := absMaxBits(xb[:])
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
		packGroups(b.w[:], b.qs[:])
	}
}

// quantizeQ8K quantizes x into blocks as ggml's quantize_row_q8_K_ref: with max the
// element of largest magnitude (the first of equals), iscale = -127/max,
// qs = min(127, nearest_int(iscale·x)) (round half to even), d = 1/iscale, and bsums the
// sums of each 16 quants. An all-zero block has d = 0.
func quantizeQ8K(blocks []q8KBlock, x []float32) {
	for i := range blocks {
		b := &blocks[i]
		xb := (*[256]float32)(x[256*i:])
		amax, maxv := absMaxBits(xb[:])
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
		packGroups(b.w[:], b.qs[:])
	}
}
