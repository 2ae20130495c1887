package formats

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrFault is the category of a memory fault while reading a memory-mapped file: the file
// was truncated (or its storage failed) after it was mapped, and the pages kensa was
// reading no longer exist. The process survives it; the read fails with an error that wraps
// ErrFault.
var ErrFault = errors.New("file changed while it was read (truncated or replaced in place)")

// faultAddr is what the runtime panics with when debug.SetPanicOnFault is on and a memory
// access faults: a runtime.Error with the faulting address.
type faultAddr interface {
	error
	Addr() uintptr
}

// Guard runs fn with memory faults turned into errors. Reading a memory-mapped file that is
// truncated while mapped raises SIGBUS, which Go turns into a fatal error unless the
// goroutine asked for a panic (debug.SetPanicOnFault); Guard asks for it, recovers that
// panic and returns an error wrapping ErrFault. Any other panic is re-raised.
//
// The setting is per goroutine: code that reads mapped bytes in goroutines of its own calls
// Guard in each of them. The reads of File.ReadAt and TensorReader are guarded already;
// slices returned by File.Bytes and TensorReader.Bytes point into the mapping and are read
// unguarded unless the caller is inside Guard.
func Guard(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer recoverFault(path, &err)
	return fn()
}

// recoverFault turns a recovered memory-fault panic into an error in *err, and re-panics
// anything else. It must be deferred directly.
func recoverFault(path string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	if fa, ok := r.(faultAddr); ok {
		if path != "" {
			*err = fmt.Errorf("formats: %s: memory fault at %#x: %w", path, fa.Addr(), ErrFault)
		} else {
			*err = fmt.Errorf("formats: memory fault at %#x: %w", fa.Addr(), ErrFault)
		}
		return
	}
	panic(r)
}
