package code

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

func TestDumpCorpus(t *testing.T) {
	if os.Getenv("KENSA_DUMP") == "" {
		t.Skip("set KENSA_DUMP=1 to print every finding on the dev corpus")
	}
	dir := corpus.Dir(t, "dev/formats")
	for _, sub := range []string{"pickle", "torch", "real", "misc"} {
		ms, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, p := range ms {
			if filepath.Ext(p) == ".h5" {
				continue
			}
			m, fs := run(t, p)
			t.Logf("%s: %s, %d tensors, %d parameters", p[len(dir)+1:], m.Format, len(m.Tensors), m.Parameters())
			for _, f := range fs {
				t.Logf("   %v %s @%d %s %s", f.Severity, f.Rule, f.Location.ByteOffset, f.Evidence["module"], f.Evidence["name"])
			}
		}
	}
}
