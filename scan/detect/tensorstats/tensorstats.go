// Package tensorstats is kensa's statistics detector: per-tensor distributions compared
// across the layers that share a role, per-neuron (row and column) norms compared within
// their tensor, and non-finite values.
//
// Statistics alone are weak evidence of tampering — real models have outlier neurons and
// odd layers — so these rules stay at low and medium severity: they point an inspector at
// the tensors and neurons to look at, and they add to the model's risk score, but they never
// alone make a clean model fail a scan.
package tensorstats

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/stats"
)

// Rule ids.
const (
	RuleNonFinite    = "KS-STAT-NONFINITE"
	RuleLayerOutlier = "KS-STAT-LAYER-OUTLIER"
	RuleRowOutlier   = "KS-NEURON-ROW-OUTLIER"
	RuleColOutlier   = "KS-NEURON-COL-OUTLIER"
)

// Thresholds (robust z, in MAD-standard-deviations). Chosen far in the tail: a normal
// sample of a million values rarely passes 5, and real weights, heavier-tailed than normal,
// are kept from false alarms by the ratio conditions below.
const (
	zLayer       = 8.0  // a tensor's log-std or kurtosis against its role's other layers
	zNeuron      = 10.0 // a row's or column's log-norm against its tensor's others
	neuronRatio  = 4.0  // ... and at least this many times the median norm
	minRowsNeuro = 32   // tensors with fewer rows or columns are not judged per neuron
	minPeers     = 4    // a role needs this many layers to compare them
	maxPerTensor = 3    // neuron findings reported per tensor (the rest are counted)
)

// Detector is the statistics detector.
type Detector struct{}

func init() { scan.RegisterDetector(Detector{}) }

// Name returns "tensorstats".
func (Detector) Name() string { return "tensorstats" }

// Rules returns the statistics rules.
func (Detector) Rules() []scan.Rule {
	return []scan.Rule{
		{ID: RuleNonFinite, Title: "NaN or infinite weights", Severity: scan.Medium, Detector: "tensorstats",
			Help: "Trained weights are finite. NaN or Inf values make outputs undefined (a denial of service planted in the model) or mark a tensor that was damaged or overwritten. The evidence counts them; the location is the tensor."},
		{ID: RuleLayerOutlier, Title: "tensor unlike the same role in other layers", Severity: scan.Low, Detector: "tensorstats",
			Help: "This tensor's spread or tail weight (log standard deviation, kurtosis) is far from the tensors of the same role in the model's other layers. Edited or transplanted layers show this; so do some legitimate architectures (first and last layers often differ). Look at it together with other findings, or compare with the base model (--base)."},
		{ID: RuleRowOutlier, Title: "neuron with an outlying weight norm (row)", Severity: scan.Low, Detector: "tensorstats",
			Help: "One row (an output neuron, in PyTorch's [out, in] layout) has a norm many times its tensor's typical row. Backdoor neurons that respond to a trigger are often of this kind, but large-norm neurons also occur naturally (massive activations in LLMs). The location gives the row's exact byte range."},
		{ID: RuleColOutlier, Title: "input feature with an outlying weight norm (column)", Severity: scan.Low, Detector: "tensorstats",
			Help: "One column (the weights of an input feature, in PyTorch's [out, in] layout) has a norm many times its tensor's typical column. A trigger feature that a backdoor was trained to react to can look like this. The location gives the column's first element; its elements are a row apart (stride in the evidence)."},
	}
}

type acc struct {
	mu       sync.Mutex
	n        int64
	n34      int64   // values in s3 and s4 (a sample of rows, see kurtEvery)
	s1, s2   float64 // sums about 0 (weights are near-zero mean; float64 holds the precision)
	s2s      float64 // Σx² over the sampled rows (with s1, s3, s4)
	s3, s4   float64
	nan, inf int64
	firstBad int64     // first non-finite element, -1 if none
	rowSS    []float32 // per-row sum of squares
	colSS    []float64 // per-column sum of squares
}

// Begin starts a pass over the model's float tensors.
func (Detector) Begin(m *scan.Model, workers int) scan.TensorPass {
	p := &pass{m: m, acc: make([]*acc, len(m.Tensors))}
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if !t.DType.Float() || t.Elements() == 0 {
			continue
		}
		a := &acc{firstBad: -1}
		// per-neuron norms only for weight matrices whose role is known: other tensors
		// (filter banks, norms' statistics, lookup tables) have no neurons to compare
		r := m.Roles[i]
		if len(t.Shape) >= 2 && t.Rows() >= minRowsNeuro && r.Kind == "weight" && r.Role != "other" && r.Role != "" {
			a.rowSS = make([]float32, t.Rows())
			if t.RowLen() >= minRowsNeuro && t.RowLen() <= 1<<20 {
				a.colSS = make([]float64, t.RowLen())
			}
		}
		p.acc[i] = a
	}
	return p
}

type pass struct {
	m   *scan.Model
	acc []*acc
}

// kurtEvery: the third and fourth moments, and the column norms, are estimated from every
// kurtEvery-th row (all rows of tensors with fewer than 4·kurtEvery rows): they describe
// the shape of the distribution and the typical weight of each input feature, which a
// systematic sample of rows estimates well, and they would otherwise cost more than the
// rest of the scan. Row norms use every row.
const kurtEvery = 4

func (p *pass) Chunk(_ int, c *scan.Chunk) {
	a := p.acc[c.Tensor]
	if a == nil {
		return
	}
	t := &p.m.Tensors[c.Tensor]
	rl := int(c.RowLen)
	// Rows are decoded one at a time from the stored bytes into a small buffer that stays
	// in the core's cache, instead of the whole chunk (for little-endian data in whole rows
	// of whole blocks: every case but big-endian GGUF and odd-length packed rows).
	byRow := c.Rows > 0 && !p.m.BigEndian && rl > 0 && rl%t.DType.BlockElems() == 0
	var vals, rowBuf []float32
	var rowBytes int
	nvals := int(c.Rows) * rl
	if byRow {
		rowBuf = make([]float32, rl)
		rowBytes = rl / t.DType.BlockElems() * t.DType.BlockBytes()
	} else {
		vals = c.Values()
		nvals = len(vals)
		if rl <= 0 || c.Rows == 0 {
			rl = len(vals)
		}
	}
	var col []float32
	if a.colSS != nil && c.Rows > 0 {
		col = make([]float32, rl)
	}
	var rowSS []float32
	if a.rowSS != nil && c.Rows > 0 {
		rowSS = a.rowSS[c.Row : c.Row+c.Rows] // rows of distinct chunks never overlap
	}
	every := kurtEvery
	if c.Rows == 0 || p.m.Tensors[c.Tensor].Rows() < 1024 {
		every = 1 // small tensors: every row (column norms stay exact where they are cheap)
	}
	var s1, s2, s2s, s3, s4 float64 // s2 over all rows; the others over the sampled rows
	var n34 int64
	var nan, inf int64
	firstBad := int64(-1)
	for r := 0; r*rl < nvals; r++ {
		var row []float32
		if byRow {
			t.DType.Decode(rowBuf, c.Raw[r*rowBytes:(r+1)*rowBytes])
			row = rowBuf
		} else {
			row = vals[r*rl : min((r+1)*rl, len(vals))]
		}
		r2 := sumSquares(row)
		var r1, r3, r4 float64
		g := c.Row + int64(r)
		if c.Rows == 0 {
			g = int64(r)
		}
		if g%int64(every) == 0 {
			r1, r3, r4 = sums134(row)
			if col != nil && len(row) == rl {
				addSquares(row, col)
			}
		}
		if math.IsNaN(r2) || math.IsInf(r2, 0) || math.IsNaN(r4) || math.IsInf(r4, 0) {
			// slow path: count the non-finite values and keep the rest
			r1, r2, r3, r4 = 0, 0, 0, 0
			for j, x := range row {
				v := float64(x)
				switch {
				case math.IsNaN(v):
					nan++
				case math.IsInf(v, 0):
					inf++
				default:
					r1 += v
					r2 += v * v
					if g%int64(every) == 0 {
						r3 += v * v * v
						r4 += v * v * v * v
					}
					continue
				}
				if firstBad < 0 {
					firstBad = c.Start + int64(r*rl+j)
				}
			}
			if col != nil && len(row) == rl {
				for j := range col {
					col[j] = float32(math.NaN()) // poison: this tensor's columns are not judged
				}
			}
		}
		s2 += r2
		if g%int64(every) == 0 {
			s1 += r1
			s2s += r2
			s3 += r3
			s4 += r4
			n34 += int64(len(row))
		}
		if rowSS != nil && r < len(rowSS) {
			rowSS[r] = float32(r2)
		}
	}
	a.mu.Lock()
	a.n += int64(nvals)
	a.n34 += n34
	a.s1 += s1
	a.s2 += s2
	a.s2s += s2s
	a.s3 += s3
	a.s4 += s4
	a.nan += nan
	a.inf += inf
	if firstBad >= 0 && (a.firstBad < 0 || firstBad < a.firstBad) {
		a.firstBad = firstBad
	}
	for j, v := range col {
		a.colSS[j] += float64(v)
	}
	a.mu.Unlock()
}

// sumSquares returns Σx² of a row, in four float32 lanes (independent add chains, so the
// loop is not bound by add latency) flushed to float64.
func sumSquares(row []float32) float64 {
	var b0, b1, b2, b3 float32
	i := 0
	for ; i+4 <= len(row); i += 4 {
		x := row[i : i+4 : i+4]
		b0 += x[0] * x[0]
		b1 += x[1] * x[1]
		b2 += x[2] * x[2]
		b3 += x[3] * x[3]
	}
	for ; i < len(row); i++ {
		b0 += row[i] * row[i]
	}
	return float64(b0) + float64(b1) + float64(b2) + float64(b3)
}

// addSquares adds x² to col[j] for each element j of row.
func addSquares(row, col []float32) {
	col = col[:len(row)]
	for j, x := range row {
		col[j] += x * x
	}
}

// sums134 returns Σx, Σx³ and Σx⁴ of a row.
func sums134(row []float32) (float64, float64, float64) {
	var a0, a1, c0, c1, d0, d1 float32
	i := 0
	for ; i+2 <= len(row); i += 2 {
		x0, x1 := row[i], row[i+1]
		q0, q1 := x0*x0, x1*x1
		a0 += x0
		a1 += x1
		c0 += q0 * x0
		c1 += q1 * x1
		d0 += q0 * q0
		d1 += q1 * q1
	}
	if i < len(row) {
		x := row[i]
		a0 += x
		c0 += x * x * x
		d0 += x * x * x * x
	}
	return float64(a0) + float64(a1), float64(c0) + float64(c1), float64(d0) + float64(d1)
}

// moments returns the standard deviation and the kurtosis (fourth standardised moment) of
// the finite values.
func (a *acc) moments() (std, kurt float64) {
	n := float64(a.n - a.nan - a.inf)
	if n < 2 {
		return math.NaN(), math.NaN()
	}
	// the mean and the third and fourth moments from the sampled rows, the variance from
	// every row
	n4 := float64(a.n34)
	if n4 == 0 {
		return math.NaN(), math.NaN()
	}
	mu := a.s1 / n4
	m2 := a.s2/n - mu*mu
	m2s := a.s2s/n4 - mu*mu
	m4 := a.s4/n4 - 4*mu*a.s3/n4 + 6*mu*mu*a.s2s/n4 - 3*mu*mu*mu*mu
	if m2s <= 0 {
		return math.Sqrt(math.Max(m2, 0)), math.NaN()
	}
	kurt = m4 / (m2s * m2s)
	if m2 <= 0 {
		return 0, kurt
	}
	return math.Sqrt(m2), kurt
}

func (p *pass) loc(i int) scan.Location {
	t := &p.m.Tensors[i]
	r := p.m.Roles[i]
	return scan.Location{File: t.File, Tensor: t.Name, Layer: r.Layer, Role: r.Role, ByteOffset: t.Offset, ByteLength: t.Length}
}

func (p *pass) Finish(ctx context.Context, emit scan.Emit) error {
	type member struct {
		i          int
		lstd, kurt float64
	}
	groups := map[string][]member{}
	for i, a := range p.acc {
		if a == nil || a.n == 0 {
			continue
		}
		t := &p.m.Tensors[i]
		if bad := a.nan + a.inf; bad > 0 {
			frac := float64(bad) / float64(a.n)
			sev, score := scan.Medium, math.Min(1, 0.6+frac)
			l := p.loc(i)
			if a.firstBad >= 0 {
				l.Axis, l.Index = "element", []int64{a.firstBad}
			}
			emit(scan.Finding{Rule: RuleNonFinite, Title: "NaN or infinite weights", Severity: sev, Score: score, Location: l,
				Evidence: map[string]any{"nan": a.nan, "inf": a.inf, "elements": a.n, "first_element": a.firstBad},
				Message:  fmt.Sprintf("%q holds %d NaN and %d infinite values among %d", t.Name, a.nan, a.inf, a.n)})
		}
		std, kurt := a.moments()
		r := p.m.Roles[i]
		if r.Layer >= 0 && r.Role != "" && r.Role != "other" && r.Kind == "weight" && std > 0 && len(t.Shape) >= 1 {
			key := fmt.Sprintf("%s|%s|%v", r.Role, r.Kind, t.Shape)
			groups[key] = append(groups[key], member{i, math.Log(std), kurt})
		}
		if err := p.neurons(i, a, emit); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := groups[k]
		if len(g) < minPeers {
			continue
		}
		ls, ks := make([]float64, len(g)), make([]float64, len(g))
		for j, mb := range g {
			ls[j], ks[j] = mb.lstd, math.Log(math.Max(mb.kurt, 1e-3))
		}
		for j, mb := range g {
			// floors: 10% in std, 20% in kurtosis: real layers differ at least that much
			zs := stats.RobustZ(ls[j], ls, 0.1)
			zk := stats.RobustZ(ks[j], ks, 0.2)
			if math.Abs(zs) < zLayer && math.Abs(zk) < zLayer {
				continue
			}
			t := &p.m.Tensors[mb.i]
			emit(scan.Finding{Rule: RuleLayerOutlier, Title: "tensor unlike the same role in other layers", Severity: scan.Low,
				Score: math.Min(0.9, 0.3+0.02*math.Max(math.Abs(zs), math.Abs(zk))), Location: p.loc(mb.i),
				Evidence: map[string]any{"std": round4(math.Exp(mb.lstd)), "kurtosis": round4(mb.kurt), "z_log_std": round4(zs), "z_log_kurtosis": round4(zk),
					"role_median_std": round4(math.Exp(stats.Median(ls))), "peers": len(g)},
				Message: fmt.Sprintf("%q (std %.4g, kurtosis %.3g) stands apart from the %d tensors of role %s (median std %.4g)",
					t.Name, math.Exp(mb.lstd), mb.kurt, len(g), p.m.Roles[mb.i].Role, math.Exp(stats.Median(ls)))})
		}
	}
	return nil
}

// neurons reports rows and columns whose norm is an extreme outlier in their tensor.
func (p *pass) neurons(i int, a *acc, emit scan.Emit) error {
	t := &p.m.Tensors[i]
	es := float64(t.DType.BlockBytes()) / float64(t.DType.BlockElems())
	rowBytes := int64(float64(t.RowLen()) * es)
	judge := func(ss []float64, axis string) {
		logs := make([]float64, len(ss))
		norms := make([]float64, len(ss))
		for j, v := range ss {
			norms[j] = math.Sqrt(v)
			logs[j] = math.Log(math.Max(norms[j], 1e-30))
		}
		med := stats.Median(norms)
		mdl, madl := stats.Median(logs), math.Max(stats.MAD(logs), 0.05)
		type hit struct {
			j int
			z float64
		}
		var hits []hit
		for j := range logs {
			z := (logs[j] - mdl) / madl
			if z >= zNeuron && norms[j] >= neuronRatio*med {
				hits = append(hits, hit{j, z})
			}
		}
		sort.Slice(hits, func(x, y int) bool { return hits[x].z > hits[y].z })
		for k, h := range hits {
			if k == maxPerTensor {
				break
			}
			l := p.loc(i)
			l.Axis, l.Index = axis, []int64{int64(h.j)}
			ev := map[string]any{"norm": round4(norms[h.j]), "median_norm": round4(med), "robust_z": round4(h.z), "outliers_in_tensor": len(hits)}
			rule, title := RuleRowOutlier, "neuron with an outlying weight norm (row)"
			if axis == "row" {
				l.ByteOffset, l.ByteLength = t.Offset+int64(h.j)*rowBytes, rowBytes
			} else {
				rule, title = RuleColOutlier, "input feature with an outlying weight norm (column)"
				be := int64(t.DType.BlockElems())
				l.ByteOffset = t.Offset + int64(h.j)/be*int64(t.DType.BlockBytes())
				l.ByteLength = int64(t.DType.BlockBytes())
				ev["stride_bytes"] = rowBytes
			}
			emit(scan.Finding{Rule: rule, Title: title, Severity: scan.Low, Score: math.Min(0.8, 0.3+0.01*h.z), Location: l, Evidence: ev,
				Message: fmt.Sprintf("%s %d of %q has norm %.4g, %.1f times the tensor's median %.4g (robust z %.1f)", axis, h.j, t.Name, norms[h.j], norms[h.j]/med, med, h.z)})
		}
	}
	if a.rowSS != nil {
		ss := make([]float64, len(a.rowSS))
		for j, v := range a.rowSS {
			ss[j] = float64(v)
		}
		judge(ss, "row")
	}
	if a.colSS != nil {
		judge(a.colSS, "col")
	}
	return nil
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }
