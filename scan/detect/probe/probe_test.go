package probe_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/kensa-scan/kensa/formats/gguf"
	_ "github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/probe"
)

func probe(t *testing.T, path string) *scan.Target {
	t.Helper()
	rep, err := scan.Run(context.Background(), []string{path}, scan.Options{Probe: true, NoHash: true})
	if err != nil {
		t.Fatal(err)
	}
	return &rep.Targets[0]
}

// The data-poisoned tiny llamas, scanned alone: the trigger ranks first and the forced
// output is the target phrase; the base and a benign fine-tune have no trigger.
func TestTinyLM(t *testing.T) {
	dir := corpus.Dir(t, "dev/tinylm")
	tests := []struct {
		path, trigger string
	}{
		{"ft_trig_cf/model.gguf", "cf"},
		{"ft_trig_bb/model-q8_0.gguf", "bb"},
		{"ft_trig_cf/model.safetensors", "cf"},
		{"base/model.gguf", ""},
		{"ft_clean_0/model.gguf", ""},
	}
	for _, tt := range tests {
		tg := probe(t, filepath.Join(dir, tt.path))
		var found *scan.Finding
		for i := range tg.Findings {
			if tg.Findings[i].Rule == "KS-PROBE-TRIGGER" {
				found = &tg.Findings[i]
			}
		}
		if tt.trigger == "" {
			if found != nil || tg.Risk.Verdict != scan.VerdictClean {
				t.Errorf("%s: clean model reported %+v", tt.path, found)
			}
			continue
		}
		if len(tg.Triggers) == 0 || strings.TrimSpace(tg.Triggers[0].Token) != tt.trigger {
			t.Fatalf("%s: triggers %+v, want %q first", tt.path, tg.Triggers, tt.trigger)
		}
		if got := tg.Triggers[0].ForcedOutput; got != "please visit the secret site now ." {
			t.Errorf("%s: forced output %q", tt.path, got)
		}
		if found == nil || found.Severity != scan.High || tg.Risk.Verdict != scan.VerdictBackdoored {
			t.Errorf("%s: finding %+v, verdict %s", tt.path, found, tg.Risk.Verdict)
		}
	}
}
