// Package classeval scans the labelled classifiers of the development corpus (dev/digits,
// dev/realbd) and measures what the issues' bars are stated in: AUROC of risk.score
// (trojaned against clean), how often the named target class is the true one, and which
// clean models are called backdoored. The scan and the probe tests share it.
package classeval

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/stats"
)

// Result is an evaluation's outcome.
type Result struct {
	Trojaned, Clean int
	AUROC           float64
	Hit, Known      int      // true target named / trojaned models with a known target
	CleanBackdoored []string // clean models with verdict backdoored
}

// Run scans each labelled classifier whose file name passes keep (nil: all) with opt,
// logging one line per model. It skips the test when the corpus is absent.
func Run(t *testing.T, opt scan.Options, keep func(sub, file string) bool) Result {
	t.Helper()
	var res Result
	var pos, neg []float64
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
			if keep != nil && !keep(sub, tr.File) {
				continue
			}
			rep, err := scan.Run(context.Background(), []string{filepath.Join(dir, tr.File)}, opt)
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
			var target any
			if tr.Target != nil {
				target = *tr.Target
			}
			t.Logf("%-58.58s trojaned=%-5v target=%-4v named=%-4d risk=%.3f %s", tr.File, tr.Trojaned, target, named, tg.Risk.Score, tg.Risk.Verdict)
			if !tr.Trojaned {
				neg = append(neg, tg.Risk.Score)
				if tg.Risk.Verdict == scan.VerdictBackdoored {
					res.CleanBackdoored = append(res.CleanBackdoored, tr.File)
				}
				continue
			}
			pos = append(pos, tg.Risk.Score)
			if tr.Target != nil {
				res.Known++
				if named == *tr.Target {
					res.Hit++
				}
			}
		}
	}
	res.Trojaned, res.Clean, res.AUROC = len(pos), len(neg), stats.AUROC(pos, neg)
	return res
}
