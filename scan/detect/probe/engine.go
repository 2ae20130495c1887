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

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/llm"
)

type eLayer struct {
	attnNorm, ffnNorm []float32
	wq, wk, wv, wo    []float32
	bq, bk, bv        []float32
	wg, wu, wd        []float32
}

type engine struct {
	c       llm.Config
	embed   []float32
	norm    []float32
	out     []float32
	layers  []eLayer
	workers int
	macs    float64 // multiply-adds spent so far: the deterministic budget's unit
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

// tensor names of the two conventions llm.Load reads (GGUF as llama.cpp writes them, and
// Hugging Face safetensors)
type eNames struct{ embed, norm, out, an, q, k, v, o, fn, g, u, d string }

var eGGUF = eNames{"token_embd.weight", "output_norm.weight", "output.weight", "blk.%d.attn_norm.weight", "blk.%d.attn_q", "blk.%d.attn_k", "blk.%d.attn_v", "blk.%d.attn_output.weight", "blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight"}
var eHF = eNames{"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj", "model.layers.%d.self_attn.k_proj", "model.layers.%d.self_attn.v_proj", "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight", "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight"}

// loadEngine reads the weights of a decoder whose configuration llm has parsed.
func loadEngine(fm *formats.Model, c llm.Config, workers int) (*engine, error) {
	nm := eHF
	if fm.Format == "gguf" {
		nm = eGGUF
	}
	read := func(name string, n int) ([]float32, error) {
		t := fm.Tensor(name)
		if t == nil {
			return nil, fmt.Errorf("probe: tensor %q is missing", name)
		}
		if t.Elements() != int64(n) {
			return nil, fmt.Errorf("probe: tensor %q has %d values, want %d", name, t.Elements(), n)
		}
		r, err := fm.NewTensorReader(t)
		if err != nil {
			return nil, err
		}
		v := make([]float32, n)
		return v, r.ReadElements(0, v)
	}
	opt := func(name string, n int) ([]float32, error) {
		if fm.Tensor(name) == nil {
			return nil, nil
		}
		return read(name, n)
	}
	H, D := c.Hidden, c.HeadDim
	qd, kvd := c.Heads*D, c.KVHeads*D
	e := &engine{c: c, workers: max(workers, 1)}
	var err error
	if e.embed, err = read(nm.embed, c.Vocab*H); err != nil {
		return nil, err
	}
	if e.norm, err = read(nm.norm, H); err != nil {
		return nil, err
	}
	e.out = e.embed
	if fm.Tensor(nm.out) != nil {
		if e.out, err = read(nm.out, c.Vocab*H); err != nil {
			return nil, err
		}
	}
	for l := 0; l < c.Layers; l++ {
		var ly eLayer
		f := func(s string) string { return fmt.Sprintf(s, l) }
		for _, s := range []struct {
			dst  *[]float32
			name string
			n    int
		}{{&ly.attnNorm, f(nm.an), H}, {&ly.wq, f(nm.q) + ".weight", qd * H}, {&ly.wk, f(nm.k) + ".weight", kvd * H},
			{&ly.wv, f(nm.v) + ".weight", kvd * H}, {&ly.wo, f(nm.o), H * qd}, {&ly.ffnNorm, f(nm.fn), H},
			{&ly.wg, f(nm.g), c.FF * H}, {&ly.wu, f(nm.u), c.FF * H}, {&ly.wd, f(nm.d), H * c.FF}} {
			if *s.dst, err = read(s.name, s.n); err != nil {
				return nil, err
			}
		}
		if ly.bq, err = opt(f(nm.q)+".bias", qd); err != nil {
			return nil, err
		}
		if ly.bk, err = opt(f(nm.k)+".bias", kvd); err != nil {
			return nil, err
		}
		if ly.bv, err = opt(f(nm.v)+".bias", kvd); err != nil {
			return nil, err
		}
		e.layers = append(e.layers, ly)
	}
	return e, nil
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
			copy(x[r*H:(r+1)*H], e.embed[id*H:(id+1)*H])
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
	for l := range e.layers {
		ly := &e.layers[l]
		e.rmsnorm(xn, x, ly.attnNorm, T)
		e.matmul(q, xn, ly.wq, T, H, qd)
		e.matmul(k, xn, ly.wk, T, H, kvd)
		e.matmul(v, xn, ly.wv, T, H, kvd)
		bias(q, ly.bq, T)
		bias(k, ly.bk, T)
		bias(v, ly.bv, T)
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
		e.matmul(o, att, ly.wo, T, qd, H)
		for i := range x {
			x[i] += o[i]
		}
		e.rmsnorm(xn, x, ly.ffnNorm, T)
		e.matmul(g, xn, ly.wg, T, H, c.FF)
		e.matmul(u, xn, ly.wu, T, H, c.FF)
		for i := range g {
			gv := g[i]
			g[i] = gv / (1 + float32(math.Exp(float64(-gv)))) * u[i]
		}
		e.matmul(o, g, ly.wd, T, c.FF, H)
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
	e.rmsnorm(hn, last, e.norm, len(seqs))
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
	e.matmul(y, x, e.out, len(hs), H, V)
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

func bias(a, b []float32, T int) {
	if b == nil {
		return
	}
	n := len(b)
	for t := 0; t < T; t++ {
		r := a[t*n : (t+1)*n]
		for i := range r {
			r[i] += b[i]
		}
	}
}

// matmul: y[T×N] = x[T×K]·wᵀ (w is N×K); the output rows are split across the workers, and
// each weight row is applied to four input rows at a time. Every output value is one dot
// product in a fixed order, so the result does not depend on the number of workers.
func (e *engine) matmul(y, x, w []float32, T, K, N int) {
	run := e.parallel
	if T*K*N < 1<<17 {
		run = func(n int, f func(lo, hi int)) { f(0, n) }
	}
	run(N, func(lo, hi int) {
		const tb = 64 // input rows per block, so they stay in cache while the weights stream
		for t0 := 0; t0 < T; t0 += tb {
			t1 := min(t0+tb, T)
			for n := lo; n < hi; n++ {
				wn := w[n*K : (n+1)*K]
				t := t0
				for ; t+4 <= t1; t += 4 {
					a, b, c, d := dot4(wn, x[t*K:(t+1)*K], x[(t+1)*K:(t+2)*K], x[(t+2)*K:(t+3)*K], x[(t+3)*K:(t+4)*K])
					y[t*N+n], y[(t+1)*N+n], y[(t+2)*N+n], y[(t+3)*N+n] = a, b, c, d
				}
				for ; t < t1; t++ {
					y[t*N+n] = dot(wn, x[t*K:(t+1)*K])
				}
			}
		}
	})
}

// dot4 is four dot products of w with x0…x3, sharing the loads of w.
func dot4(w, x0, x1, x2, x3 []float32) (float32, float32, float32, float32) {
	n := len(w)
	x0, x1, x2, x3 = x0[:n], x1[:n], x2[:n], x3[:n]
	var a0, a1, b0, b1, c0, c1, d0, d1 float32
	i := 0
	for ; i+2 <= n; i += 2 {
		u, v := w[i], w[i+1]
		a0 += u * x0[i]
		a1 += v * x0[i+1]
		b0 += u * x1[i]
		b1 += v * x1[i+1]
		c0 += u * x2[i]
		c1 += v * x2[i+1]
		d0 += u * x3[i]
		d1 += v * x3[i+1]
	}
	for ; i < n; i++ {
		a0 += w[i] * x0[i]
		b0 += w[i] * x1[i]
		c0 += w[i] * x2[i]
		d0 += w[i] * x3[i]
	}
	return a0 + a1, b0 + b1, c0 + c1, d0 + d1
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
