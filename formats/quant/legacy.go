package quant

import (
	"encoding/binary"
	"math"
)

// Blocks of 32 (and the newer small-block) ggml types. In every 32-element type, byte j of
// qs feeds output j (low nibble) and output j+16 (high nibble).
//
// Products are written float32(a*b) where a sum follows, so that the compiler never fuses
// them into a multiply-add: ggml rounds each operation.

// decodeQ4_0: block {half d; u8 qs[16]}; y[j] = (qs[j]&15 - 8)*d, y[j+16] = (qs[j]>>4 - 8)*d.
func decodeQ4_0(dst []float32, src []byte) {
	n := blocks("Q4_0", dst, src, qk32, 18)
	for i := 0; i < n; i++ {
		b := (*[18]byte)(src[18*i:])
		y := (*[32]float32)(dst[32*i:])
		d := f16(b[0], b[1])
		for j := 0; j < 16; j++ {
			q := b[2+j]
			y[j] = float32(int32(q&15)-8) * d
			y[j+16] = float32(int32(q>>4)-8) * d
		}
	}
}

// decodeQ4_1: block {half d; half m; u8 qs[16]}; y[j] = (qs[j]&15)*d + m, y[j+16] = (qs[j]>>4)*d + m.
func decodeQ4_1(dst []float32, src []byte) {
	n := blocks("Q4_1", dst, src, qk32, 20)
	for i := 0; i < n; i++ {
		b := (*[20]byte)(src[20*i:])
		y := (*[32]float32)(dst[32*i:])
		d, m := f16(b[0], b[1]), f16(b[2], b[3])
		for j := 0; j < 16; j++ {
			q := b[4+j]
			y[j] = float32(float32(q&15)*d) + m
			y[j+16] = float32(float32(q>>4)*d) + m
		}
	}
}

// decodeQ5_0: block {half d; u8 qh[4]; u8 qs[16]}; with h = u32le(qh), the fifth bit of
// output j is bit j of h: y[j] = ((qs[j]&15 | (h>>j&1)<<4) - 16)*d,
// y[j+16] = ((qs[j]>>4 | (h>>(j+16)&1)<<4) - 16)*d.
func decodeQ5_0(dst []float32, src []byte) {
	n := blocks("Q5_0", dst, src, qk32, 22)
	for i := 0; i < n; i++ {
		b := (*[22]byte)(src[22*i:])
		y := (*[32]float32)(dst[32*i:])
		d := f16(b[0], b[1])
		h := binary.LittleEndian.Uint32(b[2:6])
		for j := 0; j < 16; j++ {
			q := uint32(b[6+j])
			x0 := int32(q&15|(h>>j&1)<<4) - 16
			x1 := int32(q>>4|(h>>(j+16)&1)<<4) - 16
			y[j] = float32(x0) * d
			y[j+16] = float32(x1) * d
		}
	}
}

// decodeQ5_1: block {half d; half m; u8 qh[4]; u8 qs[16]}; the 5-bit values of Q5_0
// without the -16, then y = q*d + m.
func decodeQ5_1(dst []float32, src []byte) {
	n := blocks("Q5_1", dst, src, qk32, 24)
	for i := 0; i < n; i++ {
		b := (*[24]byte)(src[24*i:])
		y := (*[32]float32)(dst[32*i:])
		d, m := f16(b[0], b[1]), f16(b[2], b[3])
		h := binary.LittleEndian.Uint32(b[4:8])
		for j := 0; j < 16; j++ {
			q := uint32(b[8+j])
			x0 := q&15 | (h>>j&1)<<4
			x1 := q>>4 | (h>>(j+16)&1)<<4
			y[j] = float32(float32(x0)*d) + m
			y[j+16] = float32(float32(x1)*d) + m
		}
	}
}

// decodeQ8_0: block {half d; i8 qs[32]}; y[j] = qs[j]*d.
func decodeQ8_0(dst []float32, src []byte) {
	n := blocks("Q8_0", dst, src, qk32, 34)
	for i := 0; i < n; i++ {
		b := (*[34]byte)(src[34*i:])
		y := (*[32]float32)(dst[32*i:])
		d := f16(b[0], b[1])
		q := (*[32]byte)(b[2:])
		for j := range y {
			y[j] = float32(int8(q[j])) * d
		}
	}
}

// decodeQ8_1: block {half d; half s; i8 qs[32]}; y[j] = qs[j]*d (s = d*Σqs is not used).
func decodeQ8_1(dst []float32, src []byte) {
	n := blocks("Q8_1", dst, src, qk32, 36)
	for i := 0; i < n; i++ {
		b := (*[36]byte)(src[36*i:])
		y := (*[32]float32)(dst[32*i:])
		d := f16(b[0], b[1])
		q := (*[32]byte)(b[4:])
		for j := range y {
			y[j] = float32(int8(q[j])) * d
		}
	}
}

// decodeIQ4_NL: block {half d; u8 qs[16]}; y[j] = d*kvalues_iq4nl[qs[j]&15],
// y[j+16] = d*kvalues_iq4nl[qs[j]>>4].
func decodeIQ4_NL(dst []float32, src []byte) {
	n := blocks("IQ4_NL", dst, src, qk32, 18)
	for i := 0; i < n; i++ {
		b := (*[18]byte)(src[18*i:])
		y := (*[32]float32)(dst[32*i:])
		var lut [16]float32
		d := f16(b[0], b[1])
		for k, v := range kvaluesIQ4NL {
			lut[k] = d * float32(v)
		}
		for j := 0; j < 16; j++ {
			q := b[2+j]
			y[j] = lut[q&15]
			y[j+16] = lut[q>>4]
		}
	}
}

// kvaluesFP4 are the E2M1 values doubled (ggml's kvalues_mxfp4), low 3 bits magnitude, bit 3 sign.
var kvaluesFP4 = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

// e8m0Half returns 2^(e-128) = E8M0(e)/2 as ggml's GGML_E8M0_TO_FP32_HALF does (255 gives
// 2^127, not NaN).
func e8m0Half(e byte) float32 {
	if e < 2 {
		return math.Float32frombits(0x00200000 << e)
	}
	return math.Float32frombits(uint32(e-1) << 23)
}

// decodeMXFP4: block {u8 e; u8 qs[16]}; d = 2^(e-128); y[j] = kvalues_mxfp4[qs[j]&15]*d,
// y[j+16] = kvalues_mxfp4[qs[j]>>4]*d (kvalues are twice the E2M1 values).
func decodeMXFP4(dst []float32, src []byte) {
	n := blocks("MXFP4", dst, src, qk32, 17)
	for i := 0; i < n; i++ {
		b := (*[17]byte)(src[17*i:])
		y := (*[32]float32)(dst[32*i:])
		d := e8m0Half(b[0])
		for j := 0; j < 16; j++ {
			q := b[1+j]
			y[j] = float32(kvaluesFP4[q&15]) * d
			y[j+16] = float32(kvaluesFP4[q>>4]) * d
		}
	}
}

// ue4m3Half holds ggml's ggml_ue4m3_to_fp32: the unsigned E4M3 scale of NVFP4 (bias 7;
// bit 7 ignored except that 0x7F is 0), halved to match the doubled kvalues. Codes 0 and
// 0x7F decode to 0.
var ue4m3Half = func() (t [256]float32) {
	for c := range t {
		if c == 0 || c == 0x7F {
			continue
		}
		e, m := c>>3&15, c&7
		var raw float64
		if e == 0 {
			raw = math.Ldexp(float64(m), -9)
		} else {
			raw = math.Ldexp(1+float64(m)/8, e-7)
		}
		t[c] = float32(raw) * 0.5
	}
	return t
}()

// decodeNVFP4: block of 64 {u8 d[4]; u8 qs[32]}: four sub-blocks of 16, each with scale
// d = ue4m3(d[s])/2; y[16s+j] = kvalues_mxfp4[qs[8s+j]&15]*d, y[16s+j+8] = kvalues_mxfp4[qs[8s+j]>>4]*d.
func decodeNVFP4(dst []float32, src []byte) {
	n := blocks("NVFP4", dst, src, 64, 36)
	for i := 0; i < n; i++ {
		b := (*[36]byte)(src[36*i:])
		y := (*[64]float32)(dst[64*i:])
		for s := 0; s < 4; s++ {
			d := ue4m3Half[b[s]]
			q := (*[8]byte)(b[4+8*s:])
			ys := (*[16]float32)(y[16*s:])
			for j := 0; j < 8; j++ {
				ys[j] = float32(kvaluesFP4[q[j]&15]) * d
				ys[j+8] = float32(kvaluesFP4[q[j]>>4]) * d
			}
		}
	}
}

// decodeQ1_0: block of 128 {half d; u8 qs[16]}; output j is +d if bit j%8 of qs[j/8] is set, else -d.
func decodeQ1_0(dst []float32, src []byte) {
	n := blocks("Q1_0", dst, src, 128, 18)
	for i := 0; i < n; i++ {
		b := (*[18]byte)(src[18*i:])
		y := (*[128]float32)(dst[128*i:])
		d := f16(b[0], b[1])
		pm := [2]float32{-d, d}
		for k := 0; k < 16; k++ {
			q := b[2+k]
			yk := (*[8]float32)(y[8*k:])
			for j := range yk {
				yk[j] = pm[q>>j&1]
			}
		}
	}
}

// decodeQ2_0: block of 64 {half d; u8 qs[16]}; q = qs[j/4]>>(2*(j%4)) & 3, y[j] = (q-1)*d.
func decodeQ2_0(dst []float32, src []byte) {
	n := blocks("Q2_0", dst, src, 64, 18)
	for i := 0; i < n; i++ {
		b := (*[18]byte)(src[18*i:])
		y := (*[64]float32)(dst[64*i:])
		d := f16(b[0], b[1])
		for k := 0; k < 16; k++ {
			q := int32(b[2+k])
			yk := (*[4]float32)(y[4*k:])
			yk[0] = float32(q&3-1) * d
			yk[1] = float32(q>>2&3-1) * d
			yk[2] = float32(q>>4&3-1) * d
			yk[3] = float32(q>>6&3-1) * d
		}
	}
}
