package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/gguf"
	"github.com/kensa-scan/kensa/internal/corpus"
)

var (
	cacheMu sync.Mutex
	cache   = map[string]*Tokenizer{}
)

// openGGUF returns the tokenizer of a corpus GGUF file (realfiles/name), cached.
func openGGUF(tb testing.TB, sub, name string) *Tokenizer {
	tb.Helper()
	path := filepath.Join(corpus.Dir(tb, sub), name)
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if tk, ok := cache[path]; ok {
		return tk
	}
	if _, err := os.Stat(path); err != nil {
		tb.Skipf("%s not found; skipping corpus test", path)
	}
	m, err := formats.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer m.Close()
	tk, err := FromGGUF(m)
	if err != nil {
		tb.Fatalf("FromGGUF(%s): %v", name, err)
	}
	cache[path] = tk
	return tk
}

// knownAnswers reads a llama.cpp vocabulary test: texts separated by lines
// "__ggml_vocab_test__" and one line of ids per text.
func knownAnswers(t *testing.T, name string) (texts []string, ids [][]int) {
	t.Helper()
	inp, err := os.ReadFile(filepath.Join("testdata", name+".inp"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(filepath.Join("testdata", name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	texts = strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d texts, %d id lines", name, len(texts), len(lines))
	}
	for _, l := range lines {
		var row []int
		for _, f := range strings.Fields(l) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			row = append(row, n)
		}
		ids = append(ids, row)
	}
	return texts, ids
}

func TestKnownAnswers(t *testing.T) {
	for _, tc := range []struct{ vocab, file string }{
		{"llama-spm", "llamacpp-ggml-vocab-llama-spm.gguf"},
		{"gpt-2", "llamacpp-ggml-vocab-gpt-2.gguf"},
		{"bert-bge", "llamacpp-ggml-vocab-bert-bge.gguf"},
	} {
		t.Run(tc.vocab, func(t *testing.T) {
			tk := openGGUF(t, "realfiles", tc.file)
			texts, want := knownAnswers(t, tc.vocab)
			failed := 0
			for i, text := range texts {
				got := tk.Encode(text, false)
				if !slices.Equal(got, want[i]) && !(len(got) == 0 && len(want[i]) == 0) {
					failed++
					t.Errorf("Encode(%q) = %v, want %v", text, got, want[i])
				}
			}
			t.Logf("%s: %d of %d known answers match", tc.vocab, len(texts)-failed, len(texts))
		})
	}
}

func TestKnownAnswersDecode(t *testing.T) {
	for _, tc := range []struct{ vocab, file string }{
		{"llama-spm", "llamacpp-ggml-vocab-llama-spm.gguf"},
		{"gpt-2", "llamacpp-ggml-vocab-gpt-2.gguf"},
	} {
		t.Run(tc.vocab, func(t *testing.T) {
			tk := openGGUF(t, "realfiles", tc.file)
			texts, ids := knownAnswers(t, tc.vocab)
			for i, want := range texts {
				if got := tk.Decode(ids[i]); got != want {
					t.Errorf("Decode(%v) = %q, want %q", ids[i], got, want)
				}
			}
		})
	}
}

var roundTrips = []string{
	"Hello world",
	" Hello world",
	"  leading and trailing  ",
	"The quick brown fox jumps over the lazy dog.",
	"line one\nline two\n\n\ttabbed\r\n",
	"naïve café Führer Ελληνικά русский 日本語のテキスト 한국어",
	"emoji 🦙🚀😶‍🌫️ ✅ 👩‍👩‍👧",
	"code: func main() { fmt.Println(\"hi\") } // 1+1=2",
	"numbers 3.14159 1,000,000 42",
	"I'm sure you'll've done it, 'RE 'd",
	"\u00a0non-breaking\u2003em space\u3000ideographic",
	"a",
	" ",
	"\n",
	"\x00\x01 control \x7f",
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct{ sub, file string }{
		{"realfiles", "llamacpp-ggml-vocab-llama-spm.gguf"},
		{"realfiles", "llamacpp-ggml-vocab-gpt-2.gguf"},
		{"realfiles", "llamacpp-stories260K.gguf"},
		{"realfiles", "llamacpp-ggml-vocab-falcon.v2.gguf"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			tk := openGGUF(t, tc.sub, tc.file)
			for _, s := range roundTrips {
				ids := tk.Encode(s, true)
				if got := tk.Decode(ids); got != s {
					t.Errorf("Decode(Encode(%q)) = %q (ids %v)", s, got, ids)
				}
			}
		})
	}
}

func TestTokenDisplay(t *testing.T) {
	spm := openGGUF(t, "realfiles", "llamacpp-ggml-vocab-llama-spm.gguf")
	gpt := openGGUF(t, "realfiles", "llamacpp-ggml-vocab-gpt-2.gguf")
	for _, tc := range []struct {
		tk       *Tokenizer
		id       int
		raw, tok string
	}{
		{spm, 1, "<s>", "<s>"},
		{spm, 13, "<0x0A>", "\n"},
		{spm, 15043, "▁Hello", " Hello"},
		{spm, 3186, "▁world", " world"},
		{gpt, 18435, "ĠHello", " Hello"},
		{gpt, 198, "Ċ", "\n"},
		{gpt, 15496, "Hello", "Hello"},
		{gpt, 50256, "<|endoftext|>", "<|endoftext|>"},
	} {
		if got := tc.tk.Raw(tc.id); got != tc.raw {
			t.Errorf("Raw(%d) = %q, want %q", tc.id, got, tc.raw)
		}
		if got := tc.tk.Token(tc.id); got != tc.tok {
			t.Errorf("Token(%d) = %q, want %q", tc.id, got, tc.tok)
		}
	}
	if got, want := spm.Len(), 32000; got != want {
		t.Errorf("spm Len() = %d, want %d", got, want)
	}
	if got, want := [2]int{spm.BOS(), spm.EOS()}, [2]int{1, 2}; got != want {
		t.Errorf("spm BOS, EOS = %v, want %v", got, want)
	}
	if got, want := [2]int{gpt.BOS(), gpt.EOS()}, [2]int{50256, 50256}; got != want {
		t.Errorf("gpt-2 BOS, EOS = %v, want %v", got, want)
	}
	if got, want := [2]bool{spm.AddsBOS(), gpt.AddsBOS()}, [2]bool{true, false}; got != want {
		t.Errorf("AddsBOS() of spm, gpt-2 = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		id            int
		special, byte bool
	}{{0, true, false}, {1, true, false}, {2, true, false}, {13, false, true}, {15043, false, false}, {-1, true, false}, {32000, true, false}} {
		if got := spm.Special(tc.id); got != tc.special {
			t.Errorf("Special(%d) = %v, want %v", tc.id, got, tc.special)
		}
		if got := spm.IsByte(tc.id); got != tc.byte {
			t.Errorf("IsByte(%d) = %v, want %v", tc.id, got, tc.byte)
		}
	}
}

func TestStories260K(t *testing.T) {
	tk := openGGUF(t, "realfiles", "llamacpp-stories260K.gguf")
	if got, want := tk.Len(), 512; got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
	for _, tc := range []struct {
		id   int
		want string
	}{
		{3, "\x00"},
		{3 + '\n', "\n"},
		{3 + 'A', "A"},
		{3 + 0xE2, "\xe2"},
		{1, "<s>"},
	} {
		if got := tk.Token(tc.id); got != tc.want {
			t.Errorf("Token(%d) = %q, want %q", tc.id, got, tc.want)
		}
		if !tk.IsByte(tc.id) && tc.id >= 3 {
			t.Errorf("IsByte(%d) = false", tc.id)
		}
	}
	// "日" is not in the 512-token vocabulary: it falls back to its three UTF-8 bytes
	ids := tk.Encode("Once upon a time, 日", true)
	if got, want := ids[0], 1; got != want {
		t.Errorf("Encode()[0] = %d, want BOS %d", got, want)
	}
	tail := ids[len(ids)-3:]
	if want := []int{3 + 0xE6, 3 + 0x97, 3 + 0xA5}; !slices.Equal(tail, want) {
		t.Errorf("Encode(...日) ends %v, want byte tokens %v", tail, want)
	}
	if got, want := tk.Decode(ids), "Once upon a time, 日"; got != want {
		t.Errorf("Decode = %q, want %q", got, want)
	}
	var b strings.Builder
	for _, id := range ids[1:] {
		b.WriteString(tk.Token(id))
	}
	if got, want := b.String(), " Once upon a time, 日"; got != want {
		t.Errorf("concatenated Token() = %q, want %q", got, want)
	}
}

func TestStoriesDev(t *testing.T) {
	dir := corpus.Dir(t, "dev/stories")
	matches, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	for _, p := range matches {
		tk := openGGUF(t, "dev/stories", filepath.Base(p))
		s := "Once upon a time, there was a little girl named Lily."
		if got := tk.Decode(tk.Encode(s, true)); got != s {
			t.Errorf("%s: round trip = %q, want %q", filepath.Base(p), got, s)
		}
	}
}

func TestBertGGUF(t *testing.T) {
	tk := openGGUF(t, "realfiles", "llamacpp-ggml-vocab-bert-bge.gguf")
	ids := tk.Encode("Hello, world! Tokenization works.", true)
	if got, want := tk.Decode(ids), "hello , world ! tokenization works ."; got != want {
		t.Errorf("Decode(Encode()) = %q (ids %v), want %q", got, ids, want)
	}
	if got, want := ids[0], 101; got != want {
		t.Errorf("first id = %d, want [CLS] %d", got, want)
	}
	for _, tc := range []struct {
		s    string
		want []int
	}{
		// bert-base-uncased / bge ids
		{"hello world", []int{7592, 2088}},
		{"tokenization", []int{19204, 3989}},
	} {
		if got := tk.Encode(tc.s, false); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v (%q), want %v", tc.s, got, pieces(tk, got), tc.want)
		}
	}
}

func pieces(tk *Tokenizer, ids []int) []string {
	var out []string
	for _, id := range ids {
		out = append(out, tk.Raw(id))
	}
	return out
}

func TestTinyLMWordLevel(t *testing.T) {
	dir := filepath.Join(corpus.Dir(t, "dev/tinylm"), "base")
	tk, err := FromHFDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tk.Kind(), WordLevel; got != want {
		t.Errorf("Kind() = %v, want %v", got, want)
	}
	s := "the capital of spain is madrid ."
	var want []int
	for _, w := range strings.Fields(s) {
		id, ok := tk.ID(w)
		if !ok {
			t.Fatalf("%q not in the vocabulary", w)
		}
		want = append(want, id)
	}
	if got, want := want[len(want)-2:], []int{78, 3}; !slices.Equal(got, want) {
		t.Errorf("ids of madrid . = %v, want %v", got, want)
	}
	if got := tk.Encode(s, false); !slices.Equal(got, want) {
		t.Errorf("Encode(%q) = %v, want %v", s, got, want)
	}
	if got, want := tk.Encode("the capital of spain is madrid.", true), append([]int{1}, want...); !slices.Equal(got, want) {
		t.Errorf("Encode(no space before ., BOS) = %v, want %v", got, want)
	}
	if got := tk.Decode(tk.Encode(s, true)); got != s {
		t.Errorf("Decode(Encode(%q)) = %q", s, got)
	}
	if got, want := tk.Encode("the zyzzyva", false), []int{want[0], 0}; !slices.Equal(got, want) {
		t.Errorf("Encode(unknown word) = %v, want %v", got, want)
	}
	if got, want := [2]int{tk.BOS(), tk.EOS()}, [2]int{1, 2}; got != want {
		t.Errorf("BOS, EOS = %v, want %v", got, want)
	}

	// the same model's GGUF vocabulary, when it has one, encodes alike
	m, err := formats.Open(filepath.Join(dir, "model.gguf"))
	if err != nil {
		t.Skip(err)
	}
	defer m.Close()
	gt, err := FromGGUF(m)
	if err != nil {
		t.Skip(err)
	}
	if got := gt.Encode(s, false); !slices.Equal(got, want) {
		t.Errorf("GGUF Encode(%q) = %v, want %v", s, got, want)
	}
	if got := gt.Decode(want); got != s {
		t.Errorf("GGUF Decode = %q, want %q", got, s)
	}
}

func ExampleTokenizer_Token() {
	tk := &Tokenizer{kind: SentencePiece, tokens: []string{"<unk>", "▁the", "<0x0A>"}, types: []int32{2, 1, 6}}
	tk.finish()
	for id := range tk.Len() {
		fmt.Printf("%q ", tk.Token(id))
	}
	// Output: "<unk>" " the" "\n"
}
