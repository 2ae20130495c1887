package formats

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Format is a model file format that a reader package registers with Register.
type Format struct {
	// Name is the format's name in reports: "gguf", "safetensors".
	Name string
	// Match reports whether the first bytes of a file (up to 16, fewer if the file is
	// shorter) identify the format.
	Match func(head []byte) bool
	// Open reads the model in one opened file. It does not take ownership of f on error.
	Open func(f *File) (*Model, error)
	// OpenDir opens the model of a directory, reporting ok=false (and no error) when the
	// directory holds no model of this format. Formats are asked in Priority order.
	OpenDir func(dir string) (m *Model, ok bool, err error)
	// Priority orders directory detection: lower first.
	Priority int
}

var (
	formatsMu  sync.Mutex
	registered []Format
)

// Register makes a format known to Open. Reader packages call it from init.
func Register(f Format) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	registered = append(registered, f)
	sort.SliceStable(registered, func(i, j int) bool { return registered[i].Priority < registered[j].Priority })
}

func formatList() []Format {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	return append([]Format(nil), registered...)
}

// ErrNoModel is returned by Open for a file or directory that holds no model in a known
// format.
var ErrNoModel = errors.New("no model in a known format")

// Open opens the model at path. A file's format is told by its first bytes, never by its
// name. A directory is opened when it holds exactly one model by ModelsIn (a sharded
// safetensors checkpoint, or one safetensors or GGUF file); none or several are an error
// wrapping ErrNoModel that names what is there. The model's files stay open until Close.
func Open(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	fl := formatList()
	if st.IsDir() {
		return openDir(path, fl)
	}
	file, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	m, err := OpenModelFile(file, fl)
	if err != nil {
		file.Close()
		return nil, err
	}
	m.Path = path
	return m, nil
}

// OpenModelFile detects the format of an opened file and reads it; with no formats given it
// uses the registered ones. The model owns f on success.
func OpenModelFile(f *File, fl []Format) (*Model, error) {
	if fl == nil {
		fl = formatList()
	}
	head := make([]byte, 16)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	head = head[:n]
	for _, ft := range fl {
		if ft.Match != nil && ft.Match(head) {
			m, err := ft.Open(f)
			if err != nil {
				return nil, WithFile(err, f.Path)
			}
			if m.Path == "" {
				m.Path = f.Path
			}
			return m, nil
		}
	}
	return nil, &FormatError{Format: "unknown format", File: f.Path, Offset: 0, Msg: fmt.Sprintf("first bytes % x match neither GGUF nor safetensors", head), Err: ErrNoModel}
}

// OpenInDir opens a file named inside a model (such as a shard named by an index) in the
// model's directory dir. It refuses names that are empty, absolute, contain a path separator
// or "..", and names that resolve through a symbolic link to a place outside dir (os.Root
// does the resolution, so there is no window between check and open). One exception: in a
// Hugging Face cache snapshot (…/snapshots/<revision>/), whose files are links into the
// cache's sibling blobs/ directory, a link to a file directly in that blobs/ directory is
// followed. Special files (FIFOs, devices) are refused without blocking.
func OpenInDir(dir, name string) (*File, error) {
	if name == "" || name == "." || name == ".." || filepath.IsAbs(name) || filepath.VolumeName(name) != "" ||
		filepath.Base(name) != name || containsSep(name) {
		return nil, fmt.Errorf("file name %q is not a plain name in the model directory: %w", name, ErrInvalid)
	}
	f, err := openInRoot(dir, name)
	if err == nil {
		return newOSFile(filepath.Join(dir, name), f)
	}
	if blobs, rel, ok := hfCacheBlob(dir, name); ok {
		if f, err2 := openInRoot(blobs, rel); err2 == nil {
			return newOSFile(filepath.Join(dir, name), f)
		}
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("file %q: %w", name, err)
	}
	return nil, fmt.Errorf("file %q: %v: %w", name, err, ErrInvalid)
}

func openInRoot(dir, name string) (*os.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.OpenFile(name, openFlags, 0)
}

// hfCacheBlob recognises dir/name as a Hugging Face cache snapshot entry linking to
// <cache>/blobs/<hash>, and returns the blobs directory and the blob's name.
func hfCacheBlob(dir, name string) (string, string, bool) {
	if filepath.Base(filepath.Dir(filepath.Clean(dir))) != "snapshots" {
		return "", "", false
	}
	target, err := os.Readlink(filepath.Join(dir, name))
	if err != nil || filepath.IsAbs(target) {
		return "", "", false
	}
	blobs := filepath.Join(filepath.Dir(filepath.Dir(filepath.Clean(dir))), "blobs")
	resolved := filepath.Join(dir, target)
	if filepath.Dir(resolved) != blobs {
		return "", "", false
	}
	return blobs, filepath.Base(resolved), true
}

func containsSep(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' || s[i] == '\\' || s[i] == 0 {
			return true
		}
	}
	return false
}
