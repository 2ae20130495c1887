package report

import (
	"encoding/json"
	"io"

	"github.com/kensa-scan/kensa/scan"
)

// WriteJSON writes r as the "kensa.report/v1" JSON document of DESIGN.md §4, indented by
// two spaces, with a trailing newline. Empty findings and files lists are written as []
// (never null); non-finite evidence floats as the strings "NaN", "+Inf" and "-Inf";
// non-finite scores, which the contract does not allow, as 0 (NaN) or ±MaxFloat64; a
// coverage's files_skipped and analyses as [] and {} when empty.
// Strings are written as encoding/json does: invalid UTF-8 becomes U+FFFD and <, >, &
// are \u-escaped so the document can be embedded in HTML safely.
func WriteJSON(w io.Writer, r *scan.Report) error {
	if r == nil {
		return errNilReport
	}
	return encodeJSON(w, jsonReport(r))
}

// jsonReport returns a copy of r ready for encoding: schema and tool name filled in when
// missing, nil lists made empty, numbers made finite.
func jsonReport(r *scan.Report) *scan.Report {
	out := *r
	if out.Schema == "" {
		out.Schema = scan.Schema
	}
	out.Tool.Name, out.Tool.Version = toolName(r)
	out.Targets = make([]scan.Target, len(r.Targets))
	for i, t := range r.Targets {
		t.Risk.Score = finite(t.Risk.Score)
		if t.Files == nil {
			t.Files = []scan.FileInfo{}
		}
		fs := make([]scan.Finding, len(t.Findings))
		for j, f := range t.Findings {
			f.Score = finite(f.Score)
			f.Evidence = sanitizeEvidence(f.Evidence)
			fs[j] = f
		}
		t.Findings = fs
		if t.Triggers != nil {
			tr := make([]scan.Trigger, len(t.Triggers))
			for j, x := range t.Triggers {
				x.Score = finite(x.Score)
				tr[j] = x
			}
			t.Triggers = tr
		}
		if t.Classifier != nil {
			c := *t.Classifier
			c.Score = finite(c.Score)
			t.Classifier = &c
		}
		t.Coverage = jsonCoverage(t.Coverage)
		out.Targets[i] = t
	}
	return &out
}

func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
