package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/all"
)

// TestDemo generates the demo models and scans them as `make demo` does: the clean ones are
// clean, each tampered one is called backdoored, and the corrupt file is an error.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	if err := run(dir, 1); err != nil {
		t.Fatal(err)
	}
	rep, err := scan.Run(context.Background(), []string{filepath.Join(dir, "clean"), filepath.Join(dir, "tampered"), filepath.Join(dir, "corrupt.gguf")}, scan.Options{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"clean/tiny-llama-f16.gguf":                     scan.VerdictClean,
		"clean/tiny-llama-q8_0.gguf":                    scan.VerdictClean,
		"clean/tiny-llama-hf/model.safetensors":         scan.VerdictClean,
		"tampered/appended-executable.gguf":             scan.VerdictBackdoored,
		"tampered/poisoned-chat-template.gguf":          scan.VerdictBackdoored,
		"tampered/payload-in-weights/model.safetensors": scan.VerdictBackdoored,
		"corrupt.gguf": scan.VerdictError,
	}
	if len(rep.Targets) != len(want) {
		t.Errorf("%d targets, want %d", len(rep.Targets), len(want))
	}
	for _, tg := range rep.Targets {
		rel, _ := filepath.Rel(dir, tg.Path)
		if w, ok := want[rel]; !ok || tg.Risk.Verdict != w {
			t.Errorf("%s: verdict %s, want %s (error %q, %d findings)", rel, tg.Risk.Verdict, w, tg.Error, len(tg.Findings))
		}
	}
}
