package ffn

import (
	"errors"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// Hostile or contradictory shapes fail with an error, without panics or huge allocations.
func TestHostile(t *testing.T) {
	type tensor struct {
		name  string
		shape []int64
	}
	tests := []struct {
		name    string
		tensors []tensor
		opt     Options
		want    error
		msg     string
	}{
		{"mismatched chain", []tensor{{"fc1.weight", []int64{8, 4}}, {"fc1.bias", []int64{8}}, {"fc2.weight", []int64{3, 5}}}, Options{}, ErrUnsupported, `"fc2" takes 5 inputs but "fc1" gives 8`},
		{"bias length", []tensor{{"fc1.weight", []int64{8, 4}}, {"fc1.bias", []int64{7}}}, Options{}, ErrInvalid, "want [8]"},
		{"conv channels", []tensor{{"c1.weight", []int64{4, 1, 3, 3}}, {"c2.weight", []int64{4, 3, 3, 3}}, {"fc.weight", []int64{2, 4}}}, Options{InputShape: []int{1, 5, 5}}, ErrUnsupported, "takes 3 channels"},
		{"no dense", []tensor{{"c1.weight", []int64{4, 1, 3, 3}}}, Options{}, ErrUnsupported, "no dense layer"},
		{"3-D weight", []tensor{{"c1.weight", []int64{4, 1, 3}}, {"fc.weight", []int64{2, 4}}}, Options{}, ErrUnsupported, "3-D weight"},
		{"layer norm", []tensor{{"ln.weight", []int64{4}}, {"fc.weight", []int64{2, 4}}}, Options{}, ErrUnsupported, "1-D weight"},
		{"batch norm first", []tensor{{"a.running_mean", []int64{4}}, {"a.running_var", []int64{4}}, {"fc.weight", []int64{2, 4}}}, Options{}, ErrUnsupported, "no layer before it"},
		{"batch norm width", []tensor{{"fc.weight", []int64{2, 4}}, {"fc_bn.running_mean", []int64{3}}, {"fc_bn.running_var", []int64{3}}}, Options{}, ErrInvalid, "want [2]"},
		{"unknown name", []tensor{{"embed", []int64{2, 4}}}, Options{}, ErrUnsupported, "neither a PyTorch nor a Keras"},
		{"bad pool", []tensor{{"fc.weight", []int64{2, 4}}}, Options{Pool: "median"}, ErrUnsupported, "unknown pooling"},
		{"bad padding", []tensor{{"fc.weight", []int64{2, 4}}}, Options{Padding: "reflect"}, ErrUnsupported, "unknown padding"},
		{"input too big", []tensor{{"c.weight", []int64{2, 1, 3, 3}}, {"fc.weight", []int64{2, 8}}}, Options{InputShape: []int{1, 1 << 30, 1 << 30}}, ErrInvalid, "height and width"},
		{"input rank", []tensor{{"c.weight", []int64{2, 1, 3, 3}}, {"fc.weight", []int64{2, 8}}}, Options{InputShape: []int{9}}, ErrInvalid, "C, H, W"},
		{"negative input", []tensor{{"fc.weight", []int64{2, 4}}}, Options{InputShape: []int{-2, -2}}, ErrInvalid, "bad or oversized"},
		{"kernel larger than input", []tensor{{"c.weight", []int64{2, 1, 9, 9}}, {"fc.weight", []int64{2, 8}}}, Options{InputShape: []int{1, 4, 4}, Padding: "valid"}, ErrInvalid, "no padding and pooling plan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, shapes := map[string][]float32{}, map[string][]int64{}
			for _, x := range tt.tensors {
				n := int64(1)
				for _, d := range x.shape {
					n *= d
				}
				vals[x.name], shapes[x.name] = ones(int(n)), x.shape
			}
			m := writeModel(t, vals, shapes)
			_, err := Build(m, tt.opt)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Build = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

// Shapes the file cannot hold (zero or enormous dimensions) are refused before anything is
// read or allocated; the model here has no file at all.
func TestHostileDims(t *testing.T) {
	tests := []struct {
		name  string
		shape []int64
		msg   string
	}{
		{"zero", []int64{0, 4}, "dimension 0 is 0"},
		{"negative", []int64{4, -1}, "dimension 1 is -1"},
		{"enormous", []int64{1 << 40, 1 << 40}, "exceeds"},
		{"enormous conv", []int64{1 << 20, 1 << 20, 3, 3}, "exceeds"},
		{"product", []int64{1 << 15, 1 << 15}, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &formats.Model{Tensors: []formats.TensorInfo{{Name: "fc.weight", DType: formats.F32, Shape: tt.shape, File: "x"}}}
			_, err := Build(m, Options{})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Build = %v, want ErrInvalid containing %q", err, tt.msg)
			}
		})
	}
	if _, err := Build(&formats.Model{}, Options{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Build(no tensors) = %v, want ErrUnsupported", err)
	}
}

// A BatchNorm after a dense layer (BatchNorm1d) is folded: with mean 1, variance 4 − ε,
// γ 3 and β 0.5, y = 3·(x − 1)/2 + 0.5.
func TestDenseBatchNorm(t *testing.T) {
	eps := float32(1e-5)
	m := writeModel(t, map[string][]float32{
		"fc.weight": {1, 0, 0, 1}, "fc.bias": {0, 0},
		"fc_bn.weight": {3, 3}, "fc_bn.bias": {0.5, 0.5}, "fc_bn.running_mean": {1, 1}, "fc_bn.running_var": {4 - eps, 4 - eps},
		"out.weight": {1, 0, 0, 1}, "out.bias": {0, 0},
	}, map[string][]int64{
		"fc.weight": {2, 2}, "fc.bias": {2}, "fc_bn.weight": {2}, "fc_bn.bias": {2}, "fc_bn.running_mean": {2}, "fc_bn.running_var": {2},
		"out.weight": {2, 2}, "out.bias": {2},
	})
	n, err := Build(m, Options{Activation: "none"})
	if err != nil {
		t.Fatal(err)
	}
	got := n.Forward([]float32{5, -1})
	want := []float32{3*(5-1)/2.0 + 0.5, 3*(-1-1)/2.0 + 0.5}
	for i := range want {
		if d := got[i] - want[i]; d > 1e-5 || d < -1e-5 {
			t.Errorf("Forward = %v, want %v", got, want)
		}
	}
	if !strings.Contains(n.Describe(), "batch norm fc_bn (folded") {
		t.Errorf("Describe:\n%s", n.Describe())
	}
}

// Each activation computes its function between layers (checked on one value).
func TestActivations(t *testing.T) {
	tests := []struct {
		act  string
		x    float32
		want float32
	}{
		{"relu", -2, 0}, {"relu", 2, 2}, {"tanh", 1, 0.7615942}, {"sigmoid", 0, 0.5},
		{"gelu", 1, 0.8413447}, {"leaky_relu", -2, -0.02}, {"none", -2, -2},
	}
	for _, tt := range tests {
		m := writeModel(t, map[string][]float32{"a.weight": {1}, "b.weight": {1}}, map[string][]int64{"a.weight": {1, 1}, "b.weight": {1, 1}})
		n, err := Build(m, Options{Activation: tt.act})
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Forward([]float32{tt.x})[0]; got-tt.want > 1e-6 || tt.want-got > 1e-6 {
			t.Errorf("%s(%g) = %g, want %g", tt.act, tt.x, got, tt.want)
		}
	}
}

func TestPredict(t *testing.T) {
	tests := []struct {
		in   []float32
		want int
	}{
		{nil, -1}, {[]float32{1}, 0}, {[]float32{1, 3, 3, 2}, 1}, {[]float32{-5, -1, -3}, 1},
	}
	for _, tt := range tests {
		if got := Predict(tt.in); got != tt.want {
			t.Errorf("Predict(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// BatchNorms named after their convolution (conv1, bn1, conv2, bn2, fc: bn1 sorts first)
// attach by number; the result matches the naive route.
func TestConvBatchNormByNumber(t *testing.T) {
	vals, shapes := map[string][]float32{}, map[string][]int64{}
	add := func(name string, shape ...int64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((i*7+len(name)*3)%11)/10 - 0.4
		}
		if strings.HasSuffix(name, "running_var") {
			for i := range v {
				v[i] += 1
			}
		}
		vals[name], shapes[name] = v, shape
	}
	add("conv1.weight", 4, 1, 3, 3)
	add("conv1.bias", 4)
	add("conv2.weight", 6, 4, 3, 3)
	add("conv2.bias", 6)
	for _, bn := range []struct {
		name string
		c    int64
	}{{"bn1", 4}, {"bn2", 6}} {
		for _, p := range []string{"weight", "bias", "running_mean", "running_var"} {
			add(bn.name+"."+p, bn.c)
		}
	}
	add("fc.weight", 3, 6*2*2)
	add("fc.bias", 3)
	m := writeModel(t, vals, shapes)
	n, err := Build(m, Options{InputShape: []int{1, 10, 10}, Padding: "valid"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", n.Describe())
	a := narch{act: nrelu, c: 1, h: 10, w: 10, steps: []nstep{
		{kind: "conv", name: "conv1", pool: "max", bn: "bn1"},
		{kind: "conv", name: "conv2", bn: "bn2"},
		{kind: "dense", name: "fc"},
	}}
	checkNaive(t, m, n, a, 1)
}

// A Keras dense chain with a BatchNormalization named by type (batch_normalization_1 sorts
// before dense_1) attaches it by number, folds it with Keras's ε = 1e-3 and matches the naive
// route.
func TestKerasBatchNorm(t *testing.T) {
	vals := map[string][]float32{
		"dense_1/kernel:0": {0.5, -1, 0.25, 2, 1, -0.5, 0.1, 0.2, 0.3, -0.3, 0.7, 1.5}, "dense_1/bias:0": {0.1, -0.2, 0.3},
		"batch_normalization_1/gamma:0": {1.5, 0.5, 2}, "batch_normalization_1/beta:0": {0.1, 0.2, -0.3},
		"batch_normalization_1/moving_mean:0": {0.5, -0.5, 1}, "batch_normalization_1/moving_variance:0": {0.002, 1, 4},
		"dense_2/kernel:0": {1, -1, 0.5, 0.5, -2, 1}, "dense_2/bias:0": {0, 0.1},
	}
	shapes := map[string][]int64{
		"dense_1/kernel:0": {4, 3}, "dense_1/bias:0": {3},
		"batch_normalization_1/gamma:0": {3}, "batch_normalization_1/beta:0": {3},
		"batch_normalization_1/moving_mean:0": {3}, "batch_normalization_1/moving_variance:0": {3},
		"dense_2/kernel:0": {3, 2}, "dense_2/bias:0": {2},
	}
	m := writeModel(t, vals, shapes)
	n, err := Build(m, Options{Activation: "tanh"})
	if err != nil {
		t.Fatal(err)
	}
	a := narch{act: ntanh, c: 4, h: 1, w: 1, steps: []nstep{
		{kind: "dense", name: "dense_1", bn: "batch_normalization_1", keras: true},
		{kind: "dense", name: "dense_2", keras: true},
	}}
	checkNaive(t, m, n, a, 2)
}
