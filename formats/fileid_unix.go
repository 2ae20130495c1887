//go:build unix

package formats

import (
	"fmt"
	"io/fs"
	"syscall"
)

// FileID returns a key that is equal for two names of the same file (device and inode), or
// "" when the platform does not tell.
func FileID(fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", uint64(st.Dev), uint64(st.Ino))
	}
	return ""
}
