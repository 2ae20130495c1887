package cnn

import (
	"path/filepath"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/internal/corpus"
)

// The I-BAU small VGG (BatchNorm after every convolution, max pooling between blocks) builds
// for CIFAR-10 input and its batch norms are folded into the convolutions.
func TestVGGBatchNorm(t *testing.T) {
	dir := corpus.Dir(t, "dev/realbd")
	m, err := formats.Open(filepath.Join(dir, "i-bau__checkpoint__badnets_8_02_ckpt.pth.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	n, err := Build(m, Options{InputShape: []int{3, 32, 32}, Padding: "same"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", n.Describe())
	bn := 0
	for _, s := range n.Stages {
		if s.Scale != nil {
			bn++
		}
	}
	if bn != len(n.Stages) {
		t.Errorf("%d of %d convolutions have their batch norm", bn, len(n.Stages))
	}
	x := make([]float32, n.InputSize())
	if got := n.Forward(x); len(got) != 10 {
		t.Errorf("%d outputs", len(got))
	}
}
