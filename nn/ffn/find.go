package ffn

import (
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// Dense is a dense layer found among a model's tensors.
type Dense struct {
	Weight int    // index of the weight tensor in Model.Tensors
	Bias   int    // index of the bias tensor, -1 when there is none
	Base   string // the layer's name without the ".weight" / "/kernel:0" suffix
	Keras  bool   // [in, out] layout (Keras kernel) rather than PyTorch's [out, in]
	In     int64
	Out    int64
}

// FindDense lists the dense layers of a model: 2-D float weights named `X.weight` (PyTorch,
// [out, in]) or `X/kernel:0` / `Xkernel` (Keras, [in, out]), each with its bias `X.bias` /
// `X/bias:0` / `Xbias` when present and of the right length. It returns them in file order.
func FindDense(m *formats.Model) []Dense {
	byName := make(map[string]int, len(m.Tensors))
	for i := range m.Tensors {
		byName[m.Tensors[i].Name] = i
	}
	var out []Dense
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if len(t.Shape) != 2 || !t.DType.Float() {
			continue
		}
		d := Dense{Weight: i, Bias: -1}
		var biasName string
		switch {
		case strings.HasSuffix(t.Name, ".weight"):
			d.Base = strings.TrimSuffix(t.Name, ".weight")
			biasName = d.Base + ".bias"
			d.Out, d.In = t.Shape[0], t.Shape[1]
		case strings.HasSuffix(t.Name, "/kernel:0"):
			d.Base, d.Keras = strings.TrimSuffix(t.Name, "/kernel:0"), true
			biasName = d.Base + "/bias:0"
			d.In, d.Out = t.Shape[0], t.Shape[1]
		case strings.HasSuffix(t.Name, "kernel"):
			d.Base, d.Keras = strings.TrimSuffix(t.Name, "kernel"), true
			biasName = d.Base + "bias"
			d.In, d.Out = t.Shape[0], t.Shape[1]
		default:
			continue
		}
		if bi, ok := byName[biasName]; ok && len(m.Tensors[bi].Shape) == 1 && m.Tensors[bi].Shape[0] == d.Out {
			d.Bias = bi
		}
		out = append(out, d)
	}
	return out
}
