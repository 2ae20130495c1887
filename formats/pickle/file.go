package pickle

import (
	"fmt"

	"github.com/kensa-scan/kensa/formats"
)

func init() {
	formats.Register(formats.Format{Name: "pickle", Match: Match, Open: Open, Priority: 50})
}

// Match reports whether a file's first bytes start a plain pickle (see LooksLikePickle).
// PyTorch's legacy format, which also starts with PROTO 2, is left to formats/pytorch.
func Match(head []byte) bool {
	if IsTorchLegacy(head) {
		return false
	}
	return LooksLikePickle(head)
}

// torchMagic is the LONG1 opcode and argument that opens a legacy torch.save file:
// PROTO 2, LONG1 10 bytes, 0x1950a86a20f9469cfc6c.
var torchMagic = []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

// IsTorchLegacy reports whether head starts with the legacy torch.save magic number pickle.
func IsTorchLegacy(head []byte) bool {
	if len(head) < len(torchMagic) {
		return false
	}
	for i, c := range torchMagic {
		if head[i] != c {
			return false
		}
	}
	return true
}

// MaxStreams bounds the pickles read back to back from one file or member.
const MaxStreams = 64

// Open reads every pickle of a plain pickle file. A stream that breaks is not an error:
// the code seen before the break is kept and the break is recorded in Header
// ("pickle.break", with its offset).
func Open(f *formats.File) (*formats.Model, error) {
	data, err := f.Bytes(0, f.Size, nil)
	if err != nil {
		return nil, err
	}
	if !LooksLikePickle(data) {
		return nil, formats.Errorf("pickle", 0, formats.ErrInvalid, "file does not start like a pickle")
	}
	m := &formats.Model{Format: "pickle", Path: f.Path, Files: []*formats.File{f}}
	streams := ParseAll(data, 0, f.Path, "", Limits{}, MaxStreams)
	AddStreams(m, streams, "")
	return m, nil
}

// AddStreams appends the code of streams to m and records, in Header, how many streams
// were read and where one broke.
func AddStreams(m *formats.Model, streams []*Stream, member string) {
	prefix := "pickle"
	if member != "" {
		prefix = member
	}
	for i, s := range streams {
		m.Code = append(m.Code, s.Code...)
		m.Header = append(m.Header, formats.KV{Key: fmt.Sprintf("%s.stream.%d", prefix, i), Value: fmt.Sprintf("protocol %d, %d opcodes", s.Protocol, s.Ops), Offset: s.Start, Length: s.End - s.Start})
		if s.Err != nil {
			off := s.End
			if fe, ok := s.Err.(*formats.FormatError); ok {
				off = fe.Offset
			}
			m.Header = append(m.Header, formats.KV{Key: BreakKey, Value: s.Err.Error(), Offset: off})
		}
	}
}

// BreakKey is the Header key of a pickle stream that broke before its STOP.
const BreakKey = "pickle.break"
