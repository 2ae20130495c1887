package pickle

import (
	"bytes"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

func FuzzReader(f *testing.F) {
	f.Add([]byte("cos\nsystem\n(S'id'\ntR."))
	f.Add([]byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94\x8c\x01b\x94h\x00h\x01\x93)R."))
	f.Add([]byte("\x80\x02]q\x00h\x00a(K\x01K\x02eX\x01\x00\x00\x00a}\x86\x81."))
	f.Fuzz(func(t *testing.T, data []byte) {
		ss := ParseAll(data, 0, "f.pkl", "", Limits{MaxOps: 1 << 16}, MaxStreams)
		for _, s := range ss {
			_ = Render(s.Value, 64)
		}
		if Match(data) {
			m, err := Open(formats.NewFile("f.pkl", bytes.NewReader(data), int64(len(data))))
			if err == nil {
				m.Close()
			}
		}
	})
}
