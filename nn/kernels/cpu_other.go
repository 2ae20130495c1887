//go:build (!amd64 && !arm64) || purego

package kernels

// Features names the instruction sets the kernels use on this CPU: none here, the
// pure-Go dots run everywhere.
func Features() string { return "pure Go" }
