package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/nn/kernels"
	"github.com/kensa-scan/kensa/nn/llm"
)

type benchOptions struct {
	jobs   int
	prompt int
	gen    int
	reps   int
	format string
}

func newBenchCmd(s *streams) *cobra.Command {
	var o benchOptions
	c := &cobra.Command{
		Use:   "bench MODEL",
		Short: "Measure the runtime's prompt and decode speed on a model (llama-bench's pp and tg)",
		Long: `Load MODEL with kensa's runtime and measure, as llama-bench does, prompt processing
(pp: --prompt tokens evaluated as one batch) and text generation (tg: --gen tokens decoded
one at a time after it) in tokens per second, each the mean of --reps runs, with the load
time and the process's peak resident memory. The numbers say what a --probe-budget buys on
this machine: a probe's sweep is mostly prompt processing, its target inversion decoding.

Token ids are a fixed pseudo-random sequence (the speed does not depend on them).`,
		Example: `  kensa bench model.gguf
  kensa bench -j 1 --prompt 512 --gen 128 ./hf-model
  kensa bench --format json model-q8_0.gguf`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runBench(c.Context(), &o, args[0], s)
		},
	}
	f := c.Flags()
	f.IntVarP(&o.jobs, "jobs", "j", runtime.NumCPU(), "threads for matrix products")
	f.IntVar(&o.prompt, "prompt", 64, "prompt tokens evaluated as one batch (pp); 0 to skip")
	f.IntVar(&o.gen, "gen", 32, "tokens decoded one at a time (tg); 0 to skip")
	f.IntVar(&o.reps, "reps", 3, "repetitions of each test")
	f.StringVar(&o.format, "format", "text", "output: text or json")
	return c
}

// benchResult is one row of kensa bench, in llama-bench's terms.
type benchResult struct {
	Model      string  `json:"model"`
	Arch       string  `json:"arch"`
	Params     int64   `json:"params"`
	SizeBytes  int64   `json:"size_bytes"`
	Threads    int     `json:"threads"`
	Test       string  `json:"test"` // "pp64", "tg32"
	Tokens     int     `json:"n_tokens"`
	TokensPerS float64 `json:"avg_ts"`
	StdDevTPS  float64 `json:"stddev_ts"`
	LoadS      float64 `json:"load_seconds"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
	Kernels    string  `json:"kernels"` // the instruction sets of the matrix kernels ("amd64 AVX-512+VNNI", "pure Go")
}

func runBench(ctx context.Context, o *benchOptions, path string, s *streams) error {
	if o.jobs < 1 || o.prompt < 0 || o.gen < 0 || o.reps < 1 || o.prompt+o.gen == 0 {
		return usageError{fmt.Errorf("bench: want -j ≥ 1, --reps ≥ 1 and a positive --prompt or --gen")}
	}
	if o.format != "text" && o.format != "json" {
		return usageError{fmt.Errorf("--format %q: want text or json", o.format)}
	}
	t0 := time.Now()
	fm, err := formats.Open(path)
	if err != nil {
		return targetError{path: path, err: err}
	}
	defer fm.Close()
	if !llm.Supported(fm) {
		return usageError{fmt.Errorf("%s is not a decoder kensa's runtime can run (it runs %s)", path, llm.ArchitectureList())}
	}
	m, err := llm.Load(fm)
	if err != nil {
		return targetError{path: path, err: err}
	}
	load := time.Since(t0).Seconds()
	m.Workers = o.jobs
	var size int64
	for _, f := range fm.Files {
		size += f.Size
	}
	ids := make([]int, o.prompt+o.gen)
	x := uint32(12345)
	for i := range ids {
		x = x*1664525 + 1013904223
		ids[i] = int(x>>8) % m.Config.Vocab
	}
	base := benchResult{Model: path, Arch: m.Config.Arch, Params: fm.Parameters(), SizeBytes: size, Threads: o.jobs, LoadS: load, Kernels: kernels.Features()}
	var rows []benchResult
	measure := func(test string, n int, run func() error) error {
		var ts []float64
		for r := 0; r < o.reps; r++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			start := time.Now()
			if err := run(); err != nil {
				return err
			}
			ts = append(ts, float64(n)/time.Since(start).Seconds())
		}
		row := base
		row.Test, row.Tokens = test, n
		row.TokensPerS, row.StdDevTPS = meanStd(ts)
		rows = append(rows, row)
		return nil
	}
	if o.prompt > 0 {
		err := measure("pp"+strconv.Itoa(o.prompt), o.prompt, func() error {
			st := m.NewState(o.prompt)
			_, err := m.Forward(st, ids[:o.prompt], false)
			return err
		})
		if err != nil {
			return err
		}
	}
	if o.gen > 0 {
		err := measure("tg"+strconv.Itoa(o.gen), o.gen, func() error {
			st := m.NewState(o.gen)
			for i := 0; i < o.gen; i++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				if _, err := m.Forward(st, ids[o.prompt+i:o.prompt+i+1], false); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	peak := peakRSS()
	for i := range rows {
		rows[i].PeakRSS = peak
	}
	w := bufio.NewWriter(s.out)
	defer w.Flush()
	if o.format == "json" {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(rows)
	}
	fmt.Fprintf(w, "| %-28s | %-10s | %9s | %8s | %7s | %8s | %19s |\n", "model", "arch", "size", "params", "threads", "test", "t/s")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 30), strings.Repeat("-", 12), strings.Repeat("-", 11), strings.Repeat("-", 10), strings.Repeat("-", 9), strings.Repeat("-", 10), strings.Repeat("-", 21))
	for _, r := range rows {
		fmt.Fprintf(w, "| %-28s | %-10s | %9s | %8s | %7d | %8s | %10.2f ± %6.2f |\n", shorten(r.Model, 28), r.Arch, humanBytes(r.SizeBytes), humanCount(r.Params), r.Threads, r.Test, r.TokensPerS, r.StdDevTPS)
	}
	fmt.Fprintf(w, "\nload %.2f s, peak RSS %s (file %s), kernels %s\n", load, humanBytes(peak), humanBytes(size), kernels.Features())
	return nil
}

func meanStd(xs []float64) (float64, float64) {
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	if len(xs) > 1 {
		v /= float64(len(xs) - 1)
	}
	return m, math.Sqrt(v)
}

// peakRSS returns the process's peak resident memory (VmHWM on Linux; the Go runtime's
// total from the OS elsewhere).
func peakRSS() int64 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.Sys)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
