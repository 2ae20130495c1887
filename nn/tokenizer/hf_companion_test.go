package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tokenizer.json is parsed as Python's json module does: a NaN Unigram score loads (as the
// lowest score), a NaN id is refused, and a NaN in config.json does not hide its BOS/EOS.
func TestHFNonFinite(t *testing.T) {
	dir := t.TempDir()
	nanJSON := strings.Replace(unigramJSON, `["x", -6]`, `["x", NaN], ["y", -Infinity], ["z", Infinity]`, 1)
	if nanJSON == unigramJSON {
		t.Fatal("fixture changed")
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(nanJSON), 0o644)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"initializer_range": NaN, "bos_token_id": 1, "eos_token_id": [0]}`), 0o644)
	tk, err := FromHFDir(dir)
	if err != nil {
		t.Fatalf("tokenizer.json with NaN scores: %v", err)
	}
	if tk.Kind() != Unigram || tk.BOS() != 1 || tk.EOS() != 0 {
		t.Errorf("kind %v, BOS %d, EOS %d", tk.Kind(), tk.BOS(), tk.EOS())
	}
	for _, p := range []string{"x", "y", "z"} {
		id, ok := tk.ID(p)
		if !ok || tk.Score(id) != -10 { // the lowest score of the vocabulary (▁abc)
			t.Errorf("piece %q: id %d, score %v", p, id, tk.Score(id))
		}
	}
	if got := pieces(tk, tk.Encode("the abc", false)); !slices.Equal(got, []string{"▁the", "▁a", "bc"}) {
		t.Errorf("Encode = %q", got)
	}

	for name, content := range map[string]string{
		"vocab id":    `{"model": {"type": "WordLevel", "vocab": {"a": 0, "b": NaN}}}`,
		"added id":    `{"added_tokens": [{"id": NaN, "content": "x"}], "model": {"type": "WordLevel", "vocab": {"a": 0}}}`,
		"no added id": `{"added_tokens": [{"content": "x"}], "model": {"type": "WordLevel", "vocab": {"a": 0}}}`,
		"python-only": `{"model": {"type": "WordLevel", "vocab": {"a": 0}}, "x": nan}`,
	} {
		p := filepath.Join(t.TempDir(), "tokenizer.json")
		os.WriteFile(p, []byte(content), 0o644)
		if _, err := FromHFFile(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: FromHFFile = %v, want ErrInvalid", name, err)
		}
	}
	p := filepath.Join(t.TempDir(), "tokenizer.json")
	os.WriteFile(p, []byte(`{"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1}}, "x": NaN}`), 0o644)
	if tk, err := FromHFFile(p); err != nil || tk.Len() != 2 {
		t.Errorf("WordLevel with a NaN elsewhere: %v", err)
	}

	// vocab.json ids must be numbers
	vdir := t.TempDir()
	os.WriteFile(filepath.Join(vdir, "vocab.json"), []byte(`{"a": 0, "b": NaN}`), 0o644)
	os.WriteFile(filepath.Join(vdir, "merges.txt"), []byte("#version: 0.2\na b\n"), 0o644)
	if _, err := FromHFDir(vdir); !errors.Is(err, ErrInvalid) {
		t.Errorf("vocab.json with a NaN id: %v", err)
	}
	os.WriteFile(filepath.Join(vdir, "vocab.json"), []byte(`{"a": 0, "b": 1, "ab": 2}`), 0o644)
	if tk, err := FromHFDir(vdir); err != nil || tk.Len() != 3 {
		t.Errorf("vocab.json + merges.txt: %v", err)
	}
}

// Tokenizer files are read only inside their directory.
func TestHFCompanionPaths(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "model")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(parent, "tokenizer.json"), []byte(unigramJSON), 0o644)
	if err := os.Symlink("../tokenizer.json", filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	if _, err := FromHFDir(dir); err == nil || errors.Is(err, ErrNoVocabulary) {
		t.Errorf("FromHFDir followed a link out of the directory: %v", err)
	}
	os.Mkdir(filepath.Join(parent, "empty"), 0o755)
	os.Mkdir(filepath.Join(parent, "empty", "config.json"), 0o755)
	if _, err := FromHFDir(filepath.Join(parent, "empty")); !errors.Is(err, ErrNoVocabulary) {
		t.Errorf("FromHFDir(no tokenizer) = %v", err)
	}
}
