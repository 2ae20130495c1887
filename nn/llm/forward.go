package llm

import (
	"fmt"
	"math"
	"sync"
)

// State is the KV cache of one sequence.
type State struct {
	pos  int
	max  int
	k, v [][]float32 // per layer: [max, kvHeads*headDim]
}

// NewState returns an empty sequence of at most maxLen tokens.
func (m *Model) NewState(maxLen int) *State {
	kvd := m.Config.KVHeads * m.Config.HeadDim
	s := &State{max: maxLen, k: make([][]float32, m.Config.Layers), v: make([][]float32, m.Config.Layers)}
	for l := range s.k {
		s.k[l] = make([]float32, maxLen*kvd)
		s.v[l] = make([]float32, maxLen*kvd)
	}
	return s
}

// Len returns the number of tokens in the sequence.
func (s *State) Len() int { return s.pos }

// Observer receives the internals of a forward pass, for activation analysis: per layer,
// the hidden state entering the layer and the MLP activations (silu(gate)·up, the input of
// the down projection), one row per new position. The slices are only valid during the
// call.
type Observer interface {
	Layer(l int, hidden, mlp [][]float32)
}

// Forward appends ids to the sequence and returns the logits of every new position (all)
// or of the last one only. The prompt is evaluated as a batch.
func (m *Model) Forward(s *State, ids []int, all bool) ([][]float32, error) {
	return m.ForwardObserve(s, ids, all, nil)
}

// ForwardObserve is Forward with an observer (nil for none).
func (m *Model) ForwardObserve(s *State, ids []int, all bool, obs Observer) ([][]float32, error) {
	c := m.Config
	T := len(ids)
	if T == 0 {
		return nil, nil
	}
	if s.pos+T > s.max {
		return nil, fmt.Errorf("llm: sequence of %d tokens exceeds the state's %d", s.pos+T, s.max)
	}
	for _, id := range ids {
		if id < 0 || id >= c.Vocab {
			return nil, fmt.Errorf("llm: token id %d outside the vocabulary of %d", id, c.Vocab)
		}
	}
	H, D := c.Hidden, c.HeadDim
	qd, kvd := c.Heads*D, c.KVHeads*D
	x := make([]float32, T*H)
	for t, id := range ids {
		copy(x[t*H:(t+1)*H], m.embed[id*H:(id+1)*H])
	}
	xn := make([]float32, T*H)
	q := make([]float32, T*qd)
	k := make([]float32, T*kvd)
	v := make([]float32, T*kvd)
	att := make([]float32, T*qd)
	o := make([]float32, T*H)
	g := make([]float32, T*c.FF)
	u := make([]float32, T*c.FF)
	cos, sin := m.rope(s.pos, T)
	for l := range m.layers {
		ly := &m.layers[l]
		rmsnorm(xn, x, ly.attnNorm, H, c.Eps)
		m.matmul(q, xn, ly.wq, T, H, qd)
		m.matmul(k, xn, ly.wk, T, H, kvd)
		m.matmul(v, xn, ly.wv, T, H, kvd)
		addBias(q, ly.bq, T)
		addBias(k, ly.bk, T)
		addBias(v, ly.bv, T)
		for t := 0; t < T; t++ {
			for h := 0; h < c.Heads; h++ {
				m.applyRope(q[t*qd+h*D:t*qd+(h+1)*D], cos[t], sin[t])
			}
			for h := 0; h < c.KVHeads; h++ {
				m.applyRope(k[t*kvd+h*D:t*kvd+(h+1)*D], cos[t], sin[t])
			}
		}
		copy(s.k[l][s.pos*kvd:], k)
		copy(s.v[l][s.pos*kvd:], v)
		m.attention(att, q, s.k[l], s.v[l], s.pos, T)
		m.matmul(o, att, ly.wo, T, qd, H)
		for i := range x {
			x[i] += o[i]
		}
		rmsnorm(xn, x, ly.ffnNorm, H, c.Eps)
		m.matmul(g, xn, ly.wg, T, H, c.FF)
		m.matmul(u, xn, ly.wu, T, H, c.FF)
		for i := range g {
			gv := g[i]
			g[i] = gv / (1 + float32(math.Exp(float64(-gv)))) * u[i]
		}
		if obs != nil {
			obs.Layer(l, rows(x, T, H), rows(g, T, c.FF))
		}
		m.matmul(o, g, ly.wd, T, c.FF, H)
		for i := range x {
			x[i] += o[i]
		}
	}
	s.pos += T
	first := 0
	if !all {
		first = T - 1
	}
	n := T - first
	rmsnorm(xn[:n*H], x[first*H:], m.norm, H, c.Eps)
	logits := make([]float32, n*c.Vocab)
	m.matmul(logits, xn[:n*H], m.out, n, H, c.Vocab)
	return rows(logits, n, c.Vocab), nil
}

func rows(a []float32, n, w int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = a[i*w : (i+1)*w : (i+1)*w]
	}
	return out
}

func addBias(a, b []float32, T int) {
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

// rmsnorm writes x / sqrt(mean(x²) + eps) · w for each row of width n.
func rmsnorm(dst, x, w []float32, n int, eps float32) {
	for r := 0; r*n < len(dst); r++ {
		row := x[r*n : (r+1)*n]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		scale := float32(1 / math.Sqrt(ss/float64(n)+float64(eps)))
		d := dst[r*n : (r+1)*n]
		for i, v := range row {
			d[i] = v * scale * w[i]
		}
	}
}

// rope returns the cos and sin tables for positions pos0..pos0+T-1.
func (m *Model) rope(pos0, T int) ([][]float32, [][]float32) {
	half := m.Config.RopeDim / 2
	cos, sin := make([][]float32, T), make([][]float32, T)
	for t := 0; t < T; t++ {
		cos[t], sin[t] = make([]float32, half), make([]float32, half)
		for i := 0; i < half; i++ {
			freq := math.Pow(m.Config.RopeBase, -2*float64(i)/float64(m.Config.RopeDim))
			a := float64(pos0+t) * freq
			cos[t][i], sin[t][i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	return cos, sin
}

// applyRope rotates one head vector in place.
func (m *Model) applyRope(h []float32, cos, sin []float32) {
	half := m.Config.RopeDim / 2
	if m.Config.Interleaved {
		for i := 0; i < half; i++ {
			a, b := h[2*i], h[2*i+1]
			h[2*i] = a*cos[i] - b*sin[i]
			h[2*i+1] = a*sin[i] + b*cos[i]
		}
		return
	}
	for i := 0; i < half; i++ {
		a, b := h[i], h[i+half]
		h[i] = a*cos[i] - b*sin[i]
		h[i+half] = a*sin[i] + b*cos[i]
	}
}

// attention computes causal grouped-query attention of the T new positions (starting at
// pos0) against the cache holding positions 0..pos0+T-1.
func (m *Model) attention(out, q, kc, vc []float32, pos0, T int) {
	c := m.Config
	D := c.HeadDim
	qd, kvd := c.Heads*D, c.KVHeads*D
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(D)))
	run := m.parallel
	if T*c.Heads*(pos0+T)*D < 1<<18 {
		run = serial
	}
	run(T*c.Heads, func(lo, hi int) {
		scores := make([]float32, pos0+T)
		for job := lo; job < hi; job++ {
			t, h := job/c.Heads, job%c.Heads
			kh := h / group
			qv := q[t*qd+h*D : t*qd+(h+1)*D]
			n := pos0 + t + 1
			mx := float32(math.Inf(-1))
			for j := 0; j < n; j++ {
				sc := dot(qv, kc[j*kvd+kh*D:j*kvd+(kh+1)*D]) * scale
				scores[j] = sc
				if sc > mx {
					mx = sc
				}
			}
			var sum float32
			for j := 0; j < n; j++ {
				e := float32(math.Exp(float64(scores[j] - mx)))
				scores[j] = e
				sum += e
			}
			o := out[t*qd+h*D : t*qd+(h+1)*D]
			for i := range o {
				o[i] = 0
			}
			inv := 1 / sum
			for j := 0; j < n; j++ {
				p := scores[j] * inv
				vv := vc[j*kvd+kh*D : j*kvd+(kh+1)*D]
				for i := range o {
					o[i] += p * vv[i]
				}
			}
		}
	})
}

// rowBlock is the number of weight rows a worker sweeps over all positions of a batch
// before moving on: 16 rows of 768-2048 floats stay in L2 while the batch streams through L1.
const rowBlock = 16

// matmul computes y[T×N] = x[T×K] · wᵀ for w [N×K], splitting the N output rows across the
// workers so each weight row is read once for all T positions. Blocks of two weight rows and
// four positions share their loads (dot2x4); a single position uses dot.
func (m *Model) matmul(y, x, w []float32, T, K, N int) {
	y, x, w = y[:T*N], x[:T*K], w[:N*K]
	run := m.parallel
	if T*K*N < 1<<18 { // too little work to pay for goroutines
		run = serial
	}
	run(N, func(lo, hi int) {
		for n0 := lo; n0 < hi; n0 += rowBlock {
			n1 := min(n0+rowBlock, hi)
			t := 0
			for ; t+4 <= T; t += 4 {
				x0, x1, x2, x3 := x[t*K:(t+1)*K], x[(t+1)*K:(t+2)*K], x[(t+2)*K:(t+3)*K], x[(t+3)*K:(t+4)*K]
				y0, y1, y2, y3 := y[t*N:(t+1)*N], y[(t+1)*N:(t+2)*N], y[(t+2)*N:(t+3)*N], y[(t+3)*N:(t+4)*N]
				n := n0
				for ; n+2 <= n1; n += 2 {
					r := dot2x4(w[n*K:(n+1)*K], w[(n+1)*K:(n+2)*K], x0, x1, x2, x3)
					y0[n], y1[n], y2[n], y3[n] = r[0], r[1], r[2], r[3]
					y0[n+1], y1[n+1], y2[n+1], y3[n+1] = r[4], r[5], r[6], r[7]
				}
				for ; n < n1; n++ {
					wn := w[n*K : (n+1)*K]
					y0[n], y1[n], y2[n], y3[n] = dot(x0, wn), dot(x1, wn), dot(x2, wn), dot(x3, wn)
				}
			}
			for ; t < T; t++ {
				xt := x[t*K : (t+1)*K]
				for n := n0; n < n1; n++ {
					y[t*N+n] = dot(xt, w[n*K:(n+1)*K])
				}
			}
		}
	})
}

// dot2x4 returns the dot products of the weight rows w0 and w1 (equal lengths) with x0…x3
// (each at least as long): a 2×4 register tile, so each loaded value feeds two or four
// multiply-adds.
func dot2x4(w0, w1, x0, x1, x2, x3 []float32) (r [8]float32) {
	n := len(w0)
	w1, x0, x1, x2, x3 = w1[:n], x0[:n], x1[:n], x2[:n], x3[:n]
	var a0, a1, a2, a3, b0, b1, b2, b3 float32
	for i, u := range w0 {
		v := w1[i]
		p, q, s, t := x0[i], x1[i], x2[i], x3[i]
		a0 += u * p
		a1 += u * q
		a2 += u * s
		a3 += u * t
		b0 += v * p
		b1 += v * q
		b2 += v * s
		b3 += v * t
	}
	return [8]float32{a0, a1, a2, a3, b0, b1, b2, b3}
}

func serial(n int, f func(lo, hi int)) { f(0, n) }

// parallel runs f over [0, n) in contiguous parts, one per worker.
func (m *Model) parallel(n int, f func(lo, hi int)) {
	w := max(m.Workers, 1)
	if w == 1 || n < 2*w {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		lo, hi := i*n/w, (i+1)*n/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// dot returns Σ a[i]·b[i] with eight independent accumulators.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
		s4 += aa[4] * bb[4]
		s5 += aa[5] * bb[5]
		s6 += aa[6] * bb[6]
		s7 += aa[7] * bb[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// Generate greedily continues ids by n tokens (fewer when stop returns true for a token,
// which is included) and returns the new tokens.
func (m *Model) Generate(ids []int, n int, stop func(id int) bool) ([]int, error) {
	s := m.NewState(len(ids) + n)
	logits, err := m.Forward(s, ids, false)
	if err != nil {
		return nil, err
	}
	var out []int
	for i := 0; i < n; i++ {
		next := Argmax(logits[len(logits)-1])
		out = append(out, next)
		if stop != nil && stop(next) {
			break
		}
		if i == n-1 {
			break
		}
		if logits, err = m.Forward(s, []int{next}, false); err != nil {
			return out, err
		}
	}
	return out, nil
}

// Argmax returns the index of the largest value (the first on ties).
func Argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
