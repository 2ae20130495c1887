package llama

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
)

// synth describes a random-weight model written with the GGUF writer.
type synth struct {
	arch                                    string
	hidden, layers, ff, heads, kvHeads, voc int
	biases, tied                            bool
	dtype                                   formats.DType // of the matrices: F32, F16 or Q8_0
}

// encode stores vals as d (F32, F16 or Q8_0 with rows of a multiple of 32).
func encode(d formats.DType, vals []float32) []byte {
	switch d {
	case formats.F32:
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b
	case formats.Q8_0:
		return quantizeQ8_0(vals)
	}
	panic("encode: " + d.String())
}

// quantizeQ8_0 stores blocks of 32 values as an f16 scale d = max|x|/127 and 32 int8
// round(x/d).
func quantizeQ8_0(vals []float32) []byte {
	out := make([]byte, 0, len(vals)/32*34)
	for i := 0; i < len(vals); i += 32 {
		blk := vals[i : i+32]
		var amax float32
		for _, v := range blk {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		h := f16bits(d)
		out = binary.LittleEndian.AppendUint16(out, h)
		id := float32(0)
		if d != 0 {
			id = 1 / d
		}
		for _, v := range blk {
			out = append(out, byte(int8(math.Round(float64(v*id)))))
		}
	}
	return out
}

// f16bits converts a float32 in the normal f16 range (or 0) to IEEE half bits, rounding to
// nearest even.
func f16bits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	if b&0x7fffffff == 0 || exp <= 0 {
		return sign
	}
	if exp >= 31 {
		return sign | 0x7c00
	}
	h := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && h&1 == 1 {
		h++
	}
	return sign | uint16(h)
}

func (s synth) write(t *testing.T, seed uint64) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	hd := s.hidden / s.heads
	rnd := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	var ts []gguf.WriteTensor
	mat := func(name string, rows, cols int) {
		ts = append(ts, gguf.WriteTensor{Name: name, DType: s.dtype, Shape: []int64{int64(rows), int64(cols)},
			Data: encode(s.dtype, rnd(rows*cols, 1/math.Sqrt(float64(cols))))})
	}
	vec := func(name string, n int, mean, scale float64) {
		v := rnd(n, scale)
		for i := range v {
			v[i] += float32(mean)
		}
		ts = append(ts, gguf.WriteTensor{Name: name, DType: formats.F32, Shape: []int64{int64(n)}, Data: encode(formats.F32, v)})
	}
	mat("token_embd.weight", s.voc, s.hidden)
	vec("output_norm.weight", s.hidden, 1, 0.1)
	if !s.tied {
		mat("output.weight", s.voc, s.hidden)
	}
	for l := 0; l < s.layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		vec(p+"attn_norm.weight", s.hidden, 1, 0.1)
		mat(p+"attn_q.weight", s.heads*hd, s.hidden)
		mat(p+"attn_k.weight", s.kvHeads*hd, s.hidden)
		mat(p+"attn_v.weight", s.kvHeads*hd, s.hidden)
		if s.biases {
			vec(p+"attn_q.bias", s.heads*hd, 0, 0.5)
			vec(p+"attn_k.bias", s.kvHeads*hd, 0, 0.5)
			vec(p+"attn_v.bias", s.kvHeads*hd, 0, 0.5)
		}
		mat(p+"attn_output.weight", s.hidden, s.heads*hd)
		vec(p+"ffn_norm.weight", s.hidden, 1, 0.1)
		mat(p+"ffn_gate.weight", s.ff, s.hidden)
		mat(p+"ffn_up.weight", s.ff, s.hidden)
		mat(p+"ffn_down.weight", s.hidden, s.ff)
	}
	a := s.arch
	kvs := []formats.KV{
		{Key: "general.architecture", Value: a},
		{Key: a + ".embedding_length", Value: uint32(s.hidden)},
		{Key: a + ".block_count", Value: uint32(s.layers)},
		{Key: a + ".feed_forward_length", Value: uint32(s.ff)},
		{Key: a + ".attention.head_count", Value: uint32(s.heads)},
		{Key: a + ".attention.head_count_kv", Value: uint32(s.kvHeads)},
		{Key: a + ".attention.layer_norm_rms_epsilon", Value: float32(1e-6)},
		{Key: a + ".rope.freq_base", Value: float32(1000)},
		{Key: a + ".context_length", Value: uint32(64)},
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := gguf.Write(f, kvs, ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// naiveForward is an independent float64 forward pass straight from the GGUF tensors: every
// position recomputed from scratch with full causal attention, RoPE on interleaved pairs for
// llama and on half-rotated pairs for qwen2. It returns the logits of every position.
func naiveForward(t *testing.T, path string, ids []int) [][]float64 {
	t.Helper()
	fm, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	get := func(name string) ([]float64, []int64) {
		ti := fm.Tensor(name)
		if ti == nil {
			return nil, nil
		}
		r, err := fm.NewTensorReader(ti)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, ti.Elements())
		if err := r.ReadElements(0, v); err != nil {
			t.Fatal(err)
		}
		w := make([]float64, len(v))
		for i := range v {
			w[i] = float64(v[i])
		}
		return w, ti.Shape
	}
	meta := func(key string) float64 {
		v, _ := fm.Meta(key)
		switch x := v.(type) {
		case uint32:
			return float64(x)
		case float32:
			return float64(x)
		}
		t.Fatalf("metadata %s: %T", key, v)
		return 0
	}
	av, _ := fm.Meta("general.architecture")
	arch := av.(string)
	H := int(meta(arch + ".embedding_length"))
	L := int(meta(arch + ".block_count"))
	nh := int(meta(arch + ".attention.head_count"))
	nkv := int(meta(arch + ".attention.head_count_kv"))
	eps := meta(arch + ".attention.layer_norm_rms_epsilon")
	base := meta(arch + ".rope.freq_base")
	hd := H / nh
	emb, es := get("token_embd.weight")
	V := int(es[0])
	out, _ := get("output.weight")
	if out == nil {
		out = emb
	}
	// matvec: y = W x for W [rows, len(x)]
	matvec := func(w []float64, x []float64) []float64 {
		y := make([]float64, len(w)/len(x))
		for i := range y {
			for j, xv := range x {
				y[i] += w[i*len(x)+j] * xv
			}
		}
		return y
	}
	norm := func(x, w []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(len(x))+eps)
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * r * w[i]
		}
		return y
	}
	rot := func(v []float64, pos int) {
		for i := 0; i < hd/2; i++ {
			th := float64(pos) * math.Pow(base, -2*float64(i)/float64(hd))
			a, b := 2*i, 2*i+1
			if arch == "qwen2" {
				a, b = i, i+hd/2
			}
			x0, x1 := v[a], v[b]
			v[a] = x0*math.Cos(th) - x1*math.Sin(th)
			v[b] = x0*math.Sin(th) + x1*math.Cos(th)
		}
	}
	T := len(ids)
	x := make([][]float64, T)
	for p, id := range ids {
		x[p] = append([]float64(nil), emb[id*H:(id+1)*H]...)
	}
	for l := 0; l < L; l++ {
		w := func(s string) []float64 { v, _ := get(fmt.Sprintf("blk.%d.%s", l, s)); return v }
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for p := 0; p < T; p++ {
			xn := norm(x[p], w("attn_norm.weight"))
			q[p], k[p], v[p] = matvec(w("attn_q.weight"), xn), matvec(w("attn_k.weight"), xn), matvec(w("attn_v.weight"), xn)
			for _, z := range []struct{ y, b []float64 }{{q[p], w("attn_q.bias")}, {k[p], w("attn_k.bias")}, {v[p], w("attn_v.bias")}} {
				for i := range z.b {
					z.y[i] += z.b[i]
				}
			}
			for h := 0; h < nh; h++ {
				rot(q[p][h*hd:(h+1)*hd], p)
			}
			for h := 0; h < nkv; h++ {
				rot(k[p][h*hd:(h+1)*hd], p)
			}
		}
		for p := 0; p < T; p++ {
			att := make([]float64, nh*hd)
			for h := 0; h < nh; h++ {
				kh := h * nkv / nh
				sc := make([]float64, p+1)
				var mx = math.Inf(-1)
				for j := 0; j <= p; j++ {
					for d := 0; d < hd; d++ {
						sc[j] += q[p][h*hd+d] * k[j][kh*hd+d]
					}
					sc[j] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[j])
				}
				var sum float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					sum += sc[j]
				}
				for j := range sc {
					for d := 0; d < hd; d++ {
						att[h*hd+d] += sc[j] / sum * v[j][kh*hd+d]
					}
				}
			}
			o := matvec(w("attn_output.weight"), att)
			for i := range o {
				x[p][i] += o[i]
			}
			xn := norm(x[p], w("ffn_norm.weight"))
			g, u := matvec(w("ffn_gate.weight"), xn), matvec(w("ffn_up.weight"), xn)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := matvec(w("ffn_down.weight"), g)
			for i := range d {
				x[p][i] += d[i]
			}
		}
	}
	on, _ := get("output_norm.weight")
	logits := make([][]float64, T)
	for p := range x {
		logits[p] = matvec(out, norm(x[p], on))
		if len(logits[p]) != V {
			t.Fatalf("naive: %d logits, want %d", len(logits[p]), V)
		}
	}
	return logits
}

func TestSyntheticNaive(t *testing.T) {
	tests := []struct {
		name string
		s    synth
		tol  float64
	}{
		{"qwen2 biases tied GQA", synth{"qwen2", 64, 2, 96, 4, 2, 80, true, true, formats.F32}, 1e-4},
		{"llama separate head MQA", synth{"llama", 64, 2, 96, 8, 1, 80, false, false, formats.F32}, 1e-4},
		{"llama Q8_0 biases", synth{"llama", 64, 3, 128, 4, 4, 96, true, false, formats.Q8_0}, 1e-4},
		{"mistral tied", synth{"mistral", 32, 1, 64, 2, 1, 50, false, true, formats.F32}, 1e-4},
	}
	ids := []int{1, 7, 30, 2, 44, 13, 9, 0, 21, 5, 33}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.s.write(t, uint64(i+1))
			want := naiveForward(t, path, ids)
			m, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if m.Config.Biases != tt.s.biases || m.Config.Tied != tt.s.tied {
				t.Errorf("config biases=%v tied=%v, want %v %v", m.Config.Biases, m.Config.Tied, tt.s.biases, tt.s.tied)
			}
			defer func(p int) { parallelMin = p }(parallelMin)
			for _, workers := range []int{1, 3} {
				m.Workers = workers
				parallelMin = 1 // split even these small products
				got, err := m.Forward(m.NewState(0), ids, true)
				if err != nil {
					t.Fatal(err)
				}
				var worst float64
				for p := range want {
					for j := range want[p] {
						worst = max(worst, math.Abs(float64(got[p][j])-want[p][j]))
					}
				}
				t.Logf("workers=%d: max |Δlogit| vs naive float64 = %.3g", workers, worst)
				if !(worst <= tt.tol) {
					t.Errorf("workers=%d: max |Δlogit| = %g, want ≤ %g", workers, worst, tt.tol)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	good := synth{"llama", 32, 1, 64, 2, 1, 50, false, false, formats.F32}
	tests := []struct {
		name string
		edit func(kvs []formats.KV, ts []gguf.WriteTensor) ([]formats.KV, []gguf.WriteTensor)
		want string
	}{
		{"missing tensor", func(kvs []formats.KV, ts []gguf.WriteTensor) ([]formats.KV, []gguf.WriteTensor) {
			var out []gguf.WriteTensor
			for _, t := range ts {
				if t.Name != "blk.0.ffn_up.weight" {
					out = append(out, t)
				}
			}
			return kvs, out
		}, `llama: llama model lacks tensor "blk.0.ffn_up.weight": missing tensor`},
		{"wrong shape", func(kvs []formats.KV, ts []gguf.WriteTensor) ([]formats.KV, []gguf.WriteTensor) {
			for i := range ts {
				if ts[i].Name == "blk.0.attn_k.weight" {
					ts[i].Shape = []int64{32, 16} // 512 values, as many as the right [16, 32]
				}
			}
			return kvs, ts
		}, `llama: tensor "blk.0.attn_k.weight" has shape [32 16], want [16 32]: shape mismatch`},
		{"architecture", func(kvs []formats.KV, ts []gguf.WriteTensor) ([]formats.KV, []gguf.WriteTensor) {
			kvs[0].Value = "gpt2"
			return kvs, ts
		}, `llama: GGUF architecture "gpt2" is not llama, mistral or qwen2: unsupported model`},
		{"heads", func(kvs []formats.KV, ts []gguf.WriteTensor) ([]formats.KV, []gguf.WriteTensor) {
			for i := range kvs {
				if kvs[i].Key == "llama.attention.head_count_kv" {
					kvs[i].Value = uint32(3)
				}
			}
			return kvs, ts
		}, `llama: 2 heads are not a multiple of 3 kv heads: shape mismatch`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := formats.Open(good.write(t, 9))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var kvs []formats.KV
			for _, kv := range src.Metadata {
				kvs = append(kvs, formats.KV{Key: kv.Key, Value: kv.Value})
			}
			var ts []gguf.WriteTensor
			for i := range src.Tensors {
				ti := &src.Tensors[i]
				f := src.File(ti.File)
				b, err := f.Bytes(ti.Offset, ti.Length, nil)
				if err != nil {
					t.Fatal(err)
				}
				ts = append(ts, gguf.WriteTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: append([]byte(nil), b...)})
			}
			kvs, ts = tt.edit(kvs, ts)
			path := filepath.Join(t.TempDir(), "bad.gguf")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := gguf.Write(f, kvs, ts, nil); err != nil {
				t.Fatal(err)
			}
			f.Close()
			_, err = Open(path)
			if got := fmt.Sprint(err); got != tt.want {
				t.Errorf("Open error = %s, want %s", got, tt.want)
			}
		})
	}
}
