package scan

import (
	"strconv"
	"strings"
)

// classify maps a tensor name to its layer and role. (Temporary: replaced by package roles.)
func classify(name string, shape []int64) TensorRole {
	r := TensorRole{Layer: -1, Role: "other", Kind: "weight"}
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if n, err := strconv.Atoi(p); err == nil && i > 0 && (parts[i-1] == "layers" || parts[i-1] == "blk" || parts[i-1] == "h" || parts[i-1] == "layer") {
			r.Layer = n
			break
		}
	}
	if strings.HasSuffix(name, "bias") {
		r.Kind = "bias"
	}
	return r
}
