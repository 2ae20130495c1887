package scan

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOllamaManifest feeds arbitrary manifests to the Ollama reader: it must never panic,
// never follow a digest out of blobs/, and either fail or name a model blob in the store.
func FuzzOllamaManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:` + hex64 + `","size":4}]}`))
	f.Add([]byte(`{"layers":[{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:../../etc/passwd"}]}`))
	f.Add([]byte(`{"config":{"digest":"sha256:` + hex64 + `"},"layers":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		root := t.TempDir()
		blobs := filepath.Join(root, "blobs")
		os.MkdirAll(blobs, 0o755)
		os.WriteFile(filepath.Join(blobs, "sha256-"+hex64), []byte("GGUF"), 0o644)
		m := filepath.Join(root, "manifests", "r", "n", "m", "t")
		os.MkdirAll(filepath.Dir(m), 0o755)
		os.WriteFile(m, manifest, 0o644)
		e, err := loadOllama(&Spec{Path: m, store: root, kind: kindOllama})
		if err == nil {
			if e == nil || len(e.models) == 0 || filepath.Dir(e.models[0].path) != blobs {
				t.Fatalf("no error and no model blob in the store: %+v", e)
			}
		}
		if e != nil {
			for _, b := range e.models {
				if filepath.Dir(b.path) != blobs {
					t.Fatalf("blob outside the store: %s", b.path)
				}
			}
		}
	})
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
