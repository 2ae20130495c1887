package scan

import (
	"fmt"
	"os"

	"github.com/kensa-scan/kensa/formats"
)

// Rules of the engine itself: what discovery and coverage accounting find.
const (
	RuleFileUnverified = "KS-FILE-UNVERIFIED"
	RuleFileUnscanned  = "KS-FILE-UNSCANNED"
	RuleFileRemoteCode = "KS-FILE-REMOTE-CODE"
	RuleFileLinkEscape = "KS-FILE-LINK-ESCAPE"
	RuleFileSpecial    = "KS-FILE-SPECIAL"
	RuleOllamaDigest   = "KS-OLLAMA-DIGEST"
	RuleOllamaLayer    = "KS-OLLAMA-LAYER"
)

var coverageRules = []Rule{
	{ID: RuleFileUnverified, Title: "file that can run code when loaded, in a format kensa cannot verify", Severity: High, Detector: "coverage",
		Help: "A file of the model (pickle-based PyTorch .bin/.pt/.pth/.ckpt, pickle, joblib, Keras .h5/.keras, TorchScript, NeMo, ONNX with custom operators, NumPy object arrays, native code) can run arbitrary code when a framework loads it, and kensa cannot verify its contents. Until it is verified by a tool that reads the format, treat the model as unsafe to load; prefer the safetensors or GGUF copy, and delete the file if nothing needs it."},
	{ID: RuleFileUnscanned, Title: "model file in a format kensa does not read", Severity: Medium, Detector: "coverage",
		Help: "A model file (TFLite, TensorFlow protobuf, Flax msgpack, an archive, ...) sits with the model and was not examined: its weights and metadata could hide anything the other files are checked for."},
	{ID: RuleFileRemoteCode, Title: "Python source shipped with the model", Severity: Medium, Detector: "coverage",
		Help: "The model ships Python files, which transformers runs when the model is loaded with trust_remote_code=True. Read them before loading the model that way."},
	{ID: RuleFileLinkEscape, Title: "symbolic link leaves the scanned tree", Severity: Medium, Detector: "coverage",
		Help: "A file of the model is a symbolic link to a place outside the directory tree that was scanned. kensa does not follow it, so what a runtime would load there was not examined; a link planted in a model repository can make a loader read any file of the machine."},
	{ID: RuleFileSpecial, Title: "FIFO, socket or device where a model file is expected", Severity: Medium, Detector: "coverage",
		Help: "A file named like a model or configuration file is a FIFO, socket or device. kensa never opens such files; a runtime that does may hang or read from a device. Replace it with the real file."},
	{ID: RuleOllamaDigest, Title: "Ollama blob does not match its digest", Severity: High, Detector: "coverage",
		Help: "Ollama names every blob by the SHA-256 of its content, and the manifest names blobs by digest and size. This blob's content or size differs: it was changed after it was pulled (tampered with or corrupt). Pull the model again from a source you trust."},
	{ID: RuleOllamaLayer, Title: "Ollama manifest layer that cannot be examined", Severity: Medium, Detector: "coverage",
		Help: "A layer of the Ollama manifest is missing, malformed, of an unknown media type or too large to read, so part of what Ollama would load was not examined."},
}

type coverageDetector struct{}

func (coverageDetector) Name() string  { return "coverage" }
func (coverageDetector) Rules() []Rule { return append([]Rule(nil), coverageRules...) }

func init() { RegisterDetector(coverageDetector{}) }

func coverageTitle(id string) string {
	for _, r := range coverageRules {
		if r.ID == id {
			return r.Title
		}
	}
	return id
}

// fileFinding is a finding about a whole file.
func fileFinding(rule string, sev Severity, path string, msg string, ev map[string]any) Finding {
	var size int64
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return Finding{Rule: rule, Title: coverageTitle(rule), Severity: sev, Score: 1,
		Location: Location{File: path, Layer: -1, ByteOffset: 0, ByteLength: size},
		Evidence: ev, Message: msg}
}

// skippedFile lists a file that is part of no model, and makes the finding its kind calls
// for.
func skippedFile(path string, k formats.FileKind) (SkippedFile, []Finding) {
	sk := SkippedFile{Path: path, Format: k.Format}
	var fs []Finding
	switch {
	case k.Code:
		sk.Reason = "can run code when loaded; kensa cannot verify this format"
		fs = append(fs, fileFinding(RuleFileUnverified, High, path,
			fmt.Sprintf("%s is a %s: it can run code when loaded, and kensa cannot verify this format", path, k.Format),
			map[string]any{"format": k.Format}))
	case k.Model:
		sk.Reason = "model file in a format kensa does not read: not examined"
		fs = append(fs, fileFinding(RuleFileUnscanned, Medium, path,
			fmt.Sprintf("%s is a %s: not examined", path, k.Format), map[string]any{"format": k.Format}))
	case k.Source:
		sk.Reason = "Python source: runs when the model is loaded with trust_remote_code"
		fs = append(fs, fileFinding(RuleFileRemoteCode, Medium, path,
			fmt.Sprintf("%s is Python source shipped with the model: transformers runs it under trust_remote_code=True; read it before loading the model that way", path), nil))
	case k.Format == "documentation" || k.Format == "git metadata" || k.Format == "image":
		sk.Reason = "not a model file"
	default:
		sk.Reason = "not read with the weights"
	}
	return sk, fs
}

func linkEscape(path, dest, resolved string) Finding {
	f := fileFinding(RuleFileLinkEscape, Medium, path,
		fmt.Sprintf("%s is a symbolic link to %s, outside the tree that was scanned: not followed, so what it leads to was not examined", path, dest),
		map[string]any{"link": dest, "resolved": resolved})
	if k := formats.Classify(path, nil); k.Code {
		f.Severity = High
		f.Message += fmt.Sprintf("; a runtime would load it as a %s, which can run code", k.Format)
	}
	return f
}

func specialFile(path, kind string) Finding {
	return fileFinding(RuleFileSpecial, Medium, path,
		fmt.Sprintf("%s is a %s, not a regular file: kensa never opens it; a runtime that does may block or read a device", path, kind),
		map[string]any{"kind": kind})
}

// Analysis names in Coverage.Analyses, and the detector each stands for.
var analysisOf = map[string]string{
	"structure":   "structure",
	"metadata":    "metadata",
	"tensorstats": "weights",
	"payload":     "payload",
	"head":        "head",
	"probe":       "probe",
	"diff":        "diff",
}

// analysisNames lists the analyses every target accounts for.
var analysisNames = []string{"structure", "metadata", "weights", "payload", "head", "probe", "diff"}

// SetAnalysis records the state of an analysis (Coverage.Analyses): AnalysisDone or
// NotRun(reason). Detectors call it when an analysis does not apply (a probe for an
// architecture the runtime does not support); the engine fills in the rest.
func (m *Model) SetAnalysis(name, state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.analyses == nil {
		m.analyses = map[string]string{}
	}
	m.analyses[name] = state
}

func (m *Model) analysis(name string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.analyses[name]
	return s, ok
}

// allNotRun returns analyses all "not run" for reason.
func allNotRun(reason string) map[string]string {
	a := make(map[string]string, len(analysisNames))
	for _, n := range analysisNames {
		a[n] = NotRun(reason)
	}
	return a
}
