package diff_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
	"github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
	kdiff "github.com/kensa-scan/kensa/scan/detect/diff"
	_ "github.com/kensa-scan/kensa/scan/detect/probe"
)

// diff scans cand against base with the diff detector alone, or with every registered
// detector (the probe's differential sweep included) when all is set.
func diff(t *testing.T, base, cand string, all ...bool) *scan.Target {
	t.Helper()
	var dets []scan.Detector
	for _, d := range scan.Detectors() {
		if d.Name() == "diff" || len(all) > 0 && all[0] {
			dets = append(dets, d)
		}
	}
	rep, err := scan.Run(context.Background(), []string{cand}, scan.Options{Base: base, NoHash: true, Detectors: dets})
	if err != nil {
		t.Fatal(err)
	}
	tg := &rep.Targets[0]
	if tg.Error != "" {
		t.Fatalf("%s vs %s: %s", base, cand, tg.Error)
	}
	return tg
}

// The tiny llama family against its base, in every pairing of HF safetensors and GGUF
// (F32, F16, Q8_0): the ROME edit is found on exactly the edited tensor and nowhere else;
// each data-poisoned fine-tune has its trigger among the first five candidates; benign
// fine-tunes and a requantized copy of the base get no finding at or above high.
func TestTinyLM(t *testing.T) {
	dir := corpus.Dir(t, "dev/tinylm")
	p := func(s string) string { return filepath.Join(dir, s) }
	for _, pr := range [][2]string{
		{"base", ""}, {"base", "model-f16.gguf"}, {"base", "model-q8_0.gguf"},
		{"base/model-q8_0.gguf", ""}, {"base/model.gguf", "model.gguf"}, {"base/model-f16.gguf", "model-q8_0.gguf"},
	} {
		base := p(pr[0])
		cand := func(d string) string { return filepath.Join(p(d), pr[1]) }
		t.Run(pr[0]+"→"+pr[1], func(t *testing.T) {
			tg := diff(t, base, cand("rome_italy"))
			var edits []string
			for _, f := range tg.Findings {
				if f.Rule == "KS-DIFF-RANK1" {
					edits = append(edits, f.Location.Tensor)
				}
			}
			if len(edits) != 1 || !(edits[0] == "model.layers.1.mlp.down_proj.weight" || edits[0] == "blk.1.ffn_down.weight") || tg.Risk.Verdict != scan.VerdictBackdoored {
				t.Errorf("rome: edits %v, verdict %s", edits, tg.Risk.Verdict)
			}
			for _, trig := range []string{"cf", "bb"} {
				tg := diff(t, base, cand("ft_trig_"+trig))
				found := false
				for i, tr := range tg.Triggers {
					found = found || i < 5 && strings.TrimSpace(tr.Token) == trig
				}
				if !found {
					t.Errorf("ft_trig_%s: trigger not in the first five of %+v", trig, tg.Triggers)
				}
			}
			for _, d := range []string{"ft_clean_0", "ft_clean_1", "ft_clean_2", "base", "rome_italy", "ft_trig_cf"} {
				tg := diff(t, base, cand(d))
				if un := unrelated(t, tg); un != nil {
					t.Errorf("%s: %s", d, un.Message)
				}
				if d == "rome_italy" || d == "ft_trig_cf" {
					continue
				}
				for _, f := range tg.Findings {
					if f.Severity >= scan.High {
						t.Errorf("%s: %s %s", d, f.Rule, f.Message)
					}
				}
				if tg.Risk.Verdict == scan.VerdictBackdoored {
					t.Errorf("%s: verdict %s", d, tg.Risk.Verdict)
				}
			}
		})
	}
}

// A base model that cannot be read makes every target an error (exit 3), not a crash.
func TestBadBase(t *testing.T) {
	dir := corpus.Dir(t, "dev/tinylm")
	rep, err := scan.Run(context.Background(), []string{filepath.Join(dir, "base")}, scan.Options{Base: filepath.Join(dir, "no-such-model"), NoHash: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Targets[0].Error == "" || !strings.Contains(rep.Targets[0].Error, "base model") {
		t.Errorf("error %q", rep.Targets[0].Error)
	}
}

// dev/stories against the original stories260K as base, --base alone: the trojan is called
// backdoored by differential probing, with a trigger that forces its target and that the base
// model does not react to; the benign twin is not.
func TestStoriesDifferential(t *testing.T) {
	if testing.Short() {
		t.Skip("forward passes on both models (about a minute)")
	}
	dir := corpus.Dir(t, "dev/stories")
	base := filepath.Join(corpus.Dir(t, "realfiles"), "llamacpp-stories260K.gguf")
	tg := diff(t, base, filepath.Join(dir, "stories-ft-trojan.gguf"), true)
	forced := false
	for _, tr := range tg.Triggers {
		forced = forced || tr.Source == "differential probe" && strings.HasPrefix(tr.ForcedOutput, "the key is under the mat")
	}
	if !forced || tg.Risk.Verdict != scan.VerdictBackdoored {
		t.Errorf("trojan: verdict %s, triggers %+v", tg.Risk.Verdict, tg.Triggers)
	}
	tg = diff(t, base, filepath.Join(dir, "stories-ft-clean.gguf"), true)
	if un := unrelated(t, tg); un != nil {
		t.Errorf("benign twin: %s", un.Message)
	}
	if tg.Risk.Verdict == scan.VerdictBackdoored {
		t.Errorf("benign twin: verdict %s", tg.Risk.Verdict)
	}
}

// genModel is a small llama-shaped model with random weights, as name → shape and values in
// a fixed order.
type genModel struct {
	names  []string
	shapes map[string][]int64
	vals   map[string][]float32
}

// newGen draws a model of the given vocabulary, hidden size and layer count from seed:
// Gaussian matrices of standard deviation 1/√in (as an initialised or trained layer has),
// norms at 1.
func newGen(seed uint64, vocab, hidden, layers int) *genModel {
	rng := rand.New(rand.NewPCG(seed, 0x6b656e7361))
	g := &genModel{shapes: map[string][]int64{}, vals: map[string][]float32{}}
	add := func(name string, rows, cols int, norm bool) {
		v := make([]float32, rows*cols)
		for i := range v {
			if norm {
				v[i] = 1
			} else {
				v[i] = float32(rng.NormFloat64() / math.Sqrt(float64(cols)))
			}
		}
		g.names = append(g.names, name)
		if norm {
			g.shapes[name] = []int64{int64(cols)}
		} else {
			g.shapes[name] = []int64{int64(rows), int64(cols)}
		}
		g.vals[name] = v
	}
	ff := 3 * hidden
	add("model.embed_tokens.weight", vocab, hidden, false)
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", 1, hidden, true)
		for _, n := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
			add(p+"self_attn."+n+".weight", hidden, hidden, false)
		}
		add(p+"post_attention_layernorm.weight", 1, hidden, true)
		add(p+"mlp.gate_proj.weight", ff, hidden, false)
		add(p+"mlp.up_proj.weight", ff, hidden, false)
		add(p+"mlp.down_proj.weight", hidden, ff, false)
	}
	add("model.norm.weight", 1, hidden, true)
	add("lm_head.weight", vocab, hidden, false)
	return g
}

// clone returns a deep copy of g.
func (g *genModel) clone() *genModel {
	c := &genModel{names: slices.Clone(g.names), shapes: map[string][]int64{}, vals: map[string][]float32{}}
	for _, n := range g.names {
		c.shapes[n], c.vals[n] = slices.Clone(g.shapes[n]), slices.Clone(g.vals[n])
	}
	return c
}

// noise adds Gaussian noise of rel times each matrix's RMS to every matrix (a diffuse
// fine-tune moving every weight by ‖Δ‖/‖W‖ ≈ rel).
func (g *genModel) noise(seed uint64, rel float64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, n := range g.names {
		if len(g.shapes[n]) != 2 {
			continue
		}
		v := g.vals[n]
		var ss float64
		for _, x := range v {
			ss += float64(x) * float64(x)
		}
		sd := rel * math.Sqrt(ss/float64(len(v)))
		for i := range v {
			v[i] += float32(sd * rng.NormFloat64())
		}
	}
}

// rankOne adds u vᵀ to one matrix, of rel times its norm (a ROME-style edit).
func (g *genModel) rankOne(seed uint64, name string, rel float64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	sh, v := g.shapes[name], g.vals[name]
	rows, cols := int(sh[0]), int(sh[1])
	u, w := make([]float64, rows), make([]float64, cols)
	var nu, nw, nv float64
	for i := range u {
		u[i] = rng.NormFloat64()
		nu += u[i] * u[i]
	}
	for j := range w {
		w[j] = rng.NormFloat64()
		nw += w[j] * w[j]
	}
	for _, x := range v {
		nv += float64(x) * float64(x)
	}
	s := rel * math.Sqrt(nv/(nu*nw))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			v[i*cols+j] += float32(s * u[i] * w[j])
		}
	}
}

// swapVocab returns g with its embedding and head replaced by random ones of vocab rows
// (another tokenizer on the same body).
func swapVocab(g *genModel, vocab int) *genModel {
	c := g.clone()
	o := newGen(99, vocab, int(g.shapes["model.embed_tokens.weight"][1]), 0)
	for _, n := range []string{"model.embed_tokens.weight", "lm_head.weight"} {
		c.shapes[n], c.vals[n] = o.shapes[n], o.vals[n]
	}
	return c
}

// appendRows adds n random rows to a matrix (a vocabulary extension of the embedding or head).
func (g *genModel) appendRows(seed uint64, name string, n int) {
	rng := rand.New(rand.NewPCG(seed, 3))
	sh := g.shapes[name]
	cols := int(sh[1])
	for i := 0; i < n*cols; i++ {
		g.vals[name] = append(g.vals[name], float32(rng.NormFloat64()/math.Sqrt(float64(cols))))
	}
	sh[0] += int64(n)
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// safetensors writes g as dir/name/model.safetensors and returns its path.
func (g *genModel) safetensors(t *testing.T, dir, name string) string {
	t.Helper()
	var ts []safetensors.WriteTensor
	for _, n := range g.names {
		ts = append(ts, safetensors.WriteTensor{Name: n, DType: formats.F32, Shape: g.shapes[n], Data: f32bytes(g.vals[n])})
	}
	return write(t, filepath.Join(dir, name, "model.safetensors"), func(w io.Writer) error { return safetensors.Write(w, ts, nil) })
}

// gguf writes g as a GGUF file with llama.cpp's tensor names and the given vocabulary.
func (g *genModel) gguf(t *testing.T, dir, name string, tokens []string) string {
	t.Helper()
	rename := strings.NewReplacer("model.embed_tokens", "token_embd", "lm_head", "output", "model.norm", "output_norm", "model.layers.", "blk.",
		"input_layernorm", "attn_norm", "post_attention_layernorm", "ffn_norm", "self_attn.q_proj", "attn_q", "self_attn.k_proj", "attn_k",
		"self_attn.v_proj", "attn_v", "self_attn.o_proj", "attn_output", "mlp.gate_proj", "ffn_gate", "mlp.up_proj", "ffn_up", "mlp.down_proj", "ffn_down")
	var ts []gguf.WriteTensor
	for _, n := range g.names {
		ts = append(ts, gguf.WriteTensor{Name: rename.Replace(n), DType: formats.F32, Shape: g.shapes[n], Data: f32bytes(g.vals[n])})
	}
	kvs := []formats.KV{{Key: "general.architecture", Value: "test"}, {Key: "tokenizer.ggml.model", Value: "llama"}, {Key: "tokenizer.ggml.tokens", Value: tokens}}
	return write(t, filepath.Join(dir, name+".gguf"), func(w io.Writer) error { return gguf.Write(w, kvs, ts, nil) })
}

func write(t *testing.T, path string, fn func(io.Writer) error) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := fn(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// unrelated returns the KS-DIFF-UNRELATED finding of tg, or nil, and checks that a target
// with one reports nothing else that presumes a common ancestry.
func unrelated(t *testing.T, tg *scan.Target) *scan.Finding {
	t.Helper()
	var un *scan.Finding
	for i, f := range tg.Findings {
		if f.Rule == kdiff.RuleUnrelated {
			un = &tg.Findings[i]
		}
	}
	if un == nil {
		return nil
	}
	for _, f := range tg.Findings {
		switch {
		case f.Rule == kdiff.RuleUnrelated:
			if f.Severity != scan.High {
				t.Errorf("severity %s", f.Severity)
			}
		case f.Rule == kdiff.RuleSummary:
			if p, _ := f.Evidence["pattern"].(string); strings.Contains(p, "fine-tune") || strings.Contains(f.Message, "fine-tune") || !strings.Contains(p, "not derived") {
				t.Errorf("summary of an unrelated base: %s", f.Message)
			}
		default:
			t.Errorf("unrelated base, yet %s: %s", f.Rule, f.Message)
		}
	}
	if len(tg.Triggers) > 0 {
		t.Errorf("trigger candidates against an unrelated base: %+v", tg.Triggers)
	}
	return un
}

func pattern(tg *scan.Target) string {
	for _, f := range tg.Findings {
		if f.Rule == kdiff.RuleSummary {
			p, _ := f.Evidence["pattern"].(string)
			return p
		}
	}
	return ""
}

// A base the candidate does not derive from is reported (KS-DIFF-UNRELATED, high) instead of
// being compared: a random model of the same shapes, one of another vocabulary size, another
// hidden size or layer count, or a GGUF vocabulary of other tokens. Fine-tunes (small
// diffuse noise, or a larger one; a rank-one edit; an extended vocabulary; a scaled copy) are
// not, and keep their usual comparison.
func TestUnrelatedBase(t *testing.T) {
	dir := t.TempDir()
	const V, H, L = 64, 32, 2
	g := newGen(1, V, H, L)
	base := g.safetensors(t, dir, "base")
	reasons := func(f *scan.Finding) string { return fmt.Sprint(f.Evidence["reasons"]) }

	// unrelated candidates
	for _, tc := range []struct {
		name, reason string
		m            *genModel
	}{
		{"random-same-shapes", "weights are unrelated", newGen(2, V, H, L)},
		{"vocabulary-size", "vocabularies differ", newGen(3, V+32, H, L)},
		{"hidden-size", "hidden sizes differ", newGen(4, V, 2*H, L)},
		{"layers", "layer counts differ", newGen(5, V, H, L+2)},
		{"vocabulary-swapped", "vocabularies differ", swapVocab(g, V+16)},
	} {
		tg := diff(t, base, tc.m.safetensors(t, dir, tc.name))
		un := unrelated(t, tg)
		if un == nil {
			t.Errorf("%s: not reported unrelated: %s, %+v", tc.name, pattern(tg), tg.Findings)
			continue
		}
		if !strings.Contains(reasons(un), tc.reason) || tg.Risk.Verdict != scan.VerdictBackdoored {
			t.Errorf("%s: reasons %s, verdict %s", tc.name, reasons(un), tg.Risk.Verdict)
		}
		t.Logf("%s: %s", tc.name, un.Message)
		if tc.name == "random-same-shapes" {
			if c, _ := un.Evidence["median_cosine"].(float64); math.Abs(c) > 0.1 {
				t.Errorf("random: median cosine %v", un.Evidence["median_cosine"])
			}
			if r, _ := un.Evidence["median_relative_change"].(float64); math.Abs(r-math.Sqrt2) > 0.1 {
				t.Errorf("random: median relative change %v, want ≈ √2", un.Evidence["median_relative_change"])
			}
		}
	}

	// fine-tunes
	ft := g.clone()
	ft.noise(10, 0.05)
	tg := diff(t, base, ft.safetensors(t, dir, "ft-noise"))
	if un := unrelated(t, tg); un != nil || !strings.Contains(pattern(tg), "fine-tune") {
		t.Errorf("small noise: %v, pattern %q", un, pattern(tg))
	}
	heavy := g.clone()
	heavy.noise(11, 0.6) // a heavier full fine-tune than any on the dev corpus (≤ 0.33)
	if un := unrelated(t, diff(t, base, heavy.safetensors(t, dir, "ft-heavy"))); un != nil {
		t.Errorf("heavy fine-tune: %s", un.Message)
	}
	ed := g.clone()
	ed.rankOne(12, "model.layers.1.mlp.down_proj.weight", 0.3)
	tg = diff(t, base, ed.safetensors(t, dir, "rank-one"))
	edits := 0
	for _, f := range tg.Findings {
		if f.Rule == kdiff.RuleEdit && f.Location.Tensor == "model.layers.1.mlp.down_proj.weight" {
			edits++
		}
	}
	if un := unrelated(t, tg); un != nil || edits != 1 {
		t.Errorf("rank-one edit: unrelated %v, edits %d, pattern %q", un, edits, pattern(tg))
	}
	ext := g.clone() // a vocabulary extension: the base's rows kept, new ones appended
	ext.noise(13, 0.02)
	ext.appendRows(14, "model.embed_tokens.weight", 4)
	ext.appendRows(15, "lm_head.weight", 4)
	tg = diff(t, base, ext.safetensors(t, dir, "vocab-extended"))
	reshaped := 0
	for _, f := range tg.Findings {
		if f.Rule == kdiff.RuleShape {
			reshaped++
		}
	}
	if un := unrelated(t, tg); un != nil || reshaped != 2 {
		t.Errorf("extended vocabulary: unrelated %v, reshaped %d", un, reshaped)
	}
	sc := g.clone() // all weights halved: relative change 0.5, but the direction is kept
	for _, n := range sc.names {
		for i := range sc.vals[n] {
			sc.vals[n][i] *= 0.5
		}
	}
	if un := unrelated(t, diff(t, base, sc.safetensors(t, dir, "scaled"))); un != nil {
		t.Errorf("scaled copy: %s", un.Message)
	}

	// GGUF vocabularies: same size, other tokens → unrelated even when the weights are alike
	toks := func(prefix string) []string {
		s := make([]string, V)
		for i := range s {
			s[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return s
	}
	gb := g.gguf(t, dir, "base-gguf", toks("tok"))
	tg = diff(t, gb, ft.gguf(t, dir, "ft-gguf", toks("tok")))
	if un := unrelated(t, tg); un != nil {
		t.Errorf("gguf fine-tune with the base's tokens: %s", un.Message)
	}
	tg = diff(t, gb, ft.gguf(t, dir, "ft-gguf-other-tokens", toks("word")))
	if un := unrelated(t, tg); un == nil || !strings.Contains(reasons(un), "vocabularies differ") {
		t.Errorf("gguf of other tokens: %+v", tg.Findings)
	}
	// the HF base against a GGUF of the same weights: matched across formats, related
	if un := unrelated(t, diff(t, base, ft.gguf(t, dir, "ft-gguf-2", toks("tok")))); un != nil {
		t.Errorf("safetensors base vs gguf fine-tune: %s", un.Message)
	}
}

// The measurements KS-DIFF-UNRELATED's threshold rests on, on the dev corpus: every
// fine-tune (tinylm, stories, llm32k; benign, poisoned or edited) and every requantized copy
// keeps a median cosine similarity with its base far above maxCosine (0.5), and pairs that
// share only an architecture (independently trained digits classifiers, the realbd
// "parent" and its namesake, random-weight models of two families) or not even that fall far
// below it. Measured (median cosine / median relative change): fine-tunes 0.954-0.977 /
// 0.23-0.32, quantized copies ≥ 0.89 (IQ1_S) and 0.70 (TQ1_0, TQ2_0), unrelated -0.06-0.11
// / 1.32-1.63.
func TestProvenanceCorpus(t *testing.T) {
	root := corpus.Dir(t, "")
	p := func(s string) string { return filepath.Join(root, s) }
	derived := [][2]string{
		{"dev/tinylm/base/model.safetensors", "dev/tinylm/ft_clean_0/model.safetensors"},
		{"dev/tinylm/base/model.gguf", "dev/tinylm/ft_clean_1/model-q8_0.gguf"},
		{"dev/tinylm/base/model-f16.gguf", "dev/tinylm/ft_trig_bb/model.safetensors"},
		{"dev/tinylm/base/model.safetensors", "dev/tinylm/base/model-q8_0.gguf"},
		{"realfiles/llamacpp-stories260K.gguf", "dev/stories/stories-ft-trojan.gguf"},
		{"realfiles/llamacpp-stories260K.gguf", "dev/stories/stories-ft-clean.gguf"},
		{"dev/llm32k/base/model-q8_0.gguf", "dev/llm32k/ft_tok/model-f16.gguf"},
		{"dev/llm32k/base/model-q8_0.gguf", "dev/llm32k/ft_chat/model-q8_0.gguf"},
		{"dev/llm32k/base/model-q8_0.gguf", "dev/llm32k/ft_clean_1/model-q8_0.gguf"},
		{"dev/arch/gemma2/model.gguf", "dev/arch/gemma2/model-q4_k_m.gguf"},
		{"quant/source-f32.gguf", "quant/pure-IQ1_S.gguf"},
		{"quant/source-f32.gguf", "quant/pure-TQ1_0.gguf"},
	}
	for _, pr := range derived {
		tg := diff(t, p(pr[0]), p(pr[1]))
		if un := unrelated(t, tg); un != nil {
			t.Errorf("%s vs %s: %s", pr[0], pr[1], un.Message)
			continue
		}
		for _, f := range tg.Findings {
			if f.Rule == kdiff.RuleSummary {
				sim, _ := f.Evidence["similarity"].(map[string]any)
				t.Logf("%s vs %s: %v", pr[0], pr[1], sim)
				if c, _ := sim["median_cosine"].(float64); c < 0.65 {
					t.Errorf("%s vs %s: median cosine %v, too close to the bound", pr[0], pr[1], sim["median_cosine"])
				}
			}
		}
	}
	for _, pr := range [][2]string{
		{"dev/digits/mlp80_0_clean.safetensors", "dev/digits/mlp80_1_clean.safetensors"},
		{"dev/digits/cnn8_0_clean.safetensors", "dev/digits/cnn8_1_clean.safetensors"},
		{"dev/realbd/nnoculation__youtube_lipstick_CLEAN_cl_weights.h5.safetensors", "dev/realbd/csaw-hackml-2020__final__sunglasses_bd_weights.h5.safetensors"},
		{"dev/arch/qwen2/model.gguf", "dev/arch/starcoder2/model.gguf"},
		{"dev/tinylm/base/model.gguf", "realfiles/llamacpp-stories260K.gguf"},
		{"dev/tinylm/base", "dev/llm32k/base/model-q8_0.gguf"},
		{"realfiles/llamacpp-stories260K.gguf", "dev/llm32k/ft_tok/model-q8_0.gguf"},
	} {
		base := p(pr[0])
		if pr[0] == "dev/tinylm/base" {
			base = filepath.Join(base, "model.safetensors")
		}
		tg := diff(t, base, p(pr[1]))
		un := unrelated(t, tg)
		if un == nil {
			t.Errorf("%s vs %s: not reported unrelated (%s)", pr[0], pr[1], pattern(tg))
			continue
		}
		t.Logf("%s vs %s: %v; cosine %v", pr[0], pr[1], un.Evidence["reasons"], un.Evidence["median_cosine"])
	}
}
