package quant

import (
	"encoding/binary"
	"math"
)

// k-quants and ternary types: super-blocks of 256 elements.

// decodeQ2_K: block {u8 scales[16]; u8 qs[64]; half d; half dmin}. Sixteen sub-blocks of 16;
// scales[k] holds a 4-bit scale (low) and 4-bit min (high). For n in {0,1}, j < 4,
// h in {0,1}, l < 16, with k = 8n+2j+h:
//
//	y[128n+32j+16h+l] = (d*(scales[k]&15)) * ((qs[32n+16h+l] >> 2j) & 3) - dmin*(scales[k]>>4)
func decodeQ2_K(dst []float32, src []byte) {
	n := blocks("Q2_K", dst, src, qkK, 84)
	for i := 0; i < n; i++ {
		b := (*[84]byte)(src[84*i:])
		y := (*[256]float32)(dst[256*i:])
		d, dmin := f16(b[80], b[81]), f16(b[82], b[83])
		for k := 0; k < 16; k++ {
			sc := b[k]
			dl := d * float32(sc&15)
			ml := dmin * float32(sc>>4)
			var lut [4]float32
			for v := range lut {
				lut[v] = float32(dl*float32(v)) - ml
			}
			nn, j, h := k>>3, k>>1&3, k&1
			q := (*[16]byte)(b[16+32*nn+16*h:])
			yk := (*[16]float32)(y[16*k:])
			shift := 2 * j
			for l := range yk {
				yk[l] = lut[q[l]>>shift&3]
			}
		}
	}
}

// q3Scales unpacks the sixteen 6-bit scales of a Q3_K block (12 bytes) as ggml does, with
// the little-endian 32-bit words a0, a1, a2:
//
//	w2 = (a0>>4)&0x0f0f0f0f | ((a2>>4)&0x03030303)<<4
//	w3 = (a1>>4)&0x0f0f0f0f | ((a2>>6)&0x03030303)<<4
//	w0 = a0&0x0f0f0f0f | (a2&0x03030303)<<4
//	w1 = a1&0x0f0f0f0f | ((a2>>2)&0x03030303)<<4
//
// The scales are the bytes of w0..w3 minus 32.
func q3Scales(s *[12]byte) (sc [16]int32) {
	const k1, k2 = 0x03030303, 0x0f0f0f0f
	a0 := binary.LittleEndian.Uint32(s[0:])
	a1 := binary.LittleEndian.Uint32(s[4:])
	a2 := binary.LittleEndian.Uint32(s[8:])
	w := [4]uint32{
		a0&k2 | (a2&k1)<<4,
		a1&k2 | (a2>>2&k1)<<4,
		a0>>4&k2 | (a2>>4&k1)<<4,
		a1>>4&k2 | (a2>>6&k1)<<4,
	}
	for k := range sc {
		sc[k] = int32(int8(w[k/4]>>(8*(k%4)))) - 32
	}
	return sc
}

// decodeQ3_K: block {u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d}. Sixteen sub-blocks of
// 16 with signed 6-bit scales sc[k] (see q3Scales). For n in {0,1}, j < 4, h in {0,1},
// l < 16, with k = 8n+2j+h, m = 1 << (4n+j):
//
//	y[16k+l] = (d*sc[k]) * (((qs[32n+16h+l] >> 2j) & 3) - (hmask[16h+l]&m != 0 ? 0 : 4))
func decodeQ3_K(dst []float32, src []byte) {
	n := blocks("Q3_K", dst, src, qkK, 110)
	for i := 0; i < n; i++ {
		b := (*[110]byte)(src[110*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[108], b[109])
		sc := q3Scales((*[12]byte)(b[96:]))
		for k := 0; k < 16; k++ {
			dl := d * float32(sc[k])
			// lut[q | 4*highbit] = dl * (q - 4*(1-highbit))
			var lut [8]float32
			for v := range lut {
				lut[v] = dl * float32(int32(v&3)-4+int32(v&4))
			}
			nn, j, h := k>>3, k>>1&3, k&1
			q := (*[16]byte)(b[32+32*nn+16*h:])
			hm := (*[16]byte)(b[16*h:])
			shift := 2 * j
			hs := 4*nn + j // bit of hmask
			yk := (*[16]float32)(y[16*k:])
			for l := range yk {
				yk[l] = lut[q[l]>>shift&3|(hm[l]>>hs&1)<<2]
			}
		}
	}
}

// scaleMinK4 returns the 6-bit scale and min number j (0..7) of a Q4_K/Q5_K block
// (ggml's get_scale_min_k4):
//
//	j < 4: sc = s[j]&63, m = s[j+4]&63
//	j ≥ 4: sc = s[j+4]&15 | (s[j-4]>>6)<<4, m = s[j+4]>>4 | (s[j]>>6)<<4
func scaleMinK4(j int, s *[12]byte) (sc, m byte) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&15 | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// decodeQ4_K: block {half d; half dmin; u8 scales[12]; u8 qs[128]}. Eight sub-blocks of 32
// with 6-bit scale/min pairs (sc_k, m_k) = scaleMinK4(k). For p < 4, l < 32:
//
//	y[64p+l]    = (d*sc_2p)   * (qs[32p+l] & 15) - dmin*m_2p
//	y[64p+32+l] = (d*sc_2p+1) * (qs[32p+l] >> 4) - dmin*m_2p+1
func decodeQ4_K(dst []float32, src []byte) {
	n := blocks("Q4_K", dst, src, qkK, 144)
	for i := 0; i < n; i++ {
		b := (*[144]byte)(src[144*i:])
		y := (*[256]float32)(dst[256*i:])
		d, dmin := f16(b[0], b[1]), f16(b[2], b[3])
		s := (*[12]byte)(b[4:])
		for p := 0; p < 4; p++ {
			sc1, m1 := scaleMinK4(2*p, s)
			sc2, m2 := scaleMinK4(2*p+1, s)
			d1, min1 := d*float32(sc1), dmin*float32(m1)
			d2, min2 := d*float32(sc2), dmin*float32(m2)
			q := (*[32]byte)(b[16+32*p:])
			y1 := (*[32]float32)(y[64*p:])
			y2 := (*[32]float32)(y[64*p+32:])
			for l := range q {
				y1[l] = float32(d1*float32(q[l]&15)) - min1
				y2[l] = float32(d2*float32(q[l]>>4)) - min2
			}
		}
	}
}

// decodeQ5_K: block {half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}. Like Q4_K
// with a fifth bit: for p < 4, l < 32,
//
//	y[64p+l]    = (d*sc_2p)   * ((qs[32p+l] & 15) + 16*(qh[l]>>2p & 1))   - dmin*m_2p
//	y[64p+32+l] = (d*sc_2p+1) * ((qs[32p+l] >> 4) + 16*(qh[l]>>2p+1 & 1)) - dmin*m_2p+1
func decodeQ5_K(dst []float32, src []byte) {
	n := blocks("Q5_K", dst, src, qkK, 176)
	for i := 0; i < n; i++ {
		b := (*[176]byte)(src[176*i:])
		y := (*[256]float32)(dst[256*i:])
		d, dmin := f16(b[0], b[1]), f16(b[2], b[3])
		s := (*[12]byte)(b[4:])
		qh := (*[32]byte)(b[16:])
		for p := 0; p < 4; p++ {
			sc1, m1 := scaleMinK4(2*p, s)
			sc2, m2 := scaleMinK4(2*p+1, s)
			d1, min1 := d*float32(sc1), dmin*float32(m1)
			d2, min2 := d*float32(sc2), dmin*float32(m2)
			q := (*[32]byte)(b[48+32*p:])
			y1 := (*[32]float32)(y[64*p:])
			y2 := (*[32]float32)(y[64*p+32:])
			s1, s2 := 2*p, 2*p+1
			for l := range q {
				h := qh[l]
				y1[l] = float32(d1*float32(q[l]&15|(h>>s1&1)<<4)) - min1
				y2[l] = float32(d2*float32(q[l]>>4|(h>>s2&1)<<4)) - min2
			}
		}
	}
}

// decodeQ6_K: block {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}. For n in {0,1},
// l < 32, with L = ql[64n:], H = qh[32n:], S = scales[8n:], is = l/16:
//
//	y[128n+l]    = d*S[is+0] * ((L[l]&15    | (H[l]>>0&3)<<4) - 32)
//	y[128n+l+32] = d*S[is+2] * ((L[l+32]&15 | (H[l]>>2&3)<<4) - 32)
//	y[128n+l+64] = d*S[is+4] * ((L[l]>>4    | (H[l]>>4&3)<<4) - 32)
//	y[128n+l+96] = d*S[is+6] * ((L[l+32]>>4 | (H[l]>>6&3)<<4) - 32)
func decodeQ6_K(dst []float32, src []byte) {
	n := blocks("Q6_K", dst, src, qkK, 210)
	for i := 0; i < n; i++ {
		b := (*[210]byte)(src[210*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[208], b[209])
		var ds [16]float32
		for k := range ds {
			ds[k] = d * float32(int8(b[192+k]))
		}
		for nn := 0; nn < 2; nn++ {
			ql := (*[64]byte)(b[64*nn:])
			qh := (*[32]byte)(b[128+32*nn:])
			yn := (*[128]float32)(y[128*nn:])
			for half := 0; half < 2; half++ {
				s := ds[8*nn+half:]
				s0, s2, s4, s6 := s[0], s[2], s[4], s[6]
				for l := 16 * half; l < 16*half+16; l++ {
					a, c, h := ql[l], ql[l+32], qh[l]
					yn[l] = s0 * float32(int32(a&15|(h&3)<<4)-32)
					yn[l+32] = s2 * float32(int32(c&15|(h>>2&3)<<4)-32)
					yn[l+64] = s4 * float32(int32(a>>4|(h>>4&3)<<4)-32)
					yn[l+96] = s6 * float32(int32(c>>4|(h>>6&3)<<4)-32)
				}
			}
		}
	}
}

// decodeQ8_K: block {float d; i8 qs[256]; i16 bsums[16]}; y[j] = d*qs[j] (bsums unused).
func decodeQ8_K(dst []float32, src []byte) {
	n := blocks("Q8_K", dst, src, qkK, 292)
	for i := 0; i < n; i++ {
		b := (*[292]byte)(src[292*i:])
		y := (*[256]float32)(dst[256*i:])
		d := math.Float32frombits(binary.LittleEndian.Uint32(b[0:4]))
		q := (*[256]byte)(b[4:])
		for j := range y {
			y[j] = d * float32(int8(q[j]))
		}
	}
}

// trit returns base-3 digit n (most significant first) of a TQ1_0 byte q, which stores
// five trits as ceil(v*256/243): t = ((q*3^n mod 256) * 3) >> 8.
func trit(q byte, pow3 byte) int32 {
	return int32(uint16(q*pow3)*3>>8) - 1
}

// decodeTQ1_0: block {u8 qs[48]; u8 qh[4]; half d}, 1.6875 bits per weight. Each byte
// holds 5 (qs) or 4 (qh) trits t; y = (t-1)*d in the order: for n < 5, m < 32: digit n of
// qs[m]; for n < 5, m < 16: digit n of qs[32+m]; for n < 4, m < 4: digit n of qh[m].
func decodeTQ1_0(dst []float32, src []byte) {
	pow3 := [5]byte{1, 3, 9, 27, 81}
	n := blocks("TQ1_0", dst, src, qkK, 54)
	for i := 0; i < n; i++ {
		b := (*[54]byte)(src[54*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[52], b[53])
		for k, p := range pow3 {
			q := (*[32]byte)(b[0:])
			yk := (*[32]float32)(y[32*k:])
			for m := range yk {
				yk[m] = float32(trit(q[m], p)) * d
			}
		}
		for k, p := range pow3 {
			q := (*[16]byte)(b[32:])
			yk := (*[16]float32)(y[160+16*k:])
			for m := range yk {
				yk[m] = float32(trit(q[m], p)) * d
			}
		}
		for k, p := range pow3[:4] {
			q := (*[4]byte)(b[48:])
			yk := (*[4]float32)(y[240+4*k:])
			for m := range yk {
				yk[m] = float32(trit(q[m], p)) * d
			}
		}
	}
}

// decodeTQ2_0: block {u8 qs[64]; half d}; for h in {0,1}, l < 4, m < 32:
// y[128h+32l+m] = (((qs[32h+m] >> 2l) & 3) - 1)*d.
func decodeTQ2_0(dst []float32, src []byte) {
	n := blocks("TQ2_0", dst, src, qkK, 66)
	for i := 0; i < n; i++ {
		b := (*[66]byte)(src[66*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[64], b[65])
		var lut [4]float32 // (q-1)*d, multiplied at run time like ggml (not negated)
		for v := range lut {
			lut[v] = float32(v-1) * d
		}
		for h := 0; h < 2; h++ {
			q := (*[32]byte)(b[32*h:])
			for l := 0; l < 4; l++ {
				yk := (*[32]float32)(y[128*h+32*l:])
				shift := 2 * l
				for m := range yk {
					yk[m] = lut[q[m]>>shift&3]
				}
			}
		}
	}
}
