package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/internal/tensorwalk"
)

// Options control a scan.
type Options struct {
	Jobs      int        // parallel workers (≤ 0: number of CPUs)
	Recursive bool       // walk directory trees for models
	Detectors []Detector // nil: every registered detector
	// Progress, when set, is told the total bytes of each target's tensors before its
	// tensor pass and the bytes of each finished chunk; calls come from several goroutines.
	Progress Progress
	// ChunkElems is the number of values decoded at once per worker (≤ 0: 1<<19, so that
	// a chunk's decoded values stay in a core's cache while every detector reads them).
	ChunkElems int
	// NoHash skips the SHA-256 of each file (it is computed alongside the tensor pass).
	NoHash bool
	// Version is the tool version written into the report.
	Version string
	// Probe runs the ProbeDetectors (forward passes) where the architecture is supported.
	Probe bool
	// ProbeOptions tune the probes.
	ProbeOptions ProbeOptions
	// Base is a reference model (file or directory, any format) the targets are compared
	// with by the DiffDetectors; "" for none.
	Base string
}

// ProbeOptions tune the behavioural probes.
type ProbeOptions struct {
	// Budget bounds each target's probe time (0: the default, about a minute of work on two
	// cores for a 1B model, all of it for tiny models). A probe cut short says so.
	Budget time.Duration
	// What the weights of a feed-forward classifier cannot tell (empty: inferred, or
	// guessed by a stated prior that the report notes).
	InputShape []int
	Activation string // relu, tanh, sigmoid, gelu, leaky_relu, none
	Pool       string // max or avg
	Padding    string // same or valid
	// DecodersOnly runs only the decoder sweep (set when --base asks for differential
	// probing without --probe).
	DecodersOnly bool
}

// Progress receives progress of long scans.
type Progress interface {
	Start(target string, totalBytes int64)
	Add(bytes int64)
	Done()
}

// Targets expands paths into the models to scan: a file is one model; a directory holds a
// safetensors model (its index, or all its *.safetensors files, grouped as one model) and
// one model per GGUF file; with recursive, subdirectories are searched too. Paths are
// returned in a stable order, each model once.
func Targets(paths []string, recursive bool) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			// keep it: the scan reports it as a target that could not be read
			add(p)
			continue
		}
		if !st.IsDir() {
			add(p)
			continue
		}
		found := 0
		err = walkDirs(p, recursive, func(dir string, names []string) {
			for _, t := range dirTargets(dir, names) {
				add(t)
				found++
			}
		})
		if err != nil {
			return nil, err
		}
		if found == 0 {
			add(p) // reported as "no model"
		}
	}
	return out, nil
}

// dirTargets lists the models of one directory: a sharded safetensors checkpoint (an
// index, or files named like shards, -00001-of-00003) is one model, the directory; every
// other safetensors file and every GGUF file is a model of its own.
func dirTargets(dir string, names []string) []string {
	var out, st []string
	index, shards := false, 0
	for _, n := range names {
		low := strings.ToLower(n)
		switch {
		case strings.HasSuffix(low, ".safetensors.index.json"):
			index = true
		case strings.HasSuffix(low, ".safetensors"):
			st = append(st, n)
			if isShardName(strings.TrimSuffix(low, ".safetensors")) {
				shards++
			}
		}
	}
	if index || (shards > 1 && shards == len(st)) {
		out = append(out, dir)
	} else {
		for _, n := range st {
			out = append(out, filepath.Join(dir, n))
		}
	}
	for _, n := range names {
		if strings.HasSuffix(strings.ToLower(n), ".gguf") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

// isShardName reports whether a file name (without extension) ends like a shard:
// "-00001-of-00003".
func isShardName(s string) bool {
	i := strings.LastIndex(s, "-of-")
	if i < 0 {
		return false
	}
	j := strings.LastIndex(s[:i], "-")
	if j < 0 {
		return false
	}
	return allDigits(s[j+1:i]) && allDigits(s[i+4:])
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// walkDirs calls fn for dir (and, when recursive, every directory below it, not following
// symbolic links) with the sorted names of the regular files in it.
func walkDirs(dir string, recursive bool, fn func(dir string, names []string)) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names, subs []string
	for _, e := range ents {
		switch {
		case e.Type().IsRegular():
			names = append(names, e.Name())
		case e.IsDir() && !strings.HasPrefix(e.Name(), "."):
			subs = append(subs, e.Name())
		}
	}
	sort.Strings(names)
	sort.Strings(subs)
	fn(dir, names)
	if recursive {
		for _, s := range subs {
			if err := walkDirs(filepath.Join(dir, s), true, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// Run scans the models at paths (see Targets) and returns the report. A target that cannot
// be read becomes a Target with Error set and the others are still scanned; Run itself
// fails only when ctx is cancelled (returning what it has) or paths cannot be expanded.
func Run(ctx context.Context, paths []string, opt Options) (*Report, error) {
	if opt.Jobs <= 0 {
		opt.Jobs = runtime.NumCPU()
	}
	if opt.ChunkElems <= 0 {
		opt.ChunkElems = 1 << 19
	}
	if opt.Detectors == nil {
		opt.Detectors = Detectors()
	}
	targets, err := Targets(paths, opt.Recursive)
	if err != nil {
		return nil, err
	}
	rep := &Report{Schema: Schema, Tool: Tool{Name: "kensa", Version: opt.Version}, Targets: []Target{}}
	var base *Model
	var baseErr error
	if opt.Base != "" {
		bm, err := formats.Open(opt.Base)
		if err != nil {
			baseErr = fmt.Errorf("base model: %w", err)
		} else {
			defer bm.Close()
			if kvs, err := companionMetadata(bm); err == nil {
				bm.Metadata = append(bm.Metadata, kvs...)
			}
			base = newModel(bm)
		}
	}
	for _, p := range targets {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if baseErr != nil {
			rep.Targets = append(rep.Targets, Target{Path: p, Findings: []Finding{}, Files: []FileInfo{}, Error: baseErr.Error(), Risk: Risk{Verdict: VerdictError}})
			continue
		}
		t, err := scanTarget(ctx, p, &opt, base)
		rep.Targets = append(rep.Targets, t)
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// scanTarget scans one model. Errors reading the model go into the Target; the returned
// error is only ctx's.
func scanTarget(ctx context.Context, path string, opt *Options, base *Model) (Target, error) {
	t := Target{Path: path, Findings: []Finding{}, Files: []FileInfo{}}
	fm, err := formats.Open(path)
	if err != nil {
		t.Error = err.Error()
		t.Risk = Risk{Score: 0, Verdict: VerdictError}
		return t, nil
	}
	defer fm.Close()
	var derr []error
	if kvs, err := companionMetadata(fm); err != nil {
		derr = append(derr, err)
	} else {
		fm.Metadata = append(fm.Metadata, kvs...)
	}
	m := newModel(fm)
	m.Probe = opt.ProbeOptions
	t.Format, t.Tensors, t.Parameters, t.Layers = fm.Format, len(fm.Tensors), fm.Parameters(), m.Layers

	var (
		mu       sync.Mutex
		findings []Finding
	)
	emit := func(f Finding) {
		mu.Lock()
		findings = append(findings, f)
		mu.Unlock()
	}

	// Hash the files alongside the tensor pass.
	var hashes []FileInfo
	var hashErr error
	var hwg sync.WaitGroup
	if !opt.NoHash {
		hwg.Add(1)
		go func() {
			defer hwg.Done()
			hashes, hashErr = hashFiles(ctx, fm.Files)
		}()
	}

	for _, d := range opt.Detectors {
		if hd, ok := d.(HeaderDetector); ok {
			if err := hd.Header(ctx, m, emit); err != nil {
				derr = append(derr, fmt.Errorf("%s: %w", d.Name(), err))
			}
		}
	}
	var passes []TensorPass
	for _, d := range opt.Detectors {
		if td, ok := d.(TensorDetector); ok {
			passes = append(passes, td.Begin(m, opt.Jobs))
		}
	}
	if len(passes) > 0 {
		sel, note := selectTensors(fm)
		if note != "" {
			derr = append(derr, errors.New(note))
		}
		chunks, total := tensorwalk.Plan(fm, sel, opt.ChunkElems)
		var add func(int64)
		if opt.Progress != nil {
			opt.Progress.Start(path, total)
			add = opt.Progress.Add
		}
		err := tensorwalk.Walk(ctx, fm, chunks, tensorwalk.Options{Jobs: opt.Jobs, Progress: add},
			func(w int, c tensorwalk.Chunk, raw []byte, values func() []float32) error {
				ti := &fm.Tensors[c.Tensor]
				rl := ti.RowLen()
				ch := Chunk{Tensor: c.Tensor, Start: c.Start, Raw: raw, RowLen: rl, values: values}
				if c.WholeRows && rl > 0 {
					ch.Row, ch.Rows = c.Start/rl, (c.End-c.Start)/rl
				} else {
					ch.Row, ch.Rows = -1, 0
				}
				be, bb := int64(ti.DType.BlockElems()), int64(ti.DType.BlockBytes())
				ch.Offset = ti.Offset + c.Start/be*bb
				for _, p := range passes {
					p.Chunk(w, &ch)
				}
				return nil
			})
		if opt.Progress != nil {
			opt.Progress.Done()
		}
		if err != nil {
			if ctx.Err() != nil {
				hwg.Wait()
				return t, ctx.Err()
			}
			derr = append(derr, err)
		}
		if err == nil {
			for _, p := range passes {
				if err := p.Finish(ctx, emit); err != nil {
					derr = append(derr, err)
				}
			}
		}
	}
	if base != nil && ctx.Err() == nil {
		for _, d := range opt.Detectors {
			if dd, ok := d.(DiffDetector); ok {
				if err := dd.Diff(ctx, base, m, emit); err != nil {
					derr = append(derr, fmt.Errorf("%s: %w", d.Name(), err))
				}
			}
		}
	}
	if (opt.Probe || base != nil) && ctx.Err() == nil {
		// with a base model, decoders are probed on both sides (differential probing)
		m.Base = base
		m.Probe.DecodersOnly = !opt.Probe
		for _, d := range opt.Detectors {
			if pd, ok := d.(ProbeDetector); ok {
				if err := pd.Probe(ctx, m, emit); err != nil {
					derr = append(derr, fmt.Errorf("%s: %w", d.Name(), err))
				}
			}
		}
	}
	hwg.Wait()
	if hashErr != nil {
		derr = append(derr, hashErr)
	}
	if ctx.Err() != nil {
		return t, ctx.Err()
	}
	t.Files = hashes
	if opt.NoHash || hashes == nil {
		t.Files = make([]FileInfo, len(fm.Files))
		for i, f := range fm.Files {
			t.Files[i] = FileInfo{Path: f.Path, Size: f.Size}
		}
	}
	sortFindings(findings)
	t.Findings = append(t.Findings, findings...)
	t.Classifier = m.classifier
	if m.triggered {
		t.Triggers = append([]Trigger{}, m.triggers...)
		sort.SliceStable(t.Triggers, func(i, j int) bool { return t.Triggers[i].Score > t.Triggers[j].Score })
	}
	t.Histograms = m.histograms
	if len(derr) > 0 {
		t.Error = errors.Join(derr...).Error()
	}
	t.Risk = assess(&t)
	return t, nil
}

// maxReadFactor bounds the bytes a tensor pass decodes to this many times the model's file
// sizes (plus 64 MiB): a file whose tensors overlap each other many times over cannot make a
// scan run for hours.
const maxReadFactor = 2

// selectTensors returns the tensors the tensor pass decodes: each distinct byte range once
// (tensors that alias exactly the same bytes and type are decoded once; the layout rules
// report the aliasing), within the read budget. note explains what was left out, if anything.
func selectTensors(fm *formats.Model) ([]int, string) {
	type key struct {
		file        string
		off, length int64
		dt          formats.DType
	}
	var size int64
	for _, f := range fm.Files {
		size += f.Size
	}
	budget := maxReadFactor*size + 64<<20
	seen := make(map[key]bool, len(fm.Tensors))
	sel := make([]int, 0, len(fm.Tensors))
	var used int64
	skipped, aliased := 0, 0
	for i := range fm.Tensors {
		t := &fm.Tensors[i]
		k := key{t.File, t.Offset, t.Length, t.DType}
		if seen[k] {
			aliased++
			continue
		}
		seen[k] = true
		if used+t.Length > budget {
			skipped++
			continue
		}
		used += t.Length
		sel = append(sel, i)
	}
	if skipped > 0 {
		return sel, fmt.Sprintf("tensor values not fully scanned: %d tensors left out because the model's tensors reference more than %d times its %d bytes (overlapping tensors)", skipped, maxReadFactor, size)
	}
	return sel, ""
}

func newModel(fm *formats.Model) *Model {
	names := make([]string, len(fm.Tensors))
	shapes := make([][]int64, len(fm.Tensors))
	for i := range fm.Tensors {
		names[i], shapes[i] = fm.Tensors[i].Name, fm.Tensors[i].Shape
	}
	m := &Model{Model: fm, Roles: classifyAll(names, shapes)}
	for _, r := range m.Roles {
		if r.Layer+1 > m.Layers {
			m.Layers = r.Layer + 1
		}
	}
	return m
}

func hashFiles(ctx context.Context, files []*formats.File) ([]FileInfo, error) {
	out := make([]FileInfo, len(files))
	buf := make([]byte, 4<<20)
	for i, f := range files {
		h := sha256.New()
		for off := int64(0); off < f.Size; {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n := min(int64(len(buf)), f.Size-off)
			b, err := f.Bytes(off, n, buf)
			if err != nil && err != io.EOF {
				return nil, err
			}
			h.Write(b)
			off += n
		}
		out[i] = FileInfo{Path: f.Path, Size: f.Size, SHA256: hex.EncodeToString(h.Sum(nil))}
	}
	return out, nil
}

// sortFindings orders findings worst first: severity, score, then rule, file, offset and
// tensor, so reports are deterministic.
func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := &fs[i], &fs[j]
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		if a.Location.File != b.Location.File {
			return a.Location.File < b.Location.File
		}
		if a.Location.ByteOffset != b.Location.ByteOffset {
			return a.Location.ByteOffset < b.Location.ByteOffset
		}
		if a.Location.Tensor != b.Location.Tensor {
			return a.Location.Tensor < b.Location.Tensor
		}
		return a.Message < b.Message
	})
}
