package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// writeJSON writes v as JSON to dir/name.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkKnownAnswers encodes the llama.cpp known-answer texts of vocab with tk, skipping
// those skip reports true for.
func checkKnownAnswers(t *testing.T, tk *Tokenizer, vocab string, skip func(string) bool) {
	t.Helper()
	texts, want := knownAnswers(t, vocab)
	failed, n := 0, 0
	for i, text := range texts {
		if skip != nil && skip(text) {
			continue
		}
		n++
		got := tk.Encode(text, false)
		if !slices.Equal(got, want[i]) && !(len(got) == 0 && len(want[i]) == 0) {
			failed++
			t.Errorf("Encode(%q) = %v, want %v", text, got, want[i])
		}
		if got := tk.Decode(want[i]); got != text {
			t.Errorf("Decode(%v) = %q, want %q", want[i], got, text)
		}
	}
	t.Logf("%s: %d of %d known answers match", vocab, n-failed, n)
}

// TestHFByteLevel checks tokenizer.json BPE with a ByteLevel pre-tokenizer, and
// vocab.json + merges.txt, against llama.cpp's GPT-2 known answers: the files are written
// from the GPT-2 GGUF vocabulary.
func TestHFByteLevel(t *testing.T) {
	g := openGGUF(t, "realfiles", "llamacpp-ggml-vocab-gpt-2.gguf")
	vocab := map[string]int{}
	for i, s := range g.tokens {
		if g.types[i] == TypeNormal {
			vocab[s] = i
		}
	}
	merges := make([]string, len(g.merges))
	for pair, r := range g.merges {
		merges[r] = pair[0] + " " + pair[1]
	}
	merges = slices.DeleteFunc(merges, func(s string) bool { return s == "" })
	dir := t.TempDir()
	tj := map[string]any{
		"version":       "1.0",
		"added_tokens":  []any{map[string]any{"id": 50256, "content": "<|endoftext|>", "special": true}},
		"normalizer":    nil,
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"decoder":       map[string]any{"type": "ByteLevel"},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "unk_token": nil},
	}
	writeJSON(t, dir, "tokenizer.json", tj)
	tk, err := FromHFDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tk.Kind(), ByteLevelBPE; got != want {
		t.Errorf("Kind() = %v, want %v", got, want)
	}
	if got, want := [2]int{tk.BOS(), tk.EOS()}, [2]int{50256, 50256}; got != want {
		t.Errorf("BOS, EOS = %v, want %v", got, want)
	}
	checkKnownAnswers(t, tk, "gpt-2", nil)

	// merges as pairs (tokenizers >= 0.20)
	pairs := make([][2]string, len(merges))
	for i, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		pairs[i] = [2]string{a, b}
	}
	tj["model"].(map[string]any)["merges"] = pairs
	p := writeJSON(t, dir, "tokenizer.json", tj)
	tk, err = FromHFFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tk.Encode("Hello, y'all!", false), []int{15496, 11, 331, 6, 439, 0}; !slices.Equal(got, want) {
		t.Errorf("pair merges: Encode = %v, want %v", got, want)
	}

	// vocab.json + merges.txt
	dir2 := t.TempDir()
	writeJSON(t, dir2, "vocab.json", vocab)
	if err := os.WriteFile(filepath.Join(dir2, "merges.txt"), []byte("#version: 0.2\n"+strings.Join(merges, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tk, err = FromHFDir(dir2)
	if err != nil {
		t.Fatal(err)
	}
	texts, want := knownAnswers(t, "gpt-2")
	for i, text := range texts {
		if got := tk.Encode(text, false); !slices.Equal(got, want[i]) && len(got)+len(want[i]) > 0 {
			t.Errorf("vocab.json: Encode(%q) = %v, want %v", text, got, want[i])
		}
	}
}

// spmMerges derives BPE merges from a SentencePiece vocabulary as Hugging Face's
// SentencePieceExtractor does: every split of a piece into two pieces, ranked by the
// score of the piece.
func spmMerges(g *Tokenizer) [][2]string {
	type m struct {
		l, r  string
		score float32
		li    int
		ri    int
	}
	var ms []m
	for i, piece := range g.tokens {
		if g.types[i] != TypeNormal {
			continue
		}
		var local []m
		for k := range piece {
			if k == 0 {
				continue
			}
			l, r := piece[:k], piece[k:]
			li, ok1 := g.ids[l]
			ri, ok2 := g.ids[r]
			if ok1 && ok2 && g.types[li] == TypeNormal && g.types[ri] == TypeNormal {
				local = append(local, m{l, r, g.scores[i], li, ri})
			}
		}
		sort.SliceStable(local, func(a, b int) bool {
			if local[a].li != local[b].li {
				return local[a].li < local[b].li
			}
			return local[a].ri < local[b].ri
		})
		ms = append(ms, local...)
	}
	sort.SliceStable(ms, func(a, b int) bool { return ms[a].score > ms[b].score })
	out := make([][2]string, len(ms))
	for i, x := range ms {
		out[i] = [2]string{x.l, x.r}
	}
	return out
}

// TestHFSentencePieceBPE checks Llama-2-style tokenizer.json files (BPE with byte_fallback,
// spaces as "▁" by a Prepend/Replace normalizer or a Metaspace pre-tokenizer) against
// llama.cpp's llama-spm known answers; the files are written from the GGUF vocabulary.
func TestHFSentencePieceBPE(t *testing.T) {
	g := openGGUF(t, "realfiles", "llamacpp-ggml-vocab-llama-spm.gguf")
	vocab := map[string]int{}
	for i, s := range g.tokens {
		vocab[s] = i
	}
	merges := spmMerges(g)
	added := []any{
		map[string]any{"id": 0, "content": "<unk>", "special": true},
		map[string]any{"id": 1, "content": "<s>", "special": true},
		map[string]any{"id": 2, "content": "</s>", "special": true},
	}
	model := map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true}
	for _, tc := range []struct {
		name       string
		normalizer any
		pre        any
		// Metaspace adds no "▁" before text that starts with a space (Hugging Face's
		// behaviour, unlike llama.cpp's), so those texts encode differently
		skip func(string) bool
	}{
		{"legacy", map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}}, nil, nil},
		{"metaspace", nil, map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}, func(s string) bool { return strings.HasPrefix(s, " ") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeJSON(t, t.TempDir(), "tokenizer.json", map[string]any{
				"added_tokens": added, "normalizer": tc.normalizer, "pre_tokenizer": tc.pre, "model": model,
			})
			tk, err := FromHFFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tk.Kind(), RankBPE; got != want {
				t.Errorf("Kind() = %v, want %v", got, want)
			}
			if got, want := [3]int{tk.BOS(), tk.EOS(), tk.Unknown()}, [3]int{1, 2, 0}; got != want {
				t.Errorf("BOS, EOS, unknown = %v, want %v", got, want)
			}
			checkKnownAnswers(t, tk, "llama-spm", tc.skip)
			for _, s := range roundTrips {
				if tc.skip != nil && tc.skip(s) {
					continue
				}
				if got := tk.Decode(tk.Encode(s, true)); got != s {
					t.Errorf("Decode(Encode(%q)) = %q", s, got)
				}
			}
		})
	}
}

// unigramJSON is a small SentencePiece unigram tokenizer.json.
const unigramJSON = `{
  "added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "</s>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
  "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
  "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false, "vocab": [
    ["<unk>", 0], ["</s>", 0], ["▁", -2], ["▁a", -1.5], ["b", -2], ["▁ab", -2.5], ["c", -3],
    ["▁abc", -10], ["bc", -1], ["▁the", -1], ["▁t", -4], ["h", -4], ["e", -4], ["▁he", -3],
    ["a", -5], ["x", -6]
  ]}
}`

func TestHFUnigram(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(p, []byte(unigramJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	tk, err := FromHFFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tk.Kind(), Unigram; got != want {
		t.Errorf("Kind() = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"abc", []string{"▁a", "bc"}}, // -2.5 beats ▁ab c (-5.5) and ▁abc (-10)
		{"ab", []string{"▁ab"}},       // -2.5 beats ▁a b (-3.5)? no: -3.5 < -2.5
		{"the", []string{"▁the"}},     // -1
		{"the abc", []string{"▁the", "▁a", "bc"}},
		{"he", []string{"▁he"}},
		{"q", []string{"▁", "<unk>"}},           // q is in no piece
		{"qz", []string{"▁", "<unk>", "<unk>"}}, // unknown characters are not fused here
		{"ax", []string{"▁a", "x"}},
	} {
		got := pieces(tk, tk.Encode(tc.in, false))
		if !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got, want := tk.Decode(tk.Encode("the abc", false)), "the abc"; got != want {
		t.Errorf("Decode(Encode) = %q, want %q", got, want)
	}
	if got, want := tk.EOS(), 1; got != want {
		t.Errorf("EOS() = %d, want %d", got, want)
	}
}

func TestHFWordPiece(t *testing.T) {
	vocab := map[string]int{"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "token": 6, "##ization": 7, "!": 8, ",": 9, "un": 10, "##aff": 11, "##able": 12, "cafe": 13}
	p := writeJSON(t, t.TempDir(), "tokenizer.json", map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "[PAD]", "special": true},
			map[string]any{"id": 1, "content": "[UNK]", "special": true},
			map[string]any{"id": 2, "content": "[CLS]", "special": true},
			map[string]any{"id": 3, "content": "[SEP]", "special": true},
		},
		"normalizer":    map[string]any{"type": "BertNormalizer", "lowercase": true, "clean_text": true, "handle_chinese_chars": true, "strip_accents": nil},
		"pre_tokenizer": map[string]any{"type": "BertPreTokenizer"},
		"model":         map[string]any{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab},
	})
	tk, err := FromHFFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"Hello, World!", []int{4, 9, 5, 8}},
		{"Tokenization unaffable", []int{6, 7, 10, 11, 12}},
		{"café", []int{13}},
		{"hello xyz", []int{4, 1}},
	} {
		if got := tk.Encode(tc.in, false); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got, want := tk.Decode([]int{2, 6, 7, 10, 11, 12, 3}), "token ization unaffable"; got != strings.Replace(want, " ization", "ization", 1) {
		t.Errorf("Decode = %q", got)
	}
	if got, want := tk.Token(7), "ization"; got != want {
		t.Errorf("Token(7) = %q, want %q", got, want)
	}
	if got, want := tk.Token(4), " hello"; got != want {
		t.Errorf("Token(4) = %q, want %q", got, want)
	}
	if got, want := [2]int{tk.BOS(), tk.EOS()}, [2]int{2, 3}; got != want {
		t.Errorf("BOS, EOS = %v, want %v", got, want)
	}
}

func TestHFHostile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := filepath.Join(dir, "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct {
		name string
		path string
		want error
	}{
		{"oversized", big, ErrInvalid},
		{"not json", write("a.json", "{\"model\": "), ErrInvalid},
		{"huge id", write("b.json", `{"model": {"type": "WordLevel", "vocab": {"a": 4000000000}}}`), ErrInvalid},
		{"negative id", write("c.json", `{"model": {"type": "WordLevel", "vocab": {"a": -1}}}`), ErrInvalid},
		{"sparse id", write("d.json", `{"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 100000}}}`), ErrInvalid},
		{"huge added id", write("e.json", `{"added_tokens": [{"id": 99999999, "content": "x"}], "model": {"type": "WordLevel", "vocab": {"a": 0}}}`), ErrInvalid},
		{"vocab of wrong type", write("f.json", `{"model": {"type": "BPE", "vocab": [1, 2, 3]}}`), ErrInvalid},
		{"bad merges", write("g.json", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1, 2]}}`), ErrInvalid},
		{"merge without space", write("h.json", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}}`), ErrInvalid},
		{"bad unigram", write("i.json", `{"model": {"type": "Unigram", "vocab": [["a"], ["b", "x"]]}}`), ErrInvalid},
		{"no vocab", write("j.json", `{"model": {"type": "WordLevel"}}`), ErrNoVocabulary},
		{"unknown model", write("k.json", `{"model": {"type": "Magic", "vocab": {"a": 0}}}`), ErrUnsupported},
		{"deep normalizer", write("l.json", `{"normalizer": `+strings.Repeat(`{"type": "Sequence", "normalizers": [`, 40)+`null`+strings.Repeat(`]}`, 40)+`, "model": {"type": "WordLevel", "vocab": {"a": 0}}}`), ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk, err := FromHFFile(tc.path)
			if !errors.Is(err, tc.want) {
				t.Errorf("FromHFFile = %v, %v; want error %v", tk, err, tc.want)
			}
		})
	}
	if _, err := FromHFDir(t.TempDir()); !errors.Is(err, ErrNoVocabulary) {
		t.Errorf("FromHFDir(empty) error = %v, want ErrNoVocabulary", err)
	}
}

// FuzzParseHF checks that no tokenizer.json makes parsing, encoding or decoding panic.
func FuzzParseHF(f *testing.F) {
	f.Add([]byte(unigramJSON))
	f.Add([]byte(`{"pre_tokenizer": {"type": "Whitespace"}, "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1}, "unk_token": "<unk>"}}`))
	f.Add([]byte(`{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}`))
	f.Add([]byte(`{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1, "##b": 2}, "unk_token": "[UNK]"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := parseHF(data)
		if err != nil {
			return
		}
		ids := tk.Encode("ab a\tb ab, é🦙", true)
		for _, id := range ids {
			if id < 0 || id >= tk.Len() {
				t.Fatalf("Encode has id %d outside the vocabulary of %d", id, tk.Len())
			}
		}
		_ = tk.Decode(ids)
		for id := -1; id <= tk.Len(); id++ {
			_ = tk.Token(id)
			_ = tk.Special(id)
		}
	})
}
