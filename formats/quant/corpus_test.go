package quant

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

// TestCorpusGolden decodes every tensor of the llama.cpp-quantized corpus files and checks
// the SHA-256 of the float32 values (little-endian, row-major) bit for bit.
func TestCorpusGolden(t *testing.T) {
	dir := corpus.Dir(t, "quant")
	specs, err := filepath.Glob(filepath.Join(dir, "*.gguf.expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) == 0 {
		t.Fatalf("no *.gguf.expected.json in %s", dir)
	}
	passed := map[string]int{}
	failed := map[string]int{}
	for _, spec := range specs {
		exp, err := corpus.ReadQuantExpected(strings.TrimSuffix(spec, ".expected.json"))
		if err != nil {
			t.Fatal(err)
		}
		gguf, err := os.ReadFile(strings.TrimSuffix(spec, ".expected.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, ten := range exp.Tensors {
			name := filepath.Base(spec) + ":" + ten.Name
			k, ok := Lookup(ten.DType)
			if !ok || k.Decode == nil {
				t.Errorf("%s: no decoder for %s", name, ten.DType)
				failed[ten.DType]++
				continue
			}
			if ten.Count%int64(k.BlockElems) != 0 || ten.Count/int64(k.BlockElems)*int64(k.BlockBytes) != ten.Length {
				t.Errorf("%s: %s count %d, length %d do not fit blocks of %d elements in %d bytes",
					name, ten.DType, ten.Count, ten.Length, k.BlockElems, k.BlockBytes)
				failed[ten.DType]++
				continue
			}
			src := gguf[ten.Offset : ten.Offset+ten.Length]
			dst := make([]float32, ten.Count)
			k.Decode(dst, src)
			raw := make([]byte, 4*len(dst))
			for i, v := range dst {
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
			}
			sum := sha256.Sum256(raw)
			ok = true
			if got, want := hex.EncodeToString(sum[:]), ten.SHA256; got != want {
				t.Errorf("%s (%s): sha256 = %s, want %s", name, ten.DType, got, want)
				ok = false
			}
			for i, want := range ten.First {
				if got := dst[i]; got != float32(want) {
					t.Errorf("%s (%s): value %d = %v, want %v", name, ten.DType, i, got, want)
					ok = false
					break
				}
			}
			if ok {
				passed[ten.DType]++
			} else {
				failed[ten.DType]++
			}
		}
	}
	var types []string
	for ty := range passed {
		types = append(types, ty)
	}
	for ty := range failed {
		if passed[ty] == 0 {
			types = append(types, ty)
		}
	}
	sort.Strings(types)
	for _, ty := range types {
		t.Logf("%-8s %3d tensors bit-exact, %d failed", ty, passed[ty], failed[ty])
	}
}
