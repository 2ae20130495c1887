package metadata

import (
	"testing"
	"time"
)

func goTemplateSeeds(f *testing.F) {
	for _, src := range cleanGoTemplates {
		f.Add(src)
	}
	for _, tt := range poisonedGoTemplates {
		f.Add(tt.src)
	}
	for _, s := range []string{"", "{{", "}}", "{{-", "{{ }}", "{{ if }}", "{{ end }}", "{{ .Prompt", "{{ \"x }}", "{{ `x }}",
		"{{/* x", "{{/* x */}}", "{{- /* x */ -}}", "{{ range }}", "{{ range $i, $m := .Messages }}{{ end }}", "{{ with $x := . }}{{ $x.Content }}{{ end }}",
		"{{ template \"x\" . }}", "{{ define \"x\" }}{{ template \"x\" . }}{{ end }}{{ template \"x\" . }}", "{{ block \"b\" .Messages }}{{ range . }}{{ .Content }}{{ end }}{{ end }}",
		"{{ (.Prompt).X }}", "{{ $x := 1 }}{{ $x = 2 }}", "{{ index . \"Messages\" 0 }}", "{{ printf \"%*d\" 9 1 }}", "{{ printf \"%s%\" .Prompt }}",
		"{{ if eq (slice .Prompt 0 2) \"ab\" }}x{{ else if contains .Prompt \"cd\" }}y{{ else }}z{{ end }}", "{{ range .Messages }}{{ break }}{{ continue }}{{ end }}",
		"{{ 1.5e3 }}{{ 0x1F }}{{ 'a' }}{{ true }}{{ nil }}{{ -1 }}", "{{ .Prompt | printf \"%s\" | lower | eq \"x y\" }}"} {
		f.Add(s)
	}
}

// FuzzGoTemplate: any input is parsed and analysed as an Ollama template without a panic
// and in bounded time.
func FuzzGoTemplate(f *testing.F) {
	goTemplateSeeds(f)
	f.Fuzz(func(t *testing.T, src string) {
		start := time.Now()
		watchdog := time.AfterFunc(20*time.Second, func() { panic("AnalyzeGoTemplate is not bounded on this input") })
		defer watchdog.Stop()
		rep := AnalyzeGoTemplate(src)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("AnalyzeGoTemplate took %v on %d bytes", d, len(src))
		}
		if len(rep.Hazards) > 0 {
			t.Errorf("Go template hazards %v, want none", rep.Hazards)
		}
		for _, b := range rep.Branches {
			if b.Score < 0 || b.Score > 1 {
				t.Errorf("branch score %v out of range", b.Score)
			}
		}
		if rep.Err != nil && (rep.Err.Line < 1 || rep.Err.Msg == "") {
			t.Errorf("malformed parse error %+v", rep.Err)
		}
		// the detector's checks on the same string
		for _, fd := range Check(OllamaTemplateKey, src) {
			if fd.Score < 0 || fd.Score > 1 || fd.Rule == "" || fd.Message == "" {
				t.Errorf("malformed finding %+v", fd)
			}
		}
	})
}
