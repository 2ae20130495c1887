package kernels

import (
	"encoding/binary"
	"math"

	"github.com/kensa-scan/kensa/formats"
	"github.com/x448/float16"
)

// Naive references: each weight block decoded element by element into integer quants
// straight from ggml's layout (the formulas of formats/quant's decoders, written again
// without lanes), a plain integer dot with the activation quants, and the float32
// operations of the block in the order the kernels document. The kernels must give the
// same bits.
//
// Each also returns mag = Σ_i (|s_i| + |m_i|)·|a_i| in float64, where a weight is
// w_i = s_i - m_i (its scale part and its min part, exact reals) and a_i is the
// dequantized activation: an upper bound of Σ|block terms| used by the error bounds.

func h16(b []byte) float32 { return float16.Frombits(binary.LittleEndian.Uint16(b)).Float32() }

// refLegacy decodes block b of a 32-element type into q (the integer multiplied by d),
// its d and its m (0 for the types without a min).
func refLegacy(t formats.DType, b []byte) (q [32]int32, d, m float32) {
	switch t {
	case formats.Q4_0, formats.Q4_1:
		off := 2
		if t == formats.Q4_1 {
			off, m = 4, h16(b[2:])
		}
		for j := 0; j < 16; j++ {
			q[j], q[j+16] = int32(b[off+j]&15), int32(b[off+j]>>4)
		}
		if t == formats.Q4_0 {
			for j := range q {
				q[j] -= 8
			}
		}
	case formats.Q5_0, formats.Q5_1:
		off := 2
		if t == formats.Q5_1 {
			off, m = 4, h16(b[2:])
		}
		h := binary.LittleEndian.Uint32(b[off:])
		for j := 0; j < 16; j++ {
			c := b[off+4+j]
			q[j] = int32(c&15) | int32(h>>j&1)<<4
			q[j+16] = int32(c>>4) | int32(h>>(j+16)&1)<<4
		}
		if t == formats.Q5_0 {
			for j := range q {
				q[j] -= 16
			}
		}
	case formats.Q8_0:
		for j := range q {
			q[j] = int32(int8(b[2+j]))
		}
	}
	return q, h16(b), m
}

func refDotLegacy(t formats.DType, w []byte, a []q8Block) (sumf float32, mag float64) {
	bb := t.BlockBytes()
	for i := range a {
		y := &a[i]
		q, dx, mx := refLegacy(t, w[bb*i:bb*(i+1)])
		var sumi, sumq int32
		var absq float64
		for j := range q {
			sumi += q[j] * int32(y.qs[j])
			sumq += int32(y.qs[j])
			absq += math.Abs(float64(q[j]) * float64(y.qs[j]))
		}
		mag += absq * math.Abs(float64(dx)*float64(y.d))
		switch t {
		case formats.Q4_0:
			sumf += float32(float32(float32(sumi)*dx) * y.d)
		case formats.Q5_0:
			sumf += float32(float32(dx*y.d) * float32(sumi))
		case formats.Q8_0:
			sumf += float32(float32(sumi) * float32(dx*y.d))
		case formats.Q4_1, formats.Q5_1:
			sumf += float32(float32(float32(dx*y.d)*float32(sumi)) + float32(mx*y.s))
			var absa float64
			for j := range q {
				absa += math.Abs(float64(y.qs[j]))
			}
			mag += math.Abs(float64(mx)*float64(y.d)) * absa
		}
	}
	return sumf, mag
}

// refK decodes a k-quant block into q (per element), the scale sc and min mn of the
// element's sub-block (per element: 16 or 32 share one), and d, dmin: the weight is
// d·sc·q - dmin·mn.
func refK(t formats.DType, b []byte) (q, sc, mn [256]int32, d, dmin float32) {
	switch t {
	case formats.Q2_K:
		d, dmin = h16(b[80:]), h16(b[82:])
		for e := 0; e < 256; e++ {
			n, j, m := e/128, e%128/32, e%32
			q[e] = int32(b[16+32*n+m] >> (2 * j) & 3)
			s := b[e/16]
			sc[e], mn[e] = int32(s&15), int32(s>>4)
		}
	case formats.Q3_K:
		d = h16(b[108:])
		var s [16]int32
		for k := 0; k < 16; k++ {
			// 6-bit scale k: low 4 bits from scales[k%8] (nibble k/8), high 2 bits from
			// scales[8+k%4] (bits 2·(k/4)).
			lo := int32(b[96+k%8]>>(4*(k/8))) & 15
			hi := int32(b[96+8+k%4]>>(2*(k/4))) & 3
			s[k] = (lo | hi<<4) - 32
		}
		for e := 0; e < 256; e++ {
			n, j, m := e/128, e%128/32, e%32
			v := int32(b[32+32*n+m] >> (2 * j) & 3)
			if b[m]>>(4*n+j)&1 == 0 {
				v -= 4
			}
			q[e], sc[e] = v, s[e/16]
		}
	case formats.Q4_K, formats.Q5_K:
		d, dmin = h16(b[0:]), h16(b[2:])
		s := b[4:16]
		for e := 0; e < 256; e++ {
			j := e / 32
			var c, m byte
			if j < 4 {
				c, m = s[j]&63, s[j+4]&63
			} else {
				c, m = s[j+4]&15|(s[j-4]>>6)<<4, s[j+4]>>4|(s[j]>>6)<<4
			}
			p, l, hiNib := e/64, e%32, e%64 >= 32
			var v byte
			if t == formats.Q4_K {
				v = b[16+32*p+l]
			} else {
				v = b[48+32*p+l]
			}
			if hiNib {
				v >>= 4
			}
			v &= 15
			if t == formats.Q5_K {
				bit := uint(2 * p)
				if hiNib {
					bit++
				}
				v |= (b[16+l] >> bit & 1) << 4
			}
			q[e], sc[e], mn[e] = int32(v), int32(c), int32(m)
		}
	case formats.Q6_K:
		d = h16(b[208:])
		for e := 0; e < 256; e++ {
			n, r := e/128, e%128
			part, l := r/32, r%32
			L, H := b[64*n:], b[128+32*n:]
			var lo byte
			switch part {
			case 0:
				lo = L[l] & 15
			case 1:
				lo = L[l+32] & 15
			case 2:
				lo = L[l] >> 4
			case 3:
				lo = L[l+32] >> 4
			}
			hi := H[l] >> (2 * part) & 3
			q[e] = int32(lo|hi<<4) - 32
			sc[e] = int32(int8(b[192+e/16]))
		}
	}
	return
}

func refDotK(t formats.DType, w []byte, a []q8KBlock) (sumf float32, mag float64) {
	bb := t.BlockBytes()
	for i := range a {
		y := &a[i]
		q, sc, mn, dx, mx := refK(t, w[bb*i:bb*(i+1)])
		var isum, summ int64
		var absS, absM float64
		for e := 0; e < 256; e++ {
			a := int64(y.qs[e])
			isum += int64(sc[e]) * int64(q[e]) * a
			summ += int64(mn[e]) * a
			absS += math.Abs(float64(sc[e]) * float64(q[e]) * float64(a))
			absM += math.Abs(float64(mn[e]) * float64(a))
		}
		mag += math.Abs(float64(dx)*float64(y.d))*absS + math.Abs(float64(mx)*float64(y.d))*absM
		switch t {
		case formats.Q2_K:
			sumf += float32(float32(y.d*dx)*float32(isum)) - float32(float32(y.d*mx)*float32(summ))
		case formats.Q4_K, formats.Q5_K:
			sumf += float32(float32(dx*y.d)*float32(isum)) - float32(float32(mx*y.d)*float32(summ))
		case formats.Q3_K, formats.Q6_K:
			sumf += float32(float32(dx*y.d) * float32(isum))
		}
	}
	return sumf, mag
}
