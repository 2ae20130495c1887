package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// MaxFileSize is the largest tokenizer file read (tokenizer.json, vocab.json, merges.txt);
// larger files return ErrInvalid without being read.
const MaxFileSize = 64 << 20

// maxVocab bounds a vocabulary's size and ids, so that a hostile file cannot make the
// tokens table huge.
const maxVocab = 1 << 24

// readBounded reads a whole file of at most MaxFileSize bytes through
// formats.ReadCompanion: a FIFO, device or socket named like a tokenizer file is refused
// without blocking, and so is a link out of the file's directory (other than a Hugging Face
// cache snapshot's link into its blobs/). A file that is not there returns an error wrapping
// fs.ErrNotExist; one that is too large wraps ErrInvalid.
func readBounded(path string) ([]byte, error) {
	data, err := formats.ReadCompanion(filepath.Dir(path), filepath.Base(path), MaxFileSize)
	if errors.Is(err, formats.ErrTooLarge) {
		return nil, fmt.Errorf("tokenizer: %v: %w", err, ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return data, nil
}

// hfFile is the part of tokenizer.json that kensa reads.
type hfFile struct {
	AddedTokens []struct {
		ID      *int64 `json:"id"` // nil: absent, null or (after CompatJSON) NaN
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        hfModel         `json:"model"`
}

type hfModel struct {
	Type          string          `json:"type"`
	Vocab         json.RawMessage `json:"vocab"`
	Merges        json.RawMessage `json:"merges"`
	UnkToken      *string         `json:"unk_token"`
	UnkID         *int64          `json:"unk_id"`
	ByteFallback  bool            `json:"byte_fallback"`
	FuseUnk       bool            `json:"fuse_unk"`
	IgnoreMerges  bool            `json:"ignore_merges"`
	ContPrefix    *string         `json:"continuing_subword_prefix"`
	MaxInputChars int             `json:"max_input_chars_per_word"`
}

// hfComponent is a normalizer, pre-tokenizer or decoder.
type hfComponent struct {
	Type           string            `json:"type"`
	Prepend        string            `json:"prepend"`
	Pattern        json.RawMessage   `json:"pattern"`
	Content        string            `json:"content"`
	Lowercase      *bool             `json:"lowercase"`
	StripAccents   *bool             `json:"strip_accents"`
	Replacement    string            `json:"replacement"`
	PrependScheme  string            `json:"prepend_scheme"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	Split          *bool             `json:"split"`
	UseRegex       *bool             `json:"use_regex"`
	Normalizers    []json.RawMessage `json:"normalizers"`
	PreTokenizers  []json.RawMessage `json:"pretokenizers"`
	Decoders       []json.RawMessage `json:"decoders"`
}

// FromHFFile reads a Hugging Face tokenizer.json: WordLevel, BPE (byte-level or
// SentencePiece-style), WordPiece and Unigram models, their added tokens, and the
// normalizers and pre-tokenizers that matter for these models (Prepend, Replace,
// Lowercase, BertNormalizer; ByteLevel, Metaspace, Whitespace, WhitespaceSplit,
// BertPreTokenizer, a Split by the Llama-3 pattern). Unicode normalization forms and
// accent stripping are not applied. BOS and EOS are guessed from the added tokens' names.
func FromHFFile(path string) (*Tokenizer, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	t, err := parseHF(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return t, nil
}

// FromHFDir reads the tokenizer of a Hugging Face model directory: tokenizer.json, or
// vocab.json and merges.txt (GPT-2 style). The BOS and EOS ids of config.json, when
// present, take precedence over guesses.
func FromHFDir(dir string) (*Tokenizer, error) {
	var t *Tokenizer
	path := filepath.Join(dir, "tokenizer.json")
	data, err := readBounded(path)
	switch {
	case err == nil:
		if t, err = parseHF(data); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		vocab := filepath.Join(dir, "vocab.json")
		data, err = readBounded(vocab)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("tokenizer: %s has no tokenizer.json or vocab.json: %w", dir, ErrNoVocabulary)
		}
		if err != nil {
			return nil, err
		}
		if t, err = fromVocabMerges(vocab, data, filepath.Join(dir, "merges.txt")); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	if data, err := readBounded(filepath.Join(dir, "config.json")); err == nil {
		var c struct {
			BOS json.RawMessage `json:"bos_token_id"`
			EOS json.RawMessage `json:"eos_token_id"`
		}
		// parsed as transformers parses it: a NaN elsewhere does not hide the ids
		data, _ = formats.CompatJSON(data)
		if json.Unmarshal(data, &c) == nil {
			if id, ok := configID(c.BOS, t.Len()); ok {
				t.bos = id
			}
			if id, ok := configID(c.EOS, t.Len()); ok {
				t.eos = id
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrInvalid) {
		return nil, err
	}
	return t, nil
}

// configID reads a config.json token id: a number or a list whose first element is one.
func configID(raw json.RawMessage, n int) (int, bool) {
	var id int64
	if json.Unmarshal(raw, &id) != nil {
		var ids []int64
		if json.Unmarshal(raw, &ids) != nil || len(ids) == 0 {
			return 0, false
		}
		id = ids[0]
	}
	if id < 0 || id >= int64(n) {
		return 0, false
	}
	return int(id), true
}

// parseHF reads a tokenizer.json. Python's json module (and kensa) accept NaN, Infinity and
// -Infinity, the Rust tokenizers library does not: kensa loads such a file, with a Unigram
// score that is not a finite number counting as the vocabulary's lowest score, and refuses
// one where an id is not a number.
func parseHF(data []byte) (*Tokenizer, error) {
	data, nonFinite := formats.CompatJSON(data)
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %v: %w", err, ErrInvalid)
	}
	t := &Tokenizer{bos: -1, eos: -1, unk: -1}
	m := &f.Model
	typ := m.Type
	vocabIsList := len(bytes.TrimSpace(m.Vocab)) > 0 && bytes.TrimSpace(m.Vocab)[0] == '['
	if typ == "" {
		switch {
		case vocabIsList:
			typ = "Unigram"
		case len(m.Merges) > 0:
			typ = "BPE"
		case m.ContPrefix != nil:
			typ = "WordPiece"
		default:
			typ = "WordLevel"
		}
	}
	if len(m.Vocab) == 0 || string(m.Vocab) == "null" {
		return nil, ErrNoVocabulary
	}

	// vocabulary
	if typ == "Unigram" {
		var pieces [][]json.RawMessage
		if err := json.Unmarshal(m.Vocab, &pieces); err != nil {
			return nil, fmt.Errorf("unigram vocab: %v: %w", err, ErrInvalid)
		}
		if len(pieces) > maxVocab {
			return nil, fmt.Errorf("unigram vocab of %d pieces: %w", len(pieces), ErrInvalid)
		}
		t.tokens = make([]string, len(pieces))
		t.scores = make([]float32, len(pieces))
		var unscored []int // scores that are NaN, ±Infinity (null after CompatJSON) or null
		lowest := float32(0)
		for i, p := range pieces {
			if len(p) != 2 || json.Unmarshal(p[0], &t.tokens[i]) != nil {
				return nil, fmt.Errorf("unigram vocab entry %d is not [piece, score]: %w", i, ErrInvalid)
			}
			if string(bytes.TrimSpace(p[1])) == "null" {
				unscored = append(unscored, i)
				continue
			}
			if json.Unmarshal(p[1], &t.scores[i]) != nil {
				return nil, fmt.Errorf("unigram vocab entry %d is not [piece, score]: %w", i, ErrInvalid)
			}
			lowest = min(lowest, t.scores[i])
		}
		for _, i := range unscored {
			t.scores[i] = lowest
		}
	} else {
		var vocab map[string]int64
		if len(nonFinite) > 0 {
			// a NaN id became null, which would decode as id 0
			var ids map[string]*int64
			if err := json.Unmarshal(m.Vocab, &ids); err != nil {
				return nil, fmt.Errorf("vocab: %v: %w", err, ErrInvalid)
			}
			vocab = make(map[string]int64, len(ids))
			for s, id := range ids {
				if id == nil {
					return nil, fmt.Errorf("vocab id of %q is not a number: %w", s, ErrInvalid)
				}
				vocab[s] = *id
			}
		} else if err := json.Unmarshal(m.Vocab, &vocab); err != nil {
			return nil, fmt.Errorf("vocab: %v: %w", err, ErrInvalid)
		}
		if err := t.setVocab(vocab, len(f.AddedTokens)); err != nil {
			return nil, err
		}
	}
	t.types = make([]int32, len(t.tokens))
	for i := range t.types {
		t.types[i] = TypeNormal
	}

	// added tokens
	for _, a := range f.AddedTokens {
		if a.ID == nil {
			return nil, fmt.Errorf("added token %q has no id: %w", a.Content, ErrInvalid)
		}
		id := *a.ID
		if id < 0 || id >= maxVocab || id > int64(4*len(t.tokens)+1024) {
			return nil, fmt.Errorf("added token id %d out of range: %w", id, ErrInvalid)
		}
		for int64(len(t.tokens)) <= id {
			t.tokens = append(t.tokens, "")
			t.types = append(t.types, TypeUnused)
			if t.scores != nil {
				t.scores = append(t.scores, 0)
			}
		}
		t.tokens[id] = a.Content
		if a.Special {
			t.types[id] = TypeControl
		} else {
			t.types[id] = TypeUserDefined
		}
	}

	// model
	t.byteFallback = m.ByteFallback
	t.fuseUnk = m.FuseUnk
	t.ignoreMerges = m.IgnoreMerges
	switch typ {
	case "WordLevel":
		t.kind = WordLevel
	case "WordPiece":
		t.kind = WordPiece
		t.contPrefix = "##"
		if m.ContPrefix != nil {
			t.contPrefix = *m.ContPrefix
		}
	case "Unigram":
		t.kind = Unigram
		if m.UnkID != nil && *m.UnkID >= 0 && *m.UnkID < int64(len(t.tokens)) {
			t.unk = int(*m.UnkID)
		}
	case "BPE":
		t.kind = RankBPE
		merges, err := parseMerges(m.Merges)
		if err != nil {
			return nil, err
		}
		t.merges = merges
	default:
		return nil, fmt.Errorf("model type %q: %w", typ, ErrUnsupported)
	}
	if m.UnkToken != nil {
		for i, s := range t.tokens {
			if s == *m.UnkToken {
				t.unk = i
				break
			}
		}
	}
	if t.unk >= 0 {
		t.types[t.unk] = TypeUnknown
	}
	if t.byteFallback {
		for i, s := range t.tokens {
			if _, ok := byteOf(s); ok && t.types[i] == TypeNormal {
				t.types[i] = TypeByte
			}
		}
	}

	// normalizer, pre-tokenizer, decoder
	if err := t.parseNormalizer(f.Normalizer, 0); err != nil {
		return nil, err
	}
	byteLevel, err := t.parsePre(f.PreTokenizer, 0)
	if err != nil {
		return nil, err
	}
	if !byteLevel && t.kind == RankBPE && len(f.Decoder) > 0 && bytes.Contains(f.Decoder, []byte(`"ByteLevel"`)) && t.pre == preNone && len(t.norms) == 0 {
		byteLevel = true
		t.pre = preGPT2
	}
	if byteLevel {
		if t.kind != RankBPE {
			return nil, fmt.Errorf("ByteLevel pre-tokenizer with a %s model: %w", typ, ErrUnsupported)
		}
		t.kind = ByteLevelBPE
	}
	if t.kind == WordPiece && t.pre == preNone {
		t.pre = preBert
	}
	if t.unkScore == 0 {
		minScore := 0.0
		for _, s := range t.scores {
			minScore = min(minScore, float64(s))
		}
		t.unkScore = minScore - 10
	}
	t.index()
	t.guessSpecials()
	t.addBOS = t.kind != ByteLevelBPE
	return t, nil
}

// setVocab fills the tokens table from a piece → id map, refusing ids far beyond the
// vocabulary's size.
func (t *Tokenizer) setVocab(vocab map[string]int64, added int) error {
	if len(vocab) > maxVocab {
		return fmt.Errorf("vocab of %d tokens: %w", len(vocab), ErrInvalid)
	}
	limit := int64(4*(len(vocab)+added) + 1024)
	n := int64(0)
	for s, id := range vocab {
		if id < 0 || id >= limit || id >= maxVocab {
			return fmt.Errorf("vocab id %d of %q out of range: %w", id, s, ErrInvalid)
		}
		n = max(n, id+1)
	}
	t.tokens = make([]string, n)
	set := make([]bool, n)
	for s, id := range vocab {
		if !set[id] || s < t.tokens[id] { // deterministic for duplicate ids
			t.tokens[id] = s
			set[id] = true
		}
	}
	return nil
}

// parseMerges reads BPE merges as "a b" strings or ["a", "b"] pairs.
func parseMerges(raw json.RawMessage) (map[[2]string]int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return map[[2]string]int{}, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("merges: %v: %w", err, ErrInvalid)
	}
	if len(list) > maxVocab {
		return nil, fmt.Errorf("%d merges: %w", len(list), ErrInvalid)
	}
	merges := make(map[[2]string]int, len(list))
	for r, e := range list {
		var pair [2]string
		var s string
		if json.Unmarshal(e, &s) == nil {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("merge %d %q has no space: %w", r, s, ErrInvalid)
			}
			pair = [2]string{a, b}
		} else {
			var p []string
			if json.Unmarshal(e, &p) != nil || len(p) != 2 {
				return nil, fmt.Errorf("merge %d is neither \"a b\" nor [a, b]: %w", r, ErrInvalid)
			}
			pair = [2]string{p[0], p[1]}
		}
		if _, dup := merges[pair]; !dup {
			merges[pair] = r
		}
	}
	return merges, nil
}

const maxDepth = 16

func (t *Tokenizer) parseNormalizer(raw json.RawMessage, depth int) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if depth > maxDepth {
		return fmt.Errorf("normalizers nested too deep: %w", ErrInvalid)
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("normalizer: %v: %w", err, ErrInvalid)
	}
	switch c.Type {
	case "Sequence":
		for _, n := range c.Normalizers {
			if err := t.parseNormalizer(n, depth+1); err != nil {
				return err
			}
		}
	case "Prepend":
		t.norms = append(t.norms, normOp{op: "prepend", a: c.Prepend})
		if c.Prepend == "▁" || c.Prepend == " " {
			t.stripSpace = true
		}
	case "Replace":
		var p struct {
			String *string `json:"String"`
		}
		if json.Unmarshal(c.Pattern, &p) == nil && p.String != nil {
			t.norms = append(t.norms, normOp{op: "replace", a: *p.String, b: c.Content})
		}
	case "Lowercase":
		t.norms = append(t.norms, normOp{op: "lowercase"})
	case "BertNormalizer":
		t.lowercase = c.Lowercase == nil || *c.Lowercase
		t.stripAccents = t.lowercase
		if c.StripAccents != nil {
			t.stripAccents = *c.StripAccents
		}
	case "StripAccents":
		t.stripAccents = true
	}
	return nil
}

// parsePre reads a pre-tokenizer and reports whether it is byte-level.
func (t *Tokenizer) parsePre(raw json.RawMessage, depth int) (bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	if depth > maxDepth {
		return false, fmt.Errorf("pre-tokenizers nested too deep: %w", ErrInvalid)
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return false, fmt.Errorf("pre_tokenizer: %v: %w", err, ErrInvalid)
	}
	switch c.Type {
	case "Sequence":
		byteLevel := false
		for _, p := range c.PreTokenizers {
			b, err := t.parsePre(p, depth+1)
			if err != nil {
				return false, err
			}
			byteLevel = byteLevel || b
		}
		return byteLevel, nil
	case "Split":
		if bytes.Contains(c.Pattern, []byte(`{1,3}`)) {
			t.pre = preLlama3
		} else if t.pre == preNone {
			t.pre = preGPT2
		}
	case "ByteLevel":
		if c.UseRegex == nil || *c.UseRegex {
			t.pre = preGPT2
		}
		if c.AddPrefixSpace != nil && *c.AddPrefixSpace {
			t.addSpacePrefix = true
		}
		return true, nil
	case "Metaspace":
		t.pre = preMetaspace
		t.escapeSpaces = true
		t.addSpacePrefix = c.PrependScheme != "never"
		if c.PrependScheme == "" && c.AddPrefixSpace != nil {
			t.addSpacePrefix = *c.AddPrefixSpace
		}
		t.metaSplit = c.Split == nil || *c.Split
	case "Whitespace":
		t.pre = preWhitespace
	case "WhitespaceSplit":
		t.pre = preWhitespaceSplit
	case "BertPreTokenizer":
		t.pre = preBert
	}
	return false, nil
}

// guessSpecials sets BOS and EOS from the names of control tokens.
func (t *Tokenizer) guessSpecials() {
	for _, name := range []string{"<s>", "<|begin_of_text|>", "<bos>", "[CLS]", "<|startoftext|>", "<|endoftext|>"} {
		if id, ok := t.ids[name]; ok {
			t.bos = id
			break
		}
	}
	for _, name := range []string{"</s>", "<|end_of_text|>", "<eos>", "[SEP]", "<|endoftext|>", "<|im_end|>"} {
		if id, ok := t.ids[name]; ok {
			t.eos = id
			break
		}
	}
}

// fromVocabMerges reads a GPT-2 style vocab.json (data, read from vocabPath) and
// merges.txt. Its ids must be numbers: a NaN is an error.
func fromVocabMerges(vocabPath string, data []byte, mergesPath string) (*Tokenizer, error) {
	var vocab map[string]int64
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %v: %w", vocabPath, err, ErrInvalid)
	}
	t := &Tokenizer{kind: ByteLevelBPE, pre: preGPT2, bos: -1, eos: -1, unk: -1}
	if err := t.setVocab(vocab, 0); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", vocabPath, err)
	}
	t.types = make([]int32, len(t.tokens))
	for i := range t.types {
		t.types[i] = TypeNormal
		if t.tokens[i] == "" {
			t.types[i] = TypeUnused
		}
	}
	mdata, err := readBounded(mergesPath)
	if err != nil {
		return nil, err
	}
	t.merges = map[[2]string]int{}
	sc := bufio.NewScanner(bytes.NewReader(mdata))
	sc.Buffer(nil, MaxFileSize)
	r := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#version") || line == "" {
			continue
		}
		a, b, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if _, dup := t.merges[[2]string{a, b}]; !dup {
			t.merges[[2]string{a, b}] = r
		}
		r++
	}
	if id, ok := vocab["<|endoftext|>"]; ok {
		t.types[id] = TypeControl
	}
	t.index()
	t.guessSpecials()
	t.unkScore = -10
	return t, nil
}
