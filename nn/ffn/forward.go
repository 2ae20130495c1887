package ffn

import (
	"fmt"
	"runtime"
	"sync"
)

// Predict returns the index of the largest logit (the first on ties), or -1 for none.
func Predict(logits []float32) int {
	best := -1
	for i, v := range logits {
		if best < 0 || v > logits[best] {
			best = i
		}
	}
	return best
}

// Forward returns the logits for one input, flattened C·H·W (or the features of a dense
// chain). It panics when len(x) is not InputSize (a caller bug).
func (n *Network) Forward(x []float32) []float32 {
	logits, _ := n.run(x, nil, false, n.scratch())
	return logits
}

// ForwardTrace returns the logits and the output of every hidden layer (after activation and
// pooling; one slice per layer but the last, flattened C·H·W for convolutions), with one
// hidden value overridden when stim is not nil. It panics when stim names no hidden neuron.
func (n *Network) ForwardTrace(x []float32, stim *Stimulus) (logits []float32, hidden [][]float32) {
	if stim != nil && (stim.Layer < 0 || stim.Layer >= len(n.layers)-1 || stim.Neuron < 0 || stim.Neuron >= n.layers[stim.Layer].out) {
		panic(fmt.Sprintf("ffn: stimulus layer %d neuron %d is not a hidden neuron", stim.Layer, stim.Neuron))
	}
	return n.run(x, stim, true, n.scratch())
}

// ForwardBatch returns the logits of every input, computed by workers goroutines
// (GOMAXPROCS when workers ≤ 0).
func (n *Network) ForwardBatch(xs [][]float32, workers int) [][]float32 {
	out := make([][]float32, len(xs))
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(xs))
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	const chunk = 16
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := n.scratch()
			for {
				mu.Lock()
				lo := next
				next += chunk
				mu.Unlock()
				if lo >= len(xs) {
					return
				}
				for i := lo; i < min(lo+chunk, len(xs)); i++ {
					out[i], _ = n.run(xs[i], nil, false, buf)
				}
			}
		}()
	}
	wg.Wait()
	return out
}

type scratch struct{ a, b, col []float32 }

func (n *Network) scratch() *scratch {
	return &scratch{make([]float32, n.maxAct), make([]float32, n.maxAct), make([]float32, n.maxCol)}
}

func (n *Network) run(x []float32, stim *Stimulus, trace bool, s *scratch) ([]float32, [][]float32) {
	if len(x) != n.inSize {
		panic(fmt.Sprintf("ffn: input of %d values, want %d", len(x), n.inSize))
	}
	var hidden [][]float32
	cur := s.a[:len(x)]
	copy(cur, x)
	other := s.b
	for li, l := range n.layers {
		var y []float32
		if l.kind == convKind {
			y = conv(l, cur, other, s.col)
		} else {
			y = other[:l.out]
			dense(l, cur, y)
		}
		if !l.last {
			if n.act != nil {
				for i, v := range y {
					y[i] = n.act(v)
				}
			}
			if l.kind == convKind && l.pool == 2 {
				y = pool(y, l.out, l.ch, l.cw, n.plan.Pool == "avg")
			}
			if stim != nil && stim.Layer == li {
				per := len(y) / l.out
				for i := range y[stim.Neuron*per : (stim.Neuron+1)*per] {
					y[stim.Neuron*per+i] = stim.Value
				}
			}
			if trace {
				hidden = append(hidden, append([]float32(nil), y...))
			}
		}
		// y lives in other's array; swap the buffers.
		cur, other = y, cur[:cap(cur)]
	}
	return append([]float32(nil), cur...), hidden
}

// dense computes y = W·x + b.
func dense(l *layer, x, y []float32) {
	in := l.in
	x = x[:in:in]
	for o := range y {
		y[o] = l.b[o] + dot(l.w[o*in:(o+1)*in:(o+1)*in], x)
	}
}

// dot returns Σ a[i]·b[i] over len(a) (b at least as long), with four accumulators.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// colBudget bounds the im2col buffer (in values) when a layer has many output positions.
var colBudget = 1 << 20

// colBlock is the number of output positions conv gathers at once for a layer.
func colBlock(l *layer) int {
	k := l.in * l.kh * l.kw
	return max(1, min(l.ch*l.cw, colBudget/k))
}

// conv computes the stride-1 convolution of x [in, ih, iw] with zero padding into buf,
// returning the [out, ch, cw] result. It gathers the receptive fields of a block of output
// positions into the rows of col (im2col, [positions, in·kh·kw]) and takes one dot product
// per output channel and position, since the weights of an output channel are contiguous in
// the same order.
func conv(l *layer, x, buf, col []float32) []float32 {
	H, W, OH, OW := l.ih, l.iw, l.ch, l.cw
	K, P := l.in*l.kh*l.kw, OH*OW
	y := buf[:l.out*P]
	blk := colBlock(l)
	for p0 := 0; p0 < P; p0 += blk {
		p1 := min(P, p0+blk)
		for p := p0; p < p1; p++ {
			oy, ox := p/OW, p%OW
			row := col[(p-p0)*K : (p-p0+1)*K]
			k := 0
			for c := 0; c < l.in; c++ {
				src := x[c*H*W : (c+1)*H*W]
				for ky := 0; ky < l.kh; ky++ {
					iy := oy + ky - l.pt
					if iy < 0 || iy >= H {
						clear(row[k : k+l.kw])
						k += l.kw
						continue
					}
					ix := ox - l.pl
					for kx := 0; kx < l.kw; kx++ {
						if ix+kx < 0 || ix+kx >= W {
							row[k] = 0
						} else {
							row[k] = src[iy*W+ix+kx]
						}
						k++
					}
				}
			}
		}
		for o := 0; o < l.out; o++ {
			w := l.w[o*K : (o+1)*K : (o+1)*K]
			plane := y[o*P+p0 : o*P+p1]
			for i := range plane {
				plane[i] = l.b[o] + dot(w, col[i*K:(i+1)*K:(i+1)*K])
			}
		}
	}
	return y
}

// pool applies 2×2 stride-2 pooling (floor) to y [c, h, w] in place and returns the
// [c, h/2, w/2] result. Each output index is at most the smallest index it reads, and reads
// of later outputs lie beyond it, so in-place is safe.
func pool(y []float32, c, h, w int, avg bool) []float32 {
	ph, pw := h/2, w/2
	for ch := 0; ch < c; ch++ {
		for py := 0; py < ph; py++ {
			for px := 0; px < pw; px++ {
				base := (ch*h+2*py)*w + 2*px
				a, b, d, e := y[base], y[base+1], y[base+w], y[base+w+1]
				var v float32
				if avg {
					v = (a + b + d + e) / 4
				} else {
					v = max(a, b, d, e)
				}
				y[(ch*ph+py)*pw+px] = v
			}
		}
	}
	return y[:c*ph*pw]
}
