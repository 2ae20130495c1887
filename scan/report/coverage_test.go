package report

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/scan"
)

// targetText renders one target alone as text and returns its section (between the tool
// line and the summary).
func targetText(t *testing.T, tg scan.Target, opt Options) string {
	t.Helper()
	out := string(render(t, FormatText, &scan.Report{Targets: []scan.Target{tg}}, opt))
	start := strings.Index(out, "\n\n") + 2
	end := strings.Index(out, "\n\nSummary\n")
	if start < 2 || end < start {
		t.Fatalf("unexpected text layout:\n%s", out)
	}
	return out[start:end]
}

// TestTextCoverage checks the verdict line, the name, base, incomplete marker and the
// coverage block of the text report.
func TestTextCoverage(t *testing.T) {
	rep := coverageReport()
	out := string(render(t, FormatText, rep, Options{FailOn: scan.High, Rules: testRules()}))
	for _, want := range []string{
		// A static pass says it is one, and why the probe did not run.
		"\nmeta-llama/Llama-3.2-1B@4e20de36  safetensors  CLEAN  risk 0.03\n" +
			"  at hf/models--meta-llama--Llama-3.2-1B/snapshots/4e20de362430cd3b72f300e6b0f18e50e7166e08\n",
		"\n  verdict: clean (static checks only: not tested for triggers — probe not run: --probe not given)\n",
		"\n    analyses done: structure, metadata, weights, payload\n" +
			"    head not run: no classifier head (decoder-only language model)\n" +
			"    probe not run: --probe not given\n" +
			"    diff not run: no --base given\n" +
			"    4 files not scanned\n" +
			"      original/consolidated.00.pth (pytorch pickle):\n" +
			"        pickle can run code when loaded; kensa does not unpickle it",
		"      README.md (readme): not a model file\n",
		// The interrupted differential scan.
		"\nllama3:8b  gguf  SUSPICIOUS  risk 0.62  INCOMPLETE\n",
		"\n  base: models/Meta-Llama-3-8B.Q4_0.gguf (gguf, sha256 9c56cc51b374…)\n",
		"\n  verdict: suspicious (incomplete scan: not everything was examined; static checks only: not tested\n" +
			"                      for triggers — probe not run: interrupted before the trigger sweep)\n",
		"    payload not run: interrupted (SIGINT) after 181 of 291 tensors\n",
		"    every file was scanned\n",
		// The target that could not be scanned keeps its error.
		"\nacme/broken@main  safetensors  ERROR\n  at broken/model\n  1 file (8 B)\n" +
			"  error: safetensors: header length 18446744073709551615 exceeds file size 8\n  coverage\n",
		"      pytorch_model.bin (pytorch pickle): pickle can run code when loaded; not unpickled\n",
		// Summary.
		"\n  1 target incomplete: the scan was cut short, not everything was examined\n",
		"\n  2 targets checked statically only: not tested for triggers (the probe did not run)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks\n%s", want)
		}
	}
	// No verdict line for the target that could not be scanned, nor for the one the probe
	// tested.
	if n := strings.Count(out, "  verdict: "); n != 2 {
		t.Errorf("%d verdict lines, want 2 (the static pass and the incomplete scan)", n)
	}
	if r := rawControl(out); r != -1 {
		t.Errorf("text output contains raw control character %U", r)
	}
	if !utf8.ValidString(out) || strings.Contains(out, "\x1b") {
		t.Error("text output is not valid UTF-8 or contains ESC without colour")
	}
	for _, want := range []string{
		`"<script>alert(1)</script>/x\x1b[2J@main"  safetensors  CLEAN`,         // the hostile name, quoted
		`"blk.2.attn_q.weight\x1b]0;pwned\a\x1b[2J" ("ffn_down\u202egnp.exe"):`, // a skipped file's path and kind
		`"x\x1b[31m" "skipped\u202e"`,                                           // an analysis and state
		`sha256 "</td>\u202e"`,                                                  // the base digest
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks the escaped form %s", want)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > textWidth && !strings.Contains(line, `\x`) && !strings.Contains(line, "ollama/blobs/") {
			t.Errorf("line %d has %d columns (> %d): %q", i+1, n, textWidth, line)
		}
	}

	// Colour changes nothing but the SGR sequences.
	col := string(render(t, FormatText, rep, Options{FailOn: scan.High, Color: true, Rules: testRules()}))
	if stripANSI(col) != out {
		t.Error("coloured output without its SGR sequences differs from the plain output")
	}
	if !strings.Contains(col, "\x1b[1;33mINCOMPLETE\x1b[0m") || !strings.Contains(col, "verdict: \x1b[1;32mclean\x1b[0m (static checks only") {
		t.Error("coloured output lacks the coloured INCOMPLETE marker or verdict")
	}
}

// TestTextVerdictLine checks when the verdict line appears and what it says.
func TestTextVerdictLine(t *testing.T) {
	tg := func(cov *scan.Coverage, incomplete bool, err string) scan.Target {
		x := scan.Target{Path: "m.gguf", Format: "gguf", Tensors: 3, Risk: scan.Risk{Score: 0.1, Verdict: scan.VerdictClean},
			Coverage: cov, Incomplete: incomplete, Error: err}
		if err != "" {
			x.Risk = scan.Risk{Verdict: scan.VerdictError}
		}
		return x
	}
	cov := func(probe string) *scan.Coverage {
		a := map[string]string{"structure": scan.AnalysisDone, "weights": scan.AnalysisDone}
		if probe != "" {
			a["probe"] = probe
		}
		return &scan.Coverage{Analyses: a}
	}
	for _, tc := range []struct {
		name   string
		target scan.Target
		want   string // the verdict line, "" = none
	}{
		{"no coverage", tg(nil, false, ""), ""},
		{"probe done", tg(cov(scan.AnalysisDone), false, ""), ""},
		{"probe not listed", tg(cov(""), false, ""), ""},
		{"probe not given", tg(cov(scan.NotRun("--probe not given")), false, ""),
			"  verdict: clean (static checks only: not tested for triggers — probe not run: --probe not given)"},
		{"architecture not supported", tg(cov(scan.NotRun("architecture bert not supported")), false, ""),
			"  verdict: clean (static checks only: not tested for triggers — probe not run: architecture bert not supported)"},
		{"odd state", tg(cov("failed: out of memory"), false, ""),
			"  verdict: clean (static checks only: not tested for triggers — probe failed: out of memory)"},
		{"incomplete, no coverage", tg(nil, true, ""), "  verdict: clean (incomplete scan: not everything was examined)"},
		{"incomplete, probe done", tg(cov(scan.AnalysisDone), true, ""), "  verdict: clean (incomplete scan: not everything was examined)"},
		{"error", tg(cov(scan.NotRun("--probe not given")), true, "read: i/o error"), ""},
	} {
		out := targetText(t, tc.target, Options{})
		// The verdict line, its continuation lines joined.
		var got string
		lines := strings.Split(out, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "  verdict: ") {
				got = l
				for _, c := range lines[i+1:] {
					if !strings.HasPrefix(c, "            ") {
						break
					}
					got += " " + strings.TrimSpace(c)
				}
			}
		}
		if got != tc.want {
			t.Errorf("%s: verdict line %q, want %q\n%s", tc.name, got, tc.want, out)
		}
		if tc.target.Error != "" && !strings.Contains(out, "  error: read: i/o error\n") {
			t.Errorf("%s: the error is not shown:\n%s", tc.name, out)
		}
		if tc.target.Coverage == nil && strings.Contains(out, "coverage") {
			t.Errorf("%s: a coverage block without coverage:\n%s", tc.name, out)
		}
	}
}

// TestTextNoCoverage checks that a target without name, base, coverage and incomplete mark
// prints as it did before these existed, and that each of them adds its own lines only.
func TestTextNoCoverage(t *testing.T) {
	plain := scan.Target{Path: "m.gguf", Format: "gguf", Tensors: 3, Parameters: 12,
		Files: []scan.FileInfo{{Path: "m.gguf", Size: 64, SHA256: "ab"}}, Risk: scan.Risk{Score: 0.1, Verdict: scan.VerdictClean}}
	want := "m.gguf  gguf  CLEAN  risk 0.10\n  3 tensors, 12 parameters, 1 file (64 B)\n  no findings"
	if got := targetText(t, plain, Options{}); got != want {
		t.Errorf("target without coverage:\n%s\nwant\n%s", got, want)
	}
	for _, tc := range []struct {
		name   string
		change func(*scan.Target)
		want   string
	}{
		{"name", func(x *scan.Target) { x.Name = "org/m@main" },
			"org/m@main  gguf  CLEAN  risk 0.10\n  at m.gguf\n  3 tensors, 12 parameters, 1 file (64 B)\n  no findings"},
		{"base", func(x *scan.Target) { x.Base = &scan.BaseInfo{Path: "base.gguf", Format: "gguf"} },
			"m.gguf  gguf  CLEAN  risk 0.10\n  3 tensors, 12 parameters, 1 file (64 B)\n  base: base.gguf (gguf)\n  no findings"},
		{"empty coverage", func(x *scan.Target) { x.Coverage = &scan.Coverage{} },
			want + "\n  coverage\n    every file was scanned"},
	} {
		x := plain
		tc.change(&x)
		if got := targetText(t, x, Options{}); got != tc.want {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}

// TestTextSkippedLimit checks the cap on listed files not scanned and its lifting by -v.
func TestTextSkippedLimit(t *testing.T) {
	x := scan.Target{Path: "dir", Format: "safetensors", Risk: scan.Risk{Verdict: scan.VerdictClean}, Coverage: &scan.Coverage{}}
	for i := range 25 {
		x.Coverage.FilesSkipped = append(x.Coverage.FilesSkipped, scan.SkippedFile{Path: fmt.Sprintf("dir/extra-%02d.bin", i), Format: "pytorch pickle", Reason: "pickle can run code when loaded"})
	}
	for _, tc := range []struct {
		verbose bool
		shown   int
		more    bool
	}{{false, maxSkipped, true}, {true, 25, false}} {
		out := targetText(t, x, Options{Verbose: tc.verbose})
		if got := strings.Count(out, "      extra-"); got != tc.shown {
			t.Errorf("verbose=%v: %d files listed, want %d", tc.verbose, got, tc.shown)
		}
		if !strings.Contains(out, "    25 files not scanned\n") {
			t.Errorf("verbose=%v: lacks the count of files not scanned:\n%s", tc.verbose, out)
		}
		if got := strings.Contains(out, "      ... and 15 more (-v lists all)"); got != tc.more {
			t.Errorf("verbose=%v: \"... and 15 more\" line present=%v, want %v", tc.verbose, got, tc.more)
		}
	}
	// The base digest is cut unless verbose.
	x.Base = &scan.BaseInfo{Path: "base", Format: "gguf", SHA256: "0123456789abcdef0123456789abcdef"}
	if out := targetText(t, x, Options{}); !strings.Contains(out, "  base: base (gguf, sha256 0123456789ab…)\n") {
		t.Errorf("short digest missing:\n%s", out)
	}
	if out := targetText(t, x, Options{Verbose: true}); !strings.Contains(out, "sha256 0123456789abcdef0123456789abcdef)") {
		t.Errorf("verbose: full digest missing:\n%s", out)
	}
}

// TestHTMLCoverage checks the name, base, incomplete badge, verdict caveat and coverage
// tables of the HTML report, and that hostile names are escaped.
func TestHTMLCoverage(t *testing.T) {
	out := string(render(t, FormatHTML, coverageReport(), Options{FailOn: scan.High, Rules: testRules()}))
	checkWellFormed(t, out)
	if r := rawControl(out); r != -1 {
		t.Errorf("HTML contains raw control character %U", r)
	}
	lower := strings.ToLower(out)
	for _, bad := range []string{"<script", "</td>\u202e", "src=", "url(", "href=\"http", "zgotmplz"} {
		if strings.Contains(lower, bad) {
			i := strings.Index(lower, bad)
			t.Errorf("HTML contains %q: %q", bad, out[max(0, i-60):min(len(out), i+60)])
		}
	}
	for _, want := range []string{
		`<h2 class="mono">&#34;&lt;script&gt;alert(1)&lt;/script&gt;/x\x1b[2J@main&#34;</h2>`, // hostile name
		`<div class="sub mono break">hostile/&lt;script&gt;alert(1)&lt;/script&gt;</div>`,     // its path
		`title="hostile/&lt;script&gt;alert(1)&lt;/script&gt;">&#34;&lt;script&gt;`,           // in the contents
		`<td class="mono break">&#34;&lt;/td&gt;\u202e&#34;</td>`,                             // hostile base digest
		`<td class="mono break">&#34;blk.2.attn_q.weight\x1b]0;pwned\a\x1b[2J&#34;</td><td class="break">&#34;ffn_down\u202egnp.exe&#34;</td><td class="break">reason &lt;script&gt;alert(1)&lt;/script&gt;</td>`,
		`<tr><td class="mono break">&lt;script&gt;alert(1)&lt;/script&gt;</td><td><span class="st-not">not run</span></td><td class="break">&lt;script&gt;alert(1)&lt;/script&gt;</td></tr>`,
		`<h2 class="mono">meta-llama/Llama-3.2-1B@4e20de36</h2>`,
		`<div class="caveat"><strong>Verdict: clean</strong> (static checks only: not tested for triggers — probe not run: --probe not given)</div>`,
		`<tr><td class="mono break">probe</td><td><span class="st-not">not run</span></td><td class="break">--probe not given</td></tr>`,
		`<h3>Files not scanned (4)</h3>`,
		`<tr><td class="mono break">original/consolidated.00.pth</td><td class="break">pytorch pickle</td><td class="break">pickle can run code when loaded;`,
		`<span class="verdict v-suspicious">suspicious</span><span class="badge" title="an interruption or a fault cut the scan short">incomplete</span>`,
		`<tr><td class="mono break">models/Meta-Llama-3-8B.Q4_0.gguf</td><td>gguf</td><td class="mono break">9c56cc51b374c3ba189210f8fd4a1b9f7b6c8a1e62b34c7d58e2f4e0d1a2b3c4</td></tr>`,
		`<div class="err"><strong>Could not be scanned:</strong> <span class="mono break">safetensors: header length`,
		`<p class="note">Every file was scanned.</p>`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("HTML lacks\n%s", want)
		}
	}
	for _, tc := range []struct {
		what      string
		got, want int
	}{
		{"coverage sections", strings.Count(out, "<h3>Coverage</h3>"), 4},
		{"base model sections", strings.Count(out, "<h3>Base model</h3>"), 2},
		{"verdict caveats", strings.Count(out, `<div class="caveat">`), 2},
		{"incomplete badges (contents and banner)", strings.Count(out, `<span class="badge"`), 2},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, tc.got, tc.want)
		}
	}

	// A single named target titles the page; hostile, it is escaped there too.
	one := coverageReport()
	one.Targets = one.Targets[3:]
	page := string(render(t, FormatHTML, one, Options{}))
	if want := `<title>&#34;&lt;script&gt;alert(1)&lt;/script&gt;/x\x1b[2J@main&#34; — kensa 0.1.0-test report</title>`; !strings.Contains(page, want) {
		t.Errorf("HTML title: want %s", want)
	}

	// Without coverage the page has no coverage, base or caveat.
	plain := string(render(t, FormatHTML, testReport(), Options{Rules: testRules()}))
	for _, s := range []string{"<h3>Coverage</h3>", "<h3>Base model</h3>", `<div class="caveat">`, `<span class="badge"`} {
		if strings.Contains(plain, s) {
			t.Errorf("HTML without coverage contains %s", s)
		}
	}
}

// TestHTMLSkippedLimit checks that a huge list of files not scanned is cut with a note.
func TestHTMLSkippedLimit(t *testing.T) {
	x := scan.Target{Path: "dir", Risk: scan.Risk{Verdict: scan.VerdictClean}, Coverage: &scan.Coverage{}}
	const n = maxHTMLSkipped + 7
	for i := range n {
		x.Coverage.FilesSkipped = append(x.Coverage.FilesSkipped, scan.SkippedFile{Path: fmt.Sprintf("dir/f%d", i), Format: "data", Reason: "not a model file"})
	}
	out := string(render(t, FormatHTML, &scan.Report{Targets: []scan.Target{x}}, Options{}))
	checkWellFormed(t, out)
	if got := strings.Count(out, `<td class="break">not a model file</td>`); got != maxHTMLSkipped {
		t.Errorf("%d files listed, want %d", got, maxHTMLSkipped)
	}
	if !strings.Contains(out, fmt.Sprintf("<h3>Files not scanned (%d)</h3>", n)) || !strings.Contains(out, "7 more files not listed") {
		t.Error("HTML lacks the count of files not scanned or the note on those not listed")
	}
}

// TestSARIFCoverage checks that an incomplete target is reported like one that could not
// be scanned, and that names, bases and coverage reach the properties bags.
func TestSARIFCoverage(t *testing.T) {
	rep := coverageReport()
	d := decodeSARIF(t, rep, Options{Rules: testRules()})
	inv := d.Runs[0].Invocations
	if len(inv) != 1 || inv[0].ExecutionSuccessful || len(inv[0].ToolExecutionNotifications) != 2 {
		t.Fatalf("invocations = %+v, want one unsuccessful with two notifications (incomplete, error)", inv)
	}
	for i, want := range []string{
		"ollama/manifests/registry.ollama.ai/library/llama3/8b: scan incomplete: ",
		"broken/model: safetensors: header length 18446744073709551615",
	} {
		n := inv[0].ToolExecutionNotifications[i]
		if n.Level != "error" || !strings.HasPrefix(n.Message.Text, want) {
			t.Errorf("notification %d = %+v, want level error and a message starting %q", i, n, want)
		}
	}

	var doc struct {
		Runs []struct {
			Results []struct {
				Properties map[string]any
			}
			Properties struct {
				Targets []scan.Target `json:"kensa/targets"`
			}
		}
	}
	if err := json.Unmarshal(render(t, FormatSARIF, rep, Options{Rules: testRules()}), &doc); err != nil {
		t.Fatal(err)
	}
	props := doc.Runs[0].Properties.Targets
	if len(props) != len(rep.Targets) {
		t.Fatalf("%d target properties, want %d", len(props), len(rep.Targets))
	}
	for i, want := range rep.Targets {
		got := props[i]
		if got.Name != want.Name || got.Incomplete != want.Incomplete || !reflect.DeepEqual(got.Base, want.Base) || !reflect.DeepEqual(got.Coverage, want.Coverage) {
			t.Errorf("target %d properties: name %q incomplete %v base %+v coverage %+v; want %q %v %+v %+v",
				i, got.Name, got.Incomplete, got.Base, got.Coverage, want.Name, want.Incomplete, want.Base, want.Coverage)
		}
	}
	if got := doc.Runs[0].Results[0].Properties["target_name"]; got != "llama3:8b" {
		t.Errorf("result target_name = %v, want llama3:8b", got)
	}

	// An incomplete target alone makes the invocation unsuccessful; one that is also in
	// error is reported once, by its error.
	both := &scan.Report{Targets: []scan.Target{{Path: "m.gguf", Incomplete: true, Error: "read: i/o error", Risk: scan.Risk{Verdict: scan.VerdictError}}}}
	d = decodeSARIF(t, both, Options{})
	if ns := d.Runs[0].Invocations[0].ToolExecutionNotifications; len(ns) != 1 || ns[0].Message.Text != "m.gguf: read: i/o error" {
		t.Errorf("incomplete target in error: notifications %+v, want only the error", ns)
	}
	plain := testReport()
	plain.Targets = plain.Targets[:2]
	plain.Targets[0].Incomplete = true
	if d := decodeSARIF(t, plain, Options{Rules: testRules()}); d.Runs[0].Invocations[0].ExecutionSuccessful {
		t.Error("executionSuccessful = true with an incomplete target")
	}
}

// TestSARIFCoverageSchema validates the coverage fixture's SARIF against the schema.
func TestSARIFCoverageSchema(t *testing.T) {
	sch := sarifSchema(t)
	if err := validate(sch, render(t, FormatSARIF, coverageReport(), Options{Rules: testRules()})); err != nil {
		t.Errorf("SARIF output does not validate: %v", err)
	}
}

// TestJSONCoverage checks that the coverage fixture survives a round trip through the
// JSON report, and that empty coverage lists are written as [] and {}.
func TestJSONCoverage(t *testing.T) {
	var got scan.Report
	if err := json.Unmarshal(render(t, FormatJSON, coverageReport(), Options{}), &got); err != nil {
		t.Fatal(err)
	}
	want := coverageReport()
	for i := range want.Targets {
		tg := &want.Targets[i]
		tg.Histograms, tg.Layers = nil, 0
		if tg.Findings == nil {
			tg.Findings = []scan.Finding{}
		}
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, want)
	}

	r := &scan.Report{Targets: []scan.Target{{Path: "m.gguf", Coverage: &scan.Coverage{}}}}
	out := string(render(t, FormatJSON, r, Options{}))
	if !strings.Contains(out, `"files_skipped": [],`) || !strings.Contains(out, `"analyses": {}`) {
		t.Errorf("empty coverage: want files_skipped [] and analyses {}, got\n%s", out)
	}
	if r.Targets[0].Coverage.FilesSkipped != nil || r.Targets[0].Coverage.Analyses != nil {
		t.Error("writing the report changed its coverage")
	}
	if out := string(render(t, FormatJSON, &scan.Report{Targets: []scan.Target{{Path: "m.gguf"}}}, Options{})); strings.Contains(out, "coverage") || strings.Contains(out, "incomplete") {
		t.Errorf("target without coverage: the JSON mentions it:\n%s", out)
	}
}
