// Command float generates the amd64 float dots of package kernels (float_amd64.s and
// float_stub_amd64.go): weights F32, F16 or BF16 times float32 activations, with AVX2+FMA
// (8 lanes) and AVX-512 (16 lanes).
//
// Every kernel is one shape of the same loop: R weight rows times V activation vectors, with
// U independent sets of accumulators (one vector register per row, vector and set). Each
// step converts lanes weights of each row to float32 (F32: a load; F16: vcvtph2ps; BF16:
// zero-extend the 16-bit words to 32 bits and shift them left by 16, which is exact), loads
// lanes activations of each vector once, and adds every row-vector product with a fused
// multiply-add into its accumulator: the R×V register tile reads each loaded value V (or R)
// times. At the end the U sets are added, every accumulator is summed across its lanes,
// and the R×V sums are stored (dot4), added to out (the tiles, which MulMat runs on
// chunks of columns), or returned (the single dot).
//
// The kernels take n, the number of elements, as a multiple of lanes; the Go wrappers add
// the remaining elements (and guard n = 0).
//
//	dot<T><ISA>asm(w, x, n) float32                      1 row, 1 vector, U = 4
//	dot4<T><ISA>asm(out, w, x0, x1, x2, x3, n)           1 row, 4 vectors, U = 2: out[v]
//	tile<T><ISA>x<V>(out, w, stride, x0, ..., x5, n)     R rows (stride bytes apart), V
//	                                                     vectors, U = 1: out[v*R + r] +=
//
// with R = 4 rows and V ≤ 6 vectors for AVX-512 (24 accumulators of 32 registers: per step
// 4 weight and 6 activation loads for 24 multiply-adds), and R = 3, V ≤ 4 for AVX2 (12 of 16
// registers). The AVX-512 kernels use only EVEX-encodable instructions, so that the register allocator
// may use all 32 vector registers; the AVX2 kernels must stay within X0-X15, which the
// generator checks in its output.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

type wtype struct {
	name string
	size int // bytes per weight
}

type isa struct {
	name  string
	lanes int // float32 lanes per vector register
	rows  int // rows of the multi-row tile
	vecs  int // most vectors of the multi-row tile
	vec   func() VecVirtual
}

var (
	wtypes = []wtype{{"F32", 4}, {"F16", 2}, {"BF16", 2}}
	isas   = []isa{
		{"AVX2", 8, 3, 4, YMM},
		{"AVX512", 16, 4, 6, ZMM},
	}
)

// loadW converts lanes weights at m to float32 in dst.
func loadW(t wtype, m Mem, dst VecVirtual) {
	switch t.name {
	case "F32":
		VMOVUPS(m, dst)
	case "F16":
		VCVTPH2PS(m, dst)
	case "BF16":
		VPMOVZXWD(m, dst)
		VPSLLD(U8(16), dst, dst)
	}
}

// kernel emits one R×V×U kernel. For R = V = 1 it returns the sum; otherwise it stores
// out[v*R + r].
func kernel(name string, t wtype, s isa, R, V, U int) {
	switch {
	case R == 1 && V == 1:
		TEXT(name, NOSPLIT, "func(w *byte, x *float32, n int) float32")
	case R == 1:
		TEXT(name, NOSPLIT, "func(out *float32, w *byte, x0, x1, x2, x3 *float32, n int)")
	default:
		TEXT(name, NOSPLIT, "func(out *float32, w *byte, stride int, x0, x1, x2, x3, x4, x5 *float32, n int)")
	}
	Pragma("noescape")
	Doc(fmt.Sprintf("%s: %d row(s) of %s weights times %d vector(s), %d lanes, %d accumulator set(s); n a multiple of %d.",
		name, R, t.name, V, s.lanes, U, s.lanes))

	n := Load(Param("n"), GP64())
	wp := make([]Register, R)
	wp[0] = Load(Param("w"), GP64())
	if R > 1 {
		stride := Load(Param("stride"), GP64())
		for r := 1; r < R; r++ {
			wp[r] = GP64()
			LEAQ(Mem{Base: wp[r-1], Index: stride, Scale: 1}, wp[r])
		}
	}
	xp := make([]Register, V)
	if V == 1 && R == 1 {
		xp[0] = Load(Param("x"), GP64())
	} else {
		for v := range xp {
			xp[v] = Load(Param(fmt.Sprintf("x%d", v)), GP64())
		}
	}

	acc := make([][][]VecVirtual, U)
	for u := range acc {
		acc[u] = make([][]VecVirtual, R)
		for r := range acc[u] {
			acc[u][r] = make([]VecVirtual, V)
			for v := range acc[u][r] {
				a := s.vec()
				VXORPS(a, a, a)
				acc[u][r][v] = a
			}
		}
	}

	i := GP64()
	XORQ(i, i)

	// step adds the products of elements i+off .. i+off+lanes-1 into accumulator set u.
	step := func(u, off int) {
		wm := func(r int) Mem { return Mem{Base: wp[r], Index: i, Scale: uint8(t.size), Disp: off * t.size} }
		xm := func(v int) Mem { return Mem{Base: xp[v], Index: i, Scale: 4, Disp: off * 4} }
		if R == 1 {
			w := s.vec()
			loadW(t, wm(0), w)
			for v := 0; v < V; v++ {
				VFMADD231PS(xm(v), w, acc[u][0][v])
			}
			return
		}
		ws := make([]VecVirtual, R)
		for r := range ws {
			ws[r] = s.vec()
			loadW(t, wm(r), ws[r])
		}
		for v := 0; v < V; v++ {
			x := s.vec()
			VMOVUPS(xm(v), x)
			for r := 0; r < R; r++ {
				VFMADD231PS(ws[r], x, acc[u][r][v])
			}
		}
	}

	if U > 1 {
		nu := GP64()
		MOVQ(n, nu)
		ANDQ(I32(-U*s.lanes), nu)
		Label(name + "_loopU")
		CMPQ(i, nu)
		JAE(LabelRef(name + "_tail"))
		for u := 0; u < U; u++ {
			step(u, u*s.lanes)
		}
		ADDQ(U32(U*s.lanes), i)
		JMP(LabelRef(name + "_loopU"))
		Label(name + "_tail")
	}
	Label(name + "_loop1")
	CMPQ(i, n)
	JAE(LabelRef(name + "_reduce"))
	step(0, 0)
	ADDQ(U32(s.lanes), i)
	JMP(LabelRef(name + "_loop1"))

	Label(name + "_reduce")
	// Add the accumulator sets pairwise into set 0.
	for d := 1; d < U; d *= 2 {
		for u := 0; u+d < U; u += 2 * d {
			for r := 0; r < R; r++ {
				for v := 0; v < V; v++ {
					VADDPS(acc[u+d][r][v], acc[u][r][v], acc[u][r][v])
				}
			}
		}
	}
	// Fold each accumulator to four partial sums in an XMM register, in output order.
	var parts []VecVirtual
	for v := 0; v < V; v++ {
		for r := 0; r < R; r++ {
			parts = append(parts, fold4(s, acc[0][r][v]))
		}
	}
	if R == 1 && V == 1 {
		sum := hsum(parts[0])
		b, err := ReturnIndex(0).Resolve()
		if err != nil {
			panic(err)
		}
		VMOVSS(sum, b.Addr)
		VZEROUPPER()
		RET()
		return
	}
	// The tiles add their sums to out (MulMat adds the column chunks of a row there); dot4
	// stores them.
	add := R > 1
	out := Mem{Base: Load(Param("out"), GP64())}
	k := 0
	for ; k+4 <= len(parts); k += 4 {
		sum := transposeSum(parts[k : k+4])
		if add {
			VADDPS(out.Offset(4*k), sum, sum)
		}
		VMOVUPS(sum, out.Offset(4*k))
	}
	for ; k < len(parts); k++ {
		sum := hsum(parts[k])
		if add {
			VADDSS(out.Offset(4*k), sum, sum)
		}
		VMOVSS(sum, out.Offset(4*k))
	}
	VZEROUPPER()
	RET()
}

// fold4 adds the halves of a (down to 128 bits) into a new XMM register.
func fold4(s isa, a VecVirtual) VecVirtual {
	var y VecVirtual = a
	if s.lanes == 16 {
		y = YMM()
		VEXTRACTF64X4(U8(1), a, y)
		VADDPS(y, a.AsY(), y)
	}
	x := XMM()
	if s.lanes == 16 {
		VEXTRACTF32X4(U8(1), y, x)
	} else {
		VEXTRACTF128(U8(1), y, x)
	}
	VADDPS(x, y.AsX(), x)
	return x
}

// hsum returns an XMM register whose lane 0 is the sum of the four lanes of x.
func hsum(x VecVirtual) VecVirtual {
	t := XMM()
	VSHUFPS(U8(0x4e), x, x, t) // lanes 2 3 0 1
	VADDPS(t, x, t)            // 0+2, 1+3, ...
	u := XMM()
	VMOVSHDUP(t, u) // lane 1 into lane 0
	VADDSS(u, t, u)
	return u
}

// transposeSum returns the XMM register [Σa, Σb, Σc, Σd] of four XMM registers.
func transposeSum(p []VecVirtual) VecVirtual {
	pair := func(a, b VecVirtual) VecVirtual {
		lo, hi := XMM(), XMM()
		VUNPCKLPS(b, a, lo) // a0 b0 a1 b1
		VUNPCKHPS(b, a, hi) // a2 b2 a3 b3
		VADDPS(hi, lo, lo)  // a02 b02 a13 b13
		return lo
	}
	ab, cd := pair(p[0], p[1]), pair(p[2], p[3])
	lo, hi := XMM(), XMM()
	VUNPCKLPD(cd, ab, lo) // a02 b02 c02 d02
	VUNPCKHPD(cd, ab, hi) // a13 b13 c13 d13
	VADDPS(hi, lo, lo)
	return lo
}

func main() {
	flag.Parse()                    // avo's -out, -stubs, -pkg
	ConstraintExpr("amd64,!purego") // avo v0.5.0 parses the "+build" syntax; it writes "//go:build amd64 && !purego"
	for _, s := range isas {
		for _, t := range wtypes {
			kernel("dot"+t.name+s.name+"asm", t, s, 1, 1, 4)
			kernel("dot4"+t.name+s.name+"asm", t, s, 1, 4, 2)
			for v := 1; v <= s.vecs; v++ {
				kernel(fmt.Sprintf("tile%s%sx%d", t.name, s.name, v), t, s, s.rows, v, 1)
			}
		}
	}
	Generate()
	if err := checkAVX2(); err != nil {
		fmt.Fprintln(os.Stderr, "float:", err)
		os.Exit(1)
	}
}

// checkAVX2 fails if an AVX2 function of the generated file uses a vector register above
// 15 (only EVEX, that is AVX-512, can encode those).
func checkAVX2() error {
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
		if strings.Contains(fn, "AVX2") && high.MatchString(line) {
			return fmt.Errorf("%s uses a register above 15: %s", fn, line)
		}
	}
	return sc.Err()
}
