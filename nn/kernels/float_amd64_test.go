//go:build amd64 && !purego

package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"golang.org/x/sys/cpu"
)

// The float assembly (float_amd64.s) against the pure-Go dots, each path (AVX2, AVX-512)
// forced in turn.
//
// Error bound. The assembly adds the exact products w_i·x_i with fused multiply-adds into
// float32 accumulator lanes: a lane of L lanes adds at most ⌈n/L⌉ products in a chain, then
// the accumulator sets (at most 4: two levels), the lanes (16 → 4: two levels) and the last
// four (two levels) are added pairwise, MulMat adds the sums of its column chunks of C
// elements one after the other (⌈n/C⌉ additions; the chain in a chunk is then at most
// ⌈C/L⌉ ≤ ⌈n/L⌉ long), and the wrapper adds the elements after the last whole vector (the
// pure-Go dot: product rounding, float64 sum, float32 rounding) with one more float32
// addition. Each term therefore goes through at most ⌈n/L⌉ + ⌈n/C⌉ + 7 roundings of relative
// size ε, so the result is within γ_(⌈n/L⌉+⌈n/C⌉+7)·Σ|w_i·x_i| of the exact dot (Higham, the
// error of recursive/pairwise summation: every partial sum is rounded once). The pure-Go dot
// is within 2ε·Σ|w_i·x_i| (as kernels_test.go derives), so
//
//	|asm − Go| ≤ (⌈n/L⌉ + ⌈n/C⌉ + 10)·ε·Σ|w_i·x_i| + n·2^-148
//
// (γ_k ≤ (k+1)ε here, the extra ε covering the division in γ and the float64 sums; the
// last term covers subnormal results, each rounding there being off by at most 2^-150 in
// absolute terms, and the 2^-140 of the Go bound).

type floatPath struct {
	name        string
	ok          bool
	lanes       int
	dot         [3]dotFFunc   // F32, F16, BF16
	dot4        [3]dotFx4Func // F32, F16, BF16
	tile        [3]*floatTile // F32, F16, BF16
	goDot       [3]dotFFunc
	typ         [3]formats.DType
	sizes       [3]int
	maxAbsValue [3]float64
}

func floatPaths() []floatPath {
	common := floatPath{
		goDot:       [3]dotFFunc{dotF32Go, dotF16Go, dotBF16Go},
		typ:         [3]formats.DType{formats.F32, formats.F16, formats.BF16},
		sizes:       [3]int{4, 2, 2},
		maxAbsValue: [3]float64{1e30, 65504, 1e30},
	}
	avx2, avx512 := common, common
	avx2.name, avx2.lanes = "AVX2", 8
	avx2.ok = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	avx2.dot = [3]dotFFunc{dotF32AVX2, dotF16AVX2, dotBF16AVX2}
	avx2.dot4 = [3]dotFx4Func{dot4F32AVX2, dot4F16AVX2, dot4BF16AVX2}
	avx2.tile = [3]*floatTile{tileF32AVX2, tileF16AVX2, tileBF16AVX2}
	avx512.name, avx512.lanes = "AVX512", 16
	avx512.ok = avx2.ok && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ
	avx512.dot = [3]dotFFunc{dotF32AVX512, dotF16AVX512, dotBF16AVX512}
	avx512.dot4 = [3]dotFx4Func{dot4F32AVX512, dot4F16AVX512, dot4BF16AVX512}
	avx512.tile = [3]*floatTile{tileF32AVX512, tileF16AVX512, tileBF16AVX512}
	return []floatPath{avx2, avx512}
}

// force installs path p's float dots and tiles for the rest of the test.
func (p floatPath) force(t *testing.T) {
	if !p.ok {
		t.Skipf("CPU lacks %s", p.name)
	}
	old := []any{dotF32, dotF16, dotBF16, dot4F32, dot4F16, dot4BF16, tileF32, tileF16, tileBF16}
	dotF32, dotF16, dotBF16 = p.dot[0], p.dot[1], p.dot[2]
	dot4F32, dot4F16, dot4BF16 = p.dot4[0], p.dot4[1], p.dot4[2]
	tileF32, tileF16, tileBF16 = p.tile[0], p.tile[1], p.tile[2]
	t.Cleanup(func() {
		dotF32, dotF16, dotBF16 = old[0].(dotFFunc), old[1].(dotFFunc), old[2].(dotFFunc)
		dot4F32, dot4F16, dot4BF16 = old[3].(dotFx4Func), old[4].(dotFx4Func), old[5].(dotFx4Func)
		tileF32, tileF16, tileBF16 = old[6].(*floatTile), old[7].(*floatTile), old[8].(*floatTile)
	})
}

// floatBound is the bound above for n elements of path p, given Σ|w_i·x_i|.
func floatBound(lanes, n int, abs float64) float64 {
	return float64((n+lanes-1)/lanes+(n+floatChunkCols-1)/floatChunkCols+10)*eps*abs + float64(n)*0x1p-148
}

// checkFloat compares got with the pure-Go dot want of row w and x.
func checkFloat(t *testing.T, what string, typ formats.DType, lanes int, w []byte, x []float32, got, want float32) {
	t.Helper()
	_, abs := dot64(decodeRow(typ, w, len(x)), x)
	if math.IsNaN(float64(want)) || math.IsInf(float64(want), 0) {
		if !same(got, want) {
			t.Fatalf("%s: %v, pure Go %v", what, got, want)
		}
		return
	}
	bound := floatBound(lanes, len(x), abs)
	if d := math.Abs(float64(got) - float64(want)); !(d <= bound) {
		t.Fatalf("%s: %v, pure Go %v (|diff| %g > %g)", what, got, want, d, bound)
	}
}

var floatLengths = []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 1000, 2048, 2053, 5632}

// floatRow returns n random weights of type typ (index i of the floatPath arrays) drawn by
// kind: 0 normal, 1 wide magnitudes (near the type's limits, subnormals included), 2 zero.
func floatRow(r *rand.Rand, typ formats.DType, n, kind int) []byte {
	b := make([]byte, n*typ.BlockBytes())
	for i := 0; i < n; i++ {
		var v float32
		switch kind {
		case 0:
			v = float32(r.NormFloat64())
		case 1:
			switch typ {
			case formats.F16:
				v = float32(math.Ldexp(r.Float64()*2-1, r.IntN(40)-24)) // 2^-24 .. 2^15
			default:
				v = float32(math.Ldexp(r.Float64()*2-1, r.IntN(140)-140)) // subnormal .. 2^-1
			}
		}
		switch typ {
		case formats.F32:
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		case formats.F16:
			putH(b[2*i:], v)
		case formats.BF16:
			binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(v)>>16))
		}
	}
	return b
}

// TestFloatAsmDots: the one-row dots, the four-vector dots and the register tiles of each
// path against the pure-Go dots, on random rows of many lengths (tails of every size),
// weights of extreme magnitudes, and zero rows.
func TestFloatAsmDots(t *testing.T) {
	for _, p := range floatPaths() {
		t.Run(p.name, func(t *testing.T) {
			if !p.ok {
				t.Skipf("CPU lacks %s", p.name)
			}
			r := rand.New(rand.NewPCG(11, 12))
			for k, typ := range p.typ {
				for _, n := range floatLengths {
					for kind := 0; kind < 3; kind++ {
						tl := p.tile[k]
						rows := make([][]byte, tl.rows)
						var data []byte
						for q := range rows {
							rows[q] = floatRow(r, typ, n, kind)
							data = append(data, rows[q]...)
						}
						var xs [maxTileVecs][]float32
						for j := range xs {
							xs[j] = randomActs(r, n)
							if kind == 1 && j == 3 {
								for i := range xs[j] {
									xs[j][i] = float32(math.Ldexp(r.Float64()*2-1, r.IntN(60)))
								}
							}
						}
						what := func(f string, a ...any) string {
							return fmt.Sprintf("%v n %d kind %d: ", typ, n, kind) + fmt.Sprintf(f, a...)
						}
						gd := p.goDot[k]
						// One row.
						got := p.dot[k](rows[0], xs[0])
						want := gd(rows[0], xs[0])
						checkFloat(t, what("dot"), typ, p.lanes, rows[0], xs[0], got, want)
						if kind == 2 && got != 0 {
							t.Fatalf("%s: %v", what("zero row"), got)
						}
						// Four vectors, against the single dots.
						var d4 [4]float32
						p.dot4[k](&d4, rows[0], xs[0], xs[1], xs[2], xs[3])
						for j := range d4 {
							checkFloat(t, what("dot4 vector %d", j), typ, p.lanes, rows[0], xs[j], d4[j], gd(rows[0], xs[j]))
							checkFloat(t, what("dot4 vector %d vs dot", j), typ, p.lanes, rows[0], xs[j], d4[j], p.dot[k](rows[0], xs[j]))
						}
						// The register tile with 1..tl.vecs vectors (n a multiple of its lanes; the rest in Go).
						m := n - n%tl.lanes
						if len(tl.fn) != tl.vecs || tl.vecs > maxTileVecs || tl.rows*tl.vecs > maxTileOut {
							t.Fatalf("tile of %d rows, %d vectors, %d functions", tl.rows, tl.vecs, len(tl.fn))
						}
						for nv := 1; nv <= tl.vecs; nv++ {
							var out [maxTileOut]float32
							for i := range out {
								out[i] = float32(math.NaN()) // the tile adds to out[:nv*rows] and leaves the rest
							}
							clear(out[:nv*tl.rows])
							var xp [maxTileVecs]*float32
							for j := range xp {
								xp[j] = &xs[min(j, nv-1)][0]
							}
							tl.fn[nv-1](&out[0], &data[0], len(rows[0]), xp[0], xp[1], xp[2], xp[3], xp[4], xp[5], m)
							for i := nv * tl.rows; i < len(out); i++ {
								if !math.IsNaN(float64(out[i])) {
									t.Fatalf("%s: wrote out[%d]", what("tile x%d", nv), i)
								}
							}
							for j := 0; j < nv; j++ {
								for q := range rows {
									w := rows[q][:m*p.sizes[k]]
									checkFloat(t, what("tile x%d vector %d row %d", nv, j, q), typ, p.lanes, w, xs[j][:m],
										out[j*tl.rows+q], gd(w, xs[j][:m]))
								}
							}
						}
					}
				}
			}
		})
	}
}

// TestFloatAsmNonFinite: a NaN or infinite weight, or a NaN activation, gives the pure-Go
// dot's NaN or infinity in every kernel and every position (whole vectors and tails).
func TestFloatAsmNonFinite(t *testing.T) {
	specials := map[formats.DType][]uint32{ // +Inf, -Inf, NaN
		formats.F32:  {0x7f800000, 0xff800000, 0x7fc00000},
		formats.F16:  {0x7c00, 0xfc00, 0x7e00},
		formats.BF16: {0x7f80, 0xff80, 0x7fc0},
	}
	for _, p := range floatPaths() {
		t.Run(p.name, func(t *testing.T) {
			if !p.ok {
				t.Skipf("CPU lacks %s", p.name)
			}
			r := rand.New(rand.NewPCG(13, 14))
			for k, typ := range p.typ {
				for _, n := range []int{1, 16, 37, 256} {
					for _, pos := range []int{0, n / 2, n - 1} {
						for s, bits := range specials[typ] {
							for _, zeroX := range []bool{false, true} {
								w := floatRow(r, typ, n, 0)
								if typ == formats.F32 {
									binary.LittleEndian.PutUint32(w[4*pos:], bits)
								} else {
									binary.LittleEndian.PutUint16(w[2*pos:], uint16(bits))
								}
								x := randomActs(r, n)
								x[pos] = 1
								if zeroX {
									x[pos] = 0 // Inf·0 = NaN
								}
								what := fmt.Sprintf("%v n %d pos %d special %d zero %v", typ, n, pos, s, zeroX)
								want := p.goDot[k](w, x)
								if !math.IsNaN(float64(want)) && !math.IsInf(float64(want), 0) {
									t.Fatalf("%s: pure Go %v", what, want)
								}
								checkFloat(t, what+" dot", typ, p.lanes, w, x, p.dot[k](w, x), want)
								var d4 [4]float32
								p.dot4[k](&d4, w, x, x, x, x)
								for j := range d4 {
									checkFloat(t, what+" dot4", typ, p.lanes, w, x, d4[j], want)
								}
								// A NaN activation.
								x[pos] = float32(math.NaN())
								w = floatRow(r, typ, n, 0)
								if got := p.dot[k](w, x); !math.IsNaN(float64(got)) {
									t.Fatalf("%s: NaN activation gives %v", what, got)
								}
							}
						}
					}
				}
			}
		})
	}
}

// TestFloatAsmMulMat: MulMat with each path's register tiles and dots (rows not a multiple
// of the tile, columns not a multiple of the lanes, 1..9 vectors, a row range) against the
// pure-Go dots.
func TestFloatAsmMulMat(t *testing.T) {
	for _, p := range floatPaths() {
		t.Run(p.name, func(t *testing.T) {
			p.force(t)
			r := rand.New(rand.NewPCG(15, 16))
			for k, typ := range p.typ {
				for _, shape := range [][2]int{{1, 16}, {3, 8}, {11, 40}, {13, 77}, {70, 2048}, {9, 1}, {21, 3000}, {8, 2053}} {
					rows, cols := shape[0], shape[1]
					var data []byte
					for i := 0; i < rows; i++ {
						data = append(data, floatRow(r, typ, cols, i%2)...)
					}
					m, err := NewMatrix(typ, rows, cols, data)
					if err != nil {
						t.Fatal(err)
					}
					if floatTileOf(kernelOf(typ)) != p.tile[k] {
						t.Fatalf("%v: MulMat does not use the %s tile", typ, p.name)
					}
					for _, nx := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13} {
						xs := make([]*Activations, nx)
						dst := make([][]float32, nx)
						for i := range xs {
							xs[i] = Prepare(randomActs(r, cols), typ)
							dst[i] = make([]float32, rows)
						}
						lo, hi := min(1, rows-1), rows
						m.MulMat(dst, xs, lo, hi)
						for i, x := range xs {
							for row := lo; row < hi; row++ {
								w := data[row*m.RowBytes : (row+1)*m.RowBytes]
								checkFloat(t, fmt.Sprintf("%v %dx%d, %d vectors: vector %d row %d", typ, rows, cols, nx, i, row),
									typ, p.lanes, w, x.x, dst[i][row], p.goDot[k](w, x.x))
							}
							if lo > 0 && dst[i][0] != 0 {
								t.Fatalf("row 0 outside [lo, hi) written")
							}
						}
					}
				}
			}
		})
	}
}

// TestFloatTileDispatch: the register tile is used only with the dot it was installed
// with, so that the pure-Go dots swapped in by the bit-exact tests give MulMat's results too.
func TestFloatTileDispatch(t *testing.T) {
	if tileF32 == nil {
		t.Skip("no float assembly on this CPU")
	}
	if floatTileOf(kernelOf(formats.F32)) != tileF32 || floatTileOf(kernelOf(formats.BF16)) != tileBF16 {
		t.Fatal("tile not used")
	}
	pureGo(t)
	for _, typ := range floatTypes {
		if floatTileOf(kernelOf(typ)) != nil {
			t.Fatalf("%v: tile used with the pure-Go dots", typ)
		}
	}
}

// TestFloatAsmConcurrent: MulMat on disjoint row ranges from several goroutines at once
// (the register tiles share scratch buffers through a pool) gives the serial results.
func TestFloatAsmConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, typ := range floatTypes {
		const rows, cols, nx = 96, 1100, 7
		m, err := NewMatrix(typ, rows, cols, floatRow(r, typ, rows*cols, 0))
		if err != nil {
			t.Fatal(err)
		}
		xs := make([]*Activations, nx)
		want := make([][]float32, nx)
		for i := range xs {
			xs[i] = Prepare(randomActs(r, cols), typ)
			want[i] = make([]float32, rows)
		}
		m.MulMat(want, xs, 0, rows)
		done := make(chan [][]float32)
		for g := 0; g < 8; g++ {
			go func() {
				dst := make([][]float32, nx)
				for i := range dst {
					dst[i] = make([]float32, rows)
				}
				for lo := 0; lo < rows; lo += 12 {
					m.MulMat(dst, xs, lo, lo+12)
				}
				done <- dst
			}()
		}
		for g := 0; g < 8; g++ {
			dst := <-done
			for i := range dst {
				for row := range dst[i] {
					if !same(dst[i][row], want[i][row]) {
						t.Fatalf("%v: vector %d row %d: %v, serial %v", typ, i, row, dst[i][row], want[i][row])
					}
				}
			}
		}
	}
}
