// Package kernels multiplies weight matrices kept in their stored ggml type (the raw bytes
// of a GGUF tensor, typically memory-mapped) by float32 activation vectors, without
// dequantizing the weights first.
//
// A [Matrix] is a view of row-major weight bytes of one [formats.DType]. Activations are
// prepared once per input vector with [Prepare] (or [Activations.Set]): for the quantized
// weight types they are quantized the way llama.cpp's CPU backend quantizes them
// ("vec_dot_type"), and every matrix that reads the same input reuses them:
//
//	weight type                  activations     llama.cpp dot
//	Q4_0, Q5_0, Q8_0             Q8_0            ggml_vec_dot_q4_0_q8_0, ...
//	Q4_1, Q5_1                   Q8_1            ggml_vec_dot_q4_1_q8_1, ...
//	Q2_K, Q3_K, Q4_K, Q5_K, Q6_K Q8_K            ggml_vec_dot_q4_K_q8_K, ...
//	F32, F16, BF16               float32         (weights converted on the fly)
//	any other decodable type     float32         (a row at a time dequantized, then F32)
//
// [Matrix.MulVec] computes a range of rows of W·x, so that callers can split the rows over
// goroutines; [Matrix.MulMat] does the same for several activation vectors at once (prompt
// evaluation), reading each weight row once for four vectors.
//
// # Numerics
//
// The quantized dots follow llama.cpp's reference (non-SIMD) CPU path: the products of the
// integer quants are summed exactly in integers per block, and the float32 operations per
// block (scales, block minimums, the running sum) are the ones of ggml's
// ggml_vec_dot_*_generic functions, rounded one by one (never fused). For Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0 and Q2_K the float32 operations and their order are exactly ggml's. For Q3_K,
// Q4_K, Q5_K and Q6_K ggml's generic code keeps eight partial float sums per row (by element
// index modulo 8) and adds them at the end; here the block's integer sum is whole and each
// block adds one rounded term, which is at least as accurate and differs from ggml by the
// order of float32 additions only. Activation quantization is bit-identical to ggml's
// quantize_row_q8_0_ref, quantize_row_q8_1_ref and quantize_row_q8_K_ref for finite input
// (but for blocks so tiny that 1/d overflows, where ggml's float-to-int conversion is
// undefined and the quants here are clamped to ±127).
// (llama.cpp builds for AVX2 quantize Q8_0/Q8_1 with 127/amax and round-half-even instead of
// 1/(amax/127) and round-half-away; the two differ in a last-place tie now and then.)
//
// Non-finite input is not an error. A NaN or infinite weight scale makes the row's result
// NaN or infinite, as dequantizing would. An activation block holding a NaN or an infinity
// is given a NaN scale, so that every dot that reads it is NaN.
//
// # Speed
//
// The inner loops are pure Go. They multiply four quants at a time: four weight quants in
// the 16-bit lanes of a uint64 (masked out of the stored nibbles in place) times four
// activation quants packed into the lanes of an int64 in reverse order, so that the lane-3
// coefficient of the 64-bit product is the four-element dot product (see lanes.go);
// activations are packed that way once, in Prepare. MulMat takes the rows in tiles of
// about 16 KiB and runs each tile through each group of four vectors, so that weights and
// activations stay in the L1 cache, and its four-vector dots unpack each weight block once
// for the four. Each per-type dot is one function behind a function variable (dotQ4_0,
// dot4Q4_0, ...; see dispatch.go), which an assembly version can replace; the pure-Go
// version (dotQ4_0Go, ...) stays for the tests to compare with.
package kernels
