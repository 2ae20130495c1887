package formats

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Entry is one regular file of a directory, as the model-directory rules see it: its name
// and its first bytes (up to 16; what format detection reads).
type Entry struct {
	Name string
	Head []byte
	// ID is FileID of the file ("" when unknown): two names of one file (a symbolic link
	// and its target) are one file, counted once.
	ID string
}

// DirModel is one model of a directory: Path is the directory itself for a sharded
// safetensors checkpoint (Files are then its shards and index), or the one file that holds
// the model.
type DirModel struct {
	Path  string
	Files []string // names of the directory's files that belong to the model
}

// ModelsIn is kensa's one definition of what models a directory holds, shared by scan
// (targets), --base and inspect (Open of a directory):
//
//   - a sharded safetensors checkpoint (an index *.safetensors.index.json, or several files
//     all named like shards, -00001-of-00003.safetensors) is one model, the directory; with
//     an index, the shards are the files its weight_map names (and files named like shards
//     when the index cannot be read: opening the model reports why);
//   - every other safetensors file is a model of its own;
//   - every GGUF file is a model of its own;
//   - a file of another name whose first bytes are a GGUF or safetensors header is a model
//     of its own too: a format is told by its bytes, never by its name.
//
// Files are the regular files of dir (symbolic links already resolved by the caller).
// rest holds the files that are part of no model, in name order. Models are in name order
// of their first file, a sharded checkpoint first.
func ModelsIn(dir string, files []Entry) (models []DirModel, rest []Entry) {
	files = append([]Entry(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	fl := formatList()
	kind := func(e Entry) string {
		for _, f := range fl {
			if f.Match != nil && f.Match(e.Head) {
				return f.Name
			}
		}
		return ""
	}
	var indexes, st, shards []string
	for _, e := range files {
		low := strings.ToLower(e.Name)
		switch {
		case strings.HasSuffix(low, ".safetensors.index.json"):
			indexes = append(indexes, e.Name)
		case strings.HasSuffix(low, ".safetensors"):
			st = append(st, e.Name)
			if isShardName(strings.TrimSuffix(low, ".safetensors")) {
				shards = append(shards, e.Name)
			}
		}
	}
	used := map[string]bool{}
	ids := map[string]bool{}
	byName := map[string]string{}
	for _, e := range files {
		byName[e.Name] = e.ID
	}
	switch {
	case len(indexes) > 0:
		group := indexes
		named := map[string]bool{}
		for _, ix := range indexes {
			for _, s := range indexShards(dir, ix) {
				named[s] = true
			}
		}
		for _, n := range st {
			if named[n] || isShardName(strings.TrimSuffix(strings.ToLower(n), ".safetensors")) {
				group = append(group, n)
			}
		}
		sort.Strings(group)
		models = append(models, DirModel{Path: dir, Files: group})
		for _, n := range group {
			used[n] = true
		}
	case len(shards) > 1 && len(shards) == len(st):
		models = append(models, DirModel{Path: dir, Files: append([]string(nil), shards...)})
		for _, n := range shards {
			used[n] = true
		}
	}
	for n := range used {
		if id := byName[n]; id != "" {
			ids[id] = true
		}
	}
	for _, e := range files {
		if used[e.Name] {
			continue
		}
		if e.ID != "" && ids[e.ID] {
			continue // another name of a file already counted
		}
		if e.ID != "" {
			ids[e.ID] = true
		}
		low := strings.ToLower(e.Name)
		if strings.HasSuffix(low, ".safetensors") || strings.HasSuffix(low, ".gguf") || kind(e) != "" {
			models = append(models, DirModel{Path: filepath.Join(dir, e.Name), Files: []string{e.Name}})
			continue
		}
		rest = append(rest, e)
	}
	return models, rest
}

// indexShards returns the shard names an index's weight_map names (nil when it cannot be
// read: opening the model reports why).
func indexShards(dir, name string) []string {
	b, err := ReadCompanion(dir, name, maxIndexRead)
	if err != nil {
		return nil
	}
	var ix struct {
		WeightMap map[string]any `json:"weight_map"`
	}
	if json.Unmarshal(b, &ix) != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, v := range ix.WeightMap {
		if s, ok := v.(string); ok && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// maxIndexRead bounds the index read to tell a sharded checkpoint's files (real indexes
// are well under 10 MB).
const maxIndexRead = 100 << 20

// isShardName reports whether a file name (without extension) ends like a shard:
// "-00001-of-00003".
func isShardName(s string) bool {
	i := strings.LastIndex(s, "-of-")
	if i < 0 {
		return false
	}
	j := strings.LastIndex(s[:i], "-")
	if j < 0 {
		return false
	}
	return allDigits(s[j+1:i]) && allDigits(s[i+4:])
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ReadHead returns the first n bytes of the regular file at path (fewer when it is
// shorter). It never blocks: a FIFO, socket or device is refused without being read.
func ReadHead(path string, n int) ([]byte, error) {
	f, err := os.OpenFile(path, openFlags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("formats: %s is not a regular file (%s): %w", path, ModeName(st.Mode()), ErrInvalid)
	}
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	return b[:m], nil
}

// ModeName names the kind of a file mode: "regular file", "directory", "FIFO", "socket",
// "device", "symbolic link".
func ModeName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		return "device"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "special file"
}

// dirEntries lists the regular files of dir (symbolic links followed when they stay in dir
// or are Hugging Face cache blob links, as OpenInDir follows them) with their heads.
func dirEntries(dir string) ([]Entry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		f, err := OpenInDir(dir, e.Name())
		if err != nil {
			continue // not a file the model could be made of; opening it by name says why
		}
		head := make([]byte, 16)
		n, _ := f.ReadAt(head, 0)
		f.Close()
		id := ""
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil {
			id = FileID(fi)
		}
		out = append(out, Entry{Name: e.Name(), Head: head[:n], ID: id})
	}
	return out, nil
}

// primary narrows a directory's models to its primary model, the one Open of the
// directory opens (and so --base and inspect): its sharded checkpoint; else its
// safetensors model (a Hugging Face model directory, where GGUF files beside it are
// conversions); else its GGUF or other model file. Several at the level that applies are
// all returned, for Open to name.
func primary(dir string, models []DirModel) []DirModel {
	var st, other []DirModel
	for _, m := range models {
		switch {
		case m.Path == dir:
			return []DirModel{m}
		case strings.HasSuffix(strings.ToLower(m.Path), ".safetensors"):
			st = append(st, m)
		default:
			other = append(other, m)
		}
	}
	if len(st) > 0 {
		return st
	}
	return other
}

// openDir opens the primary model of a directory (see primary); none or several are an
// error that names what is there.
func openDir(path string, fl []Format) (*Model, error) {
	ents, err := dirEntries(path)
	if err != nil {
		return nil, err
	}
	models, _ := ModelsIn(path, ents)
	models = primary(path, models)
	switch len(models) {
	case 0:
		if subs := modelSubdirs(path, 8); len(subs) > 0 {
			return nil, fmt.Errorf("formats: directory %s holds no model itself; its sub-directories %s do (name one, or scan with -r): %w", path, strings.Join(subs, ", "), ErrNoModel)
		}
		return nil, fmt.Errorf("formats: directory %s: %w", path, ErrNoModel)
	case 1:
	default:
		names := make([]string, len(models))
		for i, m := range models {
			names[i] = filepath.Base(m.Path)
		}
		return nil, fmt.Errorf("formats: directory %s holds %d models (%s): name one: %w", path, len(models), strings.Join(names, ", "), ErrNoModel)
	}
	if models[0].Path != path {
		m, err := Open(models[0].Path)
		if err == nil {
			m.Path = path
		}
		return m, err
	}
	for _, f := range fl {
		if f.OpenDir == nil {
			continue
		}
		m, ok, err := f.OpenDir(path)
		if err != nil {
			return nil, err
		}
		if ok {
			return m, nil
		}
	}
	return nil, fmt.Errorf("formats: directory %s: %w", path, ErrNoModel)
}

// modelSubdirs returns up to max sub-directories of dir (one level) that hold a model file
// of their own, for the "name one or use -r" hint.
func modelSubdirs(dir string, max int) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || len(out) >= max {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		if HoldsModel(sub, 3) {
			out = append(out, e.Name())
		}
	}
	return out
}

// HoldsModel reports whether dir or a directory below it (down to depth levels, hidden
// directories and symbolic links not followed) holds a model file by ModelsIn.
func HoldsModel(dir string, depth int) bool {
	ents, err := dirEntries(dir)
	if err == nil {
		if ms, _ := ModelsIn(dir, ents); len(ms) > 0 {
			return true
		}
	}
	if depth <= 0 {
		return false
	}
	sub, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range sub {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && HoldsModel(filepath.Join(dir, e.Name()), depth-1) {
			return true
		}
	}
	return false
}

// Head magic numbers of formats kensa does not read, for FileKind.
var (
	magicZip   = []byte("PK\x03\x04")
	magicZipE  = []byte("PK\x05\x06") // an empty zip
	magicHDF5  = []byte("\x89HDF\r\n\x1a\n")
	magicNumpy = []byte("\x93NUMPY")
	magic7z    = []byte("7z\xbc\xaf\x27\x1c")
	magicGzip  = []byte("\x1f\x8b")
	magicXz    = []byte("\xfd7zXZ\x00")
	magicZstd  = []byte("\x28\xb5\x2f\xfd")
	magicBzip  = []byte("BZh")
	magicRar   = []byte("Rar!\x1a\x07")
	magicELF   = []byte("\x7fELF")
)

// FileKind says what a file that is part of no model is, for the coverage of a scan.
type FileKind struct {
	// Format names the kind of file: "PyTorch pickle", "Keras HDF5", "README", ...
	Format string
	// Code is set for files that can run code when loaded (pickle-based PyTorch and
	// joblib files, Keras, TorchScript, NeMo, ONNX custom operators, NumPy object arrays,
	// native libraries and executables).
	Code bool
	// Model is set for model files in a format kensa does not read that run no code when
	// loaded.
	Model bool
	// Source is set for Python source a model repository ships (run by trust_remote_code).
	Source bool
}

// Classify tells what a file is from its name and first bytes (at least 8 where the
// file has them; 262 lets it see a tar header's magic).
func Classify(name string, head []byte) FileKind {
	low := strings.ToLower(name)
	ext := filepath.Ext(low)
	base := strings.TrimSuffix(low, ext)
	pickle := len(head) >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5
	zip := bytes.HasPrefix(head, magicZip) || bytes.HasPrefix(head, magicZipE)
	switch {
	case bytes.HasPrefix(head, magicELF) || bytes.HasPrefix(head, []byte("MZ")) && (ext == ".exe" || ext == ".dll") ||
		ext == ".so" || ext == ".dylib" || ext == ".dll" || ext == ".exe" || ext == ".llamafile" ||
		len(head) >= 4 && (bytes.Equal(head[:4], []byte{0xcf, 0xfa, 0xed, 0xfe}) || bytes.Equal(head[:4], []byte{0xca, 0xfe, 0xba, 0xbe})):
		return FileKind{Format: "native code (executable or shared library)", Code: true}
	case ext == ".nemo":
		return FileKind{Format: "NeMo archive (tar with pickled weights and Hydra _target_ configs)", Code: true}
	case ext == ".keras" || bytes.HasPrefix(head, magicHDF5) || ext == ".h5" || ext == ".hdf5":
		if ext == ".keras" {
			return FileKind{Format: "Keras archive (can hold Lambda layers and module references)", Code: true}
		}
		return FileKind{Format: "HDF5 / Keras H5 (can hold Lambda layers)", Code: true}
	case ext == ".joblib" || ext == ".jbl" || ext == ".dill":
		return FileKind{Format: "joblib / dill pickle", Code: true}
	case ext == ".pkl" || ext == ".pickle" || pickle && !zip:
		if ext == ".pkl" || ext == ".pickle" {
			return FileKind{Format: "Python pickle", Code: true}
		}
		return FileKind{Format: "PyTorch pickle (legacy torch.save)", Code: true}
	case ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".bin" || ext == ".mar" || zip && ext != ".zip":
		switch {
		case zip:
			return FileKind{Format: "PyTorch zip (pickle inside; TorchScript code possible)", Code: true}
		case ext == ".bin":
			return FileKind{Format: "PyTorch .bin (pickle-based)", Code: true}
		}
		return FileKind{Format: "PyTorch checkpoint (pickle-based)", Code: true}
	case zip:
		return FileKind{Format: "zip archive (may hold pickles)", Code: true}
	case ext == ".onnx":
		return FileKind{Format: "ONNX (custom operators can load native code)", Code: true}
	case ext == ".npy" || ext == ".npz" || bytes.HasPrefix(head, magicNumpy):
		return FileKind{Format: "NumPy array (object arrays are pickles)", Code: true}
	case ext == ".py" || ext == ".pyc" || ext == ".pyw":
		return FileKind{Format: "Python source (run by trust_remote_code)", Source: true}
	case bytes.HasPrefix(head, magic7z) || bytes.HasPrefix(head, magicRar) || bytes.HasPrefix(head, magicGzip) ||
		bytes.HasPrefix(head, magicXz) || bytes.HasPrefix(head, magicZstd) || bytes.HasPrefix(head, magicBzip) && len(head) > 3 && head[3] >= '1' && head[3] <= '9' ||
		len(head) >= 262 && string(head[257:262]) == "ustar" || ext == ".tar" || ext == ".tgz" || ext == ".7z" || ext == ".rar":
		return FileKind{Format: "archive kensa cannot open (contents unknown)", Model: true}
	case ext == ".tflite" || ext == ".pb" || ext == ".msgpack" || ext == ".ot" || ext == ".mlmodel" || ext == ".pdparams" ||
		ext == ".caffemodel" || ext == ".engine" || ext == ".plan" || ext == ".ggml" || ext == ".mlx" || ext == ".params" || ext == ".pdmodel":
		return FileKind{Format: "model file in a format kensa does not read (" + strings.TrimPrefix(ext, ".") + ")", Model: true}
	case strings.HasPrefix(base, "readme") || strings.HasPrefix(base, "license") || strings.HasPrefix(base, "licence") ||
		strings.HasPrefix(base, "notice") || strings.HasPrefix(base, "copying") || ext == ".md" || ext == ".rst" || low == "use_policy":
		return FileKind{Format: "documentation"}
	case low == ".gitattributes" || low == ".gitignore" || low == ".gitmodules":
		return FileKind{Format: "git metadata"}
	case ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".gif" || ext == ".svg" || ext == ".webp" || ext == ".bmp" || ext == ".ico":
		return FileKind{Format: "image"}
	case ext == ".json":
		return FileKind{Format: "JSON configuration"}
	case ext == ".jinja" || ext == ".j2":
		return FileKind{Format: "Jinja template"}
	case ext == ".yaml" || ext == ".yml" || ext == ".toml" || ext == ".cfg" || ext == ".ini":
		return FileKind{Format: "configuration"}
	case ext == ".txt" || ext == ".csv" || ext == ".tsv":
		return FileKind{Format: "text"}
	case ext == ".model" || ext == ".tiktoken" || ext == ".spm" || low == "merges.txt" || low == "vocab.txt":
		return FileKind{Format: "tokenizer model"}
	}
	return FileKind{Format: "unknown"}
}
