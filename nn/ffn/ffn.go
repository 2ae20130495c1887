// Package ffn runs feed-forward classifiers whose wiring the tensors determine: chains of
// dense (Linear) layers and stacks of 2-D convolutions followed by dense layers, with
// BatchNorm folded in (eval mode) and one activation between layers.
//
// Layouts: PyTorch state dicts (`name.weight` [out, in] or [out, in, kh, kw], `name.bias`,
// BatchNorm `name.running_mean` / `name.running_var`) and Keras weights (`name/kernel:0`
// [in, out] or [kh, kw, in, out], `name/bias:0`, BatchNormalization `gamma`, `beta`,
// `moving_mean`, `moving_variance`). Convolutions come first, in the order of the numbers in
// their names, then the dense layers, which must form a chain (no branches); a BatchNorm
// (eval mode, folded into the layer's weights) belongs to the layer before it in its
// nn.Sequential, else to the layer with its number (bn2 → conv2), else to the layer before
// it by name, and is taken to come before the activation. Stride 1 and 2×2 pooling (floor)
// are assumed.
//
// Weights do not say everything. The input's width comes from the first layer, its channels
// from the first convolution, but its height and width, the padding of each convolution and
// where the pooling happens are fixed only when the shapes leave one possibility (the
// flattened output of the last convolution must equal the first dense layer's width); the
// indices of a PyTorch nn.Sequential (features.0, features.3, features.8, ...) tell where
// parameterless modules (activations, pooling) sit. The pooling kind and the activation never
// show. Build searches the plans that fit, takes what Options give and fails with ErrAmbiguous
// and the plans when more than one remains; Network.Describe says what was inferred, given
// or defaulted.
//
// Inputs are flattened C·H·W (channel-major, as PyTorch), also for Keras networks: their
// first dense layer is re-ordered at build time to take the channel-major flattening.
package ffn

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// Error categories; test them with errors.Is.
var (
	// ErrUnsupported: the tensors are not those of a feed-forward classifier this package runs.
	ErrUnsupported = errors.New("ffn: unsupported network")
	// ErrInvalid: shapes that contradict each other, zero or oversized dimensions.
	ErrInvalid = errors.New("ffn: invalid shapes")
	// ErrAmbiguous: more than one wiring fits the tensors; an option must decide.
	ErrAmbiguous = errors.New("ffn: ambiguous wiring")
)

// Limits that keep hostile shapes from causing huge allocations.
const (
	maxParams     = 1 << 28 // total weight elements (1 GiB as float32)
	maxActivation = 1 << 26 // elements of one layer's output, or of the input
	maxSide       = 4096    // input height or width
	searchSide    = 512     // largest square input tried when the input size is inferred
	torchBNEps    = 1e-5    // PyTorch BatchNorm eps (default)
	kerasBNEps    = 1e-3    // Keras BatchNormalization epsilon (default)
)

// Options give what the weights cannot tell. Zero values mean "infer, or use the default".
type Options struct {
	InputShape []int  // C, H, W for convolutional networks; the features (or any shape with that product) for dense chains
	Activation string // relu (default), tanh, sigmoid, gelu, leaky_relu, none
	Pool       string // max (default) or avg: the kind of the 2×2 pooling between convolutions
	Padding    string // "" (inferred), "valid" or "same": the padding of every convolution
	// Guess picks the most plausible plan when several fit the shapes, by a stated prior
	// (Plan.InputHow and Plan.Notes say so), instead of failing with ErrAmbiguous.
	Guess bool
}

// Activations lists the activation names Options.Activation accepts.
var Activations = []string{"relu", "tanh", "sigmoid", "gelu", "leaky_relu", "none"}

// Stimulus overrides one hidden value during ForwardTrace: neuron Neuron of hidden layer
// Layer (an index into Network.Layers, not the output layer) is set to Value after the
// activation (and pooling). For a convolution, Neuron is a channel, and every position of
// that channel's feature map is set.
type Stimulus struct {
	Layer, Neuron int
	Value         float32
}

// LayerInfo describes one layer of a built network.
type LayerInfo struct {
	Name      string // the tensor prefix (e.g. "conv1", "net.features.0", "dense/dense")
	Kind      string // "conv" or "dense"
	In, Out   int    // channels (conv) or features (dense)
	Units     int    // what a Stimulus.Neuron indexes: Out
	Size      int    // length of the layer's output (Out·H·W for a convolution)
	BatchNorm string // name of the folded BatchNorm, or ""
}

// Network is a built feed-forward classifier. It is immutable and safe for concurrent use.
type Network struct {
	layers []*layer
	inSize int
	maxAct int
	maxCol int // im2col buffer: largest ch·cw·in·kh·kw
	act    func(float32) float32
	plan   Plan
}

type kind int

const (
	convKind kind = iota
	denseKind
)

type layer struct {
	name  string
	kind  kind
	keras bool
	in    int
	out   int
	kh    int
	kw    int
	w     []float32 // dense [out, in]; conv [out, in, kh, kw]
	b     []float32 // [out]
	bn    string
	seq   string // nn.Sequential parent ("net.features."), or ""
	idx   int    // index in the Sequential (-1 when none)
	bnIdx int    // index of the folded BatchNorm in the Sequential (-1 when none)
	// plan (convolutions)
	pt, pl, pb, pr int // zero padding top, left, bottom, right
	pool           int // 1 (none) or 2
	ih, iw         int // input height and width
	ch, cw         int // convolution output height and width (before pooling)
	oh, ow         int // output height and width (after pooling)
	last           bool
}

func (l *layer) size() int {
	if l.kind == convKind {
		return l.out * l.oh * l.ow
	}
	return l.out
}

// InputSize is the length of the flattened input.
func (n *Network) InputSize() int { return n.inSize }

// InputShape is the input's shape: C, H, W for a convolutional network, the shape given
// in Options for a dense chain, or the number of features.
func (n *Network) InputShape() []int { return append([]int(nil), n.plan.Input...) }

// Geometry returns the input as channels × height × width: the network's shape for a
// convolutional network; for a dense chain, a square single-channel image when the input
// width is a square of at least 16 (flattened images such as MNIST's 784), else a row of
// features (1 × 1 × width).
func (n *Network) Geometry() (c, h, w int) {
	if s := n.plan.Input; len(s) == 3 {
		return s[0], s[1], s[2]
	}
	if q := int(math.Sqrt(float64(n.inSize))); q*q == n.inSize && q >= 4 {
		return 1, q, q
	}
	return 1, 1, n.inSize
}

// Classes is the number of outputs (logits).
func (n *Network) Classes() int { return n.layers[len(n.layers)-1].out }

// Layers describes the layers in order; all but the last are hidden layers for ForwardTrace.
func (n *Network) Layers() []LayerInfo {
	out := make([]LayerInfo, len(n.layers))
	for i, l := range n.layers {
		k := "dense"
		if l.kind == convKind {
			k = "conv"
		}
		out[i] = LayerInfo{Name: l.name, Kind: k, In: l.in, Out: l.out, Units: l.out, Size: l.size(), BatchNorm: l.bn}
	}
	return out
}

// Plan returns how the network was wired and which parts were inferred, given or defaulted.
func (n *Network) Plan() Plan {
	p := n.plan
	p.Input, p.Steps, p.Notes = slices.Clone(p.Input), slices.Clone(p.Steps), slices.Clone(p.Notes)
	return p
}

// Describe returns the layer plan, one line per step, with "(inferred)", "(given)" and
// "(default)" notes.
func (n *Network) Describe() string { return n.plan.Describe() }

// group collects the tensors sharing one prefix.
type group struct {
	prefix string
	keras  bool
	w, b   *formats.TensorInfo // weight / kernel / gamma, bias / beta
	mean   *formats.TensorInfo
	vr     *formats.TensorInfo
}

var (
	torchParams = map[string]string{".weight": "w", ".bias": "b", ".running_mean": "mean", ".running_var": "var", ".num_batches_tracked": ""}
	kerasParams = map[string]string{"/kernel": "w", "/bias": "b", "/gamma": "w", "/beta": "b", "/moving_mean": "mean", "/moving_variance": "var"}
)

// splitName splits a tensor name into its layer prefix and its role ("w", "b", "mean", "var",
// or "" for tensors to ignore); ok is false for names of neither layout.
func splitName(name string) (prefix, role string, keras, ok bool) {
	base := strings.TrimSuffix(name, ":0")
	if base != name || strings.Contains(name, "/") {
		for suf, r := range kerasParams {
			if strings.HasSuffix(base, suf) && len(base) > len(suf) {
				return base[:len(base)-len(suf)], r, true, true
			}
		}
	}
	for suf, r := range torchParams {
		if strings.HasSuffix(name, suf) && len(name) > len(suf) {
			return name[:len(name)-len(suf)], r, false, true
		}
	}
	return "", "", false, false
}

// natLess orders names with their digit runs compared as numbers (fc2 < fc10).
func natLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// seqIndex splits "net.features.8" into ("net.features.", 8); idx is -1 without a trailing index.
func seqIndex(prefix string) (string, int) {
	i := strings.LastIndexByte(prefix, '.')
	if i < 0 {
		return "", -1
	}
	v, err := strconv.Atoi(prefix[i+1:])
	if err != nil || v < 0 || v > 1<<20 {
		return "", -1
	}
	return prefix[:i+1], v
}

// dims returns a tensor's shape as ints after checking every dimension is positive and the
// element count is bounded.
func dims(t *formats.TensorInfo) ([]int, error) {
	out := make([]int, len(t.Shape))
	n := int64(1)
	for i, d := range t.Shape {
		if d <= 0 {
			return nil, fmt.Errorf("ffn: tensor %q: dimension %d is %d: %w", t.Name, i, d, ErrInvalid)
		}
		if d > maxParams || n > maxParams/d {
			return nil, fmt.Errorf("ffn: tensor %q: shape %v exceeds %d elements: %w", t.Name, t.Shape, maxParams, ErrInvalid)
		}
		n *= d
		out[i] = int(d)
	}
	return out, nil
}

func read(m *formats.Model, t *formats.TensorInfo) ([]float32, error) {
	if !t.DType.Float() || !t.DType.Decodable() {
		return nil, fmt.Errorf("ffn: tensor %q: %s is not a float type: %w", t.Name, t.DType, ErrUnsupported)
	}
	r, err := m.NewTensorReader(t)
	if err != nil {
		return nil, fmt.Errorf("ffn: %w", err)
	}
	v := make([]float32, t.Elements())
	if err := r.ReadElements(0, v); err != nil {
		return nil, fmt.Errorf("ffn: %w", err)
	}
	return v, nil
}

// vec reads a 1-D tensor of length n (nil tensor: nil, nil).
func vec(m *formats.Model, t *formats.TensorInfo, n int) ([]float32, error) {
	if t == nil {
		return nil, nil
	}
	d, err := dims(t)
	if err != nil {
		return nil, err
	}
	if len(d) != 1 || d[0] != n {
		return nil, fmt.Errorf("ffn: tensor %q has shape %v, want [%d]: %w", t.Name, t.Shape, n, ErrInvalid)
	}
	return read(m, t)
}

// Build reads the classifier in m and wires it, using opt for what the tensors do not fix.
func Build(m *formats.Model, opt Options) (*Network, error) {
	actName := opt.Activation
	if actName == "" {
		actName = "relu"
	}
	act, ok := activation(actName)
	if !ok {
		return nil, fmt.Errorf("ffn: unknown activation %q (want one of %s): %w", opt.Activation, strings.Join(Activations, ", "), ErrUnsupported)
	}
	poolKind := opt.Pool
	if poolKind == "" {
		poolKind = "max"
	}
	if poolKind != "max" && poolKind != "avg" {
		return nil, fmt.Errorf("ffn: unknown pooling %q (want max or avg): %w", opt.Pool, ErrUnsupported)
	}
	if opt.Padding != "" && opt.Padding != "same" && opt.Padding != "valid" {
		return nil, fmt.Errorf("ffn: unknown padding %q (want same or valid): %w", opt.Padding, ErrUnsupported)
	}

	groups, err := collect(m)
	if err != nil {
		return nil, err
	}
	layers, err := load(m, groups)
	if err != nil {
		return nil, err
	}
	n := &Network{layers: layers, act: act}
	n.plan = Plan{
		Activation: actName, ActivationHow: how(opt.Activation != ""),
		Pool: poolKind, PoolHow: how(opt.Pool != ""),
		Padding: opt.Padding,
	}
	if err := n.wire(opt); err != nil {
		return nil, err
	}
	return n, nil
}

func how(given bool) string {
	if given {
		return "given"
	}
	return "default, not readable from weights"
}

// collect groups the model's tensors by layer prefix, in natural name order.
func collect(m *formats.Model) ([]*group, error) {
	if len(m.Tensors) == 0 {
		return nil, fmt.Errorf("ffn: the model has no tensors: %w", ErrUnsupported)
	}
	byPrefix := map[string]*group{}
	var order []*group
	for i := range m.Tensors {
		t := &m.Tensors[i]
		prefix, role, keras, ok := splitName(t.Name)
		if !ok {
			return nil, fmt.Errorf("ffn: tensor %q is neither a PyTorch nor a Keras layer parameter: %w", t.Name, ErrUnsupported)
		}
		if role == "" {
			continue
		}
		g := byPrefix[prefix]
		if g == nil {
			g = &group{prefix: prefix, keras: keras}
			byPrefix[prefix] = g
			order = append(order, g)
		}
		if g.keras != keras {
			return nil, fmt.Errorf("ffn: layer %q mixes PyTorch and Keras names: %w", prefix, ErrUnsupported)
		}
		slot := map[string]**formats.TensorInfo{"w": &g.w, "b": &g.b, "mean": &g.mean, "var": &g.vr}[role]
		if *slot != nil {
			return nil, fmt.Errorf("ffn: layer %q has two %s tensors (%q, %q): %w", prefix, role, (*slot).Name, t.Name, ErrUnsupported)
		}
		*slot = t
	}
	sort.SliceStable(order, func(i, j int) bool { return natLess(order[i].prefix, order[j].prefix) })
	return order, nil
}

// load reads the weights of every group into layers (convolutions first, then dense layers),
// folding BatchNorms into the layer before them.
func load(m *formats.Model, groups []*group) ([]*layer, error) {
	var convs, dense, all []*layer
	var prev *layer
	type bnAt struct {
		g    *group
		prev *layer
	}
	var bns []bnAt
	total := 0
	for _, g := range groups {
		if g.mean != nil || g.vr != nil {
			bns = append(bns, bnAt{g, prev})
			continue
		}
		if g.w == nil {
			return nil, fmt.Errorf("ffn: layer %q has a bias but no weight: %w", g.prefix, ErrUnsupported)
		}
		d, err := dims(g.w)
		if err != nil {
			return nil, err
		}
		l := &layer{name: g.prefix, keras: g.keras, idx: -1, bnIdx: -1}
		l.seq, l.idx = seqIndex(g.prefix)
		switch {
		case len(d) == 2 && g.keras:
			l.kind, l.in, l.out = denseKind, d[0], d[1]
		case len(d) == 2:
			l.kind, l.out, l.in = denseKind, d[0], d[1]
		case len(d) == 4 && g.keras:
			l.kind, l.kh, l.kw, l.in, l.out = convKind, d[0], d[1], d[2], d[3]
		case len(d) == 4:
			l.kind, l.out, l.in, l.kh, l.kw = convKind, d[0], d[1], d[2], d[3]
		case len(d) == 1:
			return nil, fmt.Errorf("ffn: layer %q has a 1-D weight without running statistics (a LayerNorm or a per-channel scale?): %w", g.prefix, ErrUnsupported)
		default:
			return nil, fmt.Errorf("ffn: layer %q has a %d-D weight %v (only dense and 2-D convolution layers run): %w", g.prefix, len(d), g.w.Shape, ErrUnsupported)
		}
		total += int(g.w.Elements())
		if total > maxParams {
			return nil, fmt.Errorf("ffn: more than %d weights: %w", maxParams, ErrInvalid)
		}
		w, err := read(m, g.w)
		if err != nil {
			return nil, err
		}
		if g.keras { // to [out, in] / [out, in, kh, kw]
			w = kerasToTorch(w, l)
		}
		l.w = w
		if l.b, err = vec(m, g.b, l.out); err != nil {
			return nil, err
		}
		if l.b == nil {
			l.b = make([]float32, l.out)
		}
		if l.kind == convKind {
			convs = append(convs, l)
		} else {
			dense = append(dense, l)
		}
		prev = l
		all = append(all, l)
	}
	for _, bn := range bns {
		l, err := bnTarget(bn.g, bn.prev, all)
		if err != nil {
			return nil, err
		}
		if err := foldBN(m, bn.g, l); err != nil {
			return nil, err
		}
	}
	if len(dense) == 0 {
		return nil, fmt.Errorf("ffn: no dense layer (a classifier ends in one): %w", ErrUnsupported)
	}
	return append(convs, dense...), nil
}

// bnTarget finds the layer a BatchNorm follows: the layer just before it in its
// nn.Sequential ("features.3" for "features.4"); else the one layer with the same number
// after the same stem-less prefix ("conv2" for "bn2", "layer1.conv_2" for "layer1.bn_2");
// with as many channels; else the layer just before it in name order.
func bnTarget(g *group, prev *layer, all []*layer) (*layer, error) {
	if g.mean == nil || g.vr == nil {
		return nil, fmt.Errorf("ffn: batch norm %q lacks its running mean or variance: %w", g.prefix, ErrUnsupported)
	}
	if s, i := seqIndex(g.prefix); i >= 0 {
		var best *layer
		for _, l := range all {
			if l.seq == s && l.idx >= 0 && l.idx < i && (best == nil || l.idx > best.idx) {
				best = l
			}
		}
		if best != nil {
			if i-best.idx != 1 {
				return nil, fmt.Errorf("ffn: batch norm %q is %d modules after %q (after its activation?), which cannot be folded: %w", g.prefix, i-best.idx, best.name, ErrUnsupported)
			}
			return best, nil
		}
	}
	if k := numKey(g.prefix); k != "" {
		var found []*layer
		for _, l := range all {
			if numKey(l.name) == k && len(g.mean.Shape) == 1 && int64(l.out) == g.mean.Shape[0] {
				found = append(found, l)
			}
		}
		if len(found) == 1 {
			return found[0], nil
		}
	}
	if prev == nil {
		return nil, fmt.Errorf("ffn: batch norm %q has no layer before it by name (Keras names layers by type, which hides the order): %w", g.prefix, ErrUnsupported)
	}
	return prev, nil
}

// numKey drops the run of letters before a prefix's trailing number: "layer1.bn2" and
// "layer1.conv2" give "layer1.2". It is "" when the prefix does not end in a number.
func numKey(prefix string) string {
	i := len(prefix)
	for i > 0 && prefix[i-1] >= '0' && prefix[i-1] <= '9' {
		i--
	}
	if i == len(prefix) || i == 0 {
		return ""
	}
	j := i
	for j > 0 && (prefix[j-1] == '_' || (prefix[j-1]|0x20 >= 'a' && prefix[j-1]|0x20 <= 'z')) {
		j--
	}
	if j == i {
		return ""
	}
	return prefix[:j] + prefix[i:]
}

func kerasToTorch(w []float32, l *layer) []float32 {
	out := make([]float32, len(w))
	if l.kind == denseKind {
		for i := 0; i < l.in; i++ {
			for o := 0; o < l.out; o++ {
				out[o*l.in+i] = w[i*l.out+o]
			}
		}
		return out
	}
	for y := 0; y < l.kh; y++ {
		for x := 0; x < l.kw; x++ {
			for i := 0; i < l.in; i++ {
				for o := 0; o < l.out; o++ {
					out[((o*l.in+i)*l.kh+y)*l.kw+x] = w[((y*l.kw+x)*l.in+i)*l.out+o]
				}
			}
		}
	}
	return out
}

// foldBN folds an eval-mode BatchNorm into the layer before it:
// y = γ·(Wx + b − μ)/√(σ² + ε) + β.
func foldBN(m *formats.Model, g *group, prev *layer) error {
	if g.mean == nil || g.vr == nil {
		return fmt.Errorf("ffn: batch norm %q lacks its running mean or variance: %w", g.prefix, ErrUnsupported)
	}
	if prev == nil {
		return fmt.Errorf("ffn: batch norm %q has no layer before it: %w", g.prefix, ErrUnsupported)
	}
	if prev.bn != "" {
		return fmt.Errorf("ffn: batch norms %q and %q both follow layer %q: %w", prev.bn, g.prefix, prev.name, ErrUnsupported)
	}
	if prev.keras != g.keras {
		return fmt.Errorf("ffn: batch norm %q and layer %q mix layouts: %w", g.prefix, prev.name, ErrUnsupported)
	}
	n := prev.out
	mean, err := vec(m, g.mean, n)
	if err != nil {
		return fmt.Errorf("ffn: batch norm %q after %q (%d channels): %w", g.prefix, prev.name, n, err)
	}
	vr, err := vec(m, g.vr, n)
	if err != nil {
		return err
	}
	gamma, err := vec(m, g.w, n)
	if err != nil {
		return err
	}
	beta, err := vec(m, g.b, n)
	if err != nil {
		return err
	}
	eps := torchBNEps
	if g.keras {
		eps = kerasBNEps
	}
	per := len(prev.w) / n
	for o := 0; o < n; o++ {
		s := 1 / math.Sqrt(float64(vr[o])+eps)
		if gamma != nil {
			s *= float64(gamma[o])
		}
		sh := -float64(mean[o]) * s
		if beta != nil {
			sh += float64(beta[o])
		}
		row := prev.w[o*per : (o+1)*per]
		for i := range row {
			row[i] = float32(float64(row[i]) * s)
		}
		prev.b[o] = float32(float64(prev.b[o])*s + sh)
	}
	prev.bn = g.prefix
	if s, i := seqIndex(g.prefix); s == prev.seq && i >= 0 {
		prev.bnIdx = i
	}
	return nil
}

func activation(name string) (func(float32) float32, bool) {
	switch name {
	case "relu":
		return func(x float32) float32 { return max(x, 0) }, true
	case "tanh":
		return func(x float32) float32 { return float32(math.Tanh(float64(x))) }, true
	case "sigmoid":
		return func(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }, true
	case "gelu":
		return func(x float32) float32 {
			return float32(0.5 * float64(x) * (1 + math.Erf(float64(x)/math.Sqrt2)))
		}, true
	case "leaky_relu":
		return func(x float32) float32 {
			if x < 0 {
				return 0.01 * x
			}
			return x
		}, true
	case "none":
		return nil, true
	}
	return nil, false
}
