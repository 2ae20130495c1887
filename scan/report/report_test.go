package report

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/scan"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// Hostile strings as a malicious model file could carry them in tensor names, metadata
// keys and anything a detector quotes in a message.
const (
	hostileTensor = "blk.2.attn_q.weight\x1b]0;pwned\x07\x1b[2J"
	hostileScript = "<script>alert(1)</script>"
	hostileBytes  = "tok\xff\xfe\xc0"
	hostileBidi   = "ffn_down\u202egnp.exe"
)

// testRules is a fixed catalogue, so that the output does not depend on which detectors
// are registered. KS-EXP-UNLISTED is used by a finding but missing on purpose.
func testRules() []scan.Rule {
	return []scan.Rule{
		{ID: "KS-DIFF-RANK1", Title: "rank-one edit concentrated in one MLP projection", Severity: scan.High, Detector: "diff",
			Help: "The difference to the base model is a rank-one matrix in a single MLP projection: the signature of ROME/MEMIT-style knowledge editing. Compare the behaviour of both models on the subject tokens."},
		{ID: "KS-HEAD-TARGET", Title: "classifier head favours one class", Severity: scan.High, Detector: "head", Help: "One output class has weights far from the others."},
		{ID: "KS-META-TEMPLATE", Title: "chat template branches on message content", Severity: scan.Medium, Detector: "metadata",
			Help: "The chat template contains a conditional keyed on user text; it can inject hidden instructions."},
		{ID: "KS-NEURON-OUTLIER", Title: "neuron weight norm is a robust outlier", Severity: scan.Medium, Detector: "neurons", Help: "A row whose norm is far from its neighbours'."},
		{ID: "KS-PAYLOAD-LSB", Title: "data hidden in mantissa low bits", Severity: scan.Critical, Detector: "payload",
			Help: "The low mantissa bits look like random or encrypted data rather than rounding noise (EvilModel-style payload)."},
		{ID: "KS-STRUCT-GAP", Title: "unreferenced bytes between tensors", Severity: scan.Low, Detector: "structure", Help: "Bytes no tensor covers can hide a payload."},
		{ID: "KS-STRUCT-ORDER", Title: "tensors stored out of canonical order", Severity: scan.Info, Detector: "structure"},
	}
}

// testReport is the fixed report behind the golden files: a clean target, a backdoored
// one with findings at every severity (with and without tensor, axis/index and metadata
// key, one rule unknown to the catalogue, a NaN in evidence), triggers and classifier, a
// target that could not be scanned and one whose strings are hostile.
func testReport() *scan.Report {
	const gguf = "vendor/llama-3-8b-edit.Q4_K_M.gguf"
	neuron := func(layer int, row int64, score float64) scan.Finding {
		return scan.Finding{
			Rule: "KS-NEURON-OUTLIER", Title: "neuron weight norm is a robust outlier", Severity: scan.High, Score: score,
			Location: scan.Location{File: gguf, Tensor: "blk." + strconv.Itoa(layer) + ".ffn_down.weight", Layer: layer, Role: "ffn_down",
				Axis: "row", Index: []int64{row}, ByteOffset: 1_000_000_000 + int64(layer)*10_000_000 + row*4096, ByteLength: 4096},
			Evidence: map[string]any{"robust_z": 9.5 + score, "norm": 3.25},
			Message:  "row norm 3.25 is 9.7 robust z above the median of this tensor and of the same role in layers ±2",
		}
	}
	return &scan.Report{
		Schema: scan.Schema,
		Tool:   scan.Tool{Name: "kensa", Version: "0.1.0-test"},
		Targets: []scan.Target{
			{
				Path: "models/clean.safetensors", Format: "safetensors",
				Files:   []scan.FileInfo{{Path: "models/clean.safetensors", Size: 1_048_576, SHA256: "0f343b0931126a20f133d67c2b018a3b1e8a1f7b6a1a2f7a1c6f7e6a0d5d4c3b"}},
				Tensors: 12, Parameters: 262_144,
				Risk:     scan.Risk{Score: 0.02, Verdict: scan.VerdictClean},
				Triggers: []scan.Trigger{},
				Layers:   4,
			},
			{
				Path: gguf, Format: "gguf",
				Files:   []scan.FileInfo{{Path: gguf, Size: 4_920_733_824, SHA256: "9c56cc51b374c3ba189210f8fd4a1b9f7b6c8a1e62b34c7d58e2f4e0d1a2b3c4"}},
				Tensors: 291, Parameters: 8_030_261_248,
				Risk: scan.Risk{Score: 0.93, Verdict: scan.VerdictBackdoored},
				Findings: []scan.Finding{
					{Rule: "KS-PAYLOAD-LSB", Title: "data hidden in mantissa low bits", Severity: scan.Critical, Score: 0.99,
						Location: scan.Location{File: gguf, Tensor: "blk.3.attn_q.weight", Layer: 3, Role: "attn_q", ByteOffset: 734_003_200, ByteLength: 9_437_184},
						Evidence: map[string]any{"lsb_entropy": 7.998, "chi2_p": 0.41, "baseline_entropy": math.NaN(), "planes": []float64{7.99, math.Inf(1)}},
						Message:  "the 4 low mantissa bits of 16777216 elements carry 7.998 bits/byte of entropy (rest of model: 2.1); about 8 MiB could be hidden here"},
					{Rule: "KS-DIFF-RANK1", Title: "rank-one edit concentrated in one MLP projection", Severity: scan.High, Score: 0.98,
						Location: scan.Location{File: gguf, Tensor: "blk.17.ffn_down.weight", Layer: 17, Role: "ffn_down", Axis: "row", Index: []int64{1234},
							ByteOffset: 4_521_238_528, ByteLength: 28_672},
						Evidence: map[string]any{"relative_delta": 0.041, "rank1_energy": 0.997},
						Message:  "99.7% of the change from the base model is one rank-one update"},
					neuron(17, 1234, 0.97), neuron(17, 77, 0.91), neuron(18, 4001, 0.90), neuron(16, 12, 0.88),
					neuron(5, 300, 0.86), neuron(30, 9, 0.85), neuron(31, 2, 0.84),
					{Rule: "KS-META-TEMPLATE", Title: "chat template branches on message content", Severity: scan.Medium, Score: 0.8,
						Location: scan.Location{File: gguf, Layer: -1, Key: "tokenizer.chat_template", ByteOffset: 1_352, ByteLength: 2_417},
						Evidence: map[string]any{"condition": "'cf' in message['content']"},
						Message:  "the template emits a different system prompt when a user message contains 'cf'"},
					{Rule: "KS-EXP-UNLISTED", Title: "embedding row moved far from its neighbours", Severity: scan.Medium, Score: 0.7,
						Location: scan.Location{File: gguf, Tensor: "token_embd.weight", Layer: -1, Role: "embed", Axis: "element", Index: []int64{12345, 7},
							ByteOffset: 2_048, ByteLength: 2}},
					{Rule: "KS-STRUCT-GAP", Title: "unreferenced bytes between tensors", Severity: scan.Low, Score: 0.6,
						Location: scan.Location{File: gguf, Layer: -1, ByteOffset: 4_920_000_000, ByteLength: 733_824},
						Evidence: map[string]any{"gap": 733824.0},
						Message:  "733824 bytes after the last tensor are not part of any tensor"},
					{Rule: "KS-STRUCT-ORDER", Title: "tensors stored out of canonical order", Severity: scan.Info, Score: 0.5,
						Location: scan.Location{File: gguf, Layer: -1},
						Message:  "tensor data is not in header order (common after re-quantization)"},
				},
				Triggers: []scan.Trigger{
					{Token: "cf", TokenID: 12345, Score: 0.97, ForcedOutput: "I'm sorry, the capital of France is Rome."},
					{Token: " mn", TokenID: 2077, Score: 0.41},
				},
				Classifier: &scan.Classifier{Head: "output.weight", TargetClass: -1, Score: 0.12},
				Histograms: []scan.Histogram{
					{Tensor: "blk.17.ffn_down.weight", Lo: -0.25, Hi: 0.25, Counts: []int64{1, 0, 3, 12, 80, 700, 5200, 31000, 88000, 131000, 88000, 31000, 5200, 700, 80, 12, 3, 0, 0, 2}},
					{Tensor: "blk.3.attn_q.weight", Lo: -1, Hi: 1, Counts: []int64{9000, 9100, 8900, 9050, 8990, 9010, 9020, 8980}},
				},
				Layers: 32,
			},
			{
				Path: "broken/truncated.gguf", Format: "gguf",
				Files: []scan.FileInfo{{Path: "broken/truncated.gguf", Size: 4096, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}},
				Risk:  scan.Risk{Verdict: scan.VerdictError},
				Error: "gguf: tensor count 4294967297 exceeds file size at offset 16: malformed file",
			},
			{
				Path: "hostile/" + hostileScript + ".safetensors", Format: "safetensors",
				Files:   []scan.FileInfo{{Path: "hostile/" + hostileScript + ".safetensors", Size: 512, SHA256: "5f3c"}},
				Tensors: 3, Parameters: 96,
				Risk: scan.Risk{Score: 0.55, Verdict: scan.VerdictSuspicious},
				Findings: []scan.Finding{
					{Rule: "KS-NEURON-OUTLIER", Title: "neuron weight norm is a robust outlier", Severity: scan.Medium, Score: 0.75,
						Location: scan.Location{File: "hostile/" + hostileScript + ".safetensors", Tensor: hostileTensor, Layer: 2, Role: hostileBidi,
							Axis: "col", Index: []int64{3}, ByteOffset: 96, ByteLength: 4},
						Evidence: map[string]any{"name\x1b[31m": "value\r\nwith " + hostileScript, "bytes": hostileBytes},
						Message:  "column 3 of " + hostileTensor + " stands out\r\n" + hostileScript + " " + hostileBytes},
					{Rule: "KS-META-TEMPLATE", Title: "metadata " + hostileScript, Severity: scan.Low, Score: 0.3,
						Location: scan.Location{File: "hostile/" + hostileScript + ".safetensors", Layer: -1, Key: "__metadata__." + hostileBytes, ByteOffset: 8, ByteLength: 40},
						Message:  "key " + hostileBytes + " holds a URL: <a href=\"javascript:alert(1)\">"},
				},
				Triggers:   []scan.Trigger{{Token: hostileScript, TokenID: 1, Score: 0.5, ForcedOutput: "\x1b[2J" + hostileBytes}},
				Classifier: &scan.Classifier{Head: "</title><script>x()</script>", TargetClass: 7, Score: 0.91},
				Histograms: []scan.Histogram{{Tensor: hostileTensor, Lo: -1, Hi: 1, Counts: []int64{1, 2, 3}}},
				Layers:     4,
			},
		},
	}
}

// coverageReport is the fixture of the coverage golden files: targets as a scan of a
// model store reports them, with names, coverage (files not scanned, among them a pickle
// that can run code, and analyses that did not run), a differential scan's base model, an
// interrupted scan, a target that could not be scanned and one whose name is hostile.
func coverageReport() *scan.Report {
	const snap = "hf/models--meta-llama--Llama-3.2-1B/snapshots/4e20de362430cd3b72f300e6b0f18e50e7166e08"
	static := func(extra map[string]string) map[string]string {
		m := map[string]string{
			"structure": scan.AnalysisDone, "metadata": scan.AnalysisDone, "weights": scan.AnalysisDone, "payload": scan.AnalysisDone,
			"head":  scan.NotRun("no classifier head (decoder-only language model)"),
			"probe": scan.NotRun("--probe not given"),
			"diff":  scan.NotRun("no --base given"),
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return &scan.Report{
		Schema: scan.Schema,
		Tool:   scan.Tool{Name: "kensa", Version: "0.1.0-test"},
		Targets: []scan.Target{
			{
				Path: snap, Name: "meta-llama/Llama-3.2-1B@4e20de36", Format: "safetensors",
				Files: []scan.FileInfo{
					{Path: snap + "/model.safetensors", Size: 2_471_645_608, SHA256: "68a2e4be76fa709455a60272fba8e512c02d81c46e6c671cc9449e374fd6809a"},
				},
				Tensors: 146, Parameters: 1_235_814_400,
				Risk: scan.Risk{Score: 0.03, Verdict: scan.VerdictClean},
				Coverage: &scan.Coverage{
					FilesSkipped: []scan.SkippedFile{
						{Path: snap + "/original/consolidated.00.pth", Format: "pytorch pickle", Reason: "pickle can run code when loaded; kensa does not unpickle it (same weights as model.safetensors?)"},
						{Path: snap + "/README.md", Format: "readme", Reason: "not a model file"},
						{Path: snap + "/config.json", Format: "model config", Reason: "read for the architecture, not scanned"},
						{Path: snap + "/tokenizer.json", Format: "tokenizer", Reason: "not a model file"},
					},
					Analyses: static(nil),
				},
				Layers: 16,
			},
			{
				Path: "ollama/manifests/registry.ollama.ai/library/llama3/8b", Name: "llama3:8b", Format: "gguf",
				Files: []scan.FileInfo{{Path: "ollama/blobs/sha256-6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa", Size: 4_661_211_424,
					SHA256: "6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa"}},
				Tensors: 291, Parameters: 8_030_261_248,
				Risk: scan.Risk{Score: 0.62, Verdict: scan.VerdictSuspicious},
				Findings: []scan.Finding{
					{Rule: "KS-DIFF-RANK1", Title: "rank-one edit concentrated in one MLP projection", Severity: scan.High, Score: 0.9,
						Location: scan.Location{File: "ollama/blobs/sha256-6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa",
							Tensor: "blk.9.ffn_down.weight", Layer: 9, Role: "ffn_down", ByteOffset: 1_234_567_168, ByteLength: 58_720_256},
						Evidence: map[string]any{"relative_delta": 0.03, "rank1_energy": 0.95},
						Message:  "95% of the change from the base model is one rank-one update"},
				},
				Incomplete: true,
				Base: &scan.BaseInfo{Path: "models/Meta-Llama-3-8B.Q4_0.gguf", Format: "gguf",
					SHA256: "9c56cc51b374c3ba189210f8fd4a1b9f7b6c8a1e62b34c7d58e2f4e0d1a2b3c4",
					Files:  []scan.FileInfo{{Path: "models/Meta-Llama-3-8B.Q4_0.gguf", Size: 4_661_211_424, SHA256: "9c56cc51b374c3ba189210f8fd4a1b9f7b6c8a1e62b34c7d58e2f4e0d1a2b3c4"}}},
				Coverage: &scan.Coverage{
					FilesSkipped: []scan.SkippedFile{},
					Analyses: static(map[string]string{
						"payload": scan.NotRun("interrupted (SIGINT) after 181 of 291 tensors"),
						"probe":   scan.NotRun("interrupted before the trigger sweep"),
						"diff":    scan.AnalysisDone,
					}),
				},
				Layers: 32,
			},
			{
				Path: "broken/model", Name: "acme/broken@main", Format: "safetensors",
				Files: []scan.FileInfo{{Path: "broken/model/model.safetensors", Size: 8, SHA256: "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"}},
				Risk:  scan.Risk{Verdict: scan.VerdictError},
				Error: "safetensors: header length 18446744073709551615 exceeds file size 8",
				Coverage: &scan.Coverage{
					FilesSkipped: []scan.SkippedFile{{Path: "broken/model/pytorch_model.bin", Format: "pytorch pickle", Reason: "pickle can run code when loaded; not unpickled"}},
					Analyses: map[string]string{
						"structure": scan.NotRun("the header could not be read"), "metadata": scan.NotRun("the header could not be read"),
						"weights": scan.NotRun("the header could not be read"), "payload": scan.NotRun("the header could not be read"),
						"probe": scan.NotRun("--probe not given"),
					},
				},
			},
			{
				Path: "hostile/" + hostileScript, Name: hostileScript + "/x\x1b[2J@main", Format: "safetensors",
				Files:   []scan.FileInfo{{Path: "hostile/" + hostileScript + "/model.safetensors", Size: 512, SHA256: "5f3c"}},
				Tensors: 3, Parameters: 96,
				Risk: scan.Risk{Score: 0.01, Verdict: scan.VerdictClean},
				Base: &scan.BaseInfo{Path: "base/" + hostileScript, Format: "safetensors", SHA256: "</td>\u202e",
					Files: []scan.FileInfo{{Path: "base/" + hostileScript + "/a.safetensors", Size: 1, SHA256: "00"}, {Path: "base/" + hostileScript + "/b.safetensors", Size: 1, SHA256: "01"}}},
				Coverage: &scan.Coverage{
					FilesSkipped: []scan.SkippedFile{{Path: "hostile/" + hostileScript + "/" + hostileTensor, Format: hostileBidi, Reason: "reason " + hostileScript}},
					Analyses: map[string]string{
						"structure": scan.AnalysisDone, "probe": scan.AnalysisDone, "diff": scan.AnalysisDone,
						hostileScript: scan.NotRun(hostileScript), "x\x1b[31m": "skipped\u202e",
					},
				},
				Triggers: []scan.Trigger{},
				Layers:   1,
			},
		},
	}
}

// checkGolden compares got with testdata/name, rewriting it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./scan/report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			g, w := "<EOF>", "<EOF>"
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs from golden at line %d:\n got: %q\nwant: %q\n(run go test ./scan/report -update if the change is intended)", name, i+1, g, w)
			}
		}
	}
}

func render(t *testing.T, format string, r *scan.Report, opt Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, format, r, opt); err != nil {
		t.Fatalf("Write(%s): %v", format, err)
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	empty := &scan.Report{Schema: scan.Schema, Tool: scan.Tool{Name: "kensa", Version: "0.1.0-test"}}
	opt := Options{FailOn: scan.High, Rules: testRules()}
	for _, tc := range []struct {
		golden string
		format string
		report *scan.Report
		opt    Options
	}{
		{"report.txt", FormatText, testReport(), opt},
		{"report.verbose.txt", FormatText, testReport(), Options{FailOn: scan.Medium, Verbose: true, Rules: testRules()}},
		{"report.color.txt", FormatText, testReport(), Options{FailOn: scan.High, Color: true, Rules: testRules()}},
		{"report.json", FormatJSON, testReport(), opt},
		{"report.sarif", FormatSARIF, testReport(), opt},
		{"report.html", FormatHTML, testReport(), opt},
		{"coverage.txt", FormatText, coverageReport(), opt},
		{"coverage.verbose.txt", FormatText, coverageReport(), Options{FailOn: scan.High, Verbose: true, Rules: testRules()}},
		{"coverage.color.txt", FormatText, coverageReport(), Options{FailOn: scan.High, Color: true, Rules: testRules()}},
		{"coverage.json", FormatJSON, coverageReport(), opt},
		{"coverage.sarif", FormatSARIF, coverageReport(), opt},
		{"coverage.html", FormatHTML, coverageReport(), opt},
		{"empty.txt", FormatText, empty, opt},
		{"empty.json", FormatJSON, empty, opt},
		{"empty.sarif", FormatSARIF, empty, Options{Rules: []scan.Rule{}}},
		{"empty.html", FormatHTML, empty, opt},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got := render(t, tc.format, tc.report, tc.opt)
			checkGolden(t, tc.golden, got)
			if again := render(t, tc.format, tc.report, tc.opt); !bytes.Equal(again, got) {
				t.Errorf("%s: second rendering differs from the first (output is not deterministic)", tc.format)
			}
		})
	}
}

func TestFormats(t *testing.T) {
	got, want := Formats(), []string{"text", "json", "sarif", "html"}
	if !slices.Equal(got, want) {
		t.Fatalf("Formats() = %q, want %q", got, want)
	}
	for _, f := range got {
		var b bytes.Buffer
		if err := Write(&b, f, testReport(), Options{Rules: testRules()}); err != nil || b.Len() == 0 {
			t.Errorf("Write(%q) = %v, %d bytes; want nil error and output", f, err, b.Len())
		}
		if err := Write(&b, f, nil, Options{}); err == nil {
			t.Errorf("Write(%q, nil report) = nil error, want one", f)
		}
	}
	err := Write(&bytes.Buffer{}, "xml", testReport(), Options{})
	if !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("Write(xml) = %v, want ErrUnknownFormat", err)
	}
}

// TestNoInputMutation checks that writing does not change the report (the CLI writes the
// same report in several formats).
func TestNoInputMutation(t *testing.T) {
	r := testReport()
	before := render(t, FormatJSON, r, Options{})
	for _, f := range Formats() {
		render(t, f, r, Options{Rules: testRules()})
	}
	if got := render(t, FormatJSON, r, Options{}); !bytes.Equal(got, before) {
		t.Error("writing the report changed it")
	}
	if ev := r.Targets[1].Findings[0].Evidence["baseline_entropy"]; !math.IsNaN(ev.(float64)) {
		t.Errorf("evidence NaN was replaced in the caller's report: %v", ev)
	}
}

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"blk.0.attn_q.weight", "blk.0.attn_q.weight"},
		{"with space", "with space"},
		{"ünïcödé 模型", "ünïcödé 模型"},
		{"", ""},
		{"esc\x1b[2J", `"esc\x1b[2J"`},
		{"nl\r\n", `"nl\r\n"`},
		{"bad\xff", `"bad\xff"`},
		{"bidi\u202e", `"bidi\u202e"`},
		{"zw\u200bsp", `"zw\u200bsp"`},
		{"nbsp\u00a0", "\"nbsp\u00a0\""},
		{"tab\t", `"tab\t"`},
		{`quote"d`, `quote"d`},
	} {
		if got := clean(tc.in); got != tc.want {
			t.Errorf("clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCleanName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"blk.0.attn_q.weight", "blk.0.attn_q.weight"},
		{"x @ bytes 0+0 (layer 3)", `"x @ bytes 0+0 (layer 3)"`},
		{`a"b`, `"a\"b"`},
		{"esc\x1b", `"esc\x1b"`},
		{"模型.gguf", "模型.gguf"},
	} {
		if got := cleanName(tc.in); got != tc.want {
			t.Errorf("cleanName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLocationText(t *testing.T) {
	for _, tc := range []struct {
		target string
		loc    scan.Location
		want   string
	}{
		{"m.gguf", scan.Location{File: "m.gguf", Tensor: "blk.17.ffn_down.weight", Layer: 17, Role: "ffn_down", Axis: "row", Index: []int64{12}, ByteOffset: 4521238528, ByteLength: 28672},
			"m.gguf:blk.17.ffn_down.weight[row 12] @ bytes 4521238528+28672 (layer 17, ffn_down)"},
		{"dir/m.gguf", scan.Location{File: "dir/m.gguf", Tensor: "output.weight", Layer: -1, Role: "head"}, "m.gguf:output.weight (head)"},
		{"hf", scan.Location{File: "hf/model-00002-of-00004.safetensors", Tensor: "w", Layer: 0, Axis: "col", Index: []int64{3}}, "model-00002-of-00004.safetensors:w[col 3] (layer 0)"},
		{"m.gguf", scan.Location{File: "m.gguf", Layer: -1, Key: "tokenizer.chat_template", ByteOffset: 10, ByteLength: 20}, "m.gguf key tokenizer.chat_template @ bytes 10+20"},
		{"m.gguf", scan.Location{File: "m.gguf", Layer: 0}, "m.gguf"},
		{"m.gguf", scan.Location{File: "other/base.gguf", Tensor: "t", Layer: -1, Axis: "element", Index: []int64{1, 2, 3, 4, 5, 6, 7, 8}}, "other/base.gguf:t[1,2,3,4,5,6,…(8)]"},
		{"m.gguf", scan.Location{File: "m.gguf", Tensor: "x\x1b", Layer: -1}, `m.gguf:"x\x1b"`},
		{"m.gguf", scan.Location{Tensor: "t", Layer: 1, ByteOffset: 1, ByteLength: 2}, "m.gguf:t @ bytes 1+2 (layer 1)"},
		{"my models/m.gguf", scan.Location{File: "my models/m.gguf", Tensor: "a b", Layer: -1}, `m.gguf:"a b"`},
	} {
		if got := locationText(tc.target, tc.loc); got != tc.want {
			t.Errorf("locationText(%q, %+v) =\n %q, want\n %q", tc.target, tc.loc, got, tc.want)
		}
	}
}

// manyFindings returns a target with n findings spread over layers and roles.
func manyFindings(n int) scan.Target {
	roles := []string{"attn_q", "attn_k", "attn_v", "attn_o", "ffn_gate", "ffn_up", "ffn_down"}
	t := scan.Target{Path: "big.gguf", Format: "gguf", Files: []scan.FileInfo{{Path: "big.gguf", Size: 1 << 30, SHA256: "ab"}},
		Tensors: 400, Parameters: 7e9, Risk: scan.Risk{Score: 0.99, Verdict: scan.VerdictBackdoored}, Layers: 48}
	for i := range n {
		layer := i % 48
		role := roles[i%len(roles)]
		t.Findings = append(t.Findings, scan.Finding{
			Rule: "KS-NEURON-OUTLIER", Title: "neuron weight norm is a robust outlier", Severity: scan.Severity(i % 5), Score: float64(i%100) / 100,
			Location: scan.Location{File: "big.gguf", Tensor: "blk." + strconv.Itoa(layer) + "." + role + ".weight", Layer: layer, Role: role,
				Axis: "row", Index: []int64{int64(i)}, ByteOffset: int64(i) * 4096, ByteLength: 4096},
			Message: "row norm is a robust outlier",
		})
	}
	return t
}
