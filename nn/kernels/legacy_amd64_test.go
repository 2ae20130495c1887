//go:build amd64 && !purego

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

// Tests of the legacy assembly dots (legacy_amd64.s), each instruction set forced in turn.
//
// Error bound. Per block the kernels compute the exact integer sums c_k of the eight lanes
// (elements 4k..4k+3), D = fl(dx·dy) (one rounding), and add c_k·D into lane k of the even
// or odd accumulator with a fused multiply-add (one rounding per block in a chain of at
// most ⌈nb/2⌉); then the two accumulators are added and the lanes summed in three levels
// (four roundings on each path). The min term m·s of Q4_1/Q5_1 is a chain of nb fused
// multiply-adds plus one final addition. Every rounding is relative (ε = 2^-24) to a
// partial sum bounded by Σ|block terms| = Σ_b |dx·dy|·Σ_j|q_j·y_j| + |m·s|, so against
// the exact value Σ_b (dx·dy·Σ_j q_j·y_j + m·s) (dx, dy, m, s as stored, computed in
// float64) the error is at most (⌈nb/2⌉ + 6)·ε·mag for the lanes and (nb + 1)·ε·mag for the
// min chain (to first order): (nb + 6)·ε·mag covers both. The float64 reference itself is
// within 2^-50·mag.

type legacyPath struct {
	name string
	ok   bool
	dots *legacyDots
}

func legacyPaths() []legacyPath {
	avx2 := cpu.X86.HasAVX2 && cpu.X86.HasFMA
	vnni := avx2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL &&
		cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VNNI
	return []legacyPath{{"AVX2", avx2, legacyAVX2}, {"VNNI", vnni, legacyVNNI}}
}

var legacyTypes = [5]formats.DType{formats.Q8_0, formats.Q4_0, formats.Q4_1, formats.Q5_0, formats.Q5_1}

var legacyGo = [5]dotQ8Func{dotQ8_0Go, dotQ4_0Go, dotQ4_1Go, dotQ5_0Go, dotQ5_1Go}

// legacyExact returns the exact dot (float64) of the stored scales and integer sums, and
// mag = Σ|block terms|.
func legacyExact(t formats.DType, w []byte, a []q8Block) (exact, mag float64) {
	bb := t.BlockBytes()
	for i := range a {
		y := &a[i]
		q, dx, m := refLegacy(t, w[bb*i:bb*(i+1)])
		var sumi int64
		var abs float64
		for j := range q {
			sumi += int64(q[j]) * int64(y.qs[j])
			abs += math.Abs(float64(q[j]) * float64(y.qs[j]))
		}
		d := float64(dx) * float64(y.d)
		exact += d * float64(sumi)
		mag += math.Abs(d) * abs
		if t == formats.Q4_1 || t == formats.Q5_1 {
			exact += float64(m) * float64(y.s)
			mag += math.Abs(float64(m) * float64(y.s))
		}
	}
	return exact, mag
}

func legacyBound(nb int, mag float64) float64 {
	return float64(nb+6)*eps*mag + 0x1p-50*mag
}

func TestLegacyOffsets(t *testing.T) {
	var b q8Block
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"d", unsafe.Offsetof(b.d), 64},
		{"s", unsafe.Offsetof(b.s), 68},
		{"qs", unsafe.Offsetof(b.qs), 76},
		{"size", unsafe.Sizeof(b), 112},
	} {
		if c.got != c.want {
			t.Errorf("q8Block %s: %d, the assembly assumes %d", c.name, c.got, c.want)
		}
	}
	for i, typ := range legacyTypes {
		if typ.BlockBytes() != legacySizes[i] {
			t.Errorf("%v: %d bytes a block, legacySizes has %d", typ, typ.BlockBytes(), legacySizes[i])
		}
	}
}

// checkLegacy runs every available path on row w with the four activation vectors as
// (single dots for each, the four-vector dot once) and compares with the exact value and
// between paths and forms.
func checkLegacy(t *testing.T, ti int, w []byte, as [4][]q8Block, what string) {
	t.Helper()
	typ := legacyTypes[ti]
	nb := len(as[0])
	var first *[4]float32
	firstName := ""
	for _, p := range legacyPaths() {
		if !p.ok {
			continue
		}
		var single [4]float32
		for v := range as {
			got := p.dots.dot[ti](w, as[v])
			single[v] = got
			exact, mag := legacyExact(typ, w, as[v])
			goDot := legacyGo[ti](w, as[v])
			switch {
			case math.IsNaN(float64(goDot)):
				if !math.IsNaN(float64(got)) {
					t.Fatalf("%v %s %s nb %d vector %d: %v, pure Go NaN", typ, p.name, what, nb, v, got)
				}
			case math.IsInf(float64(goDot), 0):
				if !math.IsNaN(float64(got)) && !math.IsInf(float64(got), 0) {
					t.Fatalf("%v %s %s nb %d vector %d: %v, pure Go %v", typ, p.name, what, nb, v, got, goDot)
				}
			default:
				b := legacyBound(nb, mag)
				if d := math.Abs(float64(got) - exact); !(d <= b) {
					t.Fatalf("%v %s %s nb %d vector %d: %v, exact %v: |diff| %g > bound %g", typ, p.name, what, nb, v, got, exact, d, b)
				}
				if d := math.Abs(float64(goDot) - exact); !(d <= b) {
					t.Fatalf("%v pure Go %s nb %d vector %d: %v, exact %v: |diff| %g > bound %g", typ, what, nb, v, goDot, exact, d, b)
				}
			}
		}
		var four [4]float32
		p.dots.dot4[ti](&four, w, as[0], as[1], as[2], as[3])
		for v := range four {
			if !same(four[v], single[v]) {
				t.Fatalf("%v %s %s nb %d: dot4[%d] %v, dot %v", typ, p.name, what, nb, v, four[v], single[v])
			}
		}
		if first == nil {
			first, firstName = &single, p.name
		} else {
			for v := range single {
				if !same(single[v], first[v]) {
					t.Fatalf("%v %s nb %d vector %d: %s %v, %s %v", typ, what, nb, v, p.name, single[v], firstName, first[v])
				}
			}
		}
	}
}

func quantActs(x []float32) []q8Block {
	a := make([]q8Block, len(x)/32)
	quantizeQ8(a, x)
	return a
}

var legacyBlockCounts = []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 64, 65, 176}

func TestLegacyRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for ti, typ := range legacyTypes {
		for _, nb := range legacyBlockCounts {
			for trial := 0; trial < 8; trial++ {
				w := randomRow(r, typ, 32*nb)
				var as [4][]q8Block
				for v := range as {
					as[v] = quantActs(randomActs(r, 32*nb))
				}
				checkLegacy(t, ti, w, as, "random")
			}
		}
	}
}

// TestLegacyExtremes: every weight byte the same (all quants at their extremes), scales 1,
// activations at ±127; all-zero rows; and weights of formats/quant's encoder.
func TestLegacyExtremes(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	acts := func(nb int, f func(i int) float32) []q8Block {
		x := make([]float32, 32*nb)
		for i := range x {
			x[i] = f(i)
		}
		return quantActs(x)
	}
	for ti, typ := range legacyTypes {
		bb := typ.BlockBytes()
		for _, nb := range []int{1, 3, 64} {
			as := [4][]q8Block{
				acts(nb, func(int) float32 { return 1 }),
				acts(nb, func(int) float32 { return -1 }),
				acts(nb, func(i int) float32 { return float32(1 - 2*(i&1)) }),
				acts(nb, func(i int) float32 { return float32(r.NormFloat64()) }),
			}
			for _, fill := range []byte{0x00, 0xff, 0x80, 0x7f, 0x55, 0xaa, 0x0f, 0xf0, 0x81} {
				w := make([]byte, bb*nb)
				for i := range w {
					w[i] = fill
				}
				for blk := 0; blk < nb; blk++ {
					for _, off := range scaleFields[typ] {
						putH(w[blk*bb+off:], 1)
					}
				}
				checkLegacy(t, ti, w, as, "extreme")
			}
			zero := make([]byte, bb*nb)
			checkLegacy(t, ti, zero, as, "zero")
			for _, p := range legacyPaths() {
				if p.ok {
					if got := p.dots.dot[ti](zero, as[3]); got != 0 {
						t.Fatalf("%v %s: zero row gives %v", typ, p.name, got)
					}
				}
			}
		}
	}
}

// TestLegacyNonFinite: NaN and infinite weight scales (d and m), subnormal scales, and
// activation blocks with a NaN scale.
func TestLegacyNonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for ti, typ := range legacyTypes {
		bb := typ.BlockBytes()
		for _, nb := range []int{1, 2, 5, 16} {
			for _, scale := range []uint16{0x7e00, 0x7c01, 0xfc00, 0x7c00, 0x0001, 0x8001, 0x03ff, 0x7bff} {
				for _, off := range scaleFields[typ] {
					w := randomRow(r, typ, 32*nb)
					blk := r.IntN(nb)
					binary.LittleEndian.PutUint16(w[blk*bb+off:], scale)
					var as [4][]q8Block
					for v := range as {
						as[v] = quantActs(randomActs(r, 32*nb))
					}
					checkLegacy(t, ti, w, as, "scale")
				}
			}
			w := randomRow(r, typ, 32*nb)
			var as [4][]q8Block
			for v := range as {
				x := randomActs(r, 32*nb)
				if v != 2 {
					x[r.IntN(len(x))] = []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}[v%3]
				}
				as[v] = quantActs(x)
			}
			checkLegacy(t, ti, w, as, "activation")
			for _, p := range legacyPaths() {
				if p.ok {
					if got := p.dots.dot[ti](w, as[0]); !math.IsNaN(float64(got)) {
						t.Fatalf("%v %s: NaN activation gives %v", typ, p.name, got)
					}
				}
			}
		}
	}
}

// TestLegacyEmpty: no blocks gives 0 (the wrappers do not call the assembly).
func TestLegacyEmpty(t *testing.T) {
	for ti := range legacyTypes {
		for _, p := range legacyPaths() {
			if !p.ok {
				continue
			}
			if got := p.dots.dot[ti](nil, nil); got != 0 {
				t.Fatalf("%s: %v", p.name, got)
			}
			out := [4]float32{1, 1, 1, 1}
			p.dots.dot4[ti](&out, nil, nil, nil, nil, nil)
			if out != [4]float32{} {
				t.Fatalf("%s: %v", p.name, out)
			}
		}
	}
}
