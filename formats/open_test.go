package formats_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
	_ "github.com/kensa-scan/kensa/formats/safetensors"
)

func writeGGUF(t *testing.T, path string) {
	t.Helper()
	var buf bytes.Buffer
	err := gguf.Write(&buf, []formats.KV{{Key: "general.architecture", Value: "llama"}},
		[]gguf.WriteTensor{{Name: "w", DType: formats.F32, Shape: []int64{2}, Data: make([]byte, 8)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDetects(t *testing.T) {
	dir := t.TempDir()
	// the format comes from the magic bytes, not the name
	writeGGUF(t, filepath.Join(dir, "weights.safetensors.bin"))
	m, err := formats.Open(filepath.Join(dir, "weights.safetensors.bin"))
	if err != nil || m.Format != "gguf" {
		t.Fatalf("Open: %v, format %v", err, m)
	}
	m.Close()

	junk := filepath.Join(dir, "junk.gguf")
	os.WriteFile(junk, []byte("PK\x03\x04 a zip, not a model"), 0o644)
	_, err = formats.Open(junk)
	var fe *formats.FormatError
	if !errors.Is(err, formats.ErrNoModel) || !errors.As(err, &fe) || fe.Offset != 0 {
		t.Errorf("Open(junk) = %v, want ErrNoModel at offset 0", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := formats.Open(empty); !errors.Is(err, formats.ErrNoModel) {
		t.Errorf("Open(empty file) = %v, want ErrNoModel", err)
	}
}

func TestOpenDir(t *testing.T) {
	one := t.TempDir()
	writeGGUF(t, filepath.Join(one, "model.gguf"))
	m, err := formats.Open(one)
	if err != nil || m.Format != "gguf" || m.Path != one || len(m.Tensors) != 1 {
		t.Fatalf("Open(dir with one GGUF) = %+v, %v", m, err)
	}
	m.Close()

	two := t.TempDir()
	writeGGUF(t, filepath.Join(two, "a.gguf"))
	writeGGUF(t, filepath.Join(two, "b.gguf"))
	if _, err := formats.Open(two); err == nil {
		t.Errorf("Open(dir with two GGUF files): no error")
	}
	if _, err := formats.Open(t.TempDir()); !errors.Is(err, formats.ErrNoModel) {
		t.Errorf("Open(empty dir) = %v, want ErrNoModel", err)
	}
}

func TestOpenInDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "model")
	os.Mkdir(dir, 0o755)
	writeGGUF(t, filepath.Join(dir, "ok.gguf"))
	writeGGUF(t, filepath.Join(parent, "outside.gguf"))
	if err := os.Symlink(filepath.Join(parent, "outside.gguf"), filepath.Join(dir, "escape.gguf")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	os.Symlink("ok.gguf", filepath.Join(dir, "inside.gguf"))
	tests := []struct {
		name string
		ok   bool
	}{
		{"ok.gguf", true},
		{"inside.gguf", true}, // a link that stays inside the directory
		{"escape.gguf", false},
		{"../outside.gguf", false},
		{filepath.Join(parent, "outside.gguf"), false},
		{"", false},
		{"..", false},
		{"sub/ok.gguf", false},
		{"missing.gguf", false},
	}
	for _, tt := range tests {
		f, err := formats.OpenInDir(dir, tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("OpenInDir(%q) error = %v, want ok %v", tt.name, err, tt.ok)
		}
		if f != nil {
			f.Close()
		}
	}
}

// A Hugging Face cache snapshot links its files into the sibling blobs/ directory: those
// links are followed, links anywhere else are not.
func TestOpenInDirHFCache(t *testing.T) {
	cache := t.TempDir()
	blobs := filepath.Join(cache, "blobs")
	snap := filepath.Join(cache, "snapshots", "abc123")
	os.MkdirAll(blobs, 0o755)
	os.MkdirAll(snap, 0o755)
	writeGGUF(t, filepath.Join(blobs, "deadbeef"))
	writeGGUF(t, filepath.Join(cache, "elsewhere"))
	if err := os.Symlink("../../blobs/deadbeef", filepath.Join(snap, "model.gguf")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	os.Symlink("../../elsewhere", filepath.Join(snap, "evil.gguf"))
	f, err := formats.OpenInDir(snap, "model.gguf")
	if err != nil {
		t.Fatalf("HF cache blob link: %v", err)
	}
	f.Close()
	if f, err := formats.OpenInDir(snap, "evil.gguf"); err == nil {
		f.Close()
		t.Errorf("a link from a snapshot to outside blobs/ was followed")
	}
}

// A FIFO named like a model is refused at once instead of blocking the open.
func TestOpenFIFO(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.gguf")
	if err := mkfifo(p); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	if _, err := formats.Open(p); err == nil {
		t.Errorf("Open(FIFO): no error")
	}
	if _, err := formats.OpenInDir(dir, "model.gguf"); err == nil {
		t.Errorf("OpenInDir(FIFO): no error")
	}
}
