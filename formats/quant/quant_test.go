package quant

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/internal/corpus"

	"github.com/x448/float16"
)

// layouts gives each type's block as C-like field declarations, written from the format
// reference (FORMATS.md A.6) independently of kernels.go. Elements of plain types are one
// field.
var layouts = map[string]struct {
	elems  int
	fields string
}{
	"F32": {1, "f32 v"}, "F16": {1, "half v"}, "BF16": {1, "u16 v"}, "F64": {1, "f64 v"},
	"I8": {1, "i8 v"}, "I16": {1, "i16 v"}, "I32": {1, "i32 v"}, "I64": {1, "i64 v"},
	"BOOL": {1, "u8 v"}, "U8": {1, "u8 v"}, "U16": {1, "u16 v"}, "U32": {1, "u32 v"}, "U64": {1, "u64 v"},
	"C64":     {1, "f32 re; f32 im"},
	"F8_E4M3": {1, "u8 v"}, "F8_E5M2": {1, "u8 v"}, "F8_E8M0": {1, "u8 v"},
	"F8_E4M3FNUZ": {1, "u8 v"}, "F8_E5M2FNUZ": {1, "u8 v"},
	"F4": {2, "u8 v"}, "F6_E2M3": {4, "u8 v[3]"}, "F6_E3M2": {4, "u8 v[3]"},

	"Q4_0":    {32, "half d; u8 qs[16]"},
	"Q4_1":    {32, "half d; half m; u8 qs[16]"},
	"Q5_0":    {32, "half d; u8 qh[4]; u8 qs[16]"},
	"Q5_1":    {32, "half d; half m; u8 qh[4]; u8 qs[16]"},
	"Q8_0":    {32, "half d; i8 qs[32]"},
	"Q8_1":    {32, "half d; half s; i8 qs[32]"},
	"Q2_K":    {256, "u8 scales[16]; u8 qs[64]; half d; half dmin"},
	"Q3_K":    {256, "u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d"},
	"Q4_K":    {256, "half d; half dmin; u8 scales[12]; u8 qs[128]"},
	"Q5_K":    {256, "half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]"},
	"Q6_K":    {256, "u8 ql[128]; u8 qh[64]; i8 scales[16]; half d"},
	"Q8_K":    {256, "f32 d; i8 qs[256]; i16 bsums[16]"},
	"IQ2_XXS": {256, "half d; u16 qs[32]"},
	"IQ2_XS":  {256, "half d; u16 qs[32]; u8 scales[8]"},
	"IQ3_XXS": {256, "half d; u8 qs[96]"},
	"IQ1_S":   {256, "half d; u8 qs[32]; u16 qh[8]"},
	"IQ4_NL":  {32, "half d; u8 qs[16]"},
	"IQ3_S":   {256, "half d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]"},
	"IQ2_S":   {256, "half d; u8 qs[64]; u8 qh[8]; u8 scales[8]"},
	"IQ4_XS":  {256, "half d; u16 scales_h; u8 scales_l[4]; u8 qs[128]"},
	"IQ1_M":   {256, "u8 qs[32]; u8 qh[16]; u8 scales[8]"},
	"TQ1_0":   {256, "u8 qs[48]; u8 qh[4]; half d"},
	"TQ2_0":   {256, "u8 qs[64]; half d"},
	"MXFP4":   {32, "u8 e; u8 qs[16]"},
	"NVFP4":   {64, "u8 d[4]; u8 qs[32]"},
	"Q1_0":    {128, "half d; u8 qs[16]"},
	"Q2_0":    {64, "half d; u8 qs[16]"},
}

var declRE = regexp.MustCompile(`^(half|f32|f64|u8|i8|u16|i16|u32|i32|u64|i64) \w+(?:\[(\d+)\])?$`)

// multiByteFields parses a layout and returns its size and the (offset, size) of every
// multi-byte scalar in it.
func multiByteFields(t *testing.T, layout string) (size int, fields [][2]int) {
	t.Helper()
	for _, decl := range strings.Split(layout, "; ") {
		m := declRE.FindStringSubmatch(decl)
		if m == nil {
			t.Fatalf("bad declaration %q", decl)
		}
		width := map[string]int{"half": 2, "f32": 4, "f64": 8, "u8": 1, "i8": 1, "u16": 2, "i16": 2,
			"u32": 4, "i32": 4, "u64": 8, "i64": 8}[m[1]]
		count := 1
		if m[2] != "" {
			count, _ = strconv.Atoi(m[2])
		}
		for range count {
			if width > 1 {
				fields = append(fields, [2]int{size, width})
			}
			size += width
		}
	}
	return size, fields
}

// allNames are the type names the package must cover.
var allNames = strings.Fields(`F32 F16 BF16 F64 I8 I16 I32 I64 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1
	Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S IQ1_M IQ4_NL IQ4_XS
	TQ1_0 TQ2_0 MXFP4 NVFP4 Q1_0 Q2_0
	BOOL U8 U16 U32 U64 F8_E4M3 F8_E5M2 F8_E8M0 F8_E4M3FNUZ F8_E5M2FNUZ F4 F6_E2M3 F6_E3M2 C64`)

func TestKernelTable(t *testing.T) {
	ks := Kernels()
	if got, want := len(ks), len(allNames); got != want {
		t.Errorf("len(Kernels()) = %d, want %d", got, want)
	}
	if !slices.IsSortedFunc(ks, func(a, b Kernel) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("Kernels() not sorted by name")
	}
	for _, name := range allNames {
		k, ok := Lookup(name)
		if !ok {
			t.Errorf("Lookup(%q) not found", name)
			continue
		}
		if k.Name != name {
			t.Errorf("Lookup(%q).Name = %q", name, k.Name)
		}
		if got, want := k.Decode == nil, name == "C64"; got != want {
			t.Errorf("%s: Decode == nil is %v, want %v", name, got, want)
		}
		l, ok := layouts[name]
		if !ok {
			t.Errorf("%s: no layout in test", name)
			continue
		}
		size, fields := multiByteFields(t, l.fields)
		if k.BlockElems != l.elems || k.BlockBytes != size {
			t.Errorf("%s: block %d elems / %d bytes, want %d / %d", name, k.BlockElems, k.BlockBytes, l.elems, size)
		}
		if got, want := k.SwapToLE != nil, len(fields) > 0; got != want {
			t.Errorf("%s: SwapToLE != nil is %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"", "f32", "q4_k", "Q4_2", "F8", "IQ4_NL_4_4"} {
		if _, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) found, want not found", name)
		}
	}
}

// randomBlocks returns n blocks of random bytes for k, from a fixed seed.
func randomBlocks(k Kernel, n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n*k.BlockBytes)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sameBits reports whether a and b hold the same float32 bit patterns.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestBlockwise checks that decoding many blocks at once equals decoding block by block.
func TestBlockwise(t *testing.T) {
	for _, k := range Kernels() {
		if k.Decode == nil {
			continue
		}
		const n = 7
		src := randomBlocks(k, n, 1)
		all := make([]float32, n*k.BlockElems)
		k.Decode(all, src)
		for i := range n {
			one := make([]float32, k.BlockElems)
			k.Decode(one, src[i*k.BlockBytes:(i+1)*k.BlockBytes])
			if !sameBits(one, all[i*k.BlockElems:(i+1)*k.BlockElems]) {
				t.Errorf("%s: block %d decodes differently alone", k.Name, i)
			}
		}
		k.Decode(nil, nil) // zero blocks is fine
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	for _, k := range Kernels() {
		if k.Decode == nil {
			continue
		}
		src := randomBlocks(k, 9, 2)
		dst := make([]float32, 9*k.BlockElems)
		if n := testing.AllocsPerRun(10, func() { k.Decode(dst, src) }); n != 0 {
			t.Errorf("%s: Decode allocates %v times", k.Name, n)
		}
	}
}

func TestDecodePanicsOnBadLengths(t *testing.T) {
	for _, k := range Kernels() {
		if k.Decode == nil {
			continue
		}
		e, b := k.BlockElems, k.BlockBytes
		cases := []struct{ dst, src int }{
			{2 * e, 2*b - 1},
			{2 * e, 2*b + 1},
			{e, 0},
			{0, b},
			{3 * e, 2 * b},
		}
		if e > 1 {
			cases = append(cases, struct{ dst, src int }{e + 1, b}, struct{ dst, src int }{e - 1, 0})
		}
		for _, c := range cases {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s: Decode(len %d, len %d) did not panic", k.Name, c.dst, c.src)
					}
				}()
				k.Decode(make([]float32, c.dst), make([]byte, c.src))
			}()
		}
	}
}

func TestSwapToLE(t *testing.T) {
	for _, k := range Kernels() {
		if k.SwapToLE == nil {
			continue
		}
		_, fields := multiByteFields(t, layouts[k.Name].fields)
		for seed := range uint64(20) {
			le := randomBlocks(k, 1, seed)
			be := bytes.Clone(le)
			for _, f := range fields {
				slices.Reverse(be[f[0] : f[0]+f[1]])
			}
			got := bytes.Clone(be)
			k.SwapToLE(got)
			if !bytes.Equal(got, le) {
				t.Fatalf("%s: SwapToLE(%x) = %x, want %x", k.Name, be, got, le)
			}
			k.SwapToLE(got)
			if !bytes.Equal(got, be) {
				t.Fatalf("%s: SwapToLE is not an involution", k.Name)
			}
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: SwapToLE of a short block did not panic", k.Name)
				}
			}()
			k.SwapToLE(make([]byte, k.BlockBytes-1))
		}()
	}
}

// TestSwapToLEPlain checks big-endian plain values decode to their value after SwapToLE.
func TestSwapToLEPlain(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 1000 {
		v := r.Uint64()
		cases := []struct {
			name string
			be   []byte
			want float32
		}{
			{"I16", binary.BigEndian.AppendUint16(nil, uint16(v)), float32(int16(v))},
			{"U16", binary.BigEndian.AppendUint16(nil, uint16(v)), float32(uint16(v))},
			{"I32", binary.BigEndian.AppendUint32(nil, uint32(v)), float32(int32(v))},
			{"U32", binary.BigEndian.AppendUint32(nil, uint32(v)), float32(uint32(v))},
			{"I64", binary.BigEndian.AppendUint64(nil, v), float32(int64(v))},
			{"U64", binary.BigEndian.AppendUint64(nil, v), float32(v)},
			{"F32", binary.BigEndian.AppendUint32(nil, uint32(v)), math.Float32frombits(uint32(v))},
			{"F64", binary.BigEndian.AppendUint64(nil, v), float32(math.Float64frombits(v))},
			{"F16", binary.BigEndian.AppendUint16(nil, uint16(v)), float16.Frombits(uint16(v)).Float32()},
			{"BF16", binary.BigEndian.AppendUint16(nil, uint16(v)), math.Float32frombits(uint32(uint16(v)) << 16)},
		}
		for _, c := range cases {
			k, _ := Lookup(c.name)
			k.SwapToLE(c.be)
			var got [1]float32
			k.Decode(got[:], c.be)
			if math.Float32bits(got[0]) != math.Float32bits(c.want) && !(isNaN32(got[0]) && isNaN32(c.want)) {
				t.Fatalf("%s: %#x decodes to %v after swap, want %v", c.name, v, got[0], c.want)
			}
		}
	}
}

func isNaN32(f float32) bool { return f != f }

// decodeOne decodes src with the named kernel.
func decodeOne(t *testing.T, name string, src []byte) []float32 {
	t.Helper()
	k, ok := Lookup(name)
	if !ok {
		t.Fatalf("no kernel %s", name)
	}
	dst := make([]float32, len(src)/k.BlockBytes*k.BlockElems)
	k.Decode(dst, src)
	return dst
}

func halfBits(f float32) [2]byte {
	h := float16.Fromfloat32(f)
	if h.Float32() != f {
		panic(fmt.Sprintf("%v is not a binary16", f))
	}
	return [2]byte{byte(h), byte(h >> 8)}
}

func TestQ8_1MatchesQ8_0(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for range 200 {
		var q80 [34]byte
		var q81 [36]byte
		for i := range q80 {
			q80[i] = byte(r.Uint32())
		}
		if q80[1]&0x7C == 0x7C {
			q80[1] &^= 0x40 // finite d
		}
		copy(q81[:2], q80[:2])
		q81[2], q81[3] = byte(r.Uint32()), byte(r.Uint32()) // s: ignored
		copy(q81[4:], q80[2:])
		a, b := decodeOne(t, "Q8_0", q80[:]), decodeOne(t, "Q8_1", q81[:])
		if !sameBits(a, b) {
			t.Fatalf("Q8_1 %v != Q8_0 %v", b, a)
		}
	}
	// By hand: d = 0.5, qs = -128, -1, 0, 1, 127, ...
	var blk [36]byte
	h := halfBits(0.5)
	copy(blk[:], h[:])
	qs := []int8{-128, -1, 0, 1, 127}
	for i, q := range qs {
		blk[4+i] = byte(q)
	}
	got := decodeOne(t, "Q8_1", blk[:])
	for i, want := range []float32{-64, -0.5, 0, 0.5, 63.5} {
		if got[i] != want {
			t.Errorf("Q8_1 value %d = %v, want %v", i, got[i], want)
		}
	}
}

func TestQ8_K(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for range 50 {
		blk := make([]byte, 292)
		d := float32(r.NormFloat64())
		binary.LittleEndian.PutUint32(blk, math.Float32bits(d))
		for i := 4; i < 292; i++ {
			blk[i] = byte(r.Uint32())
		}
		got := decodeOne(t, "Q8_K", blk)
		for j := range 256 {
			// The exact product of a float32 and an int8 fits a float64; rounding it once
			// to float32 is IEEE float32 multiplication.
			want := float32(float64(d) * float64(int8(blk[4+j])))
			if got[j] != want {
				t.Fatalf("Q8_K d=%v value %d = %v, want %v", d, j, got[j], want)
			}
		}
	}
}

func TestQ1_0(t *testing.T) {
	blk := make([]byte, 18)
	h := halfBits(-1.25)
	copy(blk, h[:])
	bitsSet := []int{0, 7, 8, 63, 64, 100, 127}
	for _, j := range bitsSet {
		blk[2+j/8] |= 1 << (j % 8)
	}
	got := decodeOne(t, "Q1_0", blk)
	for j := range 128 {
		want := float32(1.25) // bit clear: -d
		if slices.Contains(bitsSet, j) {
			want = -1.25
		}
		if got[j] != want {
			t.Errorf("Q1_0 value %d = %v, want %v", j, got[j], want)
		}
	}
}

func TestQ2_0(t *testing.T) {
	blk := make([]byte, 18)
	h := halfBits(3)
	copy(blk, h[:])
	codes := make([]int, 64)
	for j := range codes {
		codes[j] = (j*7 + j/5) % 4
		blk[2+j/4] |= byte(codes[j]) << (2 * (j % 4))
	}
	got := decodeOne(t, "Q2_0", blk)
	for j, c := range codes {
		want := []float32{-3, 0, 3, 6}[c]
		if got[j] != want {
			t.Errorf("Q2_0 value %d (code %d) = %v, want %v", j, c, got[j], want)
		}
	}
}

// e2m1 is the FP4 E2M1 value of a nibble, listed from the OCP MX specification.
func e2m1(nib byte) float64 {
	v := []float64{0, 0.5, 1, 1.5, 2, 3, 4, 6}[nib&7]
	if nib&8 != 0 {
		return -v
	}
	return v
}

func TestMXFP4(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, e := range []int{0, 1, 2, 100, 126, 127, 128, 129, 200, 254, 255} {
		blk := make([]byte, 17)
		blk[0] = byte(e)
		for i := 1; i < 17; i++ {
			blk[i] = byte(r.Uint32())
		}
		got := decodeOne(t, "MXFP4", blk)
		for j := range 32 {
			nib := blk[1+j%16] & 15
			if j >= 16 {
				nib = blk[1+j%16] >> 4
			}
			// E8M0 scale 2^(e-127) (ggml does not treat 255 as NaN). ggml's integer
			// table has no negative zero: nibble 8 is +0.
			want := float32(e2m1(nib) * math.Pow(2, float64(e-127)))
			if nib == 8 {
				want = 0
			}
			if math.Float32bits(got[j]) != math.Float32bits(want) {
				t.Fatalf("MXFP4 e=%d value %d (nibble %#x) = %v, want %v", e, j, nib, got[j], want)
			}
		}
	}
}

// ue4m3 is NVFP4's unsigned E4M3 scale as ggml decodes it: bias 7, subnormals, bit 7
// ignored, 0x7F read as 0.
func ue4m3(c byte) float64 {
	if c == 0x7F {
		return 0
	}
	e, m := int(c>>3&15), float64(c&7)
	if e == 0 {
		return m / 8 * math.Pow(2, -6)
	}
	return (1 + m/8) * math.Pow(2, float64(e-7))
}

func TestNVFP4(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	scales := [][4]byte{{0x38, 0x00, 0x7F, 0x7E}, {0x01, 0x07, 0x08, 0xFF}, {0x80, 0xB8, 0x40, 0x30}}
	for _, sc := range scales {
		blk := make([]byte, 36)
		copy(blk, sc[:])
		for i := 4; i < 36; i++ {
			blk[i] = byte(r.Uint32())
		}
		got := decodeOne(t, "NVFP4", blk)
		for j := range 64 {
			s, k := j/16, j%16
			q := blk[4+8*s+k%8]
			nib := q & 15
			if k >= 8 {
				nib = q >> 4
			}
			want := float32(e2m1(nib) * ue4m3(sc[s]))
			if got[j] != want {
				t.Fatalf("NVFP4 scale %#x value %d = %v, want %v", sc[s], j, got[j], want)
			}
		}
	}
	// 0x38 is 1.0: the values are the E2M1 values.
	blk := make([]byte, 36)
	blk[0] = 0x38
	blk[4] = 0xF5 // 3 and -6
	got := decodeOne(t, "NVFP4", blk)
	if got[0] != 3 || got[8] != -6 {
		t.Errorf("NVFP4 scale 1.0: got %v, %v, want 3, -6", got[0], got[8])
	}
}

// TestIQ2_S builds IQ2_S blocks by hand and checks them against the format's formula.
func TestIQ2_S(t *testing.T) {
	// Spot-check the grid against ggml's uint64 constants (iq2s_grid in ggml-common.h).
	for i, c := range map[int]uint64{0: 0x0808080808080808, 1: 0x080808080808082b, 2: 0x0808080808081919,
		7: 0x080808080819192b, 13: 0x0808080819080819, 1023: 0x2b2b2b2b2b2b2b2b} {
		var want [8]byte
		binary.LittleEndian.PutUint64(want[:], c)
		if iq2sGrid[i] != want {
			t.Errorf("iq2sGrid[%d] = %v, want %v (%#x)", i, iq2sGrid[i], want, c)
		}
	}
	r := rand.New(rand.NewPCG(8, 8))
	for _, d := range []float32{0.125, 1, -3.5, 0.0009765625} {
		var idx [32]int   // 10-bit grid index of each group of 8
		var sign [32]byte // sign byte of each group of 8
		var scale [8]byte // two 4-bit scales per 32
		for g := range idx {
			idx[g] = r.IntN(1024)
			sign[g] = byte(r.Uint32())
		}
		idx[0], idx[31] = 1023, 0
		for ib := range scale {
			scale[ib] = byte(r.Uint32())
		}
		// Layout: half d; u8 qs[32] (low 8 bits of idx); u8 signs[32]; u8 qh[8] (2 high
		// bits of group 4ib+l at bits 2l..2l+1 of qh[ib]); u8 scales[8].
		blk := make([]byte, 82)
		h := halfBits(d)
		copy(blk, h[:])
		for g, v := range idx {
			blk[2+g] = byte(v % 256)
			blk[34+g] = sign[g]
			blk[66+g/4] += byte(v/256) << (2 * (g % 4))
		}
		copy(blk[74:], scale[:])
		got := decodeOne(t, "IQ2_S", blk)
		for e := range 256 {
			g, j := e/8, e%8
			ib, l := g/4, g%4
			s := scale[ib] & 15
			if l >= 2 {
				s = scale[ib] >> 4
			}
			// db = d*(0.5+s)/4 with float32 rounding after each operation (ggml's order).
			db := float32(float32(d*(0.5+float32(s))) * 0.25)
			v := float32(db * float32(iq2sGrid[idx[g]][j]))
			if sign[g]&(1<<j) != 0 {
				v = -v
			}
			if got[e] != v {
				t.Fatalf("IQ2_S d=%v value %d (group %d idx %d) = %v, want %v", d, e, g, idx[g], got[e], v)
			}
		}
	}
}

// TestIQTablesMatchCorpus checks the generated tables against iq-tables.json.
func TestIQTablesMatchCorpus(t *testing.T) {
	dir := corpus.Dir(t, "quant")
	data, err := os.ReadFile(filepath.Join(dir, "iq-tables.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]json.RawMessage
	if err := json.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  string
		data any
	}{
		{"kvalues_iq4nl", kvaluesIQ4NL},
		{"ksigns_iq2xs", ksignsIQ2XS}, // arrays (not slices) of bytes marshal as numbers
		{"iq2_xxs_grid", iq2xxsGrid},
		{"iq2_xs_grid", iq2xsGrid},
		{"iq2_s_grid", iq2sGrid},
		{"iq3_xxs_grid", iq3xxsGrid},
		{"iq3_s_grid", iq3sGrid},
		{"iq1_s_grid", iq1sGrid},
		{"iq1s_delta", iq1sDelta},
	} {
		got, err := json.Marshal(c.data)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.Compact(&want, j[c.key]); err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("generated %s differs from iq-tables.json; run go generate", c.key)
		}
	}
}
