package quant

import (
	"fmt"
	"math"

	"github.com/x448/float16"
)

// Encode quantizes src into the block layout of the ggml type name, for writers of test
// and benchmark models: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K. len(src) must be a
// multiple of the type's block. The quantizers are the plain round-to-nearest ones (the
// scale from each block's range), not llama.cpp's search for the best scales: the blocks
// are valid and decode within the type's rounding error, but are not byte-identical to
// llama-quantize's output.
func Encode(name string, src []float32) ([]byte, error) {
	k, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("quant: unknown type %q", name)
	}
	enc, ok := encoders[name]
	if !ok {
		return nil, fmt.Errorf("quant: no encoder for %s", name)
	}
	if len(src)%k.BlockElems != 0 {
		return nil, fmt.Errorf("quant: %s: %d values are not a whole number of %d-value blocks", name, len(src), k.BlockElems)
	}
	n := len(src) / k.BlockElems
	dst := make([]byte, n*k.BlockBytes)
	for b := 0; b < n; b++ {
		enc(dst[b*k.BlockBytes:(b+1)*k.BlockBytes], src[b*k.BlockElems:(b+1)*k.BlockElems])
	}
	return dst, nil
}

var encoders = map[string]func(dst []byte, x []float32){
	"Q8_0": encQ8_0,
	"Q4_0": encQ4_0,
	"Q4_1": encQ4_1,
	"Q5_0": encQ5_0,
	"Q5_1": encQ5_1,
	"Q4_K": encQ4_K,
	"Q6_K": encQ6_K,
}

func putHalf(b []byte, v float32) {
	h := float16.Fromfloat32(v).Bits()
	b[0], b[1] = byte(h), byte(h>>8)
}

func half(v float32) float32 { return float16.Fromfloat32(v).Float32() }

func absMax(x []float32) (amax, signed float32) {
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); a > amax {
			amax, signed = a, v
		}
	}
	return amax, signed
}

func minMax(x []float32) (lo, hi float32) {
	lo, hi = x[0], x[0]
	for _, v := range x[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

func roundInt(v float32) int { return int(math.Round(float64(v))) }

// Q8_0: {half d; int8 qs[32]}, x = d·q.
func encQ8_0(dst []byte, x []float32) {
	amax, _ := absMax(x)
	d := amax / 127
	putHalf(dst, d)
	id := float32(0)
	if d != 0 {
		id = 1 / d
	}
	for i, v := range x {
		dst[2+i] = byte(int8(clampInt(roundInt(v*id), -127, 127)))
	}
}

// Q4_0: {half d; u8 qs[16]}, x = d·(q − 8), q of element j in the low nibble of qs[j] and
// of element j+16 in its high nibble.
func encQ4_0(dst []byte, x []float32) {
	_, mx := absMax(x)
	d := mx / -8
	putHalf(dst, d)
	id := float32(0)
	if d != 0 {
		id = 1 / d
	}
	for j := 0; j < 16; j++ {
		q0 := clampInt(int(x[j]*id+8.5), 0, 15)
		q1 := clampInt(int(x[j+16]*id+8.5), 0, 15)
		dst[2+j] = byte(q0) | byte(q1)<<4
	}
}

// Q4_1: {half d; half m; u8 qs[16]}, x = d·q + m.
func encQ4_1(dst []byte, x []float32) {
	lo, hi := minMax(x)
	d := (hi - lo) / 15
	putHalf(dst, d)
	putHalf(dst[2:], lo)
	id := float32(0)
	if d != 0 {
		id = 1 / d
	}
	for j := 0; j < 16; j++ {
		q0 := clampInt(int((x[j]-lo)*id+0.5), 0, 15)
		q1 := clampInt(int((x[j+16]-lo)*id+0.5), 0, 15)
		dst[4+j] = byte(q0) | byte(q1)<<4
	}
}

// Q5_0: {half d; u8 qh[4]; u8 qs[16]}, x = d·(q − 16), the fifth bit of element j in bit j
// of qh.
func encQ5_0(dst []byte, x []float32) {
	_, mx := absMax(x)
	d := mx / -16
	putHalf(dst, d)
	id := float32(0)
	if d != 0 {
		id = 1 / d
	}
	var qh uint32
	for j := 0; j < 16; j++ {
		q0 := clampInt(int(x[j]*id+16.5), 0, 31)
		q1 := clampInt(int(x[j+16]*id+16.5), 0, 31)
		dst[6+j] = byte(q0&15) | byte(q1&15)<<4
		qh |= uint32(q0>>4) << j
		qh |= uint32(q1>>4) << (j + 16)
	}
	dst[2], dst[3], dst[4], dst[5] = byte(qh), byte(qh>>8), byte(qh>>16), byte(qh>>24)
}

// Q5_1: {half d; half m; u8 qh[4]; u8 qs[16]}, x = d·q + m.
func encQ5_1(dst []byte, x []float32) {
	lo, hi := minMax(x)
	d := (hi - lo) / 31
	putHalf(dst, d)
	putHalf(dst[2:], lo)
	id := float32(0)
	if d != 0 {
		id = 1 / d
	}
	var qh uint32
	for j := 0; j < 16; j++ {
		q0 := clampInt(int((x[j]-lo)*id+0.5), 0, 31)
		q1 := clampInt(int((x[j+16]-lo)*id+0.5), 0, 31)
		dst[8+j] = byte(q0&15) | byte(q1&15)<<4
		qh |= uint32(q0>>4) << j
		qh |= uint32(q1>>4) << (j + 16)
	}
	dst[4], dst[5], dst[6], dst[7] = byte(qh), byte(qh>>8), byte(qh>>16), byte(qh>>24)
}

// Q4_K: {half d; half dmin; u8 scales[12]; u8 qs[128]}: eight sub-blocks of 32 with 6-bit
// scale sc and min m, x = d·sc·q − dmin·m; the 64 values of group g are the low nibbles
// (sub-block 2g) and high nibbles (2g+1) of qs[32g:32g+32].
func encQ4_K(dst []byte, x []float32) {
	var scale, minus [8]float32
	for j := 0; j < 8; j++ {
		lo, hi := minMax(x[32*j : 32*j+32])
		lo = min(lo, 0)
		scale[j] = (hi - lo) / 15
		minus[j] = -lo
	}
	var ms, mm float32
	for j := 0; j < 8; j++ {
		ms, mm = max(ms, scale[j]), max(mm, minus[j])
	}
	d, dmin := half(ms/63), half(mm/63)
	putHalf(dst, d)
	putHalf(dst[2:], dmin)
	var sc, m [8]int
	for j := 0; j < 8; j++ {
		if d > 0 {
			sc[j] = clampInt(roundInt(scale[j]/d), 0, 63)
		}
		if dmin > 0 {
			m[j] = clampInt(roundInt(minus[j]/dmin), 0, 63)
		}
	}
	s := dst[4:16]
	for j := 0; j < 4; j++ {
		s[j] = byte(sc[j]&63) | byte(sc[j+4]>>4)<<6
		s[j+4] = byte(m[j]&63) | byte(m[j+4]>>4)<<6
		s[j+8] = byte(sc[j+4]&15) | byte(m[j+4]&15)<<4
	}
	qs := dst[16:144]
	for g := 0; g < 4; g++ {
		for h := 0; h < 2; h++ {
			j := 2*g + h
			d1, m1 := d*float32(sc[j]), dmin*float32(m[j])
			id := float32(0)
			if d1 != 0 {
				id = 1 / d1
			}
			for l := 0; l < 32; l++ {
				q := byte(clampInt(roundInt((x[32*j+l]+m1)*id), 0, 15))
				if h == 0 {
					qs[32*g+l] = q
				} else {
					qs[32*g+l] |= q << 4
				}
			}
		}
	}
}

// Q6_K: {u8 ql[128]; u8 qh[64]; int8 scales[16]; half d}: sixteen sub-blocks of 16 with an
// 8-bit scale, x = d·sc·(q − 32), q of 6 bits split into ql (low 4) and qh (high 2).
func encQ6_K(dst []byte, x []float32) {
	var scale [16]float32
	var amaxScale float32
	for i := 0; i < 16; i++ {
		_, mx := absMax(x[16*i : 16*i+16])
		scale[i] = mx / -32
		if a := float32(math.Abs(float64(scale[i]))); a > amaxScale {
			amaxScale = a
		}
	}
	d := half(amaxScale / 127)
	var sc [16]int
	for i := range sc {
		if d != 0 {
			sc[i] = clampInt(roundInt(scale[i]/d), -128, 127)
		}
		dst[192+i] = byte(int8(sc[i]))
	}
	putHalf(dst[208:], d)
	var q [256]int
	for i := 0; i < 16; i++ {
		ds := d * float32(sc[i])
		id := float32(0)
		if ds != 0 {
			id = 1 / ds
		}
		for l := 0; l < 16; l++ {
			q[16*i+l] = clampInt(roundInt(x[16*i+l]*id), -32, 31) + 32
		}
	}
	ql, qh := dst[0:128], dst[128:192]
	for n := 0; n < 2; n++ {
		y := q[128*n:]
		l4, h4 := ql[64*n:], qh[32*n:]
		for l := 0; l < 32; l++ {
			q1, q2, q3, q4 := y[l], y[l+32], y[l+64], y[l+96]
			l4[l] = byte(q1&15) | byte(q3&15)<<4
			l4[l+32] = byte(q2&15) | byte(q4&15)<<4
			h4[l] = byte(q1>>4) | byte(q2>>4)<<2 | byte(q3>>4)<<4 | byte(q4>>4)<<6
		}
	}
}
