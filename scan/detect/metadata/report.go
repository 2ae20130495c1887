package metadata

import (
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/scan"
)

// TemplateReport is what AnalyzeTemplate finds in a chat template.
type TemplateReport struct {
	// Err is the parse error of a template that could not be parsed (nil otherwise); the
	// other fields are then empty.
	Err *ParseError
	// Branches are the conditions keyed on what a participant wrote (or on the clock)
	// and what they change in the prompt, most severe first.
	Branches []Branch
	// Injections are instruction-like texts the template emits: overrides, secrecy,
	// exfiltration, steering wording, URLs, fabricated tool calls, code.
	Injections []Injection
	// Hazards are uses of template-engine features that reach outside a chat template's
	// sandbox (Python internals, include/import).
	Hazards []Hazard
	// Outputs is the literal text the template can emit, in template order.
	Outputs []Output
}

// Trigger is one comparison of message text (or of the clock) against a literal.
type Trigger struct {
	Literal string   `json:"literal"`         // the literal compared against (or its expression)
	Op      string   `json:"op"`              // "in", "==", ".startswith", "|replace", ...
	Kind    string   `json:"kind"`            // phrase, markup, switch or time
	Expr    string   `json:"expr"`            // the comparison as written
	Line    int      `json:"line"`            // 1-based line in the template
	Roles   []string `json:"roles,omitempty"` // message roles the comparison is restricted to
}

// Branch is a content-keyed (or time-keyed) branch of a template and its effect.
type Branch struct {
	Triggers   []Trigger
	Conditions []string // the conditions under which the effect happens, as written
	Line       int
	Emitted    string // literal text emitted only under the triggers (clipped)
	Otherwise  bool   // Emitted is output when the condition does not hold (else branch, "not in")
	Rewrites   bool   // message text is emitted transformed by the match
	Raises     bool   // the branch raises an exception
	Severity   scan.Severity
	Score      float64
	Reason     string
}

// Injection is instruction-like text that a template emits.
type Injection struct {
	Flags       []string // override, secrecy, exfiltration, steering, url, url-ip, url-action, tool-call, code
	Text        string   // the emitted text around the match (clipped)
	Line        int
	Conditional bool     // emitted only under a content- or time-keyed condition
	Conditions  []string // those conditions
	Severity    scan.Severity
	Score       float64
}

// Hazard is a template construct that reaches outside a chat template's sandbox.
type Hazard struct {
	Kind   string // "attribute" or the tag name (include, import, from, extends)
	Line   int
	Detail string
}

// Output is one literal piece of output.
type Output struct {
	Text        string
	Line        int
	Conditional bool // only under a condition keyed on message text or the clock
}

// AnalyzeTemplate parses a Jinja chat template (never rendering or executing it) and
// reports the branches keyed on message content, the instruction-like text it emits and
// the constructs that escape a template sandbox. It never panics and its work is bounded.
func AnalyzeTemplate(src string) (rep TemplateReport) {
	t, err := parseTemplate(src)
	if err != nil {
		pe, _ := err.(*ParseError)
		if pe == nil {
			pe = &ParseError{Line: 1, Msg: err.Error()}
		}
		return TemplateReport{Err: pe}
	}
	defer func() {
		if r := recover(); r != nil {
			if strictPanics {
				panic(r)
			}
			rep = TemplateReport{Err: &ParseError{Line: 1, Msg: "internal analysis error"}}
		}
	}()
	a := newAnalyzer(t)
	a.run()
	rep.Hazards = a.hazards
	rep.Branches = a.branches()
	rep.Injections = a.injections()
	for _, it := range a.out {
		if it.derived || it.raise || strings.TrimSpace(it.text) == "" {
			continue
		}
		if len(rep.Outputs) >= 2000 {
			break
		}
		rep.Outputs = append(rep.Outputs, Output{Text: it.text, Line: it.line, Conditional: hasStrong(itemTrig(it))})
	}
	return rep
}

func itemTrig(it item) []*trigger {
	ts := condTrig(it.guards)
	for _, t := range it.trig {
		if !hasTrig(ts, t) {
			ts = append(ts, t)
		}
	}
	return ts
}

// strong triggers are the ones that make a branch a backdoor candidate: phrases in
// messages other than the system prompt, and the clock.
func strongTrig(t *trigger) bool {
	return t.kind == trigTime || t.kind == trigPhrase && !t.systemOnly
}

func hasStrong(ts []*trigger) bool {
	for _, t := range ts {
		if strongTrig(t) {
			return true
		}
	}
	return false
}

func exportTrig(t *trigger) Trigger {
	return Trigger{Literal: t.literal, Op: t.op, Kind: t.kind.String(), Expr: t.src, Line: t.line, Roles: t.roles}
}

type branchAcc struct {
	trig   []*trigger
	conds  []*cond
	texts  []string // emitted when the condition holds
	other  []string // emitted when it does not (else branches)
	lines  []int
	writes bool
	raises bool
	order  int
}

// negated reports whether every content-keyed guard of it holds negated.
func negated(it item) bool {
	any := false
	for _, c := range it.guards {
		if !c.suspicious() {
			continue
		}
		if !hasCond(it.negs, c) {
			return false
		}
		any = true
	}
	return any
}

// branches groups the output by the triggers it depends on.
func (a *analyzer) branches() []Branch {
	groups := map[string]*branchAcc{}
	var keys []string
	get := func(ts []*trigger) *branchAcc {
		ids := make([]int, len(ts))
		for i, t := range ts {
			ids[i] = t.id
		}
		sort.Ints(ids)
		var b strings.Builder
		for _, id := range ids {
			b.WriteString(strconv.Itoa(id))
			b.WriteByte(',')
		}
		k := b.String()
		g := groups[k]
		if g == nil {
			g = &branchAcc{trig: ts, order: len(keys)}
			groups[k] = g
			keys = append(keys, k)
		}
		return g
	}
	for _, it := range a.out {
		ts := itemTrig(it)
		if len(ts) == 0 {
			continue
		}
		g := get(ts)
		for _, c := range it.guards {
			if !hasCond(g.conds, c) {
				g.conds = append(g.conds, c)
			}
		}
		switch {
		case it.raise:
			g.raises = true
		case it.derived:
			g.writes = true
		case negated(it):
			if !hasString(g.other, it.text) && len(g.other) < 64 {
				g.other = append(g.other, it.text)
			}
		default:
			if !hasString(g.texts, it.text) && len(g.texts) < 64 {
				g.texts = append(g.texts, it.text)
				g.lines = append(g.lines, it.line)
			}
		}
	}
	// Content-keyed conditions that guard no output at all.
	var cs []*cond
	for _, c := range a.conds {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].id < cs[j].id })
	for _, c := range cs {
		if !hasStrong(c.trig) {
			continue
		}
		covered := false
		for _, g := range groups {
			for _, t := range c.trig {
				if hasTrig(g.trig, t) {
					covered = true
				}
			}
		}
		if !covered {
			g := get(c.trig)
			g.conds = append(g.conds, c)
		}
	}
	var out []Branch
	for _, k := range keys {
		g := groups[k]
		br := classifyBranch(g, g.texts, false)
		if len(g.other) > 0 {
			// text emitted when the message does not match ("not in", else branches)
			if alt := classifyBranch(g, g.other, true); alt.Severity > br.Severity || alt.Score > br.Score {
				br = alt
			}
		}
		if br.Severity == scan.Info && br.Score == 0 {
			continue
		}
		out = append(out, br)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Severity != out[j].Severity {
			return out[i].Severity > out[j].Severity
		}
		return out[i].Line < out[j].Line
	})
	return out
}

var (
	markupRe = regexp.MustCompile(`<\|[^|>]{0,64}\|>|<｜[^｜]{0,64}｜>|</?[A-Za-z_][\w:.\-▁]{0,40}/?>|\[/?[A-Z_]{2,40}\]|<[a-z_]+>`)
	wordRe   = regexp.MustCompile(`\pL{2,}`)
)

// naturalWords counts the words of text outside markup tokens.
func naturalWords(text string) int {
	return len(wordRe.FindAllStringIndex(markupRe.ReplaceAllString(text, " "), -1))
}

func classifyBranch(g *branchAcc, texts []string, otherwise bool) Branch {
	br := Branch{Rewrites: g.writes, Raises: g.raises, Line: 1 << 30, Otherwise: otherwise}
	strong, phrase, sysPhrase, time := false, false, false, false
	for _, t := range g.trig {
		br.Triggers = append(br.Triggers, exportTrig(t))
		br.Line = min(br.Line, max(t.line, 1))
		if strongTrig(t) {
			strong = true
		}
		if t.kind == trigTime {
			time = true
		}
		if t.kind == trigPhrase {
			phrase = true
			if t.systemOnly {
				sysPhrase = true
			}
		}
	}
	for _, c := range g.conds {
		br.Conditions = append(br.Conditions, c.src)
		br.Line = min(br.Line, c.line)
	}
	for _, l := range g.lines {
		br.Line = min(br.Line, l)
	}
	if br.Line == 1<<30 {
		br.Line = 0
	}
	text := strings.Join(texts, "")
	br.Emitted = clip(text, 200)
	words := naturalWords(text)
	flags := redFlags(text)
	emits := strings.TrimSpace(text) != ""
	cause := "the message matches"
	if time {
		cause = "the date matches"
	}
	if otherwise {
		cause = "the condition does not hold"
	}
	switch {
	case len(flags) > 0 && (strong || phrase || words >= 3):
		br.Severity, br.Score = scan.High, 0.95
		br.Reason = "instruction-like text (" + strings.Join(flagNames(flags), ", ") + ") is emitted only when " + cause
	case strong && words >= 3:
		br.Severity, br.Score = scan.High, 0.92
		br.Reason = "natural-language text is added to the prompt only when " + cause
	case strong && (words > 0 || g.writes):
		br.Severity, br.Score = scan.High, 0.85
		br.Reason = "the prompt changes only when " + cause
		if g.writes && words == 0 {
			br.Reason = "the message is rewritten only when " + cause
		}
	case strong && emits:
		br.Severity, br.Score = scan.Medium, 0.6
		br.Reason = "special tokens or markup are added to the prompt only when " + cause
	case strong:
		br.Severity, br.Score = scan.Low, 0.3
		br.Reason = "a message is compared against a literal but nothing the model is told changes"
		if g.raises {
			br.Reason = "the template refuses messages that match"
		}
	case sysPhrase && words >= 3:
		br.Severity, br.Score = scan.Medium, 0.5
		br.Reason = "text is added to the prompt when the system prompt contains a phrase"
	case sysPhrase && (emits || g.writes):
		br.Severity, br.Score = scan.Low, 0.3
		br.Reason = "the prompt changes when the system prompt contains a phrase"
	case words >= 3:
		br.Severity, br.Score = scan.Info, 0.15
		br.Reason = "text is added to the prompt under a markup or mode-switch test (common in reasoning templates)"
	default:
		br.Score = 0 // structural parsing of markup: not a finding
	}
	return br
}

type span2 struct {
	s, e int
	it   int // index into the output items
}

// injections looks for instruction-like wording in the concatenated literal output, so
// that a phrase split over several output tags is still seen.
func (a *analyzer) injections() []Injection {
	var b strings.Builder
	var spans []span2
	for i, it := range a.out {
		if it.derived || it.raise || it.text == "" {
			continue
		}
		if b.Len() > 4<<20 {
			break
		}
		s := b.Len()
		b.WriteString(it.text)
		spans = append(spans, span2{s, b.Len(), i})
		// message text sits between literals: a phrase never spans it
		b.WriteByte('\x00')
	}
	text := b.String()
	type acc struct {
		inj    Injection
		flags  map[string]bool
		conds  []*cond
		trig   []*trigger
		lo, hi int // the matches' extent in text
	}
	var accs []*acc
	byItem := map[int]*acc{}
	for _, m := range redFlags(text) {
		// the items the match overlaps
		k := sort.Search(len(spans), func(i int) bool { return spans[i].e > m.s })
		var its []int
		for ; k < len(spans) && spans[k].s < m.e; k++ {
			its = append(its, spans[k].it)
		}
		if len(its) == 0 {
			continue
		}
		ac := byItem[its[0]]
		if ac == nil {
			if len(accs) >= 20 {
				continue
			}
			ac = &acc{inj: Injection{Line: a.out[its[0]].line}, flags: map[string]bool{}, lo: m.s, hi: m.e}
			byItem[its[0]] = ac
			accs = append(accs, ac)
		}
		ac.lo, ac.hi = min(ac.lo, m.s), max(ac.hi, m.e)
		ac.flags[m.cat] = true
		for _, i := range its {
			for _, c := range a.out[i].guards {
				if !hasCond(ac.conds, c) {
					ac.conds = append(ac.conds, c)
				}
			}
			for _, t := range itemTrig(a.out[i]) {
				if !hasTrig(ac.trig, t) {
					ac.trig = append(ac.trig, t)
				}
			}
		}
	}
	var out []Injection
	for _, ac := range accs {
		inj := ac.inj
		lo, hi := ac.lo, ac.hi
		// widen to the literal pieces around the matches
		for lo > 0 && ac.lo-lo < 60 && text[lo-1] != 0 {
			lo--
		}
		for hi < len(text) && hi-ac.hi < 60 && text[hi] != 0 {
			hi++
		}
		inj.Text = clip(strings.ReplaceAll(text[lo:hi], "\x00", "…"), 300)
		inj.Flags = sortedKeys(ac.flags)
		inj.Conditional = hasStrong(ac.trig)
		for _, c := range ac.conds {
			inj.Conditions = append(inj.Conditions, c.src)
		}
		inj.Severity, inj.Score = injectionSeverity(ac.flags, inj.Conditional)
		out = append(out, inj)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Severity > out[j].Severity })
	return out
}

func injectionSeverity(flags map[string]bool, conditional bool) (scan.Severity, float64) {
	serious := 0
	for _, f := range []string{"override", "secrecy", "exfiltration", "steering", "tool-call"} {
		if flags[f] {
			serious++
		}
	}
	url := flags["url"] || flags["url-ip"] || flags["url-action"]
	switch {
	case conditional:
		return scan.High, 0.95
	case flags["url-ip"] || flags["url-action"]:
		return scan.High, 0.8
	case serious >= 2 || serious >= 1 && url:
		return scan.High, 0.85
	case serious == 1 || url || flags["code"]:
		return scan.Medium, 0.5
	}
	return scan.Low, 0.3
}
