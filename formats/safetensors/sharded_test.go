package safetensors_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
)

const (
	shard1 = "model-00001-of-00002.safetensors"
	shard2 = "model-00002-of-00002.safetensors"
)

func f32s(name string, shape []int64, vals ...float32) safetensors.WriteTensor {
	var b []byte
	for _, v := range vals {
		b = append(b, le32(math.Float32bits(v))...)
	}
	return safetensors.WriteTensor{Name: name, DType: formats.F32, Shape: shape, Data: b}
}

var pt = []formats.KV{{Key: "format", Value: "pt"}}

// shardFiles returns the two shards of the test checkpoint.
func shardFiles(t testing.TB) map[string][]byte {
	return map[string][]byte{
		shard1: writeFile(t, []safetensors.WriteTensor{
			f32s("model.embed", []int64{2, 2}, 1, 2, 3, 4),
			{Name: "model.layers.0.w", DType: formats.BF16, Shape: []int64{3}, Data: le16(0x3f80, 0x4000, 0x4040)},
		}, pt),
		shard2: writeFile(t, []safetensors.WriteTensor{
			f32s("model.layers.1.w", []int64{2}, 5, 6),
			f32s("lm_head", []int64{1}, 7),
		}, pt),
	}
}

// weightMap is the standard weight_map, as ordered (tensor, raw JSON value) pairs.
func weightMap() [][2]string {
	return [][2]string{
		{"lm_head", `"` + shard2 + `"`},
		{"model.embed", `"` + shard1 + `"`},
		{"model.layers.0.w", `"` + shard1 + `"`},
		{"model.layers.1.w", `"` + shard2 + `"`},
	}
}

// indexJSON builds an index with the given weight_map entries.
func indexJSON(wm [][2]string) string {
	var b strings.Builder
	b.WriteString("{\n  \"metadata\": {\n    \"total_size\": 13843441408,\n    \"format\": \"pt\",\n    \"ratio\": 0.5,\n    \"tags\": [\"a\", 1, true, null],\n    \"extra\": {\"k\": \"v\"}\n  },\n  \"weight_map\": {")
	for i, e := range wm {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n    %q: %s", e[0], e[1])
	}
	b.WriteString("\n  }\n}\n")
	return b.String()
}

// checkpoint writes the shards and the index into a new directory.
func checkpoint(t testing.TB, index string) string {
	dir := t.TempDir()
	for name, b := range shardFiles(t) {
		writeTemp(t, dir, name, b)
	}
	writeTemp(t, dir, "model.safetensors.index.json", []byte(index))
	return dir
}

func TestSharded(t *testing.T) {
	dir := checkpoint(t, indexJSON(weightMap()))
	writeTemp(t, dir, "config.json", []byte(`{}`))
	writeTemp(t, dir, "consolidated.safetensors", []byte("not read: not in the index"))
	m, err := formats.Open(dir)
	if err != nil {
		t.Fatalf("formats.Open: %v", err)
	}
	defer m.Close()
	if m.Format != "safetensors" || m.Path != dir {
		t.Errorf("format %q path %q", m.Format, m.Path)
	}
	var files []string
	for _, f := range m.Files {
		files = append(files, filepath.Base(f.Path))
	}
	if want := []string{shard1, shard2}; !reflect.DeepEqual(files, want) {
		t.Errorf("files = %v, want %v", files, want)
	}
	var names []string
	for _, ti := range m.Tensors {
		names = append(names, filepath.Base(ti.File)+":"+ti.Name)
	}
	// shard order, then header (canonical) order within each shard
	want := []string{shard1 + ":model.embed", shard1 + ":model.layers.0.w", shard2 + ":lm_head", shard2 + ":model.layers.1.w"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("tensors = %v\nwant %v", names, want)
	}
	wantMeta := []formats.KV{
		{Key: "index.total_size", Value: int64(13843441408)},
		{Key: "index.format", Value: "pt"},
		{Key: "index.ratio", Value: 0.5},
		{Key: "index.tags", Value: []any{"a", int64(1), true, nil}},
		{Key: "index.extra", Value: map[string]any{"k": "v"}},
		{Key: "format", Value: "pt"}, // from both shards, kept once
	}
	if !reflect.DeepEqual(keyValues(m.Metadata), wantMeta) {
		t.Errorf("metadata = %#v\nwant %#v", m.Metadata, wantMeta)
	}
	// tensors of both shards decode through the model
	for name, want := range map[string][]float32{"model.embed": {1, 2, 3, 4}, "model.layers.0.w": {1, 2, 3}, "lm_head": {7}, "model.layers.1.w": {5, 6}} {
		ti := m.Tensor(name)
		r, err := m.NewTensorReader(ti)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := make([]float32, ti.Elements())
		if err := r.ReadElements(0, got); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, %v; want %v", name, got, err, want)
		}
	}
}

func TestShardedErrors(t *testing.T) {
	outside := t.TempDir()
	outsideShard := writeTemp(t, outside, "x.safetensors", shardFiles(t)[shard2])
	replace := func(tensor, value string) [][2]string {
		wm := weightMap()
		for i := range wm {
			if wm[i][0] == tensor {
				wm[i][1] = value
			}
		}
		return wm
	}
	drop := func(tensor string) [][2]string {
		var wm [][2]string
		for _, e := range weightMap() {
			if e[0] != tensor {
				wm = append(wm, e)
			}
		}
		return wm
	}
	tests := []struct {
		name   string
		index  string           // model.safetensors.index.json
		setup  func(dir string) // changes to the directory
		format string           // of the FormatError
		err    error
		offset string // the error's offset is that of this text in the index ("" for -1)
		at     int64  // or this offset, when not 0
		msg    string
	}{
		{name: "mapped tensor missing from its shard",
			index:  indexJSON(append(weightMap(), [2]string{"ghost", `"` + shard1 + `"`})),
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"ghost": "` + shard1 + `"`,
			msg: `tensor "ghost" is mapped to shard ` + shard1 + `, which does not hold it`},
		{name: "tensor in two shards", index: indexJSON(weightMap()),
			setup: func(dir string) {
				writeTemp(t, dir, shard2, writeFile(t, []safetensors.WriteTensor{f32s("model.layers.1.w", []int64{2}, 5, 6), f32s("lm_head", []int64{1}, 7), f32s("model.embed", []int64{1}, 0)}, nil))
			},
			format: "safetensors-index", err: formats.ErrInvalid,
			msg: `tensor "model.embed" is in two shards, ` + shard1 + ` and ` + shard2},
		{name: "shard tensor missing from the weight_map", index: indexJSON(drop("lm_head")),
			format: "safetensors-index", err: formats.ErrInvalid,
			msg: `tensor "lm_head" of shard ` + shard2 + ` is missing from the weight_map`},
		{name: "tensor mapped to the wrong shard", index: indexJSON(replace("lm_head", `"`+shard1+`"`)),
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"lm_head": "` + shard1 + `"`,
			msg: `tensor "lm_head" is in shard ` + shard2 + `, but the weight_map maps it to ` + shard1},
		{name: "parent directory", index: indexJSON(replace("lm_head", `"../x.safetensors"`)),
			setup:  func(dir string) { writeTemp(t, filepath.Dir(dir), "x.safetensors", shardFiles(t)[shard2]) },
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"../x.safetensors"`,
			msg: `shard name "../x.safetensors" is not a plain file name in the model directory`},
		{name: "absolute path", index: indexJSON(replace("lm_head", fmt.Sprintf("%q", outsideShard))),
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"` + outsideShard,
			msg: fmt.Sprintf("shard name %q is not a plain file name", outsideShard)},
		{name: "sub-directory", index: indexJSON(replace("lm_head", `"sub/x.safetensors"`)),
			setup: func(dir string) {
				os.Mkdir(filepath.Join(dir, "sub"), 0o755)
				writeTemp(t, dir, "sub/x.safetensors", shardFiles(t)[shard2])
			},
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"sub/x.safetensors"`,
			msg: `shard name "sub/x.safetensors" is not a plain file name`},
		{name: "symlink leaving the directory", index: indexJSON(weightMap()),
			setup: func(dir string) {
				os.Remove(filepath.Join(dir, shard2))
				if err := os.Symlink(outsideShard, filepath.Join(dir, shard2)); err != nil {
					t.Skip("no symlinks:", err)
				}
			},
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"` + shard2,
			msg: `shard "` + shard2 + `" is a symbolic link that cannot be opened inside the model directory`},
		{name: "relative symlink leaving the directory", index: indexJSON(weightMap()),
			setup: func(dir string) {
				writeTemp(t, filepath.Dir(dir), "y.safetensors", shardFiles(t)[shard2])
				os.Remove(filepath.Join(dir, shard2))
				if err := os.Symlink("../y.safetensors", filepath.Join(dir, shard2)); err != nil {
					t.Skip("no symlinks:", err)
				}
			},
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"` + shard2,
			msg: "is a symbolic link"},
		{name: "missing shard", index: indexJSON(weightMap()),
			setup:  func(dir string) { os.Remove(filepath.Join(dir, shard2)) },
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"` + shard2,
			msg: `shard "` + shard2 + `" does not exist`},
		{name: "FIFO shard", index: indexJSON(weightMap()),
			setup: func(dir string) {
				os.Remove(filepath.Join(dir, shard2))
				if err := mkfifo(filepath.Join(dir, shard2)); err != nil {
					t.Skip("no FIFOs:", err)
				}
			},
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"` + shard2,
			msg: `shard "` + shard2 + `" is not a regular file`},
		{name: "directory shard", index: indexJSON(weightMap()),
			setup: func(dir string) {
				os.Remove(filepath.Join(dir, shard2))
				os.Mkdir(filepath.Join(dir, shard2), 0o755)
			},
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"` + shard2,
			msg: `shard "` + shard2 + `" is not a regular file`},
		{name: "FIFO index", index: indexJSON(weightMap()),
			setup: func(dir string) {
				os.Remove(filepath.Join(dir, "model.safetensors.index.json"))
				if err := mkfifo(filepath.Join(dir, "model.safetensors.index.json")); err != nil {
					t.Skip("no FIFOs:", err)
				}
			},
			format: "safetensors-index", err: formats.ErrInvalid, msg: "the index is not a regular file"},
		{name: "corrupt shard", index: indexJSON(weightMap()),
			setup: func(dir string) {
				b := shardFiles(t)[shard2]
				writeTemp(t, dir, shard2, b[:len(b)-1])
			},
			format: "safetensors", err: formats.ErrTruncated, msg: `tensor "model.layers.1.w": data_offsets [4, 12] end past the 11-byte data section`},
		{name: "non-string shard", index: indexJSON(replace("lm_head", `{"file": "`+shard2+`"}`)),
			format: "safetensors-index", err: formats.ErrInvalid, offset: `{"file"`,
			msg: `weight_map: shard of tensor "lm_head" is an object, want a string`},
		{name: "null shard", index: indexJSON(replace("lm_head", `null`)),
			format: "safetensors-index", err: formats.ErrInvalid, offset: "null,", msg: `shard of tensor "lm_head" is null`},
		{name: "duplicate weight_map key", index: indexJSON(append(weightMap(), [2]string{"lm_head", `"` + shard2 + `"`})),
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"lm_head": "` + shard2 + `"` + "\n",
			msg: `weight_map: duplicate key "lm_head"`},
		{name: "duplicate top-level key", index: `{"weight_map": {}, "weight_map": {}}`,
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"weight_map": {}}`, msg: `duplicate key "weight_map"`},
		{name: "no weight_map", index: `{"metadata": {}}`,
			format: "safetensors-index", err: formats.ErrInvalid, offset: `{"metadata"`, msg: "index has no weight_map"},
		{name: "empty weight_map", index: `{"weight_map": {}}`,
			format: "safetensors-index", err: formats.ErrInvalid, offset: `{"weight_map"`, msg: "weight_map maps no tensors"},
		{name: "weight_map array", index: `{"weight_map": []}`,
			format: "safetensors-index", err: formats.ErrInvalid, offset: `[]`, msg: "weight_map is an array, want an object"},
		{name: "index not an object", index: `[]`,
			format: "safetensors-index", err: formats.ErrInvalid, offset: `[]`, msg: "index is not a JSON object"},
		{name: "index cut short", index: `{"weight_map": {"a": "b`,
			format: "safetensors-index", err: formats.ErrInvalid, offset: `"b`, msg: "weight_map: unterminated string"},
		{name: "index trailing data", index: `{"weight_map": {"a": "b"}} x`,
			format: "safetensors-index", err: formats.ErrInvalid, offset: `x`, msg: "after the index object"},
		{name: "index invalid UTF-8", index: "{\"weight_map\": {\"a\xff\": \"b\"}}",
			format: "safetensors-index", err: formats.ErrInvalid, offset: "\xff", msg: "not valid UTF-8"},
		{name: "index nested too deep", index: `{"x": ` + strings.Repeat("[", 100_000),
			format: "safetensors-index", err: formats.ErrTooLarge, at: 6 + 63, msg: "nested deeper than 64"},
		{name: "index metadata number out of range", index: `{"metadata": {"n": 1e999}, "weight_map": {}}`,
			format: "safetensors-index", err: formats.ErrInvalid, offset: `1e999`, msg: "out of the float64 range"},
		{name: "index symlink leaving the directory", index: indexJSON(weightMap()),
			setup: func(dir string) {
				p := writeTemp(t, outside, "index.json", []byte(indexJSON(weightMap())))
				os.Remove(filepath.Join(dir, "model.safetensors.index.json"))
				if err := os.Symlink(p, filepath.Join(dir, "model.safetensors.index.json")); err != nil {
					t.Skip("no symlinks:", err)
				}
			},
			format: "safetensors-index", err: formats.ErrInvalid, msg: "cannot open the index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := checkpoint(t, tt.index)
			if tt.setup != nil {
				tt.setup(dir)
			}
			m, err := formats.Open(dir)
			if err == nil {
				m.Close()
				t.Fatalf("formats.Open succeeded, want %v error", tt.err)
			}
			var fe *formats.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, tt.err) {
				t.Fatalf("error %q (%T), want a *formats.FormatError wrapping %v", err, err, tt.err)
			}
			wantOff := int64(-1)
			if tt.offset != "" {
				wantOff = int64(strings.Index(tt.index, tt.offset))
			}
			if tt.at != 0 {
				wantOff = tt.at
			}
			if tt.format == "safetensors" {
				wantOff = fe.Offset // an offset in the shard, checked by the reader tests
			}
			if fe.Format != tt.format || fe.Offset != wantOff || !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("error %q:\nformat %q offset %d, want %q at %d with a message containing %q", err, fe.Format, fe.Offset, tt.format, wantOff, tt.msg)
			}
			if fe.File == "" || !strings.HasPrefix(fe.File, dir) {
				t.Errorf("error names file %q, want one in %s", fe.File, dir)
			}
		})
	}
}

// TestOpenDir covers directories without an index and the choice of index.
func TestOpenDir(t *testing.T) {
	shards := shardFiles(t)
	tests := []struct {
		name    string
		files   map[string]string // name -> shard1/shard2 (the content) or raw content
		ok      bool
		files2  []string // the model's files
		tensors int
		errMsg  string
	}{
		{name: "nothing", files: map[string]string{"config.json": "{}", "model.gguf": "GGUF"}},
		{name: "one file", files: map[string]string{"model.safetensors": shard1, "README.md": "hi"}, ok: true,
			files2: []string{"model.safetensors"}, tensors: 2},
		{name: "two files", files: map[string]string{"b.safetensors": shard1, "a.safetensors": shard2}, ok: true,
			files2: []string{"a.safetensors", "b.safetensors"}, tensors: 4},
		{name: "two files with a duplicate tensor", files: map[string]string{"b.safetensors": shard1, "a.safetensors": shard1},
			errMsg: `b.safetensors: offset 40: tensor "model.embed" is also in a.safetensors`},
		{name: "corrupt file", files: map[string]string{"a.safetensors": "not a model file"},
			errMsg: "a.safetensors: offset 0: header length 8029109312199880558 exceeds the limit"},
		{name: "preferred index", files: map[string]string{"model.safetensors.index.json": indexJSON(weightMap()),
			"other.safetensors.index.json": "garbage", shard1: shard1, shard2: shard2}, ok: true,
			files2: []string{shard1, shard2}, tensors: 4},
		{name: "one other index", files: map[string]string{"diffusion_pytorch_model.safetensors.index.json": indexJSON(weightMap()),
			shard1: shard1, shard2: shard2}, ok: true, files2: []string{shard1, shard2}, tensors: 4},
		{name: "several other indexes", files: map[string]string{"a.safetensors.index.json": "{}", "b.safetensors.index.json": "{}", shard1: shard1},
			errMsg: "several shard indexes and no model.safetensors.index.json: a.safetensors.index.json, b.safetensors.index.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, c := range tt.files {
				b, ok := shards[c]
				if !ok {
					b = []byte(c)
				}
				writeTemp(t, dir, name, b)
			}
			m, ok, err := safetensors.OpenDir(dir)
			if tt.errMsg != "" {
				var fe *formats.FormatError
				if err == nil || !strings.Contains(err.Error(), tt.errMsg) || !errors.As(err, &fe) {
					t.Fatalf("OpenDir error = %v, want one containing %q", err, tt.errMsg)
				}
				return
			}
			if err != nil || ok != tt.ok {
				t.Fatalf("OpenDir = %v, %v; want ok=%v", ok, err, tt.ok)
			}
			if !ok {
				if m != nil {
					t.Errorf("model %v with ok=false", m)
				}
				if _, err := formats.Open(dir); !errors.Is(err, formats.ErrNoModel) {
					t.Errorf("formats.Open error = %v, want ErrNoModel", err)
				}
				return
			}
			defer m.Close()
			var files []string
			for _, f := range m.Files {
				files = append(files, filepath.Base(f.Path))
			}
			if !reflect.DeepEqual(files, tt.files2) || len(m.Tensors) != tt.tensors || m.Path != dir {
				t.Errorf("files %v, %d tensors, path %q; want %v, %d, %q", files, len(m.Tensors), m.Path, tt.files2, tt.tensors, dir)
			}
		})
	}
}

// TestOpenDirSymlinkOutside checks that a *.safetensors symbolic link that leaves the
// directory is refused also when there is no index.
func TestOpenDirSymlinkOutside(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	target := writeTemp(t, outside, "x.safetensors", shardFiles(t)[shard1])
	if err := os.Symlink(target, filepath.Join(dir, "model.safetensors")); err != nil {
		t.Skip("no symlinks:", err)
	}
	_, _, err := safetensors.OpenDir(dir)
	var fe *formats.FormatError
	if !errors.As(err, &fe) || !errors.Is(err, formats.ErrInvalid) || fe.Format != "safetensors" ||
		fe.File != filepath.Join(dir, "model.safetensors") || !strings.Contains(fe.Msg, "symbolic link") {
		t.Errorf("OpenDir error = %v, want ErrInvalid naming the symbolic link", err)
	}
}

// TestShardSymlinkInside checks that a shard that is a symbolic link to a file inside the
// directory is accepted.
func TestShardSymlinkInside(t *testing.T) {
	dir := checkpoint(t, indexJSON(weightMap()))
	if err := os.Rename(filepath.Join(dir, shard2), filepath.Join(dir, "real.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.bin", filepath.Join(dir, shard2)); err != nil {
		t.Skip("no symlinks:", err)
	}
	m, err := formats.Open(dir)
	if err != nil {
		t.Fatalf("formats.Open: %v", err)
	}
	defer m.Close()
	if len(m.Tensors) != 4 {
		t.Errorf("%d tensors, want 4", len(m.Tensors))
	}
}

// TestShardedClosesFiles checks that a failed OpenDir leaves no shard open (on Linux, by
// counting /proc/self/fd).
func TestShardedClosesFiles(t *testing.T) {
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	dir := checkpoint(t, indexJSON(append(weightMap(), [2]string{"ghost", `"` + shard2 + `"`})))
	before := fds()
	for range 10 {
		if _, _, err := safetensors.OpenDir(dir); err == nil {
			t.Fatal("OpenDir succeeded")
		}
	}
	if after := fds(); after > before {
		t.Errorf("%d file descriptors before, %d after 10 failed OpenDir calls", before, after)
	}
}
