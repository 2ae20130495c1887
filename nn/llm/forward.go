package llm

import (
	"fmt"
	"math"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/kernels"
)

// State is the KV cache of one sequence.
type State struct {
	pos int
	max int
	k   [][]float32 // per layer: [max, kvHeads*headDim]
	v   [][]float32 // per layer: [kvHeads*headDim, max], transposed (a channel's history is contiguous)
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
// the hidden state after the layer's attention (the residual stream the MLP reads) and the
// MLP activations (act(gate)·up, or act(up) without a gate: the input of the down
// projection), one row per new position. A mixture-of-experts layer has no such single
// activation: its rows are empty. The slices are only valid during the call.
type Observer interface {
	Layer(l int, hidden, mlp [][]float32)
}

// Forward appends ids to the sequence and returns the logits of every new position (all)
// or of the last one only. The prompt is evaluated as a batch.
func (m *Model) Forward(s *State, ids []int, all bool) ([][]float32, error) {
	return m.ForwardObserve(s, ids, all, nil)
}

// ForwardObserve is Forward with an observer (nil for none).
//
// The weights are read in place from the model's memory-mapped file; should the file be
// truncated under the forward pass, the memory fault is returned as an error wrapping
// formats.ErrFault (in whichever worker it happens), never a crash.
func (m *Model) ForwardObserve(s *State, ids []int, all bool, obs Observer) (out [][]float32, err error) {
	var fe faultBox
	if gerr := formats.Guard(m.path, func() error {
		out, err = m.forward(s, ids, all, obs, &fe)
		return nil
	}); gerr != nil {
		return nil, gerr
	}
	if ferr := fe.get(); ferr != nil {
		return nil, ferr
	}
	return out, err
}

func (m *Model) forward(s *State, ids []int, all bool, obs Observer, fe *faultBox) ([][]float32, error) {
	c := &m.Config
	T := len(ids)
	if T == 0 {
		return nil, nil
	}
	if s.pos+T > s.max {
		return nil, fmt.Errorf("llm: sequence of %d tokens exceeds the state's %d", s.pos+T, s.max)
	}
	if m.pos != nil && s.pos+T > m.pos.rows() {
		return nil, fmt.Errorf("llm: sequence of %d tokens exceeds the model's %d learned positions", s.pos+T, m.pos.rows())
	}
	for _, id := range ids {
		if id < 0 || id >= c.Vocab {
			return nil, fmt.Errorf("llm: token id %d outside the vocabulary of %d", id, c.Vocab)
		}
	}
	H, D := c.Hidden, c.HeadDim
	qd, kvd := c.Heads*D, c.KVHeads*D
	run := m.runner(fe)

	x := make([]float32, T*H)
	var pe []float32
	if m.pos != nil {
		pe = make([]float32, H)
	}
	for t, id := range ids {
		xt := x[t*H : (t+1)*H]
		m.embed.row(id, xt)
		if m.embedScale != 0 {
			for i := range xt {
				xt[i] *= m.embedScale
			}
		}
		if pe != nil {
			m.pos.row(s.pos+t, pe)
			for i := range xt {
				xt[i] += pe[i]
			}
		}
	}
	xn := make([]float32, T*H)
	q := make([]float32, T*qd)
	k := make([]float32, T*kvd)
	v := make([]float32, T*kvd)
	att := make([]float32, T*qd)
	o := make([]float32, T*H)
	var bufs mlpBuffers
	tables := make([]ropeTable, len(m.ropes))
	for i := range m.ropes {
		tables[i] = m.ropes[i].table(s.pos, T)
	}
	for l := range m.layers {
		ly := &m.layers[l]
		m.normalize(xn, x, ly.attnNorm, ly.attnNormB, H)
		mulShared(run, []*linear{&ly.q, &ly.k, &ly.v}, [][]float32{q, k, v}, xn, T)
		if ly.qNorm != nil {
			rmsnorm(q, q, ly.qNorm, D, c.Eps)
			rmsnorm(k, k, ly.kNorm, D, c.Eps)
		}
		if len(tables) > 0 {
			tb := &tables[ly.rope]
			for t := 0; t < T; t++ {
				cos, sin := tb.at(t)
				for h := 0; h < c.Heads; h++ {
					m.applyRope(q[t*qd+h*D:t*qd+(h+1)*D], cos, sin)
				}
				for h := 0; h < c.KVHeads; h++ {
					m.applyRope(k[t*kvd+h*D:t*kvd+(h+1)*D], cos, sin)
				}
			}
		}
		if m.qScale != 1 {
			for i := range q {
				q[i] *= m.qScale
			}
		}
		copy(s.k[l][s.pos*kvd:], k)
		vt := s.v[l]
		for t := 0; t < T; t++ {
			vr := v[t*kvd : (t+1)*kvd]
			for ch, x := range vr {
				vt[ch*s.max+s.pos+t] = x
			}
		}
		m.attention(run, att, q, s.k[l], vt, s.max, s.pos, T, ly.window)
		ly.o.mul(run, o, att, T)
		if ly.postAttnNorm != nil {
			rmsnorm(o, o, ly.postAttnNorm, H, c.Eps)
		}
		for i := range x {
			x[i] += o[i]
		}
		m.normalize(xn, x, ly.ffnNorm, ly.ffnNormB, H)
		var act []float32
		if ly.moe != nil {
			m.moe(run, o, xn, T, ly.moe, &bufs)
		} else {
			act = m.mlp(run, o, xn, T, &ly.gate, &ly.up, &ly.down, &bufs)
		}
		if obs != nil {
			hidden := rows(x, T, H)
			if act != nil {
				obs.Layer(l, hidden, rows(act, T, len(act)/T))
			} else {
				obs.Layer(l, hidden, make([][]float32, T))
			}
		}
		if ly.postFFNNorm != nil {
			rmsnorm(o, o, ly.postFFNNorm, H, c.Eps)
		}
		if err := fe.get(); err != nil {
			return nil, err
		}
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
	m.normalize(xn[:n*H], x[first*H:], m.norm, m.normB, H)
	logits := make([]float32, n*c.Vocab)
	m.out.mul(run, logits, xn[:n*H], n)
	if m.finalCap != 0 {
		softcap(logits, m.finalCap)
	}
	return rows(logits, n, c.Vocab), nil
}

func rows(a []float32, n, w int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = a[i*w : (i+1)*w : (i+1)*w]
	}
	return out
}

// softcap replaces each value by c·tanh(v/c), in ggml's steps (scale by 1/c, tanh, scale
// by c).
func softcap(v []float32, c float32) {
	inv := 1 / c
	for i, x := range v {
		v[i] = float32(math.Tanh(float64(x*inv))) * c
	}
}

// normalize applies the model's norm (RMSNorm, or LayerNorm with its bias) to each row.
func (m *Model) normalize(dst, x, w, b []float32, n int) {
	if m.Config.LayerNorm {
		layernorm(dst, x, w, b, n, m.Config.Eps)
		return
	}
	rmsnorm(dst, x, w, n, m.Config.Eps)
}

// rmsnorm writes x·(1/sqrt(mean(x²) + eps))·w for each row of width n, in ggml's steps:
// the squares summed in float64, the mean and the scale in float32. dst may be x.
func rmsnorm(dst, x, w []float32, n int, eps float32) {
	for r := 0; r*n < len(dst); r++ {
		row := x[r*n : (r+1)*n]
		var sum float64
		for _, v := range row {
			sum += float64(v * v)
		}
		mean := float32(sum / float64(n))
		scale := 1 / float32(math.Sqrt(float64(mean+eps)))
		d := dst[r*n : (r+1)*n]
		for i, v := range row {
			d[i] = v * scale * w[i]
		}
	}
}

// layernorm writes (x - mean)·(1/sqrt(var + eps))·w + b for each row of width n, in
// ggml_norm's steps. dst may be x.
func layernorm(dst, x, w, b []float32, n int, eps float32) {
	for r := 0; r*n < len(dst); r++ {
		row := x[r*n : (r+1)*n]
		d := dst[r*n : (r+1)*n]
		var sum float64
		for _, v := range row {
			sum += float64(v)
		}
		mean := float32(sum / float64(n))
		var sum2 float64
		for i, v := range row {
			c := v - mean
			d[i] = c
			sum2 += float64(c * c)
		}
		variance := float32(sum2 / float64(n))
		scale := 1 / float32(math.Sqrt(float64(variance+eps)))
		for i := range d {
			d[i] = d[i] * scale * w[i]
		}
		if b != nil {
			for i := range d {
				d[i] += b[i]
			}
		}
	}
}

// activate applies the MLP activation in place.
func (m *Model) activate(v []float32) {
	switch {
	case !m.Config.GELU:
		silu(v)
	case m.exactGELU:
		geluTanh(v)
	default:
		geluTable16(v)
	}
}

// mlpBuffers are the MLP's scratch slices, grown as needed.
type mlpBuffers struct {
	g, u, xs, ys []float32
}

func grow(b *[]float32, n int) []float32 {
	if cap(*b) < n {
		*b = make([]float32, n)
	}
	return (*b)[:n]
}

// elementwise runs f over [0, n) on run's workers when n is large enough to pay for them.
func elementwise(run runner, n int, f func(lo, hi int)) {
	if n < 1<<15 {
		f(0, n)
		return
	}
	run(n, f)
}

// mlp computes dst = down(act(gate(x))·up(x)), or down(act(up(x))) without a gate, and
// returns the activations (the input of down).
func (m *Model) mlp(run runner, dst, xn []float32, T int, gate, up, down *linear, b *mlpBuffers) []float32 {
	ff := up.out()
	u := grow(&b.u, T*ff)
	h := u
	if gate.w != nil {
		g := grow(&b.g, T*ff)
		mulShared(run, []*linear{up, gate}, [][]float32{u, g}, xn, T)
		// elementwise, so split over the workers too (a serial part of a prompt's
		// forward otherwise)
		elementwise(run, len(g), func(lo, hi int) {
			m.activate(g[lo:hi])
			for i := lo; i < hi; i++ {
				g[i] *= u[i]
			}
		})
		h = g
	} else {
		up.mul(run, u, xn, T)
		elementwise(run, len(u), func(lo, hi int) { m.activate(u[lo:hi]) })
	}
	down.mul(run, dst, h, T)
	return h
}

// moe computes a mixture-of-experts MLP as llama.cpp's build_moe_ffn: softmax over the
// router's logits, the top experts by probability, their probabilities as weights
// (renormalized to sum to 1 when normTopK), each expert's SwiGLU output times its weight
// summed in rank order; plus the shared expert, scaled by sigmoid of its gate.
func (m *Model) moe(run runner, dst, xn []float32, T int, mo *moe, b *mlpBuffers) {
	H := m.Config.Hidden
	E, K := len(mo.experts), mo.used
	logits := make([]float32, T*E)
	mo.router.mul(run, logits, xn, T)
	sel := make([]int, T*K)
	wts := make([]float32, T*K)
	for t := 0; t < T; t++ {
		p := logits[t*E : (t+1)*E]
		softmaxInPlace(p)
		topK(p, sel[t*K:(t+1)*K])
		w := wts[t*K : (t+1)*K]
		for j, e := range sel[t*K : (t+1)*K] {
			w[j] = p[e]
		}
		if mo.normTopK {
			var sum float64
			for _, x := range w {
				sum += float64(x)
			}
			s := float32(sum)
			for j := range w {
				w[j] /= s
			}
		}
	}
	// each expert runs once over the tokens routed to it
	outs := make([]float32, T*K*H) // [token, rank, hidden]
	var idx []int
	for e := 0; e < E; e++ {
		idx = idx[:0]
		for i, s := range sel {
			if s == e {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			continue
		}
		n := len(idx)
		xs := grow(&b.xs, n*H)
		for r, i := range idx {
			t := i / K
			copy(xs[r*H:(r+1)*H], xn[t*H:(t+1)*H])
		}
		ys := grow(&b.ys, n*H)
		ex := &mo.experts[e]
		m.mlp(run, ys, xs, n, &ex.gate, &ex.up, &ex.down, b)
		for r, i := range idx {
			copy(outs[i*H:(i+1)*H], ys[r*H:(r+1)*H])
		}
	}
	for t := 0; t < T; t++ {
		d := dst[t*H : (t+1)*H]
		for j := 0; j < K; j++ {
			w := wts[t*K+j]
			y := outs[(t*K+j)*H : (t*K+j+1)*H]
			if j == 0 {
				for i := range d {
					d[i] = y[i] * w
				}
				continue
			}
			for i := range d {
				d[i] += y[i] * w
			}
		}
	}
	if mo.shared == nil {
		return
	}
	sh := mo.shared
	ys := make([]float32, T*H)
	m.mlp(run, ys, xn, T, &sh.gate, &sh.up, &sh.down, b)
	if mo.sharedGate.w != nil {
		g := make([]float32, T)
		mo.sharedGate.mul(run, g, xn, T)
		for t := 0; t < T; t++ {
			// llama.cpp computes the sigmoid as silu(x)/x
			x := g[t]
			s := float32(0.5)
			if x != 0 {
				s = x / (1 + float32(math.Exp(float64(-x)))) / x
			}
			y := ys[t*H : (t+1)*H]
			for i := range y {
				y[i] *= s
			}
		}
	}
	for i := range dst[:T*H] {
		dst[i] += ys[i]
	}
}

// softmaxInPlace replaces v by its softmax, in ggml's steps (the sum in float64).
func softmaxInPlace(v []float32) {
	mx := float32(math.Inf(-1))
	for _, x := range v {
		mx = max(mx, x)
	}
	var sum float64
	for i, x := range v {
		e := float32(math.Exp(float64(x - mx)))
		v[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range v {
		v[i] *= inv
	}
}

// topK writes to sel the indices of the len(sel) largest values of p, largest first (the
// lower index first on ties).
func topK(p []float32, sel []int) {
	for j := range sel {
		best := -1
		for i, x := range p {
			taken := false
			for _, s := range sel[:j] {
				if s == i {
					taken = true
					break
				}
			}
			if !taken && (best < 0 || x > p[best]) {
				best = i
			}
		}
		sel[j] = best
	}
}

// ropeSpec is one set of rotary frequencies, as ggml's rope computes them: theta_i =
// pos·base^(-2i/dims) by repeated float32 multiplication, divided by a per-pair factor
// (llama 3's rope_freqs, phi3's short factors), scaled by the frequency scale with YaRN's
// ramp between interpolation and extrapolation when enabled, and cos/sin multiplied by the
// attention factor.
type ropeSpec struct {
	dims       int
	thetaScale float32
	freqScale  float32
	factors    []float32
	extFactor  float32
	attnFactor float32
	corr       [2]float32
}

func newRopeSpec(dims int, base, freqScale float32, factors []float32, yarn bool, attnFactor float32, origCtx int) ropeSpec {
	r := ropeSpec{dims: dims, freqScale: freqScale, factors: factors, attnFactor: attnFactor}
	r.thetaScale = float32(math.Pow(float64(base), float64(float32(-2.0)/float32(dims))))
	if yarn {
		r.extFactor = 1
	}
	// ggml_rope_yarn_corr_dims with llama.cpp's beta_fast 32, beta_slow 1
	corrDim := func(nRot float32) float32 {
		return float32(dims) * float32(math.Log(float64(float32(origCtx)/(nRot*2*float32(math.Pi))))) / (2 * float32(math.Log(float64(base))))
	}
	start := float32(math.Floor(float64(corrDim(32))))
	end := float32(math.Ceil(float64(corrDim(1))))
	r.corr = [2]float32{max(0, start), min(float32(dims-1), end)}
	return r
}

// ropeTable holds cos and sin for T positions, dims/2 of each.
type ropeTable struct {
	half     int
	cos, sin []float32
}

func (tb *ropeTable) at(t int) (cos, sin []float32) {
	return tb.cos[t*tb.half : (t+1)*tb.half], tb.sin[t*tb.half : (t+1)*tb.half]
}

func (r *ropeSpec) table(pos0, T int) ropeTable {
	half := r.dims / 2
	tb := ropeTable{half: half, cos: make([]float32, T*half), sin: make([]float32, T*half)}
	for t := 0; t < T; t++ {
		theta := float32(pos0 + t)
		for i := 0; i < half; i++ {
			ff := float32(1)
			if r.factors != nil {
				ff = r.factors[i]
			}
			extrap := theta / ff
			interp := r.freqScale * extrap
			th, ms := interp, r.attnFactor
			if r.extFactor != 0 {
				y := (float32(i) - r.corr[0]) / max(0.001, r.corr[1]-r.corr[0])
				mix := (1 - min(1, max(0, y))) * r.extFactor
				th = interp*(1-mix) + extrap*mix
				ms *= 1 + 0.1*float32(math.Log(float64(1/r.freqScale)))
			}
			tb.cos[t*half+i] = float32(math.Cos(float64(th))) * ms
			tb.sin[t*half+i] = float32(math.Sin(float64(th))) * ms
			theta *= r.thetaScale
		}
	}
	return tb
}

// applyRope rotates the first RopeDim values of one head vector in place.
func (m *Model) applyRope(h []float32, cos, sin []float32) {
	half := len(cos)
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
// pos0) against the cache holding positions 0..pos0+T-1: scores q·k·kqScale, soft-capped
// when the model caps them, restricted to the last window positions when window > 0
// (key j is visible from query i when i-j < window), softmax in ggml's steps.
func (m *Model) attention(run runner, out, q, kc, vt []float32, stride, pos0, T, window int) {
	c := &m.Config
	D := c.HeadDim
	qd, kvd := c.Heads*D, c.KVHeads*D
	group := c.Heads / c.KVHeads
	scale, cap := m.kqScale, m.attnCap
	var invCap float32
	if cap != 0 {
		invCap = 1 / cap
	}
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
			j0 := 0
			if window > 0 {
				j0 = max(0, n-window)
			}
			mx := float32(math.Inf(-1))
			for j := j0; j < n; j++ {
				sc := kernels.Dot(qv, kc[j*kvd+kh*D:j*kvd+(kh+1)*D])
				if cap != 0 {
					sc = float32(math.Tanh(float64(sc*invCap))) * cap
				}
				sc *= scale
				scores[j] = sc
				if sc > mx {
					mx = sc
				}
			}
			var sum float64
			for j := j0; j < n; j++ {
				e := kernels.Exp(scores[j] - mx)
				scores[j] = e
				sum += float64(e)
			}
			inv := float32(1 / sum)
			for j := j0; j < n; j++ {
				scores[j] *= inv
			}
			// the values are cached transposed (channel-major), so each output channel
			// is one dot product of the probabilities with that channel's history
			o := out[t*qd+h*D : t*qd+(h+1)*D]
			p := scores[j0:n]
			for i := range o {
				ch := (kh*D + i) * stride
				o[i] = kernels.Dot(p, vt[ch+j0:ch+n])
			}
		}
	})
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
