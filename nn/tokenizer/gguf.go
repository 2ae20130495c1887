package tokenizer

import (
	"fmt"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// FromGGUF builds the tokenizer described by a model's tokenizer.ggml.* metadata:
// tokens, scores, token_type, merges, model ("llama", "gpt2", "bert", "t5"), pre, the
// special token ids and add_space_prefix. A model without tokenizer.ggml.tokens returns
// ErrNoVocabulary; arrays of the wrong type or length return ErrInvalid.
func FromGGUF(m *formats.Model) (*Tokenizer, error) {
	tv, ok := m.Meta("tokenizer.ggml.tokens")
	if !ok {
		return nil, ErrNoVocabulary
	}
	tokens, ok := tv.([]string)
	if !ok {
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.tokens is %T, not a string array: %w", tv, ErrInvalid)
	}
	if len(tokens) == 0 {
		return nil, ErrNoVocabulary
	}
	t := &Tokenizer{tokens: tokens}
	if v, ok := m.Meta("tokenizer.ggml.scores"); ok {
		s, ok := toFloat32s(v)
		if !ok {
			return nil, fmt.Errorf("tokenizer: tokenizer.ggml.scores is %T, not a number array: %w", v, ErrInvalid)
		}
		if len(s) != len(tokens) {
			return nil, fmt.Errorf("tokenizer: %d scores for %d tokens: %w", len(s), len(tokens), ErrInvalid)
		}
		t.scores = s
	}
	t.types = make([]int32, len(tokens))
	if v, ok := m.Meta("tokenizer.ggml.token_type"); ok {
		ty, ok := toInts(v)
		if !ok {
			return nil, fmt.Errorf("tokenizer: tokenizer.ggml.token_type is %T, not an integer array: %w", v, ErrInvalid)
		}
		if len(ty) != len(tokens) {
			return nil, fmt.Errorf("tokenizer: %d token types for %d tokens: %w", len(ty), len(tokens), ErrInvalid)
		}
		for i, x := range ty {
			if x < TypeNormal || x > TypeByte {
				x = TypeNormal
			}
			t.types[i] = int32(x)
		}
	} else {
		for i, s := range tokens {
			t.types[i] = TypeNormal
			if _, ok := byteOf(s); ok {
				t.types[i] = TypeByte
			}
		}
	}
	model, _ := m.Meta("tokenizer.ggml.model")
	modelName, _ := model.(string)
	pre, _ := m.Meta("tokenizer.ggml.pre")
	preName, _ := pre.(string)
	id := func(key string) int {
		v, ok := m.Meta(key)
		if !ok {
			return -1
		}
		n, ok := toInt(v)
		if !ok || n < 0 || n >= int64(len(tokens)) {
			return -1
		}
		return int(n)
	}
	t.bos, t.eos, t.unk = id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"), id("tokenizer.ggml.unknown_token_id")

	switch modelName {
	case "llama", "":
		t.kind = SentencePiece
		t.addSpacePrefix, t.escapeSpaces, t.byteFallback = true, true, true
	case "t5":
		t.kind = Unigram
		t.addSpacePrefix, t.escapeSpaces, t.byteFallback = true, true, true
		t.pre = preNone
	case "gpt2":
		t.kind = ByteLevelBPE
		switch preName {
		case "llama3", "llama-bpe", "llama-v3", "smaug-bpe", "dbrx":
			t.pre = preLlama3
			t.ignoreMerges = preName != "dbrx"
		default:
			t.pre = preGPT2
		}
	case "bert":
		t.kind = WordPiece
		t.phantomSpace, t.lowercase, t.stripAccents = true, true, true
		if t.bos < 0 {
			t.bos = id("tokenizer.ggml.cls_token_id")
		}
		if t.eos < 0 {
			t.eos = id("tokenizer.ggml.seperator_token_id")
		}
	case "none", "no_vocab":
		return nil, ErrNoVocabulary
	default:
		// rwkv, plamo2 and others: decoded as SentencePiece pieces; encoding is a best
		// effort by score
		t.kind = SentencePiece
		t.addSpacePrefix, t.escapeSpaces, t.byteFallback = true, true, true
	}
	if v, ok := m.Meta("tokenizer.ggml.add_space_prefix"); ok {
		if b, ok := v.(bool); ok {
			t.addSpacePrefix = b
		}
	}
	t.addBOS = t.kind != ByteLevelBPE
	if v, ok := m.Meta("tokenizer.ggml.add_bos_token"); ok {
		if b, ok := v.(bool); ok {
			t.addBOS = b
		}
	}
	if t.kind == ByteLevelBPE {
		v, ok := m.Meta("tokenizer.ggml.merges")
		if ok {
			ms, ok := v.([]string)
			if !ok {
				return nil, fmt.Errorf("tokenizer: tokenizer.ggml.merges is %T, not a string array: %w", v, ErrInvalid)
			}
			t.merges = make(map[[2]string]int, len(ms))
			for r, line := range ms {
				a, b, ok := strings.Cut(line, " ")
				if !ok {
					continue
				}
				if _, dup := t.merges[[2]string{a, b}]; !dup {
					t.merges[[2]string{a, b}] = r
				}
			}
		}
	}
	if t.kind == SentencePiece && !hasPieces(tokens) {
		// a word vocabulary stored as SentencePiece (no "▁" piece, no byte token): whole
		// words separated by spaces, as it was trained
		t.wordsOnly = true
		t.addSpacePrefix = false
	}
	t.finish()
	return t, nil
}

// finish indexes the vocabulary and derives the unknown-piece score.
func (t *Tokenizer) finish() {
	t.index()
	minScore := 0.0
	for _, s := range t.scores {
		minScore = min(minScore, float64(s))
	}
	t.unkScore = minScore - 10
	if t.maxPiece == 0 {
		t.maxPiece = 1
	}
}

// hasPieces reports whether any token carries "▁" or is a byte token.
func hasPieces(tokens []string) bool {
	for _, s := range tokens {
		if strings.Contains(s, "▁") {
			return true
		}
		if _, ok := byteOf(s); ok {
			return true
		}
	}
	return false
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint64:
		if x > 1<<62 {
			return -1, true
		}
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x != float64(int64(x)) {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}

func toInts(v any) ([]int64, bool) {
	switch x := v.(type) {
	case []int32:
		out := make([]int64, len(x))
		for i, e := range x {
			out[i] = int64(e)
		}
		return out, true
	case []uint32:
		out := make([]int64, len(x))
		for i, e := range x {
			out[i] = int64(e)
		}
		return out, true
	case []int64:
		return x, true
	case []uint8:
		out := make([]int64, len(x))
		for i, e := range x {
			out[i] = int64(e)
		}
		return out, true
	case []int8:
		out := make([]int64, len(x))
		for i, e := range x {
			out[i] = int64(e)
		}
		return out, true
	case []int16:
		out := make([]int64, len(x))
		for i, e := range x {
			out[i] = int64(e)
		}
		return out, true
	}
	return nil, false
}

func toFloat32s(v any) ([]float32, bool) {
	switch x := v.(type) {
	case []float32:
		return x, true
	case []float64:
		out := make([]float32, len(x))
		for i, e := range x {
			out[i] = float32(e)
		}
		return out, true
	}
	return nil, false
}
