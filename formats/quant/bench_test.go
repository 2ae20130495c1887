package quant

import "testing"

// BenchmarkDecode measures each kernel on about 1 MiB of float32 output decoded from random
// blocks; throughput is reported in bytes of output.
func BenchmarkDecode(b *testing.B) {
	for _, k := range Kernels() {
		if k.Decode == nil {
			continue
		}
		b.Run(k.Name, func(b *testing.B) {
			n := (1 << 18) / k.BlockElems // blocks
			src := randomBlocks(k, n, 1)
			dst := make([]float32, n*k.BlockElems)
			b.SetBytes(int64(len(dst) * 4))
			b.ResetTimer()
			for range b.N {
				k.Decode(dst, src)
			}
		})
	}
}
