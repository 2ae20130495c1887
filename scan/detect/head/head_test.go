package head_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/head"
)

// mlp writes a 64-input (8×8), 32-hidden, 10-class MLP with random weights; with a trigger,
// hidden unit 0 reads only the 2×2 corner at (6,6) and feeds only class 3, as poisoning
// that ties a corner patch to class 3 would wire it.
func mlp(t *testing.T, seed uint64, trigger bool) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	rnd := func(n int, s float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(s * r.NormFloat64())
		}
		return v
	}
	w1, w2 := rnd(32*64, 0.2), rnd(10*32, 0.3)
	if trigger {
		for j := 0; j < 64; j++ {
			w1[j] = 0
		}
		for _, p := range []int{6*8 + 6, 6*8 + 7, 7*8 + 6, 7*8 + 7} {
			w1[p] = 2
		}
		for c := 0; c < 10; c++ {
			w2[c*32] = -0.5
		}
		w2[3*32] = 3
	}
	tensors := []struct {
		name  string
		shape []int64
		v     []float32
	}{{"fc1.weight", []int64{32, 64}, w1}, {"fc1.bias", []int64{32}, rnd(32, 0.1)}, {"fc2.weight", []int64{10, 32}, w2}, {"fc2.bias", []int64{10}, rnd(10, 0.1)}}
	var wts []safetensors.WriteTensor
	for _, x := range tensors {
		b := new(bytes.Buffer)
		binary.Write(b, binary.LittleEndian, x.v)
		wts = append(wts, safetensors.WriteTensor{Name: x.name, DType: formats.F32, Shape: x.shape, Data: b.Bytes()})
	}
	var out bytes.Buffer
	if err := safetensors.Write(&out, wts, nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "m.safetensors")
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func scanOne(t *testing.T, path string) scan.Target {
	t.Helper()
	rep, err := scan.Run(context.Background(), []string{path}, scan.Options{NoHash: true})
	if err != nil {
		t.Fatal(err)
	}
	return rep.Targets[0]
}

// A class wired to an input patch no other class uses is named, with the patch's position,
// at medium; random classifiers get no finding.
func TestTemplateFinding(t *testing.T) {
	tg := scanOne(t, mlp(t, 1, true))
	if tg.Classifier == nil || tg.Classifier.TargetClass != 3 {
		t.Fatalf("classifier analysis %+v, want target class 3", tg.Classifier)
	}
	var f *scan.Finding
	for i := range tg.Findings {
		if tg.Findings[i].Rule == "KS-HEAD-TARGET-CLASS" {
			f = &tg.Findings[i]
		}
	}
	if f == nil {
		t.Fatalf("no head finding: %+v", tg.Findings)
	}
	if f.Severity != scan.Medium || f.Location.Tensor != "fc2.weight" || f.Location.Index[0] != 3 {
		t.Errorf("finding %v at %s row %v, want medium at fc2.weight row 3", f.Severity, f.Location.Tensor, f.Location.Index)
	}
	pk, _ := f.Evidence["peak_input"].(map[string]int)
	if pk["y"] < 6 || pk["x"] < 6 {
		t.Errorf("peak input %v, want inside the corner patch at (6..7, 6..7)", f.Evidence["peak_input"])
	}
	for seed := uint64(2); seed < 12; seed++ {
		tg := scanOne(t, mlp(t, seed, false))
		for _, f := range tg.Findings {
			if f.Rule == "KS-HEAD-TARGET-CLASS" {
				t.Errorf("random classifier (seed %d): %s", seed, f.Message)
			}
		}
	}
}
