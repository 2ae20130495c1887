package pickle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

// asm assembles a pickle from opcodes and arguments: strings are raw bytes.
func asm(parts ...string) []byte { return []byte(strings.Join(parts, "")) }

func u32(n uint32) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], n)
	return string(b[:])
}

func u64(n uint64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	return string(b[:])
}

func sbu(s string) string { return "\x8c" + string(rune(len(s))) + s } // SHORT_BINUNICODE (len < 128)

type want struct {
	mod, name string
	called    bool
	off       int64
}

func has(code []formats.CodeRef, w want) bool {
	for _, c := range code {
		if c.Module == w.mod && c.Name == w.name && c.Called == w.called && (w.off < 0 || c.Offset == w.off) {
			return true
		}
	}
	return false
}

func TestTricks(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		want    []want
		broken  bool
		streams int
	}{
		{"proto0 GLOBAL REDUCE", asm("cos\nsystem\n(S'id'\ntR."), []want{{"os", "system", false, 0}, {"os", "system", true, 19}}, false, 1},
		{"STACK_GLOBAL memo", asm("\x80\x04", sbu("builtins"), "\x94", sbu("exec"), "\x94", "h\x00h\x01\x93", sbu("1"), "\x85R."),
			[]want{{"builtins", "exec", false, -1}, {"builtins", "exec", true, -1}}, false, 1},
		{"INST", asm("(S'id'\nios\nsystem\n."), []want{{"os", "system", true, 7}}, false, 1},
		{"OBJ", asm("\x80\x02(cbuiltins\neval\nX\x01\x00\x00\x001o."), []want{{"builtins", "eval", true, 24}}, false, 1},
		{"NEWOBJ_EX", asm("\x80\x04", sbu("subprocess"), sbu("Popen"), "\x93", sbu("id"), "\x85}\x92."), []want{{"subprocess", "Popen", true, -1}}, false, 1},
		{"EXT code", asm("\x80\x02\x82\x07)R."), []want{{"copyreg", "extension code 7", true, 5}}, false, 1},
		{"getattr chain", asm("\x80\x02cbuiltins\ngetattr\ncbuiltins\n__import__\n", sbu("os"), "\x85R", sbu("system"), "\x86R", sbu("id"), "\x85R."),
			[]want{{"os", "system", true, -1}, {"builtins", "getattr", true, -1}}, false, 1},
		{"nested REDUCE", asm("\x80\x02cos\nsystem\ncbuiltins\nstr\n", sbu("id"), "\x85R\x85R."), []want{{"os", "system", true, -1}}, false, 1},
		{"payload then garbage", asm("\x80\x02cos\nsystem\n", sbu("id"), "\x85R\xff\xff"), []want{{"os", "system", true, 18}}, true, 1},
		{"second pickle after STOP", asm("\x80\x02K\x01.", "\x80\x02cos\nsystem\n", sbu("id"), "\x85R."), []want{{"os", "system", true, 23}}, false, 2},
		{"BUILD on a global", asm("\x80\x02cmod\nthing\n}b."), []want{{"mod", "thing", true, 14}}, false, 1},
		{"frame and bytes8", asm("\x80\x05\x95", u64(12), "\x96", u64(2), "ab\x8e", u64(1), "c\x86."), nil, false, 1},
		{"binunicode8 too long", asm("\x80\x04\x8d", u64(1<<62), "x."), nil, true, 1},
		{"binstring huge", asm("\x80\x02X", u32(0xffffffff), "."), nil, true, 1},
		{"memo get undefined", asm("\x80\x02h\x05."), nil, true, 1},
		{"pop empty", asm("\x80\x020."), nil, true, 1},
		{"stop empty", asm("\x80\x02."), nil, true, 1},
		{"deep marks", append(bytes.Repeat([]byte("("), 100000), '.'), nil, true, 1},
		{"deep lists", append(append([]byte("\x80\x02"), bytes.Repeat([]byte("]"), 50000)...), '.'), nil, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ss := ParseAll(tc.data, 0, "f.pkl", "", Limits{}, MaxStreams)
			if len(ss) != tc.streams {
				t.Fatalf("%d streams, want %d", len(ss), tc.streams)
			}
			var code []formats.CodeRef
			var err error
			for _, s := range ss {
				code = append(code, s.Code...)
				if s.Err != nil {
					err = s.Err
				}
			}
			for _, w := range tc.want {
				if !has(code, w) {
					t.Errorf("missing %+v in %+v", w, code)
				}
			}
			if (err != nil) != tc.broken {
				t.Errorf("err = %v, want broken=%v", err, tc.broken)
			}
			var fe *formats.FormatError
			if err != nil && !errors.As(err, &fe) {
				t.Errorf("error %v is not a FormatError", err)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	data := append([]byte("\x80\x02"), bytes.Repeat([]byte("N0"), 1000)...)
	s := Parse(append(data, "N."...), 0, "f", "", Limits{MaxOps: 100})
	if !errors.Is(s.Err, formats.ErrTooLarge) {
		t.Errorf("op limit: %v", s.Err)
	}
	memo := []byte("\x80\x04")
	for i := 0; i < 200; i++ {
		memo = append(memo, 'N', 0x94)
	}
	s = Parse(append(memo, '.'), 0, "f", "", Limits{MaxMemo: 50})
	if !errors.Is(s.Err, formats.ErrTooLarge) {
		t.Errorf("memo limit: %v", s.Err)
	}
	// a list appended to itself through the memo renders finitely
	s = Parse([]byte("\x80\x02]q\x00h\x00a."), 0, "f", "", Limits{})
	if s.Err != nil || len(Render(s.Value, 64)) > 210 {
		t.Errorf("self-referencing list: %v %q", s.Err, Render(s.Value, 64))
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		head string
		ok   bool
	}{{"\x80\x02}q\x00", true}, {"\x80\x05\x95", true}, {"\x80\x07", false}, {"cos\nsystem\n", true},
		{"(dp0\nS'a'", true}, {"copyright 2024", false}, {"{\"a\":1}", false}, {"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", false}} {
		if Match([]byte(tc.head)) != tc.ok {
			t.Errorf("Match(%q) = %v", tc.head, !tc.ok)
		}
	}
}
