package stats

// AUROC returns the area under the ROC curve of scores for positives against negatives:
// the probability that a random positive scores above a random negative, ties counting
// one half (the Mann-Whitney U statistic divided by |pos|·|neg|). NaN when either set is
// empty.
func AUROC(pos, neg []float64) float64 {
	if len(pos) == 0 || len(neg) == 0 {
		return nan()
	}
	var u float64
	for _, p := range pos {
		for _, n := range neg {
			switch {
			case p > n:
				u++
			case p == n:
				u += 0.5
			}
		}
	}
	return u / float64(len(pos)*len(neg))
}
