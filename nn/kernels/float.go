package kernels

import "math"

// Float dots: weights F32, F16 or BF16 read in place (F16 through a table, BF16 by a
// shift) times float32 activations. Like ggml_vec_dot_f32/f16's reference code, each
// product is rounded to float32 and the sum is kept in float64, here in four partial sums
// (elements i mod 4), added at the end and rounded to float32 once. (ggml converts the
// activations of F16 and BF16 matrices to F16/BF16 first; these kernels keep them float32.)

func dotF32Go(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:4*n]
	var s0, s1, s2, s3 float64
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 16; rw, rx, i = rw[16:], rx[4:], i+4 {
		b, v := (*[16]byte)(rw), (*[4]float32)(rx)
		s0 += float64(math.Float32frombits(le32(b[0:])) * v[0])
		s1 += float64(math.Float32frombits(le32(b[4:])) * v[1])
		s2 += float64(math.Float32frombits(le32(b[8:])) * v[2])
		s3 += float64(math.Float32frombits(le32(b[12:])) * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(math.Float32frombits(le32(w[4*i:])) * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

func dotF16Go(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:2*n]
	t := f16Table
	var s0, s1, s2, s3 float64
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 8; rw, rx, i = rw[8:], rx[4:], i+4 {
		b, v := (*[8]byte)(rw), (*[4]float32)(rx)
		s0 += float64(t[uint16(b[0])|uint16(b[1])<<8] * v[0])
		s1 += float64(t[uint16(b[2])|uint16(b[3])<<8] * v[1])
		s2 += float64(t[uint16(b[4])|uint16(b[5])<<8] * v[2])
		s3 += float64(t[uint16(b[6])|uint16(b[7])<<8] * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(t[uint16(w[2*i])|uint16(w[2*i+1])<<8] * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

// bf16 returns the value of the little-endian bfloat16 in b0, b1.
func bf16(b0, b1 byte) float32 { return math.Float32frombits(uint32(b0)<<16 | uint32(b1)<<24) }

func dotBF16Go(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:2*n]
	var s0, s1, s2, s3 float64
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 8; rw, rx, i = rw[8:], rx[4:], i+4 {
		b, v := (*[8]byte)(rw), (*[4]float32)(rx)
		s0 += float64(bf16(b[0], b[1]) * v[0])
		s1 += float64(bf16(b[2], b[3]) * v[1])
		s2 += float64(bf16(b[4], b[5]) * v[2])
		s3 += float64(bf16(b[6], b[7]) * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(bf16(w[2*i], w[2*i+1]) * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

// dotF32F32 is the fallback's dot of a dequantized row with the activations (as dotF32Go).
func dotF32F32(w, x []float32) float32 {
	n := len(x)
	w = w[:n]
	var s0, s1, s2, s3 float64
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 4; rw, rx, i = rw[4:], rx[4:], i+4 {
		a, v := (*[4]float32)(rw), (*[4]float32)(rx)
		s0 += float64(a[0] * v[0])
		s1 += float64(a[1] * v[1])
		s2 += float64(a[2] * v[2])
		s3 += float64(a[3] * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(w[i] * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

// acc4 adds the products of w and x to the four partial sums s the way dotF32F32 does
// (element i to s[i mod 4]; len(w) is a multiple of 4 except at the end of a row).
func acc4(s *[4]float64, w, x []float32) {
	n := len(w)
	x = x[:n]
	s0, s1, s2, s3 := s[0], s[1], s[2], s[3]
	i := 0
	for rw, rx := w, x; len(rx) >= 4 && len(rw) >= 4; rw, rx, i = rw[4:], rx[4:], i+4 {
		a, v := (*[4]float32)(rw), (*[4]float32)(rx)
		s0 += float64(a[0] * v[0])
		s1 += float64(a[1] * v[1])
		s2 += float64(a[2] * v[2])
		s3 += float64(a[3] * v[3])
	}
	for ; i < n; i++ {
		s0 += float64(w[i] * x[i])
	}
	*s = [4]float64{s0, s1, s2, s3}
}

// floatChunk is the number of weights a four-vector float dot converts at a time.
const floatChunk = 256

// dot4Float is the four-vector float dot: the weights are converted by decode (size
// bytes each) a chunk at a time into float32, and each chunk is added to the partial sums
// of each vector exactly as the single-vector dot adds it, so that both give the same bits.
func dot4Float(dst *[4]float32, w []byte, size int, decode func(dst []float32, src []byte), x0, x1, x2, x3 []float32) {
	n := len(x0)
	xs := [4][]float32{x0, x1[:n], x2[:n], x3[:n]}
	w = w[:size*n]
	var buf [floatChunk]float32
	var s [4][4]float64
	for c := 0; c < n; c += floatChunk {
		m := min(floatChunk, n-c)
		decode(buf[:m], w[size*c:size*(c+m)])
		for t, x := range xs {
			acc4(&s[t], buf[:m], x[c:c+m])
		}
	}
	for t := range s {
		dst[t] = float32((s[t][0] + s[t][1]) + (s[t][2] + s[t][3]))
	}
}

func decodeF32(dst []float32, src []byte) {
	for i, rs := 0, src; i < len(dst) && len(rs) >= 4; i, rs = i+1, rs[4:] {
		dst[i] = math.Float32frombits(le32(rs))
	}
}

func decodeF16(dst []float32, src []byte) {
	t := f16Table
	for i, rs := 0, src; i < len(dst) && len(rs) >= 2; i, rs = i+1, rs[2:] {
		dst[i] = t[uint16(rs[0])|uint16(rs[1])<<8]
	}
}

func decodeBF16(dst []float32, src []byte) {
	for i, rs := 0, src; i < len(dst) && len(rs) >= 2; i, rs = i+1, rs[2:] {
		dst[i] = bf16(rs[0], rs[1])
	}
}

func dot4F32Go(dst *[4]float32, w []byte, x0, x1, x2, x3 []float32) {
	dot4Float(dst, w, 4, decodeF32, x0, x1, x2, x3)
}

func dot4F16Go(dst *[4]float32, w []byte, x0, x1, x2, x3 []float32) {
	dot4Float(dst, w, 2, decodeF16, x0, x1, x2, x3)
}

func dot4BF16Go(dst *[4]float32, w []byte, x0, x1, x2, x3 []float32) {
	dot4Float(dst, w, 2, decodeBF16, x0, x1, x2, x3)
}
