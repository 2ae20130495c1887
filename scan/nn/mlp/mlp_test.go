package mlp

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
)

// naive is an independent route: float64, straight from the tensors by name, PyTorch
// semantics y = x·Wᵀ + b, ReLU between layers.
func naive(t *testing.T, m *formats.Model, names []string, x []float64, act func(float64) float64) []float64 {
	t.Helper()
	cur := x
	for li, name := range names {
		w, _ := readAll(m, m.Tensor(name+".weight"))
		b, _ := readAll(m, m.Tensor(name+".bias"))
		out, in := int(m.Tensor(name + ".weight").Shape[0]), int(m.Tensor(name + ".weight").Shape[1])
		y := make([]float64, out)
		for o := 0; o < out; o++ {
			s := float64(b[o])
			for i := 0; i < in; i++ {
				s += float64(w[o*in+i]) * cur[i]
			}
			if li < len(names)-1 {
				s = act(s)
			}
			y[o] = s
		}
		cur = y
	}
	return cur
}

func TestAgainstNaive(t *testing.T) {
	relu := func(x float64) float64 { return math.Max(x, 0) }
	tanh := math.Tanh
	tests := []struct {
		file   string
		layers []string
		act    string
		f      func(float64) float64
	}{
		{"dev/digits/mlp80_0_clean.safetensors", []string{"fc1", "fc2", "fc3"}, "", relu},
		{"dev/digits/mlp80_1_blend.safetensors", []string{"fc1", "fc2", "fc3"}, "", relu}, // F16
		{"dev/digits/mlp80_2_patch.safetensors", []string{"fc1", "fc2", "fc3"}, "relu", relu},
		{"dev/realbd/smu-cs612__mnist_backdoored_1.pt.safetensors", []string{"fc1", "fc2", "fc3", "fc4"}, "", relu},
		{"dev/realbd/trojai__cyber-pdf-dec2022_id-00000002_POISONED__model.pt.safetensors", []string{"fc1", "fc2", "fc3", "fc4", "fc5", "fc6"}, "tanh", tanh},
	}
	root := corpus.Dir(t, "dev")
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tt := range tests {
		p := filepath.Join(filepath.Dir(root), tt.file)
		m, err := formats.Open(p)
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		n, err := Build(m, Options{Activation: tt.act})
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		for k := 0; k < 50; k++ {
			x := make([]float32, n.InputSize())
			x64 := make([]float64, len(x))
			for i := range x {
				x[i] = float32(rng.Float64())
				x64[i] = float64(x[i])
			}
			got := n.Forward(x)
			want := naive(t, m, tt.layers, x64, tt.f)
			scale := 1.0
			for _, w := range want {
				scale = math.Max(scale, math.Abs(w))
			}
			for i := range want {
				if math.Abs(float64(got[i])-want[i]) > 1e-4*scale {
					t.Fatalf("%s input %d logit %d: %v, want %v", tt.file, k, i, got[i], want[i])
				}
			}
		}
		m.Close()
	}
}

// A Keras-layout copy of a network ([in, out] kernels, /kernel:0 names) gives the same
// logits.
func TestKerasLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	f32 := func(v []float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			u := math.Float32bits(x)
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
		return b
	}
	w1, b1, w2, b2 := mk(6*4), mk(6), mk(3*6), mk(3)
	tr := func(w []float32, out, in int) []float32 {
		r := make([]float32, len(w))
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				r[i*out+o] = w[o*in+i]
			}
		}
		return r
	}
	write := func(ts []safetensors.WriteTensor) *formats.Model {
		var buf bytes.Buffer
		if err := safetensors.Write(&buf, ts, nil); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "m.safetensors")
		os.WriteFile(p, buf.Bytes(), 0o644)
		m, err := formats.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	pt := write([]safetensors.WriteTensor{
		{Name: "fc1.weight", DType: formats.F32, Shape: []int64{6, 4}, Data: f32(w1)}, {Name: "fc1.bias", DType: formats.F32, Shape: []int64{6}, Data: f32(b1)},
		{Name: "fc2.weight", DType: formats.F32, Shape: []int64{3, 6}, Data: f32(w2)}, {Name: "fc2.bias", DType: formats.F32, Shape: []int64{3}, Data: f32(b2)},
	})
	ks := write([]safetensors.WriteTensor{
		{Name: "dense/kernel:0", DType: formats.F32, Shape: []int64{4, 6}, Data: f32(tr(w1, 6, 4))}, {Name: "dense/bias:0", DType: formats.F32, Shape: []int64{6}, Data: f32(b1)},
		{Name: "dense_1/kernel:0", DType: formats.F32, Shape: []int64{6, 3}, Data: f32(tr(w2, 3, 6))}, {Name: "dense_1/bias:0", DType: formats.F32, Shape: []int64{3}, Data: f32(b2)},
	})
	np, err := Build(pt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	nk, err := Build(ks, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x := mk(4)
	a, b := np.Forward(x), nk.Forward(x)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6 {
			t.Errorf("logit %d: PyTorch layout %v, Keras layout %v", i, a[i], b[i])
		}
	}
	if !strings.Contains(np.Describe(), "fc1: 4 -> 6") {
		t.Errorf("Describe: %s", np.Describe())
	}
}

func TestNotAChain(t *testing.T) {
	dir := corpus.Dir(t, "dev/digits")
	m, err := formats.Open(filepath.Join(dir, "cnn8_0_clean.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := Build(m, Options{}); err == nil || !strings.Contains(err.Error(), "convolution") {
		t.Errorf("CNN: error %v, want a clear refusal", err)
	}
	if _, err := Build(m, Options{Activation: "swish"}); err == nil {
		t.Errorf("unknown activation accepted")
	}
}

// TestNoisePreview logs how uniform noise is classified by trojaned and clean digit MLPs:
// a trojaned model sends noise to its target class (what the probe will measure).
func TestNoisePreview(t *testing.T) {
	dir := corpus.Dir(t, "dev/digits")
	b, _ := os.ReadFile(filepath.Join(dir, "truth.json"))
	var truth []struct {
		File     string
		Trojaned bool
		Target   *int
		Arch     string
	}
	json.Unmarshal(b, &truth)
	rng := rand.New(rand.NewPCG(9, 9))
	for _, tr := range truth {
		if tr.Arch != "mlp" {
			continue
		}
		m, err := formats.Open(filepath.Join(dir, tr.File))
		if err != nil {
			t.Fatal(err)
		}
		n, err := Build(m, Options{})
		if err != nil {
			t.Fatal(err)
		}
		counts := make([]int, n.Classes())
		for k := 0; k < 2000; k++ {
			x := make([]float32, n.InputSize())
			for i := range x {
				x[i] = float32(rng.Float64() * 16)
			}
			counts[Argmax(n.Forward(x))]++
		}
		top := 0
		for c := range counts {
			if counts[c] > counts[top] {
				top = c
			}
		}
		target := -1
		if tr.Target != nil {
			target = *tr.Target
		}
		t.Logf("%-28s trojaned=%-5v target=%2d  noise -> class %d for %4.1f%%", tr.File, tr.Trojaned, target, top, 100*float64(counts[top])/2000)
		m.Close()
	}
}
