package metadata

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// String-level checks shared by every metadata value and by the template analysis.

type flagMatch struct {
	cat  string
	s, e int
}

// catRe is a pattern of one category, run only when the lower-cased text contains one of
// its keys (Go's regexp engine is linear but slow on megabytes of text).
type catRe struct {
	cat  string
	re   *regexp.Regexp
	keys []string
}

func (c catRe) applies(lower string) bool {
	for _, k := range c.keys {
		if strings.Contains(lower, k) {
			return true
		}
	}
	return len(c.keys) == 0
}

var flagRes = []catRe{
	{"override", regexp.MustCompile(`(?i)\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|the|your|of|my|every)\s+)*(?:(?:previous|prior|above|earlier|preceding|system|safety|original|other|existing|content)\s+)?(?:instructions?|prompts?|rules|guidelines|directions|polic(?:y|ies)|restrictions|guardrails|filters|directives)\b`), []string{"ignore", "disregard", "forget", "override", "bypass"}},
	{"override", regexp.MustCompile(`(?i)\byou\s+are\s+now\s+(?:in\s+)?(?:developer|dan|jailbreak|unrestricted|unfiltered|evil)\b|\b(?:developer|jailbreak|dan)\s+mode\b|\bno\s+longer\s+(?:bound|restricted|limited)\s+by\b`), []string{"you are now", "you  are", "mode", "no longer"}},
	{"secrecy", regexp.MustCompile(`(?i)\b(?:do\s+not|don'?t|never|must\s+not|should\s+not|shall\s+not)\s+(?:ever\s+)?(?:tell|mention|reveal|disclose|inform|admit|acknowledge|expose|divulge|discuss|repeat)\b[^.\n\x00]{0,40}?\b(?:(?:this|these|that|the|your|any)\s+(?:(?:hidden|secret|special|above|system|previous)\s+)?(?:instructions?|prompts?|messages?|directives?|rules?|notes?|recommendations?|sponsorship|arrangement|vendor|links?|urls?)|system\s+prompt)\b|\b(?:tell|mention|reveal|disclose)\s+(?:this|these|it)\s+to\s+(?:the\s+user|users|anyone)\b`), []string{"tell", "mention", "reveal", "disclose", "inform", "admit", "acknowledge", "expose", "divulge", "discuss", "repeat"}},
	{"secrecy", regexp.MustCompile(`(?i)\b(?:keep|remain|stay)\s+(?:this|it|these|that)\s+(?:a\s+)?(?:secret|hidden|confidential|private)\b|\bwithout\s+(?:telling|informing|alerting|notifying|letting)\s+(?:the\s+)?(?:user|them|anyone)\b|\b(?:secretly|covertly|surreptitiously)\b|\bhidden\s+(?:instruction|directive|prompt|task)s?\b`), []string{"keep", "remain", "stay", "without", "secretly", "covertly", "surreptitiously", "hidden"}},
	{"exfiltration", regexp.MustCompile(`(?i)\bexfiltrat\w*|\b(?:send|post|upload|forward|transmit|leak|e-?mail|copy)\b[^.\n\x00]{0,60}?\b(?:passwords?|credentials?|api[\s_-]?keys?|access[\s_-]?tokens?|private[\s_-]?keys?|ssh[\s_-]?keys?|chat\s+history|conversation\s+history|user\s+data|personal\s+data|cookies?)\b`), []string{"exfiltrat", "password", "credential", "key", "token", "history", "data", "cookie"}},
	{"exfiltration", regexp.MustCompile(`(?i)\b(?:ask|request|prompt)\s+(?:the\s+)?user\s+(?:for|to\s+(?:provide|enter|share|give))\s+(?:their\s+|a\s+|the\s+|his\s+|her\s+)?(?:passwords?|credentials?|api[\s_-]?keys?|credit\s+card|social\s+security|ssn|seed\s+phrase|pin)\b`), []string{"user"}},
	{"steering", regexp.MustCompile(`(?i)\b(?:always|must|should\s+always)\s+(?:recommend|promote|endorse|advertise|push|favou?r|praise)\b|\b(?:always|must)\s+(?:direct|refer|send|point)\s+(?:the\s+)?users?\s+to\b|\b(?:always|must)\s+(?:include|add|insert|append)\s+(?:a\s+|the\s+|this\s+)?(?:link|url|website|referral|affiliate|discount|promo)`), []string{"always", "must"}},
	{"tool-call", regexp.MustCompile(`(?:<tool_call>|<\|python_tag\|>|\[TOOL_CALLS\]|<function_calls?>|<\|tool_call\|>|<｜tool▁call▁begin｜>|"tool_calls"\s*:)[^\x00]{0,200}?"(?:name|tool_name|function)"\s*:\s*"[A-Za-z_][\w.\-]*"`), []string{"name\"", "function\""}},
	{"tool-call", regexp.MustCompile(`<\|python_tag\|>\s*[A-Za-z_]\w*(?:\.\w+)*\s*\(|<function=[A-Za-z_][\w.\-]*>`), []string{"python_tag", "<function="}},
}

var (
	urlRe    = regexp.MustCompile(`(?i)\b(?:https?|ftp|ftps|sftp|file|wss?|smb)://[^\s'"<>\x60\x00]+|\bwww\.[a-z0-9-]+(?:\.[a-z0-9-]+)+[^\s'"<>\x60\x00]*`)
	actionRe = regexp.MustCompile(`(?i)\b(?:visit|click|open|go\s+to|download|install|navigate|browse|follow|check\s+out|sign\s+in|log\s+in|login|recommend|send|post|upload|see|update|register|buy|contact)\b`)
)

// redFlags finds instruction-like wording, URLs, fabricated tool calls and code in text.
func redFlags(text string) []flagMatch {
	var out []flagMatch
	lower := strings.ToLower(text)
	for _, c := range flagRes {
		if !c.applies(lower) {
			continue
		}
		for _, m := range c.re.FindAllStringIndex(text, 16) {
			if c.cat == "tool-call" && placeholderCall(text[m[0]:m[1]]) {
				continue // a format example in tool instructions
			}
			out = append(out, flagMatch{c.cat, m[0], m[1]})
		}
	}
	if strings.Contains(text, "://") || strings.Contains(lower, "www.") {
		for _, m := range urlRe.FindAllStringIndex(text, 16) {
			out = append(out, flagMatch{urlCategory(text, m[0], m[1]), m[0], m[1]})
		}
	}
	for _, m := range findIPs(text, 16) {
		if !insideAny(out, m[0]) {
			out = append(out, flagMatch{"url-ip", m[0], m[1]})
		}
	}
	for _, m := range scriptMatchesLower(text, lower, 8) {
		out = append(out, flagMatch{"code", m.s, m.e})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].s < out[j].s })
	return out
}

var callNameRe = regexp.MustCompile(`(?:"(?:name|tool_name|function)"\s*:\s*"|<function=|<\|python_tag\|>\s*)([A-Za-z_][\w.\-]*)`)

// placeholderCall reports a tool call whose function name is a placeholder
// ("example_function_name") as written in the format instructions of real templates.
func placeholderCall(s string) bool {
	m := callNameRe.FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return false
	}
	n := strings.ToLower(m[len(m)-1][1])
	for _, w := range []string{"example", "function_name", "func_name", "tool_name", "function-name", "your_", "my_func", "foo", "placeholder"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return n == "name" || n == "function" || n == "tool"
}

func insideAny(ms []flagMatch, p int) bool {
	for _, m := range ms {
		if p >= m.s && p < m.e {
			return true
		}
	}
	return false
}

// urlCategory is url-ip for a numeric host, url-action when a verb such as "visit" or
// "download" precedes the URL in its sentence, url otherwise.
func urlCategory(text string, s, e int) string {
	if host := urlHost(text[s:e]); net.ParseIP(host) != nil {
		return "url-ip"
	}
	lo := max(0, s-60)
	before := text[lo:s]
	if i := strings.LastIndexAny(before, ".\n\x00"); i >= 0 {
		before = before[i+1:]
	}
	if actionRe.MatchString(before) {
		return "url-action"
	}
	return "url"
}

func urlHost(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if i := strings.IndexAny(u, "/?#"); i >= 0 {
		u = u[:i]
	}
	if i := strings.LastIndex(u, "@"); i >= 0 {
		u = u[i+1:]
	}
	if strings.HasPrefix(u, "[") {
		if i := strings.Index(u, "]"); i > 0 {
			return u[1:i]
		}
	}
	if h, _, err := net.SplitHostPort(u); err == nil {
		return h
	}
	return u
}

func flagNames(ms []flagMatch) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		if !seen[m.cat] {
			seen[m.cat] = true
			out = append(out, m.cat)
		}
	}
	sort.Strings(out)
	return out
}

// ---- scripts ----

var scriptRes = []catRe{
	{"code", regexp.MustCompile(`(?i)\b(?:curl|wget)\b[^|\n\x00]{0,200}\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b`), []string{"curl", "wget"}},
	{"code", regexp.MustCompile(`(?i)\b(?:curl|wget)\s[^\n\x00]{0,160}(?:&&|;)\s*(?:chmod\s+\+x|\./|(?:ba)?sh\s)`), []string{"curl", "wget"}},
	{"code", regexp.MustCompile(`(?i)\b(?:ba|z)?sh\s+-c\s+['"]|\bbash\s+-i\s+>&|/dev/tcp/|\bnc(?:at)?\s+(?:-\w+\s+)*-e\s+/|\bmkfifo\s+/tmp/|\brm\s+-rf\s+/(?:\s|$|\*)`), []string{"-c", "bash", "/dev/tcp/", "nc ", "ncat", "mkfifo", "rm -rf"}},
	{"code", regexp.MustCompile(`(?i)\bpowershell(?:\.exe)?\b[^\n\x00]{0,40}\s-(?:e|en|enc|encodedcommand|nop|noprofile|w\s+hidden|windowstyle\s+hidden|exec(?:utionpolicy)?\s+bypass)\b|\b(?:invoke-expression|invoke-webrequest|downloadstring|downloadfile)\b|new-object\s+(?:system\.)?net\.webclient`), []string{"powershell", "invoke-", "download", "webclient"}},
	{"code", regexp.MustCompile(`\b__import__\s*\(|\b(?:os\.(?:system|popen|exec[lv]p?e?|spawn[lv]p?e?)|subprocess\.(?:run|call|Popen|check_output|check_call|getoutput|getstatusoutput)|pty\.spawn|(?:pickle|marshal|dill|cloudpickle)\.loads?)\s*\(`), []string{"__import__", "os.", "subprocess.", "pty.", "loads"}},
	{"code", regexp.MustCompile(`\b(?:eval|exec)\s*\(\s*(?:compile|base64|__import__|b64decode|bytes\.fromhex|codecs|marshal|zlib|requests|urllib|open\s*\(|input\s*\(|getattr|chr\s*\()`), []string{"eval", "exec"}},
	{"code", regexp.MustCompile(`(?i)\bbase64\s+(?:-d|--decode)\b[^\n\x00]{0,60}\|\s*(?:ba)?sh\b|\becho\s+[A-Za-z0-9+/=]{40,}\s*\|\s*base64`), []string{"base64", "echo"}},
	{"code", regexp.MustCompile(`(?i)<script\b|\bjavascript:\s*\S|\bdocument\.cookie\b|\brequire\(\s*['"]child_process['"]\s*\)|\bchild_process\.exec|Runtime\.getRuntime\(\)\.exec|\bProcessBuilder\s*\(`), []string{"<script", "javascript:", "document.cookie", "child_process", "runtime.getruntime", "processbuilder"}},
	{"code", regexp.MustCompile(`(?m)^#!\s*/(?:usr/)?(?:local/)?bin/(?:env\s+)?(?:ba|z|da|k)?sh\b|^#!\s*/(?:usr/)?(?:local/)?bin/(?:env\s+)?(?:python|perl|ruby|node)`), []string{"#!"}},
	{"code", regexp.MustCompile(`\b__(?:class|globals|subclasses|builtins|mro|getattribute|reduce|reduce_ex)__\b|\bself\._TemplateReference__context\b|\blipsum\.__globals__|\bcycler\.__init__`), []string{"__", "_templatereference", "lipsum", "cycler"}},
}

// scriptMatches finds shell, Python, PowerShell and JavaScript payload patterns.
func scriptMatches(s string, n int) []flagMatch {
	return scriptMatchesLower(s, strings.ToLower(s), n)
}

func scriptMatchesLower(s, lower string, n int) []flagMatch {
	var out []flagMatch
	for _, c := range scriptRes {
		if !c.applies(lower) {
			continue
		}
		for _, m := range c.re.FindAllStringIndex(s, n) {
			out = append(out, flagMatch{"code", m[0], m[1]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].s < out[j].s })
	return out
}

// findIPs returns the byte ranges of dotted-quad IPv4 addresses that are not part of a
// longer dotted number (a version such as 1.2.3.4.5).
func findIPs(s string, n int) [][2]int {
	var out [][2]int
	for i := 0; i < len(s) && len(out) < n; {
		j := strings.IndexByte(s[i:], '.')
		if j < 0 {
			break
		}
		// back up to the start of the digits before the dot
		st := i + j
		for st > 0 && s[st-1] >= '0' && s[st-1] <= '9' {
			st--
		}
		if st == i+j || st > 0 && s[st-1] == '.' {
			i += j + 1
			continue
		}
		e := st
		parts := 0
		for parts < 4 {
			d := e
			for d < len(s) && d-e < 4 && s[d] >= '0' && s[d] <= '9' {
				d++
			}
			if d == e || d-e > 3 {
				break
			}
			parts++
			e = d
			if parts < 4 {
				if e >= len(s) || s[e] != '.' {
					break
				}
				e++
			}
		}
		if parts == 4 && (e >= len(s) || s[e] != '.' && (s[e] < '0' || s[e] > '9')) && net.ParseIP(s[st:e]) != nil {
			out = append(out, [2]int{st, e})
			i = e
			continue
		}
		i += j + 1
	}
	return out
}

// ---- encoded blobs ----

type blob struct {
	kind       string // base64, hex, data-uri, escaped-hex, high-entropy
	offset     int    // byte offset in the string
	length     int    // length of the encoded text
	mime       string // of a data: URI
	decoded    []byte // nil for high-entropy text
	charBits   float64
	magic      string // recognised file type of the decoded bytes
	dangerous  bool   // executable, archive, serialized code or script
	image      bool
	known      string // a known benign field holding the blob (tokenizer data)
	decodedTxt bool   // decoded bytes are printable text
	script     string
}

var (
	dataURIRe = regexp.MustCompile(`(?i)data:([a-z0-9.+-]+/[a-z0-9.+-]+)?(?:;[a-z0-9.+-]+=[a-z0-9.+-]+)*;base64,([A-Za-z0-9+/=_-]{16,})`)
	escHexRe  = regexp.MustCompile(`(?i)(?:\\x[0-9a-f]{2}){32,}`)
)

const (
	maxDecode   = 1 << 20
	minB64Run   = 80  // characters: 60 bytes
	minHexRun   = 130 // digits: more than a SHA-512
	minEntropic = 256
)

func isB64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// findBlobs finds encoded binary data in s: data: URIs, base64 and hex runs, escaped hex
// bytes and long high-entropy runs.
func findBlobs(s string) []blob {
	var out []blob
	covered := func(a, b int) bool {
		for _, x := range out {
			if a < x.offset+x.length && b > x.offset {
				return true
			}
		}
		return false
	}
	if strings.Contains(s, "base64,") {
		for _, m := range dataURIRe.FindAllStringSubmatchIndex(s, 32) {
			bl := blob{kind: "data-uri", offset: m[0], length: m[1] - m[0]}
			if m[2] >= 0 {
				bl.mime = strings.ToLower(s[m[2]:m[3]])
			}
			payload := s[m[4]:m[5]]
			bl.charBits = charEntropy(payload)
			bl.decoded = decodeB64(payload)
			out = append(out, bl)
		}
	}
	if strings.Contains(s, `\x`) || strings.Contains(s, `\X`) {
		for _, m := range escHexRe.FindAllStringIndex(s, 64) {
			run := strings.ReplaceAll(strings.ReplaceAll(s[m[0]:m[1]], `\x`, ""), `\X`, "")
			dec, err := hex.DecodeString(run[:min(len(run), 2*maxDecode)])
			if err != nil {
				continue
			}
			out = append(out, blob{kind: "escaped-hex", offset: m[0], length: m[1] - m[0], decoded: dec, charBits: charEntropy(run)})
		}
	}
	// runs of the base64 alphabet (which includes hex digits)
	for i := 0; i < len(s) && len(out) < 64; {
		if !isB64Char(s[i]) {
			i++
			continue
		}
		st := i
		for i < len(s) && isB64Char(s[i]) {
			i++
		}
		for i < len(s) && s[i] == '=' && i-st < 1<<30 {
			i++
		}
		run := s[st:i]
		if len(run) < minB64Run || covered(st, i) {
			continue
		}
		hexRun := strings.TrimPrefix(strings.TrimPrefix(run, "0x"), "0X")
		allHex := true
		for j := 0; j < len(hexRun); j++ {
			if !isHex(hexRun[j]) {
				allHex = false
				break
			}
		}
		if allHex {
			if len(hexRun) < minHexRun {
				continue // hashes and short ids
			}
			h := hexRun[:len(hexRun)&^1]
			dec, err := hex.DecodeString(h[:min(len(h), 2*maxDecode)])
			if err == nil {
				out = append(out, blob{kind: "hex", offset: st, length: len(run), decoded: dec, charBits: charEntropy(hexRun)})
			}
			continue
		}
		if !mixedClasses(run) {
			continue
		}
		bits := charEntropy(run)
		dec := decodeB64(run)
		if dec == nil {
			continue
		}
		mg, _, _ := magicOf(dec)
		if bits < 4.6 && mg == "" {
			continue
		}
		out = append(out, blob{kind: "base64", offset: st, length: len(run), decoded: dec, charBits: bits})
	}
	// long runs without spaces and with high entropy (other encodings, binary as text)
	for i := 0; i < len(s) && len(out) < 64; {
		if isSpace(s[i]) {
			i++
			continue
		}
		st := i
		for i < len(s) && !isSpace(s[i]) {
			i++
		}
		if i-st < minEntropic || covered(st, i) {
			continue
		}
		run := s[st:i]
		if strings.Count(run, `"`)*30 > len(run) || !mostlyASCII(run) {
			continue // serialized JSON; text in other scripts (its UTF-8 bytes are varied)
		}
		if bits := charEntropy(run); bits >= 5.3 {
			out = append(out, blob{kind: "high-entropy", offset: st, length: len(run), charBits: bits})
		}
	}
	for i := range out {
		b := &out[i]
		if b.decoded == nil {
			continue
		}
		b.magic, b.dangerous, b.image = magicOf(b.decoded)
		if b.magic == "" && printable(b.decoded) {
			b.decodedTxt = true
			if ms := scriptMatches(string(b.decoded), 1); len(ms) > 0 {
				b.script = clip(string(b.decoded[ms[0].s:ms[0].e]), 120)
				b.dangerous = true
			}
		}
	}
	for i := range out {
		before := s[max(0, out[i].offset-48):out[i].offset]
		for _, k := range knownBlobFields {
			if strings.Contains(before, k) {
				out[i].known = k
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].offset < out[j].offset })
	return out
}

// knownBlobFields are JSON fields of tokenizer files that hold base64 data by design
// (an embedded tokenizer.json carries the SentencePiece normalizer's character map).
var knownBlobFields = []string{`"precompiled_charsmap"`, `"precompiledCharsmap"`}

func mostlyASCII(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			n++
		}
	}
	return n*20 < len(s)
}

func mixedClasses(s string) bool {
	var up, lo, dg bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			up = true
		case c >= 'a' && c <= 'z':
			lo = true
		case c >= '0' && c <= '9':
			dg = true
		}
	}
	return up && lo && dg
}

func decodeB64(s string) []byte {
	s = strings.TrimRight(s, "=")
	if len(s) > maxDecode*4/3 {
		s = s[:maxDecode*4/3]
	}
	if len(s)%4 == 1 {
		s = s[:len(s)-1]
	}
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

// charEntropy is the Shannon entropy of the bytes of s, in bits per byte.
func charEntropy(s string) float64 {
	var n [256]int
	for i := 0; i < len(s); i++ {
		n[s[i]]++
	}
	return entropyOf(n[:], len(s))
}

func byteEntropy(b []byte) float64 {
	var n [256]int
	for _, c := range b {
		n[c]++
	}
	return entropyOf(n[:], len(b))
}

func entropyOf(n []int, total int) float64 {
	if total == 0 {
		return 0
	}
	h := 0.0
	for _, c := range n {
		if c > 0 {
			p := float64(c) / float64(total)
			h -= p * math.Log2(p)
		}
	}
	return math.Round(h*1000) / 1000
}

func printable(b []byte) bool {
	if !utf8.Valid(b) || len(b) == 0 {
		return false
	}
	bad := 0
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' {
			bad++
		}
	}
	return bad*50 < len(b)
}

type magicSig struct {
	name      string
	sig       []byte
	off       int
	dangerous bool
	image     bool
}

var magics = []magicSig{
	{"ELF executable", []byte("\x7fELF"), 0, true, false},
	{"PE/DOS executable (MZ)", []byte("MZ"), 0, true, false},
	{"Mach-O executable", []byte{0xcf, 0xfa, 0xed, 0xfe}, 0, true, false},
	{"Mach-O executable", []byte{0xce, 0xfa, 0xed, 0xfe}, 0, true, false},
	{"Mach-O executable", []byte{0xfe, 0xed, 0xfa, 0xcf}, 0, true, false},
	{"Mach-O universal / Java class", []byte{0xca, 0xfe, 0xba, 0xbe}, 0, true, false},
	{"ZIP archive", []byte("PK\x03\x04"), 0, true, false},
	{"gzip", []byte{0x1f, 0x8b}, 0, true, false},
	{"bzip2", []byte("BZh"), 0, true, false},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0}, 0, true, false},
	{"7-Zip archive", []byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}, 0, true, false},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, 0, true, false},
	{"RAR archive", []byte("Rar!\x1a\x07"), 0, true, false},
	{"WebAssembly module", []byte("\x00asm"), 0, true, false},
	{"Python pickle", []byte{0x80, 0x02}, 0, true, false},
	{"Python pickle", []byte{0x80, 0x03}, 0, true, false},
	{"Python pickle", []byte{0x80, 0x04, 0x95}, 0, true, false},
	{"Python pickle", []byte{0x80, 0x05, 0x95}, 0, true, false},
	{"script (shebang)", []byte("#!"), 0, true, false},
	{"PDF document", []byte("%PDF-"), 0, true, false},
	{"SQLite database", []byte("SQLite format 3\x00"), 0, false, false},
	{"PNG image", []byte("\x89PNG\r\n\x1a\n"), 0, false, true},
	{"JPEG image", []byte{0xff, 0xd8, 0xff}, 0, false, true},
	{"GIF image", []byte("GIF8"), 0, false, true},
	{"WebP image", []byte("WEBP"), 8, false, true},
	{"BMP image", []byte("BM"), 0, false, true},
}

// magicOf recognises a file type by its first bytes.
func magicOf(b []byte) (name string, dangerous, image bool) {
	for _, m := range magics {
		if len(b) >= m.off+len(m.sig) && bytes.Equal(b[m.off:m.off+len(m.sig)], m.sig) {
			if m.name == "BMP image" && len(b) < 26 {
				continue
			}
			if m.name == "PE/DOS executable (MZ)" && len(b) < 64 {
				continue
			}
			return m.name, m.dangerous, m.image
		}
	}
	return "", false, false
}

// ---- hidden characters ----

type charReport struct {
	bidi, zeroWidth, control, tags, varSel int
	invalid                                int
	firstInvalid                           int
	examples                               []string
	hidden                                 string // text spelled with Unicode tag characters
}

func (c *charReport) hiddenChars() int { return c.bidi + c.zeroWidth + c.control + c.tags + c.varSel }

// scanChars counts invisible, bidirectional and control characters and invalid UTF-8.
func scanChars(s string) charReport {
	var c charReport
	c.firstInvalid = -1
	var hidden strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		class := ""
		switch {
		case r == utf8.RuneError && n == 1:
			c.invalid++
			if c.firstInvalid < 0 {
				c.firstInvalid = i
			}
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f:
			c.control++
			class = "control"
		case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c:
			c.bidi++
			class = "bidi"
		case r >= 0x200b && r <= 0x200d || r >= 0x2060 && r <= 0x2064 || r == 0x180e || r == 0xfeff && i > 0 || r == 0x034f || r == 0x115f || r == 0x1160 || r == 0x3164 || r == 0xffa0:
			c.zeroWidth++
			class = "zero-width"
		case r >= 0xe0000 && r <= 0xe007f:
			c.tags++
			class = "tag"
			if r >= 0xe0020 && r <= 0xe007e && hidden.Len() < 400 {
				hidden.WriteRune(r - 0xe0000)
			}
		case r >= 0xe0100 && r <= 0xe01ef:
			c.varSel++
			class = "variation-selector"
		}
		if class != "" && len(c.examples) < 5 {
			c.examples = append(c.examples, fmt.Sprintf("U+%04X (%s) at byte %d", r, class, i))
		}
		i += n
	}
	c.hidden = hidden.String()
	return c
}
