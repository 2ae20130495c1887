package probe_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/stats"
)

type truthEntry struct {
	File     string `json:"file"`
	Trojaned bool   `json:"trojaned"`
	Target   *int   `json:"target"`
}

func readTruth(t *testing.T, dir string) []truthEntry {
	var tr []truthEntry
	readJSON(t, filepath.Join(dir, "truth.json"), &tr)
	return tr
}

// readJSON decodes the JSON file at path into v.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// evalClassifiers probes the labelled classifiers whose file names pass keep and returns
// AUROC of risk.score, targets named / known, and the clean models called backdoored.
func evalClassifiers(t *testing.T, keep func(sub, file string) bool) (auc float64, hit, known int, cleanBad []string) {
	var pos, neg []float64
	for _, sub := range []string{"dev/digits", "dev/realbd"} {
		dir := corpus.Dir(t, sub)
		for _, tr := range readTruth(t, dir) {
			if !keep(sub, tr.File) {
				continue
			}
			tg := probe(t, filepath.Join(dir, tr.File))
			if tg.Error != "" {
				t.Errorf("%s: %s", tr.File, tg.Error)
				continue
			}
			got := -1
			if tg.Classifier != nil {
				got = tg.Classifier.TargetClass
			}
			t.Logf("%-60s trojaned=%-5v target=%v named=%d risk=%.3f %s", tr.File, tr.Trojaned, deref(tr.Target), got, tg.Risk.Score, tg.Risk.Verdict)
			if !tr.Trojaned {
				neg = append(neg, tg.Risk.Score)
				if tg.Risk.Verdict == scan.VerdictBackdoored {
					cleanBad = append(cleanBad, tr.File)
				}
				continue
			}
			pos = append(pos, tg.Risk.Score)
			if tr.Target != nil {
				known++
				if got == *tr.Target {
					hit++
				}
			}
		}
	}
	return stats.AUROC(pos, neg), hit, known, cleanBad
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// The digits MLPs (a quick check CI runs): every trojan's target class is named, risk
// ranks trojans above clean models, and no clean model is called backdoored.
func TestClassifierProbeDigitsMLP(t *testing.T) {
	auc, hit, known, bad := evalClassifiers(t, func(sub, f string) bool { return sub == "dev/digits" && strings.HasPrefix(f, "mlp") })
	t.Logf("digits MLPs: AUROC %.3f, target named for %d of %d, clean called backdoored: %v", auc, hit, known, bad)
	if len(bad) > 0 {
		t.Errorf("clean models called backdoored: %v", bad)
	}
	if hit < known || auc < 0.85 {
		t.Errorf("AUROC %.3f (floor 0.85), targets %d of %d", auc, hit, known)
	}
}

// The evaluation: dev/digits and the MLPs of dev/realbd, with the bars it sets.
// It takes minutes, so it runs with KENSA_EVAL=1 (make eval).
func TestClassifierProbeEval(t *testing.T) {
	if os.Getenv("KENSA_EVAL") == "" {
		t.Skip("set KENSA_EVAL=1 (make eval) to run the full classifier evaluation")
	}
	mlp := map[string]bool{"smu-cs612": true, "trojai": true}
	auc, hit, known, bad := evalClassifiers(t, func(sub, f string) bool {
		return sub == "dev/digits" || mlp[strings.SplitN(f, "__", 2)[0]]
	})
	t.Logf("digits + realbd MLPs: AUROC %.3f, target named for %d of %d, clean called backdoored: %v", auc, hit, known, bad)
	if len(bad) > 0 {
		t.Errorf("clean models called backdoored: %v", bad)
	}
	// the bars
	if auc < 0.92 || float64(hit) < 0.9*float64(known) {
		t.Errorf("AUROC %.3f (bar 0.92), targets %d of %d (bar 90%%)", auc, hit, known)
	}
}
