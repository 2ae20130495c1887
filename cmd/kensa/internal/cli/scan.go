package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kensa-scan/kensa/nn/ffn"
	"github.com/kensa-scan/kensa/scan"
	_ "github.com/kensa-scan/kensa/scan/detect/all" // registers every detector
	"github.com/kensa-scan/kensa/scan/report"
)

type scanOptions struct {
	format     string
	output     string
	failOn     string
	jobs       int
	recursive  bool
	quiet      bool
	noProgress bool
	verbose    bool
	base       string
	probe      bool
	noHash     bool
	budget     time.Duration
	inputShape string
	hfCache    bool
	ollama     bool
	lmstudio   bool
	activation string
	pool       string
	padding    string
}

func newScanCmd(s *streams) *cobra.Command {
	var o scanOptions
	c := &cobra.Command{
		Use:   "scan PATH...",
		Short: "Scan models for backdoors, hidden payloads and tampering",
		Long: `Scan model files and directories: structure forensics (bytes no tensor references,
overlapping tensors, non-canonical layouts), metadata and chat-template backdoors,
per-tensor and per-neuron statistics, and payloads hidden in the low bits of weights.
Every finding names its file, tensor, layer, role, row or column and exact byte range.
--probe also runs the model (trigger sweep and target inversion for llama-family decoders;
noise, patch, greedy-trigger and neuron tests for feed-forward classifiers); --base compares
each model with the base model it claims to derive from (changed tensors, rank-one edits,
trigger candidates, and the trigger sweep on both sides for supported decoders).

PATH is a model file (told by its bytes, whatever its name), a model directory (config.json
+ safetensors, a sharded index, GGUF files), or with -r a tree of models. Stores are
recognised with or without -r: a Hugging Face cache (~/.cache/huggingface/hub, a
models--ORG--NAME folder or one snapshot: each snapshot once, named ORG/NAME@REV), an Ollama
store (~/.ollama/models, its manifests/ or one manifest: each manifest one target named
MODEL:TAG, its template, system prompt, parameters and license checked, every blob's digest
verified) and LM Studio's models folder (PUBLISHER/MODEL/FILE). Every file of a model
directory is accounted for in the report's coverage: a file kensa cannot verify that can run
code when loaded (pickle-based .bin/.pt/.pth/.ckpt, Keras, ONNX, ...) is a high finding.
Symbolic links are followed only inside the path given; FIFOs and devices are never opened.
A model that cannot be read is reported as an error (exit 3) and the others are still
scanned.

Exit codes: 0 nothing at or above --fail-on, 1 findings at or above --fail-on, 2 usage
error (including an -o path that cannot be written, checked before scanning), 3 a target
could not be scanned in full (the report calls it error or incomplete; 3 takes precedence
over 1), 4 internal error, 130 interrupted (SIGINT/SIGTERM: the report of what was done is
still written, unfinished targets marked incomplete; a second signal exits at once).`,
		Example: `  kensa scan model.gguf
  kensa scan ~/.cache/huggingface/hub ~/.ollama/models
  kensa scan --hf-cache --ollama --lmstudio --format json -o local-models.json
  kensa scan -r /models --format sarif -o kensa.sarif
  kensa scan --format html -o report.html ./hf-model/
  kensa scan --fail-on medium --format json vendor.safetensors
  kensa scan --probe --probe-budget 5m model.gguf
  kensa scan --base ./base-hf/ vendor-q8_0.gguf`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 && !o.hfCache && !o.ollama && !o.lmstudio {
				return usageError{fmt.Errorf("scan needs at least one PATH, or --hf-cache, --ollama or --lmstudio (see '%s --help')", c.CommandPath())}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			return runScan(c.Context(), &o, append(args, o.storePaths()...), s)
		},
	}
	f := c.Flags()
	f.StringVar(&o.format, "format", "", "report format: text, json, sarif or html (default text, or json when the output is not a terminal and -o ends in .json)")
	f.StringVarP(&o.output, "output", "o", "", "write the report to this file instead of standard output")
	f.StringVar(&o.failOn, "fail-on", "high", "exit 1 when a finding is at or above this severity: info, low, medium, high, critical")
	f.IntVarP(&o.jobs, "jobs", "j", runtime.NumCPU(), "threads: the tensor pass, hashing, the runtime (--probe, --base) and everything else the scan runs")
	f.BoolVarP(&o.recursive, "recursive", "r", false, "scan every model in the directory trees given")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no progress and no summary on stderr")
	f.BoolVar(&o.noProgress, "no-progress", false, "no progress bar on stderr")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "text report: list every finding")
	f.BoolVar(&o.hfCache, "hf-cache", false, "also scan this machine's Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)")
	f.BoolVar(&o.ollama, "ollama", false, "also scan this machine's Ollama store ($OLLAMA_MODELS, else ~/.ollama/models)")
	f.BoolVar(&o.lmstudio, "lmstudio", false, "also scan this machine's LM Studio models (~/.lmstudio/models, or the older ~/.cache/lm-studio/models)")
	f.BoolVar(&o.noHash, "no-hash", false, "do not compute the SHA-256 of each file (faster on large models; the report's sha256 fields stay empty)")
	f.StringVar(&o.base, "base", "", "compare each model with this base model (file or directory, any format): touched tensors, rank-one edits, trigger candidates")
	f.BoolVar(&o.probe, "probe", false, "run forward passes where the architecture is supported (llama-family decoders: trigger sweep and target inversion; feed-forward classifiers: noise, patch, greedy-trigger and neuron-stimulation tests)")
	f.DurationVar(&o.budget, "probe-budget", 0, "time the probe may spend per model, e.g. 30s or 5m (default: about a minute; a probe cut short reports KS-PROBE-PARTIAL)")
	f.StringVar(&o.inputShape, "input-shape", "", "classifier input shape the weights do not fix, C,H,W or features (e.g. 1,28,28; default: inferred, or guessed and reported)")
	f.StringVar(&o.activation, "activation", "", "classifier activation between layers: "+strings.Join(ffn.Activations, ", ")+" (default relu; weights cannot show it)")
	f.StringVar(&o.pool, "pool", "", "classifier 2×2 pooling kind between convolutions: max or avg (default max)")
	f.StringVar(&o.padding, "padding", "", "classifier convolution padding: same or valid (default: inferred from shapes, or guessed)")
	return c
}

// newDiffCmd is "kensa diff BASE CANDIDATE...": kensa scan --base BASE CANDIDATE... with the
// same flags.
func newDiffCmd(s *streams) *cobra.Command {
	c := newScanCmd(s)
	c.Use = "diff BASE CANDIDATE..."
	c.Short = "Compare models with the base model they claim to derive from (scan --base)"
	c.Long = `Compare each CANDIDATE with BASE, any pairing of formats and element types (an HF
safetensors directory against a llama.cpp GGUF, F32 against Q8_0, ...): which tensors
changed beyond quantization noise, rank-one edits of a few matrices (ROME/MEMIT-style,
reported high), tokens whose embedding or output rows moved unlike the rest (trigger
candidates). Every scan detector runs on the candidates too. Same as kensa scan --base BASE.`
	c.Example = `  kensa diff ./base-hf/ vendor-q8_0.gguf
  kensa diff --format json base.gguf finetune/ -o diff.json`
	c.Args = func(c *cobra.Command, args []string) error {
		if len(args) < 2 {
			return usageError{fmt.Errorf("diff needs BASE and at least one CANDIDATE (see '%s --help')", c.CommandPath())}
		}
		return nil
	}
	run := c.RunE
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := c.Flags().Set("base", args[0]); err != nil {
			return err
		}
		return run(c, args[1:])
	}
	return c
}

func runScan(ctx context.Context, o *scanOptions, paths []string, s *streams) error {
	failOn, err := scan.ParseSeverity(o.failOn)
	if err != nil {
		return usageError{fmt.Errorf("--fail-on: %w", err)}
	}
	format := o.format
	if format == "" {
		format = "text"
		if strings.HasSuffix(o.output, ".json") {
			format = "json"
		} else if strings.HasSuffix(o.output, ".sarif") {
			format = "sarif"
		} else if strings.HasSuffix(o.output, ".html") {
			format = "html"
		}
	}
	known := false
	for _, f := range report.Formats() {
		known = known || f == format
	}
	if !known {
		return usageError{fmt.Errorf("--format %q: want one of %s", format, strings.Join(report.Formats(), ", "))}
	}
	if o.jobs < 1 {
		return usageError{fmt.Errorf("--jobs %d: want at least 1", o.jobs)}
	}
	if o.jobs < runtime.GOMAXPROCS(0) {
		// -j bounds every thread the scan runs: the tensor pass, hashing, the runtime's
		// matrix products and the classifier probes alike
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(o.jobs))
	}

	po, err := o.probeOptions()
	if err != nil {
		return err
	}
	if o.output != "" {
		if err := checkOutput(o.output); err != nil {
			return usageError{fmt.Errorf("-o %s: %w", o.output, err)}
		}
	}
	opt := scan.Options{Jobs: o.jobs, Recursive: o.recursive, Version: Version, NoHash: o.noHash, Probe: o.probe, ProbeOptions: po, Base: o.base}
	if !o.quiet {
		if pr := progressFor(s.errOut, o.noProgress, "scan"); pr != nil {
			opt.Progress = &scanProgress{p: pr}
		}
	}
	rep, runErr := runInterruptible(ctx, paths, opt)
	if rep == nil {
		if runErr != nil {
			return runErr
		}
		return errors.New("scan returned no report")
	}
	if werr := writeReport(o.output, s.out, func(w io.Writer) error {
		return report.Write(w, format, rep, report.Options{Color: format == "text" && o.output == "" && isTerminal(s.out), FailOn: failOn, Verbose: o.verbose})
	}); werr != nil {
		return fmt.Errorf("writing the report: %w", werr)
	}
	if runErr != nil {
		return runErr // interrupted: the partial report is written
	}

	// One definition, shared with the report: a target the report calls error or
	// incomplete makes the exit code 3, which takes precedence over 1 (findings).
	failed, unfinished := 0, 0
	for i := range rep.Targets {
		t := &rep.Targets[i]
		if t.Error != "" || t.Incomplete {
			unfinished++
		}
		for j := range t.Findings {
			if t.Findings[j].Severity >= failOn {
				failed++
			}
		}
	}
	if !o.quiet && o.output != "" {
		fmt.Fprintf(s.errOut, "kensa: %d targets scanned, %d findings at or above %s, report written to %s\n", len(rep.Targets), failed, failOn, o.output)
	}
	switch {
	case unfinished > 0:
		return targetError{err: fmt.Errorf("%d of %d targets could not be scanned in full (see the report's error fields)", unfinished, len(rep.Targets))}
	case failed > 0:
		return errFindings
	}
	return nil
}

// InterruptGrace is how long a scan may take, after SIGINT or SIGTERM, to finish the
// detector it is in before the report is written from the targets completed so far.
const InterruptGrace = 1200 * time.Millisecond

// runInterruptible runs the scan and, once ctx is cancelled, waits at most InterruptGrace
// for it to return; past that, the report holds the targets completed so far and every
// other target marked incomplete.
func runInterruptible(ctx context.Context, paths []string, opt scan.Options) (*scan.Report, error) {
	var (
		mu    sync.Mutex
		specs []scan.Spec
		done  []scan.Target
	)
	opt.Discovered = func(s []scan.Spec) { mu.Lock(); specs = s; mu.Unlock() }
	opt.Observe = func(t scan.Target) { mu.Lock(); done = append(done, t); mu.Unlock() }
	type result struct {
		rep *scan.Report
		err error
	}
	ch := make(chan result, 1)
	go func() {
		rep, err := scan.Run(ctx, paths, opt)
		ch <- result{rep, err}
	}()
	select {
	case r := <-ch:
		return r.rep, r.err
	case <-ctx.Done():
	}
	select {
	case r := <-ch:
		return r.rep, r.err
	case <-time.After(InterruptGrace):
	}
	mu.Lock()
	defer mu.Unlock()
	rep := &scan.Report{Schema: scan.Schema, Tool: scan.Tool{Name: "kensa", Version: opt.Version}, Targets: append([]scan.Target{}, done...)}
	for i := len(done); i < len(specs); i++ {
		reason := "interrupted before it was scanned"
		if i == len(done) {
			reason = "interrupted while it was scanned"
		}
		rep.Targets = append(rep.Targets, scan.Unscanned(specs[i], reason))
	}
	return rep, ctx.Err()
}

// checkOutput tells before a scan whether the report can be written to path.
func checkOutput(path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return errors.New("is a directory")
	case err == nil && !st.Mode().IsRegular():
		return nil // a device or pipe the user named (/dev/stdout): written as it is
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	}
	dir := filepath.Dir(path)
	dst, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("its directory: %w", err)
	}
	if !dst.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".kensa-check-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", dir, errors.Unwrap(err))
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// writeReport writes the report to path (standard output when ""): a regular file is
// written beside it and renamed into place, so a report is never left half written.
func writeReport(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "" {
		bw := bufio.NewWriter(stdout)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(f)
		werr := write(bw)
		if werr == nil {
			werr = bw.Flush()
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		return werr
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	bw := bufio.NewWriter(f)
	werr := write(bw)
	if werr == nil {
		werr = bw.Flush()
	}
	if werr == nil {
		werr = f.Chmod(0o644)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}

// storePaths returns the stores --hf-cache, --ollama and --lmstudio name, where the
// environment and the usual locations put them on this machine (a store that is not there
// is still returned, and reported as a target that could not be read).
func (o *scanOptions) storePaths() []string {
	home, _ := os.UserHomeDir()
	first := func(cands ...string) string {
		for _, c := range cands {
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return c
			}
		}
		return cands[0]
	}
	var out []string
	if o.hfCache {
		var cands []string
		if v := os.Getenv("HF_HUB_CACHE"); v != "" {
			cands = append(cands, v)
		} else if v := os.Getenv("HUGGINGFACE_HUB_CACHE"); v != "" {
			cands = append(cands, v)
		} else if v := os.Getenv("HF_HOME"); v != "" {
			cands = append(cands, filepath.Join(v, "hub"))
		} else if v := os.Getenv("XDG_CACHE_HOME"); v != "" {
			cands = append(cands, filepath.Join(v, "huggingface", "hub"))
		}
		cands = append(cands, filepath.Join(home, ".cache", "huggingface", "hub"))
		out = append(out, first(cands...))
	}
	if o.ollama {
		if v := os.Getenv("OLLAMA_MODELS"); v != "" {
			out = append(out, v)
		} else {
			out = append(out, first(filepath.Join(home, ".ollama", "models"), "/usr/share/ollama/.ollama/models"))
		}
	}
	if o.lmstudio {
		out = append(out, first(filepath.Join(home, ".lmstudio", "models"), filepath.Join(home, ".cache", "lm-studio", "models")))
	}
	return out
}

// scanProgress adapts the progress bar to scan.Progress.
type scanProgress struct{ p *progress }

func (sp *scanProgress) Start(target string, total int64) {
	sp.p.label = "scan " + shorten(target, 40)
	sp.p.n.Store(0)
	sp.p.start(total)
}
func (sp *scanProgress) Add(n int64) { sp.p.add(n) }
func (sp *scanProgress) Done()       { sp.p.done() }

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

// probeOptions checks and converts the probe flags.
func (o *scanOptions) probeOptions() (scan.ProbeOptions, error) {
	po := scan.ProbeOptions{Budget: o.budget, Activation: o.activation, Pool: o.pool, Padding: o.padding}
	if o.budget < 0 {
		return po, usageError{fmt.Errorf("--probe-budget %s: want a positive duration", o.budget)}
	}
	if o.activation != "" && !slices.Contains(ffn.Activations, o.activation) {
		return po, usageError{fmt.Errorf("--activation %q: want one of %s", o.activation, strings.Join(ffn.Activations, ", "))}
	}
	if o.pool != "" && o.pool != "max" && o.pool != "avg" {
		return po, usageError{fmt.Errorf("--pool %q: want max or avg", o.pool)}
	}
	if o.padding != "" && o.padding != "same" && o.padding != "valid" {
		return po, usageError{fmt.Errorf("--padding %q: want same or valid", o.padding)}
	}
	if o.inputShape != "" {
		for _, part := range strings.FieldsFunc(o.inputShape, func(r rune) bool { return r == ',' || r == 'x' || r == '×' }) {
			d, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || d <= 0 || d > 1<<20 {
				return po, usageError{fmt.Errorf("--input-shape %q: want positive integers such as 3,32,32", o.inputShape)}
			}
			po.InputShape = append(po.InputShape, d)
		}
	}
	if !o.probe && (o.budget != 0 || o.inputShape != "" || o.activation != "" || o.pool != "" || o.padding != "") {
		return po, usageError{errors.New("--probe-budget, --input-shape, --activation, --pool and --padding need --probe")}
	}
	return po, nil
}
