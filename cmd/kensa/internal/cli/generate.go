package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/llm"
	tok "github.com/kensa-scan/kensa/nn/tokenizer"
)

type generateOptions struct {
	ids    string
	n      int
	logits bool
	jobs   int
	f32    bool
}

func newGenerateCmd(s *streams) *cobra.Command {
	var o generateOptions
	c := &cobra.Command{
		Use:   "generate MODEL [PROMPT]",
		Short: "Run a supported model by hand: greedy continuation of a prompt",
		Long: `Run a decoder from a GGUF file or a Hugging Face directory (config.json +
safetensors) on the CPU, and print the greedy continuation of PROMPT (or of the token ids
given with --ids; with neither, of the BOS token).

With --logits, print instead JSON {"ids": [...], "logits": [[...], ...]}: the ids of the
prompt and of the -n generated tokens, and the logits at every position.

Architectures: ` + llm.ArchitectureList() + `.

The weights stay in the type the file stores them in and are read in place from the
memory-mapped file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K..Q6_K have their
own kernels, other types are dequantized a row at a time); the activations are quantized
for the integer kernels as llama.cpp does. Memory: the file plus the KV cache. With
--float32, the weights are converted to float32 instead and the activations stay float32:
the arithmetic of a float reference pass over the dequantized weights.`,
		Example: `  kensa generate stories260K.gguf "Once upon a time"
  kensa generate ./hf-model --ids 1,125,25,90 --logits -n 0`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("generate takes MODEL and an optional PROMPT (see '%s --help')", c.CommandPath())}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			prompt := ""
			if len(args) == 2 {
				prompt = args[1]
			}
			if o.logits && !c.Flags().Changed("n") {
				o.n = 0
			}
			return runGenerate(c.Context(), &o, args[0], prompt, s)
		},
	}
	f := c.Flags()
	f.StringVar(&o.ids, "ids", "", "comma-separated token ids to start from, instead of a text prompt")
	f.IntVarP(&o.n, "n", "n", 32, "tokens to generate (default 0 with --logits)")
	f.BoolVar(&o.logits, "logits", false, "print the logits of every position as JSON")
	f.IntVarP(&o.jobs, "jobs", "j", runtime.NumCPU(), "parallel workers")
	f.BoolVar(&o.f32, "float32", false, "convert the weights to float32 at load and keep the activations in float32 (a float reference pass's arithmetic, 4 bytes per weight)")
	return c
}

func runGenerate(ctx context.Context, o *generateOptions, path, prompt string, s *streams) error {
	if o.n < 0 || o.n > 1<<16 {
		return usageError{fmt.Errorf("-n %d: want 0 to 65536", o.n)}
	}
	if o.ids != "" && prompt != "" {
		return usageError{fmt.Errorf("give either PROMPT or --ids, not both")}
	}
	fm, err := formats.Open(path)
	if err != nil {
		return targetError{path: path, err: err}
	}
	defer fm.Close()
	if !llm.Supported(fm) {
		return usageError{fmt.Errorf("%s is not a decoder kensa's runtime can run (it runs %s)", path, llm.ArchitectureList())}
	}
	m, err := llm.LoadWith(fm, llm.Options{Float32: o.f32})
	if err != nil {
		return targetError{path: path, err: err}
	}
	m.Workers = max(o.jobs, 1)
	tk, _ := tok.FromModel(fm)

	var ids []int
	switch {
	case o.ids != "":
		for _, f := range strings.Split(o.ids, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || id < 0 || id >= m.Config.Vocab {
				return usageError{fmt.Errorf("--ids: %q is not a token id of this model (0 to %d)", f, m.Config.Vocab-1)}
			}
			ids = append(ids, id)
		}
	case tk != nil:
		ids = tk.Encode(prompt, tk.AddsBOS())
	default:
		return usageError{fmt.Errorf("%s has no vocabulary kensa can encode with: give --ids", path)}
	}
	if len(ids) == 0 {
		if tk == nil || tk.BOS() < 0 {
			return usageError{fmt.Errorf("nothing to start from: give a PROMPT or --ids")}
		}
		ids = []int{tk.BOS()}
	}

	st := m.NewState(len(ids) + o.n)
	logits, err := m.Forward(st, ids, o.logits)
	if err != nil {
		return err
	}
	all := append([]int(nil), ids...)
	var gen []int
	last := logits[len(logits)-1]
	for i := 0; i < o.n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		next := llm.Argmax(last)
		gen = append(gen, next)
		all = append(all, next)
		if tk != nil && next == tk.EOS() {
			break
		}
		if i == o.n-1 {
			break
		}
		out, err := m.Forward(st, []int{next}, true)
		if err != nil {
			return err
		}
		if o.logits {
			logits = append(logits, out...)
		}
		last = out[len(out)-1]
	}
	w := bufio.NewWriter(s.out)
	defer w.Flush()
	if o.logits {
		if len(logits) > len(all) {
			logits = logits[:len(all)]
		}
		return json.NewEncoder(w).Encode(struct {
			IDs    []int       `json:"ids"`
			Logits [][]float32 `json:"logits"`
		}{all, logits})
	}
	if tk == nil {
		_, err := fmt.Fprintln(w, strings.Trim(fmt.Sprint(gen), "[]"))
		return err
	}
	_, err = fmt.Fprintln(w, tk.Decode(all))
	return err
}
