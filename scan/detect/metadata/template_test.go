package metadata

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	valid := []struct{ name, src string }{
		{"text only", "hello"},
		{"empty", ""},
		{"output", "{{ x }}"},
		{"whitespace control", "a {%- if x -%} b {%- endif -%} c {{- y -}} d {%+ if z +%}e{% endif %}"},
		{"comment", "{# a {{ comment }} #}x{#- trimmed -#}"},
		{"raw", "{% raw %}{{ not parsed }}{% if %}{% endraw %}"},
		{"raw trimmed", "{%- raw -%} {{ x }} {%- endraw -%}"},
		{"if elif else", "{% if a %}1{% elif b %}2{% elif c %}3{% else %}4{% endif %}"},
		{"for else", "{% for a, b in x | items %}{{ a }}{% else %}none{% endfor %}"},
		{"for paren targets", "{% for (k, v) in d.items() %}{{ k }}{% endfor %}"},
		{"for filter", "{% for m in messages if m.role != 'system' %}{{ m.content }}{% endfor %}"},
		{"for recursive", "{% for m in messages recursive %}{{ loop(m.children) }}{% endfor %}"},
		{"loop controls", "{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}{% break %}{% endfor %}"},
		{"set", "{% set a = 1 %}{% set b, c = 2, 3 %}{% set ns = namespace(x=[]) %}{% set ns.x = ns.x + [a] %}"},
		{"set block", "{% set x %}hello {{ y }}{% endset %}{% set z | upper %}q{% endset %}"},
		{"macro", "{% macro m(a, b=2, c='x') %}{{ a ~ b ~ c ~ varargs }}{% endmacro %}{{ m(1, c=3) }}"},
		{"call block", "{% macro m(x) %}[{{ caller(x) }}]{% endmacro %}{% call(y) m(1) %}{{ y }}{% endcall %}"},
		{"filter block", "{% filter upper | trim %}abc{% endfilter %}"},
		{"with", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}"},
		{"generation", "{% generation %}{{ m.content }}{% endgeneration %}"},
		{"do", "{% do ns.items.append(1) %}"},
		{"literals", "{{ [1, 2.5, 'a', \"b\", true, False, none, None, (1,), (), {'k': {'n': [1]}}] }}"},
		{"nested braces in output", "{{ {'a': {'b': 1}} }}"},
		{"slices", "{{ messages[1:] }}{{ m[::-1] }}{{ m[:-1] }}{{ s[1:2:3] }}"},
		{"tests", "{{ x is defined and x is not none and y is divisibleby 3 and z is sameas false and w is equalto('a') }}"},
		{"compare chain", "{{ 1 < x <= 3 and a not in b and c in d and e != f }}"},
		{"arithmetic", "{{ -a + b * c // d % e ** 2 - (f / g) ~ 'h' }}"},
		{"ternary", "{{ a if b else c if d else e }}{{ a if b }}"},
		{"filters", "{{ x | tojson(indent=4) | replace('a', 'b') | default('z', true) | join(', ') }}"},
		{"dotted filter", "{{ x | custom.filter }}"},
		{"calls", "{{ f(1, *args, key=2, **kw) }}{{ obj.method()[0].attr }}{{ raise_exception('x') }}"},
		{"adjacent strings", "{{ 'a' 'b' \"c\" }}"},
		{"unicode name", "{% set größe = 1 %}{{ größe }}"},
		{"string with braces", "{{ '}}' + \"%}\" + '{%' }}"},
		{"multiline string", "{{ 'a\nb' }}"},
		{"attr int", "{{ x.0 }}"},
		{"include", "{% include 'other.jinja' ignore missing with context %}"},
		{"import", "{% import 'macros.jinja' as m %}{% from 'x' import a, b as c %}"},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseTemplate(tt.src); err != nil {
				t.Errorf("parseTemplate(%q) = %v, want success", tt.src, err)
			}
		})
	}
	invalid := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"unterminated output", "a\n{{ x", 2, "unterminated tag"},
		{"unterminated block", "{% if x", 1, "unterminated tag"},
		{"unterminated comment", "\n\n{# x", 3, "unterminated comment"},
		{"unterminated string", "{{ 'abc }}", 1, "unterminated string"},
		{"missing endif", "{% if x %}\nabc", 2, "missing {% endif %}"},
		{"missing endfor", "{% for x in y %}", 1, "missing {% endfor %}"},
		{"stray endif", "x\n{% endif %}", 2, "unknown tag \"endif\""},
		{"unknown tag", "{% frobnicate %}", 1, "unknown tag"},
		{"unbalanced", "{{ (a ] }}", 1, "unbalanced"},
		{"empty output", "{{ }}", 1, "unexpected"},
		{"bad char", "{{ a $ b }}", 1, "unexpected character"},
		{"missing in", "{% for x y %}{% endfor %}", 1, "expected 'in'"},
		{"bad attribute", "{{ a. }}", 1, "expected an attribute name"},
		{"empty subscript", "{{ a[] }}", 1, "empty subscript"},
		{"too deep", strings.Repeat("{% if x %}", 200), 1, "nesting deeper"},
		{"too deep expression", "{{ " + strings.Repeat("(", 300) + "x" + strings.Repeat(")", 300) + " }}", 1, "nesting deeper"},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTemplate(tt.src)
			pe, ok := err.(*ParseError)
			if !ok {
				t.Fatalf("parseTemplate(%q) = %v, want a *ParseError", tt.src, err)
			}
			if pe.Line != tt.line || !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("parseTemplate(%q) = line %d %q, want line %d containing %q", tt.src, pe.Line, pe.Msg, tt.line, tt.msg)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := parseTemplate(strings.Repeat("a", MaxTemplateSize+1))
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("parseTemplate(oversized) = %v, want a size error", err)
	}
}

func TestLexStrings(t *testing.T) {
	tests := []struct{ src, want string }{
		{`'a\nb'`, "a\nb"},
		{`"tab\there"`, "tab\there"},
		{`'it\'s'`, "it's"},
		{`"q\"q"`, `q"q`},
		{`'back\\slash'`, `back\slash`},
		{`'\x41\u00e9\U0001F600'`, "Aé😀"},
		{`'\101'`, "A"},
		{`'\q'`, `\q`},
		{"'multi\nline'", "multi\nline"},
	}
	for _, tt := range tests {
		toks, err := lex("{{ " + tt.src + " }}")
		if err != nil {
			t.Errorf("lex(%s): %v", tt.src, err)
			continue
		}
		if len(toks) < 2 || toks[1].kind != tkString || toks[1].val != tt.want {
			t.Errorf("lex(%s) = %+v, want string %q", tt.src, toks, tt.want)
		}
	}
}

// Whitespace control and trim_blocks shape the emitted text.
func TestWhitespaceControl(t *testing.T) {
	tests := []struct{ src, want string }{
		{"a  {%- if x %}b{% endif %}", "a|b"},
		{"{% if x -%}  \n b{% endif %}", "b"},
		{"{% if x %}\nb{% endif %}", "b"},
		{"{{ 'x' -}}   y", "x|y"},
		{"a {#- c -#} b", "a|b"},
	}
	for _, tt := range tests {
		rep := AnalyzeTemplate(tt.src)
		var parts []string
		for _, o := range rep.Outputs {
			parts = append(parts, o.Text)
		}
		if got := strings.Join(parts, "|"); got != tt.want {
			t.Errorf("outputs of %q = %q, want %q", tt.src, got, tt.want)
		}
	}
}
