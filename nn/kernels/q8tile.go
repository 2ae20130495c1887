package kernels

import (
	"reflect"
	"unsafe"
)

// A q8Tile is a register-tiled dot of a formQ8 weight type for MulMat (assembly; see
// q8tile_amd64.go): it multiplies rows consecutive weight rows by up to vecs (at most 4)
// activation vectors in one pass over the blocks, so that each loaded weight block serves
// every vector and each activation block every row. fn[v-1] handles v vectors: it adds to
// out[j*rows+r] the dot of row r (the rows are stride bytes apart from w) with vector j
// (a0, a1, ...: q8Block arrays) over n blocks. dot4 is the four-vector dot installed with
// the tile. The integer block sums are exact; the float additions are in the tile's own
// order, so the results differ from MulVec's by rounding (see q8tile_amd64_test.go).
type q8Tile struct {
	rows, vecs int
	fn         [4]q8TileFunc
	dot4       dotQ8x4Func
}

type q8TileFunc func(out *float32, w *byte, stride int, a0, a1, a2, a3 *byte, n int)

// The register tiles of Q8_0 and Q4_0, set at init time with the assembly dots (nil when
// there are none).
var tileQ8_0, tileQ4_0 *q8Tile

// q8TileOf returns the register tile of formQ8 kernel k, or nil. As with floatTileOf, the
// tile is used only while k's four-vector dot is the one installed with it, so that a test
// that swaps in the pure-Go dots gets their results (and bits) from MulMat too.
func q8TileOf(k *kernel) *q8Tile {
	var t *q8Tile
	switch k.dotQ84 {
	case &dot4Q8_0:
		t = tileQ8_0
	case &dot4Q4_0:
		t = tileQ4_0
	}
	if t == nil || reflect.ValueOf(*k.dotQ84).Pointer() != reflect.ValueOf(t.dot4).Pointer() {
		return nil
	}
	return t
}

// q8ChunkBlocks is the number of blocks of a column chunk of mulMatQ8: 4 vectors of
// 64 blocks are 28 KiB of activations, which stay in the L1 cache.
const q8ChunkBlocks = 64

// mulMatQ8 is MulMat for a formQ8 kernel with register tile t, organized like
// mulMatFloat: row tiles of about floatTileBytes, column chunks of q8ChunkBlocks blocks,
// and for each chunk each group of up to t.vecs vectors run over the rows of the tile,
// t.rows at a time, adding into a buffer of sums. The rows after the last whole register
// tile are computed with the one-row dots.
func (m *Matrix) mulMatQ8(k *kernel, t *q8Tile, dst [][]float32, xs []*Activations, lo, hi int) {
	rb, nb, nx := m.RowBytes, m.Cols/32, len(xs)
	bb := rb / nb
	tile := max(t.rows, floatTileBytes/rb/t.rows*t.rows)
	groups := (nx + t.vecs - 1) / t.vecs
	per := t.rows * t.vecs
	buf := getScratch(groups * tile / t.rows * per)
	defer putScratch(buf)
	var ap [4]*byte
	r := lo
	for r+t.rows <= hi {
		t1 := r + min(tile, (hi-r)/t.rows*t.rows)
		blocks := (t1 - r) / t.rows
		sums := (*buf)[:groups*blocks*per]
		clear(sums)
		for c0 := 0; c0 < nb; c0 += q8ChunkBlocks {
			nc := min(nb-c0, q8ChunkBlocks)
			for g := 0; g < groups; g++ {
				j0 := g * t.vecs
				nv := min(t.vecs, nx-j0)
				for j := range ap {
					ap[j] = (*byte)(unsafe.Pointer(&xs[j0+min(j, nv-1)].q8[c0]))
				}
				fn := t.fn[nv-1]
				out := sums[g*blocks*per : (g+1)*blocks*per]
				for b := 0; b < blocks; b++ {
					w := m.Data[(r+b*t.rows)*rb+c0*bb : (r+b*t.rows+t.rows-1)*rb+(c0+nc)*bb]
					fn(&out[b*per], &w[0], rb, ap[0], ap[1], ap[2], ap[3], nc)
				}
			}
		}
		for g := 0; g < groups; g++ {
			j0 := g * t.vecs
			nv := min(t.vecs, nx-j0)
			for b := 0; b < blocks; b++ {
				out := sums[(g*blocks+b)*per:]
				r0 := r + b*t.rows
				for j := 0; j < nv; j++ {
					copy(dst[j0+j][r0:r0+t.rows], out[j*t.rows:(j+1)*t.rows])
				}
			}
		}
		r = t1
	}
	for i := 0; r < hi && i < nx; i += 4 {
		m.mulTile(k, dst[i:min(i+4, nx)], xs[i:min(i+4, nx)], r, hi)
	}
}
