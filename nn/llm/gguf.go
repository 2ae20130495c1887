package llm

import (
	"fmt"
	"math"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// archSpec is what llama.cpp decides by architecture rather than from the file's metadata
// or tensors (src/llama-model.cpp and the graph builders).
type archSpec struct {
	layerNorm   bool // LLM_NORM (LayerNorm with bias) rather than LLM_NORM_RMS
	gelu        bool // LLM_FFN_GELU rather than LLM_FFN_SILU
	noGate      bool // LLM_FFN_SEQ without a gate tensor
	fusedGateUp bool // ffn_up holds [gate; up] (LLM_FFN_SWIGLU, phi3)
	rope        int  // ropeNorm, ropeNeox or ropeNone (llama_model_rope_type)
	posEmbd     bool // position_embd added to the token embeddings (gpt2)
	preScaleQ   bool // q is scaled before attention and the softmax scale is 1
	embedScale  bool // token embeddings × sqrt(n_embd)
	postNorms   bool // post_attention_norm and post_ffw_norm (gemma2, gemma3)
	qkNorm      bool // attn_q_norm and attn_k_norm per head (qwen3, gemma3)
	softcaps    bool // attention and final soft-capping from the metadata (gemma2)
	swa         string
	bigLayers   int  // gemma: this many layers is the 27B size, whose q scale is 1/sqrt(n_embd/n_head)
	moeNorm     bool // renormalize the routing weights over the chosen experts
	sharedGate  bool // the shared expert is scaled by sigmoid(ffn_gate_inp_shexp·x)
	localBase   float32
}

const (
	ropeNorm = iota
	ropeNeox
	ropeNone
)

var ggufArchs = map[string]archSpec{
	"llama":      {rope: ropeNorm, moeNorm: true},
	"mistral":    {rope: ropeNorm, moeNorm: true},
	"qwen2":      {rope: ropeNeox},
	"qwen2moe":   {rope: ropeNeox, moeNorm: false, sharedGate: true},
	"qwen3":      {rope: ropeNeox, qkNorm: true},
	"qwen3moe":   {rope: ropeNeox, qkNorm: true, moeNorm: true},
	"phi3":       {rope: ropeNeox, preScaleQ: true, fusedGateUp: true, swa: "all", moeNorm: true},
	"gemma":      {rope: ropeNeox, gelu: true, embedScale: true, preScaleQ: true},
	"gemma2":     {rope: ropeNeox, gelu: true, embedScale: true, preScaleQ: true, postNorms: true, softcaps: true, swa: "even", bigLayers: 46},
	"gemma3":     {rope: ropeNeox, gelu: true, embedScale: true, preScaleQ: true, postNorms: true, qkNorm: true, swa: "gemma3", bigLayers: 62, localBase: 10000},
	"starcoder2": {rope: ropeNeox, layerNorm: true, gelu: true, noGate: true},
	"gpt2":       {rope: ropeNone, layerNorm: true, gelu: true, noGate: true, posEmbd: true},
}

func ggufArchList() string {
	gg, _ := Architectures()
	return strings.Join(gg, ", ")
}

// ggufArch returns the file's architecture, or an error naming it when the runtime does
// not implement it.
func ggufArch(fm *formats.Model) (string, error) {
	v, ok := fm.Meta("general.architecture")
	arch, _ := v.(string)
	if !ok || arch == "" {
		return "", fmt.Errorf("llm: the GGUF file has no general.architecture (kensa runs %s)", ggufArchList())
	}
	if _, ok := ggufArchs[arch]; !ok {
		return "", fmt.Errorf("llm: architecture %q is not supported (kensa runs %s)", arch, ggufArchList())
	}
	return arch, nil
}

func metaInt(fm *formats.Model, key string) (int, bool) {
	v, ok := fm.Meta(key)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case uint32:
		return int(x), true
	case int32:
		return int(x), true
	case uint64:
		return int(min(x, math.MaxInt32)), true
	case int64:
		return int(max(min(x, math.MaxInt32), math.MinInt32)), true
	case uint16:
		return int(x), true
	case int16:
		return int(x), true
	case uint8:
		return int(x), true
	case int8:
		return int(x), true
	}
	return 0, false
}

func metaFloat(fm *formats.Model, key string) (float64, bool) {
	v, ok := fm.Meta(key)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func metaString(fm *formats.Model, key string) string {
	v, _ := fm.Meta(key)
	s, _ := v.(string)
	return s
}

// ggufHparams is what loadGGUF reads besides Config.
type ggufHparams struct {
	spec       archSpec
	attnFactor float32
	origCtx    int
}

// ggufConfig reads the hyperparameters as llama.cpp's load_hparams does.
func ggufConfig(fm *formats.Model) (Config, ggufHparams, error) {
	arch, err := ggufArch(fm)
	if err != nil {
		return Config{}, ggufHparams{}, err
	}
	spec := ggufArchs[arch]
	hp := ggufHparams{spec: spec, attnFactor: 1}
	k := func(s string) string { return arch + "." + s }
	c := Config{Arch: arch, RopeBase: 10000, Eps: 1e-5, Interleaved: spec.rope == ropeNorm, LayerNorm: spec.layerNorm,
		GELU: spec.gelu, NoGate: spec.noGate, PosEmbd: spec.posEmbd}
	c.Hidden, _ = metaInt(fm, k("embedding_length"))
	c.Layers, _ = metaInt(fm, k("block_count"))
	c.FF, _ = metaInt(fm, k("feed_forward_length"))
	c.Heads, _ = metaInt(fm, k("attention.head_count"))
	c.KVHeads, _ = metaInt(fm, k("attention.head_count_kv"))
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	c.Context, _ = metaInt(fm, k("context_length"))
	epsKey := "attention.layer_norm_rms_epsilon"
	if spec.layerNorm {
		epsKey = "attention.layer_norm_epsilon"
	}
	if e, ok := metaFloat(fm, k(epsKey)); ok {
		c.Eps = float32(e)
	}
	if b, ok := metaFloat(fm, k("rope.freq_base")); ok {
		c.RopeBase = b
	}
	if c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if kl, ok := metaInt(fm, k("attention.key_length")); ok {
		c.HeadDim = kl
	}
	if vl, ok := metaInt(fm, k("attention.value_length")); ok && vl != c.HeadDim {
		return Config{}, hp, fmt.Errorf("llm: key length %d and value length %d differ; the runtime needs them equal", c.HeadDim, vl)
	}
	c.RopeDim = c.HeadDim
	if rd, ok := metaInt(fm, k("rope.dimension_count")); ok {
		c.RopeDim = rd
	}
	if (arch == "llama" || arch == "mistral") && c.RopeDim != c.HeadDim {
		return Config{}, hp, fmt.Errorf("llm: invalid rope.dimension_count %d, expected %d (llama.cpp requires it for %s)", c.RopeDim, c.HeadDim, arch)
	}
	if spec.rope == ropeNone {
		c.RopeDim = 0
	}
	if t := fm.Tensor("token_embd.weight"); t != nil && len(t.Shape) == 2 {
		c.Vocab = int(min(t.Shape[0], math.MaxInt32))
	}

	// RoPE scaling: llama.cpp's rope.scaling.type (default linear) and factor (the
	// frequency scale is its inverse), YaRN's original context and attention factor.
	scaling := metaString(fm, k("rope.scaling.type"))
	factor, ok := metaFloat(fm, k("rope.scaling.factor"))
	if !ok {
		factor, _ = metaFloat(fm, k("rope.scale_linear"))
	}
	switch scaling {
	case "", "linear", "yarn":
		if factor != 0 {
			c.RopeScale = 1 / float64(float32(factor))
			c.RopeScaling = "linear"
		}
		if scaling == "yarn" {
			c.RopeScaling = "yarn"
		}
	case "none":
	default:
		return Config{}, hp, fmt.Errorf("llm: rope.scaling.type %q is not supported (linear, yarn, none)", scaling)
	}
	hp.origCtx = c.Context
	if n, ok := metaInt(fm, k("rope.scaling.original_context_length")); ok && n > 0 {
		hp.origCtx = n
	}
	if af, ok := metaFloat(fm, k("rope.scaling.attn_factor")); ok {
		hp.attnFactor = float32(af)
	}

	// mixtures of experts
	c.Experts, _ = metaInt(fm, k("expert_count"))
	c.ExpertsUsed, _ = metaInt(fm, k("expert_used_count"))
	if c.Experts > 0 {
		c.NormTopK = spec.moeNorm
		if n, ok := metaInt(fm, k("expert_feed_forward_length")); ok && n > 0 {
			c.FF = n
		}
		if n, ok := metaInt(fm, k("expert_shared_feed_forward_length")); ok {
			c.SharedFF = n
		}
		if v, ok := fm.Meta(k("expert_gating_func")); ok {
			if g, _ := metaInt(fm, k("expert_gating_func")); g != 1 { // LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX
				return Config{}, hp, fmt.Errorf("llm: expert_gating_func %v is not supported (softmax)", v)
			}
		}
	}

	// attention
	if spec.softcaps {
		if v, ok := metaFloat(fm, k("attn_logit_softcapping")); ok {
			c.AttnSoftcap = v
		}
		if v, ok := metaFloat(fm, k("final_logit_softcapping")); ok {
			c.FinalSoftcap = v
		}
	}
	if arch == "gemma3" {
		if v, ok := metaFloat(fm, k("final_logit_softcapping")); ok {
			c.FinalSoftcap = v
		}
	}
	if spec.embedScale {
		c.EmbedScale = float64(float32(math.Sqrt(float64(c.Hidden))))
	}
	if spec.bigLayers > 0 && c.Layers == spec.bigLayers && c.Heads > 0 {
		c.QueryScale = float64(1 / float32(math.Sqrt(float64(c.Hidden/c.Heads))))
	}
	swa, swaFound := metaInt(fm, k("attention.sliding_window"))
	switch spec.swa {
	case "all": // phi3, with llama.cpp's defaults for files written before the key existed
		if !swaFound {
			switch {
			case (c.Layers == 32 || c.Layers == 40) && c.Context == 4096:
				swa = 2047
			case c.Layers == 32 && c.KVHeads == 32 && c.Context == 131072:
				swa = 262144
			case c.Layers == 40 && c.Context == 131072:
				swa = 131072
			default:
				return Config{}, hp, fmt.Errorf("llm: %s.attention.sliding_window is missing (llama.cpp refuses such a phi3 file)", arch)
			}
		}
		c.SlidingWindow = swa
	case "even": // gemma2: layers 0, 2, 4, … (default window 4096)
		if !swaFound {
			swa = 4096
		}
		c.SlidingWindow = swa
		c.SlidingLayers = make([]bool, max(c.Layers, 0))
		for i := range c.SlidingLayers {
			c.SlidingLayers[i] = i%2 == 0
		}
	case "gemma3": // every layer but each sixth, with its own RoPE base
		if swaFound && swa > 0 {
			c.SlidingWindow = swa
			c.SlidingLayers = make([]bool, max(c.Layers, 0))
			for i := range c.SlidingLayers {
				c.SlidingLayers[i] = i%6 < 5
			}
			c.LocalRopeBase = float64(spec.localBase)
		}
	}
	if c.SlidingWindow < 0 {
		return Config{}, hp, fmt.Errorf("llm: sliding window %d", c.SlidingWindow)
	}
	return c, hp, nil
}

// loadGGUF builds a model from a GGUF file in llama.cpp's tensor names.
func loadGGUF(fm *formats.Model, o Options, checkBudget func() error) (*Model, error) {
	c, hp, err := ggufConfig(fm)
	if err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if err := checkBudget(); err != nil {
		return nil, err
	}
	spec := hp.spec
	ld := &loader{fm: fm, float32: o.Float32}
	m := &Model{Config: c, Workers: 1}
	H, D, V := c.Hidden, c.HeadDim, c.Vocab
	qd, kvd := c.Heads*D, c.KVHeads*D
	m.setScales(spec.preScaleQ)
	m.embed = ld.matrix("token_embd.weight", V, H)
	if spec.posEmbd {
		m.pos = ld.matrix("position_embd.weight", ld.dim("position_embd.weight", 0), H)
	}
	m.norm = ld.read("output_norm.weight", H)
	m.normB = ld.optional("output_norm.bias", H)
	if ld.has("output.weight") {
		m.out = ld.linear("output", V, H)
	} else {
		m.out = linear{w: m.embed} // tied
	}

	// RoPE: the model's frequencies (with llama 3's rope_freqs factors, or phi3's short
	// factors: llama.cpp takes the long ones only for a context beyond the original one),
	// and gemma3's local base for its sliding-window layers
	if c.RopeDim > 0 {
		factors := ld.optional("rope_freqs.weight", c.RopeDim/2)
		if factors != nil && c.RopeScaling == "" {
			m.Config.RopeScaling = "llama3"
		}
		if factors == nil {
			if factors = ld.optional("rope_factors_short.weight", c.RopeDim/2); factors != nil && c.RopeScaling == "" {
				m.Config.RopeScaling = "longrope"
			}
		}
		m.ropes = append(m.ropes, newRopeSpec(c.RopeDim, float32(c.RopeBase), scaleOr1(c.RopeScale), factors, c.RopeScaling == "yarn", hp.attnFactor, hp.origCtx))
		if c.LocalRopeBase > 0 {
			m.ropes = append(m.ropes, newRopeSpec(c.RopeDim, float32(c.LocalRopeBase), 1, nil, c.RopeScaling == "yarn", hp.attnFactor, hp.origCtx))
		}
	}

	for l := 0; l < c.Layers && ld.err == nil; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		var ly layer
		ly.attnNorm = ld.read(p+"attn_norm.weight", H)
		ly.attnNormB = ld.optional(p+"attn_norm.bias", H)
		if ld.has(p + "attn_qkv.weight") {
			s := splitRows(ld.linear(p+"attn_qkv", qd+2*kvd, H), qd, kvd, kvd)
			if ld.err == nil {
				ly.q, ly.k, ly.v = s[0], s[1], s[2]
			}
		} else {
			ly.q = ld.linear(p+"attn_q", qd, H)
			ly.k = ld.linear(p+"attn_k", kvd, H)
			ly.v = ld.linear(p+"attn_v", kvd, H)
		}
		if spec.qkNorm {
			ly.qNorm = ld.read(p+"attn_q_norm.weight", D)
			ly.kNorm = ld.read(p+"attn_k_norm.weight", D)
		}
		ly.o = ld.linear(p+"attn_output", H, qd)
		if spec.postNorms {
			ly.postAttnNorm = ld.read(p+"post_attention_norm.weight", H)
			ly.postFFNNorm = ld.read(p+"post_ffw_norm.weight", H)
		}
		ly.ffnNorm = ld.read(p+"ffn_norm.weight", H)
		ly.ffnNormB = ld.optional(p+"ffn_norm.bias", H)
		switch {
		case ld.has(p + "ffn_gate_inp.weight"):
			ly.moe = ld.ggufMoE(p, &m.Config, spec)
		case spec.fusedGateUp:
			s := splitRows(ld.linear(p+"ffn_up", 2*c.FF, H), c.FF, c.FF)
			if ld.err == nil {
				ly.gate, ly.up = s[0], s[1]
			}
			ly.down = ld.linear(p+"ffn_down", H, c.FF)
		default:
			if !spec.noGate {
				ly.gate = ld.linear(p+"ffn_gate", c.FF, H)
			}
			ly.up = ld.linear(p+"ffn_up", c.FF, H)
			ly.down = ld.linear(p+"ffn_down", H, c.FF)
		}
		m.setWindow(&ly, l)
		m.layers = append(m.layers, ly)
	}
	if ld.err != nil {
		return nil, ld.err
	}
	if c.Experts > 0 && m.Config.SharedFF == 0 {
		for i := range m.layers {
			if s := m.layers[i].moe; s != nil && s.shared != nil {
				m.Config.SharedFF = s.shared.up.out()
				break
			}
		}
	}
	return m, nil
}

// ggufMoE reads a mixture-of-experts MLP: the router ffn_gate_inp [experts × hidden], the
// experts stacked as ffn_{gate,up,down}_exps [expert, out, in], and the optional shared
// expert ffn_{gate,up,down}_shexp with its gate ffn_gate_inp_shexp [hidden].
func (ld *loader) ggufMoE(p string, c *Config, spec archSpec) *moe {
	H, E := c.Hidden, c.Experts
	if E == 0 {
		ld.fail("llm: %sffn_gate_inp.weight without %s.expert_count", p, c.Arch)
		return nil
	}
	ff := ld.dim(p+"ffn_up_exps.weight", 1)
	if ff != c.FF {
		ld.fail("llm: tensor %q has %d rows per expert, want %d", p+"ffn_up_exps.weight", ff, c.FF)
		return nil
	}
	mo := &moe{router: ld.linear(p+"ffn_gate_inp", E, H), used: c.ExpertsUsed, normTopK: c.NormTopK}
	gate := ld.stacked(p+"ffn_gate_exps.weight", E, ff, H)
	up := ld.stacked(p+"ffn_up_exps.weight", E, ff, H)
	down := ld.stacked(p+"ffn_down_exps.weight", E, H, ff)
	if ld.err != nil {
		return nil
	}
	for e := 0; e < E; e++ {
		mo.experts = append(mo.experts, expert{gate: linear{w: gate[e]}, up: linear{w: up[e]}, down: linear{w: down[e]}})
	}
	if ld.has(p + "ffn_up_shexp.weight") {
		sff := ld.dim(p+"ffn_up_shexp.weight", 0)
		if c.SharedFF > 0 && sff != c.SharedFF {
			ld.fail("llm: tensor %q has %d rows, want %d (expert_shared_feed_forward_length)", p+"ffn_up_shexp.weight", sff, c.SharedFF)
			return nil
		}
		mo.shared = &expert{gate: ld.linear(p+"ffn_gate_shexp", sff, H), up: ld.linear(p+"ffn_up_shexp", sff, H),
			down: ld.linear(p+"ffn_down_shexp", H, sff)}
		if spec.sharedGate || ld.has(p+"ffn_gate_inp_shexp.weight") {
			if g := ld.read(p+"ffn_gate_inp_shexp.weight", H); g != nil {
				mo.sharedGate = linear{w: newF32Matrix(g, 1, H)}
			}
		}
	}
	return mo
}

func scaleOr1(s float64) float32 {
	if s == 0 {
		return 1
	}
	return float32(s)
}

// setScales sets how attention scores are scaled: llama.cpp multiplies q by the scale
// before attention for gemma and phi3 (and runs the softmax unscaled), and scales q·k in
// the softmax for the others.
func (m *Model) setScales(preScaleQ bool) {
	c := &m.Config
	s := 1 / float32(math.Sqrt(float64(c.HeadDim)))
	if c.QueryScale != 0 {
		s = float32(c.QueryScale)
	}
	m.qScale, m.kqScale = 1, s
	if preScaleQ {
		m.qScale, m.kqScale = s, 1
	}
	if c.AttnSoftcap > 0 {
		m.attnCap = float32(c.AttnSoftcap)
	}
	if c.FinalSoftcap > 0 {
		m.finalCap = float32(c.FinalSoftcap)
	}
	m.embedScale = float32(c.EmbedScale)
}

// setWindow sets a layer's sliding window and RoPE table from the configuration.
func (m *Model) setWindow(ly *layer, l int) {
	c := &m.Config
	sliding := c.SlidingWindow > 0 && (c.SlidingLayers == nil || c.SlidingLayers[l])
	if sliding {
		ly.window = c.SlidingWindow
		if c.LocalRopeBase > 0 && len(m.ropes) > 1 {
			ly.rope = 1
		}
	}
}
