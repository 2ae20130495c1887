package scan

import "github.com/kensa-scan/kensa/scan/roles"

// classifyAll maps every tensor name of a model to its layer and role (see package roles),
// with the model-wide fixes roles.ClassifyAll makes (dense layer numbering, sibling biases,
// the promoted output head).
func classifyAll(names []string, shapes [][]int64) []TensorRole {
	rs := roles.ClassifyAll(names, shapes)
	out := make([]TensorRole, len(rs))
	for i, r := range rs {
		out[i] = TensorRole{Layer: r.Layer, Role: r.Role, Kind: r.Kind}
	}
	return out
}
