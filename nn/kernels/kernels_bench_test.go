// Benchmarks of the pure-Go kernels, measured on the development machine (AMD EPYC,
// Zen 5 family, KVM, 2 cores; go1.26, GOAMD64=v1), one core:
//
//	go test ./nn/kernels/ -run XXX -bench 'MulVec|MulMat' -cpu 1 -benchtime 0.5s -count 3
//
// best of 3. GB/s counts weight bytes; GFLOP/s two per weight and activation vector.
// MulMat is 32 activation vectors (GB/s there is the weight bytes once per 32 vectors).
// IQ4_XS stands for the dequantizing fallback. Today's runtime (weights dequantized to
// float32 at load) runs at the F32 row's GFLOP/s.
//
//	type     MulVec 2048×2048     MulVec 5632×2048     MulMat 2048×2048×32
//	         GB/s   GFLOP/s       GB/s   GFLOP/s       GFLOP/s
//	Q8_0      4.09    7.7          4.07    7.7           9.1
//	Q4_0      3.62   12.9          3.67   13.1          18.4
//	Q4_1      4.63   14.8          4.39   14.1          19.6
//	Q5_0      3.07    8.9          3.10    9.0          15.2
//	Q5_1      3.53    9.4          3.57    9.5          14.1
//	Q2_K      1.84   11.2          1.79   10.9          13.6
//	Q3_K      1.77    8.2          1.79    8.3          14.1
//	Q4_K      3.64   12.9          3.59   12.8          15.3
//	Q5_K      3.29    9.6          3.25    9.5          13.7
//	Q6_K      3.40    8.3          3.30    8.1          16.6
//	F32       8.13    4.1          8.08    4.0           3.8
//	F16       4.50    4.5          4.05    4.0           4.2
//	BF16      4.53    4.5          4.60    4.6           4.1
//	IQ4_XS    0.59    2.2          0.59    2.2           6.4

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
