package metadata

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func templateSeeds(f *testing.F) {
	for _, dir := range []string{"clean", "poisoned"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "templates", dir, "*.jinja"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(string(b))
			}
		}
	}
	for _, s := range []string{"", "{{", "{%", "{#", "{{ }}", "{% if %}", "{{ a[ }}", "{{ 'x }}", "{% raw %}", "{% for %}", "{% macro m( %}",
		"{{ {'a': {'b': }} }}", "{% set %}", "{{ a is }}", "{{ a | }}", "{{ a if }}", "{% call m() %}", "{{ x.__class__ }}"} {
		f.Add(s)
	}
}

// FuzzTemplate: any input is parsed and analysed without a panic and in bounded time.
func FuzzTemplate(f *testing.F) {
	templateSeeds(f)
	f.Fuzz(func(t *testing.T, src string) {
		start := time.Now()
		watchdog := time.AfterFunc(20*time.Second, func() { panic("AnalyzeTemplate is not bounded on this input") })
		defer watchdog.Stop()
		rep := AnalyzeTemplate(src)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("AnalyzeTemplate took %v on %d bytes", d, len(src))
		}
		for _, b := range rep.Branches {
			if b.Score < 0 || b.Score > 1 {
				t.Errorf("branch score %v out of range", b.Score)
			}
		}
		// the detector's checks on the same string
		for _, fd := range Check("tokenizer.chat_template", src) {
			if fd.Score < 0 || fd.Score > 1 || fd.Rule == "" || fd.Message == "" {
				t.Errorf("malformed finding %+v", fd)
			}
		}
	})
}

// FuzzCheck: any metadata string goes through every string check.
func FuzzCheck(f *testing.F) {
	f.Add("general.name", "llama")
	f.Add("custom", "data:image/png;base64,iVBORw0KGgo=")
	f.Add("x", strings.Repeat("QUJD", 40))
	f.Add("x", "\xff\xfe\u202e\U000E0041")
	f.Fuzz(func(t *testing.T, key, value string) {
		Check(key, value)
		Check(key, []string{value, key})
		Check("tokenizer.ggml.tokens", []string{value, value, key})
	})
}

// Adversarial templates stay within the work bounds.
func TestAnalyzeBounded(t *testing.T) {
	var macros strings.Builder
	for i := 0; i < 12; i++ {
		macros.WriteString("{% macro m" + strconv.Itoa(i) + "(x) %}")
		if i > 0 {
			macros.WriteString("{% for y in messages %}{{ m" + strconv.Itoa(i-1) + "(x) }}{{ m" + strconv.Itoa(i-1) + "(y.content) }}{% if 'k' + x in y.content %}z{% endif %}{% endfor %}")
		} else {
			macros.WriteString("{{ x }}")
		}
		macros.WriteString("{% endmacro %}")
	}
	macros.WriteString("{{ m11(messages[0].content) }}")
	inputs := map[string]string{
		"macro fan-out":  macros.String(),
		"recursive":      "{% macro r(x) %}{{ r(x) ~ r(x ~ 'a') }}{% endmacro %}{{ r(messages[0].content) }}",
		"long and chain": "{% if " + strings.Repeat("'a' in messages[0].content and ", 20000) + "true %}x{% endif %}",
		"long concat":    "{{ " + strings.Repeat("'ignore ' ~ ", 30000) + "'x' }}",
		"many sets":      strings.Repeat("{% set a = a ~ b %}{% set b = b ~ a ~ messages[0].content %}{% if b == 'q' %}t{% endif %}", 5000),
		"deep ifs":       strings.Repeat("{% if messages[0].content == 'x' %}y", 90) + strings.Repeat("{% endif %}", 90),
		"many outputs":   strings.Repeat("{{ 'see http://198.51.100.1/ now' }}", 20000),
	}
	for name, src := range inputs {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			AnalyzeTemplate(src)
			Check("tokenizer.chat_template", src)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			t.Logf("%d bytes: %v", len(src), time.Since(start))
		})
	}
}
