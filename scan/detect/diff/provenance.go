package diff

import (
	"fmt"
	"math"
	"strings"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/tokenizer"
	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/stats"
)

// Does the candidate derive from the base at all? A fine-tune, a merged adapter, a model
// edit, a requantization or a vocabulary extension keeps the base model's vocabulary, its
// architecture and, above all, the direction of its weights. Two independently trained or
// initialised models of one architecture keep none of it: for independent matrices B and C
// of the same scale, ‖C−B‖²≈‖B‖²+‖C‖², so the relative change ‖Δ‖/‖B‖ is ≈ √2 and the cosine
// ⟨B,C⟩/(‖B‖‖C‖) ≈ 0 (±1/√elements). A fine-tune moves little and keeps the direction: the
// "parameter direction" of a pretrained LLM survives continued pretraining, SFT and RLHF
// (Zeng et al., HuRef, NeurIPS 2024: offspring of LLaMA keep a parameter cosine close to 1,
// independently trained models are near 0), and delta-compression work on SFT models
// (DARE, Yu et al. 2023) finds deltas a small fraction of the weights. Measured on kensa's
// dev corpus (TestProvenanceCorpus): every fine-tune, benign or poisoned (tinylm, stories,
// llm32k; full fine-tunes of small models, which move more than large ones), keeps a median
// cosine of 0.954-0.977 at a median relative change of 0.23-0.32; quantized copies keep
// ≥ 0.89 down to IQ1_S and 0.70 for ternary TQ1_0/TQ2_0 (relative change 0.81); pairs that
// share only the architecture (independently trained digits classifiers and realbd models,
// random-weight arch models) give cosines of -0.06 to 0.11 (rows up to 0.14) at a relative
// change of 1.32-1.50.
//
// The weights are judged on the cosine, which does not depend on the scale: a copy scaled by
// s has relative change |s−1| but cosine 1, and it does derive. For two matrices of equal
// norm, cosine ½ is relative change exactly 1 (‖Δ‖² = 2‖B‖²(1−cos)); whatever the norms, a
// cosine below ½ means a relative change above √¾ ≈ 0.87.
const (
	// maxCosine: the median cosine similarity of matched matrices (both the whole-tensor
	// one and the median over their rows) below which the weights are unrelated: midway
	// between the unrelated pairs of the dev corpus (≤ 0.14) and the fine-tunes (≥ 0.95);
	// a ternary requantization (0.70) is still well above it.
	maxCosine = 0.5
	// minTokenShare: the share of the token ids both vocabularies have that must hold the same
	// token for the vocabulary to be the base model's (an extended vocabulary keeps the
	// base's ids; another tokenizer of the same size shares almost none).
	minTokenShare = 0.9
	// minComparable: the share of the tensors (of the larger model) that must pair with a
	// tensor of the same place and shape.
	minComparable = 0.5
)

// patternUnrelated is the summary's pattern when the candidate does not derive from the base.
const patternUnrelated = "not derived from the base model (the comparison is meaningless)"

// structure is what the tensor matching found.
type structure struct {
	matched                  int      // tensors paired by place (whatever their shapes)
	missing, extra, reshaped []string // base tensors without counterpart, candidate tensors without, shape mismatches
}

// provenance decides whether cand derives from base, from the vocabularies, the architecture
// and the measured pairs, and returns the KS-DIFF-UNRELATED finding when it does not (nil
// when it does), and in any case the weights' similarity (for the summary).
func provenance(base, cand *scan.Model, bk, ck map[string]int, st *structure, results []result) (*scan.Finding, map[string]any) {
	var reasons []string
	ev := map[string]any{}
	sim := map[string]any{} // for the summary, whatever the decision

	// vocabulary: the token lists when both models carry one, else the embedding rows
	eb, ec := embedding(base, bk), embedding(cand, ck)
	tb, tc := tokenList(base), tokenList(cand)
	if eb != nil && ec != nil {
		ev["base_embedding_shape"], ev["embedding_shape"] = eb.Shape, ec.Shape
	}
	switch {
	case tb != nil && tc != nil:
		n := min(len(tb), len(tc))
		same := 0
		for i := 0; i < n; i++ {
			if tb[i] == tc[i] {
				same++
			}
		}
		share := float64(same) / float64(max(n, 1))
		ev["base_vocabulary"], ev["vocabulary"], ev["shared_token_share"] = len(tb), len(tc), round3(share)
		sim["shared_token_share"] = round3(share)
		if share < minTokenShare {
			if len(tb) != len(tc) {
				reasons = append(reasons, fmt.Sprintf("the vocabularies differ: %d tokens in the base model, %d in the candidate, and only %.0f%% of the ids both have hold the same token", len(tb), len(tc), 100*share))
			} else {
				reasons = append(reasons, fmt.Sprintf("the vocabularies differ: both have %d tokens, but only %.0f%% of the ids hold the same token", len(tb), 100*share))
			}
		}
	case eb != nil && ec != nil && eb.Shape[0] != ec.Shape[0]:
		// no token lists to compare: an extended vocabulary keeps the base's rows
		ev["base_vocabulary"], ev["vocabulary"] = eb.Shape[0], ec.Shape[0]
		rc := math.NaN()
		if eb.Shape[1] == ec.Shape[1] {
			rc = sharedRows(base, cand, eb, ec)
			ev["shared_rows_cosine"] = round3(nan0(rc))
		}
		if !(rc >= maxCosine) {
			reasons = append(reasons, fmt.Sprintf("the vocabularies differ: the base model's embedding has %d rows, the candidate's %d (and the rows both have are unalike)", eb.Shape[0], ec.Shape[0]))
		}
	}
	// architecture: hidden size, layers, and how many tensors pair up at all
	if eb != nil && ec != nil && eb.Shape[1] != ec.Shape[1] {
		reasons = append(reasons, fmt.Sprintf("the hidden sizes differ: %d in the base model, %d in the candidate", eb.Shape[1], ec.Shape[1]))
	}
	if base.Layers != cand.Layers && base.Layers > 0 && cand.Layers > 0 {
		reasons = append(reasons, fmt.Sprintf("the layer counts differ: %d in the base model, %d in the candidate", base.Layers, cand.Layers))
	}
	ev["base_layers"], ev["layers"] = base.Layers, cand.Layers
	if ab, ac := metaString(base.Model, "general.architecture"), metaString(cand.Model, "general.architecture"); ab != "" && ac != "" {
		ev["base_architecture"], ev["architecture"] = ab, ac // GGUF both: shown, the shapes decide
	}
	nb, nc := len(base.Tensors), len(cand.Tensors)
	comparable := st.matched - len(st.reshaped)
	ev["base_tensors"], ev["tensors"], ev["comparable_tensors"] = nb, nc, comparable
	ev["missing"], ev["extra"], ev["reshaped"] = len(st.missing), len(st.extra), len(st.reshaped)
	if len(st.reshaped) > 0 {
		ev["reshaped_examples"] = st.reshaped[:min(3, len(st.reshaped))]
	}
	if float64(comparable) < minComparable*float64(max(nb, nc)) && !adapter(cand) {
		reasons = append(reasons, fmt.Sprintf("only %d of the %d tensors pair with a tensor of the same place and shape (%d of the base model's missing, %d of the candidate's without counterpart, %d reshaped)",
			comparable, max(nb, nc), len(st.missing), len(st.extra), len(st.reshaped)))
	}
	// weights: the matched matrices keep nothing of each other
	var rel, cos, rowCos []float64
	for _, r := range results {
		if len(base.Tensors[r.b].Shape) < 2 || math.IsNaN(r.cos) {
			continue // norms and biases look alike in any two models (all near 1 or 0)
		}
		rel, cos, rowCos = append(rel, r.rel), append(cos, r.cos), append(rowCos, r.rowCos)
	}
	if len(cos) > 0 {
		mRel, mCos, mRow := stats.Median(rel), stats.Median(cos), stats.Median(rowCos)
		if math.IsNaN(mRow) {
			mRow = mCos
		}
		sim["matrices_compared"] = len(cos)
		sim["median_relative_change"], sim["median_cosine"], sim["median_row_cosine"] = round3(mRel), round3(mCos), round3(mRow)
		ev["matrices_compared"] = len(cos)
		ev["median_relative_change"], ev["median_cosine"], ev["median_row_cosine"] = round3(mRel), round3(mCos), round3(mRow)
		if math.Max(mCos, mRow) < maxCosine {
			reasons = append(reasons, fmt.Sprintf("the weights are unrelated: over %d matched matrices the median cosine similarity is %.2f (rows: %.2f) and the median relative change ‖Δ‖/‖W‖ is %.2f, where a fine-tune keeps a cosine near 1 and independent weights of the same scale give 0 and √2",
				len(cos), mCos, mRow, mRel))
		}
	}
	if len(reasons) == 0 {
		return nil, sim
	}
	ev["reasons"] = reasons
	ev["base"] = base.Files[0].Path
	score := 1.0
	if len(reasons) == 1 && strings.HasPrefix(reasons[0], "the weights") {
		// weights alone: as sure as the cosine is far below the bound
		score = round3(math.Max(0.5, math.Min(1, 1-math.Max(0, ev["median_cosine"].(float64)))))
	}
	return &scan.Finding{Rule: RuleUnrelated, Title: "the candidate does not derive from the given base", Severity: scan.High, Score: score,
		Location: scan.Location{File: cand.Files[0].Path, Layer: -1},
		Evidence: ev,
		Message: fmt.Sprintf("the candidate does not derive from the base model %s: %s. Comparing the two is meaningless, so no tensor changes, edits or trigger rows are reported against it: either the candidate's claimed provenance is false, or the wrong base model was given",
			base.Files[0].Path, strings.Join(reasons, "; "))}, sim
}

// embedding returns the token embedding (2-D) of a model, or nil.
func embedding(m *scan.Model, k map[string]int) *formats.TensorInfo {
	if i, ok := k["-1/embed/weight"]; ok && len(m.Tensors[i].Shape) == 2 {
		return &m.Tensors[i]
	}
	return nil
}

// tokenList returns a model's vocabulary, token by token as stored (GGUF tokenizer.ggml.tokens,
// read directly; else the tokenizer.json beside the model), or nil.
func tokenList(m *scan.Model) []string {
	if v, ok := m.Meta("tokenizer.ggml.tokens"); ok {
		if s, ok := v.([]string); ok && len(s) > 0 {
			return s
		}
	}
	if m.Format == "gguf" {
		return nil
	}
	tk, err := tokenizer.FromModel(m.Model)
	if err != nil || tk.Len() == 0 {
		return nil
	}
	out := make([]string, tk.Len())
	for i := range out {
		out[i] = tk.Raw(i)
	}
	return out
}

// sharedRowSample bounds the embedding rows sharedRows reads.
const sharedRowSample = 4096

// sharedRows returns the median cosine similarity of the embedding rows both models have (up
// to sharedRowSample of them, evenly spaced), NaN when they cannot be read.
func sharedRows(base, cand *scan.Model, eb, ec *formats.TensorInfo) float64 {
	if !eb.DType.Decodable() || !ec.DType.Decodable() {
		return math.NaN()
	}
	br, err := base.NewTensorReader(eb)
	if err != nil {
		return math.NaN()
	}
	cr, err := cand.NewTensorReader(ec)
	if err != nil {
		return math.NaN()
	}
	rows, cols := min(eb.Shape[0], ec.Shape[0]), eb.Shape[1]
	step := max(1, rows/sharedRowSample)
	b, c := make([]float32, cols), make([]float32, cols)
	var cs []float64
	for i := int64(0); i < rows; i += step {
		if br.ReadElements(i*cols, b) != nil || cr.ReadElements(i*cols, c) != nil {
			return math.NaN()
		}
		var bb, bc, cc float64
		for j := range b {
			bb += float64(b[j]) * float64(b[j])
			bc += float64(b[j]) * float64(c[j])
			cc += float64(c[j]) * float64(c[j])
		}
		cs = append(cs, cosine(bc, bb, cc))
	}
	return stats.Median(cs)
}

// adapter reports whether most of a model's tensors are LoRA factors: an adapter, whose
// tensors have no counterpart in the base model by construction.
func adapter(m *scan.Model) bool {
	n := 0
	for _, r := range m.Roles {
		if r.Kind == "lora_a" || r.Kind == "lora_b" {
			n++
		}
	}
	return n*2 >= len(m.Roles) && n > 0
}

func nan0(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return x
}
