//go:build amd64 && !purego

package kernels

import (
	"testing"
	"unsafe"
)

// TestQuantOffsets: the q8Block and q8KBlock offsets that _asm/quant hard-codes.
func TestQuantOffsets(t *testing.T) {
	var b q8Block
	var k q8KBlock
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"q8Block.d", unsafe.Offsetof(b.d), 64},
		{"q8Block.s", unsafe.Offsetof(b.s), 68},
		{"q8Block.sum", unsafe.Offsetof(b.sum), 72},
		{"q8Block.qs", unsafe.Offsetof(b.qs), 76},
		{"sizeof q8Block", unsafe.Sizeof(b), 112},
		{"q8KBlock.d", unsafe.Offsetof(k.d), 512},
		{"q8KBlock.bsums", unsafe.Offsetof(k.bsums), 516},
		{"q8KBlock.qs", unsafe.Offsetof(k.qs), 548},
		{"sizeof q8KBlock", unsafe.Sizeof(k), 808},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, _asm/quant assumes %d", c.name, c.got, c.want)
		}
	}
}

// TestQuantAsmInstalled: the assembly quantizers are the ones in use where the CPU has
// AVX2 (so TestQuantizeBitIdentical/dispatched tests them).
func TestQuantAsmInstalled(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2")
	}
	if codePtr(quantQ8Fast) != codePtr(quantQ8AVX2Blocks) || codePtr(quantQ8KFast) != codePtr(quantQ8KAVX2Blocks) {
		t.Fatal("assembly quantizers not installed")
	}
}
