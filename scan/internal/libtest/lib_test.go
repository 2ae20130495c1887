// Package libtest_test checks that package scan alone, imported as a library without the
// CLI and without importing any reader package itself, opens both formats.
package libtest_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/scan"
)

func TestLibraryOpensBothFormats(t *testing.T) {
	dir := t.TempDir()
	// a safetensors file by hand: header length, JSON header, data
	hdr := []byte(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`)
	st := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	st = append(append(st, hdr...), make([]byte, 8)...)
	// a GGUF v3 file by hand: magic, version, no tensors, no metadata
	gg := []byte("GGUF")
	gg = binary.LittleEndian.AppendUint32(gg, 3)
	gg = binary.LittleEndian.AppendUint64(gg, 0)
	gg = binary.LittleEndian.AppendUint64(gg, 0)
	for name, b := range map[string][]byte{"a.safetensors": st, "b.gguf": gg} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := scan.Run(context.Background(), []string{dir}, scan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tg := range rep.Targets {
		got[filepath.Base(tg.Path)] = tg.Format
		if tg.Error != "" {
			t.Errorf("%s: %s", tg.Path, tg.Error)
		}
	}
	if got["a.safetensors"] != "safetensors" || got["b.gguf"] != "gguf" {
		t.Errorf("formats %v", got)
	}
}
