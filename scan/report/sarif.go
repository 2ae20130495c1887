package report

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/kensa-scan/kensa/scan"
)

// SARIF constants.
const (
	sarifVersion   = "2.1.0"
	sarifSchemaURI = "https://json.schemastore.org/sarif-2.1.0.json"
	informationURI = "https://github.com/kensa-scan/kensa"
	srcRoot        = "%SRCROOT%"
	// FingerprintKey is the partialFingerprints key of kensa's result fingerprints.
	FingerprintKey = "kensa/v1"
)

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Invocations []sarifInvocation `json:"invocations"`
	Artifacts   []sarifArtifact   `json:"artifacts,omitempty"`
	Results     []sarifResult     `json:"results"`
	Properties  *sarifRunProps    `json:"properties,omitempty"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name,omitempty"`
	ShortDescription     *sarifText     `json:"shortDescription,omitempty"`
	FullDescription      *sarifText     `json:"fullDescription,omitempty"`
	Help                 *sarifText     `json:"help,omitempty"`
	DefaultConfiguration sarifConfig    `json:"defaultConfiguration"`
	Properties           sarifRuleProps `json:"properties"`
}

type sarifConfig struct {
	Level string `json:"level"`
}

type sarifRuleProps struct {
	SecuritySeverity string   `json:"security-severity"`
	Tags             []string `json:"tags"`
}

type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

type sarifArtifact struct {
	Location sarifArtifactLocation `json:"location"`
	Length   *int64                `json:"length,omitempty"`
	Roles    []string              `json:"roles,omitempty"`
	Hashes   map[string]string     `json:"hashes,omitempty"`
}

type sarifArtifactLocation struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
	Index     *int   `json:"index,omitempty"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations,omitempty"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          sarifResultProps  `json:"properties"`
}

type sarifLocation struct {
	PhysicalLocation *sarifPhysicalLocation `json:"physicalLocation,omitempty"`
	LogicalLocations []sarifLogicalLocation `json:"logicalLocations,omitempty"`
}

type sarifPhysicalLocation struct {
	ArtifactLocation sarifArtifactLocation `json:"artifactLocation"`
	Region           *sarifRegion          `json:"region,omitempty"`
}

type sarifRegion struct {
	ByteOffset int64 `json:"byteOffset"`
	ByteLength int64 `json:"byteLength"`
}

type sarifLogicalLocation struct {
	Name               string `json:"name"`
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

type sarifResultProps struct {
	SecuritySeverity string         `json:"security-severity"`
	Severity         string         `json:"severity"`
	Score            float64        `json:"score"`
	Target           string         `json:"target"`
	TargetName       string         `json:"target_name,omitempty"`
	Layer            int            `json:"layer"`
	Role             string         `json:"role,omitempty"`
	Axis             string         `json:"axis,omitempty"`
	Index            []int64        `json:"index,omitempty"`
	Key              string         `json:"key,omitempty"`
	Evidence         map[string]any `json:"evidence,omitempty"`
}

// sarifRunProps carries what SARIF has no place for: each target's name, verdict, base
// model and coverage, whether it was cut short, and the trigger and classifier analyses.
type sarifRunProps struct {
	Schema  string             `json:"kensa/schema"`
	Targets []sarifTargetProps `json:"kensa/targets"`
}

type sarifTargetProps struct {
	Path       string           `json:"path"`
	Name       string           `json:"name,omitempty"`
	Format     string           `json:"format"`
	Risk       scan.Risk        `json:"risk"`
	Triggers   []scan.Trigger   `json:"triggers,omitzero"`
	Classifier *scan.Classifier `json:"classifier,omitzero"`
	Error      string           `json:"error,omitempty"`
	Incomplete bool             `json:"incomplete,omitempty"`
	Coverage   *scan.Coverage   `json:"coverage,omitempty"`
	Base       *scan.BaseInfo   `json:"base,omitempty"`
}

// WriteSARIF writes r as a SARIF 2.1.0 log with one run. The driver's rules are the
// catalogue (opt.Rules, or scan.Rules() when nil) plus a descriptor for every rule id a
// finding uses that the catalogue does not know, all sorted by id. Each finding becomes a
// result, in report order, located by a physical location (the file as a URI relative to
// %SRCROOT%, or a file:// URI when absolute, and its byte region) and a logical location
// (the tensor, or the metadata key), and fingerprinted by FingerprintKey; its properties
// name its target (path, and name when it has one). Targets that could not be scanned,
// and targets whose scan was cut short (Incomplete), become error notifications of the
// one invocation, which is then unsuccessful: SARIF's "error" level is for a condition
// that halted the analysis or left its results incomplete. Every file is listed in
// artifacts with its length and SHA-256. What SARIF has no place for (verdicts, names,
// base models, coverage, triggers, classifier) is in the run's properties bag under
// "kensa/targets".
func WriteSARIF(w io.Writer, r *scan.Report, opt Options) error {
	if r == nil {
		return errNilReport
	}
	return encodeJSON(w, sarifOf(r, opt))
}

func sarifOf(r *scan.Report, opt Options) *sarifLog {
	name, version := toolName(r)
	cat := opt.Rules
	if cat == nil {
		cat = scan.Rules()
	}
	rules, ruleIndex := sarifRules(cat, r)

	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{
			Name: name, Version: version, InformationURI: informationURI, Rules: rules,
		}},
		Results:    []sarifResult{},
		Properties: &sarifRunProps{Schema: scan.Schema, Targets: []sarifTargetProps{}},
	}

	// Artifacts: every file of every target, then any other file a finding names.
	artIndex := map[string]int{}
	addArtifact := func(p string, f *scan.FileInfo) {
		if p == "" {
			return
		}
		if _, ok := artIndex[p]; ok {
			return
		}
		a := sarifArtifact{Location: artifactLocation(p)}
		if f != nil {
			a.Length = &f.Size
			a.Roles = []string{"analysisTarget"}
			if f.SHA256 != "" {
				a.Hashes = map[string]string{"sha-256": f.SHA256}
			}
		}
		artIndex[p] = len(run.Artifacts)
		run.Artifacts = append(run.Artifacts, a)
	}
	for _, t := range r.Targets {
		for i := range t.Files {
			addArtifact(t.Files[i].Path, &t.Files[i])
		}
	}
	for _, t := range r.Targets {
		for _, f := range t.Findings {
			addArtifact(fileOf(&t, f.Location), nil)
		}
		addArtifact(t.Path, nil)
	}
	physical := func(p string) *sarifPhysicalLocation {
		if p == "" {
			return nil
		}
		loc := artifactLocation(p)
		i := artIndex[p]
		loc.Index = &i
		return &sarifPhysicalLocation{ArtifactLocation: loc}
	}

	inv := sarifInvocation{ExecutionSuccessful: true}
	for _, t := range r.Targets {
		run.Properties.Targets = append(run.Properties.Targets, sarifTargetProps{
			Path: t.Path, Name: t.Name, Format: t.Format,
			Risk:       scan.Risk{Score: finite(t.Risk.Score), Verdict: t.Risk.Verdict},
			Triggers:   jsonTriggers(t.Triggers),
			Classifier: jsonClassifier(t.Classifier),
			Error:      t.Error,
			Incomplete: t.Incomplete,
			Coverage:   jsonCoverage(t.Coverage),
			Base:       t.Base,
		})
		var problem string
		switch {
		case t.Error != "":
			problem = clean(t.Error)
		case t.Incomplete:
			problem = "scan incomplete: an interruption or a fault cut it short; its results cover part of the model"
		}
		if problem != "" {
			inv.ExecutionSuccessful = false
			n := sarifNotification{Level: "error", Message: sarifText{Text: clean(t.Path) + ": " + problem}}
			if p := physical(t.Path); p != nil {
				n.Locations = []sarifLocation{{PhysicalLocation: p}}
			}
			inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications, n)
		}

		seen := map[string]int{}
		for _, f := range t.Findings {
			sev := clampSeverity(f.Severity)
			res := sarifResult{
				RuleID:    f.Rule,
				RuleIndex: ruleIndex[f.Rule],
				Level:     sarifLevel(sev),
				Message:   sarifText{Text: sarifMessage(f)},
				Properties: sarifResultProps{
					SecuritySeverity: securitySeverity(sev),
					Severity:         sev.String(),
					Score:            finite(f.Score),
					Target:           t.Path,
					TargetName:       t.Name,
					Layer:            f.Location.Layer,
					Role:             f.Location.Role,
					Axis:             f.Location.Axis,
					Index:            f.Location.Index,
					Key:              f.Location.Key,
					Evidence:         sanitizeEvidence(f.Evidence),
				},
			}
			file := fileOf(&t, f.Location)
			var loc sarifLocation
			if p := physical(file); p != nil {
				if l := f.Location; (l.ByteOffset != 0 || l.ByteLength != 0) && l.ByteOffset >= 0 && l.ByteLength >= 0 {
					p.Region = &sarifRegion{ByteOffset: l.ByteOffset, ByteLength: l.ByteLength}
				}
				loc.PhysicalLocation = p
			}
			loc.LogicalLocations = logicalLocations(file, f.Location)
			if loc.PhysicalLocation != nil || loc.LogicalLocations != nil {
				res.Locations = []sarifLocation{loc}
			}
			fp := Fingerprint(f.Rule, file, f.Location)
			seen[fp]++
			if n := seen[fp]; n > 1 {
				fp += ":" + strconv.Itoa(n)
			}
			res.PartialFingerprints = map[string]string{FingerprintKey: fp}
			run.Results = append(run.Results, res)
		}
	}
	run.Invocations = []sarifInvocation{inv}
	return &sarifLog{Schema: sarifSchemaURI, Version: sarifVersion, Runs: []sarifRun{run}}
}

func jsonTriggers(ts []scan.Trigger) []scan.Trigger {
	if ts == nil {
		return nil
	}
	out := make([]scan.Trigger, len(ts))
	for i, t := range ts {
		t.Score = finite(t.Score)
		out[i] = t
	}
	return out
}

func jsonClassifier(c *scan.Classifier) *scan.Classifier {
	if c == nil {
		return nil
	}
	x := *c
	x.Score = finite(x.Score)
	return &x
}

// fileOf is the file a finding is in: its location's, or the target's path.
func fileOf(t *scan.Target, l scan.Location) string {
	if l.File != "" {
		return l.File
	}
	return t.Path
}

// sarifRules returns the rule descriptors, sorted by id, and each id's index.
func sarifRules(cat []scan.Rule, r *scan.Report) ([]sarifRule, map[string]int) {
	byID := map[string]scan.Rule{}
	for _, c := range cat {
		if _, ok := byID[c.ID]; !ok {
			byID[c.ID] = c
		}
	}
	for _, t := range r.Targets {
		for _, f := range t.Findings {
			if _, ok := byID[f.Rule]; !ok {
				byID[f.Rule] = scan.Rule{ID: f.Rule, Title: f.Title, Severity: f.Severity}
			}
		}
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]sarifRule, len(ids))
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		index[id] = i
		out[i] = sarifRuleOf(byID[id])
	}
	return out, index
}

func sarifRuleOf(r scan.Rule) sarifRule {
	sev := clampSeverity(r.Severity)
	d := sarifRule{
		ID:                   r.ID,
		Name:                 camelCase(r.Title),
		DefaultConfiguration: sarifConfig{Level: sarifLevel(sev)},
		Properties: sarifRuleProps{
			SecuritySeverity: securitySeverity(sev),
			Tags:             []string{"security"},
		},
	}
	if r.Detector != "" && r.Detector != "security" {
		d.Properties.Tags = append(d.Properties.Tags, r.Detector)
	}
	title := r.Title
	if title == "" {
		title = r.ID
	}
	d.ShortDescription = &sarifText{Text: title}
	d.FullDescription = &sarifText{Text: title}
	if r.Help != "" {
		d.FullDescription = &sarifText{Text: r.Help}
		d.Help = &sarifText{Text: r.Help}
	}
	return d
}

// camelCase turns a title into a SARIF rule name: "rank-one edit in one MLP projection"
// becomes "RankOneEditInOneMLPProjection".
func camelCase(title string) string {
	var b strings.Builder
	for w := range strings.FieldsFuncSeq(title, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		r := []rune(w)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	return b.String()
}

// sarifLevel maps a severity to a SARIF level.
func sarifLevel(s scan.Severity) string {
	switch {
	case s >= scan.High:
		return "error"
	case s == scan.Medium:
		return "warning"
	}
	return "note"
}

// securitySeverity is GitHub's security-severity property: the score as a string.
func securitySeverity(s scan.Severity) string {
	return strconv.FormatFloat(s.SecurityScore(), 'f', 1, 64)
}

// sarifMessage is a result's message: the finding's, or its title; control characters
// escaped, since SARIF viewers show it to people.
func sarifMessage(f scan.Finding) string {
	m := f.Message
	if m == "" {
		m = f.Title
	}
	if m == "" {
		m = f.Rule
	}
	return clean(m)
}

// artifactLocation is the SARIF location of a file: a URI reference relative to
// %SRCROOT% for a relative path, a file:// URI for an absolute one.
func artifactLocation(p string) sarifArtifactLocation {
	s := filepath.ToSlash(p)
	if filepath.IsAbs(p) || strings.HasPrefix(s, "/") || filepath.VolumeName(p) != "" {
		if !strings.HasPrefix(s, "/") {
			s = "/" + s // C:/models/x.gguf -> file:///C:/models/x.gguf
		}
		return sarifArtifactLocation{URI: (&url.URL{Scheme: "file", Path: s}).String()}
	}
	return sarifArtifactLocation{URI: (&url.URL{Path: s}).String(), URIBaseID: srcRoot}
}

// logicalLocations names the tensor (kind "member") or metadata key (kind "property") of
// a finding: "model.gguf#blk.17.ffn_down.weight[row 12]".
func logicalLocations(file string, l scan.Location) []sarifLogicalLocation {
	base := path.Base(filepath.ToSlash(file))
	switch {
	case l.Tensor != "":
		fq := base + "#" + l.Tensor
		if ix := indexText(l); ix != "" && len(l.Index) > 0 {
			fq += "[" + ix + "]"
		}
		return []sarifLogicalLocation{{Name: l.Tensor, FullyQualifiedName: fq, Kind: "member"}}
	case l.Key != "":
		return []sarifLogicalLocation{{Name: l.Key, FullyQualifiedName: base + "#" + l.Key, Kind: "property"}}
	}
	return nil
}

// Fingerprint returns the stable identity of a finding across scans: the first 32 hex
// digits of the SHA-256 of the rule id, the file's base name, the tensor, axis, index and
// metadata key. Byte offsets and scores are left out, so the fingerprint survives a
// re-scan, a move of the file to another directory and changes in the detector's
// confidence. (WriteSARIF appends ":2", ":3", ... to repeats within one target.)
func Fingerprint(rule, file string, l scan.Location) string {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	field(rule)
	field(path.Base(filepath.ToSlash(file)))
	field(l.Tensor)
	field(l.Axis)
	ix := make([]string, len(l.Index))
	for i, x := range l.Index {
		ix[i] = strconv.FormatInt(x, 10)
	}
	field(strings.Join(ix, ","))
	field(l.Key)
	return hex.EncodeToString(h.Sum(nil))[:32]
}
