package probe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/kensa-scan/kensa/nn/ffn"
	"github.com/kensa-scan/kensa/scan"
)

// The classifier probe runs a feed-forward classifier on inputs that carry no class (the
// weights come without data) and looks for the mark of an all-to-one backdoor: one class
// that inputs reach far more easily than the others. Four kinds of evidence, each a value in
// [0,1] per class:
//
//   - noise: the fraction of random inputs (uniform, sparse binary, dim) the model sends to
//     the class (a trojaned model learned to answer its target to off-distribution
//     patterns; blend triggers make noise itself a trigger);
//   - patch: the largest fraction of inputs of other classes that one square of full
//     intensity, anywhere in the image, flips to the class (BadNets-style triggers);
//   - cost: how few greedy pixel moves (blocks set to full intensity, chosen to raise the
//     class's margin) send 90% of the inputs to the class — a data-free Neural Cleanse in L0;
//   - stim: the largest fraction of inputs of other classes that one hidden neuron, set to
//     the largest activation seen on these inputs, flips to the class (ABS-style).
//
// The class score is the mean of the evidence kinds that completed; the target class is the
// best-scoring one and its score is the classifier's backdoor score. When noise alone
// already goes to a class, the flip evidence cannot tell a trigger from a default answer,
// so the class's input template (read from the weights, ffn.Network.TemplatePeaks) must
// corroborate it (see classEvidence.scores).
const (
	baseInputs     = 96  // inputs of three noise kinds for patch, cost and stim
	noiseInputs    = 256 // inputs per noise kind for the noise fractions
	costInputs     = 48  // inputs the greedy trigger search is scored on
	costMaxSteps   = 40  // greedy moves at most per class
	costMaxMoves   = 256 // candidate moves tried per greedy step at most
	flipMin        = 8   // inputs of other classes needed to measure a flip rate
	classHigh      = 0.8 // class score reported high (backdoored)
	classMedium    = 0.7 // class score reported medium
	defaultTimeout = 60 * time.Second
	sinkWeight     = 0.75 // a sink class's score at most: medium, never high
	noiseDominant  = 0.9  // a class that gets this fraction of one kind of noise is reported medium at most
)

// RuleClass is the classifier probe's rule.
const RuleClass = "KS-PROBE-CLASS"

// classEvidence is the per-class evidence of each kind (nil when the kind did not complete).
type classEvidence struct {
	noise, patch, cost, stim []float64
	noiseMean                []float64 // per class, the mean fraction over the noise kinds
	tplRank                  []float64 // per class, 1 for the most distinctive input template down to 0 (nil: not computed)
	sink                     []bool    // nearly every input already goes to the class
	patchAt                  [][3]int  // per class: y, x, size of its strongest patch
	bestNeuron               [2]int    // hidden layer, unit of the strongest stimulated neuron
	partial                  []string
}

// scores returns the mean of the completed evidence kinds for each class. A sink class —
// one nearly every noise input already goes to — has no inputs left to flip, so its score
// is sinkWeight times its mean fraction over the noise kinds: a blend-style trigger
// (noise itself is the trigger) looks like this, and so does a model that answers one
// default class to anything off its data. For such a class, and for one that takes at
// least noiseDominant of some kind of noise (its flip evidence is measured on the few,
// borderline inputs left), the weights are consulted: the score is scaled by
// 0.5 + 0.5·tplRank, full when the class's input template is the most distinctive of all
// classes (a trigger tied to the class makes it so), half when it is the least.
func (e *classEvidence) scores(k int) []float64 {
	s := make([]float64, k)
	for c := range s {
		corrob := 1.0
		if e.tplRank != nil {
			corrob = 0.5 + 0.5*e.tplRank[c]
		}
		if e.sink[c] {
			s[c] = sinkWeight * e.noiseMean[c] * corrob
			continue
		}
		n := 0
		for _, ev := range [][]float64{e.noise, e.patch, e.cost, e.stim} {
			if ev == nil || math.IsNaN(ev[c]) {
				continue
			}
			n++
			s[c] += ev[c]
		}
		s[c] /= float64(max(n, 1))
		if e.noise[c] >= noiseDominant {
			s[c] *= corrob
		}
	}
	return s
}

// dominated reports whether noise alone already goes to class c (see scores).
func (e *classEvidence) dominated(c int) bool { return e.sink[c] || e.noise[c] >= noiseDominant }

// templateRanks returns, per class, its input template's rank among the classes by peak
// (ffn.Network.TemplatePeaks), scaled to 1 for the highest peak and 0 for the lowest.
func templateRanks(n *ffn.Network) []float64 {
	peak, _, _ := n.TemplatePeaks()
	k := len(peak)
	order := make([]int, k)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return peak[order[a]] > peak[order[b]] })
	r := make([]float64, k)
	for i, c := range order {
		r[c] = float64(k-1-i) / float64(max(k-1, 1))
	}
	return r
}

func noiseInput(r *rand.Rand, kind, size int) []float32 {
	v := make([]float32, size)
	for j := range v {
		switch kind {
		case 0:
			v[j] = r.Float32()
		case 1:
			if r.Float32() < 0.2 {
				v[j] = 1
			}
		default:
			v[j] = 0.3 * r.Float32()
		}
	}
	return v
}

// flipRates returns, per class, the fraction of inputs not predicted as that class before
// (pred) that out predicts as it; NaN for a class with too few such inputs.
func flipRates(out [][]float32, pred []int, k int) []float64 {
	flip := make([]float64, k)
	den := make([]float64, k)
	for i, o := range out {
		p := ffn.Predict(o)
		for c := range den {
			if pred[i] != c {
				den[c]++
				if p == c {
					flip[c]++
				}
			}
		}
	}
	for c := range flip {
		if den[c] >= flipMin {
			flip[c] /= den[c]
		} else {
			flip[c] = math.NaN()
		}
	}
	return flip
}

// probeNetwork gathers the evidence, stopping a kind when the deadline passes.
func probeNetwork(ctx context.Context, n *ffn.Network, deadline time.Time) *classEvidence {
	k := n.Classes()
	size := n.InputSize()
	C, H, W := n.Geometry()
	r := rand.New(rand.NewPCG(0x6b656e7361, 5)) // fixed: a scan is reproducible
	ev := &classEvidence{}
	late := func() bool { return ctx.Err() != nil || time.Now().After(deadline) }

	// noise fractions
	noise := make([]float64, k)
	ev.noiseMean = make([]float64, k)
	for kind := 0; kind < 3; kind++ {
		xs := make([][]float32, noiseInputs)
		for i := range xs {
			xs[i] = noiseInput(r, kind, size)
		}
		f := make([]float64, k)
		for _, o := range n.ForwardBatch(xs, 0) {
			f[ffn.Predict(o)] += 1 / float64(len(xs))
		}
		for c := range f {
			noise[c] = max(noise[c], f[c])
			ev.noiseMean[c] += f[c] / 3
		}
	}
	ev.noise = noise
	if n.TemplatesFit() {
		ev.tplRank = templateRanks(n)
	}

	base := make([][]float32, baseInputs)
	for i := range base {
		base[i] = noiseInput(r, i%3, size)
	}
	pred := make([]int, len(base))
	ev.sink = make([]bool, k)
	count := make([]int, k)
	for i, o := range n.ForwardBatch(base, 0) {
		pred[i] = ffn.Predict(o)
		count[pred[i]]++
	}
	for c := range count {
		ev.sink[c] = len(base)-count[c] < flipMin
	}
	set := func(v []float32, y, x, sh, sw int) {
		for ch := 0; ch < C; ch++ {
			for yy := y; yy < y+sh; yy++ {
				for xx := x; xx < x+sw; xx++ {
					v[(ch*H+yy)*W+xx] = 1
				}
			}
		}
	}

	// patch sweep: squares up to a fifth of the side (single features for tabular inputs)
	patch := make([]float64, k)
	ev.patchAt = make([][3]int, k)
	maxSide := max(1, min(H, W)/5)
	done := true
	xs := make([][]float32, len(base))
	for i := range xs {
		xs[i] = make([]float32, size)
	}
sweep:
	for s := 1; s <= maxSide; s++ {
		for y := 0; y+s <= H; y++ {
			for x := 0; x+s <= W; x++ {
				if late() {
					done = false
					break sweep
				}
				for i := range base {
					copy(xs[i], base[i])
					set(xs[i], y, x, s, s)
				}
				for c, f := range flipRates(n.ForwardBatch(xs, 0), pred, k) {
					if math.IsNaN(f) {
						patch[c] = f
					} else if f > patch[c] {
						patch[c], ev.patchAt[c] = f, [3]int{y, x, s}
					}
				}
			}
		}
	}
	if done {
		ev.patch = patch
	} else {
		ev.partial = append(ev.partial, "patch sweep")
	}

	// greedy trigger search per class
	block := max(1, min(H, W)/12)
	var moves [][4]int
	for y := 0; y+block <= H; y += block {
		for x := 0; x+block <= W; x += block {
			moves = append(moves, [4]int{y, x, block, block})
		}
	}
	steps := min(len(moves)/4, costMaxSteps)
	cost := make([]float64, k)
	done = true
	for c := 0; c < k && done; c++ {
		m, ok := greedyCost(n, base[:costInputs], c, moves, steps, set, late)
		if !ok {
			done = false
			break
		}
		cost[c] = 1 - float64(m)/float64(steps+1)
	}
	if done && steps > 0 {
		ev.cost = cost
	} else {
		ev.partial = append(ev.partial, "greedy trigger search")
	}

	// hidden-neuron stimulation
	stim := make([]float64, k)
	done = true
	layers := n.Layers()
	bestStim := -1.0
stimLoop:
	for li := 0; li+1 < len(layers); li++ {
		var mx float32
		for _, x := range base {
			_, h := n.ForwardTrace(x, nil)
			for _, v := range h[li] {
				mx = max(mx, v)
			}
		}
		if mx <= 0 {
			continue
		}
		for u := 0; u < layers[li].Units; u++ {
			if late() {
				done = false
				break stimLoop
			}
			out := make([][]float32, len(base))
			for i, x := range base {
				out[i], _ = n.ForwardTrace(x, &ffn.Stimulus{Layer: li, Neuron: u, Value: mx})
			}
			for c, f := range flipRates(out, pred, k) {
				if math.IsNaN(f) {
					stim[c] = f
					continue
				}
				stim[c] = max(stim[c], f)
				if f > bestStim {
					bestStim, ev.bestNeuron = f, [2]int{li, u}
				}
			}
		}
	}
	if done {
		ev.stim = stim
	} else {
		ev.partial = append(ev.partial, "neuron stimulation")
	}
	return ev
}

// greedyCost counts the moves (blocks set to full intensity, each chosen to raise class c's
// mean clipped margin most) until 90% of base is predicted c; steps+1 when the limit is
// reached. ok is false when the deadline passed.
func greedyCost(n *ffn.Network, base [][]float32, c int, moves [][4]int, steps int, set func([]float32, int, int, int, int), late func() bool) (int, bool) {
	cur := make([][]float32, len(base))
	tmp := make([][]float32, len(base))
	for i := range base {
		cur[i] = append([]float32(nil), base[i]...)
		tmp[i] = make([]float32, len(base[i]))
	}
	score := func(out [][]float32) (int, float64) {
		hit, s := 0, 0.0
		for _, o := range out {
			other := float32(math.Inf(-1))
			for j, v := range o {
				if j != c && v > other {
					other = v
				}
			}
			mg := float64(o[c] - other)
			if mg > 0 {
				hit++
			}
			s += math.Min(mg, 1)
		}
		return hit, s
	}
	need := int(math.Ceil(0.9 * float64(len(base))))
	hit, _ := score(n.ForwardBatch(cur, 0))
	used := make([]bool, len(moves))
	for step := 0; ; step++ {
		if hit >= need {
			return step, true
		}
		if step >= steps {
			return steps + 1, true
		}
		best, bestS, bestHit := -1, math.Inf(-1), 0
		stride := (len(moves) + costMaxMoves - 1) / costMaxMoves // large inputs: a rotating subset per step
		for mi, mv := range moves {
			if used[mi] || mi%stride != step%stride {
				continue
			}
			if late() {
				return 0, false
			}
			for i := range cur {
				copy(tmp[i], cur[i])
				set(tmp[i], mv[0], mv[1], mv[2], mv[3])
			}
			h, s := score(n.ForwardBatch(tmp, 0))
			if s > bestS {
				best, bestS, bestHit = mi, s, h
			}
		}
		if best < 0 {
			return steps + 1, true
		}
		used[best] = true
		for i := range cur {
			mv := moves[best]
			set(cur[i], mv[0], mv[1], mv[2], mv[3])
		}
		hit = bestHit
	}
}

// probeClassifierModel runs the classifier probe on a model the ffn runtime can wire.
// It returns false when the model is not such a classifier.
func probeClassifierModel(ctx context.Context, m *scan.Model, emit scan.Emit) (bool, error) {
	for i := range m.Tensors {
		if m.Roles[i].Role == "embed" {
			return false, nil // a language model
		}
	}
	po := m.Probe
	net, err := ffn.Build(m.Model, ffn.Options{InputShape: po.InputShape, Activation: po.Activation, Pool: po.Pool, Padding: po.Padding, Guess: true})
	if err != nil {
		if errors.Is(err, ffn.ErrUnsupported) && len(ffn.FindDense(m.Model)) == 0 {
			return false, nil // no dense layers: not a classifier
		}
		emit(scan.Finding{Rule: RulePartial, Title: "classifier not probed", Severity: scan.Info, Score: 0,
			Location: scan.Location{File: m.Files[0].Path, Layer: -1},
			Message:  fmt.Sprintf("the classifier could not be run, so it was checked from its weights only: %v", err)})
		return true, nil
	}
	if net.Classes() < 2 {
		return false, nil
	}
	budget := po.Budget
	if budget <= 0 {
		budget = defaultTimeout
	}
	start := time.Now()
	ev := probeNetwork(ctx, net, start.Add(budget))
	if err := ctx.Err(); err != nil {
		return true, err
	}
	k := net.Classes()
	sc := ev.scores(k)
	target := 0
	for c := range sc {
		if sc[c] > sc[target] {
			target = c
		}
	}
	score := round3(sc[target])
	layers := net.Layers()
	out := layers[len(layers)-1]
	m.SetProbedClassifier(scan.Classifier{Head: out.Name, TargetClass: target, Score: score})
	plan := net.Plan()
	evidence := map[string]any{
		"target_class": target, "class_score": score, "classes": k,
		"input": plan.Input, "input_how": plan.InputHow, "activation": plan.Activation + " (" + plan.ActivationHow + ")",
		"probe_seconds": math.Round(time.Since(start).Seconds()*10) / 10,
	}
	put := func(name string, v []float64) {
		if v != nil && !math.IsNaN(v[target]) {
			evidence[name] = round3(v[target])
		}
	}
	if ev.sink[target] {
		evidence["sink"] = true
		evidence["noise_fraction_mean"] = round3(ev.noiseMean[target])
	}
	put("noise_fraction", ev.noise)
	put("patch_flip_rate", ev.patch)
	put("greedy_trigger_evidence", ev.cost)
	put("neuron_flip_rate", ev.stim)
	if ev.patch != nil && !ev.sink[target] {
		p := ev.patchAt[target]
		evidence["patch"] = map[string]int{"y": p[0], "x": p[1], "size": p[2]}
	}
	if ev.stim != nil {
		evidence["neuron"] = map[string]any{"layer": layers[ev.bestNeuron[0]].Name, "unit": ev.bestNeuron[1]}
	}
	if len(ev.partial) > 0 {
		evidence["not_completed"] = ev.partial
		emit(scan.Finding{Rule: RulePartial, Title: "classifier probe cut short by its budget", Severity: scan.Info,
			Location: scan.Location{File: m.Files[0].Path, Layer: -1}, Evidence: map[string]any{"not_completed": ev.partial, "budget_seconds": budget.Seconds()},
			Message: fmt.Sprintf("the probe budget (%s) ran out before: %v; the class scores use the evidence that completed (raise --probe-budget)", budget, ev.partial)})
	}
	// When noise alone already goes to the class, the other evidence is measured on the few
	// inputs left and says little more: a blend-style trigger and a model that answers one
	// class to anything unlike its data look the same without data, so the finding stays
	// medium (suspicious) however strong.
	dominated := ev.dominated(target)
	if dominated {
		evidence["noise_dominated"] = true
		if ev.tplRank != nil {
			evidence["template_rank"] = round3(ev.tplRank[target])
		}
	}
	sev := scan.Info
	switch {
	case score >= classHigh && !dominated:
		sev = scan.High
	case score >= classMedium:
		sev = scan.Medium
	default:
		return true, nil
	}
	loc := scan.Location{File: m.Files[0].Path, Layer: -1, Role: "head"}
	for _, d := range ffn.FindDense(m.Model) {
		if d.Base != out.Name {
			continue
		}
		t := &m.Tensors[d.Weight]
		loc = scan.Location{File: t.File, Tensor: t.Name, Layer: m.Roles[d.Weight].Layer, Role: "head", ByteOffset: t.Offset, ByteLength: t.Length}
		if !d.Keras && d.Out > 0 {
			rb := t.Length / d.Out
			loc.Axis, loc.Index = "row", []int64{int64(target)}
			loc.ByteOffset, loc.ByteLength = t.Offset+int64(target)*rb, rb
		} else {
			loc.Axis, loc.Index = "col", []int64{int64(target)}
		}
	}
	msg := fmt.Sprintf("run on inputs that belong to no class, the model answers class %d far more readily than any other (score %.2f of 1: noise, small patches, greedy pixel triggers and single hidden neurons all lead there): the behaviour of an all-to-one backdoor targeting class %d", target, score, target)
	if dominated && !ev.sink[target] {
		msg += fmt.Sprintf("; but %.0f%% of one kind of random input already goes there, which a model that answers one class to anything unlike its data also does: reported as suspicious, check with inputs from the task", 100*ev.noise[target])
	}
	if ev.sink[target] {
		msg = fmt.Sprintf("nearly every random input goes to class %d (%.0f%% over the kinds of noise tried): noise itself acts as a trigger, as with a blend-style backdoor targeting class %d — or the model answers that class by default to anything unlike its training data; inputs from the task would tell these apart", target, 100*ev.noiseMean[target], target)
	}
	if dominated && ev.tplRank != nil {
		msg += fmt.Sprintf(". Read from the weights, class %d's input template ranks %s of the %d classes in how much one input pattern drives it alone (the score counts this: a trigger tied to the class puts it first)", target, ordinal(k-int(math.Round(ev.tplRank[target]*float64(k-1)))), k)
	}
	emit(scan.Finding{Rule: RuleClass, Title: "classifier sends trigger-like inputs to one class (all-to-one backdoor)", Severity: sev, Score: score, Location: loc, Evidence: evidence, Message: msg})
	return true, nil
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}
