package formats_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

func nan() float64 { return math.NaN() }

// sameJSON is reflect.DeepEqual with NaN equal to NaN.
func sameJSON(a, b any) bool {
	switch a := a.(type) {
	case float64:
		bf, ok := b.(float64)
		return ok && (a == bf && math.Signbit(a) == math.Signbit(bf) || math.IsNaN(a) && math.IsNaN(bf))
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) || (a == nil) != (bs == nil) {
			return false
		}
		for i := range a {
			if !sameJSON(a[i], bs[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) || (a == nil) != (bm == nil) {
			return false
		}
		for k, v := range a {
			w, ok := bm[k]
			if !ok || !sameJSON(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// Inputs that Python's json.loads accepts, and the values it returns (as Go values).
func TestPyJSONAccepts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{`NaN`, nan()},
		{`Infinity`, math.Inf(1)},
		{`-Infinity`, math.Inf(-1)},
		{` [NaN, Infinity, -Infinity] `, []any{nan(), math.Inf(1), math.Inf(-1)}},
		{`{"a": NaN, "b": {"c": -Infinity}}`, map[string]any{"a": nan(), "b": map[string]any{"c": math.Inf(-1)}}},
		{`1e400`, math.Inf(1)},
		{`-1e400`, math.Inf(-1)},
		{`1e-400`, 0.0},
		{`-0`, math.Copysign(0, -1)},
		{`0.5e+3`, 500.0},
		{`12E-1`, 1.2},
		{`{"k": 1, "k": 2}`, map[string]any{"k": 2.0}}, // last wins
		{`"\ud83d\ude00"`, "😀"},
		{`"\ud800"`, "\uFFFD"},        // lone surrogate: Python keeps it, Go cannot
		{`"\ud800\u0041"`, "\uFFFDA"}, // high surrogate then not a low one
		{`"\udc00\ud800"`, "\uFFFD\uFFFD"},
		{`"a\"\\\/\b\f\n\r\t"`, "a\"\\/\b\f\n\r\t"},
		{`"\u00e9\u00C9"`, "éÉ"},
		{"\"\x7f\u2028é\"", "\x7f\u2028é"}, // DEL and non-ASCII are not control characters
		{"\t\r\n null \n", nil},
		{`[]`, []any{}},
		{`{}`, map[string]any{}},
		{`[[[]]]`, []any{[]any{[]any{}}}},
		{`true`, true},
		{`false`, false},
		{strings.Repeat("[", formats.PyJSONMaxDepth) + strings.Repeat("]", formats.PyJSONMaxDepth), nested(formats.PyJSONMaxDepth)},
	} {
		got, err := formats.DecodePyJSON([]byte(tc.in))
		if err != nil || !sameJSON(got, tc.want) {
			t.Errorf("DecodePyJSON(%.60q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
		if err := formats.ValidPyJSON([]byte(tc.in)); err != nil {
			t.Errorf("ValidPyJSON(%.60q) = %v", tc.in, err)
		}
	}
}

func nested(n int) any {
	v := []any{}
	for i := 1; i < n; i++ {
		v = []any{v}
	}
	return v
}

// Inputs that Python's json.loads rejects: the error's offset and category, and what parsed
// before the error.
func TestPyJSONRejects(t *testing.T) {
	for _, tc := range []struct {
		in      string
		off     int64
		cat     error
		partial any
	}{
		{``, 0, formats.ErrTruncated, nil},
		{`   `, 3, formats.ErrTruncated, nil},
		{`nan`, 0, formats.ErrInvalid, nil},
		{`inf`, 0, formats.ErrInvalid, nil},
		{`+Infinity`, 0, formats.ErrInvalid, nil},
		{`-NaN`, 0, formats.ErrInvalid, nil},
		{`Infinit`, 7, formats.ErrTruncated, nil},
		{`NaNa`, 3, formats.ErrInvalid, nan()}, // extra data after a complete value
		{`[1,]`, 3, formats.ErrInvalid, []any{1.0}},
		{`{"a": 1,}`, 8, formats.ErrInvalid, map[string]any{"a": 1.0}},
		{`[01]`, 2, formats.ErrInvalid, []any{0.0}},
		{`[1.]`, 2, formats.ErrInvalid, []any{1.0}},
		{`[1e]`, 2, formats.ErrInvalid, []any{1.0}},
		{`[-]`, 1, formats.ErrInvalid, []any{}},
		{`[.5]`, 1, formats.ErrInvalid, []any{}},
		{`{'a': 1}`, 1, formats.ErrInvalid, map[string]any{}},
		{`{"a" 1}`, 5, formats.ErrInvalid, map[string]any{}},
		{`{"a": 1 "b": 2}`, 8, formats.ErrInvalid, map[string]any{"a": 1.0}},
		{`{1: 2}`, 1, formats.ErrInvalid, map[string]any{}},
		{`// c` + "\n1", 0, formats.ErrInvalid, nil},
		{"\xEF\xBB\xBF{}", 0, formats.ErrInvalid, nil},
		{"\"a\x01\"", 2, formats.ErrInvalid, nil},
		{"\"a\nb\"", 2, formats.ErrInvalid, nil},
		{"\"\xff\"", 1, formats.ErrInvalid, nil},
		{"\"\xed\xa0\x80\"", 1, formats.ErrInvalid, nil}, // UTF-8 of a surrogate is invalid
		{`"\x41"`, 1, formats.ErrInvalid, nil},
		{`"\u12G4"`, 1, formats.ErrInvalid, nil},
		{`"\u+123"`, 1, formats.ErrInvalid, nil},
		{`"abc`, 0, formats.ErrTruncated, nil},
		{`"ab\`, 0, formats.ErrTruncated, nil},
		{`[1, 2`, 5, formats.ErrTruncated, []any{1.0, 2.0}},
		{`[1, [2, [3, x`, 12, formats.ErrInvalid, []any{1.0, []any{2.0, []any{3.0}}}},
		{`{"a": [1, {"b": 2, "c": tru}`, 24, formats.ErrInvalid, map[string]any{"a": []any{1.0, map[string]any{"b": 2.0}}}},
		{`{"a": [1, {"b": 2, "c": tru`[:26], 26, formats.ErrTruncated, map[string]any{"a": []any{1.0, map[string]any{"b": 2.0}}}},
		{`[] []`, 3, formats.ErrInvalid, []any{}},
		{`{"a": "x"} x`, 11, formats.ErrInvalid, map[string]any{"a": "x"}},
		{strings.Repeat("[", formats.PyJSONMaxDepth+1), formats.PyJSONMaxDepth, formats.ErrTooLarge, nested(formats.PyJSONMaxDepth)},
	} {
		got, err := formats.DecodePyJSON([]byte(tc.in))
		var fe *formats.FormatError
		if !errors.As(err, &fe) || fe.Offset != tc.off || !errors.Is(err, tc.cat) || fe.Format != "json" {
			t.Errorf("DecodePyJSON(%.60q) error = %v, want %v at offset %d", tc.in, err, tc.cat, tc.off)
		}
		if !sameJSON(got, tc.partial) {
			t.Errorf("DecodePyJSON(%.60q) partial value = %#v, want %#v", tc.in, got, tc.partial)
		}
		if verr := formats.ValidPyJSON([]byte(tc.in)); verr == nil || err == nil || verr.Error() != err.Error() {
			t.Errorf("ValidPyJSON(%.60q) = %v, want %v", tc.in, verr, err)
		}
	}
}

// On valid JSON (RFC 8259, so UTF-8), DecodePyJSON returns what encoding/json does.
func TestPyJSONMatchesEncodingJSON(t *testing.T) {
	for _, in := range pyJSONSeeds {
		checkAgainstEncodingJSON(t, []byte(in))
	}
}

// checkAgainstEncodingJSON checks DecodePyJSON against encoding/json on b when b is valid
// JSON that encoding/json can decode, and CompatJSON against DecodePyJSON.
func checkAgainstEncodingJSON(t *testing.T, b []byte) {
	t.Helper()
	got, err := formats.DecodePyJSON(b)
	if json.Valid(b) && utf8.Valid(b) {
		var want any
		if jerr := json.Unmarshal(b, &want); jerr == nil {
			if err != nil && !errors.Is(err, formats.ErrTooLarge) {
				t.Fatalf("DecodePyJSON(%.80q): %v; encoding/json accepts it", b, err)
			}
			if err == nil && !sameJSON(got, want) {
				t.Fatalf("DecodePyJSON(%.80q) = %#v, encoding/json %#v", b, got, want)
			}
		}
	}
	// What Python accepts, CompatJSON turns into what encoding/json accepts, and the other
	// way round (for valid UTF-8 within the depth limit).
	cb, offs := formats.CompatJSON(b)
	if len(offs) == 0 && string(cb) != string(b) {
		t.Fatalf("CompatJSON(%.80q) changed the input without reporting a rewrite", b)
	}
	if utf8.Valid(b) && !errors.Is(err, formats.ErrTooLarge) {
		if (err == nil) != json.Valid(cb) {
			t.Fatalf("DecodePyJSON(%.80q) error %v, but json.Valid(CompatJSON) = %v (%.80q)", b, err, json.Valid(cb), cb)
		}
	}
	if err == nil {
		var cv any
		if jerr := json.Unmarshal(cb, &cv); jerr == nil && !sameJSON(withoutNonFinite(got), cv) {
			t.Fatalf("CompatJSON(%.80q) decodes to %#v, DecodePyJSON with NaN as null to %#v", b, cv, withoutNonFinite(got))
		}
	}
}

// withoutNonFinite replaces NaN and ±Inf by nil.
func withoutNonFinite(v any) any {
	switch v := v.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
	case []any:
		out := make([]any, len(v))
		for i := range v {
			out[i] = withoutNonFinite(v[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = withoutNonFinite(x)
		}
		return out
	}
	return v
}

var pyJSONSeeds = []string{
	`{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "rms_norm_eps": 1e-05, "rope_scaling": null, "tie_word_embeddings": false}`,
	`{"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}", "added_tokens_decoder": {"0": {"content": "<unk>", "special": true}}}`,
	`{"chat_template": [{"name": "default", "template": "{{ x }}"}, {"name": "tool_use", "template": "{{ y }}"}]}`,
	`[1, -2, 3.25, -0.0, 1E10, 2e-3, 123456789012345678901234567890, 0, -0]`,
	`"\u0000\u001f\"\\\/\b\f\n\r\t \u00e9 \ud83d\ude00 \ud800 \udfff x"`,
	`{"": "", " ": [[], {}], "é": {"ü": null}}`,
	`[true, false, null, "true"]`,
	" \t\n\r{ \"a\" : [ 1 , 2 ] } \n",
	`{"model": {"type": "Unigram", "vocab": [["<unk>", 0], ["a", -1.5]]}}`,
	`{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN Infinity -Infinity \"NaN\""}`,
	`{"x": NaN, "chat_template": "{{ bos_token }}"}`,
	`[1, 2`,
	`{"a": "\q"}`,
	`{"k": 1, "k": 2}`,
	`1e400`,
}

func TestPyJSONMembers(t *testing.T) {
	in := `{"x": NaN, "chat_template": "{{ t }}", "big": [1, 2, 3], "chat_template": [{"name": "a", "template": "A"}]}`
	want := func(k string) bool { return k == "chat_template" }
	ms, err := formats.PyJSONMembers([]byte(in), want)
	if err != nil || len(ms) != 4 {
		t.Fatalf("PyJSONMembers = %+v, %v", ms, err)
	}
	for _, m := range ms {
		if raw := in[m.Offset : m.Offset+m.Length]; m.Partial || (m.Value != nil) != want(m.Key) {
			t.Errorf("member %+v (%q)", m, raw)
		}
	}
	if raw := in[ms[1].Offset : ms[1].Offset+ms[1].Length]; raw != `"{{ t }}"` || ms[1].Value != "{{ t }}" {
		t.Errorf("chat_template member %+v holds %q", ms[1], raw)
	}
	if raw := in[ms[3].Offset : ms[3].Offset+ms[3].Length]; !strings.HasPrefix(raw, `[{"name"`) || !strings.HasSuffix(raw, `}]`) {
		t.Errorf("second chat_template member holds %q", raw)
	}
	if raw := in[ms[2].Offset : ms[2].Offset+ms[2].Length]; raw != `[1, 2, 3]` {
		t.Errorf("big member holds %q", raw)
	}

	// a break after the template keeps it; a wanted container cut short is partial
	cut := `{"chat_template": "{{ t }}", "x": nan, "y": 1}`
	ms, err = formats.PyJSONMembers([]byte(cut), want)
	var fe *formats.FormatError
	if !errors.As(err, &fe) || fe.Offset != int64(strings.Index(cut, "nan")) || len(ms) != 1 || ms[0].Value != "{{ t }}" {
		t.Errorf("PyJSONMembers(cut) = %+v, %v", ms, err)
	}
	cut = `{"a": 1, "chat_template": [{"name": "a", "template": "A"}, {"name": "b", "template": "B`
	ms, err = formats.PyJSONMembers([]byte(cut), want)
	wantPartial := []any{map[string]any{"name": "a", "template": "A"}, map[string]any{"name": "b"}}
	if !errors.Is(err, formats.ErrTruncated) || len(ms) != 2 || !ms[1].Partial || !sameJSON(ms[1].Value, wantPartial) ||
		ms[1].Offset != int64(strings.Index(cut, "[")) || ms[1].Offset+ms[1].Length != int64(strings.LastIndex(cut, `"B`)) {
		t.Errorf("PyJSONMembers(truncated list) = %+v, %v", ms, err)
	}
	// an unwanted container cut short is not reported
	ms, err = formats.PyJSONMembers([]byte(`{"a": 1, "b": [1, 2`), want)
	if err == nil || len(ms) != 1 || ms[0].Key != "a" || ms[0].Value != nil {
		t.Errorf("PyJSONMembers(unwanted partial) = %+v, %v", ms, err)
	}

	for _, in := range []string{`[1]`, `"s"`, `1`, `null`, `true`, `NaN`} {
		if _, err := formats.PyJSONMembers([]byte(in), want); !errors.Is(err, formats.ErrInvalid) || !strings.Contains(err.Error(), "not an object") {
			t.Errorf("PyJSONMembers(%s) = %v, want not an object", in, err)
		}
	}
	for _, in := range []string{``, `{`, `x`, `{"a": 1} 2`, `{"a": 1,}`} {
		if _, err := formats.PyJSONMembers([]byte(in), nil); err == nil {
			t.Errorf("PyJSONMembers(%q): no error", in)
		}
	}
	if ms, err := formats.PyJSONMembers([]byte(` {} `), nil); err != nil || len(ms) != 0 {
		t.Errorf("PyJSONMembers({}) = %v, %v", ms, err)
	}
}

func TestCompatJSON(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		offs    []int64
	}{
		{`{"a": 1}`, `{"a": 1}`, nil},
		{`NaN`, `null`, []int64{0}},
		{`[NaN,Infinity,-Infinity, 1]`, `[null,null,null, 1]`, []int64{1, 5, 14}},
		{`{"NaN": "Infinity -Infinity", "s": "\"NaN", "v": NaN}`, `{"NaN": "Infinity -Infinity", "s": "\"NaN", "v": null}`, []int64{49}},
		{`"\\" NaN`, `"\\" null`, []int64{5}},
		{`-NaN - Infinity`, `-null - null`, []int64{1, 7}},
		{`"unterminated NaN`, `"unterminated NaN`, nil},
	} {
		out, offs := formats.CompatJSON([]byte(tc.in))
		if string(out) != tc.out || !reflect.DeepEqual(offs, tc.offs) {
			t.Errorf("CompatJSON(%s) = %s, %v; want %s, %v", tc.in, out, offs, tc.out, tc.offs)
		}
	}
	// a tokenizer.json Unigram score of NaN decodes into a struct
	in := []byte(`{"model": {"type": "Unigram", "vocab": [["a", NaN], ["b", -1.5]]}}`)
	out, offs := formats.CompatJSON(in)
	var v struct {
		Model struct {
			Vocab [][]json.RawMessage `json:"vocab"`
		} `json:"model"`
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v.Model.Vocab) != 2 || string(v.Model.Vocab[0][1]) != "null" || len(offs) != 1 || string(in[offs[0]:offs[0]+3]) != "NaN" {
		t.Errorf("CompatJSON tokenizer: %v %+v %v", err, v, offs)
	}
}
