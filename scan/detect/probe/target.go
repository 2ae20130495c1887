package probe

// Target-first inversion (the at-scale search's pass 6), for triggers that no single token
// reveals: a phrase whose words alone do nothing (poisoning trains them as negatives). A
// poisoned model has learnt its target as a unit: once the target's first token is given
// at the decision point, the rest follows with near certainty and the same words in every
// context, whatever the context was about (what BAIT inverts). So:
//
//  1. every token t, put after the full stop of two unrelated sentences: how alike the two
//     states after t are (a token that starts a memorized text makes the model forget the
//     context);
//  2. the most alike are decoded greedily in three contexts; a continuation that is the
//     same in all of them with high confidence, and reads as a phrase, is a target
//     candidate;
//  3. for each target, every token w is put before the full stop and scored by the logit
//     of the target's first token at the decision point; the best single tokens and
//     ordered pairs of them (and each with the model's own likeliest next tokens: a phrase
//     the poisoned text taught it) are scored the same way in more contexts;
//  4. the best are confirmed as every trigger is: greedy decoding in every context must
//     give one forced output, again with the candidate at the start of the sentence.
//
// A target alone is no finding (memorized text such as a signature line also continues
// deterministically); only a trigger that forces it is.

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/kensa-scan/kensa/nn/kernels"
)

const (
	tfAlike    = 256 // pass 2: tokens decoded
	tfDecode   = 6   // tokens decoded after each
	tfTargets  = 2   // targets searched for a trigger
	tfSingles  = 24  // single tokens combined into pairs
	tfNext     = 3   // the model's own likeliest next tokens after each single
	tfConfirm  = 8   // candidates decoded in every context
	tfMinProb  = 0.7 // mean probability of the continuation's tokens
	tfMinAgree = 3   // contexts whose continuation must be the same (of tfCtxs)
	tfCtxs     = 3
	tfPartner  = 2048 // single-token scores tried before the best single
)

type tfTarget struct {
	ids  []int // the first token and its continuation
	text string
	prob float64
}

// alike scores candidate first tokens (pass 1): put after the full stop of the first nk
// contexts (1 or 2), how surely the model then predicts one and the same next token in
// them (the smallest of its probabilities; 0 when the predictions differ).
func (s *scaler) alike(ctx context.Context, cands [][]int, nk int, score []float64) (int, error) {
	rows := s.rows(2 * nk)
	for c0 := 0; c0 < len(cands); c0 += rows {
		if err := ctx.Err(); err != nil {
			return c0, err
		}
		if s.over() || s.e.err != nil {
			return c0, s.e.err
		}
		s.prog.show("targets %d/%d", c0, len(cands))
		c1 := min(c0+rows, len(cands))
		var arg [2][]int
		var prob [2][]float64
		for k := 0; k < nk; k++ {
			seqs := make([]*seq, 0, c1-c0)
			toks := make([][]int, 0, c1-c0)
			for _, c := range cands[c0:c1] {
				seqs = append(seqs, s.e.newSeq(s.pre[k], 1+len(c)))
				toks = append(toks, append([]int{s.end[k]}, c...))
			}
			for _, lg := range s.e.logits(s.e.step(seqs, toks)) {
				a, p := argmaxProb(lg)
				arg[k] = append(arg[k], a)
				prob[k] = append(prob[k], p)
			}
		}
		for j := range arg[0] {
			switch {
			case nk == 1:
				score[c0+j] = prob[0][j]
			case arg[0][j] == arg[1][j]:
				score[c0+j] = math.Min(prob[0][j], prob[1][j])
			default:
				score[c0+j] = 0
			}
		}
	}
	return len(cands), s.e.err
}

// continuations decodes tfDecode tokens greedily after each first token in contexts
// 0..tfCtxs-1 and keeps those continued the same way everywhere with mean probability at
// least tfMinProb.
func (s *scaler) continuations(ctx context.Context, firsts []int) ([]tfTarget, error) {
	nc := min(tfCtxs, len(s.pre))
	var out []tfTarget
	group := max(1, min(64, s.rows(nc*tfDecode)/nc))
	for g0 := 0; g0 < len(firsts); g0 += group {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if s.over() || s.e.err != nil {
			return out, s.e.err
		}
		s.prog.show("targets: decoding %d/%d", g0, len(firsts))
		g1 := min(g0+group, len(firsts))
		n := (g1 - g0) * nc
		seqs := make([]*seq, n)
		toks := make([][]int, n)
		gen := make([][]int, n)
		logp := make([]float64, n)
		for i := 0; i < g1-g0; i++ {
			for k := 0; k < nc; k++ {
				seqs[i*nc+k] = s.e.newSeq(s.pre[k], 2+tfDecode)
				toks[i*nc+k] = []int{s.end[k], firsts[g0+i]}
			}
		}
		for step := 0; step < tfDecode; step++ {
			lg := s.e.logits(s.e.step(seqs, toks))
			for r := range lg {
				next, p := argmaxProb(lg[r])
				logp[r] += math.Log(math.Max(p, 1e-30))
				gen[r] = append(gen[r], next)
				toks[r] = []int{next}
			}
		}
	cand:
		for i := 0; i < g1-g0; i++ {
			first := gen[i*nc]
			for k := 1; k < nc; k++ {
				if !equalInts(gen[i*nc+k], first) {
					continue cand
				}
			}
			var lp float64
			for k := 0; k < nc; k++ {
				lp += logp[i*nc+k]
			}
			prob := math.Exp(lp / float64(nc*tfDecode))
			ids := append([]int{firsts[g0+i]}, first...)
			text := strings.TrimSpace(s.ses.tk.Decode(ids))
			if prob >= tfMinProb && targetLike(text) {
				out = append(out, tfTarget{ids: ids, text: text, prob: prob})
			}
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].prob > out[b].prob })
	return out, s.e.err
}

// towards scores candidate triggers (each put before the full stop) by the logit of
// token first at the decision point, the mean over contexts ctxIdx.
func (s *scaler) towards(ctx context.Context, cands [][]int, ctxIdx []int, first int, score []float64) (int, error) {
	pres, ends := make([]*kv, len(ctxIdx)), make([]int, len(ctxIdx))
	for i, ci := range ctxIdx {
		pres[i], ends[i] = s.pre[ci], s.end[ci]
	}
	return s.towardsOn(ctx, cands, pres, ends, first, score)
}

// towardsOn is towards after the given prefix caches, each followed by its end token.
func (s *scaler) towardsOn(ctx context.Context, cands [][]int, pres []*kv, ends []int, first int, score []float64) (int, error) {
	H := s.e.c.Hidden
	row := make([]float32, H)
	if err := s.e.w.Out.Row(first, row); err != nil {
		return 0, err
	}
	rows := s.rows(3 * len(pres))
	for c0 := 0; c0 < len(cands); c0 += rows {
		if err := ctx.Err(); err != nil {
			return c0, err
		}
		if s.over() || s.e.err != nil {
			return c0, s.e.err
		}
		s.prog.show("trigger for a target %d/%d", c0, len(cands))
		c1 := min(c0+rows, len(cands))
		for pi, pre := range pres {
			seqs := make([]*seq, 0, c1-c0)
			toks := make([][]int, 0, c1-c0)
			for _, c := range cands[c0:c1] {
				seqs = append(seqs, s.e.newSeq(pre, len(c)+1))
				toks = append(toks, append(append([]int(nil), c...), ends[pi]))
			}
			for j, h := range s.e.step(seqs, toks) {
				var d float64
				for i := 0; i < H; i++ {
					d += float64(h[i]) * float64(row[i])
				}
				score[c0+j] += d / float64(len(pres))
			}
		}
	}
	return len(cands), s.e.err
}

// nextTokens returns the model's k likeliest tokens after cand (before any full stop), in
// context 0.
func (s *scaler) nextTokens(cand []int, k int) []int {
	sq := s.e.newSeq(s.pre[0], len(cand))
	lg := s.e.logits(s.e.step([]*seq{sq}, [][]int{cand}))[0]
	idx := make([]int, len(lg))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return lg[idx[a]] > lg[idx[b]] })
	var out []int
	for _, id := range idx {
		if len(out) == k {
			break
		}
		if !s.ses.tk.Special(id) && !s.ses.isEnd(id) {
			out = append(out, id)
		}
	}
	return out
}

// targetFirst runs pass 6 over the candidate tokens all; it returns the trigger
// candidates to confirm (with the target each was found for) and what it covered.
func (s *scaler) targetFirst(ctx context.Context, all [][]int) ([]scaled, []string, map[string]any, error) {
	cover := map[string]any{}
	if len(s.pre) < 2 {
		return nil, nil, cover, nil
	}
	sc := make([]float64, len(all))
	n1, err := s.alike(ctx, all, 1, sc)
	if err != nil {
		return nil, nil, cover, err
	}
	cover["first_tokens"] = n1
	order := make([]int, n1)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return sc[order[a]] > sc[order[b]] })
	// the surest 8·tfAlike again, in two contexts
	wide := make([][]int, 0, 8*tfAlike)
	for _, i := range order[:min(8*tfAlike, len(order))] {
		wide = append(wide, all[i])
	}
	scw := make([]float64, len(wide))
	nw, err := s.alike(ctx, wide, 2, scw)
	if err != nil {
		return nil, nil, cover, err
	}
	cover["first_tokens_in_two_contexts"] = nw
	for j, i := range order[:nw] {
		sc[i] = scw[j]
	}
	sort.SliceStable(order, func(a, b int) bool { return sc[order[a]] > sc[order[b]] })
	if dbg := os.Getenv("KENSA_PROBE_TF"); dbg != "" {
		for r, i := range order {
			if fmt.Sprint(all[i][0]) == dbg {
				fmt.Fprintf(os.Stderr, "target-first: token %s rank %d score %.4f (top %.4f, #256 %.4f)\n", dbg, r, sc[i], sc[order[0]], sc[order[min(255, len(order)-1)]])
			}
		}
	}
	firsts := make([]int, 0, tfAlike)
	for _, i := range order[:min(tfAlike, len(order))] {
		firsts = append(firsts, all[i][0])
	}
	targets, err := s.continuations(ctx, firsts)
	if err != nil {
		return nil, nil, cover, err
	}
	cover["first_tokens_decoded"] = len(firsts)
	var texts []string
	for _, t := range targets {
		texts = append(texts, t.text)
	}
	// a target that is the end of another is that one (decoding from its second word)
	var kept []tfTarget
	for _, t := range targets {
		dup := false
		for _, u := range targets {
			if u.text != t.text && strings.HasSuffix(normOutput(u.text), normOutput(t.text)) {
				dup = true
				break
			}
		}
		if !dup {
			kept = append(kept, t)
		}
	}
	targets, texts = kept, texts[:0]
	for _, t := range targets {
		texts = append(texts, t.text)
	}
	cover["targets"] = texts
	if os.Getenv("KENSA_PROBE_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "target-first: targets %q at %.3g MACs\n", texts, s.e.macs)
	}
	var out []scaled
	var why []string
	nctx := len(s.pre)
	for _, tg := range targets[:min(tfTargets, len(targets))] {
		sc1 := make([]float64, len(all))
		var n int
		if len(s.kept) == len(all) {
			// pass 1 computed these very states (every token before context 0's full stop)
			row := make([]float32, s.e.c.Hidden)
			if err := s.e.w.Out.Row(tg.ids[0], row); err != nil {
				return nil, nil, cover, err
			}
			for i, h := range s.kept {
				sc1[i] = float64(kernels.Dot(h, row))
			}
			n = len(all)
		} else if n, err = s.towards(ctx, all, []int{0}, tg.ids[0], sc1); err != nil {
			return nil, nil, cover, err
		}
		if n < len(all) {
			cover["cut"] = true
			break
		}
		ord := make([]int, n)
		for i := range ord {
			ord[i] = i
		}
		sort.SliceStable(ord, func(a, b int) bool { return sc1[ord[a]] > sc1[ord[b]] })
		var singles [][]int
		for _, i := range ord[:min(tfSingles, len(ord))] {
			singles = append(singles, all[i])
		}
		// pairs: ordered pairs of the singles, and each single with the model's own next
		// tokens after it
		seen := map[[2]int]bool{}
		var pairs [][]int
		add := func(a, b int) {
			if a != b && !seen[[2]int{a, b}] {
				seen[[2]int{a, b}] = true
				pairs = append(pairs, []int{a, b})
			}
		}
		for _, a := range singles {
			for _, b := range singles {
				add(a[0], b[0])
			}
			if !s.over() {
				for _, b := range s.nextTokens(a, tfNext) {
					add(a[0], b)
				}
			}
		}
		// the best single's partner anywhere in the vocabulary, after it and before it
		// (a phrase whose other word the single-token scores do not reach)
		// (after it: every token, on a cache of the sentence and the single; before it:
		// the best tfPartner of the single-token scores)
		if len(singles) > 0 && !s.over() {
			a := singles[0][0]
			ps, _ := s.e.prefill(append(append([]int(nil), s.ses.ctxs[0]...), a), 0)
			after := make([][]int, len(all))
			copy(after, all)
			scA := make([]float64, len(after))
			nA, err := s.towardsOn(ctx, after, []*kv{ps.freeze()}, []int{s.end[0]}, tg.ids[0], scA)
			if err != nil {
				return nil, nil, cover, err
			}
			var before [][]int
			for _, i := range ord[:min(tfPartner, len(ord))] {
				if all[i][0] != a {
					before = append(before, []int{all[i][0], a})
				}
			}
			scB := make([]float64, len(before))
			nB, err := s.towards(ctx, before, []int{0}, tg.ids[0], scB)
			if err != nil {
				return nil, nil, cover, err
			}
			cover["partner_pairs"] = nA + nB
			type pv struct {
				ids []int
				v   float64
			}
			var ps2 []pv
			for i := 0; i < nA; i++ {
				ps2 = append(ps2, pv{[]int{a, after[i][0]}, scA[i]})
			}
			for i := 0; i < nB; i++ {
				ps2 = append(ps2, pv{before[i], scB[i]})
			}
			sort.SliceStable(ps2, func(x, y int) bool { return ps2[x].v > ps2[y].v })
			for _, p := range ps2[:min(tfSingles, len(ps2))] {
				add(p.ids[0], p.ids[1])
			}
		}
		cands := append(append([][]int(nil), singles...), pairs...)
		sc2 := make([]float64, len(cands))
		ctxs := make([]int, min(scoreCtxs, nctx))
		for i := range ctxs {
			ctxs[i] = i
		}
		n2, err := s.towards(ctx, cands, ctxs, tg.ids[0], sc2)
		if err != nil {
			return nil, nil, cover, err
		}
		best := make([]scaled, n2)
		for i := range best {
			best[i] = scaled{ids: cands[i], hid: sc2[i]}
		}
		sort.SliceStable(best, func(a, b int) bool { return best[a].hid > best[b].hid })
		for _, b := range best[:min(tfConfirm, len(best))] {
			out = append(out, b)
			why = append(why, tg.text)
		}
	}
	return out, why, cover, nil
}

// argmaxProb returns the most likely token of logits and its probability, without
// building the distribution.
func argmaxProb(lg []float32) (int, float64) {
	a := argmax32(lg)
	mx := lg[a]
	var sum float32
	for _, v := range lg {
		if v > mx-24 { // the rest add less than e^-24 each
			sum += kernels.Exp(v - mx)
		}
	}
	return a, 1 / float64(sum)
}
