//go:build arm64 && !purego

#include "textflag.h"

// NEON kernels of nn/kernels for arm64 (hand-written Go assembly; see neon_arm64.go).
//
// The Go assembler lacks several of the NEON instructions used here; the macros below emit
// them as WORDs. Their arguments are register NUMBERS (0..31, the n of Vn); each macro's
// comment gives the instruction in ARM syntax. Every quantized kernel body is a macro
// instantiated twice: with DOT as SDOT (ARMv8.2 dot product, FEAT_DotProd) and with DOT as
// SMULL/SMULL2/SADALP (plain ARMv8.0 Advanced SIMD). DOT(acc, x, y) adds to each int32 lane
// k of acc the four products x[4k+i]·y[4k+i] (SDOT) or the pairs of products 2k, 2k+1 and
// 2k+8, 2k+9 (the SMULL form); either way the sum of the four lanes grows by Σ x[i]·y[i]
// over the 16 signed bytes, exactly. The SMULL form uses V30 and V31 as temporaries, which
// no quantized kernel uses otherwise. (The encodings were checked by disassembling the
// built test binary with llvm-objdump --mattr=+dotprod.)

// sdot vd.4s, vn.16b, vm.16b
#define SDOT(d, n, m) WORD $(0x4e809400|(m)<<16|(n)<<5|(d))
// smull vd.8h, vn.8b, vm.8b
#define SMULL8(d, n, m) WORD $(0x0e20c000|(m)<<16|(n)<<5|(d))
// smull2 vd.8h, vn.16b, vm.16b
#define SMULL8HI(d, n, m) WORD $(0x4e20c000|(m)<<16|(n)<<5|(d))
// sadalp vd.4s, vn.8h
#define SADALP(d, n) WORD $(0x4e606800|(n)<<5|(d))
// smull vd.4s, vn.4h, vm.4h
#define SMULL16(d, n, m) WORD $(0x0e60c000|(m)<<16|(n)<<5|(d))
// smlal2 vd.4s, vn.8h, vm.8h
#define SMLAL16HI(d, n, m) WORD $(0x4e608000|(m)<<16|(n)<<5|(d))
// mul vd.4s, vn.4s, vm.4s
#define MUL4(d, n, m) WORD $(0x4ea09c00|(m)<<16|(n)<<5|(d))
// mla vd.4s, vn.4s, vm.4s
#define MLA4(d, n, m) WORD $(0x4ea09400|(m)<<16|(n)<<5|(d))
// mla vd.4s, vn.4s, vm.s[i]
#define MLAE(d, n, m, i) WORD $(0x6f800000|((i)&1)<<21|(m)<<16|((i)>>1)<<11|(n)<<5|(d))
// sxtl vd.8h, vn.8b (sshll #0)
#define SXTL8(d, n) WORD $(0x0f08a400|(n)<<5|(d))
// sxtl vd.4s, vn.4h (sshll #0)
#define SXTL16(d, n) WORD $(0x0f10a400|(n)<<5|(d))
// sxtl2 vd.4s, vn.8h (sshll2 #0)
#define SXTL16HI(d, n) WORD $(0x4f10a400|(n)<<5|(d))
// scvtf vd.4s, vn.4s
#define SCVTF4(d, n) WORD $(0x4e21d800|(n)<<5|(d))
// scvtf sd, sn
#define SCVTFS(d, n) WORD $(0x5e21d800|(n)<<5|(d))
// fcvtl vd.4s, vn.4h
#define FCVTL4(d, n) WORD $(0x0e217800|(n)<<5|(d))
// fadd vd.4s, vn.4s, vm.4s
#define FADD4(d, n, m) WORD $(0x4e20d400|(m)<<16|(n)<<5|(d))
// fsub vd.4s, vn.4s, vm.4s
#define FSUB4(d, n, m) WORD $(0x4ea0d400|(m)<<16|(n)<<5|(d))
// fmul vd.4s, vn.4s, vm.4s
#define FMUL4(d, n, m) WORD $(0x6e20dc00|(m)<<16|(n)<<5|(d))
// fmls vd.4s, vn.4s, vm.4s
#define FMLS4(d, n, m) WORD $(0x4ea0cc00|(m)<<16|(n)<<5|(d))
// fmul vd.4s, vn.4s, vm.s[i]
#define FMULE(d, n, m, i) WORD $(0x4f809000|((i)&1)<<21|(m)<<16|((i)>>1)<<11|(n)<<5|(d))
// fmla vd.4s, vn.4s, vm.s[i]
#define FMLAE(d, n, m, i) WORD $(0x4f801000|((i)&1)<<21|(m)<<16|((i)>>1)<<11|(n)<<5|(d))
// faddp vd.4s, vn.4s, vm.4s
#define FADDP4(d, n, m) WORD $(0x6e20d400|(m)<<16|(n)<<5|(d))
// movi vd.2d, #0
#define ZERO(d) WORD $(0x6f00e400|(d))
// faddp sd, vn.2s
#define FADDPS(d, n) WORD $(0x7e30d800|(n)<<5|(d))

// The two forms of DOT.
#define DOT_SDOT(acc, x, y) SDOT(acc, x, y)
#define DOT_SMULL(acc, x, y) SMULL8(30, x, y); SMULL8HI(31, x, y); SADALP(acc, 30); SADALP(acc, 31)

// Offsets in the activation blocks (asserted by TestNEONOffsets).
#define Q8_D 64     // q8Block.d
#define Q8_QS 76    // q8Block.qs
#define Q8_SIZE 112 // unsafe.Sizeof(q8Block{})
#define QK_D 512    // q8KBlock.d
#define QK_BSUMS 516
#define QK_QS 548
#define QK_SIZE 808

// ---- F32 ----

// func dotF32NEON(w *byte, x *float32, n int) float32
// Σ w[i]·x[i] in float32 with FMLA: 32 lanes of partial sums (V0..V7), added pairwise at
// the end, then the last n mod 4 products.
TEXT ·dotF32NEON(SB), NOSPLIT, $0-28
	MOVD w+0(FP), R0
	MOVD x+8(FP), R1
	MOVD n+16(FP), R2
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V4.B16, V4.B16, V4.B16
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	VEOR V7.B16, V7.B16, V7.B16
	CMP  $32, R2
	BLT  f32loop4

f32loop32:
	VLD1.P 64(R0), [V16.S4, V17.S4, V18.S4, V19.S4]
	VLD1.P 64(R1), [V24.S4, V25.S4, V26.S4, V27.S4]
	VLD1.P 64(R0), [V20.S4, V21.S4, V22.S4, V23.S4]
	VLD1.P 64(R1), [V28.S4, V29.S4, V30.S4, V31.S4]
	VFMLA  V16.S4, V24.S4, V0.S4
	VFMLA  V17.S4, V25.S4, V1.S4
	VFMLA  V18.S4, V26.S4, V2.S4
	VFMLA  V19.S4, V27.S4, V3.S4
	VFMLA  V20.S4, V28.S4, V4.S4
	VFMLA  V21.S4, V29.S4, V5.S4
	VFMLA  V22.S4, V30.S4, V6.S4
	VFMLA  V23.S4, V31.S4, V7.S4
	SUB    $32, R2
	CMP    $32, R2
	BGE    f32loop32

f32loop4:
	CMP    $4, R2
	BLT    f32reduce
	VLD1.P 16(R0), [V16.S4]
	VLD1.P 16(R1), [V24.S4]
	VFMLA  V16.S4, V24.S4, V0.S4
	SUB    $4, R2
	B      f32loop4

f32reduce:
	FADD4(0, 0, 1)
	FADD4(2, 2, 3)
	FADD4(4, 4, 5)
	FADD4(6, 6, 7)
	FADD4(0, 0, 2)
	FADD4(4, 4, 6)
	FADD4(0, 0, 4)
	FADDP4(0, 0, 0)
	FADDPS(0, 0)
	CBZ    R2, f32done

f32tail:
	FMOVS  (R0), F16
	FMOVS  (R1), F17
	ADD    $4, R0
	ADD    $4, R1
	FMADDS F16, F0, F17, F0
	SUBS   $1, R2
	BNE    f32tail

f32done:
	FMOVS F0, ret+24(FP)
	RET

// func dot4F32NEON(dst *[4]float32, w *byte, x0, x1, x2, x3 *float32, n int)
// dotF32NEON for four vectors: 16 lanes per vector (vector t in V4t..V4t+3), each weight
// load used four times.
TEXT ·dot4F32NEON(SB), NOSPLIT, $0-56
	MOVD dst+0(FP), R9
	MOVD w+8(FP), R0
	MOVD x0+16(FP), R1
	MOVD x1+24(FP), R2
	MOVD x2+32(FP), R3
	MOVD x3+40(FP), R4
	MOVD n+48(FP), R5
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V4.B16, V4.B16, V4.B16
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	VEOR V7.B16, V7.B16, V7.B16
	VEOR V8.B16, V8.B16, V8.B16
	VEOR V9.B16, V9.B16, V9.B16
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16
	VEOR V12.B16, V12.B16, V12.B16
	VEOR V13.B16, V13.B16, V13.B16
	VEOR V14.B16, V14.B16, V14.B16
	VEOR V15.B16, V15.B16, V15.B16
	CMP  $16, R5
	BLT  f4loop4

f4loop16:
	VLD1.P 64(R0), [V16.S4, V17.S4, V18.S4, V19.S4]
	VLD1.P 64(R1), [V20.S4, V21.S4, V22.S4, V23.S4]
	VLD1.P 64(R2), [V24.S4, V25.S4, V26.S4, V27.S4]
	VFMLA  V16.S4, V20.S4, V0.S4
	VFMLA  V17.S4, V21.S4, V1.S4
	VFMLA  V18.S4, V22.S4, V2.S4
	VFMLA  V19.S4, V23.S4, V3.S4
	VLD1.P 64(R3), [V20.S4, V21.S4, V22.S4, V23.S4]
	VFMLA  V16.S4, V24.S4, V4.S4
	VFMLA  V17.S4, V25.S4, V5.S4
	VFMLA  V18.S4, V26.S4, V6.S4
	VFMLA  V19.S4, V27.S4, V7.S4
	VLD1.P 64(R4), [V24.S4, V25.S4, V26.S4, V27.S4]
	VFMLA  V16.S4, V20.S4, V8.S4
	VFMLA  V17.S4, V21.S4, V9.S4
	VFMLA  V18.S4, V22.S4, V10.S4
	VFMLA  V19.S4, V23.S4, V11.S4
	VFMLA  V16.S4, V24.S4, V12.S4
	VFMLA  V17.S4, V25.S4, V13.S4
	VFMLA  V18.S4, V26.S4, V14.S4
	VFMLA  V19.S4, V27.S4, V15.S4
	SUB    $16, R5
	CMP    $16, R5
	BGE    f4loop16

f4loop4:
	CMP    $4, R5
	BLT    f4reduce
	VLD1.P 16(R0), [V16.S4]
	VLD1.P 16(R1), [V20.S4]
	VLD1.P 16(R2), [V21.S4]
	VLD1.P 16(R3), [V22.S4]
	VLD1.P 16(R4), [V23.S4]
	VFMLA  V16.S4, V20.S4, V0.S4
	VFMLA  V16.S4, V21.S4, V4.S4
	VFMLA  V16.S4, V22.S4, V8.S4
	VFMLA  V16.S4, V23.S4, V12.S4
	SUB    $4, R5
	B      f4loop4

f4reduce:
	FADD4(0, 0, 1)
	FADD4(2, 2, 3)
	FADD4(0, 0, 2)
	FADD4(4, 4, 5)
	FADD4(6, 6, 7)
	FADD4(4, 4, 6)
	FADD4(8, 8, 9)
	FADD4(10, 10, 11)
	FADD4(8, 8, 10)
	FADD4(12, 12, 13)
	FADD4(14, 14, 15)
	FADD4(12, 12, 14)
	FADDP4(0, 0, 4)
	FADDP4(8, 8, 12)
	FADDP4(0, 0, 8) // lane t: vector t
	CBZ R5, f4done

f4tail:
	FMOVS (R0), F16
	ADD   $4, R0
	VLD1  (R1), V20.S[0]
	VLD1  (R2), V20.S[1]
	VLD1  (R3), V20.S[2]
	VLD1  (R4), V20.S[3]
	ADD   $4, R1
	ADD   $4, R2
	ADD   $4, R3
	ADD   $4, R4
	FMLAE(0, 20, 16, 0)
	SUBS  $1, R5
	BNE   f4tail

f4done:
	VST1 [V0.S4], (R9)
	RET

// ---- Q8_0 and Q4_0 (Q8_0 activations) ----
//
// Per block: the integer sum Σ q·a (exact, int32), converted to float32 and multiplied
// with d = dx·dy (rounded to float32) into float32 partial sums (FMLA, fused). The
// single-row dots take four blocks at a time, the integer sums of block b in lane b; the
// four-row dots take one weight block at a time, row t in lane t.

// Loads the scale and quants of weight block b (in lane b of V12 as binary16, quants in
// V(2b), V(2b+1)) and activation block b (d in lane b of V13, quants in V16+2b, V17+2b),
// then advances R0 and R1 by one block. Q8_0: 34-byte blocks {half d; int8 qs[32]}.
#define LOADQ8_0(b, w0, w1, a0, a1) \
	VLD1 (R0), V12.H[b] \
	ADD  $2, R0, R4 \
	VLD1 (R4), [w0.B16, w1.B16] \
	ADD  $Q8_D, R1, R5 \
	VLD1 (R5), V13.S[b] \
	ADD  $Q8_QS, R1, R5 \
	VLD1 (R5), [a0.B16, a1.B16] \
	ADD  $34, R0 \
	ADD  $Q8_SIZE, R1

// Q4_0: 18-byte blocks {half d; u8 qs[16]}, element j the low nibble of qs[j], j+16 the
// high one, the weight q-8: low nibbles to w0, high to w1, each minus 8 (V27 = 8s, V28 = 15s).
#define LOADQ4_0(b, w0, w1, a0, a1) \
	VLD1   (R0), V12.H[b] \
	ADD    $2, R0, R4 \
	VLD1   (R4), [w1.B16] \
	ADD    $Q8_D, R1, R5 \
	VLD1   (R5), V13.S[b] \
	ADD    $Q8_QS, R1, R5 \
	VLD1   (R5), [a0.B16, a1.B16] \
	VAND   V28.B16, w1.B16, w0.B16 \
	VUSHR  $4, w1.B16, w1.B16 \
	VSUB   V27.B16, w0.B16, w0.B16 \
	VSUB   V27.B16, w1.B16, w1.B16 \
	ADD    $18, R0 \
	ADD    $Q8_SIZE, R1

// func dotQ8_0SDOT(w *byte, a *q8Block, n int) float32 (and the other dots of this form)
// Four blocks at a time (integer sums in V8..V11, reduced to the lanes of V8, float partial
// sums in V24), then one at a time (scalar, F26).
#define DOTQ8(name, LOAD) \
TEXT name(SB), NOSPLIT, $0-28 \
	MOVD  w+0(FP), R0 \
	MOVD  a+8(FP), R1 \
	MOVD  n+16(FP), R2 \
	VMOVI $15, V28.B16 \
	VMOVI $8, V27.B16 \
	VEOR  V24.B16, V24.B16, V24.B16 \
	VEOR  V26.B16, V26.B16, V26.B16 \
	CMP   $4, R2 \
	BLT   tail \
loop4: \
	LOAD(0, V0, V1, V16, V17) \
	LOAD(1, V2, V3, V18, V19) \
	LOAD(2, V4, V5, V20, V21) \
	LOAD(3, V6, V7, V22, V23) \
	VEOR  V8.B16, V8.B16, V8.B16 \
	VEOR  V9.B16, V9.B16, V9.B16 \
	VEOR  V10.B16, V10.B16, V10.B16 \
	VEOR  V11.B16, V11.B16, V11.B16 \
	DOT(8, 0, 16) \
	DOT(8, 1, 17) \
	DOT(9, 2, 18) \
	DOT(9, 3, 19) \
	DOT(10, 4, 20) \
	DOT(10, 5, 21) \
	DOT(11, 6, 22) \
	DOT(11, 7, 23) \
	VADDP V9.S4, V8.S4, V8.S4 \
	VADDP V11.S4, V10.S4, V10.S4 \
	VADDP V10.S4, V8.S4, V8.S4 \
	SCVTF4(8, 8) \
	FCVTL4(12, 12) \
	FMUL4(12, 12, 13) \
	VFMLA V8.S4, V12.S4, V24.S4 \
	SUB   $4, R2 \
	CMP   $4, R2 \
	BGE   loop4 \
tail: \
	CBZ   R2, done \
loop1: \
	LOAD(0, V0, V1, V16, V17) \
	VEOR  V8.B16, V8.B16, V8.B16 \
	DOT(8, 0, 16) \
	DOT(8, 1, 17) \
	VADDV V8.S4, V8 \
	SCVTFS(8, 8) \
	FCVTL4(12, 12) \
	FMULS F13, F12, F12 \
	FMADDS F12, F26, F8, F26 \
	SUBS  $1, R2 \
	BNE   loop1 \
done: \
	FADDP4(24, 24, 24) \
	FADDPS(24, 24) \
	FADDS F24, F26, F0 \
	FMOVS F0, ret+24(FP) \
	RET

// func dot4Q8_0SDOT(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8Block, n int) (and the
// other four-row dots of this form). One weight block (scale in F12, quants V0, V1) per
// iteration; row t's activation quants in V16+2t, V17+2t, its d in lane t of V13.
#define LOAD4Q8_0 \
	MOVHU  (R0), R6 \
	FMOVS  R6, F12 \
	FCVTHS F12, F12 \
	ADD    $2, R0, R7 \
	VLD1   (R7), [V0.B16, V1.B16] \
	ADD    $34, R0

#define LOAD4Q4_0 \
	MOVHU  (R0), R6 \
	FMOVS  R6, F12 \
	FCVTHS F12, F12 \
	ADD    $2, R0, R7 \
	VLD1   (R7), [V1.B16] \
	VAND   V28.B16, V1.B16, V0.B16 \
	VUSHR  $4, V1.B16, V1.B16 \
	VSUB   V27.B16, V0.B16, V0.B16 \
	VSUB   V27.B16, V1.B16, V1.B16 \
	ADD    $18, R0

#define LOADA4(r, b, a0, a1) \
	ADD  $Q8_QS, r, R7 \
	VLD1 (R7), [a0.B16, a1.B16] \
	ADD  $Q8_D, r, R7 \
	VLD1 (R7), V13.S[b] \
	ADD  $Q8_SIZE, r

#define DOT4Q8(name, LOAD) \
TEXT name(SB), NOSPLIT, $0-56 \
	MOVD  dst+0(FP), R9 \
	MOVD  w+8(FP), R0 \
	MOVD  a0+16(FP), R1 \
	MOVD  a1+24(FP), R2 \
	MOVD  a2+32(FP), R3 \
	MOVD  a3+40(FP), R4 \
	MOVD  n+48(FP), R5 \
	VMOVI $15, V28.B16 \
	VMOVI $8, V27.B16 \
	VEOR  V24.B16, V24.B16, V24.B16 \
	CBZ   R5, done \
loop: \
	LOAD \
	LOADA4(R1, 0, V16, V17) \
	LOADA4(R2, 1, V18, V19) \
	LOADA4(R3, 2, V20, V21) \
	LOADA4(R4, 3, V22, V23) \
	VEOR  V8.B16, V8.B16, V8.B16 \
	VEOR  V9.B16, V9.B16, V9.B16 \
	VEOR  V10.B16, V10.B16, V10.B16 \
	VEOR  V11.B16, V11.B16, V11.B16 \
	DOT(8, 0, 16) \
	DOT(8, 1, 17) \
	DOT(9, 0, 18) \
	DOT(9, 1, 19) \
	DOT(10, 0, 20) \
	DOT(10, 1, 21) \
	DOT(11, 0, 22) \
	DOT(11, 1, 23) \
	VADDP V9.S4, V8.S4, V8.S4 \
	VADDP V11.S4, V10.S4, V10.S4 \
	VADDP V10.S4, V8.S4, V8.S4 \
	SCVTF4(8, 8) \
	FMULE(13, 13, 12, 0) \
	VFMLA V8.S4, V13.S4, V24.S4 \
	SUBS  $1, R5 \
	BNE   loop \
done: \
	VST1  [V24.S4], (R9) \
	RET

#define DOT DOT_SDOT
DOTQ8(·dotQ8_0SDOT, LOADQ8_0)
DOTQ8(·dotQ4_0SDOT, LOADQ4_0)
DOT4Q8(·dot4Q8_0SDOT, LOAD4Q8_0)
DOT4Q8(·dot4Q4_0SDOT, LOAD4Q4_0)
#undef DOT
#define DOT DOT_SMULL
DOTQ8(·dotQ8_0NEON, LOADQ8_0)
DOTQ8(·dotQ4_0NEON, LOADQ4_0)
DOT4Q8(·dot4Q8_0NEON, LOAD4Q8_0)
DOT4Q8(·dot4Q4_0NEON, LOAD4Q4_0)
#undef DOT

// ---- Q4_K and Q6_K (Q8_K activations) ----

// The eight 6-bit scales (bytes of R9) and mins (bytes of R12) of the Q4_K block at R0
// (ggml's get_scale_min_k4, as scalesK4), then the scales as int32 in V22 (sub-blocks
// 0..3) and V23 (4..7) and the mins as int16 in V21.
#define SCALESK4 \
	MOVWU  4(R0), R6 \
	MOVWU  8(R0), R7 \
	MOVWU  12(R0), R8 \
	ANDW   $0x3f3f3f3f, R6, R9 \
	ANDW   $0x0f0f0f0f, R8, R10 \
	LSRW   $6, R6, R11 \
	ANDW   $0x03030303, R11, R11 \
	ORRW   R11<<4, R10, R10 \
	ANDW   $0x3f3f3f3f, R7, R12 \
	LSRW   $4, R8, R13 \
	ANDW   $0x0f0f0f0f, R13, R13 \
	LSRW   $6, R7, R14 \
	ANDW   $0x03030303, R14, R14 \
	ORRW   R14<<4, R13, R13 \
	ORR    R10<<32, R9, R9 \
	ORR    R13<<32, R12, R12 \
	FMOVD  R9, F20 \
	FMOVD  R12, F21 \
	VUXTL  V20.B8, V20.H8 \
	VUXTL  V20.H4, V22.S4 \
	VUXTL2 V20.H8, V23.S4 \
	VUXTL  V21.B8, V21.H8

// Into lanes of V(d): m_j·(bsums[2j]+bsums[2j+1]) summed over j (the Q4_K mins part, in
// int32) for the activation block at r; uses V(t), V(t+1).
#define MINSK4(r, d, t, tv0, tv1) \
	ADD   $QK_BSUMS, r, R14 \
	VLD1  (R14), [tv0.H8, tv1.H8] \
	VADDP tv1.H8, tv0.H8, tv0.H8 \
	SMULL16(d, 21, t) \
	SMLAL16HI(d, 21, t)

// func dotQ4_KSDOT(w *byte, a *q8KBlock, n int) float32
// Per block: the eight sub-block sums (V8..V15, SDOT on nibbles masked with V28 = 15s)
// reduced pairwise into V8 (sub-blocks 0..3) and V12 (4..7), times the scales, added into
// isum; the mins part summ; then F26 += (dx·dy)·isum, F27 += (dmin·dy)·summ, fused.
#define DOTQ4K(name) \
TEXT name(SB), NOSPLIT, $0-28 \
	MOVD  w+0(FP), R0 \
	MOVD  a+8(FP), R1 \
	MOVD  n+16(FP), R2 \
	VMOVI $15, V28.B16 \
	VEOR  V26.B16, V26.B16, V26.B16 \
	VEOR  V27.B16, V27.B16, V27.B16 \
	CBZ   R2, done \
loop: \
	SCALESK4 \
	MINSK4(R1, 25, 24, V24, V25) \
	VADDV V25.S4, V25 \
	ADD   $16, R0, R4 \
	ADD   $QK_QS, R1, R5 \
	VEOR  V8.B16, V8.B16, V8.B16 \
	VEOR  V9.B16, V9.B16, V9.B16 \
	VEOR  V10.B16, V10.B16, V10.B16 \
	VEOR  V11.B16, V11.B16, V11.B16 \
	VEOR  V12.B16, V12.B16, V12.B16 \
	VEOR  V13.B16, V13.B16, V13.B16 \
	VEOR  V14.B16, V14.B16, V14.B16 \
	VEOR  V15.B16, V15.B16, V15.B16 \
	Q4KPART(8, 9) \
	Q4KPART(10, 11) \
	Q4KPART(12, 13) \
	Q4KPART(14, 15) \
	VADDP V9.S4, V8.S4, V8.S4 \
	VADDP V11.S4, V10.S4, V10.S4 \
	VADDP V10.S4, V8.S4, V8.S4 \
	VADDP V13.S4, V12.S4, V12.S4 \
	VADDP V15.S4, V14.S4, V14.S4 \
	VADDP V14.S4, V12.S4, V12.S4 \
	MUL4(8, 8, 22) \
	MLA4(8, 12, 23) \
	VADDV V8.S4, V8 \
	SCVTFS(8, 8) \
	SCVTFS(25, 25) \
	MOVHU  (R0), R6 \
	FMOVS  R6, F0 \
	FCVTHS F0, F0 \
	MOVHU  2(R0), R7 \
	FMOVS  R7, F1 \
	FCVTHS F1, F1 \
	FMOVS  QK_D(R1), F2 \
	FMULS  F2, F0, F0 \
	FMULS  F2, F1, F1 \
	FMADDS F8, F26, F0, F26 \
	FMADDS F25, F27, F1, F27 \
	ADD   $144, R0 \
	ADD   $QK_SIZE, R1 \
	SUBS  $1, R2 \
	BNE   loop \
done: \
	FSUBS F27, F26, F0 \
	FMOVS F0, ret+24(FP) \
	RET

// 64 elements of a Q4_K block: 32 qs bytes at R4 (low nibbles sub-block 2p into acc lo,
// high nibbles sub-block 2p+1 into acc hi), 64 activation quants at R5.
#define Q4KPART(lo, hi) \
	VLD1.P 32(R4), [V0.B16, V1.B16] \
	VLD1.P 64(R5), [V16.B16, V17.B16, V18.B16, V19.B16] \
	VAND   V28.B16, V0.B16, V2.B16 \
	VAND   V28.B16, V1.B16, V3.B16 \
	VUSHR  $4, V0.B16, V0.B16 \
	VUSHR  $4, V1.B16, V1.B16 \
	DOT(lo, 2, 16) \
	DOT(lo, 3, 17) \
	DOT(hi, 0, 18) \
	DOT(hi, 1, 19)

// func dot4Q4_KSDOT(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8KBlock, n int)
// Per block and 64 elements (p = 0..3): the quants unpacked once (V0..V3); for row t the
// two sub-block sums (V8+2t, V9+2t) times their scales (lanes l0, l1 of V(sv)) added into
// isum_t (V4+t). Then the rows' isum and summ in lanes (V4, V8), and the float partial
// sums V29 -= (dmin·dy)·summ - (dx·dy)·isum (the block term, rounded once, fused).
// (SCALESK4 uses R6..R14, so dst is in R20.)
#define ROWQ4K(qp, acts, a0, a1, a2, a3, s0, s1, i, sv, l0, l1) \
	VLD1.P 64(qp), [a0.B16, a1.B16, a2.B16, a3.B16] \
	ZERO(s0) \
	ZERO(s1) \
	DOT(s0, 2, acts) \
	DOT(s0, 3, acts+1) \
	DOT(s1, 0, acts+2) \
	DOT(s1, 1, acts+3) \
	MLAE(i, s0, sv, l0) \
	MLAE(i, s1, sv, l1)

#define PARTQ4K(sv, l0, l1) \
	VLD1.P 32(R6), [V0.B16, V1.B16] \
	VAND   V28.B16, V0.B16, V2.B16 \
	VAND   V28.B16, V1.B16, V3.B16 \
	VUSHR  $4, V0.B16, V0.B16 \
	VUSHR  $4, V1.B16, V1.B16 \
	ROWQ4K(R10, 16, V16, V17, V18, V19, 8, 9, 4, sv, l0, l1) \
	ROWQ4K(R11, 24, V24, V25, V26, V27, 10, 11, 5, sv, l0, l1) \
	ROWQ4K(R12, 16, V16, V17, V18, V19, 12, 13, 6, sv, l0, l1) \
	ROWQ4K(R13, 24, V24, V25, V26, V27, 14, 15, 7, sv, l0, l1)

#define DOT4Q4K(name) \
TEXT name(SB), NOSPLIT, $0-56 \
	MOVD  dst+0(FP), R20 \
	MOVD  w+8(FP), R0 \
	MOVD  a0+16(FP), R1 \
	MOVD  a1+24(FP), R2 \
	MOVD  a2+32(FP), R3 \
	MOVD  a3+40(FP), R4 \
	MOVD  n+48(FP), R5 \
	VMOVI $15, V28.B16 \
	ZERO(29) \
	CBZ   R5, done \
loop: \
	SCALESK4 \
	ZERO(4) \
	ZERO(5) \
	ZERO(6) \
	ZERO(7) \
	ADD   $16, R0, R6 \
	ADD   $QK_QS, R1, R10 \
	ADD   $QK_QS, R2, R11 \
	ADD   $QK_QS, R3, R12 \
	ADD   $QK_QS, R4, R13 \
	PARTQ4K(22, 0, 1) \
	PARTQ4K(22, 2, 3) \
	PARTQ4K(23, 0, 1) \
	PARTQ4K(23, 2, 3) \
	MINSK4(R1, 8, 16, V16, V17) \
	MINSK4(R2, 9, 24, V24, V25) \
	MINSK4(R3, 10, 18, V18, V19) \
	MINSK4(R4, 11, 26, V26, V27) \
	VADDP V5.S4, V4.S4, V4.S4 \
	VADDP V7.S4, V6.S4, V6.S4 \
	VADDP V6.S4, V4.S4, V4.S4 \
	VADDP V9.S4, V8.S4, V8.S4 \
	VADDP V11.S4, V10.S4, V10.S4 \
	VADDP V10.S4, V8.S4, V8.S4 \
	SCVTF4(4, 4) \
	SCVTF4(8, 8) \
	ADD   $QK_D, R1, R14 \
	VLD1  (R14), V12.S[0] \
	ADD   $QK_D, R2, R14 \
	VLD1  (R14), V12.S[1] \
	ADD   $QK_D, R3, R14 \
	VLD1  (R14), V12.S[2] \
	ADD   $QK_D, R4, R14 \
	VLD1  (R14), V12.S[3] \
	MOVHU  (R0), R14 \
	FMOVS  R14, F0 \
	FCVTHS F0, F0 \
	MOVHU  2(R0), R15 \
	FMOVS  R15, F1 \
	FCVTHS F1, F1 \
	FMULE(13, 12, 0, 0) \
	FMULE(14, 12, 1, 0) \
	FMUL4(15, 8, 14) \
	FMLS4(15, 4, 13) \
	FSUB4(29, 29, 15) \
	ADD   $144, R0 \
	ADD   $QK_SIZE, R1 \
	ADD   $QK_SIZE, R2 \
	ADD   $QK_SIZE, R3 \
	ADD   $QK_SIZE, R4 \
	SUBS  $1, R5 \
	BNE   loop \
done: \
	VST1  [V29.S4], (R20) \
	RET

// Q6_K: 210-byte blocks {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}. Per half n of the
// block (128 elements) the eight groups of 16 quants (see dotQ6_KGo), each
// (4 low bits | 2 high bits << 4) - 32, from ql (64 bytes at R4) and qh (32 bytes at R6);
// constants V24 = 15s, V25 = 0x30s, V26 = 32s. Quant k of the half is put in V(q) from
// low nibbles or high nibbles (hi=1) of V(l) and the bits of V(h) selected by the shift.
#define Q6LO(q, l, h, sh) \
	VAND  V24.B16, l.B16, q.B16 \
	VSHL  $sh, h.B16, V7.B16 \
	VAND  V25.B16, V7.B16, V7.B16 \
	VORR  V7.B16, q.B16, q.B16 \
	VSUB  V26.B16, q.B16, q.B16

#define Q6HI(q, l, h) \
	VUSHR $4, l.B16, q.B16 \
	VAND  V25.B16, h.B16, V7.B16 \
	VORR  V7.B16, q.B16, q.B16 \
	VSUB  V26.B16, q.B16, q.B16

#define Q6HI2(q, l, h) \
	VUSHR $4, l.B16, q.B16 \
	VUSHR $2, h.B16, V7.B16 \
	VAND  V25.B16, V7.B16, V7.B16 \
	VORR  V7.B16, q.B16, q.B16 \
	VSUB  V26.B16, q.B16, q.B16

// func dotQ6_KSDOT(w *byte, a *q8KBlock, n int) float32
// Per half: sub-block sums V8..V15 (one DOT each), reduced into V8 (sub-blocks 0..3 of the
// half) and V12 (4..7), times the int8 scales (sign-extended, V17, V18), into V28; per
// block F27 += (d·dy)·isum, fused.
#define HALFQ6 \
	VLD1.P 64(R4), [V0.B16, V1.B16, V2.B16, V3.B16] \
	VLD1.P 32(R6), [V4.B16, V5.B16] \
	VLD1.P 64(R5), [V16.B16, V17.B16, V18.B16, V19.B16] \
	VLD1.P 64(R5), [V20.B16, V21.B16, V22.B16, V23.B16] \
	ZERO(8) \
	ZERO(9) \
	ZERO(10) \
	ZERO(11) \
	ZERO(12) \
	ZERO(13) \
	ZERO(14) \
	ZERO(15) \
	Q6LO(V6, V0, V4, 4) \
	DOT(8, 6, 16) \
	Q6LO(V6, V1, V5, 4) \
	DOT(9, 6, 17) \
	Q6LO(V6, V2, V4, 2) \
	DOT(10, 6, 18) \
	Q6LO(V6, V3, V5, 2) \
	DOT(11, 6, 19) \
	Q6HI(V6, V0, V4) \
	DOT(12, 6, 20) \
	Q6HI(V6, V1, V5) \
	DOT(13, 6, 21) \
	Q6HI2(V6, V2, V4) \
	DOT(14, 6, 22) \
	Q6HI2(V6, V3, V5) \
	DOT(15, 6, 23) \
	VADDP V9.S4, V8.S4, V8.S4 \
	VADDP V11.S4, V10.S4, V10.S4 \
	VADDP V10.S4, V8.S4, V8.S4 \
	VADDP V13.S4, V12.S4, V12.S4 \
	VADDP V15.S4, V14.S4, V14.S4 \
	VADDP V14.S4, V12.S4, V12.S4 \
	FMOVD (R7), F16 \
	ADD   $8, R7 \
	SXTL8(16, 16) \
	SXTL16(17, 16) \
	SXTL16HI(18, 16) \
	MLA4(28, 8, 17) \
	MLA4(28, 12, 18)

#define DOTQ6K(name) \
TEXT name(SB), NOSPLIT, $0-28 \
	MOVD  w+0(FP), R0 \
	MOVD  a+8(FP), R1 \
	MOVD  n+16(FP), R2 \
	VMOVI $15, V24.B16 \
	VMOVI $0x30, V25.B16 \
	VMOVI $32, V26.B16 \
	ZERO(27) \
	CBZ   R2, done \
loop: \
	ZERO(28) \
	MOVD  R0, R4 \
	ADD   $128, R0, R6 \
	ADD   $192, R0, R7 \
	ADD   $QK_QS, R1, R5 \
	HALFQ6 \
	HALFQ6 \
	VADDV V28.S4, V28 \
	SCVTFS(28, 28) \
	MOVHU  208(R0), R8 \
	FMOVS  R8, F29 \
	FCVTHS F29, F29 \
	FMOVS  QK_D(R1), F6 \
	FMULS  F6, F29, F29 \
	FMADDS F28, F27, F29, F27 \
	ADD   $210, R0 \
	ADD   $QK_SIZE, R1 \
	SUBS  $1, R2 \
	BNE   loop \
done: \
	FMOVS F27, ret+24(FP) \
	RET

// func dot4Q6_KSDOT(dst *[4]float32, w *byte, a0, a1, a2, a3 *q8KBlock, n int)
// Per half: the quants unpacked once into V0..V7 (from ql V16..V19, qh V20, V21; V22, V23
// temporaries; constants V24 = 15s, V25 = 0x30s, V29 = 32s, set again each half since
// V24, V25 then take the scales); for row t the eight sub-block sums (V8..V15), reduced
// and times the scales, into lane t of V26 (half 0) or V27 (half 1). Then
// V28 += (dx·dy)·isum per row lane, fused.
#define Q6LO4(q, l, h, sh) \
	VAND  V24.B16, l.B16, q.B16 \
	VSHL  $sh, h.B16, V22.B16 \
	VAND  V25.B16, V22.B16, V22.B16 \
	VORR  V22.B16, q.B16, q.B16 \
	VSUB  V29.B16, q.B16, q.B16

#define Q6HI4(q, l, h) \
	VUSHR $4, l.B16, q.B16 \
	VAND  V25.B16, h.B16, V23.B16 \
	VORR  V23.B16, q.B16, q.B16 \
	VSUB  V29.B16, q.B16, q.B16

#define Q6HI24(q, l, h) \
	VUSHR $4, l.B16, q.B16 \
	VUSHR $2, h.B16, V22.B16 \
	VAND  V25.B16, V22.B16, V22.B16 \
	VORR  V22.B16, q.B16, q.B16 \
	VSUB  V29.B16, q.B16, q.B16

#define ROWQ6(qp, out, t) \
	VLD1.P 64(qp), [V16.B16, V17.B16, V18.B16, V19.B16] \
	VLD1.P 64(qp), [V20.B16, V21.B16, V22.B16, V23.B16] \
	ZERO(8) \
	ZERO(9) \
	ZERO(10) \
	ZERO(11) \
	ZERO(12) \
	ZERO(13) \
	ZERO(14) \
	ZERO(15) \
	DOT(8, 0, 16) \
	DOT(9, 1, 17) \
	DOT(10, 2, 18) \
	DOT(11, 3, 19) \
	DOT(12, 4, 20) \
	DOT(13, 5, 21) \
	DOT(14, 6, 22) \
	DOT(15, 7, 23) \
	VADDP V9.S4, V8.S4, V8.S4 \
	VADDP V11.S4, V10.S4, V10.S4 \
	VADDP V10.S4, V8.S4, V8.S4 \
	VADDP V13.S4, V12.S4, V12.S4 \
	VADDP V15.S4, V14.S4, V14.S4 \
	VADDP V14.S4, V12.S4, V12.S4 \
	MUL4(8, 8, 24) \
	MLA4(8, 12, 25) \
	VADDV V8.S4, V8 \
	VMOV  V8.S[0], out.S[t]

#define HALFQ64(out) \
	VMOVI  $15, V24.B16 \
	VMOVI  $0x30, V25.B16 \
	VMOVI  $32, V29.B16 \
	VLD1.P 64(R6), [V16.B16, V17.B16, V18.B16, V19.B16] \
	VLD1.P 32(R7), [V20.B16, V21.B16] \
	Q6LO4(V0, V16, V20, 4) \
	Q6LO4(V1, V17, V21, 4) \
	Q6LO4(V2, V18, V20, 2) \
	Q6LO4(V3, V19, V21, 2) \
	Q6HI4(V4, V16, V20) \
	Q6HI4(V5, V17, V21) \
	Q6HI24(V6, V18, V20) \
	Q6HI24(V7, V19, V21) \
	FMOVD (R8), F24 \
	ADD   $8, R8 \
	SXTL8(24, 24) \
	SXTL16HI(25, 24) \
	SXTL16(24, 24) \
	ROWQ6(R10, out, 0) \
	ROWQ6(R11, out, 1) \
	ROWQ6(R12, out, 2) \
	ROWQ6(R13, out, 3)

#define DOT4Q6K(name) \
TEXT name(SB), NOSPLIT, $0-56 \
	MOVD  dst+0(FP), R9 \
	MOVD  w+8(FP), R0 \
	MOVD  a0+16(FP), R1 \
	MOVD  a1+24(FP), R2 \
	MOVD  a2+32(FP), R3 \
	MOVD  a3+40(FP), R4 \
	MOVD  n+48(FP), R5 \
	ZERO(28) \
	CBZ   R5, done \
loop: \
	MOVD  R0, R6 \
	ADD   $128, R0, R7 \
	ADD   $192, R0, R8 \
	ADD   $QK_QS, R1, R10 \
	ADD   $QK_QS, R2, R11 \
	ADD   $QK_QS, R3, R12 \
	ADD   $QK_QS, R4, R13 \
	HALFQ64(V26) \
	HALFQ64(V27) \
	VADD  V27.S4, V26.S4, V26.S4 \
	SCVTF4(26, 26) \
	ADD   $QK_D, R1, R14 \
	VLD1  (R14), V12.S[0] \
	ADD   $QK_D, R2, R14 \
	VLD1  (R14), V12.S[1] \
	ADD   $QK_D, R3, R14 \
	VLD1  (R14), V12.S[2] \
	ADD   $QK_D, R4, R14 \
	VLD1  (R14), V12.S[3] \
	MOVHU  208(R0), R14 \
	FMOVS  R14, F13 \
	FCVTHS F13, F13 \
	FMULE(12, 12, 13, 0) \
	VFMLA V26.S4, V12.S4, V28.S4 \
	ADD   $210, R0 \
	ADD   $QK_SIZE, R1 \
	ADD   $QK_SIZE, R2 \
	ADD   $QK_SIZE, R3 \
	ADD   $QK_SIZE, R4 \
	SUBS  $1, R5 \
	BNE   loop \
done: \
	VST1  [V28.S4], (R9) \
	RET

#define DOT DOT_SDOT
DOTQ4K(·dotQ4_KSDOT)
DOT4Q4K(·dot4Q4_KSDOT)
DOTQ6K(·dotQ6_KSDOT)
DOT4Q6K(·dot4Q6_KSDOT)
#undef DOT
#define DOT DOT_SMULL
DOTQ4K(·dotQ4_KNEON)
DOT4Q4K(·dot4Q4_KNEON)
DOTQ6K(·dotQ6_KNEON)
DOT4Q6K(·dot4Q6_KNEON)
#undef DOT
