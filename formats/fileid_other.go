//go:build !unix

package formats

import "io/fs"

// FileID returns "" on this platform: names of the same file are not told apart.
func FileID(fi fs.FileInfo) string { return "" }
