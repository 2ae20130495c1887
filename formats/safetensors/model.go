package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

func init() {
	formats.Register(formats.Format{
		Name:     "safetensors",
		Priority: 10,
		Match:    Match,
		Open:     Model,
		OpenDir:  OpenDir,
	})
}

// Match reports whether head, the first bytes of a file, start a safetensors file: a
// little-endian header length of at least 2 and at most MaxHeaderSize, followed by '{' or
// JSON whitespace. (A GGUF file starts with "GGUF" and a version, which read as a length is
// far above the limit.)
func Match(head []byte) bool {
	if len(head) < 9 {
		return false
	}
	n := binary.LittleEndian.Uint64(head)
	c := head[8]
	return n >= 2 && n <= MaxHeaderSize && (c == '{' || isSpace(c))
}

// Model reads the safetensors file f as a one-file model. Tensors keep header order and
// carry absolute offsets in f; Metadata is the __metadata__ object in file order.
func Model(f *formats.File) (*formats.Model, error) {
	sf, err := NewFile(f, f.Size)
	if err != nil {
		return nil, formats.WithFile(err, f.Path)
	}
	return &formats.Model{
		Format:   "safetensors",
		Path:     f.Path,
		Files:    []*formats.File{f},
		Metadata: sf.Metadata,
		Tensors:  sf.TensorInfos(f.Path),
	}, nil
}

// OpenDir opens the safetensors model of directory dir (the OpenDir of formats.Format).
//
// With a sharded-checkpoint index (a file named *.safetensors.index.json;
// model.safetensors.index.json is preferred, and several others without it are an error),
// the model is the set of shards that the index's weight_map names: every shard name must
// be a plain file name in dir (shards are opened only through formats.OpenInDir, which
// refuses "..", absolute paths and symbolic links that leave dir), every mapped tensor must
// be in its shard, and every tensor of a shard must be mapped to that shard; a tensor in
// two shards is an error. Other *.safetensors files in dir are ignored.
//
// Without an index, every *.safetensors file in dir is part of the model; a tensor name in
// two files is an error. A directory with neither reports ok=false.
//
// Files are sorted by name; Tensors follow file order, then header order. Metadata holds
// the index's "metadata" entries with keys prefixed "index." (values as read by a JSON
// decoder: string, bool, nil, int64 for integers that fit, float64, []any, map[string]any),
// followed by each file's __metadata__ entries, unprefixed, where an entry equal in key and
// value to one already present is left out (shards usually all carry {"format": "pt"}).
// The Offset and Length of a file's entry are in the first file (in name order) that holds
// it; index entries have none (0, 0), as the index is not one of the model's Files.
func OpenDir(dir string) (m *formats.Model, ok bool, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, err
	}
	var indexes, files []string // os.ReadDir sorts by name
	for _, e := range entries {
		if e.IsDir() {
			continue // other kinds of file with a model's name are refused when opened
		}
		switch name := e.Name(); {
		case strings.HasSuffix(name, indexSuffix):
			indexes = append(indexes, name)
		case strings.HasSuffix(name, fileSuffix):
			files = append(files, name)
		}
	}
	switch {
	case slices.Contains(indexes, defaultIndex):
		m, err = openIndex(dir, defaultIndex)
	case len(indexes) == 1:
		m, err = openIndex(dir, indexes[0])
	case len(indexes) > 1:
		return nil, false, &formats.FormatError{Format: "safetensors-index", File: dir, Offset: -1, Err: formats.ErrInvalid,
			Msg: fmt.Sprintf("several shard indexes and no %s: %s", defaultIndex, strings.Join(indexes, ", "))}
	case len(files) > 0:
		m, err = openFiles(dir, files)
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return m, true, nil
}

// shard is one opened file of a multi-file model.
type shard struct {
	name string
	f    *formats.File
	sf   *File
}

// openShard opens and parses the file name in dir. For an index, at is the index file and
// off the offset of the weight_map value that names the shard, for errors.
func openShard(dir, name, at string, off int64) (*shard, error) {
	fe := &formats.FormatError{Format: "safetensors-index", File: at, Offset: off, Err: formats.ErrInvalid}
	if at == "" {
		fe.Format, fe.File = "safetensors", filepath.Join(dir, name)
	}
	if plainName(name) && !isRegular(filepath.Join(dir, name)) {
		fe.Msg = fmt.Sprintf("shard %q is not a regular file", name)
		return nil, fe
	}
	f, err := formats.OpenInDir(dir, name)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fe.Msg = fmt.Sprintf("shard %q does not exist", name)
		case isSymlink(filepath.Join(dir, name)):
			fe.Msg = fmt.Sprintf("shard %q is a symbolic link that cannot be opened inside the model directory: %v", name, err)
		case errors.Is(err, formats.ErrInvalid):
			fe.Msg = fmt.Sprintf("shard name %q is not a plain file name in the model directory", name)
		default:
			return nil, fmt.Errorf("safetensors: %s: opening shard %q: %w", dir, name, err)
		}
		return nil, fe
	}
	sf, err := NewFile(f, f.Size)
	if err != nil {
		f.Close()
		return nil, formats.WithFile(err, f.Path)
	}
	return &shard{name: name, f: f, sf: sf}, nil
}

// plainName reports whether name is a plain file name: not empty, "." or "..", with no
// path separator, volume name or NUL (the names formats.OpenInDir accepts).
func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\x00") &&
		!filepath.IsAbs(name) && filepath.VolumeName(name) == ""
}

// isRegular reports whether path, with symbolic links followed, is a regular file or does
// not exist (opening it then reports the error). Anything else must be refused before it
// is opened: opening a FIFO for reading blocks until a writer comes.
func isRegular(path string) bool {
	st, err := os.Stat(path)
	return err != nil || st.Mode().IsRegular()
}

func isSymlink(path string) bool {
	st, err := os.Lstat(path)
	return err == nil && st.Mode()&fs.ModeSymlink != 0
}

func closeShards(shards []*shard) {
	for _, s := range shards {
		s.f.Close()
	}
}

// merge builds the model of the shards (in order), with the given leading metadata.
func merge(dir string, shards []*shard, meta []formats.KV) *formats.Model {
	m := &formats.Model{Format: "safetensors", Path: dir, Metadata: meta}
	type kv struct{ k, v string }
	seen := map[kv]bool{}
	for _, s := range shards {
		m.Files = append(m.Files, s.f)
		m.Tensors = append(m.Tensors, s.sf.TensorInfos(s.f.Path)...)
		for _, e := range s.sf.Metadata {
			key := kv{e.Key, e.Value.(string)}
			if !seen[key] {
				seen[key] = true
				m.Metadata = append(m.Metadata, e)
			}
		}
	}
	return m
}

// openFiles opens the index-less model made of the named files of dir.
func openFiles(dir string, names []string) (*formats.Model, error) {
	var shards []*shard
	owner := map[string]*shard{}
	for _, name := range names {
		s, err := openShard(dir, name, "", -1)
		if err != nil {
			closeShards(shards)
			return nil, err
		}
		shards = append(shards, s)
		for i := range s.sf.Tensors {
			t := &s.sf.Tensors[i]
			if o := owner[t.Name]; o != nil {
				closeShards(shards)
				return nil, &formats.FormatError{Format: "safetensors", File: s.f.Path, Offset: t.keyOff, Err: formats.ErrInvalid,
					Msg: fmt.Sprintf("tensor %q is also in %s", t.Name, o.name)}
			}
			owner[t.Name] = s
		}
	}
	return merge(dir, shards, nil), nil
}

// mapEntry is one weight_map entry of an index.
type mapEntry struct {
	tensor, shard string
	keyOff, off   int64 // offsets of the tensor name and of the shard name in the index
}

// index is a parsed *.safetensors.index.json.
type index struct {
	meta      []formats.KV
	weightMap []mapEntry // in file order
}

// openIndex opens the model of the index file name in dir.
func openIndex(dir, name string) (*formats.Model, error) {
	path := filepath.Join(dir, name)
	if !isRegular(path) {
		return nil, &formats.FormatError{Format: "safetensors-index", File: path, Offset: -1, Err: formats.ErrInvalid,
			Msg: "the index is not a regular file"}
	}
	f, err := formats.OpenInDir(dir, name)
	if err != nil {
		return nil, &formats.FormatError{Format: "safetensors-index", File: path, Offset: -1, Err: formats.ErrInvalid,
			Msg: fmt.Sprintf("cannot open the index: %v", err)}
	}
	if f.Size > MaxIndexSize {
		f.Close()
		return nil, &formats.FormatError{Format: "safetensors-index", File: path, Offset: 0, Err: formats.ErrTooLarge,
			Msg: fmt.Sprintf("index is %d bytes, more than the limit of %d", f.Size, MaxIndexSize)}
	}
	buf, err := f.Bytes(0, f.Size, nil)
	if err == nil {
		var idx *index
		idx, err = parseIndex(buf)
		if err == nil {
			f.Close()
			return openSharded(dir, path, idx)
		}
	}
	f.Close()
	return nil, formats.WithFile(err, path)
}

// parseIndex reads a sharded-checkpoint index.
func parseIndex(buf []byte) (*index, error) {
	if !utf8.Valid(buf) {
		return nil, formats.Errorf("safetensors-index", int64(invalidUTF8(buf)), formats.ErrInvalid, "index is not valid UTF-8")
	}
	s := &scanner{buf: buf, format: "safetensors-index"}
	if s.peek() != '{' {
		return nil, s.errorf(s.pos, formats.ErrInvalid, "index is not a JSON object: it starts with %s", s.aDescribe(s.pos))
	}
	open := s.pos
	idx := &index{}
	haveMap := false
	err := s.object(func(key string, _ int) error {
		switch key {
		case "metadata":
			if s.peek() == 'n' {
				return s.literal("null")
			}
			if s.peek() != '{' {
				return s.wrongType("metadata", "an object")
			}
			return withContext(s.object(func(k string, _ int) error {
				v, err := s.value()
				idx.meta = append(idx.meta, formats.KV{Key: "index." + k, Value: v})
				return err
			}), "metadata")
		case "weight_map":
			haveMap = true
			if s.peek() != '{' {
				return s.wrongType("weight_map", "an object")
			}
			return withContext(s.object(func(tensor string, keyPos int) error {
				pos := s.pos
				if s.peek() != '"' {
					return s.wrongType(fmt.Sprintf("shard of tensor %q", tensor), "a string (a file name)")
				}
				shard, err := s.str()
				idx.weightMap = append(idx.weightMap, mapEntry{tensor: tensor, shard: shard, keyOff: int64(keyPos), off: int64(pos)})
				return err
			}), "weight_map")
		}
		return s.skip()
	})
	if err != nil {
		return nil, err
	}
	if s.skipSpace(); s.pos < len(buf) {
		return nil, s.errorf(s.pos, formats.ErrInvalid, "unexpected %s after the index object", s.describe(s.pos))
	}
	if !haveMap {
		return nil, s.errorf(open, formats.ErrInvalid, "index has no weight_map")
	}
	if len(idx.weightMap) == 0 {
		return nil, s.errorf(open, formats.ErrInvalid, "weight_map maps no tensors")
	}
	return idx, nil
}

// openSharded opens the shards of idx (read from the index at path) and checks them against
// its weight_map.
func openSharded(dir, path string, idx *index) (*formats.Model, error) {
	indexErr := func(off int64, msgf string, args ...any) error {
		return &formats.FormatError{Format: "safetensors-index", File: path, Offset: off, Err: formats.ErrInvalid, Msg: fmt.Sprintf(msgf, args...)}
	}
	firstRef := map[string]int64{} // shard name -> offset of its first mention
	mapped := make(map[string]*mapEntry, len(idx.weightMap))
	for i := range idx.weightMap {
		e := &idx.weightMap[i]
		mapped[e.tensor] = e
		if _, ok := firstRef[e.shard]; !ok {
			// refuse every bad name before opening anything (OpenInDir checks again)
			if !plainName(e.shard) {
				return nil, indexErr(e.off, "shard name %q is not a plain file name in the model directory", e.shard)
			}
			firstRef[e.shard] = e.off
		}
	}
	names := make([]string, 0, len(firstRef))
	for n := range firstRef {
		names = append(names, n)
	}
	slices.Sort(names)

	var shards []*shard
	fail := func(err error) (*formats.Model, error) {
		closeShards(shards)
		return nil, err
	}
	owner := map[string]*shard{}
	for _, name := range names {
		s, err := openShard(dir, name, path, firstRef[name])
		if err != nil {
			return fail(err)
		}
		shards = append(shards, s)
		for i := range s.sf.Tensors {
			t := &s.sf.Tensors[i]
			if o := owner[t.Name]; o != nil {
				return fail(indexErr(-1, "tensor %q is in two shards, %s and %s", t.Name, o.name, s.name))
			}
			owner[t.Name] = s
			e := mapped[t.Name]
			switch {
			case e == nil:
				return fail(indexErr(-1, "tensor %q of shard %s is missing from the weight_map", t.Name, s.name))
			case e.shard != s.name:
				return fail(indexErr(e.keyOff, "tensor %q is in shard %s, but the weight_map maps it to %s", t.Name, s.name, e.shard))
			}
		}
	}
	for _, e := range idx.weightMap {
		if owner[e.tensor] == nil {
			return fail(indexErr(e.keyOff, "tensor %q is mapped to shard %s, which does not hold it", e.tensor, e.shard))
		}
	}
	return merge(dir, shards, idx.meta), nil
}
