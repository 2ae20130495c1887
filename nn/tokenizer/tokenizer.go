// Package tokenizer turns text into token ids and token ids back into text for the models
// kensa inspects and runs, and names single tokens readably for reports.
//
// Vocabularies come from GGUF metadata (tokenizer.ggml.*; FromGGUF) or from a Hugging Face
// tokenizer.json (FromHFFile, FromHFDir; vocab.json + merges.txt for GPT-2-style
// directories). Encoding follows the reference implementations:
//
//   - SentencePiece BPE (GGUF model "llama"), as llama.cpp's SPM tokenizer: spaces become
//     "▁", a leading "▁" is added, adjacent symbols are merged greedily by the highest
//     vocabulary score, and characters outside the vocabulary fall back to <0xNN> byte
//     tokens.
//   - Byte-level BPE (GGUF model "gpt2", tokenizer.json BPE with a ByteLevel pre-tokenizer):
//     the GPT-2 pre-tokenizer split, the bytes-to-unicode mapping and merges by rank.
//   - SentencePiece-style BPE by merge rank (tokenizer.json BPE with Metaspace or a
//     Prepend/Replace normalizer, byte_fallback).
//   - Unigram (tokenizer.json Unigram, GGUF model "t5"): Viterbi best segmentation.
//   - WordLevel with a Whitespace pre-tokenizer.
//   - WordPiece (GGUF model "bert" with its "phantom space" vocabulary, tokenizer.json
//     WordPiece with "##" continuations): greedy longest match first.
//
// Every vocabulary decodes. Special-token text in the input is not parsed: "<s>" in a
// prompt is encoded as ordinary text, as llama.cpp does with parse_special off.
package tokenizer

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Kind is the encoding algorithm of a vocabulary.
type Kind int

// Kinds of vocabularies.
const (
	SentencePiece Kind = iota // score-greedy BPE over "▁"-escaped text with byte fallback (llama.cpp SPM)
	ByteLevelBPE              // GPT-2 byte-level BPE, merges by rank
	RankBPE                   // SentencePiece-style BPE, merges by rank ("▁" for spaces, byte fallback)
	Unigram                   // SentencePiece unigram, Viterbi segmentation
	WordLevel                 // whole words
	WordPiece                 // BERT greedy longest match
)

var kindNames = [...]string{"sentencepiece", "bytelevel-bpe", "bpe", "unigram", "wordlevel", "wordpiece"}

// String returns the kind's name.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Token types, as GGUF's tokenizer.ggml.token_type stores them.
const (
	TypeNormal      = 1
	TypeUnknown     = 2
	TypeControl     = 3
	TypeUserDefined = 4
	TypeUnused      = 5
	TypeByte        = 6
)

// Errors.
var (
	// ErrNoVocabulary is returned when a model or file carries no vocabulary.
	ErrNoVocabulary = errors.New("tokenizer: no vocabulary")
	// ErrInvalid is returned for a vocabulary that is malformed: mismatched array lengths,
	// ids out of range, wrong value types, oversized files.
	ErrInvalid = errors.New("tokenizer: invalid vocabulary")
	// ErrUnsupported is returned for a tokenizer type kensa cannot represent.
	ErrUnsupported = errors.New("tokenizer: unsupported tokenizer")
)

// Tokenizer maps between text and token ids. It is safe for concurrent use once built.
type Tokenizer struct {
	kind   Kind
	tokens []string
	scores []float32 // nil when the vocabulary has none
	types  []int32   // GGUF token types, one per token (TypeNormal when unknown)
	ids    map[string]int
	merges map[[2]string]int // merge ranks (ByteLevelBPE, RankBPE)

	bos, eos, unk int
	byteIDs       [256]int // <0xNN> tokens (SentencePiece, RankBPE, Unigram byte fallback), -1 if absent

	addSpacePrefix bool // a leading "▁" (or space) is added before encoding and stripped when decoding
	escapeSpaces   bool // spaces become "▁" before the model sees the text
	byteFallback   bool // unknown characters become byte tokens
	phantomSpace   bool // WordPiece vocabulary in GGUF's form: "▁word" starts a word, continuations bare
	contPrefix     string
	lowercase      bool
	stripAccents   bool
	fuseUnk        bool
	pre            preTokenizer
	maxPiece       int     // longest token in bytes (Unigram, WordPiece)
	unkScore       float64 // Unigram score of an unknown character
	wordsOnly      bool    // SentencePiece vocabulary without "▁" pieces or byte tokens: whole words
	ignoreMerges   bool    // a word in the vocabulary is one token whatever the merges (Llama 3)
	metaSplit      bool    // Metaspace pre-tokenizer splits before each "▁"
	norms          []normOp
	addBOS         bool // the model expects BOS before a prompt
	stripSpace     bool // decoding removes a leading space (tokenizer.json Prepend("▁") normalizer)
}

// preTokenizer names the split applied before the model.
type preTokenizer int

const (
	preNone       preTokenizer = iota
	preGPT2                    // GPT-2 regex split (byte-level)
	preLlama3                  // Llama-3 regex split (byte-level)
	preWhitespace              // \w+|[^\w\s]+
	preWhitespaceSplit
	preBert      // whitespace and punctuation, CJK characters alone
	preMetaspace // split before each "▁"
)

// Kind returns the vocabulary's encoding algorithm.
func (t *Tokenizer) Kind() Kind { return t.kind }

// Len returns the vocabulary size.
func (t *Tokenizer) Len() int { return len(t.tokens) }

// BOS returns the beginning-of-sequence id, or -1 when unknown.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the end-of-sequence id, or -1 when unknown.
func (t *Tokenizer) EOS() int { return t.eos }

// AddsBOS reports whether the model expects its BOS token before a prompt: GGUF's
// tokenizer.ggml.add_bos_token, defaulting to true for SentencePiece and WordPiece
// vocabularies and false for byte-level BPE; for tokenizer.json, whether a BOS is known
// and the model is not byte-level.
func (t *Tokenizer) AddsBOS() bool { return t.addBOS && t.bos >= 0 }

// Unknown returns the id of the unknown token, or -1.
func (t *Tokenizer) Unknown() int { return t.unk }

// ID returns the id of a token given as stored, and whether there is one.
func (t *Tokenizer) ID(raw string) (int, bool) {
	id, ok := t.ids[raw]
	return id, ok
}

// Raw returns token id as stored in the vocabulary ("" for an id outside it).
func (t *Tokenizer) Raw(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Type returns the GGUF token type of id (0 for an id outside the vocabulary).
func (t *Tokenizer) Type(id int) int {
	if id < 0 || id >= len(t.tokens) {
		return 0
	}
	return int(t.types[id])
}

// Score returns the SentencePiece score of id (0 when the vocabulary has none).
func (t *Tokenizer) Score(id int) float32 {
	if id < 0 || id >= len(t.scores) {
		return 0
	}
	return t.scores[id]
}

// Special reports whether id is a control, unknown or unused token (or outside the
// vocabulary): a token that stands for no text.
func (t *Tokenizer) Special(id int) bool {
	switch t.Type(id) {
	case TypeUnknown, TypeControl, TypeUnused, 0:
		return true
	}
	return false
}

// IsByte reports whether id is a byte token such as <0x0A>.
func (t *Tokenizer) IsByte(id int) bool {
	return t.Type(id) == TypeByte
}

// byteOf returns the byte of a token written <0xNN>.
func byteOf(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	h, ok1 := unhex(s[3])
	l, ok2 := unhex(s[4])
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Token returns the text that token id stands for, readably: "▁the" is " the", the byte
// token <0x0A> is "\n", GPT-2's "Ġthe" is " the" and WordPiece's "##ing" is "ing". Control
// and unknown tokens are returned as stored ("<s>"); "" for an id outside the vocabulary.
// A byte token of a partial UTF-8 sequence is returned as that one byte.
func (t *Tokenizer) Token(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	raw := t.tokens[id]
	switch t.types[id] {
	case TypeControl, TypeUnknown, TypeUnused, TypeUserDefined:
		return raw
	case TypeByte:
		if b, ok := byteOf(raw); ok {
			return string([]byte{b})
		}
		return raw
	}
	switch t.kind {
	case ByteLevelBPE:
		return string(fromByteLevel(nil, raw))
	case WordPiece:
		if t.phantomSpace {
			return strings.ReplaceAll(raw, "▁", " ")
		}
		if s, ok := strings.CutPrefix(raw, t.contPrefix); ok {
			return s
		}
		return " " + raw
	case WordLevel:
		return raw
	}
	return strings.ReplaceAll(raw, "▁", " ")
}

// Decode returns the text of a sequence of ids. Control and unused tokens (BOS, EOS,
// padding) are skipped, the unknown token and user-defined tokens appear as stored, byte
// tokens are joined into the bytes they stand for, and the space that encoding adds before
// the text is removed. Ids outside the vocabulary are skipped.
func (t *Tokenizer) Decode(ids []int) string {
	var b []byte
	first := true
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) {
			continue
		}
		raw := t.tokens[id]
		switch t.types[id] {
		case TypeControl, TypeUnused:
			continue
		case TypeUnknown:
			b = append(b, raw...)
			first = false
			continue
		case TypeUserDefined:
			b = append(b, raw...)
			first = false
			continue
		case TypeByte:
			if c, ok := byteOf(raw); ok {
				b = append(b, c)
				first = false
				continue
			}
		}
		switch t.kind {
		case ByteLevelBPE:
			b = fromByteLevel(b, raw)
		case WordLevel:
			if !first {
				b = append(b, ' ')
			}
			b = append(b, raw...)
		case WordPiece:
			if t.phantomSpace {
				b = appendSpaces(b, raw)
			} else if s, ok := strings.CutPrefix(raw, t.contPrefix); ok {
				b = append(b, s...)
			} else {
				if !first {
					b = append(b, ' ')
				}
				b = append(b, raw...)
			}
		default:
			if first && t.wordsOnly {
				b = append(b, raw...)
			} else if t.wordsOnly {
				b = append(b, ' ')
				b = append(b, raw...)
			} else {
				b = appendSpaces(b, raw)
			}
		}
		first = false
	}
	if ((t.addSpacePrefix && t.kind != ByteLevelBPE) || t.phantomSpace || t.stripSpace) && len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	return string(b)
}

// appendSpaces appends s with every "▁" replaced by a space.
func appendSpaces(b []byte, s string) []byte {
	for {
		i := strings.Index(s, "▁")
		if i < 0 {
			return append(b, s...)
		}
		b = append(b, s[:i]...)
		b = append(b, ' ')
		s = s[i+len("▁"):]
	}
}

// Encode returns the token ids of text, preceded by the BOS token when addBOS is set and
// the vocabulary has one. Special-token text is not recognised.
func (t *Tokenizer) Encode(text string, addBOS bool) []int {
	var out []int
	if addBOS && t.bos >= 0 {
		out = append(out, t.bos)
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	if text == "" {
		return out
	}
	switch t.kind {
	case SentencePiece:
		return t.encodeSPM(out, text)
	case ByteLevelBPE:
		return t.encodeByteLevel(out, text)
	case WordPiece:
		return t.encodeWordPiece(out, text)
	}
	return t.encodeHF(out, text)
}

// maxPieceSearch bounds the piece length Unigram and WordPiece matching tries, so that a
// hostile vocabulary with a huge token cannot make encoding quadratic in it.
const maxPieceSearch = 512

// index builds the text → id map (the last of duplicate tokens wins, as in llama.cpp) and
// the byte-token table.
func (t *Tokenizer) index() {
	t.ids = make(map[string]int, len(t.tokens))
	for i, s := range t.tokens {
		t.ids[s] = i
		if len(s) > t.maxPiece {
			t.maxPiece = min(len(s), maxPieceSearch)
		}
	}
	for i := range t.byteIDs {
		t.byteIDs[i] = -1
	}
	for i, s := range t.tokens {
		if b, ok := byteOf(s); ok && t.byteIDs[b] < 0 && (t.types[i] == TypeByte || t.types[i] == TypeNormal) {
			t.byteIDs[b] = i
		}
	}
}

// appendBytes appends the byte tokens of s (llama.cpp's byte_to_token: <0xNN>, else the
// one-byte token, else unknown).
func (t *Tokenizer) appendBytes(out []int, s string) []int {
	for i := 0; i < len(s); i++ {
		if id := t.byteIDs[s[i]]; id >= 0 {
			out = append(out, id)
		} else if id, ok := t.ids[s[i:i+1]]; ok {
			out = append(out, id)
		} else if t.unk >= 0 {
			out = append(out, t.unk)
		}
	}
	return out
}
