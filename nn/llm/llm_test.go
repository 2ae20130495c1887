package llm

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/gguf"
	_ "github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
)

// TestReferenceLogits runs every tinylm model that has reference logits (an independent
// float64 forward pass) and compares the logits at every position: F32 safetensors and F32
// GGUF within 1e-4, F16 and Q8_0 GGUF (against the same pass on their dequantized weights)
// within 1e-3. The reference pass has float activations, so the quantized files are run
// with Options.Float32 (the default path quantizes the activations as llama.cpp does, and
// is held to llama.cpp's own logits by TestArchCorpus).
func TestReferenceLogits(t *testing.T) {
	dir := corpus.Dir(t, "dev/tinylm")
	cases, err := corpus.ReferenceLogits(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Skip("no reference logits found")
	}
	for _, c := range cases {
		path := c.Model
		if !strings.HasSuffix(path, ".gguf") {
			path = filepath.Join(path, "model.safetensors")
		}
		fm, err := formats.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer fm.Close()
		m, err := LoadWith(fm, Options{Float32: strings.HasSuffix(path, "q8_0.gguf")})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		m.Workers = 2
		var worst float64
		for _, p := range c.Prompts {
			got, err := m.Forward(m.NewState(len(p.IDs)), p.IDs, true)
			if err != nil {
				t.Fatal(err)
			}
			for i := range p.Logits {
				for j := range p.Logits[i] {
					worst = math.Max(worst, math.Abs(float64(got[i][j])-p.Logits[i][j]))
				}
			}
		}
		rel, _ := filepath.Rel(dir, path)
		t.Logf("%-32s max |logit - reference| = %.2e", rel, worst)
		if worst > c.Tol {
			t.Errorf("%s: max difference %.3g > %.0e", rel, worst, c.Tol)
		}
	}
}

// Evaluating a prompt as a batch equals feeding it one token at a time through the cache.
func TestBatchEqualsIncremental(t *testing.T) {
	dir := corpus.Dir(t, "realfiles")
	m, err := Open(filepath.Join(dir, "llamacpp-stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{1, 300, 45, 260, 289, 400, 13}
	batch, err := m.Forward(m.NewState(16), ids, true)
	if err != nil {
		t.Fatal(err)
	}
	s := m.NewState(16)
	for i, id := range ids {
		one, err := m.Forward(s, []int{id}, false)
		if err != nil {
			t.Fatal(err)
		}
		for j := range one[0] {
			if d := math.Abs(float64(one[0][j] - batch[i][j])); d > 1e-4 {
				t.Fatalf("position %d logit %d: incremental %v, batch %v", i, j, one[0][j], batch[i][j])
			}
		}
	}
}

// The real stories260K model writes fluent text from BOS.
func TestStoriesFluent(t *testing.T) {
	dir := corpus.Dir(t, "realfiles")
	fm, err := formats.Open(filepath.Join(dir, "llamacpp-stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	m, err := Load(fm)
	if err != nil {
		t.Fatal(err)
	}
	m.Workers = 2
	out, err := m.Generate([]int{1}, 80, func(id int) bool { return id == 2 })
	if err != nil {
		t.Fatal(err)
	}
	tv, _ := fm.Meta("tokenizer.ggml.tokens")
	toks := tv.([]string)
	var sb strings.Builder
	for _, id := range out {
		sb.WriteString(strings.ReplaceAll(toks[id], "▁", " "))
	}
	text := sb.String()
	t.Logf("stories260K: %q", text)
	words := strings.Fields(text)
	common := 0
	for _, w := range words {
		switch strings.Trim(strings.ToLower(w), ".,!\"") {
		case "the", "was", "a", "and", "to", "she", "he", "they", "her", "it":
			common++
		}
	}
	if len(words) < 20 || common < 4 {
		t.Errorf("not fluent: %d words, %d common ones: %q", len(words), common, text)
	}
}

func TestMemoryBudget(t *testing.T) {
	t.Setenv("KENSA_MAX_MEMORY", "100K")
	if got := MemoryBudget(); got != 100<<10 {
		t.Errorf("MemoryBudget = %d", got)
	}
	_, err := Open(filepath.Join(corpus.Dir(t, "realfiles"), "llamacpp-stories260K.gguf"))
	if err == nil || !strings.Contains(err.Error(), "budget") {
		t.Errorf("a model over the budget loaded: %v", err)
	}
}
