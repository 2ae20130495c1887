package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
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
