package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

// run runs kensa with args and returns its exit code and output.
func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

// TestConformance runs `kensa inspect --json` on every real file of the corpus and compares
// the listing with the independent parsers' .expected.json: format, version, every metadata
// key and value (floats compared as float32), and every tensor's name, dtype, shape, offset
// and length.
func TestConformance(t *testing.T) {
	dir := corpus.Dir(t, "realfiles")
	exps, _ := filepath.Glob(filepath.Join(dir, "*.expected.json"))
	if len(exps) == 0 {
		t.Skip("no .expected.json files in " + dir)
	}
	for _, exp := range exps {
		file := strings.TrimSuffix(exp, ".expected.json")
		t.Run(filepath.Base(file), func(t *testing.T) {
			code, out, errOut := run("inspect", "--json", file)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			want, err := os.ReadFile(exp)
			if err != nil {
				t.Fatal(err)
			}
			if diffs := jsonDiff(decodeJSON(t, want), decodeJSON(t, []byte(out)), "$"); len(diffs) > 0 {
				if len(diffs) > 10 {
					diffs = append(diffs[:10], fmt.Sprintf("... and %d more", len(diffs)-10))
				}
				t.Errorf("listing differs from %s:\n%s", filepath.Base(exp), strings.Join(diffs, "\n"))
			}
		})
	}
}

// TestMangled: the real-world corrupted GGUF is rejected with exit code 3 and a message with
// the byte offset where parsing failed.
func TestMangled(t *testing.T) {
	dir := corpus.Dir(t, "realfiles")
	p := filepath.Join(dir, "ushure-ggml-vocab-bert-bge.MANGLED.gguf")
	if _, err := os.Stat(p); err != nil {
		t.Skip(err)
	}
	for _, args := range [][]string{{"inspect", p}, {"inspect", "--json", p}} {
		code, out, errOut := run(args...)
		if code != ExitTarget {
			t.Errorf("%v: exit %d, want %d", args, code, ExitTarget)
		}
		if out != "" {
			t.Errorf("%v: wrote %q to stdout", args, out)
		}
		m := regexp.MustCompile(`offset (\d+): `).FindStringSubmatch(errOut)
		if m == nil {
			t.Errorf("%v: message %q has no byte offset", args, errOut)
			continue
		}
		st, _ := os.Stat(p)
		if off, _ := strconv.ParseInt(m[1], 10, 64); off <= 0 || off >= st.Size() {
			t.Errorf("%v: offset %d outside the file", args, off)
		}
	}
}

func TestExitCodes(t *testing.T) {
	tmp := t.TempDir()
	junk := filepath.Join(tmp, "junk.bin")
	os.WriteFile(junk, []byte("this is not a model file at all"), 0o644)
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"version"}, ExitOK},
		{[]string{"inspect"}, ExitUsage},
		{[]string{"inspect", "a", "b"}, ExitUsage},
		{[]string{"inspect", "--no-such-flag", "x"}, ExitUsage},
		{[]string{"no-such-command"}, ExitUsage},
		{[]string{"inspect", filepath.Join(tmp, "missing.gguf")}, ExitTarget},
		{[]string{"inspect", junk}, ExitTarget},
		{[]string{"inspect", tmp}, ExitTarget}, // a directory with no model
		{[]string{"diff", junk}, ExitUsage},    // no candidate
		{[]string{"diff", filepath.Join(tmp, "missing"), junk}, ExitTarget},
		{[]string{"scan", "--input-shape", "1,28,28", junk}, ExitUsage},           // a probe option without --probe
		{[]string{"scan", "--probe", "--input-shape", "1,a,28", junk}, ExitUsage}, // not a shape
		{[]string{"scan", "--probe", "--activation", "swish2", junk}, ExitUsage},
		{[]string{"scan", "--probe", "--pool", "min", junk}, ExitUsage},
		{[]string{"scan", "--probe", "--padding", "full", junk}, ExitUsage},
		{[]string{"scan", "--probe", "--probe-budget", "-1s", junk}, ExitUsage},
	}
	for _, tt := range tests {
		code, _, errOut := run(tt.args...)
		if code != tt.code {
			t.Errorf("kensa %v: exit %d, want %d (%s)", tt.args, code, tt.code, errOut)
		}
	}
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("invalid JSON: %v\n%.300s", err, b)
	}
	return v
}

// jsonDiff lists the differences between want and got. Integers compare exactly, other
// numbers as float32 (the corpus writes float32 metadata as float64 values).
func jsonDiff(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %T, want object", path, got)}
		}
		var out []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			out = append(out, jsonDiff(w[k], gv, path+"."+k)...)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s.%s: unexpected", path, k))
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %T of length %d, want array of %d", path, got, lenOf(got), len(w))}
		}
		var out []string
		for i := range w {
			out = append(out, jsonDiff(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case json.Number:
		g, ok := got.(json.Number)
		if !ok {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, w)}
		}
		if wi, err := strconv.ParseInt(string(w), 10, 64); err == nil {
			if gi, err := strconv.ParseInt(string(g), 10, 64); err == nil && gi == wi {
				return nil
			}
		}
		if wu, err := strconv.ParseUint(string(w), 10, 64); err == nil {
			if gu, err := strconv.ParseUint(string(g), 10, 64); err == nil && gu == wu {
				return nil
			}
		}
		wf, _ := strconv.ParseFloat(string(w), 64)
		gf, err := strconv.ParseFloat(string(g), 64)
		if err != nil || float32(wf) != float32(gf) && !(math.IsNaN(wf) && math.IsNaN(gf)) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, g, w)}
		}
		return nil
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) || fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
		}
		return nil
	}
}

func lenOf(v any) int {
	if a, ok := v.([]any); ok {
		return len(a)
	}
	return -1
}
