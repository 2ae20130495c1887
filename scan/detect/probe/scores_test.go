package probe

import (
	"math"
	"testing"
)

// A class that noise already reaches is scored by its evidence only as far as its input
// template corroborates it; other classes are scored by their evidence alone.
func TestScoresCorroboration(t *testing.T) {
	e := &classEvidence{
		noise:     []float64{0.95, 0.95, 0.3},
		patch:     []float64{0.9, 0.9, 0.9},
		noiseMean: []float64{0.5, 0.5, 0.1},
		sink:      []bool{false, false, false},
		tplRank:   []float64{1, 0, 0},
	}
	s := e.scores(3)
	want := []float64{(0.95 + 0.9) / 2, (0.95 + 0.9) / 4, (0.3 + 0.9) / 2}
	for c := range want {
		if math.Abs(s[c]-want[c]) > 1e-12 {
			t.Errorf("class %d: score %g, want %g", c, s[c], want[c])
		}
	}
	e.sink = []bool{true, true, false}
	s = e.scores(3)
	if a, b := s[0], sinkWeight*0.5; math.Abs(a-b) > 1e-12 {
		t.Errorf("sink with the top template: %g, want %g", a, b)
	}
	if a, b := s[1], sinkWeight*0.5*0.5; math.Abs(a-b) > 1e-12 {
		t.Errorf("sink with the bottom template: %g, want %g", a, b)
	}
	e.tplRank = nil // no template pass: no corroboration applied
	if s = e.scores(3); math.Abs(s[1]-sinkWeight*0.5) > 1e-12 {
		t.Errorf("without templates: %g, want %g", s[1], sinkWeight*0.5)
	}
}

func TestOrdinal(t *testing.T) {
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 102: "102nd"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %q, want %q", n, got, want)
		}
	}
}
