package kernels

// Dots of the k-quants (super-blocks of 256) with Q8_K activations. Lane words of group g
// (elements 8g..8g+7) multiply activation words w[2g] (even) and w[2g+1] (odd); each type's
// comment says which qs bytes and bits give which group.
//
// Bounds for ext (lanes.go), |a| ≤ 127: 2-bit quants (B = 381) and 3-bit ones (0..7,
// B = 889) and 4-bit ones (B = 1905): four products per ext; 5-bit quants (B = 3937) and
// 6-bit ones made signed (-32..31, B = 4064, C ≤ 2·4·4064 = 32512 < 2^15): two products.
// The block integer sums stay far inside int64 (and int32: |isum| < 2^27).

// scalesK4 returns the eight 6-bit scales and mins of a Q4_K/Q5_K block (ggml's
// get_scale_min_k4) as the bytes of sc and m: for j < 4, sc_j = s[j]&63, m_j = s[j+4]&63;
// for j ≥ 4, sc_j = s[j+4]&15 | (s[j-4]>>6)<<4, m_j = s[j+4]>>4 | (s[j]>>6)<<4.
func scalesK4(s *[12]byte) (sc, m uint64) {
	a0, a1, a2 := le32(s[0:]), le32(s[4:]), le32(s[8:])
	sc = uint64(a0&0x3f3f3f3f) | uint64(a2&0x0f0f0f0f|(a0>>6&0x03030303)<<4)<<32
	m = uint64(a1&0x3f3f3f3f) | uint64(a2>>4&0x0f0f0f0f|(a1>>6&0x03030303)<<4)<<32
	return sc, m
}

// minsK4 returns Σ_j m_j·(bsums[2j] + bsums[2j+1]) for the mins packed in m.
func minsK4(m uint64, bs *[16]int16) int64 {
	var s int64
	for j := 0; j < 8; j++ {
		s += int64(m>>(8*j)&0xff) * (int64(bs[2*j]) + int64(bs[2*j+1]))
	}
	return s
}

// scalesK3 returns the sixteen signed 6-bit scales of a Q3_K block (see formats/quant's
// q3Scales) as bytes holding scale+32 (0..63), in two words.
func scalesK3(s *[12]byte) (lo, hi uint64) {
	const k1, k2 = 0x03030303, 0x0f0f0f0f
	a0, a1, a2 := le32(s[0:]), le32(s[4:]), le32(s[8:])
	w0 := a0&k2 | (a2&k1)<<4
	w1 := a1&k2 | (a2>>2&k1)<<4
	w2 := a0>>4&k2 | (a2>>4&k1)<<4
	w3 := a1>>4&k2 | (a2>>6&k1)<<4
	return uint64(w0) | uint64(w1)<<32, uint64(w2) | uint64(w3)<<32
}

// dotQ2_KGo is ggml_vec_dot_q2_K_q8_K: block {u8 scales[16]; u8 qs[64]; half d; half dmin};
// element 128n+32j+m (m < 32) is (qs[32n+m]>>2j)&3 of sub-block 8n+2j+m/16, whose scale
// byte holds the 4-bit scale (low) and min (high). Per block:
// sumf += (dy·d)·Σ sc·Σq·a - (dy·dmin)·Σ min·bsum.
func dotQ2_KGo(w []byte, a []q8KBlock) float32 {
	var sumf float32
	w = w[:84*len(a)]
	for i := range a {
		b := (*[84]byte)(w[84*i:])
		y := &a[i]
		var isum, summs int64
		for k := 0; k < 16; k++ {
			summs += int64(y.bsums[k]) * int64(b[k]>>4)
		}
		for n := 0; n < 2; n++ {
			q := (*[32]byte)(b[16+32*n:])
			u0, u1, u2, u3 := le64(q[0:]), le64(q[8:]), le64(q[16:]), le64(q[24:])
			A := (*[32]int64)(y.w[32*n:])
			sc := (*[8]byte)(b[8*n:])
			for j := 0; j < 4; j++ {
				s := uint(2 * j)
				aj := (*[8]int64)(A[8*j:])
				lo := ext(int64(u0>>s&lane2)*aj[0] + int64(u0>>(s+8)&lane2)*aj[1] + int64(u1>>s&lane2)*aj[2] + int64(u1>>(s+8)&lane2)*aj[3])
				hi := ext(int64(u2>>s&lane2)*aj[4] + int64(u2>>(s+8)&lane2)*aj[5] + int64(u3>>s&lane2)*aj[6] + int64(u3>>(s+8)&lane2)*aj[7])
				isum += int64(sc[2*j]&15)*lo + int64(sc[2*j+1]&15)*hi
			}
		}
		dall := y.d * f16(b[80], b[81])
		dmin := y.d * f16(b[82], b[83])
		sumf += float32(dall*float32(isum)) - float32(dmin*float32(summs))
	}
	return sumf
}

// dotQ3_KGo is ggml_vec_dot_q3_K_q8_K: block {u8 hmask[32]; u8 qs[64]; u8 scales[12];
// half d}; element 128n+32j+m (m < 32) is (qs[32n+m]>>2j)&3 + 4·((hmask[m]>>(4n+j))&1) - 4,
// of sub-block 8n+2j+m/16 with a signed 6-bit scale. The -4 is taken out through bsums.
// Per block: sumf += (d·dy)·isum.
func dotQ3_KGo(w []byte, a []q8KBlock) float32 {
	var sumf float32
	w = w[:110*len(a)]
	for i := range a {
		b := (*[110]byte)(w[110*i:])
		y := &a[i]
		slo, shi := scalesK3((*[12]byte)(b[96:]))
		var corr int64
		for k := 0; k < 8; k++ {
			corr += (int64(slo>>(8*k)&0xff)-32)*int64(y.bsums[k]) + (int64(shi>>(8*k)&0xff)-32)*int64(y.bsums[k+8])
		}
		isum := -4 * corr
		h0, h1, h2, h3 := le64(b[0:]), le64(b[8:]), le64(b[16:]), le64(b[24:])
		for n := 0; n < 2; n++ {
			q := (*[32]byte)(b[32+32*n:])
			u0, u1, u2, u3 := le64(q[0:]), le64(q[8:]), le64(q[16:]), le64(q[24:])
			A := (*[32]int64)(y.w[32*n:])
			sw := slo
			if n == 1 {
				sw = shi
			}
			for j := 0; j < 4; j++ {
				s, t := uint(2*j), uint(4*n+j)
				aj := (*[8]int64)(A[8*j:])
				v0 := u0>>s&bytes2 | (h0>>t&bytes1)<<2
				v1 := u1>>s&bytes2 | (h1>>t&bytes1)<<2
				v2 := u2>>s&bytes2 | (h2>>t&bytes1)<<2
				v3 := u3>>s&bytes2 | (h3>>t&bytes1)<<2
				lo := ext(int64(v0&lane8)*aj[0] + int64(v0>>8&lane8)*aj[1] + int64(v1&lane8)*aj[2] + int64(v1>>8&lane8)*aj[3])
				hi := ext(int64(v2&lane8)*aj[4] + int64(v2>>8&lane8)*aj[5] + int64(v3&lane8)*aj[6] + int64(v3>>8&lane8)*aj[7])
				isum += (int64(sw>>(16*j)&0xff)-32)*lo + (int64(sw>>(16*j+8)&0xff)-32)*hi
			}
		}
		d := f16(b[108], b[109]) * y.d
		sumf += float32(d * float32(isum))
	}
	return sumf
}

// dotQ4_KGo is ggml_vec_dot_q4_K_q8_K: block {half d; half dmin; u8 scales[12];
// u8 qs[128]}; qs[32p+l] holds element 64p+l (low nibble, sub-block 2p) and 64p+32+l
// (high, sub-block 2p+1), weights d·sc·q - dmin·m. Per block:
// sumf += (d·dy)·Σ sc·Σq·a - (dmin·dy)·Σ m·bsum.
func dotQ4_KGo(w []byte, a []q8KBlock) float32 {
	var sumf float32
	w = w[:144*len(a)]
	for i := range a {
		b := (*[144]byte)(w[144*i:])
		y := &a[i]
		sc, mn := scalesK4((*[12]byte)(b[4:]))
		summ := minsK4(mn, &y.bsums)
		var isum int64
		for p := 0; p < 4; p++ {
			q := (*[32]byte)(b[16+32*p:])
			A := (*[16]int64)(y.w[16*p:])
			u0, u1, u2, u3 := le64(q[0:]), le64(q[8:]), le64(q[16:]), le64(q[24:])
			lo := ext(int64(u0&lane4)*A[0]+int64(u0>>8&lane4)*A[1]+int64(u1&lane4)*A[2]+int64(u1>>8&lane4)*A[3]) +
				ext(int64(u2&lane4)*A[4]+int64(u2>>8&lane4)*A[5]+int64(u3&lane4)*A[6]+int64(u3>>8&lane4)*A[7])
			hi := ext(int64(u0>>4&lane4)*A[8]+int64(u0>>12&lane4)*A[9]+int64(u1>>4&lane4)*A[10]+int64(u1>>12&lane4)*A[11]) +
				ext(int64(u2>>4&lane4)*A[12]+int64(u2>>12&lane4)*A[13]+int64(u3>>4&lane4)*A[14]+int64(u3>>12&lane4)*A[15])
			s := uint(16 * p)
			isum += int64(sc>>s&0xff)*lo + int64(sc>>(s+8)&0xff)*hi
		}
		d := f16(b[0], b[1]) * y.d
		dmin := f16(b[2], b[3]) * y.d
		sumf += float32(d*float32(isum)) - float32(dmin*float32(summ))
	}
	return sumf
}

// bytePair returns the dot of the eight quants in the bytes of v (one group) with its
// activation words a0 (even elements) and a1 (odd).
func bytePair(v uint64, a0, a1 int64) int64 {
	return ext(int64(v&lane8)*a0 + int64(v>>8&lane8)*a1)
}

// bytePair32 is bytePair for 6-bit quants stored with an offset of 32, made signed.
func bytePair32(v uint64, a0, a1 int64) int64 {
	return ext((int64(v&lane8)-lane32)*a0 + (int64(v>>8&lane8)-lane32)*a1)
}

// dotQ5_KGo is ggml_vec_dot_q5_K_q8_K: block {half d; half dmin; u8 scales[12];
// u8 qh[32]; u8 qs[128]}: Q4_K's layout plus fifth bits, bit 2p of qh[l] for element
// 64p+l and bit 2p+1 for element 64p+32+l. Per block as Q4_K.
func dotQ5_KGo(w []byte, a []q8KBlock) float32 {
	var sumf float32
	w = w[:176*len(a)]
	for i := range a {
		b := (*[176]byte)(w[176*i:])
		y := &a[i]
		sc, mn := scalesK4((*[12]byte)(b[4:]))
		summ := minsK4(mn, &y.bsums)
		h0, h1, h2, h3 := le64(b[16:]), le64(b[24:]), le64(b[32:]), le64(b[40:])
		var isum int64
		for p := 0; p < 4; p++ {
			q := (*[32]byte)(b[48+32*p:])
			A := (*[16]int64)(y.w[16*p:])
			s := uint(2 * p)
			u0, u1, u2, u3 := le64(q[0:]), le64(q[8:]), le64(q[16:]), le64(q[24:])
			g0, g1, g2, g3 := h0>>s, h1>>s, h2>>s, h3>>s
			lo := bytePair(u0&bytes4|g0<<4&bytes1b, A[0], A[1]) + bytePair(u1&bytes4|g1<<4&bytes1b, A[2], A[3]) +
				bytePair(u2&bytes4|g2<<4&bytes1b, A[4], A[5]) + bytePair(u3&bytes4|g3<<4&bytes1b, A[6], A[7])
			hi := bytePair(u0>>4&bytes4|g0<<3&bytes1b, A[8], A[9]) + bytePair(u1>>4&bytes4|g1<<3&bytes1b, A[10], A[11]) +
				bytePair(u2>>4&bytes4|g2<<3&bytes1b, A[12], A[13]) + bytePair(u3>>4&bytes4|g3<<3&bytes1b, A[14], A[15])
			t := uint(16 * p)
			isum += int64(sc>>t&0xff)*lo + int64(sc>>(t+8)&0xff)*hi
		}
		d := f16(b[0], b[1]) * y.d
		dmin := f16(b[2], b[3]) * y.d
		sumf += float32(d*float32(isum)) - float32(dmin*float32(summ))
	}
	return sumf
}

// dotQ6_KGo is ggml_vec_dot_q6_K_q8_K: block {u8 ql[128]; u8 qh[64]; i8 scales[16];
// half d}; for n < 2, l < 32, with L = ql[64n:], H = qh[32n:], element 128n+l is
// L[l]&15 | (H[l]&3)<<4, 128n+32+l is L[32+l]&15 | (H[l]>>2&3)<<4, 128n+64+l is
// L[l]>>4 | (H[l]>>4&3)<<4 and 128n+96+l is L[32+l]>>4 | (H[l]>>6)<<4, each minus 32,
// with the scale of its sub-block of 16. Per block: sumf += (d·dy)·isum.
func dotQ6_KGo(w []byte, a []q8KBlock) float32 {
	var sumf float32
	w = w[:210*len(a)]
	for i := range a {
		b := (*[210]byte)(w[210*i:])
		y := &a[i]
		var isum int64
		for n := 0; n < 2; n++ {
			L := (*[64]byte)(b[64*n:])
			H := (*[32]byte)(b[128+32*n:])
			A := (*[32]int64)(y.w[32*n:])
			sc := (*[8]byte)(b[192+8*n:])
			for kk := 0; kk < 2; kk++ {
				// words k = 2kk and 2kk+1: groups k, 4+k, 8+k, 12+k of the half (elements
				// l, 32+l, 64+l, 96+l), high bits 0-1, 2-3, 4-5, 6-7 of qh; sub-blocks
				// kk, 2+kk, 4+kk, 6+kk of the half.
				var s0, s1, s2, s3 int64
				for k := 2 * kk; k < 2*kk+2; k++ {
					uA, uB, h := le64(L[8*k:]), le64(L[32+8*k:]), le64(H[8*k:])
					a := (*[2]int64)(A[2*k:])
					c := (*[2]int64)(A[8+2*k:])
					e := (*[2]int64)(A[16+2*k:])
					f := (*[2]int64)(A[24+2*k:])
					s0 += bytePair32(uA&bytes4|h<<4&bytes2b, a[0], a[1])
					s1 += bytePair32(uB&bytes4|h<<2&bytes2b, c[0], c[1])
					s2 += bytePair32(uA>>4&bytes4|h&bytes2b, e[0], e[1])
					s3 += bytePair32(uB>>4&bytes4|h>>2&bytes2b, f[0], f[1])
				}
				isum += int64(int8(sc[kk]))*s0 + int64(int8(sc[2+kk]))*s1 +
					int64(int8(sc[4+kk]))*s2 + int64(int8(sc[6+kk]))*s3
			}
		}
		d := f16(b[208], b[209]) * y.d
		sumf += float32(d * float32(isum))
	}
	return sumf
}

// Four-vector forms: each block's lane words are unpacked once into l (group g at l[2g],
// l[2g+1], like the activation words), then one of the lanesDot functions gives the
// block's Σ sc·Σq·a for each activation block, with the bounds above.

// lanesDot4 returns, for each of the four activation blocks a, Σ_k sc[k]·(the dot of
// sub-block k of 16 of the lanes l), four products per ext. Each lane word is loaded once
// for the four blocks. (A type with sub-blocks of 32 passes each scale twice.)
func lanesDot4(l *[64]int64, a *[4]*q8KBlock, sc *[16]int64) (s [4]int64) {
	w0, w1, w2, w3 := &a[0].w, &a[1].w, &a[2].w, &a[3].w
	for k, c := range sc {
		o := 4 * k
		p := (*[4]int64)(l[o:])
		q0, q1, q2, q3 := (*[4]int64)(w0[o:]), (*[4]int64)(w1[o:]), (*[4]int64)(w2[o:]), (*[4]int64)(w3[o:])
		l0, l1, l2, l3 := p[0], p[1], p[2], p[3]
		s[0] += c * ext(l0*q0[0]+l1*q0[1]+l2*q0[2]+l3*q0[3])
		s[1] += c * ext(l0*q1[0]+l1*q1[1]+l2*q1[2]+l3*q1[3])
		s[2] += c * ext(l0*q2[0]+l1*q2[1]+l2*q2[2]+l3*q2[3])
		s[3] += c * ext(l0*q3[0]+l1*q3[1]+l2*q3[2]+l3*q3[3])
	}
	return s
}

// lanesDot2 is lanesDot4 with two products per ext (5- and 6-bit quants).
func lanesDot2(l *[64]int64, a *[4]*q8KBlock, sc *[16]int64) (s [4]int64) {
	w0, w1, w2, w3 := &a[0].w, &a[1].w, &a[2].w, &a[3].w
	for k, c := range sc {
		o := 4 * k
		p := (*[4]int64)(l[o:])
		q0, q1, q2, q3 := (*[4]int64)(w0[o:]), (*[4]int64)(w1[o:]), (*[4]int64)(w2[o:]), (*[4]int64)(w3[o:])
		l0, l1, l2, l3 := p[0], p[1], p[2], p[3]
		s[0] += c * (ext(l0*q0[0]+l1*q0[1]) + ext(l2*q0[2]+l3*q0[3]))
		s[1] += c * (ext(l0*q1[0]+l1*q1[1]) + ext(l2*q1[2]+l3*q1[3]))
		s[2] += c * (ext(l0*q2[0]+l1*q2[1]) + ext(l2*q2[2]+l3*q2[3]))
		s[3] += c * (ext(l0*q3[0]+l1*q3[1]) + ext(l2*q3[2]+l3*q3[3]))
	}
	return s
}

// q8K4 returns block i of each of the four activation rows.
func q8K4(i int, a0, a1, a2, a3 []q8KBlock) [4]*q8KBlock {
	return [4]*q8KBlock{&a0[i], &a1[i], &a2[i], &a3[i]}
}

// put8 stores the lane words of the eight quants in the bytes of v (one group) at e.
func put8(e *[2]int64, v uint64) {
	e[0], e[1] = int64(v&lane8), int64(v>>8&lane8)
}

// put8s is put8 for 6-bit quants stored with an offset of 32, made signed.
func put8s(e *[2]int64, v uint64) {
	e[0], e[1] = int64(v&lane8)-lane32, int64(v>>8&lane8)-lane32
}

// unpackQ2 sets the lanes of a Q2_K qs (64 bytes): group 16n+4j+k is bit-plane j of qs
// word 4n+k.
func unpackQ2(l *[64]int64, qs *[64]byte) {
	for n := 0; n < 2; n++ {
		e := (*[32]int64)(l[32*n:])
		q := (*[32]byte)(qs[32*n:])
		u0, u1, u2, u3 := le64(q[0:]), le64(q[8:]), le64(q[16:]), le64(q[24:])
		for j := 0; j < 4; j++ {
			s := uint(2 * j)
			g := (*[8]int64)(e[8*j:])
			put8((*[2]int64)(g[0:]), u0>>s&bytes2)
			put8((*[2]int64)(g[2:]), u1>>s&bytes2)
			put8((*[2]int64)(g[4:]), u2>>s&bytes2)
			put8((*[2]int64)(g[6:]), u3>>s&bytes2)
		}
	}
}

// unpackQ3 is unpackQ2 plus the third bits of Q3_K (hmask bit 4n+j).
func unpackQ3(l *[64]int64, qs *[64]byte, hm *[32]byte) {
	h0, h1, h2, h3 := le64(hm[0:]), le64(hm[8:]), le64(hm[16:]), le64(hm[24:])
	for n := 0; n < 2; n++ {
		e := (*[32]int64)(l[32*n:])
		q := (*[32]byte)(qs[32*n:])
		u0, u1, u2, u3 := le64(q[0:]), le64(q[8:]), le64(q[16:]), le64(q[24:])
		for j := 0; j < 4; j++ {
			s, t := uint(2*j), uint(4*n+j)
			g := (*[8]int64)(e[8*j:])
			put8((*[2]int64)(g[0:]), u0>>s&bytes2|(h0>>t&bytes1)<<2)
			put8((*[2]int64)(g[2:]), u1>>s&bytes2|(h1>>t&bytes1)<<2)
			put8((*[2]int64)(g[4:]), u2>>s&bytes2|(h2>>t&bytes1)<<2)
			put8((*[2]int64)(g[6:]), u3>>s&bytes2|(h3>>t&bytes1)<<2)
		}
	}
}

func dot4Q2_KGo(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8KBlock) {
	var out [4]float32
	n := len(a0)
	w = w[:84*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	var l [64]int64
	var sc, mn [16]int64
	for i := 0; i < n; i++ {
		b := (*[84]byte)(w[84*i:])
		unpackQ2(&l, (*[64]byte)(b[16:]))
		for k := range sc {
			sc[k], mn[k] = int64(b[k]&15), int64(b[k]>>4)
		}
		dx, mx := f16(b[80], b[81]), f16(b[82], b[83])
		ys := q8K4(i, a0, a1, a2, a3)
		isums := lanesDot4(&l, &ys, &sc)
		for t, y := range ys {
			var summs int64
			for k := range mn {
				summs += mn[k] * int64(y.bsums[k])
			}
			out[t] += float32(float32(y.d*dx)*float32(isums[t])) - float32(float32(y.d*mx)*float32(summs))
		}
	}
	*dst = out
}

func dot4Q3_KGo(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8KBlock) {
	var out [4]float32
	n := len(a0)
	w = w[:110*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	var l [64]int64
	var sc [16]int64
	for i := 0; i < n; i++ {
		b := (*[110]byte)(w[110*i:])
		unpackQ3(&l, (*[64]byte)(b[32:]), (*[32]byte)(b[0:]))
		slo, shi := scalesK3((*[12]byte)(b[96:]))
		for k := 0; k < 8; k++ {
			sc[k], sc[k+8] = int64(slo>>(8*k)&0xff)-32, int64(shi>>(8*k)&0xff)-32
		}
		dx := f16(b[108], b[109])
		ys := q8K4(i, a0, a1, a2, a3)
		isums := lanesDot4(&l, &ys, &sc)
		for t, y := range ys {
			var corr int64
			for k := range sc {
				corr += sc[k] * int64(y.bsums[k])
			}
			out[t] += float32(float32(dx*y.d) * float32(isums[t]-4*corr))
		}
	}
	*dst = out
}

// unpackQ4 sets the lanes of a Q4_K qs: group 8p+k from the low nibbles of word 4p+k,
// group 8p+4+k from its high nibbles.
func unpackQ4(l *[64]int64, qs *[128]byte) {
	for p := 0; p < 4; p++ {
		e := (*[16]int64)(l[16*p:])
		q := (*[32]byte)(qs[32*p:])
		u0, u1, u2, u3 := le64(q[0:]), le64(q[8:]), le64(q[16:]), le64(q[24:])
		e[0], e[1], e[2], e[3] = int64(u0&lane4), int64(u0>>8&lane4), int64(u1&lane4), int64(u1>>8&lane4)
		e[4], e[5], e[6], e[7] = int64(u2&lane4), int64(u2>>8&lane4), int64(u3&lane4), int64(u3>>8&lane4)
		e[8], e[9], e[10], e[11] = int64(u0>>4&lane4), int64(u0>>12&lane4), int64(u1>>4&lane4), int64(u1>>12&lane4)
		e[12], e[13], e[14], e[15] = int64(u2>>4&lane4), int64(u2>>12&lane4), int64(u3>>4&lane4), int64(u3>>12&lane4)
	}
}

// unpackQ5 is unpackQ4 with Q5_K's fifth bits (bit 2p of qh for the low nibbles, 2p+1
// for the high ones).
func unpackQ5(l *[64]int64, qs *[128]byte, qh *[32]byte) {
	h0, h1, h2, h3 := le64(qh[0:]), le64(qh[8:]), le64(qh[16:]), le64(qh[24:])
	for p := 0; p < 4; p++ {
		e := (*[16]int64)(l[16*p:])
		q := (*[32]byte)(qs[32*p:])
		s := uint(2 * p)
		u0, u1, u2, u3 := le64(q[0:]), le64(q[8:]), le64(q[16:]), le64(q[24:])
		g0, g1, g2, g3 := h0>>s, h1>>s, h2>>s, h3>>s
		put8((*[2]int64)(e[0:]), u0&bytes4|g0<<4&bytes1b)
		put8((*[2]int64)(e[2:]), u1&bytes4|g1<<4&bytes1b)
		put8((*[2]int64)(e[4:]), u2&bytes4|g2<<4&bytes1b)
		put8((*[2]int64)(e[6:]), u3&bytes4|g3<<4&bytes1b)
		put8((*[2]int64)(e[8:]), u0>>4&bytes4|g0<<3&bytes1b)
		put8((*[2]int64)(e[10:]), u1>>4&bytes4|g1<<3&bytes1b)
		put8((*[2]int64)(e[12:]), u2>>4&bytes4|g2<<3&bytes1b)
		put8((*[2]int64)(e[14:]), u3>>4&bytes4|g3<<3&bytes1b)
	}
}

// dot4K45 adds the four-vector dots of a Q4_K or Q5_K block (header b, lanes l) to out;
// Q5_K's 5-bit lanes take two products per ext, Q4_K's four.
func dot4K45(out *[4]float32, l *[64]int64, b *[16]byte, i int, a0, a1, a2, a3 []q8KBlock, five bool) {
	scw, mnw := scalesK4((*[12]byte)(b[4:]))
	var sc [16]int64
	for k := range sc {
		sc[k] = int64(scw >> (8 * (k / 2)) & 0xff)
	}
	dx, mx := f16(b[0], b[1]), f16(b[2], b[3])
	ys := q8K4(i, a0, a1, a2, a3)
	var isums [4]int64
	if five {
		isums = lanesDot2(l, &ys, &sc)
	} else {
		isums = lanesDot4(l, &ys, &sc)
	}
	for t, y := range ys {
		summ := minsK4(mnw, &y.bsums)
		out[t] += float32(float32(dx*y.d)*float32(isums[t])) - float32(float32(mx*y.d)*float32(summ))
	}
}

func dot4Q4_KGo(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8KBlock) {
	var out [4]float32
	n := len(a0)
	w = w[:144*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	var l [64]int64
	for i := 0; i < n; i++ {
		b := (*[144]byte)(w[144*i:])
		unpackQ4(&l, (*[128]byte)(b[16:]))
		dot4K45(&out, &l, (*[16]byte)(b[:]), i, a0, a1, a2, a3, false)
	}
	*dst = out
}

func dot4Q5_KGo(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8KBlock) {
	var out [4]float32
	n := len(a0)
	w = w[:176*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	var l [64]int64
	for i := 0; i < n; i++ {
		b := (*[176]byte)(w[176*i:])
		unpackQ5(&l, (*[128]byte)(b[48:]), (*[32]byte)(b[16:]))
		dot4K45(&out, &l, (*[16]byte)(b[:]), i, a0, a1, a2, a3, true)
	}
	*dst = out
}

// unpackQ6 sets the lanes of a Q6_K block's ql and qh (signed, q-32): in half h, word k
// gives groups k, 4+k, 8+k and 12+k of the half (see dotQ6_KGo).
func unpackQ6(l *[64]int64, b *[210]byte) {
	for h := 0; h < 2; h++ {
		L := (*[64]byte)(b[64*h:])
		H := (*[32]byte)(b[128+32*h:])
		e := (*[32]int64)(l[32*h:])
		for k := 0; k < 4; k++ {
			uA, uB, q := le64(L[8*k:]), le64(L[32+8*k:]), le64(H[8*k:])
			put8s((*[2]int64)(e[2*k:]), uA&bytes4|q<<4&bytes2b)
			put8s((*[2]int64)(e[8+2*k:]), uB&bytes4|q<<2&bytes2b)
			put8s((*[2]int64)(e[16+2*k:]), uA>>4&bytes4|q&bytes2b)
			put8s((*[2]int64)(e[24+2*k:]), uB>>4&bytes4|q>>2&bytes2b)
		}
	}
}

func dot4Q6_KGo(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8KBlock) {
	var out [4]float32
	n := len(a0)
	w = w[:210*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	var l [64]int64
	var sc [16]int64
	for i := 0; i < n; i++ {
		b := (*[210]byte)(w[210*i:])
		unpackQ6(&l, b)
		for k := range sc {
			sc[k] = int64(int8(b[192+k]))
		}
		dx := f16(b[208], b[209])
		ys := q8K4(i, a0, a1, a2, a3)
		isums := lanesDot2(&l, &ys, &sc)
		for t, y := range ys {
			out[t] += float32(float32(dx*y.d) * float32(isums[t]))
		}
	}
	*dst = out
}
