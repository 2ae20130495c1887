package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
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
	// Discovered, when set, is told the targets before the first is scanned.
	Discovered func([]Spec)
	// Observe, when set, is told each target's result as soon as it is complete.
	Observe func(Target)
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

// Run scans the models at paths (see Discover) and returns the report. A target that cannot
// be read becomes a Target with Error set and the others are still scanned. When ctx is
// cancelled Run stops within the current detector's next check, and returns the report
// (the target it was scanning and every one after it marked Incomplete) with ctx.Err().
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
	specs := Discover(paths, opt.Recursive)
	if opt.Discovered != nil {
		opt.Discovered(specs)
	}
	rep := &Report{Schema: Schema, Tool: Tool{Name: "kensa", Version: opt.Version}, Targets: []Target{}}
	var (
		base     *Model
		baseInfo *BaseInfo
		baseErr  error
	)
	if opt.Base != "" {
		var closeBase func()
		base, baseInfo, closeBase, baseErr = openBase(ctx, &opt)
		if closeBase != nil {
			defer closeBase()
		}
	}
	for i := range specs {
		if err := ctx.Err(); err != nil {
			for _, s := range specs[i:] {
				rep.Targets = append(rep.Targets, Unscanned(s, "interrupted before it was scanned"))
			}
			return rep, err
		}
		var t Target
		if baseErr != nil {
			t = newTarget(&specs[i])
			t.Error = baseErr.Error()
			t.Coverage.Analyses = allNotRun("the base model could not be read")
			t.Risk = Risk{Verdict: VerdictError}
		} else {
			t = scanSpec(ctx, &specs[i], &opt, base)
		}
		t.Base = baseInfo
		rep.Targets = append(rep.Targets, t)
		if opt.Observe != nil {
			opt.Observe(t)
		}
	}
	return rep, ctx.Err()
}

// Unscanned is the report entry of a target that was not scanned (an interrupted run):
// incomplete, with the reason as its error.
func Unscanned(s Spec, reason string) Target {
	t := newTarget(&s)
	t.Incomplete = true
	t.Error = reason
	t.Coverage.Analyses = allNotRun(reason)
	t.Risk = Risk{Verdict: VerdictError}
	return t
}

// newTarget starts the report entry of a spec.
func newTarget(s *Spec) Target {
	t := Target{Path: s.Path, Name: s.Name, Findings: append([]Finding{}, s.Findings...), Files: []FileInfo{},
		Coverage: &Coverage{FilesSkipped: append([]SkippedFile{}, s.Skipped...), Analyses: map[string]string{}}}
	return t
}

// openBase opens the base model of a differential scan and identifies it.
func openBase(ctx context.Context, opt *Options) (*Model, *BaseInfo, func(), error) {
	info := &BaseInfo{Path: opt.Base}
	bm, err := formats.Open(opt.Base)
	if err != nil {
		return nil, info, nil, fmt.Errorf("base model: %w", err)
	}
	info.Format = bm.Format
	kvs, _, _, _ := companions(bm, opt)
	bm.Metadata = append(bm.Metadata, kvs...)
	if !opt.NoHash {
		var files []FileInfo
		herr := formats.Guard(opt.Base, func() error {
			var err error
			files, err = hashFiles(ctx, bm.Files)
			return err
		})
		if herr != nil {
			bm.Close()
			return nil, info, nil, fmt.Errorf("base model: %w", herr)
		}
		info.Files = files
		info.SHA256 = combinedDigest(files)
	}
	m := newModel(bm)
	m.Jobs = opt.Jobs
	return m, info, func() { bm.Close() }, nil
}

// combinedDigest is the SHA-256 of a model's files: the file's own for one file; for
// several, the SHA-256 of the lines "HEX  NAME\n" (sha256sum's format, by file name).
func combinedDigest(files []FileInfo) string {
	if len(files) == 1 {
		return files[0].SHA256
	}
	lines := make([]string, len(files))
	for i, f := range files {
		lines[i] = f.SHA256 + "  " + filepath.Base(f.Path) + "\n"
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// scanSpec scans one target. Whatever goes wrong goes into the Target: a model that cannot
// be read, a detector's error, a file truncated while it is read (a memory fault, caught),
// an interruption (Incomplete).
func scanSpec(ctx context.Context, s *Spec, opt *Options, base *Model) Target {
	t := newTarget(s)
	err := formats.Guard(s.Path, func() error {
		switch s.kind {
		case kindError:
			t.Error = s.Err.Error()
			t.Coverage.Analyses = allNotRun("the target could not be read")
		case kindFiles:
			if s.Err != nil {
				t.Error = s.Err.Error()
			}
			t.Coverage.Analyses = allNotRun("no model file in a format kensa reads")
		case kindOllama:
			scanOllama(ctx, s, &t, opt, base)
		default:
			fm, err := formats.Open(s.Path)
			if err != nil {
				t.Error = err.Error()
				t.Coverage.Analyses = allNotRun("the model could not be read")
				// a file named like a model that is in truth a pickle, an archive, ...
				if head, herr := formats.ReadHead(s.Path, headBytes); herr == nil {
					if k := formats.Classify("", head); k.Code {
						t.Findings = append(t.Findings, fileFinding(RuleFileUnverified, High, s.Path,
							fmt.Sprintf("%s is named like a %s model but its bytes are a %s: it can run code when loaded, and kensa cannot verify this format", s.Path, strings.TrimPrefix(filepath.Ext(s.Path), "."), k.Format),
							map[string]any{"format": k.Format}))
					}
				}
				break
			}
			defer fm.Close()
			scanModel(ctx, fm, &t, opt, base)
		}
		return nil
	})
	if err != nil {
		t.Incomplete = true
		t.Error = joinErr(t.Error, err.Error())
	}
	if ctx.Err() != nil && !t.Incomplete && t.Error == "" && s.kind != kindError {
		// the scan ended early: say what was not examined
		t.Incomplete = true
		t.Error = "interrupted"
	}
	t.Risk = assess(&t)
	return t
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "\n" + b
}

// scanOllama scans an Ollama manifest: the model blob with the manifest's template, system
// prompt, parameters, messages and license as its metadata; adapters and projectors as
// models of their own, their findings merged; every blob's digest checked.
func scanOllama(ctx context.Context, s *Spec, t *Target, opt *Options, base *Model) {
	e, err := loadOllama(s)
	if e != nil {
		t.Findings = append(t.Findings, e.findings...)
		t.Coverage.FilesSkipped = append(t.Coverage.FilesSkipped, e.skipped...)
	}
	if err != nil {
		t.Error = err.Error()
		t.Coverage.Analyses = allNotRun("the manifest could not be read")
		if e != nil {
			t.Files = append(t.Files, e.files...)
		}
		return
	}
	fm, err := formats.Open(e.models[0].path)
	if err != nil {
		t.Error = err.Error()
		t.Coverage.Analyses = allNotRun("the model blob could not be read")
		t.Files = append(t.Files, e.files...)
		return
	}
	defer fm.Close()
	fm.Metadata = append(fm.Metadata, e.kvs...)
	scanModel(ctx, fm, t, opt, base)
	for _, x := range e.models[1:] {
		if ctx.Err() != nil {
			t.Coverage.FilesSkipped = append(t.Coverage.FilesSkipped, SkippedFile{Path: x.path, Format: x.layer.MediaType, Reason: "interrupted before it was scanned"})
			continue
		}
		xm, err := formats.Open(x.path)
		if err != nil {
			t.Error = joinErr(t.Error, fmt.Sprintf("%s layer %s: %v", x.layer.MediaType, x.layer.Digest, err))
			continue
		}
		sub := Target{Findings: []Finding{}, Coverage: &Coverage{Analyses: map[string]string{}}}
		xopt := *opt
		xopt.Probe, xopt.Base = false, ""
		scanModel(ctx, xm, &sub, &xopt, nil)
		xm.Close()
		kind := strings.TrimPrefix(x.layer.MediaType, "application/vnd.ollama.image.")
		for _, f := range sub.Findings {
			f.Message = kind + " layer: " + f.Message
			t.Findings = append(t.Findings, f)
		}
		t.Files = append(t.Files, sub.Files...)
		if sub.Error != "" {
			t.Error = joinErr(t.Error, kind+" layer: "+sub.Error)
		}
		t.Incomplete = t.Incomplete || sub.Incomplete
	}
	// digests of the model blobs, from the hashes of the scan
	checked := 0
	for _, x := range e.models {
		for _, f := range t.Files {
			if f.Path == x.path && f.SHA256 != "" {
				checked++
				if f.SHA256 != x.hex {
					t.Findings = append(t.Findings, digestFinding(x, "has SHA-256 "+f.SHA256+", not the "+x.hex+" it is named by"))
				}
			}
		}
	}
	t.Files = append(e.files, t.Files...)
	switch {
	case checked == len(e.models):
		t.Coverage.Analyses["digests"] = AnalysisDone
	case opt.NoHash:
		t.Coverage.Analyses["digests"] = NotRun("--no-hash: the model blobs' digests were not checked")
	default:
		t.Coverage.Analyses["digests"] = NotRun("the model blobs could not be hashed")
	}
	sortFindings(t.Findings)
}

// scanModel runs the detectors on one opened model and fills t.
func scanModel(ctx context.Context, fm *formats.Model, t *Target, opt *Options, base *Model) {
	var derr []error
	kvs, cfs, examined, cerr := companions(fm, opt)
	if cerr != nil {
		derr = append(derr, cerr)
	}
	fm.Metadata = append(fm.Metadata, kvs...)
	t.Findings = append(t.Findings, cfs...)
	if len(examined) > 0 {
		ex := map[string]bool{}
		for _, p := range examined {
			ex[filepath.Clean(p)] = true
		}
		kept := t.Coverage.FilesSkipped[:0]
		for _, sk := range t.Coverage.FilesSkipped {
			if !ex[filepath.Clean(sk.Path)] {
				kept = append(kept, sk)
			}
		}
		t.Coverage.FilesSkipped = kept
	}
	m := newModel(fm)
	m.Probe = opt.ProbeOptions
	m.Jobs = opt.Jobs
	t.Format, t.Tensors, t.Parameters, t.Layers = fm.Format, len(fm.Tensors), fm.Parameters(), m.Layers
	an := t.Coverage.Analyses
	selected := map[string]bool{}
	for _, d := range opt.Detectors {
		if a, ok := analysisOf[d.Name()]; ok {
			selected[a] = true
		}
	}
	state := func(a string, err error) {
		switch {
		case err != nil && ctx.Err() != nil:
			an[a] = NotRun("interrupted")
		case err != nil:
			an[a] = NotRun("failed: " + err.Error())
		default:
			if _, ok := an[a]; !ok {
				an[a] = AnalysisDone
			}
		}
	}

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
			hashErr = formats.Guard(fm.Path, func() error {
				var err error
				hashes, err = hashFiles(ctx, fm.Files)
				return err
			})
		}()
	}

	for _, d := range opt.Detectors {
		if hd, ok := d.(HeaderDetector); ok {
			err := hd.Header(ctx, m, emit)
			if err != nil {
				derr = append(derr, fmt.Errorf("%s: %w", d.Name(), err))
			}
			if a, ok := analysisOf[d.Name()]; ok {
				state(a, err)
			}
		}
	}
	var passes []TensorPass
	var passNames []string
	for _, d := range opt.Detectors {
		if td, ok := d.(TensorDetector); ok {
			passes = append(passes, td.Begin(m, opt.Jobs))
			passNames = append(passNames, d.Name())
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
			opt.Progress.Start(t.Path, total)
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
		if err != nil && ctx.Err() == nil {
			derr = append(derr, err)
			t.Incomplete = true // the weights were not all examined
		}
		for i, p := range passes {
			a, ok := analysisOf[passNames[i]]
			switch {
			case err != nil:
				if ok {
					state(a, err)
				}
			default:
				ferr := p.Finish(ctx, emit)
				if ferr != nil {
					derr = append(derr, ferr)
				}
				if ok {
					if len(fm.Tensors) == 0 {
						an[a] = NotRun("the model has no tensors")
					}
					state(a, ferr)
				}
			}
		}
	}
	if base != nil && ctx.Err() == nil {
		for _, d := range opt.Detectors {
			if dd, ok := d.(DiffDetector); ok {
				err := dd.Diff(ctx, base, m, emit)
				if err != nil {
					derr = append(derr, fmt.Errorf("%s: %w", d.Name(), err))
				}
				if a, ok := analysisOf[d.Name()]; ok {
					state(a, err)
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
				err := pd.Probe(ctx, m, emit)
				if err != nil {
					derr = append(derr, fmt.Errorf("%s: %w", d.Name(), err))
				}
				if a, ok := analysisOf[d.Name()]; ok {
					if s, set := m.analysis(a); set {
						an[a] = s
					}
					state(a, err)
				}
			}
		}
	}
	hwg.Wait()
	if hashErr != nil && ctx.Err() == nil {
		derr = append(derr, hashErr)
	}
	for _, e := range derr {
		if errors.Is(e, formats.ErrFault) {
			t.Incomplete = true // a file changed under the scan: nothing after it is sure
		}
	}
	// what did not run, and why
	for _, a := range analysisNames {
		if s, set := m.analysis(a); set {
			if cur, ok := an[a]; !ok || cur == AnalysisDone {
				an[a] = s
			}
		}
		if _, ok := an[a]; ok {
			continue
		}
		switch {
		case !selected[a]:
			an[a] = NotRun("detector not selected")
		case a == "diff" && base == nil:
			an[a] = NotRun("no --base given")
		case a == "probe" && !opt.Probe && base == nil:
			an[a] = NotRun("--probe not given")
		case ctx.Err() != nil:
			an[a] = NotRun("interrupted")
		default:
			an[a] = AnalysisDone
		}
	}
	if ctx.Err() != nil {
		t.Incomplete = true
		derr = append(derr, fmt.Errorf("interrupted: %w", ctx.Err()))
	}
	t.Files = append(t.Files, hashes...)
	if opt.NoHash || hashes == nil {
		for _, f := range fm.Files {
			t.Files = append(t.Files, FileInfo{Path: f.Path, Size: f.Size})
		}
	}
	sortFindings(findings)
	t.Findings = append(t.Findings, findings...)
	sortFindings(t.Findings)
	t.Classifier = m.classifier
	if m.triggered {
		t.Triggers = append([]Trigger{}, m.triggers...)
		sortTriggers(t.Triggers)
	}
	t.Histograms = m.histograms
	if len(derr) > 0 {
		t.Error = joinErr(t.Error, errors.Join(derr...).Error())
	}
}

// sortTriggers lists triggers the model's behaviour confirmed (a forced output found by
// running it) before weight-only candidates, each group by its own score: scores from
// different sources are not on one scale.
func sortTriggers(ts []Trigger) {
	confirmed := func(t *Trigger) bool { return t.ForcedOutput != "" && t.Source != "weights" }
	sort.SliceStable(ts, func(i, j int) bool {
		ci, cj := confirmed(&ts[i]), confirmed(&ts[j])
		if ci != cj {
			return ci
		}
		return ts[i].Score > ts[j].Score
	})
}

// companions returns the metadata of the files that sit beside a model (chat templates),
// findings about those files (when the companion detector is selected), the paths of the
// files examined, and why any present companion could not be read.
func companions(fm *formats.Model, opt *Options) ([]formats.KV, []Finding, []string, error) {
	kvs, fs, files, errs := readCompanions(fm)
	if !slices.ContainsFunc(opt.Detectors, func(d Detector) bool { return d.Name() == "companion" }) {
		fs = nil
	}
	return kvs, fs, files, errors.Join(errs...)
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
