//go:build unix

package llm

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A FIFO named config.json is an error, not a process blocked forever.
func TestHFConfigFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "config.json"), 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := hfConfig(dir)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("hfConfig read a FIFO")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hfConfig blocked on a FIFO named config.json")
	}
}
