package report

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/scan"
)

// textWidth is the column width the text writer wraps messages to.
const textWidth = 100

// maxTriggers is how many trigger candidates the text writer lists unless verbose.
const maxTriggers = 10

// maxSkipped is how many files that were not scanned the text writer lists per target
// unless verbose.
const maxSkipped = 10

// ANSI SGR sequences.
const (
	ansiReset = "\x1b[0m"
	ansiBold  = "\x1b[1m"
	ansiDim   = "\x1b[2m"
	ansiWarn  = "\x1b[1;33m" // the incomplete marker
)

var severityColor = [...]string{
	scan.Info:     "\x1b[2m",    // dim
	scan.Low:      "\x1b[36m",   // cyan
	scan.Medium:   "\x1b[33m",   // yellow
	scan.High:     "\x1b[31m",   // red
	scan.Critical: "\x1b[1;31m", // bold red
}

var verdictColor = map[string]string{
	scan.VerdictClean:      "\x1b[1;32m",
	scan.VerdictSuspicious: "\x1b[1;33m",
	scan.VerdictBackdoored: "\x1b[1;31m",
	scan.VerdictError:      "\x1b[1;35m",
}

type textWriter struct {
	b     strings.Builder
	color bool
}

func (w *textWriter) paint(code, s string) string {
	if !w.color || code == "" {
		return s
	}
	return code + s + ansiReset
}

func (w *textWriter) line(parts ...string) {
	for _, p := range parts {
		w.b.WriteString(p)
	}
	w.b.WriteByte('\n')
}

// WriteText writes r for a person at a terminal: targets worst first (risk score
// descending), each with a header (name or path, format, verdict, risk score, an
// INCOMPLETE marker when the scan was cut short), a named target's path, its size, the
// base model of a differential scan, a verdict line saying what the verdict does not rest
// on (an incomplete scan; static checks only when the coverage says the probe did not
// run, and why), its findings grouped by severity (most severe first; within a severity by
// rule and location), each with rule, title, compact location, message and the first
// evidence values; then trigger candidates and the classifier analysis when present, the
// coverage (the analyses that ran, those that did not and why, the files that were not
// scanned and why), and a summary with the number of findings at or above opt.FailOn. A
// target without name, base, coverage or incomplete mark is written as before these
// existed. Strings from scanned files are escaped (see clean); ANSI colour is used only
// when opt.Color is set.
func WriteText(w io.Writer, r *scan.Report, opt Options) error {
	if r == nil {
		return errNilReport
	}
	tw := &textWriter{color: opt.Color}
	name, version := toolName(r)
	head := clean(name)
	if version != "" {
		head += " " + clean(version)
	}
	tw.line(tw.paint(ansiBold, head), tw.paint(ansiDim, " · "+plural(len(r.Targets), "target")+" scanned"))
	for _, i := range targetOrder(r.Targets) {
		tw.b.WriteByte('\n')
		tw.target(&r.Targets[i], opt)
	}
	tw.b.WriteByte('\n')
	tw.summary(r, opt)
	_, err := io.WriteString(w, tw.b.String())
	return err
}

func (w *textWriter) target(t *scan.Target, opt Options) {
	v := verdictOf(t)
	// A named target is headed by its name, its path on the next line (a snapshot's path
	// alone would fill the line).
	head := w.paint(ansiBold, cleanName(t.Path))
	if t.Name != "" {
		head = w.paint(ansiBold, cleanName(t.Name))
	}
	if t.Format != "" {
		head += "  " + clean(t.Format)
	}
	head += "  " + w.paint(verdictColor[v], strings.ToUpper(clean(v)))
	if t.Error == "" || t.Risk.Score != 0 {
		head += "  risk " + strconv.FormatFloat(finite(t.Risk.Score), 'f', 2, 64)
	}
	if t.Incomplete {
		head += "  " + w.paint(ansiWarn, "INCOMPLETE")
	}
	w.line(head)
	if t.Name != "" {
		w.line("  ", w.paint(ansiDim, "at "), cleanName(t.Path))
	}

	var size int64
	for _, f := range t.Files {
		size += f.Size
	}
	var facts []string
	if t.Tensors > 0 || t.Error == "" {
		facts = append(facts, plural(t.Tensors, "tensor"))
	}
	if t.Parameters > 0 {
		facts = append(facts, humanCount(t.Parameters)+" parameters")
	}
	if len(t.Files) > 0 {
		facts = append(facts, plural(len(t.Files), "file")+" ("+humanBytes(size)+")")
	}
	if len(facts) > 0 {
		w.line("  ", w.paint(ansiDim, strings.Join(facts, ", ")))
	}
	if t.Base != nil {
		w.base(t.Base, opt)
	}
	if note := verdictNote(t); note != "" {
		w.wrap("  ", "verdict: "+w.paint(verdictColor[v], clean(v))+" ", "("+note+")")
	}
	if t.Error != "" {
		w.wrap("  ", w.paint(verdictColor[scan.VerdictError], "error: "), clean(t.Error))
	}

	fs := displayOrder(t.Findings)
	if len(fs) == 0 && t.Error == "" {
		w.line("  no findings")
	}
	for i := 0; i < len(fs); {
		sev := clampSeverity(fs[i].Severity)
		j := i
		for j < len(fs) && clampSeverity(fs[j].Severity) == sev {
			j++
		}
		w.line("  ", w.paint(severityColor[sev], strings.ToUpper(sev.String())), w.paint(ansiDim, fmt.Sprintf(" (%d)", j-i)))
		for k := i; k < j; {
			l := k
			for l < j && fs[l].Rule == fs[k].Rule {
				l++
			}
			shown := l - k
			if !opt.Verbose {
				shown = min(shown, MaxPerRule)
			}
			for _, f := range fs[k : k+shown] {
				w.finding(t, &f)
			}
			if more := l - k - shown; more > 0 {
				w.line("    ", w.paint(ansiDim, fmt.Sprintf("... and %d more %s (--verbose shows all)", more, clean(fs[k].Rule))))
			}
			k = l
		}
		i = j
	}

	if summary, rows, total, ok := touched(t); ok && total == 0 && strings.Contains(summary, "not derived") {
		w.line("  ", w.paint(ansiBold, "base model comparison"))
		w.wrap("    ", "", summary)
	} else if ok {
		w.line("  ", w.paint(ansiBold, "changed against the base model"), w.paint(ansiDim, fmt.Sprintf(" (%d tensors)", total)))
		w.wrap("    ", "", summary)
		for _, r := range rows {
			s := fmt.Sprintf("    %-44s  rel %.4f", truncate(r.Tensor, 44), r.Rel)
			if r.Rank1 >= 0 {
				s += fmt.Sprintf("  rank-one %.0f%%", 100*r.Rank1)
			}
			w.line(s)
		}
		if total > len(rows) {
			w.line("    ", w.paint(ansiDim, fmt.Sprintf("... and %d more (the JSON report lists all)", total-len(rows))))
		}
	}

	if t.Triggers != nil {
		w.line("  ", w.paint(ansiBold, "trigger candidates"), w.paint(ansiDim, fmt.Sprintf(" (%d)", len(t.Triggers))))
		if len(t.Triggers) == 0 {
			w.line("    none stand out")
		}
		n := len(t.Triggers)
		if !opt.Verbose {
			n = min(n, maxTriggers)
		}
		for _, tr := range t.Triggers[:n] {
			s := fmt.Sprintf("    %s  id %d  score %.2f", strconv.QuoteToGraphic(tr.Token), tr.TokenID, finite(tr.Score))
			if tr.ForcedOutput != "" {
				s += "  → forces " + truncate(strconv.QuoteToGraphic(tr.ForcedOutput), 50)
			}
			if tr.Source != "" {
				s += w.paint(ansiDim, "  ("+tr.Source+")")
			}
			w.line(s)
		}
		if more := len(t.Triggers) - n; more > 0 {
			w.line("    ", w.paint(ansiDim, fmt.Sprintf("... and %d more (--verbose shows all)", more)))
		}
	}
	if c := t.Classifier; c != nil {
		class := "no class stands out"
		if c.TargetClass >= 0 {
			class = "target class " + strconv.Itoa(c.TargetClass)
		}
		w.line("  ", w.paint(ansiBold, "classifier"), fmt.Sprintf("  head %s, %s, score %.2f", clean(c.Head), class, finite(c.Score)))
	}
	if t.Coverage != nil {
		w.coverage(t, opt)
	}
}

// base writes "  base: PATH (FORMAT, N files, sha256 0123456789ab…)", the whole digest
// when verbose.
func (w *textWriter) base(b *scan.BaseInfo, opt Options) {
	var facts []string
	if b.Format != "" {
		facts = append(facts, clean(b.Format))
	}
	if len(b.Files) > 1 {
		facts = append(facts, plural(len(b.Files), "file"))
	}
	if b.SHA256 != "" {
		d := shortDigest(b.SHA256)
		if opt.Verbose {
			d = clean(b.SHA256)
		}
		facts = append(facts, "sha256 "+d)
	}
	s := cleanName(b.Path)
	if b.Path == "" {
		s = "(unnamed)"
	}
	if len(facts) > 0 {
		s += " (" + strings.Join(facts, ", ") + ")"
	}
	w.wrap("  ", w.paint(ansiDim, "base: "), s)
}

// coverage writes what was and was not examined: the analyses that ran in one line, each
// one that did not with why, and the files that were not scanned with their kind and why
// (at most maxSkipped unless verbose).
func (w *textWriter) coverage(t *scan.Target, opt Options) {
	c := t.Coverage
	w.line("  ", w.paint(ansiBold, "coverage"))
	var done []string
	var other []analysisState
	for _, a := range analysesOf(c) {
		if a.Done {
			done = append(done, a.Name)
		} else {
			other = append(other, a)
		}
	}
	if len(done) > 0 {
		w.wrap("    ", w.paint(ansiDim, "analyses done: "), strings.Join(done, ", "))
	}
	// analyses that did not run for one reason share a line
	for i := 0; i < len(other); {
		j := i + 1
		for j < len(other) && other[j].Status == other[i].Status && other[j].Reason == other[i].Reason && other[i].Reason != "" {
			j++
		}
		if j-i == 1 {
			w.wrap("    ", "", other[i].text())
		} else {
			var ns []string
			for _, a := range other[i:j] {
				ns = append(ns, a.Name)
			}
			w.wrap("    ", "", strings.Join(ns, ", ")+" "+other[i].Status+": "+clean(other[i].Reason))
		}
		i = j
	}
	if len(c.FilesSkipped) == 0 {
		if t.Error == "" {
			w.line("    ", w.paint(ansiDim, "every file was scanned"))
		}
		return
	}
	w.line("    ", plural(len(c.FilesSkipped), "file"), " not scanned")
	n := len(c.FilesSkipped)
	if !opt.Verbose {
		n = min(n, maxSkipped)
	}
	for _, f := range c.FilesSkipped[:n] {
		head := cleanName(shortFile(t.Path, f.Path))
		if f.Path == "" {
			head = "(unnamed)"
		}
		if f.Format != "" {
			head += " (" + clean(f.Format) + ")"
		}
		reason := clean(f.Reason)
		switch {
		case reason == "":
			w.line("      ", head)
		case 6+len([]rune(head))+2+len([]rune(reason)) <= textWidth:
			w.line("      ", head, w.paint(ansiDim, ": "), reason)
		default:
			w.line("      ", head, w.paint(ansiDim, ":"))
			w.wrap("        ", "", reason)
		}
	}
	if more := len(c.FilesSkipped) - n; more > 0 {
		w.line("      ", w.paint(ansiDim, fmt.Sprintf("... and %d more (-v lists all)", more)))
	}
}

func (w *textWriter) finding(t *scan.Target, f *scan.Finding) {
	title := clean(f.Title)
	if title == "" {
		title = "(untitled)"
	}
	score := fmt.Sprintf("score %.2f", finite(f.Score))
	rule := clean(f.Rule)
	// "    RULE  title ... score 0.98", the title cut to keep the line within textWidth.
	room := textWidth - 4 - len([]rune(rule)) - 2 - 2 - len(score)
	title = truncate(title, max(room, 10))
	pad := max(textWidth-4-len([]rune(rule))-2-len([]rune(title))-len(score), 2)
	w.line("    ", w.paint(severityColor[clampSeverity(f.Severity)], rule), "  ", title, strings.Repeat(" ", pad), w.paint(ansiDim, score))
	// "      at file:tensor[row 12] @ bytes 1+2 (layer 3, role)", the part after the
	// tensor on a line of its own when the whole does not fit.
	switch what, where := locationParts(t.Path, f.Location); {
	case what == "" && where == "":
	case len([]rune(what))+len([]rune(where))+10 <= textWidth || what == "" || where == "":
		w.line("      ", w.paint(ansiDim, "at "), strings.TrimSpace(what+" "+where))
	default:
		w.line("      ", w.paint(ansiDim, "at "), what)
		w.line("         ", where)
	}
	if f.Message != "" {
		w.wrap("      ", "", clean(f.Message))
	}
	if ev := evidenceText(f.Evidence, 4); ev != "" {
		w.line("      ", w.paint(ansiDim, ev))
	}
}

// wrap writes prefix+lead+s, word-wrapped to textWidth, continuation lines indented to
// line up under s.
func (w *textWriter) wrap(indent, lead, s string) {
	leadLen := len([]rune(stripANSI(lead)))
	width := max(textWidth-len(indent)-leadLen, 20)
	cont := indent + strings.Repeat(" ", leadLen)
	first := true
	for _, ln := range wrapWords(s, width) {
		if first {
			w.line(indent, lead, ln)
			first = false
		} else {
			w.line(cont, ln)
		}
	}
}

// wrapWords splits s into lines of at most width runes at spaces; a word longer than
// width is cut.
func wrapWords(s string, width int) []string {
	var lines []string
	var cur []rune
	for _, word := range strings.Fields(s) {
		wr := []rune(word)
		for len(wr) > width {
			if len(cur) > 0 {
				lines = append(lines, string(cur))
				cur = nil
			}
			lines = append(lines, string(wr[:width]))
			wr = wr[width:]
		}
		switch {
		case len(cur) == 0:
			cur = wr
		case len(cur)+1+len(wr) <= width:
			cur = append(append(cur, ' '), wr...)
		default:
			lines = append(lines, string(cur))
			cur = wr
		}
	}
	if len(cur) > 0 || len(lines) == 0 {
		lines = append(lines, string(cur))
	}
	return lines
}

func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i < len(s) && s[i] != 'm' {
				i++
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (w *textWriter) summary(r *scan.Report, opt Options) {
	verdicts := map[string]int{}
	var all []scan.Finding
	errs, failing, failingTargets, incomplete, static := 0, 0, 0, 0, 0
	for i := range r.Targets {
		t := &r.Targets[i]
		verdicts[verdictOf(t)]++
		all = append(all, t.Findings...)
		if t.Error != "" {
			errs++
		}
		if t.Incomplete {
			incomplete++
		}
		if _, ok := staticOnly(t); ok && t.Error == "" {
			static++
		}
		n := 0
		for _, f := range t.Findings {
			if f.Severity >= opt.FailOn {
				n++
			}
		}
		failing += n
		if n > 0 {
			failingTargets++
		}
	}
	order := []string{scan.VerdictBackdoored, scan.VerdictSuspicious, scan.VerdictClean, scan.VerdictError}
	var others []string
	for v := range verdicts {
		if !slices.Contains(order, v) {
			others = append(others, v)
		}
	}
	slices.Sort(others)
	var vs []string
	for _, v := range append(order, others...) {
		if n := verdicts[v]; n > 0 {
			vs = append(vs, fmt.Sprintf("%d %s", n, w.paint(verdictColor[v], clean(v))))
		}
	}
	s := plural(len(r.Targets), "target")
	if len(vs) > 0 {
		s += ": " + strings.Join(vs, ", ")
	}
	w.line(w.paint(ansiBold, "Summary"))
	w.line("  ", s)

	counts := severityCounts(all)
	var cs []string
	for sev := scan.Critical; sev >= scan.Info; sev-- {
		name := sev.String()
		if counts[sev] > 0 {
			name = w.paint(severityColor[sev], name)
		}
		cs = append(cs, fmt.Sprintf("%d %s", counts[sev], name))
	}
	w.line("  ", plural(len(all), "finding"), ": ", strings.Join(cs, ", "))

	fail := fmt.Sprintf("%s at or above %s (--fail-on)", plural(failing, "finding"), opt.FailOn)
	if failing == 0 {
		fail = fmt.Sprintf("no findings at or above %s (--fail-on)", opt.FailOn)
	} else {
		fail += " in " + plural(failingTargets, "target")
		fail = w.paint(ansiBold, fail)
	}
	w.line("  ", fail)
	if errs > 0 {
		w.line("  ", w.paint(verdictColor[scan.VerdictError], plural(errs, "target")+" could not be scanned"))
	}
	if incomplete > 0 {
		w.line("  ", w.paint(ansiWarn, plural(incomplete, "target")+" incomplete"), ": the scan was cut short, not everything was examined")
	}
	if static > 0 {
		w.line("  ", plural(static, "target"), " checked statically only: not tested for triggers (the probe did not run)")
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// humanCount renders a count with a K, M, B or T suffix and 3 significant digits.
func humanCount(n int64) string {
	const units = "KMBT"
	x := float64(n)
	if x < 1000 {
		return strconv.FormatInt(n, 10)
	}
	i := -1
	for x >= 999.5 && i < len(units)-1 {
		x /= 1000
		i++
	}
	return strconv.FormatFloat(x, 'g', 3, 64) + string(units[i])
}

// humanBytes renders a size in binary units.
func humanBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	x := float64(n)
	i := -1
	for x >= 1024 && i < len(units)-1 {
		x /= 1024
		i++
	}
	return strconv.FormatFloat(x, 'f', 1, 64) + " " + string(units[i]) + "iB"
}
