package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchCommand(t *testing.T) {
	dir := t.TempDir()
	writeSafetensorsLlama(t, filepath.Join(dir, "model.safetensors"))
	cfg := `{"model_type":"llama","hidden_size":32,"num_hidden_layers":1,"intermediate_size":64,"num_attention_heads":2,"num_key_value_heads":2,"vocab_size":48,"rms_norm_eps":1e-5,"max_position_embeddings":128}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644)
	code, out, errOut := run("bench", "-j", "1", "--prompt", "8", "--gen", "4", "--reps", "2", "--format", "json", dir)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rows []benchResult
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("%v: %s", err, out)
	}
	if rows[0].Test != "pp8" || rows[1].Test != "tg4" || rows[0].TokensPerS <= 0 || rows[1].TokensPerS <= 0 || rows[0].PeakRSS <= 0 || rows[0].Threads != 1 {
		t.Errorf("rows %+v", rows)
	}
	code, out, _ = run("bench", "--reps", "1", "--prompt", "4", "--gen", "2", dir)
	if code != ExitOK || !strings.Contains(out, "pp4") || !strings.Contains(out, "peak RSS") {
		t.Errorf("text: exit %d\n%s", code, out)
	}
	if code, _, _ := run("bench", "--prompt", "0", "--gen", "0", dir); code != ExitUsage {
		t.Errorf("nothing to measure: exit %d", code)
	}
}
