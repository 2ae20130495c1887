// Package report renders a scan.Report for people and machines: a terminal summary
// ("text"), the "kensa.report/v1" JSON contract ("json"), SARIF 2.1.0 for code-scanning
// dashboards ("sarif") and a self-contained HTML page with per-layer heat maps ("html").
//
// Every writer is deterministic: the same report gives the same bytes. Strings that come
// from scanned files (tensor names, metadata keys, messages quoting them) are treated as
// hostile: the text and HTML writers never emit their control characters raw, and the HTML
// writer escapes everything contextually.
package report

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/scan"
)

// Format names accepted by Write.
const (
	FormatText  = "text"
	FormatJSON  = "json"
	FormatSARIF = "sarif"
	FormatHTML  = "html"
)

// ErrUnknownFormat is returned by Write for a format name it does not know.
var ErrUnknownFormat = errors.New("report: unknown format")

// Options tune the writers. The zero value is valid: no colour, fail-on info, at most
// a few findings per rule and target in text output, the registered rule catalogue.
type Options struct {
	// Color turns on ANSI colour in text output (the CLI sets it when stdout is a
	// terminal).
	Color bool
	// FailOn is the --fail-on threshold, shown in the text summary ("2 findings at or
	// above high").
	FailOn scan.Severity
	// Verbose shows every finding in text output; by default at most MaxPerRule findings
	// of one rule are shown per target, then "... and K more".
	Verbose bool
	// Rules is the rule catalogue for SARIF's tool.driver.rules; nil means scan.Rules().
	// Tests pass a fixed catalogue to keep output independent of the registered
	// detectors.
	Rules []scan.Rule
}

// MaxPerRule is how many findings of one rule per target the text writer shows unless
// Options.Verbose is set.
const MaxPerRule = 5

// Formats returns the format names Write accepts, default first.
func Formats() []string {
	return []string{FormatText, FormatJSON, FormatSARIF, FormatHTML}
}

// Write renders r to w in the named format.
func Write(w io.Writer, format string, r *scan.Report, opt Options) error {
	switch format {
	case FormatText:
		return WriteText(w, r, opt)
	case FormatJSON:
		return WriteJSON(w, r)
	case FormatSARIF:
		return WriteSARIF(w, r, opt)
	case FormatHTML:
		return WriteHTML(w, r, opt)
	}
	return fmt.Errorf("%w %q (want one of %s)", ErrUnknownFormat, format, strings.Join(Formats(), ", "))
}

var errNilReport = errors.New("report: nil report")

// toolName returns the tool name and version of r, defaulting to "kensa".
func toolName(r *scan.Report) (name, version string) {
	name, version = r.Tool.Name, r.Tool.Version
	if name == "" {
		name = "kensa"
	}
	return name, version
}

// clean makes a file-derived string safe to show to a person: returned as is when it
// is valid UTF-8 made only of graphic characters and spaces, otherwise Go-quoted with
// strconv.QuoteToGraphic, so that control characters, bidi overrides and invalid bytes
// appear as visible escapes ("\x1b", "\u202e", "\xff") and the quotes mark that the
// string was escaped.
func clean(s string) string {
	if isPlain(s) {
		return s
	}
	return strconv.QuoteToGraphic(s)
}

func isPlain(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return false // an invalid byte, not an encoded U+FFFD
			}
		}
		if r == ' ' {
			continue
		}
		if !unicode.IsGraphic(r) || unicode.Is(unicode.Zs, r) {
			return false // controls, format characters (bidi, zero-width), odd spaces
		}
	}
	return true
}

// cleanName is clean for identifiers shown inside a line of other text (file, tensor,
// metadata key): they are also quoted when they contain a space or a double quote, so that
// a name cannot pass itself off as the rest of the line ("x @ bytes 0+0 (layer 3)").
func cleanName(s string) string {
	if isPlain(s) && !strings.ContainsAny(s, ` "`) {
		return s
	}
	return strconv.QuoteToGraphic(s)
}

// finite replaces a non-finite score so that it can be written as a JSON number: NaN
// becomes 0, ±Inf the largest finite float64 of that sign. Scores are documented to be
// finite; a non-finite one is an engine bug that must not lose the whole report.
func finite(x float64) float64 {
	switch {
	case math.IsNaN(x):
		return 0
	case math.IsInf(x, 1):
		return math.MaxFloat64
	case math.IsInf(x, -1):
		return -math.MaxFloat64
	}
	return x
}

// floatString is how a non-finite float is written in evidence: "NaN", "+Inf", "-Inf".
func floatString(x float64) string {
	switch {
	case math.IsNaN(x):
		return "NaN"
	case math.IsInf(x, 1):
		return "+Inf"
	}
	return "-Inf"
}

// sanitizeEvidence returns a copy of ev that encoding/json can always encode: non-finite
// floats anywhere inside (slices, arrays, maps, pointers) become the strings "NaN", "+Inf"
// and "-Inf"; a value that still cannot be encoded becomes its fmt.Sprint text.
func sanitizeEvidence(ev map[string]any) map[string]any {
	if ev == nil {
		return nil
	}
	out := make(map[string]any, len(ev))
	for k, v := range ev {
		s := sanitizeValue(reflect.ValueOf(v), 0)
		if _, err := jsonMarshal(s); err != nil {
			s = fmt.Sprint(v)
		}
		out[k] = s
	}
	return out
}

// maxSanitizeDepth bounds the recursion of sanitizeValue (evidence is built by detectors,
// but a cyclic pointer graph must not hang the writer).
const maxSanitizeDepth = 16

func sanitizeValue(v reflect.Value, depth int) any {
	if !v.IsValid() {
		return nil
	}
	if depth > maxSanitizeDepth {
		return fmt.Sprint(v.Interface())
	}
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if x := v.Float(); math.IsNaN(x) || math.IsInf(x, 0) {
			return floatString(x)
		}
		return v.Interface()
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		if _, ok := v.Interface().(interface{ MarshalJSON() ([]byte, error) }); ok {
			return v.Interface()
		}
		return sanitizeValue(v.Elem(), depth+1)
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return v.Interface()
		}
		if k := v.Type().Elem().Kind(); k != reflect.Float32 && k != reflect.Float64 &&
			k != reflect.Interface && k != reflect.Pointer && k != reflect.Slice &&
			k != reflect.Array && k != reflect.Map {
			return v.Interface() // []byte, []int, []string, ...: nothing to sanitize
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = sanitizeValue(v.Index(i), depth+1)
		}
		return out
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return v.Interface()
		}
		if v.IsNil() {
			return v.Interface()
		}
		out := make(map[string]any, v.Len())
		it := v.MapRange()
		for it.Next() {
			out[it.Key().String()] = sanitizeValue(it.Value(), depth+1)
		}
		return out
	}
	return v.Interface()
}

// displayOrder returns the findings of t sorted for people: severity descending, then
// rule, then location.
func displayOrder(fs []scan.Finding) []scan.Finding {
	out := slices.Clone(fs)
	slices.SortStableFunc(out, func(a, b scan.Finding) int {
		if c := int(b.Severity) - int(a.Severity); c != 0 {
			return c
		}
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		return compareLocation(a.Location, b.Location)
	})
	return out
}

func compareLocation(a, b scan.Location) int {
	if c := strings.Compare(a.File, b.File); c != 0 {
		return c
	}
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	if c := cmpInt(a.Layer, b.Layer); c != 0 {
		return c
	}
	if c := strings.Compare(a.Tensor, b.Tensor); c != 0 {
		return c
	}
	if c := slices.Compare(a.Index, b.Index); c != 0 {
		return c
	}
	if c := cmpInt(a.ByteOffset, b.ByteOffset); c != 0 {
		return c
	}
	return cmpInt(a.ByteLength, b.ByteLength)
}

func cmpInt[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// targetOrder returns the indices of r's targets worst first: risk score descending,
// report order among equals.
func targetOrder(ts []scan.Target) []int {
	idx := make([]int, len(ts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		sa, sb := finite(ts[a].Risk.Score), finite(ts[b].Risk.Score)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	return idx
}

// severityCounts counts findings per severity (index = severity, clamped to the known
// range).
func severityCounts(fs []scan.Finding) [scan.Critical + 1]int {
	var n [scan.Critical + 1]int
	for _, f := range fs {
		n[clampSeverity(f.Severity)]++
	}
	return n
}

func clampSeverity(s scan.Severity) scan.Severity { return max(scan.Info, min(s, scan.Critical)) }

// verdictOf returns the target's verdict, "error" when it has an error and no verdict.
func verdictOf(t *scan.Target) string {
	if t.Risk.Verdict != "" {
		return t.Risk.Verdict
	}
	if t.Error != "" {
		return scan.VerdictError
	}
	return "unknown"
}

// shortFile renders the file of a location relative to its target: the base name when
// it is the target itself, the path inside the target when the target is a directory
// holding it, the file as given otherwise.
func shortFile(target, file string) string {
	if file == "" {
		return ""
	}
	if file == target {
		if i := strings.LastIndexAny(file, `/\`); i >= 0 && i < len(file)-1 {
			return file[i+1:]
		}
		return file
	}
	t := strings.TrimRight(target, `/\`)
	if t != "" && len(file) > len(t)+1 && strings.HasPrefix(file, t) && (file[len(t)] == '/' || file[len(t)] == '\\') {
		return file[len(t)+1:]
	}
	return file
}

// indexText renders a location's axis and index: "row 12", "col 3", "3,4" (elements);
// at most maxIndex coordinates are shown.
func indexText(l scan.Location) string {
	const maxIndex = 6
	if len(l.Index) == 0 {
		return l.Axis
	}
	var b strings.Builder
	switch l.Axis {
	case "row", "col":
		b.WriteString(l.Axis + " ")
	case "", "element":
	default:
		b.WriteString(clean(l.Axis) + " ")
	}
	for i, x := range l.Index {
		if i == maxIndex {
			fmt.Fprintf(&b, ",…(%d)", len(l.Index))
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(x, 10))
	}
	return b.String()
}

// locationText renders a location compactly:
// "model.gguf:blk.17.ffn_down.weight[row 12] @ bytes 4521238528+28672 (layer 17, ffn_down)".
func locationText(target string, l scan.Location) string {
	what, where := locationParts(target, l)
	if what == "" || where == "" {
		return what + where
	}
	return what + " " + where
}

// locationParts splits locationText into what ("file:tensor[row 12]", "file key k") and
// where ("@ bytes 4521238528+28672 (layer 17, ffn_down)").
func locationParts(target string, l scan.Location) (what, where string) {
	var b strings.Builder
	file := l.File
	if file == "" {
		file = target
	}
	b.WriteString(cleanName(shortFile(target, file)))
	if l.Tensor != "" {
		b.WriteString(":" + cleanName(l.Tensor))
	}
	if ix := indexText(l); ix != "" {
		b.WriteString("[" + ix + "]")
	}
	if l.Key != "" {
		b.WriteString(" key " + cleanName(l.Key))
	}
	what = strings.TrimPrefix(b.String(), " ")
	var w []string
	if l.ByteLength != 0 || l.ByteOffset != 0 {
		w = append(w, fmt.Sprintf("@ bytes %d+%d", l.ByteOffset, l.ByteLength))
	}
	var ctx []string
	if ly := layerOf(l); ly >= 0 {
		ctx = append(ctx, "layer "+strconv.Itoa(ly))
	}
	if l.Role != "" {
		ctx = append(ctx, cleanName(l.Role))
	}
	if len(ctx) > 0 {
		w = append(w, "("+strings.Join(ctx, ", ")+")")
	}
	return what, strings.Join(w, " ")
}

// layerOf is a finding's layer for display: -1 for findings outside numbered blocks,
// including file-level findings (no tensor) that left Layer at its zero value.
func layerOf(l scan.Location) int {
	if l.Layer < 0 || (l.Layer == 0 && l.Tensor == "") {
		return -1
	}
	return l.Layer
}

// evidenceText renders up to n evidence entries, sorted by key, numbers with 4
// significant digits, long values cut.
func evidenceText(ev map[string]any, n int) string {
	if len(ev) == 0 {
		return ""
	}
	keys := make([]string, 0, len(ev))
	for k := range ev {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for i, k := range keys {
		if i == n {
			parts = append(parts, fmt.Sprintf("+%d more", len(keys)-n))
			break
		}
		parts = append(parts, clean(k)+"="+valueText(ev[k], 40))
	}
	return strings.Join(parts, "  ")
}

// valueText renders one evidence value in at most width characters.
func valueText(v any, width int) string {
	var s string
	switch x := v.(type) {
	case float64:
		s = formatFloat(x)
	case float32:
		s = formatFloat(float64(x))
	case string:
		s = clean(x)
	case nil:
		s = "null"
	default:
		b, err := jsonMarshal(sanitizeValue(reflect.ValueOf(v), 0))
		if err != nil {
			s = clean(fmt.Sprint(v))
		} else {
			s = clean(string(b))
		}
	}
	return truncate(s, width)
}

func formatFloat(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return floatString(x)
	}
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return strconv.FormatFloat(x, 'g', 4, 64)
}

// truncate cuts s to at most width runes, marking the cut with "…".
func truncate(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// touchedRow is one tensor the diff detector found changed against the base model.
type touchedRow struct {
	Tensor string
	Rel    float64
	Rank1  float64 // -1 when not measured (the sketch ruled rank one out)
}

// maxTouched is how many changed tensors the text and HTML reports list.
const maxTouched = 12

// touched returns the pattern line and the changed tensors (largest relative change first)
// from a target's KS-DIFF-SUMMARY finding, or ok false when the target was not compared
// with a base model.
func touched(t *scan.Target) (summary string, rows []touchedRow, total int, ok bool) {
	for _, f := range t.Findings {
		if f.Rule != "KS-DIFF-SUMMARY" {
			continue
		}
		summary = clean(f.Message)
		list, _ := f.Evidence["touched"].([]map[string]any)
		for _, e := range list {
			r := touchedRow{Rank1: -1}
			r.Tensor, _ = e["tensor"].(string)
			r.Tensor = clean(r.Tensor)
			r.Rel, _ = e["relative_delta"].(float64)
			if v, ok := e["rank1_energy"].(float64); ok {
				r.Rank1 = v
			}
			rows = append(rows, r)
		}
		sort.SliceStable(rows, func(a, b int) bool { return rows[a].Rel > rows[b].Rel })
		total = len(rows)
		return summary, rows[:min(len(rows), maxTouched)], total, true
	}
	return "", nil, 0, false
}

// analysisOrder is the order analyses are listed in: the order the scan runs them.
// Analyses the list does not know follow, sorted by name.
var analysisOrder = []string{"structure", "metadata", "weights", "payload", "head", "probe", "diff"}

// analysisState is one entry of a target's Coverage.Analyses, cleaned for display.
type analysisState struct {
	Name   string // "probe"
	Done   bool
	Status string // "done", "not run", or the state as given when it is neither
	Reason string // why it did not run ("--probe not given"); "" when done or not said
}

// analysesOf returns the analyses of c in analysisOrder, then the others by name.
func analysesOf(c *scan.Coverage) []analysisState {
	if c == nil || len(c.Analyses) == 0 {
		return nil
	}
	names := make([]string, 0, len(c.Analyses))
	for n := range c.Analyses {
		names = append(names, n)
	}
	rank := func(n string) int {
		if i := slices.Index(analysisOrder, n); i >= 0 {
			return i
		}
		return len(analysisOrder)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := rank(a) - rank(b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	out := make([]analysisState, len(names))
	for i, n := range names {
		out[i] = analysisStateOf(n, c.Analyses[n])
	}
	return out
}

func analysisStateOf(name, state string) analysisState {
	a := analysisState{Name: clean(name)}
	notRun := strings.TrimSuffix(scan.NotRun(""), " ") // "not run:"
	switch {
	case state == scan.AnalysisDone:
		a.Done, a.Status = true, scan.AnalysisDone
	case strings.HasPrefix(state, notRun):
		a.Status, a.Reason = "not run", clean(strings.TrimSpace(state[len(notRun):]))
	case state == "" || state == "not run":
		a.Status = "not run"
	default:
		a.Status = clean(state)
	}
	return a
}

// text is the analysis and its state in words: "probe not run: --probe not given".
func (a analysisState) text() string {
	s := a.Name + " " + a.Status
	if a.Reason != "" {
		s += ": " + a.Reason
	}
	return s
}

// staticOnly says why a target was not tested for triggers: its coverage lists the probe
// analysis (forward passes on the model) and the probe did not run. ok is false when the
// probe ran or the report does not say.
func staticOnly(t *scan.Target) (why string, ok bool) {
	if t.Coverage == nil {
		return "", false
	}
	state, ok := t.Coverage.Analyses["probe"]
	if !ok || state == scan.AnalysisDone {
		return "", false
	}
	return "static checks only: not tested for triggers — " + analysisStateOf("probe", state).text(), true
}

// incompleteText explains the incomplete marker.
const incompleteText = "incomplete scan: not everything was examined"

// verdictNote qualifies a target's verdict: cut short, or static checks only. It is ""
// when nothing qualifies it or the target could not be scanned (its error says why).
func verdictNote(t *scan.Target) string {
	if t.Error != "" {
		return ""
	}
	var parts []string
	if t.Incomplete {
		parts = append(parts, incompleteText)
	}
	if why, ok := staticOnly(t); ok {
		parts = append(parts, why)
	}
	return strings.Join(parts, "; ")
}

// shortDigest is the first 12 hex digits of a digest and "…", or the digest when short.
func shortDigest(d string) string {
	d = clean(d)
	if utf8.RuneCountInString(d) <= 13 {
		return d
	}
	return string([]rune(d)[:12]) + "…"
}

// jsonCoverage returns a copy of c with nil lists and maps made empty, so that the JSON
// and SARIF documents never carry null for them.
func jsonCoverage(c *scan.Coverage) *scan.Coverage {
	if c == nil {
		return nil
	}
	x := *c
	if x.FilesSkipped == nil {
		x.FilesSkipped = []scan.SkippedFile{}
	}
	if x.Analyses == nil {
		x.Analyses = map[string]string{}
	}
	return &x
}
