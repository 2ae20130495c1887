package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/internal/corpus"
)

// FuzzReader feeds arbitrary bytes to the reader and, when they parse, calls every accessor
// and decodes every tensor. Nothing may panic, hang or allocate beyond the input's size.
func FuzzReader(f *testing.F) {
	for _, opt := range []WriteOptions{{Version: 3}, {Version: 1}, {Version: 2, BigEndian: true}} {
		var buf bytes.Buffer
		if err := Write(&buf, sampleKVs(), sampleTensors(), &opt); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	for _, c := range hostileCases() {
		if len(c.data) < 1<<16 {
			f.Add(c.data)
		}
	}
	// One tensor of every ggml type, one block each, so mutations reach every decoder.
	var all []WriteTensor
	for id := uint32(0); id < 64; id++ {
		dt, ok := DTypeOf(id)
		if !ok {
			continue
		}
		data := make([]byte, dt.BlockBytes())
		for i := range data {
			data[i] = byte(i*37 + int(id))
		}
		all = append(all, WriteTensor{Name: dt.String(), DType: dt, Shape: []int64{int64(dt.BlockElems())}, Data: data})
	}
	var buf bytes.Buffer
	if err := Write(&buf, nil, all, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	// Real files, when small: large seeds slow every mutation down.
	if root := corpus.Root(); root != "" {
		ms, _ := filepath.Glob(filepath.Join(root, "realfiles", "*.gguf"))
		for _, p := range ms {
			if b, err := os.ReadFile(p); err == nil && len(b) <= 64<<10 {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		gf, err := parse(b)
		if err != nil {
			if _, ok := err.(*formats.FormatError); !ok {
				t.Fatalf("error %v is %T, not *formats.FormatError", err, err)
			}
			return
		}
		_ = gf.ByteOrder()
		_ = gf.Lookup("general.architecture")
		mf := formats.NewFile("fuzz.gguf", bytes.NewReader(b), int64(len(b)))
		if _, err := gf.Layout(mf); err != nil {
			t.Fatalf("Layout: %v", err)
		}
		m := gf.Model(mf)
		_ = m.Parameters()
		budget := int64(1 << 22) // elements decoded per input, so aliasing tensors cannot make one input slow
		for i := range m.Tensors {
			ti := &m.Tensors[i]
			_ = ti.Rows()
			if ti.Offset < 0 || ti.Offset+ti.Length > int64(len(b)) {
				t.Fatalf("tensor %q [%d,+%d) outside the %d-byte input", ti.Name, ti.Offset, ti.Length, len(b))
			}
			if !ti.DType.Decodable() || ti.Elements() > budget {
				continue
			}
			budget -= ti.Elements()
			rd, err := m.NewTensorReader(ti)
			if err != nil {
				t.Fatalf("NewTensorReader(%q): %v", ti.Name, err)
			}
			vals := make([]float32, ti.Elements())
			if err := rd.ReadElements(0, vals); err != nil {
				t.Fatalf("ReadElements(%q): %v", ti.Name, err)
			}
			if rl := ti.RowLen(); rl > 0 && ti.Rows() > 0 {
				if err := rd.ReadRows(ti.Rows()-1, vals[:rl]); err != nil {
					t.Fatalf("ReadRows(%q): %v", ti.Name, err)
				}
			}
		}
	})
}

// The corpus's real files: the overlapping-offsets file parses and its layout problems are
// reported; the mangled file is rejected with an offset.
func TestCorpusLayout(t *testing.T) {
	dir := corpus.Dir(t, "realfiles")
	p := filepath.Join(dir, "threatflux-test_model.overlapping-offsets.gguf")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skip(err)
	}
	f, err := parse(b)
	if err != nil {
		t.Fatalf("overlapping-offsets file: %v", err)
	}
	is, err := f.Layout(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var alias, trailing int64
	for _, i := range is {
		switch i.Kind {
		case IssueAlias:
			alias++
		case IssueTrailing:
			trailing += i.Length
		}
	}
	if alias == 0 || trailing != 512512 {
		t.Errorf("overlapping-offsets: %d alias issues, %d trailing bytes; want aliasing and 512512 unreferenced bytes\n%+v", alias, trailing, is)
	}

	mb, err := os.ReadFile(filepath.Join(dir, "ushure-ggml-vocab-bert-bge.MANGLED.gguf"))
	if err != nil {
		t.Skip(err)
	}
	_, err = parse(mb)
	fe, ok := err.(*formats.FormatError)
	if !ok || fe.Offset <= 0 || fe.Offset >= int64(len(mb)) {
		t.Errorf("mangled file: error %v, want a FormatError at an offset inside the file", err)
	}
}

// BenchmarkHeaderFalcon parses the header of the real falcon vocabulary file (65k tokens
// and 64k merges).
func BenchmarkHeaderFalcon(b *testing.B) {
	dir := corpus.Dir(b, "realfiles")
	data, err := os.ReadFile(filepath.Join(dir, "llamacpp-ggml-vocab-falcon.v2.gguf"))
	if err != nil {
		b.Skip(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
