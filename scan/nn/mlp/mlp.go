// Package mlp runs feed-forward classifiers made of a chain of dense (Linear) layers, read
// from their weights: PyTorch `name.weight` [out, in] with `name.bias`, or Keras
// `name/kernel:0` [in, out] with `name/bias:0`. The chain is wired by matching each
// layer's input width to the previous layer's output width, in the order of the layer
// numbers in the names; the activation between layers cannot be read from weights, so it
// is an option (ReLU by default) and Describe says which parts were inferred or given.
package mlp

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// Options override what the weights cannot tell.
type Options struct {
	Activation string // relu (default), tanh, sigmoid, gelu, leaky_relu, none
}

// Layer is one dense layer: y = W·x + b with W [Out, In].
type Layer struct {
	Name    string
	In, Out int
	W       []float32 // [Out, In]
	B       []float32 // [Out] (zeros when the layer has no bias)
}

// Network is a chain of dense layers with one activation between them.
type Network struct {
	Layers     []Layer
	Activation string
	ActGiven   bool // the activation was given as an option (otherwise the default)
}

// InputSize is the width of the input vector.
func (n *Network) InputSize() int { return n.Layers[0].In }

// Classes is the width of the output.
func (n *Network) Classes() int { return n.Layers[len(n.Layers)-1].Out }

// Describe returns the layer plan, one line per layer.
func (n *Network) Describe() string {
	var b strings.Builder
	how := "default, not readable from weights"
	if n.ActGiven {
		how = "given"
	}
	for i, l := range n.Layers {
		fmt.Fprintf(&b, "dense %s: %d -> %d (wiring inferred from shapes)", l.Name, l.In, l.Out)
		if i < len(n.Layers)-1 {
			fmt.Fprintf(&b, ", then %s (%s)", n.Activation, how)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Dense is a dense layer found among a model's tensors.
type Dense struct {
	Weight int    // index of the weight tensor in Model.Tensors
	Bias   int    // index of the bias tensor, -1 when there is none
	Base   string // the layer's name without the ".weight" / "/kernel:0" suffix
	Keras  bool   // [in, out] layout (Keras kernel) rather than PyTorch's [out, in]
	In     int64
	Out    int64
}

// FindDense lists the dense layers of a model: 2-D float weights named `X.weight` (PyTorch,
// [out, in]) or `X/kernel:0` / `Xkernel` (Keras, [in, out]), each with its bias `X.bias` /
// `X/bias:0` / `Xbias` when present and of the right length. It returns them in file order.
func FindDense(m *formats.Model) []Dense {
	byName := make(map[string]int, len(m.Tensors))
	for i := range m.Tensors {
		byName[m.Tensors[i].Name] = i
	}
	var out []Dense
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if len(t.Shape) != 2 || !t.DType.Float() {
			continue
		}
		d := Dense{Weight: i, Bias: -1}
		var biasName string
		switch {
		case strings.HasSuffix(t.Name, ".weight"):
			d.Base = strings.TrimSuffix(t.Name, ".weight")
			biasName = d.Base + ".bias"
			d.Out, d.In = t.Shape[0], t.Shape[1]
		case strings.HasSuffix(t.Name, "/kernel:0"):
			d.Base, d.Keras = strings.TrimSuffix(t.Name, "/kernel:0"), true
			biasName = d.Base + "/bias:0"
			d.In, d.Out = t.Shape[0], t.Shape[1]
		case strings.HasSuffix(t.Name, "kernel"):
			d.Base, d.Keras = strings.TrimSuffix(t.Name, "kernel"), true
			biasName = d.Base + "bias"
			d.In, d.Out = t.Shape[0], t.Shape[1]
		default:
			continue
		}
		if bi, ok := byName[biasName]; ok && len(m.Tensors[bi].Shape) == 1 && m.Tensors[bi].Shape[0] == d.Out {
			d.Bias = bi
		}
		out = append(out, d)
	}
	return out
}

type dense struct {
	w, b  *formats.TensorInfo
	base  string
	keras bool
	in    int64
	out   int64
	key   []int
}

// numbers returns the integers in a name, for natural ordering (fc2 < fc10).
func numbers(s string) []int {
	var out []int
	for i := 0; i < len(s); {
		if s[i] < '0' || s[i] > '9' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		v, _ := strconv.Atoi(s[i:min(j, i+9)])
		out = append(out, v)
		i = j
	}
	return out
}

// Build wires the dense layers of a model into a chain. It fails when the model holds
// other kinds of layers (convolutions), when the widths do not chain, or when the chain is
// ambiguous.
func Build(m *formats.Model, opt Options) (*Network, error) {
	for i := range m.Tensors {
		if len(m.Tensors[i].Shape) == 4 {
			return nil, fmt.Errorf("mlp: %q is a convolution kernel: build the network with package cnn", m.Tensors[i].Name)
		}
	}
	return BuildDense(m, opt)
}

// BuildDense wires the dense layers of a model into a chain, ignoring any other layers (the
// dense tail of a convolutional network).
func BuildDense(m *formats.Model, opt Options) (*Network, error) {
	act := strings.ToLower(opt.Activation)
	given := act != ""
	if !given {
		act = "relu"
	}
	if _, ok := activations[act]; !ok {
		return nil, fmt.Errorf("mlp: activation %q is not one of relu, tanh, sigmoid, gelu, leaky_relu, none", opt.Activation)
	}
	var ds []dense
	for _, fd := range FindDense(m) {
		d := dense{w: &m.Tensors[fd.Weight], base: fd.Base, keras: fd.Keras, in: fd.In, out: fd.Out}
		if fd.Bias >= 0 {
			d.b = &m.Tensors[fd.Bias]
		}
		if d.in <= 0 || d.out <= 0 || d.in*d.out > 1<<28 {
			return nil, fmt.Errorf("mlp: %q has shape %v", d.w.Name, d.w.Shape)
		}
		d.key = numbers(d.base)
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("mlp: no dense layers")
	}
	sort.SliceStable(ds, func(a, b int) bool {
		ka, kb := ds[a].key, ds[b].key
		for i := 0; i < len(ka) && i < len(kb); i++ {
			if ka[i] != kb[i] {
				return ka[i] < kb[i]
			}
		}
		if len(ka) != len(kb) {
			return len(ka) < len(kb)
		}
		return ds[a].base < ds[b].base
	})
	for i := 1; i < len(ds); i++ {
		if ds[i].in != ds[i-1].out {
			return nil, fmt.Errorf("mlp: %q takes %d inputs but %q gives %d: not a chain of dense layers", ds[i].w.Name, ds[i].in, ds[i-1].w.Name, ds[i-1].out)
		}
	}
	n := &Network{Activation: act, ActGiven: given}
	for _, d := range ds {
		l := Layer{Name: d.base, In: int(d.in), Out: int(d.out), B: make([]float32, d.out)}
		w, err := readAll(m, d.w)
		if err != nil {
			return nil, err
		}
		if d.keras { // [in, out] -> [out, in]
			l.W = make([]float32, len(w))
			for i := 0; i < l.In; i++ {
				for o := 0; o < l.Out; o++ {
					l.W[o*l.In+i] = w[i*l.Out+o]
				}
			}
		} else {
			l.W = w
		}
		if d.b != nil {
			if l.B, err = readAll(m, d.b); err != nil {
				return nil, err
			}
		}
		n.Layers = append(n.Layers, l)
	}
	return n, nil
}

func readAll(m *formats.Model, t *formats.TensorInfo) ([]float32, error) {
	r, err := m.NewTensorReader(t)
	if err != nil {
		return nil, err
	}
	v := make([]float32, t.Elements())
	return v, r.ReadElements(0, v)
}

var activations = map[string]func(float32) float32{
	"relu": func(x float32) float32 { return max(x, 0) },
	"tanh": func(x float32) float32 { return float32(math.Tanh(float64(x))) },
	"sigmoid": func(x float32) float32 {
		return float32(1 / (1 + math.Exp(-float64(x))))
	},
	"gelu": func(x float32) float32 {
		return float32(0.5 * float64(x) * (1 + math.Erf(float64(x)/math.Sqrt2)))
	},
	"leaky_relu": func(x float32) float32 {
		if x < 0 {
			return 0.01 * x
		}
		return x
	},
	"none": func(x float32) float32 { return x },
}

// Stimulus overrides one hidden neuron's activation (after the activation function) in a
// forward pass: the probe's way to ask what a neuron alone does.
type Stimulus struct {
	Layer, Neuron int // Layer indexes the hidden layers (0 = output of the first dense layer)
	Value         float32
}

// Forward returns the logits for one input.
func (n *Network) Forward(x []float32) []float32 {
	out, _ := n.ForwardTrace(x, nil, false)
	return out
}

// ForwardTrace returns the logits and, when trace is set, the activations of every hidden
// layer; stim, when not nil, overrides one hidden neuron.
func (n *Network) ForwardTrace(x []float32, stim *Stimulus, trace bool) ([]float32, [][]float32) {
	if len(x) != n.InputSize() {
		panic(fmt.Sprintf("mlp: input of %d values, want %d", len(x), n.InputSize()))
	}
	f := activations[n.Activation]
	var hidden [][]float32
	cur := x
	for li, l := range n.Layers {
		y := make([]float32, l.Out)
		for o := 0; o < l.Out; o++ {
			w := l.W[o*l.In : (o+1)*l.In]
			var s float32
			for i, v := range cur {
				s += w[i] * v
			}
			y[o] = s + l.B[o]
		}
		if li < len(n.Layers)-1 {
			for i := range y {
				y[i] = f(y[i])
			}
			if stim != nil && stim.Layer == li && stim.Neuron >= 0 && stim.Neuron < len(y) {
				y[stim.Neuron] = stim.Value
			}
			if trace {
				hidden = append(hidden, y)
			}
		}
		cur = y
	}
	return cur, hidden
}

// Argmax returns the index of the largest logit.
func Argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
