package ffn

import (
	"fmt"
	"math"

	"github.com/kensa-scan/kensa/stats"
)

// Gradient returns the logits for x and the gradient of a loss with respect to x: dLoss
// receives the logits and returns the loss's gradient with respect to them (dy), and the
// result is the gradient of Σ_c dy[c]·logit_c, in reverse mode through every layer (the
// activation's derivative at each unit, the input the max pool chose, the convolutions'
// transposes). It panics when len(x) is not InputSize or dy's length is not Classes (a
// caller bug).
func (n *Network) Gradient(x []float32, dLoss func(logits []float32) []float32) (logits, dx []float32) {
	if len(x) != n.inSize {
		panic(fmt.Sprintf("ffn: gradient of %d inputs, want %d", len(x), n.inSize))
	}
	deriv := derivative(n.plan.Activation)
	avg := n.plan.Pool == "avg"
	type saved struct{ in, pre, act []float32 } // layer input; output before activation; after activation, before pooling
	tape := make([]saved, len(n.layers))
	s := n.scratch()
	cur := append([]float32(nil), x...)
	for li, l := range n.layers {
		var y []float32
		if l.kind == convKind {
			y = append([]float32(nil), conv(l, cur, s.b, s.col)...)
		} else {
			y = make([]float32, l.out)
			dense(l, cur, y)
		}
		tape[li] = saved{in: cur, pre: y}
		if l.last {
			cur = y
			break
		}
		a := y
		if n.act != nil {
			a = make([]float32, len(y))
			for i, v := range y {
				a[i] = n.act(v)
			}
		}
		tape[li].act = a
		cur = a
		if l.kind == convKind && l.pool == 2 {
			cur = pool(append([]float32(nil), a...), l.out, l.ch, l.cw, avg)
		}
	}
	logits = cur

	dy := dLoss(logits)
	if len(dy) != len(logits) {
		panic(fmt.Sprintf("ffn: loss gradient of %d values for %d logits", len(dy), len(logits)))
	}
	g := append([]float32(nil), dy...)
	for li := len(n.layers) - 1; li >= 0; li-- {
		l, t := n.layers[li], tape[li]
		if !l.last {
			if l.kind == convKind && l.pool == 2 {
				g = unpool(g, t.act, l.out, l.ch, l.cw, avg)
			}
			if deriv != nil {
				for i := range g {
					g[i] *= deriv(t.pre[i], t.act[i])
				}
			}
		}
		dx := make([]float32, len(t.in))
		if l.kind == convKind {
			convBack(l, g, dx)
		} else {
			for o, go_ := range g {
				if go_ == 0 {
					continue
				}
				w := l.w[o*l.in : (o+1)*l.in]
				for i, wv := range w {
					dx[i] += wv * go_
				}
			}
		}
		g = dx
	}
	return logits, g
}

// unpool sends the gradient of a 2×2 stride-2 pooling's output back to its input [c, h, w]:
// a quarter to each input for the average, all of it to the input the max chose (the first
// largest, as pool does); rows and columns floor pooling dropped get none.
func unpool(g, a []float32, c, h, w int, avg bool) []float32 {
	ph, pw := h/2, w/2
	out := make([]float32, c*h*w)
	for ch := 0; ch < c; ch++ {
		for py := 0; py < ph; py++ {
			for px := 0; px < pw; px++ {
				v := g[(ch*ph+py)*pw+px]
				base := (ch*h+2*py)*w + 2*px
				idx := [4]int{base, base + 1, base + w, base + w + 1}
				if avg {
					for _, i := range idx {
						out[i] += v / 4
					}
					continue
				}
				best := idx[0]
				for _, i := range idx[1:] {
					if a[i] > a[best] {
						best = i
					}
				}
				out[best] += v
			}
		}
	}
	return out
}

// convBack adds to dx [in, ih, iw] the gradient of conv's input for the output gradient g
// [out, ch, cw].
func convBack(l *layer, g, dx []float32) {
	H, W, OH, OW := l.ih, l.iw, l.ch, l.cw
	K := l.in * l.kh * l.kw
	for o := 0; o < l.out; o++ {
		w := l.w[o*K : (o+1)*K]
		for oy := 0; oy < OH; oy++ {
			for ox := 0; ox < OW; ox++ {
				gv := g[(o*OH+oy)*OW+ox]
				if gv == 0 {
					continue
				}
				k := 0
				for c := 0; c < l.in; c++ {
					for ky := 0; ky < l.kh; ky++ {
						iy := oy + ky - l.pt
						if iy < 0 || iy >= H {
							k += l.kw
							continue
						}
						for kx := 0; kx < l.kw; kx++ {
							if ix := ox + kx - l.pl; ix >= 0 && ix < W {
								dx[(c*H+iy)*W+ix] += w[k] * gv
							}
							k++
						}
					}
				}
			}
		}
	}
}

// derivative returns the activation's derivative from a unit's input z and output y, or nil
// for the identity.
func derivative(name string) func(z, y float32) float32 {
	switch name {
	case "relu":
		return func(z, _ float32) float32 {
			if z > 0 {
				return 1
			}
			return 0
		}
	case "leaky_relu":
		return func(z, _ float32) float32 {
			if z < 0 {
				return 0.01
			}
			return 1
		}
	case "tanh":
		return func(_, y float32) float32 { return 1 - y*y }
	case "sigmoid":
		return func(_, y float32) float32 { return y * (1 - y) }
	case "gelu":
		return func(z, _ float32) float32 {
			x := float64(z)
			return float32(0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi))
		}
	}
	return nil
}

// Linear returns the network with the identity between layers and average pooling: the
// same weights (shared, not copied), every nonlinearity removed. Its input gradient is the
// same everywhere: how each input feature moves each logit through the weights alone.
func (n *Network) Linear() *Network {
	c := *n
	c.act = nil
	c.plan.Activation, c.plan.ActivationHow = "none", "linearized"
	c.plan.Pool, c.plan.PoolHow = "avg", "linearized"
	return &c
}

// Templates returns, for each class, the gradient of its logit with respect to the input in
// the linearized network (Linear): a map of which input features raise the class, read from
// the weights alone. It costs one backward pass per class.
func (n *Network) Templates() [][]float32 {
	lin := n.Linear()
	k := n.Classes()
	x := make([]float32, n.inSize)
	out := make([][]float32, k)
	dy := make([]float32, k)
	for c := range out {
		clear(dy)
		dy[c] = 1
		_, out[c] = lin.Gradient(x, func([]float32) []float32 { return dy })
	}
	return out
}

// Bounds of the template pass (Templates, TemplatePeaks): the backward passes' arithmetic
// (classes × one forward's multiply-adds) and the values held (classes × inputs).
const (
	MaxTemplateFLOPs  = 20e9
	MaxTemplateValues = 1 << 24
)

// TemplatesFit reports whether the template pass stays within MaxTemplateFLOPs and
// MaxTemplateValues, so that a hostile or huge network cannot make it run for hours or
// allocate gigabytes.
func (n *Network) TemplatesFit() bool {
	k := n.Classes()
	return float64(n.FLOPs())*float64(k) <= MaxTemplateFLOPs && int64(k)*int64(n.inSize) <= MaxTemplateValues
}

// TemplatePeaks summarizes the class templates (Templates): each input feature is centred
// across classes (its median over classes subtracted), and each class's peak is its largest
// centred value, at feature at[c]. A class whose peak stands far above the others' is driven
// by some input pattern that drives no other class. spread is the robust standard deviation
// (1.4826·MAD) of all the centred values: the scale below which differences between peaks
// are noise.
func (n *Network) TemplatePeaks() (peak []float64, at []int, spread float64) {
	T := n.Templates()
	k := len(T)
	peak, at = make([]float64, k), make([]int, k)
	for c := range peak {
		peak[c] = math.Inf(-1)
	}
	all := make([]float64, 0, k*n.inSize)
	col := make([]float64, k)
	for j := 0; j < n.inSize; j++ {
		for c := range col {
			col[c] = float64(T[c][j])
		}
		md := stats.Median(col)
		for c, v := range col {
			all = append(all, v-md)
			if v-md > peak[c] {
				peak[c], at[c] = v-md, j
			}
		}
	}
	return peak, at, stats.MAD(all)
}

// CrossEntropy returns the gradient, with respect to the logits, of the cross-entropy of
// class c (−log softmax_c): softmax − onehot(c). Pass it to Gradient to descend toward c.
func CrossEntropy(c int) func(logits []float32) []float32 {
	return func(logits []float32) []float32 {
		p := Softmax(logits)
		p[c]--
		return p
	}
}

// Softmax returns the softmax of the logits.
func Softmax(logits []float32) []float32 {
	mx := logits[0]
	for _, v := range logits {
		mx = max(mx, v)
	}
	p := make([]float32, len(logits))
	var s float64
	for i, v := range logits {
		e := math.Exp(float64(v - mx))
		p[i] = float32(e)
		s += e
	}
	for i := range p {
		p[i] = float32(float64(p[i]) / s)
	}
	return p
}

// FLOPs returns the multiply-adds of one forward pass (dense and convolution layers).
func (n *Network) FLOPs() int64 {
	var f int64
	for _, l := range n.layers {
		if l.kind == convKind {
			f += int64(l.out) * int64(l.ch*l.cw) * int64(l.in*l.kh*l.kw)
		} else {
			f += int64(l.out) * int64(l.in)
		}
	}
	return f
}
