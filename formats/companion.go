package formats

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ReadCompanion reads the whole of name, a companion file of the model directory dir (such
// as config.json or tokenizer.json beside the weights), and returns a copy of its bytes; the
// file is closed on return. The file is opened only through OpenInDir: a name that is not a
// plain file name, a link leading out of dir (other than a Hugging Face cache snapshot's link
// into its blobs/), and anything but a regular file (a FIFO, device, socket or directory) are
// refused, without blocking.
//
// Errors carry the file's path (dir joined with name):
//   - a file that is not there (nor dir): an error that errors.Is fs.ErrNotExist, and no
//     other error does;
//   - a file larger than max bytes: a *FormatError (Format "companion", Offset -1) wrapping
//     ErrTooLarge that names the size; nothing is read;
//   - a refused name, link or special file: an error wrapping ErrInvalid (a *FormatError
//     naming the file type for a special file);
//   - no permission: an error wrapping fs.ErrPermission;
//   - otherwise the read error.
func ReadCompanion(dir, name string, max int64) ([]byte, error) {
	path := filepath.Join(dir, name)
	if filepath.Base(name) != name || name == "." || name == ".." {
		path = dir + string(filepath.Separator) + name // as given, for the message
	}
	f, err := OpenInDir(dir, name)
	if err != nil {
		return nil, companionOpenError(path, name, err)
	}
	defer f.Close()
	if f.Size > max {
		return nil, &FormatError{Format: "companion", File: path, Offset: -1, Err: ErrTooLarge,
			Msg: fmt.Sprintf("%d bytes, larger than the %d bytes kensa reads of this file", f.Size, max)}
	}
	// ReadAt copies (under the fault guard when the file is mapped), so the bytes stay
	// valid after Close.
	b := make([]byte, f.Size)
	n, err := f.ReadAt(b, 0)
	if err == io.EOF && n == len(b) {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("companion %s: reading %d bytes: %w", path, f.Size, err)
	}
	return b, nil
}

func companionOpenError(path, name string, err error) error {
	if !errors.Is(err, fs.ErrNotExist) && filepath.Base(name) == name && name != "." && name != ".." {
		// OpenInDir refuses a FIFO, socket or device (by the open's error or by the type
		// check): say what the file is. Stat does not open, so it does not block.
		if st, serr := os.Stat(path); serr == nil && !st.Mode().IsRegular() {
			return &FormatError{Format: "companion", File: path, Offset: -1, Err: ErrInvalid,
				Msg: "is a " + ModeName(st.Mode()) + ", not a regular file; it was not read"}
		}
	}
	return fmt.Errorf("companion %s: %w", path, err)
}
