// Package llm runs llama-family decoder models (llama, mistral, qwen2) in pure Go on CPUs:
// grouped-query attention, rotary position embeddings in both layouts (Hugging Face's
// half rotation, and the interleaved pairs of GGUF files, whose Q/K rows llama.cpp's
// converter permuted), RMSNorm, SwiGLU, optional q/k/v biases, tied or separate output
// head, a KV cache, batched prompt evaluation and greedy decoding.
//
// Weights are read through package formats from GGUF (any dequantizable ggml type) or
// safetensors (any float dtype) and held as float32: a model takes 4 bytes per parameter.
package llm

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// Config holds a model's hyperparameters.
type Config struct {
	Arch        string
	Hidden      int
	Layers      int
	FF          int
	Heads       int
	KVHeads     int
	HeadDim     int
	RopeDim     int // rotated dimensions of each head (= HeadDim for llama)
	Vocab       int
	Context     int
	Eps         float32
	RopeBase    float64
	Interleaved bool // RoPE on pairs (2i, 2i+1) (GGUF) rather than (i, i+d/2) (Hugging Face)
}

type layer struct {
	attnNorm, ffnNorm []float32
	wq, wk, wv, wo    []float32 // [out, in]
	bq, bk, bv        []float32 // nil without biases
	wg, wu, wd        []float32
}

// Model is a loaded decoder.
type Model struct {
	Config  Config
	embed   []float32 // [vocab, hidden]
	layers  []layer
	norm    []float32
	out     []float32 // [vocab, hidden]; the embedding when tied
	Workers int       // parallel workers for matrix products (≤ 0: 1)
}

// naming maps roles to tensor names of one convention.
type naming struct {
	embed, norm, out                       string
	attnNorm, q, k, v, o, ffnNorm, g, u, d string // with %d for the layer
}

var ggufNames = naming{"token_embd.weight", "output_norm.weight", "output.weight",
	"blk.%d.attn_norm.weight", "blk.%d.attn_q", "blk.%d.attn_k", "blk.%d.attn_v", "blk.%d.attn_output.weight",
	"blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight"}

var hfNames = naming{"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
	"model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj", "model.layers.%d.self_attn.k_proj",
	"model.layers.%d.self_attn.v_proj", "model.layers.%d.self_attn.o_proj.weight",
	"model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
	"model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight"}

// Supported reports whether a model looks like a llama-family decoder kensa can run.
func Supported(fm *formats.Model) bool {
	return fm.Tensor(ggufNames.embed) != nil && fm.Tensor(fmt.Sprintf(ggufNames.q+".weight", 0)) != nil ||
		fm.Tensor(hfNames.embed) != nil && fm.Tensor(fmt.Sprintf(hfNames.q+".weight", 0)) != nil
}

// Load reads a decoder from an opened model. For safetensors, the hyperparameters come
// from config.json in the model's directory; for GGUF, from the metadata.
func Load(fm *formats.Model) (*Model, error) {
	var cfg Config
	var nm naming
	var err error
	switch {
	case fm.Format == "gguf":
		nm = ggufNames
		cfg, err = ggufConfig(fm)
		// llama.cpp's converter permutes the Q/K rows of llama and mistral for its
		// interleaved (NORM) rotation; qwen2 keeps the Hugging Face layout and runs with the
		// NEOX half rotation.
		cfg.Interleaved = cfg.Arch != "qwen2"
	case fm.Format == "safetensors":
		nm = hfNames
		cfg, err = hfConfig(filepath.Dir(fm.Files[0].Path))
	default:
		err = fmt.Errorf("llm: format %q not supported", fm.Format)
	}
	if err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var params int64
	for i := range fm.Tensors {
		params += fm.Tensors[i].Elements()
	}
	if need, budget := 4*params, MemoryBudget(); need > budget {
		return nil, fmt.Errorf("llm: the model needs %.1f GiB as float32, more than the %.1f GiB budget (KENSA_MAX_MEMORY); dequantizing rows on the fly is not implemented", float64(need)/(1<<30), float64(budget)/(1<<30))
	}
	m := &Model{Config: cfg, Workers: 1}
	read := func(name string, shape ...int) ([]float32, error) {
		t := fm.Tensor(name)
		if t == nil {
			return nil, fmt.Errorf("llm: tensor %q is missing", name)
		}
		if len(t.Shape) != len(shape) {
			return nil, fmt.Errorf("llm: tensor %q has shape %v, want %v", name, t.Shape, shape)
		}
		for i := range shape {
			if t.Shape[i] != int64(shape[i]) {
				return nil, fmt.Errorf("llm: tensor %q has shape %v, want %v", name, t.Shape, shape)
			}
		}
		r, err := fm.NewTensorReader(t)
		if err != nil {
			return nil, err
		}
		v := make([]float32, t.Elements())
		return v, r.ReadElements(0, v)
	}
	optional := func(name string, n int) ([]float32, error) {
		if fm.Tensor(name) == nil {
			return nil, nil
		}
		return read(name, n)
	}
	H, D := cfg.Hidden, cfg.HeadDim
	qd, kvd := cfg.Heads*D, cfg.KVHeads*D
	if m.embed, err = read(nm.embed, cfg.Vocab, H); err != nil {
		return nil, err
	}
	if m.norm, err = read(nm.norm, H); err != nil {
		return nil, err
	}
	if fm.Tensor(nm.out) != nil {
		if m.out, err = read(nm.out, cfg.Vocab, H); err != nil {
			return nil, err
		}
	} else {
		m.out = m.embed // tied
	}
	for l := 0; l < cfg.Layers; l++ {
		var ly layer
		f := func(s string) string { return fmt.Sprintf(s, l) }
		steps := []struct {
			dst  *[]float32
			name string
			dims []int
		}{
			{&ly.attnNorm, f(nm.attnNorm), []int{H}},
			{&ly.wq, f(nm.q) + ".weight", []int{qd, H}},
			{&ly.wk, f(nm.k) + ".weight", []int{kvd, H}},
			{&ly.wv, f(nm.v) + ".weight", []int{kvd, H}},
			{&ly.wo, f(nm.o), []int{H, qd}},
			{&ly.ffnNorm, f(nm.ffnNorm), []int{H}},
			{&ly.wg, f(nm.g), []int{cfg.FF, H}},
			{&ly.wu, f(nm.u), []int{cfg.FF, H}},
			{&ly.wd, f(nm.d), []int{H, cfg.FF}},
		}
		for _, s := range steps {
			if *s.dst, err = read(s.name, s.dims...); err != nil {
				return nil, err
			}
		}
		if ly.bq, err = optional(f(nm.q)+".bias", qd); err != nil {
			return nil, err
		}
		if ly.bk, err = optional(f(nm.k)+".bias", kvd); err != nil {
			return nil, err
		}
		if ly.bv, err = optional(f(nm.v)+".bias", kvd); err != nil {
			return nil, err
		}
		m.layers = append(m.layers, ly)
	}
	return m, nil
}

func (c *Config) check() error {
	switch {
	case c.Hidden <= 0 || c.Layers <= 0 || c.FF <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.Vocab <= 0:
		return fmt.Errorf("llm: incomplete hyperparameters %+v", *c)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("llm: %d heads are not a multiple of %d KV heads", c.Heads, c.KVHeads)
	case c.HeadDim <= 0 || c.RopeDim <= 0 || c.RopeDim > c.HeadDim || c.RopeDim%2 != 0:
		return fmt.Errorf("llm: head dimension %d, rotary dimension %d", c.HeadDim, c.RopeDim)
	case c.Hidden > 1<<16 || c.Layers > 1024 || c.FF > 1<<20 || c.Vocab > 1<<22 || c.Heads > 1024:
		return fmt.Errorf("llm: hyperparameters out of range %+v", *c)
	}
	return nil
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
		return int(x), true
	case uint16:
		return int(x), true
	case uint8:
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

func ggufConfig(fm *formats.Model) (Config, error) {
	av, _ := fm.Meta("general.architecture")
	arch, _ := av.(string)
	switch arch {
	case "llama", "mistral", "qwen2":
	default:
		return Config{}, fmt.Errorf("llm: architecture %q is not supported (llama, mistral, qwen2)", arch)
	}
	c := Config{Arch: arch, RopeBase: 10000, Eps: 1e-5}
	c.Hidden, _ = metaInt(fm, arch+".embedding_length")
	c.Layers, _ = metaInt(fm, arch+".block_count")
	c.FF, _ = metaInt(fm, arch+".feed_forward_length")
	c.Heads, _ = metaInt(fm, arch+".attention.head_count")
	c.KVHeads, _ = metaInt(fm, arch+".attention.head_count_kv")
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	c.Context, _ = metaInt(fm, arch+".context_length")
	if e, ok := metaFloat(fm, arch+".attention.layer_norm_rms_epsilon"); ok {
		c.Eps = float32(e)
	}
	if b, ok := metaFloat(fm, arch+".rope.freq_base"); ok {
		c.RopeBase = b
	}
	if c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	c.RopeDim = c.HeadDim
	if rd, ok := metaInt(fm, arch+".rope.dimension_count"); ok {
		c.RopeDim = rd
	}
	if t := fm.Tensor("token_embd.weight"); t != nil && len(t.Shape) == 2 {
		c.Vocab = int(t.Shape[0])
	}
	return c, nil
}

// maxConfig is the largest config.json read (they are a few KB).
const maxConfig = 1 << 20

// hfConfig reads the hyperparameters of a Hugging Face model from its config.json, which is
// read as transformers reads it: through formats.ReadCompanion (a FIFO or a link out of the
// directory is refused, not waited on) and parsed as Python's json module does, so that a
// NaN in a field kensa does not use does not stop loading. A hyperparameter that is NaN or
// infinite is an error naming it.
func hfConfig(dir string) (Config, error) {
	b, err := formats.ReadCompanion(dir, "config.json", maxConfig)
	if err != nil {
		return Config{}, fmt.Errorf("llm: a safetensors model needs its config.json: %w", err)
	}
	v, err := formats.DecodePyJSON(b)
	if err != nil {
		return Config{}, fmt.Errorf("llm: config.json: %w", formats.WithFile(err, filepath.Join(dir, "config.json")))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Config{}, fmt.Errorf("llm: config.json: the top level is a %s, not an object", jsonType(v))
	}
	j := configFields{m: obj}
	modelType := j.str("model_type")
	hiddenAct := j.str("hidden_act")
	switch modelType {
	case "llama", "mistral", "qwen2":
	default:
		if j.err == nil {
			return Config{}, fmt.Errorf("llm: model_type %q is not supported (llama, mistral, qwen2)", modelType)
		}
	}
	if hiddenAct != "" && hiddenAct != "silu" && j.err == nil {
		return Config{}, fmt.Errorf("llm: hidden_act %q is not supported (silu)", hiddenAct)
	}
	if rs, ok := obj["rope_scaling"]; ok && rs != nil && j.err == nil {
		return Config{}, fmt.Errorf("llm: rope_scaling is not supported")
	}
	c := Config{Arch: modelType, Hidden: j.int("hidden_size"), FF: j.int("intermediate_size"), Layers: j.int("num_hidden_layers"),
		Heads: j.int("num_attention_heads"), KVHeads: j.int("num_key_value_heads"), Vocab: j.int("vocab_size"),
		Eps: float32(j.float("rms_norm_eps")), RopeBase: j.float("rope_theta"), Context: j.int("max_position_embeddings"),
		HeadDim: j.int("head_dim")}
	if j.err != nil {
		return Config{}, j.err
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	c.RopeDim = c.HeadDim
	if c.RopeBase == 0 {
		c.RopeBase = 10000
	}
	if c.Eps == 0 {
		c.Eps = 1e-6
	}
	return c, nil
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

// MemoryBudget is the most memory Load may use for float32 weights: $KENSA_MAX_MEMORY
// (bytes, or with a K/M/G suffix) when set, else 75% of the machine's memory (16 GiB when
// it cannot be read).
func MemoryBudget() int64 {
	if v := os.Getenv("KENSA_MAX_MEMORY"); v != "" {
		mult := int64(1)
		switch strings.ToUpper(v[len(v)-1:]) {
		case "K":
			mult, v = 1<<10, v[:len(v)-1]
		case "M":
			mult, v = 1<<20, v[:len(v)-1]
		case "G":
			mult, v = 1<<30, v[:len(v)-1]
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n * mult
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					return kb * 1024 * 3 / 4
				}
			}
		}
	}
	return 16 << 30
}

// Open opens a model file or Hugging Face directory and loads it.
func Open(path string) (*Model, error) {
	fm, err := formats.Open(path)
	if err != nil {
		return nil, err
	}
	defer fm.Close()
	if !Supported(fm) {
		return nil, fmt.Errorf("llm: %s is not a llama-family decoder kensa can run (%s)", path, strings.TrimSpace(fm.Format))
	}
	return Load(fm)
}
