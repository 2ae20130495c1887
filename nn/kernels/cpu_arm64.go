//go:build arm64 && !purego

package kernels

import (
	"os"

	"golang.org/x/sys/cpu"
)

// The arm64 instruction sets the assembly kernels may use, read once at start-up. Setting
// KENSA_KERNELS=go in the environment turns every assembly kernel off (the pure-Go dots
// run everywhere); building with -tags purego leaves the assembly out altogether.
var (
	useNEON = cpu.ARM64.HasASIMD && os.Getenv("KENSA_KERNELS") != "go"
	useSDOT = useNEON && cpu.ARM64.HasASIMDDP // SDOT (FEAT_DotProd, ARMv8.2 and later)
)

// Features names the instruction sets the kernels use on this CPU.
func Features() string {
	switch {
	case useSDOT:
		return "arm64 NEON+SDOT"
	case useNEON:
		return "arm64 NEON"
	}
	return "pure Go"
}
