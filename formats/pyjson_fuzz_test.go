package formats_test

import (
	"errors"
	"testing"

	"github.com/kensa-scan/kensa/formats"
)

// FuzzPyJSON checks, on any input, that the Python-compatible decoder does not panic; that
// its errors are *FormatErrors at an offset inside the input; that it agrees with
// encoding/json on valid JSON and with itself across DecodePyJSON, ValidPyJSON,
// PyJSONMembers and CompatJSON; and that every member's byte range holds the member's value.
func FuzzPyJSON(f *testing.F) {
	for _, s := range pyJSONSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`))
	f.Add([]byte("\xEF\xBB\xBF{}"))
	f.Add([]byte(`{"a": "\ud800\udc00\ud800", "b": -Infinity}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<10 {
			// Long inputs add nothing the short ones miss (nesting beyond the limit takes
			// 513 bytes) and make the fuzzer's minimization of new inputs slow.
			t.Skip()
		}
		v, err := formats.DecodePyJSON(b)
		if err != nil {
			var fe *formats.FormatError
			if !errors.As(err, &fe) || fe.Offset < 0 || fe.Offset > int64(len(b)) {
				t.Fatalf("DecodePyJSON(%q): error %v is not a FormatError inside the input", b, err)
			}
			if !errors.Is(err, formats.ErrInvalid) && !errors.Is(err, formats.ErrTruncated) && !errors.Is(err, formats.ErrTooLarge) {
				t.Fatalf("DecodePyJSON(%q): error %v has no category", b, err)
			}
		}
		if verr := formats.ValidPyJSON(b); (verr == nil) != (err == nil) || verr != nil && verr.Error() != err.Error() {
			t.Fatalf("ValidPyJSON(%q) = %v, DecodePyJSON %v", b, verr, err)
		}
		checkAgainstEncodingJSON(t, b)

		ms, merr := formats.PyJSONMembers(b, func(string) bool { return true })
		obj, isObj := v.(map[string]any)
		if err == nil && isObj {
			if merr != nil {
				t.Fatalf("PyJSONMembers(%q) = %v on an object DecodePyJSON accepts", b, merr)
			}
			last := map[string]any{}
			for _, m := range ms {
				last[m.Key] = m.Value
				mv, mverr := formats.DecodePyJSON(b[m.Offset : m.Offset+m.Length])
				if mverr != nil || !sameJSON(mv, m.Value) {
					t.Fatalf("PyJSONMembers(%q): member %q range [%d,+%d) decodes to %v, %v; member value %v", b, m.Key, m.Offset, m.Length, mv, mverr, m.Value)
				}
			}
			if !sameJSON(last, obj) {
				t.Fatalf("PyJSONMembers(%q) = %v, DecodePyJSON %v", b, last, obj)
			}
		}
		if err != nil && merr == nil {
			t.Fatalf("PyJSONMembers(%q) accepts what DecodePyJSON rejects (%v)", b, err)
		}
		for _, m := range ms {
			if m.Offset < 0 || m.Length < 0 || m.Offset+m.Length > int64(len(b)) {
				t.Fatalf("PyJSONMembers(%q): member %+v outside the input", b, m)
			}
		}
		if _, err := formats.PyJSONMembers(b, nil); (err == nil) != (merr == nil) {
			t.Fatalf("PyJSONMembers(%q) with and without values disagree: %v, %v", b, err, merr)
		}
	})
}
