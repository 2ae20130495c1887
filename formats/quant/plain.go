package quant

import (
	"encoding/binary"
	"math"

	"github.com/x448/float16"
)

// Plain (one element per block) types.

// The multi-byte plain types decode 8 elements per iteration through array pointers, which
// removes the per-element bounds checks, then the remaining tail.

func decodeF32(dst []float32, src []byte) {
	n := blocks("F32", dst, src, 1, 4)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[32]byte)(src[4*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = math.Float32frombits(binary.LittleEndian.Uint32(s[4*j:]))
		}
	}
	for ; i < n; i++ {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// decodeF16 decodes IEEE binary16 through f16Table.
func decodeF16(dst []float32, src []byte) {
	n := blocks("F16", dst, src, 1, 2)
	t := &f16Table
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[16]byte)(src[2*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = t[uint16(s[2*j])|uint16(s[2*j+1])<<8]
		}
	}
	for ; i < n; i++ {
		dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
	}
}

// decodeBF16 decodes bfloat16: the high 16 bits of a float32.
func decodeBF16(dst []float32, src []byte) {
	n := blocks("BF16", dst, src, 1, 2)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[16]byte)(src[2*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = math.Float32frombits(uint32(s[2*j])<<16 | uint32(s[2*j+1])<<24)
		}
	}
	for ; i < n; i++ {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// decodeF64 rounds float64 values to the nearest float32 (overflowing to ±Inf).
func decodeF64(dst []float32, src []byte) {
	n := blocks("F64", dst, src, 1, 8)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[64]byte)(src[8*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = float32(math.Float64frombits(binary.LittleEndian.Uint64(s[8*j:])))
		}
	}
	for ; i < n; i++ {
		dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
	}
}

func decodeI8(dst []float32, src []byte) {
	n := blocks("I8", dst, src, 1, 1)
	dst = dst[:n]
	for i, c := range src {
		dst[i] = float32(int8(c))
	}
}

func decodeI16(dst []float32, src []byte) {
	n := blocks("I16", dst, src, 1, 2)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[16]byte)(src[2*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = float32(int16(uint16(s[2*j]) | uint16(s[2*j+1])<<8))
		}
	}
	for ; i < n; i++ {
		dst[i] = float32(int16(binary.LittleEndian.Uint16(src[2*i:])))
	}
}

func decodeI32(dst []float32, src []byte) {
	n := blocks("I32", dst, src, 1, 4)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[32]byte)(src[4*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = float32(int32(binary.LittleEndian.Uint32(s[4*j:])))
		}
	}
	for ; i < n; i++ {
		dst[i] = float32(int32(binary.LittleEndian.Uint32(src[4*i:])))
	}
}

func decodeI64(dst []float32, src []byte) {
	n := blocks("I64", dst, src, 1, 8)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[64]byte)(src[8*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = float32(int64(binary.LittleEndian.Uint64(s[8*j:])))
		}
	}
	for ; i < n; i++ {
		dst[i] = float32(int64(binary.LittleEndian.Uint64(src[8*i:])))
	}
}

// decodeBOOL decodes 0 to 0 and any other byte to 1.
func decodeBOOL(dst []float32, src []byte) { decodeTable8("BOOL", &boolTable, dst, src) }

var boolTable = makeTable8(func(c uint32) float32 {
	if c != 0 {
		return 1
	}
	return 0
})

func decodeU8(dst []float32, src []byte) {
	n := blocks("U8", dst, src, 1, 1)
	dst = dst[:n]
	for i, c := range src {
		dst[i] = float32(c)
	}
}

func decodeU16(dst []float32, src []byte) {
	n := blocks("U16", dst, src, 1, 2)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[16]byte)(src[2*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = float32(uint16(s[2*j]) | uint16(s[2*j+1])<<8)
		}
	}
	for ; i < n; i++ {
		dst[i] = float32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func decodeU32(dst []float32, src []byte) {
	n := blocks("U32", dst, src, 1, 4)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[32]byte)(src[4*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = float32(binary.LittleEndian.Uint32(s[4*j:]))
		}
	}
	for ; i < n; i++ {
		dst[i] = float32(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// u64ToF32 converts v to the nearest float32 without a data-dependent branch: values of
// 2^63 or more are halved, keeping the lost bit as a sticky bit so the rounding is still
// correct, converted as int64, and doubled.
func u64ToF32(v uint64) float32 {
	h := v >> 63
	return float32(int64(v>>h|v&h)) * pow2[h]
}

var pow2 = [2]float32{1, 2}

// decodeU64 rounds to the nearest float32.
func decodeU64(dst []float32, src []byte) {
	n := blocks("U64", dst, src, 1, 8)
	i := 0
	for ; i+8 <= n; i += 8 {
		s, y := (*[64]byte)(src[8*i:]), (*[8]float32)(dst[i:])
		for j := range y {
			y[j] = u64ToF32(binary.LittleEndian.Uint64(s[8*j:]))
		}
	}
	for ; i < n; i++ {
		dst[i] = u64ToF32(binary.LittleEndian.Uint64(src[8*i:]))
	}
}

// Small floating-point formats, decoded through tables.

const quietNaN = 0x7FC00000 // float32 bits of the default quiet NaN

var (
	f8E4M3Table     = makeTable8(func(c uint32) float32 { return fnTable(c, 4, 3, 7) })
	f8E5M2Table     = makeTable8(func(c uint32) float32 { return float16.Frombits(uint16(c) << 8).Float32() })
	f8E8M0Table     = makeTable8(e8m0)
	f8E4M3FNUZTable = makeTable8(func(c uint32) float32 { return fnuz(c, 4, 3, 8) })
	f8E5M2FNUZTable = makeTable8(func(c uint32) float32 { return fnuz(c, 5, 2, 16) })

	// f4Pairs maps a byte to its two E2M1 values, low nibble first.
	f4Pairs = func() (t [256][2]float32) {
		for c := range t {
			t[c] = [2]float32{miniFloat(uint32(c)&15, 2, 1, 1), miniFloat(uint32(c)>>4, 2, 1, 1)}
		}
		return t
	}()
	f6E2M3Table = makeTable6(2, 3, 1)
	f6E3M2Table = makeTable6(3, 2, 3)
)

func makeTable8(f func(uint32) float32) (t [256]float32) {
	for c := range t {
		t[c] = f(uint32(c))
	}
	return t
}

func makeTable6(ebits, mbits uint, bias int) (t [64]float32) {
	for c := range t {
		t[c] = miniFloat(uint32(c), ebits, mbits, bias)
	}
	return t
}

// miniFloat returns the value of the code c of a binary floating-point format with a sign
// bit above ebits exponent bits above mbits mantissa bits, the given exponent bias and
// subnormals, treating every code as finite:
//
//	e == 0: (-1)^s × m × 2^(1-bias-mbits)
//	e > 0:  (-1)^s × (2^mbits + m) × 2^(e-bias-mbits)
func miniFloat(c uint32, ebits, mbits uint, bias int) float32 {
	m := c & (1<<mbits - 1)
	e := int(c>>mbits) & (1<<ebits - 1)
	var v float64
	if e == 0 {
		v = math.Ldexp(float64(m), 1-bias-int(mbits))
	} else {
		v = math.Ldexp(float64(m|1<<mbits), e-bias-int(mbits))
	}
	if c>>(ebits+mbits)&1 != 0 {
		v = -v
	}
	return float32(v)
}

// fnTable decodes an 8-bit "FN" format (finite, NaN only when all exponent and mantissa
// bits are set; no infinities). The NaN keeps the sign and has the bits PyTorch's
// fp8e4m3fn_to_fp32 produces, 0x7FF00000.
func fnTable(c uint32, ebits, mbits uint, bias int) float32 {
	if c&0x7F == 0x7F {
		return math.Float32frombits(c>>7<<31 | 0x7FF00000)
	}
	return miniFloat(c, ebits, mbits, bias)
}

// fnuz decodes an 8-bit "FNUZ" format: finite, 0x80 (negative zero) is the only NaN.
func fnuz(c uint32, ebits, mbits uint, bias int) float32 {
	if c == 0x80 {
		return math.Float32frombits(quietNaN)
	}
	return miniFloat(c, ebits, mbits, bias)
}

// e8m0 decodes an unsigned power of two 2^(c-127); 0xFF is NaN.
func e8m0(c uint32) float32 {
	switch c {
	case 0xFF:
		return math.Float32frombits(quietNaN)
	case 0:
		return math.Float32frombits(0x00400000) // 2^-127, subnormal
	}
	return math.Float32frombits(c << 23)
}

func decodeTable8(name string, t *[256]float32, dst []float32, src []byte) {
	n := blocks(name, dst, src, 1, 1)
	dst = dst[:n]
	for i, c := range src {
		dst[i] = t[c]
	}
}

func decodeF8E4M3(dst []float32, src []byte) { decodeTable8("F8_E4M3", &f8E4M3Table, dst, src) }
func decodeF8E5M2(dst []float32, src []byte) { decodeTable8("F8_E5M2", &f8E5M2Table, dst, src) }
func decodeF8E8M0(dst []float32, src []byte) { decodeTable8("F8_E8M0", &f8E8M0Table, dst, src) }
func decodeF8E4M3FNUZ(dst []float32, src []byte) {
	decodeTable8("F8_E4M3FNUZ", &f8E4M3FNUZTable, dst, src)
}
func decodeF8E5M2FNUZ(dst []float32, src []byte) {
	decodeTable8("F8_E5M2FNUZ", &f8E5M2FNUZTable, dst, src)
}

// decodeF4 decodes FP4 E2M1, two values per byte, the first in the low nibble.
func decodeF4(dst []float32, src []byte) {
	n := blocks("F4", dst, src, 2, 1)
	dst = dst[:2*n]
	for i, c := range src {
		p := &f4Pairs[c]
		y := (*[2]float32)(dst[2*i:])
		y[0], y[1] = p[0], p[1]
	}
}

// decodeF6 decodes 6-bit floats, four per 3 bytes: v = b0 | b1<<8 | b2<<16, element i is
// (v >> 6i) & 63.
func decodeF6(name string, t *[64]float32, dst []float32, src []byte) {
	n := blocks(name, dst, src, 4, 3)
	for i := 0; i < n; i++ {
		b := (*[3]byte)(src[3*i:])
		y := (*[4]float32)(dst[4*i:])
		v := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		y[0] = t[v&63]
		y[1] = t[v>>6&63]
		y[2] = t[v>>12&63]
		y[3] = t[v>>18&63]
	}
}

func decodeF6E2M3(dst []float32, src []byte) { decodeF6("F6_E2M3", &f6E2M3Table, dst, src) }
func decodeF6E3M2(dst []float32, src []byte) { decodeF6("F6_E3M2", &f6E3M2Table, dst, src) }
