package tok

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/gguf"
	"github.com/kensa-scan/kensa/internal/corpus"
)

func open(t *testing.T, path string) *Tokenizer {
	t.Helper()
	m, err := formats.Open(path)
	if err != nil {
		t.Skip(err)
	}
	defer m.Close()
	tk, err := FromModel(m)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestSPMRoundTrip(t *testing.T) {
	dir := corpus.Dir(t, "realfiles")
	for _, f := range []string{"llamacpp-stories260K.gguf", "llamacpp-ggml-vocab-llama-spm.gguf"} {
		tk := open(t, filepath.Join(dir, f))
		for _, s := range []string{"Once upon a time, there was a little girl.", "Hello world", "héllo\nwörld 🙂 日本語", "  two  spaces"} {
			ids, err := tk.Encode(s, true)
			if err != nil {
				t.Fatal(err)
			}
			if ids[0] != tk.BOS() {
				t.Errorf("%s: first id %d, want BOS %d", f, ids[0], tk.BOS())
			}
			if got := tk.Decode(ids); got != s {
				t.Errorf("%s: Decode(Encode(%q)) = %q (ids %v)", f, s, got, ids)
			}
		}
	}
}

// Known answers from llama.cpp's test-tokenizer-0 for the llama SPM vocabulary.
func TestSPMKnownAnswers(t *testing.T) {
	tk := open(t, filepath.Join(corpus.Dir(t, "realfiles"), "llamacpp-ggml-vocab-llama-spm.gguf"))
	tests := []struct {
		in   string
		want []int
	}{
		{"Hello world", []int{15043, 3186}},
		{" Hello world", []int{29871, 15043, 3186}},
		{"Hello World", []int{15043, 2787}},
		{" this is 🦙.cpp", []int{29871, 445, 338, 29871, 243, 162, 169, 156, 29889, 8223}},
	}
	for _, tt := range tests {
		got, _ := tk.Encode(tt.in, false)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Encode(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestWordLevel(t *testing.T) {
	dir := filepath.Join(corpus.Dir(t, "dev/tinylm"), "base")
	tk, err := FromHFDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	var j struct {
		Model struct{ Vocab map[string]int } `json:"model"`
	}
	json.Unmarshal(b, &j)
	v := j.Model.Vocab
	ids, err := tk.Encode("the capital of spain is madrid.", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{v["<s>"], v["the"], v["capital"], v["of"], v["spain"], v["is"], v["madrid"], v["."]}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("Encode = %v, want %v", ids, want)
	}
	if got := tk.Decode(ids); got != "the capital of spain is madrid ." {
		t.Errorf("Decode = %q", got)
	}
}

func TestByteBPEDecode(t *testing.T) {
	tk := open(t, filepath.Join(corpus.Dir(t, "realfiles"), "llamacpp-ggml-vocab-gpt-2.gguf"))
	// "Hello world" in GPT-2: Hello (15496), Ġworld (995)
	if got := tk.Decode([]int{15496, 995}); got != "Hello world" {
		t.Errorf("Decode = %q", got)
	}
	// known answers from llama.cpp's test-tokenizer-0 for the GPT-2 vocabulary
	for _, tt := range []struct {
		in   string
		want []int
	}{
		{"Hello world", []int{15496, 995}},
		{" Hello world", []int{18435, 995}},
		{"Hello World", []int{15496, 2159}},
	} {
		got, err := tk.Encode(tt.in, false)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Encode(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, s := range []string{"Hello world", "it's 2024,  fine!\n\tok", "日本語 ünïcödé 🙂"} {
		ids, _ := tk.Encode(s, false)
		if got := tk.Decode(ids); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
	}
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	dir := t.TempDir()
	b, _ := json.Marshal(v)
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A Unigram tokenizer.json: Viterbi picks the segmentation with the best total score.
func TestUnigram(t *testing.T) {
	dir := writeJSON(t, map[string]any{
		"pre_tokenizer": map[string]any{"type": "Metaspace", "replacement": "▁"},
		"model": map[string]any{"type": "Unigram", "unk_id": 0, "vocab": [][]any{
			{"<unk>", 0}, {"▁", -2}, {"▁he", -3}, {"llo", -3}, {"▁hello", -4}, {"h", -5}, {"e", -5}, {"l", -5}, {"o", -5},
			{"▁world", -4}, {"<0x21>", -8},
		}},
	})
	tk, err := FromHFDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := tk.Encode("hello world!", false)
	if want := []int{4, 9, 10}; !reflect.DeepEqual(got, want) { // ▁hello ▁world <0x21>
		t.Errorf("Encode = %v, want %v", got, want)
	}
	if s := tk.Decode(got); s != "hello world!" {
		t.Errorf("Decode = %q", s)
	}
}

// A Llama-2-style tokenizer.json BPE with Metaspace: merges apply by rank, not by score.
func TestBPEMetaspace(t *testing.T) {
	dir := writeJSON(t, map[string]any{
		"pre_tokenizer": map[string]any{"type": "Metaspace", "replacement": "▁"},
		"model": map[string]any{"type": "BPE", "byte_fallback": true,
			"vocab":  map[string]int{"<unk>": 0, "<s>": 1, "▁": 2, "a": 3, "b": 4, "▁a": 5, "ab": 6, "▁ab": 7},
			"merges": []string{"a b", "▁ a", "▁ ab"}},
	})
	tk, err := FromHFDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := tk.Encode("ab", true)
	// "▁ab": rank 0 merges a+b first, then ▁+ab (rank 2); ▁+a (rank 1) never gets its turn
	if want := []int{1, 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
}

// A word vocabulary stored in GGUF as "llama" (no ▁ piece, no byte token) is word-level.
func TestGGUFWordVocabulary(t *testing.T) {
	tk := open(t, filepath.Join(corpus.Dir(t, "dev/tinylm"), "base", "model.gguf"))
	if tk.Kind != WordLevel {
		t.Fatalf("kind %s, want %s", tk.Kind, WordLevel)
	}
	ids, _ := tk.Encode("the capital of spain is madrid .", true)
	if got := tk.Decode(ids); got != "the capital of spain is madrid ." {
		t.Errorf("round trip: %q (ids %v)", got, ids)
	}
}
