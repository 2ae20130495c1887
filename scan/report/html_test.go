package report

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/scan"
)

var tagRE = regexp.MustCompile(`<(/?)([a-zA-Z][a-zA-Z0-9]*)\b[^<>]*?(/?)>`)

// voidElements have no end tag.
var voidElements = map[string]bool{"meta": true, "br": true, "col": true, "img": true, "input": true, "link": true, "hr": true}

// checkWellFormed is a crude well-formedness check: the text outside tags holds no '<'
// or '>' (html/template escapes them in text and attributes alike), and the tags nest.
func checkWellFormed(t *testing.T, doc string) {
	t.Helper()
	body := doc[strings.Index(doc, "<html"):]
	if stray := tagRE.ReplaceAllString(body, ""); strings.ContainsAny(stray, "<>") {
		i := strings.IndexAny(stray, "<>")
		t.Errorf("stray angle bracket outside a tag: %q", stray[max(0, i-40):min(len(stray), i+40)])
	}
	var stack []string
	for _, m := range tagRE.FindAllStringSubmatch(body, -1) {
		closing, name, self := m[1] == "/", strings.ToLower(m[2]), m[3] == "/"
		switch {
		case voidElements[name] || self:
		case !closing:
			stack = append(stack, name)
		case len(stack) == 0 || stack[len(stack)-1] != name:
			t.Fatalf("</%s> does not close the open element (open: %v)", name, stack[max(0, len(stack)-5):])
		default:
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed elements: %v", stack)
	}
}

func TestHTMLHostile(t *testing.T) {
	out := string(render(t, FormatHTML, testReport(), Options{FailOn: scan.High, Rules: testRules()}))
	checkWellFormed(t, out)
	if !utf8.ValidString(out) {
		t.Error("HTML is not valid UTF-8")
	}
	if r := rawControl(out); r != -1 {
		t.Errorf("HTML contains raw control character %U", r)
	}
	lower := strings.ToLower(out)
	for _, bad := range []string{"<script", "javascript:alert(1)\"", "zgotmplz", "src=", "url(", "@import", "href=\"http"} {
		if strings.Contains(lower, bad) {
			i := strings.Index(lower, bad)
			t.Errorf("HTML contains %q: %q", bad, out[max(0, i-60):min(len(out), i+60)])
		}
	}
	for _, want := range []string{
		"hostile/&lt;script&gt;alert(1)&lt;/script&gt;.safetensors", // path
		`&#34;blk.2.attn_q.weight\x1b]0;pwned\a\x1b[2J&#34;`,        // tensor name, escaped twice over
		"&lt;/title&gt;&lt;script&gt;x()&lt;/script&gt;",            // classifier head
		`&lt;a href=\&#34;javascript:alert(1)\&#34;&gt;`,            // message quoting markup
		`&#34;\x1b[2Jtok\xff\xfe\xc0&#34;`,                          // forced output
		`&#34;__metadata__.tok\xff\xfe\xc0&#34;`,                    // metadata key
	} {
		if !strings.Contains(out, want) {
			t.Errorf("HTML lacks the escaped form %s", want)
		}
	}
}

// TestHTMLStructure checks one heat map per scanned target, the sections present when
// their data is, and the self-contained page.
func TestHTMLStructure(t *testing.T) {
	out := string(render(t, FormatHTML, testReport(), Options{Rules: testRules()}))
	for _, tc := range []struct {
		what string
		got  int
		want int
	}{
		{"heat maps (one per target that was scanned)", strings.Count(out, `<svg class="heatmap"`), 3},
		{"target sections", strings.Count(out, `<section class="target"`), 4},
		{"histograms", strings.Count(out, `<div class="hist">`), 3},
		{"trigger sections", strings.Count(out, "<h3>Trigger candidates"), 3},
		{"classifier sections", strings.Count(out, "<h3>Classifier head</h3>"), 2},
		{"error boxes", strings.Count(out, `<div class="err">`), 1},
		{"findings rows", strings.Count(out, `<td><span class="tag `), 15},
		{"style sheets", strings.Count(out, "<style>"), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, tc.got, tc.want)
		}
	}
	// The heat map of the backdoored target: the rank-one edit in layer 17's ffn_down.
	if want := "<title>layer 17 · ffn_down: 3 findings, most severe high, max score 0.98\nKS-NEURON-OUTLIER ×2\nKS-DIFF-RANK1 ×1</title>"; !strings.Contains(out, want) {
		t.Errorf("heat map lacks the cell %q", want)
	}
}

var cellCount = regexp.MustCompile(`<title>[^<]*?: (\d+) findings?, most severe`)

// TestHTMLLarge checks that thousands of findings give a bounded table with a note while
// the heat map counts them all.
func TestHTMLLarge(t *testing.T) {
	const n = 3000
	r := &scan.Report{Targets: []scan.Target{manyFindings(n)}}
	out := string(render(t, FormatHTML, r, Options{}))
	checkWellFormed(t, out)
	if got := strings.Count(out, `<td><span class="tag `); got != MaxHTMLRows {
		t.Errorf("table rows = %d, want %d", got, MaxHTMLRows)
	}
	if want := strconv.Itoa(n-MaxHTMLRows) + " more findings not listed"; !strings.Contains(out, want) {
		t.Errorf("HTML lacks the note %q", want)
	}
	total := 0
	for _, m := range cellCount.FindAllStringSubmatch(out, -1) {
		c, _ := strconv.Atoi(m[1])
		total += c
	}
	if total != n {
		t.Errorf("heat map cells count %d findings, want %d", total, n)
	}
	if len(out) > 2<<20 {
		t.Errorf("HTML for %d findings is %d bytes; want a bounded page", n, len(out))
	}
}

// TestHeatMapBounds checks that a hostile layer index (from a tensor named
// "blk.99999999.x") cannot blow up the heat map: columns are binned.
func TestHeatMapBounds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		layers   int
		findings []scan.Finding
		cols     int // columns, including the one outside numbered blocks
		rows     int
	}{
		{"no findings, no layers", 0, nil, 1, 1},
		{"no findings", 32, nil, 33, 1},
		{"file-level finding", 4, []scan.Finding{{Location: scan.Location{Layer: 0}}}, 5, 1},
		{"huge layer", 2, []scan.Finding{{Location: scan.Location{Tensor: "blk.99999999.x", Layer: 99_999_999, Role: "attn_q"}}}, maxHeatCols + 1, 1},
		{"layer beyond Layers", 4, []scan.Finding{{Location: scan.Location{Tensor: "t", Layer: 9, Role: "ffn_up"}}}, 11, 1},
	} {
		h := heatMap(&scan.Target{Layers: tc.layers, Findings: tc.findings})
		if got, want := len(h.Cells), tc.cols*tc.rows; got != want {
			t.Errorf("%s: %d cells, want %d (%d columns × %d rows)", tc.name, got, want, tc.cols, tc.rows)
		}
	}
	var many []scan.Finding
	for i := range 100 {
		many = append(many, scan.Finding{Location: scan.Location{Tensor: "t", Layer: 1, Role: "role" + strconv.Itoa(i)}})
	}
	h := heatMap(&scan.Target{Layers: 2, Findings: many})
	if got, want := len(h.RowLabels), maxHeatRows; got != want {
		t.Errorf("100 roles: %d rows, want %d", got, want)
	}
	if got, want := h.RowLabels[maxHeatRows-1].Text, heatMoreRows; got != want {
		t.Errorf("last row = %q, want %q", got, want)
	}
}

func TestHistogram(t *testing.T) {
	h, ok := histogram(scan.Histogram{Tensor: "t", Lo: -1, Hi: 1, Counts: make([]int64, 1000)})
	if !ok || len(h.Bars) != 0 {
		t.Errorf("all-zero histogram: ok=%v, %d bars; want ok and none", ok, len(h.Bars))
	}
	counts := make([]int64, 1000)
	for i := range counts {
		counts[i] = int64(i)
	}
	h, _ = histogram(scan.Histogram{Tensor: "t", Lo: -1, Hi: 1, Counts: counts})
	if len(h.Bars) > maxHistBins {
		t.Errorf("%d bars, want at most %d", len(h.Bars), maxHistBins)
	}
	for _, b := range h.Bars {
		if b.Y < 0 || b.Y+b.H > h.BaseY || b.X < 0 || b.X+b.W > h.Width {
			t.Errorf("bar %+v outside the %dx%d chart", b, h.Width, h.BaseY)
		}
	}
	if _, ok := histogram(scan.Histogram{Tensor: "t"}); ok {
		t.Error("histogram without counts: ok, want skipped")
	}
}
