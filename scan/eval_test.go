package scan_test

import (
	"testing"

	"github.com/kensa-scan/kensa/internal/classeval"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/all" // every data-free detector, as kensa scan runs them
)

// TestEvalClassifiers scans the labelled classifiers of the development corpus (digits and
// realbd) from their weights alone and holds the bars: risk.score separates trojaned
// from clean models with AUROC ≥ 0.75, the true target is named for ≥ 60% of the trojaned
// models with a known target, and no clean model is called backdoored.
func TestEvalClassifiers(t *testing.T) {
	r := classeval.Run(t, scan.Options{NoHash: true}, nil)
	t.Logf("classifiers: %d trojaned, %d clean; AUROC of risk.score %.3f; target class named for %d of %d; clean models called backdoored: %v",
		r.Trojaned, r.Clean, r.AUROC, r.Hit, r.Known, r.CleanBackdoored)
	if len(r.CleanBackdoored) > 0 {
		t.Errorf("clean classifiers called backdoored: %v", r.CleanBackdoored)
	}
	if r.AUROC < 0.75 || float64(r.Hit) < 0.6*float64(r.Known) {
		t.Errorf("AUROC %.3f (bar 0.75), target named for %d of %d (bar 60%%)", r.AUROC, r.Hit, r.Known)
	}
}
