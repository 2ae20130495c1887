//go:build !unix

package formats

import "os"

const openFlags = os.O_RDONLY
