package kernels

import (
	"fmt"
	"math/bits"
	"sync"

	"github.com/kensa-scan/kensa/formats"
)

// Matrix is a row-major weight matrix stored as type Type: row r is the RowBytes bytes
// Data[r*RowBytes:(r+1)*RowBytes], encoding Cols elements in the ggml layout of Type
// (little-endian; what a GGUF file holds, so Data may point into a memory map). Build it
// with [NewMatrix], which checks the shape; the methods panic on a Matrix whose fields do
// not fit together (a caller bug). The methods only read the Matrix and its Data, so any
// number of goroutines may use one Matrix at once.
type Matrix struct {
	Type     formats.DType // the stored element type
	Rows     int           // number of rows (output elements)
	Cols     int           // elements per row (input elements): a multiple of Type's block
	Data     []byte        // Rows*RowBytes bytes
	RowBytes int           // bytes per row: Cols/Type.BlockElems()*Type.BlockBytes()
}

// Supported reports whether matrices of type t can be multiplied: every type that
// [formats.DType.Decode] can decode (types without a dedicated kernel go through a
// dequantizing fallback). [Kernel] tells which have one.
func Supported(t formats.DType) bool { return kernelOf(t) != nil }

// Kernel reports whether t has a dedicated kernel (an integer dot with quantized
// activations, or a float dot reading the weights in place), as opposed to the fallback
// that dequantizes each row before a float32 dot.
func Kernel(t formats.DType) bool {
	k := kernelOf(t)
	return k != nil && !k.fallback
}

// NewMatrix returns the rows×cols matrix of type t stored in data, which must hold at
// least rows whole rows (only the first rows*RowBytes bytes are used). It fails when t
// cannot be decoded, when cols is not a positive multiple of t's block, when rows is
// negative, or when data is too short.
func NewMatrix(t formats.DType, rows, cols int, data []byte) (*Matrix, error) {
	if kernelOf(t) == nil {
		return nil, fmt.Errorf("kernels: weight type %v is not supported", t)
	}
	be, bb := t.BlockElems(), t.BlockBytes()
	if cols <= 0 || cols%be != 0 {
		return nil, fmt.Errorf("kernels: %d columns of %v are not a positive whole number of %d-element blocks", cols, t, be)
	}
	if rows < 0 {
		return nil, fmt.Errorf("kernels: %d rows", rows)
	}
	rowBytes := cols / be * bb
	hi, total := bits.Mul64(uint64(rows), uint64(rowBytes))
	if hi != 0 || total > uint64(len(data)) {
		return nil, fmt.Errorf("kernels: %d×%d %v needs %d×%d bytes, have %d", rows, cols, t, rows, rowBytes, len(data))
	}
	return &Matrix{Type: t, Rows: rows, Cols: cols, Data: data[:total:total], RowBytes: rowBytes}, nil
}

// check validates m and the arguments of a product and returns m's kernel.
func (m *Matrix) check(x *Activations, lo, hi int) *kernel {
	k := kernelOf(m.Type)
	if k == nil {
		panic("kernels: no kernel for weight type " + m.Type.String())
	}
	be, bb := m.Type.BlockElems(), m.Type.BlockBytes()
	if m.Cols <= 0 || m.Cols%be != 0 || m.RowBytes != m.Cols/be*bb || m.Rows < 0 ||
		len(m.Data)/m.RowBytes < m.Rows {
		panic(fmt.Sprintf("kernels: malformed %v Matrix (Rows %d, Cols %d, RowBytes %d, %d bytes)",
			m.Type, m.Rows, m.Cols, m.RowBytes, len(m.Data)))
	}
	if lo < 0 || hi > m.Rows || lo > hi {
		panic(fmt.Sprintf("kernels: rows [%d, %d) out of [0, %d)", lo, hi, m.Rows))
	}
	if x.Len() != m.Cols {
		panic(fmt.Sprintf("kernels: %d activations for a matrix of %d columns", x.Len(), m.Cols))
	}
	if !x.have[k.form] {
		panic(fmt.Sprintf("kernels: activations not prepared for %v (%s); call Add", m.Type, formNames[k.form]))
	}
	return k
}

// MulVec sets dst[r] to the dot product of row r with x for every row r in [lo, hi):
// dst is indexed by row, so len(dst) must be at least hi. x must have m.Cols elements and be
// prepared for m.Type. Distinct row ranges may be computed concurrently.
func (m *Matrix) MulVec(dst []float32, x *Activations, lo, hi int) {
	k := m.check(x, lo, hi)
	dst = dst[lo:hi]
	rb := m.RowBytes
	data := m.Data[lo*rb : hi*rb]
	switch {
	case k.fallback:
		buf := getScratch(m.Cols)
		for r := range dst {
			m.Type.Decode(*buf, data[r*rb:(r+1)*rb])
			dst[r] = dotF32F32(*buf, x.x)
		}
		putScratch(buf)
	case k.form == formF32:
		f := *k.dotF
		for r := range dst {
			dst[r] = f(data[r*rb:(r+1)*rb], x.x)
		}
	case k.form == formQ8:
		f := *k.dotQ8
		for r := range dst {
			dst[r] = f(data[r*rb:(r+1)*rb], x.q8)
		}
	case k.form == formQ8K:
		f := *k.dotQ8K
		for r := range dst {
			dst[r] = f(data[r*rb:(r+1)*rb], x.q8k)
		}
	}
}

// MulMat sets dst[i][r] to the dot product of row r with xs[i], for every i and every row r
// in [lo, hi): MulVec for several activation vectors, reading each weight row once for four
// of them. len(dst) must be len(xs) and each dst[i] at least hi long.
func (m *Matrix) MulMat(dst [][]float32, xs []*Activations, lo, hi int) {
	if len(dst) != len(xs) {
		panic(fmt.Sprintf("kernels: MulMat of %d activation vectors into %d outputs", len(xs), len(dst)))
	}
	if len(xs) == 0 {
		return
	}
	var k *kernel
	for i, x := range xs {
		k = m.check(x, lo, hi)
		_ = dst[i][lo:hi]
	}
	rb := m.RowBytes
	if k.fallback {
		buf := getScratch(m.Cols)
		for r := lo; r < hi; r++ {
			m.Type.Decode(*buf, m.Data[r*rb:(r+1)*rb])
			w := *buf
			for i, x := range xs {
				dst[i][r] = dotF32F32(w, x.x)
			}
		}
		putScratch(buf)
		return
	}
	if k.form == formF32 {
		if t := floatTileOf(k); t != nil {
			m.mulMatFloat(k, t, dst, xs, lo, hi)
			return
		}
	}
	if k.form == formQ8 {
		if t := q8TileOf(k); t != nil {
			m.mulMatQ8(k, t, dst, xs, lo, hi)
			return
		}
	}
	// Rows are taken in tiles of about tileBytes of weights; each tile is run through every
	// group of four vectors in turn, so that both the tile and the group's activations stay
	// in the L1 cache.
	tile := max(1, tileBytes/rb)
	for t0 := lo; t0 < hi; t0 += tile {
		t1 := min(hi, t0+tile)
		for i := 0; i < len(xs); i += 4 {
			m.mulTile(k, dst[i:min(i+4, len(xs))], xs[i:min(i+4, len(xs))], t0, t1)
		}
	}
}

// tileBytes is the weight bytes of one MulMat row tile; floatTileBytes and floatChunkCols
// the row tile and column chunk of the float types when they have a register tile
// (mulMatFloat; floatChunkCols a multiple of every tile's lanes).
const (
	tileBytes      = 16 << 10
	floatTileBytes = 256 << 10
	floatChunkCols = 1024
)

// mulTile computes rows [lo, hi) for up to four vectors (the four-vector dot when there
// are four, else single dots).
func (m *Matrix) mulTile(k *kernel, dst [][]float32, xs []*Activations, lo, hi int) {
	rb := m.RowBytes
	var out [4]float32
	switch k.form {
	case formF32:
		m.mulTileRows(k, dst, xs, lo, hi)
	case formQ8:
		if len(xs) == 4 {
			f4 := *k.dotQ84
			for r := lo; r < hi; r++ {
				f4(&out, m.Data[r*rb:(r+1)*rb], xs[0].q8, xs[1].q8, xs[2].q8, xs[3].q8)
				dst[0][r], dst[1][r], dst[2][r], dst[3][r] = out[0], out[1], out[2], out[3]
			}
			return
		}
		f := *k.dotQ8
		for r := lo; r < hi; r++ {
			for i, x := range xs {
				dst[i][r] = f(m.Data[r*rb:(r+1)*rb], x.q8)
			}
		}
	case formQ8K:
		if len(xs) == 4 {
			f4 := *k.dotQ8K4
			for r := lo; r < hi; r++ {
				f4(&out, m.Data[r*rb:(r+1)*rb], xs[0].q8k, xs[1].q8k, xs[2].q8k, xs[3].q8k)
				dst[0][r], dst[1][r], dst[2][r], dst[3][r] = out[0], out[1], out[2], out[3]
			}
			return
		}
		f := *k.dotQ8K
		for r := lo; r < hi; r++ {
			for i, x := range xs {
				dst[i][r] = f(m.Data[r*rb:(r+1)*rb], x.q8k)
			}
		}
	}
}

// mulTileRows is mulTile for a float kernel, a row at a time.
func (m *Matrix) mulTileRows(k *kernel, dst [][]float32, xs []*Activations, lo, hi int) {
	rb := m.RowBytes
	if len(xs) == 4 {
		var out [4]float32
		f4 := *k.dotF4
		for r := lo; r < hi; r++ {
			f4(&out, m.Data[r*rb:(r+1)*rb], xs[0].x, xs[1].x, xs[2].x, xs[3].x)
			dst[0][r], dst[1][r], dst[2][r], dst[3][r] = out[0], out[1], out[2], out[3]
		}
		return
	}
	f := *k.dotF
	for r := lo; r < hi; r++ {
		for i, x := range xs {
			dst[i][r] = f(m.Data[r*rb:(r+1)*rb], x.x)
		}
	}
}

// scratch holds row buffers for the fallback (one per MulVec call, not per row).
var scratch sync.Pool

func getScratch(n int) *[]float32 {
	if p, ok := scratch.Get().(*[]float32); ok {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
	}
	s := make([]float32, n)
	return &s
}

func putScratch(p *[]float32) { scratch.Put(p) }
