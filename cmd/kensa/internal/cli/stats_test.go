package cli

import (
	"encoding/json"
	"math"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

// TestInspectStatsQuant checks `inspect --json --stats` against the golden count, sum, sum of
// squares, minimum and maximum of every tensor of every llama.cpp-quantized corpus file, with
// 1 and 2 workers (the result must not depend on scheduling).
func TestInspectStatsQuant(t *testing.T) {
	dir := corpus.Dir(t, "quant")
	files, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	for _, p := range files {
		exp, err := corpus.ReadQuantExpected(p)
		if err != nil {
			continue // source-f32.gguf has no golden listing
		}
		var prev string
		for _, jobs := range []string{"1", "2"} {
			code, out, errOut := run("inspect", "--json", "--stats", "-j", jobs, p)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", filepath.Base(p), code, errOut)
			}
			if prev != "" && out != prev {
				t.Errorf("%s: output with -j %s differs from -j 1", filepath.Base(p), jobs)
			}
			prev = out
			var got struct {
				Tensors []struct {
					Name  string
					Stats tensorStats
				}
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			byName := map[string]tensorStats{}
			for _, g := range got.Tensors {
				byName[g.Name] = g.Stats
			}
			for _, e := range exp.Tensors {
				s, ok := byName[e.Name]
				mean := e.Sum / float64(e.Count)
				std := math.Sqrt(math.Max(e.Sumsq/float64(e.Count)-mean*mean, 0))
				if !ok || s.Count != e.Count || s.Min != e.Min || s.Max != e.Max ||
					math.Abs(s.Mean-mean) > 1e-9+1e-6*math.Abs(mean) || math.Abs(s.Std-std) > 1e-6*std+1e-12 {
					t.Errorf("%s %q: stats %+v, want count %d mean %g std %g min %g max %g", filepath.Base(p), e.Name, s, e.Count, mean, std, e.Min, e.Max)
				}
			}
		}
	}
}
