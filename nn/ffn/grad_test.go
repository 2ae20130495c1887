package ffn

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"
)

// gradCases are corpus networks covering dense chains (relu, tanh), convolutions with valid
// and same padding, max and average pooling, and folded batch norm.
var gradCases = []struct {
	sub, file string
	opt       Options
}{
	{"dev/digits", "mlp80_0_patch.safetensors", Options{}},
	{"dev/digits", "cnn8_0_patch.safetensors", digitsCNNOpt},
	{"dev/realbd", "trojai__cyber-pdf-dec2022_id-00000002_POISONED__model.pt.safetensors", Options{Activation: "tanh"}},
	{"dev/realbd", "verazuo_badnets-pytorch__badnet-MNIST.pth.safetensors", Options{InputShape: []int{1, 28, 28}, Pool: "avg"}},
	{"dev/realbd", "i-bau__checkpoint__badnets_8_02_ckpt.pth.safetensors", Options{InputShape: []int{3, 32, 32}, Padding: "same"}},
}

// Gradient agrees with central differences of Forward along random directions.
func TestGradient(t *testing.T) {
	for _, tc := range gradCases {
		t.Run(tc.file, func(t *testing.T) {
			n, err := Build(open(t, filepath.Join(corpus.Dir(t, tc.sub), tc.file)), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(3, 4))
			checked := 0
			for trial := 0; trial < 8; trial++ {
				x := randInputs(uint64(trial), 1, n.InputSize(), 1)[0]
				dy := make([]float32, n.Classes())
				for i := range dy {
					dy[i] = float32(r.NormFloat64())
				}
				logits, dx := n.Gradient(x, func([]float32) []float32 { return dy })
				if want := n.Forward(x); !equal(logits, want) {
					t.Fatalf("Gradient's logits differ from Forward's")
				}
				v := make([]float32, len(x)) // a random unit direction
				var norm float64
				for i := range v {
					v[i] = float32(r.NormFloat64())
					norm += float64(v[i]) * float64(v[i])
				}
				for i := range v {
					v[i] /= float32(math.Sqrt(norm))
				}
				f := func(eps float64) float64 {
					xe := make([]float32, len(x))
					for i := range xe {
						xe[i] = x[i] + float32(eps)*v[i]
					}
					var s float64
					for c, l := range n.Forward(xe) {
						s += float64(dy[c]) * float64(l)
					}
					return s
				}
				// A relu or max pool kink within reach of the step makes the difference
				// depend on it: such points are skipped, not judged.
				fd := (f(1e-3) - f(-1e-3)) / 2e-3
				if fd2 := (f(3e-3) - f(-3e-3)) / 6e-3; math.Abs(fd-fd2) > 0.01*math.Max(1, math.Abs(fd)) {
					continue
				}
				checked++
				var an float64
				for i := range v {
					an += float64(dx[i]) * float64(v[i])
				}
				if math.Abs(fd-an) > 0.02*math.Max(1, math.Abs(fd)) {
					t.Errorf("trial %d: directional derivative %g, central difference %g", trial, an, fd)
				}
			}
			if checked < 5 {
				t.Errorf("only %d of 8 points were far enough from a kink to check", checked)
			}
		})
	}
}

// Templates equal the linearized network's response to each unit input (the Jacobian read
// column by column with forward passes).
func TestTemplates(t *testing.T) {
	for _, tc := range gradCases[:4] {
		t.Run(tc.file, func(t *testing.T) {
			n, err := Build(open(t, filepath.Join(corpus.Dir(t, tc.sub), tc.file)), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			tm := n.Templates()
			lin := n.Linear()
			if lin.plan.Activation != "none" || n.plan.Activation == "none" {
				t.Fatalf("Linear changed the original network or did not linearize")
			}
			zero := lin.Forward(make([]float32, n.InputSize()))
			for j := 0; j < n.InputSize(); j += max(1, n.InputSize()/97) {
				e := make([]float32, n.InputSize())
				e[j] = 1
				out := lin.Forward(e)
				for c := range out {
					want := float64(out[c] - zero[c])
					if got := float64(tm[c][j]); math.Abs(got-want) > 1e-3*math.Max(1, math.Abs(want)) {
						t.Fatalf("template[%d][%d] = %g, want %g", c, j, got, want)
					}
				}
			}
		})
	}
}

// CrossEntropy is the gradient of −log softmax_c.
func TestCrossEntropy(t *testing.T) {
	logits := []float32{1.5, -0.3, 2.2, 0.1}
	ce := func(l []float32, c int) float64 { return -math.Log(float64(Softmax(l)[c])) }
	for c := range logits {
		g := CrossEntropy(c)(logits)
		for i := range logits {
			up := append([]float32(nil), logits...)
			dn := append([]float32(nil), logits...)
			up[i] += 1e-3
			dn[i] -= 1e-3
			if fd := (ce(up, c) - ce(dn, c)) / 2e-3; math.Abs(fd-float64(g[i])) > 1e-3 {
				t.Errorf("class %d: d/dlogit %d = %g, want %g", c, i, g[i], fd)
			}
		}
	}
}

// TemplatePeaks finds the class that one input feature drives alone: a 6-input, 4-hidden,
// 3-class chain whose hidden unit 3 reads only input 5 and feeds only class 2.
func TestTemplatePeaks(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	w1 := make([]float32, 4*6)
	for i := range w1 {
		w1[i] = 0.1 * float32(r.NormFloat64())
	}
	for j := 0; j < 6; j++ {
		w1[3*6+j] = 0
	}
	w1[3*6+5] = 3
	w2 := make([]float32, 3*4)
	for i := range w2 {
		w2[i] = 0.1 * float32(r.NormFloat64())
	}
	w2[0*4+3], w2[1*4+3], w2[2*4+3] = 0, 0, 2
	m := writeModel(t, map[string][]float32{"fc1.weight": w1, "fc1.bias": make([]float32, 4), "fc2.weight": w2, "fc2.bias": make([]float32, 3)},
		map[string][]int64{"fc1.weight": {4, 6}, "fc1.bias": {4}, "fc2.weight": {3, 4}, "fc2.bias": {3}})
	n, err := Build(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	peak, at, spread := n.TemplatePeaks()
	best := 0
	for c := range peak {
		if peak[c] > peak[best] {
			best = c
		}
	}
	if best != 2 || at[2] != 5 {
		t.Errorf("top class %d at feature %d (peaks %v), want class 2 at feature 5", best, at[best], peak)
	}
	if spread <= 0 || spread > 0.5 {
		t.Errorf("spread %g, want the small scale of the random paths", spread)
	}
	// class 2's template at input 5 is 2·3 plus small random paths; the others' are near 0
	if math.Abs(peak[2]-6) > 0.05 {
		t.Errorf("class 2's peak %g, want 6", peak[2])
	}
}

// The template pass refuses networks whose templates would be too many values to hold.
func TestTemplatesFit(t *testing.T) {
	const in, classes = 1 << 16, 512 // 2^25 template values through one hidden unit: little arithmetic
	m := writeModel(t, map[string][]float32{"fc1.weight": make([]float32, in), "fc1.bias": make([]float32, 1), "fc2.weight": make([]float32, classes), "fc2.bias": make([]float32, classes)},
		map[string][]int64{"fc1.weight": {1, in}, "fc1.bias": {1}, "fc2.weight": {classes, 1}, "fc2.bias": {classes}})
	n, err := Build(m, Options{InputShape: []int{in}})
	if err != nil {
		t.Fatal(err)
	}
	if n.TemplatesFit() {
		t.Errorf("TemplatesFit = true for %d classes × %d inputs", classes, in)
	}
	small := writeModel(t, map[string][]float32{"fc.weight": make([]float32, 3*4), "fc.bias": make([]float32, 3)},
		map[string][]int64{"fc.weight": {3, 4}, "fc.bias": {3}})
	if n, err = Build(small, Options{}); err != nil || !n.TemplatesFit() {
		t.Errorf("a 4-input, 3-class network does not fit (%v)", err)
	}
}
