package quant

import "encoding/binary"

// IQ ("importance") quantizations: 256-element super-blocks indexing fixed grids of 4 or 8
// values (iqtables.go) with separate sign bits. A sign bit j set negates output j of a grid
// entry; the negation is a multiplication by -1, as in ggml.

// signTable[s][j] is -1 if bit j of the sign byte s is set, else +1 (kmask_iq2xs = 1<<j).
var signTable = func() (t [256][8]float32) {
	for s := range t {
		for j := range t[s] {
			t[s][j] = 1
			if s>>j&1 != 0 {
				t[s][j] = -1
			}
		}
	}
	return t
}()

// ksignTable[k] = signTable[ksigns_iq2xs[k]]: the signs of a 7-bit IQ2_XXS/IQ2_XS/IQ3_XXS
// sign index (the eighth sign is the parity of the seven).
var ksignTable = func() (t [128][8]float32) {
	for k := range t {
		t[k] = signTable[ksignsIQ2XS[k]]
	}
	return t
}()

// grid8 writes y[j] = (db * g[j]) * sgn[j] for j < 8.
func grid8(y *[8]float32, db float32, g *[8]uint8, sgn *[8]float32) {
	for j := range y {
		y[j] = float32(db*float32(g[j])) * sgn[j]
	}
}

// decodeIQ2_XXS: block {half d; u16 qs[32]}, 2.0625 bits per weight. For each group of
// 32 (ib < 8), a = u32le(qs bytes 8ib..8ib+3) holds four 8-bit grid indices and
// s = u32le(bytes 8ib+4..8ib+7) holds four 7-bit sign indices and a 4-bit scale:
//
//	db = d * (0.5 + (s>>28)) * 0.25
//	for l < 4, j < 8: y[32ib+8l+j] = db * iq2xxs_grid[a>>8l & 255][j] * sign(ksigns_iq2xs[s>>7l & 127], j)
func decodeIQ2_XXS(dst []float32, src []byte) {
	n := blocks("IQ2_XXS", dst, src, qkK, 66)
	for i := 0; i < n; i++ {
		b := (*[66]byte)(src[66*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[0], b[1])
		for ib := 0; ib < 8; ib++ {
			q := (*[8]byte)(b[2+8*ib:])
			s := binary.LittleEndian.Uint32(q[4:])
			db := float32(d*(0.5+float32(s>>28))) * 0.25
			for l := 0; l < 4; l++ {
				grid8((*[8]float32)(y[32*ib+8*l:]), db, &iq2xxsGrid[q[l]], &ksignTable[s>>(7*l)&127])
			}
		}
	}
}

// decodeIQ2_XS: block {half d; u16 qs[32]; u8 scales[8]}, 2.3125 bits per weight. Entry
// q = qs[4ib+l] has a 9-bit grid index and a 7-bit sign index:
//
//	db0 = d * (0.5 + (scales[ib]&15)) * 0.25,  db1 = d * (0.5 + (scales[ib]>>4)) * 0.25
//	y[32ib+8l+j] = db(l/2) * iq2xs_grid[q&511][j] * sign(ksigns_iq2xs[q>>9], j)
func decodeIQ2_XS(dst []float32, src []byte) {
	n := blocks("IQ2_XS", dst, src, qkK, 74)
	for i := 0; i < n; i++ {
		b := (*[74]byte)(src[74*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[0], b[1])
		for ib := 0; ib < 8; ib++ {
			sc := b[66+ib]
			db := [2]float32{
				float32(d*(0.5+float32(sc&15))) * 0.25,
				float32(d*(0.5+float32(sc>>4))) * 0.25,
			}
			for l := 0; l < 4; l++ {
				q := binary.LittleEndian.Uint16(b[2+8*ib+2*l:])
				grid8((*[8]float32)(y[32*ib+8*l:]), db[l>>1], &iq2xsGrid[q&511], &ksignTable[q>>9])
			}
		}
	}
}

// decodeIQ2_S: block {half d; u8 qs[32]; u8 signs[32]; u8 qh[8]; u8 scales[8]} (ggml
// declares qs[64] holding both), 2.5625 bits per weight. For ib < 8, l < 4, j < 8:
//
//	db0, db1 as IQ2_XS from scales[ib]
//	idx = qs[4ib+l] | (qh[ib] << (8-2l)) & 0x300       (10 bits)
//	y[32ib+8l+j] = db(l/2) * iq2s_grid[idx][j] * sign(signs[4ib+l], j)
func decodeIQ2_S(dst []float32, src []byte) {
	n := blocks("IQ2_S", dst, src, qkK, 82)
	for i := 0; i < n; i++ {
		b := (*[82]byte)(src[82*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[0], b[1])
		for ib := 0; ib < 8; ib++ {
			sc := b[74+ib]
			db := [2]float32{
				float32(d*(0.5+float32(sc&15))) * 0.25,
				float32(d*(0.5+float32(sc>>4))) * 0.25,
			}
			qh := uint32(b[66+ib])
			q := (*[4]byte)(b[2+4*ib:])
			sg := (*[4]byte)(b[34+4*ib:])
			for l := 0; l < 4; l++ {
				idx := uint32(q[l]) | qh<<(8-2*l)&0x300
				grid8((*[8]float32)(y[32*ib+8*l:]), db[l>>1], &iq2sGrid[idx], &signTable[sg[l]])
			}
		}
	}
}

// grid4x2 writes y[j] = (db * g1[j]) * sgn[j], y[j+4] = (db * g2[j]) * sgn[j+4] for j < 4.
func grid4x2(y *[8]float32, db float32, g1, g2 *[4]uint8, sgn *[8]float32) {
	for j := 0; j < 4; j++ {
		y[j] = float32(db*float32(g1[j])) * sgn[j]
		y[j+4] = float32(db*float32(g2[j])) * sgn[j+4]
	}
}

// decodeIQ3_XXS: block {half d; u8 qs[64]; u8 scales_and_signs[32]}, 3.0625 bits per
// weight. For ib < 8, s = u32le(scales_and_signs[4ib:]) holds four 7-bit sign indices and
// a 4-bit scale; for l < 4, j < 4:
//
//	db = d * (0.5 + (s>>28)) * 0.5
//	y[32ib+8l+j]   = db * iq3xxs_grid[qs[8ib+2l]][j]   * sign(ksigns_iq2xs[s>>7l & 127], j)
//	y[32ib+8l+4+j] = db * iq3xxs_grid[qs[8ib+2l+1]][j] * sign(ksigns_iq2xs[s>>7l & 127], j+4)
func decodeIQ3_XXS(dst []float32, src []byte) {
	n := blocks("IQ3_XXS", dst, src, qkK, 98)
	for i := 0; i < n; i++ {
		b := (*[98]byte)(src[98*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[0], b[1])
		for ib := 0; ib < 8; ib++ {
			s := binary.LittleEndian.Uint32(b[66+4*ib:])
			db := float32(d*(0.5+float32(s>>28))) * 0.5
			q := (*[8]byte)(b[2+8*ib:])
			for l := 0; l < 4; l++ {
				grid4x2((*[8]float32)(y[32*ib+8*l:]), db, &iq3xxsGrid[q[2*l]], &iq3xxsGrid[q[2*l+1]], &ksignTable[s>>(7*l)&127])
			}
		}
	}
}

// decodeIQ3_S: block {half d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]}, 3.4375
// bits per weight. For ib < 8, l < 4, j < 4:
//
//	db = d * (1 + 2*(scales[ib/2] >> 4(ib%2) & 15))
//	i1 = qs[8ib+2l]   | (qh[ib] << (8-2l)) & 256
//	i2 = qs[8ib+2l+1] | (qh[ib] << (7-2l)) & 256
//	y[32ib+8l+j]   = db * iq3s_grid[i1][j] * sign(signs[4ib+l], j)
//	y[32ib+8l+4+j] = db * iq3s_grid[i2][j] * sign(signs[4ib+l], j+4)
func decodeIQ3_S(dst []float32, src []byte) {
	n := blocks("IQ3_S", dst, src, qkK, 110)
	for i := 0; i < n; i++ {
		b := (*[110]byte)(src[110*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[0], b[1])
		for ib := 0; ib < 8; ib++ {
			db := d * float32(1+2*int32(b[106+ib/2]>>(4*(ib%2))&15))
			qh := uint32(b[66+ib])
			q := (*[8]byte)(b[2+8*ib:])
			sg := (*[4]byte)(b[74+4*ib:])
			for l := 0; l < 4; l++ {
				i1 := uint32(q[2*l]) | qh<<(8-2*l)&256
				i2 := uint32(q[2*l+1]) | qh<<(7-2*l)&256
				grid4x2((*[8]float32)(y[32*ib+8*l:]), db, &iq3sGrid[i1], &iq3sGrid[i2], &signTable[sg[l]])
			}
		}
	}
}

// iq1Grid writes y[j] = dl * (g[j] + delta) for j < 8.
func iq1Grid(y *[8]float32, dl, delta float32, g *[8]int8) {
	for j := range y {
		y[j] = dl * (float32(g[j]) + delta)
	}
}

// iq1Delta returns -IQ1S_DELTA if set, else +IQ1S_DELTA.
func iq1Delta(set bool) float32 {
	if set {
		return -iq1sDelta
	}
	return iq1sDelta
}

// decodeIQ1_S: block {half d; u8 qs[32]; u16 qh[8]}, 1.5625 bits per weight. For ib < 8,
// with h = qh[ib], l < 4, j < 8:
//
//	dl = d * (2*(h>>12 & 7) + 1);  delta = h&0x8000 != 0 ? -0.125 : 0.125
//	y[32ib+8l+j] = dl * (iq1s_grid[qs[4ib+l] | (h>>3l & 7)<<8][j] + delta)
func decodeIQ1_S(dst []float32, src []byte) {
	n := blocks("IQ1_S", dst, src, qkK, 50)
	for i := 0; i < n; i++ {
		b := (*[50]byte)(src[50*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[0], b[1])
		for ib := 0; ib < 8; ib++ {
			h := uint32(binary.LittleEndian.Uint16(b[34+2*ib:]))
			dl := d * float32(2*(h>>12&7)+1)
			delta := iq1Delta(h&0x8000 != 0)
			q := (*[4]byte)(b[2+4*ib:])
			for l := 0; l < 4; l++ {
				idx := uint32(q[l]) | (h>>(3*l)&7)<<8
				iq1Grid((*[8]float32)(y[32*ib+8*l:]), dl, delta, &iq1sGrid[idx])
			}
		}
	}
}

// decodeIQ1_M: block {u8 qs[32]; u8 qh[16]; u8 scales[8]}, 1.75 bits per weight. With
// sc[k] = u16le(scales[2k:]), the block scale is the binary16
// d = sc[0]>>12 | (sc[1]>>8)&0xf0 | (sc[2]>>4)&0xf00 | sc[3]&0xf000. For ib < 8, with
// s = sc[ib/2] >> 6(ib%2), h0 = qh[2ib], h1 = qh[2ib+1]:
//
//	dl1 = d * (2*(s&7) + 1),  dl2 = d * (2*(s>>3 & 7) + 1)
//	idx = qs[4ib] | (h0<<8)&0x700, qs[4ib+1] | (h0<<4)&0x700, qs[4ib+2] | (h1<<8)&0x700, qs[4ib+3] | (h1<<4)&0x700
//	delta = -0.125 if bit 3 (entries 0, 2) or bit 7 (entries 1, 3) of h0/h1 is set, else 0.125
//	y[32ib+8l+j] = dl * (iq1s_grid[idx_l][j] + delta_l), dl = dl1 for l < 2, dl2 for l ≥ 2
func decodeIQ1_M(dst []float32, src []byte) {
	n := blocks("IQ1_M", dst, src, qkK, 56)
	for i := 0; i < n; i++ {
		b := (*[56]byte)(src[56*i:])
		y := (*[256]float32)(dst[256*i:])
		var sc [4]uint32
		for k := range sc {
			sc[k] = uint32(binary.LittleEndian.Uint16(b[48+2*k:]))
		}
		dbits := sc[0]>>12 | sc[1]>>8&0xf0 | sc[2]>>4&0xf00 | sc[3]&0xf000
		d := f16Table[uint16(dbits)]
		for ib := 0; ib < 8; ib++ {
			s := sc[ib/2] >> (6 * (ib % 2))
			dl1 := d * float32(2*(s&7)+1)
			dl2 := d * float32(2*(s>>3&7)+1)
			q := (*[4]byte)(b[4*ib:])
			h0, h1 := uint32(b[32+2*ib]), uint32(b[33+2*ib])
			yb := (*[32]float32)(y[32*ib:])
			iq1Grid((*[8]float32)(yb[0:]), dl1, iq1Delta(h0&0x08 != 0), &iq1sGrid[uint32(q[0])|h0<<8&0x700])
			iq1Grid((*[8]float32)(yb[8:]), dl1, iq1Delta(h0&0x80 != 0), &iq1sGrid[uint32(q[1])|h0<<4&0x700])
			iq1Grid((*[8]float32)(yb[16:]), dl2, iq1Delta(h1&0x08 != 0), &iq1sGrid[uint32(q[2])|h1<<8&0x700])
			iq1Grid((*[8]float32)(yb[24:]), dl2, iq1Delta(h1&0x80 != 0), &iq1sGrid[uint32(q[3])|h1<<4&0x700])
		}
	}
}

// decodeIQ4_XS: block {half d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}, 4.25 bits per
// weight. For ib < 8, j < 16:
//
//	ls = (scales_l[ib/2] >> 4(ib%2)) & 15 | ((scales_h >> 2ib) & 3) << 4
//	dl = d * (ls - 32)
//	y[32ib+j] = dl * kvalues_iq4nl[qs[16ib+j]&15],  y[32ib+16+j] = dl * kvalues_iq4nl[qs[16ib+j]>>4]
func decodeIQ4_XS(dst []float32, src []byte) {
	n := blocks("IQ4_XS", dst, src, qkK, 136)
	for i := 0; i < n; i++ {
		b := (*[136]byte)(src[136*i:])
		y := (*[256]float32)(dst[256*i:])
		d := f16(b[0], b[1])
		sh := uint32(binary.LittleEndian.Uint16(b[2:4]))
		for ib := 0; ib < 8; ib++ {
			ls := int32(b[4+ib/2]>>(4*(ib%2))&15) | int32(sh>>(2*ib)&3)<<4
			dl := d * float32(ls-32)
			var lut [16]float32
			for k, v := range kvaluesIQ4NL {
				lut[k] = dl * float32(v)
			}
			q := (*[16]byte)(b[8+16*ib:])
			yb := (*[32]float32)(y[32*ib:])
			for j := range q {
				yb[j] = lut[q[j]&15]
				yb[j+16] = lut[q[j]>>4]
			}
		}
	}
}
