package llm

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

// archTruth is the part of dev/arch/truth.json the conformance test reads: each model's
// files and the float floors measured for them (how far an independent float64 pass lands
// from llama.cpp), from which the README's tolerance rules are computed.
type archTruth struct {
	Dir      string `json:"dir"`
	Arch     string `json:"arch"`
	Measured map[string]struct {
		AbsFloor float64 `json:"numpy_f64_vs_llamacpp_abs"`
		RelFloor float64 `json:"numpy_f64_vs_llamacpp_rel"`
	} `json:"measured"`
	Files []struct {
		Kind      string         `json:"kind"`
		File      string         `json:"file"`
		Reference string         `json:"reference"`
		Tolerance map[string]any `json:"tolerance"`
	} `json:"files"`
}

type refLogits struct {
	Prompts []struct {
		IDs    []int       `json:"ids"`
		Logits [][]float64 `json:"logits"`
	} `json:"prompts"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func maxAbs(v []float64) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

func argmax64(v []float64) int {
	b := 0
	for i, x := range v {
		if x > v[b] {
			b = i
		}
	}
	return b
}

// TestArchConformance runs the four files (F32, F16, Q8_0, Q4_K_M) of every dev/arch
// model against llama.cpp's own logits under the corpus README's rules:
//
//   - F32: max |error| ≤ max(1e-3, 3·floor) and the top token right at every position (a
//     near-tie within 2× the tolerance counts as right);
//   - F16: max |error| ≤ max(1e-2, 3·floor), top token likewise;
//   - Q8_0 and Q4_K_M: at every position max |error| ≤ t·max|logit| with t = 3·max(D8,
//     floor), D8 the largest relative distance between llama.cpp's own F32 and Q8_0 logits
//     of the model, and the top token right at ≥ 95% of positions (kensa's top within
//     D8·max|logit| of llama.cpp's top logit counts as right).
//
// floor is the file's float floor from truth.json (absolute for F32/F16, relative for the
// quantized files).
func TestArchConformance(t *testing.T) {
	dir := corpus.Dir(t, "dev/arch")
	truthPath := filepath.Join(dir, "truth.json")
	if _, err := os.Stat(truthPath); err != nil {
		t.Skipf("%s not found; skipping the architecture conformance test", truthPath)
	}
	var truth []archTruth
	readJSON(t, truthPath, &truth)
	if len(truth) == 0 {
		t.Fatal("truth.json lists no models")
	}
	for _, mt := range truth {
		t.Run(mt.Dir, func(t *testing.T) {
			refs := map[string]*refLogits{}
			for _, f := range mt.Files {
				var r refLogits
				readJSON(t, filepath.Join(dir, mt.Dir, f.Reference), &r)
				refs[f.Kind] = &r
			}
			// D8 from llama.cpp's own F32 and Q8_0 references
			var d8 float64
			if f32, q8 := refs["f32"], refs["q8_0"]; f32 != nil && q8 != nil {
				for p := range f32.Prompts {
					for i, row := range f32.Prompts[p].Logits {
						var d float64
						for j, x := range row {
							d = math.Max(d, math.Abs(x-q8.Prompts[p].Logits[i][j]))
						}
						d8 = math.Max(d8, d/maxAbs(row))
					}
				}
			}
			for _, f := range mt.Files {
				path := filepath.Join(dir, mt.Dir, f.File)
				m, err := Open(path)
				if err != nil {
					t.Errorf("%s: %v", f.File, err)
					continue
				}
				m.Workers = 2
				ref := refs[f.Kind]
				floor := mt.Measured[f.Kind]
				quant := f.Kind != "f32" && f.Kind != "f16"
				var tol float64 // absolute (F32, F16) or relative to the position's max |logit|
				switch {
				case f.Kind == "f32":
					tol = math.Max(1e-3, 3*floor.AbsFloor)
				case f.Kind == "f16":
					tol = math.Max(1e-2, 3*floor.AbsFloor)
				default:
					tol = 3 * math.Max(d8, floor.RelFloor)
				}
				var worstAbs, worstRel float64
				var positions, right int
				var bad []string
				for _, p := range ref.Prompts {
					got, err := m.Forward(m.NewState(len(p.IDs)), p.IDs, true)
					if err != nil {
						t.Fatalf("%s: %v", f.File, err)
					}
					for i, want := range p.Logits {
						scale := maxAbs(want)
						var d float64
						for j, x := range want {
							d = math.Max(d, math.Abs(float64(got[i][j])-x))
						}
						worstAbs = math.Max(worstAbs, d)
						worstRel = math.Max(worstRel, d/scale)
						positions++
						top, mine := argmax64(want), Argmax(got[i])
						tie := 2 * tol
						if quant {
							tie = d8 * scale
							if d > tol*scale {
								bad = append(bad, fmt.Sprintf("position %d: %.3g of max |logit| > %.3g", i, d/scale, tol))
							}
						} else if d > tol {
							bad = append(bad, fmt.Sprintf("position %d: %.3g > %.3g", i, d, tol))
						}
						if mine == top || want[mine] >= want[top]-tie {
							right++
						} else if !quant {
							bad = append(bad, fmt.Sprintf("position %d: top token %d, llama.cpp's %d", i, mine, top))
						}
					}
				}
				share := float64(right) / float64(positions)
				if quant {
					t.Logf("%-20s max |err| %.3g, max |err|/max|logit| %.3g (tolerance %.3g), top-1 %.0f%%", f.File, worstAbs, worstRel, tol, 100*share)
					if share < 0.95 {
						bad = append(bad, fmt.Sprintf("top token right at %.0f%% of positions", 100*share))
					}
				} else {
					t.Logf("%-20s max |err| %.3g (tolerance %.3g), top-1 %.0f%%", f.File, worstAbs, tol, 100*share)
				}
				if len(bad) > 0 {
					if len(bad) > 5 {
						bad = append(bad[:5], fmt.Sprintf("… %d more", len(bad)-5))
					}
					t.Errorf("%s (%s): %v", f.File, f.Kind, bad)
				}
				// the README's tolerance as truth.json states it, for comparison
				if v, ok := f.Tolerance["max_abs"].(float64); ok && !quant && math.Abs(v-tol) > 1e-4*v {
					t.Logf("%s: computed tolerance %.6g, truth.json says %.6g", f.File, tol, v)
				}
				if v, ok := f.Tolerance["max_rel"].(float64); ok && quant && math.Abs(v-tol) > 1e-4*v {
					t.Logf("%s: computed tolerance %.6g, truth.json says %.6g", f.File, tol, v)
				}
			}
		})
	}
}
