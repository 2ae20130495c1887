package scan

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/kensa-scan/kensa/formats"
)

// RuleCompanionInvalid: a companion file of the model could not be read or parsed.
const RuleCompanionInvalid = "KS-META-COMPANION-INVALID"

var companionRule = Rule{ID: RuleCompanionInvalid, Title: "companion file cannot be verified", Severity: Medium, Detector: "companion",
	Help: "A file that runtimes read with the weights (config.json, tokenizer.json, tokenizer_config.json, chat_template.json, " +
		"chat_template.jinja, generation_config.json, special_tokens_map.json, vocab.json, vocab.txt, merges.txt) is not " +
		"valid JSON as Python's json module reads it (or not valid UTF-8 text), is larger than kensa reads, is not a regular " +
		"file (a FIFO, device or socket, which a runtime opening it blocks on or reads attacker-controlled bytes from), or " +
		"cannot be read. kensa could not verify what a runtime takes from it, such as a chat template, the model's code " +
		"references or its tokens; what parsed before a syntax error was still scanned. Inspect the file at the reported " +
		"offset, and do not load the model until it is explained."}

// companionDetector owns the companion rule. The engine reads the companion files (see
// companionMetadata) before the detectors run, so it has no Header or tensor pass of its own.
type companionDetector struct{}

func init() { RegisterDetector(companionDetector{}) }

// Name returns "companion".
func (companionDetector) Name() string { return "companion" }

// Rules returns the companion rule.
func (companionDetector) Rules() []Rule { return []Rule{companionRule} }

// Limits on the companion files read: tokenizer.json holds a whole vocabulary and merges
// (tens of MB for large vocabularies); the others are small, and a huge one is reported
// instead of read.
const (
	maxCompanion          = 16 << 20
	maxCompanionTokenizer = 64 << 20
)

type companionKind int

const (
	companionJSON      companionKind = iota // checked: parses as Python's json does, a top-level object
	companionTemplates                      // JSON whose "chat_template" is a template (string, list or map)
	companionJinja                          // the whole file is a chat template
	companionText                           // checked: valid UTF-8
)

// companionFile is one companion file: how it is read, and what runtimes do with it.
type companionFile struct {
	name    string
	kind    companionKind
	max     int64
	prefix  string // metadata key prefix of its templates
	runtime string // what runtimes read from it
}

var companionFiles = []companionFile{
	{"config.json", companionJSON, maxCompanion, "",
		"transformers and other runtimes build the model from it (architecture, sizes, and the auto_map code references of trust_remote_code)"},
	{"tokenizer_config.json", companionTemplates, maxCompanion, "tokenizer_config.chat_template",
		"transformers builds the tokenizer from it, including the chat template rendered around every conversation"},
	{"chat_template.json", companionTemplates, maxCompanion, "chat_template_json.chat_template",
		"transformers processors take the chat template rendered around every conversation from it"},
	{"chat_template.jinja", companionJinja, maxCompanion, "chat_template.jinja",
		"transformers takes the chat template rendered around every conversation from it, in preference to tokenizer_config.json"},
	{"tokenizer.json", companionJSON, maxCompanionTokenizer, "",
		"the tokenizers library loads the vocabulary, merges, normalizers and special tokens from it"},
	{"generation_config.json", companionJSON, maxCompanion, "",
		"transformers takes the default generation settings (sampling, stop and forced tokens) from it"},
	{"special_tokens_map.json", companionJSON, maxCompanion, "",
		"transformers takes the special tokens (BOS, EOS, padding, unknown) from it"},
	{"vocab.json", companionJSON, maxCompanion, "",
		"BPE tokenizers (GPT-2 style) take their vocabulary from it"},
	{"vocab.txt", companionText, maxCompanion, "",
		"WordPiece tokenizers (BERT style) take their vocabulary from it"},
	{"merges.txt", companionText, maxCompanion, "",
		"BPE tokenizers take their merge rules from it"},
}

// readCompanions reads the files that sit beside a safetensors model and that runtimes
// read with it (companionFiles; a GGUF file carries its own and has none). It returns:
//
//   - kvs: the chat templates, as metadata entries that carry their file and the byte range
//     of their value there: "tokenizer_config.chat_template" (and
//     "tokenizer_config.chat_template.NAME" for each named template of a list),
//     "chat_template_json.chat_template[.NAME]" from chat_template.json, and
//     "chat_template.jinja" for the whole of that file. JSON is parsed as Python's json
//     module does (NaN and Infinity are numbers); after a syntax error the templates that
//     parsed before it are still returned;
//   - findings: a RuleCompanionInvalid finding for each companion that is present but
//     unparsable, larger than kensa reads, not a regular file, or unreadable;
//   - files: the paths of the companions that were read whole (parsable or not), in
//     companionFiles order;
//   - errs: why each companion that is present could not be read (not a regular file,
//     larger than kensa reads, unreadable): kensa did not examine all of the model, so the
//     target is an error as well as a finding.
//
// Absent companions are no finding.
func readCompanions(fm *formats.Model) (kvs []formats.KV, findings []Finding, files []string, errs []error) {
	if fm == nil || fm.Format != "safetensors" || len(fm.Files) == 0 {
		return nil, nil, nil, nil
	}
	dir := filepath.Dir(fm.Files[0].Path)
	for _, cf := range companionFiles {
		path := filepath.Join(dir, cf.name)
		b, err := formats.ReadCompanion(dir, cf.name, cf.max)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			findings = append(findings, companionFinding(cf, path, err, -1, 0))
			errs = append(errs, fmt.Errorf("companion %s not examined: %w", cf.name, err))
			continue
		}
		files = append(files, path)
		switch cf.kind {
		case companionJSON:
			if _, err := formats.PyJSONMembers(b, nil); err != nil {
				findings = append(findings, companionFinding(cf, path, err, errOffset(err), int64(len(b))))
			}
		case companionTemplates:
			ms, err := formats.PyJSONMembers(b, func(k string) bool { return k == "chat_template" })
			for _, m := range ms {
				if m.Key == "chat_template" {
					kvs = appendTemplates(kvs, cf.prefix, m.Value, path, m.Offset, m.Length)
				}
			}
			if err != nil {
				findings = append(findings, companionFinding(cf, path, err, errOffset(err), int64(len(b))))
			}
		case companionJinja:
			kvs = append(kvs, formats.KV{Key: cf.prefix, Value: string(b), File: path, Offset: 0, Length: int64(len(b))})
			if off := invalidUTF8(b); off >= 0 {
				findings = append(findings, companionFinding(cf, path, errNotUTF8, off, int64(len(b))))
			}
		case companionText:
			if off := invalidUTF8(b); off >= 0 {
				findings = append(findings, companionFinding(cf, path, errNotUTF8, off, int64(len(b))))
			}
		}
	}
	return kvs, findings, files, errs
}

// appendTemplates adds the templates of a chat_template value: a string, a list of
// {"name", "template"} (as transformers saves several), or a map of name to template; the
// entries of a list or map carry the byte range of the whole value.
func appendTemplates(kvs []formats.KV, prefix string, v any, path string, off, n int64) []formats.KV {
	add := func(key string, s string) {
		kvs = append(kvs, formats.KV{Key: key, Value: s, File: path, Offset: off, Length: n})
	}
	switch v := v.(type) {
	case string:
		add(prefix, v)
	case []any:
		for i, e := range v {
			m, _ := e.(map[string]any)
			t, ok := m["template"].(string)
			if !ok {
				continue
			}
			name, ok := m["name"].(string)
			if !ok {
				name = "#" + strconv.Itoa(i)
			}
			add(prefix+"."+name, t)
		}
	case map[string]any:
		names := make([]string, 0, len(v))
		for name := range v {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if s, ok := v[name].(string); ok {
				add(prefix+"."+name, s)
			}
		}
	}
	return kvs
}

var errNotUTF8 = errors.New("not valid UTF-8")

// errOffset returns the byte offset of a *formats.FormatError in err, or -1.
func errOffset(err error) int64 {
	var fe *formats.FormatError
	if errors.As(err, &fe) {
		return fe.Offset
	}
	return -1
}

// invalidUTF8 returns the offset of the first byte of b that is not valid UTF-8, or -1.
func invalidUTF8(b []byte) int64 {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return int64(i)
		}
		i += n
	}
	return -1
}

// companionFinding reports a companion that could not be verified: err at byte off of the
// file (-1 when the problem has no position), size the bytes read (0 when it was not read).
func companionFinding(cf companionFile, path string, err error, off, size int64) Finding {
	msg := err.Error()
	var fe *formats.FormatError
	if errors.As(err, &fe) {
		msg = fe.Msg // the path and offset are in the location
	}
	what, then := "was not read: "+msg, "kensa could not verify it"
	switch {
	case errors.Is(err, formats.ErrTooLarge) && fe != nil && fe.Format == "companion":
		what, then = "is "+msg, "kensa did not read it and could not verify it"
	case errors.Is(err, formats.ErrInvalid) && fe != nil && fe.Format == "companion":
		what = msg
		then = "a runtime opening it fails, blocks (on a FIFO) or reads whatever another process or device supplies; kensa could not verify it"
	case errors.Is(err, formats.ErrInvalid) && fe == nil:
		// OpenInDir refused it: a link out of the model directory
		what = "was not read: " + msg
		then = "a runtime follows it to a file outside the model directory that kensa did not read; kensa could not verify it"
	case errors.Is(err, errNotUTF8):
		what = fmt.Sprintf("is not valid UTF-8 text (offset %d)", off)
		then = "a runtime fails to load it, or reads it differently from kensa; kensa could not verify it"
	case fe != nil && fe.Format == "json":
		what = fmt.Sprintf("cannot be parsed as Python's json module parses it (offset %d: %s)", off, msg)
		then = "a runtime fails to load it, or another parser reads it differently; kensa could not verify it"
	}
	loc := Location{File: path, Layer: -1}
	if off >= 0 {
		loc.ByteOffset = off
		if off < size {
			loc.ByteLength = 1
		}
	}
	return Finding{
		Rule: RuleCompanionInvalid, Title: companionRule.Title, Severity: companionRule.Severity, Score: 1,
		Location: loc,
		Evidence: map[string]any{"file": cf.name, "error": msg, "offset": off},
		Message:  fmt.Sprintf("%s %s. %s; %s.", cf.name, what, upperFirst(cf.runtime), then),
	}
}

func upperFirst(s string) string {
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		return string(s[0]-'a'+'A') + s[1:]
	}
	return s
}
