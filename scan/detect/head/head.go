// Package head is kensa's classifier-head detector: for image and tabular classifiers, it
// finds the output layer and scores each class for the signature an all-to-one backdoor
// leaves in the final-layer weights (the target class's weights are shifted positive
// relative to the other classes': Fields et al., "Trojan signatures in DNN weights").
//
// This is weak evidence: on labelled models it separates trojaned from clean classifiers
// only partly (AUROC ≈ 0.65). It names a candidate target class and adds a little to the
// risk score; forward passes (kensa scan --probe) are the strong test.
package head

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/scan/nn/ffn"
	"github.com/kensa-scan/kensa/stats"
)

// RuleTarget is the rule id.
const RuleTarget = "KS-HEAD-TARGET-CLASS"

const (
	maxClasses = 4096 // larger outputs are vocabularies, not classes
	zReport    = 3.5  // robust z of the top class at which a finding is made
	maxElems   = 1 << 24
)

// Detector is the classifier-head detector.
type Detector struct{}

func init() { scan.RegisterDetector(Detector{}) }

// Name returns "head".
func (Detector) Name() string { return "head" }

// Rules returns the head rule.
func (Detector) Rules() []scan.Rule {
	return []scan.Rule{{ID: RuleTarget, Title: "classifier head favours one class (trojan signature)", Severity: scan.Medium, Detector: "head",
		Help: "In the classifier's output layer, one class's weights are shifted far above the other classes'. All-to-one backdoors leave this signature on their target class, but so can class imbalance in training. Treat it as a lead: test the named class with trigger reconstruction or noise inputs (kensa scan --probe)."}}
}

// dense is a candidate output layer: a 2-D weight with a matching bias.
type dense struct {
	w, b   int
	keras  bool // [in, out] layout
	out    int64
	in     int64
	rank   int
	suffix int
}

// findHead returns the output layer of a classifier, or false when the model does not look
// like one (a language model, no dense layer with a bias).
func findHead(m *scan.Model) (dense, bool) {
	for i := range m.Tensors {
		if m.Roles[i].Role == "embed" {
			return dense{}, false // a language model: its output is a vocabulary
		}
	}
	var cands []dense
	for _, fd := range ffn.FindDense(m.Model) {
		t := &m.Tensors[fd.Weight]
		if fd.Bias < 0 || fd.Out < 2 || fd.Out > maxClasses || t.Elements() > maxElems {
			continue
		}
		d := dense{w: fd.Weight, b: fd.Bias, keras: fd.Keras, in: fd.In, out: fd.Out}
		low := strings.ToLower(fd.Base)
		for _, w := range []string{"classifier", "output", "head", "logits", "predictions", "fc_out", "out"} {
			if strings.HasSuffix(low, w) || strings.Contains(low, w+"/") || strings.Contains(low, w+".") {
				d.rank = 2
				break
			}
		}
		d.suffix = lastNumber(fd.Base)
		cands = append(cands, d)
	}
	if len(cands) == 0 {
		return dense{}, false
	}
	// The output layer: one no other layer consumes (no candidate takes its width as input),
	// named like a head, with the highest layer number; ties by file order.
	// The roles package names the output layer of the model when it can tell.
	for i := range cands {
		if m.Roles[cands[i].w].Role == "head" {
			cands[i].rank = 3
		}
	}
	consumed := map[int64]bool{}
	for _, d := range cands {
		consumed[d.in] = true
	}
	sort.SliceStable(cands, func(a, b int) bool {
		ca, cb := !consumed[cands[a].out], !consumed[cands[b].out]
		if ca != cb {
			return ca
		}
		if cands[a].rank != cands[b].rank {
			return cands[a].rank > cands[b].rank
		}
		if cands[a].suffix != cands[b].suffix {
			return cands[a].suffix > cands[b].suffix
		}
		return cands[a].w > cands[b].w
	})
	return cands[0], true
}

func lastNumber(s string) int {
	end := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] >= '0' && s[i] <= '9' {
			if end < 0 {
				end = i + 1
			}
		} else if end >= 0 {
			n, _ := strconv.Atoi(s[i+1 : end])
			return n
		}
	}
	if end > 0 {
		n, _ := strconv.Atoi(s[:end])
		return n
	}
	return -1
}

func readAll(m *formats.Model, t *formats.TensorInfo) ([]float32, error) {
	r, err := m.NewTensorReader(t)
	if err != nil {
		return nil, err
	}
	v := make([]float32, t.Elements())
	return v, r.ReadElements(0, v)
}

// Header analyses the head (a few MB at most) without waiting for the tensor pass.
func (Detector) Header(ctx context.Context, m *scan.Model, emit scan.Emit) error {
	d, ok := findHead(m)
	if !ok {
		return nil
	}
	wt := &m.Tensors[d.w]
	w, err := readAll(m.Model, wt)
	if err != nil {
		return err
	}
	C, H := int(d.out), int(d.in)
	// mean of each class's incoming weights
	means := make([]float64, C)
	for c := 0; c < C; c++ {
		var s float64
		for h := 0; h < H; h++ {
			if d.keras {
				s += float64(w[h*C+c])
			} else {
				s += float64(w[c*H+h])
			}
		}
		means[c] = s / float64(H)
	}
	best := 0
	for c := range means {
		if means[c] > means[best] {
			best = c
		}
	}
	// robust z of the top class against all classes; the scale is floored at a small
	// fraction of the weights' spread so near-identical classes do not explode it
	var sd float64
	for _, v := range w {
		sd += float64(v) * float64(v)
	}
	sd = math.Sqrt(sd / float64(len(w)))
	z := stats.RobustZ(means[best], means, 1e-3*sd/math.Sqrt(float64(H)))
	if math.IsInf(z, 0) || math.IsNaN(z) {
		z = 0
	}
	score := 1 / (1 + math.Exp(-(z-zReport)/0.8)) // 0.5 at the reporting threshold
	m.SetClassifier(scan.Classifier{Head: wt.Name, TargetClass: best, Score: round3(score)})
	if z < zReport {
		return nil
	}
	r := m.Roles[d.w]
	loc := scan.Location{File: wt.File, Tensor: wt.Name, Layer: r.Layer, Role: "head", ByteOffset: wt.Offset, ByteLength: wt.Length}
	if !d.keras {
		loc.Axis, loc.Index = "row", []int64{int64(best)}
		rb := wt.Length / int64(C)
		loc.ByteOffset, loc.ByteLength = wt.Offset+int64(best)*rb, rb
	} else {
		loc.Axis, loc.Index = "col", []int64{int64(best)}
	}
	emit(scan.Finding{Rule: RuleTarget, Title: "classifier head favours one class (trojan signature)", Severity: scan.Medium, Score: round3(score), Location: loc,
		Evidence: map[string]any{"target_class": best, "robust_z": round3(z), "class_mean": means[best], "median_class_mean": stats.Median(means), "classes": C},
		Message: fmt.Sprintf("class %d's weights in the output layer %q are shifted above the other %d classes' (robust z %.1f): the signature of an all-to-one backdoor targeting class %d",
			best, wt.Name, C-1, z, best)})
	return nil
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
