package pytorch

import (
	"archive/zip"
	"bytes"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "a/data.pkl", Method: zip.Store})
	w.Write([]byte("\x80\x02}(\x8c\x01w" + tensorOps("FloatStorage", "0", 2, 0, []int{2}, []int{1}) + "u."))
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: "a/data/0", Method: zip.Store})
	w.Write(make([]byte, 8))
	zw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.\x80\x02}.\x80\x02}.\x80\x02]."))
	f.Add([]byte("7z\xbc\xaf\x27\x1c\x80\x02cos\nsystem\n."))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := formats.NewFile("f.pt", bytes.NewReader(data), int64(len(data)))
		var m *formats.Model
		var err error
		switch {
		case Match7z(data):
			m, err = Open7z(file)
		case len(data) > 4 && string(data[:4]) == "PK\x03\x04":
			m, err = OpenZip(file)
		default:
			m, err = Open(file)
		}
		if err != nil {
			return
		}
		for _, ti := range m.Tensors {
			if ti.Offset < 0 || ti.Length < 0 || ti.Offset+ti.Length > int64(len(data)) || ti.Length != ti.Elements()*int64(ti.DType.BlockBytes()) {
				t.Fatalf("tensor %+v outside the %d-byte file", ti, len(data))
			}
		}
	})
}
