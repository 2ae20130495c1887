package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/scan"
)

// HTML limits: the page stays readable and bounded for any report.
const (
	// MaxHTMLRows is how many findings per target the HTML findings table lists; the heat
	// map still counts every finding.
	MaxHTMLRows = 500
	// maxHeatCols bounds the heat map's layer columns: beyond it, columns cover several
	// layers each.
	maxHeatCols = 160
	// maxHeatRows bounds the heat map's role rows; the rest share one "(other roles)" row.
	maxHeatRows = 40
	// maxHistograms per target, maxHistBins bars per histogram (adjacent bins merged).
	maxHistograms = 24
	maxHistBins   = 96
	// maxHTMLTriggers is how many trigger candidates are listed per target.
	maxHTMLTriggers = 100
	// maxHTMLSkipped is how many files that were not scanned are listed per target.
	maxHTMLSkipped = 500
)

//go:embed report.html.tmpl
var htmlSource string

var htmlTemplate = template.Must(template.New("report").Parse(htmlSource))

// severity colours (fill of heat-map cells, tags, legend).
var severityFill = [...]string{
	scan.Info:     "#98a2b3",
	scan.Low:      "#2e90fa",
	scan.Medium:   "#f79009",
	scan.High:     "#d92d20",
	scan.Critical: "#7a0916",
}

// verdict colours by verdict CSS class.
var verdictFill = map[string]string{
	"v-clean":      "#067647",
	"v-suspicious": "#b54708",
	"v-backdoored": "#b42318",
	"v-error":      "#6941c6",
	"v-other":      "#475467",
}

type htmlPage struct {
	Title      string
	Tool       string
	Schema     string
	Targets    []htmlTarget
	NTargets   int
	Verdicts   []htmlCount
	Severities []htmlCount
	NFindings  int
	FailOn     string
	Failing    int
	Errors     int
	Legend     []htmlCount
}

type htmlCount struct {
	N     int
	Name  string
	Class string
	Fill  string
}

type htmlTarget struct {
	ID          string
	Path        string
	Name        string // ORG/NAME@REV, MODEL:TAG; "" when the target has none
	Incomplete  bool
	VerdictNote string // what the verdict does not rest on (see verdictNote)
	Base        *htmlBase
	Coverage    *htmlCoverage
	Format      string
	Verdict     string
	Class       string // verdict CSS class
	Risk        string
	RiskWidth   int    // px of the risk gauge's 200px
	RiskFill    string // colour of the gauge
	Tensors     int
	Parameters  string
	Size        string
	Files       []htmlFile
	Error       string
	Scanned     bool // false for a target that could not be scanned and has no findings
	Severities  []htmlCount
	NFindings   int
	Heat        htmlHeat
	Rows        []htmlRow
	Omitted     int
	Hists       []htmlHist
	HistNote    string
	Triggers    []htmlTrigger
	TrigRan     bool
	DiffRan     bool
	DiffText    string
	Touched     []htmlTouched
	TouchedMore int
	TrigNote    string
	Classifier  *htmlClassifier
}

type htmlBase struct {
	Path, Format, SHA256 string
	Files                []htmlFile
}

type htmlCoverage struct {
	Analyses    []analysisState
	Skipped     []htmlSkipped
	NSkipped    int
	SkippedMore int
}

type htmlSkipped struct {
	Path, Format, Reason string
}

type htmlFile struct {
	Path   string
	Size   string
	Bytes  int64
	SHA256 string
}

type htmlRow struct {
	Severity string
	Class    string
	Rule     string
	Title    string
	File     string
	Tensor   string
	Where    string // [row 12] key ...
	Bytes    string
	Context  string // layer 17, ffn_down
	Message  string
	Evidence string
	Score    string
}

type htmlHeat struct {
	Width, Height int
	Cells         []htmlCell
	RowLabels     []htmlLabel
	ColLabels     []htmlLabel
	AxisY         int // y of the column labels
	GridX, GridW  int
	Note          string
}

type htmlCell struct {
	X, Y, W, H int
	Fill       string
	Opacity    string
	Title      string
}

type htmlLabel struct {
	X, Y   int
	Text   string
	Title  string
	Anchor string
}

type htmlHist struct {
	Tensor  string
	Width   int
	Height  int
	BaseY   int
	Bars    []htmlCell
	Lo, Hi  string
	Mid     string
	MidX    int
	HiX     int
	LabelY  int
	Total   string
	MaxText string
}

type htmlTouched struct {
	Tensor, Rel, Rank1 string
	Percent            int
}

type htmlTrigger struct {
	Token   string
	ID      int
	Score   string
	Forced  string
	Source  string
	Percent int
}

type htmlClassifier struct {
	Head   string
	Class  string
	Score  string
	Stands bool
}

// WriteHTML writes r as one self-contained HTML page (inline CSS and SVG, no scripts, no
// external resources): a summary, then per target a verdict banner with its name, path,
// risk score and an incomplete badge, what the verdict does not rest on (an incomplete
// scan, static checks only), its files and SHA-256 digests, the base model of a
// differential scan with its digests, a per-layer heat map of the findings (rows = roles,
// columns = layers plus one for findings outside numbered blocks, cells coloured by the
// most severe finding, tooltips listing the rules), the findings table (at most
// MaxHTMLRows rows), histograms of flagged tensors, trigger candidates, the classifier
// analysis, the error, and the coverage: each analysis done or not run and why, and the
// files that were not scanned (at most maxHTMLSkipped) with their kind and why. Every
// string from the report is escaped by html/template.
func WriteHTML(w io.Writer, r *scan.Report, opt Options) error {
	if r == nil {
		return errNilReport
	}
	return htmlTemplate.Execute(w, htmlPageOf(r, opt))
}

func htmlPageOf(r *scan.Report, opt Options) *htmlPage {
	name, version := toolName(r)
	tool := name
	if version != "" {
		tool += " " + version
	}
	schema := r.Schema
	if schema == "" {
		schema = scan.Schema
	}
	p := &htmlPage{
		Tool:     clean(tool),
		Schema:   clean(schema),
		NTargets: len(r.Targets),
		FailOn:   clampSeverity(opt.FailOn).String(),
	}
	p.Title = p.Tool + " report"
	if len(r.Targets) == 1 {
		t := &r.Targets[0]
		what := t.Path
		if t.Name != "" {
			what = t.Name
		}
		p.Title = clean(what) + " — " + p.Title
	}
	verdicts := map[string]int{}
	var all []scan.Finding
	for _, i := range targetOrder(r.Targets) {
		t := &r.Targets[i]
		verdicts[verdictOf(t)]++
		all = append(all, t.Findings...)
		if t.Error != "" {
			p.Errors++
		}
		for _, f := range t.Findings {
			if f.Severity >= opt.FailOn {
				p.Failing++
			}
		}
		p.Targets = append(p.Targets, htmlTargetOf(t, i))
	}
	p.NFindings = len(all)
	p.Severities = htmlSeverities(all, true)
	for _, v := range []string{scan.VerdictBackdoored, scan.VerdictSuspicious, scan.VerdictClean, scan.VerdictError} {
		if verdicts[v] > 0 {
			p.Verdicts = append(p.Verdicts, htmlCount{N: verdicts[v], Name: v, Class: "v-" + v})
		}
		delete(verdicts, v)
	}
	var others []string
	for v := range verdicts {
		others = append(others, v)
	}
	slices.Sort(others)
	for _, v := range others {
		p.Verdicts = append(p.Verdicts, htmlCount{N: verdicts[v], Name: clean(v), Class: "v-other"})
	}
	for s := scan.Critical; s >= scan.Info; s-- {
		p.Legend = append(p.Legend, htmlCount{Name: s.String(), Fill: severityFill[s]})
	}
	return p
}

// htmlSeverities counts findings per severity, most severe first; zero counts are kept
// only when keepZero.
func htmlSeverities(fs []scan.Finding, keepZero bool) []htmlCount {
	n := severityCounts(fs)
	var out []htmlCount
	for s := scan.Critical; s >= scan.Info; s-- {
		if n[s] > 0 || keepZero {
			out = append(out, htmlCount{N: n[s], Name: s.String(), Class: "s-" + s.String(), Fill: severityFill[s]})
		}
	}
	return out
}

func htmlTargetOf(t *scan.Target, i int) htmlTarget {
	v := verdictOf(t)
	class := "v-other"
	switch v {
	case scan.VerdictClean, scan.VerdictSuspicious, scan.VerdictBackdoored, scan.VerdictError:
		class = "v-" + v
	}
	risk := math.Max(0, math.Min(1, finite(t.Risk.Score)))
	h := htmlTarget{
		ID:          "target-" + strconv.Itoa(i+1),
		Path:        clean(t.Path),
		Name:        clean(t.Name),
		Incomplete:  t.Incomplete,
		VerdictNote: verdictNote(t),
		Format:      clean(t.Format),
		Verdict:     clean(v),
		Class:       class,
		Risk:        riskText(t),
		RiskWidth:   int(math.Round(risk * 200)),
		RiskFill:    verdictFill[class],
		Tensors:     t.Tensors,
		Parameters:  humanCount(t.Parameters),
		Error:       clean(t.Error),
		NFindings:   len(t.Findings),
		Severities:  htmlSeverities(t.Findings, false),
		TrigRan:     t.Triggers != nil,
		Scanned:     t.Error == "" || len(t.Findings) > 0 || t.Risk.Score != 0,
	}
	if summary, rows, total, ok := touched(t); ok {
		h.DiffRan, h.DiffText, h.TouchedMore = true, summary, total-len(rows)
		for _, r := range rows {
			ht := htmlTouched{Tensor: r.Tensor, Rel: strconv.FormatFloat(r.Rel, 'f', 4, 64), Percent: int(math.Round(math.Min(1, r.Rel) * 80))}
			if r.Rank1 >= 0 {
				ht.Rank1 = strconv.FormatFloat(100*r.Rank1, 'f', 0, 64) + "%"
			}
			h.Touched = append(h.Touched, ht)
		}
	}
	var size int64
	for _, f := range t.Files {
		size += f.Size
		h.Files = append(h.Files, htmlFile{Path: clean(f.Path), Size: humanBytes(f.Size), Bytes: f.Size, SHA256: clean(f.SHA256)})
	}
	h.Size = humanBytes(size)
	h.Heat = heatMap(t)
	if b := t.Base; b != nil {
		hb := &htmlBase{Path: clean(b.Path), Format: clean(b.Format), SHA256: clean(b.SHA256)}
		for _, f := range b.Files {
			hb.Files = append(hb.Files, htmlFile{Path: clean(f.Path), Size: humanBytes(f.Size), Bytes: f.Size, SHA256: clean(f.SHA256)})
		}
		h.Base = hb
	}
	if c := t.Coverage; c != nil {
		hc := &htmlCoverage{Analyses: analysesOf(c), NSkipped: len(c.FilesSkipped)}
		fs := c.FilesSkipped
		if len(fs) > maxHTMLSkipped {
			hc.SkippedMore = len(fs) - maxHTMLSkipped
			fs = fs[:maxHTMLSkipped]
		}
		for _, f := range fs {
			hc.Skipped = append(hc.Skipped, htmlSkipped{Path: clean(shortFile(t.Path, f.Path)), Format: clean(f.Format), Reason: clean(f.Reason)})
		}
		h.Coverage = hc
	}

	fs := displayOrder(t.Findings)
	if len(fs) > MaxHTMLRows {
		h.Omitted = len(fs) - MaxHTMLRows
		fs = fs[:MaxHTMLRows]
	}
	for _, f := range fs {
		h.Rows = append(h.Rows, htmlRowOf(t, &f))
	}

	hs := t.Histograms
	if len(hs) > maxHistograms {
		h.HistNote = fmt.Sprintf("%d more histograms not shown.", len(hs)-maxHistograms)
		hs = hs[:maxHistograms]
	}
	for _, x := range hs {
		if hh, ok := histogram(x); ok {
			h.Hists = append(h.Hists, hh)
		}
	}

	trs := t.Triggers
	if len(trs) > maxHTMLTriggers {
		h.TrigNote = fmt.Sprintf("%d more candidates not shown.", len(trs)-maxHTMLTriggers)
		trs = trs[:maxHTMLTriggers]
	}
	for _, tr := range trs {
		s := math.Max(0, math.Min(1, finite(tr.Score)))
		h.Triggers = append(h.Triggers, htmlTrigger{
			Token: strconv.QuoteToGraphic(tr.Token), ID: tr.TokenID,
			Score: strconv.FormatFloat(finite(tr.Score), 'f', 2, 64), Percent: int(math.Round(s * 80)),
			Forced: forcedText(tr.ForcedOutput), Source: clean(tr.Source),
		})
	}
	if c := t.Classifier; c != nil {
		hc := &htmlClassifier{Head: clean(c.Head), Score: strconv.FormatFloat(finite(c.Score), 'f', 2, 64)}
		if c.TargetClass >= 0 {
			hc.Class, hc.Stands = strconv.Itoa(c.TargetClass), true
		} else {
			hc.Class = "none stands out"
		}
		h.Classifier = hc
	}
	return h
}

// riskText is the risk score with two decimals, "–" for a target that could not be
// scanned and has no score.
func riskText(t *scan.Target) string {
	if t.Error != "" && t.Risk.Score == 0 {
		return "–"
	}
	return strconv.FormatFloat(finite(t.Risk.Score), 'f', 2, 64)
}

func forcedText(s string) string {
	if s == "" {
		return ""
	}
	return truncate(strconv.QuoteToGraphic(s), 200)
}

func htmlRowOf(t *scan.Target, f *scan.Finding) htmlRow {
	sev := clampSeverity(f.Severity)
	l := f.Location
	row := htmlRow{
		Severity: sev.String(),
		Class:    "s-" + sev.String(),
		Rule:     clean(f.Rule),
		Title:    clean(f.Title),
		File:     clean(shortFile(t.Path, fileOf(t, l))),
		Tensor:   clean(l.Tensor),
		Message:  clean(f.Message),
		Evidence: evidenceText(f.Evidence, 6),
		Score:    strconv.FormatFloat(finite(f.Score), 'f', 2, 64),
	}
	var where []string
	if ix := indexText(l); ix != "" {
		where = append(where, "["+ix+"]")
	}
	if l.Key != "" {
		where = append(where, "key "+clean(l.Key))
	}
	row.Where = strings.Join(where, " ")
	if l.ByteOffset != 0 || l.ByteLength != 0 {
		row.Bytes = fmt.Sprintf("bytes %d+%d", l.ByteOffset, l.ByteLength)
	}
	var ctx []string
	if ly := layerOf(l); ly >= 0 {
		ctx = append(ctx, "layer "+strconv.Itoa(ly))
	}
	if l.Role != "" {
		ctx = append(ctx, clean(l.Role))
	}
	row.Context = strings.Join(ctx, ", ")
	return row
}

// roleRank orders common roles as they appear in a transformer; others follow,
// alphabetically.
var roleRank = map[string]int{}

func init() {
	for i, r := range []string{
		"embed", "pos_embed", "token_type_embed", "embed_norm",
		"attn_norm", "attn_qkv", "attn_q", "attn_k", "attn_v", "attn_o", "attn_output", "attn_out",
		"post_attn_norm", "ffn_norm", "ffn_gate_inp", "ffn_gate", "ffn_up", "ffn_gate_up", "ffn_down",
		"post_ffn_norm", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
		"output_norm", "final_norm", "norm", "head", "lm_head", "output", "classifier",
	} {
		roleRank[r] = i
	}
}

const (
	heatFileRow  = "(file)"
	heatOtherRow = "(other)"
	heatMoreRows = "(other roles)"
)

func heatRole(l scan.Location) string {
	switch {
	case l.Role != "":
		return l.Role
	case l.Tensor == "" || l.Key != "":
		return heatFileRow
	}
	return heatOtherRow
}

func compareRoles(a, b string) int {
	pseudo := func(s string) int {
		switch s {
		case heatOtherRow:
			return 1
		case heatFileRow:
			return 2
		case heatMoreRows:
			return 3
		}
		return 0
	}
	if c := pseudo(a) - pseudo(b); c != 0 {
		return c
	}
	ra, oka := roleRank[a]
	rb, okb := roleRank[b]
	switch {
	case oka && okb:
		return ra - rb
	case oka:
		return -1
	case okb:
		return 1
	}
	return strings.Compare(a, b)
}

type heatAgg struct {
	n     int
	sev   scan.Severity
	score float64
	rules map[string]int
}

// heatMap lays out the per-layer heat map of t's findings.
func heatMap(t *scan.Target) htmlHeat {
	const (
		labelW = 130 // role labels
		cellH  = 18
		gap    = 8 // between the non-layer column and layer 0
		top    = 6
		gridW  = 900
	)
	layers := max(t.Layers, 0)
	roleSet := map[string]bool{}
	for _, f := range t.Findings {
		if ly := layerOf(f.Location); ly >= layers {
			layers = ly + 1
		}
		roleSet[heatRole(f.Location)] = true
	}
	roles := make([]string, 0, len(roleSet))
	for r := range roleSet {
		roles = append(roles, r)
	}
	slices.SortFunc(roles, compareRoles)
	if len(roles) > maxHeatRows {
		roles = append(roles[:maxHeatRows-1], heatMoreRows)
	}
	rowOf := map[string]int{}
	for i, r := range roles {
		rowOf[r] = i
	}

	// Columns: 0 is "outside numbered blocks", then layer bins of binSize layers.
	binSize := max(1, (layers+maxHeatCols-1)/maxHeatCols)
	nbins := (layers + binSize - 1) / binSize
	cw := max(6, min(32, (gridW-gap)/(nbins+1)))
	colX := func(c int) int { // c = -1 (non-layer) or a bin
		if c < 0 {
			return labelW
		}
		return labelW + cw + gap + c*cw
	}

	agg := map[[2]int]*heatAgg{}
	for _, f := range t.Findings {
		row, ok := rowOf[heatRole(f.Location)]
		if !ok {
			row = len(roles) - 1 // "(other roles)"
		}
		col := -1
		if ly := layerOf(f.Location); ly >= 0 {
			col = ly / binSize
		}
		k := [2]int{row, col}
		a := agg[k]
		if a == nil {
			a = &heatAgg{sev: scan.Info, rules: map[string]int{}}
			agg[k] = a
		}
		sev := clampSeverity(f.Severity)
		if a.n == 0 || sev > a.sev {
			a.sev = sev
		}
		a.n++
		a.score = math.Max(a.score, math.Max(0, math.Min(1, finite(f.Score))))
		a.rules[f.Rule]++
	}

	nrows := max(len(roles), 1)
	h := htmlHeat{
		GridX: labelW, GridW: colX(nbins) - labelW,
		AxisY: top + nrows*cellH + 14,
	}
	h.Width = max(colX(nbins)+10, 320)
	h.Height = h.AxisY + 22
	if binSize > 1 {
		h.Note = fmt.Sprintf("Each column covers %d layers.", binSize)
	}
	for r := range nrows {
		label := "—"
		if r < len(roles) {
			label = roles[r]
		}
		h.RowLabels = append(h.RowLabels, htmlLabel{
			X: labelW - 6, Y: top + r*cellH + cellH/2 + 4,
			Text: truncate(clean(label), 18), Title: clean(label), Anchor: "end",
		})
		for c := -1; c < nbins; c++ {
			cell := htmlCell{X: colX(c), Y: top + r*cellH, W: cw - 1, H: cellH - 1, Fill: "#eef0f3", Opacity: "1"}
			where := colName(c, binSize, layers)
			if r < len(roles) {
				where += " · " + clean(roles[r])
			}
			if a := agg[[2]int{r, c}]; a != nil {
				cell.Fill = severityFill[a.sev]
				cell.Opacity = strconv.FormatFloat(0.55+0.45*a.score, 'f', 2, 64)
				cell.Title = fmt.Sprintf("%s: %s, most severe %s, max score %.2f%s",
					where, plural(a.n, "finding"), a.sev, a.score, ruleList(a.rules))
			} else {
				cell.Title = where + ": no findings"
			}
			h.Cells = append(h.Cells, cell)
		}
	}
	// Column labels: the non-layer column, then every step-th bin.
	h.ColLabels = append(h.ColLabels, htmlLabel{X: colX(-1) + cw/2, Y: h.AxisY, Text: "–", Title: "outside numbered blocks", Anchor: "middle"})
	step := 1
	for step*cw < 28 {
		step++
	}
	for _, s := range []int{2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100} {
		if step > 1 && step <= s {
			step = s
			break
		}
	}
	for c := 0; c < nbins; c += step {
		h.ColLabels = append(h.ColLabels, htmlLabel{X: colX(c) + cw/2, Y: h.AxisY, Text: strconv.Itoa(c * binSize), Anchor: "middle"})
	}
	return h
}

func colName(c, binSize, layers int) string {
	switch {
	case c < 0:
		return "outside numbered blocks"
	case binSize == 1:
		return "layer " + strconv.Itoa(c)
	}
	return fmt.Sprintf("layers %d–%d", c*binSize, min((c+1)*binSize, layers)-1)
}

func ruleList(rules map[string]int) string {
	ids := make([]string, 0, len(rules))
	for id := range rules {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := rules[b] - rules[a]; c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for i, id := range ids {
		if i == 8 {
			fmt.Fprintf(&b, "\n… %d more rules", len(ids)-8)
			break
		}
		fmt.Fprintf(&b, "\n%s ×%d", clean(id), rules[id])
	}
	return b.String()
}

// histogram lays out one tensor histogram as an SVG bar chart with log-scaled counts.
func histogram(x scan.Histogram) (htmlHist, bool) {
	const (
		w, hgt = 300, 120
		pad    = 4
		baseY  = 96
		barTop = 18 // room for the caption above the bars
	)
	if len(x.Counts) == 0 {
		return htmlHist{}, false
	}
	counts := x.Counts
	if len(counts) > maxHistBins {
		k := (len(counts) + maxHistBins - 1) / maxHistBins
		merged := make([]int64, (len(counts)+k-1)/k)
		for i, c := range counts {
			merged[i/k] += max(c, 0)
		}
		counts = merged
	}
	var total, top int64
	for _, c := range counts {
		c = max(c, 0)
		total += c
		top = max(top, c)
	}
	h := htmlHist{
		Tensor: clean(x.Tensor), Width: w, Height: hgt, BaseY: baseY,
		Lo: formatFloat(x.Lo), Hi: formatFloat(x.Hi), Mid: formatFloat((x.Lo + x.Hi) / 2),
		MidX: w / 2, HiX: w - pad, LabelY: baseY + 14,
		Total: humanCount(total) + " values", MaxText: humanCount(top),
	}
	bw := float64(w-2*pad) / float64(len(counts))
	lmax := math.Log1p(float64(top))
	step := (x.Hi - x.Lo) / float64(len(counts))
	for i, c := range counts {
		c = max(c, 0)
		if c == 0 {
			continue
		}
		bh := 1
		if lmax > 0 {
			bh = max(1, int(math.Round(math.Log1p(float64(c))/lmax*float64(baseY-barTop))))
		}
		x0 := pad + int(math.Round(float64(i)*bw))
		x1 := pad + int(math.Round(float64(i+1)*bw))
		lo := x.Lo + float64(i)*step
		h.Bars = append(h.Bars, htmlCell{
			X: x0, Y: baseY - bh, W: max(1, x1-x0-1), H: bh,
			Title: fmt.Sprintf("[%s, %s): %d", formatFloat(lo), formatFloat(lo+step), c),
		})
	}
	return h, true
}
