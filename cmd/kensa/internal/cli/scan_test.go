package cli

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
)

// writeModel writes a small GGUF model with random weights; tail is appended after the data.
func writeModel(t *testing.T, path string, seed uint64, tail []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	var ts []gguf.WriteTensor
	for l := 0; l < 4; l++ {
		b := make([]byte, 64*64*4)
		for i := 0; i < 64*64; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(r.NormFloat64()*0.1)))
		}
		ts = append(ts, gguf.WriteTensor{Name: "blk." + string(rune('0'+l)) + ".ffn_up.weight", DType: formats.F32, Shape: []int64{64, 64}, Data: b})
	}
	var buf bytes.Buffer
	if err := gguf.Write(&buf, []formats.KV{{Key: "general.architecture", Value: "llama"}}, ts, nil); err != nil {
		t.Fatal(err)
	}
	buf.Write(tail)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestScanCommand(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.gguf")
	writeModel(t, clean, 1, nil)
	hidden := filepath.Join(dir, "hidden.gguf")
	writeModel(t, hidden, 2, bytes.Repeat([]byte("secret payload "), 20)) // high: hidden data
	elf := filepath.Join(dir, "elf.gguf")
	writeModel(t, elf, 3, append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...)) // critical
	broken := filepath.Join(dir, "broken.gguf")
	b, _ := os.ReadFile(clean)
	os.WriteFile(broken, b[:50], 0o644)

	tests := []struct {
		args []string
		code int
	}{
		{[]string{"scan", "-q", clean}, ExitOK},
		{[]string{"scan", "-q", hidden}, ExitFindings},
		{[]string{"scan", "-q", "--fail-on", "critical", hidden}, ExitOK},
		{[]string{"scan", "-q", "--fail-on", "critical", elf}, ExitFindings},
		{[]string{"scan", "-q", clean, broken}, ExitTarget},
		{[]string{"scan", "-q", "--format", "xml", clean}, ExitUsage},
		{[]string{"scan", "-q", "--fail-on", "severe", clean}, ExitUsage},
		{[]string{"scan", "-q", "-j", "0", clean}, ExitUsage},
		{[]string{"scan"}, ExitUsage},
		{[]string{"scan", "-q", "-r", dir, "--fail-on", "critical"}, ExitTarget}, // broken.gguf in the tree
	}
	for _, tt := range tests {
		code, _, errOut := run(tt.args...)
		if code != tt.code {
			t.Errorf("kensa %v: exit %d, want %d (%s)", tt.args, code, tt.code, errOut)
		}
	}

	// JSON report: the contract's fields, one target per model, the hidden data located
	code, out, _ := run("scan", "-q", "--format", "json", clean, hidden, broken)
	if code != ExitTarget {
		t.Errorf("exit %d, want %d", code, ExitTarget)
	}
	var rep struct {
		Schema  string `json:"schema"`
		Targets []struct {
			Path     string `json:"path"`
			Format   string `json:"format"`
			Error    string `json:"error"`
			Risk     struct{ Verdict string }
			Files    []struct{ SHA256 string }
			Findings []struct {
				Rule     string
				Severity string
				Location struct {
					ByteOffset int64 `json:"byte_offset"`
					ByteLength int64 `json:"byte_length"`
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if rep.Schema != "kensa.report/v1" || len(rep.Targets) != 3 {
		t.Fatalf("report schema %q with %d targets", rep.Schema, len(rep.Targets))
	}
	if tg := rep.Targets[0]; tg.Risk.Verdict != "clean" || len(tg.Findings) != 0 || len(tg.Files) != 1 || len(tg.Files[0].SHA256) != 64 {
		t.Errorf("clean target: %+v", tg)
	}
	st, _ := os.Stat(hidden)
	h := rep.Targets[1]
	if h.Risk.Verdict != "backdoored" || len(h.Findings) == 0 || h.Findings[0].Rule != "KS-STRUCT-HIDDEN-DATA" ||
		h.Findings[0].Location.ByteOffset+h.Findings[0].Location.ByteLength != st.Size() {
		t.Errorf("hidden-data target: %+v", h)
	}
	if e := rep.Targets[2]; e.Error == "" || e.Risk.Verdict != "error" {
		t.Errorf("broken target: %+v", e)
	}

	// -o with a .sarif name picks SARIF
	sarif := filepath.Join(dir, "out.sarif")
	if code, _, errOut := run("scan", "-o", sarif, hidden); code != ExitFindings {
		t.Errorf("scan -o: exit %d (%s)", code, errOut)
	}
	sb, err := os.ReadFile(sarif)
	if err != nil || !strings.Contains(string(sb), `"version": "2.1.0"`) {
		t.Errorf("SARIF output: %v %.200s", err, sb)
	}
}

func TestRulesCommand(t *testing.T) {
	code, out, _ := run("rules")
	if code != 0 || !strings.Contains(out, "KS-STRUCT-HIDDEN-DATA") || !strings.Contains(out, "KS-PAYLOAD-MANTISSA") {
		t.Errorf("rules: exit %d\n%.500s", code, out)
	}
	code, out, _ = run("rules", "--json")
	var rules []struct{ ID, Severity, Help string }
	if err := json.Unmarshal([]byte(out), &rules); code != 0 || err != nil || len(rules) < 10 {
		t.Fatalf("rules --json: exit %d, %v, %d rules", code, err, len(rules))
	}
	for _, r := range rules {
		if r.Help == "" || r.Severity == "" {
			t.Errorf("rule %s has no help or severity", r.ID)
		}
	}
}
