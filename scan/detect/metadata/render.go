package metadata

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// This file renders a chat template the way transformers' apply_chat_template does
// (Jinja2's ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the
// loopcontrols extension; raise_exception and strftime_now as globals; its own tojson),
// by interpreting the AST built by parseTemplate. Nothing is executed: values are a small
// model of the Python objects a template can reach (None, bool, int, float, str, list,
// tuple, dict, Jinja's Undefined, namespace, macros, loop), every operation is bounded
// (evaluation steps, output and string size, macro recursion) and a template that goes
// beyond the model (an unknown filter, an include, a mutating method) fails with an error
// naming the construct and its offset instead of being approximated.

// ChatMessage is one turn of a conversation.
type ChatMessage struct{ Role, Content string }

// RenderError is a template that could not be rendered.
type RenderError struct {
	Offset int // byte offset in the template (after newline normalisation)
	Line   int // 1-based line
	Msg    string
	Raised bool // the template called raise_exception (it rejected the conversation)
}

func (e *RenderError) Error() string {
	return fmt.Sprintf("template offset %d (line %d): %s", e.Offset, e.Line, e.Msg)
}

const (
	maxRenderOutput = 1 << 20   // bytes of output, and of any one string
	maxRenderSteps  = 1_000_000 // evaluation steps
	maxRenderDepth  = 64        // nested macro calls
	maxValueDepth   = 200       // nesting of lists and dicts walked by repr, tojson, ==
	maxListLen      = 1 << 20   // items of any one list
	maxRange        = 100000    // Jinja's sandbox MAX_RANGE
)

// renderNow is the fixed clock of strftime_now, so that renders are deterministic.
var renderNow = time.Date(2026, time.December, 3, 0, 0, 0, 0, time.UTC)

// RenderChat renders a chat template as transformers' apply_chat_template does with
// messages, add_generation_prompt, bos_token and eos_token (tools and documents are None,
// as transformers passes them when none are given; nothing else is defined), without
// executing anything: a sandboxed evaluator over the parsed template. It fails (never
// panics, never hangs) on templates it cannot evaluate, with an error naming the
// construct and its byte offset (*ParseError or *RenderError).
func RenderChat(template string, msgs []ChatMessage, addGenerationPrompt bool, bos, eos string) (out string, err error) {
	orig := normalizeNewlines(template)
	src, inserted := keepNewlineAfterPlus(orig)
	// errors carry offsets and lines of the template as given (after newline normalisation)
	origPos := func(pos int) int {
		n := 0
		for k, at := range inserted {
			if at+k < pos {
				n++
			}
		}
		return pos - n
	}
	defer func() {
		switch e := err.(type) {
		case *ParseError:
			if len(inserted) > 0 {
				e.Offset = origPos(e.Offset)
				e.Line = lineOf(orig, e.Offset)
			}
		case *RenderError:
			e.Offset = origPos(e.Offset)
			e.Line = lineOf(orig, e.Offset)
		}
	}()
	t, err := parseTemplate(src)
	if err != nil {
		return "", err
	}
	r := &renderer{src: src, texts: map[*textStmt]string{}}
	list := make([]any, len(msgs))
	for i, m := range msgs {
		d := newDict()
		d.set("role", m.Role)
		d.set("content", m.Content)
		list[i] = d
	}
	root := newRScope(nil)
	for name, fn := range renderGlobals {
		root.vars[name] = &jFunc{name: name, fn: fn}
	}
	root.vars["messages"] = &jList{items: list}
	root.vars["add_generation_prompt"] = addGenerationPrompt
	root.vars["bos_token"] = bos
	root.vars["eos_token"] = eos
	root.vars["tools"] = nil
	root.vars["documents"] = nil
	r.out = &strings.Builder{}
	defer func() {
		if p := recover(); p != nil {
			re, ok := p.(*RenderError)
			if !ok {
				if strictPanics {
					panic(p)
				}
				re = &RenderError{Offset: r.pos, Line: lineOf(src, r.pos), Msg: fmt.Sprintf("internal renderer error: %v", p)}
			}
			out, err = "", re
		}
	}()
	r.exec(t.body, root)
	return r.out.String(), nil
}

// normalizeNewlines does what Jinja's lexer does to the source: \r\n and \r become \n,
// and one trailing newline is dropped (keep_trailing_newline is off).
func normalizeNewlines(s string) string {
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	return strings.TrimSuffix(s, "\n")
}

// keepNewlineAfterPlus makes the lexer keep the newline after a "+%}" or "+#}" tag end,
// which disables trim_blocks for that tag: the lexer always drops one newline after a
// block or comment, so one more is inserted. It returns the offsets (in s) of the
// insertions.
func keepNewlineAfterPlus(s string) (string, []int) {
	if !strings.Contains(s, "+%}\n") && !strings.Contains(s, "+#}\n") {
		return s, nil
	}
	toks, err := lex(s)
	if err != nil {
		return s, nil
	}
	var ins []int
	prevEnd := 0
	for _, t := range toks {
		if t.kind == tkBlockEnd && s[t.pos] == '+' && strings.HasPrefix(s[t.end:], "\n") {
			ins = append(ins, t.end)
		}
		for p := prevEnd; p < t.pos; { // comments sit between tokens
			i := strings.Index(s[p:t.pos], "{#")
			if i < 0 {
				break
			}
			i += p
			e := strings.Index(s[i+2:], "#}")
			if e < 0 {
				break
			}
			e += i + 2
			if s[e-1] == '+' && strings.HasPrefix(s[e+2:], "\n") {
				ins = append(ins, e+2)
			}
			p = e + 2
		}
		prevEnd = t.end
	}
	if len(ins) == 0 {
		return s, nil
	}
	sort.Ints(ins)
	var b strings.Builder
	last := 0
	for _, at := range ins {
		b.WriteString(s[last:at])
		b.WriteByte('\n')
		last = at
	}
	b.WriteString(s[last:])
	return b.String(), ins
}

// ---- values ----

type (
	jUndef struct{ hint string } // Jinja's (default) Undefined
	jList  struct {
		items []any
		tuple bool
	}
	jDict struct {
		keys, vals []any
		index      map[string]int
	}
	jNS    struct{ attrs *jDict } // namespace()
	jMacro struct {
		m     *macroStmt
		scope *rscope
	}
	jCaller struct { // caller() of a call block
		params []string
		body   []stmt
		scope  *rscope
	}
	jFunc struct { // a global function or a bound method
		name string
		fn   func(r *renderer, pos int, a *jArgs) any
	}
	jLoop struct {
		items   []any
		index0  int
		changed []any
		hasLast bool
	}
	jCycler struct {
		items []any
		pos   int
	}
	jKw struct {
		name string
		val  any
	}
	jArgs struct {
		name string // of the function, for messages
		pos  []any
		kw   []jKw
	}
)

func newDict() *jDict { return &jDict{index: map[string]int{}} }

func (d *jDict) set(k any, v any) bool {
	hk, ok := hashKey(k)
	if !ok {
		return false
	}
	if i, ok := d.index[hk]; ok {
		d.vals[i] = v
		return true
	}
	d.index[hk] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return true
}

func (d *jDict) get(k any) (any, bool) {
	hk, ok := hashKey(k)
	if !ok {
		return nil, false
	}
	if i, ok := d.index[hk]; ok {
		return d.vals[i], true
	}
	return nil, false
}

func (d *jDict) copy() *jDict {
	n := newDict()
	for i, k := range d.keys {
		n.set(k, d.vals[i])
	}
	return n
}

// hashKey maps a hashable value to a key such that Python-equal values (1, 1.0, True)
// share it.
func hashKey(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "N", true
	case bool:
		if x {
			return "i1", true
		}
		return "i0", true
	case int64:
		return "i" + strconv.FormatInt(x, 10), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e18 {
			return "i" + strconv.FormatInt(int64(x), 10), true
		}
		return "f" + strconv.FormatFloat(x, 'g', -1, 64), true
	case string:
		return "s" + x, true
	case jUndef:
		return "U", true
	case *jList:
		if !x.tuple {
			return "", false
		}
		var b strings.Builder
		b.WriteString("t")
		for _, it := range x.items {
			k, ok := hashKey(it)
			if !ok {
				return "", false
			}
			b.WriteString(strconv.Itoa(len(k)))
			b.WriteByte(':')
			b.WriteString(k)
		}
		return b.String(), true
	}
	return fmt.Sprintf("p%p", v), true
}

// ---- renderer ----

type rscope struct {
	vars   map[string]any
	parent *rscope
}

func newRScope(parent *rscope) *rscope { return &rscope{vars: map[string]any{}, parent: parent} }

func (s *rscope) lookup(name string) (any, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

type renderer struct {
	src   string
	out   *strings.Builder
	steps int
	depth int
	pos   int // offset of the construct being evaluated, for errors without one
	texts map[*textStmt]string
}

type ctl uint8

const (
	ctlNone ctl = iota
	ctlBreak
	ctlContinue
)

func (r *renderer) failf(pos int, format string, args ...any) {
	if pos < 0 {
		pos = r.pos
	}
	panic(&RenderError{Offset: pos, Line: lineOf(r.src, pos), Msg: fmt.Sprintf(format, args...)})
}

func (r *renderer) step(pos int) {
	r.pos = pos
	r.steps++
	if r.steps > maxRenderSteps {
		r.failf(pos, "evaluation exceeds %d steps", maxRenderSteps)
	}
}

// charge accounts for building n bytes or items.
func (r *renderer) charge(n int) {
	r.steps += n / 256
	if r.steps > maxRenderSteps {
		r.failf(-1, "evaluation exceeds %d steps", maxRenderSteps)
	}
}

// chargeItems accounts for building a list of n items.
func (r *renderer) chargeItems(n int) {
	r.steps += n / 16
	if r.steps > maxRenderSteps {
		r.failf(-1, "evaluation exceeds %d steps", maxRenderSteps)
	}
}

func (r *renderer) checkLen(pos, n int) {
	if n > maxRenderOutput {
		r.failf(pos, "string of %d bytes exceeds the %d-byte limit", n, maxRenderOutput)
	}
	r.charge(n)
}

func (r *renderer) write(pos int, s string) {
	if r.out.Len()+len(s) > maxRenderOutput {
		r.failf(pos, "output exceeds %d bytes", maxRenderOutput)
	}
	r.charge(len(s))
	r.out.WriteString(s)
}

func (r *renderer) capture(f func()) string {
	saved := r.out
	r.out = &strings.Builder{}
	defer func() { r.out = saved }()
	f()
	return r.out.String()
}

// text applies lstrip_blocks to a text node: the whitespace before a block or comment tag
// on its own line is dropped (the lexer already applied '-' and trim_blocks).
func (r *renderer) text(s *textStmt) string {
	if v, ok := r.texts[s]; ok {
		return v
	}
	v := s.text
	src, pos := r.src, s.pos
	if pos == 0 || src[pos-1] == '}' { // not the body of a raw block
		end := nextTagStart(src, pos)
		if end >= 0 && end+2 < len(src) && (src[end+1] == '%' || src[end+1] == '#') && src[end+2] != '+' && src[end+2] != '-' && len(v) <= end-pos {
			raw := src[pos:end]
			removed := raw[:len(raw)-len(v)]
			l := strings.LastIndexByte(v, '\n') + 1
			if (l > 0 || strings.HasSuffix(removed, "\n") || pos == 0) && l < len(v) && allPySpace(v[l:]) {
				v = v[:l]
			}
		}
	} else if q := strings.Index(src[pos:], "%}"); q >= 0 { // raw block: its own tags' '-'
		q += pos + 2
		if q >= 3 && src[q-3] == '-' {
			v = strings.TrimLeftFunc(v, isPySpace)
		}
		if j := q + len(s.text); j > len(src) {
		} else if strings.HasPrefix(src[j:], "{%-") {
			v = strings.TrimRightFunc(v, isPySpace)
		} else if !strings.HasPrefix(src[j:], "{%+") {
			if l := strings.LastIndexByte(v, '\n') + 1; l > 0 && l < len(v) && allPySpace(v[l:]) {
				v = v[:l]
			}
		}
	}
	r.texts[s] = v
	return v
}

func (r *renderer) exec(body []stmt, sc *rscope) ctl {
	for _, st := range body {
		if c := r.execOne(st, sc); c != ctlNone {
			return c
		}
	}
	return ctlNone
}

func (r *renderer) execOne(st stmt, sc *rscope) ctl {
	switch s := st.(type) {
	case *textStmt:
		r.step(s.pos)
		r.write(s.pos, r.text(s))
	case *outputStmt:
		r.step(s.pos)
		v := r.eval(s.x, sc)
		r.write(s.pos, r.str(v))
	case *ifStmt:
		for _, b := range s.branches {
			r.step(b.pos)
			if r.truthy(r.eval(b.cond, sc)) {
				return r.exec(b.body, sc)
			}
		}
		return r.exec(s.els, sc)
	case *forStmt:
		r.execFor(s, sc)
	case *setStmt:
		r.step(s.pos)
		var v any
		if s.value != nil {
			v = r.eval(s.value, sc)
		} else {
			v = r.capture(func() { r.exec(s.body, newRScope(sc)) })
			for _, f := range s.filters {
				v = r.filter(f, v, sc)
			}
		}
		if len(s.targets) == 1 {
			r.assign(s.targets[0], v, sc)
		} else {
			vals := r.unpack(s.pos, v, len(s.targets))
			for i, t := range s.targets {
				r.assign(t, vals[i], sc)
			}
		}
	case *macroStmt:
		r.step(s.pos)
		sc.vars[s.name] = &jMacro{m: s, scope: sc}
	case *callBlockStmt:
		r.step(s.pos)
		c, ok := s.call.(*callExpr)
		if !ok {
			r.failf(s.pos, "call block needs a macro call")
		}
		fn := r.eval(c.fn, sc)
		m, ok := fn.(*jMacro)
		if !ok {
			r.failf(s.pos, "call block calls %s, not a macro", typeName(fn))
		}
		args := r.evalArgs(c.args, c.kwargs, sc, "macro")
		r.write(s.pos, r.callMacro(s.pos, m, args, &jCaller{params: s.params, body: s.body, scope: sc}))
	case *blockStmt:
		r.step(s.pos)
		switch s.name {
		case "filter":
			inner := newRScope(sc)
			var v any = r.capture(func() { r.exec(s.body, inner) })
			for _, f := range s.filters {
				v = r.filter(f, v, sc)
			}
			r.write(s.pos, r.str(v))
		case "with":
			inner := newRScope(sc)
			for _, a := range s.assigns {
				if n, ok := a.targets[0].(*nameExpr); ok {
					inner.vars[n.name] = r.eval(a.value, sc)
				}
			}
			return r.exec(s.body, inner)
		case "generation", "autoescape", "block":
			return r.exec(s.body, newRScope(sc))
		default:
			r.failf(s.pos, "unsupported tag {%% %s %%}", s.name)
		}
	case *includeStmt:
		r.failf(s.pos, "unsupported tag {%% %s %%}: templates cannot load other templates", s.kind)
	case *doStmt:
		r.step(s.pos)
		r.eval(s.x, sc)
	case *loopCtlStmt:
		r.step(s.pos)
		if s.kind == "break" {
			return ctlBreak
		}
		return ctlContinue
	default:
		r.failf(-1, "unsupported statement %T", st)
	}
	return ctlNone
}

func (r *renderer) execFor(s *forStmt, sc *rscope) {
	r.step(s.pos)
	it := r.eval(s.iter, sc)
	items := r.iterate(s.pos, it)
	if s.filter != nil {
		kept := make([]any, 0, len(items))
		for _, item := range items {
			r.step(s.pos)
			fs := newRScope(sc)
			r.bind(s.pos, fs, s.targets, item)
			if r.truthy(r.eval(s.filter, fs)) {
				kept = append(kept, item)
			}
		}
		items = kept
	}
	if len(items) == 0 {
		r.exec(s.els, newRScope(sc))
		return
	}
	lp := &jLoop{items: items}
	for i, item := range items {
		r.step(s.pos)
		lp.index0 = i
		is := newRScope(sc)
		is.vars["loop"] = lp
		r.bind(s.pos, is, s.targets, item)
		if r.exec(s.body, is) == ctlBreak {
			break
		}
	}
}

func (r *renderer) bind(pos int, sc *rscope, targets []string, item any) {
	if len(targets) == 1 {
		sc.vars[targets[0]] = item
		return
	}
	vals := r.unpack(pos, item, len(targets))
	for i, t := range targets {
		sc.vars[t] = vals[i]
	}
}

func (r *renderer) unpack(pos int, v any, n int) []any {
	var vals []any
	switch x := v.(type) {
	case *jList:
		vals = x.items
	case string:
		for _, c := range x {
			vals = append(vals, string(c))
		}
	case *jDict:
		vals = x.keys
	default:
		r.failf(pos, "cannot unpack %s into %d names", typeName(v), n)
	}
	if len(vals) != n {
		r.failf(pos, "cannot unpack %d values into %d names", len(vals), n)
	}
	return vals
}

func (r *renderer) assign(t expr, v any, sc *rscope) {
	switch x := t.(type) {
	case *nameExpr:
		sc.vars[x.name] = v
	case *attrExpr:
		n, ok := x.obj.(*nameExpr)
		if !ok {
			r.failf(x.s, "cannot assign to a nested attribute")
		}
		obj, _ := sc.lookup(n.name)
		ns, ok := obj.(*jNS)
		if !ok {
			r.failf(x.s, "cannot assign attribute %q of %s: only namespace objects can be modified", x.attr, typeName(obj))
		}
		if internal(x.attr) {
			r.failf(x.s, "access to the internal attribute %q is refused", x.attr)
		}
		ns.attrs.set(x.attr, v)
	default:
		r.failf(-1, "cannot assign to this expression")
	}
}

// ---- expressions ----

func (r *renderer) eval(e expr, sc *rscope) any {
	s, _ := e.bounds()
	r.step(s)
	switch x := e.(type) {
	case *nameExpr:
		if v, ok := sc.lookup(x.name); ok {
			return v
		}
		return jUndef{hint: fmt.Sprintf("'%s' is undefined", x.name)}
	case *constExpr:
		return x.val
	case *listExpr:
		items := make([]any, len(x.items))
		for i, it := range x.items {
			items[i] = r.eval(it, sc)
		}
		return &jList{items: items, tuple: x.tuple}
	case *dictExpr:
		d := newDict()
		for i, k := range x.keys {
			kv := r.eval(k, sc)
			if !d.set(kv, r.eval(x.vals[i], sc)) {
				r.failf(s, "unhashable dict key of type %s", typeName(kv))
			}
		}
		return d
	case *attrExpr:
		return r.getattr(x.s, r.eval(x.obj, sc), x.attr)
	case *indexExpr:
		return r.getitem(x.s, r.eval(x.obj, sc), r.eval(x.idx, sc))
	case *sliceExpr:
		obj := r.eval(x.obj, sc)
		var parts [3]any
		for i, p := range []expr{x.lo, x.hi, x.stride} {
			if p != nil {
				parts[i] = r.eval(p, sc)
			}
		}
		return r.slice(x.s, obj, parts)
	case *callExpr:
		fn := r.eval(x.fn, sc)
		args := r.evalArgs(x.args, x.kwargs, sc, exprName(x.fn))
		return r.call(x.s, fn, args)
	case *filterExpr:
		var obj any = jUndef{}
		if x.obj != nil {
			obj = r.eval(x.obj, sc)
		}
		return r.filter(x, obj, sc)
	case *testExpr:
		obj := r.eval(x.obj, sc)
		args := make([]any, len(x.args))
		for i, a := range x.args {
			args[i] = r.eval(a, sc)
		}
		res := r.test(x.s, x.name, obj, args)
		return res != x.negate
	case *unaryExpr:
		if x.op != "not" {
			return r.signed(x, sc)
		}
		return !r.truthy(r.eval(x.x, sc))
	case *binaryExpr:
		l := r.eval(x.l, sc)
		switch x.op {
		case "and":
			if !r.truthy(l) {
				return l
			}
			return r.eval(x.r, sc)
		case "or":
			if r.truthy(l) {
				return l
			}
			return r.eval(x.r, sc)
		}
		rv := r.eval(x.r, sc)
		return r.binop(x.s, x.op, l, rv)
	case *compareExpr:
		l := r.eval(x.first, sc)
		for i, op := range x.ops {
			rv := r.eval(x.rest[i], sc)
			if !r.compare(x.s, op, l, rv) {
				return false
			}
			l = rv
		}
		return true
	case *condExpr:
		if r.truthy(r.eval(x.test, sc)) {
			return r.eval(x.a, sc)
		}
		if x.b == nil {
			return jUndef{hint: "the inline if expression evaluated to false and no else section was defined"}
		}
		return r.eval(x.b, sc)
	}
	r.failf(s, "unsupported expression %T", e)
	return nil
}

// signed evaluates unary - and +. Jinja applies filters and tests after the sign
// (-3|abs is abs(-3)) while the parser attaches them to the operand, so the chain is
// peeled off and applied to the signed value.
func (r *renderer) signed(x *unaryExpr, sc *rscope) any {
	ops := []string{x.op}
	inner := x.x
	for {
		u, ok := inner.(*unaryExpr)
		if !ok || u.op == "not" {
			break
		}
		ops = append(ops, u.op)
		inner = u.x
	}
	var chain []expr
	for {
		if f, ok := inner.(*filterExpr); ok && f.obj != nil {
			chain = append(chain, f)
			inner = f.obj
			continue
		}
		if t, ok := inner.(*testExpr); ok {
			chain = append(chain, t)
			inner = t.obj
			continue
		}
		break
	}
	v := r.eval(inner, sc)
	for i := len(ops) - 1; i >= 0; i-- {
		v = r.sign(x.s, ops[i], v)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		switch c := chain[i].(type) {
		case *filterExpr:
			v = r.filter(c, v, sc)
		case *testExpr:
			args := make([]any, len(c.args))
			for j, a := range c.args {
				args[j] = r.eval(a, sc)
			}
			v = r.test(c.s, c.name, v, args) != c.negate
		}
	}
	return v
}

func (r *renderer) sign(pos int, op string, v any) any {
	switch n := v.(type) {
	case bool:
		if op == "-" {
			return -b2i(n)
		}
		return b2i(n)
	case int64:
		if op == "-" {
			if n == math.MinInt64 {
				r.failf(pos, "integer overflow")
			}
			return -n
		}
		return n
	case float64:
		if op == "-" {
			return -n
		}
		return n
	}
	r.undefCheck(pos, v)
	r.failf(pos, "bad operand type for unary %s: %s", op, typeName(v))
	return nil
}

func exprName(e expr) string {
	switch x := e.(type) {
	case *nameExpr:
		return x.name
	case *attrExpr:
		return x.attr
	}
	return "function"
}

func (r *renderer) evalArgs(args []expr, kws []kwarg, sc *rscope, name string) *jArgs {
	a := &jArgs{name: name, pos: make([]any, len(args))}
	for i, x := range args {
		a.pos[i] = r.eval(x, sc)
	}
	for _, k := range kws {
		a.kw = append(a.kw, jKw{k.name, r.eval(k.val, sc)})
	}
	return a
}

// arg returns the i-th positional argument or the keyword argument name, or def.
func (a *jArgs) arg(i int, name string, def any) any {
	if i >= 0 && i < len(a.pos) {
		return a.pos[i]
	}
	for _, k := range a.kw {
		if k.name == name {
			return k.val
		}
	}
	return def
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func typeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case *jList:
		if x.tuple {
			return "tuple"
		}
		return "list"
	case *jDict:
		return "dict"
	case jUndef:
		return "Undefined"
	case *jNS:
		return "Namespace"
	case *jMacro, *jCaller:
		return "Macro"
	case *jFunc:
		return "function"
	case *jLoop:
		return "LoopContext"
	case *jCycler:
		return "Cycler"
	}
	return fmt.Sprintf("%T", v)
}

// undefCheck fails like Jinja's Undefined when an operation needs a real value.
func (r *renderer) undefCheck(pos int, vs ...any) {
	for _, v := range vs {
		if u, ok := v.(jUndef); ok {
			h := u.hint
			if h == "" {
				h = "value is undefined"
			}
			r.failf(pos, "%s", h)
		}
	}
}

func (r *renderer) truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case *jList:
		return len(x.items) > 0
	case *jDict:
		return len(x.keys) > 0
	case jUndef:
		return false
	}
	return true
}

// str is Python's str().
func (r *renderer) str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case jUndef:
		return ""
	}
	return r.repr(v, 0)
}

// repr is Python's repr() (str() for the scalars).
func (r *renderer) repr(v any, depth int) string {
	if depth > maxValueDepth {
		r.failf(-1, "value nested deeper than %d", maxValueDepth)
	}
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return pyFloat(x)
	case string:
		if depth == 0 {
			return x
		}
		return pyStrRepr(x)
	case jUndef:
		if depth == 0 {
			return ""
		}
		return "Undefined"
	case *jList:
		var b strings.Builder
		open, close := "[", "]"
		if x.tuple {
			open, close = "(", ")"
		}
		b.WriteString(open)
		for i, it := range x.items {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.reprIn(it, depth))
			r.checkLen(-1, b.Len())
		}
		if x.tuple && len(x.items) == 1 {
			b.WriteString(",")
		}
		b.WriteString(close)
		return b.String()
	case *jDict:
		var b strings.Builder
		b.WriteString("{")
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.reprIn(k, depth))
			b.WriteString(": ")
			b.WriteString(r.reprIn(x.vals[i], depth))
			r.checkLen(-1, b.Len())
		}
		b.WriteString("}")
		return b.String()
	case *jNS:
		var b strings.Builder
		b.WriteString("<Namespace {")
		for i, k := range x.attrs.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.reprIn(k, depth) + ": " + r.reprIn(x.attrs.vals[i], depth))
			r.checkLen(-1, b.Len())
		}
		b.WriteString("}>")
		return b.String()
	case *jMacro:
		return "<Macro '" + x.m.name + "'>"
	case *jCaller:
		return "<Macro 'caller'>"
	case *jFunc:
		return "<function " + x.name + ">"
	case *jLoop:
		return fmt.Sprintf("<LoopContext %d/%d>", x.index0+1, len(x.items))
	case *jCycler:
		return "<Cycler>"
	}
	return fmt.Sprintf("%v", v)
}

func (r *renderer) reprIn(v any, depth int) string { return r.repr(v, depth+1) }

func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	mant, es, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(es)
	digits := strings.Replace(mant, ".", "", 1)
	if exp >= -4 && exp < 16 {
		var ip, fp string
		if exp >= 0 {
			if len(digits) <= exp+1 {
				ip, fp = digits+strings.Repeat("0", exp+1-len(digits)), "0"
			} else {
				ip, fp = digits[:exp+1], digits[exp+1:]
			}
		} else {
			ip, fp = "0", strings.Repeat("0", -exp-1)+digits
		}
		return sign + ip + "." + fp
	}
	m := digits[:1]
	if len(digits) > 1 {
		m += "." + digits[1:]
	}
	esign := "+"
	if exp < 0 {
		esign, exp = "-", -exp
	}
	return fmt.Sprintf("%s%se%s%02d", sign, m, esign, exp)
}

func pyStrRepr(s string) string {
	q := '\''
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteRune(q)
	for _, c := range s {
		switch {
		case c == q || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == ' ' || unicode.IsPrint(c) && c != utf8.RuneError:
			b.WriteRune(c)
		case c < 0x100:
			fmt.Fprintf(&b, `\x%02x`, c)
		case c < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			fmt.Fprintf(&b, `\U%08x`, c)
		}
	}
	b.WriteRune(q)
	return b.String()
}

func isPySpace(c rune) bool { return unicode.IsSpace(c) || c >= 0x1c && c <= 0x1f }

func allPySpace(s string) bool {
	for _, c := range s {
		if !isPySpace(c) {
			return false
		}
	}
	return true
}

// iterate lists what a for loop or a filter iterates over.
func (r *renderer) iterate(pos int, v any) []any {
	switch x := v.(type) {
	case *jList:
		return x.items
	case *jDict:
		return x.keys
	case string:
		out := make([]any, 0, len(x))
		for _, c := range x {
			out = append(out, string(c))
		}
		r.charge(len(out))
		return out
	case jUndef:
		return nil
	case *jNS:
		return nil
	}
	r.failf(pos, "%s object is not iterable", typeName(v))
	return nil
}

// ---- attributes, items, slices ----

var mutatingMethods = map[string]bool{
	"append": true, "extend": true, "insert": true, "pop": true, "remove": true, "clear": true,
	"sort": true, "reverse": true, "update": true, "popitem": true, "setdefault": true,
	"add": true, "discard": true,
}

func (r *renderer) refuseInternal(pos int, name string) {
	if internal(name) {
		r.failf(pos, "access to the internal attribute %q is refused", name)
	}
}

func (r *renderer) getattr(pos int, obj any, name string) any {
	r.refuseInternal(pos, name)
	switch x := obj.(type) {
	case jUndef:
		r.undefCheck(pos, x)
	case *jDict:
		if m := r.method(pos, obj, name); m != nil {
			return m
		}
		if v, ok := x.get(name); ok {
			return v
		}
	case *jNS:
		if v, ok := x.attrs.get(name); ok {
			return v
		}
	case *jLoop:
		return r.loopAttr(pos, x, name)
	default:
		if m := r.method(pos, obj, name); m != nil {
			return m
		}
	}
	return jUndef{hint: fmt.Sprintf("%s has no attribute '%s'", typeName(obj), name)}
}

func (r *renderer) getitem(pos int, obj, key any) any {
	switch x := obj.(type) {
	case jUndef:
		r.undefCheck(pos, x)
	case *jDict:
		if v, ok := x.get(key); ok {
			return v
		}
	case *jList:
		if i, ok := toIndex(key); ok {
			if i < 0 {
				i += int64(len(x.items))
			}
			if i >= 0 && i < int64(len(x.items)) {
				return x.items[i]
			}
			return jUndef{hint: fmt.Sprintf("%s index out of range", typeName(obj))}
		}
	case string:
		if i, ok := toIndex(key); ok {
			rs := []rune(x)
			if i < 0 {
				i += int64(len(rs))
			}
			if i >= 0 && i < int64(len(rs)) {
				return string(rs[i])
			}
			return jUndef{hint: "string index out of range"}
		}
	}
	if k, ok := key.(string); ok {
		return r.getattr(pos, obj, k)
	}
	return jUndef{hint: fmt.Sprintf("%s has no item %s", typeName(obj), r.repr(key, 1))}
}

func toIndex(v any) (int64, bool) {
	switch x := v.(type) {
	case bool:
		return b2i(x), true
	case int64:
		return x, true
	}
	return 0, false
}

func (r *renderer) slice(pos int, obj any, parts [3]any) any {
	r.undefCheck(pos, obj)
	var n int
	var rs []rune
	switch x := obj.(type) {
	case *jList:
		n = len(x.items)
	case string:
		rs = []rune(x)
		n = len(rs)
	default:
		r.failf(pos, "%s object is not subscriptable", typeName(obj))
	}
	var bound [3]*int64
	for i, p := range parts {
		if p == nil {
			continue
		}
		v, ok := toIndex(p)
		if !ok {
			r.failf(pos, "slice indices must be integers or None, not %s", typeName(p))
		}
		bound[i] = &v
	}
	step := int64(1)
	if bound[2] != nil {
		step = *bound[2]
		if step == 0 {
			r.failf(pos, "slice step cannot be zero")
		}
	}
	ln := int64(n)
	adjust := func(b *int64, def int64) int64 {
		if b == nil {
			return def
		}
		v := *b
		if v < 0 {
			v += ln
			if v < 0 {
				if step < 0 {
					v = -1
				} else {
					v = 0
				}
			}
		} else if v >= ln {
			if step < 0 {
				v = ln - 1
			} else {
				v = ln
			}
		}
		return v
	}
	var lo, hi int64
	if step > 0 {
		lo, hi = adjust(bound[0], 0), adjust(bound[1], ln)
	} else {
		lo, hi = adjust(bound[0], ln-1), adjust(bound[1], -1)
	}
	var count int64 // lo, hi are within [-1, ln], so these differences cannot overflow
	switch {
	case step > 0 && lo < hi:
		count = (hi-lo-1)/step + 1
	case step < 0 && lo > hi:
		count = int64(uint64(lo-hi-1)/uint64(-(step+1)+1)) + 1
	}
	idx := make([]int64, 0, count)
	for k := int64(0); k < count; k++ {
		idx = append(idx, lo+k*step)
	}
	r.chargeItems(len(idx))
	if l, ok := obj.(*jList); ok {
		items := make([]any, len(idx))
		for j, i := range idx {
			items[j] = l.items[i]
		}
		return &jList{items: items, tuple: l.tuple}
	}
	out := make([]rune, len(idx))
	for j, i := range idx {
		out[j] = rs[i]
	}
	return string(out)
}

func (r *renderer) loopAttr(pos int, l *jLoop, name string) any {
	n := len(l.items)
	switch name {
	case "index":
		return int64(l.index0 + 1)
	case "index0":
		return int64(l.index0)
	case "revindex":
		return int64(n - l.index0)
	case "revindex0":
		return int64(n - l.index0 - 1)
	case "first":
		return l.index0 == 0
	case "last":
		return l.index0 == n-1
	case "length":
		return int64(n)
	case "depth":
		return int64(1)
	case "depth0":
		return int64(0)
	case "previtem":
		if l.index0 > 0 {
			return l.items[l.index0-1]
		}
		return jUndef{hint: "there is no previous item"}
	case "nextitem":
		if l.index0+1 < n {
			return l.items[l.index0+1]
		}
		return jUndef{hint: "there is no next item"}
	case "cycle":
		return &jFunc{name: "loop.cycle", fn: func(r *renderer, pos int, a *jArgs) any {
			if len(a.pos) == 0 {
				r.failf(pos, "no items for cycling given")
			}
			return a.pos[l.index0%len(a.pos)]
		}}
	case "changed":
		return &jFunc{name: "loop.changed", fn: func(r *renderer, pos int, a *jArgs) any {
			vals := &jList{items: a.pos}
			if l.hasLast && r.equal(vals, &jList{items: l.changed}, 0) {
				return false
			}
			l.hasLast, l.changed = true, a.pos
			return true
		}}
	}
	return jUndef{hint: fmt.Sprintf("LoopContext has no attribute '%s'", name)}
}

// ---- operators ----

type num struct {
	isInt bool
	i     int64
	f     float64
}

func toNum(v any) (num, bool) {
	switch x := v.(type) {
	case bool:
		return num{isInt: true, i: b2i(x)}, true
	case int64:
		return num{isInt: true, i: x}, true
	case float64:
		return num{f: x}, true
	}
	return num{}, false
}

func (n num) float() float64 {
	if n.isInt {
		return float64(n.i)
	}
	return n.f
}

func (r *renderer) binop(pos int, op string, a, b any) any {
	if op == "~" {
		s := r.str(a) + r.str(b)
		r.checkLen(pos, len(s))
		return s
	}
	r.undefCheck(pos, a, b)
	na, okA := toNum(a)
	nb, okB := toNum(b)
	if okA && okB {
		return r.arith(pos, op, na, nb)
	}
	switch op {
	case "+":
		switch x := a.(type) {
		case string:
			if y, ok := b.(string); ok {
				r.checkLen(pos, len(x)+len(y))
				return x + y
			}
		case *jList:
			if y, ok := b.(*jList); ok && x.tuple == y.tuple {
				if len(x.items)+len(y.items) > maxListLen {
					r.failf(pos, "list longer than %d items", maxListLen)
				}
				r.chargeItems(len(x.items) + len(y.items))
				items := make([]any, 0, len(x.items)+len(y.items))
				return &jList{items: append(append(items, x.items...), y.items...), tuple: x.tuple}
			}
		}
	case "*":
		if okB {
			if m, ok := r.repeat(pos, a, nb); ok {
				return m
			}
		}
		if okA {
			if m, ok := r.repeat(pos, b, na); ok {
				return m
			}
		}
	case "%":
		if s, ok := a.(string); ok {
			return r.printf(pos, s, b)
		}
	}
	r.failf(pos, "unsupported operand types for %s: %s and %s", op, typeName(a), typeName(b))
	return nil
}

func (r *renderer) repeat(pos int, v any, n num) (any, bool) {
	if !n.isInt {
		return nil, false
	}
	times := n.i
	if times < 0 {
		times = 0
	}
	switch x := v.(type) {
	case string:
		if len(x) > 0 && times > int64(maxRenderOutput/len(x)) {
			r.failf(pos, "string of %d × %d bytes exceeds the %d-byte limit", len(x), times, maxRenderOutput)
		}
		r.checkLen(pos, len(x)*int(times))
		return strings.Repeat(x, int(times)), true
	case *jList:
		if len(x.items) > 0 && times > int64(maxListLen/len(x.items)) {
			r.failf(pos, "list longer than %d items", maxListLen)
		}
		r.chargeItems(len(x.items) * int(times))
		items := make([]any, 0, len(x.items)*int(times))
		for i := int64(0); i < times; i++ {
			items = append(items, x.items...)
		}
		return &jList{items: items, tuple: x.tuple}, true
	}
	return nil, false
}

func (r *renderer) arith(pos int, op string, a, b num) any {
	if a.isInt && b.isInt {
		x, y := a.i, b.i
		switch op {
		case "+":
			s := x + y
			if (x > 0 && y > 0 && s < 0) || (x < 0 && y < 0 && s >= 0) {
				r.failf(pos, "integer overflow")
			}
			return s
		case "-":
			s := x - y
			if (x >= 0 && y < 0 && s < 0) || (x < 0 && y > 0 && s >= 0) {
				r.failf(pos, "integer overflow")
			}
			return s
		case "*":
			if x != 0 && y != 0 {
				p := x * y
				if p/y != x || (x == -1 && y == math.MinInt64) || (y == -1 && x == math.MinInt64) {
					r.failf(pos, "integer overflow")
				}
				return p
			}
			return int64(0)
		case "/":
			if y == 0 {
				r.failf(pos, "division by zero")
			}
			return float64(x) / float64(y)
		case "//":
			if y == 0 {
				r.failf(pos, "integer division or modulo by zero")
			}
			if x == math.MinInt64 && y == -1 {
				r.failf(pos, "integer overflow")
			}
			q := x / y
			if (x%y != 0) && ((x < 0) != (y < 0)) {
				q--
			}
			return q
		case "%":
			if y == 0 {
				r.failf(pos, "integer division or modulo by zero")
			}
			if y == -1 {
				return int64(0)
			}
			m := x % y
			if m != 0 && ((m < 0) != (y < 0)) {
				m += y
			}
			return m
		case "**":
			if y < 0 {
				return math.Pow(float64(x), float64(y))
			}
			res, base := int64(1), x
			for e := y; e > 0; e >>= 1 {
				if e&1 == 1 {
					res = r.mulChecked(pos, res, base)
				}
				if e > 1 {
					base = r.mulChecked(pos, base, base)
				}
			}
			return res
		}
	}
	x, y := a.float(), b.float()
	switch op {
	case "+":
		return x + y
	case "-":
		return x - y
	case "*":
		return x * y
	case "/":
		if y == 0 {
			r.failf(pos, "float division by zero")
		}
		return x / y
	case "//":
		if y == 0 {
			r.failf(pos, "float floor division by zero")
		}
		return math.Floor(x / y)
	case "%":
		if y == 0 {
			r.failf(pos, "float modulo")
		}
		m := math.Mod(x, y)
		if m != 0 && ((m < 0) != (y < 0)) {
			m += y
		}
		return m
	case "**":
		return math.Pow(x, y)
	}
	r.failf(pos, "unsupported operator %s", op)
	return nil
}

func (r *renderer) mulChecked(pos int, x, y int64) int64 {
	if x == 0 || y == 0 {
		return 0
	}
	p := x * y
	if p/y != x || (x == -1 && y == math.MinInt64) || (y == -1 && x == math.MinInt64) {
		r.failf(pos, "integer overflow")
	}
	return p
}

func (r *renderer) equal(a, b any, depth int) bool {
	if depth > maxValueDepth {
		r.failf(-1, "value nested deeper than %d", maxValueDepth)
	}
	if na, ok := toNum(a); ok {
		nb, ok := toNum(b)
		if !ok {
			return false
		}
		if na.isInt && nb.isInt {
			return na.i == nb.i
		}
		return na.float() == nb.float()
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case jUndef:
		_, ok := b.(jUndef)
		return ok
	case *jList:
		y, ok := b.(*jList)
		if !ok || x.tuple != y.tuple || len(x.items) != len(y.items) {
			return false
		}
		for i := range x.items {
			if !r.equal(x.items[i], y.items[i], depth+1) {
				return false
			}
		}
		return true
	case *jDict:
		y, ok := b.(*jDict)
		if !ok || len(x.keys) != len(y.keys) {
			return false
		}
		for i, k := range x.keys {
			v, ok := y.get(k)
			if !ok || !r.equal(x.vals[i], v, depth+1) {
				return false
			}
		}
		return true
	}
	return a == b
}

// order compares a and b as Python's < does: -1, 0 or 1.
func (r *renderer) order(pos int, a, b any) int {
	r.undefCheck(pos, a, b)
	if na, ok := toNum(a); ok {
		if nb, ok := toNum(b); ok {
			if na.isInt && nb.isInt {
				return cmpOrdered(na.i, nb.i)
			}
			return cmpOrdered(na.float(), nb.float())
		}
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case *jList:
		if y, ok := b.(*jList); ok && x.tuple == y.tuple {
			for i := 0; i < len(x.items) && i < len(y.items); i++ {
				if !r.equal(x.items[i], y.items[i], 0) {
					return r.order(pos, x.items[i], y.items[i])
				}
			}
			return cmpOrdered(len(x.items), len(y.items))
		}
	}
	r.failf(pos, "'<' not supported between instances of %s and %s", typeName(a), typeName(b))
	return 0
}

func cmpOrdered[T int | int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *renderer) compare(pos int, op string, a, b any) bool {
	switch op {
	case "==":
		return r.equal(a, b, 0)
	case "!=":
		return !r.equal(a, b, 0)
	case "<":
		return r.order(pos, a, b) < 0
	case "<=":
		return r.order(pos, a, b) <= 0
	case ">":
		return r.order(pos, a, b) > 0
	case ">=":
		return r.order(pos, a, b) >= 0
	case "in":
		return r.contains(pos, b, a)
	case "not in":
		return !r.contains(pos, b, a)
	}
	r.failf(pos, "unsupported comparison %s", op)
	return false
}

func (r *renderer) contains(pos int, container, item any) bool {
	switch x := container.(type) {
	case string:
		s, ok := item.(string)
		if !ok {
			r.undefCheck(pos, item)
			r.failf(pos, "'in <string>' requires string as left operand, not %s", typeName(item))
		}
		return strings.Contains(x, s)
	case *jList:
		for _, it := range x.items {
			r.step(pos)
			if r.equal(it, item, 0) {
				return true
			}
		}
		return false
	case *jDict:
		_, ok := x.get(item)
		return ok
	case jUndef:
		return false
	case *jNS:
		_, ok := x.attrs.get(item)
		return ok
	}
	r.failf(pos, "argument of type %s is not iterable", typeName(container))
	return false
}

// printf implements the string % operator for %s, %r, %d, %i, %f and %%.
func (r *renderer) printf(pos int, format string, arg any) string {
	var args []any
	if l, ok := arg.(*jList); ok && l.tuple {
		args = l.items
	} else {
		args = []any{arg}
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(format) {
			r.failf(pos, "incomplete format")
		}
		if format[i] == '%' {
			b.WriteByte('%')
			continue
		}
		if n >= len(args) {
			r.failf(pos, "not enough arguments for format string")
		}
		a := args[n]
		n++
		switch format[i] {
		case 's':
			b.WriteString(r.str(a))
		case 'r':
			b.WriteString(r.repr(a, 1))
		case 'd', 'i':
			v, ok := toNum(a)
			if !ok {
				r.failf(pos, "%%d format: a number is required, not %s", typeName(a))
			}
			if v.isInt {
				b.WriteString(strconv.FormatInt(v.i, 10))
			} else {
				b.WriteString(strconv.FormatInt(int64(v.f), 10))
			}
		case 'f':
			v, ok := toNum(a)
			if !ok {
				r.failf(pos, "%%f format: a number is required, not %s", typeName(a))
			}
			b.WriteString(strconv.FormatFloat(v.float(), 'f', 6, 64))
		default:
			r.failf(pos, "unsupported format directive %%%c", format[i])
		}
		r.checkLen(pos, b.Len())
	}
	if n < len(args) {
		r.failf(pos, "not all arguments converted during string formatting")
	}
	return b.String()
}

// ---- calls ----

func (r *renderer) call(pos int, fn any, a *jArgs) any {
	switch f := fn.(type) {
	case *jMacro:
		return r.callMacro(pos, f, a, nil)
	case *jCaller:
		return r.callCaller(pos, f, a)
	case *jFunc:
		return f.fn(r, pos, a)
	case jUndef:
		r.undefCheck(pos, f)
	case *jLoop:
		r.failf(pos, "recursive loops (loop(...)) are not supported")
	}
	r.failf(pos, "%s object is not callable", typeName(fn))
	return nil
}

func (r *renderer) enterCall(pos int) {
	r.depth++
	if r.depth > maxRenderDepth {
		r.failf(pos, "macro calls nested deeper than %d", maxRenderDepth)
	}
}

func (r *renderer) callMacro(pos int, mv *jMacro, a *jArgs, caller *jCaller) string {
	r.enterCall(pos)
	defer func() { r.depth-- }()
	m := mv.m
	ms := newRScope(mv.scope)
	used := map[string]bool{}
	for i, p := range m.params {
		switch {
		case i < len(a.pos):
			ms.vars[p] = a.pos[i]
		default:
			found := false
			for _, k := range a.kw {
				if k.name == p {
					ms.vars[p], found = k.val, true
					used[p] = true
				}
			}
			if !found {
				if m.defaults[i] != nil {
					ms.vars[p] = r.eval(m.defaults[i], ms)
				} else {
					ms.vars[p] = jUndef{hint: fmt.Sprintf("parameter '%s' was not provided", p)}
				}
			}
		}
	}
	var extra []any
	if len(a.pos) > len(m.params) {
		extra = a.pos[len(m.params):]
	}
	ms.vars["varargs"] = &jList{items: extra, tuple: true}
	kw := newDict()
	for _, k := range a.kw {
		if !used[k.name] {
			kw.set(k.name, k.val)
		}
	}
	ms.vars["kwargs"] = kw
	if caller != nil {
		ms.vars["caller"] = caller
	}
	return r.capture(func() { r.exec(m.body, ms) })
}

func (r *renderer) callCaller(pos int, c *jCaller, a *jArgs) string {
	r.enterCall(pos)
	defer func() { r.depth-- }()
	cs := newRScope(c.scope)
	for i, p := range c.params {
		cs.vars[p] = a.arg(i, p, jUndef{hint: fmt.Sprintf("parameter '%s' was not provided", p)})
	}
	return r.capture(func() { r.exec(c.body, cs) })
}

var renderGlobals map[string]func(r *renderer, pos int, a *jArgs) any

func init() {
	renderGlobals = map[string]func(r *renderer, pos int, a *jArgs) any{
		"raise_exception": func(r *renderer, pos int, a *jArgs) any {
			msg := r.str(a.arg(0, "message", ""))
			panic(&RenderError{Offset: pos, Line: lineOf(r.src, pos), Msg: "raise_exception: " + msg, Raised: true})
		},
		"strftime_now": func(r *renderer, pos int, a *jArgs) any {
			f, ok := a.arg(0, "format", nil).(string)
			if !ok {
				r.failf(pos, "strftime_now needs a format string")
			}
			return strftime(f, renderNow)
		},
		"range": func(r *renderer, pos int, a *jArgs) any {
			var bounds []int64
			for _, v := range a.pos {
				i, ok := toIndex(v)
				if !ok {
					r.failf(pos, "range() needs integers, not %s", typeName(v))
				}
				bounds = append(bounds, i)
			}
			start, stop, step := int64(0), int64(0), int64(1)
			switch len(bounds) {
			case 1:
				stop = bounds[0]
			case 2:
				start, stop = bounds[0], bounds[1]
			case 3:
				start, stop, step = bounds[0], bounds[1], bounds[2]
			default:
				r.failf(pos, "range() takes 1 to 3 arguments")
			}
			if step == 0 {
				r.failf(pos, "range() arg 3 must not be zero")
			}
			var n uint64 // exact: the differences are taken in uint64
			if step > 0 && stop > start {
				n = (uint64(stop)-uint64(start)-1)/uint64(step) + 1
			} else if step < 0 && stop < start {
				n = (uint64(start)-uint64(stop)-1)/(uint64(-(step+1))+1) + 1
			}
			if n > maxRange {
				r.failf(pos, "range of %d items is larger than the sandbox's %d", n, maxRange)
			}
			items := make([]any, 0, int(n))
			for k := int64(0); k < int64(n); k++ {
				items = append(items, start+k*step)
			}
			r.chargeItems(len(items))
			return &jList{items: items}
		},
		"namespace": func(r *renderer, pos int, a *jArgs) any {
			d := newDict()
			for _, p := range a.pos {
				pd, ok := p.(*jDict)
				if !ok {
					r.failf(pos, "namespace() takes a dict, not %s", typeName(p))
				}
				for i, k := range pd.keys {
					d.set(k, pd.vals[i])
				}
			}
			for _, k := range a.kw {
				d.set(k.name, k.val)
			}
			return &jNS{attrs: d}
		},
		"dict": func(r *renderer, pos int, a *jArgs) any {
			d := newDict()
			for _, p := range a.pos {
				pd, ok := p.(*jDict)
				if !ok {
					r.failf(pos, "dict() takes a dict, not %s", typeName(p))
				}
				for i, k := range pd.keys {
					d.set(k, pd.vals[i])
				}
			}
			for _, k := range a.kw {
				d.set(k.name, k.val)
			}
			return d
		},
		"joiner": func(r *renderer, pos int, a *jArgs) any {
			sep := r.str(a.arg(0, "sep", ", "))
			used := false
			return &jFunc{name: "joiner", fn: func(r *renderer, pos int, _ *jArgs) any {
				if !used {
					used = true
					return ""
				}
				return sep
			}}
		},
		"cycler": func(r *renderer, pos int, a *jArgs) any {
			if len(a.pos) == 0 {
				r.failf(pos, "at least one item has to be provided to cycler")
			}
			return &jCycler{items: a.pos}
		},
	}
}

// strftime formats t with Python's strftime directives (C locale).
func strftime(f string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 >= len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		pad := true
		if f[i] == '-' && i+1 < len(f) {
			pad = false
			i++
		}
		n := func(v, w int) string {
			if !pad {
				return strconv.Itoa(v)
			}
			return fmt.Sprintf("%0*d", w, v)
		}
		h12 := t.Hour() % 12
		if h12 == 0 {
			h12 = 12
		}
		switch f[i] {
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'd':
			b.WriteString(n(t.Day(), 2))
		case 'e':
			b.WriteString(fmt.Sprintf("%2d", t.Day()))
		case 'm':
			b.WriteString(n(int(t.Month()), 2))
		case 'y':
			b.WriteString(n(t.Year()%100, 2))
		case 'Y':
			b.WriteString(strconv.Itoa(t.Year()))
		case 'H':
			b.WriteString(n(t.Hour(), 2))
		case 'I':
			b.WriteString(n(h12, 2))
		case 'M':
			b.WriteString(n(t.Minute(), 2))
		case 'S':
			b.WriteString(n(t.Second(), 2))
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'j':
			b.WriteString(n(t.YearDay(), 3))
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			b.WriteString(strconv.Itoa(wd))
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'D', 'x':
			b.WriteString(t.Format("01/02/06"))
		case 'T', 'X':
			b.WriteString(t.Format("15:04:05"))
		case 'R':
			b.WriteString(t.Format("15:04"))
		case 'c':
			b.WriteString(t.Format("Mon Jan _2 15:04:05 2006"))
		case 'z', 'Z':
			if f[i] == 'Z' {
				b.WriteString("UTC")
			} else {
				b.WriteString("+0000")
			}
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			if !pad {
				b.WriteByte('-')
			}
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// ---- methods ----

func (r *renderer) method(pos int, obj any, name string) *jFunc {
	mk := func(fn func(r *renderer, pos int, a *jArgs) any) *jFunc { return &jFunc{name: name, fn: fn} }
	if mutatingMethods[name] {
		switch obj.(type) {
		case *jList, *jDict:
			return mk(func(r *renderer, pos int, a *jArgs) any {
				r.failf(pos, "%s.%s() modifies the object: the sandbox (ImmutableSandboxedEnvironment) refuses it", typeName(obj), name)
				return nil
			})
		}
	}
	switch x := obj.(type) {
	case string:
		if _, ok := strMethods[name]; ok {
			return mk(func(r *renderer, pos int, a *jArgs) any { return r.strMethod(pos, x, name, a) })
		}
	case *jDict:
		switch name {
		case "get":
			return mk(func(r *renderer, pos int, a *jArgs) any {
				if v, ok := x.get(a.arg(0, "key", nil)); ok {
					return v
				}
				return a.arg(1, "default", nil)
			})
		case "items":
			return mk(func(r *renderer, pos int, a *jArgs) any { return dictItems(x) })
		case "keys":
			return mk(func(r *renderer, pos int, a *jArgs) any { return &jList{items: append([]any(nil), x.keys...)} })
		case "values":
			return mk(func(r *renderer, pos int, a *jArgs) any { return &jList{items: append([]any(nil), x.vals...)} })
		case "copy":
			return mk(func(r *renderer, pos int, a *jArgs) any { return x.copy() })
		}
	case *jList:
		switch name {
		case "index":
			return mk(func(r *renderer, pos int, a *jArgs) any {
				want := a.arg(0, "value", nil)
				for i, it := range x.items {
					if r.equal(it, want, 0) {
						return int64(i)
					}
				}
				r.failf(pos, "%s is not in list", r.repr(want, 1))
				return nil
			})
		case "count":
			return mk(func(r *renderer, pos int, a *jArgs) any {
				want, n := a.arg(0, "value", nil), int64(0)
				for _, it := range x.items {
					if r.equal(it, want, 0) {
						n++
					}
				}
				return n
			})
		case "copy":
			return mk(func(r *renderer, pos int, a *jArgs) any { return &jList{items: append([]any(nil), x.items...)} })
		}
	case *jCycler:
		switch name {
		case "next":
			return mk(func(r *renderer, pos int, a *jArgs) any {
				v := x.items[x.pos]
				x.pos = (x.pos + 1) % len(x.items)
				return v
			})
		case "reset":
			return mk(func(r *renderer, pos int, a *jArgs) any { x.pos = 0; return nil })
		}
	}
	return nil
}

func dictItems(d *jDict) *jList {
	items := make([]any, len(d.keys))
	for i, k := range d.keys {
		items[i] = &jList{items: []any{k, d.vals[i]}, tuple: true}
	}
	return &jList{items: items}
}

var strMethods = map[string]bool{
	"strip": true, "lstrip": true, "rstrip": true, "startswith": true, "endswith": true,
	"split": true, "rsplit": true, "splitlines": true, "upper": true, "lower": true,
	"title": true, "capitalize": true, "swapcase": true, "replace": true, "find": true,
	"rfind": true, "index": true, "rindex": true, "count": true, "join": true,
	"isdigit": true, "isdecimal": true, "isnumeric": true, "isalpha": true, "isalnum": true,
	"isspace": true, "isupper": true, "islower": true, "zfill": true, "ljust": true,
	"rjust": true, "center": true, "partition": true, "rpartition": true,
	"removeprefix": true, "removesuffix": true, "format": true,
}

func (r *renderer) strArg(pos int, a *jArgs, i int, name string) string {
	v := a.arg(i, name, nil)
	s, ok := v.(string)
	if !ok {
		r.failf(pos, "%s() argument must be str, not %s", a.name, typeName(v))
	}
	return s
}

func (r *renderer) intArg(pos int, a *jArgs, i int, name string, def int64) int64 {
	v := a.arg(i, name, def)
	n, ok := toIndex(v)
	if !ok {
		r.failf(pos, "%s() argument must be an integer, not %s", a.name, typeName(v))
	}
	return n
}

// stripChars is Python's str.strip family: whitespace when chars is None.
func stripChars(s string, chars any, left, right bool) string {
	f := isPySpace
	if c, ok := chars.(string); ok {
		f = func(r rune) bool { return strings.ContainsRune(c, r) }
	}
	if left {
		s = strings.TrimLeftFunc(s, f)
	}
	if right {
		s = strings.TrimRightFunc(s, f)
	}
	return s
}

func (r *renderer) strMethod(pos int, s, name string, a *jArgs) any {
	a.name = name
	switch name {
	case "strip", "lstrip", "rstrip":
		return stripChars(s, a.arg(0, "chars", nil), name != "rstrip", name != "lstrip")
	case "startswith", "endswith":
		if len(a.pos) > 1 {
			r.failf(pos, "%s() with start/end is not supported", name)
		}
		var cands []any
		switch p := a.arg(0, "prefix", nil).(type) {
		case string:
			cands = []any{p}
		case *jList:
			if !p.tuple {
				r.failf(pos, "%s first arg must be str or a tuple of str, not list", name)
			}
			cands = p.items
		default:
			r.failf(pos, "%s first arg must be str or a tuple of str, not %s", name, typeName(p))
		}
		for _, c := range cands {
			cs, ok := c.(string)
			if !ok {
				r.failf(pos, "%s tuple items must be str", name)
			}
			if (name == "startswith" && strings.HasPrefix(s, cs)) || (name == "endswith" && strings.HasSuffix(s, cs)) {
				return true
			}
		}
		return false
	case "split", "rsplit":
		sep := a.arg(0, "sep", nil)
		maxs := r.intArg(pos, a, 1, "maxsplit", -1)
		var parts []string
		switch sp := sep.(type) {
		case nil:
			parts = pySplitSpace(s, int(maxs), name == "rsplit")
		case string:
			if sp == "" {
				r.failf(pos, "empty separator")
			}
			if name == "rsplit" && maxs >= 0 {
				parts = rsplitN(s, sp, int(maxs))
			} else {
				n := -1
				if maxs >= 0 {
					n = int(maxs) + 1
				}
				parts = strings.SplitN(s, sp, n)
			}
		default:
			r.failf(pos, "must be str or None, not %s", typeName(sep))
		}
		r.charge(len(parts))
		return strList(parts)
	case "splitlines":
		return strList(pySplitlines(s, r.truthy(a.arg(0, "keepends", false))))
	case "upper":
		return strings.ToUpper(s)
	case "lower":
		return strings.ToLower(s)
	case "title":
		return pyTitle(s)
	case "capitalize":
		return pyCapitalize(s)
	case "swapcase":
		return strings.Map(func(c rune) rune {
			if unicode.IsUpper(c) {
				return unicode.ToLower(c)
			}
			return unicode.ToUpper(c)
		}, s)
	case "replace":
		old, nw := r.strArg(pos, a, 0, "old"), r.strArg(pos, a, 1, "new")
		return r.replace(pos, s, old, nw, int(r.intArg(pos, a, 2, "count", -1)))
	case "find", "rfind", "index", "rindex":
		sub := r.strArg(pos, a, 0, "sub")
		var i int
		if name == "find" || name == "index" {
			i = strings.Index(s, sub)
		} else {
			i = strings.LastIndex(s, sub)
		}
		if i < 0 {
			if name == "index" || name == "rindex" {
				r.failf(pos, "substring not found")
			}
			return int64(-1)
		}
		return int64(utf8.RuneCountInString(s[:i]))
	case "count":
		sub := r.strArg(pos, a, 0, "sub")
		if sub == "" {
			return int64(utf8.RuneCountInString(s) + 1)
		}
		return int64(strings.Count(s, sub))
	case "join":
		items := r.iterate(pos, a.arg(0, "iterable", nil))
		parts := make([]string, len(items))
		total := 0
		for i, it := range items {
			str, ok := it.(string)
			if !ok {
				r.failf(pos, "sequence item %d: expected str instance, %s found", i, typeName(it))
			}
			parts[i] = str
			total += len(str) + len(s)
			r.checkLen(pos, total)
		}
		return strings.Join(parts, s)
	case "isdigit", "isdecimal", "isnumeric", "isalpha", "isalnum", "isspace":
		if s == "" {
			return false
		}
		for _, c := range s {
			var ok bool
			switch name {
			case "isdigit", "isdecimal":
				ok = unicode.IsDigit(c)
			case "isnumeric":
				ok = unicode.IsNumber(c)
			case "isalpha":
				ok = unicode.IsLetter(c)
			case "isalnum":
				ok = unicode.IsLetter(c) || unicode.IsNumber(c)
			case "isspace":
				ok = isPySpace(c)
			}
			if !ok {
				return false
			}
		}
		return true
	case "isupper", "islower":
		cased := false
		for _, c := range s {
			if unicode.IsUpper(c) || unicode.IsLower(c) || unicode.IsTitle(c) {
				cased = true
				if (name == "isupper" && !unicode.IsUpper(c)) || (name == "islower" && !unicode.IsLower(c)) {
					return false
				}
			}
		}
		return cased
	case "zfill", "ljust", "rjust", "center":
		w := int(r.intArg(pos, a, 0, "width", 0))
		r.checkLen(pos, w)
		fill := " "
		if name != "zfill" {
			if f, ok := a.arg(1, "fillchar", " ").(string); ok && utf8.RuneCountInString(f) == 1 {
				fill = f
			} else {
				r.failf(pos, "the fill character must be exactly one character long")
			}
		}
		n := utf8.RuneCountInString(s)
		if w <= n {
			return s
		}
		pad := w - n
		switch name {
		case "zfill":
			sign := ""
			if s != "" && (s[0] == '+' || s[0] == '-') {
				sign, s = s[:1], s[1:]
			}
			return sign + strings.Repeat("0", pad) + s
		case "ljust":
			return s + strings.Repeat(fill, pad)
		case "rjust":
			return strings.Repeat(fill, pad) + s
		default:
			left := pad / 2
			if pad%2 == 1 && w%2 == 1 {
				left++
			}
			return strings.Repeat(fill, left) + s + strings.Repeat(fill, pad-left)
		}
	case "partition", "rpartition":
		sep := r.strArg(pos, a, 0, "sep")
		if sep == "" {
			r.failf(pos, "empty separator")
		}
		var i int
		if name == "partition" {
			i = strings.Index(s, sep)
		} else {
			i = strings.LastIndex(s, sep)
		}
		if i < 0 {
			if name == "partition" {
				return &jList{items: []any{s, "", ""}, tuple: true}
			}
			return &jList{items: []any{"", "", s}, tuple: true}
		}
		return &jList{items: []any{s[:i], sep, s[i+len(sep):]}, tuple: true}
	case "removeprefix":
		return strings.TrimPrefix(s, r.strArg(pos, a, 0, "prefix"))
	case "removesuffix":
		return strings.TrimSuffix(s, r.strArg(pos, a, 0, "suffix"))
	case "format":
		return r.format(pos, s, a)
	}
	r.failf(pos, "unsupported str method %s", name)
	return nil
}

func strList(parts []string) *jList {
	items := make([]any, len(parts))
	for i, p := range parts {
		items[i] = p
	}
	return &jList{items: items}
}

func (r *renderer) replace(pos int, s, old, nw string, count int) string {
	n := strings.Count(s, old)
	if old == "" {
		n = utf8.RuneCountInString(s) + 1
	}
	if count >= 0 && count < n {
		n = count
	}
	r.checkLen(pos, len(s)+n*(len(nw)-len(old)))
	return strings.Replace(s, old, nw, n)
}

func pySplitSpace(s string, maxsplit int, fromRight bool) []string {
	fields := strings.FieldsFunc(s, isPySpace)
	if maxsplit < 0 || len(fields) <= maxsplit+1 {
		return fields
	}
	if !fromRight {
		// the rest after the maxsplit-th field, with its inner whitespace kept
		rest := s
		out := make([]string, 0, maxsplit+1)
		for i := 0; i < maxsplit; i++ {
			rest = strings.TrimLeftFunc(rest, isPySpace)
			j := strings.IndexFunc(rest, isPySpace)
			out = append(out, rest[:j])
			rest = rest[j:]
		}
		return append(out, strings.TrimLeftFunc(rest, isPySpace))
	}
	rest := s
	var out []string
	for i := 0; i < maxsplit; i++ {
		rest = strings.TrimRightFunc(rest, isPySpace)
		j := strings.LastIndexFunc(rest, isPySpace)
		out = append([]string{rest[j+1:]}, out...)
		rest = rest[:j+1]
	}
	return append([]string{strings.TrimRightFunc(rest, isPySpace)}, out...)
}

func rsplitN(s, sep string, maxsplit int) []string {
	var out []string
	for i := 0; i < maxsplit; i++ {
		j := strings.LastIndex(s, sep)
		if j < 0 {
			break
		}
		out = append([]string{s[j+len(sep):]}, out...)
		s = s[:j]
	}
	return append([]string{s}, out...)
}

func pySplitlines(s string, keep bool) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		brk := 0
		switch c {
		case '\r':
			brk = 1
			if i+1 < len(s) && s[i+1] == '\n' {
				brk = 2
			}
		case '\n', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
			brk = n
		}
		if brk == 0 {
			i += n
			continue
		}
		if keep {
			out = append(out, s[start:i+brk])
		} else {
			out = append(out, s[start:i])
		}
		i += brk
		start = i
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func pyTitle(s string) string {
	prevCased := false
	return strings.Map(func(c rune) rune {
		cased := unicode.IsUpper(c) || unicode.IsLower(c) || unicode.IsTitle(c)
		defer func() { prevCased = cased }()
		if !cased {
			return c
		}
		if prevCased {
			return unicode.ToLower(c)
		}
		return unicode.ToTitle(c)
	}, s)
}

func pyCapitalize(s string) string {
	c, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToTitle(c)) + strings.ToLower(s[n:])
}

// jinjaTitle is Jinja's title filter: words start after whitespace, '-', and brackets.
func jinjaTitle(s string) string {
	var b strings.Builder
	start := true
	for _, c := range s {
		if isPySpace(c) || strings.ContainsRune("-({[<", c) {
			start = true
			b.WriteRune(c)
			continue
		}
		if start {
			b.WriteRune(unicode.ToUpper(c))
		} else {
			b.WriteRune(unicode.ToLower(c))
		}
		start = false
	}
	return b.String()
}

// format is str.format with {} / {0} / {name} fields (attribute and format specs are not
// supported).
func (r *renderer) format(pos int, s string, a *jArgs) string {
	var b strings.Builder
	auto := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			b.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			b.WriteByte('}')
			i++
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				r.failf(pos, "single '{' encountered in format string")
			}
			field := s[i+1 : i+j]
			if strings.ContainsAny(field, ":!.[") {
				r.failf(pos, "format field {%s} is not supported", field)
			}
			var v any
			if field == "" {
				v = a.arg(auto, "", nil)
				if auto >= len(a.pos) {
					r.failf(pos, "format index %d out of range", auto)
				}
				auto++
			} else if n, err := strconv.Atoi(field); err == nil {
				if n >= len(a.pos) {
					r.failf(pos, "format index %d out of range", n)
				}
				v = a.pos[n]
			} else {
				found := false
				for _, k := range a.kw {
					if k.name == field {
						v, found = k.val, true
					}
				}
				if !found {
					r.failf(pos, "format key %q not given", field)
				}
			}
			b.WriteString(r.str(v))
			r.checkLen(pos, b.Len())
			i += j
		case c == '}':
			r.failf(pos, "single '}' encountered in format string")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ---- filters ----

var knownFilters = map[string]bool{
	"trim": true, "length": true, "count": true, "upper": true, "lower": true, "capitalize": true,
	"title": true, "replace": true, "join": true, "first": true, "last": true, "default": true,
	"d": true, "tojson": true, "string": true, "int": true, "float": true, "list": true,
	"items": true, "selectattr": true, "rejectattr": true, "select": true, "reject": true,
	"map": true, "unique": true, "sort": true, "reverse": true, "sum": true, "min": true,
	"max": true, "abs": true, "round": true, "indent": true, "center": true, "wordcount": true,
	"safe": true, "e": true, "escape": true, "forceescape": true, "attr": true, "dictsort": true,
	"batch": true, "format": true, "pprint": true, "truncate": true,
}

func (r *renderer) filter(f *filterExpr, v any, sc *rscope) any {
	a := r.evalArgs(f.args, f.kwargs, sc, f.name)
	return r.applyFilter(f.s, f.name, v, a)
}

func (r *renderer) applyFilter(pos int, name string, v any, a *jArgs) any {
	r.step(pos)
	a.name = name
	switch name {
	case "trim":
		return stripChars(r.str(v), a.arg(0, "chars", nil), true, true)
	case "length", "count":
		switch x := v.(type) {
		case string:
			return int64(utf8.RuneCountInString(x))
		case *jList:
			return int64(len(x.items))
		case *jDict:
			return int64(len(x.keys))
		case jUndef:
			return int64(0)
		}
		r.failf(pos, "object of type %s has no len()", typeName(v))
	case "upper":
		return strings.ToUpper(r.str(v))
	case "lower":
		return strings.ToLower(r.str(v))
	case "capitalize":
		return pyCapitalize(r.str(v))
	case "title":
		return jinjaTitle(r.str(v))
	case "replace":
		return r.replace(pos, r.str(v), r.str(a.arg(0, "old", "")), r.str(a.arg(1, "new", "")), int(r.intArg(pos, a, 2, "count", -1)))
	case "join":
		sep := r.str(a.arg(0, "d", ""))
		attr := a.arg(1, "attribute", nil)
		var b strings.Builder
		for i, it := range r.iterate(pos, v) {
			if attr != nil {
				it = r.attrPath(pos, it, attr)
			}
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(r.str(it))
			r.checkLen(pos, b.Len())
		}
		return b.String()
	case "first":
		if items := r.iterate(pos, v); len(items) > 0 {
			return items[0]
		}
		return jUndef{hint: "No first item, sequence was empty."}
	case "last":
		if _, ok := v.(jUndef); ok {
			r.undefCheck(pos, v)
		}
		if items := r.iterate(pos, v); len(items) > 0 {
			return items[len(items)-1]
		}
		return jUndef{hint: "No last item, sequence was empty."}
	case "default", "d":
		def := a.arg(0, "default_value", "")
		if _, ok := v.(jUndef); ok || (r.truthy(a.arg(1, "boolean", false)) && !r.truthy(v)) {
			return def
		}
		return v
	case "tojson":
		return r.tojson(pos, v, a)
	case "string":
		return r.str(v)
	case "int":
		return r.toInt(v, a)
	case "float":
		return r.toFloat(v, a.arg(0, "default", 0.0))
	case "list":
		items := r.iterate(pos, v)
		r.chargeItems(len(items))
		return &jList{items: append([]any(nil), items...)}
	case "items":
		switch x := v.(type) {
		case jUndef:
			return &jList{}
		case *jDict:
			return dictItems(x)
		}
		r.failf(pos, "can only get item pairs from a mapping, not %s", typeName(v))
	case "selectattr", "rejectattr", "select", "reject":
		items := r.iterate(pos, v)
		rest := a.pos
		var attr any
		if name == "selectattr" || name == "rejectattr" {
			if len(rest) == 0 {
				r.failf(pos, "%s needs an attribute name", name)
			}
			attr, rest = rest[0], rest[1:]
		}
		want := name == "selectattr" || name == "select"
		var out []any
		for _, it := range items {
			r.step(pos)
			x := it
			if attr != nil {
				x = r.attrPath(pos, it, attr)
			}
			var ok bool
			if len(rest) == 0 {
				ok = r.truthy(x)
			} else {
				tn, isStr := rest[0].(string)
				if !isStr {
					r.failf(pos, "%s: the test name must be a string", name)
				}
				ok = r.test(pos, tn, x, rest[1:])
			}
			if ok == want {
				out = append(out, it)
			}
		}
		return &jList{items: out}
	case "map":
		items := r.iterate(pos, v)
		out := make([]any, len(items))
		if attr := a.arg(-1, "attribute", nil); attr != nil {
			def := a.arg(-1, "default", nil)
			for i, it := range items {
				r.step(pos)
				x := r.attrPath(pos, it, attr)
				if _, ok := x.(jUndef); ok && def != nil {
					x = def
				}
				out[i] = x
			}
			return &jList{items: out}
		}
		if len(a.pos) == 0 {
			r.failf(pos, "map needs a filter name or attribute=")
		}
		fn, ok := a.pos[0].(string)
		if !ok {
			r.failf(pos, "map: the filter name must be a string")
		}
		if !knownFilters[fn] {
			r.failf(pos, "unsupported filter %q", fn)
		}
		for i, it := range items {
			out[i] = r.applyFilter(pos, fn, it, &jArgs{pos: a.pos[1:], kw: a.kw})
		}
		return &jList{items: out}
	case "unique":
		attr := a.arg(1, "attribute", nil)
		cs := r.truthy(a.arg(0, "case_sensitive", false))
		seen := newDict()
		var out []any
		for _, it := range r.iterate(pos, v) {
			r.step(pos)
			k := r.sortKey(pos, it, attr, cs)
			if _, dup := seen.get(k); dup {
				continue
			}
			if !seen.set(k, true) {
				r.failf(pos, "unhashable type: %s", typeName(k))
			}
			out = append(out, it)
		}
		return &jList{items: out}
	case "sort":
		rev := r.truthy(a.arg(0, "reverse", false))
		cs := r.truthy(a.arg(1, "case_sensitive", false))
		attr := a.arg(2, "attribute", nil)
		items := append([]any(nil), r.iterate(pos, v)...)
		keys := make([]any, len(items))
		for i, it := range items {
			keys[i] = r.sortKey(pos, it, attr, cs)
		}
		idx := make([]int, len(items))
		for i := range idx {
			idx[i] = i
		}
		r.charge(len(items) * 8)
		sort.SliceStable(idx, func(i, j int) bool {
			c := r.order(pos, keys[idx[i]], keys[idx[j]])
			if rev {
				return c > 0
			}
			return c < 0
		})
		out := make([]any, len(items))
		for i, j := range idx {
			out[i] = items[j]
		}
		return &jList{items: out}
	case "reverse":
		if s, ok := v.(string); ok {
			rs := []rune(s)
			for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
				rs[i], rs[j] = rs[j], rs[i]
			}
			return string(rs)
		}
		items := r.iterate(pos, v)
		out := make([]any, len(items))
		for i, it := range items {
			out[len(items)-1-i] = it
		}
		return &jList{items: out}
	case "sum":
		attr := a.arg(0, "attribute", nil)
		total := a.arg(1, "start", int64(0))
		for _, it := range r.iterate(pos, v) {
			if attr != nil {
				it = r.attrPath(pos, it, attr)
			}
			total = r.binop(pos, "+", total, it)
		}
		return total
	case "min", "max":
		cs := r.truthy(a.arg(0, "case_sensitive", false))
		attr := a.arg(1, "attribute", nil)
		items := r.iterate(pos, v)
		if len(items) == 0 {
			return jUndef{hint: "No aggregated item, sequence was empty."}
		}
		best, bk := items[0], r.sortKey(pos, items[0], attr, cs)
		for _, it := range items[1:] {
			k := r.sortKey(pos, it, attr, cs)
			c := r.order(pos, k, bk)
			if (name == "min" && c < 0) || (name == "max" && c > 0) {
				best, bk = it, k
			}
		}
		return best
	case "abs":
		switch x := v.(type) {
		case bool:
			return b2i(x)
		case int64:
			if x == math.MinInt64 {
				r.failf(pos, "integer overflow")
			}
			if x < 0 {
				return -x
			}
			return x
		case float64:
			return math.Abs(x)
		}
		r.failf(pos, "bad operand type for abs(): %s", typeName(v))
	case "round":
		prec := r.intArg(pos, a, 0, "precision", 0)
		method := r.str(a.arg(1, "method", "common"))
		n, ok := toNum(v)
		if !ok {
			r.failf(pos, "round needs a number, not %s", typeName(v))
		}
		if prec < 0 || prec > 15 {
			r.failf(pos, "round precision %d is not supported", prec)
		}
		p := math.Pow(10, float64(prec))
		f := n.float() * p
		switch method {
		case "common":
			f = math.RoundToEven(f)
		case "ceil":
			f = math.Ceil(f)
		case "floor":
			f = math.Floor(f)
		default:
			r.failf(pos, "method must be common, ceil or floor")
		}
		return f / p
	case "indent":
		return r.indent(pos, r.str(v), a)
	case "center":
		return r.strMethod(pos, r.str(v), "center", &jArgs{pos: []any{a.arg(0, "width", int64(80))}})
	case "wordcount":
		n := 0
		in := false
		for _, c := range r.str(v) {
			w := unicode.IsLetter(c) || unicode.IsDigit(c) || c == '_'
			if w && !in {
				n++
			}
			in = w
		}
		return int64(n)
	case "safe":
		return r.str(v)
	case "e", "escape", "forceescape":
		return htmlEscape(r.str(v))
	case "attr":
		an := r.str(a.arg(0, "name", ""))
		r.refuseInternal(pos, an)
		switch x := v.(type) {
		case *jNS:
			if val, ok := x.attrs.get(an); ok {
				return val
			}
		case *jLoop:
			return r.loopAttr(pos, x, an)
		case jUndef:
			r.undefCheck(pos, x)
		default:
			if m := r.method(pos, v, an); m != nil {
				return m
			}
		}
		return jUndef{hint: fmt.Sprintf("%s has no attribute '%s'", typeName(v), an)}
	case "dictsort":
		d, ok := v.(*jDict)
		if !ok {
			r.failf(pos, "dictsort needs a dict, not %s", typeName(v))
		}
		cs := r.truthy(a.arg(0, "case_sensitive", false))
		by := r.str(a.arg(1, "by", "key"))
		rev := r.truthy(a.arg(2, "reverse", false))
		items := dictItems(d).items
		sort.SliceStable(items, func(i, j int) bool {
			ki, kj := items[i].(*jList).items, items[j].(*jList).items
			n := 0
			if by == "value" {
				n = 1
			}
			c := r.order(pos, r.sortKey(pos, ki[n], nil, cs), r.sortKey(pos, kj[n], nil, cs))
			if rev {
				return c > 0
			}
			return c < 0
		})
		return &jList{items: items}
	case "batch":
		size := int(r.intArg(pos, a, 0, "linecount", 1))
		if size <= 0 {
			r.failf(pos, "batch size must be positive")
		}
		fill := a.arg(1, "fill_with", nil)
		var out []any
		var cur []any
		for _, it := range r.iterate(pos, v) {
			cur = append(cur, it)
			if len(cur) == size {
				out = append(out, &jList{items: cur})
				cur = nil
			}
		}
		if len(cur) > 0 {
			if fill != nil {
				for len(cur) < size {
					cur = append(cur, fill)
				}
			}
			out = append(out, &jList{items: cur})
		}
		return &jList{items: out}
	case "format":
		if len(a.kw) > 0 {
			r.failf(pos, "format with keyword arguments is not supported")
		}
		return r.printf(pos, r.str(v), &jList{items: a.pos, tuple: true})
	case "pprint":
		return r.repr(v, 1)
	case "truncate":
		s := r.str(v)
		length := int(r.intArg(pos, a, 0, "length", 255))
		kill := r.truthy(a.arg(1, "killwords", false))
		end := r.str(a.arg(2, "end", "..."))
		leeway := int(r.intArg(pos, a, 3, "leeway", 5))
		if length < utf8.RuneCountInString(end) || leeway < 0 || length > maxRenderOutput || leeway > maxRenderOutput {
			r.failf(pos, "truncate: bad length %d or leeway %d", length, leeway)
		}
		rs := []rune(s)
		if len(rs) <= length+leeway {
			return s
		}
		cut := length - utf8.RuneCountInString(end)
		if kill {
			return string(rs[:cut]) + end
		}
		res := string(rs[:cut])
		if i := strings.LastIndex(res, " "); i >= 0 {
			res = res[:i]
		}
		return res + end
	case "random", "shuffle":
		r.failf(pos, "filter %q is not deterministic", name)
	default:
		r.failf(pos, "unsupported filter %q", name)
	}
	return nil
}

// attrPath follows a selectattr / map attribute ("a.b.0") with getitem, as Jinja's
// make_attrgetter does.
func (r *renderer) attrPath(pos int, v any, attr any) any {
	s, ok := attr.(string)
	if !ok {
		return r.getitem(pos, v, attr)
	}
	for _, part := range strings.Split(s, ".") {
		if n, err := strconv.ParseInt(part, 10, 64); err == nil {
			v = r.getitem(pos, v, n)
			continue
		}
		r.refuseInternal(pos, part)
		v = r.getitem(pos, v, part)
	}
	return v
}

func (r *renderer) sortKey(pos int, v any, attr any, caseSensitive bool) any {
	if attr != nil {
		v = r.attrPath(pos, v, attr)
	}
	if s, ok := v.(string); ok && !caseSensitive {
		return strings.ToLower(s)
	}
	return v
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

func (r *renderer) indent(pos int, s string, a *jArgs) string {
	var ind string
	switch w := a.arg(0, "width", int64(4)).(type) {
	case string:
		ind = w
	default:
		n, ok := toIndex(w)
		if !ok {
			r.failf(pos, "indent width must be an int or a string")
		}
		if n > 0 {
			r.checkLen(pos, int(min(n, maxRenderOutput+1)))
			ind = strings.Repeat(" ", int(n))
		}
	}
	first := r.truthy(a.arg(1, "first", false))
	blank := r.truthy(a.arg(2, "blank", false))
	lines := pySplitlines(s+"\n", false)
	r.checkLen(pos, len(s)+len(lines)*len(ind))
	var rv string
	if blank {
		rv = strings.Join(lines, "\n"+ind)
	} else {
		var b strings.Builder
		b.WriteString(lines[0])
		for _, l := range lines[1:] {
			b.WriteString("\n")
			if l != "" {
				b.WriteString(ind)
			}
			b.WriteString(l)
		}
		rv = b.String()
	}
	if first {
		rv = ind + rv
	}
	return rv
}

// toInt is Jinja's int filter: int(value, base), else int(float(value)), else default.
func (r *renderer) toInt(v any, a *jArgs) any {
	def := a.arg(0, "default", int64(0))
	base := a.arg(1, "base", int64(10))
	switch x := v.(type) {
	case bool:
		return b2i(x)
	case int64:
		return x
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) >= 9.2e18 {
			return def
		}
		return int64(x)
	case string:
		s := strings.TrimFunc(x, isPySpace)
		b, _ := toIndex(base)
		digits, sign := s, ""
		if digits != "" && (digits[0] == '+' || digits[0] == '-') {
			sign, digits = digits[:1], digits[1:]
		}
		if p := map[int64]string{16: "0x", 8: "0o", 2: "0b"}[b]; p != "" && len(digits) > 2 && strings.EqualFold(digits[:2], p) {
			digits = digits[2:]
		}
		if b == 0 || b >= 2 && b <= 36 {
			if n, err := strconv.ParseInt(sign+strings.ReplaceAll(digits, "_", ""), int(b), 64); err == nil {
				return n
			}
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 9.2e18 {
			return int64(f)
		}
	}
	return def
}

func (r *renderer) toFloat(v any, def any) any {
	switch x := v.(type) {
	case bool:
		return float64(b2i(x))
	case int64:
		return float64(x)
	case float64:
		return x
	case string:
		s := strings.ToLower(strings.TrimFunc(x, isPySpace))
		switch s {
		case "inf", "+inf", "infinity", "+infinity":
			return math.Inf(1)
		case "-inf", "-infinity":
			return math.Inf(-1)
		case "nan", "+nan", "-nan":
			return math.NaN()
		}
		if f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64); err == nil {
			return f
		}
	}
	return def
}

// ---- tojson ----

// tojson is transformers' tojson filter: json.dumps(x, ensure_ascii=False, indent=indent,
// separators=separators, sort_keys=sort_keys).
func (r *renderer) tojson(pos int, v any, a *jArgs) string {
	if r.truthy(a.arg(-1, "ensure_ascii", false)) {
		r.failf(pos, "tojson(ensure_ascii=True) is not supported")
	}
	j := &jsonWriter{r: r, pos: pos, itemSep: ", ", keySep: ": "}
	switch ind := a.arg(0, "indent", nil).(type) {
	case nil:
	case string:
		j.indent, j.hasIndent = ind, true
	default:
		n, ok := toIndex(ind)
		if !ok {
			r.failf(pos, "tojson indent must be an int or a string")
		}
		if n > 64 {
			r.failf(pos, "tojson indent %d is too large", n)
		}
		if n > 0 {
			j.indent = strings.Repeat(" ", int(n))
		}
		j.hasIndent = true
	}
	if j.hasIndent {
		j.itemSep = ","
	}
	if seps := a.arg(-1, "separators", nil); seps != nil {
		l, ok := seps.(*jList)
		if !ok || len(l.items) != 2 {
			r.failf(pos, "tojson separators must be a pair of strings")
		}
		is, ok1 := l.items[0].(string)
		ks, ok2 := l.items[1].(string)
		if !ok1 || !ok2 {
			r.failf(pos, "tojson separators must be a pair of strings")
		}
		j.itemSep, j.keySep = is, ks
	}
	j.sortKeys = r.truthy(a.arg(-1, "sort_keys", false))
	j.value(v, 0)
	return j.b.String()
}

type jsonWriter struct {
	r               *renderer
	pos             int
	b               strings.Builder
	indent          string
	hasIndent       bool
	itemSep, keySep string
	sortKeys        bool
}

func (j *jsonWriter) newline(level int) {
	if j.hasIndent {
		j.b.WriteByte('\n')
		for i := 0; i < level; i++ {
			j.b.WriteString(j.indent)
		}
	}
}

func (j *jsonWriter) value(v any, level int) {
	r := j.r
	if level > maxValueDepth {
		r.failf(j.pos, "value nested deeper than %d", maxValueDepth)
	}
	r.checkLen(j.pos, j.b.Len())
	switch x := v.(type) {
	case nil:
		j.b.WriteString("null")
	case bool:
		if x {
			j.b.WriteString("true")
		} else {
			j.b.WriteString("false")
		}
	case int64:
		j.b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		switch {
		case math.IsInf(x, 1):
			j.b.WriteString("Infinity")
		case math.IsInf(x, -1):
			j.b.WriteString("-Infinity")
		case math.IsNaN(x):
			j.b.WriteString("NaN")
		default:
			j.b.WriteString(pyFloat(x))
		}
	case string:
		jsonString(&j.b, x)
	case *jList:
		if len(x.items) == 0 {
			j.b.WriteString("[]")
			return
		}
		j.b.WriteByte('[')
		for i, it := range x.items {
			if i > 0 {
				j.b.WriteString(j.itemSep)
			}
			j.newline(level + 1)
			j.value(it, level+1)
		}
		j.newline(level)
		j.b.WriteByte(']')
	case *jDict:
		if len(x.keys) == 0 {
			j.b.WriteString("{}")
			return
		}
		type kv struct {
			k string
			v any
		}
		pairs := make([]kv, len(x.keys))
		for i, k := range x.keys {
			var ks string
			switch kk := k.(type) {
			case string:
				ks = kk
			case nil:
				ks = "null"
			case bool:
				ks = "false"
				if kk {
					ks = "true"
				}
			case int64:
				ks = strconv.FormatInt(kk, 10)
			case float64:
				ks = pyFloat(kk)
			default:
				r.failf(j.pos, "keys must be str, int, float, bool or None, not %s", typeName(k))
			}
			pairs[i] = kv{ks, x.vals[i]}
		}
		if j.sortKeys {
			sort.SliceStable(pairs, func(a, b int) bool { return pairs[a].k < pairs[b].k })
		}
		j.b.WriteByte('{')
		for i, p := range pairs {
			if i > 0 {
				j.b.WriteString(j.itemSep)
			}
			j.newline(level + 1)
			jsonString(&j.b, p.k)
			j.b.WriteString(j.keySep)
			j.value(p.v, level+1)
		}
		j.newline(level)
		j.b.WriteByte('}')
	default:
		r.failf(j.pos, "Object of type %s is not JSON serializable", typeName(v))
	}
}

func jsonString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if c < 0x20 {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// ---- tests ----

var knownTests = map[string]bool{
	"defined": true, "undefined": true, "none": true, "string": true, "number": true,
	"integer": true, "float": true, "boolean": true, "true": true, "false": true,
	"mapping": true, "iterable": true, "sequence": true, "callable": true, "sameas": true,
	"equalto": true, "eq": true, "==": true, "ne": true, "!=": true, "lt": true, "<": true,
	"lessthan": true, "le": true, "<=": true, "gt": true, ">": true, "greaterthan": true,
	"ge": true, ">=": true, "in": true, "odd": true, "even": true, "divisibleby": true,
	"lower": true, "upper": true, "escaped": true, "filter": true, "test": true,
}

func (r *renderer) test(pos int, name string, v any, args []any) bool {
	r.step(pos)
	arg := func() any {
		if len(args) == 0 {
			r.failf(pos, "test %q needs an argument", name)
		}
		return args[0]
	}
	switch name {
	case "defined":
		_, u := v.(jUndef)
		return !u
	case "undefined":
		_, u := v.(jUndef)
		return u
	case "none":
		return v == nil
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := toNum(v)
		return ok
	case "integer":
		_, ok := v.(int64)
		return ok
	case "float":
		_, ok := v.(float64)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "true":
		b, ok := v.(bool)
		return ok && b
	case "false":
		b, ok := v.(bool)
		return ok && !b
	case "mapping":
		_, ok := v.(*jDict)
		return ok
	case "iterable":
		switch v.(type) {
		case string, *jList, *jDict, jUndef:
			return true
		}
		return false
	case "sequence":
		switch v.(type) {
		case string, *jList, *jDict, jUndef:
			return true
		}
		return false
	case "callable":
		switch v.(type) {
		case *jMacro, *jCaller, *jFunc, *jLoop:
			return true
		}
		return false
	case "sameas":
		o := arg()
		switch x := v.(type) {
		case nil, bool:
			return v == o
		case int64, float64, string:
			return typeName(v) == typeName(o) && r.equal(v, o, 0)
		case jUndef:
			_, ok := o.(jUndef)
			return ok
		default:
			return x == o
		}
	case "equalto", "eq", "==":
		return r.equal(v, arg(), 0)
	case "ne", "!=":
		return !r.equal(v, arg(), 0)
	case "lt", "<", "lessthan":
		return r.order(pos, v, arg()) < 0
	case "le", "<=":
		return r.order(pos, v, arg()) <= 0
	case "gt", ">", "greaterthan":
		return r.order(pos, v, arg()) > 0
	case "ge", ">=":
		return r.order(pos, v, arg()) >= 0
	case "in":
		return r.contains(pos, arg(), v)
	case "odd", "even", "divisibleby":
		n, ok := toIndex(v)
		if !ok {
			r.undefCheck(pos, v)
			r.failf(pos, "test %q needs an integer, not %s", name, typeName(v))
		}
		switch name {
		case "odd":
			return n%2 != 0
		case "even":
			return n%2 == 0
		}
		d, ok := toIndex(arg())
		if !ok || d == 0 {
			r.failf(pos, "divisibleby needs a non-zero integer")
		}
		return n%d == 0
	case "lower":
		s := r.str(v)
		return s == strings.ToLower(s) && r.strMethod(pos, s, "islower", &jArgs{}).(bool)
	case "upper":
		s := r.str(v)
		return r.strMethod(pos, s, "isupper", &jArgs{}).(bool)
	case "escaped":
		return false
	case "filter":
		s, _ := v.(string)
		return knownFilters[s]
	case "test":
		s, _ := v.(string)
		return knownTests[s]
	}
	r.failf(pos, "unsupported test %q", name)
	return false
}
