package scan

import (
	"sort"
	"sync"
)

// Rule is one kind of finding: an id (KS-...), a title, a default severity (a detector may
// raise or lower it with the evidence), the detector that reports it and what it means.
type Rule struct {
	ID       string
	Title    string
	Severity Severity
	Detector string
	Help     string // what the finding means and what to do about it
}

var (
	regMu     sync.Mutex
	detectors []Detector
)

// RegisterDetector makes a detector part of every scan. Detector packages call it from
// init (the CLI imports scan/detect/all); it panics on a duplicate detector or rule id.
func RegisterDetector(d Detector) {
	regMu.Lock()
	defer regMu.Unlock()
	ids := map[string]bool{}
	for _, o := range detectors {
		if o.Name() == d.Name() {
			panic("scan: duplicate detector " + d.Name())
		}
		for _, r := range o.Rules() {
			ids[r.ID] = true
		}
	}
	for _, r := range d.Rules() {
		if ids[r.ID] {
			panic("scan: duplicate rule " + r.ID)
		}
	}
	detectors = append(detectors, d)
	sort.Slice(detectors, func(i, j int) bool { return detectors[i].Name() < detectors[j].Name() })
}

// Detectors returns the registered detectors, sorted by name.
func Detectors() []Detector {
	regMu.Lock()
	defer regMu.Unlock()
	return append([]Detector(nil), detectors...)
}

// Rules returns the catalogue of every registered detector's rules, sorted by id.
func Rules() []Rule {
	var out []Rule
	for _, d := range Detectors() {
		out = append(out, d.Rules()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LookupRule returns the rule with the given id.
func LookupRule(id string) (Rule, bool) {
	for _, r := range Rules() {
		if r.ID == id {
			return r, true
		}
	}
	return Rule{}, false
}
