package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
)

// The -o path is checked before anything is scanned (exit 2), and a report is never left
// half written.
func TestScanOutputChecked(t *testing.T) {
	dir := t.TempDir()
	m := filepath.Join(dir, "m.gguf")
	writeModel(t, m, 1, nil)
	for _, o := range []string{dir, filepath.Join(dir, "no", "such", "dir", "r.json"), filepath.Join(m, "r.json")} {
		if code, _, errOut := run("scan", "-q", "-o", o, m); code != ExitUsage {
			t.Errorf("-o %s: exit %d, want %d (%s)", o, code, ExitUsage, errOut)
		}
	}
	out := filepath.Join(dir, "r.json")
	if code, _, errOut := run("scan", "-q", "-o", out, m); code != ExitOK {
		t.Fatalf("exit %d (%s)", code, errOut)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("files left beside the report: %v", ents)
	}
}

// Exit code and report agree: a target the report calls error or incomplete gives exit 3,
// which takes precedence over 1 (findings).
func TestExitAgreesWithReport(t *testing.T) {
	dir := t.TempDir()
	hidden := filepath.Join(dir, "hidden.gguf")
	writeModel(t, hidden, 2, []byte("secret payload secret payload secret payload secret payload "))
	broken := filepath.Join(dir, "broken.gguf")
	b, _ := os.ReadFile(hidden)
	os.WriteFile(broken, b[:60], 0o644)
	code, out, _ := run("scan", "-q", "--format", "json", hidden, broken)
	if code != ExitTarget {
		t.Fatalf("exit %d, want %d", code, ExitTarget)
	}
	var rep struct {
		Targets []struct {
			Error      string `json:"error"`
			Incomplete bool   `json:"incomplete"`
			Coverage   struct {
				Analyses map[string]string `json:"analyses"`
			} `json:"coverage"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, tg := range rep.Targets {
		if tg.Error != "" || tg.Incomplete {
			bad++
		}
		if len(tg.Coverage.Analyses) < 7 {
			t.Errorf("analyses %v: want all seven", tg.Coverage.Analyses)
		}
	}
	if bad != 1 {
		t.Errorf("%d targets in error, want 1", bad)
	}
	// a FIFO given as a target is an error target, never opened
	fifo := filepath.Join(dir, "pipe.gguf")
	if err := mkfifo(fifo); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	if code, _, _ := run("scan", "-q", hidden, fifo); code != ExitTarget {
		t.Errorf("FIFO target: exit %d, want %d", code, ExitTarget)
	}
}

// A FIFO named config.json (or tokenizer.json) never blocks a scan, with --probe too: the
// scan ends, the FIFO is reported, and the target is an error (not all was examined).
func TestScanProbeFIFOCompanion(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, filepath.Join(dir, "model.gguf"), 1, nil)
	st := filepath.Join(t.TempDir(), "m")
	os.MkdirAll(st, 0o755)
	// a safetensors llama whose companions are FIFOs
	writeSafetensorsLlama(t, filepath.Join(st, "model.safetensors"))
	for _, n := range []string{"config.json", "tokenizer.json", "tokenizer_config.json"} {
		if err := mkfifo(filepath.Join(st, n)); err != nil {
			t.Skip("no FIFOs here:", err)
		}
	}
	done := make(chan struct{})
	var code int
	var out string
	go func() {
		code, out, _ = run("scan", "-q", "--probe", "--probe-budget", "5s", "--format", "json", st)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("scan --probe blocked on a FIFO companion")
	}
	if code != ExitTarget {
		t.Errorf("exit %d, want %d", code, ExitTarget)
	}
	var rep struct {
		Targets []struct {
			Error    string `json:"error"`
			Findings []struct {
				Rule string `json:"rule"`
			} `json:"findings"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Targets) != 1 {
		t.Fatalf("report: %v %.300s", err, out)
	}
	n := 0
	for _, f := range rep.Targets[0].Findings {
		if f.Rule == "KS-META-COMPANION-INVALID" {
			n++
		}
	}
	if n != 3 || rep.Targets[0].Error == "" {
		t.Errorf("%d companion findings, error %q", n, rep.Targets[0].Error)
	}
}

// writeSafetensorsLlama writes the tensors of a tiny llama in Hugging Face names.
func writeSafetensorsLlama(t *testing.T, path string) {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 1))
	mat := func(rows, cols int) []byte {
		b := make([]byte, 4*rows*cols)
		for i := 0; i < rows*cols; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(r.NormFloat64()*0.05)))
		}
		return b
	}
	ones := func(n int) []byte {
		b := make([]byte, 4*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(1))
		}
		return b
	}
	const d, ff, v = 32, 64, 48
	ts := []safetensors.WriteTensor{
		{Name: "model.embed_tokens.weight", DType: formats.F32, Shape: []int64{v, d}, Data: mat(v, d)},
		{Name: "model.norm.weight", DType: formats.F32, Shape: []int64{d}, Data: ones(d)},
		{Name: "lm_head.weight", DType: formats.F32, Shape: []int64{v, d}, Data: mat(v, d)},
	}
	p := "model.layers.0."
	ts = append(ts,
		safetensors.WriteTensor{Name: p + "input_layernorm.weight", DType: formats.F32, Shape: []int64{d}, Data: ones(d)},
		safetensors.WriteTensor{Name: p + "post_attention_layernorm.weight", DType: formats.F32, Shape: []int64{d}, Data: ones(d)},
		safetensors.WriteTensor{Name: p + "self_attn.q_proj.weight", DType: formats.F32, Shape: []int64{d, d}, Data: mat(d, d)},
		safetensors.WriteTensor{Name: p + "self_attn.k_proj.weight", DType: formats.F32, Shape: []int64{d, d}, Data: mat(d, d)},
		safetensors.WriteTensor{Name: p + "self_attn.v_proj.weight", DType: formats.F32, Shape: []int64{d, d}, Data: mat(d, d)},
		safetensors.WriteTensor{Name: p + "self_attn.o_proj.weight", DType: formats.F32, Shape: []int64{d, d}, Data: mat(d, d)},
		safetensors.WriteTensor{Name: p + "mlp.gate_proj.weight", DType: formats.F32, Shape: []int64{ff, d}, Data: mat(ff, d)},
		safetensors.WriteTensor{Name: p + "mlp.up_proj.weight", DType: formats.F32, Shape: []int64{ff, d}, Data: mat(ff, d)},
		safetensors.WriteTensor{Name: p + "mlp.down_proj.weight", DType: formats.F32, Shape: []int64{d, ff}, Data: mat(d, ff)},
	)
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// --hf-cache and --ollama find the stores where the environment says.
func TestScanStoreFlags(t *testing.T) {
	hub := t.TempDir()
	t.Setenv("HF_HUB_CACHE", hub)
	t.Setenv("OLLAMA_MODELS", filepath.Join(t.TempDir(), "none"))
	o := scanOptions{hfCache: true, ollama: true}
	got := o.storePaths()
	if len(got) != 2 || got[0] != hub || !strings.HasSuffix(got[1], "none") {
		t.Errorf("storePaths %q", got)
	}
	// a store that is not there is an error target (exit 3), not silence
	if code, _, _ := run("scan", "-q", "--ollama"); code != ExitTarget {
		t.Errorf("--ollama without a store: exit %d", code)
	}
}

// A decoder of an architecture the runtime does not run says so in its coverage.
func TestProbeUnsupportedArchitecture(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "model.safetensors")
	writeSafetensorsLlama(t, st)
	// rename the tensors' architecture: gemma-style names the runtime does not run
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "mamba", "hidden_size": 32}`), 0o644)
	b, _ := os.ReadFile(st)
	os.WriteFile(st, bytes.ReplaceAll(b, []byte("self_attn.q_proj"), []byte("self_attn.x_proj")), 0o644)
	code, out, errOut := run("scan", "-q", "--probe", "--probe-budget", "5s", "--format", "json", dir)
	if code == ExitInternal || code == ExitUsage {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Targets []struct {
			Coverage struct {
				Analyses map[string]string `json:"analyses"`
			} `json:"coverage"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Targets) != 1 {
		t.Fatalf("%v %.300s", err, out)
	}
	if got := rep.Targets[0].Coverage.Analyses["probe"]; !strings.Contains(got, "not run: architecture mamba not supported") {
		t.Errorf("probe analysis %q", got)
	}
}

// kensa diff against a base the candidate does not derive from is a high finding (exit 1),
// and every target names its base with its digest.
func TestDiffUnrelatedBase(t *testing.T) {
	dir := t.TempDir()
	base, same, other := filepath.Join(dir, "base.gguf"), filepath.Join(dir, "same.gguf"), filepath.Join(dir, "other.gguf")
	writeModel(t, base, 1, nil)
	writeModel(t, same, 1, nil)
	writeModel(t, other, 2, nil)
	code, out, errOut := run("diff", "-q", "--format", "json", base, same, other)
	if code != ExitFindings {
		t.Fatalf("exit %d, want %d (%s)", code, ExitFindings, errOut)
	}
	var rep struct {
		Targets []struct {
			Path string `json:"path"`
			Base struct {
				Path   string `json:"path"`
				Format string `json:"format"`
				SHA256 string `json:"sha256"`
			} `json:"base"`
			Findings []struct {
				Rule     string `json:"rule"`
				Severity string `json:"severity"`
			} `json:"findings"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Targets) != 2 {
		t.Fatalf("%v %.300s", err, out)
	}
	bb, _ := os.ReadFile(base)
	for _, tg := range rep.Targets {
		if tg.Base.Path != base || tg.Base.Format != "gguf" || tg.Base.SHA256 != sha256hex(bb) {
			t.Errorf("%s: base %+v", tg.Path, tg.Base)
		}
		unrelated := false
		for _, f := range tg.Findings {
			unrelated = unrelated || f.Rule == "KS-DIFF-UNRELATED" && f.Severity == "high"
		}
		if unrelated != (tg.Path == other) {
			t.Errorf("%s: KS-DIFF-UNRELATED %v", tg.Path, unrelated)
		}
	}
	_, text, _ := run("diff", "--no-progress", base, other)
	if !strings.Contains(text, "base: "+base) || !strings.Contains(text, "KS-DIFF-UNRELATED") {
		t.Errorf("text report:\n%s", text)
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
