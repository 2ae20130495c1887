//go:build unix

package formats_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kensa-scan/kensa/formats"
)

// returnsWithin runs f and fails the test if it has not returned after 10 s (a FIFO that
// blocks an open would hang it forever).
func returnsWithin(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return: blocked", what)
		return nil
	}
}

// A FIFO or socket named like a companion file is refused, without blocking.
func TestReadCompanionSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"config.json", "tokenizer_config.json", "tokenizer.json"} {
		if err := syscall.Mkfifo(filepath.Join(dir, name), 0o644); err != nil {
			t.Skip("no FIFOs here:", err)
		}
		err := returnsWithin(t, "ReadCompanion("+name+")", func() error {
			_, err := formats.ReadCompanion(dir, name, 1<<20)
			return err
		})
		if !errors.Is(err, formats.ErrInvalid) || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "FIFO") ||
			!strings.Contains(err.Error(), filepath.Join(dir, name)) {
			t.Errorf("ReadCompanion(FIFO %s) = %v", name, err)
		}
	}
	// a socket (the path must be short)
	sdir, err := os.MkdirTemp("", "ks")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sdir)
	if l, err := net.Listen("unix", filepath.Join(sdir, "vocab.json")); err == nil {
		defer l.Close()
		err := returnsWithin(t, "ReadCompanion(socket)", func() error {
			_, err := formats.ReadCompanion(sdir, "vocab.json", 1<<20)
			return err
		})
		if !errors.Is(err, formats.ErrInvalid) || !strings.Contains(err.Error(), "socket") {
			t.Errorf("ReadCompanion(socket) = %v", err)
		}
	}
	// a character device reached through a link is refused by the link rule or the type check
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "merges.txt")); err == nil {
		if _, err := formats.ReadCompanion(dir, "merges.txt", 1<<20); !errors.Is(err, formats.ErrInvalid) {
			t.Errorf("ReadCompanion(link to /dev/zero) = %v", err)
		}
	}
}

func TestReadCompanionPermission(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root reads everything")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	os.WriteFile(p, []byte(`{}`), 0o000)
	_, err := formats.ReadCompanion(dir, "config.json", 1<<20)
	if !errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), p) {
		t.Errorf("ReadCompanion(unreadable) = %v", err)
	}
}
