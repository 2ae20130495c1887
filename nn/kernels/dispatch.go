package kernels

import "github.com/kensa-scan/kensa/formats"

// Function types of the per-type row dots. w is one weight row (whole blocks, exactly the
// row's bytes); the activation slice has one block per weight block (or one float per
// element). The four-vector forms write the dots of w with a0..a3 to dst[0..3].
type (
	dotQ8Func   func(w []byte, a []q8Block) float32
	dotQ8x4Func func(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8Block)
	dotQKFunc   func(w []byte, a []q8KBlock) float32
	dotQKx4Func func(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8KBlock)
	dotFFunc    func(w []byte, x []float32) float32
	dotFx4Func  func(dst *[4]float32, w []byte, x0, x1, x2, x3 []float32)
)

// The row dots in use. Each starts as the pure-Go version (the …Go function of the same
// name, which the tests compare against); an assembly implementation replaces the variable
// in an init function when the CPU supports it.
var (
	dotQ8_0 dotQ8Func = dotQ8_0Go
	dotQ4_0 dotQ8Func = dotQ4_0Go
	dotQ4_1 dotQ8Func = dotQ4_1Go
	dotQ5_0 dotQ8Func = dotQ5_0Go
	dotQ5_1 dotQ8Func = dotQ5_1Go

	dot4Q8_0 dotQ8x4Func = dot4Q8_0Go
	dot4Q4_0 dotQ8x4Func = dot4Q4_0Go
	dot4Q4_1 dotQ8x4Func = dot4Q4_1Go
	dot4Q5_0 dotQ8x4Func = dot4Q5_0Go
	dot4Q5_1 dotQ8x4Func = dot4Q5_1Go

	dotQ2_K dotQKFunc = dotQ2_KGo
	dotQ3_K dotQKFunc = dotQ3_KGo
	dotQ4_K dotQKFunc = dotQ4_KGo
	dotQ5_K dotQKFunc = dotQ5_KGo
	dotQ6_K dotQKFunc = dotQ6_KGo

	dot4Q2_K dotQKx4Func = dot4Q2_KGo
	dot4Q3_K dotQKx4Func = dot4Q3_KGo
	dot4Q4_K dotQKx4Func = dot4Q4_KGo
	dot4Q5_K dotQKx4Func = dot4Q5_KGo
	dot4Q6_K dotQKx4Func = dot4Q6_KGo

	dotF32  dotFFunc = dotF32Go
	dotF16  dotFFunc = dotF16Go
	dotBF16 dotFFunc = dotBF16Go

	dot4F32  dotFx4Func = dot4F32Go
	dot4F16  dotFx4Func = dot4F16Go
	dot4BF16 dotFx4Func = dot4BF16Go
)

// kernel is how one weight type is multiplied: the activation form it reads and pointers
// to its dot variables (read once per MulVec call, so that a replacement made at init
// time is seen).
type kernel struct {
	form     form
	fallback bool // dequantize rows with formats.DType.Decode, then dotF32F32
	dotQ8    *dotQ8Func
	dotQ84   *dotQ8x4Func
	dotQ8K   *dotQKFunc
	dotQ8K4  *dotQKx4Func
	dotF     *dotFFunc
	dotF4    *dotFx4Func
}

var kernels = func() map[formats.DType]*kernel {
	q8 := func(f *dotQ8Func, f4 *dotQ8x4Func) *kernel { return &kernel{form: formQ8, dotQ8: f, dotQ84: f4} }
	qk := func(f *dotQKFunc, f4 *dotQKx4Func) *kernel { return &kernel{form: formQ8K, dotQ8K: f, dotQ8K4: f4} }
	fl := func(f *dotFFunc, f4 *dotFx4Func) *kernel { return &kernel{form: formF32, dotF: f, dotF4: f4} }
	return map[formats.DType]*kernel{
		formats.Q8_0: q8(&dotQ8_0, &dot4Q8_0),
		formats.Q4_0: q8(&dotQ4_0, &dot4Q4_0),
		formats.Q4_1: q8(&dotQ4_1, &dot4Q4_1),
		formats.Q5_0: q8(&dotQ5_0, &dot4Q5_0),
		formats.Q5_1: q8(&dotQ5_1, &dot4Q5_1),
		formats.Q2_K: qk(&dotQ2_K, &dot4Q2_K),
		formats.Q3_K: qk(&dotQ3_K, &dot4Q3_K),
		formats.Q4_K: qk(&dotQ4_K, &dot4Q4_K),
		formats.Q5_K: qk(&dotQ5_K, &dot4Q5_K),
		formats.Q6_K: qk(&dotQ6_K, &dot4Q6_K),
		formats.F32:  fl(&dotF32, &dot4F32),
		formats.F16:  fl(&dotF16, &dot4F16),
		formats.BF16: fl(&dotBF16, &dot4BF16),
	}
}()

var fallbackKernel = &kernel{form: formF32, fallback: true}

// kernelOf returns t's kernel, the fallback for other decodable types, or nil.
func kernelOf(t formats.DType) *kernel {
	if k, ok := kernels[t]; ok {
		return k
	}
	if t.Decodable() {
		return fallbackKernel
	}
	return nil
}

func (k *kernel) formName() string { return formNames[k.form] }
