package tokenizer

import (
	"path/filepath"

	"github.com/kensa-scan/kensa/formats"
)

// FromModel returns the vocabulary of an opened model: the GGUF file's tokenizer.ggml.*
// metadata, or the tokenizer.json / vocab.json next to a safetensors model.
func FromModel(m *formats.Model) (*Tokenizer, error) {
	if m.Format == "gguf" || len(m.Files) == 0 {
		return FromGGUF(m)
	}
	return FromHFDir(filepath.Dir(m.Files[0].Path))
}
