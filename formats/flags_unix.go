//go:build unix

package formats

import (
	"os"
	"syscall"
)

// openFlags opens read-only without blocking, so that a FIFO or device named like a model
// file is refused by the regular-file check instead of hanging the open.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK
