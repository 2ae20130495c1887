// Command q8tile generates the register-tiled AVX-512 VNNI kernels of package kernels for
// MulMat of Q8_0 and Q4_0 weights with Q8_0 activations (q8tile_amd64.s and
// q8tile_stub_amd64.go).
//
// One call multiplies four weight rows (stride bytes apart) by nv (1..4) activation
// vectors over n blocks of 32, adding the 4·nv dots into out[v*4+r]. Per block each row's
// 32 quants are loaded (Q4_0 unpacked to nibble − 8) into one 256-bit register once, and
// each vector's 32 quants once, XORed with 0x80 so that they read as unsigned a+128. One
// vpdpbusd of the weight quants x (signed) with a vector of 0x80 bytes gives, per lane k
// (elements 4k..4k+3), 128·Σx; its negation starts the accumulator of every vector, so
// that vpdpbusd(a+128, x) leaves the exact integer lane sums Σa·x (|sum| ≤ 4·128·127 and
// 4·128·128 for the correction, far inside int32). The eight sums are converted to float32
// (exactly) and added with a fused multiply-add times D = fl(dx·dy) into a float32
// accumulator per row and vector (16 accumulators for 4×4). At the end the eight lanes
// are summed as in the legacy dot4 (three levels of additions) and added to out.
//
//	q8tile<T>VNNIx<nv>(out *float32, w *byte, stride int, a0, a1, a2, a3 *byte, n int)
//
// The EVEX forms are used throughout, so all 32 vector registers are available.
package main

import (
	"flag"
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The q8Block layout (activations.go); legacy_amd64.go checks these.
const (
	actSize = 112
	actD    = 64
	actQS   = 76
	rows    = 4
)

type wtype struct {
	name string
	size int // bytes per block
}

var wtypes = []wtype{{"Q8_0", 34}, {"Q4_0", 18}}

var c80, cNib, c8, cShift Mem

func constants() {
	rep := func(name string, v uint64) Mem {
		m := GLOBL(name, RODATA|NOPTR)
		for i := 0; i < 4; i++ {
			DATA(8*i, U64(v))
		}
		return m
	}
	c80 = rep("q8tile80", 0x8080808080808080)
	cNib = rep("q8tileNib", 0x0f0f0f0f0f0f0f0f)
	c8 = rep("q8tile8", 0x0808080808080808)
	// dword shift counts: 0 for the low 128 bits (low nibbles), 4 for the high ones
	cShift = GLOBL("q8tileShift", RODATA|NOPTR)
	DATA(0, U64(0))
	DATA(8, U64(0))
	DATA(16, U64(0x0000000400000004))
	DATA(24, U64(0x0000000400000004))
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

// unpack returns the 32 signed quants of the weight block at w.
func unpack(t wtype, w Mem) VecVirtual {
	x := YMM()
	switch t.name {
	case "Q8_0":
		VMOVDQU8(w.Offset(2), x)
	case "Q4_0":
		VBROADCASTI32X4(w.Offset(2), x)
		VPSRLVD(cShift, x, x)
		VPANDD(cNib, x, x)
		VPSUBB(c8, x, x)
	default:
		panic(t.name)
	}
	return x
}

func tile(t wtype, nv int) {
	name := fmt.Sprintf("q8tile%sVNNIx%d", t.name, nv)
	TEXT(name, NOSPLIT, "func(out *float32, w *byte, stride int, a0, a1, a2, a3 *byte, n int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s adds to out[v*4+r] the dot of n %s blocks of row r (at w + r·stride) with the n activation blocks at av, for v < %d.", name, t.name, nv))
	w := Load(Param("w"), GP64())
	stride := Load(Param("stride"), GP64())
	s3 := GP64()
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, s3)
	a := make([]Register, nv)
	for v := range a {
		a[v] = Load(Param(fmt.Sprintf("a%d", v)), GP64())
	}
	n := Load(Param("n"), GP64())
	var ai Register = GP64()
	XORQ(ai, ai)
	acc := make([][]VecVirtual, rows)
	for r := range acc {
		acc[r] = make([]VecVirtual, nv)
		for v := range acc[r] {
			acc[r][v] = YMM()
			VPXORD(acc[r][v], acc[r][v], acc[r][v])
		}
	}
	k80 := YMM()
	VMOVDQU8(c80, k80)
	zero := YMM()
	VPXORD(zero, zero, zero)
	wm := func(r int) Mem {
		switch r {
		case 0:
			return Mem{Base: w}
		case 1:
			return Mem{Base: w, Index: stride, Scale: 1}
		case 2:
			return Mem{Base: w, Index: stride, Scale: 2}
		}
		return Mem{Base: w, Index: s3, Scale: 1}
	}
	am := func(v, off int) Mem { return Mem{Base: a[v], Index: ai, Scale: 1, Disp: off} }

	TESTQ(n, n)
	JZ(LabelRef("done"))
	Label("loop")
	ax := make([]VecVirtual, nv)
	for v := range ax {
		ax[v] = YMM()
		VPXORD(am(v, actQS), k80, ax[v])
	}
	for r := 0; r < rows; r++ {
		x := unpack(t, wm(r))
		c := YMM()
		VPXORD(c, c, c)
		vpdpbusd(x, k80, c)
		neg := YMM()
		VPSUBD(c, zero, neg)
		h := XMM()
		VPBROADCASTW(wm(r), h)
		dx := YMM()
		VCVTPH2PS(h, dx)
		for v := 0; v < nv; v++ {
			p := YMM()
			VMOVDQA32(neg, p)
			vpdpbusd(x, ax[v], p)
			VCVTDQ2PS(p, p)
			d := YMM()
			VMULPS_BCST(am(v, actD), dx, d)
			VFMADD231PS(d, p, acc[r][v])
		}
	}
	ADDQ(U8(t.size), w)
	ADDQ(U8(actSize), ai)
	DECQ(n)
	JNZ(LabelRef("loop"))
	Label("done")

	out := Load(Param("out"), GP64())
	for v := 0; v < nv; v++ {
		s := []VecVirtual{acc[0][v], acc[1][v], acc[2][v], acc[3][v]}
		VHADDPS(s[1], s[0], s[0])
		VHADDPS(s[3], s[2], s[2])
		VHADDPS(s[2], s[0], s[0])
		hi := XMM()
		VEXTRACTF128(U8(1), s[0], hi)
		r := XMM()
		VADDPS(hi, s[0].AsX(), r)
		VADDPS(Mem{Base: out, Disp: 16 * v}, r, r)
		VMOVUPS(r, Mem{Base: out, Disp: 16 * v})
	}
	VZEROUPPER()
	RET()
}

func main() {
	flag.Parse()                    // avo's -out, -stubs, -pkg
	ConstraintExpr("amd64,!purego") // avo v0.5.0 parses the "+build" syntax; it writes "//go:build amd64 && !purego"
	constants()
	for _, t := range wtypes {
		for nv := 1; nv <= 4; nv++ {
			tile(t, nv)
		}
	}
	Generate()
}
