package safetensors_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
)

// listing is the `kensa inspect --json` shape of the corpus' .expected.json files.
type listing struct {
	Format   string
	Metadata []formats.KV // in file order
	Tensors  []listedTensor
}

type listedTensor struct {
	Name   string  `json:"name"`
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	Offset int64   `json:"offset"`
	Length int64   `json:"length"`
}

// readListing decodes an .expected.json, keeping the order of the metadata keys.
func readListing(b []byte) (*listing, error) {
	var raw struct {
		Format   string          `json:"format"`
		Metadata json.RawMessage `json:"metadata"`
		Tensors  []listedTensor  `json:"tensors"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	l := &listing{Format: raw.Format, Tensors: raw.Tensors}
	d := json.NewDecoder(bytes.NewReader(raw.Metadata))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("metadata is not an object: %v %v", tok, err)
	}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return nil, err
		}
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		l.Metadata = append(l.Metadata, formats.KV{Key: k.(string), Value: v})
	}
	return l, nil
}

// listModel lists a model the way the .expected.json files do.
func listModel(m *formats.Model) *listing {
	l := &listing{Format: m.Format, Metadata: keyValues(m.Metadata), Tensors: []listedTensor{}}
	if l.Metadata == nil {
		l.Metadata = []formats.KV{}
	}
	for _, t := range m.Tensors {
		l.Tensors = append(l.Tensors, listedTensor{Name: t.Name, DType: t.DType.String(), Shape: t.Shape, Offset: t.Offset, Length: t.Length})
	}
	return l
}

func TestConformance(t *testing.T) {
	for _, path := range realFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want, err := os.ReadFile(path + ".expected.json")
			if err != nil {
				t.Fatalf("no expected listing: %v", err)
			}
			wl, err := readListing(want)
			if err != nil {
				t.Fatalf("%s.expected.json: %v", path, err)
			}
			if wl.Metadata == nil {
				wl.Metadata = []formats.KV{}
			}
			for i := range wl.Tensors {
				if wl.Tensors[i].Shape == nil {
					wl.Tensors[i].Shape = []int64{}
				}
			}

			// through formats.Open, as the scanner does
			m, err := formats.Open(path)
			if err != nil {
				t.Fatalf("formats.Open: %v", err)
			}
			defer m.Close()
			got := listModel(m)
			if !reflect.DeepEqual(got, wl) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(wl)
				t.Errorf("listing differs\n got %.2000s\nwant %.2000s", gj, wj)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			checkSpans(t, raw, m.Metadata)
			if m.Path != path || len(m.Files) != 1 || m.Files[0].Path != path {
				t.Errorf("model path %q, files %d: want %q and one file", m.Path, len(m.Files), path)
			}

			// through the file-level API
			f, err := safetensors.Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			st, _ := os.Stat(path)
			if f.Size != st.Size() || f.DataOffset != 8+int64(f.HeaderLen) || f.HeaderLen%8 != 0 {
				t.Errorf("size %d, data offset %d, header %d: want size %d, 8+header, header a multiple of 8", f.Size, f.DataOffset, f.HeaderLen, st.Size())
			}
			for i, tt := range f.Tensors {
				if tt.Offset != f.DataOffset+tt.Begin || tt.Length != tt.End-tt.Begin || f.Tensor(tt.Name) != &f.Tensors[i] {
					t.Errorf("tensor %q: offset %d length %d begin %d end %d inconsistent", tt.Name, tt.Offset, tt.Length, tt.Begin, tt.End)
				}
			}

			// every real file decodes
			buf := make([]float32, 4096)
			for i := range m.Tensors {
				ti := &m.Tensors[i]
				r, err := m.NewTensorReader(ti)
				if err != nil {
					t.Fatalf("NewTensorReader(%s): %v", ti.Name, err)
				}
				for start := int64(0); start < ti.Elements(); start += int64(len(buf)) {
					n := min(int64(len(buf)), ti.Elements()-start)
					if err := r.ReadElements(start, buf[:n]); err != nil {
						t.Fatalf("ReadElements(%s, %d): %v", ti.Name, start, err)
					}
				}
			}
		})
	}
}

// TestConformanceRewrite re-serialises every real file with Write: the result parses to
// the same tensors and data, byte-identical to the original.
func TestConformanceRewrite(t *testing.T) {
	for _, path := range realFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := parse(b)
			if err != nil {
				t.Fatal(err)
			}
			var wt []safetensors.WriteTensor
			for _, tt := range f.Tensors {
				wt = append(wt, safetensors.WriteTensor{Name: tt.Name, DType: tt.DType, Shape: tt.Shape, Data: b[tt.Offset : tt.Offset+tt.Length]})
			}
			out := writeFile(t, wt, f.Metadata)
			g, err := parse(out)
			if err != nil {
				t.Fatalf("re-written file: %v", err)
			}
			if len(g.Tensors) != len(f.Tensors) {
				t.Fatalf("re-written file has %d tensors, want %d", len(g.Tensors), len(f.Tensors))
			}
			for _, gt := range g.Tensors {
				ft := f.Tensor(gt.Name)
				if ft == nil || ft.DType != gt.DType || !reflect.DeepEqual(ft.Shape, gt.Shape) ||
					!bytes.Equal(out[gt.Offset:gt.Offset+gt.Length], b[ft.Offset:ft.Offset+ft.Length]) {
					t.Errorf("tensor %q differs after rewrite", gt.Name)
				}
			}
			if !reflect.DeepEqual(keyValues(g.Metadata), keyValues(f.Metadata)) {
				t.Errorf("metadata %v, want %v", g.Metadata, f.Metadata)
			}
			// Every corpus file was written by the reference serializer or one that lays
			// files out the same way (tinygrad, candle), so Write must reproduce it exactly.
			if !bytes.Equal(out, b) {
				t.Errorf("Write output (%d bytes) is not byte-identical to the original (%d bytes)", len(out), len(b))
			}
		})
	}
}
