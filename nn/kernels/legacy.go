package kernels

// Dots of the 32-element ggml types with Q8_0/Q8_1 activations. In every one, byte j of
// qs holds element j (low nibble) and element j+16 (high nibble), so the qs word of bytes
// 0..7 gives groups 0 (low) and 2 (high), bytes 8..15 groups 1 and 3; lane words of
// group g multiply activation words w[2g] (even) and w[2g+1] (odd).
//
// Bounds for ext (lanes.go), with activation quants |a| ≤ 127: 4-bit quants (0..15) give
// B = 1905, so four products (C ≤ 4·4·1905 = 30480, ΣL < 4·3.0001·1905·2^32 < 2^47) per
// ext; 5-bit quants (0..31) give B = 3937, two products (C ≤ 31496) per ext.

// dotQ4_0Go is ggml_vec_dot_q4_0_q8_0: block {half d; u8 qs[16]}, weights (q-8)·d;
// per block sumi = Σ(q-8)·a = Σq·a - 8·Σa, sumf += (sumi·dx)·dy.
func dotQ4_0Go(w []byte, a []q8Block) float32 {
	var sumf float32
	w = w[:18*len(a)]
	for i := range a {
		b := (*[18]byte)(w[18*i:])
		y := &a[i]
		aw := &y.w
		u0, u1 := le64(b[2:]), le64(b[10:])
		lo := int64(u0&lane4)*aw[0] + int64(u0>>8&lane4)*aw[1] + int64(u1&lane4)*aw[2] + int64(u1>>8&lane4)*aw[3]
		hi := int64(u0>>4&lane4)*aw[4] + int64(u0>>12&lane4)*aw[5] + int64(u1>>4&lane4)*aw[6] + int64(u1>>12&lane4)*aw[7]
		sumi := ext(lo) + ext(hi) - 8*int64(y.sum)
		sumf += float32(float32(float32(sumi)*f16(b[0], b[1])) * y.d)
	}
	return sumf
}

// dotQ4_1Go is ggml_vec_dot_q4_1_q8_1: block {half d; half m; u8 qs[16]}, weights q·d + m;
// sumf += (dx·dy)·Σq·a + m·s.
func dotQ4_1Go(w []byte, a []q8Block) float32 {
	var sumf float32
	w = w[:20*len(a)]
	for i := range a {
		b := (*[20]byte)(w[20*i:])
		y := &a[i]
		aw := &y.w
		u0, u1 := le64(b[4:]), le64(b[12:])
		lo := int64(u0&lane4)*aw[0] + int64(u0>>8&lane4)*aw[1] + int64(u1&lane4)*aw[2] + int64(u1>>8&lane4)*aw[3]
		hi := int64(u0>>4&lane4)*aw[4] + int64(u0>>12&lane4)*aw[5] + int64(u1>>4&lane4)*aw[6] + int64(u1>>12&lane4)*aw[7]
		sumi := ext(lo) + ext(hi)
		dd := float32(f16(b[0], b[1]) * y.d)
		sumf += float32(float32(dd*float32(sumi)) + float32(f16(b[2], b[3])*y.s))
	}
	return sumf
}

// dotQ5_0Go is ggml_vec_dot_q5_0_q8_0: block {half d; u8 qh[4]; u8 qs[16]}, the fifth bit
// of element j is bit j of the 32-bit qh, weights (q-16)·d; sumf += (dx·dy)·sumi.
func dotQ5_0Go(w []byte, a []q8Block) float32 {
	var sumf float32
	w = w[:22*len(a)]
	for i := range a {
		b := (*[22]byte)(w[22*i:])
		y := &a[i]
		sumi := q5Sum(le32(b[2:]), le64(b[6:]), le64(b[14:]), &y.w) - 16*int64(y.sum)
		sumf += float32(float32(f16(b[0], b[1])*y.d) * float32(sumi))
	}
	return sumf
}

// dotQ5_1Go is ggml_vec_dot_q5_1_q8_1: block {half d; half m; u8 qh[4]; u8 qs[16]},
// weights q·d + m; sumf += (dx·dy)·Σq·a + m·s.
func dotQ5_1Go(w []byte, a []q8Block) float32 {
	var sumf float32
	w = w[:24*len(a)]
	for i := range a {
		b := (*[24]byte)(w[24*i:])
		y := &a[i]
		sumi := q5Sum(le32(b[4:]), le64(b[8:]), le64(b[16:]), &y.w)
		dd := float32(f16(b[0], b[1]) * y.d)
		sumf += float32(float32(dd*float32(sumi)) + float32(f16(b[2], b[3])*y.s))
	}
	return sumf
}

// q5Sum returns Σq·a for the 5-bit quants of one Q5_0/Q5_1 block: fifth bits h, qs words
// u0 (bytes 0..7) and u1 (bytes 8..15).
func q5Sum(h uint32, u0, u1 uint64, aw *[8]int64) int64 {
	return q5Pair(u0, &spread5[h&0xff], aw[0], aw[1]) + q5Pair(u1, &spread5[h>>8&0xff], aw[2], aw[3]) +
		q5Pair(u0>>4, &spread5[h>>16&0xff], aw[4], aw[5]) + q5Pair(u1>>4, &spread5[h>>24], aw[6], aw[7])
}

// q5Pair returns the dot of the group of eight 5-bit quants with low nibbles in the low
// nibbles of the bytes of u and fifth bits sp (a spread5 entry) with activation words a0, a1.
func q5Pair(u uint64, sp *[2]uint64, a0, a1 int64) int64 {
	return ext(int64(u&lane4|sp[0])*a0 + int64(u>>8&lane4|sp[1])*a1)
}

// dotQ8_0Go is ggml_vec_dot_q8_0_q8_0: block {half d; i8 qs[32]}; sumf += sumi·(dx·dy).
// A signed quant s is split as s = 16·(h-8) + l with l = s&15 its low nibble and h the
// high nibble of s^0x80, both in 0..15, so Σs·a = Σl·a + 16·Σh·a - 128·Σa.
func dotQ8_0Go(w []byte, a []q8Block) float32 {
	var sumf float32
	w = w[:34*len(a)]
	for i := range a {
		b := (*[34]byte)(w[34*i:])
		y := &a[i]
		aw := &y.w
		u0, u1, u2, u3 := le64(b[2:]), le64(b[10:]), le64(b[18:]), le64(b[26:])
		lo0 := int64(u0&lane4)*aw[0] + int64(u0>>8&lane4)*aw[1] + int64(u1&lane4)*aw[2] + int64(u1>>8&lane4)*aw[3]
		lo1 := int64(u2&lane4)*aw[4] + int64(u2>>8&lane4)*aw[5] + int64(u3&lane4)*aw[6] + int64(u3>>8&lane4)*aw[7]
		u0, u1, u2, u3 = u0^flip8, u1^flip8, u2^flip8, u3^flip8
		hi0 := int64(u0>>4&lane4)*aw[0] + int64(u0>>12&lane4)*aw[1] + int64(u1>>4&lane4)*aw[2] + int64(u1>>12&lane4)*aw[3]
		hi1 := int64(u2>>4&lane4)*aw[4] + int64(u2>>12&lane4)*aw[5] + int64(u3>>4&lane4)*aw[6] + int64(u3>>12&lane4)*aw[7]
		sumi := ext(lo0) + ext(lo1) + 16*(ext(hi0)+ext(hi1)) - 128*int64(y.sum)
		sumf += float32(float32(sumi) * float32(f16(b[0], b[1])*y.d))
	}
	return sumf
}

// Four-vector forms: each block's lane words are unpacked once into local lane words,
// then dotted with the four activation blocks (the ext grouping of the single-vector dot,
// so the integer sums, and therefore the results, are the same).

// sum4 returns the dot of the eight lane words l0..l7 of 4-bit quants (groups 0..3) with
// the activation words aw: four products per ext.
func sum4(l0, l1, l2, l3, l4, l5, l6, l7 int64, aw *[8]int64) int64 {
	return ext(l0*aw[0]+l1*aw[1]+l2*aw[2]+l3*aw[3]) + ext(l4*aw[4]+l5*aw[5]+l6*aw[6]+l7*aw[7])
}

// blocks4 returns block i of each of the four activation rows.
func blocks4(i int, a0, a1, a2, a3 []q8Block) [4]*q8Block {
	return [4]*q8Block{&a0[i], &a1[i], &a2[i], &a3[i]}
}

func dot4Q4_0Go(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8Block) {
	var s [4]float32
	n := len(a0)
	w = w[:18*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	for i := 0; i < n; i++ {
		b := (*[18]byte)(w[18*i:])
		u0, u1 := le64(b[2:]), le64(b[10:])
		l0, l1, l2, l3 := int64(u0&lane4), int64(u0>>8&lane4), int64(u1&lane4), int64(u1>>8&lane4)
		l4, l5, l6, l7 := int64(u0>>4&lane4), int64(u0>>12&lane4), int64(u1>>4&lane4), int64(u1>>12&lane4)
		dx := f16(b[0], b[1])
		for t, y := range blocks4(i, a0, a1, a2, a3) {
			sumi := sum4(l0, l1, l2, l3, l4, l5, l6, l7, &y.w) - 8*int64(y.sum)
			s[t] += float32(float32(float32(sumi)*dx) * y.d)
		}
	}
	*dst = s
}

func dot4Q4_1Go(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8Block) {
	var s [4]float32
	n := len(a0)
	w = w[:20*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	for i := 0; i < n; i++ {
		b := (*[20]byte)(w[20*i:])
		u0, u1 := le64(b[4:]), le64(b[12:])
		l0, l1, l2, l3 := int64(u0&lane4), int64(u0>>8&lane4), int64(u1&lane4), int64(u1>>8&lane4)
		l4, l5, l6, l7 := int64(u0>>4&lane4), int64(u0>>12&lane4), int64(u1>>4&lane4), int64(u1>>12&lane4)
		dx, mx := f16(b[0], b[1]), f16(b[2], b[3])
		for t, y := range blocks4(i, a0, a1, a2, a3) {
			sumi := sum4(l0, l1, l2, l3, l4, l5, l6, l7, &y.w)
			s[t] += float32(float32(float32(dx*y.d)*float32(sumi)) + float32(mx*y.s))
		}
	}
	*dst = s
}

// q5Lanes returns the eight lane words of a Q5_0/Q5_1 block (fifth bits h, qs words u0, u1).
func q5Lanes(h uint32, u0, u1 uint64) (l0, l1, l2, l3, l4, l5, l6, l7 int64) {
	s0, s1 := &spread5[h&0xff], &spread5[h>>8&0xff]
	s2, s3 := &spread5[h>>16&0xff], &spread5[h>>24]
	return int64(u0&lane4 | s0[0]), int64(u0>>8&lane4 | s0[1]), int64(u1&lane4 | s1[0]), int64(u1>>8&lane4 | s1[1]),
		int64(u0>>4&lane4 | s2[0]), int64(u0>>12&lane4 | s2[1]), int64(u1>>4&lane4 | s3[0]), int64(u1>>12&lane4 | s3[1])
}

func dot4Q5_0Go(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8Block) {
	var s [4]float32
	n := len(a0)
	w = w[:22*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	for i := 0; i < n; i++ {
		b := (*[22]byte)(w[22*i:])
		l0, l1, l2, l3, l4, l5, l6, l7 := q5Lanes(le32(b[2:]), le64(b[6:]), le64(b[14:]))
		dx := f16(b[0], b[1])
		for t, y := range blocks4(i, a0, a1, a2, a3) {
			aw := &y.w // two products per ext (5-bit)
			sumi := ext(l0*aw[0]+l1*aw[1]) + ext(l2*aw[2]+l3*aw[3]) + ext(l4*aw[4]+l5*aw[5]) + ext(l6*aw[6]+l7*aw[7]) - 16*int64(y.sum)
			s[t] += float32(float32(dx*y.d) * float32(sumi))
		}
	}
	*dst = s
}

func dot4Q5_1Go(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8Block) {
	var s [4]float32
	n := len(a0)
	w = w[:24*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	for i := 0; i < n; i++ {
		b := (*[24]byte)(w[24*i:])
		l0, l1, l2, l3, l4, l5, l6, l7 := q5Lanes(le32(b[4:]), le64(b[8:]), le64(b[16:]))
		dx, mx := f16(b[0], b[1]), f16(b[2], b[3])
		for t, y := range blocks4(i, a0, a1, a2, a3) {
			aw := &y.w // two products per ext (5-bit)
			sumi := ext(l0*aw[0]+l1*aw[1]) + ext(l2*aw[2]+l3*aw[3]) + ext(l4*aw[4]+l5*aw[5]) + ext(l6*aw[6]+l7*aw[7])
			s[t] += float32(float32(float32(dx*y.d)*float32(sumi)) + float32(mx*y.s))
		}
	}
	*dst = s
}

func dot4Q8_0Go(dst *[4]float32, w []byte, a0, a1, a2, a3 []q8Block) {
	var s [4]float32
	n := len(a0)
	w = w[:34*n]
	a1, a2, a3 = a1[:n], a2[:n], a3[:n]
	for i := 0; i < n; i++ {
		b := (*[34]byte)(w[34*i:])
		u0, u1, u2, u3 := le64(b[2:]), le64(b[10:]), le64(b[18:]), le64(b[26:])
		l0, l1, l2, l3 := int64(u0&lane4), int64(u0>>8&lane4), int64(u1&lane4), int64(u1>>8&lane4)
		l4, l5, l6, l7 := int64(u2&lane4), int64(u2>>8&lane4), int64(u3&lane4), int64(u3>>8&lane4)
		u0, u1, u2, u3 = u0^flip8, u1^flip8, u2^flip8, u3^flip8
		h0, h1, h2, h3 := int64(u0>>4&lane4), int64(u0>>12&lane4), int64(u1>>4&lane4), int64(u1>>12&lane4)
		h4, h5, h6, h7 := int64(u2>>4&lane4), int64(u2>>12&lane4), int64(u3>>4&lane4), int64(u3>>12&lane4)
		dx := f16(b[0], b[1])
		for t, y := range blocks4(i, a0, a1, a2, a3) {
			sumi := sum4(l0, l1, l2, l3, l4, l5, l6, l7, &y.w) + 16*sum4(h0, h1, h2, h3, h4, h5, h6, h7, &y.w) - 128*int64(y.sum)
			s[t] += float32(float32(sumi) * float32(dx*y.d))
		}
	}
	*dst = s
}
