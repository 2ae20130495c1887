package ffn

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Plan is how a network was wired, with what was inferred from the tensors, given as an
// option or taken by default.
type Plan struct {
	Input         []int  // input shape (C, H, W or features)
	InputHow      string // "inferred ..." or "given"
	Activation    string // between layers (not after the last)
	ActivationHow string
	Pool          string // max or avg (convolutional networks)
	PoolHow       string
	Padding       string // the padding option ("" when inferred)
	Steps         []string
	Notes         []string

	conv bool
}

// Describe returns the plan as text, one line per step.
func (p *Plan) Describe() string {
	var b strings.Builder
	in := make([]string, len(p.Input))
	for i, d := range p.Input {
		in[i] = fmt.Sprint(d)
	}
	fmt.Fprintf(&b, "input %s (%s)\n", strings.Join(in, "×"), p.InputHow)
	fmt.Fprintf(&b, "activation %s (%s)\n", p.Activation, p.ActivationHow)
	if p.conv {
		fmt.Fprintf(&b, "pooling %s (%s)\n", p.Pool, p.PoolHow)
	}
	for _, s := range p.Steps {
		b.WriteString(s + "\n")
	}
	for _, s := range p.Notes {
		b.WriteString("note: " + s + "\n")
	}
	return b.String()
}

// choice is one convolution's padding and pooling in a candidate plan.
type choice struct {
	same, pool bool
}

type candidate struct {
	h, w   int
	steps  []choice
	floors int // poolings that drop an odd row or column
	pools  int
}

// better orders candidates by the prior Guess uses: no pixel lost to floor pooling, then
// pooling after more convolutions (conv-activation-pool blocks), then a conventional
// square input side, then the smaller input.
func (c candidate) better(d candidate) bool {
	if c.floors != d.floors {
		return c.floors < d.floors
	}
	if c.pools != d.pools {
		return c.pools > d.pools
	}
	if cs, ds := commonSide[c.h] && c.h == c.w, commonSide[d.h] && d.h == d.w; cs != ds {
		return cs
	}
	return c.h*c.w < d.h*d.w
}

// commonSide holds the input sides of widely used image datasets and model families (8×8
// digits, MNIST, CIFAR, STL, ImageNet crops, face crops): the prior for an input size the
// shapes leave open.
var commonSide = map[int]bool{8: true, 28: true, 32: true, 48: true, 55: true, 64: true, 96: true, 112: true, 128: true, 160: true, 224: true, 227: true, 256: true, 299: true}

func (c candidate) String(convs []*layer) string {
	parts := make([]string, len(c.steps))
	for i, s := range c.steps {
		p := "valid"
		if s.same {
			p = "same"
		}
		if s.pool {
			p += "+pool"
		}
		parts[i] = convs[i].name + " " + p
	}
	return fmt.Sprintf("input %d×%d×%d: %s", convs[0].in, c.h, c.w, strings.Join(parts, ", "))
}

// wire checks the chain, chooses the input shape and the convolution plan, and writes the plan.
func (n *Network) wire(opt Options) error {
	var convs, dense []*layer
	for _, l := range n.layers {
		if l.kind == convKind {
			convs = append(convs, l)
		} else {
			dense = append(dense, l)
		}
	}
	n.layers[len(n.layers)-1].last = true
	for i := 1; i < len(convs); i++ {
		if convs[i].in != convs[i-1].out {
			return fmt.Errorf("ffn: convolution %q takes %d channels but %q gives %d (not a chain: branches, or another order): %w",
				convs[i].name, convs[i].in, convs[i-1].name, convs[i-1].out, ErrUnsupported)
		}
	}
	for i := 1; i < len(dense); i++ {
		if dense[i].in != dense[i-1].out {
			return fmt.Errorf("ffn: dense layer %q takes %d inputs but %q gives %d (not a chain: branches, or another order): %w",
				dense[i].name, dense[i].in, dense[i-1].name, dense[i-1].out, ErrUnsupported)
		}
	}
	p := &n.plan
	if len(convs) == 0 {
		n.inSize = dense[0].in
		p.Input, p.InputHow = []int{n.inSize}, "inferred from the width of "+dense[0].name
		if len(opt.InputShape) > 0 {
			prod := 1
			for _, d := range opt.InputShape {
				if d <= 0 || d > maxActivation || prod > maxActivation/d {
					return fmt.Errorf("ffn: input shape %v: bad or oversized dimension: %w", opt.InputShape, ErrInvalid)
				}
				prod *= d
			}
			if prod != n.inSize {
				return fmt.Errorf("ffn: input shape %v has %d values but %q takes %d: %w", opt.InputShape, prod, dense[0].name, n.inSize, ErrInvalid)
			}
			p.Input, p.InputHow = append([]int(nil), opt.InputShape...), "given"
		}
	} else {
		if err := n.planConvs(convs, dense[0], opt); err != nil {
			return err
		}
	}
	n.maxAct = n.inSize
	for _, l := range n.layers {
		n.maxAct = max(n.maxAct, l.size(), l.out*l.ch*l.cw)
		if l.kind == convKind {
			n.maxCol = max(n.maxCol, colBlock(l)*l.in*l.kh*l.kw)
		}
	}
	n.steps(convs)
	if n.plan.ActivationHow != "given" {
		n.plan.Notes = append(n.plan.Notes, "the activation cannot be read from weights; give it if the network was not trained with "+n.plan.Activation)
	}
	return nil
}

func (n *Network) steps(convs []*layer) {
	p := &n.plan
	padHow := "inferred from shapes"
	if p.Padding != "" {
		padHow = "given"
	}
	for _, l := range n.layers {
		var b strings.Builder
		if l.kind == convKind {
			pad := "valid"
			if l.pt+l.pb+l.pl+l.pr > 0 {
				pad = "same"
			}
			fmt.Fprintf(&b, "conv %s: %d -> %d, %d×%d, stride 1 (assumed), padding %s (%s)", l.name, l.in, l.out, l.kh, l.kw, pad, padHow)
		} else {
			if len(convs) > 0 && l == n.layers[len(convs)] {
				fmt.Fprintf(&b, "flatten %d×%d×%d -> %d", convs[len(convs)-1].out, convs[len(convs)-1].oh, convs[len(convs)-1].ow, l.in)
				if l.keras {
					b.WriteString(" (Keras height-width-channel order, re-ordered to channel-major)")
				}
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "dense %s: %d -> %d", l.name, l.in, l.out)
		}
		if l.bn != "" {
			fmt.Fprintf(&b, ", batch norm %s (folded, eval mode)", l.bn)
		}
		if l.last {
			b.WriteString(" (output)")
		} else {
			b.WriteString(", " + p.Activation)
		}
		if l.kind == convKind {
			if l.pool == 2 {
				fmt.Fprintf(&b, ", %s pool 2×2 (position inferred)", p.Pool)
			}
			fmt.Fprintf(&b, " -> %d×%d×%d", l.out, l.oh, l.ow)
		}
		p.Steps = append(p.Steps, b.String())
	}
}

// planConvs chooses the input height and width (when not given), the padding and the pooling
// of each convolution so that the flattened output of the last one is the width of first.
func (n *Network) planConvs(convs []*layer, first *layer, opt Options) error {
	p := &n.plan
	p.conv = true
	c := convs[0].in
	var sizes [][2]int
	if len(opt.InputShape) > 0 {
		s := opt.InputShape
		if len(s) != 3 {
			return fmt.Errorf("ffn: input shape %v: a convolutional network takes C, H, W: %w", s, ErrInvalid)
		}
		if s[0] != c {
			return fmt.Errorf("ffn: input shape %v has %d channels but %q takes %d: %w", s, s[0], convs[0].name, c, ErrInvalid)
		}
		if s[1] <= 0 || s[2] <= 0 || s[1] > maxSide || s[2] > maxSide || c*s[1]*s[2] > maxActivation {
			return fmt.Errorf("ffn: input shape %v: height and width must be in 1..%d: %w", s, maxSide, ErrInvalid)
		}
		sizes = [][2]int{{s[1], s[2]}}
		p.InputHow = "given"
	} else {
		for s := 1; s <= searchSide; s++ {
			sizes = append(sizes, [2]int{s, s})
		}
		p.InputHow = fmt.Sprintf("C inferred from %s, square H×W inferred from shapes", convs[0].name)
	}
	search := func(useGaps bool) (int, []candidate) {
		total := 0
		var ex []candidate
		for _, hw := range sizes {
			k, e, _, _ := searchPlans(convs, hw[0], hw[1], first.in, opt.Padding, useGaps)
			total = satAdd(total, k)
			for _, x := range e {
				if len(ex) < 4 {
					ex = append(ex, x)
				}
			}
		}
		return total, ex
	}
	gaps := hasGaps(convs)
	total, ex := search(gaps)
	if gaps && total == 0 {
		gaps = false
		total, ex = search(false)
		p.Notes = append(p.Notes, "the nn.Sequential indices suggest pooling positions that do not fit the shapes; they were ignored")
	} else if gaps {
		p.Notes = append(p.Notes, "pooling positions inferred from the nn.Sequential indices (two or more parameterless modules after a convolution: activation and pooling)")
	}
	switch {
	case total == 0:
		return fmt.Errorf("ffn: no padding and pooling plan maps the input to the %d inputs of %q (last convolution %q has %d channels): %w",
			first.in, first.name, convs[len(convs)-1].name, convs[len(convs)-1].out, ErrInvalid)
	case total > 1 && opt.Guess:
		g, ok := guessPlan(convs, sizes, first.in, opt.Padding, gaps)
		if !ok {
			return fmt.Errorf("ffn: %d plans fit but none could be chosen: %w", total, ErrAmbiguous)
		}
		ex = []candidate{g}
		p.InputHow = fmt.Sprintf("guessed: %d padding and pooling plans fit the tensors; chosen by a prior (one padding for all convolutions, no pixel lost to pooling, pooling after each convolution, a common input side); give --input-shape and --padding to override", total)
		if len(opt.InputShape) > 0 {
			p.InputHow = fmt.Sprintf("given; padding and pooling guessed among %d plans that fit", total)
		}
		p.Notes = append(p.Notes, "wiring guessed: "+g.String(convs))
	case total > 1:
		alts := make([]string, len(ex))
		for i, e := range ex {
			alts[i] = e.String(convs)
		}
		more := ""
		if total > len(ex) {
			more = fmt.Sprintf("; and %d more", total-len(ex))
		}
		return fmt.Errorf("ffn: %d padding and pooling plans fit the tensors (%s%s): give the input shape and the padding (--input-shape, --padding): %w",
			total, strings.Join(alts, "; "), more, ErrAmbiguous)
	}
	cand := ex[0]
	n.inSize = c * cand.h * cand.w
	p.Input = []int{c, cand.h, cand.w}
	h, w := cand.h, cand.w
	for i, l := range convs {
		l.ih, l.iw = h, w
		if cand.steps[i].same {
			l.pt, l.pl = (l.kh-1)/2, (l.kw-1)/2
			l.pb, l.pr = l.kh-1-l.pt, l.kw-1-l.pl
		}
		l.ch, l.cw = h+l.pt+l.pb-l.kh+1, w+l.pl+l.pr-l.kw+1
		l.pool = 1
		if cand.steps[i].pool {
			l.pool = 2
		}
		l.oh, l.ow = l.ch/l.pool, l.cw/l.pool
		h, w = l.oh, l.ow
	}
	last := convs[len(convs)-1]
	if last.keras && first.keras {
		first.w = kerasFlatten(first.w, first.out, last.out, last.oh, last.ow)
	}
	return nil
}

// guessPlan picks one plan among those that fit: the best by candidate.better among plans
// with one padding for every convolution (same before valid on a tie), and among mixed
// paddings only when no uniform plan fits.
func guessPlan(convs []*layer, sizes [][2]int, want int, padding string, useGaps bool) (candidate, bool) {
	rounds := [][]string{{"same", "valid"}, {""}}
	if padding != "" {
		rounds = [][]string{{padding}}
	}
	for _, modes := range rounds {
		var best candidate
		found := false
		for _, mode := range modes {
			for _, hw := range sizes {
				_, _, b, ok := searchPlans(convs, hw[0], hw[1], want, mode, useGaps)
				if ok && (!found || b.better(best)) {
					best, found = b, true
				}
			}
		}
		if found {
			return best, true
		}
	}
	return candidate{}, false
}

// kerasFlatten re-orders the columns of a dense weight [out, H·W·C] (Keras flattening) to
// take a channel-major C·H·W input.
func kerasFlatten(w []float32, out, c, h, wd int) []float32 {
	in := c * h * wd
	r := make([]float32, len(w))
	for o := 0; o < out; o++ {
		for ch := 0; ch < c; ch++ {
			for y := 0; y < h; y++ {
				for x := 0; x < wd; x++ {
					r[o*in+(ch*h+y)*wd+x] = w[o*in+(y*wd+x)*c+ch]
				}
			}
		}
	}
	return r
}

// hasGaps reports whether consecutive convolutions sit in one nn.Sequential, so that the
// gaps between their indices tell where parameterless modules are.
func hasGaps(convs []*layer) bool {
	for i := 0; i+1 < len(convs); i++ {
		if convs[i].idx >= 0 && convs[i+1].idx >= 0 && convs[i].seq == convs[i+1].seq {
			return true
		}
	}
	return false
}

// poolChoices returns the pooling options of convolution i: fixed by the Sequential indices
// when useGaps and the next convolution is in the same Sequential, free otherwise.
func poolChoices(convs []*layer, i int, useGaps bool) []bool {
	if useGaps && i+1 < len(convs) {
		a, b := convs[i], convs[i+1]
		if a.idx >= 0 && b.idx >= 0 && a.seq == b.seq {
			last := a.idx
			if a.bnIdx > last {
				last = a.bnIdx
			}
			return []bool{b.idx-last-1 >= 2}
		}
	}
	return []bool{false, true}
}

// satCap is where plan counts saturate (1<<40 where int has 64 bits, 1<<30 on 32-bit
// platforms).
const satCap = 1 << (30 + 10*(^uint(0)>>63))

func satAdd(a, b int) int {
	if a > satCap-b {
		return satCap
	}
	return a + b
}

// searchPlans counts the plans that take an h×w input to want flattened values, by dynamic
// programming over the spatial size after each convolution, and returns up to two examples
// and the best plan by candidate.better (ok false when none fits).
func searchPlans(convs []*layer, h, w, want int, padding string, useGaps bool) (int, []candidate, candidate, bool) {
	type state struct {
		count int
		ex    []candidate
		best  candidate
	}
	cur := map[[2]int]*state{{h, w}: {count: 1, ex: []candidate{{h: h, w: w}}, best: candidate{h: h, w: w}}}
	for i, l := range convs {
		pads := []bool{false, true}
		switch {
		case padding == "same":
			pads = []bool{true}
		case padding == "valid" || (l.kh == 1 && l.kw == 1):
			pads = []bool{false}
		}
		next := map[[2]int]*state{}
		for _, hw := range sortedKeys(cur) {
			st := cur[hw]
			for _, same := range pads {
				ch, cw := hw[0]-l.kh+1, hw[1]-l.kw+1
				if same {
					ch, cw = hw[0], hw[1]
				}
				if ch < 1 || cw < 1 || l.out*ch > maxActivation/cw {
					continue
				}
				for _, pool := range poolChoices(convs, i, useGaps) {
					oh, ow := ch, cw
					if pool {
						oh, ow = ch/2, cw/2
					}
					if oh < 1 || ow < 1 {
						continue
					}
					key := [2]int{oh, ow}
					nb := st.best
					nb.steps = append(append([]choice(nil), nb.steps...), choice{same, pool})
					if pool {
						nb.pools++
						if ch%2 != 0 || cw%2 != 0 {
							nb.floors++
						}
					}
					ns := next[key]
					if ns == nil {
						ns = &state{best: nb}
						next[key] = ns
					} else if nb.better(ns.best) {
						ns.best = nb
					}
					ns.count = satAdd(ns.count, st.count)
					for _, e := range st.ex {
						if len(ns.ex) < 2 {
							steps := append(append([]choice(nil), e.steps...), choice{same, pool})
							ns.ex = append(ns.ex, candidate{h: h, w: w, steps: steps})
						}
					}
				}
			}
		}
		cur = next
	}
	last := convs[len(convs)-1].out
	total := 0
	var ex []candidate
	var best candidate
	ok := false
	for _, hw := range sortedKeys(cur) {
		st := cur[hw]
		if last*hw[0]*hw[1] == want {
			total = satAdd(total, st.count)
			ex = append(ex, st.ex...)
			if !ok || st.best.better(best) {
				best, ok = st.best, true
			}
		}
	}
	return total, ex, best, ok
}

func sortedKeys[V any](m map[[2]int]V) [][2]int {
	return slices.SortedFunc(maps.Keys(m), func(a, b [2]int) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
}
