package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/pickle"
)

func sbu(s string) string { return "\x8c" + string(rune(len(s))) + s }

// tensorOps pickles torch._utils._rebuild_tensor_v2(persid, off, size, stride, False, OrderedDict())
// for a storage key with the given size and stride (protocol-2 ops, pickle.Parse-able).
func tensorOps(storageType, key string, numel int, off int, size, stride []int) string {
	var b strings.Builder
	b.WriteString("ctorch._utils\n_rebuild_tensor_v2\n(")
	b.WriteString("(" + sbu("storage") + "ctorch\n" + storageType + "\n" + sbu(key) + sbu("cpu") + "K" + string(rune(numel)) + "tQ")
	b.WriteString("K" + string(rune(off)))
	b.WriteString("(")
	for _, s := range size {
		b.WriteString("K" + string(rune(s)))
	}
	b.WriteString("t(")
	for _, s := range stride {
		b.WriteString("K" + string(rune(s)))
	}
	b.WriteString("t\x89ccollections\nOrderedDict\n)RtR")
	return b.String()
}

type member struct {
	name   string
	data   []byte
	deflat bool
}

func writeZip(t *testing.T, ms []member) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range ms {
		meth := zip.Store
		if m.deflat {
			meth = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: meth})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(m.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func f32s(n int) []byte {
	b := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(0x3f800000+i))
	}
	return b
}

func TestZip(t *testing.T) {
	pkl := "\x80\x02ccollections\nOrderedDict\n)R(" + sbu("net") + "}(" +
		sbu("fc.weight") + tensorOps("FloatStorage", "0", 6, 0, []int{2, 3}, []int{3, 1}) +
		sbu("fc.bias") + tensorOps("FloatStorage", "0", 6, 4, []int{2}, []int{1}) +
		sbu("t.weight") + tensorOps("FloatStorage", "0", 6, 0, []int{3, 2}, []int{1, 3}) +
		sbu("z.weight") + tensorOps("HalfStorage", "1", 4, 0, []int{4}, []int{1}) +
		"u" + sbu("payload") + "cposix\nsystem\n" + sbu("id") + "\x85Ru."
	data := writeZip(t, []member{
		{"archive/data.pkl", []byte(pkl), false},
		{"archive/data/0", f32s(6), false},
		{"archive/data/1", make([]byte, 8), true},
		{"archive/version", []byte("3\n"), false},
		{"archive/byteorder", []byte("little"), false},
	})
	f := formats.NewFile("m.pt", bytes.NewReader(data), int64(len(data)))
	m, err := OpenZip(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tensors) != 2 {
		t.Fatalf("tensors %+v", m.Tensors)
	}
	w := m.Tensor("net.fc.weight")
	if w == nil || w.DType != formats.F32 || w.Length != 24 || !bytes.Equal(data[w.Offset:w.Offset+w.Length], f32s(6)) {
		t.Fatalf("weight %+v", w)
	}
	if b := m.Tensor("net.fc.bias"); b == nil || b.Offset != w.Offset+16 || b.Length != 8 {
		t.Fatalf("bias %+v", b)
	}
	var skipped []string
	for _, kv := range m.Header {
		if kv.Key == KeySkipped {
			skipped = append(skipped, kv.Value.(string))
		}
	}
	if len(skipped) != 2 || !strings.Contains(skipped[0], "non-contiguous") || !strings.Contains(skipped[1], "compressed") {
		t.Errorf("skipped %q", skipped)
	}
	var found bool
	for _, c := range m.Code {
		if c.Module == "posix" && c.Name == "system" && c.Called && c.Member == "archive/data.pkl" && data[c.Offset] == 'R' {
			found = true
		}
	}
	if !found {
		t.Errorf("payload not recorded at its REDUCE: %+v", m.Code)
	}
}

func TestLegacy(t *testing.T) {
	magic := "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
	obj := "\x80\x02}(" + sbu("w") + tensorOps("FloatStorage", "k0", 3, 0, []int{3}, []int{1}) + "u."
	keys := "\x80\x02]" + sbu("k0") + "a."
	var b bytes.Buffer
	b.WriteString(magic + "\x80\x02M\xe9\x03." + "\x80\x02}." + obj + keys)
	binary.Write(&b, binary.LittleEndian, int64(3))
	start := b.Len()
	b.Write(f32s(3))
	data := b.Bytes()
	if !Match(data[:16]) {
		t.Fatal("legacy magic not matched")
	}
	m, err := Open(formats.NewFile("m.pth", bytes.NewReader(data), int64(len(data))))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tensors) != 1 || m.Tensors[0].Offset != int64(start) || m.Tensors[0].Length != 12 {
		t.Fatalf("tensors %+v header %+v", m.Tensors, m.Header)
	}
}

func TestCarve7z(t *testing.T) {
	data := append([]byte("7z\xbc\xaf\x27\x1c\x00\x04garbage"), []byte("\x80\x02cos\nsystem\n"+sbu("id")+"\x85R\x00\x00")...)
	m, err := Open7z(formats.NewFile("x.pt", bytes.NewReader(data), int64(len(data))))
	if err != nil || m.Format != "7z" {
		t.Fatal(err)
	}
	var ok, broke bool
	for _, c := range m.Code {
		ok = ok || (c.Module == "os" && c.Called && data[c.Offset] == 'R')
	}
	for _, kv := range m.Header {
		broke = broke || kv.Key == pickle.BreakKey
	}
	if !ok || !broke {
		t.Errorf("code %+v header %+v", m.Code, m.Header)
	}
}
