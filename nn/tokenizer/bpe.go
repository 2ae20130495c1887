package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// byteToRune and runeToByte are GPT-2's bytes_to_unicode mapping: printable Latin-1 bytes
// stand for themselves, the others for U+0100 upwards in byte order.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// toByteLevel appends the byte-level form of s.
func toByteLevel(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = utf8.AppendRune(dst, byteToRune[s[i]])
	}
	return dst
}

// fromByteLevel appends the bytes a byte-level token stands for; characters outside the
// mapping are appended as they are.
func fromByteLevel(dst []byte, s string) []byte {
	for _, r := range s {
		if b, ok := runeToByte[r]; ok {
			dst = append(dst, b)
		} else {
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}

// encodeByteLevel encodes as GPT-2 byte-level BPE (llama.cpp's llm_tokenizer_bpe): the
// pre-tokenizer split, then every word mapped to byte-level characters and merged by rank.
func (t *Tokenizer) encodeByteLevel(out []int, text string) []int {
	if t.addSpacePrefix && text[0] != ' ' {
		text = " " + text
	}
	var words []string
	if t.pre == preLlama3 {
		words = splitLlama3(nil, text)
	} else if t.pre == preNone {
		words = []string{text}
	} else {
		words = splitGPT2(nil, text)
	}
	var buf []byte
	var syms []symbol
	for _, w := range words {
		buf = toByteLevel(buf[:0], w)
		out, syms = t.encodeBPEWord(out, string(buf), syms)
	}
	return out
}

// encodeBPEWord merges one word by merge rank and appends its ids. Symbols missing from
// the vocabulary fall back to byte tokens (byte_fallback) or to their single characters,
// else to the unknown token.
func (t *Tokenizer) encodeBPEWord(out []int, w string, syms []symbol) ([]int, []symbol) {
	if t.ignoreMerges {
		if id, ok := t.ids[w]; ok {
			return append(out, id), syms
		}
	}
	syms = merge(w, splitRunes(syms, w), t.rankPrio)
	for i := 0; i >= 0 && i < len(syms); i = syms[i].next {
		piece := w[syms[i].start:syms[i].end]
		if id, ok := t.ids[piece]; ok {
			out = append(out, id)
			continue
		}
		if t.byteFallback {
			out = t.appendBytes(out, piece)
			continue
		}
		for j, r := range piece {
			if id, ok := t.ids[piece[j:j+utf8.RuneLen(r)]]; ok {
				out = append(out, id)
			} else if t.unk >= 0 && (!t.fuseUnk || len(out) == 0 || out[len(out)-1] != t.unk) {
				out = append(out, t.unk)
			}
		}
	}
	return out, syms
}

// rankPrio is the merge priority of BPE by rank: lower ranks first.
func (t *Tokenizer) rankPrio(l, r, _ string) (float64, bool) {
	rank, ok := t.merges[[2]string{l, r}]
	return -float64(rank), ok
}

// Character classes of the pre-tokenizer patterns (\p{L}, \p{N}, \s); r < 0 is the end of
// the text and belongs to none.
func isL(r rune) bool { return r >= 0 && unicode.IsLetter(r) }
func isN(r rune) bool { return r >= 0 && unicode.IsNumber(r) }
func isS(r rune) bool { return r >= 0 && unicode.IsSpace(r) }

// isOther reports [^\s\p{L}\p{N}] for a character (not for the end of the text).
func isOther(r rune) bool { return r >= 0 && !isS(r) && !isL(r) && !isN(r) }

// runes holds a text's characters and their byte offsets, for the hand-written splitters.
type runes struct {
	s    string
	rs   []rune
	offs []int
}

func newRunes(s string) *runes {
	r := &runes{s: s, rs: make([]rune, 0, len(s)), offs: make([]int, 0, len(s)+1)}
	for i, c := range s {
		r.rs = append(r.rs, c)
		r.offs = append(r.offs, i)
	}
	r.offs = append(r.offs, len(s))
	return r
}

func (r *runes) at(i int) rune {
	if i < 0 || i >= len(r.rs) {
		return -1
	}
	return r.rs[i]
}

// splitGPT2 splits s as the GPT-2 pattern
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does (following llama.cpp's unicode_regex_split_custom_gpt2).
func splitGPT2(dst []string, s string) []string {
	r := newRunes(s)
	n := len(r.rs)
	start := 0
	add := func(end int) {
		if end > start {
			dst = append(dst, s[r.offs[start]:r.offs[end]])
		}
		start = end
	}
	for pos := 0; pos < n; {
		c := r.rs[pos]
		if c == '\'' && pos+1 < n {
			c1 := r.rs[pos+1]
			if c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd' {
				pos += 2
				add(pos)
				continue
			}
			if pos+2 < n {
				c2 := r.rs[pos+2]
				if (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') {
					pos += 3
					add(pos)
					continue
				}
			}
		}
		p2 := pos
		if c == ' ' {
			p2++
		}
		c2 := r.at(p2)
		switch {
		case isL(c2):
			for pos = p2; isL(r.at(pos)); pos++ {
			}
			add(pos)
			continue
		case isN(c2):
			for pos = p2; isN(r.at(pos)); pos++ {
			}
			add(pos)
			continue
		case isOther(c2):
			for pos = p2; isOther(r.at(pos)); pos++ {
			}
			add(pos)
			continue
		}
		ws := 0
		for isS(r.at(pos + ws)) {
			ws++
		}
		if ws > 1 && r.at(pos+ws) >= 0 {
			pos += ws - 1
			add(pos)
			continue
		}
		if ws > 0 {
			pos += ws
			add(pos)
			continue
		}
		pos++
		add(pos)
	}
	return dst
}

// splitLlama3 splits s as the Llama-3 pattern
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// does (following llama.cpp's unicode_regex_split_custom_llama3).
func splitLlama3(dst []string, s string) []string {
	r := newRunes(s)
	n := len(r.rs)
	start := 0
	add := func(end int) {
		if end > start {
			dst = append(dst, s[r.offs[start]:r.offs[end]])
		}
		start = end
	}
	for pos := 0; pos < n; {
		c := r.rs[pos]
		if c == '\'' && pos+1 < n {
			c1 := unicode.ToLower(r.rs[pos+1])
			if c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd' {
				pos += 2
				add(pos)
				continue
			}
			if pos+2 < n {
				c2 := unicode.ToLower(r.rs[pos+2])
				if (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') {
					pos += 3
					add(pos)
					continue
				}
			}
		}
		if !(c == '\r' || c == '\n' || isN(c)) && (isL(c) || isL(r.at(pos+1))) {
			for pos++; isL(r.at(pos)); pos++ {
			}
			add(pos)
			continue
		}
		if isN(c) {
			ini := pos
			for isN(r.at(pos)) {
				pos++
				if pos-ini >= 3 {
					add(pos)
					ini = pos
				}
			}
			add(pos)
			continue
		}
		p2 := pos
		if c == ' ' {
			p2++
		}
		if isOther(r.at(p2)) {
			for pos = p2; isOther(r.at(pos)); pos++ {
			}
			for c := r.at(pos); c == '\r' || c == '\n'; c = r.at(pos) {
				pos++
			}
			add(pos)
			continue
		}
		ws, lastNL := 0, 0
		for isS(r.at(pos + ws)) {
			if c := r.at(pos + ws); c == '\r' || c == '\n' {
				lastNL = pos + ws + 1
			}
			ws++
		}
		if lastNL > 0 {
			pos = lastNL
			add(pos)
			continue
		}
		if ws > 1 && r.at(pos+ws) >= 0 {
			pos += ws - 1
			add(pos)
			continue
		}
		if ws > 0 {
			pos += ws
			add(pos)
			continue
		}
		pos++
		add(pos)
	}
	return dst
}
