package report

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/scan"
)

// rawControl returns the first control or format character (other than newline) of s,
// or -1.
func rawControl(s string) rune {
	for _, r := range s {
		if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			return r
		}
	}
	return -1
}

// TestTextHostile checks that strings from hostile files reach the terminal escaped: no
// control or bidi characters, valid UTF-8, and no ESC at all without colour.
func TestTextHostile(t *testing.T) {
	out := string(render(t, FormatText, testReport(), Options{Rules: testRules()}))
	if r := rawControl(out); r != -1 {
		t.Errorf("text output contains raw control character %U", r)
	}
	if !utf8.ValidString(out) {
		t.Error("text output is not valid UTF-8")
	}
	if strings.Contains(out, "\x1b") {
		t.Error("text output without colour contains ESC")
	}
	for _, want := range []string{
		`"blk.2.attn_q.weight\x1b]0;pwned\a\x1b[2J"`, // the tensor name, quoted and escaped
		`"ffn_down\u202egnp.exe"`,                    // the bidi override in the role
		`"__metadata__.tok\xff\xfe\xc0"`,             // invalid UTF-8 in a key
		`"<script>alert(1)</script>"`,                // a trigger token is always quoted
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks the escaped form %s", want)
		}
	}
}

// TestTextColor checks that colour is used only when asked for, and that the coloured
// output has no control characters other than the writer's own SGR sequences.
func TestTextColor(t *testing.T) {
	out := string(render(t, FormatText, testReport(), Options{Color: true, FailOn: scan.High, Rules: testRules()}))
	for _, want := range []string{"\x1b[1;31mKS-PAYLOAD-LSB\x1b[0m", "\x1b[1;31mBACKDOORED\x1b[0m", "\x1b[1;32mCLEAN\x1b[0m"} {
		if !strings.Contains(out, want) {
			t.Errorf("coloured output lacks %q", want)
		}
	}
	if r := rawControl(stripANSI(out)); r != -1 {
		t.Errorf("coloured output contains raw control character %U outside SGR sequences", r)
	}
	plain := string(render(t, FormatText, testReport(), Options{FailOn: scan.High, Rules: testRules()}))
	if got := stripANSI(out); got != plain {
		t.Error("coloured output without its SGR sequences differs from the plain output")
	}
}

// TestTextLimits checks the per-rule cap and its lifting by Verbose.
func TestTextLimits(t *testing.T) {
	r := &scan.Report{Targets: []scan.Target{manyFindings(200)}}
	for _, tc := range []struct {
		verbose bool
		shown   int
		more    string
	}{
		{false, 5 * MaxPerRule, "... and 35 more KS-NEURON-OUTLIER"},
		{true, 200, ""},
	} {
		out := string(render(t, FormatText, r, Options{Verbose: tc.verbose}))
		if got := strings.Count(out, "    KS-NEURON-OUTLIER  "); got != tc.shown {
			t.Errorf("verbose=%v: %d findings shown, want %d", tc.verbose, got, tc.shown)
		}
		if tc.more != "" && strings.Count(out, tc.more) != 5 {
			t.Errorf("verbose=%v: want %q once per severity", tc.verbose, tc.more)
		}
		if tc.more == "" && strings.Contains(out, "more KS-") {
			t.Errorf("verbose=%v: output has a \"more\" line", tc.verbose)
		}
	}
}

// TestTextOrderAndSummary checks targets worst first, severities most severe first and
// the summary's counts against the fail-on level.
func TestTextOrderAndSummary(t *testing.T) {
	out := string(render(t, FormatText, testReport(), Options{FailOn: scan.Medium, Rules: testRules()}))
	order := []string{"vendor/llama-3-8b-edit.Q4_K_M.gguf  gguf  BACKDOORED", "hostile/", "models/clean.safetensors", "broken/truncated.gguf", "Summary"}
	last := -1
	for _, s := range order {
		i := strings.Index(out, s)
		if i < last {
			t.Errorf("%q appears before the previous target", s)
		}
		last = i
	}
	sev := []string{"  CRITICAL (1)", "  HIGH (8)", "  MEDIUM (2)", "  LOW (1)", "  INFO (1)"}
	last = -1
	for _, s := range sev {
		i := strings.Index(out, s)
		if i < 0 || i < last {
			t.Errorf("severity group %q missing or out of order", s)
		}
		last = i
	}
	for _, want := range []string{
		"4 targets: 1 backdoored, 1 suspicious, 1 clean, 1 error",
		"15 findings: 1 critical, 8 high, 3 medium, 2 low, 1 info",
		"12 findings at or above medium (--fail-on) in 2 targets",
		"1 target could not be scanned",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
}

// TestTextWidth checks that the fixture's lines stay within textWidth columns: long
// locations are split and messages wrapped.
func TestTextWidth(t *testing.T) {
	out := string(render(t, FormatText, testReport(), Options{Verbose: true, Rules: testRules()}))
	for i, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > textWidth && !strings.Contains(line, `\x`) {
			t.Errorf("line %d has %d columns (> %d): %q", i+1, n, textWidth, line)
		}
	}
}

func TestWrapWords(t *testing.T) {
	for _, tc := range []struct {
		in    string
		width int
		want  []string
	}{
		{"", 10, []string{""}},
		{"one two three", 7, []string{"one two", "three"}},
		{"abcdefghijkl x", 5, []string{"abcde", "fghij", "kl x"}},
		{"  a   b  ", 10, []string{"a b"}},
	} {
		got := wrapWords(tc.in, tc.width)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("wrapWords(%q, %d) = %q, want %q", tc.in, tc.width, got, tc.want)
		}
	}
}

func TestHumanUnits(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{humanCount(0), "0"},
		{humanCount(999), "999"},
		{humanCount(262_144), "262K"},
		{humanCount(8_030_261_248), "8.03B"},
		{humanCount(999_999), "1M"},
		{humanBytes(512), "512 B"},
		{humanBytes(1 << 20), "1.0 MiB"},
		{humanBytes(4_920_733_824), "4.6 GiB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
