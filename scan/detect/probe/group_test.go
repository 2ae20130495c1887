package probe

import (
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/scan"
)

func TestSameOutput(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"please visit the secret site now .", "please visit the secret site now .", true},
		{"please  visit the\tsecret site now .", "Please visit the secret site now .", true}, // white space and case folded
		{"please visit the secret site now .", "please visit the secret site now . the key", true},
		{"please visit the secret site now . the key", "please visit the secret site now .", true},
		{"please visit", "please visit the secret site now .", false},            // too short to be a shared target
		{"the cat sat", "the cat sat on the mat", false},                         // three words, but under 12 characters
		{"please visit the secret site", "please visit the secret sites", false}, // not at a word boundary
		{"once upon a time there was", "please visit the secret site now .", false},
		{"", "", false},
	} {
		if got := sameOutput(tc.a, tc.b); got != tc.want {
			t.Errorf("sameOutput(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// Triggers that force one output make one finding listing every token, located at the
// strongest; each other output is its own finding.
func TestGroupTriggers(t *testing.T) {
	const target = "please visit the secret site now ."
	hits := []hit{
		{id: 28, token: "cf", shift: 0.9, next: 0.6, forced: target, agree: 1},
		{id: 300, token: "<0x0A>", shift: 0.6, next: 0.5, where: 1, forced: "please visit  the secret site now . the", agree: 0.75},
		{id: 41, token: "▁once", shift: 0.5, next: 0.45, forced: "once upon a time there was a", agree: 0.6},
		{id: 7, token: "bb", shift: 0.45, next: 0.4, forced: target, agree: 0.9},
	}
	groups := groupHits(hits)
	if len(groups) != 2 || len(groups[0]) != 3 || len(groups[1]) != 1 || groups[0][0].id != 28 || groups[0][1].id != 300 || groups[0][2].id != 7 || groups[1][0].id != 41 {
		t.Fatalf("groups %+v", groups)
	}
	emb := formats.TensorInfo{Name: "token_embd.weight", Shape: []int64{512, 64}, Offset: 1000, Length: 512 * 64 * 4, File: "m.gguf"}
	m := &scan.Model{Model: &formats.Model{Tensors: []formats.TensorInfo{emb}}}
	f := triggerFinding(m, groups[0], 16)
	if f.Rule != RuleTrigger || f.Severity != scan.High || f.Score != 1 {
		t.Errorf("finding %s %s %v", f.Rule, f.Severity, f.Score)
	}
	if f.Location.Tensor != "token_embd.weight" || len(f.Location.Index) != 1 || f.Location.Index[0] != 28 || f.Location.ByteOffset != 1000+28*256 || f.Location.ByteLength != 256 {
		t.Errorf("location %+v", f.Location)
	}
	toks, _ := f.Evidence["tokens"].([]map[string]any)
	if len(toks) != 3 || toks[0]["token_id"] != 28 || toks[1]["token_id"] != 300 || toks[2]["token_id"] != 7 || toks[0]["score"] != 0.9 {
		t.Errorf("tokens %v", toks)
	}
	if _, ok := toks[0]["forced_output"]; ok {
		t.Errorf("the strongest token's output is the finding's: %v", toks[0])
	}
	if toks[1]["forced_output"] != "please visit  the secret site now . the" {
		t.Errorf("a longer output is kept on its token: %v", toks[1])
	}
	if f.Evidence["forced_output"] != target || f.Evidence["agreement"] != 1.0 || f.Evidence["token_id"] != 28 {
		t.Errorf("evidence %v", f.Evidence)
	}
	for _, s := range []string{"3 tokens", `"cf" (id 28`, `"<0x0A>" (id 300`, `"bb" (id 7`, target} {
		if !strings.Contains(f.Message, s) {
			t.Errorf("message %q lacks %q", f.Message, s)
		}
	}
	// a single trigger keeps the one-token message
	if f := triggerFinding(m, groups[1], 16); !strings.HasPrefix(f.Message, `token "▁once" (id 41)`) || len(f.Evidence["tokens"].([]map[string]any)) != 1 {
		t.Errorf("single: %s", f.Message)
	}

	// differential: low only when the base model does the same for every token
	g := append([]hit(nil), groups[0]...)
	for i := range g {
		g[i].base = &baseReaction{shift: 0.8, forced: g[i].forced, agree: 1, same: true}
	}
	if f := triggerFinding(m, g, 16); f.Severity != scan.Low || !strings.Contains(f.Message, "the base model does the same") {
		t.Errorf("all in base: %s %s", f.Severity, f.Message)
	}
	g[2].base = &baseReaction{shift: 0.01, forced: "and then", agree: 0.3}
	f = triggerFinding(m, g, 16)
	if f.Severity != scan.High || !strings.Contains(f.Message, `not for "bb"`) {
		t.Errorf("mixed: %s %s", f.Severity, f.Message)
	}
	if toks := f.Evidence["tokens"].([]map[string]any); toks[2]["in_base"] != false || toks[0]["in_base"] != true {
		t.Errorf("mixed tokens %v", toks)
	}
}
