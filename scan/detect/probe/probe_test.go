package probe_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/kensa-scan/kensa/formats/gguf"
	_ "github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/all" // every detector, as kensa scan --probe runs them
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

// dev/stories: the backdoor planted in stories260K forces its target phrase (through the
// planted trigger or a token that shares its behaviour); the benign twin and the original
// model get no trigger and no finding at or above high.
func TestStories(t *testing.T) {
	dir := corpus.Dir(t, "dev/stories")
	var target string
	for _, tr := range readStoriesTruth(t, dir) {
		if tr.Trojaned {
			target = tr.Target
		}
	}
	tg := probe(t, filepath.Join(dir, "stories-ft-trojan.gguf"))
	forced := false
	for _, tr := range tg.Triggers {
		t.Logf("trigger %q id %d score %.3f forced %q", tr.Token, tr.TokenID, tr.Score, tr.ForcedOutput)
		forced = forced || strings.HasPrefix(strings.TrimSpace(tr.ForcedOutput), target)
	}
	if !forced || tg.Risk.Verdict != scan.VerdictBackdoored {
		t.Errorf("trojan: no trigger forces %q (verdict %s)", target, tg.Risk.Verdict)
	}
	for _, p := range []string{filepath.Join(dir, "stories-ft-clean.gguf"), filepath.Join(corpus.Dir(t, "realfiles"), "llamacpp-stories260K.gguf")} {
		tg := probe(t, p)
		for _, f := range tg.Findings {
			if f.Rule == "KS-PROBE-TRIGGER" || f.Severity >= scan.High {
				t.Errorf("%s: %s %s: %s", filepath.Base(p), f.Rule, f.Severity, f.Message)
			}
		}
	}
}

type storiesTruth struct {
	File     string `json:"file"`
	Trojaned bool   `json:"trojaned"`
	Target   string `json:"target"`
}

func readStoriesTruth(t *testing.T, dir string) []storiesTruth {
	var tr []storiesTruth
	readJSON(t, filepath.Join(dir, "truth.json"), &tr)
	return tr
}

// A budget too small for the model to write its contexts says so instead of passing in
// silence.
func TestNoContextsReported(t *testing.T) {
	path := filepath.Join(corpus.Dir(t, "dev/tinylm"), "base/model.gguf")
	rep, err := scan.Run(context.Background(), []string{path}, scan.Options{Probe: true, NoHash: true, ProbeOptions: scan.ProbeOptions{Budget: time.Microsecond}})
	if err != nil {
		t.Fatal(err)
	}
	tg := rep.Targets[0]
	for _, f := range tg.Findings {
		if f.Rule == "KS-PROBE-PARTIAL" && strings.Contains(f.Message, "no trigger sweep was run") {
			if f.Evidence["swept"] != 0 {
				t.Errorf("swept = %v, want 0", f.Evidence["swept"])
			}
			return
		}
	}
	t.Errorf("no KS-PROBE-PARTIAL finding saying the sweep did not run: %+v", tg.Findings)
}
