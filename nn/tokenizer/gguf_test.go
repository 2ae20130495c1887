package tokenizer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

// model returns a formats.Model holding the given metadata.
func model(kv ...any) *formats.Model {
	m := &formats.Model{Format: "gguf"}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Metadata = append(m.Metadata, formats.KV{Key: kv[i].(string), Value: kv[i+1]})
	}
	return m
}

// spmVocab is a small SentencePiece vocabulary with all 256 byte tokens.
func spmVocab() (tokens []string, scores []float32, types []int32) {
	tokens = []string{"<unk>", "<s>", "</s>"}
	types = []int32{TypeUnknown, TypeControl, TypeControl}
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, TypeByte)
	}
	for _, p := range []string{"▁", "▁t", "he", "▁the", "▁a", "e", "h", "t", "a", "n", "▁an", "▁and", "d", "é", "▁▁"} {
		tokens = append(tokens, p)
		types = append(types, TypeNormal)
	}
	scores = make([]float32, len(tokens))
	for i := range scores {
		scores[i] = -float32(i)
	}
	return tokens, scores, types
}

func TestFromGGUFErrors(t *testing.T) {
	tokens, scores, types := spmVocab()
	for _, tc := range []struct {
		name string
		m    *formats.Model
		want error
	}{
		{"no tokens", model("tokenizer.ggml.model", "llama"), ErrNoVocabulary},
		{"empty tokens", model("tokenizer.ggml.tokens", []string{}), ErrNoVocabulary},
		{"tokens not strings", model("tokenizer.ggml.tokens", []int32{1, 2}), ErrInvalid},
		{"scores shorter", model("tokenizer.ggml.tokens", tokens, "tokenizer.ggml.scores", scores[:10]), ErrInvalid},
		{"scores longer", model("tokenizer.ggml.tokens", tokens[:10], "tokenizer.ggml.scores", scores), ErrInvalid},
		{"scores not numbers", model("tokenizer.ggml.tokens", tokens, "tokenizer.ggml.scores", tokens), ErrInvalid},
		{"types shorter", model("tokenizer.ggml.tokens", tokens, "tokenizer.ggml.token_type", types[:3]), ErrInvalid},
		{"types not integers", model("tokenizer.ggml.tokens", tokens, "tokenizer.ggml.token_type", scores), ErrInvalid},
		{"merges not strings", model("tokenizer.ggml.tokens", tokens, "tokenizer.ggml.model", "gpt2", "tokenizer.ggml.merges", 7), ErrInvalid},
		{"no vocab model", model("tokenizer.ggml.tokens", tokens, "tokenizer.ggml.model", "no_vocab"), ErrNoVocabulary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk, err := FromGGUF(tc.m)
			if !errors.Is(err, tc.want) {
				t.Errorf("FromGGUF = %v, %v; want error %v", tk, err, tc.want)
			}
		})
	}
}

func TestFromGGUFIDs(t *testing.T) {
	tokens, scores, types := spmVocab()
	tk, err := FromGGUF(model(
		"tokenizer.ggml.model", "llama",
		"tokenizer.ggml.tokens", tokens, "tokenizer.ggml.scores", scores, "tokenizer.ggml.token_type", types,
		"tokenizer.ggml.bos_token_id", uint32(1),
		"tokenizer.ggml.eos_token_id", uint32(4294967295), // absent
		"tokenizer.ggml.unknown_token_id", int32(0),
	))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := [3]int{tk.BOS(), tk.EOS(), tk.Unknown()}, [3]int{1, -1, 0}; got != want {
		t.Errorf("BOS, EOS, unknown = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"the", []string{"▁the"}},
		{"and the", []string{"▁and", "▁the"}},
		{"z", []string{"▁", "<0x7A>"}},
		{"é", []string{"▁", "é"}},
		{"ü", []string{"▁", "<0xC3>", "<0xBC>"}},
	} {
		if got := pieces(tk, tk.Encode(tc.in, false)); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got, want := tk.Encode("the", true)[0], 1; got != want {
		t.Errorf("Encode(addBOS)[0] = %d, want %d", got, want)
	}
}

func TestSplitters(t *testing.T) {
	for _, tc := range []struct {
		name  string
		split func([]string, string) []string
		in    string
		want  []string
	}{
		{"gpt2", splitGPT2, "Hello world", []string{"Hello", " world"}},
		{"gpt2", splitGPT2, "I'm 42 years   old!!", []string{"I", "'m", " 42", " years", "  ", " old", "!!"}},
		{"gpt2", splitGPT2, "a  \n", []string{"a", "  \n"}},
		{"gpt2", splitGPT2, "x\t y", []string{"x", "\t", " y"}},
		{"gpt2", splitGPT2, "'RE", []string{"'", "RE"}},
		{"llama3", splitLlama3, "Hello world", []string{"Hello", " world"}},
		{"llama3", splitLlama3, "I'M 12345 ok", []string{"I", "'M", " ", "123", "45", " ok"}},
		{"llama3", splitLlama3, "a.\n\nb", []string{"a", ".\n\n", "b"}},
		{"llama3", splitLlama3, "x  \n y", []string{"x", "  \n", " y"}},
		{"llama3", splitLlama3, "(hi)", []string{"(hi", ")"}},
		{"whitespace", splitWordsPunct, "the capital, of spain.", []string{"the", "capital", ",", "of", "spain", "."}},
		{"bert", splitBert, "Hello, 世界!", []string{"Hello", ",", "世", "界", "!"}},
		{"metaspace", splitMetaspace, "▁a▁b▁▁c", []string{"▁a", "▁b", "▁", "▁c"}},
	} {
		if got := tc.split(nil, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

// byteLevelVocab is a small GPT-2-style vocabulary: the 256 byte characters and a few
// merges.
func byteLevelVocab() (tokens, merges []string) {
	for b := range 256 {
		tokens = append(tokens, string(byteToRune[b]))
	}
	merges = []string{"Ġ t", "h e", "Ġt he", "i n", "Ġ a", "Ġa nd"}
	for _, m := range merges {
		tokens = append(tokens, strings.ReplaceAll(m, " ", ""))
	}
	return append(tokens, "<|endoftext|>"), merges
}

func fuzzTokenizers(tb testing.TB) []*Tokenizer {
	tokens, scores, types := spmVocab()
	spm, err := FromGGUF(model("tokenizer.ggml.model", "llama", "tokenizer.ggml.tokens", tokens,
		"tokenizer.ggml.scores", scores, "tokenizer.ggml.token_type", types))
	if err != nil {
		tb.Fatal(err)
	}
	btokens, merges := byteLevelVocab()
	btypes := make([]int32, len(btokens))
	for i := range btypes {
		btypes[i] = TypeNormal
	}
	btypes[len(btypes)-1] = TypeControl
	bpe, err := FromGGUF(model("tokenizer.ggml.model", "gpt2", "tokenizer.ggml.tokens", btokens,
		"tokenizer.ggml.token_type", btypes, "tokenizer.ggml.merges", merges))
	if err != nil {
		tb.Fatal(err)
	}
	l3, err := FromGGUF(model("tokenizer.ggml.model", "gpt2", "tokenizer.ggml.pre", "llama-bpe", "tokenizer.ggml.tokens", btokens,
		"tokenizer.ggml.token_type", btypes, "tokenizer.ggml.merges", merges))
	if err != nil {
		tb.Fatal(err)
	}
	return []*Tokenizer{spm, bpe, l3}
}

func TestSyntheticRoundTrip(t *testing.T) {
	for _, tk := range fuzzTokenizers(t) {
		for _, s := range roundTrips {
			if got := tk.Decode(tk.Encode(s, true)); got != s {
				t.Errorf("%v: Decode(Encode(%q)) = %q", tk.Kind(), s, got)
			}
		}
	}
}

// FuzzEncode checks that encoding never panics and that byte-fallback and byte-level
// vocabularies decode every valid text back to itself.
func FuzzEncode(f *testing.F) {
	for _, s := range roundTrips {
		f.Add(s)
	}
	f.Add("\xff\xfe invalid \xc3")
	tks := fuzzTokenizers(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, tk := range tks {
			ids := tk.Encode(s, true)
			for _, id := range ids {
				if id < 0 || id >= tk.Len() {
					t.Fatalf("%v: Encode(%q) has id %d outside the vocabulary", tk.Kind(), s, id)
				}
			}
			want := s
			if !utf8.ValidString(want) {
				want = strings.ToValidUTF8(want, "\uFFFD")
			}
			if got := tk.Decode(ids); got != want {
				t.Errorf("%v: Decode(Encode(%q)) = %q", tk.Kind(), s, got)
			}
		}
	})
}

// benchText is a few KB of English and other text.
var benchText = strings.Repeat("The quick brown fox jumps over the lazy dog. Once upon a time, there was a little girl named Lily; she liked to play outside in the sun (and in the rain). Numbers 3.14159 and 2718, naïve café, 日本語, emoji 🦙🚀.\n", 16)

func BenchmarkEncode(b *testing.B) {
	for _, tc := range []struct{ name, file string }{
		{"spm", "llamacpp-ggml-vocab-llama-spm.gguf"},
		{"bpe", "llamacpp-ggml-vocab-gpt-2.gguf"},
		{"wordpiece", "llamacpp-ggml-vocab-bert-bge.gguf"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tk := openGGUF(b, "realfiles", tc.file)
			b.SetBytes(int64(len(benchText)))
			for b.Loop() {
				tk.Encode(benchText, true)
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	tk := openGGUF(b, "realfiles", "llamacpp-ggml-vocab-llama-spm.gguf")
	ids := tk.Encode(benchText, true)
	b.SetBytes(int64(len(benchText)))
	for b.Loop() {
		tk.Decode(ids)
	}
}
