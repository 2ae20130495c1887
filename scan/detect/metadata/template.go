package metadata

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is a lexer and parser for the Jinja2 dialect of chat templates (the one that
// transformers and llama.cpp's minja accept). It builds an AST for analysis only: nothing
// here renders or executes a template. Limits keep the work bounded on hostile input.

const (
	// MaxTemplateSize is the largest template that is parsed; larger ones are reported as
	// unparsable (the string-level checks still run on them).
	MaxTemplateSize = 1 << 20
	maxNesting      = 96     // statement and expression nesting
	maxTokens       = 400000 // tokens in one template
)

// strictPanics makes the parser and analyzer re-raise unexpected panics instead of turning
// them into errors; tests set it to find bugs.
var strictPanics = false

// ParseError is a template that could not be parsed.
type ParseError struct {
	Offset int // byte offset in the template
	Line   int // 1-based line
	Msg    string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("template line %d: %s", e.Line, e.Msg)
}

type tokKind uint8

const (
	tkEOF tokKind = iota
	tkText
	tkVarBegin
	tkVarEnd
	tkBlockBegin
	tkBlockEnd
	tkName
	tkString
	tkInt
	tkFloat
	tkOp
)

func (k tokKind) String() string {
	return [...]string{"end of template", "text", "'{{'", "'}}'", "'{%'", "'%}'", "name", "string", "integer", "float", "operator"}[k]
}

type token struct {
	kind     tokKind
	val      string // text, name, decoded string, number or operator
	pos, end int    // byte range in the source
	trim     bool   // for begin/end tags: '-' whitespace control on that side
}

func (t token) describe() string {
	switch t.kind {
	case tkName, tkOp:
		return strconv.Quote(t.val)
	case tkString:
		return "string " + strconv.Quote(clip(t.val, 40))
	}
	return t.kind.String()
}

type lexer struct {
	src  string
	toks []token
}

func (lx *lexer) errf(pos int, format string, args ...any) *ParseError {
	return &ParseError{Offset: pos, Line: lineOf(lx.src, pos), Msg: fmt.Sprintf(format, args...)}
}

func lineOf(src string, pos int) int {
	if pos > len(src) {
		pos = len(src)
	}
	if pos < 0 {
		pos = 0
	}
	return strings.Count(src[:pos], "\n") + 1
}

// lex splits a template into tokens. Raw blocks become text; comments are dropped.
// Whitespace control ('-') and trim_blocks (the newline after a block tag is dropped, as
// transformers configures Jinja) are applied to the text tokens.
func lex(src string) ([]token, error) {
	lx := &lexer{src: src}
	pos := 0
	trimNext := false // the previous tag ended with '-': strip leading whitespace of the next text
	dropNL := false   // the previous tag was a block or comment: drop one leading newline
	for pos < len(src) {
		i := nextTagStart(src, pos)
		if i < 0 {
			i = len(src)
		}
		text := src[pos:i]
		lstrip := i+2 < len(src) && src[i+2] == '-'
		if trimNext {
			text = strings.TrimLeft(text, " \t\r\n")
		} else if dropNL {
			text = strings.TrimPrefix(strings.TrimPrefix(text, "\r"), "\n")
		}
		if lstrip && i < len(src) {
			text = strings.TrimRight(text, " \t\r\n")
		}
		if text != "" {
			lx.toks = append(lx.toks, token{kind: tkText, val: text, pos: pos, end: i})
		}
		if i >= len(src) {
			break
		}
		switch src[i+1] {
		case '#':
			end := strings.Index(src[i+2:], "#}")
			if end < 0 {
				return nil, lx.errf(i, "unterminated comment")
			}
			end += i + 2
			trimNext = end > i+2 && src[end-1] == '-'
			dropNL = true
			pos = end + 2
		case '{', '%':
			block := src[i+1] == '%'
			p := i + 2
			if p < len(src) && (src[p] == '-' || src[p] == '+') {
				p++
			}
			if block {
				if body, after, ok := rawBlock(src, p); ok {
					lx.toks = append(lx.toks, token{kind: tkText, val: body, pos: p, end: after})
					trimNext, dropNL = false, true
					pos = after
					continue
				}
			}
			kind := tkVarBegin
			if block {
				kind = tkBlockBegin
			}
			lx.toks = append(lx.toks, token{kind: kind, pos: i, end: p, trim: lstrip})
			np, trim, err := lx.inside(p, block)
			if err != nil {
				return nil, err
			}
			trimNext = trim
			dropNL = block
			pos = np
		}
		if len(lx.toks) > maxTokens {
			return nil, lx.errf(pos, "template has more than %d tokens", maxTokens)
		}
	}
	lx.toks = append(lx.toks, token{kind: tkEOF, pos: len(src), end: len(src)})
	return lx.toks, nil
}

// nextTagStart returns the offset of the next "{{", "{%" or "{#" at or after pos, or -1.
func nextTagStart(src string, pos int) int {
	for {
		j := strings.IndexByte(src[pos:], '{')
		if j < 0 || pos+j+1 >= len(src) {
			return -1
		}
		j += pos
		if c := src[j+1]; c == '{' || c == '%' || c == '#' {
			return j
		}
		pos = j + 1
	}
}

// rawBlock recognises "raw -?%}" at p (just after "{%" and its whitespace control) and
// returns the verbatim text up to the matching endraw tag and the offset after that tag.
func rawBlock(src string, p int) (body string, after int, ok bool) {
	q := skipSpace(src, p)
	if !strings.HasPrefix(src[q:], "raw") {
		return "", 0, false
	}
	q = skipSpace(src, q+3)
	if strings.HasPrefix(src[q:], "-%}") {
		q += 3
	} else if strings.HasPrefix(src[q:], "%}") {
		q += 2
	} else {
		return "", 0, false
	}
	for s := q; ; {
		j := strings.Index(src[s:], "{%")
		if j < 0 {
			return "", 0, false
		}
		j += s
		r := j + 2
		if r < len(src) && (src[r] == '-' || src[r] == '+') {
			r++
		}
		r = skipSpace(src, r)
		if strings.HasPrefix(src[r:], "endraw") {
			r = skipSpace(src, r+6)
			if strings.HasPrefix(src[r:], "-%}") {
				return src[q:j], r + 3, true
			}
			if strings.HasPrefix(src[r:], "%}") {
				return src[q:j], r + 2, true
			}
		}
		s = j + 2
	}
}

func skipSpace(src string, p int) int {
	for p < len(src) && (src[p] == ' ' || src[p] == '\t' || src[p] == '\n' || src[p] == '\r') {
		p++
	}
	return p
}

var operators = []string{"//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "<", ">", "=", ".", ",", ":", "|", "(", ")", "[", "]", "{", "}", ";"}

// inside tokenizes the inside of a tag from p until its end delimiter (which is only
// recognised while brackets are balanced, as in Jinja). It returns the position after the
// tag and whether the tag ended with '-'.
func (lx *lexer) inside(p int, block bool) (int, bool, error) {
	src := lx.src
	endDelim := "}}"
	endKind := tkVarEnd
	if block {
		endDelim, endKind = "%}", tkBlockEnd
	}
	var stack []byte
	for {
		p = skipSpace(src, p)
		if p >= len(src) {
			return 0, false, lx.errf(p, "unterminated tag: missing %q", endDelim)
		}
		if len(stack) == 0 {
			if (src[p] == '-' || src[p] == '+') && strings.HasPrefix(src[p+1:], endDelim) {
				lx.toks = append(lx.toks, token{kind: endKind, pos: p, end: p + 3, trim: src[p] == '-'})
				return p + 3, src[p] == '-', nil
			}
			if strings.HasPrefix(src[p:], endDelim) {
				lx.toks = append(lx.toks, token{kind: endKind, pos: p, end: p + 2})
				return p + 2, false, nil
			}
		}
		if len(lx.toks) > maxTokens {
			return 0, false, lx.errf(p, "template has more than %d tokens", maxTokens)
		}
		c := src[p]
		switch {
		case c == '\'' || c == '"':
			s, end, err := lx.str(p)
			if err != nil {
				return 0, false, err
			}
			lx.toks = append(lx.toks, token{kind: tkString, val: s, pos: p, end: end})
			p = end
		case c >= '0' && c <= '9':
			end, isFloat := number(src, p)
			k := tkInt
			if isFloat {
				k = tkFloat
			}
			lx.toks = append(lx.toks, token{kind: k, val: strings.ReplaceAll(src[p:end], "_", ""), pos: p, end: end})
			p = end
		case isIdentStart(src, p):
			end := p
			for end < len(src) {
				r, n := utf8.DecodeRuneInString(src[end:])
				if !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
					break
				}
				end += n
			}
			lx.toks = append(lx.toks, token{kind: tkName, val: src[p:end], pos: p, end: end})
			p = end
		default:
			op := ""
			for _, o := range operators {
				if strings.HasPrefix(src[p:], o) {
					op = o
					break
				}
			}
			if op == "" {
				r, _ := utf8.DecodeRuneInString(src[p:])
				return 0, false, lx.errf(p, "unexpected character %q in tag", r)
			}
			switch op {
			case "(", "[", "{":
				stack = append(stack, op[0])
			case ")", "]", "}":
				want := map[string]byte{")": '(', "]": '[', "}": '{'}[op]
				if len(stack) == 0 || stack[len(stack)-1] != want {
					return 0, false, lx.errf(p, "unbalanced %q", op)
				}
				stack = stack[:len(stack)-1]
			}
			lx.toks = append(lx.toks, token{kind: tkOp, val: op, pos: p, end: p + len(op)})
			p += len(op)
		}
	}
}

func isIdentStart(src string, p int) bool {
	r, _ := utf8.DecodeRuneInString(src[p:])
	return r == '_' || unicode.IsLetter(r)
}

func number(src string, p int) (end int, isFloat bool) {
	end = p
	digits := func() {
		for end < len(src) && (src[end] >= '0' && src[end] <= '9' || src[end] == '_') {
			end++
		}
	}
	digits()
	if end+1 < len(src) && src[end] == '.' && src[end+1] >= '0' && src[end+1] <= '9' {
		isFloat = true
		end++
		digits()
	}
	if end < len(src) && (src[end] == 'e' || src[end] == 'E') {
		q := end + 1
		if q < len(src) && (src[q] == '+' || src[q] == '-') {
			q++
		}
		if q < len(src) && src[q] >= '0' && src[q] <= '9' {
			isFloat = true
			end = q
			digits()
		}
	}
	return end, isFloat
}

// str decodes a string literal at p with Python's escapes.
func (lx *lexer) str(p int) (string, int, error) {
	src := lx.src
	q := src[p]
	var b strings.Builder
	i := p + 1
	for i < len(src) {
		c := src[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c == '\\' && i+1 < len(src):
			i++
			e := src[i]
			i++
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\', '\'', '"':
				b.WriteByte(e)
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'v':
				b.WriteByte('\v')
			case '\n':
			case 'x', 'u', 'U':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if i+n <= len(src) {
					if v, err := strconv.ParseUint(src[i:i+n], 16, 32); err == nil {
						if e == 'x' {
							b.WriteRune(rune(v))
						} else {
							b.WriteRune(rune(v))
						}
						i += n
						break
					}
				}
				b.WriteByte('\\')
				b.WriteByte(e)
			case '0', '1', '2', '3', '4', '5', '6', '7':
				j := i - 1
				for j < len(src) && j < i+2 && src[j] >= '0' && src[j] <= '7' {
					j++
				}
				v, _ := strconv.ParseUint(src[i-1:j], 8, 32)
				b.WriteRune(rune(v))
				i = j
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, lx.errf(p, "unterminated string")
}

// ---- AST ----

type span struct{ s, e int }

func (sp span) bounds() (int, int) { return sp.s, sp.e }

// Expressions.
type expr interface{ bounds() (int, int) }

type (
	nameExpr struct {
		span
		name string
	}
	constExpr struct {
		span
		val any // string, int64, float64, bool or nil
	}
	listExpr struct {
		span
		items []expr
		tuple bool
	}
	dictExpr struct {
		span
		keys, vals []expr
	}
	attrExpr struct {
		span
		obj  expr
		attr string
	}
	indexExpr struct {
		span
		obj, idx expr
	}
	sliceExpr struct {
		span
		obj            expr
		lo, hi, stride expr
	}
	kwarg struct {
		name string
		val  expr
	}
	callExpr struct {
		span
		fn     expr
		args   []expr
		kwargs []kwarg
	}
	filterExpr struct {
		span
		obj    expr // nil inside a filter block or a set block's filter
		name   string
		args   []expr
		kwargs []kwarg
	}
	testExpr struct {
		span
		obj    expr
		name   string
		args   []expr
		negate bool
	}
	unaryExpr struct {
		span
		op string // "not", "-", "+"
		x  expr
	}
	binaryExpr struct {
		span
		op   string // "and", "or", "+", "-", "*", "/", "//", "%", "**", "~"
		l, r expr
	}
	compareExpr struct {
		span
		first expr
		ops   []string // "==", "!=", "<", "<=", ">", ">=", "in", "not in"
		rest  []expr
	}
	condExpr struct {
		span
		test, a, b expr // b may be nil
	}
)

// Statements.
type stmt interface{}

type (
	textStmt struct {
		pos  int
		text string
	}
	outputStmt struct {
		pos int
		x   expr
	}
	ifBranch struct {
		pos  int
		cond expr
		body []stmt
	}
	ifStmt struct {
		branches []ifBranch
		els      []stmt
	}
	forStmt struct {
		pos     int
		targets []string
		iter    expr
		filter  expr
		body    []stmt
		els     []stmt
	}
	setStmt struct {
		pos     int
		targets []expr // nameExpr or attrExpr
		value   expr   // nil for a block set
		body    []stmt // block set
		filters []*filterExpr
	}
	macroStmt struct {
		pos      int
		name     string
		params   []string
		defaults []expr // aligned with params; nil when none
		body     []stmt
	}
	callBlockStmt struct {
		pos    int
		params []string
		call   expr
		body   []stmt
	}
	blockStmt struct { // generation, block, filter, with, autoescape, trans, ...
		pos     int
		name    string
		assigns []setStmt // with
		filters []*filterExpr
		body    []stmt
	}
	includeStmt struct { // include, import, from, extends
		pos    int
		kind   string
		target expr
	}
	doStmt struct {
		pos int
		x   expr
	}
	loopCtlStmt struct {
		pos  int
		kind string // break or continue
	}
)

// Template is a parsed chat template.
type Template struct {
	src     string
	body    []stmt
	nodes   int
	hazards []Hazard // found syntactically, reachable or not
}

type parser struct {
	src     string
	toks    []token
	i       int
	depth   int
	nodes   int
	hazards []Hazard
}

// internal reports names that only a sandbox escape uses: attributes starting with '_'.
func internal(name string) bool { return strings.HasPrefix(name, "_") || dangerousAttrs[name] }

func (p *parser) hazard(pos int, detail string) {
	if len(p.hazards) < 32 {
		p.hazards = append(p.hazards, Hazard{Kind: "attribute", Line: lineOf(p.src, pos), Detail: detail})
	}
}

func (p *parser) errf(pos int, format string, args ...any) *ParseError {
	return &ParseError{Offset: pos, Line: lineOf(p.src, pos), Msg: fmt.Sprintf(format, args...)}
}

// parseTemplate lexes and parses src. It never panics on any input; errors are *ParseError.
func parseTemplate(src string) (t *Template, err error) {
	if len(src) > MaxTemplateSize {
		return nil, &ParseError{Line: 1, Msg: fmt.Sprintf("template of %d bytes is larger than the %d-byte limit", len(src), MaxTemplateSize)}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks}
	defer func() {
		if r := recover(); r != nil {
			pe, ok := r.(*ParseError)
			if !ok {
				if strictPanics {
					panic(r)
				}
				pe = &ParseError{Line: 1, Msg: fmt.Sprintf("internal parser error: %v", r)}
			}
			t, err = nil, pe
		}
	}()
	body, end := p.body(nil)
	if end != "" {
		panic(p.errf(p.peek().pos, "unexpected %q", end))
	}
	return &Template{src: src, body: body, nodes: p.nodes, hazards: p.hazards}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tkEOF {
		p.i++
	}
	return t
}

func (p *parser) isOp(op string) bool {
	t := p.peek()
	return t.kind == tkOp && t.val == op
}

func (p *parser) isName(name string) bool {
	t := p.peek()
	return t.kind == tkName && t.val == name
}

func (p *parser) acceptOp(op string) bool {
	if p.isOp(op) {
		p.i++
		return true
	}
	return false
}

func (p *parser) acceptName(name string) bool {
	if p.isName(name) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expectOp(op string) token {
	if !p.isOp(op) {
		t := p.peek()
		panic(p.errf(t.pos, "expected %q, found %s", op, t.describe()))
	}
	return p.next()
}

func (p *parser) expectName() token {
	t := p.peek()
	if t.kind != tkName {
		panic(p.errf(t.pos, "expected a name, found %s", t.describe()))
	}
	return p.next()
}

func (p *parser) expectKind(k tokKind) token {
	t := p.peek()
	if t.kind != k {
		panic(p.errf(t.pos, "expected %s, found %s", k, t.describe()))
	}
	return p.next()
}

func (p *parser) enter(pos int) {
	p.depth++
	p.nodes++
	if p.depth > maxNesting {
		panic(p.errf(pos, "nesting deeper than %d", maxNesting))
	}
}

func (p *parser) leave() { p.depth-- }

// body parses statements until a block tag whose name is in ends (consumed: the tag name
// is returned, the rest of the tag is left to the caller) or the end of the template.
func (p *parser) body(ends []string) ([]stmt, string) {
	var out []stmt
	for {
		t := p.peek()
		switch t.kind {
		case tkEOF:
			if len(ends) > 0 {
				panic(p.errf(t.pos, "unexpected end of template: missing {%% %s %%}", ends[len(ends)-1]))
			}
			return out, ""
		case tkText:
			p.next()
			p.nodes++
			out = append(out, &textStmt{pos: t.pos, text: t.val})
		case tkVarBegin:
			p.next()
			x := p.expr()
			p.expectKind(tkVarEnd)
			out = append(out, &outputStmt{pos: t.pos, x: x})
		case tkBlockBegin:
			p.next()
			nt := p.expectName()
			for _, e := range ends {
				if nt.val == e {
					return out, nt.val
				}
			}
			if s := p.statement(nt); s != nil {
				out = append(out, s)
			}
		default:
			panic(p.errf(t.pos, "unexpected %s", t.describe()))
		}
	}
}

func (p *parser) endTag() { p.expectKind(tkBlockEnd) }

func (p *parser) statement(nt token) stmt {
	p.enter(nt.pos)
	defer p.leave()
	switch nt.val {
	case "if":
		s := &ifStmt{}
		cond := p.expr()
		p.endTag()
		pos := nt.pos
		for {
			body, end := p.body([]string{"elif", "else", "endif"})
			s.branches = append(s.branches, ifBranch{pos: pos, cond: cond, body: body})
			switch end {
			case "elif":
				pos = p.toks[p.i-1].pos
				cond = p.expr()
				p.endTag()
				continue
			case "else":
				p.endTag()
				s.els, _ = p.body([]string{"endif"})
				p.endTag()
			default:
				p.endTag()
			}
			return s
		}
	case "for":
		s := &forStmt{pos: nt.pos}
		paren := p.acceptOp("(")
		for {
			s.targets = append(s.targets, p.expectName().val)
			if !p.acceptOp(",") || p.isOp(")") {
				break
			}
		}
		if paren {
			p.expectOp(")")
		}
		if !p.acceptName("in") {
			panic(p.errf(p.peek().pos, "expected 'in' in for loop, found %s", p.peek().describe()))
		}
		s.iter = p.orExpr()
		if p.acceptName("if") {
			s.filter = p.expr()
		}
		p.acceptName("recursive")
		p.endTag()
		body, end := p.body([]string{"else", "endfor"})
		s.body = body
		p.endTag()
		if end == "else" {
			s.els, _ = p.body([]string{"endfor"})
			p.endTag()
		}
		return s
	case "set":
		s := &setStmt{pos: nt.pos}
		for {
			n := p.expectName()
			var target expr = &nameExpr{span{n.pos, n.end}, n.val}
			for p.acceptOp(".") {
				a := p.expectName()
				target = &attrExpr{span{n.pos, a.end}, target, a.val}
			}
			s.targets = append(s.targets, target)
			if !p.acceptOp(",") {
				break
			}
		}
		if p.acceptOp("=") {
			s.value = p.tupleExpr()
			p.endTag()
			return s
		}
		for p.acceptOp("|") {
			s.filters = append(s.filters, p.filterCall(nil, p.peek().pos))
		}
		p.endTag()
		s.body, _ = p.body([]string{"endset"})
		p.endTag()
		return s
	case "macro":
		s := &macroStmt{pos: nt.pos, name: p.expectName().val}
		p.expectOp("(")
		for !p.isOp(")") {
			s.params = append(s.params, p.expectName().val)
			var def expr
			if p.acceptOp("=") {
				def = p.expr()
			}
			s.defaults = append(s.defaults, def)
			if !p.acceptOp(",") {
				break
			}
		}
		p.expectOp(")")
		p.endTag()
		s.body, _ = p.body([]string{"endmacro"})
		p.acceptName(s.name)
		p.endTag()
		return s
	case "call":
		s := &callBlockStmt{pos: nt.pos}
		if p.acceptOp("(") {
			for !p.isOp(")") {
				s.params = append(s.params, p.expectName().val)
				if p.acceptOp("=") {
					p.expr()
				}
				if !p.acceptOp(",") {
					break
				}
			}
			p.expectOp(")")
		}
		s.call = p.expr()
		p.endTag()
		s.body, _ = p.body([]string{"endcall"})
		p.endTag()
		return s
	case "filter":
		s := &blockStmt{pos: nt.pos, name: "filter"}
		s.filters = append(s.filters, p.filterCall(nil, p.peek().pos))
		for p.acceptOp("|") {
			s.filters = append(s.filters, p.filterCall(nil, p.peek().pos))
		}
		p.endTag()
		s.body, _ = p.body([]string{"endfilter"})
		p.endTag()
		return s
	case "with":
		s := &blockStmt{pos: nt.pos, name: "with"}
		for p.peek().kind == tkName {
			n := p.next()
			p.expectOp("=")
			s.assigns = append(s.assigns, setStmt{pos: n.pos, targets: []expr{&nameExpr{span{n.pos, n.end}, n.val}}, value: p.expr()})
			if !p.acceptOp(",") {
				break
			}
		}
		p.endTag()
		s.body, _ = p.body([]string{"endwith"})
		p.endTag()
		return s
	case "generation", "autoescape", "block", "trans", "scope":
		s := &blockStmt{pos: nt.pos, name: nt.val}
		for p.peek().kind != tkBlockEnd && p.peek().kind != tkEOF {
			p.next() // block name, autoescape flag, trans variables
		}
		p.endTag()
		s.body, _ = p.body([]string{"end" + nt.val})
		for p.peek().kind == tkName {
			p.next()
		}
		p.endTag()
		return s
	case "include", "import", "extends", "from":
		s := &includeStmt{pos: nt.pos, kind: nt.val, target: p.expr()}
		for p.peek().kind != tkBlockEnd && p.peek().kind != tkEOF {
			p.next() // "as name", "import a, b", "ignore missing", "with context"
		}
		p.endTag()
		return s
	case "do":
		s := &doStmt{pos: nt.pos, x: p.tupleExpr()}
		p.endTag()
		return s
	case "break", "continue":
		p.endTag()
		return &loopCtlStmt{pos: nt.pos, kind: nt.val}
	}
	panic(p.errf(nt.pos, "unknown tag %q", nt.val))
}

// ---- expressions ----

// tupleExpr parses an expression or a bare tuple ("a, b").
func (p *parser) tupleExpr() expr {
	first := p.expr()
	if !p.isOp(",") {
		return first
	}
	items := []expr{first}
	for p.acceptOp(",") {
		if t := p.peek(); t.kind == tkBlockEnd || t.kind == tkVarEnd {
			break
		}
		items = append(items, p.expr())
	}
	s, _ := first.bounds()
	_, e := items[len(items)-1].bounds()
	return &listExpr{span{s, e}, items, true}
}

func (p *parser) expr() expr {
	t := p.peek()
	p.enter(t.pos)
	defer p.leave()
	x := p.orExpr()
	for p.isName("if") {
		p.next()
		test := p.orExpr()
		var b expr
		if p.acceptName("else") {
			b = p.expr()
		}
		s, _ := x.bounds()
		e := p.toks[p.i-1].end
		x = &condExpr{span{s, e}, test, x, b}
	}
	return x
}

func (p *parser) orExpr() expr {
	x := p.andExpr()
	for p.acceptName("or") {
		r := p.andExpr()
		x = p.bin("or", x, r)
	}
	return x
}

func (p *parser) andExpr() expr {
	x := p.notExpr()
	for p.acceptName("and") {
		r := p.notExpr()
		x = p.bin("and", x, r)
	}
	return x
}

func (p *parser) bin(op string, l, r expr) expr {
	s, _ := l.bounds()
	_, e := r.bounds()
	return &binaryExpr{span{s, e}, op, l, r}
}

func (p *parser) notExpr() expr {
	if p.isName("not") {
		t := p.next()
		p.enter(t.pos)
		defer p.leave()
		x := p.notExpr()
		_, e := x.bounds()
		return &unaryExpr{span{t.pos, e}, "not", x}
	}
	return p.compare()
}

func (p *parser) compare() expr {
	x := p.math1()
	var c *compareExpr
	for {
		t := p.peek()
		op := ""
		switch {
		case t.kind == tkOp && (t.val == "==" || t.val == "!=" || t.val == "<" || t.val == "<=" || t.val == ">" || t.val == ">="):
			op = t.val
			p.next()
		case t.kind == tkName && t.val == "in":
			op = "in"
			p.next()
		case t.kind == tkName && t.val == "not" && p.toks[p.i+1].kind == tkName && p.toks[p.i+1].val == "in":
			op = "not in"
			p.i += 2
		default:
			if c != nil {
				return c
			}
			return x
		}
		r := p.math1()
		if c == nil {
			s, _ := x.bounds()
			c = &compareExpr{span: span{s, 0}, first: x}
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, r)
		_, c.e = r.bounds()
	}
}

func (p *parser) math1() expr {
	x := p.concat()
	for p.isOp("+") || p.isOp("-") {
		op := p.next().val
		x = p.bin(op, x, p.concat())
	}
	return x
}

func (p *parser) concat() expr {
	x := p.math2()
	for p.acceptOp("~") {
		x = p.bin("~", x, p.math2())
	}
	return x
}

func (p *parser) math2() expr {
	x := p.pow()
	for p.isOp("*") || p.isOp("/") || p.isOp("//") || p.isOp("%") {
		op := p.next().val
		x = p.bin(op, x, p.pow())
	}
	return x
}

func (p *parser) pow() expr {
	x := p.unary()
	for p.acceptOp("**") {
		x = p.bin("**", x, p.unary())
	}
	return x
}

func (p *parser) unary() expr {
	t := p.peek()
	if t.kind == tkOp && (t.val == "-" || t.val == "+") {
		p.next()
		p.enter(t.pos)
		defer p.leave()
		x := p.unary()
		_, e := x.bounds()
		return &unaryExpr{span{t.pos, e}, t.val, x}
	}
	x := p.primary()
	x = p.postfix(x)
	return p.filters(x)
}

func (p *parser) primary() expr {
	t := p.next()
	switch t.kind {
	case tkName:
		switch t.val {
		case "true", "True":
			return &constExpr{span{t.pos, t.end}, true}
		case "false", "False":
			return &constExpr{span{t.pos, t.end}, false}
		case "none", "None":
			return &constExpr{span{t.pos, t.end}, nil}
		}
		return &nameExpr{span{t.pos, t.end}, t.val}
	case tkString:
		s, e := t.val, t.end
		for p.peek().kind == tkString { // adjacent literals concatenate
			n := p.next()
			s += n.val
			e = n.end
		}
		return &constExpr{span{t.pos, e}, s}
	case tkInt:
		v, err := strconv.ParseInt(t.val, 10, 64)
		if err != nil {
			f, _ := strconv.ParseFloat(t.val, 64)
			return &constExpr{span{t.pos, t.end}, f}
		}
		return &constExpr{span{t.pos, t.end}, v}
	case tkFloat:
		f, _ := strconv.ParseFloat(t.val, 64)
		return &constExpr{span{t.pos, t.end}, f}
	case tkOp:
		p.enter(t.pos)
		defer p.leave()
		switch t.val {
		case "(":
			if p.isOp(")") {
				e := p.next().end
				return &listExpr{span{t.pos, e}, nil, true}
			}
			x := p.expr()
			if p.isOp(",") {
				items := []expr{x}
				for p.acceptOp(",") {
					if p.isOp(")") {
						break
					}
					items = append(items, p.expr())
				}
				e := p.expectOp(")").end
				return &listExpr{span{t.pos, e}, items, true}
			}
			p.expectOp(")")
			return x
		case "[":
			l := &listExpr{span: span{t.pos, 0}}
			for !p.isOp("]") {
				l.items = append(l.items, p.expr())
				if !p.acceptOp(",") {
					break
				}
			}
			l.e = p.expectOp("]").end
			return l
		case "{":
			d := &dictExpr{span: span{t.pos, 0}}
			for !p.isOp("}") {
				d.keys = append(d.keys, p.expr())
				p.expectOp(":")
				d.vals = append(d.vals, p.expr())
				if !p.acceptOp(",") {
					break
				}
			}
			d.e = p.expectOp("}").end
			return d
		}
	}
	panic(p.errf(t.pos, "unexpected %s in expression", t.describe()))
}

func (p *parser) postfix(x expr) expr {
	for {
		s, _ := x.bounds()
		switch {
		case p.isOp("."):
			p.next()
			t := p.next()
			if t.kind != tkName && t.kind != tkInt {
				panic(p.errf(t.pos, "expected an attribute name after '.', found %s", t.describe()))
			}
			if internal(t.val) {
				p.hazard(t.pos, fmt.Sprintf("access to the Python internal %q", t.val))
			}
			x = &attrExpr{span{s, t.end}, x, t.val}
		case p.isOp("["):
			p.next()
			p.enter(s)
			x = p.subscript(x, s)
			p.leave()
		case p.isOp("("):
			p.next()
			p.enter(s)
			c := &callExpr{span: span{s, 0}, fn: x}
			c.args, c.kwargs = p.args()
			c.e = p.toks[p.i-1].end
			x = c
			p.leave()
		default:
			return x
		}
	}
}

func (p *parser) subscript(x expr, s int) expr {
	var parts [3]expr
	n := 0
	isSlice := false
	for {
		if p.isOp(":") {
			isSlice = true
			p.next()
			n++
			if n > 2 {
				panic(p.errf(p.peek().pos, "too many ':' in slice"))
			}
			continue
		}
		if p.isOp("]") {
			break
		}
		if parts[n] != nil {
			panic(p.errf(p.peek().pos, "expected ':' or ']', found %s", p.peek().describe()))
		}
		parts[n] = p.expr()
	}
	e := p.expectOp("]").end
	if isSlice {
		return &sliceExpr{span{s, e}, x, parts[0], parts[1], parts[2]}
	}
	if parts[0] == nil {
		panic(p.errf(e-1, "empty subscript"))
	}
	if c, ok := parts[0].(*constExpr); ok {
		if k, ok := c.val.(string); ok && internal(k) {
			p.hazard(c.s, fmt.Sprintf("access to the Python internal %q", k))
		}
	}
	return &indexExpr{span{s, e}, x, parts[0]}
}

// args parses call arguments after '(' up to and including ')'.
func (p *parser) args() ([]expr, []kwarg) {
	var args []expr
	var kws []kwarg
	for !p.isOp(")") {
		p.acceptOp("*")
		p.acceptOp("**")
		if t := p.peek(); t.kind == tkName && p.toks[p.i+1].kind == tkOp && p.toks[p.i+1].val == "=" {
			p.i += 2
			kws = append(kws, kwarg{t.val, p.expr()})
		} else {
			args = append(args, p.expr())
		}
		if !p.acceptOp(",") {
			break
		}
	}
	p.expectOp(")")
	return args, kws
}

// filters parses "| filter(args)" chains and "is [not] test [arg]" tests after x.
func (p *parser) filters(x expr) expr {
	for {
		s, _ := x.bounds()
		switch {
		case p.isOp("|"):
			p.next()
			x = p.filterCall(x, s)
		case p.isName("is"):
			p.next()
			neg := p.acceptName("not")
			n := p.expectName()
			name := n.val
			for p.isOp(".") {
				p.next()
				name += "." + p.expectName().val
			}
			t := &testExpr{span: span{s, n.end}, obj: x, name: name, negate: neg}
			if p.acceptOp("(") {
				t.args, _ = p.args()
			} else if nt := p.peek(); p.testArgFollows(nt) {
				a := p.primary()
				a = p.postfix(a)
				t.args = []expr{a}
			}
			t.e = p.toks[p.i-1].end
			x = t
		default:
			return x
		}
	}
}

// testArgFollows reports whether a token starts the single argument of a test written
// without parentheses ("is divisibleby 3", "is sameas false").
func (p *parser) testArgFollows(t token) bool {
	switch t.kind {
	case tkString, tkInt, tkFloat:
		return true
	case tkName:
		switch t.val {
		case "else", "or", "and", "is", "in", "not", "if", "recursive":
			return false
		}
		return true
	case tkOp:
		return t.val == "[" || t.val == "{" || t.val == "-"
	}
	return false
}

func (p *parser) filterCall(x expr, s int) *filterExpr {
	n := p.expectName()
	name := n.val
	for p.isOp(".") {
		p.next()
		name += "." + p.expectName().val
	}
	f := &filterExpr{span: span{s, n.end}, obj: x, name: name}
	if p.acceptOp("(") {
		f.args, f.kwargs = p.args()
		f.e = p.toks[p.i-1].end
	}
	args := f.args
	for _, kw := range f.kwargs {
		if kw.name == "attribute" {
			args = append(args, kw.val)
		}
	}
	if name == "attr" || name == "map" || name == "selectattr" || name == "rejectattr" || name == "sort" || name == "groupby" {
		for _, a := range args {
			if c, ok := a.(*constExpr); ok {
				if k, ok := c.val.(string); ok && internal(k) {
					p.hazard(c.s, fmt.Sprintf("access to the Python internal %q through |%s", k, name))
				}
			}
		}
	}
	return f
}

// ---- helpers ----

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
