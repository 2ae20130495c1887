//go:build amd64 && !purego

package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"
	"unsafe"

	"github.com/kensa-scan/kensa/formats"
	"golang.org/x/sys/cpu"
)

// Error bound of the assembly k-quant dots (ε = 2^-24). Each block's integer lanes are
// exact and below 2^24, so they convert to float32 exactly. A lane's term of block i is
// D_i·L_i with D_i = fl(d_w·d_a) (one rounding; the binary16 scales convert exactly); the
// lanes are accumulated over the nb blocks by FMA (one rounding per block, or for the
// AVX2 Q4_K/Q5_K/Q2_K forms f = fl(fl(D·L) - Dm·M) and one addition: three roundings
// and an addition per block), then summed by a tree of at most 5 levels (3 for AVX2). So
// every term passes through at most nb + 6 roundings:
// |asm - exact| ≤ γ(nb+6)·Σ|D_i·L_i| ≤ γ(nb+6)·mag, γ(k) = k·ε/(1-k·ε), with mag the Σ of
// |d_w·sc·q·d_a·a| + |dmin·m·d_a·a| over the elements, which bounds Σ|D_i·L_i| (the exact
// products; D's rounding is inside the count). The exact value is computed in float64
// from the integer sums of refK (2·nb products and sums: (2·nb+2)·2^-53·mag added), and underflow
// adds at most 2^-150 per rounding (nb+6 of them per lane, 24 lanes).
//
// The pure-Go dot rounds float32(isum), d_w·d_a, the product, the min-term subtraction and
// the addition of the block: γ(nb+4)·mag, so |asm - pure Go| ≤ γ(nb+4)·mag + the bound above.

func kqBound(nb int, mag float64) float64 {
	return gamma(nb+6)*mag + float64(2*nb+2)*0x1p-53*mag + float64(nb+6)*24*0x1p-150
}

// gamma is γ(k) = k·ε/(1-k·ε), the bound of k float32 roundings.
func gamma(k int) float64 { return float64(k) * eps / (1 - float64(k)*eps) }

func kqAvailable(p *kqPath) bool {
	if !useAVX2 || !cpu.X86.HasF16C {
		return false
	}
	switch p {
	case &kqAVX512:
		return useAVX512
	case &kqVNNI:
		return useVNNI
	}
	return true
}

var kqPathList = []*kqPath{&kqAVX2, &kqAVX512, &kqVNNI}

var kqTypeList = [5]formats.DType{formats.Q2_K, formats.Q3_K, formats.Q4_K, formats.Q5_K, formats.Q6_K}

// kqExact returns the dot of weight row w with a computed exactly from refK's integers
// (in float64) and mag.
func kqExact(t formats.DType, w []byte, a []q8KBlock) (exact, mag float64) {
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
		dd, dm := float64(dx)*float64(y.d), float64(mx)*float64(y.d)
		exact += dd*float64(isum) - dm*float64(summ)
		mag += math.Abs(dd)*absS + math.Abs(dm)*absM
	}
	return exact, mag
}

func TestKQuantsOffsets(t *testing.T) {
	var b q8KBlock
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"d", unsafe.Offsetof(b.d), 512},
		{"bsums", unsafe.Offsetof(b.bsums), 516},
		{"qs", unsafe.Offsetof(b.qs), 548},
		{"size", unsafe.Sizeof(b), 808},
	} {
		if c.got != c.want {
			t.Errorf("q8KBlock %s at %d, the assembly assumes %d", c.name, c.got, c.want)
		}
	}
}

// TestKQuantsAVX2Registers checks that the AVX2 functions use only VEX-encodable
// registers (X0-X15/Y0-Y15, no Z or K), so that they run on CPUs without AVX-512.
func TestKQuantsAVX2Registers(t *testing.T) {
	src, err := os.ReadFile("kquants_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	bad := regexp.MustCompile(`\b([XY](1[6-9]|2[0-9]|3[01])|Z[0-9]+|K[1-7])\b|\.BCST|VMOVDQU64|VPTERNLOG|VPERMW|VPSRLVW|VPSLLVW|VPDPWSSD`)
	funcs := strings.Split(string(src), "\nTEXT ")
	seen := 0
	for _, f := range funcs[1:] {
		name, _, _ := strings.Cut(f, "(")
		if !strings.HasSuffix(name, "AVX2") {
			continue
		}
		seen++
		if m := bad.FindString(f); m != "" {
			t.Errorf("%s uses %s", name, m)
		}
	}
	if seen == 0 {
		t.Fatal("no AVX2 functions found")
	}
}

// kqRows returns test rows of type t with nb blocks: random, all-maximal quants and
// scales, all zero.
func kqRows(r *rand.Rand, t formats.DType, nb int) [][]byte {
	var rows [][]byte
	for i := 0; i < 12; i++ {
		rows = append(rows, randomRow(r, t, 256*nb))
	}
	bb := t.BlockBytes()
	// every bit set except the scale fields: the largest quants and sub-block scales
	// (for Q3_K and Q6_K, 0xFF bytes are scale -1; also try 0x80/0x20 patterns)
	for _, fill := range []byte{0xff, 0x80, 0x20, 0x00} {
		w := make([]byte, bb*nb)
		for i := range w {
			w[i] = fill
		}
		for blk := 0; blk < nb; blk++ {
			for _, off := range scaleFields[t] {
				putH(w[blk*bb+off:], 0.125)
			}
		}
		rows = append(rows, w)
	}
	rows = append(rows, make([]byte, bb*nb))
	// Q6_K/Q3_K with the most negative scale (-128 / -32) and extreme quants
	switch t {
	case formats.Q6_K:
		w := make([]byte, bb*nb)
		for blk := 0; blk < nb; blk++ {
			b := w[blk*bb:]
			for i := 0; i < 192; i++ {
				b[i] = byte(r.IntN(2) * 0xff) // quants 0 or 63
			}
			for i := 192; i < 208; i++ {
				b[i] = 0x80
			}
			putH(b[208:], 0.125)
		}
		rows = append(rows, w)
	}
	return rows
}

// kqActs returns activation vectors of nb blocks: random, all ±127 (both signs and
// alternating), and one with a NaN block.
func kqActs(r *rand.Rand, nb int) [][]q8KBlock {
	var out [][]q8KBlock
	for i := 0; i < 4; i++ {
		out = append(out, Prepare(randomActs(r, 256*nb), formats.Q4_K).q8k)
	}
	mk := func(f func(i int) int8) []q8KBlock {
		a := make([]q8KBlock, nb)
		for k := range a {
			b := &a[k]
			for i := range b.qs {
				b.qs[i] = f(256*k + i)
			}
			for j := range b.bsums {
				var s int16
				for _, q := range b.qs[16*j : 16*j+16] {
					s += int16(q)
				}
				b.bsums[j] = s
			}
			b.d = 0.75
			packGroups(b.w[:], b.qs[:])
		}
		return a
	}
	out = append(out,
		mk(func(int) int8 { return 127 }),
		mk(func(int) int8 { return -127 }),
		mk(func(i int) int8 { return int8(127 - 254*(i&1)) }),
		mk(func(i int) int8 { return int8(127 - 254*(i/16&1)) }))
	x := randomActs(r, 256*nb)
	x[256*(nb-1)+7] = float32(math.NaN())
	out = append(out, Prepare(x, formats.Q4_K).q8k)
	return out
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

func TestKQuantsAsm(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, p := range kqPathList {
		if !kqAvailable(p) {
			t.Logf("%s: not supported by this CPU", p.name)
			continue
		}
		for ti, typ := range kqTypeList {
			dot, dot4 := p.dot[ti], p.dot4[ti]
			if dot == nil {
				continue
			}
			t.Run(p.name+"/"+typ.String(), func(t *testing.T) {
				goDot := kqGoDots[ti]
				worst := 0.0
				for _, nb := range []int{1, 2, 3, 5, 8, 22} {
					rows := kqRows(r, typ, nb)
					acts := kqActs(r, nb)
					for ri, w := range rows {
						for ai := 0; ai < len(acts); ai += 4 {
							var a [4][]q8KBlock
							for k := range a {
								a[k] = acts[(ai+k)%len(acts)]
							}
							var got4 [4]float32
							dot4(&got4, w, a[0], a[1], a[2], a[3])
							for k := range a {
								got := dot(w, a[k])
								if !same(got, got4[k]) {
									t.Fatalf("nb %d row %d: dot4[%d] %v, dot %v", nb, ri, k, got4[k], got)
								}
								g := goDot(w, a[k])
								exact, mag := kqExact(typ, w, a[k])
								if !finite(g) || math.IsNaN(exact) {
									if finite(got) {
										t.Fatalf("nb %d row %d act %d: asm %v, pure Go %v (want non-finite)", nb, ri, ai+k, got, g)
									}
									continue
								}
								b := kqBound(nb, mag)
								if d := math.Abs(float64(got) - exact); !(d <= b) {
									t.Fatalf("nb %d row %d act %d: asm %v, exact %v: |diff| %g > bound %g", nb, ri, ai+k, got, exact, d, b)
								} else if b > 0 {
									worst = max(worst, d/b)
								}
								bg := gamma(nb+4) * mag
								if d := math.Abs(float64(got) - float64(g)); !(d <= bg+b) {
									t.Fatalf("nb %d row %d act %d: asm %v, pure Go %v: |diff| %g > bound %g", nb, ri, ai+k, got, g, d, bg)
								}
							}
						}
					}
				}
				t.Logf("largest |error|/bound %.3g", worst)
			})
		}
	}
}

var kqGoDots = [5]dotQKFunc{dotQ2_KGo, dotQ3_KGo, dotQ4_KGo, dotQ5_KGo, dotQ6_KGo}

// TestKQuantsNonFinite: a NaN or Inf weight scale gives a non-finite dot, as in Go.
func TestKQuantsNonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	a := Prepare(randomActs(r, 512), formats.Q4_K).q8k
	for _, p := range kqPathList {
		if !kqAvailable(p) {
			continue
		}
		for ti, typ := range kqTypeList {
			if p.dot[ti] == nil {
				continue
			}
			for _, off := range scaleFields[typ] {
				for _, h := range []uint16{0x7c00, 0xfc00, 0x7e00} {
					w := randomRow(r, typ, 512)
					binary.LittleEndian.PutUint16(w[typ.BlockBytes()+off:], h)
					g, got := kqGoDots[ti](w, a), p.dot[ti](w, a)
					var got4 [4]float32
					p.dot4[ti](&got4, w, a, a, a, a)
					if finite(g) || finite(got) || !same(got, got4[0]) {
						t.Errorf("%s %v scale %#04x at %d: pure Go %v, asm %v, dot4 %v", p.name, typ, h, off, g, got, got4[0])
					}
				}
			}
		}
	}
}

// TestKQuantsEmpty: zero blocks give 0.
func TestKQuantsEmpty(t *testing.T) {
	for _, p := range kqPathList {
		for ti := range kqTypeList {
			if p.dot[ti] == nil {
				continue
			}
			dst := [4]float32{1, 2, 3, 4}
			p.dot4[ti](&dst, nil, nil, nil, nil, nil)
			if got := p.dot[ti](nil, nil); got != 0 || dst != [4]float32{} {
				t.Errorf("%s %v: empty dot %v, dot4 %v", p.name, kqTypeList[ti], got, dst)
			}
		}
	}
}

// BenchmarkKQuantPaths runs MulVec (2048×2048) and MulMat (×32) of each k-quant type
// through each assembly path the CPU has (forced), to compare the paths.
func BenchmarkKQuantPaths(b *testing.B) {
	for _, p := range kqPathList {
		if !kqAvailable(p) {
			continue
		}
		for ti, typ := range kqTypeList {
			if p.dot[ti] == nil {
				continue
			}
			v := kqVars[ti]
			b.Run(p.name+"/"+typ.String()+"/MulVec", func(b *testing.B) {
				old := *v.dot
				*v.dot = p.dot[ti]
				defer func() { *v.dot = old }()
				m := benchMatrix(b, typ, 2048, 2048)
				x := Prepare(randomActs(rand.New(rand.NewPCG(1, 1)), m.Cols), typ)
				dst := make([]float32, m.Rows)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					m.MulVec(dst, x, 0, m.Rows)
				}
				report(b, m, 1)
			})
			b.Run(p.name+"/"+typ.String()+"/MulMat", func(b *testing.B) {
				old, old4 := *v.dot, *v.dot4
				*v.dot, *v.dot4 = p.dot[ti], p.dot4[ti]
				defer func() { *v.dot, *v.dot4 = old, old4 }()
				const n = 32
				m := benchMatrix(b, typ, 2048, 2048)
				r := rand.New(rand.NewPCG(2, 2))
				xs := make([]*Activations, n)
				dst := make([][]float32, n)
				for i := range xs {
					xs[i] = Prepare(randomActs(r, m.Cols), typ)
					dst[i] = make([]float32, m.Rows)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					m.MulMat(dst, xs, 0, m.Rows)
				}
				report(b, m, n)
			})
		}
	}
}
