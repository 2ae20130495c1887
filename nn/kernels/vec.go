package kernels

import (
	"math"
	"unsafe"
)

// littleEndian: the float32 dots read their weights as little-endian bytes, so Dot hands
// them a float32 slice's own memory only where that is the byte order.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// Dot returns Σ a[i]·b[i] over len(a) elements (b at least as long), with the F32 weight
// kernel (assembly where the CPU has it): for the runtime's attention, whose operands are
// activations rather than stored weights.
func Dot(a, b []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	b = b[:len(a)]
	if !littleEndian {
		return dotF32F32(a, b)
	}
	return dotF32(unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), 4*len(a)), b)
}

// Exp returns e^x in float32 to within about 2 ulp (the range reduction of Cody and Waite
// and a degree-7 polynomial on [-ln2/2, ln2/2]): the softmax's exponential, several times
// faster than math.Exp. Exp(x) is 0 below about -103.97 (+0 underflow), +Inf above about
// 88.72, NaN for NaN.
func Exp(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	switch {
	case x != x:
		return x
	case x > 88.72284:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	}
	n := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - n*ln2hi - n*ln2lo
	// e^r ≈ 1 + r + r²/2 + ... + r⁷/5040 (Horner)
	p := float32(1.0 / 5040)
	p = p*r + 1.0/720
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	k := int32(n)
	if k < -126 { // subnormal result: scale in two steps
		return p * math.Float32frombits(uint32(k+126+127)<<23) * math.Float32frombits(1<<23)
	}
	if k > 127 {
		return p * 2 * math.Float32frombits(uint32(k-1+127)<<23)
	}
	return p * math.Float32frombits(uint32(k+127)<<23)
}
