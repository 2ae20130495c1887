package scan

import "math"

// severityWeight is how much one finding of a severity, at full score, counts towards the
// model-level risk.
var severityWeight = [...]float64{Info: 0, Low: 0.05, Medium: 0.25, High: 0.85, Critical: 0.97}

// classifierWeight is how much a classifier analysis at full score counts.
const classifierWeight = 0.3

// assess combines the findings of a target into its risk score and verdict.
//
//	risk = 1 − Π_i (1 − w(severity_i) · score_i)
//
// as if each finding were independent evidence of tampering with probability w·score. It is
// monotone: a further finding never lowers it. The verdict is "backdoored" when a finding
// is high or critical, "suspicious" when the risk reaches 0.25 (one full medium finding, or
// several low ones), else "clean"; "error" when the target could not be read at all.
func assess(t *Target) Risk {
	if t.Error != "" && t.Tensors == 0 && len(t.Findings) == 0 {
		return Risk{Verdict: VerdictError}
	}
	keep := 1.0
	worst := Info
	for _, f := range t.Findings {
		s := math.Max(0, math.Min(1, f.Score))
		keep *= 1 - severityWeight[max(Info, min(f.Severity, Critical))]*s
		worst = max(worst, f.Severity)
	}
	if t.Classifier != nil {
		// the classifier analysis scores every classifier, reported or not, so that the
		// risk ranks classifiers by its evidence; weight-only evidence counts little
		keep *= 1 - classifierWeight*math.Max(0, math.Min(1, t.Classifier.Score))
	}
	score := 1 - keep
	v := VerdictClean
	switch {
	case worst >= High:
		v = VerdictBackdoored
	case score >= 0.25:
		v = VerdictSuspicious
	}
	return Risk{Score: math.Round(score*1e4) / 1e4, Verdict: v}
}
