// Command legacy generates the amd64 dots of the legacy ggml quant types of package kernels
// (legacy_amd64.s and legacy_stub_amd64.go): Q8_0, Q4_0, Q5_0 weights times Q8_0
// activations and Q4_1, Q5_1 weights times Q8_1 activations, with AVX2 and with AVX-512
// VNNI (vpdpbusd on 256-bit registers, EVEX-encoded).
//
// Every block of 32 weights is unpacked into one 256-bit register of 32 byte quants in
// element order (the low nibbles of qs are elements 0..15, the high nibbles 16..31):
//
//	Q8_0  the stored int8 quants
//	Q4_0  nibble − 8, signed
//	Q5_0  (nibble | fifth bit << 4) − 16, signed
//	Q4_1  nibble, unsigned
//	Q5_1  nibble | fifth bit << 4, unsigned
//
// and multiplied with the activation block's 32 int8 quants into eight exact int32 sums
// (lane k holds elements 4k..4k+3). A signed weight quant x goes through the sign trick:
// |x| (unsigned) times y·sign(x) (signed) is x·y. AVX2 multiplies with vpmaddubsw (pairs
// into int16: at most 2·128·127 = 32512, no saturation) and vpmaddwd by ones (int32);
// VNNI with one vpdpbusd. The eight sums are converted to float32 (exactly, |sum| < 2^24)
// and added with a fused multiply-add times d = dx·dy (float32 product, rounded) into a
// float32 accumulator: blocks of even index into one, of odd index into another. For Q4_1
// and Q5_1 the min term m·s (the Q8_1 block's s) is added by a scalar fused multiply-add,
// block after block, into a separate sum. At the end the two accumulators are added, the
// eight lanes summed as ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)) and the min sum added.
//
// Both paths compute the same integer sums and the same float32 operations in the same
// order, so AVX2 and VNNI give the same bits; so do the single dot and the four-vector dot
// (one weight row times four activation vectors, each weight block unpacked once), which
// keeps the same accumulators per vector.
//
//	dot<T><ISA>asm(w, a, n) float32                  n blocks
//	dot4<T><ISA>asm(out, w, a0, a1, a2, a3, n)       out[0..3]
//
// Only vector registers 0..15 are used (vpsignb and the other VEX-only instructions
// cannot encode higher ones); the generator checks its output for that.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The q8Block layout (activations.go); legacy_amd64_test.go checks these.
const (
	actSize  = 112
	actD     = 64
	actS     = 68
	actQS    = 76
	unrollBy = 2 // blocks per loop iteration: one for each accumulator
)

type wtype struct {
	name   string
	size   int  // bytes per block
	signed bool // unpacked quants are signed (sign trick); else unsigned, with a min m at 2
}

var wtypes = []wtype{
	{"Q8_0", 34, true},
	{"Q4_0", 18, true},
	{"Q4_1", 20, false},
	{"Q5_0", 22, true},
	{"Q5_1", 24, false},
}

type isa int

const (
	avx2 isa = iota
	vnni
)

var isaNames = [...]string{"AVX2", "VNNI"}

// Constants (256 bits each).
var (
	cNib, cShift, c8, cF0, c10, cOnes16, cShufQH, cBitsQH, cAll Mem
)

func constants() {
	rep := func(name string, v uint64) Mem {
		m := GLOBL(name, RODATA|NOPTR)
		for i := 0; i < 4; i++ {
			DATA(8*i, U64(v))
		}
		return m
	}
	cNib = rep("legacyNib", 0x0f0f0f0f0f0f0f0f)
	c8 = rep("legacy8", 0x0808080808080808)
	cF0 = rep("legacyF0", 0xf0f0f0f0f0f0f0f0)
	c10 = rep("legacy10", 0x1010101010101010)
	cOnes16 = rep("legacyOnes16", 0x0001000100010001)
	cBitsQH = rep("legacyBitsQH", 0x7fbfdfeff7fbfdfe)
	cAll = rep("legacyAll", 0xffffffffffffffff)
	// dword shift counts: 0 for the low 128 bits (low nibbles), 4 for the high ones
	cShift = GLOBL("legacyShift", RODATA|NOPTR)
	DATA(0, U64(0))
	DATA(8, U64(0))
	DATA(16, U64(0x0000000400000004))
	DATA(24, U64(0x0000000400000004))
	// byte j of the result takes byte j/8 of the 32-bit qh
	cShufQH = GLOBL("legacyShufQH", RODATA|NOPTR)
	DATA(0, U64(0x0000000000000000))
	DATA(8, U64(0x0101010101010101))
	DATA(16, U64(0x0202020202020202))
	DATA(24, U64(0x0303030303030303))
}

// nibbles loads the 16 bytes of qs at m and returns their low nibbles (elements 0..15) in
// the low 128 bits and their high nibbles (16..31) in the high 128 bits, masked unless
// keepHigh (then each byte of the high half holds the nibble in its low 4 bits and
// garbage above).
func nibbles(m Mem, keepHigh bool) VecVirtual {
	x := YMM()
	VBROADCASTI128(m, x)
	VPSRLVD(cShift, x, x)
	if !keepHigh {
		VPAND(cNib, x, x)
	}
	return x
}

// fifthBits returns, for the 32-bit qh at m, 0xff in byte j where bit j is set, else 0.
func fifthBits(m Mem) VecVirtual {
	h := YMM()
	VPBROADCASTD(m, h)
	VPSHUFB(cShufQH, h, h)
	VPOR(cBitsQH, h, h)
	VPCMPEQB(cAll, h, h)
	return h
}

// unpack returns the 32 quants of the weight block at w (see the package comment).
func unpack(t wtype, s isa, w Mem) VecVirtual {
	switch t.name {
	case "Q8_0":
		x := YMM()
		VMOVDQU(w.Offset(2), x)
		return x
	case "Q4_0":
		x := nibbles(w.Offset(2), false)
		VPSUBB(c8, x, x)
		return x
	case "Q4_1":
		return nibbles(w.Offset(4), false)
	case "Q5_0":
		// nibble | 0xf0 is nibble − 16; add 16 where the fifth bit is set
		x := nibbles(w.Offset(6), true)
		VPOR(cF0, x, x)
		if s == vnni {
			k := K()
			KMOVD(w.Offset(2), k)
			VPADDB(c10, x, k, x)
		} else {
			h := fifthBits(w.Offset(2))
			VPAND(c10, h, h)
			VPADDB(h, x, x)
		}
		return x
	case "Q5_1":
		x := nibbles(w.Offset(8), false)
		if s == vnni {
			k := K()
			KMOVD(w.Offset(4), k)
			VPADDB(c10, x, k, x)
		} else {
			h := fifthBits(w.Offset(4))
			VPAND(c10, h, h)
			VPOR(h, x, x)
		}
		return x
	}
	panic(t.name)
}

// vpdpbusd appends VPDPBUSD s, u, acc (acc += Σ4 unsigned u · signed s), which avo v0.5.0
// does not know.
func vpdpbusd(s, u, acc Op) {
	Instruction(&ir.Instruction{
		Opcode:   "VPDPBUSD",
		Operands: []Op{s, u, acc},
		Inputs:   []Op{s, u, acc},
		Outputs:  []Op{acc},
		ISA:      []string{"AVX512VNNI", "AVX512VL"},
	})
}

// weight is one unpacked weight block: ux the unsigned multiplicand (|x| or x), sx the
// sign source (signed types), dx the scale in eight lanes, mb the min in four (Q4_1, Q5_1).
type weight struct {
	ux, sx, dx, mb VecVirtual
}

func loadWeight(t wtype, s isa, w Mem) weight {
	x := unpack(t, s, w)
	var wt weight
	if t.signed {
		wt.sx = x
		wt.ux = YMM()
		VPSIGNB(x, x, wt.ux)
		h := XMM()
		VPBROADCASTW(w, h)
		wt.dx = YMM()
		VCVTPH2PS(h, wt.dx)
	} else {
		wt.ux = x
		h := XMM()
		VMOVD(w, h) // d, m
		VCVTPH2PS(h, h)
		wt.dx = YMM()
		VBROADCASTSS(h, wt.dx)
		wt.mb = XMM()
		VPERMILPS(U8(0x55), h, wt.mb)
	}
	return wt
}

// blockTerm adds the block's dot with the activation block at a (the eight int32 sums
// times dx·dy) into acc.
func blockTerm(t wtype, s isa, wt weight, a Mem, acc Register) {
	p := YMM()
	y := a.Offset(actQS)
	if t.signed {
		sy := YMM()
		VMOVDQU(y, sy)
		VPSIGNB(wt.sx, sy, sy)
		if s == vnni {
			VPXOR(p, p, p)
			vpdpbusd(sy, wt.ux, p)
		} else {
			VPMADDUBSW(sy, wt.ux, p)
			VPMADDWD(cOnes16, p, p)
		}
	} else {
		if s == vnni {
			VPXOR(p, p, p)
			vpdpbusd(y, wt.ux, p)
		} else {
			VPMADDUBSW(y, wt.ux, p)
			VPMADDWD(cOnes16, p, p)
		}
	}
	VCVTDQ2PS(p, p)
	d := YMM()
	if s == vnni {
		VMULPS_BCST(a.Offset(actD), wt.dx, d)
	} else {
		VBROADCASTSS(a.Offset(actD), d)
		VMULPS(wt.dx, d, d)
	}
	VFMADD231PS(d, p, acc)
}

// blockLoop emits the loop over the n blocks: body(p, wOff, aOff) handles the block at
// weight offset wOff and activation offset aOff with accumulator set p (the block index
// modulo 2).
func blockLoop(t wtype, w, ai, n Register, body func(p int, wm Mem, ai Register, aOff int)) {
	CMPQ(n, U8(unrollBy))
	JB(LabelRef("tail"))
	Label("loop")
	for p := 0; p < unrollBy; p++ {
		body(p, Mem{Base: w, Disp: p * t.size}, ai, p*actSize)
	}
	ADDQ(U32(unrollBy*t.size), w)
	ADDQ(U32(unrollBy*actSize), ai)
	SUBQ(U8(unrollBy), n)
	CMPQ(n, U8(unrollBy))
	JAE(LabelRef("loop"))
	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	body(0, Mem{Base: w}, ai, 0)
	Label("done")
}

func zeroY(n int) []Register {
	v := make([]Register, n)
	for i := range v {
		v[i] = YMM()
		VXORPS(v[i], v[i], v[i])
	}
	return v
}

// loops emits the block loop: term(wt, p, aOff, acc) adds the unpacked block wt with
// accumulator set p (the block index modulo 2) at activation offset aOff into acc. It
// returns the even and odd accumulators of each of nv vectors.
func loops(t wtype, s isa, w, ai, n Register, nv int, term func(wt weight, p int, aOff int, acc []Register)) (even, odd []Register) {
	acc := make([][]Register, unrollBy)
	for p := range acc {
		acc[p] = zeroY(nv)
	}
	blockLoop(t, w, ai, n, func(p int, wm Mem, ai Register, aOff int) {
		term(loadWeight(t, s, wm), p, aOff, acc[p])
	})
	return acc[0], acc[1]
}

// asX is the 128-bit register of vector register r.
func asX(r Register) Register { return r.(interface{ AsX() Register }).AsX() }

func dot(t wtype, s isa) {
	name := "dot" + t.name + isaNames[s] + "asm"
	TEXT(name, NOSPLIT, "func(w *byte, a *byte, n int) float32")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s returns the dot of n %s blocks at w with the n activation blocks at a (%s).", name, t.name, isaNames[s]))
	w := Load(Param("w"), GP64())
	a := Load(Param("a"), GP64())
	n := Load(Param("n"), GP64())
	var ai Register = GP64()
	XORQ(ai, ai)
	var macc VecVirtual
	if !t.signed {
		macc = XMM()
		VXORPS(macc, macc, macc)
	}
	am := func(off int) Mem { return Mem{Base: a, Index: ai, Scale: 1, Disp: off} }
	even, odd := loops(t, s, w, ai, n, 1, func(wt weight, p int, aOff int, acc []Register) {
		blockTerm(t, s, wt, am(aOff), acc[0])
		if !t.signed {
			VFMADD231SS(am(aOff+actS), wt.mb, macc)
		}
	})
	h := even[0]
	VADDPS(odd[0], h, h)
	VHADDPS(h, h, h)
	VHADDPS(h, h, h)
	hi := XMM()
	VEXTRACTF128(U8(1), h, hi)
	r := XMM()
	VADDSS(hi, asX(h), r)
	if !t.signed {
		VADDSS(macc, r, r)
	}
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

func dot4(t wtype, s isa) {
	name := "dot4" + t.name + isaNames[s] + "asm"
	TEXT(name, NOSPLIT, "func(out *float32, w *byte, a0, a1, a2, a3 *byte, n int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s writes to out[v] the dot of n %s blocks at w with the n activation blocks at av (%s).", name, t.name, isaNames[s]))
	w := Load(Param("w"), GP64())
	var a [4]Register
	for v := range a {
		a[v] = Load(Param(fmt.Sprintf("a%d", v)), GP64())
	}
	n := Load(Param("n"), GP64())
	var ai Register = GP64()
	XORQ(ai, ai)
	var macc VecVirtual
	if !t.signed {
		macc = XMM()
		VXORPS(macc, macc, macc)
	}
	am := func(v, off int) Mem { return Mem{Base: a[v], Index: ai, Scale: 1, Disp: off} }
	// the four s of the blocks at aOff in one register: lane v is fma(m, s_v, macc_v), as
	// in dot
	minTerm := func(mb VecVirtual, aOff int) {
		sv := XMM()
		VMOVSS(am(0, aOff+actS), sv)
		for v := 1; v < 4; v++ {
			VINSERTPS(U8(v<<4), am(v, aOff+actS), sv, sv)
		}
		VFMADD231PS(sv, mb, macc)
	}
	even, odd := loops(t, s, w, ai, n, 4, func(wt weight, p int, aOff int, acc []Register) {
		for v := range a {
			blockTerm(t, s, wt, am(v, aOff), acc[v])
		}
		if !t.signed {
			minTerm(wt.mb, aOff)
		}
	})
	sum := even
	for v := range sum {
		VADDPS(odd[v], sum[v], sum[v])
	}
	VHADDPS(sum[1], sum[0], sum[0])
	VHADDPS(sum[3], sum[2], sum[2])
	VHADDPS(sum[2], sum[0], sum[0])
	hi := XMM()
	VEXTRACTF128(U8(1), sum[0], hi)
	r := XMM()
	VADDPS(hi, asX(sum[0]), r)
	if !t.signed {
		VADDPS(macc, r, r)
	}
	out := Load(Param("out"), GP64())
	VMOVUPS(r, Mem{Base: out})
	VZEROUPPER()
	RET()
}

func main() {
	flag.Parse()                    // avo's -out, -stubs, -pkg
	ConstraintExpr("amd64,!purego") // avo v0.5.0 parses the "+build" syntax; it writes "//go:build amd64 && !purego"
	constants()
	for _, s := range []isa{avx2, vnni} {
		for _, t := range wtypes {
			dot(t, s)
			dot4(t, s)
		}
	}
	Generate()
	if err := checkRegs(); err != nil {
		fmt.Fprintln(os.Stderr, "legacy:", err)
		os.Exit(1)
	}
}

// checkRegs fails if the generated file uses a vector register above 15.
func checkRegs() error {
	out := flag.Lookup("out")
	if out == nil || out.Value.String() == "" {
		return nil
	}
	f, err := os.Open(out.Value.String())
	if err != nil {
		return err
	}
	defer f.Close()
	high := regexp.MustCompile(`\b[XYZ](1[6-9]|2[0-9]|3[01])\b`)
	fn := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "TEXT ") {
			fn = line
		}
		if high.MatchString(line) {
			return fmt.Errorf("%s uses a register above 15: %s", fn, line)
		}
	}
	return sc.Err()
}
