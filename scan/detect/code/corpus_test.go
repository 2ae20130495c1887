package code

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/pickle"
	_ "github.com/kensa-scan/kensa/formats/pytorch"
	"github.com/kensa-scan/kensa/internal/corpus"
	"github.com/kensa-scan/kensa/scan"
)

type truth struct {
	File       string  `json:"file"`
	Format     string  `json:"format"`
	Kind       string  `json:"kind"`
	Malicious  bool    `json:"malicious"`
	MinSev     *string `json:"expect_min_severity"`
	AcceptFile []int64 `json:"accept_offsets_file"`
	OffsetFile *int64  `json:"offending_offset_file"`
	CheckW     bool    `json:"check_weights"`
	Tensors    int     `json:"tensors"`
	Parameters int64   `json:"parameters"`
}

// the formats this part reads; the rest of formats/ is judged by other readers
var mine = map[string]bool{"pickle": true, "pytorch-zip": true, "pytorch-legacy": true, "torchscript": true, "7z": true, "joblib": true}

func run(t *testing.T, path string) (*formats.Model, []scan.Finding) {
	m, err := formats.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Cleanup(func() { m.Close() })
	var mu sync.Mutex
	var fs []scan.Finding
	if err := (Detector{}).Header(context.Background(), &scan.Model{Model: m}, func(f scan.Finding) { mu.Lock(); fs = append(fs, f); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	return m, fs
}

func TestCorpusFormats(t *testing.T) {
	dir := corpus.Dir(t, "dev/formats")
	b, err := os.ReadFile(filepath.Join(dir, "truth.json"))
	if err != nil {
		t.Skipf("no truth.json: %v", err)
	}
	var ts []truth
	if err := json.Unmarshal(b, &ts); err != nil {
		t.Fatal(err)
	}
	for _, e := range ts {
		if !mine[e.Format] {
			continue
		}
		t.Run(e.File, func(t *testing.T) {
			m, fs := run(t, filepath.Join(dir, e.File))
			worst := scan.Info
			at := false
			for _, f := range fs {
				worst = max(worst, f.Severity)
				if f.Severity >= scan.High {
					for _, o := range e.AcceptFile {
						if d := f.Location.ByteOffset - o; d >= -64 && d <= 64 {
							at = true
						}
					}
				}
			}
			if e.Malicious {
				want := scan.High
				if e.MinSev != nil && *e.MinSev == "critical" {
					want = scan.Critical
				}
				if worst < want {
					t.Errorf("worst severity %v, want at least %v; findings %+v", worst, want, fs)
				}
				if len(e.AcceptFile) > 0 && !at {
					t.Errorf("no high finding within 64 bytes of %v: %+v", e.AcceptFile, fs)
				}
				return
			}
			if worst >= scan.High {
				t.Errorf("benign file has a finding at %v: %+v", worst, fs)
			}
			if e.CheckW && (len(m.Tensors) != e.Tensors || m.Parameters() != e.Parameters) {
				t.Errorf("%d tensors, %d parameters; want %d, %d", len(m.Tensors), m.Parameters(), e.Tensors, e.Parameters)
			}
		})
	}
}
