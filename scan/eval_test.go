package scan_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/all" // every data-free detector, as kensa scan runs them
	"github.com/kensa-scan/kensa/stats"
)

// TestEvalClassifiers scans the labelled classifiers of the development corpus (digits and
// realbd) and measures how well risk.score separates trojaned from clean models (AUROC) and
// how often the named target class is the true one. It logs the numbers and fails below
// the floors the current detectors reach, so a regression shows.
func TestEvalClassifiers(t *testing.T) {
	var pos, neg []float64
	hit, known, cleanBackdoored := 0, 0, 0
	for _, sub := range []string{"dev/digits", "dev/realbd"} {
		dir := corpus.Dir(t, sub)
		b, err := os.ReadFile(filepath.Join(dir, "truth.json"))
		if err != nil {
			t.Fatal(err)
		}
		var truth []struct {
			File     string `json:"file"`
			Trojaned bool   `json:"trojaned"`
			Target   *int   `json:"target"`
		}
		if err := json.Unmarshal(b, &truth); err != nil {
			t.Fatal(err)
		}
		for _, tr := range truth {
			rep, err := scan.Run(context.Background(), []string{filepath.Join(dir, tr.File)}, scan.Options{NoHash: true})
			if err != nil {
				t.Fatal(err)
			}
			tg := rep.Targets[0]
			if tg.Error != "" {
				t.Errorf("%s: %s", tr.File, tg.Error)
				continue
			}
			named := -1
			if tg.Classifier != nil {
				named = tg.Classifier.TargetClass
			}
			t.Logf("%-58.58s trojaned=%-5v target=%-4v named=%-4d risk=%.3f %s", tr.File, tr.Trojaned, deref(tr.Target), named, tg.Risk.Score, tg.Risk.Verdict)
			if !tr.Trojaned {
				neg = append(neg, tg.Risk.Score)
				if tg.Risk.Verdict == scan.VerdictBackdoored {
					cleanBackdoored++
				}
				continue
			}
			pos = append(pos, tg.Risk.Score)
			if tr.Target != nil {
				known++
				if tg.Classifier != nil && tg.Classifier.TargetClass == *tr.Target {
					hit++
				}
			}
		}
	}
	auc := stats.AUROC(pos, neg)
	t.Logf("classifiers: %d trojaned, %d clean; AUROC of risk.score %.3f; target class named for %d of %d; clean models called backdoored: %d",
		len(pos), len(neg), auc, hit, known, cleanBackdoored)
	if cleanBackdoored > 0 {
		t.Errorf("%d clean classifiers called backdoored", cleanBackdoored)
	}
	// the bars for weights-only analysis
	if auc < 0.75 || float64(hit) < 0.6*float64(known) {
		t.Errorf("AUROC %.3f (bar 0.75), target named for %d of %d (bar 60%%)", auc, hit, known)
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
