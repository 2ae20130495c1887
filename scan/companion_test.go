package scan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

// companionModel is a safetensors model in dir, as readCompanions sees it, with the given
// companion files written beside it.
func companionModel(t *testing.T, files map[string]string) (*formats.Model, string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &formats.Model{Format: "safetensors", Path: dir, Files: []*formats.File{{Path: filepath.Join(dir, "model.safetensors")}}}, dir
}

func kvByKey(kvs []formats.KV, key string) *formats.KV {
	for i := range kvs {
		if kvs[i].Key == key {
			return &kvs[i]
		}
	}
	return nil
}

// checkRange checks that kv's byte range in content holds want.
func checkRange(t *testing.T, content string, kv *formats.KV, want string) {
	t.Helper()
	if kv.Offset < 0 || kv.Offset+kv.Length > int64(len(content)) {
		t.Fatalf("%s: range [%d,+%d) outside the file", kv.Key, kv.Offset, kv.Length)
	}
	if got := content[kv.Offset : kv.Offset+kv.Length]; got != want {
		t.Errorf("%s: byte range holds %q, want %q", kv.Key, got, want)
	}
}

func TestCompanionTemplates(t *testing.T) {
	tc := `{"model_max_length": NaN, "x": -Infinity, "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"}`
	ct := `{"chat_template": [{"name": "default", "template": "A"}, {"name": "tool_use", "template": "B"}, {"template": "C"}]}`
	jinja := "{% for m in messages %}{{ m.content }}{% endfor %}\n"
	fm, dir := companionModel(t, map[string]string{
		"tokenizer_config.json": tc, "chat_template.json": ct, "chat_template.jinja": jinja,
		"config.json": `{"hidden_size": 8, "initializer_range": NaN}`, "tokenizer.json": `{"model": {"vocab": [["a", NaN]]}}`,
		"generation_config.json": `{}`, "special_tokens_map.json": `{"bos_token": "<s>"}`, "vocab.json": `{"a": 0}`,
		"vocab.txt": "[PAD]\nhello\n", "merges.txt": "#version: 0.2\na b\n",
	})
	kvs, findings, files, _ := readCompanions(fm)
	if len(findings) != 0 {
		t.Errorf("findings on valid companions: %+v", findings)
	}
	if len(files) != len(companionFiles) {
		t.Errorf("files read = %v, want all %d companions", files, len(companionFiles))
	}
	for _, p := range files {
		if filepath.Dir(p) != dir {
			t.Errorf("file %s is not in the model directory", p)
		}
	}
	kv := kvByKey(kvs, "tokenizer_config.chat_template")
	if kv == nil || kv.File != filepath.Join(dir, "tokenizer_config.json") || !strings.HasPrefix(kv.Value.(string), "{{ bos_token }}") {
		t.Fatalf("tokenizer_config template (after a NaN) missing: %+v", kvs)
	}
	checkRange(t, tc, kv, tc[strings.Index(tc, `"{{ bos`):len(tc)-1])
	for key, want := range map[string]string{"chat_template_json.chat_template.default": "A", "chat_template_json.chat_template.tool_use": "B", "chat_template_json.chat_template.#2": "C"} {
		kv := kvByKey(kvs, key)
		if kv == nil || kv.Value != want || kv.File != filepath.Join(dir, "chat_template.json") {
			t.Errorf("%s = %+v, want %q", key, kv, want)
			continue
		}
		checkRange(t, ct, kv, ct[strings.Index(ct, "["):len(ct)-1])
	}
	kv = kvByKey(kvs, "chat_template.jinja")
	if kv == nil || kv.Value != jinja || kv.File != filepath.Join(dir, "chat_template.jinja") {
		t.Fatalf("chat_template.jinja: %+v", kv)
	}
	checkRange(t, jinja, kv, jinja)
	for _, kv := range kvs {
		if !strings.Contains(kv.Key, "chat_template") {
			t.Errorf("key %q would not be treated as a template", kv.Key)
		}
	}
}

// A syntax error after the chat template keeps the template and is a finding at the error.
func TestCompanionPartial(t *testing.T) {
	tc := `{"chat_template": "{{ messages }}", "x": nan, "y": 1}`
	ct := `{"chat_template": [{"name": "default", "template": "A"}, {"name": "b", "template": "B`
	fm, dir := companionModel(t, map[string]string{"tokenizer_config.json": tc, "chat_template.json": ct})
	kvs, findings, files, _ := readCompanions(fm)
	if kv := kvByKey(kvs, "tokenizer_config.chat_template"); kv == nil || kv.Value != "{{ messages }}" {
		t.Errorf("template before the error lost: %+v", kvs)
	} else {
		checkRange(t, tc, kv, `"{{ messages }}"`)
	}
	if kv := kvByKey(kvs, "chat_template_json.chat_template.default"); kv == nil || kv.Value != "A" {
		t.Errorf("complete template of a cut list lost: %+v", kvs)
	}
	if kv := kvByKey(kvs, "chat_template_json.chat_template.b"); kv != nil {
		t.Errorf("template cut short reported: %+v", kv)
	}
	if len(files) != 2 || len(findings) != 2 {
		t.Fatalf("files %v, findings %+v", files, findings)
	}
	f := findings[0]
	if f.Rule != RuleCompanionInvalid || f.Severity != Medium || f.Location.File != filepath.Join(dir, "tokenizer_config.json") ||
		f.Location.Layer != -1 || f.Location.ByteOffset != int64(strings.Index(tc, "nan")) || f.Location.ByteLength != 1 ||
		f.Evidence["file"] != "tokenizer_config.json" || f.Evidence["offset"] != int64(strings.Index(tc, "nan")) ||
		!strings.Contains(f.Message, "chat template") || !strings.Contains(f.Message, "could not verify") {
		t.Errorf("finding %+v", f)
	}
	if f := findings[1]; f.Location.File != filepath.Join(dir, "chat_template.json") || f.Location.ByteOffset != int64(strings.LastIndex(ct, `"B`)) {
		t.Errorf("finding %+v", f)
	}
}

func TestCompanionInvalid(t *testing.T) {
	cases := map[string]struct {
		content string
		off     int64
		length  int64
		msg     string
	}{
		"config.json":             {`{"a": 1,}`, 8, 1, "Python's json"},
		"tokenizer.json":          {`[1, 2]`, 0, 1, "not an object"},
		"generation_config.json":  {`{"a": 1`, 7, 0, "offset 7"},
		"special_tokens_map.json": {"\xEF\xBB\xBF{}", 0, 1, "byte order mark"},
		"vocab.json":              {`{"a": 'b'}`, 6, 1, "expecting value"},
		"merges.txt":              {"a b\n\xff c\n", 4, 1, "UTF-8"},
		"vocab.txt":               {"ok\n\xc3", 3, 1, "UTF-8"},
		"chat_template.jinja":     {"{{ x }}\x80", 7, 1, "UTF-8"},
		"tokenizer_config.json":   {`{"chat_template": "x"} {}`, 23, 1, "extra data"},
	}
	files := map[string]string{}
	for name, c := range cases {
		files[name] = c.content
	}
	fm, dir := companionModel(t, files)
	kvs, findings, read, _ := readCompanions(fm)
	if len(read) != len(cases) {
		t.Errorf("files read %v", read)
	}
	got := map[string]bool{}
	for _, f := range findings {
		name := filepath.Base(f.Location.File)
		c, ok := cases[name]
		got[name] = true
		if !ok || f.Rule != RuleCompanionInvalid || filepath.Dir(f.Location.File) != dir || f.Location.ByteOffset != c.off ||
			f.Location.ByteLength != c.length || !strings.Contains(f.Message, c.msg) || f.Evidence["offset"] != c.off {
			t.Errorf("%s: finding %+v, want offset %d length %d message with %q", name, f, c.off, c.length, c.msg)
		}
	}
	for name := range cases {
		if !got[name] {
			t.Errorf("%s: no finding", name)
		}
	}
	// the jinja template and the template before the extra data are still scanned
	if kvByKey(kvs, "chat_template.jinja") == nil || kvByKey(kvs, "tokenizer_config.chat_template") == nil {
		t.Errorf("templates of invalid files lost: %+v", kvs)
	}
}

func TestCompanionOversizedAndUnreadable(t *testing.T) {
	fm, dir := companionModel(t, map[string]string{"chat_template.json": `{"chat_template": "x"}`})
	big := filepath.Join(dir, "generation_config.json")
	if f, err := os.Create(big); err != nil {
		t.Fatal(err)
	} else {
		f.Truncate(maxCompanion + 1)
		f.Close()
	}
	os.Mkdir(filepath.Join(dir, "config.json"), 0o755)
	if err := os.Symlink(filepath.Join(t.TempDir(), "elsewhere.json"), filepath.Join(dir, "vocab.json")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	os.WriteFile(filepath.Join(filepath.Dir(dir), "special.json"), []byte(`{}`), 0o644)
	os.Symlink("../special.json", filepath.Join(dir, "special_tokens_map.json"))
	_, findings, read, _ := readCompanions(fm)
	if len(read) != 1 || read[0] != filepath.Join(dir, "chat_template.json") {
		t.Errorf("files read %v, want only chat_template.json", read)
	}
	want := map[string]string{
		"generation_config.json":  "larger than",
		"config.json":             "directory",
		"special_tokens_map.json": "escapes", // links out of the model directory, refused
		"vocab.json":              "escapes", // even to a file that does not exist
	}
	got := map[string]Finding{}
	for _, f := range findings {
		got[filepath.Base(f.Location.File)] = f
	}
	if len(got) != len(want) {
		t.Errorf("findings %+v", findings)
	}
	for name, w := range want {
		f, ok := got[name]
		if !ok || f.Location.ByteOffset != 0 || f.Location.ByteLength != 0 || f.Evidence["offset"] != int64(-1) {
			t.Errorf("%s: finding %+v", name, f)
			continue
		}
		if !strings.Contains(f.Message, w) || !strings.Contains(f.Message, "could not verify") {
			t.Errorf("%s: message %q, want %q", name, f.Message, w)
		}
	}
}

func TestCompanionOnlySafetensors(t *testing.T) {
	fm, _ := companionModel(t, map[string]string{"config.json": `{`, "tokenizer_config.json": `{"chat_template": "x"}`})
	fm.Format = "gguf"
	if kvs, findings, files, _ := readCompanions(fm); kvs != nil || findings != nil || files != nil {
		t.Errorf("a GGUF model has companions: %v %v %v", kvs, findings, files)
	}
	if kvs, findings, files, _ := readCompanions(&formats.Model{Format: "safetensors"}); kvs != nil || findings != nil || files != nil {
		t.Errorf("a model without files has companions")
	}
}

func TestCompanionRule(t *testing.T) {
	r, ok := LookupRule(RuleCompanionInvalid)
	if !ok || r.Detector != "companion" || r.Severity != Medium || r.Help == "" {
		t.Errorf("rule %+v, %v", r, ok)
	}
	for _, d := range Detectors() {
		if d.Name() == "companion" {
			if _, ok := d.(HeaderDetector); ok {
				t.Errorf("the companion detector runs a header pass: the engine reads the companions")
			}
		}
	}
}
