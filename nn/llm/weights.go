package llm

import "github.com/kensa-scan/kensa/formats"

// Matrix is one weight matrix of a loaded model (with its bias, if any), in the form the
// model keeps it: as stored in the file for the types the kernels read in place, float32
// otherwise. It lets code outside this package run its own forward passes over the same
// weights without a second copy.
type Matrix struct {
	l    *linear
	path string
}

// Rows and Cols are the matrix's output and input sizes.
func (w Matrix) Rows() int { return w.l.w.rows() }
func (w Matrix) Cols() int { return w.l.w.cols() }

// Row writes row n (of the weight, without the bias) to dst[:Cols()] as float32.
func (w Matrix) Row(n int, dst []float32) error {
	return formats.Guard(w.path, func() error { w.l.w.row(n, dst); return nil })
}

// Mul computes y[T × Rows()] = x[T × Cols()]·Wᵀ (+ bias) over workers goroutines. A memory
// fault while reading the mapped weights is returned as an error wrapping formats.ErrFault.
func (w Matrix) Mul(workers int, y, x []float32, T int) error {
	var fe faultBox
	run := newRunner(max(workers, 1), w.path, &fe)
	if err := formats.Guard(w.path, func() error { w.l.mul(run, y, x, T); return nil }); err != nil {
		return err
	}
	return fe.get()
}

// LlamaLayer is one block of a llama-like model (see [Model.LlamaLike]).
type LlamaLayer struct {
	AttnNorm, FFNNorm          []float32 // RMSNorm weights
	Q, K, V, O, Gate, Up, Down Matrix    // Q, K and V may carry biases (qwen2)
}

// LlamaWeights is the weights of a llama-like model.
type LlamaWeights struct {
	Embed  Matrix // [vocab × hidden]
	Out    Matrix // [vocab × hidden]; the embedding when tied
	Norm   []float32
	Layers []LlamaLayer
}

// Llama returns the model's weights when it is llama-like, or false. The matrices share
// the model's storage: they are valid while the model (and its file) is open.
func (m *Model) Llama() (*LlamaWeights, bool) {
	if !m.LlamaLike() {
		return nil, false
	}
	mat := func(l *linear) Matrix { return Matrix{l: l, path: m.path} }
	embed := linear{w: m.embed}
	w := &LlamaWeights{Embed: mat(&embed), Out: mat(&m.out), Norm: m.norm}
	for i := range m.layers {
		ly := &m.layers[i]
		w.Layers = append(w.Layers, LlamaLayer{AttnNorm: ly.attnNorm, FFNNorm: ly.ffnNorm,
			Q: mat(&ly.q), K: mat(&ly.k), V: mat(&ly.v), O: mat(&ly.o), Gate: mat(&ly.gate), Up: mat(&ly.up), Down: mat(&ly.down)})
	}
	return w, true
}
