package llm

import (
	"sync"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/kernels"
)

// storedMatrix is a weight matrix kept in the type the file stores it in (F32, F16, BF16,
// Q8_0, Q4_K, ...), its bytes read in place from the file's memory map (or, where the
// file is not mapped, held once in memory as stored). Products go through nn/kernels:
// the activations are prepared once per product (quantized to Q8_0/Q8_1/Q8_K for the
// quantized types, as llama.cpp's CPU backend does) and every weight row is read once per
// group of positions.
type storedMatrix struct {
	m *kernels.Matrix
}

func newStoredMatrix(t formats.DType, rows, cols int, data []byte) (*storedMatrix, error) {
	m, err := kernels.NewMatrix(t, rows, cols, data)
	if err != nil {
		return nil, err
	}
	return &storedMatrix{m: m}, nil
}

func (s *storedMatrix) rows() int { return s.m.Rows }
func (s *storedMatrix) cols() int { return s.m.Cols }

func (s *storedMatrix) row(n int, dst []float32) {
	rb := s.m.RowBytes
	s.m.Type.Decode(dst[:s.m.Cols], s.m.Data[n*rb:(n+1)*rb])
}

func (s *storedMatrix) sub(lo, hi int) matrix {
	rb := s.m.RowBytes
	return &storedMatrix{m: &kernels.Matrix{Type: s.m.Type, Rows: hi - lo, Cols: s.m.Cols,
		Data: s.m.Data[lo*rb : hi*rb : hi*rb], RowBytes: rb}}
}

// actBuf is the prepared activations of one product: one vector per position.
type actBuf struct {
	acts []*kernels.Activations
	dst  [][]float32
}

var actPool sync.Pool

func getActs(T int) *actBuf {
	b, _ := actPool.Get().(*actBuf)
	if b == nil {
		b = new(actBuf)
	}
	for len(b.acts) < T {
		b.acts = append(b.acts, new(kernels.Activations))
	}
	if cap(b.dst) < T {
		b.dst = make([][]float32, T)
	}
	b.dst = b.dst[:T]
	return b
}

// mul prepares the T input vectors for the weight type, then splits the rows over run's
// workers; each worker multiplies its rows with all T vectors (MulMat reads each row once
// per four vectors).
func (s *storedMatrix) mul(run runner, y, x []float32, T int) {
	N, K := s.m.Rows, s.m.Cols
	b := getActs(T)
	for t := 0; t < T; t++ {
		b.acts[t].Set(x[t*K:(t+1)*K], s.m.Type)
		b.dst[t] = y[t*N : (t+1)*N]
	}
	acts := b.acts[:T]
	if T == 1 {
		run(N, func(lo, hi int) { s.m.MulVec(y, acts[0], lo, hi) })
	} else {
		run(N, func(lo, hi int) { s.m.MulMat(b.dst, acts, lo, hi) })
	}
	for t := range b.dst {
		b.dst[t] = nil
	}
	actPool.Put(b)
}

// mulShared computes dsts[i] = x·ls[i]ᵀ (+ bias) for several matrices that read the same
// input (q, k and v; gate and up): when all are stored matrices, the input is prepared
// (quantized) once for all of them rather than once per matrix.
func mulShared(run runner, ls []*linear, dsts [][]float32, x []float32, T int) {
	var ms []*storedMatrix
	for _, l := range ls {
		sm, ok := l.w.(*storedMatrix)
		if !ok || sm.m.Cols != ls[0].w.cols() {
			for i, l := range ls {
				l.mul(run, dsts[i], x, T)
			}
			return
		}
		ms = append(ms, sm)
	}
	K := ls[0].w.cols()
	b := getActs(T)
	acts := b.acts[:T]
	for t, a := range acts {
		a.Set(x[t*K:(t+1)*K], ms[0].m.Type)
		for _, sm := range ms[1:] {
			a.Add(sm.m.Type)
		}
	}
	for i, sm := range ms {
		N := sm.m.Rows
		y := dsts[i][:T*N]
		r := run
		if T*K*N < 1<<18 {
			r = serial
		}
		if T == 1 {
			r(N, func(lo, hi int) { sm.m.MulVec(y, acts[0], lo, hi) })
		} else {
			for t := range b.dst {
				b.dst[t] = y[t*N : (t+1)*N]
			}
			r(N, func(lo, hi int) { sm.m.MulMat(b.dst, acts, lo, hi) })
		}
		addBias(y, ls[i].b, T)
	}
	for t := range b.dst {
		b.dst[t] = nil
	}
	actPool.Put(b)
}
