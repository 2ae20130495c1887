// Package tok turns text into token ids and back for the models kensa runs: SentencePiece
// vocabularies from GGUF metadata (tokenizer.ggml.*, model "llama": encoding as llama.cpp's
// SPM tokenizer does, with byte fallback) and Hugging Face tokenizer.json WordLevel models
// with a whitespace pre-tokenizer; every vocabulary can be decoded (GPT-2 byte-level BPE and
// WordPiece included).
package tok

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

// Kinds of vocabularies.
const (
	SPM       = "spm"       // SentencePiece (▁ for spaces, <0xNN> byte tokens)
	ByteBPE   = "bpe"       // GPT-2 byte-level BPE (Ġ for spaces)
	WordPiece = "wordpiece" // BERT (## continuations)
	WordLevel = "wordlevel" // whole words
)

// Tokenizer maps between text and token ids.
type Tokenizer struct {
	Kind     string
	merges   map[[2]string]int // BPE merge ranks (byte-level, or SentencePiece-style with rankBPE)
	rankBPE  bool              // SPM vocabulary merged by rank (tokenizer.json BPE with Metaspace) rather than by score
	unigram  bool              // SPM vocabulary segmented by Viterbi over piece scores (tokenizer.json Unigram)
	maxPiece int               // longest piece, in bytes (Unigram)
	tokens   []string
	scores   []float32
	types    []int32
	ids      map[string]int
	bos      int
	eos      int
	unk      int
}

// ErrNoVocabulary is returned when a model carries no vocabulary kensa can read.
var ErrNoVocabulary = errors.New("tok: no vocabulary")

// Len returns the vocabulary size.
func (t *Tokenizer) Len() int { return len(t.tokens) }

// BOS returns the beginning-of-sequence id, or -1.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the end-of-sequence id, or -1.
func (t *Tokenizer) EOS() int { return t.eos }

// Raw returns token id as stored in the vocabulary ("" for an id outside it).
func (t *Tokenizer) Raw(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Special reports whether id is a control, unknown or unused token (GGUF token types 2, 3
// and 5) or a <...> token of a WordLevel vocabulary.
func (t *Tokenizer) Special(id int) bool {
	if id < 0 || id >= len(t.tokens) {
		return false
	}
	if t.types != nil && id < len(t.types) {
		switch t.types[id] {
		case 2, 3, 5:
			return true
		}
		return false
	}
	s := t.tokens[id]
	return len(s) > 2 && s[0] == '<' && s[len(s)-1] == '>'
}

// IsByte reports whether id is a byte token (<0xNN>).
func (t *Tokenizer) IsByte(id int) bool {
	_, ok := byteToken(t.Raw(id))
	return ok
}

// Token returns id as readable text: "▁the" and "Ġthe" as " the", byte tokens as their byte.
func (t *Tokenizer) Token(id int) string { return t.piece(id) }

func byteToken(s string) (byte, bool) {
	if len(s) == 6 && strings.HasPrefix(s, "<0x") && s[5] == '>' {
		v, err := strconv.ParseUint(s[3:5], 16, 8)
		return byte(v), err == nil
	}
	return 0, false
}

// FromModel reads the vocabulary of a GGUF model's metadata.
func FromModel(m *formats.Model) (*Tokenizer, error) {
	tv, ok := m.Meta("tokenizer.ggml.tokens")
	if !ok {
		return nil, ErrNoVocabulary
	}
	tokens, ok := tv.([]string)
	if !ok {
		return nil, fmt.Errorf("tok: tokenizer.ggml.tokens is %T, not strings", tv)
	}
	t := &Tokenizer{tokens: tokens, bos: -1, eos: -1, unk: -1}
	if sv, ok := m.Meta("tokenizer.ggml.scores"); ok {
		s, _ := sv.([]float32)
		if len(s) != len(tokens) {
			return nil, fmt.Errorf("tok: %d scores for %d tokens", len(s), len(tokens))
		}
		t.scores = s
	}
	if tv, ok := m.Meta("tokenizer.ggml.token_type"); ok {
		ty, _ := tv.([]int32)
		if len(ty) != len(tokens) {
			return nil, fmt.Errorf("tok: %d token types for %d tokens", len(ty), len(tokens))
		}
		t.types = ty
	}
	mv, _ := m.Meta("tokenizer.ggml.model")
	switch mv {
	case "llama", nil:
		t.Kind = SPM
	case "gpt2":
		t.Kind = ByteBPE
	case "bert":
		t.Kind = WordPiece
	default:
		t.Kind = fmt.Sprint(mv)
	}
	get := func(key string) int {
		v, ok := m.Meta(key)
		if !ok {
			return -1
		}
		var id int
		switch x := v.(type) {
		case uint32:
			id = int(x)
		case int32:
			id = int(x)
		default:
			return -1
		}
		if id < 0 || id >= len(tokens) {
			return -1
		}
		return id
	}
	t.bos, t.eos, t.unk = get("tokenizer.ggml.bos_token_id"), get("tokenizer.ggml.eos_token_id"), get("tokenizer.ggml.unknown_token_id")
	if mv, ok := m.Meta("tokenizer.ggml.merges"); ok {
		ms, _ := mv.([]string)
		t.merges = make(map[[2]string]int, len(ms))
		for r, line := range ms {
			a, b, ok := strings.Cut(line, " ")
			if ok {
				if _, dup := t.merges[[2]string{a, b}]; !dup {
					t.merges[[2]string{a, b}] = r
				}
			}
		}
	}
	if t.Kind == SPM && !t.hasSpacePieces() {
		// a word vocabulary stored as SentencePiece (no ▁ piece, no byte token): whole
		// words separated by spaces, as it was trained
		t.Kind = WordLevel
	}
	t.index()
	return t, nil
}

// hasSpacePieces reports whether any token carries SentencePiece's ▁ or is a byte token.
func (t *Tokenizer) hasSpacePieces() bool {
	for _, s := range t.tokens {
		if strings.Contains(s, "▁") {
			return true
		}
		if _, ok := byteToken(s); ok {
			return true
		}
	}
	return false
}

func (t *Tokenizer) index() {
	t.ids = make(map[string]int, len(t.tokens))
	for i := len(t.tokens) - 1; i >= 0; i-- { // the first of duplicates wins
		t.ids[t.tokens[i]] = i
	}
}

// FromHFDir reads tokenizer.json in dir (a WordLevel model encodes; other models decode).
func FromHFDir(dir string) (*Tokenizer, error) {
	p := filepath.Join(dir, "tokenizer.json")
	st, err := os.Stat(p)
	if err != nil {
		return nil, ErrNoVocabulary
	}
	if st.Size() > 64<<20 {
		return nil, fmt.Errorf("tok: %s is larger than 64 MiB", p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var j struct {
		Added []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
		PreTokenizer json.RawMessage `json:"pre_tokenizer"`
		Model        struct {
			Type     string          `json:"type"`
			Vocab    json.RawMessage `json:"vocab"`
			Merges   json.RawMessage `json:"merges"`
			UnkToken string          `json:"unk_token"`
			UnkID    *int            `json:"unk_id"`
		} `json:"model"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("tok: %s: %w", p, err)
	}
	t := &Tokenizer{bos: -1, eos: -1, unk: -1}
	set := func(id int, s string) error {
		if id < 0 || id >= 1<<22 {
			return fmt.Errorf("tok: %s: token id %d out of range", p, id)
		}
		for len(t.tokens) <= id {
			t.tokens = append(t.tokens, "")
		}
		t.tokens[id] = s
		return nil
	}
	switch j.Model.Type {
	case "Unigram":
		var vocab [][2]json.RawMessage
		if err := json.Unmarshal(j.Model.Vocab, &vocab); err != nil {
			return nil, fmt.Errorf("tok: %s: unigram vocab: %w", p, err)
		}
		t.Kind, t.unigram = SPM, true
		t.scores = make([]float32, len(vocab))
		for id, e := range vocab {
			var piece string
			var score float64
			if json.Unmarshal(e[0], &piece) != nil || json.Unmarshal(e[1], &score) != nil {
				return nil, fmt.Errorf("tok: %s: unigram entry %d is not [piece, score]", p, id)
			}
			if err := set(id, piece); err != nil {
				return nil, err
			}
			t.scores[id] = float32(score)
			t.maxPiece = max(t.maxPiece, len(piece))
		}
		if j.Model.UnkID != nil {
			t.unk = *j.Model.UnkID
		}
	default:
		var vocab map[string]int
		if err := json.Unmarshal(j.Model.Vocab, &vocab); err != nil {
			return nil, fmt.Errorf("tok: %s: vocab: %w", p, err)
		}
		for s, id := range vocab {
			if err := set(id, s); err != nil {
				return nil, err
			}
		}
		switch j.Model.Type {
		case "WordLevel":
			t.Kind = WordLevel
		case "WordPiece":
			t.Kind = WordPiece
		case "BPE":
			t.Kind = ByteBPE
			if strings.Contains(string(j.PreTokenizer), "Metaspace") || vocab["▁"] > 0 {
				t.Kind, t.rankBPE = SPM, true
			}
			t.merges = map[[2]string]int{}
			var asStrings []string
			var asPairs [][2]string
			if json.Unmarshal(j.Model.Merges, &asStrings) == nil {
				for r, m := range asStrings {
					if a, b, ok := strings.Cut(m, " "); ok {
						if _, dup := t.merges[[2]string{a, b}]; !dup {
							t.merges[[2]string{a, b}] = r
						}
					}
				}
			} else if json.Unmarshal(j.Model.Merges, &asPairs) == nil {
				for r, m := range asPairs {
					if _, dup := t.merges[m]; !dup {
						t.merges[m] = r
					}
				}
			}
		default:
			t.Kind = SPM
		}
	}
	for _, a := range j.Added {
		if err := set(a.ID, a.Content); err != nil {
			return nil, err
		}
	}
	t.index()
	for _, s := range []string{"<s>", "<|begin_of_text|>", "[CLS]", "<bos>"} {
		if id, ok := t.ids[s]; ok {
			t.bos = id
			break
		}
	}
	for _, s := range []string{"</s>", "<|end_of_text|>", "[SEP]", "<eos>", "<|endoftext|>"} {
		if id, ok := t.ids[s]; ok {
			t.eos = id
			break
		}
	}
	if id, ok := t.ids[j.Model.UnkToken]; ok && j.Model.UnkToken != "" {
		t.unk = id
	} else if id, ok := t.ids["<unk>"]; ok && t.unk < 0 {
		t.unk = id
	}
	return t, nil
}

// Encode turns text into ids, with the BOS token first when addBOS and the vocabulary has
// one.
func (t *Tokenizer) Encode(text string, addBOS bool) ([]int, error) {
	var out []int
	if addBOS && t.bos >= 0 {
		out = append(out, t.bos)
	}
	switch t.Kind {
	case SPM:
		return append(out, t.encodeSPM(text)...), nil
	case WordLevel:
		return append(out, t.encodeWords(text)...), nil
	case ByteBPE:
		if t.merges != nil {
			return append(out, t.encodeBPE(text)...), nil
		}
	}
	return nil, fmt.Errorf("tok: encoding %s vocabularies is not supported; give token ids", t.Kind)
}

// encodeWords splits on whitespace and between word and punctuation characters.
func (t *Tokenizer) encodeWords(text string) []int {
	var out []int
	var cur []rune
	kind := 0 // 1 word, 2 punctuation
	flush := func() {
		if len(cur) > 0 {
			if id, ok := t.ids[string(cur)]; ok {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk)
			}
		}
		cur, kind = cur[:0], 0
	}
	for _, r := range text {
		switch {
		case unicode.IsSpace(r):
			flush()
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_':
			if kind == 2 {
				flush()
			}
			kind = 1
			cur = append(cur, r)
		default:
			if kind == 1 {
				flush()
			}
			kind = 2
			cur = append(cur, r)
		}
	}
	flush()
	return out
}

// encodeSPM follows llama.cpp's SPM tokenizer: spaces become ▁ (one is prefixed), the
// text is split into characters, and the adjacent pair whose merge is the highest-scoring
// vocabulary entry is merged until none is left; symbols outside the vocabulary become
// byte tokens.
func (t *Tokenizer) encodeSPM(text string) []int {
	if text == "" {
		return nil
	}
	s := "▁" + strings.ReplaceAll(text, " ", "▁")
	if t.unigram {
		return t.viterbi(s)
	}
	var sym []string
	for len(s) > 0 {
		_, n := utf8.DecodeRuneInString(s)
		sym = append(sym, s[:n])
		s = s[n:]
	}
	score := func(p string) (float32, bool) {
		id, ok := t.ids[p]
		if !ok {
			return 0, false
		}
		if t.scores != nil {
			return t.scores[id], true
		}
		return 0, true
	}
	for len(sym) > 1 {
		best, bi := float32(0), -1
		for i := 0; i+1 < len(sym); i++ {
			if t.rankBPE {
				// merge ranks: a lower rank merges first
				if r, ok := t.merges[[2]string{sym[i], sym[i+1]}]; ok && (bi < 0 || float32(-r) > best) {
					best, bi = float32(-r), i
				}
				continue
			}
			if sc, ok := score(sym[i] + sym[i+1]); ok && (bi < 0 || sc > best) {
				best, bi = sc, i
			}
		}
		if bi < 0 {
			break
		}
		sym[bi] += sym[bi+1]
		sym = append(sym[:bi+1], sym[bi+2:]...)
	}
	var out []int
	for _, p := range sym {
		if id, ok := t.ids[p]; ok {
			out = append(out, id)
			continue
		}
		for i := 0; i < len(p); i++ {
			if id, ok := t.ids[fmt.Sprintf("<0x%02X>", p[i])]; ok {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk)
			}
		}
	}
	return out
}

// viterbi segments s into the pieces of highest total score (Unigram); characters no piece
// covers become byte tokens or the unknown token.
func (t *Tokenizer) viterbi(s string) []int {
	n := len(s)
	best := make([]float64, n+1)
	from := make([]int, n+1)
	tokAt := make([]int, n+1)
	for i := 1; i <= n; i++ {
		best[i] = math.Inf(-1)
	}
	for i := 0; i < n; i++ {
		if math.IsInf(best[i], -1) {
			continue
		}
		_, cl := utf8.DecodeRuneInString(s[i:])
		found := false
		for j := i + 1; j <= n && j-i <= t.maxPiece; j++ {
			if id, ok := t.ids[s[i:j]]; ok {
				sc := best[i] + float64(t.scores[id])
				if sc > best[j] {
					best[j], from[j], tokAt[j] = sc, i, id
				}
				if j == i+cl {
					found = true
				}
			}
		}
		if !found { // unknown character: one step with a penalty
			j := i + cl
			sc := best[i] - 1e6
			if sc > best[j] {
				best[j], from[j], tokAt[j] = sc, i, -1
			}
		}
	}
	var rev [][2]int
	for j := n; j > 0; j = from[j] {
		rev = append(rev, [2]int{from[j], j})
	}
	var out []int
	for k := len(rev) - 1; k >= 0; k-- {
		i, j := rev[k][0], rev[k][1]
		if id := tokAt[j]; id >= 0 {
			out = append(out, id)
			continue
		}
		for b := i; b < j; b++ {
			if id, ok := t.ids[fmt.Sprintf("<0x%02X>", s[b])]; ok {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk)
				break
			}
		}
	}
	return out
}

// encodeBPE is GPT-2's byte-level BPE: the text is split by GPT-2's pre-tokenizer, each
// piece's bytes are mapped to printable stand-ins, and adjacent symbols are merged by
// merge rank until no listed merge applies.
func (t *Tokenizer) encodeBPE(text string) []int {
	var out []int
	for _, w := range gpt2Split(text) {
		var sym []string
		for _, b := range []byte(w) {
			sym = append(sym, string(gpt2Runes[b]))
		}
		for len(sym) > 1 {
			best, bi := -1, -1
			for i := 0; i+1 < len(sym); i++ {
				if r, ok := t.merges[[2]string{sym[i], sym[i+1]}]; ok && (bi < 0 || r < best) {
					best, bi = r, i
				}
			}
			if bi < 0 {
				break
			}
			sym[bi] += sym[bi+1]
			sym = append(sym[:bi+1], sym[bi+2:]...)
		}
		for _, p := range sym {
			if id, ok := t.ids[p]; ok {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk)
			}
		}
	}
	return out
}

// gpt2Split is GPT-2's pre-tokenizer pattern
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ written by hand.
func gpt2Split(s string) []string {
	var out []string
	rs := []rune(s)
	for i := 0; i < len(rs); {
		if rs[i] == '\'' {
			rest := string(rs[i+1:])
			matched := false
			for _, c := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
				if strings.HasPrefix(rest, c) {
					out = append(out, "'"+c)
					i += 1 + len(c)
					matched = true
					break
				}
			}
			if matched {
				continue
			}
		}
		j := i
		if rs[j] == ' ' && j+1 < len(rs) && !unicode.IsSpace(rs[j+1]) {
			j++
		}
		switch {
		case unicode.IsLetter(rs[j]):
			for j < len(rs) && unicode.IsLetter(rs[j]) {
				j++
			}
		case unicode.IsNumber(rs[j]):
			for j < len(rs) && unicode.IsNumber(rs[j]) {
				j++
			}
		case !unicode.IsSpace(rs[j]):
			for j < len(rs) && !unicode.IsSpace(rs[j]) && !unicode.IsLetter(rs[j]) && !unicode.IsNumber(rs[j]) {
				j++
			}
		default: // whitespace: all but the last if a non-space follows
			for j < len(rs) && unicode.IsSpace(rs[j]) {
				j++
			}
			if j < len(rs) && j-i > 1 {
				j--
			}
		}
		out = append(out, string(rs[i:j]))
		i = j
	}
	return out
}

// gpt2Runes maps bytes to GPT-2's printable stand-ins.
var gpt2Runes = func() [256]rune {
	var r [256]rune
	for c, b := range gpt2Bytes {
		r[b] = c
	}
	return r
}()

// gpt2Bytes maps GPT-2's printable stand-ins back to bytes.
var gpt2Bytes = func() map[rune]byte {
	m := map[rune]byte{}
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			m[rune(b)] = byte(b)
		} else {
			m[rune(256+n)] = byte(b)
			n++
		}
	}
	return m
}()

func (t *Tokenizer) piece(id int) string {
	s := t.Raw(id)
	if b, ok := byteToken(s); ok {
		return string([]byte{b})
	}
	switch t.Kind {
	case SPM:
		return strings.ReplaceAll(s, "▁", " ")
	case ByteBPE:
		var bs []byte
		for _, r := range s {
			if b, ok := gpt2Bytes[r]; ok {
				bs = append(bs, b)
			} else {
				bs = append(bs, string(r)...)
			}
		}
		return string(bs)
	case WordPiece:
		if strings.HasPrefix(s, "##") {
			return s[2:]
		}
		return " " + s
	case WordLevel:
		return " " + s
	}
	return s
}

// Decode turns ids into text; special tokens are left out.
func (t *Tokenizer) Decode(ids []int) string {
	var sb strings.Builder
	for _, id := range ids {
		if t.Special(id) && !t.IsByte(id) {
			continue
		}
		sb.WriteString(t.piece(id))
	}
	out := sb.String()
	if t.Kind != ByteBPE {
		out = strings.TrimPrefix(out, " ")
	}
	return out
}
