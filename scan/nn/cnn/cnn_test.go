package cnn

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
)

// naiveConv is an independent float64 route: direct convolution with zero padding, ReLU,
// then max or average 2×2 pooling when pool, from the tensors by name.
func naiveConv(m *formats.Model, name string, x []float64, c, h, w, pad int, pool bool, avg bool) ([]float64, int, int, int) {
	wt := m.Tensor(name + ".weight")
	r, _ := m.NewTensorReader(wt)
	wv := make([]float32, wt.Elements())
	r.ReadElements(0, wv)
	bt := m.Tensor(name + ".bias")
	rb, _ := m.NewTensorReader(bt)
	bv := make([]float32, bt.Elements())
	rb.ReadElements(0, bv)
	o, k := int(wt.Shape[0]), int(wt.Shape[2])
	oh, ow := h+2*pad-k+1, w+2*pad-k+1
	y := make([]float64, o*oh*ow)
	for oc := 0; oc < o; oc++ {
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				s := float64(bv[oc])
				for ic := 0; ic < c; ic++ {
					for a := 0; a < k; a++ {
						for b := 0; b < k; b++ {
							ri, rj := i+a-pad, j+b-pad
							if ri >= 0 && ri < h && rj >= 0 && rj < w {
								s += float64(wv[((oc*c+ic)*k+a)*k+b]) * x[(ic*h+ri)*w+rj]
							}
						}
					}
				}
				y[(oc*oh+i)*ow+j] = math.Max(s, 0)
			}
		}
	}
	if !pool {
		return y, o, oh, ow
	}
	ph, pw := oh/2, ow/2
	p := make([]float64, o*ph*pw)
	for oc := 0; oc < o; oc++ {
		for i := 0; i < ph; i++ {
			for j := 0; j < pw; j++ {
				v := []float64{y[(oc*oh+2*i)*ow+2*j], y[(oc*oh+2*i)*ow+2*j+1], y[(oc*oh+2*i+1)*ow+2*j], y[(oc*oh+2*i+1)*ow+2*j+1]}
				if avg {
					p[(oc*ph+i)*pw+j] = (v[0] + v[1] + v[2] + v[3]) / 4
				} else {
					p[(oc*ph+i)*pw+j] = math.Max(math.Max(v[0], v[1]), math.Max(v[2], v[3]))
				}
			}
		}
	}
	return p, o, ph, pw
}

func naiveDense(m *formats.Model, names []string, x []float64) []float64 {
	cur := x
	for li, name := range names {
		wt := m.Tensor(name + ".weight")
		r, _ := m.NewTensorReader(wt)
		w := make([]float32, wt.Elements())
		r.ReadElements(0, w)
		bt := m.Tensor(name + ".bias")
		rb, _ := m.NewTensorReader(bt)
		b := make([]float32, bt.Elements())
		rb.ReadElements(0, b)
		out, in := int(wt.Shape[0]), int(wt.Shape[1])
		y := make([]float64, out)
		for o := range y {
			s := float64(b[o])
			for i := 0; i < in; i++ {
				s += float64(w[o*in+i]) * cur[i]
			}
			if li < len(names)-1 {
				s = math.Max(s, 0)
			}
			y[o] = s
		}
		cur = y
	}
	return cur
}

func TestAgainstNaive(t *testing.T) {
	root := filepath.Dir(corpus.Dir(t, "dev"))
	tests := []struct {
		file  string
		opt   Options
		convs []string
		pads  []int
		pools []bool
		dense []string
		avg   bool
		c, h  int
	}{
		{"dev/digits/cnn8_0_clean.safetensors", Options{InputShape: []int{1, 8, 8}, Padding: "same"}, []string{"conv1", "conv2"}, []int{1, 1}, []bool{true, true}, []string{"fc"}, false, 1, 8},
		{"dev/digits/cnn8_1_blend.safetensors", Options{InputShape: []int{1, 8, 8}, Padding: "same"}, []string{"conv1", "conv2"}, []int{1, 1}, []bool{true, true}, []string{"fc"}, false, 1, 8},
		{"dev/realbd/verazuo_badnets-pytorch__badnet-MNIST.pth.safetensors", Options{InputShape: []int{1, 28, 28}, Pool: "avg"}, []string{"conv1.0", "conv2.0"}, []int{0, 0}, []bool{true, true}, []string{"fc1.0", "fc2.0"}, true, 1, 28},
		{"dev/realbd/verazuo_badnets-pytorch__badnet-CIFAR10.pth.safetensors", Options{InputShape: []int{3, 32, 32}, Pool: "avg"}, []string{"conv1.0", "conv2.0"}, []int{0, 0}, []bool{true, true}, []string{"fc1.0", "fc2.0"}, true, 3, 32},
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for _, tt := range tests {
		m, err := formats.Open(filepath.Join(root, tt.file))
		if err != nil {
			t.Fatal(err)
		}
		n, err := Build(m, tt.opt)
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		t.Logf("%s:\n%s", filepath.Base(tt.file), n.Describe())
		for k := 0; k < 5; k++ {
			x := make([]float32, n.InputSize())
			x64 := make([]float64, len(x))
			for i := range x {
				x[i] = float32(rng.Float64())
				x64[i] = float64(x[i])
			}
			got := n.Forward(x)
			cur, c, h, w := x64, tt.c, tt.h, tt.h
			for s, name := range tt.convs {
				cur, c, h, w = naiveConv(m, name, cur, c, h, w, tt.pads[s], tt.pools[s], tt.avg)
			}
			want := naiveDense(m, tt.dense, cur)
			scale := 1.0
			for _, v := range want {
				scale = math.Max(scale, math.Abs(v))
			}
			for i := range want {
				if math.Abs(float64(got[i])-want[i]) > 1e-4*scale {
					t.Fatalf("%s: logit %d = %v, want %v", tt.file, i, got[i], want[i])
				}
			}
		}
		m.Close()
	}
}

// Without the input shape and padding, the digits CNN fits several plans: Build says so.
func TestAmbiguous(t *testing.T) {
	m, err := formats.Open(filepath.Join(corpus.Dir(t, "dev/digits"), "cnn8_0_clean.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := Build(m, Options{InputShape: []int{1, 8, 8}}); err == nil || !strings.Contains(err.Error(), "plans") {
		t.Errorf("ambiguous plan: error %v", err)
	}
	if _, err := Build(m, Options{InputShape: []int{3, 8, 8}, Padding: "same"}); err == nil {
		t.Errorf("wrong channel count accepted")
	}
}
