// Package corpus locates the shared test corpus (../shared/corpus next to the repository,
// or $KENSA_CORPUS) for conformance tests, and skips tests cleanly when it is absent.
package corpus

import (
	"os"
	"path/filepath"
	"testing"
)

// Root returns the corpus root, or "" when there is none: $KENSA_CORPUS if set, else
// shared/corpus beside the repository root (the directory holding go.mod).
func Root() string {
	if d := os.Getenv("KENSA_CORPUS"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			c := filepath.Join(filepath.Dir(d), "shared", "corpus")
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return c
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Dir returns the corpus subdirectory sub, skipping the test with a clear message when the
// corpus or the subdirectory is absent.
func Dir(tb testing.TB, sub string) string {
	tb.Helper()
	r := Root()
	if r == "" {
		tb.Skip("corpus not found: set KENSA_CORPUS or place it at ../shared/corpus; skipping corpus test")
	}
	d := filepath.Join(r, sub)
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		tb.Skipf("corpus directory %s not found; skipping corpus test", d)
	}
	return d
}
