// Benchmarks of the kernels, measured on the development machine (AMD EPYC, Zen 5 family,
// KVM, 2 cores shared with other work; go1.26), one core:
//
//	go test ./nn/kernels/ -run XXX -bench 'MulVec|MulMat' -cpu 1 -benchtime 0.5s -count 3
//
// best of 3. GB/s counts weight bytes; GFLOP/s two per weight and activation vector.
// MulMat is 32 activation vectors. "Go" is the pure-Go path (KENSA_KERNELS=go), "asm" the
// dispatched one on this CPU (AVX-512 VNNI for the quantized types, AVX-512 for the float
// ones), 2026-12-03. IQ4_XS stands for the dequantizing fallback (pure Go everywhere).
//
//	type     MulVec 2048×2048 GFLOP/s   MulVec 5632×2048 GFLOP/s   MulMat 2048×2048×32 GFLOP/s
//	         Go       asm               Go       asm               Go       asm
//	Q8_0      7.7     83.2               7.7     61.6               9.1     90.2
//	Q4_0     12.9     60.9              13.1     58.1              18.4     93.2
//	Q4_1     14.8     60.0              14.1     58.8              19.6     85.4
//	Q5_0      8.9     52.6               9.0     52.3              15.2     89.6
//	Q5_1      9.4     47.5               9.5     47.2              14.1     74.2
//	Q2_K      9.4    151                11.2    152                14.1    230
//	Q3_K      8.2     85                 8.2     86                13.3    192
//	Q4_K     12.6    142                12.7    142                14.2    218
//	Q5_K      9.2    106                 9.1    103                12.7    195
//	Q6_K      8.0    114                 8.0    113                15.9    218
//	F32       4.1     36.7 (73 GB/s)     4.0     19 (38 GB/s)       4.1    120
//	F16       4.5     ~43 (86 GB/s)      4.0     ~18 (37 GB/s)      4.1    150
//	BF16      4.5     ~43 (85 GB/s)      4.6     ~18 (35 GB/s)      3.2    150
//	IQ4_XS    2.2                        2.2                        6.4
//
// MulVec 2048×2048 reads its 16 MB (F32) from L3 after the first iteration; 5632×2048 is
// the memory-bound figure.

package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

var benchTypes = append(append(append([]formats.DType(nil), quantTypes...), floatTypes...), formats.IQ4_XS)

func benchMatrix(b *testing.B, t formats.DType, rows, cols int) *Matrix {
	r := rand.New(rand.NewPCG(uint64(t), uint64(rows)))
	data := make([]byte, 0, rows*cols/t.BlockElems()*t.BlockBytes())
	row := tameRow(r, t, cols)
	for i := 0; i < rows; i++ {
		if i%64 == 0 {
			row = tameRow(r, t, cols)
		}
		data = append(data, row...)
	}
	m, err := NewMatrix(t, rows, cols, data)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func report(b *testing.B, m *Matrix, vectors int) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(len(m.Data))*float64(b.N)/s/1e9, "GB/s")
	b.ReportMetric(2*float64(m.Rows)*float64(m.Cols)*float64(vectors)*float64(b.N)/s/1e9, "GFLOP/s")
}

// BenchmarkMulVec: one activation vector, all rows (2048×2048, and the 5632×2048 of an FFN
// up/gate projection). GB/s counts the weight bytes, GFLOP/s two per weight.
func BenchmarkMulVec(b *testing.B) {
	for _, t := range benchTypes {
		for _, shape := range [][2]int{{2048, 2048}, {5632, 2048}} {
			b.Run(fmt.Sprintf("%v/%dx%d", t, shape[0], shape[1]), func(b *testing.B) {
				m := benchMatrix(b, t, shape[0], shape[1])
				x := Prepare(randomActs(rand.New(rand.NewPCG(1, 1)), m.Cols), t)
				dst := make([]float32, m.Rows)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					m.MulVec(dst, x, 0, m.Rows)
				}
				report(b, m, 1)
			})
		}
	}
}

// BenchmarkMulMat: 32 activation vectors (a prompt batch) through a 2048×2048 matrix.
func BenchmarkMulMat(b *testing.B) {
	const n = 32
	for _, t := range benchTypes {
		b.Run(fmt.Sprintf("%v/2048x2048x%d", t, n), func(b *testing.B) {
			m := benchMatrix(b, t, 2048, 2048)
			r := rand.New(rand.NewPCG(2, 2))
			xs := make([]*Activations, n)
			dst := make([][]float32, n)
			for i := range xs {
				xs[i] = Prepare(randomActs(r, m.Cols), t)
				dst[i] = make([]float32, m.Rows)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.MulMat(dst, xs, 0, m.Rows)
			}
			report(b, m, n)
		})
	}
}

// BenchmarkPrepare: quantizing one 2048-element activation vector.
func BenchmarkPrepare(b *testing.B) {
	x := randomActs(rand.New(rand.NewPCG(3, 3)), 2048)
	for _, t := range []formats.DType{formats.F32, formats.Q8_0, formats.Q4_K} {
		b.Run(kernelOf(t).formName(), func(b *testing.B) {
			// as in production: lane words only where a pure-Go dot reads them (the
			// tests force them on, see quant_test.go)
			old := forceLanes
			forceLanes = false
			defer func() { forceLanes = old }()
			a := Prepare(x, t)
			b.SetBytes(4 * 2048)
			for i := 0; i < b.N; i++ {
				a.Set(x, t)
			}
		})
	}
}
