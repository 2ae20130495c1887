// Package head is kensa's classifier-head detector: it names the class an all-to-one
// backdoor would target, from the weights alone, and scores how strongly the weights single
// it out.
//
// When the network is a chain kensa can wire (nn/ffn), the detector reads each class's
// input template: the gradient of the class's logit with respect to the input in the
// linearized network (every activation replaced by the identity, pooling by averaging), one
// backward pass per class, no input data. Centred per input feature across classes, a
// template shows which features raise one class and no other; a trojan trigger is exactly
// such a feature set (a patch or pattern the poisoned data tied to the target), so the
// target class's centred template peaks far above every other class's. The score is the
// robust z of the top class's peak against all classes' peaks, and the peak's input
// position is reported.
//
// Otherwise it falls back to the final-layer signature (the target class's weights shifted
// positive relative to the other classes': Fields et al., "Trojan signatures in DNN
// weights").
//
// Both are weak evidence next to forward passes (kensa scan --probe): on the labelled
// development classifiers the template score separates trojaned from clean models with
// AUROC ≈ 0.78 and names the target for 13 of 18 (the final-layer mean: 0.65 and 6 of 18).
// A finding is medium at most.
package head

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/ffn"
	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/stats"
)

// RuleTarget is the rule id.
const RuleTarget = "KS-HEAD-TARGET-CLASS"

const (
	maxClasses = 4096 // larger outputs are vocabularies, not classes
	zReport    = 3.5  // final-layer mean: robust z of the top class at which a finding is made
	// template peaks: robust z of the top class at which a finding is made. The clean
	// development classifiers reach 3.3 at most, random-weight ones 3.2 in 300; planted
	// triggers reached 4.4 to 10.
	zTemplate = 4.0
	maxElems  = 1 << 24
	// maxTemplateParams bounds the models whose templates are read (the network is loaded
	// as float32: 128 MB at most); larger classifiers get the final-layer analysis.
	maxTemplateParams = 1 << 25
)

// Detector is the classifier-head detector.
type Detector struct{}

func init() { scan.RegisterDetector(Detector{}) }

// Name returns "head".
func (Detector) Name() string { return "head" }

// Rules returns the head rule.
func (Detector) Rules() []scan.Rule {
	return []scan.Rule{{ID: RuleTarget, Title: "classifier favours one class from its weights alone (trojan signature)", Severity: scan.Medium, Detector: "head",
		Help: "Read from the weights alone, one class stands out: its input template (how each input feature raises the class through the linearized network) peaks far above every other class's, or, for networks kensa cannot wire, its output-layer weights are shifted above the others'. All-to-one backdoors leave these signatures on their target class, but so can a class whose natural features are unusually strong. Treat it as a lead: test the named class with kensa scan --probe."}}
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

// analysis is one way of naming the target class.
type analysis struct {
	target    int
	z         float64 // robust z of the target's statistic against all classes
	threshold float64 // z at which a finding is made
	evidence  map[string]any
	msg       string
}

// Header analyses the head (a few MB at most) and, when the network is a chain kensa can
// wire, its class templates, without waiting for the tensor pass.
func (Detector) Header(ctx context.Context, m *scan.Model, emit scan.Emit) error {
	d, ok := findHead(m)
	if !ok {
		m.SetAnalysis("head", scan.NotRun("no classifier head (a language model, or no dense output layer with a bias)"))
		return nil
	}
	wt := &m.Tensors[d.w]
	a, err := templates(ctx, m, d)
	if err != nil {
		return err
	}
	if a == nil {
		if a, err = fieldsMean(m, d); err != nil {
			return err
		}
	}
	z := a.z
	if math.IsInf(z, 0) || math.IsNaN(z) {
		z = 0
	}
	score := 1 / (1 + math.Exp(-(z-a.threshold)/0.8)) // 0.5 at the reporting threshold
	m.SetClassifier(scan.Classifier{Head: wt.Name, TargetClass: a.target, Score: round3(score)})
	if z < a.threshold {
		return nil
	}
	C := int(d.out)
	r := m.Roles[d.w]
	loc := scan.Location{File: wt.File, Tensor: wt.Name, Layer: r.Layer, Role: "head", ByteOffset: wt.Offset, ByteLength: wt.Length}
	if !d.keras {
		loc.Axis, loc.Index = "row", []int64{int64(a.target)}
		rb := wt.Length / int64(C)
		loc.ByteOffset, loc.ByteLength = wt.Offset+int64(a.target)*rb, rb
	} else {
		loc.Axis, loc.Index = "col", []int64{int64(a.target)}
	}
	a.evidence["target_class"], a.evidence["robust_z"], a.evidence["classes"] = a.target, round3(z), C
	emit(scan.Finding{Rule: RuleTarget, Title: "classifier favours one class from its weights alone (trojan signature)", Severity: scan.Medium, Score: round3(score), Location: loc,
		Evidence: a.evidence, Message: a.msg})
	return nil
}

// templates reads each class's input template from the linearized network (see the package
// comment). It returns nil when the model is not a chain kensa can wire or is too large to
// analyse this way. With two classes it names a class, but the robust z of two values is
// always 0.67: a binary classifier gets no finding from weights alone.
func templates(ctx context.Context, m *scan.Model, d dense) (*analysis, error) {
	var params int64
	for i := range m.Tensors {
		params += m.Tensors[i].Elements()
	}
	if params > maxTemplateParams {
		return nil, nil // the runtime holds the weights as float32: keep the scan's memory bounded
	}
	po := m.Probe
	net, err := ffn.Build(m.Model, ffn.Options{InputShape: po.InputShape, Activation: po.Activation, Pool: po.Pool, Padding: po.Padding, Guess: true})
	if err != nil {
		return nil, nil
	}
	K := net.Classes()
	if K != int(d.out) || !net.TemplatesFit() {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	peak, at, spread := net.TemplatePeaks()
	best := 0
	for c := range peak {
		if peak[c] > peak[best] {
			best = c
		}
	}
	// ten or so peaks give a noisy MAD that can collapse; differences between peaks smaller
	// than the spread of the template values themselves are noise
	z := stats.RobustZ(peak[best], peak, math.Max(spread, 1e-12))
	pos := map[string]int{"feature": at[best]}
	where := fmt.Sprintf("input feature %d", at[best])
	if ch, h, w := net.Geometry(); h > 1 {
		j := at[best]
		pos["channel"], pos["y"], pos["x"] = j/(h*w), j/w%h, j%w
		where = fmt.Sprintf("input feature %d (pixel y %d, x %d, channel %d of a %d×%d×%d image)", j, j/w%h, j%w, j/(h*w), ch, h, w)
	}
	return &analysis{
		target: best, z: z, threshold: zTemplate,
		evidence: map[string]any{"method": "input templates of the linearized network", "template_peak": round3(peak[best]),
			"median_class_peak": round3(stats.Median(peak)), "peak_input": pos},
		msg: fmt.Sprintf("read through the weights alone (activations linearized), class %d responds to %s far more than any other class responds to any input (robust z %.1f over %d classes): one input pattern that drives one class alone is what a trigger tied to its target by poisoned training looks like. Confirm with kensa scan --probe", best, where, z, K),
	}, nil
}

// fieldsMean scores each class by the mean of its weights in the output layer.
func fieldsMean(m *scan.Model, d dense) (*analysis, error) {
	wt := &m.Tensors[d.w]
	w, err := readAll(m.Model, wt)
	if err != nil {
		return nil, err
	}
	C, H := int(d.out), int(d.in)
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
	// the scale is floored at a small fraction of the weights' spread so near-identical
	// classes do not explode it
	var sd float64
	for _, v := range w {
		sd += float64(v) * float64(v)
	}
	sd = math.Sqrt(sd / float64(len(w)))
	z := stats.RobustZ(means[best], means, 1e-3*sd/math.Sqrt(float64(H)))
	return &analysis{
		target: best, z: z, threshold: zReport,
		evidence: map[string]any{"method": "output-layer class means", "class_mean": means[best], "median_class_mean": stats.Median(means)},
		msg: fmt.Sprintf("class %d's weights in the output layer %q are shifted above the other %d classes' (robust z %.1f): the signature of an all-to-one backdoor targeting class %d",
			best, wt.Name, C-1, z, best),
	}, nil
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
