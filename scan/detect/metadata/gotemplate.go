package metadata

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template/parse"
	"unicode"
)

// Ollama templates (the template layer of an Ollama model, metadata key ollama.template)
// are Go text/template templates. They are parsed with the standard library's
// text/template/parse, never executed, and translated into the AST of this package's
// Jinja analysis, which then runs unchanged: the same triggers, branch classification,
// injection checks and severities apply to both template languages.
//
// The translation maps the data Ollama renders a template with onto the analysis' model
// of a chat: .Messages is the messages list, the Content (and Thinking) of its elements is
// message text, .Role is a role, .Prompt, .Response and .Suffix (the legacy single-turn
// fields) are message text, and .System is the system prompt (a phrase compared against
// it is a system-prompt trigger, as for a Jinja system message). Dot is tracked through
// range, with and template invocations, and $variables through their declarations.
// Functions are mapped by name: eq/ne/lt/le/gt/ge are comparisons, and/or/not are
// boolean operators, index, slice, len, printf and print keep the flow of message text,
// contains/hasPrefix/hasSuffix/regexMatch/... (either argument order) compare text with a
// literal, trimPrefix/replace/split/... compare and rewrite it, currentDate/now/date read
// the clock, and unknown functions pass message text through. Function names are not
// checked: a template that uses functions Ollama does not define is still analysed.

// OllamaTemplateKey is the metadata key of an Ollama model's template layer.
const OllamaTemplateKey = "ollama.template"

// OllamaSystemKey is the metadata key of an Ollama model's system prompt layer.
const OllamaSystemKey = "ollama.system"

func isGoTemplateKey(key string) bool { return key == OllamaTemplateKey }

const (
	maxGoNodes   = 400000 // translated nodes of the template itself
	maxGoInlined = 400000 // further nodes added by inlining {{template}} invocations
)

// Names of the analysis variables that stand for Ollama's template data. They cannot
// collide with Go template variables (which start with '$') or with the names the Jinja
// analysis knows ("messages", "loop").
const (
	goRootVar   = "·root"
	goSystemVar = "·system"
	goNilVar    = "·nil"
)

var goTextFields = map[string]string{"Prompt": "·prompt", "Response": "·response", "Suffix": "·suffix"}

// AnalyzeGoTemplate parses an Ollama (Go text/template) template, never executing it, and
// reports what AnalyzeTemplate reports for a Jinja template: the branches keyed on message
// content or on the clock, and the instruction-like text it emits. Go templates have no
// sandbox to escape, so Hazards is always empty. It never panics and its work is bounded.
func AnalyzeGoTemplate(src string) (rep TemplateReport) {
	defer func() {
		if r := recover(); r != nil {
			if strictPanics {
				panic(r)
			}
			rep = TemplateReport{Err: &ParseError{Line: 1, Msg: "internal analysis error"}}
		}
	}()
	t, usesSystem, err := parseGoTemplate(src)
	if err != nil {
		return TemplateReport{Err: err}
	}
	a := goAnalyzer(t, true)
	if usesSystem && len(a.trigs) > 0 {
		// Triggers that disappear when .System is not message text compare only the
		// system prompt: they are system-prompt triggers, as for a Jinja system message.
		b := goAnalyzer(t, false)
		for k, tr := range a.trigs {
			if _, ok := b.trigs[k]; ok {
				continue
			}
			if !hasString(tr.roles, "system") {
				tr.roles = append(tr.roles, "system")
			}
			tr.systemOnly = true
			for _, r := range tr.roles {
				if r != "system" && r != "developer" {
					tr.systemOnly = false
				}
			}
		}
	}
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

// goAnalyzer runs the template analysis with Ollama's data bound; system tells whether
// .System counts as message text.
func goAnalyzer(t *Template, system bool) *analyzer {
	a := newAnalyzer(t)
	a.hazards = nil // Python internals mean nothing to a Go template
	for _, name := range goTextFields {
		a.env[name] = &value{flags: fContent}
	}
	if system {
		a.env[goSystemVar] = &value{flags: fContent}
	}
	// the whole data (printed with json, passed to a template): a message-like record
	a.env[goRootVar] = &value{flags: fMessage}
	a.run()
	return a
}

// goTemplate analyses an Ollama template and reports whether it could be parsed. Its
// findings are the ones of a Jinja chat template (same rules, messages and evidence keys),
// with the evidence key syntax "go" added.
func (c *checker) goTemplate(s, at string) bool {
	n := len(c.extra)
	ok := c.report(AnalyzeGoTemplate(s), at)
	for i := n; i < len(c.extra); i++ {
		if c.extra[i].Evidence != nil {
			c.extra[i].Evidence["syntax"] = "go"
		}
	}
	return ok
}

var goErrRe = regexp.MustCompile(`(?s)^template: [^:\n]*:(\d+):(?:\d+:)? ?(.*)$`)

// parseGoTemplate parses src with text/template/parse and translates it. It reports
// whether the template reads .System.
func parseGoTemplate(src string) (t *Template, usesSystem bool, perr *ParseError) {
	if len(src) > MaxTemplateSize {
		return nil, false, &ParseError{Line: 1, Msg: fmt.Sprintf("template of %d bytes is larger than the %d-byte limit", len(src), MaxTemplateSize)}
	}
	if d, pos := goNesting(src); d > maxNesting {
		return nil, false, &ParseError{Offset: pos, Line: lineOf(src, pos), Msg: fmt.Sprintf("nesting deeper than %d", maxNesting)}
	}
	const name = "ollama"
	trees, err := goParse(name, src)
	if err != nil {
		msg, line := err.Error(), 1
		if m := goErrRe.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return nil, false, &ParseError{Line: max(line, 1), Msg: clip(msg, 300)}
	}
	main := trees[name]
	g := &goTr{src: src, trees: trees, active: map[string]int{}}
	g.scopes = []map[string]goBinding{{"$": {root: true}}}
	var body []stmt
	if main != nil && main.Root != nil {
		body = g.list(main.Root, goBinding{root: true})
	}
	if g.overflow {
		return nil, false, &ParseError{Line: 1, Msg: fmt.Sprintf("template has more than %d nodes", maxGoNodes)}
	}
	return &Template{src: src, body: body, nodes: g.nodes}, g.usesSystem, nil
}

// goParse parses without checking function names (SkipFuncCheck): a template is analysed
// whatever functions it calls. The parser's own panics are errors; anything else is a bug.
func goParse(name, src string) (trees map[string]*parse.Tree, err error) {
	defer func() {
		if r := recover(); r != nil {
			if strictPanics {
				panic(r)
			}
			trees, err = nil, fmt.Errorf("internal parser error: %v", r)
		}
	}()
	t := parse.New(name)
	t.Mode = parse.SkipFuncCheck
	trees = map[string]*parse.Tree{}
	if _, err := t.Parse(src, "", "", trees); err != nil {
		return nil, err
	}
	return trees, nil
}

// goNesting returns the deepest nesting of control actions (if, range, with, define,
// block ... end) plus parentheses in src, and where it is reached: a lexical scan, bounded
// before the recursive parser runs. Strings, raw strings and comments are skipped.
func goNesting(src string) (deepest, at int) {
	depth := 0
	i := 0
	for i < len(src) {
		j := strings.Index(src[i:], "{{")
		if j < 0 {
			break
		}
		start := i + j
		i = start + 2
		if i+1 < len(src) && src[i] == '-' && isSpace(src[i+1]) {
			i += 2
		}
		for i < len(src) && isSpace(src[i]) {
			i++
		}
		if strings.HasPrefix(src[i:], "/*") {
			k := strings.Index(src[i+2:], "*/")
			if k < 0 {
				break
			}
			i += k + 4
			continue
		}
		w := i
		for w < len(src) && (src[w] >= 'a' && src[w] <= 'z') {
			w++
		}
		if w == len(src) || !isIdentByte(src[w]) {
			switch src[i:w] {
			case "if", "range", "with", "define", "block":
				depth++
			case "end":
				depth = max(depth-1, 0)
			}
		}
		if depth > deepest {
			deepest, at = depth, start
		}
		parens := 0
	action:
		for i < len(src) {
			switch c := src[i]; c {
			case '"', '\'':
				i = skipGoQuoted(src, i)
			case '`':
				k := strings.IndexByte(src[i+1:], '`')
				if k < 0 {
					return deepest, at
				}
				i += k + 2
			case '(':
				parens++
				if depth+parens > deepest {
					deepest, at = depth+parens, i
				}
				i++
			case ')':
				parens = max(parens-1, 0)
				i++
			case '}':
				if i+1 < len(src) && src[i+1] == '}' {
					i += 2
					break action
				}
				i++
			default:
				i++
			}
		}
	}
	return deepest, at
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// skipGoQuoted returns the offset after the quoted string or character constant at i (or
// of the newline that ends an unterminated one).
func skipGoQuoted(src string, i int) int {
	q := src[i]
	for i++; i < len(src); i++ {
		switch src[i] {
		case '\\':
			i++
		case '\n':
			return i
		case q:
			return i + 1
		}
	}
	return len(src)
}

// ---- translation ----

// goBinding is what dot or a $variable stands for: Ollama's template data (root) or the
// analysis variable that holds its value.
type goBinding struct {
	root bool
	name string
}

type goTr struct {
	src        string
	trees      map[string]*parse.Tree
	scopes     []map[string]goBinding // $variables in scope
	nodes      int                    // translated nodes
	inlined    int                    // of which added by template invocations
	expand     int                    // template invocations being inlined
	active     map[string]int         // inlinings of each template in progress
	nvar       int
	overflow   bool
	usesSystem bool
}

func (g *goTr) count() bool {
	g.nodes++
	if g.expand > 0 {
		g.inlined++
		return g.inlined <= maxGoInlined
	}
	if g.nodes-g.inlined > maxGoNodes {
		g.overflow = true
		return false
	}
	return true
}

func (g *goTr) fresh(prefix string) string {
	g.nvar++
	return prefix + "#" + strconv.Itoa(g.nvar)
}

func (g *goTr) push() { g.scopes = append(g.scopes, map[string]goBinding{}) }
func (g *goTr) pop()  { g.scopes = g.scopes[:len(g.scopes)-1] }

func (g *goTr) lookup(name string) goBinding {
	for i := len(g.scopes) - 1; i >= 0; i-- {
		if b, ok := g.scopes[i][name]; ok {
			return b
		}
	}
	return goBinding{name: goNilVar}
}

// declare binds a new $variable in the innermost scope and returns its analysis name.
func (g *goTr) declare(name string) string {
	nm := g.fresh(name)
	g.scopes[len(g.scopes)-1][name] = goBinding{name: nm}
	return nm
}

func (g *goTr) list(l *parse.ListNode, dot goBinding) []stmt {
	if l == nil {
		return nil
	}
	var out []stmt
	for _, n := range l.Nodes {
		out = append(out, g.node(n, dot)...)
	}
	return out
}

func (g *goTr) node(n parse.Node, dot goBinding) []stmt {
	if n == nil || !g.count() {
		return nil
	}
	switch n := n.(type) {
	case *parse.TextNode:
		return []stmt{&textStmt{pos: int(n.Pos), text: string(n.Text)}}
	case *parse.ActionNode:
		x := g.pipe(n.Pipe, dot)
		if n.Pipe != nil && len(n.Pipe.Decl) > 0 {
			return g.decl(n.Pipe, x, dot)
		}
		return []stmt{&outputStmt{pos: int(n.Pos), x: x}}
	case *parse.IfNode:
		g.push()
		defer g.pop()
		x := g.pipe(n.Pipe, dot)
		out := g.decl(n.Pipe, x, dot)
		s := &ifStmt{branches: []ifBranch{{pos: g.pipePos(n.Pipe, int(n.Pos)), cond: x, body: g.list(n.List, dot)}}}
		s.els = g.list(n.ElseList, dot)
		return append(out, s)
	case *parse.WithNode:
		g.push()
		defer g.pop()
		x := g.pipe(n.Pipe, dot)
		out := g.decl(n.Pipe, x, dot)
		var body []stmt
		inner, ok := g.alias(n.Pipe, dot)
		if !ok {
			inner = goBinding{name: g.fresh("·dot")}
			body = append(body, &setStmt{pos: int(n.Pos), targets: []expr{&nameExpr{span: spanOf(x), name: inner.name}}, value: x})
		}
		body = append(body, g.list(n.List, inner)...)
		s := &ifStmt{branches: []ifBranch{{pos: g.pipePos(n.Pipe, int(n.Pos)), cond: x, body: body}}}
		s.els = g.list(n.ElseList, dot)
		return append(out, s)
	case *parse.RangeNode:
		g.push()
		defer g.pop()
		iter := g.pipe(n.Pipe, dot)
		elem := g.fresh("·dot")
		s := &forStmt{pos: int(n.Pos), targets: []string{elem}, iter: iter}
		var decl []*parse.VariableNode
		if n.Pipe != nil {
			decl = n.Pipe.Decl
		}
		switch len(decl) {
		case 1:
			s.targets = append(s.targets, g.declare(decl[0].Ident[0]))
		case 2:
			// the index or key first, then the element
			idx := g.declare(decl[0].Ident[0])
			s.targets = append(s.targets, g.declare(decl[1].Ident[0]))
			p := int(decl[0].Pos)
			s.body = append(s.body, &setStmt{pos: p, targets: []expr{&nameExpr{span: span{p, p}, name: idx}}, value: &constExpr{span: span{p, p}, val: int64(0)}})
		}
		s.body = append(s.body, g.list(n.List, goBinding{name: elem})...)
		s.els = g.list(n.ElseList, dot)
		return []stmt{s}
	case *parse.TemplateNode:
		return g.invoke(n, dot)
	case *parse.BreakNode:
		return []stmt{&loopCtlStmt{pos: int(n.Pos), kind: "break"}}
	case *parse.ContinueNode:
		return []stmt{&loopCtlStmt{pos: int(n.Pos), kind: "continue"}}
	case *parse.ListNode:
		return g.list(n, dot)
	}
	return nil // comments
}

func (g *goTr) pipePos(p *parse.PipeNode, def int) int {
	if p != nil {
		return int(p.Pos)
	}
	return def
}

// decl translates the variable declaration or assignment of a pipeline.
func (g *goTr) decl(p *parse.PipeNode, x expr, dot goBinding) []stmt {
	if p == nil || len(p.Decl) == 0 {
		return nil
	}
	v := p.Decl[0]
	name := v.Ident[0]
	pos := int(v.Pos)
	var nm string
	if p.IsAssign {
		b := g.lookup(name)
		if b.root {
			return nil // reassigning an alias of the data: nothing to track
		}
		nm = b.name
	} else {
		if b, ok := g.alias(p, dot); ok {
			g.scopes[len(g.scopes)-1][name] = b
			return nil
		}
		nm = g.declare(name)
	}
	return []stmt{&setStmt{pos: pos, targets: []expr{&nameExpr{span: span{pos, pos + len(name)}, name: nm}}, value: x}}
}

// alias reports a pipeline that is just dot or a $variable, and what it stands for.
func (g *goTr) alias(p *parse.PipeNode, dot goBinding) (goBinding, bool) {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return goBinding{}, false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.DotNode:
		return dot, true
	case *parse.VariableNode:
		if len(a.Ident) == 1 {
			return g.lookup(a.Ident[0]), true
		}
	}
	return goBinding{}, false
}

// invoke inlines {{template "name" pipeline}} with dot bound to the pipeline's value.
func (g *goTr) invoke(n *parse.TemplateNode, dot goBinding) []stmt {
	var out []stmt
	callee := goBinding{name: goNilVar}
	if n.Pipe != nil {
		if b, ok := g.alias(n.Pipe, dot); ok {
			callee = b
		} else {
			x := g.pipe(n.Pipe, dot)
			callee = goBinding{name: g.fresh("·dot")}
			out = append(out, &setStmt{pos: int(n.Pos), targets: []expr{&nameExpr{span: spanOf(x), name: callee.name}}, value: x})
		}
	}
	t := g.trees[n.Name]
	if t == nil || t.Root == nil || g.expand >= maxExpand || g.active[n.Name] >= 2 || g.inlined > maxGoInlined {
		return out
	}
	saved := g.scopes
	g.scopes = []map[string]goBinding{{"$": callee}}
	g.expand++
	g.active[n.Name]++
	out = append(out, g.list(t.Root, callee)...)
	g.active[n.Name]--
	g.expand--
	g.scopes = saved
	return out
}

func spanOf(x expr) span {
	s, e := x.bounds()
	return span{s, e}
}

// ---- pipelines and operands ----

// extent kinds
const (
	extOperand = iota
	extCommand
	extPipe
)

// extent returns the end of the operand, command or pipeline that starts at p: the Go
// parser gives nodes a start offset only. The end excludes a trailing trim marker.
func (g *goTr) extent(p, kind int) int {
	src := g.src
	if p < 0 || p >= len(src) {
		return max(0, min(p, len(src)))
	}
	depth := 0
	i := p
	end := func(i int) int {
		j := i
		if j-2 >= p && src[j-1] == '-' && isSpace(src[j-2]) && strings.HasPrefix(src[i:], "}}") {
			j-- // the trim marker of " -}}"
		}
		for j > p && isSpace(src[j-1]) {
			j--
		}
		return j
	}
	for i < len(src) {
		c := src[i]
		switch {
		case c == '"' || c == '\'':
			i = skipGoQuoted(src, i)
		case c == '`':
			k := strings.IndexByte(src[i+1:], '`')
			if k < 0 {
				return len(src)
			}
			i += k + 2
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth == 0 {
				return end(i)
			}
			depth--
			i++
		case strings.HasPrefix(src[i:], "}}"):
			return end(i)
		case depth > 0:
			i++
		case c == '|' && kind != extPipe:
			return end(i)
		case kind == extOperand && (isSpace(c) || c == ',' || c == '='):
			return i
		default:
			i++
		}
		if kind == extOperand && depth == 0 && i < len(src) && i > p && (src[i-1] == '"' || src[i-1] == '\'' || src[i-1] == '`' || src[i-1] == ')') && src[i] != '.' {
			return i
		}
	}
	return len(src)
}

func (g *goTr) pipe(p *parse.PipeNode, dot goBinding) expr {
	if p == nil || len(p.Cmds) == 0 {
		return &constExpr{val: nil}
	}
	start := int(p.Cmds[0].Pos)
	var x expr
	for i, c := range p.Cmds {
		if i == 0 {
			x = g.cmd(c, nil, dot, start)
		} else {
			x = g.cmd(c, x, dot, start)
		}
	}
	return x
}

func (g *goTr) cmd(c *parse.CommandNode, piped expr, dot goBinding, start int) expr {
	if c == nil || len(c.Args) == 0 || !g.count() {
		return &constExpr{val: nil}
	}
	s := span{start, g.extent(int(c.Pos), extCommand)}
	if s.e < s.s {
		s.e = s.s
	}
	args := func(ns []parse.Node) []expr {
		xs := make([]expr, 0, len(ns)+1)
		for _, n := range ns {
			xs = append(xs, g.operand(n, dot))
		}
		if piped != nil {
			xs = append(xs, piped)
		}
		return xs
	}
	switch head := c.Args[0].(type) {
	case *parse.IdentifierNode:
		return g.call(head.Ident, c.Args[1:], args(c.Args[1:]), s, dot)
	}
	x := g.operand(c.Args[0], dot)
	if len(c.Args) == 1 && piped == nil {
		return x
	}
	xs := args(c.Args[1:])
	if _, ok := x.(*attrExpr); ok {
		return &callExpr{span: s, fn: x, args: xs} // a method call
	}
	return &callExpr{span: s, fn: &nameExpr{span: s, name: "·call"}, args: append([]expr{x}, xs...)}
}

// Functions by what they do to the flow of message text.
var (
	goCompare = map[string]string{"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
	// boolean tests of text against text (either argument order: Go's strings package and
	// sprig disagree)
	goMatch = map[string]bool{"contains": true, "hasPrefix": true, "hasSuffix": true, "HasPrefix": true,
		"HasSuffix": true, "Contains": true, "startsWith": true, "endsWith": true, "startswith": true,
		"endswith": true, "regexMatch": true, "mustRegexMatch": true, "regexFind": true, "regexFindAll": true,
		"mustRegexFind": true, "mustRegexFindAll": true, "match": true, "matches": true, "containsAny": true,
		"ContainsAny": true, "EqualFold": true, "equalFold": true, "in": true, "search": true, "Index": true,
		"indexOf": true, "Count": true, "count": true}
	// functions that compare text with a literal and return the text transformed
	goRewrite = map[string]bool{"trimPrefix": true, "trimSuffix": true, "TrimPrefix": true, "TrimSuffix": true,
		"replace": true, "Replace": true, "ReplaceAll": true, "replaceAll": true, "regexReplaceAll": true,
		"regexReplaceAllLiteral": true, "mustRegexReplaceAll": true, "mustRegexReplaceAllLiteral": true,
		"regexSplit": true, "split": true, "splitList": true, "splitn": true, "Split": true, "SplitN": true,
		"Cut": true, "cut": true, "trimAll": true, "Trim": true, "TrimLeft": true, "TrimRight": true,
		"removePrefix": true, "removeSuffix": true, "after": true, "before": true}
	goTime = map[string]bool{"currentDate": true, "yesterdayDate": true, "currentTime": true, "now": true,
		"date": true, "dateInZone": true, "date_in_zone": true, "htmlDate": true, "htmlDateInZone": true,
		"unixEpoch": true, "dateModify": true, "date_modify": true, "today": true, "Now": true,
		"strftime_now": true, "ago": true, "duration": true, "durationRound": true}
	goFilter = map[string]string{"len": "length", "html": "escape", "js": "escape", "urlquery": "escape",
		"json": "tojson", "toJson": "tojson", "toJSON": "tojson", "tojson": "tojson", "toPrettyJson": "tojson",
		"toRawJson": "tojson", "mustToJson": "tojson", "marshal": "tojson", "lower": "lower", "toLower": "lower",
		"ToLower": "lower", "upper": "upper", "toUpper": "upper", "ToUpper": "upper", "title": "title",
		"Title": "title", "trim": "trim", "trimSpace": "trim", "TrimSpace": "trim", "strip": "trim",
		"toString": "string", "quote": "string", "squote": "string", "string": "string", "first": "first",
		"last": "last", "reverse": "reverse", "sortAlpha": "sort", "uniq": "unique"}
)

// call translates a call of the function name with the translated arguments xs (ns are
// the argument nodes, without a piped value).
func (g *goTr) call(name string, ns []parse.Node, xs []expr, s span, dot goBinding) expr {
	cmp := func(l expr, op string, r expr) expr {
		return &compareExpr{span: s, first: l, ops: []string{op}, rest: []expr{r}}
	}
	unknown := func(fn string) expr {
		return &callExpr{span: s, fn: &nameExpr{span: s, name: "·fn_" + fn}, args: xs}
	}
	if op, ok := goCompare[name]; ok {
		if len(xs) < 2 {
			return unknown(name)
		}
		var x expr = cmp(xs[0], op, xs[1])
		for _, r := range xs[2:] { // eq a b c: a == b or a == c
			x = &binaryExpr{span: s, op: "or", l: x, r: cmp(xs[0], op, r)}
		}
		return x
	}
	if goMatch[name] || goRewrite[name] {
		if len(xs) < 2 {
			return unknown(name)
		}
		var x expr = cmp(xs[0], name, xs[1])
		if len(xs) > 2 { // sprig: text last (replace old new text); Go: text first
			x = &binaryExpr{span: s, op: "or", l: x, r: cmp(xs[len(xs)-1], name, xs[0])}
		}
		if goRewrite[name] {
			// the transformed text depends on the match
			x = &binaryExpr{span: s, op: "~", l: x, r: unknown(name)}
		}
		return x
	}
	if goTime[name] {
		return &callExpr{span: s, fn: &nameExpr{span: s, name: "strftime_now"}, args: xs}
	}
	if f, ok := goFilter[name]; ok && len(xs) > 0 {
		return &filterExpr{span: s, obj: xs[len(xs)-1], name: f, args: xs[:len(xs)-1]}
	}
	switch name {
	case "and", "or":
		if len(xs) == 0 {
			return unknown(name)
		}
		x := xs[0]
		for _, r := range xs[1:] {
			x = &binaryExpr{span: s, op: name, l: x, r: r}
		}
		return x
	case "not":
		if len(xs) == 1 {
			return &unaryExpr{span: s, op: "not", x: xs[0]}
		}
	case "index":
		if len(xs) == 0 {
			return unknown(name)
		}
		x := xs[0]
		if len(ns) > 1 && len(xs) == len(ns) && goSplitCall(ns[0]) {
			// an element of split text (index (split .Content " ") 0) is text
			return &filterExpr{span: s, obj: x, name: "first"}
		}
		if len(ns) > 1 && len(xs) == len(ns) {
			// index . "Messages": a field of the data
			if _, isDot := ns[0].(*parse.DotNode); isDot && dot.root {
				if k, ok := ns[1].(*parse.StringNode); ok {
					x = g.field(dot, []string{k.Text}, s)
					xs = append([]expr{x}, xs[2:]...)
					if len(xs) == 1 {
						return x
					}
				}
			}
		}
		for _, k := range xs[1:] {
			x = &indexExpr{span: s, obj: x, idx: k}
		}
		return x
	case "slice":
		if len(xs) == 0 {
			return unknown(name)
		}
		x := &sliceExpr{span: s, obj: xs[0]}
		if len(xs) > 1 {
			x.lo = xs[1]
		}
		if len(xs) > 2 {
			x.hi = xs[2]
		}
		if len(xs) > 3 {
			x.stride = xs[3]
		}
		return x
	case "printf", "sprintf", "Sprintf":
		if len(xs) == 0 {
			return unknown(name)
		}
		if x := g.printf(ns, xs, s); x != nil {
			return x
		}
		return &binaryExpr{span: s, op: "%", l: xs[0], r: &listExpr{span: s, items: xs[1:], tuple: true}}
	case "print", "println", "cat", "Sprint", "Sprintln":
		if len(xs) == 0 {
			return unknown(name)
		}
		x := xs[0]
		for _, r := range xs[1:] {
			x = &binaryExpr{span: s, op: "~", l: x, r: r}
		}
		return x
	case "default":
		if len(xs) > 0 {
			return &filterExpr{span: s, obj: xs[len(xs)-1], name: "default", args: xs[:len(xs)-1]}
		}
	case "ternary": // sprig: ternary "yes" "no" condition
		if len(xs) == 3 {
			return &condExpr{span: s, test: xs[2], a: xs[0], b: xs[1]}
		}
	case "coalesce", "list", "tuple", "array", "slice_of":
		return &listExpr{span: s, items: xs}
	case "dict":
		return &callExpr{span: s, fn: &nameExpr{span: s, name: "dict"}, args: xs}
	case "join":
		if len(xs) > 0 {
			return &filterExpr{span: s, obj: xs[len(xs)-1], name: "join", args: xs[:len(xs)-1]}
		}
	case "call":
		if len(xs) > 0 {
			return &callExpr{span: s, fn: xs[0], args: xs[1:]}
		}
	case "fail", "required":
		return &callExpr{span: s, fn: &nameExpr{span: s, name: "raise_exception"}, args: xs}
	}
	return unknown(name)
}

// goSplitCall reports a parenthesized call of a function that splits or rewrites text.
func goSplitCall(n parse.Node) bool {
	p, ok := n.(*parse.PipeNode)
	if !ok || len(p.Cmds) != 1 || len(p.Cmds[0].Args) == 0 {
		return false
	}
	id, ok := p.Cmds[0].Args[0].(*parse.IdentifierNode)
	return ok && goRewrite[id.Ident]
}

// printf translates printf with a format literal of plain verbs (%s, %v, %d, %q) into a
// concatenation of the literal pieces and the arguments, so that constants fold and the
// text of the format is seen as emitted text. It returns nil for other formats.
func (g *goTr) printf(ns []parse.Node, xs []expr, s span) expr {
	if len(ns) == 0 || len(xs) == 0 {
		return nil
	}
	f, ok := ns[0].(*parse.StringNode)
	if !ok || len(f.Text) > maxConstLen {
		return nil
	}
	fs := int(f.Pos)
	fspan := span{fs, fs + len(f.Quoted)}
	var parts []expr
	var lit strings.Builder
	arg := 1
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, &constExpr{span: fspan, val: lit.String()})
			lit.Reset()
		}
	}
	text := f.Text
	for i := 0; i < len(text); i++ {
		if text[i] != '%' {
			lit.WriteByte(text[i])
			continue
		}
		if i+1 >= len(text) {
			return nil
		}
		i++
		switch text[i] {
		case '%':
			lit.WriteByte('%')
		case 's', 'v', 'd', 'q':
			if arg >= len(xs) {
				return nil
			}
			flush()
			parts = append(parts, xs[arg])
			arg++
		default:
			return nil
		}
	}
	flush()
	if arg != len(xs) {
		return nil
	}
	if len(parts) == 0 {
		return &constExpr{span: fspan, val: ""}
	}
	x := parts[0]
	for _, r := range parts[1:] {
		x = &binaryExpr{span: s, op: "~", l: x, r: r}
	}
	if len(parts) == 1 {
		if _, ok := x.(*constExpr); !ok {
			// printf "%s" x is x as text
			x = &filterExpr{span: s, obj: x, name: "string"}
		}
	}
	return x
}

func (g *goTr) operand(n parse.Node, dot goBinding) expr {
	if n == nil || !g.count() {
		return &constExpr{val: nil}
	}
	p := int(n.Position())
	switch n := n.(type) {
	case *parse.StringNode:
		return &constExpr{span: span{p, p + len(n.Quoted)}, val: n.Text}
	case *parse.NumberNode:
		s := span{p, p + len(n.Text)}
		switch {
		case n.IsInt:
			return &constExpr{span: s, val: n.Int64}
		case n.IsFloat:
			return &constExpr{span: s, val: n.Float64}
		}
		return &constExpr{span: s, val: int64(0)}
	case *parse.BoolNode:
		e := p + 4
		if !n.True {
			e++
		}
		return &constExpr{span: span{p, e}, val: n.True}
	case *parse.NilNode:
		return &constExpr{span: span{p, p + 3}, val: nil}
	case *parse.DotNode:
		return g.field(dot, nil, span{p, p + 1})
	case *parse.FieldNode:
		return g.field(dot, n.Ident, span{p, g.extent(p, extOperand)})
	case *parse.VariableNode:
		return g.field(g.lookup(n.Ident[0]), n.Ident[1:], span{p, g.extent(p, extOperand)})
	case *parse.ChainNode:
		x := g.operand(n.Node, dot)
		st, _ := x.bounds()
		j := min(max(st, 0), len(g.src))
		for j > 0 && isSpace(g.src[j-1]) {
			j--
		}
		if j > 0 && g.src[j-1] == '(' {
			st = j - 1 // (pipeline).Field
		}
		s := span{st, g.extent(st, extOperand)}
		for _, f := range n.Field {
			x = &attrExpr{span: s, obj: x, attr: goFieldName(f)}
		}
		return x
	case *parse.PipeNode:
		return g.pipe(n, dot)
	case *parse.IdentifierNode:
		return g.call(n.Ident, nil, nil, span{p, p + len(n.Ident)}, dot)
	}
	return &constExpr{span: span{p, p}, val: nil}
}

// field is dot (or a $variable) followed by the fields idents.
func (g *goTr) field(dot goBinding, idents []string, s span) expr {
	var x expr
	if dot.root {
		if len(idents) == 0 {
			return &nameExpr{span: s, name: goRootVar}
		}
		f := idents[0]
		switch {
		case f == "Messages":
			x = &nameExpr{span: s, name: "messages"}
		case f == "System":
			g.usesSystem = true
			x = &nameExpr{span: s, name: goSystemVar}
		case goTextFields[f] != "":
			x = &nameExpr{span: s, name: goTextFields[f]}
		default:
			x = &nameExpr{span: s, name: "·root_" + goFieldName(f)}
		}
		idents = idents[1:]
	} else {
		x = &nameExpr{span: s, name: dot.name}
	}
	for _, id := range idents {
		x = &attrExpr{span: s, obj: x, attr: goFieldName(id)}
	}
	return x
}

// goFieldName maps a Go field name to the attribute name of a Jinja chat message:
// Content -> content, ToolCalls -> tool_calls, ID -> id.
func goFieldName(s string) string {
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]) || i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1])) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
