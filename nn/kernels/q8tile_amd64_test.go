//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

// Tests of the Q8_0/Q4_0 register tiles (q8tile_amd64.s) through MulMat.
//
// Error bound. Per block and pair (row, vector) the tile computes the exact integer sums
// c_k of the eight lanes, D = fl(dx·dy) (one rounding) and adds c_k·D into lane k of the
// pair's accumulator with a fused multiply-add: a chain of at most c = min(nb,
// q8ChunkBlocks) roundings per column chunk; the lanes are summed in three levels and each
// chunk's sum added to the row's sum (a chain of ⌈nb/c⌉ additions). Every rounding is
// relative (ε = 2^-24) to a partial sum bounded by mag = Σ|block terms|, so against the
// exact float64 value the error is at most (1 + c + 3 + ⌈nb/c⌉)·ε·mag ≤ (nb + 8)·ε·mag to
// first order; the float64 reference is within 2^-50·mag. Rows computed by the one-row
// dots (after the last whole tile) meet the legacy bound, which is smaller.

func q8TileBound(nb int, mag float64) float64 {
	return float64(nb+8)*eps*mag + 0x1p-50*mag
}

var q8TileTypes = []struct {
	t  formats.DType
	ti int // index in legacyTypes
}{{formats.Q8_0, 0}, {formats.Q4_0, 1}}

// haveQ8Tile skips the test unless the tiles are installed.
func haveQ8Tile(t *testing.T) {
	t.Helper()
	if tileQ8_0 == nil || q8TileOf(kernelOf(formats.Q8_0)) == nil || q8TileOf(kernelOf(formats.Q4_0)) == nil {
		t.Skip("no Q8_0/Q4_0 register tile on this CPU")
	}
}

// checkQ8Tile compares dst (from MulMat over rows [lo, hi)) with the exact dots and the
// pure-Go dots, and checks that the other entries still hold the sentinel.
func checkQ8Tile(t *testing.T, ti int, m *Matrix, xs []*Activations, dst [][]float32, lo, hi int, what string) {
	t.Helper()
	typ := legacyTypes[ti]
	nb := m.Cols / 32
	for i, x := range xs {
		for r := range m.Rows {
			got := dst[i][r]
			if r < lo || r >= hi {
				if math.Float32bits(got) != 0x7fc0dead {
					t.Fatalf("%v %s: row %d outside [%d, %d) written (%v)", typ, what, r, lo, hi, got)
				}
				continue
			}
			w := m.Data[r*m.RowBytes : (r+1)*m.RowBytes]
			goDot := legacyGo[ti](w, x.q8)
			switch {
			case math.IsNaN(float64(goDot)):
				if !math.IsNaN(float64(got)) {
					t.Fatalf("%v %s: row %d vector %d: %v, pure Go NaN", typ, what, r, i, got)
				}
			case math.IsInf(float64(goDot), 0):
				if !math.IsNaN(float64(got)) && !math.IsInf(float64(got), 0) {
					t.Fatalf("%v %s: row %d vector %d: %v, pure Go %v", typ, what, r, i, got, goDot)
				}
			default:
				exact, mag := legacyExact(typ, w, x.q8)
				if d := math.Abs(float64(got) - exact); !(d <= q8TileBound(nb, mag)) {
					t.Fatalf("%v %s: row %d vector %d: %v, exact %v: |diff| %g > bound %g", typ, what, r, i, got, exact, d, q8TileBound(nb, mag))
				}
			}
		}
	}
}

func sentinel(rows, n int) [][]float32 {
	dst := make([][]float32, n)
	for i := range dst {
		dst[i] = make([]float32, rows)
		for r := range dst[i] {
			dst[i][r] = math.Float32frombits(0x7fc0dead)
		}
	}
	return dst
}

// TestQ8Tile: MulMat of Q8_0 and Q4_0 through the tile, for row counts and vector counts
// that are not multiples of the tile, row ranges, rows over several column chunks, zero
// rows, and random bytes (NaN, infinite and subnormal scales, Q8_0 quants of -128).
func TestQ8Tile(t *testing.T) {
	haveQ8Tile(t)
	r := rand.New(rand.NewPCG(7, 7))
	for _, tt := range q8TileTypes {
		for _, cols := range []int{32, 96, 32 * q8ChunkBlocks, 32*(2*q8ChunkBlocks+3) + 0} {
			for _, rows := range []int{0, 1, 3, 4, 5, 8, 13, 37} {
				for _, wild := range []bool{false, true} {
					var data []byte
					for i := 0; i < rows; i++ {
						switch {
						case i%7 == 2:
							data = append(data, make([]byte, cols/32*tt.t.BlockBytes())...) // zero row
						case wild:
							data = append(data, randomRow(r, tt.t, cols)...)
						default:
							data = append(data, tameRow(r, tt.t, cols)...)
						}
					}
					m, err := NewMatrix(tt.t, rows, cols, data)
					if err != nil {
						t.Fatal(err)
					}
					for _, nx := range []int{1, 2, 3, 4, 5, 7, 9} {
						xs := make([]*Activations, nx)
						for i := range xs {
							x := randomActs(r, cols)
							if wild && i == nx-1 {
								x[r.IntN(cols)] = []float32{float32(math.NaN()), float32(math.Inf(1))}[r.IntN(2)]
							}
							xs[i] = Prepare(x, tt.t)
						}
						lo, hi := 0, rows
						if rows > 0 && r.IntN(2) == 0 {
							lo = r.IntN(rows)
							hi = lo + r.IntN(rows-lo+1)
						}
						dst := sentinel(rows, nx)
						m.MulMat(dst, xs, lo, hi)
						checkQ8Tile(t, tt.ti, m, xs, dst, lo, hi, fmt.Sprintf("%d×%d wild %v, %d vectors, rows [%d, %d)", rows, cols, wild, nx, lo, hi))
					}
				}
			}
		}
	}
}

// TestQ8TileNonFinite: NaN and infinite weight scales in otherwise tame rows.
func TestQ8TileNonFinite(t *testing.T) {
	haveQ8Tile(t)
	r := rand.New(rand.NewPCG(8, 8))
	for _, tt := range q8TileTypes {
		const rows, cols = 9, 32 * 5
		bb := tt.t.BlockBytes()
		var data []byte
		for i := 0; i < rows; i++ {
			row := tameRow(r, tt.t, cols)
			if i%2 == 0 {
				b := r.IntN(cols / 32)
				h := []uint16{0x7e00, 0x7c00, 0xfc00}[i/2%3] // NaN, +Inf, -Inf
				row[b*bb], row[b*bb+1] = byte(h), byte(h>>8)
			}
			data = append(data, row...)
		}
		m, err := NewMatrix(tt.t, rows, cols, data)
		if err != nil {
			t.Fatal(err)
		}
		xs := make([]*Activations, 6)
		for i := range xs {
			xs[i] = Prepare(randomActs(r, cols), tt.t)
		}
		dst := sentinel(rows, len(xs))
		m.MulMat(dst, xs, 0, rows)
		checkQ8Tile(t, tt.ti, m, xs, dst, 0, rows, "non-finite scales")
	}
}

// TestQ8TileConcurrent: disjoint row ranges (split at multiples of the tile's rows) run
// concurrently give the bits of one MulMat over all rows.
func TestQ8TileConcurrent(t *testing.T) {
	haveQ8Tile(t)
	r := rand.New(rand.NewPCG(9, 9))
	for _, tt := range q8TileTypes {
		const rows, cols, nx = 203, 32 * 70, 11
		var data []byte
		for i := 0; i < rows; i++ {
			data = append(data, tameRow(r, tt.t, cols)...)
		}
		m, err := NewMatrix(tt.t, rows, cols, data)
		if err != nil {
			t.Fatal(err)
		}
		xs := make([]*Activations, nx)
		for i := range xs {
			xs[i] = Prepare(randomActs(r, cols), tt.t)
		}
		want := sentinel(rows, nx)
		m.MulMat(want, xs, 0, rows)
		checkQ8Tile(t, tt.ti, m, xs, want, 0, rows, "whole")
		got := sentinel(rows, nx)
		var wg sync.WaitGroup
		for lo := 0; lo < rows; lo += 24 {
			wg.Add(1)
			go func(lo, hi int) {
				defer wg.Done()
				m.MulMat(got, xs, lo, hi)
			}(lo, min(rows, lo+24))
		}
		wg.Wait()
		for i := range got {
			for j := range got[i] {
				if !same(got[i][j], want[i][j]) {
					t.Fatalf("%v: row %d vector %d: concurrent %v, whole %v", tt.t, j, i, got[i][j], want[i][j])
				}
			}
		}
	}
}

// BenchmarkMulMatQ8Tile: the Q8_0 and Q4_0 register tiles on the shapes of a small llama
// (768 wide, FFN 2048) with a 64-token prompt batch.
//
//	go test ./nn/kernels/ -run XXX -bench MulMatQ8Tile -cpu 1
func BenchmarkMulMatQ8Tile(b *testing.B) {
	const n = 64
	for _, t := range []formats.DType{formats.Q8_0, formats.Q4_0} {
		for _, shape := range [][2]int{{768, 768}, {2048, 768}, {768, 2048}} {
			b.Run(fmt.Sprintf("%v/%dx%dx%d", t, shape[0], shape[1], n), func(b *testing.B) {
				m := benchMatrix(b, t, shape[0], shape[1])
				r := rand.New(rand.NewPCG(2, 2))
				xs := make([]*Activations, n)
				dst := make([][]float32, n)
				for i := range xs {
					xs[i] = Prepare(randomActs(r, m.Cols), t)
					dst[i] = make([]float32, m.Rows)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					m.MulMat(dst, xs, 0, m.Rows)
				}
				report(b, m, n)
			})
		}
	}
}
