package llm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
	"github.com/kensa-scan/kensa/formats/safetensors"
)

// A float64 reference forward pass written from the published architectures (Hugging Face
// transformers' modeling code: LlamaForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM,
// Gemma2ForCausalLM, Gemma3ForCausalLM, Phi3ForCausalLM, MistralForCausalLM), independent of
// the runtime's code, and writers that store its random weights as GGUF in llama.cpp's
// names (what convert_hf_to_gguf.py does: Gemma norms stored as 1 + w, llama's Q/K rows
// permuted for the interleaved rotation, llama 3's frequency factors as rope_freqs) and as
// safetensors with a config.json.

type refSpec struct {
	H, L, FF, heads, kvh, hd, V int
	ropeDim                     int
	ropeBase, localBase         float64 // localBase: Gemma 3's sliding-window layers
	ropeLinear                  float64 // linear scaling factor (of the global layers)
	llama3                      []float64
	eps                         float64
	gemma                       bool // (1 + w) norms, embeddings × sqrt(H), GELU (tanh)
	qkNorm, postNorms, bias     bool
	qScale                      float64 // 0: 1/sqrt(hd)
	attnCap, finalCap           float64
	window                      int
	sliding                     func(l int) bool // nil: every layer when window > 0
	tied                        bool
	experts, used               int
	normTopK                    bool
	sharedFF                    int
}

type refLayer struct {
	an, wq, wk, wv, wo, bq, bk, bv, qn, kn, pan, fn, pfn, wg, wu, wd []float64
	router, sgate                                                    []float64
	eg, eu, ed                                                       [][]float64 // per expert
	sg, su, sd                                                       []float64   // shared expert
}

type refWeights struct {
	emb, norm, head []float64
	layers          []refLayer
}

func genRef(s *refSpec, seed uint64) *refWeights {
	rng := rand.New(rand.NewPCG(seed, seed))
	vec := func(n int, std float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(float32(rng.NormFloat64() * std))
		}
		return v
	}
	normW := func(n int) []float64 {
		v := vec(n, 0.1)
		if !s.gemma {
			for i := range v {
				v[i] = float64(float32(1 + v[i]))
			}
		}
		return v
	}
	qd, kvd := s.heads*s.hd, s.kvh*s.hd
	w := &refWeights{emb: vec(s.V*s.H, 0.5), norm: normW(s.H)}
	if s.gemma {
		for i := range w.emb {
			w.emb[i] = float64(float32(w.emb[i] / math.Sqrt(float64(s.H)) * 2))
		}
	}
	if !s.tied {
		w.head = vec(s.V*s.H, 0.3)
	}
	for l := 0; l < s.L; l++ {
		ly := refLayer{an: normW(s.H), wq: vec(qd*s.H, 0.3), wk: vec(kvd*s.H, 0.3), wv: vec(kvd*s.H, 0.3),
			wo: vec(s.H*qd, 0.3), fn: normW(s.H)}
		if s.bias {
			ly.bq, ly.bk, ly.bv = vec(qd, 0.1), vec(kvd, 0.1), vec(kvd, 0.1)
		}
		if s.qkNorm {
			ly.qn, ly.kn = normW(s.hd), normW(s.hd)
		}
		if s.postNorms {
			ly.pan, ly.pfn = normW(s.H), normW(s.H)
		}
		if s.experts > 0 {
			ly.router = vec(s.experts*s.H, 0.5)
			for e := 0; e < s.experts; e++ {
				ly.eg = append(ly.eg, vec(s.FF*s.H, 0.3))
				ly.eu = append(ly.eu, vec(s.FF*s.H, 0.3))
				ly.ed = append(ly.ed, vec(s.H*s.FF, 0.2))
			}
			if s.sharedFF > 0 {
				ly.sg, ly.su, ly.sd = vec(s.sharedFF*s.H, 0.3), vec(s.sharedFF*s.H, 0.3), vec(s.H*s.sharedFF, 0.2)
				ly.sgate = vec(s.H, 0.3)
			}
		} else {
			ly.wg, ly.wu, ly.wd = vec(s.FF*s.H, 0.3), vec(s.FF*s.H, 0.3), vec(s.H*s.FF, 0.2)
		}
		w.layers = append(w.layers, ly)
	}
	return w
}

func mv(w, x []float64, out int) []float64 {
	y := make([]float64, out)
	n := len(x)
	for o := range y {
		var s float64
		for i, v := range x {
			s += w[o*n+i] * v
		}
		y[o] = s
	}
	return y
}

func (s *refSpec) rms(x, w []float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+s.eps)
	y := make([]float64, len(x))
	for i := range x {
		g := w[i]
		if s.gemma {
			g = 1 + w[i]
		}
		y[i] = x[i] * r * g
	}
	return y
}

func (s *refSpec) isSliding(l int) bool {
	return s.window > 0 && (s.sliding == nil || s.sliding(l))
}

// invFreq returns a layer's rotary inverse frequencies as transformers computes them.
func (s *refSpec) invFreq(l int) []float64 {
	base, lin := s.ropeBase, s.ropeLinear
	if s.localBase > 0 && s.isSliding(l) {
		base, lin = s.localBase, 0
	}
	f := make([]float64, s.ropeDim/2)
	for i := range f {
		f[i] = 1 / math.Pow(base, 2*float64(i)/float64(s.ropeDim))
		if lin > 0 {
			f[i] /= lin
		}
		if s.llama3 != nil { // _compute_llama3_parameters
			factor, low, high, orig := s.llama3[0], s.llama3[1], s.llama3[2], s.llama3[3]
			wave := 2 * math.Pi / f[i]
			switch {
			case wave > orig/low:
				f[i] /= factor
			case wave >= orig/high:
				sm := (orig/wave - low) / (high - low)
				f[i] = (1-sm)*f[i]/factor + sm*f[i]
			}
		}
	}
	return f
}

func gelu64(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

func (s *refSpec) act(x float64) float64 {
	if s.gemma {
		return gelu64(x)
	}
	return x / (1 + math.Exp(-x))
}

func (s *refSpec) mlp(x, g, u, d []float64, ff int) []float64 {
	gv, uv := mv(g, x, ff), mv(u, x, ff)
	for i := range gv {
		gv[i] = s.act(gv[i]) * uv[i]
	}
	return mv(d, gv, s.H)
}

// refForward returns the logits of every position of ids.
func refForward(s *refSpec, w *refWeights, ids []int) [][]float64 {
	T, H, D := len(ids), s.H, s.hd
	qd, kvd := s.heads*D, s.kvh*D
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = append([]float64(nil), w.emb[id*H:(id+1)*H]...)
		if s.gemma {
			for i := range x[t] {
				x[t][i] *= float64(float32(math.Sqrt(float64(H))))
			}
		}
	}
	scale := s.qScale
	if scale == 0 {
		scale = 1 / math.Sqrt(float64(D))
	}
	for l, ly := range w.layers {
		inv := s.invFreq(l)
		rope := func(v []float64, pos int) {
			for h := 0; h < len(v)/D; h++ {
				r := v[h*D : (h+1)*D]
				for i := range inv {
					a := float64(pos) * inv[i]
					x0, x1 := r[i], r[i+s.ropeDim/2]
					r[i] = x0*math.Cos(a) - x1*math.Sin(a)
					r[i+s.ropeDim/2] = x1*math.Cos(a) + x0*math.Sin(a)
				}
			}
		}
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := 0; t < T; t++ {
			h := s.rms(x[t], ly.an)
			qs[t], ks[t], vs[t] = mv(ly.wq, h, qd), mv(ly.wk, h, kvd), mv(ly.wv, h, kvd)
			if s.bias {
				for i := range qs[t] {
					qs[t][i] += ly.bq[i]
				}
				for i := range ks[t] {
					ks[t][i] += ly.bk[i]
					vs[t][i] += ly.bv[i]
				}
			}
			if s.qkNorm {
				for hh := 0; hh < s.heads; hh++ {
					copy(qs[t][hh*D:], s.rms(qs[t][hh*D:(hh+1)*D], ly.qn))
				}
				for hh := 0; hh < s.kvh; hh++ {
					copy(ks[t][hh*D:], s.rms(ks[t][hh*D:(hh+1)*D], ly.kn))
				}
			}
			rope(qs[t], t)
			rope(ks[t], t)
		}
		for t := 0; t < T; t++ {
			att := make([]float64, qd)
			for hh := 0; hh < s.heads; hh++ {
				kh := hh / (s.heads / s.kvh)
				sc := make([]float64, t+1)
				mx := math.Inf(-1)
				for j := 0; j <= t; j++ {
					if s.isSliding(l) && t-j >= s.window {
						sc[j] = math.Inf(-1)
						continue
					}
					var d float64
					for i := 0; i < D; i++ {
						d += qs[t][hh*D+i] * ks[j][kh*D+i]
					}
					d *= scale
					if s.attnCap > 0 {
						d = s.attnCap * math.Tanh(d/s.attnCap)
					}
					sc[j] = d
					mx = math.Max(mx, d)
				}
				var sum float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					sum += sc[j]
				}
				for j := range sc {
					for i := 0; i < D; i++ {
						att[hh*D+i] += sc[j] / sum * vs[j][kh*D+i]
					}
				}
			}
			o := mv(ly.wo, att, H)
			if s.postNorms {
				o = s.rms(o, ly.pan)
			}
			for i := range o {
				x[t][i] += o[i]
			}
			h := s.rms(x[t], ly.fn)
			var y []float64
			if s.experts > 0 {
				y = s.moe(&ly, h)
			} else {
				y = s.mlp(h, ly.wg, ly.wu, ly.wd, s.FF)
			}
			if s.postNorms {
				y = s.rms(y, ly.pfn)
			}
			for i := range y {
				x[t][i] += y[i]
			}
		}
	}
	head := w.head
	if s.tied {
		head = w.emb
	}
	out := make([][]float64, T)
	for t := range x {
		out[t] = mv(head, s.rms(x[t], w.norm), s.V)
		if s.finalCap > 0 {
			for i := range out[t] {
				out[t][i] = s.finalCap * math.Tanh(out[t][i]/s.finalCap)
			}
		}
	}
	return out
}

// moe is Qwen2MoeSparseMoeBlock / Qwen3MoeSparseMoeBlock / MixtralSparseMoeBlock: softmax
// over the router logits, top-k, optionally renormalized, plus the sigmoid-gated shared
// expert.
func (s *refSpec) moe(ly *refLayer, h []float64) []float64 {
	logits := mv(ly.router, h, s.experts)
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, v)
	}
	p := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		p[i] = math.Exp(v - mx)
		sum += p[i]
	}
	idx := make([]int, len(p))
	for i := range p {
		p[i] /= sum
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	sel := idx[:s.used]
	var wsum float64
	for _, e := range sel {
		wsum += p[e]
	}
	y := make([]float64, s.H)
	for _, e := range sel {
		wt := p[e]
		if s.normTopK {
			wt /= wsum
		}
		o := s.mlp(h, ly.eg[e], ly.eu[e], ly.ed[e], s.FF)
		for i := range y {
			y[i] += wt * o[i]
		}
	}
	if s.sharedFF > 0 {
		o := s.mlp(h, ly.sg, ly.su, ly.sd, s.sharedFF)
		g := 1 / (1 + math.Exp(-mv(ly.sgate, h, 1)[0]))
		for i := range y {
			y[i] += g * o[i]
		}
	}
	return y
}

func f32bytes(v []float64) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(x)))
	}
	return b
}

// permuteRows is convert_hf_to_gguf.py's LlamaModel.permute: within each head, rows of the
// two halves are interleaved so that llama.cpp's rotation of pairs (2i, 2i+1) is the
// Hugging Face rotation of (i, i+d/2).
func permuteRows(w []float64, heads, cols int) []float64 {
	rows := len(w) / cols
	d := rows / heads
	out := make([]float64, len(w))
	for h := 0; h < heads; h++ {
		for j := 0; j < 2; j++ {
			for i := 0; i < d/2; i++ {
				src := h*d + j*d/2 + i
				dst := h*d + 2*i + j
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}

func plus1(v []float64) []float64 {
	o := make([]float64, len(v))
	for i := range v {
		o[i] = float64(float32(1 + v[i]))
	}
	return o
}

// writeGGUF stores the weights in llama.cpp's names for arch and returns the file's path.
func writeGGUF(t *testing.T, s *refSpec, w *refWeights, arch string, extra ...formats.KV) string {
	t.Helper()
	var ts []gguf.WriteTensor
	add := func(name string, v []float64, shape ...int64) {
		ts = append(ts, gguf.WriteTensor{Name: name, DType: formats.F32, Shape: shape, Data: f32bytes(v)})
	}
	norm := func(v []float64) []float64 {
		if s.gemma {
			return plus1(v)
		}
		return v
	}
	H, D := int64(s.H), int64(s.hd)
	qd, kvd, ff := int64(s.heads*s.hd), int64(s.kvh*s.hd), int64(s.FF)
	interleaved := arch == "llama"
	add("token_embd.weight", w.emb, int64(s.V), H)
	add("output_norm.weight", norm(w.norm), H)
	if !s.tied {
		add("output.weight", w.head, int64(s.V), H)
	}
	if s.llama3 != nil {
		inv := s.invFreq(0)
		f := make([]float64, len(inv))
		for i := range f { // the converter stores base frequency / scaled frequency
			f[i] = (1 / math.Pow(s.ropeBase, 2*float64(i)/float64(s.ropeDim))) / inv[i]
		}
		add("rope_freqs.weight", f, int64(len(f)))
	}
	for l, ly := range w.layers {
		p := fmt.Sprintf("blk.%d.", l)
		wq, wk, bq, bk := ly.wq, ly.wk, ly.bq, ly.bk
		if interleaved {
			wq, wk = permuteRows(wq, s.heads, s.H), permuteRows(wk, s.kvh, s.H)
			if s.bias {
				bq, bk = permuteRows(bq, s.heads, 1), permuteRows(bk, s.kvh, 1)
			}
		}
		add(p+"attn_norm.weight", norm(ly.an), H)
		add(p+"attn_q.weight", wq, qd, H)
		add(p+"attn_k.weight", wk, kvd, H)
		add(p+"attn_v.weight", ly.wv, kvd, H)
		if s.bias {
			add(p+"attn_q.bias", bq, qd)
			add(p+"attn_k.bias", bk, kvd)
			add(p+"attn_v.bias", ly.bv, kvd)
		}
		if s.qkNorm {
			add(p+"attn_q_norm.weight", norm(ly.qn), D)
			add(p+"attn_k_norm.weight", norm(ly.kn), D)
		}
		add(p+"attn_output.weight", ly.wo, H, qd)
		if s.postNorms {
			add(p+"post_attention_norm.weight", norm(ly.pan), H)
			add(p+"post_ffw_norm.weight", norm(ly.pfn), H)
		}
		add(p+"ffn_norm.weight", norm(ly.fn), H)
		if s.experts > 0 {
			E := int64(s.experts)
			add(p+"ffn_gate_inp.weight", ly.router, E, H)
			cat := func(m [][]float64) []float64 {
				var o []float64
				for _, x := range m {
					o = append(o, x...)
				}
				return o
			}
			add(p+"ffn_gate_exps.weight", cat(ly.eg), E, ff, H)
			add(p+"ffn_up_exps.weight", cat(ly.eu), E, ff, H)
			add(p+"ffn_down_exps.weight", cat(ly.ed), E, H, ff)
			if s.sharedFF > 0 {
				sff := int64(s.sharedFF)
				add(p+"ffn_gate_inp_shexp.weight", ly.sgate, H)
				add(p+"ffn_gate_shexp.weight", ly.sg, sff, H)
				add(p+"ffn_up_shexp.weight", ly.su, sff, H)
				add(p+"ffn_down_shexp.weight", ly.sd, H, sff)
			}
		} else {
			add(p+"ffn_gate.weight", ly.wg, ff, H)
			add(p+"ffn_up.weight", ly.wu, ff, H)
			add(p+"ffn_down.weight", ly.wd, H, ff)
		}
	}
	k := func(key string) string { return arch + "." + key }
	kvs := []formats.KV{
		{Key: "general.architecture", Value: arch},
		{Key: k("context_length"), Value: uint32(4096)},
		{Key: k("embedding_length"), Value: uint32(s.H)}, {Key: k("block_count"), Value: uint32(s.L)},
		{Key: k("feed_forward_length"), Value: uint32(s.FF)}, {Key: k("attention.head_count"), Value: uint32(s.heads)},
		{Key: k("attention.head_count_kv"), Value: uint32(s.kvh)}, {Key: k("attention.key_length"), Value: uint32(s.hd)},
		{Key: k("attention.value_length"), Value: uint32(s.hd)}, {Key: k("rope.dimension_count"), Value: uint32(s.ropeDim)},
		{Key: k("rope.freq_base"), Value: float32(s.ropeBase)},
		{Key: k("attention.layer_norm_rms_epsilon"), Value: float32(s.eps)},
	}
	if s.window > 0 {
		kvs = append(kvs, formats.KV{Key: k("attention.sliding_window"), Value: uint32(s.window)})
	}
	if s.ropeLinear > 0 {
		kvs = append(kvs, formats.KV{Key: k("rope.scaling.type"), Value: "linear"}, formats.KV{Key: k("rope.scaling.factor"), Value: float32(s.ropeLinear)})
	}
	if s.experts > 0 {
		kvs = append(kvs, formats.KV{Key: k("expert_count"), Value: uint32(s.experts)}, formats.KV{Key: k("expert_used_count"), Value: uint32(s.used)},
			formats.KV{Key: k("expert_feed_forward_length"), Value: uint32(s.FF)})
		if s.sharedFF > 0 {
			kvs = append(kvs, formats.KV{Key: k("expert_shared_feed_forward_length"), Value: uint32(s.sharedFF)})
		}
	}
	for _, kv := range extra {
		kv.Key = strings.ReplaceAll(kv.Key, "ARCH", arch)
		kvs = append(kvs, kv)
	}
	var buf bytes.Buffer
	if err := gguf.Write(&buf, kvs, ts, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), arch+".gguf")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeHF stores the weights as a Hugging Face checkpoint (model.safetensors and
// config.json) and returns the directory.
func writeHF(t *testing.T, s *refSpec, w *refWeights, config map[string]any, fused bool) string {
	t.Helper()
	var ts []safetensors.WriteTensor
	add := func(name string, v []float64, shape ...int64) {
		ts = append(ts, safetensors.WriteTensor{Name: name, DType: formats.F32, Shape: shape, Data: f32bytes(v)})
	}
	H, D := int64(s.H), int64(s.hd)
	qd, kvd, ff := int64(s.heads*s.hd), int64(s.kvh*s.hd), int64(s.FF)
	add("model.embed_tokens.weight", w.emb, int64(s.V), H)
	add("model.norm.weight", w.norm, H)
	if !s.tied {
		add("lm_head.weight", w.head, int64(s.V), H)
	}
	for l, ly := range w.layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", ly.an, H)
		if fused {
			add(p+"self_attn.qkv_proj.weight", append(append(append([]float64(nil), ly.wq...), ly.wk...), ly.wv...), qd+2*kvd, H)
			add(p+"mlp.gate_up_proj.weight", append(append([]float64(nil), ly.wg...), ly.wu...), 2*ff, H)
		} else {
			add(p+"self_attn.q_proj.weight", ly.wq, qd, H)
			add(p+"self_attn.k_proj.weight", ly.wk, kvd, H)
			add(p+"self_attn.v_proj.weight", ly.wv, kvd, H)
			add(p+"mlp.gate_proj.weight", ly.wg, ff, H)
			add(p+"mlp.up_proj.weight", ly.wu, ff, H)
		}
		if s.bias {
			add(p+"self_attn.q_proj.bias", ly.bq, qd)
			add(p+"self_attn.k_proj.bias", ly.bk, kvd)
			add(p+"self_attn.v_proj.bias", ly.bv, kvd)
		}
		if s.qkNorm {
			add(p+"self_attn.q_norm.weight", ly.qn, D)
			add(p+"self_attn.k_norm.weight", ly.kn, D)
		}
		add(p+"self_attn.o_proj.weight", ly.wo, H, qd)
		if s.postNorms {
			add(p+"post_attention_layernorm.weight", ly.pan, H)
			add(p+"pre_feedforward_layernorm.weight", ly.fn, H)
			add(p+"post_feedforward_layernorm.weight", ly.pfn, H)
		} else {
			add(p+"post_attention_layernorm.weight", ly.fn, H)
		}
		add(p+"mlp.down_proj.weight", ly.wd, H, ff)
	}
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"hidden_size": s.H, "intermediate_size": s.FF, "num_hidden_layers": s.L,
		"num_attention_heads": s.heads, "num_key_value_heads": s.kvh, "head_dim": s.hd, "vocab_size": s.V,
		"rms_norm_eps": s.eps, "rope_theta": s.ropeBase, "max_position_embeddings": 4096, "tie_word_embeddings": s.tied}
	for k, v := range config {
		cfg[k] = v
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// compareRef runs the model on ids and returns the largest difference from the reference.
func compareRef(t *testing.T, m *Model, want [][]float64, ids []int) float64 {
	t.Helper()
	got, err := m.Forward(m.NewState(len(ids)), ids, true)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for i := range want {
		for j := range want[i] {
			worst = math.Max(worst, math.Abs(float64(got[i][j])-want[i][j]))
		}
	}
	// and one token at a time through the cache, which must agree with the batch
	s := m.NewState(len(ids))
	for i, id := range ids {
		one, err := m.Forward(s, []int{id}, false)
		if err != nil {
			t.Fatal(err)
		}
		for j := range one[0] {
			worst = math.Max(worst, math.Abs(float64(one[0][j])-want[i][j]))
		}
	}
	return worst
}

func openModel(t *testing.T, path string) *Model {
	t.Helper()
	fm, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fm.Close() }) // the weights are read in place from the file
	if !Supported(fm) {
		t.Fatalf("%s: Supported is false", path)
	}
	m, err := Load(fm)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// mustDiffer checks that a mistake (mutate, undone by restore) moves the logits well
// beyond the tolerance: the reference can tell the feature apart.
func mustDiffer(t *testing.T, name string, m *Model, want [][]float64, mutate, restore func()) {
	t.Helper()
	mutate()
	d := compareRef(t, m, want, refIDs)
	restore()
	if d < 1e-2 {
		t.Errorf("%s: the mistake lands only %.2g from the reference", name, d)
	}
}

var refIDs = []int{1, 17, 42, 8, 8, 29, 3, 55, 11, 60, 2, 33}

func checkRef(t *testing.T, name string, m *Model, want [][]float64, tol float64) {
	t.Helper()
	d := compareRef(t, m, want, refIDs)
	t.Logf("%-28s max |runtime - float64 reference| = %.2e", name, d)
	if d > tol {
		t.Errorf("%s: max difference %.3g > %.0e", name, d, tol)
	}
}

// Qwen3: per-head RMSNorm of q and k before RoPE, no biases, head_dim·heads ≠ hidden,
// NEOX rotation, separate output head.
func TestQwen3Reference(t *testing.T) {
	s := &refSpec{H: 48, L: 3, FF: 80, heads: 4, kvh: 2, hd: 16, V: 70, ropeDim: 16, ropeBase: 1e6, eps: 1e-6, qkNorm: true}
	s.hd, s.ropeDim = 20, 20 // 4 × 20 = 80 ≠ 48
	w := genRef(s, 11)
	want := refForward(s, w, refIDs)
	m := openModel(t, writeGGUF(t, s, w, "qwen3"))
	checkRef(t, "qwen3 GGUF", m, want, 1e-4)
	qn := m.layers[0].qNorm
	mustDiffer(t, "qwen3 without q norm", m, want, func() { m.layers[0].qNorm = nil }, func() { m.layers[0].qNorm = qn })
	checkRef(t, "qwen3 safetensors", openModel(t, writeHF(t, s, w, map[string]any{"model_type": "qwen3", "hidden_act": "silu"}, false)), want, 1e-4)
}

// Qwen3-MoE: the same attention, a softmax router over 6 experts, top-2 renormalized.
func TestQwen3MoEReference(t *testing.T) {
	s := &refSpec{H: 48, L: 2, FF: 32, heads: 4, kvh: 2, hd: 20, V: 70, ropeDim: 20, ropeBase: 1e6, eps: 1e-6, qkNorm: true,
		experts: 6, used: 2, normTopK: true}
	w := genRef(s, 12)
	want := refForward(s, w, refIDs)
	checkRef(t, "qwen3moe GGUF", openModel(t, writeGGUF(t, s, w, "qwen3moe")), want, 1e-4)
}

// Qwen2-MoE as a generated file too: top-4 of 6 without renormalization, a shared expert
// of another width behind its sigmoid gate, q/k/v biases.
func TestQwen2MoEReference(t *testing.T) {
	s := &refSpec{H: 32, L: 2, FF: 24, heads: 4, kvh: 4, hd: 8, V: 70, ropeDim: 8, ropeBase: 1e6, eps: 1e-6, bias: true,
		experts: 6, used: 4, sharedFF: 40}
	w := genRef(s, 13)
	want := refForward(s, w, refIDs)
	checkRef(t, "qwen2moe GGUF", openModel(t, writeGGUF(t, s, w, "qwen2moe")), want, 1e-4)
}

// Gemma 3: (1 + w) norms everywhere (llama.cpp's files store 1 + w), q/k norms, sandwich
// norms, GeGLU, embeddings × sqrt(hidden), query scale 1/sqrt(head_dim), sliding window on
// all layers but every sixth, whose RoPE base is 10000 while the global layers use the
// model's base and its linear scaling; head_dim·heads ≠ hidden; tied output.
func TestGemma3Reference(t *testing.T) {
	s := &refSpec{H: 40, L: 7, FF: 64, heads: 4, kvh: 2, hd: 24, V: 70, ropeDim: 24, ropeBase: 1e6, localBase: 10000,
		ropeLinear: 8, eps: 1e-6, gemma: true, qkNorm: true, postNorms: true, window: 4, tied: true,
		sliding: func(l int) bool { return (l+1)%6 != 0 }}
	w := genRef(s, 21)
	want := refForward(s, w, refIDs)
	path := writeGGUF(t, s, w, "gemma3")
	m := openModel(t, path)
	if m.Config.SlidingWindow != 4 || m.Config.SlidingLayers[5] || !m.Config.SlidingLayers[6] || m.layers[5].rope != 0 || m.layers[4].rope != 1 {
		t.Fatalf("gemma3 pattern: %+v", m.Config)
	}
	m.exactGELU = true
	checkRef(t, "gemma3 GGUF (exact GELU)", m, want, 1e-4)
	m.exactGELU = false // llama.cpp's float16 GELU table: within its rounding of the exact pass
	checkRef(t, "gemma3 GGUF (GELU table)", m, want, 2e-2)
	m.exactGELU = true
	mustDiffer(t, "gemma3 local RoPE base everywhere", m, want, func() { m.layers[5].rope = 1 }, func() { m.layers[5].rope = 0 })
	mustDiffer(t, "gemma3 global RoPE base everywhere", m, want, func() { m.layers[0].rope = 0 }, func() { m.layers[0].rope = 1 })
	mustDiffer(t, "gemma3 no window", m, want, func() { m.layers[0].window = 0 }, func() { m.layers[0].window = 4 })
	mustDiffer(t, "gemma3 window on the global layer", m, want, func() { m.layers[5].window = 4 }, func() { m.layers[5].window = 0 })
	kn := m.layers[1].kNorm
	mustDiffer(t, "gemma3 without k norm", m, want, func() { m.layers[1].kNorm = make([]float32, len(kn)) }, func() { m.layers[1].kNorm = kn })
	mustDiffer(t, "gemma3 query scale", m, want, func() { m.qScale *= 1.5 }, func() { m.qScale /= 1.5 })
	m.exactGELU = false
	hf := writeHF(t, s, w, map[string]any{"model_type": "gemma3_text", "hidden_activation": "gelu_pytorch_tanh",
		"query_pre_attn_scalar": s.hd, "sliding_window": s.window, "sliding_window_pattern": 6, "rope_local_base_freq": s.localBase,
		"rope_scaling": map[string]any{"rope_type": "linear", "factor": s.ropeLinear}, "final_logit_softcapping": nil,
		"attn_logit_softcapping": nil}, false)
	checkRef(t, "gemma3_text safetensors", openModel(t, hf), want, 1e-4)
}

// Gemma 2 from safetensors (the GGUF side is the corpus's): soft-caps, sliding window on
// even layers, query_pre_attn_scalar unlike head_dim.
func TestGemma2HFReference(t *testing.T) {
	s := &refSpec{H: 40, L: 4, FF: 64, heads: 4, kvh: 2, hd: 16, V: 70, ropeDim: 16, ropeBase: 10000, eps: 1e-6, gemma: true,
		postNorms: true, window: 3, tied: true, attnCap: 1.5, finalCap: 6, qScale: 1 / math.Sqrt(10),
		sliding: func(l int) bool { return l%2 == 0 }}
	w := genRef(s, 22)
	want := refForward(s, w, refIDs)
	hf := writeHF(t, s, w, map[string]any{"model_type": "gemma2", "hidden_activation": "gelu_pytorch_tanh",
		"query_pre_attn_scalar": 10, "sliding_window": s.window, "attn_logit_softcapping": s.attnCap,
		"final_logit_softcapping": s.finalCap}, false)
	checkRef(t, "gemma2 safetensors", openModel(t, hf), want, 1e-4)
}

// Phi-3 from safetensors: fused qkv_proj and gate_up_proj, partial rotary (0.75), sliding
// window on every layer.
func TestPhi3HFReference(t *testing.T) {
	s := &refSpec{H: 48, L: 2, FF: 64, heads: 6, kvh: 2, hd: 8, V: 70, ropeDim: 6, ropeBase: 10000, eps: 1e-5, window: 5}
	w := genRef(s, 23)
	want := refForward(s, w, refIDs)
	hf := writeHF(t, s, w, map[string]any{"model_type": "phi3", "hidden_act": "silu", "partial_rotary_factor": 0.75,
		"sliding_window": s.window}, true)
	checkRef(t, "phi3 safetensors", openModel(t, hf), want, 1e-4)
}

// Mistral and Qwen2 from safetensors: a sliding window (Mistral 7B v0.1 style), and q/k/v
// biases with a tied head.
func TestMistralQwen2HFReference(t *testing.T) {
	s := &refSpec{H: 32, L: 2, FF: 48, heads: 4, kvh: 2, hd: 8, V: 70, ropeDim: 8, ropeBase: 10000, eps: 1e-5, window: 4}
	w := genRef(s, 24)
	checkRef(t, "mistral safetensors", openModel(t, writeHF(t, s, w, map[string]any{"model_type": "mistral", "sliding_window": s.window}, false)),
		refForward(s, w, refIDs), 1e-4)
	q := &refSpec{H: 32, L: 2, FF: 48, heads: 4, kvh: 2, hd: 8, V: 70, ropeDim: 8, ropeBase: 1e6, eps: 1e-6, bias: true, tied: true}
	wq := genRef(q, 25)
	checkRef(t, "qwen2 safetensors", openModel(t, writeHF(t, q, wq, map[string]any{"model_type": "qwen2", "sliding_window": 4,
		"use_sliding_window": false}, false)), refForward(q, wq, refIDs), 1e-4)
}

// Llama 3's RoPE frequency scaling: from rope_freqs in a GGUF (the factors llama.cpp's
// converter computes) and from config.json's rope_scaling in safetensors, against the
// frequencies transformers computes. The original context is small so that the three bands
// (unscaled, smoothed, scaled) all occur.
func TestLlama3RopeScaling(t *testing.T) {
	s := &refSpec{H: 32, L: 2, FF: 48, heads: 4, kvh: 2, hd: 16, V: 70, ropeDim: 16, ropeBase: 500000, eps: 1e-5,
		llama3: []float64{8, 1, 4, 64}}
	w := genRef(s, 26)
	want := refForward(s, w, refIDs)
	checkRef(t, "llama3 GGUF (rope_freqs)", openModel(t, writeGGUF(t, s, w, "llama")), want, 1e-4)
	hf := writeHF(t, s, w, map[string]any{"model_type": "llama", "rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0,
		"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}, false)
	checkRef(t, "llama3 safetensors", openModel(t, hf), want, 1e-4)
	// without the scaling the logits move: the test sees it
	s2 := *s
	s2.llama3 = nil
	if d := compareRef(t, openModel(t, writeGGUF(t, &s2, w, "llama")), want, refIDs); d < 1e-3 {
		t.Errorf("unscaled frequencies land %.2g from the scaled reference: the test cannot tell them apart", d)
	}
}

// An architecture the runtime does not implement fails with an error naming it, and
// Supported says no.
func TestUnsupportedArchitecture(t *testing.T) {
	s := &refSpec{H: 32, L: 1, FF: 48, heads: 4, kvh: 2, hd: 8, V: 70, ropeDim: 8, ropeBase: 10000, eps: 1e-5}
	w := genRef(s, 27)
	path := writeGGUF(t, s, w, "mamba")
	fm, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	if Supported(fm) {
		t.Error("Supported(mamba) = true")
	}
	if _, err := Load(fm); err == nil || !strings.Contains(err.Error(), `"mamba"`) {
		t.Errorf("Load(mamba) = %v, want an error naming the architecture", err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), `"mamba"`) {
		t.Errorf("Open(mamba) = %v, want an error naming the architecture", err)
	}
	hf := writeHF(t, s, w, map[string]any{"model_type": "falcon"}, false)
	fm2, err := formats.Open(hf)
	if err != nil {
		t.Fatal(err)
	}
	defer fm2.Close()
	if Supported(fm2) {
		t.Error("Supported(falcon safetensors) = true")
	}
	if _, err := Load(fm2); err == nil || !strings.Contains(err.Error(), `"falcon"`) {
		t.Errorf("Load(falcon) = %v, want an error naming the model type", err)
	}
	gg, hfa := Architectures()
	t.Logf("GGUF architectures: %v; Hugging Face model types: %v", gg, hfa)
}

// Gemma (the first): GeGLU, (1 + w) norms, embeddings × sqrt(hidden), q scaled by
// 1/sqrt(head_dim) before attention, tied output; no post-norms, caps or window.
func TestGemmaReference(t *testing.T) {
	s := &refSpec{H: 32, L: 2, FF: 64, heads: 4, kvh: 1, hd: 8, V: 70, ropeDim: 8, ropeBase: 10000, eps: 1e-6, gemma: true, tied: true}
	w := genRef(s, 28)
	want := refForward(s, w, refIDs)
	m := openModel(t, writeGGUF(t, s, w, "gemma"))
	m.exactGELU = true
	checkRef(t, "gemma GGUF (exact GELU)", m, want, 1e-4)
	checkRef(t, "gemma safetensors", openModel(t, writeHF(t, s, w, map[string]any{"model_type": "gemma", "hidden_act": "gelu"}, false)), want, 1e-4)
}
