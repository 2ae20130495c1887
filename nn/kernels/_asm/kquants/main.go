// Command kquants generates kquants_amd64.s: the dots of the k-quant weight types with
// Q8_K activations (see nn/kernels/kquants.go for the block layouts and the pure-Go
// versions), in three paths each:
//
//   - …AVX2: ymm, vpmaddubsw (unsigned weight quants × signed activation quants, pairs
//     summed into int16) then vpmaddwd with the sub-block scales (int32 lanes);
//   - …AVX512: the same on zmm (64 elements per vector), vpmaddwd + vpaddd;
//   - …VNNI: AVX512 with vpdpwssd fusing the vpmaddwd and the vpaddd.
//
// Integer sums per block are exact (every int32 lane stays below 2^24, so its float32
// conversion is exact too); each block's lanes are multiplied by its float32 scale
// d_w·d_a (one rounding) and accumulated lane by lane with FMA (one rounding per block);
// the lanes are summed by a tree of at most 5 levels at the end.
//
// Lane bounds (|a| ≤ 127; a vpmaddubsw word holds two products, a vpmaddwd lane two
// words times a scale; a block adds 4 zmm or 8 ymm vectors into each lane):
//
//	Q2_K  q ≤ 3, sc ≤ 15:           word ≤ 762,   lane ≤ 8·2·762·15 = 182880
//	Q3_K  |q-4| ≤ 4, |sc| ≤ 32:     word ≤ 1016,  lane ≤ 8·2·1016·32 = 520192
//	Q4_K  q ≤ 15, sc ≤ 63:          word ≤ 3810,  lane ≤ 8·2·3810·63 = 3840480
//	Q5_K  q ≤ 31, sc ≤ 63:          word ≤ 7874,  lane ≤ 8·2·7874·63 = 7936992
//	Q6_K  |q-32| ≤ 32, |sc| ≤ 128:  word ≤ 8128,  lane ≤ 8·2·8128·128 = 16646144 < 2^24
//
// (vpmaddubsw saturates at 32767; the unsigned quant times a is at most 2·63·127 = 16002.)
// The min lanes (bsums pairs times a 6- or 4-bit min) are below 63·2·2032 = 256032. The
// four-vector Q6_K/Q3_K zmm forms accumulate (a+128)·(q-off)·sc, at most
// 4·2·(2·255·32)·128 = 16711680 in magnitude, and subtract 128·(q-off)·sc of the same
// elements, leaving the lane of the offset form above.
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// q8KBlock layout (asserted by TestKQuantsOffsets).
const (
	actD     = 512 // d float32
	actBsums = 516 // bsums [16]int16
	actQs    = 548 // qs [256]int8
	actSize  = 808 // sizeof(q8KBlock)
)

// path is one of the zmm variants (the AVX2 generators take none).
type path struct {
	suffix string
	vnni   bool // vpdpwssd (AVX512_VNNI)
}

var (
	pAVX512 = path{"AVX512", false}
	pVNNI   = path{"VNNI", true}
)

// dpwssd adds the pairwise products of the int16 words of a and b to the int32 lanes of
// acc: vpdpwssd with VNNI, else vpmaddwd into tmp and vpaddd.
func (p path) dpwssd(b, a, acc, tmp Op) {
	if p.vnni {
		Instruction(&ir.Instruction{
			Opcode:   "VPDPWSSD",
			Operands: []Op{b, a, acc},
			Inputs:   []Op{b, a, acc},
			Outputs:  []Op{acc},
			ISA:      []string{"AVX512_VNNI"},
		})
		return
	}
	VPMADDWD(b, a, tmp)
	VPADDD(tmp, acc, acc)
}

// constant tables

func bytesConst(name string, b []byte) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i, v := range b {
		DATA(i, U8(v))
	}
	return m
}

func repeat(v byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = v
	}
	return b
}

func words(ws ...int) []byte {
	var b []byte
	for _, w := range ws {
		b = append(b, byte(w), byte(w>>8))
	}
	return b
}

func repeatWords(w, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = w
	}
	return s
}

// Positions of the Q4_K/Q5_K scales and mins in the 16 bytes the scalar decoder builds:
// [sc0..3, m0..3, sc4..7, m4..7].
func posSc(j int) byte {
	if j < 4 {
		return byte(j)
	}
	return byte(j + 4)
}

func posM(j int) byte {
	if j < 4 {
		return byte(4 + j)
	}
	return byte(8 + j)
}

var (
	cM0F, cM30, cM32, cHmask6 Mem
	cShift4, cQ6ShA, cQ6ShB   Mem
	cK4Shuf512, cK4Shuf2      Mem
	cK4MShuf, cOnes32         Mem
	cQ6Idx, cQ6Shuf2          Mem
	cM10, cQ5Sh               Mem
	cM03, cM04, cW0F          Mem
	cQ2Sh, cQ3Sh              Mem
	cM80                      Mem
)

func constants() {
	cM0F = bytesConst("kqM0F", repeat(0x0f, 64))
	cM30 = bytesConst("kqM30", repeat(0x30, 32))
	cM32 = bytesConst("kqM32", repeat(0x20, 64))
	cM10 = bytesConst("kqM10", repeat(0x10, 64))
	cM03 = bytesConst("kqM03", repeat(0x03, 64))
	cM80 = bytesConst("kqM80", repeat(0x80, 64))
	cM04 = bytesConst("kqM04", repeat(0x04, 64))
	cW0F = bytesConst("kqW0F", words(repeatWords(0x0f, 16)...))
	// Q2_K/Q3_K zmm k of a half: bit-planes 2k (low half), 2k+1 (high half)
	cQ2Sh = bytesConst("kqQ2Sh", words(append(append(append(repeatWords(0, 16), repeatWords(2, 16)...),
		repeatWords(4, 16)...), repeatWords(6, 16)...)...))
	// Q3_K zmm z: hmask bits 2z (low half), 2z+1 (high) to bit 2: left shifts for z = 0,
	// right shifts for z ≥ 1
	var s3 []int
	for z := 0; z < 4; z++ {
		lo, hi := 2*z-2, 2*z-1
		if z == 0 {
			lo, hi = 2, 1
		}
		s3 = append(append(s3, repeatWords(lo, 16)...), repeatWords(hi, 16)...)
	}
	cQ3Sh = bytesConst("kqQ3Sh", words(s3...))
	// Q5_K zmm q: qh bit 2q to bit 4 in the low half, 2q+1 in the high half (left
	// shifts for q < 2, right shifts for q ≥ 2)
	var sh []int
	for q := 0; q < 4; q++ {
		lo, hi := 4-2*q, 3-2*q
		if q >= 2 {
			lo, hi = -lo, -hi
		}
		sh = append(append(sh, repeatWords(lo, 16)...), repeatWords(hi, 16)...)
	}
	cQ5Sh = bytesConst("kqQ5Sh", words(sh...))
	cHmask6 = bytesConst("kqHmask6", append(repeat(0x33, 32), repeat(0xcc, 32)...))
	cShift4 = bytesConst("kqShift4", words(append(repeatWords(0, 16), repeatWords(4, 16)...)...))
	cQ6ShA = bytesConst("kqQ6ShA", words(append(repeatWords(4, 16), repeatWords(2, 16)...)...))
	cQ6ShB = bytesConst("kqQ6ShB", words(append(repeatWords(0, 16), repeatWords(2, 16)...)...))

	// zmm p (qs bytes 32p..32p+31: sub-blocks 2p low nibbles, 2p+1 high): words of the
	// low half hold sc_{2p}, of the high half sc_{2p+1}.
	var b []byte
	for p := 0; p < 4; p++ {
		for i := 0; i < 32; i++ {
			j := 2*p + i/16
			b = append(b, posSc(j), 0x80)
		}
	}
	cK4Shuf512 = bytesConst("kqK4Shuf512", b)
	// ymm j: all words sc_j.
	b = nil
	for j := 0; j < 8; j++ {
		for i := 0; i < 16; i++ {
			b = append(b, posSc(j), 0x80)
		}
	}
	cK4Shuf2 = bytesConst("kqK4Shuf2", b)
	// mins as words m0,m0,m1,m1,...,m7,m7 (one per bsum).
	b = nil
	for k := 0; k < 16; k++ {
		b = append(b, posM(k/2), 0x80)
	}
	cK4MShuf = bytesConst("kqK4MShuf", b)
	cOnes32 = bytesConst("kqOnes32", words(repeatWords(1, 16)...)) // dwords of 1 (8)

	// Q6_K zmm z (elements 64z..64z+63, sub-blocks 4z..4z+3): 128-bit lane i holds
	// scale word 4z+i.
	var ws []int
	for z := 0; z < 4; z++ {
		for i := 0; i < 32; i++ {
			ws = append(ws, 4*z+i/8)
		}
	}
	cQ6Idx = bytesConst("kqQ6Idx", words(ws...))
	// Q6_K ymm v (elements 32v..32v+31): bytes sc_{2v} ×8, sc_{2v+1} ×8.
	b = nil
	for v := 0; v < 8; v++ {
		for i := 0; i < 16; i++ {
			b = append(b, byte(2*v+i/8))
		}
	}
	cQ6Shuf2 = bytesConst("kqQ6Shuf2", b)
}

// args loads the arguments of a dot (nv = 1) or four-vector dot (nv = 4).
func args(name string, nv int) (dst, w reg.GPVirtual, a []reg.GPVirtual, n reg.GPVirtual) {
	if nv == 1 {
		TEXT(name, NOSPLIT, "func(w *byte, a *byte, n int) float32")
		w = Load(Param("w"), GP64()).(reg.GPVirtual)
		a = []reg.GPVirtual{Load(Param("a"), GP64()).(reg.GPVirtual)}
	} else {
		TEXT(name, NOSPLIT, "func(dst *float32, w *byte, a0, a1, a2, a3 *byte, n int)")
		dst = Load(Param("dst"), GP64()).(reg.GPVirtual)
		w = Load(Param("w"), GP64()).(reg.GPVirtual)
		for t := 0; t < 4; t++ {
			a = append(a, Load(Param(fmt.Sprintf("a%d", t)), GP64()).(reg.GPVirtual))
		}
	}
	n = Load(Param("n"), GP64()).(reg.GPVirtual)
	return
}

// store writes the nv results (xmm lane 0 each).
func store(dst reg.GPVirtual, res []reg.VecVirtual) {
	if len(res) == 1 {
		Store(res[0], ReturnIndex(0))
		return
	}
	for t, r := range res {
		MOVSS(r, Mem{Base: dst, Disp: 4 * t})
	}
}

// hsum512 returns the sum of the 16 lanes of z minus the 8 lanes of ym (ym may be nil)
// in lane 0 of an xmm: 5 levels (4 without ym).
func hsum512(z reg.VecVirtual, ym reg.Register) reg.VecVirtual {
	y := YMM()
	VEXTRACTF64X4(Imm(1), z, y)
	VADDPS(z.AsY(), y, y)
	if ym != nil {
		VSUBPS(ym, y, y)
	}
	return hsum256(y, nil)
}

// hsum256 returns the sum of the 8 lanes of y minus the 8 lanes of ym (ym may be nil).
func hsum256(y reg.VecVirtual, ym reg.Register) reg.VecVirtual {
	if ym != nil {
		VSUBPS(ym, y, y)
	}
	x := XMM()
	VEXTRACTF128(Imm(1), y, x)
	VADDPS(y.AsX(), x, x)
	u := XMM()
	VMOVHLPS(x, x, u)
	VADDPS(u, x, x)
	VMOVSHDUP(x, u)
	VADDSS(u, x, x)
	return x
}

func step(w reg.GPVirtual, wb int, a []reg.GPVirtual, n reg.GPVirtual, loop string) {
	ADDQ(U32(wb), w)
	for _, p := range a {
		ADDQ(U32(actSize), p)
	}
	DECQ(n)
	JNZ(LabelRef(loop))
}

// scalesK4 decodes the 12 scale bytes at w+4 (Q4_K, Q5_K) into the 16 bytes
// [sc0..3, m0..3, sc4..7, m4..7] in x (an xmm).
func scalesK4(w reg.GPVirtual, k3f, k03, k0f reg.GPVirtual, x reg.Register) {
	lo, hi, hb, t := GP64(), GP64(), GP64(), GP64()
	MOVQ(Mem{Base: w, Disp: 4}, lo)
	MOVL(Mem{Base: w, Disp: 12}, hi.As32())
	MOVQ(lo, hb)
	SHRQ(Imm(6), hb)
	ANDQ(k03, hb)
	SHLQ(Imm(4), hb)
	ANDQ(k3f, lo)
	MOVQ(hi, t)
	SHRQ(Imm(4), t)
	SHLQ(Imm(32), t)
	ORQ(t, hi)
	ANDQ(k0f, hi)
	ORQ(hb, hi)
	VMOVQ(lo, x)
	VPINSRQ(Imm(1), hi, x, x)
}

func k4consts() (k3f, k03, k0f reg.GPVirtual) {
	k3f, k03, k0f = GP64(), GP64(), GP64()
	MOVQ(U64(0x3f3f3f3f3f3f3f3f), k3f)
	MOVQ(U64(0x0303030303030303), k03)
	MOVQ(U64(0x0f0f0f0f0f0f0f0f), k0f)
	return
}

// q45K512 generates the zmm Q4_K (five = false) or Q5_K dot for nv vectors.
func q45K512(p path, nv int, five bool) {
	typ, bb, qoff := "Q4_K", 144, 16
	if five {
		typ, bb, qoff = "Q5_K", 176, 48
	}
	name := "dot" + typ + p.suffix
	if nv == 4 {
		name = "dot4" + typ + p.suffix
	}
	dst, w, a, n := args(name, nv)
	k3f, k03, k0f := k4consts()
	m4, shift := ZMM(), ZMM()
	VMOVDQU64(cM0F, m4)
	VMOVDQU64(cShift4, shift)
	shuf := make([]reg.VecVirtual, 4)
	for i := range shuf {
		shuf[i] = ZMM()
		VMOVDQU64(cK4Shuf512.Offset(64*i), shuf[i])
	}
	mshuf, ones := YMM(), YMM()
	VMOVDQU(cK4MShuf, mshuf)
	VMOVDQU(cOnes32, ones)
	accF := make([]reg.VecVirtual, nv)
	accM := make([]reg.VecVirtual, nv)
	for t := range accF {
		accF[t], accM[t] = ZMM(), YMM()
		VXORPS(accF[t], accF[t], accF[t])
		VXORPS(accM[t], accM[t], accM[t])
	}
	loop := name + "_loop"
	Label(loop)
	zs := ZMM()
	scalesK4(w, k3f, k03, k0f, zs.AsX())
	VSHUFI64X2(Imm(0), zs, zs, zs)
	acc := make([]reg.VecVirtual, nv)
	for t := range acc {
		acc[t] = ZMM()
	}
	var zh, m10 reg.VecVirtual
	if five {
		zh, m10 = ZMM(), ZMM()
		VBROADCASTI64X4(Mem{Base: w, Disp: 16}, zh) // qh in both halves
		VMOVDQU64(cM10, m10)
	}
	for q := 0; q < 4; q++ {
		zq, zsc := ZMM(), ZMM()
		VBROADCASTI64X4(Mem{Base: w, Disp: qoff + 32*q}, zq)
		VPSRLVW(shift, zq, zq)
		VPANDD(m4, zq, zq)
		if five {
			// fifth bits: bit 2q of qh (low half), 2q+1 (high half) moved to bit 4
			hb := ZMM()
			if q < 2 {
				VPSLLVW(cQ5Sh.Offset(64*q), zh, hb)
			} else {
				VPSRLVW(cQ5Sh.Offset(64*q), zh, hb)
			}
			VPTERNLOGD(Imm(0xf8), m10, hb, zq) // zq | (hb & m10)
		}
		VPSHUFB(shuf[q], zs, zsc)
		for t := 0; t < nv; t++ {
			zp := ZMM()
			VPMADDUBSW(Mem{Base: a[t], Disp: actQs + 64*q}, zq, zp)
			if q == 0 {
				VPMADDWD(zsc, zp, acc[t])
			} else {
				p.dpwssd(zsc, zp, acc[t], zp)
			}
		}
	}
	md := YMM()
	VPSHUFB(mshuf, zs.AsY(), md)
	xd := XMM()
	VCVTPH2PS(Mem{Base: w}, xd)
	for t := 0; t < nv; t++ {
		mt := YMM()
		VPMADDWD(Mem{Base: a[t], Disp: actBsums}, md, mt)
		yd := YMM()
		VMULPS_BCST(Mem{Base: a[t], Disp: actD}, xd, yd.AsX())
		zdb := ZMM()
		VBROADCASTSS(yd.AsX(), zdb)
		VPERMPS(yd, ones, yd)
		zf := ZMM()
		VCVTDQ2PS(acc[t], zf)
		VFMADD231PS(zf, zdb, accF[t])
		yf := YMM()
		VCVTDQ2PS(mt, yf)
		VFMADD231PS(yf, yd, accM[t])
	}
	step(w, bb, a, n, loop)
	res := make([]reg.VecVirtual, nv)
	for t := range res {
		res[t] = hsum512(accF[t], accM[t])
	}
	store(dst, res)
	VZEROUPPER()
	RET()
}

// q45KAVX2 generates the ymm Q4_K or Q5_K dot for nv vectors.
func q45KAVX2(nv int, five bool) {
	typ, bb, qoff := "Q4_K", 144, 16
	if five {
		typ, bb, qoff = "Q5_K", 176, 48
	}
	name := "dot" + typ + "AVX2"
	if nv == 4 {
		name = "dot4" + typ + "AVX2"
	}
	dst, w, a, n := args(name, nv)
	k3f, k03, k0f := k4consts()
	m4 := YMM()
	VMOVDQU(cM0F, m4)
	accF := make([]reg.VecVirtual, nv)
	for t := range accF {
		accF[t] = YMM()
		VXORPS(accF[t], accF[t], accF[t])
	}
	loop := name + "_loop"
	Label(loop)
	ys := YMM()
	scalesK4(w, k3f, k03, k0f, ys.AsX())
	VPERMQ(Imm(0x44), ys, ys)
	acc := make([]reg.VecVirtual, nv)
	for t := range acc {
		acc[t] = YMM()
	}
	for q := 0; q < 4; q++ {
		yl, yhi := YMM(), YMM()
		VMOVDQU(Mem{Base: w, Disp: qoff + 32*q}, yl)
		VPSRLW(Imm(4), yl, yhi)
		VPAND(m4, yl, yl)
		VPAND(m4, yhi, yhi)
		for half, yq := range []reg.VecVirtual{yl, yhi} {
			j := 2*q + half
			if five {
				// bit j of qh to bit 4
				hb := YMM()
				VMOVDQU(Mem{Base: w, Disp: 16}, hb)
				switch sh := 4 - j; {
				case sh > 0:
					VPSLLW(Imm(uint64(sh)), hb, hb)
				case sh < 0:
					VPSRLW(Imm(uint64(-sh)), hb, hb)
				}
				VPAND(cM10, hb, hb)
				VPOR(hb, yq, yq)
			}
			ysc := YMM()
			VPSHUFB(cK4Shuf2.Offset(32*j), ys, ysc)
			for t := 0; t < nv; t++ {
				yp := YMM()
				VPMADDUBSW(Mem{Base: a[t], Disp: actQs + 32*j}, yq, yp)
				if j == 0 {
					VPMADDWD(ysc, yp, acc[t])
				} else {
					VPMADDWD(ysc, yp, yp)
					VPADDD(yp, acc[t], acc[t])
				}
			}
		}
	}
	// per vector: f = D·isum lanes - Dm·min lanes (two roundings), accF += f
	md := YMM()
	VPSHUFB(cK4MShuf, ys, md)
	db, dmb := YMM(), YMM()
	VCVTPH2PS(Mem{Base: w}, db.AsX())
	VMOVSHDUP(db.AsX(), dmb.AsX())
	VBROADCASTSS(db.AsX(), db)
	VBROADCASTSS(dmb.AsX(), dmb)
	for t := 0; t < nv; t++ {
		mt := YMM()
		VPMADDWD(Mem{Base: a[t], Disp: actBsums}, md, mt)
		VCVTDQ2PS(mt, mt)
		ya, yd := YMM(), YMM()
		VBROADCASTSS(Mem{Base: a[t], Disp: actD}, ya)
		VMULPS(ya, db, yd)
		VMULPS(ya, dmb, ya)
		VCVTDQ2PS(acc[t], acc[t])
		VMULPS(yd, acc[t], acc[t])
		VFNMADD231PS(mt, ya, acc[t])
		VADDPS(acc[t], accF[t], accF[t])
	}
	step(w, bb, a, n, loop)
	res := make([]reg.VecVirtual, nv)
	for t := range res {
		res[t] = hsum256(accF[t], nil)
	}
	store(dst, res)
	VZEROUPPER()
	RET()
}

// q6K512 generates the zmm Q6_K dot for nv vectors.
func q6K512(p path, nv int) {
	name := "dotQ6_K" + p.suffix
	if nv == 4 {
		name = "dot4Q6_K" + p.suffix
	}
	dst, w, a, n := args(name, nv)
	m0f, hmask, shA, shB, m32 := ZMM(), ZMM(), ZMM(), ZMM(), ZMM()
	VMOVDQU64(cM0F, m0f)
	VMOVDQU64(cHmask6, hmask)
	VMOVDQU64(cQ6ShA, shA)
	VMOVDQU64(cQ6ShB, shB)
	VMOVDQU64(cM32, m32)
	var m80 reg.VecVirtual
	if nv == 4 {
		m80 = ZMM()
		VMOVDQU64(cM80, m80)
	}
	idx := make([]reg.VecVirtual, 4)
	for i := range idx {
		idx[i] = ZMM()
		VMOVDQU64(cQ6Idx.Offset(64*i), idx[i])
	}
	accF := make([]reg.VecVirtual, nv)
	for t := range accF {
		accF[t] = ZMM()
		VXORPS(accF[t], accF[t], accF[t])
	}
	loop := name + "_loop"
	Label(loop)
	sc16 := ZMM()
	VPMOVSXBW(Mem{Base: w, Disp: 192}, sc16.AsY())
	acc := make([]reg.VecVirtual, nv)
	for t := range acc {
		acc[t] = ZMM()
	}
	cacc := ZMM()
	for h := 0; h < 2; h++ {
		zl, zh := ZMM(), ZMM()
		VMOVDQU64(Mem{Base: w, Disp: 64 * h}, zl)
		VBROADCASTI64X4(Mem{Base: w, Disp: 128 + 32*h}, zh)
		VPANDD(hmask, zh, zh)
		for k := 0; k < 2; k++ {
			z := 2*h + k
			// q = low/high nibbles of ql (bits 0-3) | two bits of qh (bits 4-5, the
			// other bits of the shifted qh being zero thanks to hmask)
			q := ZMM()
			if k == 0 {
				VPSLLVW(shA, zh, q)
				VPTERNLOGD(Imm(0xd8), m0f, zl, q)
			} else {
				lh := ZMM()
				VPSRLW(Imm(4), zl, lh)
				VPSRLVW(shB, zh, q)
				VPTERNLOGD(Imm(0xd8), m0f, lh, q)
			}
			sc := ZMM()
			VPERMW(sc16, idx[z], sc)
			if nv == 4 {
				signedDot4(p, z, q, m32, m80, sc, cacc, a, acc)
				continue
			}
			for t := 0; t < nv; t++ {
				p1, p2 := ZMM(), ZMM()
				m := Mem{Base: a[t], Disp: actQs + 64*z}
				VPMADDUBSW(m, q, p1)
				VPMADDUBSW(m, m32, p2)
				VPSUBW(p2, p1, p1)
				if z == 0 {
					VPMADDWD(sc, p1, acc[t])
				} else {
					p.dpwssd(sc, p1, acc[t], p1)
				}
			}
		}
	}
	if nv == 4 {
		for t := range acc {
			VPSUBD(cacc, acc[t], acc[t])
		}
	}
	zd := ZMM()
	VPBROADCASTW(Mem{Base: w, Disp: 208}, zd.AsY())
	VCVTPH2PS(zd.AsY(), zd)
	for t := 0; t < nv; t++ {
		zD := ZMM()
		VMULPS_BCST(Mem{Base: a[t], Disp: actD}, zd, zD)
		VCVTDQ2PS(acc[t], acc[t])
		VFMADD231PS(acc[t], zD, accF[t])
	}
	step(w, 210, a, n, loop)
	res := make([]reg.VecVirtual, nv)
	for t := range res {
		res[t] = hsum512(accF[t], nil)
	}
	store(dst, res)
	VZEROUPPER()
	RET()
}

// q6KAVX2 generates the ymm Q6_K dot for nv vectors.
func q6KAVX2(nv int) {
	name := "dotQ6_KAVX2"
	if nv == 4 {
		name = "dot4Q6_KAVX2"
	}
	dst, w, a, n := args(name, nv)
	m32 := YMM()
	VMOVDQU(cM32, m32)
	accF := make([]reg.VecVirtual, nv)
	for t := range accF {
		accF[t] = YMM()
		VXORPS(accF[t], accF[t], accF[t])
	}
	loop := name + "_loop"
	Label(loop)
	xs := XMM()
	VMOVDQU(Mem{Base: w, Disp: 192}, xs)
	acc := make([]reg.VecVirtual, nv)
	for t := range acc {
		acc[t] = YMM()
	}
	first := true
	for h := 0; h < 2; h++ {
		yh := YMM()
		VMOVDQU(Mem{Base: w, Disp: 128 + 32*h}, yh)
		for c := 0; c < 2; c++ { // ql bytes 64h+32c..: vectors k = c (low nibbles), c+2 (high)
			yl := YMM()
			VMOVDQU(Mem{Base: w, Disp: 64*h + 32*c}, yl)
			for _, k := range []int{c, c + 2} {
				v := 4*h + k
				q, hb := YMM(), YMM()
				if k < 2 {
					VPAND(cM0F, yl, q)
				} else {
					VPSRLW(Imm(4), yl, q)
					VPAND(cM0F, q, q)
				}
				// qh bits 2k, 2k+1 to bits 4-5
				switch sh := 4 - 2*k; {
				case sh > 0:
					VPSLLW(Imm(uint64(sh)), yh, hb)
					VPAND(cM30, hb, hb)
				case sh == 0:
					VPAND(cM30, yh, hb)
				default:
					VPSRLW(Imm(uint64(-sh)), yh, hb)
					VPAND(cM30, hb, hb)
				}
				VPOR(hb, q, q)
				ysc := YMM()
				VPSHUFB(cQ6Shuf2.Offset(16*v), xs, ysc.AsX())
				VPMOVSXBW(ysc.AsX(), ysc)
				for t := 0; t < nv; t++ {
					p1, p2 := YMM(), YMM()
					m := Mem{Base: a[t], Disp: actQs + 32*v}
					VPMADDUBSW(m, q, p1)
					VPMADDUBSW(m, m32, p2)
					VPSUBW(p2, p1, p1)
					if first {
						VPMADDWD(ysc, p1, acc[t])
					} else {
						VPMADDWD(ysc, p1, p1)
						VPADDD(p1, acc[t], acc[t])
					}
				}
				first = false
			}
		}
	}
	yd := YMM()
	VPBROADCASTW(Mem{Base: w, Disp: 208}, yd.AsX())
	VCVTPH2PS(yd.AsX(), yd)
	for t := 0; t < nv; t++ {
		ya := YMM()
		VBROADCASTSS(Mem{Base: a[t], Disp: actD}, ya)
		VMULPS(ya, yd, ya)
		VCVTDQ2PS(acc[t], acc[t])
		VFMADD231PS(acc[t], ya, accF[t])
	}
	step(w, 210, a, n, loop)
	res := make([]reg.VecVirtual, nv)
	for t := range res {
		res[t] = hsum256(accF[t], nil)
	}
	store(dst, res)
	VZEROUPPER()
	RET()
}

// scalesK3 decodes the 12 scale bytes at w+96 (Q3_K) into the 16 bytes scale+32 (0..63),
// in order, in x (an xmm).
func scalesK3(w reg.GPVirtual, k0f, k03 reg.GPVirtual, x reg.Register) {
	lo, a2, t, u := GP64(), GP64(), GP64(), GP64()
	MOVQ(Mem{Base: w, Disp: 96}, lo)
	MOVL(Mem{Base: w, Disp: 104}, a2.As32())
	hi := GP64()
	MOVQ(lo, hi)
	SHRQ(Imm(4), hi)
	ANDQ(k0f, hi)
	ANDQ(k0f, lo)
	// high bits of scales 0-3 | 4-7: a2 bits 0-1 | 2-3 of each byte
	MOVQ(a2, t)
	SHRQ(Imm(2), t)
	SHLQ(Imm(32), t)
	ORQ(a2, t)
	ANDQ(k03, t)
	SHLQ(Imm(4), t)
	ORQ(t, lo)
	// of scales 8-11 | 12-15: bits 4-5 | 6-7
	MOVQ(a2, t)
	SHRQ(Imm(4), t)
	MOVQ(a2, u)
	SHRQ(Imm(6), u)
	SHLQ(Imm(32), u)
	ORQ(u, t)
	ANDQ(k03, t)
	SHLQ(Imm(4), t)
	ORQ(t, hi)
	VMOVQ(lo, x)
	VPINSRQ(Imm(1), hi, x, x)
}

// signedDot4 adds the products of the zmm z of quants q (unsigned, stored with offset
// off: Q6_K 32, Q3_K 4) and the four activation vectors to acc, scaled by the words sc,
// with the offset taken out per element in a form shared by the four vectors: with
// s = q - off (signed) and the activations made unsigned as a+128 (xor 0x80),
// Σ(a+128)·s = Σa·s + 128·Σs, and 128·Σs (times the scales) is added to cacc once for
// the four vectors, to be subtracted from each acc at the end of the block. Every int32
// lane then holds (a+128)·s·sc products of the same elements as cacc's lane, so their
// difference is exactly the lane's Σ a·(q-off)·sc.
func signedDot4(p path, z int, q, off, m80, sc, cacc reg.VecVirtual, a []reg.GPVirtual, acc []reg.VecVirtual) {
	VPSUBB(off, q, q)
	c := ZMM()
	VPMADDUBSW(q, m80, c)
	if z == 0 {
		VPMADDWD(sc, c, cacc)
	} else {
		p.dpwssd(sc, c, cacc, c)
	}
	for t := range acc {
		ax, pr := ZMM(), ZMM()
		VPXORD(Mem{Base: a[t], Disp: actQs + 64*z}, m80, ax)
		VPMADDUBSW(q, ax, pr)
		if z == 0 {
			VPMADDWD(sc, pr, acc[t])
		} else {
			p.dpwssd(sc, pr, acc[t], pr)
		}
	}
}

// q23K512 generates the zmm Q2_K (three = false) or Q3_K dot for nv vectors.
func q23K512(p path, nv int, three bool) {
	typ, bb, qoff := "Q2_K", 84, 16
	if three {
		typ, bb, qoff = "Q3_K", 110, 32
	}
	name := "dot" + typ + p.suffix
	if nv == 4 {
		name = "dot4" + typ + p.suffix
	}
	dst, w, a, n := args(name, nv)
	m03 := ZMM()
	VMOVDQU64(cM03, m03)
	var m04, ones reg.VecVirtual
	var k0f, k03 reg.GPVirtual
	var m80 reg.VecVirtual
	if three {
		m04, m80 = ZMM(), ZMM()
		VMOVDQU64(cM04, m04)
		VMOVDQU64(cM80, m80)
		k0f, k03 = GP64(), GP64()
		MOVQ(U64(0x0f0f0f0f0f0f0f0f), k0f)
		MOVQ(U64(0x0303030303030303), k03)
	} else {
		ones = YMM()
		VMOVDQU(cOnes32, ones)
	}
	idx := make([]reg.VecVirtual, 4)
	for i := range idx {
		idx[i] = ZMM()
		VMOVDQU64(cQ6Idx.Offset(64*i), idx[i])
	}
	accF := make([]reg.VecVirtual, nv)
	accM := make([]reg.VecVirtual, nv)
	for t := range accF {
		accF[t] = ZMM()
		VXORPS(accF[t], accF[t], accF[t])
		if !three {
			accM[t] = YMM()
			VXORPS(accM[t], accM[t], accM[t])
		}
	}
	loop := name + "_loop"
	Label(loop)
	sc16, mins16, zhm := ZMM(), YMM(), ZMM()
	if three {
		xs := XMM()
		scalesK3(w, k0f, k03, xs)
		VPSUBB(cM32.Offset(0), xs, xs)
		VPMOVSXBW(xs, sc16.AsY())
		VBROADCASTI64X4(Mem{Base: w}, zhm) // hmask in both halves
	} else {
		VPMOVZXBW(Mem{Base: w}, mins16)
		VPANDD(cW0F, mins16, sc16.AsY())
		VPSRLW(Imm(4), mins16, mins16)
	}
	acc := make([]reg.VecVirtual, nv)
	for t := range acc {
		acc[t] = ZMM()
	}
	cacc := ZMM()
	for h := 0; h < 2; h++ {
		zq0 := ZMM()
		VBROADCASTI64X4(Mem{Base: w, Disp: qoff + 32*h}, zq0)
		for k := 0; k < 2; k++ {
			z := 2*h + k
			// elements 64z..64z+63: bit-planes 2k (low half) and 2k+1 (high) of qs[32h:]
			q := ZMM()
			VPSRLVW(cQ2Sh.Offset(64*k), zq0, q)
			VPANDD(m03, q, q)
			if three {
				// hmask bits 2z, 2z+1 to bit 2
				hb := ZMM()
				if z == 0 {
					VPSLLVW(cQ3Sh.Offset(0), zhm, hb)
				} else {
					VPSRLVW(cQ3Sh.Offset(64*z), zhm, hb)
				}
				VPTERNLOGD(Imm(0xf8), m04, hb, q) // q | (hb & m04)
			}
			sc := ZMM()
			VPERMW(sc16, idx[z], sc)
			if three && nv == 4 {
				signedDot4(p, z, q, m04, m80, sc, cacc, a, acc)
				continue
			}
			for t := 0; t < nv; t++ {
				p1 := ZMM()
				m := Mem{Base: a[t], Disp: actQs + 64*z}
				VPMADDUBSW(m, q, p1)
				if three {
					p2 := ZMM()
					VPMADDUBSW(m, m04, p2)
					VPSUBW(p2, p1, p1)
				}
				if z == 0 {
					VPMADDWD(sc, p1, acc[t])
				} else {
					p.dpwssd(sc, p1, acc[t], p1)
				}
			}
		}
	}
	if three && nv == 4 {
		for t := range acc {
			VPSUBD(cacc, acc[t], acc[t])
		}
	}
	if three {
		zd := ZMM()
		VPBROADCASTW(Mem{Base: w, Disp: 108}, zd.AsY())
		VCVTPH2PS(zd.AsY(), zd)
		for t := 0; t < nv; t++ {
			zD := ZMM()
			VMULPS_BCST(Mem{Base: a[t], Disp: actD}, zd, zD)
			VCVTDQ2PS(acc[t], acc[t])
			VFMADD231PS(acc[t], zD, accF[t])
		}
	} else {
		xd := XMM()
		VMOVD(Mem{Base: w, Disp: 80}, xd)
		VCVTPH2PS(xd, xd)
		for t := 0; t < nv; t++ {
			mt := YMM()
			VPMADDWD(Mem{Base: a[t], Disp: actBsums}, mins16, mt)
			yd := YMM()
			VMULPS_BCST(Mem{Base: a[t], Disp: actD}, xd, yd.AsX())
			zdb := ZMM()
			VBROADCASTSS(yd.AsX(), zdb)
			VPERMPS(yd, ones, yd)
			VCVTDQ2PS(acc[t], acc[t])
			VFMADD231PS(acc[t], zdb, accF[t])
			VCVTDQ2PS(mt, mt)
			VFMADD231PS(mt, yd, accM[t])
		}
	}
	step(w, bb, a, n, loop)
	res := make([]reg.VecVirtual, nv)
	for t := range res {
		if three {
			res[t] = hsum512(accF[t], nil)
		} else {
			res[t] = hsum512(accF[t], accM[t])
		}
	}
	store(dst, res)
	VZEROUPPER()
	RET()
}

// q23KAVX2 generates the ymm Q2_K or Q3_K dot for nv vectors.
func q23KAVX2(nv int, three bool) {
	typ, bb, qoff := "Q2_K", 84, 16
	if three {
		typ, bb, qoff = "Q3_K", 110, 32
	}
	name := "dot" + typ + "AVX2"
	if nv == 4 {
		name = "dot4" + typ + "AVX2"
	}
	dst, w, a, n := args(name, nv)
	var m04 reg.VecVirtual
	var k0f, k03 reg.GPVirtual
	if three {
		m04 = YMM()
		VMOVDQU(cM04, m04)
		k0f, k03 = GP64(), GP64()
		MOVQ(U64(0x0f0f0f0f0f0f0f0f), k0f)
		MOVQ(U64(0x0303030303030303), k03)
	}
	accF := make([]reg.VecVirtual, nv)
	for t := range accF {
		accF[t] = YMM()
		VXORPS(accF[t], accF[t], accF[t])
	}
	loop := name + "_loop"
	Label(loop)
	xs := XMM()
	if three {
		scalesK3(w, k0f, k03, xs)
		VPSUBB(cM32.Offset(0), xs, xs) // signed scales
	} else {
		VMOVDQU(Mem{Base: w}, xs)
	}
	acc := make([]reg.VecVirtual, nv)
	for t := range acc {
		acc[t] = YMM()
	}
	first := true
	for h := 0; h < 2; h++ {
		for j := 0; j < 4; j++ {
			v := 4*h + j
			q := YMM()
			VMOVDQU(Mem{Base: w, Disp: qoff + 32*h}, q)
			if j > 0 {
				VPSRLW(Imm(uint64(2*j)), q, q)
			}
			VPAND(cM03, q, q)
			if three {
				// hmask bit 4h+j to bit 2
				hb := YMM()
				VMOVDQU(Mem{Base: w}, hb)
				switch s := 4*h + j - 2; {
				case s > 0:
					VPSRLW(Imm(uint64(s)), hb, hb)
				case s < 0:
					VPSLLW(Imm(uint64(-s)), hb, hb)
				}
				VPAND(m04, hb, hb)
				VPOR(hb, q, q)
			}
			ysc := YMM()
			if three {
				VPSHUFB(cQ6Shuf2.Offset(16*v), xs, ysc.AsX())
				VPMOVSXBW(ysc.AsX(), ysc)
			} else {
				VPAND(cM0F.Offset(0), xs, ysc.AsX())
				VPSHUFB(cQ6Shuf2.Offset(16*v), ysc.AsX(), ysc.AsX())
				VPMOVZXBW(ysc.AsX(), ysc)
			}
			for t := 0; t < nv; t++ {
				p1 := YMM()
				m := Mem{Base: a[t], Disp: actQs + 32*v}
				VPMADDUBSW(m, q, p1)
				if three {
					p2 := YMM()
					VPMADDUBSW(m, m04, p2)
					VPSUBW(p2, p1, p1)
				}
				if first {
					VPMADDWD(ysc, p1, acc[t])
				} else {
					VPMADDWD(ysc, p1, p1)
					VPADDD(p1, acc[t], acc[t])
				}
			}
			first = false
		}
	}
	if three {
		yd := YMM()
		VPBROADCASTW(Mem{Base: w, Disp: 108}, yd.AsX())
		VCVTPH2PS(yd.AsX(), yd)
		for t := 0; t < nv; t++ {
			ya := YMM()
			VBROADCASTSS(Mem{Base: a[t], Disp: actD}, ya)
			VMULPS(ya, yd, ya)
			VCVTDQ2PS(acc[t], acc[t])
			VFMADD231PS(acc[t], ya, accF[t])
		}
	} else {
		// f = D·isum lanes - Dm·min lanes, accF += f (as in q45KAVX2)
		md := YMM()
		VPMOVZXBW(xs, md)
		VPSRLW(Imm(4), md, md)
		db, dmb := YMM(), YMM()
		VMOVD(Mem{Base: w, Disp: 80}, db.AsX())
		VCVTPH2PS(db.AsX(), db.AsX())
		VMOVSHDUP(db.AsX(), dmb.AsX())
		VBROADCASTSS(db.AsX(), db)
		VBROADCASTSS(dmb.AsX(), dmb)
		for t := 0; t < nv; t++ {
			mt := YMM()
			VPMADDWD(Mem{Base: a[t], Disp: actBsums}, md, mt)
			VCVTDQ2PS(mt, mt)
			ya, yd := YMM(), YMM()
			VBROADCASTSS(Mem{Base: a[t], Disp: actD}, ya)
			VMULPS(ya, db, yd)
			VMULPS(ya, dmb, ya)
			VCVTDQ2PS(acc[t], acc[t])
			VMULPS(yd, acc[t], acc[t])
			VFNMADD231PS(mt, ya, acc[t])
			VADDPS(acc[t], accF[t], accF[t])
		}
	}
	step(w, bb, a, n, loop)
	res := make([]reg.VecVirtual, nv)
	for t := range res {
		res[t] = hsum256(accF[t], nil)
	}
	store(dst, res)
	VZEROUPPER()
	RET()
}

func main() {
	ConstraintExpr("amd64,!purego") // avo v0.5.0 parses the "+build" syntax; it writes "//go:build amd64 && !purego"
	constants()
	for _, nv := range []int{1, 4} {
		q45KAVX2(nv, false)
		q45K512(pAVX512, nv, false)
		q45K512(pVNNI, nv, false)
		q45KAVX2(nv, true)
		q45K512(pAVX512, nv, true)
		q45K512(pVNNI, nv, true)
		q23KAVX2(nv, false)
		q23K512(pAVX512, nv, false)
		q23K512(pVNNI, nv, false)
		q23KAVX2(nv, true)
		q23K512(pAVX512, nv, true)
		q23K512(pVNNI, nv, true)
		q6KAVX2(nv)
		q6K512(pAVX512, nv)
		q6K512(pVNNI, nv)
	}
	Generate()
}
