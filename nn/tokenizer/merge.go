package tokenizer

import (
	"unicode/utf8"
)

// symbol is a run of text[start:end] in the doubly linked list of symbols being merged;
// a symbol merged into its left neighbour has start == end.
type symbol struct {
	start, end int
	prev, next int
}

// bigram is a candidate merge of two adjacent symbols.
type bigram struct {
	left, right int
	prio        float64 // higher merges first
	size        int     // byte length of the merged text when queued
}

// bigramHeap is a max-heap on prio, ties broken by the leftmost pair (llama.cpp's
// llm_bigram_spm and llm_bigram_bpe comparators).
type bigramHeap []bigram

func (h bigramHeap) before(i, j int) bool {
	if h[i].prio != h[j].prio {
		return h[i].prio > h[j].prio
	}
	return h[i].left < h[j].left
}

func (h *bigramHeap) push(b bigram) {
	*h = append(*h, b)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.before(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *bigramHeap) pop() bigram {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s.before(r, l) {
			m = r
		}
		if !s.before(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// splitRunes returns text as one symbol per UTF-8 character (a byte that starts no valid
// character is a symbol of its own).
func splitRunes(syms []symbol, text string) []symbol {
	syms = syms[:0]
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		syms = append(syms, symbol{start: i, end: i + n, prev: len(syms) - 1, next: len(syms) + 1})
		i += n
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms
}

// merge merges adjacent symbols of text greedily: prio(left, right, left+right) gives the priority of
// merging two adjacent symbol texts and whether they may merge at all. It returns the
// symbols, merged ones with start == end; live symbols are reached from index 0 by next.
func merge(text string, syms []symbol, prio func(l, r, lr string) (float64, bool)) []symbol {
	var h bigramHeap
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		a, b := syms[l], syms[r]
		p, ok := prio(text[a.start:a.end], text[b.start:b.end], text[a.start:b.end])
		if !ok {
			return
		}
		h.push(bigram{left: l, right: r, prio: p, size: b.end - a.start})
	}
	for i := 1; i < len(syms); i++ {
		try(i-1, i)
	}
	for len(h) > 0 {
		bg := h.pop()
		l, r := &syms[bg.left], &syms[bg.right]
		if l.start == l.end || r.start == r.end || r.end-l.start != bg.size || l.next != bg.right {
			continue // stale
		}
		l.end = r.end
		r.start = r.end
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = bg.left
		}
		try(l.prev, bg.left)
		try(bg.left, l.next)
	}
	return syms
}

// encodeSPM encodes as llama.cpp's llm_tokenizer_spm: spaces escaped to "▁" with a "▁"
// prefix, merges by the highest score of the merged piece, and byte fallback.
func (t *Tokenizer) encodeSPM(out []int, text string) []int {
	if t.wordsOnly {
		return t.encodeWords(out, text)
	}
	s := text
	if t.addSpacePrefix {
		s = " " + s
	}
	s = escapeSpaces(s)
	syms := merge(s, splitRunes(nil, s), func(_, _, lr string) (float64, bool) {
		id, ok := t.ids[lr]
		if !ok {
			return 0, false
		}
		return float64(t.Score(id)), true
	})
	return t.emitSymbols(out, s, syms)
}

// emitSymbols appends the ids of the live symbols, falling back to bytes (then unknown)
// for a symbol not in the vocabulary.
func (t *Tokenizer) emitSymbols(out []int, s string, syms []symbol) []int {
	for i := 0; i >= 0 && i < len(syms); i = syms[i].next {
		piece := s[syms[i].start:syms[i].end]
		if id, ok := t.ids[piece]; ok {
			out = append(out, id)
			continue
		}
		if t.byteFallback {
			out = t.appendBytes(out, piece)
		} else if t.unk >= 0 {
			if !t.fuseUnk || len(out) == 0 || out[len(out)-1] != t.unk {
				out = append(out, t.unk)
			}
		}
	}
	return out
}

// escapeSpaces replaces every space with "▁".
func escapeSpaces(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			b = append(b, "▁"...)
		} else {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// encodeWords encodes a whole-word vocabulary: words split at whitespace, unknown words
// as the unknown token.
func (t *Tokenizer) encodeWords(out []int, text string) []int {
	for _, w := range splitWhitespace(nil, text) {
		if id, ok := t.ids[w]; ok {
			out = append(out, id)
		} else if t.unk >= 0 {
			out = append(out, t.unk)
		}
	}
	return out
}
