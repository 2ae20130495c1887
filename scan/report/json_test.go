package report

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/scan"
)

// TestJSONRoundTrip decodes the JSON report back into a scan.Report: it must equal the
// input except for what the contract leaves out (histograms, layer count) and the
// sanitized non-finite evidence.
func TestJSONRoundTrip(t *testing.T) {
	in := testReport()
	var got scan.Report
	if err := json.Unmarshal(render(t, FormatJSON, in, Options{}), &got); err != nil {
		t.Fatal(err)
	}

	want := testReport()
	for i := range want.Targets {
		tg := &want.Targets[i]
		tg.Histograms, tg.Layers = nil, 0
		if tg.Files == nil {
			tg.Files = []scan.FileInfo{}
		}
		if tg.Findings == nil {
			tg.Findings = []scan.Finding{}
		}
		for j := range tg.Findings {
			f := &tg.Findings[j]
			for k, v := range f.Evidence {
				switch x := v.(type) {
				case float64:
					if math.IsNaN(x) {
						f.Evidence[k] = "NaN"
					}
				case []float64:
					f.Evidence[k] = []any{x[0], "+Inf"} // the fixture's "planes"
				case string:
					f.Evidence[k] = jsonUTF8(x) // encoding/json replaces invalid UTF-8
				}
			}
			f.Message = jsonUTF8(f.Message)
			f.Location.Key = jsonUTF8(f.Location.Key)
		}
		for j := range tg.Triggers {
			tg.Triggers[j].ForcedOutput = jsonUTF8(tg.Triggers[j].ForcedOutput)
		}
	}
	if len(got.Targets) != len(want.Targets) {
		t.Fatalf("round trip: %d targets, want %d", len(got.Targets), len(want.Targets))
	}
	for i := range want.Targets {
		g, w := got.Targets[i], want.Targets[i]
		if len(g.Findings) == len(w.Findings) {
			for j := range w.Findings {
				if !reflect.DeepEqual(g.Findings[j], w.Findings[j]) {
					t.Errorf("target %d finding %d:\n got %#v\nwant %#v", i, j, g.Findings[j], w.Findings[j])
				}
			}
		}
		g.Findings, w.Findings = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Errorf("target %d:\n got %#v\nwant %#v", i, g, w)
		}
	}
	got.Targets, want.Targets = nil, nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("report:\n got %#v\nwant %#v", got, want)
	}
}

// jsonUTF8 is s as encoding/json writes it: each invalid byte becomes U+FFFD.
func jsonUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // ranging yields utf8.RuneError for each invalid byte
	}
	return b.String()
}

// TestJSONShape checks the contract's details: [] for empty lists, triggers and classifier
// only when their analysis ran, schema and tool defaults, indentation and final newline.
func TestJSONShape(t *testing.T) {
	r := &scan.Report{Targets: []scan.Target{
		{Path: "a.gguf", Risk: scan.Risk{Verdict: scan.VerdictClean}},
		{Path: "b.gguf", Triggers: []scan.Trigger{}, Classifier: &scan.Classifier{Head: "fc", TargetClass: -1}},
	}}
	out := render(t, FormatJSON, r, Options{})
	var doc struct {
		Schema  string `json:"schema"`
		Tool    map[string]any
		Targets []map[string]json.RawMessage
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target int
		key    string
		want   string // raw JSON, "" = absent
	}{
		{0, "findings", "[]"},
		{0, "files", "[]"},
		{0, "triggers", ""},
		{0, "classifier", ""},
		{0, "error", `""`},
		{0, "risk", `{"score":0,"verdict":"clean"}`},
		{1, "triggers", "[]"},
		{1, "classifier", `{"head":"fc","target_class":-1,"score":0}`},
	} {
		raw, ok := doc.Targets[tc.target][tc.key]
		var got string
		if ok {
			var b bytes.Buffer
			if err := json.Compact(&b, raw); err != nil {
				t.Fatal(err)
			}
			got = b.String()
		}
		if got != tc.want {
			t.Errorf("targets[%d].%s = %q, want %q", tc.target, tc.key, got, tc.want)
		}
	}
	if got, want := doc.Schema, scan.Schema; got != want {
		t.Errorf("schema = %q, want %q", got, want)
	}
	if got, want := doc.Tool["name"], "kensa"; got != want {
		t.Errorf("tool.name = %v, want %q", got, want)
	}
	if !bytes.HasPrefix(out, []byte("{\n  \"schema\"")) || !bytes.HasSuffix(out, []byte("}\n")) {
		t.Errorf("want 2-space indentation and a trailing newline, got %q...", out[:min(len(out), 40)])
	}

	var empty bytes.Buffer
	if err := WriteJSON(&empty, &scan.Report{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(empty.String(), `"targets": []`) {
		t.Errorf("empty report: want \"targets\": [], got %s", empty.String())
	}
}

// TestJSONNonFinite checks that NaN and ±Inf never make the writer fail: in evidence
// they become strings wherever they are nested; scores are made finite.
func TestJSONNonFinite(t *testing.T) {
	type point struct{ X float64 }
	nan, inf := math.NaN(), math.Inf(1)
	ev := map[string]any{
		"nan":      nan,
		"pinf":     inf,
		"ninf":     math.Inf(-1),
		"f32":      float32(math.Inf(-1)),
		"ok":       1.5,
		"slice":    []float64{1, nan},
		"slice32":  []float32{float32(inf)},
		"nested":   map[string]any{"deep": []any{nan, "x", 2}},
		"array":    [2]float64{inf, 0},
		"ptr":      &[]float64{nan},
		"ints":     []int{1, 2},
		"strmap":   map[string]float64{"a": nan},
		"struct":   point{X: nan}, // not walked: falls back to its fmt.Sprint text
		"nil":      nil,
		"intmap":   map[int]float64{1: 2},
		"bytes":    []byte("hi"),
		"finite32": float32(0.5),
	}
	r := &scan.Report{Targets: []scan.Target{{
		Path: "m.gguf", Risk: scan.Risk{Score: nan},
		Findings: []scan.Finding{{Rule: "R", Score: inf, Evidence: ev}},
		Triggers: []scan.Trigger{{Token: "t", Score: nan}}, Classifier: &scan.Classifier{Score: math.Inf(-1)},
	}}}
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatalf("WriteJSON with non-finite values: %v", err)
	}
	var got struct {
		Targets []struct {
			Risk     struct{ Score float64 }
			Findings []struct {
				Score    float64
				Evidence map[string]any
			}
			Triggers   []struct{ Score float64 }
			Classifier struct{ Score float64 }
		}
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	tg := got.Targets[0]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"risk.score", tg.Risk.Score, 0.0},
		{"finding.score", tg.Findings[0].Score, math.MaxFloat64},
		{"trigger.score", tg.Triggers[0].Score, 0.0},
		{"classifier.score", tg.Classifier.Score, -math.MaxFloat64},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	want := map[string]any{
		"nan":      "NaN",
		"pinf":     "+Inf",
		"ninf":     "-Inf",
		"f32":      "-Inf",
		"ok":       1.5,
		"slice":    []any{1.0, "NaN"},
		"slice32":  []any{"+Inf"},
		"nested":   map[string]any{"deep": []any{"NaN", "x", 2.0}},
		"array":    []any{"+Inf", 0.0},
		"ptr":      []any{"NaN"},
		"ints":     []any{1.0, 2.0},
		"strmap":   map[string]any{"a": "NaN"},
		"struct":   "{NaN}",
		"nil":      nil,
		"intmap":   map[string]any{"1": 2.0},
		"bytes":    "aGk=",
		"finite32": 0.5,
	}
	if ev := tg.Findings[0].Evidence; !reflect.DeepEqual(ev, want) {
		t.Errorf("evidence =\n %#v\nwant\n %#v", ev, want)
	}
}
