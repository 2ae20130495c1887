// Package llama runs llama-family decoders (llama, mistral, qwen2) in pure Go on CPUs:
// grouped-query attention, rotary position embeddings in both conventions (Hugging Face's
// half rotation, and the interleaved pairs of GGUF files whose Q/K rows llama.cpp's converter
// permuted), RMSNorm, SwiGLU, optional q/k/v biases, a tied or separate output head, a KV
// cache, batched prompt evaluation (matrix-matrix products) and greedy decoding, on all cores.
//
// Weights come through package formats from GGUF (any dequantizable ggml type) or from
// safetensors (any float dtype) with the Hugging Face config.json beside them. They are
// dequantized once into float32 when the model is loaded: a model holds 4 bytes per
// parameter (plus its KV caches), and Load refuses models whose float32 weights exceed
// MemoryBudget. Attention is full causal attention: mistral's sliding window is not applied,
// which is exact for sequences no longer than the window.
package llama

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/kensa-scan/kensa/formats"
)

// Errors that Load and Open wrap.
var (
	// ErrUnsupported reports a model that is not a llama-family decoder this package runs.
	ErrUnsupported = errors.New("unsupported model")
	// ErrMissingTensor reports a tensor the architecture needs that the model lacks.
	ErrMissingTensor = errors.New("missing tensor")
	// ErrShape reports a tensor or hyperparameter inconsistent with the configuration.
	ErrShape = errors.New("shape mismatch")
	// ErrTooLarge reports float32 weights above the memory budget.
	ErrTooLarge = errors.New("model exceeds the memory budget")
)

// Config holds a decoder's hyperparameters.
type Config struct {
	Arch            string  // "llama", "mistral" or "qwen2"
	Hidden          int     // embedding width
	Layers          int     // transformer blocks
	FF              int     // feed-forward (SwiGLU) width
	Heads           int     // query heads
	KVHeads         int     // key/value heads (grouped-query attention when < Heads)
	HeadDim         int     // width of one head
	RopeDim         int     // rotated dimensions of each head (≤ HeadDim; usually = HeadDim)
	Vocab           int     // vocabulary size
	Context         int     // trained context length (0 when unknown; informational)
	Eps             float32 // RMSNorm epsilon
	RopeBase        float64 // RoPE frequency base θ
	RopeInterleaved bool    // rotate pairs (2i, 2i+1) (GGUF llama) rather than (i, i+RopeDim/2) (Hugging Face, qwen2)
	Tied            bool    // the output head is the token embedding
	Biases          bool    // q/k/v projections have biases (qwen2)
}

// Params returns the number of weights the configuration implies (the output head counted
// once when tied).
func (c *Config) Params() int64 {
	h, ff, q, kv := int64(c.Hidden), int64(c.FF), int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim)
	per := 2*h + h*q + 2*h*kv + q*h + 3*h*ff
	if c.Biases {
		per += q + 2*kv
	}
	n := int64(c.Layers)*per + int64(c.Vocab)*h + h
	if !c.Tied {
		n += int64(c.Vocab) * h
	}
	return n
}

// maxDim bounds every dimension so that products of two fit comfortably in an int.
const maxDim = 1 << 24

func (c *Config) check() error {
	for _, d := range []struct {
		name string
		v    int
	}{{"hidden size", c.Hidden}, {"layer count", c.Layers}, {"feed-forward size", c.FF},
		{"head count", c.Heads}, {"kv head count", c.KVHeads}, {"head dimension", c.HeadDim}, {"vocabulary size", c.Vocab}} {
		if d.v <= 0 || d.v > maxDim {
			return fmt.Errorf("llama: %s %d out of range: %w", d.name, d.v, ErrShape)
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("llama: %d heads are not a multiple of %d kv heads: %w", c.Heads, c.KVHeads, ErrShape)
	}
	if c.RopeDim <= 0 || c.RopeDim > c.HeadDim || c.RopeDim%2 != 0 {
		return fmt.Errorf("llama: rope dimension %d invalid for head dimension %d: %w", c.RopeDim, c.HeadDim, ErrShape)
	}
	if c.Heads*c.HeadDim > maxDim || c.Layers > 1<<16 {
		return fmt.Errorf("llama: %d heads of %d or %d layers out of range: %w", c.Heads, c.HeadDim, c.Layers, ErrShape)
	}
	h, ff, q := float64(c.Hidden), float64(c.FF), float64(c.Heads*c.HeadDim)
	if p := float64(c.Layers)*(4*h*q+3*h*ff) + 2*float64(c.Vocab)*h; p > 1<<50 {
		return fmt.Errorf("llama: about %.3g parameters: %w", p, ErrTooLarge)
	}
	if !(c.Eps > 0) || !(c.RopeBase > 0) || math.IsInf(c.RopeBase, 0) {
		return fmt.Errorf("llama: rms epsilon %g or rope base %g invalid: %w", c.Eps, c.RopeBase, ErrShape)
	}
	return nil
}

// layer holds one block's float32 weights, each [out, in] row-major.
type layer struct {
	attnNorm, ffnNorm []float32
	wqkv              []float32 // q, k and v projections stacked: [(Heads+2·KVHeads)·HeadDim, Hidden]
	bqkv              []float32 // their biases, nil without
	wo                []float32 // [Hidden, Heads·HeadDim]
	wgu               []float32 // gate and up stacked: [2·FF, Hidden]
	wd                []float32 // [Hidden, FF]
}

// Model is a loaded decoder. It is safe for concurrent use by several States.
type Model struct {
	Config Config
	// Workers is the number of goroutines a matrix product or attention step uses
	// (≤ 0: runtime.NumCPU()). Set it before use, not concurrently with Forward.
	Workers int

	embed  []float32 // [Vocab, Hidden]
	layers []layer
	norm   []float32
	out    []float32 // [Vocab, Hidden]; aliases embed when tied
}

// Bytes returns the memory the model's float32 weights take.
func (m *Model) Bytes() int64 { return 4 * m.Config.Params() }

func (m *Model) workers() int {
	if m.Workers > 0 {
		return m.Workers
	}
	return runtime.NumCPU()
}

// names maps the roles of the weights to tensor names of one convention; %d is the layer.
type names struct {
	embed, norm, out                       string
	attnNorm, q, k, v, o, ffnNorm, g, u, d string
}

var ggufNames = names{"token_embd.weight", "output_norm.weight", "output.weight",
	"blk.%d.attn_norm.weight", "blk.%d.attn_q", "blk.%d.attn_k", "blk.%d.attn_v", "blk.%d.attn_output.weight",
	"blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight"}

var hfNames = names{"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
	"model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj", "model.layers.%d.self_attn.k_proj",
	"model.layers.%d.self_attn.v_proj", "model.layers.%d.self_attn.o_proj.weight",
	"model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
	"model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight"}

// supportedArch lists the architectures this package runs, with whether their GGUF files use
// the interleaved RoPE (llama.cpp's converter permutes Q/K rows of llama and mistral, not of
// qwen2, which llama.cpp runs with the NEOX half rotation).
var supportedArch = map[string]bool{"llama": true, "mistral": true, "qwen2": false}

// Open loads the decoder at path: a GGUF file, a safetensors file with config.json beside it,
// or a directory holding either.
func Open(path string) (*Model, error) {
	fm, err := formats.Open(path)
	if err != nil {
		return nil, err
	}
	defer fm.Close()
	dir := ""
	if fm.Format != "gguf" {
		dir = path
		if st, err := os.Stat(path); err == nil && !st.IsDir() {
			dir = filepath.Dir(path)
		}
	}
	return Load(fm, dir)
}

// Load reads a decoder from an opened model. GGUF models take their hyperparameters from
// their metadata (dir is ignored); safetensors models from dir/config.json (Hugging Face
// names and conventions). Every tensor's shape is checked against the configuration, and a
// missing tensor is named in the error. The weights are copied: fm may be closed afterwards.
func Load(fm *formats.Model, dir string) (*Model, error) {
	var (
		cfg Config
		nm  names
		err error
	)
	if fm.Format == "gguf" {
		nm = ggufNames
		cfg, err = ggufConfig(fm)
	} else {
		nm = hfNames
		if dir == "" {
			return nil, fmt.Errorf("llama: %s model needs the directory of its config.json: %w", fm.Format, ErrUnsupported)
		}
		cfg, err = hfConfig(filepath.Join(dir, "config.json"))
	}
	if err != nil {
		return nil, err
	}
	cfg.Tied = fm.Tensor(nm.out) == nil
	cfg.Biases = fm.Tensor(fmt.Sprintf(nm.q+".bias", 0)) != nil
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if need, budget := 4*cfg.Params(), MemoryBudget(); need > budget {
		return nil, fmt.Errorf("llama: %d parameters need %d bytes as float32, above the budget of %d bytes (KENSA_MAX_MEMORY): %w",
			cfg.Params(), need, budget, ErrTooLarge)
	}
	m := &Model{Config: cfg}
	c := &m.Config
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	qkv := q + 2*kv

	// Every load is described first and run concurrently afterwards.
	type job struct {
		name       string
		rows, cols int // rows = 0: a vector of cols
		dst        []float32
	}
	var jobs []job
	add := func(name string, rows, cols int, dst []float32) {
		jobs = append(jobs, job{name, rows, cols, dst})
	}
	m.embed = make([]float32, c.Vocab*c.Hidden)
	add(nm.embed, c.Vocab, c.Hidden, m.embed)
	m.norm = make([]float32, c.Hidden)
	add(nm.norm, 0, c.Hidden, m.norm)
	if c.Tied {
		m.out = m.embed
	} else {
		m.out = make([]float32, c.Vocab*c.Hidden)
		add(nm.out, c.Vocab, c.Hidden, m.out)
	}
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		l := &m.layers[i]
		f := func(s string) string { return fmt.Sprintf(s, i) }
		l.attnNorm = make([]float32, c.Hidden)
		add(f(nm.attnNorm), 0, c.Hidden, l.attnNorm)
		l.ffnNorm = make([]float32, c.Hidden)
		add(f(nm.ffnNorm), 0, c.Hidden, l.ffnNorm)
		l.wqkv = make([]float32, qkv*c.Hidden)
		add(f(nm.q)+".weight", q, c.Hidden, l.wqkv[:q*c.Hidden])
		add(f(nm.k)+".weight", kv, c.Hidden, l.wqkv[q*c.Hidden:(q+kv)*c.Hidden])
		add(f(nm.v)+".weight", kv, c.Hidden, l.wqkv[(q+kv)*c.Hidden:])
		if c.Biases {
			l.bqkv = make([]float32, qkv)
			add(f(nm.q)+".bias", 0, q, l.bqkv[:q])
			add(f(nm.k)+".bias", 0, kv, l.bqkv[q:q+kv])
			add(f(nm.v)+".bias", 0, kv, l.bqkv[q+kv:])
		}
		l.wo = make([]float32, c.Hidden*q)
		add(f(nm.o), c.Hidden, q, l.wo)
		l.wgu = make([]float32, 2*c.FF*c.Hidden)
		add(f(nm.g), c.FF, c.Hidden, l.wgu[:c.FF*c.Hidden])
		add(f(nm.u), c.FF, c.Hidden, l.wgu[c.FF*c.Hidden:])
		l.wd = make([]float32, c.Hidden*c.FF)
		add(f(nm.d), c.Hidden, c.FF, l.wd)
	}
	// Check every tensor before decoding any.
	for _, j := range jobs {
		t := fm.Tensor(j.name)
		if t == nil {
			return nil, fmt.Errorf("llama: %s model lacks tensor %q: %w", c.Arch, j.name, ErrMissingTensor)
		}
		want := []int64{int64(j.rows), int64(j.cols)}
		if j.rows == 0 {
			want = want[1:]
		}
		if !equalShape(t.Shape, want) {
			return nil, fmt.Errorf("llama: tensor %q has shape %v, want %v: %w", j.name, t.Shape, want, ErrShape)
		}
		if !t.DType.Float() || !t.DType.Decodable() {
			return nil, fmt.Errorf("llama: tensor %q has type %s, not a decodable float type: %w", j.name, t.DType, ErrUnsupported)
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan int)
	)
	for w := 0; w < min(m.workers(), len(jobs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j := jobs[i]
				if err := readTensor(fm, fm.Tensor(j.name), j.dst); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("llama: tensor %q: %w", j.name, err))
					mu.Unlock()
				}
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// readTensor decodes a whole tensor into dst, a few megabytes at a time.
func readTensor(fm *formats.Model, t *formats.TensorInfo, dst []float32) error {
	r, err := fm.NewTensorReader(t)
	if err != nil {
		return err
	}
	rl := int(t.RowLen())
	step := max(1, (1<<20)/rl) * rl
	for off := 0; off < len(dst); off += step {
		end := min(off+step, len(dst))
		if err := r.ReadRows(int64(off/rl), dst[off:end]); err != nil {
			return err
		}
	}
	for _, v := range dst {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("non-finite weight %g", v)
		}
	}
	return nil
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// metaInt returns an integer metadata value of any GGUF integer type.
func metaInt(fm *formats.Model, key string) (int, bool, error) {
	v, ok := fm.Meta(key)
	if !ok {
		return 0, false, nil
	}
	var n int64
	switch x := v.(type) {
	case uint8:
		n = int64(x)
	case int8:
		n = int64(x)
	case uint16:
		n = int64(x)
	case int16:
		n = int64(x)
	case uint32:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt32 {
			return 0, true, fmt.Errorf("llama: metadata %s = %d out of range: %w", key, x, ErrShape)
		}
		n = int64(x)
	default:
		return 0, true, fmt.Errorf("llama: metadata %s has type %T, want an integer: %w", key, v, ErrShape)
	}
	if n < 0 || n > math.MaxInt32 {
		return 0, true, fmt.Errorf("llama: metadata %s = %d out of range: %w", key, n, ErrShape)
	}
	return int(n), true, nil
}

// metaFloat returns a float metadata value (float32 or float64).
func metaFloat(fm *formats.Model, key string) (float64, bool, error) {
	v, ok := fm.Meta(key)
	if !ok {
		return 0, false, nil
	}
	switch x := v.(type) {
	case float32:
		return float64(x), true, nil
	case float64:
		return x, true, nil
	}
	return 0, true, fmt.Errorf("llama: metadata %s has type %T, want a float: %w", key, v, ErrShape)
}

func ggufConfig(fm *formats.Model) (Config, error) {
	var c Config
	a, _ := fm.Meta("general.architecture")
	arch, _ := a.(string)
	interleaved, ok := supportedArch[arch]
	if !ok {
		return c, fmt.Errorf("llama: GGUF architecture %q is not llama, mistral or qwen2: %w", arch, ErrUnsupported)
	}
	c.Arch, c.RopeInterleaved = arch, interleaved
	var err error
	geti := func(dst *int, key string, required bool) {
		if err != nil {
			return
		}
		v, ok, e := metaInt(fm, arch+"."+key)
		switch {
		case e != nil:
			err = e
		case ok:
			*dst = v
		case required:
			err = fmt.Errorf("llama: GGUF metadata lacks %s.%s: %w", arch, key, ErrUnsupported)
		}
	}
	geti(&c.Hidden, "embedding_length", true)
	geti(&c.Layers, "block_count", true)
	geti(&c.FF, "feed_forward_length", true)
	geti(&c.Heads, "attention.head_count", true)
	c.KVHeads = c.Heads
	geti(&c.KVHeads, "attention.head_count_kv", false)
	geti(&c.Context, "context_length", false)
	if err != nil {
		return c, err
	}
	if c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	geti(&c.HeadDim, "attention.key_length", false)
	c.RopeDim = c.HeadDim
	geti(&c.RopeDim, "rope.dimension_count", false)
	geti(&c.Vocab, "vocab_size", false)
	if err != nil {
		return c, err
	}
	if c.Vocab == 0 {
		if t := fm.Tensor(ggufNames.embed); t != nil && len(t.Shape) == 2 && t.Shape[0] <= maxDim {
			c.Vocab = int(t.Shape[0])
		}
	}
	c.Eps, c.RopeBase = 1e-5, 10000
	if v, ok, e := metaFloat(fm, arch+".attention.layer_norm_rms_epsilon"); e != nil {
		return c, e
	} else if ok {
		c.Eps = float32(v)
	}
	if v, ok, e := metaFloat(fm, arch+".rope.freq_base"); e != nil {
		return c, e
	} else if ok {
		c.RopeBase = v
	}
	return c, nil
}

// hfConfig reads the hyperparameters of a Hugging Face config.json.
func hfConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("llama: reading the model's config: %w", err)
	}
	var j struct {
		ModelType     string   `json:"model_type"`
		Architectures []string `json:"architectures"`
		Hidden        int      `json:"hidden_size"`
		FF            int      `json:"intermediate_size"`
		Layers        int      `json:"num_hidden_layers"`
		Heads         int      `json:"num_attention_heads"`
		KVHeads       int      `json:"num_key_value_heads"`
		HeadDim       int      `json:"head_dim"`
		Vocab         int      `json:"vocab_size"`
		Context       int      `json:"max_position_embeddings"`
		Eps           *float64 `json:"rms_norm_eps"`
		Theta         *float64 `json:"rope_theta"`
		Act           string   `json:"hidden_act"`
		RopeScaling   any      `json:"rope_scaling"`
		Partial       *float64 `json:"partial_rotary_factor"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return c, fmt.Errorf("llama: %s: %w", path, err)
	}
	if _, ok := supportedArch[j.ModelType]; !ok {
		return c, fmt.Errorf("llama: %s: model_type %q (%v) is not llama, mistral or qwen2: %w", path, j.ModelType, j.Architectures, ErrUnsupported)
	}
	if j.Act != "" && j.Act != "silu" {
		return c, fmt.Errorf("llama: %s: activation %q is not silu: %w", path, j.Act, ErrUnsupported)
	}
	if j.RopeScaling != nil {
		return c, fmt.Errorf("llama: %s: rope_scaling is not supported: %w", path, ErrUnsupported)
	}
	c = Config{Arch: j.ModelType, Hidden: j.Hidden, Layers: j.Layers, FF: j.FF, Heads: j.Heads,
		KVHeads: j.KVHeads, HeadDim: j.HeadDim, Vocab: j.Vocab, Context: j.Context, Eps: 1e-6, RopeBase: 10000}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	c.RopeDim = c.HeadDim
	if j.Partial != nil {
		c.RopeDim = int(float64(c.HeadDim) * *j.Partial)
	}
	if j.Eps != nil {
		c.Eps = float32(*j.Eps)
	}
	if j.Theta != nil {
		c.RopeBase = *j.Theta
	}
	return c, nil
}

// MemoryBudget returns the largest float32 weight size Load accepts, in bytes: the value of
// $KENSA_MAX_MEMORY (bytes, or with a K, M or G suffix) when set, else three quarters of the
// machine's memory (from /proc/meminfo), else 16 GiB.
func MemoryBudget() int64 {
	if s := strings.TrimSpace(os.Getenv("KENSA_MAX_MEMORY")); s != "" {
		mul := int64(1)
		switch strings.ToUpper(s[len(s)-1:]) {
		case "K":
			mul = 1 << 10
		case "M":
			mul = 1 << 20
		case "G":
			mul = 1 << 30
		}
		if mul > 1 {
			s = s[:len(s)-1]
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n <= math.MaxInt64/mul {
			return n * mul
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 2 && fs[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(fs[1], 10, 64); err == nil && kb > 0 {
					return kb * 1024 / 4 * 3
				}
			}
		}
	}
	return 16 << 30
}
