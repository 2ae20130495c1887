//go:build !unix

package formats

import "os"

// mapFile never maps on this platform; files are read with ReadAt.
func mapFile(f *os.File, size int64) ([]byte, func(), bool) { return nil, nil, false }
