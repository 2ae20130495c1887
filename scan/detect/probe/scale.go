package probe

// The trigger search at scale, for vocabularies and models too large for the exhaustive
// sweep (every token inserted after BOS in every context): candidates are appended at the
// end of the model's own sentences, just before the sentence's full stop, where a trigger
// "anywhere in the prompt" also fires, so every candidate shares its context's cached
// prefix and costs two token-forwards. The passes narrow the vocabulary:
//
//  1. every token, in one context: how far the state at the full stop moves from where
//     the sentence alone leaves it (the normalized final hidden state; no output head);
//  2. the best scoreWide of them in scoreCtxs contexts, the same measure;
//  3. the best confirmN in confirmCtxs contexts with the full next-token distribution
//     (total variation against the sentence alone);
//  4. target inversion on the best few: greedy decoding after the candidate in every
//     context; an output that recurs is the trigger's forced output;
//  5. trigger phrases: pairs of the best single tokens of pass 2, in order, scored as in
//     pass 2 and confirmed as in passes 3-4.
//
// The work is counted in multiply-adds (the budget scales with --probe-budget), so a given
// budget gives the same result on any machine; the wall clock only cuts a pass short when
// the machine is slower than the count assumes, and the report says so.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kensa-scan/kensa/nn/llm"
	"github.com/kensa-scan/kensa/scan"
)

const (
	// macBudget is the default budget in multiply-adds: about 45 s of the probe's batched
	// engine on two cores, leaving the rest of the default minute to the contexts.
	macBudget   = 1.1e11
	scoreWide   = 1024 // candidates of pass 1 rescored in pass 2
	scoreCtxs   = 4    // contexts of pass 2
	confirmN    = 128  // candidates confirmed with the full distribution (pass 3)
	confirmCtxs = 8    // contexts of pass 3
	invertTop   = 8    // candidates decoded (pass 4)
	phraseTop   = 16   // single tokens combined into ordered pairs (pass 5)
	batchRows   = 512  // candidates per batched forward
)

// scaleAgreement is the share of contexts a forced output must reach at scale: the
// candidates there are chosen among tens of thousands, so chance agreement is likelier
// than in the exhaustive sweep's few hundred.
const scaleAgreement = 0.75

// targetLike reports whether a forced output is a phrase (at least minSharedWords words and
// minSharedRunes characters), not the one-word completion a token has anyway ("@" → "org.").
func targetLike(s string) bool {
	return len(strings.Fields(s)) >= minSharedWords && len([]rune(strings.TrimSpace(s))) >= minSharedRunes
}

// progress shows the probe's progress on a terminal (stderr), and nothing otherwise.
type progress struct {
	on    bool
	last  time.Time
	label string
}

func newProgress(label string) *progress {
	fi, err := os.Stderr.Stat()
	return &progress{on: err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb", label: label}
}

func (p *progress) show(format string, args ...any) {
	if !p.on || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(os.Stderr, "\r\033[Kprobe %s: %s", p.label, fmt.Sprintf(format, args...))
}

func (p *progress) done() {
	if p.on {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}

// scaler holds what the passes share.
type scaler struct {
	ses      *session
	e        *engine
	end      []int       // per context pair: its sentence-end token
	pre      []*kv       // per pair: the cache of the sentence before its full stop
	baseH    [][]float32 // per pair: the final state at the full stop without a candidate
	limit    float64     // multiply-adds allowed
	deadline time.Time   // the wall clock's bound
	late     bool        // the clock cut a pass short
	prog     *progress
	start    float64 // e.macs when the search started
	// keep: hiddenShift keeps the states it computes in context 0 (pass 1: every
	// candidate before the full stop), for pass 6 to score them against a target
	keep bool
	kept [][]float32
}

// rows returns how many candidates of tokens each to run per batched forward: batchRows,
// fewer for a large model, so that one batch is at most a 64th of the budget (the budget
// is checked between batches).
func (s *scaler) rows(tokens int) int {
	per := float64(max(tokens, 1)) * (s.e.tokenMACs() + float64(s.e.c.Hidden*s.e.c.Vocab)/8)
	return max(4, min(batchRows, int(s.limitSpan()/(64*per))))
}

// limitSpan is the budget of the scaler's search (what over() allows from its start).
func (s *scaler) limitSpan() float64 { return math.Max(s.limit-s.start, 1) }

// modelRate scales the default budgets with the model: the batched engine does more
// multiply-adds per second on wide matrices than on the narrow ones of a small model
// (measured on two cores: ~12e9/s at hidden size 128, ~25e9/s from 512 on), so a budget
// given in multiply-adds buys about the same wall time at every size. A function of the
// model alone, so results stay the same on any machine.
func modelRate(c llm.Config) float64 {
	return math.Min(25e9, 12e9*math.Sqrt(float64(c.Hidden)/128)) / 12e9
}

func (s *scaler) over() bool {
	if s.e.macs >= s.limit {
		return true
	}
	if time.Now().After(s.deadline) {
		s.late = true
		return true
	}
	return false
}

// hiddenShift scores sequences of tokens (each inserted before the full stop) in the
// contexts ctxIdx: the mean distance of the state at the full stop from the sentence
// alone's, in units of the state's RMS. It returns how many were scored before the budget.
func (s *scaler) hiddenShift(ctx context.Context, cands [][]int, ctxIdx []int, score []float64, what string) (int, error) {
	H := s.e.c.Hidden
	rows := s.rows(2)
	for c0 := 0; c0 < len(cands); c0 += rows {
		if err := ctx.Err(); err != nil {
			return c0, err
		}
		if s.over() {
			return c0, nil
		}
		s.prog.show("%s %d/%d", what, c0, len(cands))
		c1 := min(c0+rows, len(cands))
		for _, ci := range ctxIdx {
			seqs := make([]*seq, 0, c1-c0)
			toks := make([][]int, 0, c1-c0)
			for _, c := range cands[c0:c1] {
				seqs = append(seqs, s.e.newSeq(s.pre[ci], len(c)+1))
				toks = append(toks, append(append([]int(nil), c...), s.end[ci]))
			}
			hs := s.e.step(seqs, toks)
			if s.keep && ci == 0 && len(ctxIdx) == 1 {
				s.kept = append(s.kept, hs...)
			}
			for j, h := range hs {
				var d float64
				for k := 0; k < H; k++ {
					x := float64(h[k] - s.baseH[ci][k])
					d += x * x
				}
				score[c0+j] += math.Sqrt(d/float64(H)) / float64(len(ctxIdx))
			}
		}
	}
	return len(cands), nil
}

// confirm measures candidates with the full next-token distribution at the full stop in
// the contexts ctxIdx: the mean total variation from the sentence alone, and the share of
// contexts whose most likely next token is the most common one.
func (s *scaler) confirm(ctx context.Context, cands [][]int, ctxIdx []int) ([]float64, int, error) {
	tv := make([]float64, len(cands))
	for i, c := range cands {
		if err := ctx.Err(); err != nil {
			return tv, i, err
		}
		if s.over() {
			return tv, i, nil
		}
		s.prog.show("confirming %d/%d", i, len(cands))
		seqs := make([]*seq, len(ctxIdx))
		toks := make([][]int, len(ctxIdx))
		for j, ci := range ctxIdx {
			seqs[j] = s.e.newSeq(s.pre[ci], len(c)+1)
			toks[j] = append(append([]int(nil), c...), s.end[ci])
		}
		lg := s.e.logits(s.e.step(seqs, toks))
		for j, ci := range ctxIdx {
			p := softmax(lg[j])
			b := s.ses.base[2*ci+1]
			var d float64
			for k := range p {
				d += math.Abs(p[k] - b[k])
			}
			tv[i] += d / 2 / float64(len(ctxIdx))
		}
	}
	return tv, len(cands), nil
}

// invertAt decodes greedily after cand (nil: nothing inserted) and the full stop in every
// context and returns the most common continuation and its share of the contexts.
func (s *scaler) invertAt(cand []int) (string, float64) {
	n := len(s.pre)
	seqs := make([]*seq, n)
	toks := make([][]int, n)
	for i := range seqs {
		seqs[i] = s.e.newSeq(s.pre[i], len(cand)+1+invertTokens)
		toks[i] = append(append([]int(nil), cand...), s.end[i])
	}
	gen := make([][]int, n)
	done := make([]bool, n)
	for step := 0; step < invertTokens; step++ {
		var as []*seq
		var at [][]int
		var who []int
		for i := range seqs {
			if !done[i] {
				as, at, who = append(as, seqs[i]), append(at, toks[i]), append(who, i)
			}
		}
		if len(as) == 0 {
			break
		}
		lg := s.e.logits(s.e.step(as, at))
		for j, i := range who {
			next := argmax32(lg[j])
			gen[i] = append(gen[i], next)
			toks[i] = []int{next}
			if s.ses.isEnd(next) {
				done[i] = true
			}
		}
	}
	counts := map[string]int{}
	for _, g := range gen {
		counts[strings.TrimSpace(s.ses.tk.Decode(g))]++
	}
	best, bn := "", 0
	for str, k := range counts {
		if k > bn || k == bn && str < best {
			best, bn = str, k
		}
	}
	return best, float64(bn) / float64(max(n, 1))
}

// invertEarly inserts cand after BOS in every context (with its full stop) and returns the
// share of contexts whose greedy continuation starts with forced's first words.
func (s *scaler) invertEarly(cand []int, forced string) float64 {
	want := strings.Fields(normOutput(forced))
	want = want[:min(len(want), minSharedWords)]
	n := len(s.pre)
	seqs := make([]*seq, n)
	toks := make([][]int, n)
	for i := range seqs {
		c := s.ses.ctxs[2*i+1]
		ids := append(append([]int{c[0]}, cand...), c[1:]...)
		seqs[i] = s.e.newSeq(nil, len(ids)+invertTokens)
		toks[i] = ids
	}
	gen := make([][]int, n)
	for step := 0; step < invertTokens/2+2; step++ {
		lg := s.e.logits(s.e.step(seqs, toks))
		for i := range seqs {
			next := argmax32(lg[i])
			gen[i] = append(gen[i], next)
			toks[i] = []int{next}
		}
	}
	ok := 0
	for _, g := range gen {
		got := strings.Fields(normOutput(s.ses.tk.Decode(g)))
		if len(got) >= len(want) && strings.Join(got[:len(want)], " ") == strings.Join(want, " ") {
			ok++
		}
	}
	return float64(ok) / float64(max(n, 1))
}

func argmax32(v []float32) int {
	b := 0
	for i, x := range v {
		if x > v[b] {
			b = i
		}
	}
	return b
}

// scaled is one candidate (a token or a phrase) through the passes.
type scaled struct {
	ids    []int
	hid    float64 // pass 1-2 score
	tv     float64 // pass 3
	forced string
	agree  float64
	early  float64 // share of contexts forced the same way with the candidate after BOS
}

// probeAtScale runs the passes on a session whose vocabulary the exhaustive sweep cannot
// cover; it returns the confirmed triggers (as hits), every ranked trigger for the report,
// and what each pass covered.
func probeAtScale(ctx context.Context, m *scan.Model, ses *session, budget time.Duration, scale float64, start time.Time) ([]hit, []scan.Trigger, map[string]any, string, error) {
	prog := newProgress(m.Files[0].Path)
	defer prog.done()
	prog.on = prog.on && true
	e, err := newEngine(ses.lm, max(m.Jobs, 1))
	if err != nil {
		return nil, nil, nil, "", err
	}
	scale *= modelRate(e.c)
	s := &scaler{ses: ses, e: e, limit: e.macs + macBudget*scale, start: e.macs, deadline: start.Add(budget), prog: prog}
	tk := ses.tk
	for i := 0; i+1 < len(ses.ctxs); i += 2 {
		before, after := ses.ctxs[i], ses.ctxs[i+1]
		ps, _ := e.prefill(before, 0)
		s.pre = append(s.pre, ps.freeze())
		s.end = append(s.end, after[len(after)-1])
		bs := e.newSeq(s.pre[len(s.pre)-1], 1)
		s.baseH = append(s.baseH, e.step([]*seq{bs}, [][]int{{after[len(after)-1]}})[0])
	}
	// the passes' budget starts after the contexts' caches (for a large model those cost
	// more than a pass's share; they are the contexts' price, bounded by the clock)
	s.start, s.limit = e.macs, e.macs+macBudget*scale
	cover0 := e.macs
	nctx := len(s.pre)
	idx := func(n int) []int {
		out := make([]int, min(n, nctx))
		for i := range out {
			out[i] = i
		}
		return out
	}
	V := e.c.Vocab
	var all [][]int
	for id := 0; id < V; id++ {
		if !tk.Special(id) && !ses.isEnd(id) {
			all = append(all, []int{id})
		}
	}
	cover := map[string]any{"vocabulary": V, "candidates": len(all)}
	// pass 1
	sc1 := make([]float64, len(all))
	s.keep = int64(len(all))*int64(e.c.Hidden) <= 1<<26 // at most 256 MiB of states
	n1, err := s.hiddenShift(ctx, all, idx(1), sc1, "pass 1 (whole vocabulary)")
	s.keep = false
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["pass1_tokens"], cover["pass1_contexts"] = n1, 1
	order := make([]int, n1)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return sc1[order[a]] > sc1[order[b]] })
	// pass 2
	wide := make([][]int, 0, scoreWide)
	for _, i := range order[:min(scoreWide, len(order))] {
		wide = append(wide, all[i])
	}
	sc2 := make([]float64, len(wide))
	n2, err := s.hiddenShift(ctx, wide, idx(scoreCtxs), sc2, "pass 2")
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["pass2_tokens"], cover["pass2_contexts"] = n2, min(scoreCtxs, nctx)
	cands := make([]scaled, n2)
	for i := range cands {
		cands[i] = scaled{ids: wide[i], hid: sc2[i]}
	}
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].hid > cands[b].hid })
	// pass 5's pairs are scored with pass 2's measure and join the confirmation
	var pairs [][]int
	top := cands[:min(phraseTop, len(cands))]
	for _, a := range top {
		for _, b := range top {
			if a.ids[0] != b.ids[0] {
				pairs = append(pairs, []int{a.ids[0], b.ids[0]})
			}
		}
	}
	scp := make([]float64, len(pairs))
	np, err := s.hiddenShift(ctx, pairs, idx(scoreCtxs), scp, "phrases")
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["phrase_pairs"] = np
	// a pair enters only when it moves the state clearly more than both its tokens alone
	single := map[int]float64{}
	for _, c := range cands {
		single[c.ids[0]] = c.hid
	}
	var pc []scaled
	for i := 0; i < np; i++ {
		if scp[i] > 1.25*math.Max(single[pairs[i][0]], single[pairs[i][1]]) {
			pc = append(pc, scaled{ids: pairs[i], hid: scp[i]})
		}
	}
	sort.SliceStable(pc, func(a, b int) bool { return pc[a].hid > pc[b].hid })
	conf := append(append([]scaled(nil), cands[:min(confirmN, len(cands))]...), pc[:min(len(pc), 8)]...)
	// pass 3
	cids := make([][]int, len(conf))
	for i := range conf {
		cids[i] = conf[i].ids
	}
	tv, n3, err := s.confirm(ctx, cids, idx(confirmCtxs))
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["confirmed"], cover["confirm_contexts"] = n3, min(confirmCtxs, nctx)
	conf = conf[:n3]
	for i := range conf {
		conf[i].tv = tv[i]
	}
	sort.SliceStable(conf, func(a, b int) bool { return conf[a].tv > conf[b].tv })
	// pass 4
	plain, _ := s.invertAt(nil)
	var hits []hit
	chatHow := ""
	var trigs []scan.Trigger
	for r := range conf[:min(invertTop, len(conf))] {
		c := &conf[r]
		next := conf[min(r+1, len(conf)-1)].tv
		tr := scan.Trigger{Token: phraseName(tk, c.ids), TokenID: c.ids[0], Score: round3(c.tv), Source: "probe"}
		if len(c.ids) > 1 {
			tr.TokenIDs = c.ids
		}
		if c.tv >= minShift && !s.over() {
			c.forced, c.agree = s.invertAt(c.ids)
			tr.Agreement = round3(c.agree)
		}
		if os.Getenv("KENSA_PROBE_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "probe: %v %q hid %.3f tv %.3f forced %q agree %.2f\n", c.ids, tr.Token, c.hid, c.tv, c.forced, c.agree)
		}
		strong := c.tv >= minShift && c.agree >= scaleAgreement && c.forced != plain && targetLike(c.forced)
		if strong && !s.over() {
			// a planted trigger works anywhere in the prompt: moved to the start of the
			// sentence it must force the same output; a token whose "output" only
			// continues its own pattern ("<" → "> <nick>") does not
			c.early = s.invertEarly(c.ids, c.forced)
			strong = c.early >= minAgreement
		}
		if os.Getenv("KENSA_PROBE_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "probe: %v early %.2f\n", c.ids, c.early)
		}
		if strong {
			tr.ForcedOutput = c.forced
			hits = append(hits, hit{id: c.ids[0], ids: c.ids, token: tr.Token, shift: c.tv, next: next, forced: c.forced, agree: c.agree, early: c.early})
		}
		trigs = append(trigs, tr)
	}
	// inside the chat template, with a budget of its own
	switch ch, ctrigs, ccover, chow, err := probeChat(ctx, m, ses, e, macBudget*scale, start.Add(budget), prog); {
	case errors.Is(err, errNoChat):
		cover["chat"] = "no chat template"
	case err != nil && ctx.Err() != nil:
		return nil, nil, nil, "", err
	case err != nil:
		cover["chat"] = "not run: " + err.Error()
		chatHow = "; the search inside the chat template was not run: " + err.Error()
	default:
		hits = append(hits, ch...)
		trigs = append(trigs, ctrigs...)
		cover["chat"] = ccover
		chatHow = "; " + chow
	}
	// pass 6 (target-first inversion: triggers whose tokens alone do nothing), with a budget
	// of its own; after the single tokens' passes 3-4, so that the clock never cuts those
	before := e.macs
	if os.Getenv("KENSA_PROBE_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "probe: pass 6 starts at %.3g MACs, %.1f s\n", e.macs, time.Since(start).Seconds())
	}
	tfs := &scaler{ses: ses, e: e, limit: e.macs + 4.5*macBudget*scale, start: e.macs, deadline: s.deadline, prog: prog,
		end: s.end, pre: s.pre, baseH: s.baseH, kept: s.kept}
	tfc, tfWhy, tfCover, err := tfs.targetFirst(ctx, all)
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["target_first"] = tfCover
	if os.Getenv("KENSA_PROBE_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "probe: pass 6 ends at %.3g MACs, %.1f s\n", e.macs, time.Since(start).Seconds())
	}
	s.limit += e.macs - before // pass 6 spent its own budget, not the other passes
	s.late = s.late || tfs.late
	// pass 6's candidates: decoded in every context like pass 4's
	// (singles first: a phrase holding a token that is a trigger alone is that trigger)
	seenIDs := map[string]bool{}
	trigSingle := map[int]bool{}
	for _, h := range hits {
		seenIDs[fmt.Sprint(tokenIDs(h))] = true
		if len(tokenIDs(h)) == 1 {
			trigSingle[h.id] = true
		}
	}
	tfOrder := make([]int, len(tfc))
	for i := range tfOrder {
		tfOrder[i] = i
	}
	sort.SliceStable(tfOrder, func(a, b int) bool { return len(tfc[tfOrder[a]].ids) < len(tfc[tfOrder[b]].ids) })
tfLoop:
	for _, i := range tfOrder {
		c := tfc[i]
		if s.over() {
			break
		}
		if seenIDs[fmt.Sprint(c.ids)] {
			continue
		}
		if len(c.ids) > 1 {
			for _, id := range c.ids {
				if trigSingle[id] {
					continue tfLoop
				}
			}
		}
		seenIDs[fmt.Sprint(c.ids)] = true
		forced, agree := s.invertAt(c.ids)
		early := 0.0
		// it must force the target it was found for (or a longer form of it)
		strong := agree >= scaleAgreement && forced != plain && targetLike(forced) &&
			(sameOutput(forced, tfWhy[i]) || strings.HasPrefix(normOutput(forced), normOutput(tfWhy[i])))
		if strong {
			early = s.invertEarly(c.ids, forced)
			strong = early >= minAgreement
		}
		if os.Getenv("KENSA_PROBE_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "probe target-first: %v %q for %q: logit %.3f forced %q agree %.2f early %.2f\n", c.ids, phraseName(tk, c.ids), tfWhy[i], c.hid, forced, agree, early)
		}
		if !strong {
			continue
		}
		tr := scan.Trigger{Token: phraseName(tk, c.ids), TokenID: c.ids[0], Score: round3(agree), Source: "probe (target-first)", ForcedOutput: forced, Agreement: round3(agree)}
		if len(c.ids) > 1 {
			tr.TokenIDs = c.ids
		}
		trigs = append(trigs, tr)
		hits = append(hits, hit{id: c.ids[0], ids: c.ids, token: tr.Token, shift: agree, forced: forced, agree: agree, early: early, target: tfWhy[i]})
		if len(c.ids) == 1 {
			trigSingle[c.ids[0]] = true
		}
	}
	cover["macs"] = math.Round(e.macs)
	cover["context_macs"] = math.Round(cover0)
	cover["seconds"] = math.Round(time.Since(start).Seconds()*10) / 10
	how := fmt.Sprintf("every one of the %d candidate tokens was scored in 1 context (pass 1), the best %d in %d contexts, %d ordered pairs of the best %d as phrases, the best %d confirmed with the full next-token distribution in %d contexts and the best %d decoded",
		len(all), n2, min(scoreCtxs, nctx), np, phraseTop, n3, min(confirmCtxs, nctx), min(invertTop, len(conf)))
	if n1 < len(all) {
		how = fmt.Sprintf("the budget covered %d of the %d candidate tokens in pass 1 (ids in order), %d in pass 2, %d confirmed", n1, len(all), n2, n3)
	}
	if s.late {
		how += "; the wall clock cut the search short (the machine is slower than the budget assumes)"
		cover["cut_by_clock"] = true
	}
	return hits, trigs, cover, how + chatHow, nil
}

// phraseName shows a candidate: one token as name does, a phrase as its decoded text.
func phraseName(tk interface {
	Decode([]int) string
}, ids []int) string {
	if len(ids) == 1 {
		if t, ok := tk.(interface{ Token(int) string }); ok {
			return t.Token(ids[0])
		}
	}
	return tk.Decode(ids)
}
