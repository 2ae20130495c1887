package probe_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/internal/classeval"
	"github.com/kensa-scan/kensa/scan"
)

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

var probeOpts = scan.Options{Probe: true, NoHash: true}

// The digits MLPs (a quick check CI runs): every trojan's target class is named, risk
// ranks trojans above clean models, and no clean model is called backdoored.
func TestClassifierProbeDigitsMLP(t *testing.T) {
	r := classeval.Run(t, probeOpts, func(sub, f string) bool { return sub == "dev/digits" && strings.HasPrefix(f, "mlp") })
	t.Logf("digits MLPs: AUROC %.3f, target named for %d of %d, clean called backdoored: %v", r.AUROC, r.Hit, r.Known, r.CleanBackdoored)
	if len(r.CleanBackdoored) > 0 {
		t.Errorf("clean models called backdoored: %v", r.CleanBackdoored)
	}
	if r.Hit < r.Known || r.AUROC < 0.85 {
		t.Errorf("AUROC %.3f (floor 0.85), targets %d of %d", r.AUROC, r.Hit, r.Known)
	}
}

// The evaluation: dev/digits and the MLPs of dev/realbd, with the bars it sets.
// It takes minutes, so it runs with KENSA_EVAL=1 (make eval).
func TestClassifierProbeEval(t *testing.T) {
	if os.Getenv("KENSA_EVAL") == "" {
		t.Skip("set KENSA_EVAL=1 (make eval) to run the full classifier evaluation")
	}
	mlp := map[string]bool{"smu-cs612": true, "trojai": true}
	r := classeval.Run(t, probeOpts, func(sub, f string) bool {
		return sub == "dev/digits" || mlp[strings.SplitN(f, "__", 2)[0]]
	})
	t.Logf("digits + realbd MLPs: AUROC %.3f, target named for %d of %d, clean called backdoored: %v", r.AUROC, r.Hit, r.Known, r.CleanBackdoored)
	if len(r.CleanBackdoored) > 0 {
		t.Errorf("clean models called backdoored: %v", r.CleanBackdoored)
	}
	// the bars
	if r.AUROC < 0.92 || float64(r.Hit) < 0.9*float64(r.Known) {
		t.Errorf("AUROC %.3f (bar 0.92), targets %d of %d (bar 90%%)", r.AUROC, r.Hit, r.Known)
	}
}
