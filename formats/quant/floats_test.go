package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// minifloat describes a small float format for the test's reference decoder.
type minifloat struct {
	ebits, mbits int
	bias         int
	nan          func(c int) bool // codes that are NaN
	inf          func(c int) bool // codes that are ±Inf (IEEE-like formats)
}

// value decodes c by the textbook definition, with math.Pow: (-1)^s × 2^(1-bias) × 0.m for
// subnormals, (-1)^s × 2^(e-bias) × 1.m for normals.
func (f minifloat) value(c int) float64 {
	sign := 1.0
	if c>>(f.ebits+f.mbits)&1 == 1 {
		sign = -1
	}
	switch {
	case f.nan != nil && f.nan(c):
		return math.NaN()
	case f.inf != nil && f.inf(c):
		return math.Inf(int(sign))
	}
	e := c >> f.mbits & (1<<f.ebits - 1)
	frac := float64(c&(1<<f.mbits-1)) / math.Pow(2, float64(f.mbits))
	if e == 0 {
		return sign * math.Pow(2, float64(1-f.bias)) * frac
	}
	return sign * math.Pow(2, float64(e-f.bias)) * (1 + frac)
}

var f8Formats = map[string]minifloat{
	"F8_E4M3":     {4, 3, 7, func(c int) bool { return c&0x7F == 0x7F }, nil},
	"F8_E5M2":     {5, 2, 15, func(c int) bool { return c&0x7F > 0x7C }, func(c int) bool { return c&0x7F == 0x7C }},
	"F8_E4M3FNUZ": {4, 3, 8, func(c int) bool { return c == 0x80 }, nil},
	"F8_E5M2FNUZ": {5, 2, 16, func(c int) bool { return c == 0x80 }, nil},
}

// TestF8Exhaustive checks all 256 codes of each 8-bit float against the reference decoder.
func TestF8Exhaustive(t *testing.T) {
	for name, f := range f8Formats {
		src := make([]byte, 256)
		for c := range src {
			src[c] = byte(c)
		}
		got := decodeOne(t, name, src)
		for c := range 256 {
			want := f.value(c)
			if math.IsNaN(want) {
				if !isNaN32(got[c]) {
					t.Errorf("%s %#02x = %v, want NaN", name, c, got[c])
				}
				continue
			}
			if float64(got[c]) != want || math.Signbit(float64(got[c])) != math.Signbit(want) {
				t.Errorf("%s %#02x = %v, want %v", name, c, got[c], want)
			}
		}
	}
	// E8M0: an exponent only.
	src := make([]byte, 256)
	for c := range src {
		src[c] = byte(c)
	}
	got := decodeOne(t, "F8_E8M0", src)
	for c := range 255 {
		if want := math.Pow(2, float64(c-127)); float64(got[c]) != want {
			t.Errorf("F8_E8M0 %#02x = %v, want %v", c, got[c], want)
		}
	}
	if !isNaN32(got[255]) {
		t.Errorf("F8_E8M0 0xff = %v, want NaN", got[255])
	}
}

// TestF8Values checks values quoted by the OCP FP8 and PyTorch documentation.
func TestF8Values(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	negZero := float32(math.Copysign(0, -1))
	tests := []struct {
		name string
		code byte
		want float32
	}{
		{"F8_E4M3", 0x7E, 448}, {"F8_E4M3", 0xFE, -448}, {"F8_E4M3", 0x38, 1}, {"F8_E4M3", 0xB8, -1},
		{"F8_E4M3", 0x08, 1.0 / 64}, {"F8_E4M3", 0x01, 1.0 / 512}, {"F8_E4M3", 0x07, 7.0 / 512},
		{"F8_E4M3", 0x80, negZero}, {"F8_E4M3", 0x00, 0}, {"F8_E4M3", 0x7F, nan}, {"F8_E4M3", 0xFF, nan},
		{"F8_E4M3", 0x78, 256},
		{"F8_E5M2", 0x7B, 57344}, {"F8_E5M2", 0x7C, inf}, {"F8_E5M2", 0xFC, -inf}, {"F8_E5M2", 0x7D, nan},
		{"F8_E5M2", 0xFF, nan}, {"F8_E5M2", 0x3C, 1}, {"F8_E5M2", 0x01, 1.0 / 65536}, {"F8_E5M2", 0x80, negZero},
		{"F8_E8M0", 0x7F, 1}, {"F8_E8M0", 0x80, 2}, {"F8_E8M0", 0x00, float32(math.Ldexp(1, -127))},
		{"F8_E8M0", 0xFE, float32(math.Ldexp(1, 127))}, {"F8_E8M0", 0xFF, nan},
		{"F8_E4M3FNUZ", 0x80, nan}, {"F8_E4M3FNUZ", 0x7F, 240}, {"F8_E4M3FNUZ", 0xFF, -240},
		{"F8_E4M3FNUZ", 0x40, 1}, {"F8_E4M3FNUZ", 0x01, 1.0 / 1024}, {"F8_E4M3FNUZ", 0x00, 0},
		{"F8_E5M2FNUZ", 0x80, nan}, {"F8_E5M2FNUZ", 0x7F, 57344}, {"F8_E5M2FNUZ", 0xFF, -57344},
		{"F8_E5M2FNUZ", 0x40, 1}, {"F8_E5M2FNUZ", 0x01, 1.0 / 131072}, {"F8_E5M2FNUZ", 0x7C, 32768},
	}
	for _, tt := range tests {
		got := decodeOne(t, tt.name, []byte{tt.code})[0]
		if isNaN32(tt.want) {
			if !isNaN32(got) {
				t.Errorf("%s %#02x = %v, want NaN", tt.name, tt.code, got)
			}
			continue
		}
		if math.Float32bits(got) != math.Float32bits(tt.want) {
			t.Errorf("%s %#02x = %v, want %v", tt.name, tt.code, got, tt.want)
		}
	}
	// E4M3FN NaN bits are PyTorch's; E5M2 NaN keeps its payload like binary16.
	if got := math.Float32bits(decodeOne(t, "F8_E4M3", []byte{0xFF})[0]); got != 0xFFF00000 {
		t.Errorf("F8_E4M3 0xff bits = %#x, want 0xfff00000", got)
	}
	if got := math.Float32bits(decodeOne(t, "F8_E5M2", []byte{0x7D})[0]); got != 0x7FE00000 {
		t.Errorf("F8_E5M2 0x7d bits = %#x, want 0x7fe00000", got)
	}
}

func TestF4(t *testing.T) {
	e2m1 := minifloat{2, 1, 1, nil, nil}
	src := make([]byte, 256)
	for c := range src {
		src[c] = byte(c)
	}
	got := decodeOne(t, "F4", src)
	for c := range 256 {
		lo, hi := e2m1.value(c&15), e2m1.value(c>>4)
		if float64(got[2*c]) != lo || float64(got[2*c+1]) != hi {
			t.Errorf("F4 %#02x = %v, %v, want %v, %v (low nibble first)", c, got[2*c], got[2*c+1], lo, hi)
		}
	}
	want := []float32{0, 0.5, 1, 1.5, 2, 3, 4, 6}
	for i, w := range want {
		if got[2*i] != w || got[2*(i+8)] != -w || !math.Signbit(float64(got[2*(i+8)])) {
			t.Errorf("F4 nibble %d = %v / %v, want ±%v", i, got[2*i], got[2*(i+8)], w)
		}
	}
}

// TestF6 packs random 6-bit codes into a bit stream (element i at stream bits 6i..6i+5,
// stream bit p = bit p%8 of byte p/8) and decodes them.
func TestF6(t *testing.T) {
	formats := map[string]minifloat{"F6_E2M3": {2, 3, 1, nil, nil}, "F6_E3M2": {3, 2, 3, nil, nil}}
	r := rand.New(rand.NewPCG(9, 9))
	for name, f := range formats {
		const n = 4 * 64
		codes := make([]int, n)
		for i := range codes {
			codes[i] = i % 64 // every code, in shuffled order
		}
		r.Shuffle(n, func(i, j int) { codes[i], codes[j] = codes[j], codes[i] })
		src := make([]byte, n*6/8)
		for i, c := range codes {
			for k := range 6 {
				p := 6*i + k
				src[p/8] |= byte(c>>k&1) << (p % 8)
			}
		}
		got := decodeOne(t, name, src)
		for i, c := range codes {
			if want := f.value(c); float64(got[i]) != want || math.Signbit(float64(got[i])) != math.Signbit(want) {
				t.Errorf("%s element %d code %#02x = %v, want %v", name, i, c, got[i], want)
			}
		}
	}
	for _, tt := range []struct {
		name string
		code int
		want float32
	}{
		{"F6_E2M3", 0x1F, 7.5}, {"F6_E2M3", 0x3F, -7.5}, {"F6_E2M3", 0x01, 0.125}, {"F6_E2M3", 0x08, 1},
		{"F6_E3M2", 0x1F, 28}, {"F6_E3M2", 0x3F, -28}, {"F6_E3M2", 0x01, 0.0625}, {"F6_E3M2", 0x0C, 1},
	} {
		// The code as element 2 of a 3-byte group (bits 12..17).
		v := tt.code << 12
		got := decodeOne(t, tt.name, []byte{byte(v), byte(v >> 8), byte(v >> 16)})
		if got[2] != tt.want || got[0] != 0 || got[1] != 0 || got[3] != 0 {
			t.Errorf("%s code %#02x as element 2: %v, want %v", tt.name, tt.code, got, tt.want)
		}
	}
}

func TestF16BF16(t *testing.T) {
	src := make([]byte, 2*65536)
	for i := range 65536 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	got := decodeOne(t, "F16", src)
	for i := range 65536 {
		want := float16.Frombits(uint16(i)).Float32()
		if math.Float32bits(got[i]) != math.Float32bits(want) {
			t.Fatalf("F16 %#04x = %#x, want %#x", i, math.Float32bits(got[i]), math.Float32bits(want))
		}
	}
	for _, tt := range []struct {
		h    uint16
		want uint32
	}{
		{0x3C00, 0x3F800000}, {0xBC00, 0xBF800000}, {0x7BFF, math.Float32bits(65504)},
		{0x0001, math.Float32bits(float32(math.Ldexp(1, -24)))}, {0x8000, 0x80000000},
		{0x7C00, 0x7F800000}, {0xFC00, 0xFF800000}, {0x7E00, 0x7FC00000}, {0x7C01, 0x7FC02000},
	} {
		if got := math.Float32bits(got[tt.h]); got != tt.want {
			t.Errorf("F16 %#04x = %#08x, want %#08x", tt.h, got, tt.want)
		}
	}
	gotBF := decodeOne(t, "BF16", src)
	for i := range 65536 {
		if got, want := math.Float32bits(gotBF[i]), uint32(i)<<16; got != want {
			t.Fatalf("BF16 %#04x = %#08x, want %#08x", i, got, want)
		}
	}
}

func TestIntegersAndBool(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	for range 2000 {
		v := r.Uint64()
		le := binary.LittleEndian.AppendUint64(nil, v)
		for _, tt := range []struct {
			name string
			n    int
			want float32
		}{
			{"I8", 1, float32(int8(v))}, {"U8", 1, float32(uint8(v))},
			{"I16", 2, float32(int16(v))}, {"U16", 2, float32(uint16(v))},
			{"I32", 4, float32(int32(v))}, {"U32", 4, float32(uint32(v))},
			{"I64", 8, float32(int64(v))}, {"U64", 8, float32(v)},
			{"F32", 4, math.Float32frombits(uint32(v))}, {"F64", 8, float32(math.Float64frombits(v))},
		} {
			got := decodeOne(t, tt.name, le[:tt.n])[0]
			if math.Float32bits(got) != math.Float32bits(tt.want) && !(isNaN32(got) && isNaN32(tt.want)) {
				t.Fatalf("%s %#x = %v, want %v", tt.name, v, got, tt.want)
			}
		}
	}
	for _, tt := range []struct {
		name string
		src  []byte
		want []float32
	}{
		{"I64", binary.LittleEndian.AppendUint64(nil, 1<<62+1), []float32{1 << 62}},
		{"U64", binary.LittleEndian.AppendUint64(nil, math.MaxUint64), []float32{1 << 64}},
		{"I8", []byte{0x80, 0x7F}, []float32{-128, 127}},
		{"BOOL", []byte{0, 1, 2, 0xFF, 0}, []float32{0, 1, 1, 1, 0}},
	} {
		got := decodeOne(t, tt.name, tt.src)
		if !sameBits(got, tt.want) {
			t.Errorf("%s %x = %v, want %v", tt.name, tt.src, got, tt.want)
		}
	}
}

func TestU64ToF32(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	vals := []uint64{0, 1, 1 << 24, 1<<24 + 1, 1<<63 - 1, 1 << 63, 1<<63 + 1, 1<<63 + 1<<39, 1<<63 + 1<<39 + 1,
		1<<63 + 3<<39, 1<<64 - 1, 1<<64 - 1<<39, 1<<64 - 1<<40 - 1}
	for range 100000 {
		vals = append(vals, r.Uint64(), r.Uint64()>>r.IntN(64))
	}
	for _, v := range vals {
		if got, want := u64ToF32(v), float32(v); got != want {
			t.Fatalf("u64ToF32(%#x) = %v, want %v", v, got, want)
		}
	}
}
