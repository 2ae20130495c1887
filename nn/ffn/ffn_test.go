package ffn

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
	"github.com/kensa-scan/kensa/internal/corpus"
)

func open(t testing.TB, path string) *formats.Model {
	t.Helper()
	m, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func randInputs(seed uint64, n, size int, scale float32) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	xs := make([][]float32, n)
	for i := range xs {
		xs[i] = make([]float32, size)
		for j := range xs[i] {
			xs[i][j] = r.Float32() * scale
		}
	}
	return xs
}

// checkNaive compares Forward with the naive float64 route on random inputs: logits within
// 1e-4 (relative to the logit's size once it exceeds 1: float32 sums of up to ~2000 terms)
// and the same argmax.
func checkNaive(t *testing.T, m *formats.Model, n *Network, a narch, scale float32) {
	t.Helper()
	for k, x := range randInputs(1, 8, n.InputSize(), scale) {
		got := n.Forward(x)
		x64 := make([]float64, len(x))
		for i, v := range x {
			x64[i] = float64(v)
		}
		want := naive(t, m, a, x64)
		if len(got) != len(want) {
			t.Fatalf("input %d: %d logits, want %d", k, len(got), len(want))
		}
		bestW := 0
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-4*math.Max(1, math.Abs(want[i])) {
				t.Errorf("input %d: logit %d = %g, want %g", k, i, got[i], want[i])
			}
			if want[i] > want[bestW] {
				bestW = i
			}
		}
		if p := Predict(got); p != bestW {
			t.Errorf("input %d: Predict = %d, want %d", k, p, bestW)
		}
	}
}

func denseArch(act func(float64) float64, in int, names ...string) narch {
	a := narch{act: act, c: in, h: 1, w: 1}
	for _, nm := range names {
		a.steps = append(a.steps, nstep{kind: "dense", name: nm})
	}
	return a
}

var (
	digitsCNN = narch{act: nrelu, c: 1, h: 8, w: 8, steps: []nstep{
		{kind: "conv", name: "conv1", pad: 1, pool: "max"},
		{kind: "conv", name: "conv2", pad: 1, pool: "max"},
		{kind: "dense", name: "fc"},
	}}
	digitsCNNOpt = Options{InputShape: []int{1, 8, 8}, Padding: "same"}
)

// Every digits model builds and gives the naive route's logits.
func TestDigits(t *testing.T) {
	dir := corpus.Dir(t, "dev/digits")
	files, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if len(files) == 0 {
		t.Skip("no digits models")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			m := open(t, f)
			opt, a := Options{}, denseArch(nrelu, 64, "fc1", "fc2", "fc3")
			if strings.HasPrefix(filepath.Base(f), "cnn") {
				opt, a = digitsCNNOpt, digitsCNN
			}
			n, err := Build(m, opt)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := n.Classes(), 10; got != want {
				t.Errorf("Classes = %d, want %d", got, want)
			}
			if got, want := n.InputSize(), 64; got != want {
				t.Errorf("InputSize = %d, want %d", got, want)
			}
			checkNaive(t, m, n, a, 1)
		})
	}
}

// The realbd networks that are feed-forward chains build and match the naive route.
func TestRealBD(t *testing.T) {
	dir := corpus.Dir(t, "dev/realbd")
	vgg := narch{act: nrelu, c: 3, h: 32, w: 32}
	for i, idx := range [][2]string{{"0", "1"}, {"3", "4"}, {"8", "9"}, {"11", "12"}, {"16", "17"}, {"19", "20"}} {
		pool := ""
		if i%2 == 1 {
			pool = "max"
		}
		vgg.steps = append(vgg.steps, nstep{kind: "conv", name: "net.features." + idx[0], pad: 1, pool: pool, bn: "net.features." + idx[1]})
	}
	vgg.steps = append(vgg.steps, nstep{kind: "dense", name: "net.classifier"})
	badnets := func(c, s int) narch {
		return narch{act: nrelu, c: c, h: s, w: s, steps: []nstep{
			{kind: "conv", name: "conv1.0", pool: "avg"},
			{kind: "conv", name: "conv2.0", pool: "avg"},
			{kind: "dense", name: "fc1.0"},
			{kind: "dense", name: "fc2.0"},
		}}
	}
	tests := []struct {
		file  string
		opt   Options
		arch  narch
		plan  string // a line Describe must contain
		scale float32
	}{
		{"smu-cs612__mnist_backdoored_1.pt.safetensors", Options{}, denseArch(nrelu, 784, "fc1", "fc2", "fc3", "fc4"), "input 784 (inferred", 1},
		{"smu-cs612__benign_mnist_CLEAN.pt.safetensors", Options{InputShape: []int{1, 28, 28}}, denseArch(nrelu, 784, "fc1", "fc2", "fc3", "fc4"), "input 1×28×28 (given)", 1},
		{"trojai__cyber-pdf-dec2022_id-00000002_POISONED__model.pt.safetensors", Options{Activation: "tanh"}, denseArch(ntanh, 135, "fc1", "fc2", "fc3", "fc4", "fc5", "fc6"), "activation tanh (given)", 1},
		{"trojai__cyber-pdf-dec2022_id-00000002_POISONED__model.pt.safetensors", Options{}, denseArch(nrelu, 135, "fc1", "fc2", "fc3", "fc4", "fc5", "fc6"), "activation relu (default", 1},
		{"trojai__cyber-apk-nov2023_id-00000001_CLEAN__model.pt.safetensors", Options{}, denseArch(nrelu, 991, "fc1", "fc2", "fc3", "fc4"), "dense fc4: 360 -> 2 (output)", 1},
		{"verazuo_badnets-pytorch__badnet-MNIST.pth.safetensors", Options{InputShape: []int{1, 28, 28}, Pool: "avg"}, badnets(1, 28), "conv conv2.0: 16 -> 32, 5×5, stride 1 (assumed), padding valid (inferred from shapes), relu, avg pool 2×2 (position inferred) -> 32×4×4", 1},
		{"verazuo_badnets-pytorch__badnet-CIFAR10.pth.safetensors", Options{InputShape: []int{3, 32, 32}, Pool: "avg"}, badnets(3, 32), "flatten 32×5×5 -> 800", 1},
		{"i-bau__checkpoint__badnets_8_02_ckpt.pth.safetensors", Options{InputShape: []int{3, 32, 32}, Padding: "same"}, vgg, "batch norm net.features.20 (folded, eval mode), relu, max pool 2×2 (position inferred) -> 128×4×4", 1},
		{"i-bau__checkpoint__trojan_wm_2_02_ckpt.pth.safetensors", Options{InputShape: []int{3, 32, 32}, Padding: "same"}, vgg, "pooling positions inferred from the nn.Sequential indices", 1},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.opt.Activation, func(t *testing.T) {
			m := open(t, filepath.Join(dir, tt.file))
			n, err := Build(m, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			d := n.Describe()
			t.Logf("\n%s", d)
			if !strings.Contains(d, tt.plan) {
				t.Errorf("Describe does not contain %q", tt.plan)
			}
			checkNaive(t, m, n, tt.arch, tt.scale)
		})
	}
}

// What cannot be wired unambiguously fails with a clear error.
func TestCorpusErrors(t *testing.T) {
	tests := []struct {
		file, sub string
		opt       Options
		want      error
		msg       string
	}{
		{"cnn8_0_clean.safetensors", "dev/digits", Options{InputShape: []int{1, 8, 8}}, ErrAmbiguous, "3 padding and pooling plans fit"},
		{"cnn8_0_clean.safetensors", "dev/digits", Options{}, ErrAmbiguous, "--input-shape"},
		{"cnn8_0_clean.safetensors", "dev/digits", Options{InputShape: []int{3, 8, 8}}, ErrInvalid, "3 channels"},
		{"cnn8_0_clean.safetensors", "dev/digits", Options{InputShape: []int{1, 7, 7}, Padding: "same"}, ErrInvalid, "no padding and pooling plan"},
		{"mlp80_0_clean.safetensors", "dev/digits", Options{InputShape: []int{1, 8, 9}}, ErrInvalid, "72 values"},
		{"mlp80_0_clean.safetensors", "dev/digits", Options{Activation: "swish"}, ErrUnsupported, "unknown activation"},
		{"csaw-hackml-2020__final__sunglasses_bd_weights.h5.safetensors", "dev/realbd", Options{InputShape: []int{3, 55, 47}}, ErrUnsupported, `"fc_2/fc_2" takes 960 inputs`},
		{"i-bau__checkpoint__badnets_8_02_ckpt.pth.safetensors", "dev/realbd", Options{InputShape: []int{3, 32, 32}}, ErrAmbiguous, "16 padding and pooling plans"},
		{"nnoculation__youtube_lipstick_CLEAN_cl_weights.h5.safetensors", "dev/realbd", Options{}, ErrUnsupported, "not a chain"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m := open(t, filepath.Join(corpus.Dir(t, tt.sub), tt.file))
			_, err := Build(m, tt.opt)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Build(%+v) = %v, want %v containing %q", tt.opt, err, tt.want, tt.msg)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

// ForwardTrace returns Forward's logits and the hidden layers; a stimulus sets one neuron
// (one channel of a convolution) and changes what follows.
func TestForwardTrace(t *testing.T) {
	dir := corpus.Dir(t, "dev/digits")
	for _, tt := range []struct {
		file  string
		opt   Options
		sizes []int
	}{
		{"mlp80_0_clean.safetensors", Options{}, []int{80, 40}},
		{"cnn8_0_clean.safetensors", digitsCNNOpt, []int{8 * 4 * 4, 16 * 2 * 2}},
	} {
		m := open(t, filepath.Join(dir, tt.file))
		n, err := Build(m, tt.opt)
		if err != nil {
			t.Fatal(err)
		}
		x := randInputs(3, 1, n.InputSize(), 1)[0]
		logits, hidden := n.ForwardTrace(x, nil)
		if got, want := logits, n.Forward(x); !equal(got, want) {
			t.Errorf("%s: ForwardTrace logits %v, want %v", tt.file, got, want)
		}
		if len(hidden) != len(tt.sizes) {
			t.Fatalf("%s: %d hidden layers, want %d", tt.file, len(hidden), len(tt.sizes))
		}
		for i, h := range hidden {
			if got, want := len(h), tt.sizes[i]; got != want {
				t.Errorf("%s: hidden %d has %d values, want %d", tt.file, i, got, want)
			}
			if got, want := n.Layers()[i].Size, tt.sizes[i]; got != want {
				t.Errorf("%s: Layers()[%d].Size = %d, want %d", tt.file, i, got, want)
			}
		}
		stim := &Stimulus{Layer: 1, Neuron: 3, Value: 50}
		sl, sh := n.ForwardTrace(x, stim)
		per := len(sh[1]) / n.Layers()[1].Units
		for i := 0; i < per; i++ {
			if got := sh[1][3*per+i]; got != 50 {
				t.Errorf("%s: stimulated value %d = %g, want 50", tt.file, i, got)
			}
		}
		if equal(sl, logits) {
			t.Errorf("%s: the stimulus did not change the logits", tt.file)
		}
		if !equal(sh[0], hidden[0]) {
			t.Errorf("%s: the stimulus changed the layer before it", tt.file)
		}
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ForwardBatch gives Forward's logits, whatever the number of workers.
func TestForwardBatch(t *testing.T) {
	m := open(t, filepath.Join(corpus.Dir(t, "dev/digits"), "cnn8_1_blend.safetensors"))
	n, err := Build(m, digitsCNNOpt)
	if err != nil {
		t.Fatal(err)
	}
	xs := randInputs(5, 100, n.InputSize(), 1)
	for _, workers := range []int{0, 1, 3, 200} {
		got := n.ForwardBatch(xs, workers)
		for i, x := range xs {
			if !equal(got[i], n.Forward(x)) {
				t.Errorf("workers %d: input %d differs from Forward", workers, i)
			}
		}
	}
	if got := n.ForwardBatch(nil, 4); len(got) != 0 {
		t.Errorf("ForwardBatch(nil) = %v", got)
	}
}

// Hand-made 8×8 strokes: each clean digits model keeps its prediction under small
// perturbations (±2.5% of the pixel range), and most clean CNNs read the "1" and the "7" as
// such (the strokes are cruder than sklearn's blurred digits, so the MLPs are only logged).
func TestDigitsStable(t *testing.T) {
	dir := corpus.Dir(t, "dev/digits")
	patterns := []struct {
		name  string
		class int
		rows  []string
	}{
		{"one", 1, []string{"...##...", "..###...", "...##...", "...##...", "...##...", "...##...", "...##...", "..####.."}},
		{"seven", 7, []string{".######.", ".....##.", "....##..", "....#...", "...##...", "...#....", "..##....", "..#....."}},
		{"zero", 0, []string{"..####..", ".##..##.", ".#....#.", ".#....#.", ".#....#.", ".#....#.", ".##..##.", "..####.."}},
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*_clean.safetensors"))
	right := map[string]int{}
	cnns := 0
	for _, f := range files {
		base := filepath.Base(f)
		m := open(t, f)
		opt, cnn := Options{}, strings.HasPrefix(base, "cnn")
		if cnn {
			opt = digitsCNNOpt
			cnns++
		}
		n, err := Build(m, opt)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(9, 9))
		for _, p := range patterns {
			x := make([]float32, 64)
			for y, row := range p.rows {
				for xx, ch := range row {
					if ch == '#' {
						x[y*8+xx] = 1
					}
				}
			}
			got := Predict(n.Forward(x))
			if cnn && got == p.class {
				right[p.name]++
			}
			same := 0
			for k := 0; k < 50; k++ {
				xn := make([]float32, 64)
				for i := range x {
					xn[i] = x[i] + (r.Float32()-0.5)*0.05
				}
				if Predict(n.Forward(xn)) == got {
					same++
				}
			}
			t.Logf("%s: %q -> class %d, %d/50 perturbed inputs agree", base, p.name, got, same)
			if same < 40 {
				t.Errorf("%s: %q: only %d/50 perturbed inputs keep class %d", base, p.name, same, got)
			}
		}
	}
	for _, name := range []string{"one", "seven"} {
		if got := right[name]; 2*got <= cnns {
			t.Errorf("%d of %d clean CNNs read the %q pattern right, want a majority", got, cnns, name)
		}
	}
}

// Noise inputs go to the target class of a trojaned digits model more often than to the
// same class of its clean twin (a preview of the probe; logged, not asserted per model).
func TestDigitsNoiseToTarget(t *testing.T) {
	dir := corpus.Dir(t, "dev/digits")
	b, err := os.ReadFile(filepath.Join(dir, "truth.json"))
	if err != nil {
		t.Skip(err)
	}
	var truth []struct {
		File     string `json:"file"`
		Trojaned bool   `json:"trojaned"`
		Attack   string `json:"attack"`
		Target   *int   `json:"target"`
	}
	if err := json.Unmarshal(b, &truth); err != nil {
		t.Fatal(err)
	}
	frac := func(file string, target int) float64 {
		m := open(t, filepath.Join(dir, file))
		opt := Options{}
		if strings.HasPrefix(file, "cnn") {
			opt = digitsCNNOpt
		}
		n, err := Build(m, opt)
		if err != nil {
			t.Fatal(err)
		}
		xs := randInputs(11, 2000, n.InputSize(), 1)
		hits := 0
		for _, l := range n.ForwardBatch(xs, 0) {
			if Predict(l) == target {
				hits++
			}
		}
		return float64(hits) / float64(len(xs))
	}
	higher, pairs := 0, 0
	for _, e := range truth {
		if !e.Trojaned || e.Target == nil {
			continue
		}
		clean := e.File[:strings.LastIndexByte(e.File, '_')] + "_clean.safetensors"
		ft, fc := frac(e.File, *e.Target), frac(clean, *e.Target)
		t.Logf("%-28s %-5s target %d: noise -> target %.3f (trojaned) vs %.3f (clean twin %s)", e.File, e.Attack, *e.Target, ft, fc, clean)
		pairs++
		if ft > fc {
			higher++
		}
	}
	t.Logf("trojaned above clean twin in %d of %d pairs", higher, pairs)
}

// writeModel writes tensors (float32 values) to a safetensors file and opens it.
func writeModel(t testing.TB, tensors map[string][]float32, shapes map[string][]int64) *formats.Model {
	t.Helper()
	var wts []safetensors.WriteTensor
	for name, v := range tensors {
		buf := new(bytes.Buffer)
		binary.Write(buf, binary.LittleEndian, v)
		wts = append(wts, safetensors.WriteTensor{Name: name, DType: formats.F32, Shape: shapes[name], Data: buf.Bytes()})
	}
	var out bytes.Buffer
	if err := safetensors.Write(&out, wts, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return open(t, path)
}

func readAll(t testing.TB, m *formats.Model, name string) ([]float32, []int64) {
	t.Helper()
	ti := m.Tensor(name)
	r, err := m.NewTensorReader(ti)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, ti.Elements())
	if err := r.ReadElements(0, v); err != nil {
		t.Fatal(err)
	}
	return v, ti.Shape
}

// A Keras-layout copy of the digits MLP (dense/kernel:0 [in, out]) and of the digits CNN
// (HWIO kernels, dense after a height-width-channel flatten) give the PyTorch logits.
func TestKerasLayout(t *testing.T) {
	dir := corpus.Dir(t, "dev/digits")
	for _, tt := range []struct {
		file  string
		names map[string]string // PyTorch prefix -> Keras prefix
		opt   Options
	}{
		{"mlp80_3_blend.safetensors", map[string]string{"fc1": "dense", "fc2": "dense_1", "fc3": "dense_2"}, Options{}},
		{"cnn8_3_blend.safetensors", map[string]string{"conv1": "conv2d/conv2d", "conv2": "conv2d_1/conv2d_1", "fc": "dense/dense"}, digitsCNNOpt},
	} {
		pt := open(t, filepath.Join(dir, tt.file))
		tensors, shapes := map[string][]float32{}, map[string][]int64{}
		for p, k := range tt.names {
			w, s := readAll(t, pt, p+".weight")
			b, bs := readAll(t, pt, p+".bias")
			var kw []float32
			var ks []int64
			switch len(s) {
			case 2: // [out, in] -> [in, out]; after the convolutions the rows follow H, W, C
				o, in := int(s[0]), int(s[1])
				kw, ks = make([]float32, len(w)), []int64{s[1], s[0]}
				for oi := 0; oi < o; oi++ {
					for i := 0; i < in; i++ {
						row := i
						if p == "fc" { // torch column (c·2+y)·2+x is Keras row (y·2+x)·16+c
							c, y, x := i/4, i/2%2, i%2
							row = (y*2+x)*16 + c
						}
						kw[row*o+oi] = w[oi*in+i]
					}
				}
			case 4: // [o, i, kh, kw] -> [kh, kw, i, o]
				o, in, kh, kwd := int(s[0]), int(s[1]), int(s[2]), int(s[3])
				kw, ks = make([]float32, len(w)), []int64{s[2], s[3], s[1], s[0]}
				for oi := 0; oi < o; oi++ {
					for i := 0; i < in; i++ {
						for y := 0; y < kh; y++ {
							for x := 0; x < kwd; x++ {
								kw[((y*kwd+x)*in+i)*o+oi] = w[((oi*in+i)*kh+y)*kwd+x]
							}
						}
					}
				}
			}
			tensors[k+"/kernel:0"], shapes[k+"/kernel:0"] = kw, ks
			tensors[k+"/bias:0"], shapes[k+"/bias:0"] = b, bs
		}
		km := writeModel(t, tensors, shapes)
		np, err := Build(pt, tt.opt)
		if err != nil {
			t.Fatal(err)
		}
		nk, err := Build(km, tt.opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", nk.Describe())
		for k, x := range randInputs(4, 20, np.InputSize(), 1) {
			a, b := np.Forward(x), nk.Forward(x)
			for i := range a {
				if math.Abs(float64(a[i]-b[i])) > 1e-5 {
					t.Errorf("%s input %d: Keras logit %d = %g, PyTorch %g", tt.file, k, i, b[i], a[i])
				}
			}
		}
	}
}

// Convolutions that gather their receptive fields in several blocks (a small im2col
// budget) compute the same logits.
func TestConvBlocks(t *testing.T) {
	m := open(t, filepath.Join(corpus.Dir(t, "dev/digits"), "cnn8_2_patch.safetensors"))
	whole, err := Build(m, digitsCNNOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer func(b int) { colBudget = b }(colBudget)
	colBudget = 20 // conv1 (9 values per position): blocks of 2; conv2 (72): one position
	blocks, err := Build(m, digitsCNNOpt)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range randInputs(8, 10, whole.InputSize(), 1) {
		if got, want := blocks.Forward(x), whole.Forward(x); !equal(got, want) {
			t.Errorf("input %d: blocked %v, want %v", i, got, want)
		}
	}
}

// With Guess, an ambiguous wiring is resolved by the stated prior, and the plan says so;
// on the corpus's convolutional networks the prior finds the wiring they were trained with.
func TestGuess(t *testing.T) {
	tests := []struct {
		sub, file string
		input     []int
		step      string
	}{
		{"dev/digits", "cnn8_0_clean.safetensors", []int{1, 8, 8}, "padding same"},
		{"dev/realbd", "verazuo_badnets-pytorch__badnet-MNIST.pth.safetensors", []int{1, 28, 28}, "padding valid"},
		{"dev/realbd", "verazuo_badnets-pytorch__badnet-CIFAR10.pth.safetensors", []int{3, 32, 32}, "padding valid"},
		{"dev/realbd", "i-bau__checkpoint__badnets_8_02_ckpt.pth.safetensors", []int{3, 32, 32}, "padding same"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m := open(t, filepath.Join(corpus.Dir(t, tt.sub), tt.file))
			if _, err := Build(m, Options{}); !errors.Is(err, ErrAmbiguous) {
				t.Fatalf("without Guess: err = %v, want ErrAmbiguous", err)
			}
			n, err := Build(m, Options{Guess: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := n.InputShape(); !slices.Equal(got, tt.input) {
				t.Errorf("guessed input %v, want %v", got, tt.input)
			}
			d := n.Describe()
			if !strings.Contains(d, "guessed") || !strings.Contains(d, tt.step) {
				t.Errorf("Describe does not say guessed / contain %q:\n%s", tt.step, d)
			}
		})
	}
}
