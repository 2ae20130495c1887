// Command quant generates quant_amd64.s: the AVX2 (+F16C) quantizers of activation
// vectors into Q8_0/Q8_1 blocks of 32 and Q8_K blocks of 256, bit-identical to the Go
// quantizers of nn/kernels/activations.go (ggml's quantize_row_q8_1_ref and
// quantize_row_q8_K_ref). Each function does blocks until the end or the first block it
// leaves to the Go code, and returns how many it did:
//
//   - quantQ8AVX2: amax from the float bits with the sign cleared (vpmaxud, so a NaN sorts
//     above +Inf); a block with amax ≥ +Inf, or whose 1/d overflows, is left to Go.
//     d = amax/127 and id = 1/d (0 for d = 0) by vdivss; p = x·id in float32, then
//     roundf(p) (half away from zero) exactly: t = trunc(p) (vcvttps2dq), f = p - t (exact,
//     as |p| < 2^23), and t moves one away from zero where |f| ≥ ½ (vpsignd of the compare
//     mask by p). The quants are in [-127, 127] (|p| ≤ 127·(1+2^-23)), Σqs is exact in
//     int32; d and s = d·Σqs are rounded to binary16 by vcvtps2ph (round to nearest even,
//     as github.com/x448/float16 does) and back.
//   - quantQ8KAVX2: amax as above, then the first element of that magnitude (vpcmpeqd,
//     vmovmskps, bsf); zero and non-finite blocks, and those whose iscale = -127/max
//     overflows, are left to Go. qs = nearest_int(iscale·x) by vcvtps2dq (the MXCSR's round
//     to nearest even, which Go keeps), d = 1/iscale; bsums by vpmaddubsw/vpmaddwd with
//     ones and two vphaddd levels.
//
// The lane words (q8Block.w, q8KBlock.w) are not written: the Go code fills them when a
// pure-Go dot may read them.
package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// q8Block and q8KBlock layouts (asserted by TestQuantOffsets).
const (
	q8D, q8S, q8Sum, q8Qs, q8Size = 64, 68, 72, 76, 112
	qkD, qkBsums, qkQs, qkSize    = 512, 516, 548, 808
	f32Inf                        = 0x7f800000
)

var absMask, half, perm, ones8, ones16, f127, fm127, f1 Mem

func vec32(name string, f func(i int) uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(f(i)))
	}
	return m
}

func constants() {
	absMask = vec32("quantAbsMask", func(int) uint32 { return 0x7fffffff })
	half = vec32("quantHalf", func(int) uint32 { return 0x3f000000 })
	perm = vec32("quantPerm", func(i int) uint32 { return [8]uint32{0, 4, 1, 5, 2, 6, 3, 7}[i] })
	ones8 = vec32("quantOnes8", func(int) uint32 { return 0x01010101 })
	ones16 = vec32("quantOnes16", func(int) uint32 { return 0x00010001 })
	f127 = vec32("quantF127", func(int) uint32 { return 0x42fe0000 })   // 127.0
	fm127 = vec32("quantFm127", func(int) uint32 { return 0xc2fe0000 }) // -127.0
	f1 = vec32("quantF1", func(int) uint32 { return 0x3f800000 })       // 1.0
}

// hmaxud leaves the largest uint32 of the four lanes of x in every lane of x.
func hmaxud(x reg.Register) {
	t := XMM()
	VPSHUFD(U8(0x4e), x, t)
	VPMAXUD(t, x, x)
	VPSHUFD(U8(0xb1), x, t)
	VPMAXUD(t, x, x)
}

// absMax leaves the largest float bits with the sign cleared of the n ymm vectors at p in
// every lane of the returned xmm register.
func absMax(p Mem, n int, am reg.Register) reg.Register {
	acc := make([]reg.VecVirtual, 4)
	for i := range acc {
		acc[i] = YMM()
		VPAND(p.Offset(32*i), am, acc[i])
	}
	for k := 4; k < n; k++ {
		t := YMM()
		VPAND(p.Offset(32*k), am, t)
		VPMAXUD(t, acc[k%4], acc[k%4])
	}
	VPMAXUD(acc[1], acc[0], acc[0])
	VPMAXUD(acc[3], acc[2], acc[2])
	VPMAXUD(acc[2], acc[0], acc[0])
	x := acc[0].AsX()
	hi := XMM()
	VEXTRACTI128(U8(1), acc[0], hi)
	VPMAXUD(hi, x, x)
	hmaxud(x)
	return x
}

func quantQ8() {
	TEXT("quantQ8AVX2", NOSPLIT, "func(b *byte, x *float32, n int) int")
	Doc("quantQ8AVX2 quantizes up to n blocks of 32 of x into the q8Blocks at b and returns how many it did.")
	bp := Load(Param("b"), GP64())
	xp := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	i := GP64()
	XORQ(i, i)
	am, ho := YMM(), YMM()
	VMOVDQU(absMask, am)
	VMOVUPS(half, ho)
	pm := YMM()
	VMOVDQU(perm, pm)

	Label("q8loop")
	CMPQ(i, n)
	JAE(LabelRef("q8done"))
	amax := absMax(Mem{Base: xp}, 4, am)
	ab := GP32()
	VMOVD(amax, ab)
	CMPL(ab, U32(f32Inf))
	JAE(LabelRef("q8done"))
	d := XMM()
	VDIVSS(f127, amax, d) // d = amax/127
	id := XMM()
	VXORPS(id, id, id)
	TESTL(ab, ab)
	JZ(LabelRef("q8id"))
	VMOVSS(f1, id)
	VDIVSS(d, id, id) // id = 1/d
	ib := GP32()
	VMOVD(id, ib)
	CMPL(ib, U32(f32Inf))
	JAE(LabelRef("q8done")) // 1/d overflows: left to Go
	Label("q8id")
	idv := YMM()
	VBROADCASTSS(id, idv)
	var q [4]reg.VecVirtual
	for k := range q {
		p, t, f := YMM(), YMM(), YMM()
		VMULPS(Mem{Base: xp, Disp: 32 * k}, idv, p) // p = x·id
		VCVTTPS2DQ(p, t)                            // trunc(p)
		VCVTDQ2PS(t, f)
		VSUBPS(f, p, f) // p - trunc(p), exact
		VANDPS(am, f, f)
		VCMPPS(U8(0x0d), ho, f, f) // |f| ≥ ½ (GE_OS): all ones
		VPSIGND(p, f, f)           // -1 for p > 0, +1 for p < 0 where rounding away
		VPSUBD(f, t, t)
		q[k] = t
	}
	s01, s23 := YMM(), YMM()
	VPADDD(q[1], q[0], s01)
	VPADDD(q[3], q[2], s23)
	VPADDD(s23, s01, s01)
	sx, sh := s01.AsX(), XMM()
	VEXTRACTI128(U8(1), s01, sh)
	VPADDD(sh, sx, sx)
	VPSHUFD(U8(0x4e), sx, sh)
	VPADDD(sh, sx, sx)
	VPSHUFD(U8(0xb1), sx, sh)
	VPADDD(sh, sx, sx)
	sum := GP32()
	VMOVD(sx, sum)
	MOVL(sum, Mem{Base: bp, Disp: q8Sum})
	VPACKSSDW(q[1], q[0], q[0])
	VPACKSSDW(q[3], q[2], q[2])
	VPACKSSWB(q[2], q[0], q[0])
	VPERMD(q[0], pm, q[0])
	VMOVDQU(q[0], Mem{Base: bp, Disp: q8Qs})
	h := XMM()
	VCVTPS2PH(U8(0), d, h) // binary16, round to nearest even
	VCVTPH2PS(h, h)
	VMOVSS(h, Mem{Base: bp, Disp: q8D})
	fs := XMM()
	VXORPS(fs, fs, fs)
	VCVTSI2SSL(sum, fs, fs)
	VMULSS(d, fs, fs)
	VCVTPS2PH(U8(0), fs, fs)
	VCVTPH2PS(fs, fs)
	VMOVSS(fs, Mem{Base: bp, Disp: q8S})
	ADDQ(U32(q8Size), bp)
	ADDQ(U32(128), xp)
	INCQ(i)
	JMP(LabelRef("q8loop"))

	Label("q8done")
	VZEROUPPER()
	Store(i, ReturnIndex(0))
	RET()
}

func quantQ8K() {
	TEXT("quantQ8KAVX2", NOSPLIT, "func(b *byte, x *float32, n int) int")
	Doc("quantQ8KAVX2 quantizes up to n blocks of 256 of x into the q8KBlocks at b and returns how many it did.")
	bp := Load(Param("b"), GP64())
	xp := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	i := GP64()
	XORQ(i, i)

	Label("qkloop")
	CMPQ(i, n)
	JAE(LabelRef("qkdone"))
	am := YMM()
	VMOVDQU(absMask, am)
	amax := absMax(Mem{Base: xp}, 32, am)
	ab := GP32()
	VMOVD(amax, ab)
	CMPL(ab, U32(f32Inf))
	JAE(LabelRef("qkdone"))
	TESTL(ab, ab)
	JZ(LabelRef("qkdone"))
	// the first element of magnitude amax
	av := YMM()
	VPBROADCASTD(amax, av)
	sp := GP64()
	MOVQ(xp, sp)
	m := GP32()
	Label("qkfind")
	t := YMM()
	VPAND(Mem{Base: sp}, am, t)
	VPCMPEQD(av, t, t)
	VMOVMSKPS(t, m)
	TESTL(m, m)
	JNZ(LabelRef("qkfound"))
	ADDQ(U8(32), sp)
	JMP(LabelRef("qkfind"))
	Label("qkfound")
	BSFL(m, m)
	is := XMM()
	VMOVSS(fm127, is)
	VDIVSS(Mem{Base: sp, Index: m.As64(), Scale: 4}, is, is) // iscale = -127/max
	ib := GP32()
	VMOVD(is, ib)
	ANDL(U32(0x7fffffff), ib)
	CMPL(ib, U32(f32Inf))
	JAE(LabelRef("qkdone")) // iscale overflows: left to Go
	d := XMM()
	VMOVSS(f1, d)
	VDIVSS(is, d, d)
	VMOVSS(d, Mem{Base: bp, Disp: qkD})
	isv := YMM()
	VBROADCASTSS(is, isv)
	pm, o8, o16 := YMM(), YMM(), YMM()
	VMOVDQU(perm, pm)
	VMOVDQU(ones8, o8)
	VMOVDQU(ones16, o16)
	var bs [8]reg.VecVirtual
	var hs [4]reg.VecVirtual
	var qs [2]reg.VecVirtual
	for g := 0; g < 8; g++ {
		var q [4]reg.VecVirtual
		for k := range q {
			q[k] = YMM()
			VMULPS(Mem{Base: xp, Disp: 128*g + 32*k}, isv, q[k]) // iscale·x
			VCVTPS2DQ(q[k], q[k])                                // round to nearest even
		}
		VPACKSSDW(q[1], q[0], q[0])
		VPACKSSDW(q[3], q[2], q[2])
		VPACKSSWB(q[2], q[0], q[0])
		VPERMD(q[0], pm, q[0])
		VMOVDQU(q[0], Mem{Base: bp, Disp: qkQs + 32*g})
		// group 2g in the low 128 bits, 2g+1 in the high: four partial sums each
		bs[g] = YMM()
		VPMADDUBSW(q[0], o8, bs[g])
		VPMADDWD(o16, bs[g], bs[g])
		if g%2 == 1 {
			hs[g/2] = YMM()
			VPHADDD(bs[g], bs[g-1], hs[g/2])
		}
		if g%4 == 3 {
			qs[g/4] = YMM()
			VPHADDD(hs[g/2], hs[g/2-1], qs[g/4]) // groups [4j, 4j+2, …] low, [4j+1, …] high
		}
	}
	w := YMM()
	VPACKSSDW(qs[1], qs[0], w) // low: even groups 0..14, high: odd groups 1..15
	hi, lo, hi2 := XMM(), XMM(), XMM()
	VEXTRACTI128(U8(1), w, hi)
	VPUNPCKLWD(hi, w.AsX(), lo)
	VPUNPCKHWD(hi, w.AsX(), hi2)
	VMOVDQU(lo, Mem{Base: bp, Disp: qkBsums})
	VMOVDQU(hi2, Mem{Base: bp, Disp: qkBsums + 16})
	ADDQ(U32(qkSize), bp)
	ADDQ(U32(1024), xp)
	INCQ(i)
	JMP(LabelRef("qkloop"))

	Label("qkdone")
	VZEROUPPER()
	Store(i, ReturnIndex(0))
	RET()
}

func main() {
	ConstraintExpr("amd64,!purego") // avo v0.5.0 parses the "+build" syntax; it writes "//go:build amd64 && !purego"
	constants()
	quantQ8()
	quantQ8K()
	Generate()
}
