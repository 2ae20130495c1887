package llama

import (
	"errors"
	"fmt"
	"math"
)

// ErrContext reports a Forward call that would take a sequence past its State's length.
var ErrContext = errors.New("sequence longer than the state")

// State is the KV cache of one sequence. A State belongs to the Model that made it and must
// not be used by two goroutines at once.
type State struct {
	m      *Model
	maxLen int
	pos    int
	k, v   [][]float32 // per layer: [maxLen, KVHeads·HeadDim]

	// scratch, grown as needed
	x, xn, qkv, att, gu, h []float32
	cos, sin               []float32
}

// NewState returns an empty sequence that can hold up to maxLen tokens (maxLen ≤ 0: the
// model's context length, or 2048 when unknown). Its KV cache takes
// 8·Layers·maxLen·KVHeads·HeadDim bytes.
func (m *Model) NewState(maxLen int) *State {
	c := &m.Config
	if maxLen <= 0 {
		maxLen = c.Context
		if maxLen <= 0 {
			maxLen = 2048
		}
	}
	kv := c.KVHeads * c.HeadDim
	s := &State{m: m, maxLen: maxLen, k: make([][]float32, c.Layers), v: make([][]float32, c.Layers)}
	for l := range s.k {
		s.k[l] = make([]float32, maxLen*kv)
		s.v[l] = make([]float32, maxLen*kv)
	}
	return s
}

// Len returns the number of tokens in the sequence.
func (s *State) Len() int { return s.pos }

// Cap returns the most tokens the sequence can hold.
func (s *State) Cap() int { return s.maxLen }

// Reset empties the sequence, keeping its memory.
func (s *State) Reset() { s.pos = 0 }

// Observer receives the activations of a forward pass, layer by layer, for the positions of
// one Forward call: hidden[t] is the residual stream after layer l at the call's t-th
// position ([Hidden]), mlp[t] the SwiGLU product silu(gate)·up that enters the layer's
// down projection ([FF]). The slices are valid only during the call; copy what you keep.
type Observer interface {
	Layer(l int, hidden, mlp [][]float32)
}

// Forward appends ids to the sequence and returns the next-token logits ([Vocab] each) of
// every new position when all is true, or of the last one only. The prompt is evaluated in
// one batch: every weight matrix is multiplied by all new positions at once.
func (m *Model) Forward(s *State, ids []int, all bool) ([][]float32, error) {
	return m.ForwardObserve(s, ids, all, nil)
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func rows(a []float32, n, w int) [][]float32 {
	r := make([][]float32, n)
	for i := range r {
		r[i] = a[i*w : (i+1)*w : (i+1)*w]
	}
	return r
}

// ForwardObserve is Forward that reports every layer's activations to obs (nil: none).
func (m *Model) ForwardObserve(s *State, ids []int, all bool, obs Observer) ([][]float32, error) {
	if s.m != m {
		return nil, errors.New("llama: state belongs to another model")
	}
	c := &m.Config
	T := len(ids)
	if T == 0 {
		return nil, errors.New("llama: no tokens to evaluate")
	}
	if T > s.maxLen-s.pos {
		return nil, fmt.Errorf("llama: %d tokens after %d exceed the state's %d: %w", T, s.pos, s.maxLen, ErrContext)
	}
	for _, id := range ids {
		if id < 0 || id >= c.Vocab {
			return nil, fmt.Errorf("llama: token id %d outside the vocabulary of %d", id, c.Vocab)
		}
	}
	H, hd := c.Hidden, c.HeadDim
	qd, kvd := c.Heads*hd, c.KVHeads*hd
	qkvd := qd + 2*kvd
	s.x = grow(s.x, T*H)
	s.xn = grow(s.xn, T*H)
	s.qkv = grow(s.qkv, T*qkvd)
	s.att = grow(s.att, T*qd)
	s.gu = grow(s.gu, T*2*c.FF)
	s.h = grow(s.h, T*c.FF)
	x, xn, qkv, att, gu, h := s.x, s.xn, s.qkv, s.att, s.gu, s.h
	for t, id := range ids {
		copy(x[t*H:(t+1)*H], m.embed[id*H:(id+1)*H])
	}
	s.ropeTables(s.pos, T)
	var hiddenRows, mlpRows [][]float32
	if obs != nil {
		hiddenRows, mlpRows = rows(x, T, H), rows(h, T, c.FF)
	}
	out := xn[:T*H] // attention output projection and down projection land here
	for l := range m.layers {
		ly := &m.layers[l]
		for t := 0; t < T; t++ {
			rmsnorm(xn[t*H:(t+1)*H], x[t*H:(t+1)*H], ly.attnNorm, c.Eps)
		}
		m.matmul(qkv, xn, ly.wqkv, T, H, qkvd)
		kc, vc := s.k[l], s.v[l]
		for t := 0; t < T; t++ {
			r := qkv[t*qkvd : (t+1)*qkvd]
			if ly.bqkv != nil {
				for i, b := range ly.bqkv {
					r[i] += b
				}
			}
			cs, sn := s.cos[t*c.RopeDim/2:(t+1)*c.RopeDim/2], s.sin[t*c.RopeDim/2:(t+1)*c.RopeDim/2]
			for hh := 0; hh < c.Heads+c.KVHeads; hh++ {
				m.rope(r[hh*hd:(hh+1)*hd], cs, sn)
			}
			p := s.pos + t
			copy(kc[p*kvd:(p+1)*kvd], r[qd:qd+kvd])
			copy(vc[p*kvd:(p+1)*kvd], r[qd+kvd:])
		}
		m.attention(s, att, qkv, kc, vc, T)
		m.matmul(out, att, ly.wo, T, qd, H)
		for i := range x {
			x[i] += out[i]
		}
		for t := 0; t < T; t++ {
			rmsnorm(xn[t*H:(t+1)*H], x[t*H:(t+1)*H], ly.ffnNorm, c.Eps)
		}
		m.matmul(gu, xn, ly.wgu, T, H, 2*c.FF)
		for t := 0; t < T; t++ {
			g, u, ht := gu[t*2*c.FF:t*2*c.FF+c.FF], gu[t*2*c.FF+c.FF:(t+1)*2*c.FF], h[t*c.FF:(t+1)*c.FF]
			for i := range ht {
				ht[i] = silu(g[i]) * u[i]
			}
		}
		m.matmul(out, h, ly.wd, T, c.FF, H)
		for i := range x {
			x[i] += out[i]
		}
		if obs != nil {
			obs.Layer(l, hiddenRows, mlpRows)
		}
	}
	s.pos += T
	first := 0
	if !all {
		first = T - 1
	}
	n := T - first
	for t := first; t < T; t++ {
		rmsnorm(xn[(t-first)*H:(t-first+1)*H], x[t*H:(t+1)*H], m.norm, c.Eps)
	}
	logits := make([]float32, n*c.Vocab)
	m.matmul(logits, xn, m.out, n, H, c.Vocab)
	return rows(logits, n, c.Vocab), nil
}

// ropeTables fills the cosines and sines of positions pos0 … pos0+T-1: angle p·θ^(-2i/RopeDim)
// for i < RopeDim/2, computed in float64.
func (s *State) ropeTables(pos0, T int) {
	c := &s.m.Config
	half := c.RopeDim / 2
	s.cos = grow(s.cos, T*half)
	s.sin = grow(s.sin, T*half)
	for i := 0; i < half; i++ {
		f := math.Pow(c.RopeBase, -float64(2*i)/float64(c.RopeDim))
		for t := 0; t < T; t++ {
			sn, cs := math.Sincos(float64(pos0+t) * f)
			s.cos[t*half+i], s.sin[t*half+i] = float32(cs), float32(sn)
		}
	}
}

// rope rotates the first RopeDim dimensions of one head: pairs (2i, 2i+1) when interleaved
// (GGUF llama), pairs (i, i+RopeDim/2) otherwise (Hugging Face, GGUF qwen2).
func (m *Model) rope(v, cs, sn []float32) {
	half := len(cs)
	if m.Config.RopeInterleaved {
		v = v[:2*half]
		for i := 0; i < half; i++ {
			x0, x1 := v[2*i], v[2*i+1]
			v[2*i] = x0*cs[i] - x1*sn[i]
			v[2*i+1] = x0*sn[i] + x1*cs[i]
		}
		return
	}
	a, b := v[:half], v[half:2*half]
	for i := 0; i < half; i++ {
		x0, x1 := a[i], b[i]
		a[i] = x0*cs[i] - x1*sn[i]
		b[i] = x0*sn[i] + x1*cs[i]
	}
}

// attention computes causal softmax attention of the T new positions (queries in qkv, keys
// and values already in the caches) into att [T, Heads·HeadDim], over (position, head)
// pairs in parallel.
func (m *Model) attention(s *State, att, qkv, kc, vc []float32, T int) {
	c := &m.Config
	hd := c.HeadDim
	qd, kvd := c.Heads*hd, c.KVHeads*hd
	qkvd := qd + 2*kvd
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	pos0 := s.pos
	work := T * c.Heads * (pos0 + T) * hd * 2
	m.parallel(T*c.Heads, work, func(lo, hi int) {
		scores := make([]float32, pos0+T)
		for i := lo; i < hi; i++ {
			t, head := i/c.Heads, i%c.Heads
			n := pos0 + t + 1
			q := qkv[t*qkvd+head*hd : t*qkvd+(head+1)*hd]
			ko := (head / group) * hd
			sc := scores[:n]
			mx := float32(math.Inf(-1))
			for j := range sc {
				v := dot(q, kc[j*kvd+ko:j*kvd+ko+hd]) * scale
				sc[j] = v
				mx = max(mx, v)
			}
			var sum float64
			for j, v := range sc {
				e := float32(math.Exp(float64(v - mx)))
				sc[j] = e
				sum += float64(e)
			}
			inv := float32(1 / sum)
			o := att[t*qd+head*hd : t*qd+(head+1)*hd]
			clear(o)
			for j, p := range sc {
				p *= inv
				vr := vc[j*kvd+ko : j*kvd+ko+hd]
				for d := range o {
					o[d] += p * vr[d]
				}
			}
		}
	})
}

// Generate evaluates ids as a prompt and then decodes greedily, returning up to n new
// tokens. Decoding stops early after a token for which stop (if not nil) returns true; that
// token is included.
func (m *Model) Generate(ids []int, n int, stop func(id int) bool) ([]int, error) {
	if n <= 0 {
		return nil, nil
	}
	s := m.NewState(len(ids) + n)
	logits, err := m.Forward(s, ids, false)
	if err != nil {
		return nil, err
	}
	var out []int
	for {
		id := Argmax(logits[0])
		if id < 0 {
			return out, errors.New("llama: logits are all NaN")
		}
		out = append(out, id)
		if len(out) == n || stop != nil && stop(id) {
			return out, nil
		}
		if logits, err = m.Forward(s, []int{id}, false); err != nil {
			return out, err
		}
	}
}
