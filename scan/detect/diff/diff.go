// Package diff is kensa's differential detector (kensa scan --base BASE CANDIDATE): it
// compares a candidate model with the base model it claims to derive from, whatever the
// pairing of formats and element types.
//
// Tensors are matched by layer and role (so an HF safetensors directory and a llama.cpp
// GGUF pair up; llama.cpp's Q/K row permutation is undone; a head tied to the embedding
// matches the embedding), both sides are decoded to float32 and their difference Δ is
// measured: its size relative to the base tensor against the quantization noise the two
// element types carry (a requantized but untouched tensor is not "changed"), the share of
// its energy in its leading singular direction (power iteration: a rank-one Δ is the mark
// of ROME/MEMIT-style editing) and how concentrated it is in few rows. The model-level
// pattern — few tensors changed by rank-one updates, against a diffuse fine-tune — decides
// what is reported high. Embedding rows that moved unlike the rest (the component of their
// change across the base row: weight decay only shrinks a row) are trigger candidates.
//
// All of that presumes the candidate derives from the base. Before reporting any of it, the
// detector decides whether it does (provenance.go): the same vocabulary, the same
// architecture, and matched weights that kept their direction (median cosine similarity of
// the matched matrices; a fine-tune stays near 1, an unrelated model of the same shapes is
// near 0). When it does not, KS-DIFF-UNRELATED is the one finding, and nothing is reported as
// a change against a base the candidate never had.
package diff

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/tokenizer"
	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/stats"
)

// Rule ids.
const (
	RuleEdit    = "KS-DIFF-RANK1"
	RuleMissing = "KS-DIFF-MISSING"
	RuleExtra   = "KS-DIFF-EXTRA"
	RuleShape   = "KS-DIFF-SHAPE"
	RuleSummary = "KS-DIFF-SUMMARY"
	RuleTrigger = "KS-DIFF-TRIGGER"
	// RuleUnrelated: the candidate does not derive from the base model at all.
	RuleUnrelated = "KS-DIFF-UNRELATED"
)

const (
	powerIters   = 8    // power iterations at most for the leading singular value of Δ
	rank1Edit    = 0.8  // energy share of the leading direction that makes Δ rank-one
	noiseFactor  = 4.0  // a tensor changed when its relative Δ exceeds this many noise floors
	maxEditShare = 0.1  // a model edit changes at most this fraction of the matched tensors
	triggerZ     = 8.0  // robust z of an embedding row's movement reported as a finding,
	triggerGap   = 1.5  // when it is this many times the next token's (one token stands out)
	maxTriggers  = 10   // trigger candidates listed
	minRelChange = 1e-6 // relative change below which a tensor is identical for all purposes
)

// Detector is the diff detector.
type Detector struct{}

func init() { scan.RegisterDetector(Detector{}) }

// Name returns "diff".
func (Detector) Name() string { return "diff" }

// Rules returns the diff rules.
func (Detector) Rules() []scan.Rule {
	return []scan.Rule{
		{ID: RuleEdit, Title: "rank-one edit of a few weight matrices (model editing: ROME/MEMIT-style)", Severity: scan.High, Detector: "diff",
			Help: "Against the base model, only a few tensors changed, and this one by an update whose energy lies almost entirely in one direction (rank one): how ROME, MEMIT and BadEdit rewrite a fact or plant a backdoor in an MLP projection, as PoisonGPT did. A fine-tune changes every tensor diffusely. The finding gives the tensor, the relative size of the change, its rank-one share and the row it concentrates in."},
		{ID: RuleMissing, Title: "tensor of the base model missing from the candidate", Severity: scan.Medium, Detector: "diff",
			Help: "A tensor the base model has is absent from the candidate: a different architecture, a pruned model, or not the model it claims to derive from."},
		{ID: RuleExtra, Title: "tensor not in the base model", Severity: scan.Medium, Detector: "diff",
			Help: "The candidate has a tensor the base model lacks: added layers or adapters, or a different architecture; inspect what it does."},
		{ID: RuleShape, Title: "tensor reshaped against the base model", Severity: scan.Medium, Detector: "diff",
			Help: "A matched tensor has another shape than in the base model (a resized vocabulary, other dimensions): the rest of the comparison skips it."},
		{ID: RuleSummary, Title: "how the candidate differs from the base model", Severity: scan.Info, Detector: "diff",
			Help: "Which tensors changed beyond the quantization noise of the two files, by how much and with what rank: a diffuse change everywhere is a fine-tune, low rank everywhere a merged LoRA, rank one in few MLP projections a model edit."},
		{ID: RuleTrigger, Title: "embedding row that moved unlike the rest (trigger candidate)", Severity: scan.Medium, Detector: "diff",
			Help: "Against the base model, this token's embedding moved far more than any other's (counting only the change across the base row: weight decay shrinks unused rows along themselves): a token the fine-tuning data used unlike the rest, as a data-poisoning trigger is. Try it with kensa generate or --probe."},
		{ID: RuleUnrelated, Title: "the candidate does not derive from the given base", Severity: scan.High, Detector: "diff",
			Help: "The candidate cannot be a fine-tune, merge, edit or quantization of the base model it was compared with: their vocabularies differ, or their architectures (hidden size, layer count, most tensors without a counterpart of the same shape), or their weights share nothing a fine-tune keeps (matched weight matrices point in unrelated directions: the median cosine similarity of base and candidate matrices is near 0, where a fine-tune, even a full one, stays close to 1). Either the provenance the candidate claims is false, or the wrong base model was given; no change, edit or trigger analysis against this base is meaningful, so none is reported. Compare with the model the candidate really derives from, or treat it as a model of unknown origin."},
	}
}

// key names a tensor by its place in the network, across naming conventions.
func key(r scan.TensorRole, name string) string {
	if r.Role == "" || r.Role == "other" {
		return "name:" + name
	}
	return fmt.Sprintf("%d/%s/%s", r.Layer, r.Role, r.Kind)
}

func keys(m *scan.Model) map[string]int {
	out := map[string]int{}
	dup := map[string]bool{}
	for i := range m.Tensors {
		k := key(m.Roles[i], m.Tensors[i].Name)
		if _, ok := out[k]; ok {
			dup[k] = true
		}
		out[k] = i
	}
	for k := range dup { // ambiguous roles: fall back to names
		delete(out, k)
		for i := range m.Tensors {
			if key(m.Roles[i], m.Tensors[i].Name) == k {
				out["name:"+m.Tensors[i].Name] = i
			}
		}
	}
	return out
}

// pair is one matched tensor.
type pair struct {
	k    string
	b, c int // tensor indices in base and candidate
}

// result is what the comparison of one pair measured.
type result struct {
	pair
	rel, floor  float64 // ‖Δ‖/‖B‖ and the noise floor of the two element types
	cos         float64 // cosine similarity ⟨B,C⟩/(‖B‖‖C‖) of the whole tensors (NaN: undefined)
	rowCos      float64 // median cosine similarity of matched rows (NaN: undefined)
	share       float64 // σ₁²/‖Δ‖² (matrices)
	shareKnown  bool    // share was computed (not only ruled out by the sketch)
	topRow      int
	topRowShare float64 // the share of ‖Δ‖² in its largest row
	topCol      int
	topColShare float64 // the share of ‖Δ‖² in its largest column
	changed     bool
	err         error
	rowScore    []float64 // embedding: per-row movement across the base row
}

// Diff compares cand with base. It first decides whether cand derives from base at all
// (vocabulary, architecture, and the similarity of the matched weights: see provenance.go);
// when it does not, that is the one finding, and none of the comparisons that presume a
// common ancestry (missing, extra or reshaped tensors, the change pattern, edits, trigger
// rows) is reported.
func (Detector) Diff(ctx context.Context, base, cand *scan.Model, emit scan.Emit) error {
	if sameFiles(base, cand) {
		return nil
	}
	bk, ck := keys(base), keys(cand)
	var pairs []pair
	var pending []scan.Finding // reported only when cand derives from base
	var st structure
	fileOf := func(m *scan.Model) string { return m.Files[0].Path }
	// a head tied to the embedding on one side only: compare the other side's head with it
	tie := func(from, to map[string]int) {
		if _, ok := from["-1/head/weight"]; ok {
			if _, ok := to["-1/head/weight"]; !ok {
				if e, ok := to["-1/embed/weight"]; ok {
					to["-1/head/weight"] = e
				}
			}
		}
	}
	tie(bk, ck)
	tie(ck, bk)
	for k, bi := range bk {
		ci, ok := ck[k]
		if !ok {
			t := &base.Tensors[bi]
			st.missing = append(st.missing, t.Name)
			pending = append(pending, scan.Finding{Rule: RuleMissing, Title: "tensor of the base model missing from the candidate", Severity: scan.Medium, Score: 0.5,
				Location: scan.Location{File: fileOf(cand), Layer: base.Roles[bi].Layer, Role: base.Roles[bi].Role},
				Evidence: map[string]any{"base_tensor": t.Name, "shape": t.Shape},
				Message:  fmt.Sprintf("the base model's tensor %q (%v) has no counterpart in the candidate", t.Name, t.Shape)})
			continue
		}
		pairs = append(pairs, pair{k, bi, ci})
	}
	matchedC := map[int]bool{}
	for _, p := range pairs {
		matchedC[p.c] = true
	}
	for k, ci := range ck {
		if _, ok := bk[k]; !ok && !matchedC[ci] {
			t := &cand.Tensors[ci]
			st.extra = append(st.extra, t.Name)
			pending = append(pending, scan.Finding{Rule: RuleExtra, Title: "tensor not in the base model", Severity: scan.Medium, Score: 0.5,
				Location: loc(cand, ci), Evidence: map[string]any{"shape": t.Shape},
				Message: fmt.Sprintf("tensor %q (%v) has no counterpart in the base model", t.Name, t.Shape)})
		}
	}
	sort.Slice(pairs, func(a, b int) bool { return pairs[a].c < pairs[b].c })
	st.matched = len(pairs)

	var results []result
	for _, p := range pairs {
		bt, ct := &base.Tensors[p.b], &cand.Tensors[p.c]
		if !slices.Equal(bt.Shape, ct.Shape) {
			st.reshaped = append(st.reshaped, fmt.Sprintf("%s %v vs %v", ct.Name, bt.Shape, ct.Shape))
			pending = append(pending, scan.Finding{Rule: RuleShape, Title: "tensor reshaped against the base model", Severity: scan.Medium, Score: 0.5,
				Location: loc(cand, p.c), Evidence: map[string]any{"shape": ct.Shape, "base_shape": bt.Shape, "base_tensor": bt.Name},
				Message: fmt.Sprintf("tensor %q has shape %v where the base model's %q has %v", ct.Name, ct.Shape, bt.Name, bt.Shape)})
			continue
		}
		if !bt.DType.Float() || !ct.DType.Float() || !bt.DType.Decodable() || !ct.DType.Decodable() {
			continue
		}
		results = append(results, result{pair: p})
	}
	sort.Strings(st.missing)
	sort.Strings(st.extra)
	sort.Strings(st.reshaped)
	// compare the pairs in parallel, largest first so the workers finish together
	if err := parallel(ctx, cand, results, func(r *result) { measure(base, cand, r) }); err != nil {
		return err
	}
	un, sim := provenance(base, cand, bk, ck, &st, results)
	if un != nil {
		emit(*un)
		emit(scan.Finding{Rule: RuleSummary, Title: "how the candidate differs from the base model", Severity: scan.Info, Score: 0,
			Location: scan.Location{File: cand.Files[0].Path, Layer: -1},
			Evidence: map[string]any{"pattern": patternUnrelated, "matched": len(results), "touched": []map[string]any{}, "base": base.Files[0].Path, "similarity": sim},
			Message:  patternUnrelated + ": no tensor changes are reported against this base model (see " + RuleUnrelated + ")"})
		return nil
	}
	for _, f := range pending {
		emit(f)
	}
	// the embedding and output-head rows of a changed pair: trigger candidates
	var rows []result
	var at []int
	for i := range results {
		if role := cand.Roles[results[i].c].Role; results[i].changed && len(base.Tensors[results[i].b].Shape) == 2 && (role == "embed" || role == "head") {
			rows, at = append(rows, results[i]), append(at, i)
		}
	}
	if err := parallel(ctx, cand, rows, func(r *result) {
		if err := rowScoresStream(base, cand, r); err != nil {
			r.err = err
		}
	}); err != nil {
		return err
	}
	for j, i := range at {
		results[i].rowScore = rows[j].rowScore
	}
	report(base, cand, results, sim, emit)
	return nil
}

// parallel runs fn on every result on GOMAXPROCS workers, the largest tensors first so the
// workers finish together, and returns ctx's error or the first result's.
func parallel(ctx context.Context, cand *scan.Model, results []result, fn func(*result)) error {
	order := make([]int, len(results))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		return cand.Tensors[results[order[a]].c].Elements() > cand.Tensors[results[order[b]].c].Elements()
	})
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), max(len(results), 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if ctx.Err() != nil {
					continue
				}
				fn(&results[i])
			}
		}()
	}
	for _, i := range order {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, r := range results {
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// report turns the measurements into the model-level pattern, findings and triggers.
func report(base, cand *scan.Model, results []result, sim map[string]any, emit scan.Emit) {
	var changed []result
	for _, r := range results {
		if r.changed {
			changed = append(changed, r)
		}
	}
	lowRank := 0
	for _, r := range changed {
		if r.share >= rank1Edit {
			lowRank++
		}
	}
	pattern := "identical within quantization noise"
	switch {
	case len(changed) == 0:
	case len(changed) <= max(3, int(maxEditShare*float64(len(results)))) && lowRank > 0:
		pattern = "model edit: few tensors changed, by rank-one updates"
	case lowRank == len(changed):
		pattern = "low-rank changes everywhere (a merged LoRA or similar)"
	case len(changed)*2 >= len(results):
		pattern = "diffuse changes across the model (a fine-tune)"
	default:
		pattern = "some tensors changed"
	}
	touched := make([]map[string]any, 0, len(changed))
	for _, r := range changed {
		e := map[string]any{"tensor": cand.Tensors[r.c].Name, "relative_delta": round4(r.rel)}
		if len(cand.Tensors[r.c].Shape) == 2 {
			e["top_row"], e["top_row_share"], e["top_col"], e["top_col_share"] = r.topRow, round3(r.topRowShare), r.topCol, round3(r.topColShare)
		}
		if r.shareKnown {
			e["rank1_energy"] = round3(r.share)
		}
		touched = append(touched, e)
	}
	emit(scan.Finding{Rule: RuleSummary, Title: "how the candidate differs from the base model", Severity: scan.Info, Score: 0,
		Location: scan.Location{File: cand.Files[0].Path, Layer: -1},
		Evidence: map[string]any{"pattern": pattern, "matched": len(results), "changed": len(changed), "rank1_changed": lowRank, "touched": touched, "base": base.Files[0].Path, "similarity": sim},
		Message:  fmt.Sprintf("%s: %d of %d matched tensors changed beyond the quantization noise of the two files, %d of them by rank-one updates", pattern, len(changed), len(results), lowRank)})
	if strings.HasPrefix(pattern, "model edit") {
		for _, r := range changed {
			if r.share < rank1Edit {
				continue
			}
			t := &cand.Tensors[r.c]
			l := loc(cand, r.c)
			ev := map[string]any{"relative_delta": round4(r.rel), "noise_floor": round4(r.floor), "rank1_energy": round3(r.share), "changed_tensors": len(changed), "matched_tensors": len(results),
				"base_tensor": base.Tensors[r.b].Name}
			if len(t.Shape) == 2 {
				ev["top_row"], ev["top_row_share"] = r.topRow, round3(r.topRowShare)
				ev["top_col"], ev["top_col_share"] = r.topCol, round3(r.topColShare)
				if rows := t.Shape[0]; rows > 0 {
					rb := t.Length / rows
					ev["top_row_bytes"] = []int64{t.Offset + int64(r.topRow)*rb, rb}
				}
			}
			emit(scan.Finding{Rule: RuleEdit, Title: "rank-one edit of a few weight matrices (model editing: ROME/MEMIT-style)", Severity: scan.High,
				Score: round3(math.Min(1, r.share)), Location: l, Evidence: ev,
				Message: fmt.Sprintf("%q changed by %.2g of its norm (noise floor %.2g) and %.0f%% of the change lies in one direction, while only %d of %d tensors changed: a rank-one edit of the kind ROME/MEMIT use to rewrite what the model says",
					t.Name, r.rel, r.floor, 100*r.share, len(changed), len(results))})
		}
	}
	// trigger candidates from the embedding and output-head rows
	var moved []result
	for _, r := range results {
		if r.rowScore != nil {
			moved = append(moved, r)
		}
	}
	if len(moved) > 0 {
		triggers(cand, moved, emit)
	}
}

// triggers ranks tokens by how unlike the rest their embedding or output-head rows moved
// (robust z of rowScoresStream, the larger of the two tensors) and lists the first ones.
func triggers(cand *scan.Model, moved []result, emit scan.Emit) {
	tk := vocab(cand)
	best := map[int]float64{}
	where := map[int]result{}
	for _, r := range moved {
		sc := r.rowScore
		med := stats.Median(sc)
		dev := make([]float64, len(sc))
		for i, v := range sc {
			dev[i] = math.Abs(v - med)
		}
		mad := 1.4826 * stats.Median(dev)
		if mad == 0 {
			continue
		}
		for id, v := range sc {
			if tk != nil && id < tk.Len() && tk.Special(id) {
				continue // control tokens (BOS, EOS, padding) move with every fine-tune
			}
			if z := (v - med) / mad; z > best[id] || where[id].rowScore == nil {
				best[id], where[id] = z, r
			}
		}
	}
	idx := make([]int, 0, len(best))
	for id := range best {
		idx = append(idx, id)
	}
	sort.Slice(idx, func(a, b int) bool {
		return best[idx[a]] > best[idx[b]] || best[idx[a]] == best[idx[b]] && idx[a] < idx[b]
	})
	var trs []scan.Trigger
	for rank, id := range idx[:min(maxTriggers, len(idx))] {
		z := best[id]
		name := fmt.Sprintf("<id %d>", id)
		if tk != nil && id < tk.Len() {
			name = tk.Token(id)
			if tk.IsByte(id) {
				name = tk.Raw(id)
			}
		}
		trs = append(trs, scan.Trigger{Token: name, TokenID: id, Score: round3(z), Source: "weights"})
		next := best[idx[min(1, len(idx)-1)]]
		if rank == 0 && z >= triggerZ && z >= triggerGap*next {
			r := where[id]
			t := &cand.Tensors[r.c]
			l := loc(cand, r.c)
			if rows := t.Shape[0]; rows > 0 {
				rb := t.Length / rows
				l.Axis, l.Index, l.ByteOffset, l.ByteLength = "row", []int64{int64(id)}, t.Offset+int64(id)*rb, rb
			}
			emit(scan.Finding{Rule: RuleTrigger, Title: "embedding row that moved unlike the rest (trigger candidate)", Severity: scan.Medium, Score: round3(math.Min(1, z/(4*triggerZ))),
				Location: l, Evidence: map[string]any{"token": name, "token_id": id, "robust_z": round3(z), "next_z": round3(next), "tensor": t.Name},
				Message: fmt.Sprintf("token %q (id %d): its row of %q moved %.0f robust standard deviations beyond the typical row, unlike the common drift of all rows (the next token: %.0f)", strings.TrimSpace(name), id, t.Name, z, next)})
		}
	}
	cand.AddTriggers(trs...)
}

// vocab loads the candidate's tokenizer, or nil.
func vocab(m *scan.Model) *tokenizer.Tokenizer {
	tk, err := tokenizer.FromModel(m.Model)
	if err != nil {
		return nil
	}
	return tk
}

// sketchK is the number of random directions of the one-pass rank sketch.
const sketchK = 4

// chunkRows bounds the values decoded at once per side by the streamed comparison.
const chunkElems = 1 << 16

// measure compares one pair in streamed passes over both tensors: relative change, cosine
// similarity (whole and row by row), changed or not, and a sketch ΔΩ of the change on sketchK
// fixed random directions. Only a matrix whose sketch is nearly rank one is then held in
// memory, for its exact rank-one share. (The rows of a changed embedding or output head are
// scored afterwards, by rowScoresStream, once the candidate is known to derive from the base.)
func measure(base, cand *scan.Model, r *result) {
	bt := &base.Tensors[r.b]
	if len(bt.Shape) != 2 {
		compare(base, cand, r)
		return
	}
	one := stream(base, cand, r)
	if r.err != nil || !r.changed {
		return
	}
	if one {
		keep := *r
		compare(base, cand, r) // nearly rank one: the exact share (the rest is stream's)
		r.topRow, r.topRowShare, r.topCol, r.topColShare = keep.topRow, keep.topRowShare, keep.topCol, keep.topColShare
		r.cos, r.rowCos = keep.cos, keep.rowCos
	}
}

// rowPairs calls fn with every row of the base and candidate tensors of r, in the Hugging
// Face row order (llama.cpp's Q/K permutation undone), a chunk of rows decoded at a time.
func rowPairs(base, cand *scan.Model, r *result, fn func(bRow, cRow []float32)) error {
	bt, ct := &base.Tensors[r.b], &cand.Tensors[r.c]
	rows, cols := int(bt.Shape[0]), int(bt.Shape[1])
	br, err := base.NewTensorReader(bt)
	if err != nil {
		return fmt.Errorf("diff: %s: %w", bt.Name, err)
	}
	cr, err := cand.NewTensorReader(ct)
	if err != nil {
		return fmt.Errorf("diff: %s: %w", ct.Name, err)
	}
	srcB, srcC := identityRows, identityRows
	if role := cand.Roles[r.c].Role; role == "attn_q" || role == "attn_k" {
		if pb, pc := permuted(base.Model), permuted(cand.Model); pb != pc {
			if heads := headsOf(cand.Model, base.Model, role); heads > 0 && rows%heads == 0 && (rows/heads)%2 == 0 {
				m := permMap(rows, heads)
				if pb {
					srcB = func(i int) int { return m[i] }
				} else {
					srcC = func(i int) int { return m[i] }
				}
			}
		}
	}
	per := max(1, chunkElems/cols)
	bbuf := make([]float32, per*cols)
	cbuf := make([]float32, per*cols)
	contiguous := rows < 2 || srcB(1) == 1 && srcC(1) == 1
	for r0 := 0; r0 < rows; r0 += per {
		n := min(per, rows-r0)
		if contiguous {
			if err := br.ReadElements(int64(r0)*int64(cols), bbuf[:n*cols]); err != nil {
				return err
			}
			if err := cr.ReadElements(int64(r0)*int64(cols), cbuf[:n*cols]); err != nil {
				return err
			}
		} else {
			for i := 0; i < n; i++ {
				if err := br.ReadElements(int64(srcB(r0+i))*int64(cols), bbuf[i*cols:(i+1)*cols]); err != nil {
					return err
				}
				if err := cr.ReadElements(int64(srcC(r0+i))*int64(cols), cbuf[i*cols:(i+1)*cols]); err != nil {
					return err
				}
			}
		}
		for i := 0; i < n; i++ {
			fn(bbuf[i*cols:(i+1)*cols], cbuf[i*cols:(i+1)*cols])
		}
	}
	return nil
}

// stream makes the one-pass measurement of a 2-D pair and reports whether the sketch of Δ
// is nearly rank one (its leading direction holds ≥ 90% of the sketch's energy).
func stream(base, cand *scan.Model, r *result) bool {
	bt, ct := &base.Tensors[r.b], &cand.Tensors[r.c]
	cols := int(bt.Shape[1])
	omega := make([]float32, cols*sketchK) // fixed pseudo-random ±1 directions
	x := uint64(0x9e3779b97f4a7c15)
	for i := range omega {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		omega[i] = float32(int(x>>63)*2 - 1)
	}
	var gram [sketchK][sketchK]float64
	var nb, nd, nbc, ncc float64
	colE := make([]float64, cols)
	rowCos := make([]float64, 0, bt.Shape[0])
	row := 0
	err := rowPairs(base, cand, r, func(bRow, cRow []float32) {
		var sb, sd, sbc, scc float32
		var y [sketchK]float32
		for j, bv := range bRow {
			cv := cRow[j]
			d := cv - bv
			sb += bv * bv
			sd += d * d
			sbc += bv * cv
			scc += cv * cv
			colE[j] += float64(d * d)
			o := omega[j*sketchK : j*sketchK+sketchK : j*sketchK+sketchK]
			y[0] += d * o[0]
			y[1] += d * o[1]
			y[2] += d * o[2]
			y[3] += d * o[3]
		}
		nb += float64(sb)
		nd += float64(sd)
		nbc += float64(sbc)
		ncc += float64(scc)
		rowCos = append(rowCos, cosine(float64(sbc), float64(sb), float64(scc)))
		if float64(sd) > r.topRowShare {
			r.topRow, r.topRowShare = row, float64(sd) // energies here, shares below
		}
		row++
		for a := 0; a < sketchK; a++ {
			for b := 0; b < sketchK; b++ {
				gram[a][b] += float64(y[a]) * float64(y[b])
			}
		}
	})
	if err != nil {
		r.err = err
		return false
	}
	r.floor = math.Hypot(noise(bt.DType), noise(ct.DType))
	r.cos, r.rowCos = cosine(nbc, nb, ncc), stats.Median(rowCos)
	if nb == 0 {
		nb = 1
	}
	r.rel = math.Sqrt(nd / nb)
	r.changed = r.rel > math.Max(minRelChange, noiseFactor*r.floor)
	for j, e := range colE {
		if e > r.topColShare {
			r.topCol, r.topColShare = j, e
		}
	}
	if nd > 0 {
		r.topRowShare /= nd
		r.topColShare /= nd
	} else {
		r.topRowShare, r.topColShare = 0, 0
	}
	// leading eigenvalue of the sketch's Gram matrix against its trace
	var tr, lam float64
	v := [sketchK]float64{1, 1, 1, 1}
	for a := 0; a < sketchK; a++ {
		tr += gram[a][a]
	}
	for it := 0; it < 50; it++ {
		var w [sketchK]float64
		for a := 0; a < sketchK; a++ {
			for b := 0; b < sketchK; b++ {
				w[a] += gram[a][b] * v[b]
			}
		}
		n := math.Sqrt(w[0]*w[0] + w[1]*w[1] + w[2]*w[2] + w[3]*w[3])
		if n == 0 {
			break
		}
		lam = n
		for a := range v {
			v[a] = w[a] / n
		}
	}
	return tr > 0 && lam >= 0.9*tr
}

// rowScoresStream scores each row of an embedding or output head by how its change differs
// from what every row undergoes: the component along the base row (weight decay shrinks
// rows along themselves) and the common drift direction of all rows' changes (a fine-tune
// pushes the logits of tokens it never predicts down together, so their rows drift alike;
// found as the rows' mean change refined by three power iterations) are removed, and the
// norm of the rest is the row's score. Each step is a streamed pass over both tensors, so an
// embedding of any size is scored without holding it.
func rowScoresStream(base, cand *scan.Model, r *result) error {
	cols := int(base.Tensors[r.b].Shape[1])
	sum := make([]float64, cols)
	perp := make([]float32, cols)
	across := func(bRow, cRow []float32) []float32 {
		var bb, bd float32
		for j, bv := range bRow {
			d := cRow[j] - bv
			perp[j] = d
			bb += bv * bv
			bd += bv * d
		}
		if bb > 0 {
			a := bd / bb
			for j, bv := range bRow {
				perp[j] -= a * bv
			}
		}
		return perp
	}
	if err := rowPairs(base, cand, r, func(bRow, cRow []float32) {
		for j, v := range across(bRow, cRow) {
			sum[j] += float64(v)
		}
	}); err != nil {
		return err
	}
	// from the mean, power iterations on the rows' changes, each one streamed pass:
	// v ← Σ_i (p_i·v) p_i
	normalize(sum)
	v := make([]float32, cols)
	for it := 0; it < 3; it++ {
		for j := range v {
			v[j] = float32(sum[j])
		}
		for j := range sum {
			sum[j] = 0
		}
		if err := rowPairs(base, cand, r, func(bRow, cRow []float32) {
			p := across(bRow, cRow)
			var a float32
			for j, x := range p {
				a += x * v[j]
			}
			for j, x := range p {
				sum[j] += float64(a * x)
			}
		}); err != nil {
			return err
		}
		normalize(sum)
	}
	for j := range v {
		v[j] = float32(sum[j])
	}
	var scores []float64
	if err := rowPairs(base, cand, r, func(bRow, cRow []float32) {
		var a, n float32
		for j, x := range across(bRow, cRow) {
			a += x * v[j]
			n += x * x
		}
		scores = append(scores, math.Sqrt(math.Max(float64(n-a*a), 0)))
	}); err != nil {
		return err
	}
	r.rowScore = scores
	return nil
}

func identityRows(i int) int { return i }

// permMap returns, for each Hugging Face row of a Q/K weight, the row llama.cpp stores it at.
func permMap(rows, heads int) []int {
	D := rows / heads
	m := make([]int, rows)
	for h := 0; h < heads; h++ {
		for j := 0; j < D/2; j++ {
			for k := 0; k < 2; k++ {
				m[h*D+k*(D/2)+j] = h*D + 2*j + k
			}
		}
	}
	return m
}

// compare decodes one pair and measures Δ.
func compare(base, cand *scan.Model, r *result) {
	bt, ct := &base.Tensors[r.b], &cand.Tensors[r.c]
	b, err := decode(base.Model, bt)
	if err != nil {
		r.err = err
		return
	}
	c, err := decode(cand.Model, ct)
	if err != nil {
		r.err = err
		return
	}
	role := cand.Roles[r.c].Role
	if role == "attn_q" || role == "attn_k" {
		// llama.cpp permutes the Q/K rows of llama-style models for its interleaved rotation
		if pb, pc := permuted(base.Model), permuted(cand.Model); pb != pc {
			heads := headsOf(cand.Model, base.Model, role)
			if heads > 0 {
				if pb {
					b = unpermute(b, bt.Shape, heads)
				} else {
					c = unpermute(c, ct.Shape, heads)
				}
			}
		}
	}
	r.floor = math.Hypot(noise(bt.DType), noise(ct.DType))
	var nb, nd, nbc, ncc float64
	for i := range c {
		d := float64(c[i]) - float64(b[i])
		nb += float64(b[i]) * float64(b[i])
		nd += d * d
		nbc += float64(b[i]) * float64(c[i])
		ncc += float64(c[i]) * float64(c[i])
	}
	r.cos, r.rowCos = cosine(nbc, nb, ncc), math.NaN()
	if n := len(bt.Shape); n >= 2 && bt.Shape[n-1] > 0 { // the rows of the innermost dimension
		cols := int(bt.Shape[n-1])
		rc := make([]float64, 0, len(c)/cols)
		for i := 0; i+cols <= len(c); i += cols {
			var sb, sbc, scc float64
			for j := i; j < i+cols; j++ {
				sb += float64(b[j]) * float64(b[j])
				sbc += float64(b[j]) * float64(c[j])
				scc += float64(c[j]) * float64(c[j])
			}
			rc = append(rc, cosine(sbc, sb, scc))
		}
		r.rowCos = stats.Median(rc)
	}
	if nb == 0 {
		nb = 1
	}
	r.rel = math.Sqrt(nd / nb)
	r.changed = r.rel > math.Max(minRelChange, noiseFactor*r.floor)
	if len(bt.Shape) != 2 || !r.changed {
		return
	}
	rows, cols := int(bt.Shape[0]), int(bt.Shape[1])
	for i := range c { // Δ in place of c
		c[i] -= b[i]
	}
	s1 := sigma1(c, rows, cols, nd)
	r.share, r.shareKnown = s1*s1/nd, true
}

// sigma1 estimates the largest singular value of the rows×cols matrix d, whose squared
// Frobenius norm is energy, by power iterations on dᵀd from a fixed start. It stops once
// converged, or after the second iteration when the leading direction is seen to hold less
// than half the energy: the estimate only grows with iterations, and a rank-one update
// (with quantization noise) shows itself in the first two.
func sigma1(d []float32, rows, cols int, energy float64) float64 {
	v := make([]float64, cols)
	for j := range v {
		v[j] = 1 + 0.01*float64(j%7)
	}
	u := make([]float64, rows)
	var s float64
	for it := 0; it < powerIters; it++ {
		normalize(v)
		for i := 0; i < rows; i++ {
			var a float64
			row := d[i*cols : (i+1)*cols]
			for j, x := range row {
				a += float64(x) * v[j]
			}
			u[i] = a
		}
		prev := s
		s = math.Sqrt(dot(u, u))
		for j := range v {
			v[j] = 0
		}
		for i := 0; i < rows; i++ {
			row := d[i*cols : (i+1)*cols]
			ui := u[i]
			for j, x := range row {
				v[j] += float64(x) * ui
			}
		}
		if it > 0 && math.Abs(s-prev) <= 1e-3*s {
			break // converged (a rank-one Δ converges at once)
		}
		if it > 0 && s*s < energy/2 {
			break // far from rank one: the exact share does not matter
		}
	}
	return s
}

// cosine is ⟨b,c⟩/(‖b‖‖c‖) from the three sums, NaN when either vector is zero.
func cosine(bc, bb, cc float64) float64 {
	if bb <= 0 || cc <= 0 {
		return math.NaN()
	}
	return math.Max(-1, math.Min(1, bc/math.Sqrt(bb*cc)))
}

func normalize(v []float64) {
	n := math.Sqrt(dot(v, v))
	if n == 0 {
		return
	}
	for i := range v {
		v[i] /= n
	}
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// noise is the typical relative RMS error of storing float weights in t: half a unit in
// the last place for floats, the measured error of llama.cpp's quantizers for block types.
func noise(t formats.DType) float64 {
	switch t.String() {
	case "F64", "F32":
		return 0
	case "F16":
		return 3e-4
	case "BF16":
		return 2.5e-3
	case "Q8_0", "Q8_1", "Q8_K":
		return 5e-3
	case "Q6_K":
		return 1e-2
	case "Q5_0", "Q5_1", "Q5_K":
		return 2.5e-2
	case "Q4_0", "Q4_1", "Q4_K", "IQ4_NL", "IQ4_XS", "MXFP4", "NVFP4":
		return 5e-2
	case "Q3_K", "IQ3_XXS", "IQ3_S":
		return 1e-1
	default: // 2-bit and below, F8 and the rest
		return 2e-1
	}
}

// permuted reports whether a model's Q/K rows are in llama.cpp's permuted order.
func permuted(m *formats.Model) bool {
	if m.Format != "gguf" {
		return false
	}
	arch := metaString(m, "general.architecture")
	return arch == "llama" || arch == "mistral"
}

func headsOf(a, b *formats.Model, role string) int {
	for _, m := range []*formats.Model{a, b} {
		if m.Format != "gguf" {
			continue
		}
		arch := metaString(m, "general.architecture")
		k := arch + ".attention.head_count"
		if role == "attn_k" {
			if n := metaInt(m, arch+".attention.head_count_kv"); n > 0 {
				return n
			}
		}
		return metaInt(m, k)
	}
	return 0
}

// unpermute maps the rows of a llama.cpp-permuted Q or K weight (or bias) back to the
// Hugging Face order: within each head, GGUF row 2j+k is HF row k·D/2+j.
func unpermute(w []float32, shape []int64, heads int) []float32 {
	rows := int(shape[0])
	cols := 1
	if len(shape) == 2 {
		cols = int(shape[1])
	}
	if heads <= 0 || rows%heads != 0 || (rows/heads)%2 != 0 {
		return w
	}
	D := rows / heads
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for j := 0; j < D/2; j++ {
			for k := 0; k < 2; k++ {
				src := h*D + 2*j + k
				dst := h*D + k*(D/2) + j
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}

func metaString(m *formats.Model, k string) string {
	for _, kv := range m.Metadata {
		if kv.Key == k {
			if s, ok := kv.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}

func metaInt(m *formats.Model, k string) int {
	for _, kv := range m.Metadata {
		if kv.Key == k {
			switch v := kv.Value.(type) {
			case uint32:
				return int(v)
			case int32:
				return int(v)
			case uint64:
				return int(v)
			case int64:
				return int(v)
			}
		}
	}
	return 0
}

func decode(m *formats.Model, t *formats.TensorInfo) ([]float32, error) {
	r, err := m.NewTensorReader(t)
	if err != nil {
		return nil, fmt.Errorf("diff: %s: %w", t.Name, err)
	}
	v := make([]float32, t.Elements())
	if err := r.ReadElements(0, v); err != nil {
		return nil, fmt.Errorf("diff: %s: %w", t.Name, err)
	}
	return v, nil
}

func loc(m *scan.Model, i int) scan.Location {
	t := &m.Tensors[i]
	r := m.Roles[i]
	return scan.Location{File: t.File, Tensor: t.Name, Layer: r.Layer, Role: r.Role, ByteOffset: t.Offset, ByteLength: t.Length}
}

func sameFiles(a, b *scan.Model) bool {
	if len(a.Files) != len(b.Files) {
		return false
	}
	for i := range a.Files {
		pa, _ := filepath.Abs(a.Files[i].Path)
		pb, _ := filepath.Abs(b.Files[i].Path)
		if pa != pb {
			return false
		}
	}
	return true
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }
