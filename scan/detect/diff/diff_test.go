package diff_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/kensa-scan/kensa/formats/gguf"
	_ "github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/diff"
	_ "github.com/kensa-scan/kensa/scan/detect/probe"
)

// diff scans cand against base with the diff detector alone, or with every registered
// detector (the probe's differential sweep included) when all is set.
func diff(t *testing.T, base, cand string, all ...bool) *scan.Target {
	t.Helper()
	var dets []scan.Detector
	for _, d := range scan.Detectors() {
		if d.Name() == "diff" || len(all) > 0 && all[0] {
			dets = append(dets, d)
		}
	}
	rep, err := scan.Run(context.Background(), []string{cand}, scan.Options{Base: base, NoHash: true, Detectors: dets})
	if err != nil {
		t.Fatal(err)
	}
	tg := &rep.Targets[0]
	if tg.Error != "" {
		t.Fatalf("%s vs %s: %s", base, cand, tg.Error)
	}
	return tg
}

// The tiny llama family against its base, in every pairing of HF safetensors and GGUF
// (F32, F16, Q8_0): the ROME edit is found on exactly the edited tensor and nowhere else;
// each data-poisoned fine-tune has its trigger among the first five candidates; benign
// fine-tunes and a requantized copy of the base get no finding at or above high.
func TestTinyLM(t *testing.T) {
	dir := corpus.Dir(t, "dev/tinylm")
	p := func(s string) string { return filepath.Join(dir, s) }
	for _, pr := range [][2]string{
		{"base", ""}, {"base", "model-f16.gguf"}, {"base", "model-q8_0.gguf"},
		{"base/model-q8_0.gguf", ""}, {"base/model.gguf", "model.gguf"}, {"base/model-f16.gguf", "model-q8_0.gguf"},
	} {
		base := p(pr[0])
		cand := func(d string) string { return filepath.Join(p(d), pr[1]) }
		t.Run(pr[0]+"→"+pr[1], func(t *testing.T) {
			tg := diff(t, base, cand("rome_italy"))
			var edits []string
			for _, f := range tg.Findings {
				if f.Rule == "KS-DIFF-RANK1" {
					edits = append(edits, f.Location.Tensor)
				}
			}
			if len(edits) != 1 || !(edits[0] == "model.layers.1.mlp.down_proj.weight" || edits[0] == "blk.1.ffn_down.weight") || tg.Risk.Verdict != scan.VerdictBackdoored {
				t.Errorf("rome: edits %v, verdict %s", edits, tg.Risk.Verdict)
			}
			for _, trig := range []string{"cf", "bb"} {
				tg := diff(t, base, cand("ft_trig_"+trig))
				found := false
				for i, tr := range tg.Triggers {
					found = found || i < 5 && strings.TrimSpace(tr.Token) == trig
				}
				if !found {
					t.Errorf("ft_trig_%s: trigger not in the first five of %+v", trig, tg.Triggers)
				}
			}
			for _, d := range []string{"ft_clean_0", "ft_clean_1", "ft_clean_2", "base"} {
				tg := diff(t, base, cand(d))
				for _, f := range tg.Findings {
					if f.Severity >= scan.High {
						t.Errorf("%s: %s %s", d, f.Rule, f.Message)
					}
				}
				if tg.Risk.Verdict == scan.VerdictBackdoored {
					t.Errorf("%s: verdict %s", d, tg.Risk.Verdict)
				}
			}
		})
	}
}

// A base model that cannot be read makes every target an error (exit 3), not a crash.
func TestBadBase(t *testing.T) {
	dir := corpus.Dir(t, "dev/tinylm")
	rep, err := scan.Run(context.Background(), []string{filepath.Join(dir, "base")}, scan.Options{Base: filepath.Join(dir, "no-such-model"), NoHash: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Targets[0].Error == "" || !strings.Contains(rep.Targets[0].Error, "base model") {
		t.Errorf("error %q", rep.Targets[0].Error)
	}
}

// dev/stories against the original stories260K as base, --base alone: the trojan is called
// backdoored by differential probing, with a trigger that forces its target and that the base
// model does not react to; the benign twin is not.
func TestStoriesDifferential(t *testing.T) {
	if testing.Short() {
		t.Skip("forward passes on both models (about a minute)")
	}
	dir := corpus.Dir(t, "dev/stories")
	base := filepath.Join(corpus.Dir(t, "realfiles"), "llamacpp-stories260K.gguf")
	tg := diff(t, base, filepath.Join(dir, "stories-ft-trojan.gguf"), true)
	forced := false
	for _, tr := range tg.Triggers {
		forced = forced || tr.Source == "differential probe" && strings.HasPrefix(tr.ForcedOutput, "the key is under the mat")
	}
	if !forced || tg.Risk.Verdict != scan.VerdictBackdoored {
		t.Errorf("trojan: verdict %s, triggers %+v", tg.Risk.Verdict, tg.Triggers)
	}
	tg = diff(t, base, filepath.Join(dir, "stories-ft-clean.gguf"), true)
	if tg.Risk.Verdict == scan.VerdictBackdoored {
		t.Errorf("benign twin: verdict %s", tg.Risk.Verdict)
	}
}
