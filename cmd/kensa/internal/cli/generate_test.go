package cli

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

// TestGenerateLogits runs `kensa generate --ids ... --logits` on every tinylm model with
// reference logits and compares every position: 1e-4 for the F32 safetensors directory and
// GGUF, 1e-3 for F16 and Q8_0 GGUF (against the pass on their own dequantized weights).
func TestGenerateLogits(t *testing.T) {
	cases, err := corpus.ReferenceLogits(corpus.Dir(t, "dev/tinylm"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Skip("no reference logits")
	}
	for _, c := range cases {
		for _, p := range c.Prompts {
			ids := make([]string, len(p.IDs))
			for i, id := range p.IDs {
				ids[i] = strconv.Itoa(id)
			}
			args := []string{"generate", c.Model, "--ids", strings.Join(ids, ","), "--logits"}
			if strings.HasSuffix(c.Model, "q8_0.gguf") {
				// the reference is a float pass over the dequantized weights; by default the
				// activations are quantized as llama.cpp does (see nn/llm's TestArchCorpus)
				args = append(args, "--float32")
			}
			code, out, errOut := run(args...)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", c.Model, code, errOut)
			}
			var got struct {
				IDs    []int
				Logits [][]float64
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Logits) != len(p.Logits) {
				t.Fatalf("%s: %d positions, want %d", c.Model, len(got.Logits), len(p.Logits))
			}
			var worst float64
			for i := range p.Logits {
				for j := range p.Logits[i] {
					worst = math.Max(worst, math.Abs(got.Logits[i][j]-p.Logits[i][j]))
				}
			}
			if worst > c.Tol {
				t.Errorf("%s: max difference %.3g > %.0e", c.Model, worst, c.Tol)
			}
		}
	}
}

func TestGenerateText(t *testing.T) {
	dir := corpus.Dir(t, "realfiles")
	code, out, errOut := run("generate", filepath.Join(dir, "llamacpp-stories260K.gguf"), "Once upon a time", "-n", "30")
	if code != 0 || !strings.HasPrefix(out, "Once upon a time") || len(strings.Fields(out)) < 15 {
		t.Errorf("exit %d, %q (%s)", code, out, errOut)
	}
	for _, args := range [][]string{
		{"generate", filepath.Join(dir, "tinygrad-mnist.model.safetensors")},                // not a decoder
		{"generate", filepath.Join(dir, "llamacpp-stories260K.gguf"), "--ids", "1,99999"},   // id out of range
		{"generate", filepath.Join(dir, "llamacpp-stories260K.gguf"), "text", "--ids", "1"}, // both
		{"generate", filepath.Join(dir, "llamacpp-stories260K.gguf"), "-n", "-1"},           // bad n
	} {
		if code, _, _ := run(args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args[1:], code, ExitUsage)
		}
	}
}
