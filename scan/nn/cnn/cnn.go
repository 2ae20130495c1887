// Package cnn runs convolutional classifiers stored as PyTorch state dicts: a sequence of
// 2-D convolutions ([out, in, kh, kw] kernels with biases, optionally followed by
// BatchNorm2d), each followed by the activation and possibly a 2×2 pooling, then a chain of
// dense layers (package mlp). Stride 1 is assumed.
//
// Weights do not say everything: the input's height and width, the padding and where the
// pooling happens are fixed only when the shapes leave one possibility (the flattened size
// must equal the first dense layer's width), and the pooling kind (max or average) and the
// activation never show. Build searches the plans that fit, takes what options give, and
// fails with the list of plans when more than one remains; Describe says what was inferred
// and what was given.
package cnn

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/scan/nn/mlp"
)

// Options give what the weights cannot tell.
type Options struct {
	InputShape []int  // C, H, W
	Activation string // relu (default), tanh, ...
	Pool       string // max (default) or avg
	Padding    string // "" (search), "valid" or "same"
}

// Stage is one convolution with what follows it.
type Stage struct {
	Name         string
	Out, In      int
	KH, KW       int
	W, B         []float32 // W [Out, In, KH, KW]
	Scale, Shift []float32 // folded BatchNorm (nil without)
	Pad          int       // zero padding on each side
	Pool         int       // 1 (none) or 2
	inH, inW     int
	outH, outW   int
}

// Network is a convolutional classifier.
type Network struct {
	Stages  []Stage
	Dense   *mlp.Network
	C, H, W int
	act     func(float32) float32
	pool    string
	notes   []string
}

// Describe returns the plan with what was inferred and what was given.
func (n *Network) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "input %d×%d×%d\n", n.C, n.H, n.W)
	for _, s := range n.Stages {
		fmt.Fprintf(&b, "conv %s: %d -> %d, %dx%d, padding %d", s.Name, s.In, s.Out, s.KH, s.KW, s.Pad)
		if s.Scale != nil {
			b.WriteString(", batch norm")
		}
		b.WriteString(", activation")
		if s.Pool == 2 {
			fmt.Fprintf(&b, ", %s pool 2", n.pool)
		}
		fmt.Fprintf(&b, " -> %d×%d×%d\n", s.Out, s.outH, s.outW)
	}
	b.WriteString(n.Dense.Describe())
	for _, note := range n.notes {
		b.WriteString(note + "\n")
	}
	return b.String()
}

// InputSize is the length of the flattened input (C·H·W).
func (n *Network) InputSize() int { return n.C * n.H * n.W }

// Classes is the number of outputs.
func (n *Network) Classes() int { return n.Dense.Classes() }

var acts = map[string]func(float32) float32{
	"relu": func(x float32) float32 { return max(x, 0) },
	"tanh": func(x float32) float32 { return float32(math.Tanh(float64(x))) },
	"none": func(x float32) float32 { return x },
}

// Build wires a convolutional classifier from a model's tensors.
func Build(m *formats.Model, opt Options) (*Network, error) {
	actName := strings.ToLower(opt.Activation)
	if actName == "" {
		actName = "relu"
	}
	act, ok := acts[actName]
	if !ok {
		return nil, fmt.Errorf("cnn: activation %q is not one of relu, tanh, none", opt.Activation)
	}
	pool := strings.ToLower(opt.Pool)
	if pool == "" {
		pool = "max"
	}
	if pool != "max" && pool != "avg" {
		return nil, fmt.Errorf("cnn: pooling %q is not max or avg", opt.Pool)
	}
	byName := map[string]*formats.TensorInfo{}
	for i := range m.Tensors {
		byName[m.Tensors[i].Name] = &m.Tensors[i]
	}
	read := func(t *formats.TensorInfo) ([]float32, error) {
		r, err := m.NewTensorReader(t)
		if err != nil {
			return nil, err
		}
		v := make([]float32, t.Elements())
		return v, r.ReadElements(0, v)
	}
	var convs []*formats.TensorInfo
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if len(t.Shape) == 4 && strings.HasSuffix(t.Name, ".weight") && t.DType.Float() {
			convs = append(convs, t)
		}
		if len(t.Shape) == 4 && strings.HasSuffix(t.Name, ":0") {
			return nil, fmt.Errorf("cnn: %q is a Keras kernel: Keras convolutional models are not supported yet", t.Name)
		}
	}
	if len(convs) == 0 {
		return nil, fmt.Errorf("cnn: no convolution kernels")
	}
	sort.SliceStable(convs, func(a, b int) bool { return natLess(convs[a].Name, convs[b].Name) })
	n := &Network{act: act, pool: pool}
	for _, t := range convs {
		s := Stage{Name: strings.TrimSuffix(t.Name, ".weight"), Out: int(t.Shape[0]), In: int(t.Shape[1]), KH: int(t.Shape[2]), KW: int(t.Shape[3])}
		if s.Out <= 0 || s.In <= 0 || s.KH <= 0 || s.KW <= 0 || s.KH > 15 || s.KW > 15 || s.Out*s.In > 1<<20 {
			return nil, fmt.Errorf("cnn: kernel %q has shape %v", t.Name, t.Shape)
		}
		if len(n.Stages) > 0 && n.Stages[len(n.Stages)-1].Out != s.In {
			return nil, fmt.Errorf("cnn: %q takes %d channels but the previous convolution gives %d", t.Name, s.In, n.Stages[len(n.Stages)-1].Out)
		}
		var err error
		if s.W, err = read(t); err != nil {
			return nil, err
		}
		s.B = make([]float32, s.Out)
		if b := byName[s.Name+".bias"]; b != nil && len(b.Shape) == 1 && b.Shape[0] == int64(s.Out) {
			if s.B, err = read(b); err != nil {
				return nil, err
			}
		}
		n.Stages = append(n.Stages, s)
	}
	// BatchNorm2d: X.running_mean with X.running_var, X.weight, X.bias of a stage's width,
	// attached to the last convolution before it in name order.
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if !strings.HasSuffix(t.Name, ".running_mean") {
			continue
		}
		base := strings.TrimSuffix(t.Name, ".running_mean")
		v, g, b := byName[base+".running_var"], byName[base+".weight"], byName[base+".bias"]
		if v == nil || g == nil || b == nil {
			continue
		}
		si := -1
		for k := range n.Stages {
			if natLess(n.Stages[k].Name, base) {
				si = k
			}
		}
		if si < 0 || int64(n.Stages[si].Out) != t.Shape[0] {
			return nil, fmt.Errorf("cnn: batch norm %q does not follow a convolution of its width", base)
		}
		mean, _ := read(t)
		vr, _ := read(v)
		gm, _ := read(g)
		bt, _ := read(b)
		st := &n.Stages[si]
		st.Scale, st.Shift = make([]float32, st.Out), make([]float32, st.Out)
		for c := 0; c < st.Out; c++ {
			sc := gm[c] / float32(math.Sqrt(float64(vr[c])+1e-5))
			st.Scale[c], st.Shift[c] = sc, bt[c]-mean[c]*sc
		}
	}
	// the dense tail: every 2-D layer
	dense, err := mlp.BuildDense(m, mlp.Options{Activation: opt.Activation})
	if err != nil {
		return nil, err
	}
	n.Dense = dense
	return n, n.plan(opt)
}

// plan chooses padding and pooling per stage so that the flattened output of the last
// convolution is the first dense layer's width.
func (n *Network) plan(opt Options) error {
	C := n.Stages[0].In
	if len(opt.InputShape) == 3 {
		if opt.InputShape[0] != C {
			return fmt.Errorf("cnn: input has %d channels, the first convolution takes %d", opt.InputShape[0], C)
		}
	} else if len(opt.InputShape) != 0 {
		return fmt.Errorf("cnn: input shape %v: want C,H,W", opt.InputShape)
	}
	want := n.Dense.InputSize()
	last := n.Stages[len(n.Stages)-1].Out
	sizes := []int{}
	if len(opt.InputShape) == 3 {
		sizes = append(sizes, opt.InputShape[1])
	} else {
		for h := 4; h <= 256; h++ {
			sizes = append(sizes, h)
		}
	}
	type plan struct {
		h    int
		pads []int
		pool []int
	}
	var fits []plan
	S := len(n.Stages)
	for _, h0 := range sizes {
		w0 := h0
		if len(opt.InputShape) == 3 {
			w0 = opt.InputShape[2]
		}
		for mask := 0; mask < 1<<(2*S); mask++ {
			h, w := h0, w0
			pads, pools := make([]int, S), make([]int, S)
			ok := true
			for k, s := range n.Stages {
				same := mask>>(2*k)&1 == 1
				if same {
					pads[k] = s.KH / 2
				}
				if opt.Padding == "valid" && same || opt.Padding == "same" && !same {
					ok = false
					break
				}
				h, w = h+2*pads[k]-s.KH+1, w+2*pads[k]-s.KW+1
				pools[k] = 1
				if mask>>(2*k+1)&1 == 1 {
					pools[k] = 2
					h, w = h/2, w/2
				}
				if h <= 0 || w <= 0 {
					ok = false
					break
				}
			}
			if ok && last*h*w == want {
				fits = append(fits, plan{h0, pads, pools})
			}
		}
		if len(fits) > 0 && len(opt.InputShape) != 3 {
			break // the smallest input size that fits
		}
	}
	if len(fits) == 0 {
		return fmt.Errorf("cnn: no padding and pooling plan maps the input to the %d inputs of the dense layers", want)
	}
	if len(fits) > 1 {
		// nn.Sequential numbering: layers without weights (activation, pooling, dropout)
		// still take an index, so two or more of them between convolutions mean a pooling
		// layer is there, and none or one (the activation) mean it is not.
		hints := n.poolHints()
		var kept []plan
		for _, f := range fits {
			ok := true
			for k, h := range hints {
				if h != 0 && (h == 2) != (f.pool[k] == 2) {
					ok = false
				}
			}
			if ok {
				kept = append(kept, f)
			}
		}
		if len(kept) == 1 {
			fits = kept
			n.notes = append(n.notes, "pooling positions from the layer numbering (nn.Sequential indices)")
		}
	}
	if len(fits) > 1 {
		var alts []string
		for _, f := range fits {
			alts = append(alts, fmt.Sprintf("input %d, padding %v, pooling %v", f.h, f.pads, f.pool))
		}
		return fmt.Errorf("cnn: the weights fit %d plans (%s): give the input shape and padding", len(fits), strings.Join(alts, "; "))
	}
	f := fits[0]
	n.C, n.H, n.W = C, f.h, f.h
	if len(opt.InputShape) == 3 {
		n.W = opt.InputShape[2]
		n.notes = append(n.notes, "input shape given")
	} else {
		n.notes = append(n.notes, "input shape inferred (smallest square input that fits)")
	}
	h, w := n.H, n.W
	for k := range n.Stages {
		s := &n.Stages[k]
		s.Pad, s.Pool = f.pads[k], f.pool[k]
		s.inH, s.inW = h, w
		h, w = h+2*s.Pad-s.KH+1, w+2*s.Pad-s.KW+1
		if s.Pool == 2 {
			h, w = h/2, w/2
		}
		s.outH, s.outW = h, w
	}
	how := "default"
	if opt.Pool != "" {
		how = "given"
	}
	n.notes = append(n.notes, fmt.Sprintf("padding and pooling positions inferred from shapes; pooling kind %s (%s)", n.pool, how))
	return nil
}

// poolHints returns, per stage, 2 when the layer numbering shows a pooling layer after it,
// 1 when it shows none, and 0 when it cannot tell.
func (n *Network) poolHints() []int {
	split := func(name string) (string, int, bool) {
		i := strings.LastIndexByte(name, '.')
		if i < 0 {
			return "", 0, false
		}
		v, err := strconv.Atoi(name[i+1:])
		return name[:i], v, err == nil
	}
	hints := make([]int, len(n.Stages))
	for k := 0; k+1 < len(n.Stages); k++ {
		pa, ia, oka := split(n.Stages[k].Name)
		pb, ib, okb := split(n.Stages[k+1].Name)
		if !oka || !okb || pa != pb || ib <= ia {
			continue
		}
		free := ib - ia - 1
		if n.Stages[k].Scale != nil {
			free-- // the batch norm's index
		}
		if free >= 2 {
			hints[k] = 2
		} else {
			hints[k] = 1
		}
	}
	return hints
}

// Forward returns the logits of one flattened C·H·W input.
func (n *Network) Forward(x []float32) []float32 {
	if len(x) != n.InputSize() {
		panic(fmt.Sprintf("cnn: input of %d values, want %d", len(x), n.InputSize()))
	}
	cur := x
	for _, s := range n.Stages {
		cur = n.stage(&s, cur)
	}
	return n.Dense.Forward(cur)
}

func (n *Network) stage(s *Stage, x []float32) []float32 {
	ch, cw := s.inH+2*s.Pad-s.KH+1, s.inW+2*s.Pad-s.KW+1
	y := make([]float32, s.Out*ch*cw)
	for o := 0; o < s.Out; o++ {
		for i := 0; i < ch; i++ {
			for j := 0; j < cw; j++ {
				sum := s.B[o]
				for c := 0; c < s.In; c++ {
					for a := 0; a < s.KH; a++ {
						r := i + a - s.Pad
						if r < 0 || r >= s.inH {
							continue
						}
						for b := 0; b < s.KW; b++ {
							q := j + b - s.Pad
							if q < 0 || q >= s.inW {
								continue
							}
							sum += s.W[((o*s.In+c)*s.KH+a)*s.KW+b] * x[(c*s.inH+r)*s.inW+q]
						}
					}
				}
				if s.Scale != nil {
					sum = sum*s.Scale[o] + s.Shift[o]
				}
				y[(o*ch+i)*cw+j] = n.act(sum)
			}
		}
	}
	if s.Pool != 2 {
		return y
	}
	ph, pw := ch/2, cw/2
	p := make([]float32, s.Out*ph*pw)
	for o := 0; o < s.Out; o++ {
		for i := 0; i < ph; i++ {
			for j := 0; j < pw; j++ {
				a, b := y[(o*ch+2*i)*cw+2*j], y[(o*ch+2*i)*cw+2*j+1]
				c, d := y[(o*ch+2*i+1)*cw+2*j], y[(o*ch+2*i+1)*cw+2*j+1]
				if n.pool == "avg" {
					p[(o*ph+i)*pw+j] = (a + b + c + d) / 4
				} else {
					p[(o*ph+i)*pw+j] = max(a, b, c, d)
				}
			}
		}
	}
	return p
}

// natLess orders names with their numbers compared as numbers (conv2 < conv10).
func natLess(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := 0, 0
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
