//go:build e2e

package code_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/kensa-scan/kensa/formats/pickle"
	_ "github.com/kensa-scan/kensa/formats/pytorch"
	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/all"
)

// TestEngine runs the whole scan engine (every detector) on the pickle and PyTorch files of
// the dev corpus: no error, and the worst severity of each file is logged.
func TestEngine(t *testing.T) {
	if os.Getenv("KENSA_E2E") == "" {
		t.Skip("set KENSA_E2E=1 (and -tags e2e) to run every detector on the dev/formats pickle and torch files")
	}
	dir := corpus.Dir(t, "dev/formats")
	var paths []string
	for _, sub := range []string{"pickle", "torch", "real", "misc"} {
		ms, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, p := range ms {
			if filepath.Ext(p) != ".h5" {
				paths = append(paths, p)
			}
		}
	}
	for _, p := range paths {
		rep, err := scan.Run(context.Background(), []string{p}, scan.Options{})
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		for _, tg := range rep.Targets {
			worst := "none"
			var sev scan.Severity = -1
			for _, f := range tg.Findings {
				if f.Severity > sev {
					sev, worst = f.Severity, f.Severity.String()+" "+f.Rule
				}
			}
			t.Logf("%s: %s, %d findings, worst %s", p[len(dir)+1:], tg.Risk.Verdict, len(tg.Findings), worst)
		}
	}
}
