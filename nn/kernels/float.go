package kernels

import (
	"math"
	"reflect"
)

// Float dots: weights F32, F16 or BF16 read in place (F16 through a table, BF16 by a
// shift) times float32 activations. Like ggml_vec_dot_f32/f16's reference code, each
// product is rounded to float32 and the sum is kept in float64, here in four partial sums
// (elements i mod 4), added at the end and rounded to float32 once. (ggml converts the
// activations of F16 and BF16 matrices to F16/BF16 first; these kernels keep them float32.)

func dotF32Go(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:4*n]
	var s0, s1, s2, s3 float64
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 16; rw, rx, i = rw[16:], rx[4:], i+4 {
		b, v := (*[16]byte)(rw), (*[4]float32)(rx)
		s0 += float64(math.Float32frombits(le32(b[0:])) * v[0])
		s1 += float64(math.Float32frombits(le32(b[4:])) * v[1])
		s2 += float64(math.Float32frombits(le32(b[8:])) * v[2])
		s3 += float64(math.Float32frombits(le32(b[12:])) * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(math.Float32frombits(le32(w[4*i:])) * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

func dotF16Go(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:2*n]
	t := f16Table
	var s0, s1, s2, s3 float64
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 8; rw, rx, i = rw[8:], rx[4:], i+4 {
		b, v := (*[8]byte)(rw), (*[4]float32)(rx)
		s0 += float64(t[uint16(b[0])|uint16(b[1])<<8] * v[0])
		s1 += float64(t[uint16(b[2])|uint16(b[3])<<8] * v[1])
		s2 += float64(t[uint16(b[4])|uint16(b[5])<<8] * v[2])
		s3 += float64(t[uint16(b[6])|uint16(b[7])<<8] * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(t[uint16(w[2*i])|uint16(w[2*i+1])<<8] * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

// bf16 returns the value of the little-endian bfloat16 in b0, b1.
func bf16(b0, b1 byte) float32 { return math.Float32frombits(uint32(b0)<<16 | uint32(b1)<<24) }

func dotBF16Go(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:2*n]
	var s0, s1, s2, s3 float64
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 8; rw, rx, i = rw[8:], rx[4:], i+4 {
		b, v := (*[8]byte)(rw), (*[4]float32)(rx)
		s0 += float64(bf16(b[0], b[1]) * v[0])
		s1 += float64(bf16(b[2], b[3]) * v[1])
		s2 += float64(bf16(b[4], b[5]) * v[2])
		s3 += float64(bf16(b[6], b[7]) * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(bf16(w[2*i], w[2*i+1]) * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

// dotF32F32 is the fallback's dot of a dequantized row with the activations (as dotF32Go).
func dotF32F32(w, x []float32) float32 {
	n := len(x)
	w = w[:n]
	var s0, s1, s2, s3 float64
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 4; rw, rx, i = rw[4:], rx[4:], i+4 {
		a, v := (*[4]float32)(rw), (*[4]float32)(rx)
		s0 += float64(a[0] * v[0])
		s1 += float64(a[1] * v[1])
		s2 += float64(a[2] * v[2])
		s3 += float64(a[3] * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(w[i] * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

// acc4 adds the products of w and x to the four partial sums s the way dotF32F32 does
// (element i to s[i mod 4]; len(w) is a multiple of 4 except at the end of a row).
func acc4(s *[4]float64, w, x []float32) {
	n := len(w)
	x = x[:n]
	s0, s1, s2, s3 := s[0], s[1], s[2], s[3]
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 4; rw, rx, i = rw[4:], rx[4:], i+4 {
		a, v := (*[4]float32)(rw), (*[4]float32)(rx)
		s0 += float64(a[0] * v[0])
		s1 += float64(a[1] * v[1])
		s2 += float64(a[2] * v[2])
		s3 += float64(a[3] * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(w[i] * x[i])
	}
	*s = [4]float64{s0, s1, s2, s3}
}

// floatChunk is the number of weights a four-vector float dot converts at a time.
const floatChunk = 256

// dot4Float is the four-vector float dot: the weights are converted by decode (size
// bytes each) a chunk at a time into float32, and each chunk is added to the partial sums
// of each vector exactly as the single-vector dot adds it, so that both give the same bits.
func dot4Float(dst *[4]float32, w []byte, size int, decode func(dst []float32, src []byte), x0, x1, x2, x3 []float32) {
	n := len(x0)
	xs := [4][]float32{x0, x1[:n], x2[:n], x3[:n]}
	w = w[:size*n]
	var buf [floatChunk]float32
	var s [4][4]float64
	for c := 0; c < n; c += floatChunk {
		m := min(floatChunk, n-c)
		decode(buf[:m], w[size*c:size*(c+m)])
		for t, x := range xs {
			acc4(&s[t], buf[:m], x[c:c+m])
		}
	}
	for t := range s {
		dst[t] = float32((s[t][0] + s[t][1]) + (s[t][2] + s[t][3]))
	}
}

func decodeF32(dst []float32, src []byte) {
	for i, rs := 0, src; i < len(dst) && len(rs) >= 4; i, rs = i+1, rs[4:] {
		dst[i] = math.Float32frombits(le32(rs))
	}
}

func decodeF16(dst []float32, src []byte) {
	t := f16Table
	for i, rs := 0, src; i < len(dst) && len(rs) >= 2; i, rs = i+1, rs[2:] {
		dst[i] = t[uint16(rs[0])|uint16(rs[1])<<8]
	}
}

func decodeBF16(dst []float32, src []byte) {
	for i, rs := 0, src; i < len(dst) && len(rs) >= 2; i, rs = i+1, rs[2:] {
		dst[i] = bf16(rs[0], rs[1])
	}
}

func dot4F32Go(dst *[4]float32, w []byte, x0, x1, x2, x3 []float32) {
	dot4Float(dst, w, 4, decodeF32, x0, x1, x2, x3)
}

func dot4F16Go(dst *[4]float32, w []byte, x0, x1, x2, x3 []float32) {
	dot4Float(dst, w, 2, decodeF16, x0, x1, x2, x3)
}

func dot4BF16Go(dst *[4]float32, w []byte, x0, x1, x2, x3 []float32) {
	dot4Float(dst, w, 2, decodeBF16, x0, x1, x2, x3)
}

// A floatTile is a register-tiled float dot for MulMat (assembly; see float_amd64.go): it
// multiplies rows consecutive weight rows by up to vecs (at most maxTileVecs) activation
// vectors in one pass over the rows, so that each loaded weight serves every vector and
// each loaded activation every row. fn[v-1] handles v vectors: it sets out[j*rows+r] to the
// dot of row r (the rows are stride bytes apart from w) with vector j (x0, x1, ...) over the
// first n elements, n a multiple of lanes. tail is the pure-Go dot that adds the remaining
// elements; dot4 is the four-vector dot installed with the tile.
type floatTile struct {
	rows, vecs, lanes, size int
	fn                      []floatTileFunc
	tail                    dotFFunc
	dot4                    dotFx4Func
}

type floatTileFunc func(out *float32, w *byte, stride int, x0, x1, x2, x3, x4, x5 *float32, n int)

// maxTileVecs is the most vectors of a floatTile; maxTileOut the most sums it stores.
const (
	maxTileVecs = 6
	maxTileOut  = 4 * maxTileVecs
)

// The register tiles of the float types, set at init time with the assembly dots (nil when
// there are none).
var tileF32, tileF16, tileBF16 *floatTile

// floatTileOf returns the register tile of float kernel k, or nil. The tile is used only
// while k's four-vector dot is still the one installed with it, so that a test that swaps
// in the pure-Go dots gets their results (and their bits) from MulMat too.
func floatTileOf(k *kernel) *floatTile {
	var t *floatTile
	switch k.dotF4 {
	case &dot4F32:
		t = tileF32
	case &dot4F16:
		t = tileF16
	case &dot4BF16:
		t = tileBF16
	}
	if t == nil || reflect.ValueOf(*k.dotF4).Pointer() != reflect.ValueOf(t.dot4).Pointer() {
		return nil
	}
	return t
}

// mulMatFloat is MulMat for a float kernel with register tile t. The rows are taken in
// tiles of about floatTileBytes (kept in the L2 cache) and the columns in chunks of
// floatChunkCols; for each chunk, each group of t.vecs vectors (the chunk of each, kept in
// the L1 cache) is run over the rows of the tile, t.rows at a time, adding the chunk's
// sums into a buffer. The elements after the last whole vector of lanes are added with the
// pure-Go dot, and the rows of the range after the last whole register tile are computed
// with the one-row dots.
func (m *Matrix) mulMatFloat(k *kernel, t *floatTile, dst [][]float32, xs []*Activations, lo, hi int) {
	rb, n, nx := m.RowBytes, m.Cols, len(xs)
	main := n - n%t.lanes
	tile := max(t.rows, floatTileBytes/rb/t.rows*t.rows)
	groups := (nx + t.vecs - 1) / t.vecs
	per := t.rows * t.vecs // sums per register tile and group
	buf := getScratch(groups * tile / t.rows * per)
	defer putScratch(buf)
	var xp [maxTileVecs]*float32
	r := lo
	for r+t.rows <= hi {
		t1 := r + min(tile, (hi-r)/t.rows*t.rows)
		blocks := (t1 - r) / t.rows
		sums := (*buf)[:groups*blocks*per]
		clear(sums)
		for c0 := 0; c0 < main; c0 += floatChunkCols {
			nc := min(main-c0, floatChunkCols)
			for g := 0; g < groups; g++ {
				j0 := g * t.vecs
				nv := min(t.vecs, nx-j0)
				for j := range xp {
					xp[j] = &xs[j0+min(j, nv-1)].x[c0]
				}
				fn := t.fn[nv-1]
				out := sums[g*blocks*per : (g+1)*blocks*per]
				for b := 0; b < blocks; b++ {
					w := m.Data[(r+b*t.rows)*rb+c0*t.size:]
					fn(&out[b*per], &w[0], rb, xp[0], xp[1], xp[2], xp[3], xp[4], xp[5], nc)
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
					d, o := dst[j0+j][r0:r0+t.rows], out[j*t.rows:(j+1)*t.rows]
					if main < n {
						x := xs[j0+j].x[main:]
						for q := range o {
							o[q] += t.tail(m.Data[(r0+q)*rb+main*t.size:(r0+q+1)*rb], x)
						}
					}
					copy(d, o)
				}
			}
		}
		r = t1
	}
	for i := 0; r < hi && i < nx; i += 4 {
		m.mulTileRows(k, dst[i:min(i+4, nx)], xs[i:min(i+4, nx)], r, hi)
	}
}
