// Command gen134m writes a random-weight llama GGUF for benchmarks: by default the shape of a
// ~134M-parameter model (hidden 768, 12 layers, 12 heads, feed-forward 2048, vocabulary
// 32000, separate output head), with matrices in F32 or Q8_0 (norms stay F32).
//
//	go run ./scan/nn/llama/internal/gen134m -type Q8_0 -o /tmp/llama134m-q8_0.gguf
//	KENSA_BENCH_134M=/tmp/llama134m-q8_0.gguf go test -run - -bench 134M ./scan/nn/llama
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"

	"github.com/x448/float16"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
)

func main() {
	var (
		out     = flag.String("o", "", "output GGUF path (required)")
		typ     = flag.String("type", "F32", "matrix type: F32 or Q8_0")
		hidden  = flag.Int("hidden", 768, "embedding width")
		layers  = flag.Int("layers", 12, "transformer blocks")
		ff      = flag.Int("ff", 2048, "feed-forward width")
		heads   = flag.Int("heads", 12, "attention heads")
		kvHeads = flag.Int("kvheads", 12, "key/value heads")
		vocab   = flag.Int("vocab", 32000, "vocabulary size")
		seed    = flag.Uint64("seed", 1, "random seed")
	)
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gen134m: -o is required")
		os.Exit(2)
	}
	dt, ok := formats.ParseDType(*typ)
	if !ok || dt != formats.F32 && dt != formats.Q8_0 {
		fmt.Fprintf(os.Stderr, "gen134m: -type %q: want F32 or Q8_0\n", *typ)
		os.Exit(2)
	}
	if err := run(*out, dt, *hidden, *layers, *ff, *heads, *kvHeads, *vocab, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "gen134m:", err)
		os.Exit(1)
	}
}

func run(path string, dt formats.DType, hidden, layers, ff, heads, kvHeads, vocab int, seed uint64) error {
	if hidden%heads != 0 || heads%kvHeads != 0 || hidden%32 != 0 || ff%32 != 0 {
		return fmt.Errorf("inconsistent sizes: hidden %d, heads %d, kv heads %d, ff %d", hidden, heads, kvHeads, ff)
	}
	r := rand.New(rand.NewPCG(seed, 0x6b656e7361))
	hd := hidden / heads
	var ts []gguf.WriteTensor
	params := 0
	mat := func(name string, rows, cols int) {
		v := make([]float32, rows*cols)
		s := 1 / math.Sqrt(float64(cols))
		for i := range v {
			v[i] = float32(r.NormFloat64() * s)
		}
		ts = append(ts, gguf.WriteTensor{Name: name, DType: dt, Shape: []int64{int64(rows), int64(cols)}, Data: encode(dt, v)})
		params += len(v)
	}
	vec := func(name string, n int) {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(1 + 0.1*r.NormFloat64())
		}
		ts = append(ts, gguf.WriteTensor{Name: name, DType: formats.F32, Shape: []int64{int64(n)}, Data: encode(formats.F32, v)})
		params += n
	}
	mat("token_embd.weight", vocab, hidden)
	vec("output_norm.weight", hidden)
	mat("output.weight", vocab, hidden)
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		vec(p+"attn_norm.weight", hidden)
		mat(p+"attn_q.weight", hidden, hidden)
		mat(p+"attn_k.weight", kvHeads*hd, hidden)
		mat(p+"attn_v.weight", kvHeads*hd, hidden)
		mat(p+"attn_output.weight", hidden, hidden)
		vec(p+"ffn_norm.weight", hidden)
		mat(p+"ffn_gate.weight", ff, hidden)
		mat(p+"ffn_up.weight", ff, hidden)
		mat(p+"ffn_down.weight", hidden, ff)
	}
	fileType := uint32(0)
	if dt == formats.Q8_0 {
		fileType = 7
	}
	kvs := []formats.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "general.name", Value: fmt.Sprintf("random llama %dM", (params+500_000)/1_000_000)},
		{Key: "general.file_type", Value: fileType},
		{Key: "llama.context_length", Value: uint32(2048)},
		{Key: "llama.embedding_length", Value: uint32(hidden)},
		{Key: "llama.block_count", Value: uint32(layers)},
		{Key: "llama.feed_forward_length", Value: uint32(ff)},
		{Key: "llama.attention.head_count", Value: uint32(heads)},
		{Key: "llama.attention.head_count_kv", Value: uint32(kvHeads)},
		{Key: "llama.rope.dimension_count", Value: uint32(hd)},
		{Key: "llama.rope.freq_base", Value: float32(10000)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
		{Key: "llama.vocab_size", Value: uint32(vocab)},
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := gguf.Write(f, kvs, ts, nil); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("%s: %d parameters, %s\n", path, params, dt)
	return nil
}

// encode stores vals as F32 or Q8_0 (blocks of 32: an f16 scale d = max|x|/127, then 32
// int8 values round(x/d)).
func encode(dt formats.DType, vals []float32) []byte {
	if dt == formats.F32 {
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b
	}
	b := make([]byte, 0, len(vals)/32*34)
	for i := 0; i < len(vals); i += 32 {
		blk := vals[i : i+32]
		var amax float64
		for _, v := range blk {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		d := amax / 127
		b = binary.LittleEndian.AppendUint16(b, float16.Fromfloat32(float32(d)).Bits())
		for _, v := range blk {
			q := 0.0
			if d != 0 {
				q = math.Round(float64(v) / d)
			}
			b = append(b, byte(int8(max(-127, min(127, q)))))
		}
	}
	return b
}
