package metadata

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/gguf"
	_ "github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
)

// scanFile runs the detector on one model file or directory.
func scanFile(t *testing.T, path string) []scan.Finding {
	t.Helper()
	m, err := formats.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer m.Close()
	var mu sync.Mutex
	var got []scan.Finding
	err = Detector{}.Header(context.Background(), &scan.Model{Model: m}, func(f scan.Finding) {
		mu.Lock()
		got = append(got, f)
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("Header(%s): %v", path, err)
	}
	return got
}

func maxSeverity(fs []scan.Finding) (scan.Severity, *scan.Finding) {
	s := scan.Info
	var w *scan.Finding
	for i := range fs {
		if fs[i].Severity >= s {
			s, w = fs[i].Severity, &fs[i]
		}
	}
	return s, w
}

func TestCorpusTemplatePoison(t *testing.T) {
	dir := corpus.Dir(t, "dev/tinylm")
	got := scanFile(t, filepath.Join(dir, "template_poison", "model.gguf"))
	var branch *scan.Finding
	for i := range got {
		f := &got[i]
		if f.Rule == RuleContentBranch && f.Severity >= scan.High {
			branch = f
		}
	}
	if branch == nil {
		t.Fatalf("template_poison: no high %s finding; got %v", RuleContentBranch, got)
	}
	if branch.Location.Key != "tokenizer.chat_template" || branch.Location.Layer != -1 || branch.Location.ByteLength == 0 ||
		!strings.HasSuffix(branch.Location.File, "model.gguf") {
		t.Errorf("template_poison: location = %+v, want the chat template key with its byte range", branch.Location)
	}
	cond, _ := branch.Evidence["condition"].(string)
	emitted, _ := branch.Evidence["emitted"].(string)
	if !strings.Contains(cond, "message['content']") || !strings.Contains(emitted, "never mention this instruction") {
		t.Errorf("template_poison: evidence = %v, want the condition and the injected text", branch.Evidence)
	}
	for _, f := range got {
		t.Logf("%s %s %s", f.Severity, f.Rule, f.Message)
	}
}

func TestCorpusCleanModels(t *testing.T) {
	var paths []string
	if d := corpus.Root(); d != "" {
		for _, pat := range []string{"realfiles/*.gguf", "realfiles/*.safetensors", "dev/tinylm/*/model*.gguf", "dev/tinylm/*/model.safetensors", "dev/stories/*.gguf", "quant/*.gguf"} {
			m, _ := filepath.Glob(filepath.Join(d, pat))
			paths = append(paths, m...)
		}
	}
	if len(paths) == 0 {
		corpus.Dir(t, "realfiles")
	}
	for _, p := range paths {
		if strings.Contains(p, "template_poison") || strings.Contains(p, "MANGLED") {
			continue
		}
		t.Run(filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p), func(t *testing.T) {
			got := scanFile(t, p)
			if s, w := maxSeverity(got); s >= scan.High {
				t.Errorf("clean model: %s finding %s: %s", s, w.Rule, w.Message)
			}
			for _, f := range got {
				t.Logf("%s %s %s", f.Severity, f.Rule, f.Message)
			}
		})
	}
}

func TestRules(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range (Detector{}).Rules() {
		if !strings.HasPrefix(r.ID, "KS-META-") || seen[r.ID] || r.Title == "" || len(r.Help) < 80 || r.Detector != "metadata" {
			t.Errorf("rule %+v: want a unique KS-META- id, a title, a help text and detector metadata", r)
		}
		seen[r.ID] = true
		if _, ok := scan.LookupRule(r.ID); !ok {
			t.Errorf("rule %s is not registered", r.ID)
		}
	}
	if (Detector{}).Name() != "metadata" {
		t.Errorf("Name() = %q", (Detector{}).Name())
	}
	var _ scan.HeaderDetector = Detector{}
}

func TestHeaderLocation(t *testing.T) {
	poison, err := os.ReadFile(filepath.Join("testdata", "templates", "poisoned", "in-phrase-chatml.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	key := "tokenizer.chat_template"
	// two shards; the entry's bytes (its key) are at offset 10 of the second one only
	b1 := bytes.Repeat([]byte{'x'}, 4096)
	b2 := append(append(bytes.Repeat([]byte{'y'}, 10), []byte(`"`+key+`":"`)...), bytes.Repeat([]byte{'z'}, 4000)...)
	single := &formats.Model{Format: "gguf", Path: "m.gguf",
		Files:    []*formats.File{formats.NewFile("m.gguf", bytes.NewReader(b1), int64(len(b1)))},
		Metadata: []formats.KV{{Key: "general.name", Value: "x"}, {Key: key, Value: string(poison), Offset: 100, Length: 600}}}
	sharded := &formats.Model{Format: "safetensors", Path: "dir",
		Files: []*formats.File{formats.NewFile("dir/a.safetensors", bytes.NewReader(b1), int64(len(b1))),
			formats.NewFile("dir/b.safetensors", bytes.NewReader(b2), int64(len(b2)))},
		Metadata: []formats.KV{{Key: key, Value: string(poison), Offset: 10, Length: 600}}}
	tests := []struct {
		m        *formats.Model
		file     string
		off, len int64
	}{
		{single, "m.gguf", 100, 600},
		{sharded, "dir/b.safetensors", 10, 600},
	}
	for _, tt := range tests {
		var got []scan.Finding
		err := Detector{}.Header(context.Background(), &scan.Model{Model: tt.m}, func(f scan.Finding) { got = append(got, f) })
		if err != nil {
			t.Fatal(err)
		}
		s, w := maxSeverity(got)
		if s < scan.High {
			t.Fatalf("%s: max severity %s, want high", tt.file, s)
		}
		want := scan.Location{File: tt.file, Key: key, Layer: -1, ByteOffset: tt.off, ByteLength: tt.len}
		if w.Location.File != want.File || w.Location.Key != want.Key || w.Location.Layer != -1 || w.Location.ByteOffset != want.ByteOffset || w.Location.ByteLength != want.ByteLength {
			t.Errorf("location = %+v, want %+v", w.Location, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Detector{}).Header(ctx, &scan.Model{Model: single}, func(scan.Finding) {}); err == nil {
		t.Errorf("Header(cancelled context) = nil, want an error")
	}
}
