// Package corpus locates the shared test corpus (../shared/corpus next to the repository,
// or $KENSA_CORPUS) for conformance tests, and skips tests cleanly when it is absent.
package corpus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Root returns the corpus root, or "" when there is none: $KENSA_CORPUS if set, else
// shared/corpus beside the repository root (the directory holding go.mod).
func Root() string {
	if d := os.Getenv("KENSA_CORPUS"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			c := filepath.Join(filepath.Dir(d), "shared", "corpus")
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return c
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Dir returns the corpus subdirectory sub, skipping the test with a clear message when the
// corpus or the subdirectory is absent.
func Dir(tb testing.TB, sub string) string {
	tb.Helper()
	r := Root()
	if r == "" {
		tb.Skip("corpus not found: set KENSA_CORPUS or place it at ../shared/corpus; skipping corpus test")
	}
	d := filepath.Join(r, sub)
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		tb.Skipf("corpus directory %s not found; skipping corpus test", d)
	}
	return d
}

// QuantTensor is one tensor of a quant/*.gguf.expected.json golden listing: where its bytes
// are, and the dequantized values' SHA-256 (float32 little-endian, row-major) and moments.
type QuantTensor struct {
	Name   string    `json:"name"`
	DType  string    `json:"dtype"`
	Shape  []int64   `json:"shape"`
	Offset int64     `json:"offset"`
	Length int64     `json:"length"`
	SHA256 string    `json:"sha256_f32le"`
	Count  int64     `json:"count"`
	Sum    float64   `json:"sum"`
	Sumsq  float64   `json:"sumsq"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	First  []float64 `json:"first"`
}

// QuantExpected is a quant/*.gguf.expected.json golden listing.
type QuantExpected struct {
	File    string        `json:"file"`
	Tensors []QuantTensor `json:"tensors"`
}

// ReadQuantExpected reads the golden listing of a quant corpus file (path of the .gguf).
func ReadQuantExpected(ggufPath string) (*QuantExpected, error) {
	b, err := os.ReadFile(ggufPath + ".expected.json")
	if err != nil {
		return nil, err
	}
	var e QuantExpected
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s.expected.json: %w", ggufPath, err)
	}
	return &e, nil
}

// LogitsCase is one model file of dev/tinylm with the reference logits it must reproduce:
// the F32 safetensors directory and GGUF against reference_logits.json (tolerance 1e-4),
// the F16 and Q8_0 GGUF against the pass on their own dequantized weights (1e-3).
type LogitsCase struct {
	Model   string // a .gguf file, or the model directory for the safetensors model
	Tol     float64
	Prompts []struct {
		IDs    []int       `json:"ids"`
		Logits [][]float64 `json:"logits"`
	}
}

// ReferenceLogits lists the logits cases of every model directory below dir (dev/tinylm).
func ReferenceLogits(dir string) ([]LogitsCase, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []LogitsCase
	for _, e := range ents {
		md := filepath.Join(dir, e.Name())
		for _, c := range []struct {
			model, ref string
			tol        float64
		}{
			{md, "reference_logits.json", 1e-4},
			{filepath.Join(md, "model.gguf"), "reference_logits.json", 1e-4},
			{filepath.Join(md, "model-f16.gguf"), "reference_logits-f16.json", 1e-3},
			{filepath.Join(md, "model-q8_0.gguf"), "reference_logits-q8_0.json", 1e-3},
		} {
			b, err := os.ReadFile(filepath.Join(md, c.ref))
			if err != nil {
				continue
			}
			lc := LogitsCase{Model: c.model, Tol: c.tol}
			if err := json.Unmarshal(b, &lc); err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(md, c.ref), err)
			}
			out = append(out, lc)
		}
	}
	return out, nil
}
