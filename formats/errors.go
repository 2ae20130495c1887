// Package formats is the shared vocabulary of kensa's model readers: element types
// (DType), tensor descriptions (TensorInfo), opened models (Model), the format-detecting
// Open, and the error values every reader returns.
//
// The readers themselves live in the sub-packages formats/safetensors and formats/gguf,
// which register with this package (see Register) the way image/png registers with image.
// Every size, count and offset a reader takes from a file is checked against the bytes that
// are actually there before anything is allocated; a reader that finds a problem returns a
// *FormatError that carries the absolute byte offset of the problem and wraps one of the
// sentinel errors below, so callers test the category with errors.Is.
package formats

import (
	"errors"
	"fmt"
)

// Sentinel errors: the categories of everything that can be wrong with a model file.
// A *FormatError wraps exactly one of them.
var (
	// ErrTruncated: the file ends before a structure that it declares.
	ErrTruncated = errors.New("truncated")
	// ErrTooLarge: a count, length or size is beyond what the file can hold or kensa accepts.
	ErrTooLarge = errors.New("too large")
	// ErrInvalid: a value violates the format (bad magic, duplicate key, overlapping data, ...).
	ErrInvalid = errors.New("invalid")
	// ErrUnsupported: a well-formed feature kensa does not read (unknown type id, version).
	ErrUnsupported = errors.New("unsupported")
)

// FormatError reports a malformed file. Offset is the absolute byte offset in File where the
// problem was found (-1 when it is not tied to a position, such as a missing file in a
// sharded index).
type FormatError struct {
	Format string // "gguf", "safetensors", "safetensors-index", ...
	File   string // path of the file, when known
	Offset int64  // absolute byte offset of the problem in File, or -1
	Msg    string // what is wrong, lower case
	Err    error  // the category: ErrTruncated, ErrTooLarge, ErrInvalid or ErrUnsupported
}

// Error formats the error as "gguf: file.gguf: offset 1234: tensor count 4294967297
// exceeds file size".
func (e *FormatError) Error() string {
	s := e.Format + ": "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf("offset %d: ", e.Offset)
	}
	return s + e.Msg
}

// Unwrap returns the error category.
func (e *FormatError) Unwrap() error { return e.Err }

// Errorf builds a *FormatError of category err at offset off.
func Errorf(format string, off int64, err error, msgf string, args ...any) *FormatError {
	return &FormatError{Format: format, Offset: off, Msg: fmt.Sprintf(msgf, args...), Err: err}
}

// WithFile sets the file of a *FormatError found in err (if any) that has none, and returns
// err.
func WithFile(err error, path string) error {
	var fe *FormatError
	if errors.As(err, &fe) && fe.File == "" {
		fe.File = path
	}
	return err
}
