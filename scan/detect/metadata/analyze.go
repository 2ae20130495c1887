package metadata

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The analysis is an abstract interpretation of the template AST. Every expression
// evaluates to a value that records where it comes from (the messages list, one message,
// the text of a message, a message's role, the clock, template constants), the literal
// text it can carry, and its "match taint": the comparisons of message text against
// literals that it depends on.
//
// Message text is message['content'] / message.content (also reasoning_content, thinking,
// and the text of content parts) of a message reached through messages (indexing, slices,
// loops, |first/|last/|selectattr, loop.previtem, macro arguments), and every value
// computed from it (filters such as |lower or |trim, slices, split, replace, concatenation,
// variables set from it). A comparison of message text with a literal is a trigger: `in`,
// `not in`, `==`, `!=`, ordering, .startswith/.endswith/.find/.count/.index, split or
// replace with a literal, regex-like filters, tests with a literal argument, and
// selectattr('content', ...). Structural uses are not: `is string`, `is defined`,
// `is none`, `|length`, a role, `'tool_calls' in message` (a key of the message), the
// `type` of a content part. Emptiness checks (== '') are not triggers either.
//
// Conditions that carry triggers are content-keyed branches; the literal output emitted
// under them (directly, through variables set under them, through macros expanded inline
// with their arguments, through ternaries and and/or) and message text rewritten under
// them is their effect. Triggers are classified as phrases (words: the backdoor
// signature), markup (tags such as </think>, special tokens, punctuation: format parsing
// done by real templates) and mode switches (/think); see classifyBranch for severities.
//
// Variables are flow-insensitive: a variable is the union of everything assigned to it,
// computed to a fixpoint over repeated walks, which covers loops and later uses. For-loop
// bodies and macro calls have their own scopes (a loop variable shadows a global of the
// same name); assignments in a loop body are also merged into the globals, because some
// runtimes leak them. Every walk is bounded by a step budget, macro expansion by depth.

type vflag uint16

const (
	fMessages vflag = 1 << iota // the messages list or a slice of it
	fMessage                    // one message
	fContent                    // text written by a participant (message content)
	fPart                       // one part of a multi-part content list
	fRole                       // a message's role
	fTime                       // the current date or time
	fConst                      // derived only from template constants
	fStr                        // derived from at least one string constant
	fLoop                       // the loop object
)

// trigKind classifies what a message's text is compared against.
type trigKind uint8

const (
	trigPhrase trigKind = iota // natural-language words: the backdoor signature
	trigMarkup                 // tags, special tokens, punctuation: format parsing
	trigSwitch                 // "/think"-style mode switches
	trigTime                   // a date or time compared against a literal
)

func (k trigKind) String() string {
	return [...]string{"phrase", "markup", "switch", "time"}[k]
}

type trigger struct {
	id         int
	literal    string
	op         string
	src        string
	line       int
	kind       trigKind
	roles      []string
	systemOnly bool
}

type cond struct {
	id    int
	src   string
	line  int
	trig  []*trigger
	roles []string
}

func (c *cond) suspicious() bool { return c != nil && len(c.trig) > 0 }

type frag struct {
	text   string
	line   int
	guards []*cond
}

type value struct {
	flags  vflag
	trig   []*trigger
	frags  []frag
	consts []string
	macro  *macroStmt
}

const (
	maxFrags    = 48
	maxConsts   = 16
	maxTrig     = 32
	maxConstLen = 4096
	walkBudget  = 1_000_000
	maxExpand   = 8 // nested macro expansions
	maxPasses   = 5
)

var empty = &value{}

// item is one piece of output: a literal, a value derived from message text, or a
// raise_exception call.
type item struct {
	text    string
	line    int
	guards  []*cond
	trig    []*trigger
	negs    []*cond // guards that hold negated (the item is in an else or later elif branch)
	derived bool    // output computed from message text or a match
	raise   bool
}

type analyzer struct {
	tpl    *Template
	src    string
	nl     []int
	env    map[string]*value
	scopes []scope
	conds  map[any]*cond
	trigs  map[trigKey]*trigger
	final  bool
	out    []item
	sink   *[]item
	guards []*cond
	negs   []*cond
	roles  [][]string
	loops  []*value
	budget int
	depth  int
	expand int
	active map[*macroStmt]int // expansions of each macro in progress
	// per condition evaluation
	curRoles []string
	newTrigs []*trigger
	hazards  []Hazard
	hazSeen  map[string]bool
	changed  bool
	nconds   int
}

type trigKey struct {
	node any
	lit  string
}

func newAnalyzer(t *Template) *analyzer {
	a := &analyzer{tpl: t, src: t.src, env: map[string]*value{}, conds: map[any]*cond{}, trigs: map[trigKey]*trigger{}, hazSeen: map[string]bool{}}
	for _, h := range t.hazards {
		key := fmt.Sprintf("%d/%s", h.Line, h.Detail)
		if !a.hazSeen[key] {
			a.hazSeen[key] = true
			a.hazards = append(a.hazards, h)
		}
	}
	for i := 0; i < len(t.src); i++ {
		if t.src[i] == '\n' {
			a.nl = append(a.nl, i)
		}
	}
	return a
}

func (a *analyzer) line(pos int) int {
	return sort.SearchInts(a.nl, pos) + 1
}

// source returns the text of x as written (whitespace collapsed, at most ~300 bytes).
func (a *analyzer) source(x expr) string {
	s, e := x.bounds()
	if s < 0 || e > len(a.src) || s > e {
		return ""
	}
	cut := ""
	if e-s > 300 {
		e = s + 300
		for e > s && !utf8.RuneStart(a.src[e]) {
			e--
		}
		cut = "…"
	}
	return strings.Join(strings.Fields(a.src[s:e]), " ") + cut
}

// run computes the variables to a fixpoint, then walks once more recording output.
func (a *analyzer) run() {
	for pass := 0; pass < maxPasses; pass++ {
		a.changed = false
		a.budget = walkBudget
		a.walk(a.tpl.body)
		if !a.changed {
			break
		}
	}
	a.final = true
	a.budget = walkBudget
	a.walk(a.tpl.body)
}

// ---- values ----

// merge adds src to dst and reports whether dst changed. Slices are extended with full
// slice expressions so that values that share a backing array never overwrite each other.
func merge(dst, src *value) bool {
	if src == nil {
		return false
	}
	ch := false
	nf := (dst.flags | src.flags) &^ fConst
	if dst.flags&fConst != 0 && src.flags&fConst != 0 {
		nf |= fConst
	}
	if nf != dst.flags {
		dst.flags = nf
		ch = true
	}
	for _, t := range src.trig {
		if len(dst.trig) < maxTrig && !hasTrig(dst.trig, t) {
			dst.trig = append(dst.trig[:len(dst.trig):len(dst.trig)], t)
			ch = true
		}
	}
	for _, f := range src.frags {
		if len(dst.frags) < maxFrags && !hasFrag(dst.frags, f) {
			dst.frags = append(dst.frags[:len(dst.frags):len(dst.frags)], f)
			ch = true
		}
	}
	for _, c := range src.consts {
		if len(dst.consts) < maxConsts && !hasString(dst.consts, c) {
			dst.consts = append(dst.consts[:len(dst.consts):len(dst.consts)], c)
			ch = true
		}
	}
	if src.macro != nil && dst.macro == nil {
		dst.macro = src.macro
		ch = true
	}
	return ch
}

func union(vs ...*value) *value {
	out := &value{}
	first := true
	for _, v := range vs {
		if v == nil {
			continue
		}
		if first {
			out.flags = v.flags
			first = false
		}
		merge(out, v)
	}
	return out
}

func hasTrig(ts []*trigger, t *trigger) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

func hasCond(cs []*cond, c *cond) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

func hasString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func hasFrag(fs []frag, f frag) bool {
	for _, x := range fs {
		if x.text == f.text && x.line == f.line && sameConds(x.guards, f.guards) {
			return true
		}
	}
	return false
}

func sameConds(a, b []*cond) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		if !hasCond(b, c) {
			return false
		}
	}
	return true
}

func addConds(dst []*cond, src ...*cond) []*cond {
	out := dst
	copied := false
	for _, c := range src {
		if c.suspicious() && !hasCond(out, c) {
			if !copied {
				out = append([]*cond(nil), out...)
				copied = true
			}
			out = append(out, c)
		}
	}
	return out
}

func condTrig(cs []*cond) []*trigger {
	var out []*trigger
	for _, c := range cs {
		for _, t := range c.trig {
			if !hasTrig(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// guarded returns v with every literal made conditional on the given conditions and its
// value made dependent on their triggers.
func guarded(v *value, cs ...*cond) *value {
	any := false
	for _, c := range cs {
		if c.suspicious() {
			any = true
		}
	}
	if !any {
		return v
	}
	out := &value{flags: v.flags, consts: v.consts, macro: v.macro, trig: append([]*trigger(nil), v.trig...)}
	for _, f := range v.frags {
		f.guards = addConds(f.guards, cs...)
		out.frags = append(out.frags, f)
	}
	for _, t := range condTrig(cs) {
		if !hasTrig(out.trig, t) && len(out.trig) < maxTrig {
			out.trig = append(out.trig, t)
		}
	}
	return out
}

func constStr(s string, line int) *value {
	if len(s) > maxConstLen {
		s = s[:maxConstLen]
	}
	return &value{flags: fConst | fStr, consts: []string{s}, frags: []frag{{text: s, line: line}}}
}

// ---- scopes and variables ----

// scope is the local variables of a for-loop body or a macro call. Jinja keeps
// assignments in a loop body local to it; a set there is also merged into the global
// variables (some runtimes leak them), but a loop variable shadows a global of its name.
type scope struct {
	vars map[string]*value
	loop bool
}

func (a *analyzer) lookup(name string) *value {
	for i := len(a.scopes) - 1; i >= 0; i-- {
		if v, ok := a.scopes[i].vars[name]; ok {
			return v
		}
	}
	if v, ok := a.env[name]; ok {
		return v
	}
	switch name {
	case "messages":
		return &value{flags: fMessages}
	case "loop":
		return &value{flags: fLoop}
	}
	return empty
}

func (a *analyzer) assign(name string, v *value) {
	if !strings.Contains(name, ".") {
		for i := len(a.scopes) - 1; i >= 0; i-- {
			if cur, ok := a.scopes[i].vars[name]; ok {
				merge(cur, v)
				return
			}
		}
		if i := len(a.scopes) - 1; i >= 0 {
			cur := &value{flags: v.flags}
			merge(cur, v)
			a.scopes[i].vars[name] = cur
			if !a.scopes[i].loop {
				return
			}
		}
	}
	cur, ok := a.env[name]
	if !ok {
		cur = &value{flags: v.flags}
		a.env[name] = cur
		a.changed = true
	}
	if merge(cur, v) {
		a.changed = true
	}
}

// control makes a value assigned under the current guards depend on them.
func (a *analyzer) control(v *value) *value { return guarded(v, a.guards...) }

// path returns the dotted name of x ("ns.items") when x is a name or attribute chain.
func path(x expr) (string, bool) {
	switch x := x.(type) {
	case *nameExpr:
		return x.name, true
	case *attrExpr:
		p, ok := path(x.obj)
		return p + "." + x.attr, ok
	}
	return "", false
}

// ---- output ----

func (a *analyzer) push(it item) {
	if it.negs == nil {
		it.negs = a.negs
	}
	if a.sink != nil {
		if len(*a.sink) < 4*maxFrags {
			*a.sink = append(*a.sink, it)
		}
		return
	}
	if a.final && len(a.out) < 200000 {
		a.out = append(a.out, it)
	}
}

func (a *analyzer) emit(v *value, line int) {
	for _, f := range v.frags {
		g := addConds(f.guards, a.guards...)
		l := f.line
		if l == 0 {
			l = line
		}
		a.push(item{text: f.text, line: l, guards: g})
	}
	if v.flags&fContent != 0 || len(v.trig) > 0 {
		a.push(item{line: line, guards: a.guards, trig: v.trig, derived: true})
	}
}

// capture runs f with output redirected and returns what it emitted as a value.
func (a *analyzer) capture(f func()) *value {
	var buf []item
	saved := a.sink
	a.sink = &buf
	f()
	a.sink = saved
	v := &value{}
	for _, it := range buf {
		switch {
		case it.raise:
			a.push(it)
		case it.derived:
			v.flags |= fContent
			for _, t := range it.trig {
				if !hasTrig(v.trig, t) && len(v.trig) < maxTrig {
					v.trig = append(v.trig, t)
				}
			}
		default:
			if len(v.frags) < maxFrags {
				v.frags = append(v.frags, frag{text: it.text, line: it.line, guards: it.guards})
			}
		}
	}
	return v
}

// ---- statements ----

func (a *analyzer) walk(body []stmt) {
	for _, s := range body {
		if a.budget <= 0 {
			return
		}
		a.budget--
		switch s := s.(type) {
		case *textStmt:
			a.emit(&value{frags: []frag{{text: s.text, line: a.line(s.pos)}}}, a.line(s.pos))
		case *outputStmt:
			a.emit(a.eval(s.x), a.line(s.pos))
		case *ifStmt:
			var prev []*cond
			for _, br := range s.branches {
				c := a.condition(br.cond, br.pos)
				saved, savedNeg := a.guards, a.negs
				a.guards = addConds(addConds(a.guards, prev...), c)
				a.negs = addConds(a.negs, prev...)
				a.roles = append(a.roles, c.roles)
				a.walk(br.body)
				a.roles = a.roles[:len(a.roles)-1]
				a.guards, a.negs = saved, savedNeg
				prev = append(prev, c)
			}
			if s.els != nil {
				saved, savedNeg := a.guards, a.negs
				a.guards = addConds(a.guards, prev...)
				a.negs = addConds(a.negs, prev...)
				a.walk(s.els)
				a.guards, a.negs = saved, savedNeg
			}
		case *forStmt:
			it := a.eval(s.iter)
			elem := a.control(elemOf(it))
			sc := scope{vars: map[string]*value{}, loop: true}
			for _, t := range s.targets {
				sc.vars[t] = union(elem)
			}
			a.scopes = append(a.scopes, sc)
			saved := a.guards
			if s.filter != nil {
				c := a.condition(s.filter, s.pos)
				a.guards = addConds(a.guards, c)
			}
			a.loops = append(a.loops, elem)
			a.walk(s.body)
			a.loops = a.loops[:len(a.loops)-1]
			a.guards = saved
			a.scopes = a.scopes[:len(a.scopes)-1]
			a.walk(s.els)
		case *setStmt:
			a.set(s)
		case *macroStmt:
			a.assign(s.name, &value{macro: s})
		case *callBlockStmt:
			caller := &macroStmt{pos: s.pos, name: "caller", params: s.params, defaults: make([]expr, len(s.params)), body: s.body}
			a.scopes = append(a.scopes, scope{vars: map[string]*value{"caller": {macro: caller}}})
			a.emit(a.eval(s.call), a.line(s.pos))
			a.scopes = a.scopes[:len(a.scopes)-1]
		case *blockStmt:
			for i := range s.assigns {
				a.set(&s.assigns[i])
			}
			for _, f := range s.filters {
				a.filterArgs(f)
			}
			a.walk(s.body)
		case *includeStmt:
			a.hazard(s.pos, s.kind, fmt.Sprintf("{%% %s %%} loads another template", s.kind))
			a.eval(s.target)
		case *doStmt:
			a.eval(s.x)
		}
	}
}

func (a *analyzer) set(s *setStmt) {
	var v *value
	if s.value != nil {
		// namespace(a=..., b=...) defines the attributes ns.a, ns.b.
		if c, ok := s.value.(*callExpr); ok && len(s.targets) == 1 {
			if n, ok := c.fn.(*nameExpr); ok && n.name == "namespace" {
				base, _ := path(s.targets[0])
				for _, kw := range c.kwargs {
					a.assign(base+"."+kw.name, a.control(a.eval(kw.val)))
				}
				for _, arg := range c.args {
					a.eval(arg)
				}
				a.assign(base, &value{})
				return
			}
		}
		if l, ok := s.value.(*listExpr); ok && l.tuple && len(l.items) == len(s.targets) && len(s.targets) > 1 {
			for i, t := range s.targets {
				a.assignTarget(t, a.control(a.eval(l.items[i])))
			}
			return
		}
		v = a.eval(s.value)
		if len(s.targets) > 1 {
			v = elemOf(v)
		}
	} else {
		v = a.capture(func() { a.walk(s.body) })
		for _, f := range s.filters {
			v = a.filter(f, v)
		}
	}
	v = a.control(v)
	for _, t := range s.targets {
		a.assignTarget(t, v)
	}
}

func (a *analyzer) assignTarget(t expr, v *value) {
	if p, ok := path(t); ok {
		a.assign(p, v)
	}
}

// condition evaluates a branch condition and returns its record.
func (a *analyzer) condition(x expr, pos int) *cond {
	savedRoles, savedNew := a.curRoles, a.newTrigs
	a.curRoles, a.newTrigs = nil, nil
	c := a.registerCond(x, pos, a.eval(x))
	for _, r := range a.curRoles {
		if !hasString(c.roles, r) {
			c.roles = append(c.roles, r)
		}
	}
	// Roles tested anywhere in this condition or an enclosing one qualify its triggers.
	roles := append([]string(nil), a.curRoles...)
	for _, rs := range a.roles {
		roles = append(roles, rs...)
	}
	for _, t := range a.newTrigs {
		for _, r := range roles {
			if !hasString(t.roles, r) {
				t.roles = append(t.roles, r)
			}
		}
		t.systemOnly = len(t.roles) > 0
		for _, r := range t.roles {
			if r != "system" && r != "developer" {
				t.systemOnly = false
			}
		}
	}
	a.curRoles, a.newTrigs = savedRoles, append(savedNew, a.newTrigs...)
	return c
}

// registerCond returns the record of condition x, adding the triggers of its value v.
func (a *analyzer) registerCond(x expr, pos int, v *value) *cond {
	c := a.conds[x]
	if c == nil {
		a.nconds++
		c = &cond{id: a.nconds, src: clip(a.source(x), 200), line: a.line(pos)}
		a.conds[x] = c
	}
	for _, t := range v.trig {
		if !hasTrig(c.trig, t) && len(c.trig) < maxTrig {
			c.trig = append(c.trig, t)
			a.changed = true
		}
	}
	return c
}

// ---- expressions ----

func (a *analyzer) eval(x expr) *value {
	if x == nil || a.budget <= 0 {
		return empty
	}
	a.budget--
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > 4*maxNesting {
		return empty
	}
	switch x := x.(type) {
	case *constExpr:
		if s, ok := x.val.(string); ok {
			return constStr(s, a.line(x.s))
		}
		return &value{flags: fConst}
	case *nameExpr:
		return a.lookup(x.name)
	case *listExpr:
		vs := make([]*value, len(x.items))
		allConst := true
		for i, it := range x.items {
			vs[i] = a.eval(it)
			allConst = allConst && vs[i].flags&fConst != 0
		}
		v := union(vs...)
		v.macro = nil
		if allConst {
			v.flags |= fConst
		}
		return v
	case *dictExpr:
		var vs []*value
		allConst := true
		for i := range x.keys {
			k := a.eval(x.keys[i])
			vv := a.eval(x.vals[i])
			allConst = allConst && k.flags&fConst != 0 && vv.flags&fConst != 0
			vs = append(vs, vv)
		}
		v := union(vs...)
		v.macro = nil
		if allConst {
			v.flags |= fConst
		}
		return v
	case *attrExpr:
		if p, ok := path(x); ok {
			if v, ok := a.env[p]; ok {
				return v
			}
		}
		return a.attribute(a.eval(x.obj), x.attr, x.s)
	case *indexExpr:
		o := a.eval(x.obj)
		k := a.eval(x.idx)
		if len(k.consts) > 0 {
			vs := make([]*value, 0, len(k.consts))
			for _, c := range k.consts {
				vs = append(vs, a.attribute(o, c, x.s))
			}
			return union(vs...)
		}
		return a.item(o, k)
	case *sliceExpr:
		o := a.eval(x.obj)
		a.eval(x.lo)
		a.eval(x.hi)
		a.eval(x.stride)
		v := &value{flags: o.flags &^ fConst, trig: o.trig, frags: o.frags}
		if o.flags&fConst != 0 {
			v.flags |= fConst
		}
		return v
	case *callExpr:
		return a.call(x)
	case *filterExpr:
		return a.filter(x, a.eval(x.obj))
	case *testExpr:
		return a.test(x)
	case *unaryExpr:
		v := a.eval(x.x)
		out := &value{trig: v.trig, flags: v.flags & (fConst | fTime)}
		if x.op != "not" {
			out.flags |= v.flags & fContent
		}
		return out
	case *binaryExpr:
		return a.binary(x)
	case *compareExpr:
		return a.compare(x)
	case *condExpr:
		c := a.condition(x.test, x.s)
		av := guarded(a.eval(x.a), c)
		bv := guarded(a.eval(x.b), c)
		v := union(av, bv)
		if x.b == nil {
			v.flags = av.flags
		}
		if av.flags&fConst != 0 && (x.b == nil || bv.flags&fConst != 0) {
			v.flags |= fConst
		} else {
			v.flags &^= fConst
		}
		return v
	}
	return empty
}

func elemOf(v *value) *value {
	out := &value{trig: v.trig, consts: v.consts, frags: v.frags}
	if v.flags&fMessages != 0 {
		out.flags |= fMessage
	}
	if v.flags&(fContent|fPart) != 0 {
		out.flags |= fPart
	}
	out.flags |= v.flags & (fConst | fStr | fTime)
	return out
}

var contentAttrs = map[string]bool{"content": true, "reasoning_content": true, "reasoning": true, "thinking": true, "text": true}

// attribute is obj.name or obj['name'].
func (a *analyzer) attribute(o *value, name string, pos int) *value {
	if internal(name) {
		a.hazard(pos, "attribute", fmt.Sprintf("access to the Python internal %q", name))
	}
	out := &value{trig: o.trig}
	if o.flags&fMessage != 0 {
		switch {
		case contentAttrs[name]:
			out.flags |= fContent
		case name == "role":
			out.flags |= fRole
		}
	}
	if o.flags&fMessages != 0 {
		if _, err := strconv.Atoi(name); err == nil {
			out.flags |= fMessage
		}
	}
	if o.flags&(fPart|fContent) != 0 && (name == "text" || name == "content") {
		out.flags |= fContent
	}
	if o.flags&fLoop != 0 && (name == "previtem" || name == "nextitem") && len(a.loops) > 0 {
		return a.loops[len(a.loops)-1]
	}
	if o.flags&(fMessage|fMessages|fPart|fContent|fLoop) == 0 {
		// A dict or namespace of constants: its members.
		out.frags, out.consts = o.frags, o.consts
		out.flags |= o.flags & (fConst | fStr | fTime)
		out.macro = o.macro
	}
	return out
}

// item is obj[k] with a non-constant key.
func (a *analyzer) item(o, k *value) *value {
	out := &value{trig: union(o, k).trig}
	if o.flags&fMessages != 0 {
		out.flags |= fMessage
	}
	if o.flags&fContent != 0 {
		out.flags |= fPart
	}
	if o.flags&(fMessage|fMessages|fPart|fContent) == 0 {
		out.frags, out.consts = o.frags, o.consts
		out.flags |= o.flags & (fConst | fStr | fTime)
	}
	return out
}

var dangerousAttrs = map[string]bool{
	"mro": true, "func_globals": true, "f_globals": true, "f_locals": true, "gi_frame": true,
	"gi_code": true, "tb_frame": true, "cr_frame": true, "ag_frame": true, "f_back": true,
	"func_code": true, "im_func": true, "im_self": true, "popen": true,
}

func (a *analyzer) hazard(pos int, kind, msg string) {
	key := fmt.Sprintf("%d/%s", a.line(pos), msg)
	if a.hazSeen[key] || len(a.hazards) >= 32 {
		return
	}
	a.hazSeen[key] = true
	a.hazards = append(a.hazards, Hazard{Kind: kind, Line: a.line(pos), Detail: msg})
}

func (a *analyzer) binary(x *binaryExpr) *value {
	l := a.eval(x.l)
	switch x.op {
	case "and", "or":
		c := a.registerCond(x.l, x.s, l)
		r := guarded(a.eval(x.r), c)
		v := union(l, r)
		v.flags &^= fConst
		if l.flags&fConst != 0 && r.flags&fConst != 0 {
			v.flags |= fConst
		}
		return v
	case "+", "~":
		r := a.eval(x.r)
		v := &value{flags: (l.flags | r.flags) &^ (fConst | fMessage | fMessages | fRole | fLoop)}
		if l.flags&fConst != 0 && r.flags&fConst != 0 {
			v.flags |= fConst
		}
		if l.flags&(fMessage|fMessages) != 0 || r.flags&(fMessage|fMessages) != 0 {
			v.flags |= fContent
		}
		withTrig(v, l.trig)
		withTrig(v, r.trig)
		if len(l.consts) > 0 && len(r.consts) > 0 && l.flags&fConst != 0 && r.flags&fConst != 0 {
			for _, p := range l.consts {
				for _, q := range r.consts {
					if len(v.consts) < maxConsts && len(p)+len(q) <= maxConstLen {
						v.consts = append(v.consts, p+q)
					}
				}
			}
		}
		if l.flags&fConst != 0 && r.flags&fConst != 0 && len(l.frags) == 1 && len(r.frags) == 1 && sameConds(l.frags[0].guards, r.frags[0].guards) && len(l.frags[0].text)+len(r.frags[0].text) <= maxConstLen {
			v.frags = []frag{{text: l.frags[0].text + r.frags[0].text, line: l.frags[0].line, guards: l.frags[0].guards}}
		} else {
			v.frags = append(append([]frag(nil), l.frags...), r.frags...)
			if len(v.frags) > maxFrags {
				v.frags = v.frags[:maxFrags]
			}
		}
		return v
	default:
		r := a.eval(x.r)
		v := &value{flags: (l.flags | r.flags) & (fTime | fContent)}
		if l.flags&fConst != 0 && r.flags&fConst != 0 {
			v.flags |= fConst
		}
		withTrig(v, l.trig)
		withTrig(v, r.trig)
		if x.op == "*" || x.op == "%" { // 'ab' * 2, 'fmt %s' % x
			v.flags |= (l.flags | r.flags) & fStr
			v.frags = append(append([]frag(nil), l.frags...), r.frags...)
		}
		return v
	}
}

func contentish(v *value) bool { return v.flags&fContent != 0 }

func literalish(v *value) bool {
	return v.flags&fConst != 0 && v.flags&fStr != 0 && v.flags&(fContent|fTime|fMessage|fMessages|fPart|fRole) == 0
}

func timeLiteral(v *value) bool {
	return v.flags&fConst != 0 && v.flags&(fContent|fTime|fMessage|fMessages|fPart|fRole) == 0
}

// literals returns the literal strings a constant-derived value stands for, or the
// expression's source when they are not known.
func (a *analyzer) literals(v *value, x expr) []string {
	if len(v.consts) > 0 {
		return v.consts
	}
	if x != nil {
		return []string{a.source(x)}
	}
	return nil
}

// matchTrig records that message text is compared, with op, to the literal(s) of lit.
func (a *analyzer) matchTrig(node any, op string, lit *value, litx expr, srcx expr, time bool) []*trigger {
	var out []*trigger
	for _, s := range a.literals(lit, litx) {
		if strings.TrimSpace(s) == "" {
			continue // an emptiness check
		}
		key := trigKey{node, s}
		t := a.trigs[key]
		if t == nil {
			kind := classifyTrigger(s)
			if time {
				kind = trigTime
			}
			src := ""
			line := 0
			if srcx != nil {
				src = clip(a.source(srcx), 200)
				ps, _ := srcx.bounds()
				line = a.line(ps)
			}
			t = &trigger{id: len(a.trigs) + 1, literal: clip(s, 200), op: op, src: src, line: line, kind: kind}
			a.trigs[key] = t
			a.changed = true
		}
		if !hasTrig(a.newTrigs, t) {
			a.newTrigs = append(a.newTrigs, t)
		}
		out = append(out, t)
	}
	return out
}

func withTrig(v *value, ts []*trigger) *value {
	for _, t := range ts {
		if !hasTrig(v.trig, t) && len(v.trig) < maxTrig {
			v.trig = append(v.trig[:len(v.trig):len(v.trig)], t)
		}
	}
	return v
}

func (a *analyzer) compare(x *compareExpr) *value {
	l := a.eval(x.first)
	lx := x.first
	out := &value{}
	allConst := l.flags&fConst != 0
	for i, op := range x.ops {
		rx := x.rest[i]
		r := a.eval(rx)
		allConst = allConst && r.flags&fConst != 0
		withTrig(out, l.trig)
		withTrig(out, r.trig)
		out.flags |= (l.flags | r.flags) & fTime
		switch {
		case contentish(l) && literalish(r):
			withTrig(out, a.matchTrig(x, op, r, rx, x, false))
		case contentish(r) && literalish(l):
			withTrig(out, a.matchTrig(x, op, l, lx, x, false))
		case l.flags&fTime != 0 && timeLiteral(r):
			withTrig(out, a.matchTrig(x, op, r, rx, x, true))
		case r.flags&fTime != 0 && timeLiteral(l):
			withTrig(out, a.matchTrig(x, op, l, lx, x, true))
		}
		if op == "==" || op == "in" {
			if l.flags&fRole != 0 {
				a.curRoles = append(a.curRoles, l.consts...)
				a.curRoles = append(a.curRoles, r.consts...)
			} else if r.flags&fRole != 0 {
				a.curRoles = append(a.curRoles, l.consts...)
			}
		}
		l, lx = r, rx
	}
	if allConst {
		out.flags |= fConst
	}
	return out
}

var structuralTests = map[string]bool{
	"defined": true, "undefined": true, "none": true, "string": true, "mapping": true,
	"iterable": true, "sequence": true, "number": true, "integer": true, "float": true,
	"boolean": true, "true": true, "false": true, "callable": true, "lower": true, "upper": true,
	"even": true, "odd": true, "divisibleby": true, "escaped": true, "filter": true, "test": true,
}

func (a *analyzer) test(x *testExpr) *value {
	o := a.eval(x.obj)
	args := make([]*value, len(x.args))
	for i, e := range x.args {
		args[i] = a.eval(e)
	}
	out := &value{trig: o.trig, flags: o.flags & (fConst | fTime)}
	if structuralTests[x.name] || len(args) == 0 {
		return out
	}
	for i, arg := range args {
		switch {
		case contentish(o) && literalish(arg):
			withTrig(out, a.matchTrig(x, "is "+x.name, arg, x.args[i], x, false))
		case o.flags&fTime != 0 && timeLiteral(arg):
			withTrig(out, a.matchTrig(x, "is "+x.name, arg, x.args[i], x, true))
		case contentish(arg) && literalish(o):
			withTrig(out, a.matchTrig(x, "is "+x.name, o, x.obj, x, false))
		}
		withTrig(out, arg.trig)
	}
	return out
}

var (
	matchMethods = map[string]bool{"startswith": true, "endswith": true, "find": true, "rfind": true,
		"index": true, "rindex": true, "count": true, "__contains__": true, "match": true, "search": true,
		"fullmatch": true, "findall": true}
	splitMethods = map[string]bool{"split": true, "rsplit": true, "partition": true, "rpartition": true,
		"replace": true, "removeprefix": true, "removesuffix": true}
	mutators = map[string]bool{"append": true, "extend": true, "insert": true, "update": true,
		"setdefault": true, "add": true}
)

func (a *analyzer) call(x *callExpr) *value {
	args := make([]*value, 0, len(x.args)+len(x.kwargs))
	for _, e := range x.args {
		args = append(args, a.eval(e))
	}
	kw := map[string]*value{}
	for _, k := range x.kwargs {
		kw[k.name] = a.eval(k.val)
	}
	if at, ok := x.fn.(*attrExpr); ok {
		if internal(at.attr) {
			a.hazard(at.s, "attribute", fmt.Sprintf("access to the Python internal %q", at.attr))
		}
		recv := a.eval(at.obj)
		if recv.macro != nil && recv.flags&(fMessage|fMessages|fContent) == 0 {
			// module.macro() is not supported by chat templates; treat as opaque
			return empty
		}
		return a.method(x, at, recv, args)
	}
	if n, ok := x.fn.(*nameExpr); ok {
		switch n.name {
		case "raise_exception":
			a.push(item{line: a.line(x.s), guards: a.guards, raise: true})
			return empty
		case "strftime_now", "now", "utcnow":
			return &value{flags: fTime}
		case "namespace", "dict":
			vs := append([]*value(nil), args...)
			for _, k := range sortedKeys(kw) {
				vs = append(vs, kw[k])
			}
			return union(vs...)
		}
	}
	f := a.eval(x.fn)
	if f.macro != nil {
		return a.expandMacro(f.macro, x, args, kw)
	}
	vs := append([]*value(nil), args...)
	for _, k := range sortedKeys(kw) {
		vs = append(vs, kw[k])
	}
	v := union(vs...)
	v.frags, v.consts, v.macro = nil, nil, nil
	v.flags &= fContent | fTime
	return v
}

func (a *analyzer) method(x *callExpr, at *attrExpr, recv *value, args []*value) *value {
	name := at.attr
	if mutators[name] {
		if p, ok := path(at.obj); ok {
			a.assign(p, a.control(union(args...)))
		}
		return empty
	}
	out := &value{trig: recv.trig}
	for _, arg := range args {
		withTrig(out, arg.trig)
	}
	if recv.flags&fMessage != 0 && name == "get" && len(args) > 0 {
		for _, c := range args[0].consts {
			merge(out, a.attribute(recv, c, at.s))
		}
	}
	if recv.flags&(fMessage|fMessages) != 0 && (name == "items" || name == "values") {
		out.flags |= fContent
	}
	if contentish(recv) {
		switch {
		case matchMethods[name]:
			if len(args) > 0 && literalish(args[0]) {
				withTrig(out, a.matchTrig(x, "."+name, args[0], x.args[0], x, false))
			}
		case splitMethods[name]:
			out.flags |= fContent
			if len(args) > 0 && literalish(args[0]) {
				withTrig(out, a.matchTrig(x, "."+name, args[0], x.args[0], x, false))
			}
		default:
			out.flags |= fContent
		}
	}
	if recv.flags&fTime != 0 {
		out.flags |= fTime
	}
	if name == "format" || name == "join" || name == "replace" {
		// 'x {}'.format(content), ', '.join(contents): the text flows through
		for _, arg := range args {
			out.flags |= arg.flags & (fContent | fTime)
			if arg.flags&(fMessage|fMessages) != 0 {
				out.flags |= fContent
			}
		}
	}
	if recv.flags&fConst != 0 && recv.flags&(fContent|fMessage|fMessages|fPart) == 0 {
		allConst := true
		for _, arg := range args {
			allConst = allConst && arg.flags&fConst != 0
		}
		if allConst {
			out.flags |= fConst | (recv.flags & fStr)
			out.consts = constMethod(name, recv.consts, args)
		}
		out.frags = recv.frags
	}
	return out
}

// constMethod folds the common string methods on constants.
func constMethod(name string, cs []string, args []*value) []string {
	var out []string
	for _, c := range cs {
		switch name {
		case "lower":
			out = append(out, strings.ToLower(c))
		case "upper":
			out = append(out, strings.ToUpper(c))
		case "strip", "trim":
			out = append(out, strings.TrimSpace(c))
		case "lstrip":
			out = append(out, strings.TrimLeft(c, " \t\r\n"))
		case "rstrip":
			out = append(out, strings.TrimRight(c, " \t\r\n"))
		case "title":
			out = append(out, titleCase(c))
		case "replace":
			if len(args) >= 2 && len(args[0].consts) == 1 && len(args[1].consts) == 1 {
				out = append(out, strings.ReplaceAll(c, args[0].consts[0], args[1].consts[0]))
			}
		case "format":
			out = append(out, c)
		}
	}
	return out
}

// expandMacro evaluates a macro's body inline with its parameters bound to the arguments.
func (a *analyzer) expandMacro(m *macroStmt, x *callExpr, args []*value, kw map[string]*value) *value {
	// Recursion adds nothing the first expansion has not seen: the body is the same.
	if a.expand >= maxExpand || a.active[m] >= 2 {
		return empty
	}
	if a.active == nil {
		a.active = map[*macroStmt]int{}
	}
	a.active[m]++
	defer func() { a.active[m]-- }()
	sc := map[string]*value{}
	for i, p := range m.params {
		var v *value
		switch {
		case i < len(args):
			v = args[i]
		case kw[p] != nil:
			v = kw[p]
		case i < len(m.defaults) && m.defaults[i] != nil:
			v = a.eval(m.defaults[i])
		default:
			v = empty
		}
		sc[p] = union(v)
		sc[p].macro = v.macro
	}
	sc["varargs"] = union(args...)
	a.scopes = append(a.scopes, scope{vars: sc})
	a.expand++
	saved := a.guards
	v := a.capture(func() { a.walk(m.body) })
	a.guards = saved
	a.expand--
	a.scopes = a.scopes[:len(a.scopes)-1]
	return v
}

var (
	lengthFilters   = map[string]bool{"length": true, "count": true, "wordcount": true, "int": true, "float": true, "abs": true, "round": true, "filesizeformat": true}
	elemFilters     = map[string]bool{"first": true, "last": true, "random": true}
	listFilters     = map[string]bool{"list": true, "reverse": true, "sort": true, "unique": true, "batch": true, "slice": true, "selectattr": true, "rejectattr": true, "select": true, "reject": true, "dictsort": true}
	serializeFilter = map[string]bool{"tojson": true, "string": true, "pprint": true, "items": true, "join": true, "safe": true, "trim": true, "e": true, "escape": true}
	matchFilters    = map[string]bool{"replace": true, "regex_replace": true, "regex_search": true, "regex_findall": true, "regex_match": true, "search": true, "match": true, "split": true}
	selectFilters   = map[string]bool{"selectattr": true, "rejectattr": true, "select": true, "reject": true}
)

func (a *analyzer) filterArgs(f *filterExpr) ([]*value, map[string]*value) {
	args := make([]*value, len(f.args))
	for i, e := range f.args {
		args[i] = a.eval(e)
	}
	kw := map[string]*value{}
	for _, k := range f.kwargs {
		kw[k.name] = a.eval(k.val)
	}
	return args, kw
}

func (a *analyzer) filter(f *filterExpr, o *value) *value {
	args, kw := a.filterArgs(f)
	name := f.name
	out := &value{trig: o.trig}
	for _, arg := range args {
		withTrig(out, arg.trig)
	}
	switch {
	case name == "attr" && len(args) > 0:
		for _, c := range args[0].consts {
			merge(out, a.attribute(o, c, f.s))
		}
		return out
	case name == "map":
		attr := kw["attribute"]
		if attr != nil {
			for _, c := range attr.consts {
				merge(out, a.attribute(elemOf(o), c, f.s))
			}
			if o.flags&fMessages != 0 && out.flags&fMessage != 0 {
				out.flags = out.flags&^fMessage | fMessages
			}
			return out
		}
		out.flags |= o.flags &^ fConst
		return out
	case name == "default" || name == "d":
		return union(o, union(args...))
	case lengthFilters[name]:
		out.flags |= o.flags & (fConst | fTime)
		return out
	}
	// Content-keyed selection: messages|selectattr('content', 'equalto', 'x'), parts|select(...)
	if selectFilters[name] && len(args) > 0 {
		keyed := contentish(o)
		rest := args
		if name == "selectattr" || name == "rejectattr" {
			keyed = false
			for _, c := range args[0].consts {
				if contentAttrs[c] && o.flags&(fMessages|fMessage|fPart|fContent) != 0 {
					keyed = true
				}
			}
			rest = args[1:]
		}
		if keyed && len(rest) > 1 && literalish(rest[1]) {
			withTrig(out, a.matchTrig(f, name, rest[1], f.args[len(f.args)-len(rest)+1], f, false))
		}
	}
	if matchFilters[name] && contentish(o) && len(args) > 0 && literalish(args[0]) {
		withTrig(out, a.matchTrig(f, "|"+name, args[0], f.args[0], f, false))
	}
	switch {
	case o.flags&fMessages != 0 && elemFilters[name]:
		out.flags |= fMessage
	case o.flags&fMessages != 0 && listFilters[name]:
		out.flags |= fMessages
	case o.flags&(fMessages|fMessage) != 0 && serializeFilter[name]:
		out.flags |= fContent
	}
	out.flags |= o.flags & (fContent | fPart | fTime | fRole)
	if o.flags&fConst != 0 && o.flags&(fContent|fMessage|fMessages|fPart) == 0 {
		allConst := true
		for _, arg := range args {
			allConst = allConst && arg.flags&fConst != 0
		}
		if allConst {
			out.flags |= fConst | (o.flags & fStr)
			switch name {
			case "lower", "upper", "trim", "replace", "title":
				out.consts = constMethod(name, o.consts, args)
			case "reverse":
				for _, c := range o.consts {
					r := []rune(c)
					for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
						r[i], r[j] = r[j], r[i]
					}
					out.consts = append(out.consts, string(r))
				}
			case "join":
				// a list of constants joined: the order is not kept, so the value is
				// known only when the list has one element
				if len(o.consts) == 1 {
					out.consts = o.consts
				}
			case "string", "safe", "e", "escape", "first", "last", "list":
				out.consts = o.consts
			}
		}
		out.frags = o.frags
	} else if o.flags&(fContent|fMessage|fMessages|fPart) == 0 {
		out.frags = o.frags
		out.flags |= o.flags & fStr
	}
	return out
}

// classifyTrigger tells a phrase (natural-language words) from markup and mode switches.
func classifyTrigger(s string) trigKind {
	t := strings.TrimSpace(s)
	letters, run, maxRun := 0, 0, 0
	for _, r := range t {
		if unicode.IsLetter(r) {
			letters++
			run++
			maxRun = max(maxRun, run)
		} else {
			run = 0
		}
	}
	switch {
	case maxRun < 2:
		return trigMarkup
	case strings.HasPrefix(t, "<") && strings.HasSuffix(t, ">") && !strings.Contains(t[1:len(t)-1], "<"):
		return trigMarkup
	case strings.Contains(t, "<|") || strings.Contains(t, "|>") || strings.Contains(t, "<｜"):
		return trigMarkup
	case strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") && !strings.ContainsAny(t, " \t\n"):
		return trigMarkup
	case isSwitch(t):
		return trigSwitch
	}
	return trigPhrase
}

func isSwitch(t string) bool {
	if len(t) < 2 || t[0] != '/' {
		return false
	}
	for _, r := range t[1:] {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// titleCase is Jinja's title filter: the first letter of each word upper case, the rest
// lower case (a word starts after any character that is not a letter or digit).
func titleCase(s string) string {
	var b strings.Builder
	start := true
	for _, r := range s {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if start {
				b.WriteRune(unicode.ToUpper(r))
			} else {
				b.WriteRune(unicode.ToLower(r))
			}
			start = false
		default:
			b.WriteRune(r)
			start = true
		}
	}
	return b.String()
}
