package kernels

import (
	"encoding/binary"
	"math/bits"
	"unsafe"

	"github.com/x448/float16"
)

// Four-at-a-time integer dot products in 64-bit words ("lanes").
//
// Let z = 2^16. A weight word holds four quants w0..w3 in 16-bit lanes,
// W = w0 + w1·z + w2·z² + w3·z³, as masking one of the nibble (or bit-plane) positions out
// of eight stored bytes gives it: bits 16i.. of the uint64 of bytes b0..b7 are byte b(2i),
// so the mask 0x000F000F000F000F picks the low nibbles of the even bytes and a shift by 8
// those of the odd bytes. An activation word holds the four matching activation quants in
// reverse lane order, A = a0·z³ + a1·z² + a2·z + a3 (computed with signed arithmetic, not
// by or-ing bit fields). Modulo 2^64, W·A = Σk c_k z^k for k < 4 (the terms z^4.. vanish),
// with c_3 = Σ w_i·a_i, the dot product, and the lower coefficients c_0, c_1, c_2 having
// one, two and three terms. When |w_i·a_i| ≤ B, the part below z³ is
// L = c_0 + c_1·z + c_2·z², |L| ≤ B·(1 + 2z + 3z²) < 3.0001·B·2^32. For a sum of n such
// products (n·3.0001·B·2^32 < 2^47) whose c_3 sum C lies in [-2^15, 2^15), the sum is
// C·2^48 + ΣL with 0 ≤ ΣL + 2^47 < 2^48, so (sum + 2^47) >> 48 (arithmetic) is exactly C:
// that is ext. The activation quants of our Q8 blocks are in [-127, 127]; the bounds of
// each type (how many products may be summed before ext) are stated where they are used.
//
// Activation words come in pairs per group of eight consecutive elements 8g..8g+7:
// word 2g holds the even elements (8g, 8g+2, 8g+4, 8g+6), word 2g+1 the odd ones. Every
// type's stored layout maps eight consecutive quant bytes to eight consecutive elements
// of some group (through a nibble or bit-plane of each byte), so the same pair serves all.

const (
	lane4   = 0x000F000F000F000F // low nibble of the even bytes
	lane8   = 0x00FF00FF00FF00FF // the even bytes
	bytes4  = 0x0F0F0F0F0F0F0F0F // low nibble of every byte
	bytes2  = 0x0303030303030303 // low two bits of every byte
	bytes1  = 0x0101010101010101 // low bit of every byte
	bytes1b = 0x1010101010101010 // bit 4 of every byte
	bytes2b = 0x3030303030303030 // bits 4-5 of every byte
	lane2   = 0x0003000300030003 // low two bits of the even bytes
	lane1b  = 0x0010001000100010 // bit 4 of each lane (fifth bit of a 5-bit quant)
	lane2b  = 0x0030003000300030 // bits 4-5 of each lane (high bits of a 6-bit quant)
	lane3b  = 0x0004000400040004 // bit 2 of each lane (third bit of a 3-bit quant)
	lane32  = 0x0020002000200020 // 32 in each lane
	flip8   = 0x8080808080808080 // xor: signed bytes to bytes offset by 128
	extBias = 1 << 47
)

// ext returns the lane-3 coefficient of a sum of lane products (see above).
func ext(p int64) int64 { return (p + extBias) >> 48 }

// packWord returns the activation word of four elements q0, q2, q4, q6 (q0 in the top
// lane): the even elements of a group, or with the odd ones the odd word.
func packWord(q0, q2, q4, q6 int8) int64 {
	return int64(q0)<<48 + int64(q2)<<32 + int64(q4)<<16 + int64(q6)
}

// packGroups fills words (2 per group of 8) for the quants q. With the eight bytes of a
// group read as a little-endian word and byte-reversed (q7 in the low byte), the even
// elements sit in the odd bytes (q0 in the top one) and the odd elements in the even bytes,
// so masking gives each word's lanes as unsigned bytes u, U = Σ u_k·z^k; a lane holding a
// negative quant q = u - 256 must borrow 256·z^k, which is U's bit 16k+7 moved up one:
// packWord's value is U - 2·(U & 0x0080…0080) (modulo 2^64, as packWord's sum is).
func packGroups(words []int64, q []int8) {
	const signs = 0x0080008000800080
	n := len(q) / 8
	words = words[:2*n]
	for g := range n {
		r := bits.ReverseBytes64(binary.LittleEndian.Uint64((*[8]byte)(unsafe.Pointer(&q[8*g]))[:]))
		e, o := r>>8&lane8, r&lane8
		w := (*[2]int64)(words[2*g:])
		w[0] = int64(e - (e&signs)<<1)
		w[1] = int64(o - (o&signs)<<1)
	}
}

// spread5 maps a byte b of a Q5_0/Q5_1 qh word to the fifth bits of eight elements laid
// into lanes: [0] has bit 2i of b at bit 16i+4, [1] has bit 2i+1 there.
var spread5 = func() (t [256][2]uint64) {
	for b := range t {
		for i := 0; i < 4; i++ {
			t[b][0] |= uint64(b>>(2*i)&1) << (16*i + 4)
			t[b][1] |= uint64(b>>(2*i+1)&1) << (16*i + 4)
		}
	}
	return t
}()

// f16Table maps every IEEE binary16 bit pattern to its float32 value (exactly; NaNs made
// quiet with their payload kept, as formats/quant decodes them).
var f16Table = func() *[1 << 16]float32 {
	t := new([1 << 16]float32)
	for i := range t {
		t[i] = float16.Frombits(uint16(i)).Float32()
	}
	return t
}()

// f16 returns the value of the little-endian binary16 in b[0], b[1].
func f16(b0, b1 byte) float32 { return f16Table[uint16(b0)|uint16(b1)<<8] }

// le64 reads a little-endian uint64 (one unaligned load on little-endian machines).
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// le32 reads a little-endian uint32.
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
