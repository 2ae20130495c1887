package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
)

// sarifSchema compiles the SARIF 2.1.0 schema from the shared reference directory,
// skipping the test when it is absent.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	root := corpus.Root()
	if root == "" {
		t.Skip("corpus not found (set KENSA_CORPUS); the SARIF schema lives beside it in reference/; skipping")
	}
	path := filepath.Join(root, "..", "reference", "sarif-schema-2.1.0.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("SARIF schema not found: %v; skipping", err)
	}
	// The reference copy keeps the log's own schema in definitions/Root, leaving the
	// document root without constraints (it would accept anything); validate against
	// Root when the root has no constraints of its own.
	loc := path
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		Type        any             `json:"type"`
		Ref         string          `json:"$ref"`
		Properties  json.RawMessage `json:"properties"`
		Definitions map[string]json.RawMessage
	}
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if top.Type == nil && top.Ref == "" && top.Properties == nil && top.Definitions["Root"] != nil {
		loc += "#/definitions/Root"
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(loc)
	if err != nil {
		t.Fatalf("compiling %s: %v", loc, err)
	}
	return sch
}

func validate(sch *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

// TestSARIFSchema validates the SARIF output of several reports against the official
// schema, and checks that the validator rejects documents broken in typical ways, so
// that a passing validation means something.
func TestSARIFSchema(t *testing.T) {
	sch := sarifSchema(t)
	big := &scan.Report{Tool: scan.Tool{Name: "kensa", Version: "dev"}, Targets: []scan.Target{manyFindings(1000)}}
	paths := &scan.Report{Targets: []scan.Target{{
		Path: "/abs/dir with space/m.gguf", Risk: scan.Risk{Verdict: scan.VerdictError}, Error: "read: i/o error",
		Findings: []scan.Finding{
			{Rule: "KS-X", Location: scan.Location{File: "/abs/dir with space/m.gguf", Tensor: "t", Layer: -1, ByteOffset: 5, ByteLength: 0}},
			{Rule: "KS-X", Location: scan.Location{File: "rel/a:b%c#d?.gguf", Layer: -1, ByteOffset: -1, ByteLength: -4}},
			{Rule: "", Location: scan.Location{Layer: -1}},
			{Rule: "KS-Y", Severity: scan.Severity(42), Location: scan.Location{File: "m.gguf", Layer: -1}},
		},
	}}}
	for _, tc := range []struct {
		name   string
		report *scan.Report
		opt    Options
	}{
		{"fixture", testReport(), Options{Rules: testRules()}},
		{"fixture, empty catalogue", testReport(), Options{Rules: []scan.Rule{}}},
		{"empty report", &scan.Report{}, Options{}},
		{"1000 findings", big, Options{Rules: testRules()}},
		{"odd paths and values", paths, Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := validate(sch, render(t, FormatSARIF, tc.report, tc.opt)); err != nil {
				t.Errorf("SARIF output does not validate: %v", err)
			}
		})
	}

	// Broken variants of the fixture's SARIF must fail.
	good := render(t, FormatSARIF, testReport(), Options{Rules: testRules()})
	for _, tc := range []struct {
		name   string
		break_ func(doc map[string]any)
	}{
		{"result without message", func(d map[string]any) { delete(result(d, 0), "message") }},
		{"unknown level", func(d map[string]any) { result(d, 0)["level"] = "severe" }},
		{"negative byte length", func(d map[string]any) {
			loc := result(d, 0)["locations"].([]any)[0].(map[string]any)
			loc["physicalLocation"].(map[string]any)["region"].(map[string]any)["byteLength"] = -1
		}},
		{"duplicate tags", func(d map[string]any) {
			rule := run(d)["tool"].(map[string]any)["driver"].(map[string]any)["rules"].([]any)[0].(map[string]any)
			rule["properties"].(map[string]any)["tags"] = []any{"security", "security"}
		}},
		{"no version", func(d map[string]any) { delete(d, "version") }},
		{"invocation without executionSuccessful", func(d map[string]any) {
			delete(run(d)["invocations"].([]any)[0].(map[string]any), "executionSuccessful")
		}},
		{"unknown property", func(d map[string]any) { result(d, 0)["severity"] = "high" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(good, &doc); err != nil {
				t.Fatal(err)
			}
			tc.break_(doc)
			bad, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(sch, bad); err == nil {
				t.Errorf("a SARIF document with %s validates; want a validation error", tc.name)
			}
		})
	}
}

func run(doc map[string]any) map[string]any { return doc["runs"].([]any)[0].(map[string]any) }

func result(doc map[string]any, i int) map[string]any {
	return run(doc)["results"].([]any)[i].(map[string]any)
}

// TestFingerprint checks that a fingerprint survives what changes between scans of the
// same model (offsets, lengths, scores, severity, directory) and changes with what
// identifies the finding (rule, file name, tensor, axis, index, key).
func TestFingerprint(t *testing.T) {
	base := scan.Finding{Rule: "KS-DIFF-RANK1", Severity: scan.High, Score: 0.98, Location: scan.Location{
		File: "vendor/m.gguf", Tensor: "blk.17.ffn_down.weight", Layer: 17, Role: "ffn_down", Axis: "row", Index: []int64{1234},
		ByteOffset: 4521238528, ByteLength: 28672}}
	fp := func(f scan.Finding) string { return Fingerprint(f.Rule, f.Location.File, f.Location) }
	want := fp(base)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(want) {
		t.Fatalf("Fingerprint = %q, want 32 hex digits", want)
	}
	for _, tc := range []struct {
		name   string
		change func(f *scan.Finding)
		same   bool
	}{
		{"byte offset", func(f *scan.Finding) { f.Location.ByteOffset += 4096 }, true},
		{"byte length", func(f *scan.Finding) { f.Location.ByteLength = 1 }, true},
		{"score", func(f *scan.Finding) { f.Score = 0.51 }, true},
		{"severity", func(f *scan.Finding) { f.Severity = scan.Critical }, true},
		{"message", func(f *scan.Finding) { f.Message = "other words" }, true},
		{"directory", func(f *scan.Finding) { f.Location.File = "/mnt/registry/m.gguf" }, true},
		{"layer and role", func(f *scan.Finding) { f.Location.Layer, f.Location.Role = 3, "x" }, true},
		{"rule", func(f *scan.Finding) { f.Rule = "KS-NEURON-OUTLIER" }, false},
		{"file name", func(f *scan.Finding) { f.Location.File = "vendor/m2.gguf" }, false},
		{"tensor", func(f *scan.Finding) { f.Location.Tensor = "blk.18.ffn_down.weight" }, false},
		{"axis", func(f *scan.Finding) { f.Location.Axis = "col" }, false},
		{"index", func(f *scan.Finding) { f.Location.Index = []int64{1235} }, false},
		{"index split", func(f *scan.Finding) { f.Location.Index = []int64{12, 34} }, false},
		{"key", func(f *scan.Finding) { f.Location.Key = "general.name" }, false},
		{"field boundary", func(f *scan.Finding) { f.Rule, f.Location.Tensor = "KS-DIFF-RANK1b", "lk.17.ffn_down.weight" }, false},
	} {
		f := base
		f.Location.Index = slices.Clone(base.Location.Index)
		tc.change(&f)
		if got := fp(f); (got == want) != tc.same {
			t.Errorf("changing the %s: fingerprint %s -> %s, want same=%v", tc.name, want, got, tc.same)
		}
	}
}

// sarifDoc is the part of a SARIF log the tests look at.
type sarifDoc struct {
	Runs []struct {
		Tool struct {
			Driver struct {
				Rules []struct {
					ID                   string
					Name                 string
					DefaultConfiguration struct{ Level string }
					Properties           struct {
						SecuritySeverity string `json:"security-severity"`
						Tags             []string
					}
				}
			}
		}
		Invocations []struct {
			ExecutionSuccessful        bool
			ToolExecutionNotifications []struct {
				Level   string
				Message struct{ Text string }
			}
		}
		Artifacts []struct {
			Location struct{ URI string }
			Length   int64
			Hashes   map[string]string
		}
		Results []struct {
			RuleID    string
			RuleIndex int
			Level     string
			Message   struct{ Text string }
			Locations []struct {
				PhysicalLocation *struct {
					ArtifactLocation struct {
						URI       string
						URIBaseID string
						Index     int
					}
					Region *struct{ ByteOffset, ByteLength int64 }
				}
				LogicalLocations []struct{ Name, FullyQualifiedName, Kind string }
			}
			PartialFingerprints map[string]string
			Properties          struct {
				SecuritySeverity string `json:"security-severity"`
				Severity         string
			}
		}
	}
}

func decodeSARIF(t *testing.T, r *scan.Report, opt Options) sarifDoc {
	t.Helper()
	var d sarifDoc
	if err := json.Unmarshal(render(t, FormatSARIF, r, opt), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(d.Runs))
	}
	return d
}

func TestSARIFContent(t *testing.T) {
	rep := testReport()
	d := decodeSARIF(t, rep, Options{Rules: testRules()})
	run := d.Runs[0]

	var ids []string
	for _, r := range run.Tool.Driver.Rules {
		ids = append(ids, r.ID)
	}
	wantIDs := []string{"KS-DIFF-RANK1", "KS-EXP-UNLISTED", "KS-HEAD-TARGET", "KS-META-TEMPLATE", "KS-NEURON-OUTLIER", "KS-PAYLOAD-LSB", "KS-STRUCT-GAP", "KS-STRUCT-ORDER"}
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("rules = %q, want %q (catalogue, unused KS-HEAD-TARGET and unknown KS-EXP-UNLISTED included, sorted)", ids, wantIDs)
	}
	for _, tc := range []struct {
		id, name, level, sev string
		tags                 []string
	}{
		{"KS-DIFF-RANK1", "RankOneEditConcentratedInOneMLPProjection", "error", "8.0", []string{"security", "diff"}},
		{"KS-PAYLOAD-LSB", "DataHiddenInMantissaLowBits", "error", "9.5", []string{"security", "payload"}},
		{"KS-META-TEMPLATE", "ChatTemplateBranchesOnMessageContent", "warning", "5.5", []string{"security", "metadata"}},
		{"KS-STRUCT-GAP", "UnreferencedBytesBetweenTensors", "note", "3.0", []string{"security", "structure"}},
		{"KS-STRUCT-ORDER", "TensorsStoredOutOfCanonicalOrder", "note", "0.0", []string{"security", "structure"}},
		{"KS-EXP-UNLISTED", "EmbeddingRowMovedFarFromItsNeighbours", "warning", "5.5", []string{"security"}},
	} {
		i := slices.Index(ids, tc.id)
		if i < 0 {
			continue
		}
		r := run.Tool.Driver.Rules[i]
		if r.Name != tc.name || r.DefaultConfiguration.Level != tc.level || r.Properties.SecuritySeverity != tc.sev || !slices.Equal(r.Properties.Tags, tc.tags) {
			t.Errorf("rule %s = name %q level %q security-severity %q tags %q; want %q %q %q %q", tc.id,
				r.Name, r.DefaultConfiguration.Level, r.Properties.SecuritySeverity, r.Properties.Tags, tc.name, tc.level, tc.sev, tc.tags)
		}
	}

	// One result per finding, in report order, each pointing at its rule and artifact.
	var findings []scan.Finding
	for _, tg := range rep.Targets {
		findings = append(findings, tg.Findings...)
	}
	if len(run.Results) != len(findings) {
		t.Fatalf("%d results, want %d", len(run.Results), len(findings))
	}
	for i, res := range run.Results {
		f := findings[i]
		if res.RuleID != f.Rule || ids[res.RuleIndex] != res.RuleID {
			t.Errorf("result %d: ruleId %q ruleIndex %d, want %q at its index", i, res.RuleID, res.RuleIndex, f.Rule)
		}
		if got, want := res.Properties.SecuritySeverity, securitySeverity(f.Severity); got != want {
			t.Errorf("result %d: security-severity %q, want %q", i, got, want)
		}
		if got, want := res.Level, sarifLevel(f.Severity); got != want {
			t.Errorf("result %d: level %q, want %q", i, got, want)
		}
		pl := res.Locations[0].PhysicalLocation
		if pl == nil {
			t.Fatalf("result %d: no physical location", i)
		}
		if got, want := run.Artifacts[pl.ArtifactLocation.Index].Location.URI, pl.ArtifactLocation.URI; got != want {
			t.Errorf("result %d: artifact index %d names %q, want %q", i, pl.ArtifactLocation.Index, got, want)
		}
		hasRegion := f.Location.ByteOffset != 0 || f.Location.ByteLength != 0
		if (pl.Region != nil) != hasRegion {
			t.Errorf("result %d: region %+v, want present=%v", i, pl.Region, hasRegion)
		} else if hasRegion && (pl.Region.ByteOffset != f.Location.ByteOffset || pl.Region.ByteLength != f.Location.ByteLength) {
			t.Errorf("result %d: region %+v, want %d+%d", i, *pl.Region, f.Location.ByteOffset, f.Location.ByteLength)
		}
		if f.Location.Tensor != "" {
			ll := res.Locations[0].LogicalLocations
			if len(ll) != 1 || ll[0].Name != f.Location.Tensor || ll[0].Kind != "member" {
				t.Errorf("result %d: logical locations %+v, want the tensor %q as a member", i, ll, f.Location.Tensor)
			}
		}
		if strings.ContainsAny(res.Message.Text, "\x1b\r\n\x07") {
			t.Errorf("result %d: message has raw control characters: %q", i, res.Message.Text)
		}
	}
	if got, want := run.Results[1].Locations[0].LogicalLocations[0].FullyQualifiedName,
		"llama-3-8b-edit.Q4_K_M.gguf#blk.17.ffn_down.weight[row 1234]"; got != want {
		t.Errorf("fullyQualifiedName = %q, want %q", got, want)
	}

	// Repeated identities within a target are told apart.
	fps := map[string]bool{}
	for i, res := range run.Results {
		fp := res.PartialFingerprints[FingerprintKey]
		if fps[fp] {
			t.Errorf("result %d: duplicate fingerprint %s", i, fp)
		}
		fps[fp] = true
	}

	// The target that could not be scanned.
	inv := run.Invocations
	if len(inv) != 1 || inv[0].ExecutionSuccessful || len(inv[0].ToolExecutionNotifications) != 1 ||
		inv[0].ToolExecutionNotifications[0].Level != "error" ||
		!strings.Contains(inv[0].ToolExecutionNotifications[0].Message.Text, "tensor count 4294967297") {
		t.Errorf("invocations = %+v, want one unsuccessful with the error notification", inv)
	}
	if got, want := run.Artifacts[0].Hashes["sha-256"], rep.Targets[0].Files[0].SHA256; got != want || run.Artifacts[0].Length != 1_048_576 {
		t.Errorf("artifact 0 = %+v, want sha-256 %s and length 1048576", run.Artifacts[0], want)
	}

	// Without errors the invocation is successful.
	rep.Targets = rep.Targets[:2]
	if d := decodeSARIF(t, rep, Options{Rules: testRules()}); !d.Runs[0].Invocations[0].ExecutionSuccessful {
		t.Error("executionSuccessful = false without target errors")
	}
}

func TestSARIFDuplicateFingerprints(t *testing.T) {
	gap := func(off int64) scan.Finding {
		return scan.Finding{Rule: "KS-STRUCT-GAP", Location: scan.Location{File: "m.gguf", Layer: -1, ByteOffset: off, ByteLength: 8}}
	}
	r := &scan.Report{Targets: []scan.Target{{Path: "m.gguf", Findings: []scan.Finding{gap(10), gap(100), gap(1000)}}}}
	d := decodeSARIF(t, r, Options{})
	var got []string
	for _, res := range d.Runs[0].Results {
		got = append(got, res.PartialFingerprints[FingerprintKey])
	}
	base := Fingerprint("KS-STRUCT-GAP", "m.gguf", gap(0).Location)
	want := []string{base, base + ":2", base + ":3"}
	if !slices.Equal(got, want) {
		t.Errorf("fingerprints = %q, want %q", got, want)
	}
}

func TestArtifactLocation(t *testing.T) {
	for _, tc := range []struct {
		path, uri, base string
	}{
		{"models/m.gguf", "models/m.gguf", "%SRCROOT%"},
		{"m.gguf", "m.gguf", "%SRCROOT%"},
		{"../up/m.gguf", "../up/m.gguf", "%SRCROOT%"},
		{"dir with space/m#1.gguf", "dir%20with%20space/m%231.gguf", "%SRCROOT%"},
		{"a:b.gguf", "./a:b.gguf", "%SRCROOT%"},
		{"/abs/m.gguf", "file:///abs/m.gguf", ""},
		{"/abs/100%/<x>.gguf", "file:///abs/100%25/%3Cx%3E.gguf", ""},
	} {
		got := artifactLocation(tc.path)
		if got.URI != tc.uri || got.URIBaseID != tc.base {
			t.Errorf("artifactLocation(%q) = %q %q, want %q %q", tc.path, got.URI, got.URIBaseID, tc.uri, tc.base)
		}
	}
}

func TestCamelCase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rank-one edit concentrated in one MLP projection", "RankOneEditConcentratedInOneMLPProjection"},
		{"NaN/Inf values in weights", "NaNInfValuesInWeights"},
		{"", ""},
		{"  x  ", "X"},
		{"über 2 bits", "Über2Bits"},
	} {
		if got := camelCase(tc.in); got != tc.want {
			t.Errorf("camelCase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
