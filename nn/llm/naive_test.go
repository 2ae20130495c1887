package llm

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
)

// TestBiasesTiedNaive builds a small qwen2-style GGUF model (q/k/v biases, output tied to
// the embedding, 4 heads over 2 KV heads) and checks the runtime against a naive float64
// forward pass written here from the definitions, position by position without a cache.
func TestBiasesTiedNaive(t *testing.T) {
	const H, L, FF, heads, kvh, V = 32, 2, 48, 4, 2, 50
	D := H / heads
	rng := rand.New(rand.NewPCG(3, 3))
	type tensor struct {
		name  string
		shape []int64
		v     []float64
	}
	var ts []tensor
	add := func(name string, std float64, shape ...int64) []float64 {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(float32(rng.NormFloat64() * std))
		}
		ts = append(ts, tensor{name, shape, v})
		return v
	}
	ones := func(name string) []float64 {
		v := add(name, 0.1, H)
		for i := range v {
			v[i] = float64(float32(1 + v[i]))
		}
		return v
	}
	type lw struct{ an, fn, wq, wk, wv, wo, bq, bk, bv, wg, wu, wd []float64 }
	emb := add("token_embd.weight", 0.5, V, H)
	var lws []lw
	for l := 0; l < L; l++ {
		p := "blk." + string(rune('0'+l)) + "."
		var w lw
		w.an = ones(p + "attn_norm.weight")
		w.wq = add(p+"attn_q.weight", 0.3, H, H)
		w.bq = add(p+"attn_q.bias", 0.1, H)
		w.wk = add(p+"attn_k.weight", 0.3, int64(kvh*D), H)
		w.bk = add(p+"attn_k.bias", 0.1, int64(kvh*D))
		w.wv = add(p+"attn_v.weight", 0.3, int64(kvh*D), H)
		w.bv = add(p+"attn_v.bias", 0.1, int64(kvh*D))
		w.wo = add(p+"attn_output.weight", 0.3, H, H)
		w.fn = ones(p + "ffn_norm.weight")
		w.wg = add(p+"ffn_gate.weight", 0.3, FF, H)
		w.wu = add(p+"ffn_up.weight", 0.3, FF, H)
		w.wd = add(p+"ffn_down.weight", 0.2, H, FF)
		lws = append(lws, w)
	}
	norm := ones("output_norm.weight")
	var wt []gguf.WriteTensor
	for _, tt := range ts {
		b := make([]byte, 4*len(tt.v))
		for i, x := range tt.v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(x)))
		}
		wt = append(wt, gguf.WriteTensor{Name: tt.name, DType: formats.F32, Shape: tt.shape, Data: b})
	}
	kvs := []formats.KV{
		{Key: "general.architecture", Value: "qwen2"},
		{Key: "qwen2.embedding_length", Value: uint32(H)}, {Key: "qwen2.block_count", Value: uint32(L)},
		{Key: "qwen2.feed_forward_length", Value: uint32(FF)}, {Key: "qwen2.attention.head_count", Value: uint32(heads)},
		{Key: "qwen2.attention.head_count_kv", Value: uint32(kvh)}, {Key: "qwen2.rope.freq_base", Value: float32(1000)},
		{Key: "qwen2.attention.layer_norm_rms_epsilon", Value: float32(1e-6)},
	}
	var buf bytes.Buffer
	if err := gguf.Write(&buf, kvs, wt, nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "q.gguf")
	os.WriteFile(p, buf.Bytes(), 0o644)
	m, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{3, 17, 42, 8, 8, 29}
	got, err := m.Forward(m.NewState(len(ids)), ids, true)
	if err != nil {
		t.Fatal(err)
	}

	// naive float64 reference
	matvec := func(w []float64, x []float64, out int) []float64 {
		y := make([]float64, out)
		for o := range y {
			for i, xv := range x {
				y[o] += w[o*len(x)+i] * xv
			}
		}
		return y
	}
	rms := func(x, w []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(x))+1e-6)
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * s * w[i]
		}
		return y
	}
	// qwen2 GGUF: llama.cpp runs it with the NEOX rotation, pairs (i, i+D/2) within each
	// head, and its converter leaves the Q/K rows unpermuted (unlike llama's interleaved pairs).
	rope := func(v []float64, pos int) {
		for h := 0; h < len(v)/D; h++ {
			for i := 0; i < D/2; i++ {
				a := float64(pos) * math.Pow(1000, -2*float64(i)/float64(D))
				x0, x1 := v[h*D+i], v[h*D+i+D/2]
				v[h*D+i] = x0*math.Cos(a) - x1*math.Sin(a)
				v[h*D+i+D/2] = x0*math.Sin(a) + x1*math.Cos(a)
			}
		}
	}
	T := len(ids)
	x := make([][]float64, T)
	for t := range x {
		x[t] = append([]float64(nil), emb[ids[t]*H:(ids[t]+1)*H]...)
	}
	for _, w := range lws {
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := 0; t < T; t++ {
			xn := rms(x[t], w.an)
			qs[t], ks[t], vs[t] = matvec(w.wq, xn, H), matvec(w.wk, xn, kvh*D), matvec(w.wv, xn, kvh*D)
			for i := range qs[t] {
				qs[t][i] += w.bq[i]
			}
			for i := range ks[t] {
				ks[t][i] += w.bk[i]
				vs[t][i] += w.bv[i]
			}
			rope(qs[t], t)
			rope(ks[t], t)
		}
		for t := 0; t < T; t++ {
			att := make([]float64, H)
			for h := 0; h < heads; h++ {
				kh := h / (heads / kvh)
				sc := make([]float64, t+1)
				mx := math.Inf(-1)
				for j := 0; j <= t; j++ {
					for i := 0; i < D; i++ {
						sc[j] += qs[t][h*D+i] * ks[j][kh*D+i]
					}
					sc[j] /= math.Sqrt(float64(D))
					mx = math.Max(mx, sc[j])
				}
				var sum float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					sum += sc[j]
				}
				for j := range sc {
					for i := 0; i < D; i++ {
						att[h*D+i] += sc[j] / sum * vs[j][kh*D+i]
					}
				}
			}
			o := matvec(w.wo, att, H)
			for i := range o {
				x[t][i] += o[i]
			}
			xn := rms(x[t], w.fn)
			g, u := matvec(w.wg, xn, FF), matvec(w.wu, xn, FF)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := matvec(w.wd, g, H)
			for i := range d {
				x[t][i] += d[i]
			}
		}
	}
	var worst float64
	for pos := 0; pos < T; pos++ {
		want := matvec(emb, rms(x[pos], norm), V) // tied output
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(got[pos][i])-want[i]))
		}
	}
	t.Logf("max |runtime - naive float64| = %.2e", worst)
	if worst > 1e-3 {
		t.Errorf("runtime differs from the naive pass by %.3g", worst)
	}
}
