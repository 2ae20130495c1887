package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/safetensors"
)

// rawFile builds a file from a header length, the header bytes and the data, without any
// checking: the low-level writer for hostile inputs.
func rawFile(n uint64, header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, n)
	b = append(b, header...)
	return append(b, data...)
}

// headerFile builds a file whose header length is the length of header.
func headerFile(header string, data []byte) []byte {
	return rawFile(uint64(len(header)), header, data)
}

// writeFile runs safetensors.Write and fails the test on error.
func writeFile(t testing.TB, tensors []safetensors.WriteTensor, meta []formats.KV) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := safetensors.Write(&b, tensors, meta); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return b.Bytes()
}

// parse runs NewFile on b.
func parse(b []byte) (*safetensors.File, error) {
	return safetensors.NewFile(bytes.NewReader(b), int64(len(b)))
}

// model builds the formats.Model of the in-memory file b.
func model(b []byte) (*formats.Model, error) {
	return safetensors.Model(formats.NewFile("mem.safetensors", bytes.NewReader(b), int64(len(b))))
}

// realFilesDir returns the directory of the conformance corpus: $KENSA_CORPUS/realfiles,
// or ../../../shared/corpus/realfiles. It returns "" when there is none.
func realFilesDir() string {
	dir := filepath.Join("..", "..", "..", "shared", "corpus", "realfiles")
	if root := os.Getenv("KENSA_CORPUS"); root != "" {
		dir = filepath.Join(root, "realfiles")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	return dir
}

// realFiles returns the *.safetensors files of the corpus, skipping the test when absent.
func realFiles(t testing.TB) []string {
	t.Helper()
	dir := realFilesDir()
	if dir == "" {
		t.Skip("conformance corpus not found: set KENSA_CORPUS to the corpus root (holding realfiles/), or check out ../shared/corpus next to the module")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("no *.safetensors files in %s", dir)
	}
	return files
}

func le16(v ...uint16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

func le32(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

func le64(v ...uint64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}

// writeTemp writes b to dir/name.
func writeTemp(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyValues returns kvs without their Offset and Length, for comparisons.
func keyValues(kvs []formats.KV) []formats.KV {
	out := make([]formats.KV, len(kvs))
	for i, kv := range kvs {
		out[i] = formats.KV{Key: kv.Key, Value: kv.Value}
	}
	return out
}

// checkSpans checks that every metadata entry's Offset and Length cover `"key":"value"`
// in the file b: those bytes, wrapped in braces, are a JSON object of that one entry.
func checkSpans(t testing.TB, b []byte, kvs []formats.KV) {
	t.Helper()
	for _, kv := range kvs {
		if kv.Offset < 8 || kv.Length < 5 || kv.Offset > int64(len(b)) || kv.Length > int64(len(b))-kv.Offset {
			t.Fatalf("metadata %q: span [%d, +%d) outside the %d-byte file", kv.Key, kv.Offset, kv.Length, len(b))
		}
		span := b[kv.Offset : kv.Offset+kv.Length]
		var m map[string]string
		if err := json.Unmarshal(append(append([]byte{'{'}, span...), '}'), &m); err != nil || len(m) != 1 || m[kv.Key] != kv.Value {
			t.Fatalf("metadata %q = %q: span %q reads as %q (%v)", kv.Key, kv.Value, span, m, err)
		}
	}
}
