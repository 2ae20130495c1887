package formats_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

func TestReadCompanion(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "model")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"a": NaN}`), 0o644)
	os.WriteFile(filepath.Join(dir, "empty.json"), nil, 0o644)
	os.WriteFile(filepath.Join(parent, "outside.json"), []byte(`{}`), 0o644)
	os.Mkdir(filepath.Join(dir, "tokenizer.json"), 0o755)

	b, err := formats.ReadCompanion(dir, "config.json", 1<<20)
	if err != nil || string(b) != `{"a": NaN}` {
		t.Fatalf("ReadCompanion(config.json) = %q, %v", b, err)
	}
	if b, err := formats.ReadCompanion(dir, "empty.json", 1<<20); err != nil || len(b) != 0 {
		t.Errorf("ReadCompanion(empty) = %q, %v", b, err)
	}
	if b, err := formats.ReadCompanion(dir, "config.json", 10); err != nil || len(b) != 10 {
		t.Errorf("ReadCompanion(exactly max) = %q, %v", b, err)
	}

	// not present: fs.ErrNotExist, with the path
	for _, d := range []string{dir, filepath.Join(parent, "nodir")} {
		_, err := formats.ReadCompanion(d, "missing.json", 1<<20)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(d, "missing.json")) {
			t.Errorf("ReadCompanion(%s, missing) = %v, want ErrNotExist naming the path", d, err)
		}
	}

	// too large: ErrTooLarge naming the size, nothing read
	_, err = formats.ReadCompanion(dir, "config.json", 9)
	var fe *formats.FormatError
	if !errors.Is(err, formats.ErrTooLarge) || !errors.As(err, &fe) || fe.File != filepath.Join(dir, "config.json") ||
		!strings.Contains(err.Error(), "10 bytes") || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadCompanion(over max) = %v", err)
	}

	// refused: names that are not plain, a directory, a link out of the model directory
	refused := []string{"", ".", "..", "../outside.json", "a/config.json", "/etc/passwd", "tokenizer.json"}
	if err := os.Symlink(filepath.Join(parent, "outside.json"), filepath.Join(dir, "escape.json")); err == nil {
		refused = append(refused, "escape.json")
	}
	for _, name := range refused {
		_, err := formats.ReadCompanion(dir, name, 1<<20)
		if !errors.Is(err, formats.ErrInvalid) || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir) {
			t.Errorf("ReadCompanion(%q) = %v, want ErrInvalid naming the path", name, err)
		}
	}
	if _, err := formats.ReadCompanion(dir, "tokenizer.json", 1<<20); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("ReadCompanion(a directory) = %v, want it named", err)
	}
}

// A Hugging Face cache snapshot's companion files are links into blobs/: they are read.
func TestReadCompanionHFCache(t *testing.T) {
	cache := t.TempDir()
	blobs := filepath.Join(cache, "blobs")
	snap := filepath.Join(cache, "snapshots", "abc123")
	os.MkdirAll(blobs, 0o755)
	os.MkdirAll(snap, 0o755)
	os.WriteFile(filepath.Join(blobs, "cafe"), []byte(`{"chat_template": "x"}`), 0o644)
	if err := os.Symlink("../../blobs/cafe", filepath.Join(snap, "tokenizer_config.json")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	b, err := formats.ReadCompanion(snap, "tokenizer_config.json", 1<<20)
	if err != nil || string(b) != `{"chat_template": "x"}` {
		t.Errorf("ReadCompanion(snapshot link) = %q, %v", b, err)
	}
}
