package scan

import "testing"

// Triggers the model's behaviour confirmed come before weight-only candidates, whatever
// their scores: the two sources' scores are not on one scale.
func TestSortTriggers(t *testing.T) {
	ts := []Trigger{
		{Token: "w1", Score: 0.99, Source: "weights"},
		{Token: "p1", Score: 0.40, Source: "probe", ForcedOutput: "visit the site"},
		{Token: "w2", Score: 0.95, Source: "weights"},
		{Token: "p0", Score: 0.10, Source: "probe"}, // swept, nothing forced
		{Token: "d1", Score: 0.60, Source: "differential probe", ForcedOutput: "x"},
		{Token: "w3", Score: 0.97, Source: "weights", ForcedOutput: "a row's nearest output"},
	}
	sortTriggers(ts)
	var got []string
	for _, x := range ts {
		got = append(got, x.Token)
	}
	want := []string{"d1", "p1", "w1", "w3", "w2", "p0"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
}
