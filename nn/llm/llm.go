// Package llm runs decoder-only language models in pure Go on CPUs, at llama.cpp's
// numerics: the llama family (llama, mistral, mixtral and other llama-architecture
// mixtures of experts), qwen2, qwen2moe, qwen3, qwen3moe, phi3, gemma, gemma2, gemma3,
// starcoder2 and gpt2, from GGUF files written with llama.cpp's tensor names and metadata
// keys, and the standard Hugging Face layouts (llama, mistral, qwen2, qwen3, phi3, gemma,
// gemma2, gemma3) from safetensors with their config.json.
//
// What is covered: grouped-query attention with an optional sliding window (every layer,
// even layers or a pattern), attention and final-logit soft-capping, rotary position
// embeddings on interleaved pairs (llama.cpp's NORM: GGUF llama files, whose Q/K rows
// llama.cpp's converter permuted) or halves (NEOX, and every Hugging Face model), partial
// rotary dimensions, linear, YaRN and llama 3 frequency scaling, per-layer RoPE bases
// (gemma3), learned absolute positions (gpt2), RMSNorm or LayerNorm with bias, per-head
// q/k RMSNorm, sandwich norms, SwiGLU, GeGLU and GELU MLPs (GELU through llama.cpp's
// float16 table), fused qkv and gate/up tensors, biases wherever a file has them, tied or
// separate output heads, and mixtures of experts (softmax router, top-k, weights
// renormalized or not, shared expert with a sigmoid gate). A KV cache, batched prompt
// evaluation and greedy decoding.
//
// Weights are read through package formats from GGUF (any dequantizable ggml type) or
// safetensors (any float dtype) and held as float32: a model takes 4 bytes per parameter.
// Every matrix product goes through one small interface (matrix, in linear.go), so that a
// storage keeping tensors in their stored type can replace the float32 one.
package llm

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/kernels"
)

// Config holds a model's hyperparameters. The zero values of the fields after
// Interleaved describe a llama: RMSNorm, SwiGLU, RoPE, no window, no soft-caps.
type Config struct {
	Arch        string
	Hidden      int
	Layers      int
	FF          int // MLP width; of one expert in a mixture of experts
	Heads       int
	KVHeads     int
	HeadDim     int
	RopeDim     int // rotated dimensions of each head (= HeadDim for llama); 0 without RoPE
	Vocab       int
	Context     int
	Eps         float32
	RopeBase    float64
	Interleaved bool // RoPE on pairs (2i, 2i+1) (GGUF llama) rather than (i, i+d/2) (NEOX, Hugging Face)

	LayerNorm     bool    // LayerNorm with bias (starcoder2, gpt2) rather than RMSNorm
	GELU          bool    // the MLP's activation is GELU (tanh form) rather than SiLU
	NoGate        bool    // the MLP is down(act(up(x))) rather than down(act(gate(x))·up(x))
	PosEmbd       bool    // learned absolute position embeddings (gpt2)
	RopeScaling   string  // "", "linear", "yarn" or "llama3" (frequency factors)
	RopeScale     float64 // RoPE frequency scale (1/factor) of the scaled layers; 0 means 1
	LocalRopeBase float64 // RoPE base of the sliding-window layers when it differs (gemma3)
	EmbedScale    float64 // token embeddings are multiplied by it (gemma: sqrt(Hidden)); 0: not
	QueryScale    float64 // scale of q·k (0: 1/sqrt(HeadDim))
	AttnSoftcap   float64 // scores become c·tanh(s/c) (gemma2); 0: none
	FinalSoftcap  float64 // logits become c·tanh(l/c) (gemma2); 0: none
	SlidingWindow int     // key j is visible from query i when i-j < SlidingWindow; 0: none
	SlidingLayers []bool  // which layers use the window (nil: all of them)
	Experts       int     // experts of each MLP (0: dense)
	ExpertsUsed   int     // experts each token is routed to
	NormTopK      bool    // the routing weights are renormalized over the chosen experts
	SharedFF      int     // width of the shared expert (0: none)
}

// LlamaLike reports whether the model is a plain llama-style decoder: RMSNorm, SwiGLU, RoPE,
// full causal attention, no soft-caps, embedding scale, q/k norms, post-norms or experts
// (code that evaluates models by its own means, outside this package, can run only those).
func (m *Model) LlamaLike() bool {
	c := &m.Config
	if c.LayerNorm || c.GELU || c.NoGate || c.PosEmbd || c.RopeDim == 0 || c.RopeScaling != "" || c.EmbedScale != 0 ||
		c.AttnSoftcap != 0 || c.FinalSoftcap != 0 || c.SlidingWindow != 0 || c.Experts != 0 || c.QueryScale != 0 {
		return false
	}
	for i := range m.layers {
		ly := &m.layers[i]
		if ly.qNorm != nil || ly.postAttnNorm != nil || ly.postFFNNorm != nil || ly.o.b != nil || ly.up.b != nil ||
			ly.down.b != nil || ly.gate.b != nil {
			return false
		}
	}
	return m.out.b == nil && m.normB == nil
}

// layer is one transformer block.
type layer struct {
	attnNorm, attnNormB []float32
	q, k, v, o          linear
	qNorm, kNorm        []float32 // per-head RMSNorm of q and k before RoPE (qwen3, gemma3)
	postAttnNorm        []float32 // norm of the attention output before the residual (gemma2, gemma3)
	ffnNorm, ffnNormB   []float32
	postFFNNorm         []float32
	gate, up, down      linear // the dense MLP (gate.w nil without a gate)
	moe                 *moe   // the mixture of experts instead of the dense MLP
	window              int    // sliding window (0: full causal attention)
	rope                int    // index into Model.ropes
}

// moe is a mixture-of-experts MLP.
type moe struct {
	router     linear // [experts × hidden]
	experts    []expert
	used       int
	normTopK   bool
	shared     *expert // nil without a shared expert
	sharedGate linear  // [1 × hidden]: the shared expert is scaled by sigmoid(gate·x); w nil: unscaled
}

type expert struct{ gate, up, down linear }

// Model is a loaded decoder.
type Model struct {
	Config  Config
	Workers int // parallel workers for matrix products (≤ 0: 1)

	embed       matrix // [vocab × hidden]
	pos         matrix // [positions × hidden] learned positions, or nil
	layers      []layer
	norm, normB []float32
	out         linear // the embedding when tied
	ropes       []ropeSpec

	qScale     float32 // multiplies q before attention (1: none; llama.cpp pre-scales gemma's and phi3's q)
	kqScale    float32 // multiplies q·k
	attnCap    float32
	finalCap   float32
	embedScale float32 // 0: none
	exactGELU  bool    // GELU in float64 (Hugging Face models) rather than through llama.cpp's table

	path  string         // the model's first file, for errors
	owned *formats.Model // closed by Close (models from Open)
}

// Architectures returns the architectures the runtime runs: GGUF general.architecture
// values, then Hugging Face model_type values.
func Architectures() (gguf, hf []string) {
	for a := range ggufArchs {
		gguf = append(gguf, a)
	}
	for a := range hfArchs {
		hf = append(hf, a)
	}
	sortStrings(gguf)
	sortStrings(hf)
	return gguf, hf
}

// ArchitectureList names the architectures the runtime runs, for messages:
// "GGUF llama, mistral, ...; Hugging Face llama, mistral, ...".
func ArchitectureList() string {
	g, h := Architectures()
	return "GGUF " + strings.Join(g, ", ") + "; Hugging Face " + strings.Join(h, ", ")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Supported reports whether a model is a decoder of an architecture kensa can run: a GGUF
// whose general.architecture the runtime implements, or safetensors whose config.json
// names a model_type it implements. Load may still fail (a tensor missing, shapes that do
// not fit the hyperparameters, the memory budget).
func Supported(fm *formats.Model) bool {
	switch fm.Format {
	case "gguf":
		v, _ := fm.Meta("general.architecture")
		arch, _ := v.(string)
		_, ok := ggufArchs[arch]
		return ok && fm.Tensor("token_embd.weight") != nil
	case "safetensors":
		if len(fm.Files) == 0 {
			return false
		}
		_, ok := hfArchs[hfModelType(filepath.Dir(fm.Files[0].Path))]
		_, _, has := hfPrefix(fm)
		return ok && has
	}
	return false
}

// Load reads a decoder from an opened model. For safetensors, the hyperparameters come
// from config.json in the model's directory; for GGUF, from the metadata.
func Load(fm *formats.Model) (*Model, error) { return LoadWith(fm, Options{}) }

// Options change how [LoadWith] keeps the weights.
type Options struct {
	// Float32 converts every weight to float32 at load, and the matrix products then use
	// float32 activations: the arithmetic of a float reference pass over the dequantized
	// weights, at four bytes per weight, rather than llama.cpp's (weights as stored,
	// activations quantized for the integer kernels).
	Float32 bool
}

// LoadWith is [Load] with options.
func LoadWith(fm *formats.Model, o Options) (*Model, error) {
	checkBudget := func() error {
		need := WeightBytes(fm)
		if o.Float32 {
			need = 4 * fm.Parameters()
		}
		if budget := MemoryBudget(); need > budget {
			return fmt.Errorf("llm: the model's weights need %.1f GiB (as stored, float32 for the rest), more than the %.1f GiB budget (KENSA_MAX_MEMORY)", float64(need)/(1<<30), float64(budget)/(1<<30))
		}
		return nil
	}
	m, err := loadFormat(fm, o, checkBudget)
	if err != nil {
		return nil, err
	}
	if len(fm.Files) > 0 {
		m.path = fm.Files[0].Path
	}
	return m, nil
}

func loadFormat(fm *formats.Model, o Options, checkBudget func() error) (*Model, error) {
	switch fm.Format {
	case "gguf":
		return loadGGUF(fm, o, checkBudget)
	case "safetensors":
		if len(fm.Files) == 0 {
			return nil, fmt.Errorf("llm: the model has no files")
		}
		return loadHF(fm, o, filepath.Dir(fm.Files[0].Path), checkBudget)
	}
	return nil, fmt.Errorf("llm: format %q not supported", fm.Format)
}

// WeightBytes is the memory a loaded model's weights occupy: the stored bytes of the
// tensors the kernels read in place (pages of the mapped file, or one copy where the file
// cannot be mapped), and four bytes per element for those converted to float32 (a
// big-endian file, a type without a kernel, a row that is not whole blocks, the vectors).
func WeightBytes(fm *formats.Model) int64 {
	var n int64
	for i := range fm.Tensors {
		t := &fm.Tensors[i]
		if len(t.Shape) >= 2 {
			cols := t.RowLen()
			if rows := t.Elements() / max(cols, 1); cols <= 1<<30 && rows <= 1<<40 && inPlace(fm, t, int(rows), int(cols)) {
				n += t.Length
				continue
			}
		}
		n += 4 * t.Elements()
	}
	return n
}

func (c *Config) check() error {
	switch {
	case c.Hidden <= 0 || c.Layers <= 0 || c.FF <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.Vocab <= 0:
		return fmt.Errorf("llm: incomplete hyperparameters %+v", *c)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("llm: %d heads are not a multiple of %d KV heads", c.Heads, c.KVHeads)
	case c.HeadDim <= 0 || c.RopeDim < 0 || c.RopeDim > c.HeadDim || c.RopeDim%2 != 0 || c.RopeDim == 0 && !c.PosEmbd:
		return fmt.Errorf("llm: head dimension %d, rotary dimension %d", c.HeadDim, c.RopeDim)
	case c.Hidden > 1<<16 || c.Layers > 1024 || c.FF > 1<<20 || c.Vocab > 1<<22 || c.Heads > 1024 || c.HeadDim > 1<<12 ||
		c.Experts > 1024 || c.SlidingWindow < 0:
		return fmt.Errorf("llm: hyperparameters out of range %+v", *c)
	case c.Experts > 0 && (c.ExpertsUsed <= 0 || c.ExpertsUsed > c.Experts):
		return fmt.Errorf("llm: %d of %d experts used per token", c.ExpertsUsed, c.Experts)
	case c.SlidingLayers != nil && len(c.SlidingLayers) != c.Layers:
		return fmt.Errorf("llm: sliding-window pattern of %d layers for %d layers", len(c.SlidingLayers), c.Layers)
	case !finite(c.RopeBase) || c.RopeBase <= 0 && c.RopeDim > 0 || !finite(c.RopeScale) || c.RopeScale < 0 ||
		!finite(c.AttnSoftcap) || c.AttnSoftcap < 0 || !finite(c.FinalSoftcap) || c.FinalSoftcap < 0 ||
		!finite(c.QueryScale) || c.QueryScale < 0 || !finite(c.EmbedScale) || !finite(c.LocalRopeBase) || c.LocalRopeBase < 0 ||
		math.IsNaN(float64(c.Eps)) || math.IsInf(float64(c.Eps), 0) || c.Eps < 0:
		return fmt.Errorf("llm: hyperparameters out of range %+v", *c)
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

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
	if !Supported(fm) {
		fm.Close()
		if fm.Format == "gguf" {
			if _, err := ggufArch(fm); err != nil {
				return nil, err
			}
		}
		if fm.Format == "safetensors" && len(fm.Files) > 0 {
			if _, err := hfConfig(filepath.Dir(fm.Files[0].Path)); err != nil {
				return nil, err
			}
		}
		return nil, fmt.Errorf("llm: %s is not a decoder kensa can run (%s)", path, strings.TrimSpace(fm.Format))
	}
	m, err := Load(fm)
	if err != nil {
		fm.Close()
		return nil, err
	}
	m.owned = fm
	return m, nil
}

// Close releases the model file when the model was opened with [Open] (the weights are
// read in place from it); for a model from [Load] it does nothing: the caller's
// formats.Model must stay open while the model is used, and the caller closes it.
func (m *Model) Close() error {
	if m.owned == nil {
		return nil
	}
	f := m.owned
	m.owned = nil
	return f.Close()
}

// loader reads tensors as float32 with a sticky error: the first failure is kept and
// later reads return nil.
type loader struct {
	fm      *formats.Model
	float32 bool // Options.Float32: no matrix kept as stored
	err     error
}

func (ld *loader) has(name string) bool { return ld.fm.Tensor(name) != nil }

func (ld *loader) fail(format string, args ...any) {
	if ld.err == nil {
		ld.err = fmt.Errorf(format, args...)
	}
}

// tensor returns a required tensor, checking its row-major shape.
func (ld *loader) tensor(name string, shape ...int) *formats.TensorInfo {
	if ld.err != nil {
		return nil
	}
	t := ld.fm.Tensor(name)
	if t == nil {
		ld.fail("llm: tensor %q is missing", name)
		return nil
	}
	ok := len(t.Shape) == len(shape)
	for i := 0; ok && i < len(shape); i++ {
		ok = t.Shape[i] == int64(shape[i])
	}
	if !ok {
		ld.fail("llm: tensor %q has shape %v, want %v", name, t.Shape, shape)
		return nil
	}
	return t
}

// read returns a required tensor of the given row-major shape, as float32.
func (ld *loader) read(name string, shape ...int) []float32 {
	t := ld.tensor(name, shape...)
	if t == nil {
		return nil
	}
	r, err := ld.fm.NewTensorReader(t)
	if err != nil {
		ld.fail("%w", err)
		return nil
	}
	v := make([]float32, t.Elements())
	if err := r.ReadElements(0, v); err != nil {
		ld.fail("%w", err)
		return nil
	}
	return v
}

// optional is read for a tensor that may be absent (nil then).
func (ld *loader) optional(name string, shape ...int) []float32 {
	if !ld.has(name) {
		return nil
	}
	return ld.read(name, shape...)
}

// matrix returns a required [rows × cols] weight: in its stored type where the kernels
// read that type in place, else as float32.
func (ld *loader) matrix(name string, rows, cols int) matrix {
	t := ld.tensor(name, rows, cols)
	if t == nil {
		return nil
	}
	if m := ld.stored(t, rows, cols); m != nil || ld.err != nil {
		return m
	}
	w := ld.read(name, rows, cols)
	if w == nil {
		return nil
	}
	return newF32Matrix(w, rows, cols)
}

// stacked returns a required [n × rows × cols] tensor (experts stacked) as n matrices.
func (ld *loader) stacked(name string, n, rows, cols int) []matrix {
	t := ld.tensor(name, n, rows, cols)
	if t == nil {
		return nil
	}
	var all matrix
	if m := ld.stored(t, n*rows, cols); m != nil {
		all = m
	} else if w := ld.read(name, n, rows, cols); w != nil {
		all = newF32Matrix(w, n*rows, cols)
	} else {
		return nil
	}
	out := make([]matrix, n)
	for i := range out {
		out[i] = all.sub(i*rows, (i+1)*rows)
	}
	return out
}

// inPlace reports whether tensor t can be kept as stored, as a [rows × cols] matrix: the
// kernels multiply its type, its rows are whole blocks, and its bytes need no byte-order
// conversion.
func inPlace(fm *formats.Model, t *formats.TensorInfo, rows, cols int) bool {
	be := t.DType.BlockElems()
	return !fm.BigEndian && kernels.Supported(t.DType) && be > 0 && cols > 0 && cols%be == 0 &&
		int64(rows)*int64(cols/be*t.DType.BlockBytes()) == t.Length
}

// stored returns t as a storedMatrix reading the file's bytes in place, or nil when t
// cannot be kept as stored (see inPlace).
func (ld *loader) stored(t *formats.TensorInfo, rows, cols int) matrix {
	if ld.float32 || !inPlace(ld.fm, t, rows, cols) {
		return nil
	}
	f := ld.fm.File(t.File)
	if f == nil {
		ld.fail("llm: tensor %q: file %q is not part of the model", t.Name, t.File)
		return nil
	}
	data, err := f.Bytes(t.Offset, t.Length, nil)
	if err != nil {
		ld.fail("llm: tensor %q: %w", t.Name, err)
		return nil
	}
	m, err := newStoredMatrix(t.DType, rows, cols, data)
	if err != nil {
		ld.fail("llm: tensor %q: %w", t.Name, err)
		return nil
	}
	return m
}

// linear returns the weight name+".weight" [rows × cols] with its bias name+".bias" when
// the file has one.
func (ld *loader) linear(name string, rows, cols int) linear {
	return linear{w: ld.matrix(name+".weight", rows, cols), b: ld.optional(name+".bias", rows)}
}

// dim returns dimension i of a tensor's row-major shape (0 when absent).
func (ld *loader) dim(name string, i int) int {
	t := ld.fm.Tensor(name)
	if t == nil || i >= len(t.Shape) {
		return 0
	}
	return int(min(t.Shape[i], math.MaxInt32))
}

// splitRows cuts a fused linear into consecutive row ranges of the given sizes.
func splitRows(l linear, sizes ...int) []linear {
	out := make([]linear, len(sizes))
	lo := 0
	for i, n := range sizes {
		out[i].w = l.w.sub(lo, lo+n)
		if l.b != nil {
			out[i].b = l.b[lo : lo+n]
		}
		lo += n
	}
	return out
}
