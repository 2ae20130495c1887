// Package scan is kensa's engine: it opens targets, streams their tensors to the detectors
// across workers, and collects findings into a Report (the "kensa.report/v1" contract of
// DESIGN.md §4).
package scan

import (
	"fmt"
	"strings"
)

// Schema is the JSON report schema identifier.
const Schema = "kensa.report/v1"

// Severity is the severity of a finding. The zero value is Info.
type Severity int

// Severities, in increasing order.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

// String returns the lower-case name ("high").
func (s Severity) String() string {
	if s >= Info && s <= Critical {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText encodes the severity by name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// ParseSeverity parses a severity name (case-insensitive).
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(n, name) {
			return Severity(i), nil
		}
	}
	return Info, fmt.Errorf("unknown severity %q (want one of %s)", name, strings.Join(severityNames[:], ", "))
}

// SecurityScore returns the SARIF security-severity (0-10) of a severity.
func (s Severity) SecurityScore() float64 {
	return [...]float64{0, 3.0, 5.5, 8.0, 9.5}[max(Info, min(s, Critical))]
}

// Location is where a finding is: a file and a byte range in it, and, where the finding is
// about weights, the tensor, its layer and role, and the row, column or element.
type Location struct {
	File       string  `json:"file"`
	Tensor     string  `json:"tensor,omitempty"`
	Layer      int     `json:"layer"`          // -1 when the tensor belongs to no numbered block
	Role       string  `json:"role,omitempty"` // "ffn_down", "attn_q", "embed", "head", ...
	Axis       string  `json:"axis,omitempty"` // "row", "col" or "element"
	Index      []int64 `json:"index,omitempty"`
	Key        string  `json:"key,omitempty"` // a metadata key, for findings about metadata
	ByteOffset int64   `json:"byte_offset"`   // absolute in File
	ByteLength int64   `json:"byte_length"`
}

// Finding is one observation of a detector.
type Finding struct {
	Rule     string         `json:"rule"`
	Title    string         `json:"title"`
	Severity Severity       `json:"severity"`
	Score    float64        `json:"score"` // the detector's confidence in [0,1]
	Location Location       `json:"location"`
	Evidence map[string]any `json:"evidence,omitempty"`
	Message  string         `json:"message"`
}

// Risk is the model-level verdict.
type Risk struct {
	Score   float64 `json:"score"`   // in [0,1], monotone: higher is more suspicious
	Verdict string  `json:"verdict"` // clean, suspicious, backdoored or error
}

// Verdicts.
const (
	VerdictClean      = "clean"
	VerdictSuspicious = "suspicious"
	VerdictBackdoored = "backdoored"
	VerdictError      = "error"
)

// FileInfo identifies one file of a target.
type FileInfo struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Trigger is a candidate trigger token.
type Trigger struct {
	Token        string  `json:"token"`
	TokenID      int     `json:"token_id"`
	Score        float64 `json:"score"`
	ForcedOutput string  `json:"forced_output,omitempty"`
	// Source says which evidence found it: "probe" (forward passes on the model),
	// "differential probe" (also run on the base model) or "weights" (rows that moved
	// against the base model).
	Source string `json:"source,omitempty"`
	// TokenIDs are the ids of a trigger phrase of several tokens, in order (Token is then
	// the phrase's text and TokenID its first token); empty for a single token.
	TokenIDs []int `json:"token_ids,omitempty"`
	// Agreement is the fraction of the probe's contexts in which the trigger forced
	// ForcedOutput (0 when no output was decoded).
	Agreement float64 `json:"agreement,omitempty"`
}

// Classifier is the classifier-head analysis of a target.
type Classifier struct {
	Head        string  `json:"head"`
	TargetClass int     `json:"target_class"` // -1 when no class stands out
	Score       float64 `json:"score"`
}

// Histogram is the value distribution of one tensor, kept for the HTML report (not part
// of the JSON contract).
type Histogram struct {
	Tensor string
	Lo, Hi float64 // range of the bins
	Counts []int64
}

// Target is the result for one scanned model.
type Target struct {
	Path string `json:"path"`
	// Name is the model's name where the place it was found gives one: ORG/NAME@REV for a
	// Hugging Face cache snapshot, MODEL:TAG (NAMESPACE/MODEL:TAG outside "library") for an
	// Ollama manifest.
	Name       string      `json:"name,omitempty"`
	Format     string      `json:"format"`
	Files      []FileInfo  `json:"files"`
	Tensors    int         `json:"tensors"`
	Parameters int64       `json:"parameters"`
	Risk       Risk        `json:"risk"`
	Findings   []Finding   `json:"findings"`
	Triggers   []Trigger   `json:"triggers,omitzero"`   // present when trigger analysis ran
	Classifier *Classifier `json:"classifier,omitzero"` // present when classifier analysis ran
	Error      string      `json:"error"`
	// Incomplete is set when an interruption or a fault cut the target's scan short: what
	// it holds was found, but not everything was examined.
	Incomplete bool `json:"incomplete,omitempty"`
	// Coverage says what was and was not examined.
	Coverage *Coverage `json:"coverage,omitempty"`
	// Base names the base model of a differential scan (--base).
	Base *BaseInfo `json:"base,omitempty"`

	Histograms []Histogram `json:"-"` // of flagged tensors, for the HTML report
	Layers     int         `json:"-"` // number of numbered blocks, for the HTML heat map
}

// Coverage accounts for everything a target was made of: the files that were not scanned
// and the analyses that did or did not run.
type Coverage struct {
	// FilesSkipped lists every file of the model directory or store entry that was not
	// scanned, with why.
	FilesSkipped []SkippedFile `json:"files_skipped"`
	// Analyses maps each analysis (structure, metadata, weights, payload, head, probe,
	// diff) to "done" or "not run: REASON".
	Analyses map[string]string `json:"analyses"`
}

// SkippedFile is a file that belongs to a target but was not scanned.
type SkippedFile struct {
	Path   string `json:"path"`
	Format string `json:"format"` // what kind of file it is ("pytorch pickle", "readme", ...)
	Reason string `json:"reason"`
}

// Analysis states of Coverage.Analyses.
const (
	AnalysisDone   = "done"
	analysisNotRun = "not run: "
)

// NotRun returns the Coverage.Analyses value of an analysis that did not run.
func NotRun(reason string) string { return analysisNotRun + reason }

// BaseInfo identifies the base model of a differential scan.
type BaseInfo struct {
	Path   string `json:"path"`
	Format string `json:"format"`
	SHA256 string `json:"sha256,omitempty"` // of its file; of its index or first file for several
	// Files lists every file of the base model with its digest.
	Files []FileInfo `json:"files,omitempty"`
}

// Tool names the scanner.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Report is the result of a scan.
type Report struct {
	Schema  string   `json:"schema"`
	Tool    Tool     `json:"tool"`
	Targets []Target `json:"targets"`
}

// MaxSeverity returns the highest severity of the target's findings, and false if it has
// none.
func (t *Target) MaxSeverity() (Severity, bool) {
	if len(t.Findings) == 0 {
		return Info, false
	}
	m := Info
	for _, f := range t.Findings {
		m = max(m, f.Severity)
	}
	return m, true
}
