package llama

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/gguf"
	_ "github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
)

type refLogits struct {
	Prompts []struct {
		IDs    []int       `json:"ids"`
		Logits [][]float64 `json:"logits"`
	} `json:"prompts"`
}

func readRef(t *testing.T, path string) *refLogits {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r refLogits
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &r
}

// maxDiff runs every prompt of ref through m in one batch and returns the largest absolute
// difference of the logits.
func maxDiff(t *testing.T, m *Model, ref *refLogits) float64 {
	t.Helper()
	var worst float64
	for _, p := range ref.Prompts {
		got, err := m.Forward(m.NewState(len(p.IDs)), p.IDs, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(p.Logits) {
			t.Fatalf("prompt %v: %d logit rows, want %d", p.IDs, len(got), len(p.Logits))
		}
		for i := range got {
			if len(got[i]) != len(p.Logits[i]) {
				t.Fatalf("prompt %v: %d logits, want %d", p.IDs, len(got[i]), len(p.Logits[i]))
			}
			for j, w := range p.Logits[i] {
				if d := math.Abs(float64(got[i][j]) - w); d > worst || math.IsNaN(d) {
					worst = d
				}
			}
		}
	}
	return worst
}

func TestReferenceLogits(t *testing.T) {
	dir := corpus.Dir(t, "dev/tinylm")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model, ref string
		tol        float64
	}{
		{"", "reference_logits.json", 1e-4}, // the safetensors directory
		{"model.gguf", "reference_logits.json", 1e-4},
		{"model-f16.gguf", "reference_logits-f16.json", 1e-3},
		{"model-q8_0.gguf", "reference_logits-q8_0.json", 1e-3},
	}
	n := 0
	for _, e := range ents {
		md := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(md, "reference_logits.json")); err != nil {
			continue
		}
		n++
		for _, tt := range tests {
			name := e.Name() + "/" + tt.model
			if tt.model == "" {
				name = e.Name() + "/safetensors"
			}
			t.Run(name, func(t *testing.T) {
				m, err := Open(filepath.Join(md, tt.model))
				if err != nil {
					t.Fatal(err)
				}
				got := maxDiff(t, m, readRef(t, filepath.Join(md, tt.ref)))
				t.Logf("%s vs %s: max |Δlogit| = %.3g", name, tt.ref, got)
				if !(got <= tt.tol) {
					t.Errorf("%s: max |Δlogit| = %g, want ≤ %g", name, got, tt.tol)
				}
			})
		}
	}
	if n == 0 {
		t.Skip("no tinylm model with reference_logits.json")
	}
}

func TestBatchEqualsIncremental(t *testing.T) {
	for _, path := range []string{storiesPath(t), tinyPath(t)} {
		m, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ids := []int{1, 5, 17, 42, 3, 99, 7, 64, 11, 23}
		for i := range ids {
			ids[i] %= m.Config.Vocab
		}
		for _, workers := range []int{1, 2} {
			m.Workers = workers
			batch, err := m.Forward(m.NewState(len(ids)), ids, true)
			if err != nil {
				t.Fatal(err)
			}
			s := m.NewState(len(ids))
			var worst float64
			for i, id := range ids {
				step, err := m.Forward(s, []int{id}, true)
				if err != nil {
					t.Fatal(err)
				}
				for j := range step[0] {
					worst = max(worst, math.Abs(float64(step[0][j]-batch[i][j])))
				}
			}
			t.Logf("%s workers=%d: max |batch - incremental| = %.3g", filepath.Base(path), workers, worst)
			if !(worst <= 1e-5) {
				t.Errorf("%s workers=%d: batch and incremental logits differ by %g, want ≤ 1e-5", path, workers, worst)
			}
		}
	}
}

func storiesPath(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(corpus.Dir(tb, "realfiles"), "llamacpp-stories260K.gguf")
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("%s not found", p)
	}
	return p
}

func tinyPath(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(corpus.Dir(tb, "dev/tinylm"), "base", "model-q8_0.gguf")
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("%s not found", p)
	}
	return p
}

// detokenize turns llama (sentencepiece) token ids into text: "▁" is a space and <0xNN>
// byte tokens are bytes.
func detokenize(tokens []string, ids []int) string {
	var b []byte
	for _, id := range ids {
		s := tokens[id]
		if len(s) == 6 && strings.HasPrefix(s, "<0x") && s[5] == '>' {
			if v, err := strconv.ParseUint(s[3:5], 16, 8); err == nil {
				b = append(b, byte(v))
				continue
			}
		}
		if id <= 2 { // <unk>, <s>, </s>
			continue
		}
		b = append(b, strings.ReplaceAll(s, "▁", " ")...)
	}
	return string(b)
}

func TestStoriesFluent(t *testing.T) {
	path := storiesPath(t)
	fm, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	v, _ := fm.Meta("tokenizer.ggml.tokens")
	tokens, ok := v.([]string)
	if !ok {
		t.Fatalf("tokenizer.ggml.tokens is %T", v)
	}
	m, err := Load(fm, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Config, (Config{Arch: "llama", Hidden: 64, Layers: 5, FF: 172, Heads: 8, KVHeads: 4, HeadDim: 8,
		RopeDim: 8, Vocab: 512, Context: 2048, Eps: 1e-5, RopeBase: 10000, RopeInterleaved: true}); got != want {
		t.Errorf("config = %+v, want %+v", got, want)
	}
	ids, err := m.Generate([]int{1}, 60, func(id int) bool { return id == 2 })
	if err != nil {
		t.Fatal(err)
	}
	text := detokenize(tokens, ids)
	t.Logf("stories260K from BOS: %q", text)
	letters := 0
	for _, r := range text {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == ' ' {
			letters++
		}
	}
	words := strings.Fields(strings.ToLower(text))
	common := 0
	seen := map[string]bool{}
	for _, w := range words {
		w = strings.Trim(w, ".,!?\"'")
		seen[w] = true
		switch w {
		case "the", "was", "a", "and", "she", "he", "to", "her", "they":
			common++
		}
	}
	run, longest := 1, 1
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			run++
			longest = max(longest, run)
		} else {
			run = 1
		}
	}
	switch {
	case len(words) < 10:
		t.Errorf("only %d words", len(words))
	case float64(letters) < 0.9*float64(len([]rune(text))):
		t.Errorf("only %d of %d characters are letters or spaces", letters, len([]rune(text)))
	case common < 3:
		t.Errorf("only %d common English words", common)
	case len(seen) < 8:
		t.Errorf("only %d distinct words", len(seen))
	case longest > 3:
		t.Errorf("a token repeats %d times in a row", longest)
	}
}

type recorder struct {
	layers []int
	hidden [][]float32
	mlp    [][]float32
}

func (r *recorder) Layer(l int, hidden, mlp [][]float32) {
	r.layers = append(r.layers, l)
	r.hidden = append(r.hidden, append([]float32(nil), hidden[len(hidden)-1]...))
	r.mlp = append(r.mlp, append([]float32(nil), mlp[len(mlp)-1]...))
}

func TestObserver(t *testing.T) {
	m, err := Open(storiesPath(t))
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{1, 400, 300}
	var r recorder
	got, err := m.ForwardObserve(m.NewState(8), ids, false, &r)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Forward(m.NewState(8), ids, false)
	if err != nil {
		t.Fatal(err)
	}
	for j := range want[0] {
		if got[0][j] != want[0][j] {
			t.Fatalf("observed logits differ at %d: %g, want %g", j, got[0][j], want[0][j])
		}
	}
	if len(r.layers) != m.Config.Layers || len(r.hidden[0]) != m.Config.Hidden || len(r.mlp[0]) != m.Config.FF {
		t.Fatalf("observer saw layers %v, hidden %d, mlp %d", r.layers, len(r.hidden[0]), len(r.mlp[0]))
	}
	// The last layer's hidden state, normalized and projected, gives the logits.
	c := m.Config
	xn := make([]float32, c.Hidden)
	rmsnorm(xn, r.hidden[c.Layers-1], m.norm, c.Eps)
	for j := 0; j < c.Vocab; j++ {
		if d := math.Abs(float64(dot(m.out[j*c.Hidden:(j+1)*c.Hidden], xn) - want[0][j])); d > 1e-4 {
			t.Fatalf("logit %d from the observed hidden state differs by %g", j, d)
		}
	}
}

func TestErrors(t *testing.T) {
	m, err := Open(storiesPath(t))
	if err != nil {
		t.Fatal(err)
	}
	s := m.NewState(2)
	if _, err := m.Forward(s, []int{1, 2, 3}, false); !errors.Is(err, ErrContext) {
		t.Errorf("Forward past the state = %v, want ErrContext", err)
	}
	if _, err := m.Forward(s, []int{512}, false); err == nil {
		t.Errorf("Forward of token 512 of 512: no error")
	}
	if _, err := m.Forward(s, nil, false); err == nil {
		t.Errorf("Forward of no tokens: no error")
	}
}

func TestMemoryBudget(t *testing.T) {
	tests := []struct {
		env  string
		want int64
	}{
		{"1000", 1000},
		{"64K", 64 << 10},
		{"3M", 3 << 20},
		{"2g", 2 << 30},
	}
	for _, tt := range tests {
		t.Setenv("KENSA_MAX_MEMORY", tt.env)
		if got := MemoryBudget(); got != tt.want {
			t.Errorf("MemoryBudget() with KENSA_MAX_MEMORY=%s = %d, want %d", tt.env, got, tt.want)
		}
	}
	path := storiesPath(t)
	t.Setenv("KENSA_MAX_MEMORY", "1M") // stories260K needs 1.1 MiB
	if _, err := Open(path); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Open under a 1 MiB budget = %v, want ErrTooLarge", err)
	}
	t.Setenv("KENSA_MAX_MEMORY", "2M")
	m, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Bytes(), int64(4*292800); got != want {
		t.Errorf("Bytes() = %d, want %d", got, want)
	}
}

func TestOpenSafetensorsFile(t *testing.T) {
	dir := filepath.Join(corpus.Dir(t, "dev/tinylm"), "base")
	a, err := Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Config != b.Config || a.Config.RopeInterleaved || a.Config.Arch != "llama" {
		t.Errorf("configs: file %+v, directory %+v", a.Config, b.Config)
	}
}
