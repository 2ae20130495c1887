package llm

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// hfSpec is what a Hugging Face model_type implies beyond config.json.
type hfSpec struct {
	gemma       bool // (1 + w) RMSNorm weights, embeddings × sqrt(hidden), GELU (tanh), q pre-scaled
	postNorms   bool // post_attention_layernorm is the attention's post-norm; pre/post_feedforward_layernorm
	fusedQKV    bool // self_attn.qkv_proj and mlp.gate_up_proj (phi3)
	swaDefault  string
	softcaps    bool
	gemma3      bool
	defaultTied bool
}

var hfArchs = map[string]hfSpec{
	"llama":       {},
	"mistral":     {},
	"qwen2":       {},
	"qwen3":       {},
	"phi3":        {fusedQKV: true},
	"gemma":       {gemma: true, defaultTied: true},
	"gemma2":      {gemma: true, postNorms: true, softcaps: true, swaDefault: "even", defaultTied: true},
	"gemma3_text": {gemma: true, postNorms: true, gemma3: true, defaultTied: true},
	"gemma3":      {gemma: true, postNorms: true, gemma3: true, defaultTied: true},
}

func hfArchList() string {
	_, hf := Architectures()
	return strings.Join(hf, ", ")
}

// maxConfig is the largest config.json read (they are a few KB).
const maxConfig = 1 << 20

// readConfigJSON reads config.json as transformers reads it: through formats.ReadCompanion
// (a FIFO or a link out of the directory is refused, not waited on) and parsed as Python's
// json module does, so that a NaN in a field kensa does not use does not stop loading.
func readConfigJSON(dir string) (map[string]any, error) {
	b, err := formats.ReadCompanion(dir, "config.json", maxConfig)
	if err != nil {
		return nil, fmt.Errorf("llm: a safetensors model needs its config.json: %w", err)
	}
	v, err := formats.DecodePyJSON(b)
	if err != nil {
		return nil, fmt.Errorf("llm: config.json: %w", formats.WithFile(err, filepath.Join(dir, "config.json")))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("llm: config.json: the top level is a %s, not an object", jsonType(v))
	}
	return obj, nil
}

// hfModelType returns config.json's model_type ("" when unreadable).
func hfModelType(dir string) string {
	obj, err := readConfigJSON(dir)
	if err != nil {
		return ""
	}
	mt, _ := obj["model_type"].(string)
	return mt
}

// hfPrefix returns the prefix of the decoder's tensor names (model. for text models,
// language_model.model. or model.language_model. in multimodal Gemma 3 checkpoints) and
// the name of the output head, or ok false when the model has no token embedding.
func hfPrefix(fm *formats.Model) (prefix, head string, ok bool) {
	for _, p := range [][2]string{{"model.", "lm_head.weight"}, {"language_model.model.", "language_model.lm_head.weight"}, {"model.language_model.", "lm_head.weight"}} {
		if fm.Tensor(p[0]+"embed_tokens.weight") != nil {
			return p[0], p[1], true
		}
	}
	return "", "", false
}

// hfExtra is what loadHF needs besides Config.
type hfExtra struct {
	spec       hfSpec
	tied       bool
	factors    []float32 // llama 3 frequency factors
	attnFactor float32
	origCtx    int
}

// hfConfig reads the hyperparameters of a Hugging Face model from its config.json. A
// hyperparameter that is NaN or infinite is an error naming it.
func hfConfig(dir string) (Config, error) {
	c, _, err := hfParse(dir)
	return c, err
}

func hfParse(dir string) (Config, hfExtra, error) {
	var ex hfExtra
	obj, err := readConfigJSON(dir)
	if err != nil {
		return Config{}, ex, err
	}
	top := configFields{m: obj}
	modelType := top.str("model_type")
	if top.err != nil {
		return Config{}, ex, top.err
	}
	spec, ok := hfArchs[modelType]
	if !ok {
		return Config{}, ex, fmt.Errorf("llm: model_type %q is not supported (kensa runs %s from safetensors)", modelType, hfArchList())
	}
	ex.spec = spec
	if modelType == "gemma3" { // the multimodal checkpoint: the decoder's settings are in text_config
		tc, ok := obj["text_config"].(map[string]any)
		if !ok {
			return Config{}, ex, fmt.Errorf("llm: config.json: gemma3 without a text_config object")
		}
		obj = tc
	}
	j := configFields{m: obj}
	present := func(key string) bool { _, ok := obj[key]; return ok }
	act := j.str("hidden_act")
	if spec.gemma {
		if a := j.str("hidden_activation"); a != "" {
			act = a
		}
		switch act {
		case "", "gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_fast":
		default:
			if j.err == nil {
				return Config{}, ex, fmt.Errorf("llm: hidden_activation %q is not supported (gelu_pytorch_tanh)", act)
			}
		}
	} else if act != "" && act != "silu" && j.err == nil {
		return Config{}, ex, fmt.Errorf("llm: hidden_act %q is not supported (silu)", act)
	}
	c := Config{Arch: modelType, Hidden: j.int("hidden_size"), FF: j.int("intermediate_size"), Layers: j.int("num_hidden_layers"),
		Heads: j.int("num_attention_heads"), KVHeads: j.int("num_key_value_heads"), Vocab: j.int("vocab_size"),
		Eps: float32(j.float("rms_norm_eps")), RopeBase: j.float("rope_theta"), Context: j.int("max_position_embeddings"),
		HeadDim: j.int("head_dim"), GELU: spec.gemma}
	partial := j.float("partial_rotary_factor")
	window := j.int("sliding_window")
	useSWA := obj["use_sliding_window"]
	if j.err != nil {
		return Config{}, ex, j.err
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
		if spec.gemma && modelType != "gemma" {
			c.HeadDim = 256 // Gemma2Config / Gemma3TextConfig default
		}
	}
	c.RopeDim = c.HeadDim
	if partial > 0 && partial < 1 {
		c.RopeDim = int(float64(c.HeadDim) * partial)
		c.RopeDim -= c.RopeDim % 2
	}
	if c.RopeBase == 0 {
		c.RopeBase = 10000
		if spec.gemma3 {
			c.RopeBase = 1e6
		}
	}
	if c.Eps == 0 {
		c.Eps = 1e-6
	}

	// tied output: tie_word_embeddings (transformers' default is true, most llama-family
	// configs set it false; without it and without lm_head, the embedding serves)
	switch v := obj["tie_word_embeddings"].(type) {
	case bool:
		ex.tied = v
	case nil:
		ex.tied = spec.defaultTied
	default:
		return Config{}, ex, fmt.Errorf("llm: config.json: tie_word_embeddings is a %s, not a boolean", jsonType(v))
	}

	// RoPE scaling
	ex.attnFactor, ex.origCtx = 1, c.Context
	if err := hfRopeScaling(&c, &ex, obj["rope_scaling"]); err != nil {
		return Config{}, ex, err
	}

	// sliding windows: Mistral and Phi-3 on every layer when set, Qwen only with
	// use_sliding_window (not supported), Gemma 2 on even layers, Gemma 3 on all but each
	// sixth; layer_types, when given, names each layer's kind
	switch {
	case modelType == "qwen2" || modelType == "qwen3":
		if b, _ := useSWA.(bool); b {
			return Config{}, ex, fmt.Errorf("llm: use_sliding_window is not supported for %s", modelType)
		}
		window = 0
	case spec.swaDefault == "even" && !present("sliding_window"):
		window = 4096
	case spec.gemma3 && !present("sliding_window"):
		window = 4096
	}
	if window > 0 {
		c.SlidingWindow = window
		switch {
		case obj["layer_types"] != nil:
			lt, ok := obj["layer_types"].([]any)
			if !ok || len(lt) != c.Layers {
				return Config{}, ex, fmt.Errorf("llm: config.json: layer_types is not a list of %d layer kinds", c.Layers)
			}
			c.SlidingLayers = make([]bool, c.Layers)
			for i, v := range lt {
				switch v {
				case "sliding_attention":
					c.SlidingLayers[i] = true
				case "full_attention":
				default:
					return Config{}, ex, fmt.Errorf("llm: config.json: layer_types[%d] is %v", i, v)
				}
			}
		case spec.swaDefault == "even":
			c.SlidingLayers = make([]bool, max(c.Layers, 0))
			for i := range c.SlidingLayers {
				c.SlidingLayers[i] = i%2 == 0
			}
		case spec.gemma3:
			pattern := 6
			if present("sliding_window_pattern") {
				pattern = j.int("sliding_window_pattern")
			}
			if pattern <= 0 {
				return Config{}, ex, fmt.Errorf("llm: config.json: sliding_window_pattern %d", pattern)
			}
			c.SlidingLayers = make([]bool, max(c.Layers, 0))
			for i := range c.SlidingLayers {
				c.SlidingLayers[i] = (i+1)%pattern != 0
			}
		}
	}
	if spec.gemma3 && c.SlidingWindow > 0 {
		c.LocalRopeBase = 10000
		if present("rope_local_base_freq") {
			c.LocalRopeBase = j.float("rope_local_base_freq")
		}
	}

	// Gemma: query scale, embedding scale, soft-caps (null disables; absent is the default)
	if spec.gemma {
		c.EmbedScale = float64(float32(math.Sqrt(float64(c.Hidden))))
		if present("query_pre_attn_scalar") {
			if s := j.float("query_pre_attn_scalar"); s > 0 {
				c.QueryScale = 1 / math.Sqrt(s)
			}
		} else if modelType != "gemma" {
			c.QueryScale = 1 / math.Sqrt(256)
		}
		if spec.softcaps {
			c.AttnSoftcap, c.FinalSoftcap = 50, 30
			if present("attn_logit_softcapping") {
				c.AttnSoftcap = j.float("attn_logit_softcapping")
			}
			if present("final_logit_softcapping") {
				c.FinalSoftcap = j.float("final_logit_softcapping")
			}
		} else if spec.gemma3 {
			c.AttnSoftcap = j.float("attn_logit_softcapping")
			c.FinalSoftcap = j.float("final_logit_softcapping")
		}
	}
	if j.err != nil {
		return Config{}, ex, j.err
	}
	return c, ex, nil
}

// hfRopeScaling reads config.json's rope_scaling: linear (the frequencies divided by the
// factor), llama3 (per-frequency factors as transformers' _compute_llama3_parameters) and
// yarn (ggml's formulation, which is transformers' with the default attention factor).
func hfRopeScaling(c *Config, ex *hfExtra, v any) error {
	if v == nil {
		return nil
	}
	rs, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("llm: config.json: rope_scaling %v is not supported (linear, llama3, yarn)", v)
	}
	j := configFields{m: rs}
	typ := j.str("rope_type")
	if typ == "" {
		typ = j.str("type")
	}
	factor := j.float("factor")
	if j.err != nil {
		return j.err
	}
	switch typ {
	case "default":
		return nil
	case "linear":
		if factor <= 0 {
			return fmt.Errorf("llm: config.json: rope_scaling factor %v", factor)
		}
		c.RopeScaling, c.RopeScale = "linear", 1/factor
	case "llama3":
		low, high := j.float("low_freq_factor"), j.float("high_freq_factor")
		orig := j.float("original_max_position_embeddings")
		if j.err != nil {
			return j.err
		}
		if factor <= 0 || low <= 0 || high <= low || orig <= 0 {
			return fmt.Errorf("llm: config.json: llama3 rope_scaling %v", rs)
		}
		lowWave, highWave := orig/low, orig/high
		half := c.RopeDim / 2
		ex.factors = make([]float32, half)
		for i := range ex.factors {
			freq := math.Pow(c.RopeBase, -2*float64(i)/float64(c.RopeDim))
			wave := 2 * math.Pi / freq
			switch {
			case wave < highWave:
				ex.factors[i] = 1
			case wave > lowWave:
				ex.factors[i] = float32(factor)
			default:
				smooth := (orig/wave - low) / (high - low)
				ex.factors[i] = float32(1 / ((1-smooth)/factor + smooth))
			}
		}
		c.RopeScaling = "llama3"
	case "yarn":
		for _, key := range []string{"attention_factor", "mscale", "mscale_all_dim"} {
			if _, ok := rs[key]; ok {
				return fmt.Errorf("llm: config.json: yarn rope_scaling with %s is not supported", key)
			}
		}
		if bf, ok := rs["beta_fast"]; ok && bf != 32.0 {
			return fmt.Errorf("llm: config.json: yarn beta_fast %v is not supported (32)", bf)
		}
		if bs, ok := rs["beta_slow"]; ok && bs != 1.0 {
			return fmt.Errorf("llm: config.json: yarn beta_slow %v is not supported (1)", bs)
		}
		if factor <= 0 {
			return fmt.Errorf("llm: config.json: rope_scaling factor %v", factor)
		}
		if o := j.int("original_max_position_embeddings"); o > 0 {
			ex.origCtx = o
		}
		c.RopeScaling, c.RopeScale = "yarn", 1/factor
	default:
		return fmt.Errorf("llm: config.json: rope_scaling type %q is not supported (linear, llama3, yarn)", typ)
	}
	return j.err
}

// loadHF builds a model from safetensors in Hugging Face's names.
func loadHF(fm *formats.Model, o Options, dir string, checkBudget func() error) (*Model, error) {
	c, ex, err := hfParse(dir)
	if err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if err := checkBudget(); err != nil {
		return nil, err
	}
	spec := ex.spec
	ld := &loader{fm: fm, float32: o.Float32}
	prefix, head, _ := hfPrefix(fm)
	m := &Model{Config: c, Workers: 1, exactGELU: true}
	H, D, V := c.Hidden, c.HeadDim, c.Vocab
	qd, kvd := c.Heads*D, c.KVHeads*D
	m.setScales(spec.gemma)
	norm := func(name string, n int) []float32 {
		w := ld.read(name, n)
		if spec.gemma {
			for i := range w {
				w[i] = 1 + w[i]
			}
		}
		return w
	}
	m.embed = ld.matrix(prefix+"embed_tokens.weight", V, H)
	m.norm = norm(prefix+"norm.weight", H)
	if ld.has(head) && !ex.tied {
		m.out = ld.linear(strings.TrimSuffix(head, ".weight"), V, H)
	} else {
		m.out = linear{w: m.embed}
	}
	m.ropes = append(m.ropes, newRopeSpec(c.RopeDim, float32(c.RopeBase), scaleOr1(c.RopeScale), ex.factors, c.RopeScaling == "yarn", ex.attnFactor, ex.origCtx))
	if c.LocalRopeBase > 0 {
		m.ropes = append(m.ropes, newRopeSpec(c.RopeDim, float32(c.LocalRopeBase), 1, nil, false, 1, ex.origCtx))
	}
	for l := 0; l < c.Layers && ld.err == nil; l++ {
		p := fmt.Sprintf("%slayers.%d.", prefix, l)
		var ly layer
		ly.attnNorm = norm(p+"input_layernorm.weight", H)
		if spec.fusedQKV {
			s := splitRows(ld.linear(p+"self_attn.qkv_proj", qd+2*kvd, H), qd, kvd, kvd)
			if ld.err == nil {
				ly.q, ly.k, ly.v = s[0], s[1], s[2]
			}
		} else {
			ly.q = ld.linear(p+"self_attn.q_proj", qd, H)
			ly.k = ld.linear(p+"self_attn.k_proj", kvd, H)
			ly.v = ld.linear(p+"self_attn.v_proj", kvd, H)
		}
		if ld.has(p + "self_attn.q_norm.weight") {
			ly.qNorm = norm(p+"self_attn.q_norm.weight", D)
			ly.kNorm = norm(p+"self_attn.k_norm.weight", D)
		} else if c.Arch == "qwen3" || spec.gemma3 {
			ld.fail("llm: tensor %q is missing", p+"self_attn.q_norm.weight")
		}
		ly.o = ld.linear(p+"self_attn.o_proj", H, qd)
		if spec.postNorms {
			ly.postAttnNorm = norm(p+"post_attention_layernorm.weight", H)
			ly.ffnNorm = norm(p+"pre_feedforward_layernorm.weight", H)
			ly.postFFNNorm = norm(p+"post_feedforward_layernorm.weight", H)
		} else {
			ly.ffnNorm = norm(p+"post_attention_layernorm.weight", H)
		}
		if spec.fusedQKV {
			s := splitRows(ld.linear(p+"mlp.gate_up_proj", 2*c.FF, H), c.FF, c.FF)
			if ld.err == nil {
				ly.gate, ly.up = s[0], s[1]
			}
		} else {
			ly.gate = ld.linear(p+"mlp.gate_proj", c.FF, H)
			ly.up = ld.linear(p+"mlp.up_proj", c.FF, H)
		}
		ly.down = ld.linear(p+"mlp.down_proj", H, c.FF)
		m.setWindow(&ly, l)
		m.layers = append(m.layers, ly)
	}
	if ld.err != nil {
		return nil, ld.err
	}
	return m, nil
}

// configFields reads typed fields of a decoded config.json; a field that is absent or null
// reads as the zero value (the default), one of the wrong type sets err (the first error).
type configFields struct {
	m   map[string]any
	err error
}

func (j *configFields) fail(key, format string, args ...any) {
	if j.err == nil {
		j.err = fmt.Errorf("llm: config.json: %s %s", key, fmt.Sprintf(format, args...))
	}
}

func (j *configFields) str(key string) string {
	switch v := j.m[key].(type) {
	case nil:
	case string:
		return v
	default:
		j.fail(key, "is a %s, not a string", jsonType(v))
	}
	return ""
}

// number returns a hyperparameter that must be a finite number.
func (j *configFields) number(key string) (float64, bool) {
	switch v := j.m[key].(type) {
	case nil:
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			j.fail(key, "is %v: the runtime needs it as a finite number", v)
			return 0, false
		}
		return v, true
	default:
		j.fail(key, "is a %s, not a number", jsonType(v))
	}
	return 0, false
}

func (j *configFields) float(key string) float64 {
	f, _ := j.number(key)
	return f
}

func (j *configFields) int(key string) int {
	f, ok := j.number(key)
	if !ok {
		return 0
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		j.fail(key, "is %v, not an integer the runtime can use", f)
		return 0
	}
	return int(f)
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
