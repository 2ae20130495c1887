package llm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tinyConfig = `{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
 "max_position_embeddings": 256, "hidden_act": "silu", "rope_scaling": null, "architectures": ["LlamaForCausalLM"]`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// config.json is parsed as Python's json module does: a NaN where kensa does not look does
// not stop loading; a NaN in a hyperparameter is an error naming it.
func TestHFConfigPython(t *testing.T) {
	c, err := hfConfig(writeConfig(t, tinyConfig+`, "initializer_range": NaN, "x": -Infinity}`))
	if err != nil {
		t.Fatalf("hfConfig with NaN in an unused field: %v", err)
	}
	if c.Hidden != 64 || c.FF != 128 || c.Layers != 2 || c.Heads != 4 || c.KVHeads != 2 || c.Vocab != 100 || c.HeadDim != 16 ||
		c.RopeDim != 16 || c.Eps != 1e-5 || c.RopeBase != 10000 || c.Context != 256 || c.Arch != "llama" {
		t.Errorf("config %+v", c)
	}
	if err := c.check(); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct{ extra, want string }{
		{`, "rms_norm_eps": NaN}`, "rms_norm_eps is NaN"},
		{`, "rope_theta": Infinity}`, "rope_theta is +Inf"},
		{`, "hidden_size": NaN}`, "hidden_size is NaN"},
		{`, "hidden_size": 64.5}`, "hidden_size is 64.5, not an integer"},
		{`, "hidden_size": "64"}`, "hidden_size is a string"},
		{`, "vocab_size": 1e300}`, "not an integer"},
		{`, "model_type": 3}`, "model_type is a number"},
		{`, "model_type": "gpt2"}`, `model_type "gpt2" is not supported`},
		{`, "hidden_act": "gelu"}`, `hidden_act "gelu" is not supported`},
		{`, "rope_scaling": {"type": "dynamic", "factor": 2}}`, `rope_scaling type "dynamic" is not supported`},
		{`, "rope_scaling": {"type": "linear"}}`, "rope_scaling factor 0"},
		{`, "rope_scaling": NaN}`, "rope_scaling NaN is not supported"},
		{`, "x": nan}`, "config.json"},
		{`,}`, "offset"},
	} {
		_, err := hfConfig(writeConfig(t, tinyConfig+tc.extra))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("hfConfig(… %s) = %v, want an error with %q", tc.extra, err, tc.want)
		}
	}
	for _, content := range []string{`[]`, `null`, `"x"`} {
		if _, err := hfConfig(writeConfig(t, content)); err == nil || !strings.Contains(err.Error(), "not an object") {
			t.Errorf("hfConfig(%s) = %v", content, err)
		}
	}
	if _, err := hfConfig(t.TempDir()); err == nil || !strings.Contains(err.Error(), "needs its config.json") {
		t.Errorf("hfConfig(no config.json) = %v", err)
	}
	if _, err := hfConfig(writeConfig(t, tinyConfig+`, "pad": "`+strings.Repeat("x", maxConfig)+`"}`)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("hfConfig(huge config.json) = %v", err)
	}
}
