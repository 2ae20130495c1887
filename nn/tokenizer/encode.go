package tokenizer

import (
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// normOp is one step of a tokenizer.json normalizer.
type normOp struct {
	op   string // "prepend", "replace", "lowercase"
	a, b string
}

// normalize applies the tokenizer.json normalizer steps.
func (t *Tokenizer) normalize(s string) string {
	for _, n := range t.norms {
		switch n.op {
		case "prepend":
			if s != "" {
				s = n.a + s
			}
		case "replace":
			if n.a != "" {
				s = strings.ReplaceAll(s, n.a, n.b)
			}
		case "lowercase":
			s = strings.ToLower(s)
		}
	}
	return s
}

// encodeHF encodes with the tokenizer.json pipeline: normalizer, pre-tokenizer, model.
func (t *Tokenizer) encodeHF(out []int, text string) []int {
	s := t.normalize(text)
	if t.lowercase {
		s = strings.ToLower(s)
	}
	var words []string
	switch t.pre {
	case preWhitespace:
		words = splitWordsPunct(nil, s)
	case preWhitespaceSplit:
		words = splitWhitespace(nil, s)
	case preBert:
		words = splitBert(nil, s)
	case preMetaspace:
		if t.escapeSpaces {
			s = escapeSpaces(s)
		}
		if t.addSpacePrefix && !strings.HasPrefix(s, "▁") {
			s = "▁" + s
		}
		if t.metaSplit {
			words = splitMetaspace(nil, s)
		} else {
			words = []string{s}
		}
	default:
		if t.escapeSpaces {
			s = escapeSpaces(s)
		}
		if t.addSpacePrefix && !strings.HasPrefix(s, "▁") {
			s = "▁" + s
		}
		words = []string{s}
	}
	var syms []symbol
	for _, w := range words {
		if w == "" {
			continue
		}
		switch t.kind {
		case WordLevel:
			if id, ok := t.ids[w]; ok {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk)
			}
		case Unigram:
			out = t.viterbi(out, w)
		default:
			out, syms = t.encodeBPEWord(out, w, syms)
		}
	}
	return out
}

// splitWhitespace splits s at white space.
func splitWhitespace(dst []string, s string) []string {
	return append(dst, strings.Fields(s)...)
}

// isWord reports \w: letters, marks, decimal digits and connector punctuation.
func isWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r) || unicode.Is(unicode.Pc, r)
}

// splitWordsPunct splits s as the Whitespace pre-tokenizer's \w+|[^\w\s]+.
func splitWordsPunct(dst []string, s string) []string {
	start, class := 0, 0 // class: 0 none, 1 word, 2 punctuation
	for i, r := range s {
		c := 0
		switch {
		case unicode.IsSpace(r):
		case isWord(r):
			c = 1
		default:
			c = 2
		}
		if c != class {
			if class != 0 {
				dst = append(dst, s[start:i])
			}
			start, class = i, c
		}
	}
	if class != 0 {
		dst = append(dst, s[start:])
	}
	return dst
}

// splitMetaspace splits s before every "▁".
func splitMetaspace(dst []string, s string) []string {
	for {
		i := strings.Index(s[min(len(s), len("▁")):], "▁")
		if i < 0 {
			return append(dst, s)
		}
		i += len("▁")
		dst = append(dst, s[:i])
		s = s[i:]
	}
}

// isCJK reports the CJK ideograph blocks BERT splits into single characters.
func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) || (r >= 0x3400 && r <= 0x4DBF) || (r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) || (r >= 0x2B740 && r <= 0x2B81F) || (r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) || (r >= 0x2F800 && r <= 0x2FA1F)
}

// isBertPunct reports the characters BERT splits off as words of their own: Unicode
// punctuation, ASCII symbols and CJK ideographs.
func isBertPunct(r rune) bool {
	if r < 0x7F {
		return r > ' ' && !(r >= '0' && r <= '9') && !(r >= 'a' && r <= 'z') && !(r >= 'A' && r <= 'Z')
	}
	return unicode.IsPunct(r) || isCJK(r)
}

// bertNormalize lowercases s when lower is set and, when strip is set, decomposes Hangul
// syllables into jamo and removes accents (NFD without combining marks, for the letters
// of accentBase); control characters, NUL and U+FFFD are dropped.
func bertNormalize(s string, lower, strip bool) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r == 0 || r == utf8.RuneError || (unicode.IsControl(r) && !unicode.IsSpace(r)) {
			continue
		}
		if lower {
			r = unicode.ToLower(r)
		}
		if strip {
			if unicode.Is(unicode.Mn, r) {
				continue
			}
			if base, ok := accentBase[r]; ok {
				r = base
			}
			if r >= 0xAC00 && r <= 0xD7A3 { // Hangul syllable: L V (T)
				i := r - 0xAC00
				b = utf8.AppendRune(b, 0x1100+i/(21*28))
				b = utf8.AppendRune(b, 0x1161+(i%(21*28))/28)
				if t := i % 28; t != 0 {
					b = utf8.AppendRune(b, 0x11A7+t)
				}
				continue
			}
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}

// splitBert splits s as BERT's basic tokenizer: words at white space, punctuation and CJK
// characters alone.
func splitBert(dst []string, s string) []string {
	start := -1
	for i, r := range s {
		switch {
		case unicode.IsSpace(r):
			if start >= 0 {
				dst = append(dst, s[start:i])
				start = -1
			}
		case isBertPunct(r):
			if start >= 0 {
				dst = append(dst, s[start:i])
				start = -1
			}
			dst = append(dst, s[i:i+utf8.RuneLen(r)])
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		dst = append(dst, s[start:])
	}
	return dst
}

// encodeWordPiece encodes as BERT's WordPiece: words split by the basic tokenizer, each
// matched greedily longest-first; a word that cannot be matched is the unknown token.
// GGUF vocabularies mark word starts with "▁" (llama.cpp's phantom space), tokenizer.json
// vocabularies mark continuations with "##".
func (t *Tokenizer) encodeWordPiece(out []int, text string) []int {
	s := bertNormalize(text, t.lowercase, t.stripAccents)
	for _, w := range splitBert(nil, s) {
		if !t.phantomSpace && utf8.RuneCountInString(w) > 100 {
			if t.unk >= 0 {
				out = append(out, t.unk)
			}
			continue
		}
		word := w
		if t.phantomSpace {
			word = "▁" + w
		}
		n := len(out)
		ok := true
		for i := 0; i < len(word); {
			j := min(len(word), i+t.maxPiece)
			found := false
			for ; j > i; j-- {
				if j < len(word) && !utf8.RuneStart(word[j]) {
					continue
				}
				piece := word[i:j]
				if i > 0 && !t.phantomSpace {
					piece = t.contPrefix + piece
				}
				if id, ok := t.ids[piece]; ok {
					out = append(out, id)
					found = true
					break
				}
			}
			if !found {
				ok = false
				break
			}
			i = j
		}
		if !ok {
			out = out[:n]
			if t.unk >= 0 {
				out = append(out, t.unk)
			}
		}
	}
	return out
}

// viterbi appends the best-scoring segmentation of s into unigram pieces; a character no
// piece covers costs the unknown score and becomes byte tokens (byte fallback) or the
// unknown token.
func (t *Tokenizer) viterbi(out []int, s string) []int {
	n := len(s)
	best := make([]float64, n+1)
	from := make([]int32, n+1)
	ids := make([]int32, n+1)
	for i := 1; i <= n; i++ {
		best[i] = math.Inf(-1)
	}
	for i := 0; i < n; i++ {
		if math.IsInf(best[i], -1) || !utf8.RuneStart(s[i]) {
			continue
		}
		_, rl := utf8.DecodeRuneInString(s[i:])
		single := false
		for j := i + 1; j <= n && j-i <= t.maxPiece; j++ {
			if j < n && !utf8.RuneStart(s[j]) {
				continue
			}
			id, ok := t.ids[s[i:j]]
			if !ok {
				continue
			}
			switch t.types[id] {
			case TypeNormal, TypeUserDefined:
			default:
				continue
			}
			if j == i+rl {
				single = true
			}
			if sc := best[i] + float64(t.Score(id)); sc > best[j] {
				best[j], from[j], ids[j] = sc, int32(i), int32(id)
			}
		}
		if !single {
			if sc := best[i] + t.unkScore; sc > best[i+rl] {
				best[i+rl], from[i+rl], ids[i+rl] = sc, int32(i), -1
			}
		}
	}
	var rev []int32
	for j := n; j > 0; j = int(from[j]) {
		rev = append(rev, int32(j))
	}
	for k := len(rev) - 1; k >= 0; k-- {
		j := int(rev[k])
		if id := ids[j]; id >= 0 {
			out = append(out, int(id))
			continue
		}
		piece := s[from[j]:j]
		if t.byteFallback {
			out = t.appendBytes(out, piece)
		} else if t.unk >= 0 && (!t.fuseUnk || len(out) == 0 || out[len(out)-1] != t.unk) {
			out = append(out, t.unk)
		}
	}
	return out
}
