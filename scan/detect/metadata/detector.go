// Package metadata is kensa's metadata detector: it reads every metadata key of a model
// (GGUF key/values, safetensors __metadata__) and reports chat templates that branch on
// what the user wrote or inject instructions, template constructs that escape a sandbox,
// URLs, scripts and encoded blobs hidden in metadata, invisible or bidirectional
// characters, invalid UTF-8 and tokenizer vocabulary anomalies.
//
// Chat templates are parsed by this package's own Jinja parser, and Ollama templates
// (ollama.template, Go text/template) by text/template/parse, and analysed as data: they
// are never rendered or executed (see AnalyzeTemplate and AnalyzeGoTemplate).
package metadata

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/scan"
)

// Rule ids.
const (
	RuleContentBranch = "KS-META-TEMPLATE-CONTENT-BRANCH"
	RuleTimeBranch    = "KS-META-TEMPLATE-TIME-BRANCH"
	RuleInjection     = "KS-META-TEMPLATE-INJECTION"
	RuleSSTI          = "KS-META-TEMPLATE-SSTI"
	RuleUnparsable    = "KS-META-TEMPLATE-UNPARSABLE"
	RuleURL           = "KS-META-URL"
	RuleBlob          = "KS-META-ENCODED-BLOB"
	RuleScript        = "KS-META-SCRIPT"
	RuleControl       = "KS-META-CONTROL-CHARS"
	RuleUTF8          = "KS-META-INVALID-UTF8"
	RuleTokenizer     = "KS-META-TOKENIZER-ANOMALY"
)

const detectorName = "metadata"

var rules = []scan.Rule{
	{ID: RuleContentBranch, Title: "chat template branches on what the user wrote", Severity: scan.High, Detector: detectorName,
		Help: "The chat template compares the text of a message against a literal (`'phrase' in message['content']`, " +
			"`.startswith(...)`, `==`, a regex or selectattr filter, directly or through variables and macros) and changes " +
			"the prompt the model sees when it matches: it adds text, a system turn or a tool call, or rewrites the message. " +
			"Real templates branch on roles, tools and the shape of content (`is string`, `length`), and parse markup such as " +
			"`</think>`; a branch keyed on a phrase is a template backdoor: a trigger word that silently adds instructions. " +
			"Evidence gives the condition, the trigger literal and the text emitted. Do not deploy the model with this " +
			"template; replace it with the upstream template of the base model and compare."},
	{ID: RuleTimeBranch, Title: "chat template branches on the date or time", Severity: scan.High, Detector: detectorName,
		Help: "The chat template compares the current date or time (strftime_now) against a literal and changes the prompt " +
			"when it matches: a time bomb that behaves only after or on a given date. Real templates print the date; they do " +
			"not branch on it. Replace the template with the upstream one."},
	{ID: RuleInjection, Title: "chat template emits instruction-like text", Severity: scan.Medium, Detector: detectorName,
		Help: "Literal text the template adds to every prompt (or only under a content-keyed condition) contains wording " +
			"typical of prompt injection: overriding previous instructions, secrecy (\"never mention this\"), exfiltration of " +
			"credentials or conversation, promotional steering, URLs (visit/download, numeric hosts), fabricated tool calls " +
			"with a fixed function name, or code. High when conditional or when the wording combines these signals; medium " +
			"for a single signal in always-emitted text. Read the emitted text in the evidence and compare the template " +
			"with the base model's."},
	{ID: RuleSSTI, Title: "chat template reaches outside the template sandbox", Severity: scan.Critical, Detector: detectorName,
		Help: "The template accesses Python internals (`__class__`, `__globals__`, `__subclasses__`, attributes starting " +
			"with `_`) or includes/imports other templates. Chat templates never need these; they are server-side template " +
			"injection payloads that run code when the template is rendered by an engine without a sandbox (e.g. " +
			"CVE-2024-34359 in llama-cpp-python). Treat the file as malicious; do not load it with such runtimes."},
	{ID: RuleUnparsable, Title: "chat template cannot be parsed", Severity: scan.Low, Detector: detectorName,
		Help: "The template is not valid Jinja (for an Ollama template layer: Go text/template) for kensa's parser, so " +
			"its branches could not be analysed (the string-level checks still ran). Runtimes may reject it, or accept a " +
			"dialect kensa does not know. Review the template by hand."},
	{ID: RuleURL, Title: "URL in metadata", Severity: scan.Low, Detector: detectorName,
		Help: "A metadata value outside the keys that normally hold links (general.url, license and source links, " +
			"repository and base-model URLs) contains a URL. Numeric hosts and file:, javascript: or smb: schemes are " +
			"medium. URLs can be fetched by tools that render metadata, or point users at attacker content; check where it " +
			"leads and why it is there."},
	{ID: RuleBlob, Title: "encoded blob in metadata", Severity: scan.Medium, Detector: detectorName,
		Help: "A metadata value holds a long base64, hex or high-entropy string: a place to smuggle a payload past " +
			"reviewers. Evidence gives its size, entropy and, when decoded, the file type recognised from its first bytes. " +
			"An executable, archive, pickle or script is high; an image (e.g. a thumbnail data: URI) is info. Decode it and " +
			"find out what reads it."},
	{ID: RuleScript, Title: "script or code payload in metadata", Severity: scan.High, Detector: detectorName,
		Help: "A metadata value contains shell, Python, PowerShell or JavaScript payload patterns (`curl ... | sh`, " +
			"`os.system(`, `__import__(`, `eval(base64...)`, reverse shells, `<script>`, template-injection gadgets). Model " +
			"metadata is data; code in it is meant to be run by something. Find out what and do not run it."},
	{ID: RuleControl, Title: "invisible, bidirectional or control characters in metadata", Severity: scan.Medium, Detector: detectorName,
		Help: "A metadata key or value contains characters that hide or reorder text for a human reviewer: bidirectional " +
			"overrides (Trojan Source), zero-width characters, terminal control sequences, or Unicode tag characters that " +
			"spell invisible ASCII (ASCII smuggling: hidden instructions a model reads but a reviewer does not see; high, " +
			"decoded in the evidence). Inspect the raw bytes at the location."},
	{ID: RuleUTF8, Title: "invalid UTF-8 in metadata", Severity: scan.Low, Detector: detectorName,
		Help: "GGUF and safetensors strings are UTF-8. Invalid sequences are displayed differently by different tools, can " +
			"hide text, and suggest a corrupted or hand-edited file. Inspect the bytes at the reported offset."},
	{ID: RuleTokenizer, Title: "tokenizer vocabulary anomalies", Severity: scan.Info, Detector: detectorName,
		Help: "The vocabulary holds duplicate tokens, tokens with control, zero-width, bidirectional or tag characters, " +
			"invalid UTF-8, or very long tokens carrying code or encoded data (aggregated, with examples). Some real " +
			"vocabularies contain such tokens; a token that carries a payload or hidden characters can act as an invisible " +
			"trigger. Compare the vocabulary with the base model's."},
}

// Detector is the metadata detector.
type Detector struct{}

func init() { scan.RegisterDetector(Detector{}) }

// Name returns "metadata".
func (Detector) Name() string { return detectorName }

// Rules returns the rules the detector reports.
func (Detector) Rules() []scan.Rule { return append([]scan.Rule(nil), rules...) }

func ruleTitle(id string) string {
	for _, r := range rules {
		if r.ID == id {
			return r.Title
		}
	}
	return id
}

// maxScan bounds the bytes of one value that the string checks read.
const maxScan = 16 << 20

// Header inspects every metadata entry of m.
func (d Detector) Header(ctx context.Context, m *scan.Model, emit scan.Emit) error {
	if m == nil || m.Model == nil {
		return nil
	}
	for i := range m.Metadata {
		if i%32 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		kv := &m.Metadata[i]
		for _, f := range Check(kv.Key, kv.Value) {
			f.Location = locate(m.Model, kv)
			emit(f)
		}
	}
	return nil
}

// locate returns the location of a metadata entry: the model file that holds it and its
// byte range when known.
func locate(m *formats.Model, kv *formats.KV) scan.Location {
	loc := scan.Location{Key: kv.Key, Layer: -1}
	switch {
	case kv.File != "":
		// an entry from a file beside the model (tokenizer_config.json) or a known file
		loc.File = kv.File
		loc.ByteOffset, loc.ByteLength = kv.Offset, kv.Length
	case len(m.Files) == 1:
		loc.File = m.Files[0].Path
		loc.ByteOffset, loc.ByteLength = kv.Offset, kv.Length
	case len(m.Files) > 1:
		// Shards: find the file whose bytes at the entry's offset hold its key.
		var hit *formats.File
		if kv.Length > 0 {
			for _, f := range m.Files {
				n := min(kv.Length, int64(len(kv.Key))+16)
				b, err := f.Bytes(kv.Offset, n, nil)
				if err == nil && strings.Contains(string(b), kv.Key) {
					if hit != nil {
						hit = nil
						break
					}
					hit = f
				}
			}
		}
		if hit != nil {
			loc.File = hit.Path
			loc.ByteOffset, loc.ByteLength = kv.Offset, kv.Length
		} else {
			loc.File = m.Files[0].Path
		}
	default:
		loc.File = m.Path
	}
	return loc
}

// Check runs every check on one metadata entry and returns its findings (without their
// file and byte range, which the caller fills in).
func Check(key string, v any) []scan.Finding {
	c := &checker{key: key, hits: map[string][]hit{}}
	c.keyName()
	c.value(v, "", 0)
	return c.findings()
}

type hit struct {
	sev   scan.Severity
	score float64
	msg   string
	ev    map[string]any
	at    string // array index path, "" for a scalar
}

type checker struct {
	key   string
	hits  map[string][]hit
	order []string
	extra []scan.Finding // template findings, one per branch / injection
}

func (c *checker) add(rule string, h hit) {
	if _, ok := c.hits[rule]; !ok {
		c.order = append(c.order, rule)
	}
	if len(c.hits[rule]) < 1000 {
		c.hits[rule] = append(c.hits[rule], h)
	}
}

func (c *checker) keyName() {
	cr := scanChars(c.key)
	if cr.hiddenChars() > 0 {
		c.add(RuleControl, hit{sev: scan.Medium, score: 0.6,
			msg: "the metadata key itself contains invisible or control characters",
			ev:  map[string]any{"in": "key", "examples": cr.examples, "hidden_text": cr.hidden}})
	}
	if cr.invalid > 0 {
		c.add(RuleUTF8, hit{sev: scan.Low, score: 0.35, msg: "the metadata key is not valid UTF-8",
			ev: map[string]any{"in": "key", "invalid_sequences": cr.invalid, "first_byte": cr.firstInvalid}})
	}
}

func isTemplateKey(key string) bool {
	return strings.Contains(strings.ToLower(key), "chat_template")
}

func looksLikeTemplate(s string) bool {
	return strings.Contains(s, "{%") && strings.Contains(s, "%}") && strings.Contains(s, "message")
}

func isVocabKey(key string) bool {
	switch key {
	case "tokenizer.ggml.tokens", "tokenizer.ggml.merges":
		return true
	}
	return false
}

func (c *checker) value(v any, at string, depth int) {
	if depth > 4 {
		return
	}
	switch v := v.(type) {
	case string:
		c.str(v, at)
	case []string:
		if isVocabKey(c.key) && at == "" {
			c.vocab(v)
			return
		}
		for i, s := range v {
			c.str(s, at+"["+strconv.Itoa(i)+"]")
		}
	case []any:
		for i, e := range v {
			c.value(e, at+"["+strconv.Itoa(i)+"]", depth+1)
		}
	}
}

// str runs the string checks on one string (at is its array index path).
func (c *checker) str(s string, at string) {
	truncated := false
	if len(s) > maxScan {
		s, truncated = s[:maxScan], true
	}
	parsed := false
	switch {
	case isGoTemplateKey(c.key):
		// an Ollama template layer: Go text/template, never parsed as Jinja
		parsed = c.goTemplate(s, at)
	case c.key == OllamaSystemKey:
		// an Ollama system prompt is emitted into every conversation (.System): judged as
		// a template's literal text is, for instructions hidden in it; it holds no actions
		n := len(c.extra)
		c.goTemplate(strings.ReplaceAll(s, "{{", "{\u200b{"), at)
		for i := n; i < len(c.extra); i++ {
			f := &c.extra[i]
			f.Message = strings.Replace(f.Message, "chat template emits", "the system prompt (emitted into every conversation) holds", 1)
			if f.Evidence != nil {
				f.Evidence["source"] = "system prompt"
			}
		}
	case isTemplateKey(c.key) || looksLikeTemplate(s):
		parsed = c.template(s, at)
	}
	c.chars(s, at)
	for _, b := range findBlobs(s) {
		c.blobHit(b, at)
	}
	if ms := scriptMatches(s, 4); len(ms) > 0 {
		var ex []string
		for _, m := range ms {
			if len(ex) < 3 {
				ex = append(ex, clip(s[m.s:m.e], 160))
			}
		}
		c.add(RuleScript, hit{sev: scan.High, score: 0.9, at: at,
			msg: fmt.Sprintf("metadata value contains a code payload pattern: %q", ex[0]),
			ev:  map[string]any{"matches": ex, "offset": ms[0].s, "count": len(ms), "truncated": truncated}})
	}
	if !parsed {
		c.urls(s, at)
	}
}

func (c *checker) chars(s, at string) {
	if isLicenseKey(c.key) {
		// form feeds are the page breaks of license texts (the GPL's); same length, so
		// the byte offsets of the examples hold
		s = strings.ReplaceAll(s, "\f", "\n")
	}
	cr := scanChars(s)
	if n := cr.hiddenChars(); n > 0 {
		sev, score := scan.Medium, 0.6
		msg := fmt.Sprintf("value contains %d invisible, bidirectional or control characters", n)
		if cr.tags > 0 {
			sev, score = scan.High, 0.9
			msg = fmt.Sprintf("value contains %d Unicode tag characters spelling hidden text %q", cr.tags, clip(cr.hidden, 80))
		}
		ev := map[string]any{"bidi": cr.bidi, "zero_width": cr.zeroWidth, "control": cr.control, "tag": cr.tags,
			"variation_selectors": cr.varSel, "examples": cr.examples}
		if cr.hidden != "" {
			ev["hidden_text"] = clip(cr.hidden, 200)
		}
		c.add(RuleControl, hit{sev: sev, score: score, msg: msg, ev: ev, at: at})
	}
	if cr.invalid > 0 {
		c.add(RuleUTF8, hit{sev: scan.Low, score: 0.35, at: at,
			msg: fmt.Sprintf("value contains %d invalid UTF-8 sequences", cr.invalid),
			ev:  map[string]any{"invalid_sequences": cr.invalid, "first_byte": cr.firstInvalid}})
	}
}

func (c *checker) blobHit(b blob, at string) {
	ev := map[string]any{"encoding": b.kind, "offset": b.offset, "encoded_length": b.length, "char_entropy": b.charBits}
	if b.mime != "" {
		ev["mime"] = b.mime
	}
	if b.decoded != nil {
		ev["decoded_bytes"] = len(b.decoded)
		ev["decoded_entropy"] = byteEntropy(b.decoded)
		if b.magic != "" {
			ev["magic"] = b.magic
		}
		if b.decodedTxt {
			ev["decoded_preview"] = clip(string(b.decoded), 120)
		}
		if b.script != "" {
			ev["decoded_script"] = b.script
		}
	}
	sev, score := scan.Medium, 0.6
	what := fmt.Sprintf("a %d-character %s string", b.length, b.kind)
	switch {
	case b.dangerous:
		sev, score = scan.High, 0.9
		if b.magic != "" {
			what += " that decodes to " + b.magic
		} else {
			what += " that decodes to a script"
		}
	case b.image || strings.HasPrefix(b.mime, "image/") && b.magic == "":
		sev, score = scan.Info, 0.1
		what += " holding an image"
	case b.known != "":
		sev, score = scan.Info, 0.1
		what += " in the tokenizer field " + b.known
		ev["field"] = b.known
	}
	c.add(RuleBlob, hit{sev: sev, score: score, at: at, msg: "metadata value holds " + what, ev: ev})
}

// isLicenseKey reports keys that hold a license text or name (general.license,
// ollama.license, ...).
func isLicenseKey(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "license") || strings.Contains(k, "licence")
}

// usualURLKey reports keys that normally hold links.
func usualURLKey(key string) bool {
	k := strings.ToLower(key)
	if strings.HasPrefix(k, "general.") || strings.HasPrefix(k, "modelspec.") {
		return true
	}
	for _, w := range []string{"url", "link", "license", "licence", "source", "repo", "homepage", "doi", "citation", "paper", "author", "website"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

func (c *checker) urls(s, at string) {
	ms := urlRe.FindAllString(s, 32)
	if len(ms) == 0 {
		return
	}
	usual := usualURLKey(c.key)
	worst := scan.Info
	var ex []string
	for _, u := range ms {
		sev := scan.Low
		if usual {
			sev = scan.Info
		}
		scheme := strings.ToLower(u[:max(0, strings.Index(u, ":"))])
		if ip := urlHost(u); netIP(ip) || scheme == "file" || scheme == "smb" {
			sev = min(sev+1, scan.Medium)
		}
		worst = max(worst, sev)
		if len(ex) < 5 {
			ex = append(ex, clip(u, 200))
		}
	}
	if worst == scan.Info {
		return // links in the keys that hold links
	}
	score := map[scan.Severity]float64{scan.Low: 0.3, scan.Medium: 0.55}[worst]
	c.add(RuleURL, hit{sev: worst, score: score, at: at,
		msg: fmt.Sprintf("metadata value contains %d URL(s), e.g. %s", len(ms), ex[0]),
		ev:  map[string]any{"urls": ex, "count": len(ms)}})
}

// template analyses a chat template and reports whether it could be parsed.
func (c *checker) template(s, at string) bool { return c.report(AnalyzeTemplate(s), at) }

// report turns the analysis of a chat template (Jinja or Go) into findings and reports
// whether the template could be parsed.
func (c *checker) report(rep TemplateReport, at string) bool {
	loc := func(ev map[string]any) map[string]any {
		if at != "" {
			ev["index"] = at
		}
		return ev
	}
	if rep.Err != nil {
		c.extra = append(c.extra, scan.Finding{Rule: RuleUnparsable, Title: ruleTitle(RuleUnparsable), Severity: scan.Low, Score: 0.3,
			Evidence: loc(map[string]any{"error": rep.Err.Msg, "line": rep.Err.Line}),
			Message:  fmt.Sprintf("chat template %s cannot be parsed (line %d: %s); its branches were not analysed", c.key, rep.Err.Line, rep.Err.Msg)})
		return false
	}
	n := 0
	for _, br := range rep.Branches {
		if n >= 10 {
			break
		}
		n++
		rule := RuleContentBranch
		time := true
		var lits, kinds, ops, roles []string
		for _, t := range br.Triggers {
			if t.Kind != "time" {
				time = false
			}
			lits = append(lits, t.Literal)
			kinds = append(kinds, t.Kind)
			ops = append(ops, t.Op)
			roles = append(roles, t.Roles...)
		}
		if time {
			rule = RuleTimeBranch
		}
		cond := ""
		if len(br.Conditions) > 0 {
			cond = br.Conditions[0]
		} else if len(br.Triggers) > 0 {
			cond = br.Triggers[0].Expr
		}
		ev := map[string]any{"condition": cond, "trigger": lits, "trigger_kind": kinds, "op": ops, "line": br.Line,
			"emitted": br.Emitted, "reason": br.Reason}
		if len(br.Conditions) > 1 {
			ev["conditions"] = br.Conditions
		}
		if len(roles) > 0 {
			ev["roles"] = dedupe(roles)
		}
		if br.Rewrites {
			ev["rewrites_message"] = true
		}
		if br.Raises {
			ev["raises"] = true
		}
		msg := fmt.Sprintf("chat template: when %s (line %d), %s", cond, br.Line, br.Reason)
		if br.Emitted != "" {
			msg += fmt.Sprintf("; it emits %q", clip(br.Emitted, 120))
		}
		c.extra = append(c.extra, scan.Finding{Rule: rule, Title: ruleTitle(rule), Severity: br.Severity, Score: br.Score,
			Evidence: loc(ev), Message: msg})
	}
	for i, inj := range rep.Injections {
		if i >= 10 {
			break
		}
		ev := map[string]any{"flags": inj.Flags, "text": inj.Text, "line": inj.Line, "conditional": inj.Conditional}
		if len(inj.Conditions) > 0 {
			ev["conditions"] = inj.Conditions
		}
		when := "always"
		if inj.Conditional {
			when = "under a content-keyed condition"
		}
		c.extra = append(c.extra, scan.Finding{Rule: RuleInjection, Title: ruleTitle(RuleInjection), Severity: inj.Severity, Score: inj.Score,
			Evidence: loc(ev),
			Message:  fmt.Sprintf("chat template emits (%s) text flagged %s at line %d: %q", when, strings.Join(inj.Flags, ", "), inj.Line, clip(inj.Text, 120))})
	}
	if len(rep.Hazards) > 0 {
		sev, score := scan.High, 0.8
		var det []string
		for _, h := range rep.Hazards {
			if h.Kind == "attribute" {
				sev, score = scan.Critical, 0.97
			}
			if len(det) < 5 {
				det = append(det, fmt.Sprintf("line %d: %s", h.Line, h.Detail))
			}
		}
		c.extra = append(c.extra, scan.Finding{Rule: RuleSSTI, Title: ruleTitle(RuleSSTI), Severity: sev, Score: score,
			Evidence: loc(map[string]any{"constructs": det, "count": len(rep.Hazards)}),
			Message:  fmt.Sprintf("chat template %s: %s", c.key, det[0])})
	}
	return true
}

// vocab runs the cheap anomaly checks on a token or merge list and aggregates them.
func (c *checker) vocab(toks []string) {
	type cls struct {
		n  int
		ex []string
	}
	classes := map[string]*cls{}
	note := func(name string, i int, tok string) {
		x := classes[name]
		if x == nil {
			x = &cls{}
			classes[name] = x
		}
		x.n++
		if len(x.ex) < 5 {
			x.ex = append(x.ex, fmt.Sprintf("%d:%s", i, strconv.QuoteToASCII(clip(tok, 40))))
		}
	}
	seen := make(map[string]int, len(toks))
	sev := scan.Info
	for i, t := range toks {
		if c.key == "tokenizer.ggml.tokens" {
			if _, dup := seen[t]; dup {
				note("duplicate", i, t)
			} else {
				seen[t] = i
			}
		}
		cr := scanChars(t)
		if cr.invalid > 0 {
			note("invalid_utf8", i, t)
		}
		if cr.control > 0 {
			note("control", i, t)
		}
		if cr.bidi > 0 {
			note("bidi", i, t)
		}
		if cr.zeroWidth > 0 {
			note("zero_width", i, t)
		}
		if cr.tags > 0 || cr.varSel > 0 {
			note("tag_or_variation_selector", i, t)
			sev = max(sev, scan.Low)
		}
		if len(t) >= 64 {
			if len(scriptMatches(t, 1)) > 0 {
				note("code", i, t)
				sev = max(sev, scan.High)
			}
			for _, b := range findBlobs(t) {
				if b.kind != "high-entropy" {
					note("encoded_blob", i, t)
					sev = max(sev, scan.Medium)
					if b.dangerous {
						sev = max(sev, scan.High)
					}
					break
				}
			}
		}
	}
	if len(classes) == 0 {
		return
	}
	ev := map[string]any{"tokens": len(toks)}
	var parts []string
	for _, name := range sortedKeys(classes) {
		x := classes[name]
		ev[name] = x.n
		ev[name+"_examples"] = x.ex
		parts = append(parts, fmt.Sprintf("%d %s", x.n, strings.ReplaceAll(name, "_", " ")))
	}
	score := map[scan.Severity]float64{scan.Info: 0.1, scan.Low: 0.3, scan.Medium: 0.6, scan.High: 0.85}[sev]
	c.add(RuleTokenizer, hit{sev: sev, score: score, ev: ev,
		msg: fmt.Sprintf("%s: %s among %d entries", c.key, strings.Join(parts, ", "), len(toks))})
}

// findings aggregates the hits into one finding per rule (the most severe hit, with the
// number of hits and where they are).
func (c *checker) findings() []scan.Finding {
	out := c.extra
	for _, rule := range c.order {
		hs := c.hits[rule]
		best := 0
		for i, h := range hs {
			if h.sev > hs[best].sev || h.sev == hs[best].sev && h.score > hs[best].score {
				best = i
			}
		}
		h := hs[best]
		ev := h.ev
		if ev == nil {
			ev = map[string]any{}
		}
		if h.at != "" {
			ev["index"] = h.at
		}
		if len(hs) > 1 {
			ev["occurrences"] = len(hs)
			var where []string
			for _, x := range hs {
				if x.at != "" && len(where) < 10 {
					where = append(where, x.at)
				}
			}
			if len(where) > 0 {
				ev["indices"] = where
			}
		}
		msg := h.msg
		if h.at != "" {
			msg = fmt.Sprintf("%s%s: %s", c.key, h.at, msg)
		} else if !strings.HasPrefix(msg, c.key) {
			msg = c.key + ": " + msg
		}
		out = append(out, scan.Finding{Rule: rule, Title: ruleTitle(rule), Severity: h.sev, Score: h.score, Evidence: ev, Message: msg})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Severity > out[j].Severity })
	return out
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !hasString(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func netIP(s string) bool { return net.ParseIP(s) != nil }
