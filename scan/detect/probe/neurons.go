package probe

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/kensa-scan/kensa/nn/llm"
	"github.com/kensa-scan/kensa/scan"
)

// RuleNeuron is the trigger-sensitive neuron rule.
const RuleNeuron = "KS-PROBE-NEURON"

const (
	neuronZ     = 8.0 // a neuron's activation for the token, in standard deviations above its mean over all tokens
	neuronGap   = 2.0 // and this many times the activation of the next token
	neuronsEach = 5   // neurons reported per trigger at most
)

// neuronStats accumulates, per MLP neuron, the mean and variance of its activation (the
// input of the down projection) over every token placed after BOS, and the two tokens
// with the largest activations.
type neuronStats struct {
	layers, ff int
	n          float64
	mean, m2   []float64
	top1, top2 []float32
	arg1       []int
	pos        int // the observed position
	tok        int // the token being observed
}

func (s *neuronStats) Layer(l int, _, mlp [][]float32) {
	row := mlp[s.pos]
	base := l * s.ff
	for j, v := range row {
		i := base + j
		d := float64(v) - s.mean[i]
		s.mean[i] += d / s.n
		s.m2[i] += d * (float64(v) - s.mean[i])
		switch {
		case v > s.top1[i]:
			s.top2[i], s.top1[i], s.arg1[i] = s.top1[i], v, s.tok
		case v > s.top2[i]:
			s.top2[i] = v
		}
	}
}

// neuronHit is one neuron that fires for a token like for no other.
type neuronHit struct {
	layer, unit  int
	z, act, next float64
}

// triggerNeurons runs BOS+token for the first n tokens and returns, for each token in
// cands, the MLP neurons whose activation for it is an extreme outlier against all tokens.
func triggerNeurons(ctx context.Context, lm *llm.Model, bos, n int, skip func(int) bool, cands []int) (map[int][]neuronHit, error) {
	c := lm.Config
	size := c.Layers * c.FF
	s := &neuronStats{layers: c.Layers, ff: c.FF, mean: make([]float64, size), m2: make([]float64, size),
		top1: make([]float32, size), top2: make([]float32, size), arg1: make([]int, size), pos: 1}
	for i := range s.top1 {
		s.top1[i], s.top2[i], s.arg1[i] = float32(math.Inf(-1)), float32(math.Inf(-1)), -1
	}
	for t := 0; t < n; t++ {
		if skip(t) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.n++
		s.tok = t
		if _, err := lm.ForwardObserve(lm.NewState(2), []int{bos, t}, false, s); err != nil {
			return nil, err
		}
	}
	want := map[int]bool{}
	for _, t := range cands {
		want[t] = true
	}
	out := map[int][]neuronHit{}
	if s.n < 16 {
		return out, nil
	}
	for i := range s.mean {
		t := s.arg1[i]
		if !want[t] {
			continue
		}
		sd := math.Sqrt(s.m2[i] / s.n)
		if sd == 0 {
			continue
		}
		z := (float64(s.top1[i]) - s.mean[i]) / sd
		gap := math.Abs(float64(s.top1[i]) - s.mean[i])
		next := math.Abs(float64(s.top2[i]) - s.mean[i])
		if z < neuronZ || gap < neuronGap*next {
			continue
		}
		out[t] = append(out[t], neuronHit{layer: i / c.FF, unit: i % c.FF, z: z, act: float64(s.top1[i]), next: float64(s.top2[i])})
	}
	for t := range out {
		h := out[t]
		sort.Slice(h, func(a, b int) bool { return h[a].z > h[b].z })
		out[t] = h[:min(len(h), neuronsEach)]
	}
	return out, nil
}

// emitNeurons reports the neurons of one trigger, each located at its row of the MLP's up
// projection (the weights that make it fire).
func emitNeurons(m *scan.Model, emit scan.Emit, token string, id int, hits []neuronHit) {
	for _, h := range hits {
		loc := scan.Location{Layer: h.layer, Role: "ffn_up", Axis: "row", Index: []int64{int64(h.unit)}}
		for _, name := range []string{fmt.Sprintf("blk.%d.ffn_up.weight", h.layer), fmt.Sprintf("model.layers.%d.mlp.up_proj.weight", h.layer)} {
			if t := m.Tensor(name); t != nil && len(t.Shape) == 2 {
				rows := t.Shape[0] // [FF, hidden] in both formats (GGUF shapes are row-major here too)
				if rows > 0 && int64(h.unit) < rows {
					rb := t.Length / rows
					loc.File, loc.Tensor, loc.ByteOffset, loc.ByteLength = t.File, t.Name, t.Offset+int64(h.unit)*rb, rb
				}
				break
			}
		}
		emit(scan.Finding{Rule: RuleNeuron, Title: "MLP neuron that fires for the trigger token only", Severity: scan.Medium,
			Score: round3(math.Min(1, h.z/(4*neuronZ))), Location: loc,
			Evidence: map[string]any{"token": token, "token_id": id, "layer": h.layer, "neuron": h.unit, "z": round3(h.z), "activation": round3(h.act), "next_activation": round3(h.next)},
			Message: fmt.Sprintf("neuron %d of layer %d's MLP fires at %.3g for %q, %.0f standard deviations above its mean over every token (the next strongest token: %.3g): a trigger detector",
				h.unit, h.layer, h.act, token, h.z, h.next)})
	}
}
