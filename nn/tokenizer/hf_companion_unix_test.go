//go:build unix

package tokenizer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// returnsWithin runs f and fails the test if it has not returned after 10 s.
func returnsWithin(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked on a FIFO", what)
		return nil
	}
}

// FIFOs named tokenizer.json, vocab.json or config.json are errors, not a process blocked
// forever.
func TestHFFIFO(t *testing.T) {
	for _, name := range []string{"tokenizer.json", "vocab.json", "config.json"} {
		dir := t.TempDir()
		if name == "config.json" {
			os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(unigramJSON), 0o644)
		}
		if err := syscall.Mkfifo(filepath.Join(dir, name), 0o644); err != nil {
			t.Skip("no FIFOs here:", err)
		}
		err := returnsWithin(t, "FromHFDir with a FIFO "+name, func() error {
			_, err := FromHFDir(dir)
			return err
		})
		if err == nil {
			t.Errorf("FromHFDir with a FIFO %s: no error", name)
		}
		if name == "tokenizer.json" {
			err := returnsWithin(t, "FromHFFile(FIFO)", func() error {
				_, err := FromHFFile(filepath.Join(dir, name))
				return err
			})
			if err == nil {
				t.Errorf("FromHFFile(FIFO): no error")
			}
		}
	}
}
