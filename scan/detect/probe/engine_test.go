package probe

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/gguf"
	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/nn/llm"
)

// The batched engine gives nn/llm's logits, for a sequence run whole and for continuations
// of a shared prefix evaluated together.
func TestEngineMatchesLLM(t *testing.T) {
	for _, p := range []string{filepath.Join(corpus.Dir(t, "dev/tinylm"), "ft_trig_cf/model.gguf"), filepath.Join(corpus.Dir(t, "dev/llm32k"), "ft_tok/model-q8_0.gguf")} {
		fm, err := formats.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		lm, err := llm.Load(fm)
		if err != nil {
			t.Fatal(err)
		}
		e, err := newEngine(lm, 2)
		if err != nil {
			t.Fatal(err)
		}
		pre := []int{1, 20, 30, 40, 50, 60}
		sufs := [][]int{{70}, {80, 90}, {100, 110, 120}}
		ps, _ := e.prefill(pre, 0)
		fr := ps.freeze()
		var seqs []*seq
		for range sufs {
			seqs = append(seqs, e.newSeq(fr, 4))
		}
		got := e.logits(e.step(seqs, sufs))
		for i, s := range sufs {
			st := lm.NewState(16)
			want, err := lm.Forward(st, append(append([]int{}, pre...), s...), false)
			if err != nil {
				t.Fatal(err)
			}
			var md float64
			for j := range want[0] {
				md = math.Max(md, math.Abs(float64(want[0][j]-got[i][j])))
			}
			if md > 1e-3 {
				t.Errorf("%s suffix %d: max logit difference %g", filepath.Base(filepath.Dir(p)), i, md)
			}
		}
		// speed: a batch of 512 one-token continuations
		seqs = seqs[:0]
		toks := make([][]int, 512)
		for i := range toks {
			seqs = append(seqs, e.newSeq(fr, 2))
			toks[i] = []int{(i + 3) % e.c.Vocab, 13 % e.c.Vocab}
		}
		e.macs = 0
		t0 := time.Now()
		e.step(seqs, toks)
		d := time.Since(t0)
		t.Logf("%s: %.3g MACs in %v: %.2f GMAC/s", p, e.macs, d, e.macs/d.Seconds()/1e9)
	}
}
