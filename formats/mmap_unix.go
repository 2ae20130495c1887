//go:build unix

package formats

import (
	"os"
	"syscall"
)

// mapFile maps the whole of f read-only. It reports false when the file cannot be mapped
// (empty, too large for the address space, or the system refuses), and the caller falls back
// to ReadAt.
func mapFile(f *os.File, size int64) ([]byte, func(), bool) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil, false
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, false
	}
	return b, func() { _ = syscall.Munmap(b) }, true
}
