//go:build unix

package scan

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO named like a companion file is a finding, and reading the companions does not
// block on it.
func TestCompanionFIFO(t *testing.T) {
	fm, dir := companionModel(t, map[string]string{"chat_template.jinja": "{{ x }}"})
	names := []string{"config.json", "tokenizer_config.json", "tokenizer.json"}
	for _, name := range names {
		if err := syscall.Mkfifo(filepath.Join(dir, name), 0o644); err != nil {
			t.Skip("no FIFOs here:", err)
		}
	}
	type result struct {
		findings []Finding
		files    []string
	}
	done := make(chan result, 1)
	go func() {
		_, findings, files, _ := readCompanions(fm)
		done <- result{findings, files}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("readCompanions blocked on a FIFO")
	}
	if len(r.files) != 1 || len(r.findings) != len(names) {
		t.Fatalf("files %v, findings %+v", r.files, r.findings)
	}
	for i, f := range r.findings {
		if f.Location.File != filepath.Join(dir, names[i]) || !strings.Contains(f.Message, "FIFO") || !strings.Contains(f.Message, "blocks") {
			t.Errorf("finding %+v", f)
		}
	}
}
