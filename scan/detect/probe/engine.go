package probe

// engine is the probe's own batched forward pass for llama-family decoders: many short
// sequences that share a prefix (a context the model wrote) are evaluated together, each
// with its own few tokens after the prefix, so a candidate costs the forwards of its own
// tokens only. nn/llm evaluates one sequence at a time; the probe needs thousands of
// one- to three-token continuations of the same contexts.

import (
	"fmt"
	"math"
	"sync"

	"github.com/kensa-scan/kensa/nn/llm"
)

type engine struct {
	c       llm.Config
	w       *llm.LlamaWeights // nn/llm's own weights (as stored, read in place: no second copy)
	workers int
	macs    float64 // multiply-adds spent so far: the deterministic budget's unit
	err     error   // the first failure of a product (a memory fault in the mapped file)
}

// kv is a key/value cache: per layer, n rows of KVHeads·HeadDim.
type kv struct {
	n    int
	k, v [][]float32
}

// seq is one sequence: a shared (read-only) prefix cache and its own tokens after it.
type seq struct {
	pre *kv
	own kv
}

func (s *seq) pos() int {
	n := s.own.n
	if s.pre != nil {
		n += s.pre.n
	}
	return n
}

// newEngine runs the probe's batched passes over the weights of a loaded llama-like model.
func newEngine(lm *llm.Model, workers int) (*engine, error) {
	w, ok := lm.Llama()
	if !ok {
		return nil, fmt.Errorf("probe: the batched engine runs plain llama-style decoders only, not this %s", lm.Config.Arch)
	}
	return &engine{c: lm.Config, w: w, workers: max(workers, 1)}, nil
}

// mul is y = x·Wᵀ (+ bias) over the engine's workers; the first failure is kept in e.err
// (the outputs are then not meaningful, and the passes stop at their next check).
func (e *engine) mul(w llm.Matrix, y, x []float32, T int) {
	if err := w.Mul(e.workers, y, x, T); err != nil && e.err == nil {
		e.err = err
	}
}

// tokenMACs is the arithmetic of one token through the layers (without attention and the
// output head).
func (e *engine) tokenMACs() float64 {
	c := e.c
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	return float64(c.Layers) * float64(c.Hidden*(2*qd+2*kvd)+3*c.Hidden*c.FF)
}

// headMACs is the arithmetic of the full output head for one row.
func (e *engine) headMACs() float64 { return float64(e.c.Hidden) * float64(e.c.Vocab) }

// newSeq starts a sequence after a prefix cache (nil for none) with room for n own tokens.
func (e *engine) newSeq(pre *kv, n int) *seq {
	kvd := e.c.KVHeads * e.c.HeadDim
	s := &seq{pre: pre, own: kv{k: make([][]float32, e.c.Layers), v: make([][]float32, e.c.Layers)}}
	for l := range s.own.k {
		s.own.k[l] = make([]float32, 0, n*kvd)
		s.own.v[l] = make([]float32, 0, n*kvd)
	}
	return s
}

// freeze turns a sequence without prefix into a prefix cache for others.
func (s *seq) freeze() *kv { return &s.own }

// step appends toks[i] to seqs[i] (any lengths ≥ 1) and returns, per sequence, the final
// normalized hidden state of its last new token.
func (e *engine) step(seqs []*seq, toks [][]int) [][]float32 {
	c := e.c
	H, D := c.Hidden, c.HeadDim
	qd, kvd := c.Heads*D, c.KVHeads*D
	T := 0
	start := make([]int, len(seqs)+1)
	for i := range seqs {
		start[i] = T
		T += len(toks[i])
	}
	start[len(seqs)] = T
	pos := make([]int, T)
	own := make([]int, T) // the row's seq
	for i, s := range seqs {
		p := s.pos()
		for j := range toks[i] {
			pos[start[i]+j] = p + j
			own[start[i]+j] = i
		}
	}
	x := make([]float32, T*H)
	for i := range seqs {
		for j, id := range toks[i] {
			r := start[i] + j
			if err := e.w.Embed.Row(id, x[r*H:(r+1)*H]); err != nil && e.err == nil {
				e.err = err
			}
		}
	}
	xn := make([]float32, T*H)
	q := make([]float32, T*qd)
	k := make([]float32, T*kvd)
	v := make([]float32, T*kvd)
	att := make([]float32, T*qd)
	o := make([]float32, T*H)
	g := make([]float32, T*c.FF)
	u := make([]float32, T*c.FF)
	half := c.RopeDim / 2
	freq := make([]float64, half)
	for i := range freq {
		freq[i] = math.Pow(c.RopeBase, -2*float64(i)/float64(c.RopeDim))
	}
	cosT, sinT := make([]float32, T*half), make([]float32, T*half)
	for r := 0; r < T; r++ {
		for i := 0; i < half; i++ {
			a := float64(pos[r]) * freq[i]
			cosT[r*half+i], sinT[r*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	rot := func(h []float32, r int) {
		cs, sn := cosT[r*half:(r+1)*half], sinT[r*half:(r+1)*half]
		if c.Interleaved {
			for i := 0; i < half; i++ {
				a, b := h[2*i], h[2*i+1]
				h[2*i], h[2*i+1] = a*cs[i]-b*sn[i], a*sn[i]+b*cs[i]
			}
			return
		}
		for i := 0; i < half; i++ {
			a, b := h[i], h[i+half]
			h[i], h[i+half] = a*cs[i]-b*sn[i], a*sn[i]+b*cs[i]
		}
	}
	var attMACs float64
	for l := range e.w.Layers {
		ly := &e.w.Layers[l]
		e.rmsnorm(xn, x, ly.AttnNorm, T)
		e.mul(ly.Q, q, xn, T)
		e.mul(ly.K, k, xn, T)
		e.mul(ly.V, v, xn, T)
		for r := 0; r < T; r++ {
			for h := 0; h < c.Heads; h++ {
				rot(q[r*qd+h*D:r*qd+(h+1)*D], r)
			}
			for h := 0; h < c.KVHeads; h++ {
				rot(k[r*kvd+h*D:r*kvd+(h+1)*D], r)
			}
		}
		for i, s := range seqs {
			s.own.k[l] = append(s.own.k[l], k[start[i]*kvd:start[i+1]*kvd]...)
			s.own.v[l] = append(s.own.v[l], v[start[i]*kvd:start[i+1]*kvd]...)
		}
		group := c.Heads / c.KVHeads
		scale := float32(1 / math.Sqrt(float64(D)))
		e.parallel(T, func(lo, hi int) {
			var sc []float32
			for r := lo; r < hi; r++ {
				s := seqs[own[r]]
				np := 0
				if s.pre != nil {
					np = s.pre.n
				}
				nOwn := s.own.n + (r - start[own[r]]) + 1 // own rows visible to this one
				n := np + nOwn
				if cap(sc) < n {
					sc = make([]float32, n)
				}
				sc = sc[:n]
				for h := 0; h < c.Heads; h++ {
					kh := h / group
					qv := q[r*qd+h*D : r*qd+(h+1)*D]
					key := func(j int) ([]float32, []float32) {
						if j < np {
							return s.pre.k[l][j*kvd+kh*D : j*kvd+(kh+1)*D], s.pre.v[l][j*kvd+kh*D : j*kvd+(kh+1)*D]
						}
						j -= np
						return s.own.k[l][j*kvd+kh*D : j*kvd+(kh+1)*D], s.own.v[l][j*kvd+kh*D : j*kvd+(kh+1)*D]
					}
					mx := float32(math.Inf(-1))
					for j := 0; j < n; j++ {
						kk, _ := key(j)
						d := dot(qv, kk) * scale
						sc[j] = d
						if d > mx {
							mx = d
						}
					}
					var sum float32
					for j := range sc {
						sc[j] = float32(math.Exp(float64(sc[j] - mx)))
						sum += sc[j]
					}
					ov := att[r*qd+h*D : r*qd+(h+1)*D]
					for i := range ov {
						ov[i] = 0
					}
					inv := 1 / sum
					for j := 0; j < n; j++ {
						_, vv := key(j)
						p := sc[j] * inv
						for i := range ov {
							ov[i] += p * vv[i]
						}
					}
				}
			}
		})
		for r := 0; r < T; r++ {
			attMACs += 2 * float64(pos[r]+1) * float64(qd)
		}
		e.mul(ly.O, o, att, T)
		for i := range x {
			x[i] += o[i]
		}
		e.rmsnorm(xn, x, ly.FFNNorm, T)
		e.mul(ly.Gate, g, xn, T)
		e.mul(ly.Up, u, xn, T)
		for i := range g {
			gv := g[i]
			g[i] = gv / (1 + float32(math.Exp(float64(-gv)))) * u[i]
		}
		e.mul(ly.Down, o, g, T)
		for i := range x {
			x[i] += o[i]
		}
	}
	for i, s := range seqs {
		s.own.n += len(toks[i])
	}
	e.macs += float64(T)*e.tokenMACs() + attMACs
	outs := make([][]float32, len(seqs))
	last := make([]float32, len(seqs)*H)
	for i := range seqs {
		copy(last[i*H:(i+1)*H], x[(start[i+1]-1)*H:start[i+1]*H])
	}
	hn := make([]float32, len(seqs)*H)
	e.rmsnorm(hn, last, e.w.Norm, len(seqs))
	for i := range outs {
		outs[i] = hn[i*H : (i+1)*H : (i+1)*H]
	}
	return outs
}

// logits returns the full next-token logits of normalized hidden states.
func (e *engine) logits(hs [][]float32) [][]float32 {
	H, V := e.c.Hidden, e.c.Vocab
	x := make([]float32, len(hs)*H)
	for i, h := range hs {
		copy(x[i*H:], h)
	}
	y := make([]float32, len(hs)*V)
	e.mul(e.w.Out, y, x, len(hs))
	e.macs += float64(len(hs)) * e.headMACs()
	out := make([][]float32, len(hs))
	for i := range out {
		out[i] = y[i*V : (i+1)*V : (i+1)*V]
	}
	return out
}

// prefill runs ids as a fresh sequence and returns it (its cache can be frozen as a prefix)
// with the normalized hidden state of its last token.
func (e *engine) prefill(ids []int, room int) (*seq, []float32) {
	s := e.newSeq(nil, len(ids)+room)
	h := e.step([]*seq{s}, [][]int{ids})
	return s, h[0]
}

func (e *engine) rmsnorm(dst, x, w []float32, T int) {
	H := e.c.Hidden
	for t := 0; t < T; t++ {
		xs := x[t*H : (t+1)*H]
		var ss float32
		for _, v := range xs {
			ss += v * v
		}
		inv := float32(1 / math.Sqrt(float64(ss/float32(H)+e.c.Eps)))
		d := dst[t*H : (t+1)*H]
		for i, v := range xs {
			d[i] = v * inv * w[i]
		}
	}
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func (e *engine) parallel(n int, f func(lo, hi int)) {
	w := min(e.workers, n)
	if w <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		lo, hi := i*n/w, (i+1)*n/w
		wg.Add(1)
		go func() { defer wg.Done(); f(lo, hi) }()
	}
	wg.Wait()
}
