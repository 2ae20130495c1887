//go:build amd64 && !purego

package kernels

import (
	"os"

	"golang.org/x/sys/cpu"
)

// The amd64 instruction sets the assembly kernels may use, read once at start-up. Setting
// KENSA_KERNELS=go in the environment turns every assembly kernel off (the pure-Go dots
// run everywhere); building with -tags purego leaves the assembly out altogether.
var (
	useAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasBMI2 && os.Getenv("KENSA_KERNELS") != "go"
	useAVX512 = useAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ
	useVNNI   = useAVX512 && cpu.X86.HasAVX512VNNI
)

// Features names the instruction sets the kernels use on this CPU.
func Features() string {
	switch {
	case useVNNI:
		return "amd64 AVX-512+VNNI"
	case useAVX512:
		return "amd64 AVX-512"
	case useAVX2:
		return "amd64 AVX2+FMA"
	}
	return "pure Go"
}
