package ffn

import (
	"math"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

// The independent route: a float64 interpreter of a hand-written architecture that reads
// each tensor by name at every use, in its stored layout (no transposition, no folding), so
// that it shares no code with the package.

type nstep struct {
	kind  string // "conv" or "dense"
	name  string // tensor prefix
	pad   int    // conv: symmetric zero padding
	pool  string // conv: "", "max" or "avg" (2×2)
	bn    string // prefix of a BatchNorm applied before the activation, or ""
	keras bool
}

type narch struct {
	steps   []nstep
	act     func(float64) float64
	c, h, w int
}

func ntensor(t testing.TB, m *formats.Model, name string) ([]float64, []int64) {
	t.Helper()
	ti := m.Tensor(name)
	if ti == nil {
		t.Fatalf("naive: no tensor %q", name)
	}
	r, err := m.NewTensorReader(ti)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, ti.Elements())
	if err := r.ReadElements(0, v); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i, f := range v {
		out[i] = float64(f)
	}
	return out, ti.Shape
}

func pname(s nstep, p string) string {
	if s.keras {
		return s.name + "/" + map[string]string{"w": "kernel", "b": "bias", "g": "gamma", "be": "beta", "m": "moving_mean", "v": "moving_variance"}[p] + ":0"
	}
	return s.name + "." + map[string]string{"w": "weight", "b": "bias", "g": "weight", "be": "bias", "m": "running_mean", "v": "running_var"}[p]
}

// naive runs arch on x (C·H·W) and returns the logits.
func naive(t testing.TB, m *formats.Model, a narch, x []float64) []float64 {
	t.Helper()
	c, h, w := a.c, a.h, a.w
	cur := append([]float64(nil), x...)
	keras := false
	for si, s := range a.steps {
		last := si == len(a.steps)-1
		wt, shape := ntensor(t, m, pname(s, "w"))
		b, _ := ntensor(t, m, pname(s, "b"))
		var out []float64
		switch s.kind {
		case "conv":
			keras = s.keras
			var O, I, K int
			if s.keras {
				K, I, O = int(shape[0]), int(shape[2]), int(shape[3])
			} else {
				O, I, K = int(shape[0]), int(shape[1]), int(shape[2])
			}
			if I != c {
				t.Fatalf("naive: %s takes %d channels, have %d", s.name, I, c)
			}
			oh, ow := h+2*s.pad-K+1, w+2*s.pad-K+1
			out = make([]float64, O*oh*ow)
			for o := 0; o < O; o++ {
				for y := 0; y < oh; y++ {
					for xx := 0; xx < ow; xx++ {
						sum := b[o]
						for i := 0; i < I; i++ {
							for ky := 0; ky < K; ky++ {
								for kx := 0; kx < K; kx++ {
									iy, ix := y+ky-s.pad, xx+kx-s.pad
									if iy < 0 || ix < 0 || iy >= h || ix >= w {
										continue
									}
									var wv float64
									if s.keras {
										wv = wt[((ky*K+kx)*I+i)*O+o]
									} else {
										wv = wt[((o*I+i)*K+ky)*K+kx]
									}
									sum += wv * cur[(i*h+iy)*w+ix]
								}
							}
						}
						out[(o*oh+y)*ow+xx] = sum
					}
				}
			}
			c, h, w = O, oh, ow
		case "dense":
			var O, I int
			if s.keras {
				I, O = int(shape[0]), int(shape[1])
			} else {
				O, I = int(shape[0]), int(shape[1])
			}
			if I != len(cur) {
				t.Fatalf("naive: %s takes %d inputs, have %d", s.name, I, len(cur))
			}
			in := cur
			if keras && h*w > 1 { // Keras flattens height, width, channel
				in = make([]float64, len(cur))
				for ch := 0; ch < c; ch++ {
					for y := 0; y < h; y++ {
						for xx := 0; xx < w; xx++ {
							in[(y*w+xx)*c+ch] = cur[(ch*h+y)*w+xx]
						}
					}
				}
			}
			out = make([]float64, O)
			for o := 0; o < O; o++ {
				sum := b[o]
				for i := 0; i < I; i++ {
					if s.keras {
						sum += wt[i*O+o] * in[i]
					} else {
						sum += wt[o*I+i] * in[i]
					}
				}
				out[o] = sum
			}
			c, h, w = O, 1, 1
		}
		if s.bn != "" {
			bs := nstep{name: s.bn, keras: s.keras}
			g, _ := ntensor(t, m, pname(bs, "g"))
			be, _ := ntensor(t, m, pname(bs, "be"))
			mu, _ := ntensor(t, m, pname(bs, "m"))
			vr, _ := ntensor(t, m, pname(bs, "v"))
			eps := 1e-5
			if s.keras {
				eps = 1e-3
			}
			per := len(out) / c
			for i := range out {
				ch := i / per
				out[i] = (out[i]-mu[ch])/math.Sqrt(vr[ch]+eps)*g[ch] + be[ch]
			}
		}
		if !last {
			for i := range out {
				out[i] = a.act(out[i])
			}
		}
		if s.pool != "" {
			ph, pw := h/2, w/2
			p := make([]float64, c*ph*pw)
			for ch := 0; ch < c; ch++ {
				for y := 0; y < ph; y++ {
					for xx := 0; xx < pw; xx++ {
						v := []float64{out[(ch*h+2*y)*w+2*xx], out[(ch*h+2*y)*w+2*xx+1], out[(ch*h+2*y+1)*w+2*xx], out[(ch*h+2*y+1)*w+2*xx+1]}
						var r float64
						if s.pool == "avg" {
							r = (v[0] + v[1] + v[2] + v[3]) / 4
						} else {
							r = math.Max(math.Max(v[0], v[1]), math.Max(v[2], v[3]))
						}
						p[(ch*ph+y)*pw+xx] = r
					}
				}
			}
			out, h, w = p, ph, pw
		}
		cur = out
	}
	return cur
}

func nrelu(x float64) float64 { return math.Max(x, 0) }
func ntanh(x float64) float64 { return math.Tanh(x) }
