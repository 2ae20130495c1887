package scan

import (
	"context"
	"sync"

	"github.com/kensa-scan/kensa/formats"
)

// Model is what detectors see of a target: the opened model, each tensor's layer and role,
// and format-specific details.
type Model struct {
	*formats.Model
	// Roles[i] describes Model.Tensors[i].
	Roles []TensorRole
	// Layers is the number of numbered blocks (max layer index + 1; 0 when none).
	Layers int
	// Probe holds the options of behavioural probes (kensa scan --probe).
	Probe ProbeOptions
	// Base is the base model of a differential scan (--base), or nil.
	Base *Model
	// Jobs is the number of threads a detector may use (Options.Jobs, -j).
	Jobs int

	mu         sync.Mutex
	classifier *Classifier
	probed     bool // the classifier analysis came from forward passes
	triggers   []Trigger
	triggered  bool
	histograms []Histogram
	analyses   map[string]string // set by detectors (SetAnalysis)
}

// SetClassifier records the classifier-head analysis (Target.Classifier). When several
// detectors set one, the highest score wins.
func (m *Model) SetClassifier(c Classifier) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.probed && (m.classifier == nil || c.Score > m.classifier.Score) {
		m.classifier = &c
	}
}

// SetProbedClassifier records a classifier analysis made by running the model; it replaces
// any weight-only analysis, whose evidence is weaker.
func (m *Model) SetProbedClassifier(c Classifier) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.classifier, m.probed = &c, true
}

// AddTriggers records trigger candidates (Target.Triggers); calling it with none still
// marks trigger analysis as run.
func (m *Model) AddTriggers(ts ...Trigger) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.triggered = true
	m.triggers = append(m.triggers, ts...)
}

// AddHistogram keeps the value histogram of a flagged tensor for the HTML report.
func (m *Model) AddHistogram(h Histogram) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.histograms = append(m.histograms, h)
}

// TensorRole places a tensor in the architecture.
type TensorRole struct {
	Layer int    // block index, -1 when the tensor belongs to no numbered block
	Role  string // normalised role shared across naming conventions ("attn_q", "ffn_down", ...)
	Kind  string // "weight", "bias", "norm", "other"
}

// Emit records a finding. It is safe to call from several goroutines.
type Emit func(Finding)

// Detector is a family of rules. Every detector implements Name and Rules and at least
// one of HeaderDetector and TensorDetector.
type Detector interface {
	// Name is the detector's name ("structure", "metadata", ...).
	Name() string
	// Rules are the rules it reports.
	Rules() []Rule
}

// HeaderDetector inspects a model without reading tensor values: headers, layout,
// metadata. It may read raw bytes of the model's files (through Model.Files) but never
// decodes tensors; that is the engine's job.
type HeaderDetector interface {
	Detector
	Header(ctx context.Context, m *Model, emit Emit) error
}

// TensorDetector inspects tensor values. The engine decodes each tensor once, in chunks of
// whole rows (a row is the innermost dimension), and hands every chunk to the pass of
// every TensorDetector.
type TensorDetector interface {
	Detector
	// Begin starts a pass over one model, run with the given number of workers.
	Begin(m *Model, workers int) TensorPass
}

// Chunk is a piece of one tensor: whole rows [Row, Row+Rows) (for 0-D and 1-D tensors, the
// whole tensor is one row) with their decoded values and their bytes as stored.
type Chunk struct {
	Tensor int    // index into Model.Tensors
	Start  int64  // first element (row-major index)
	Row    int64  // first row (-1 when the chunk is not whole rows)
	Rows   int64  // number of rows
	RowLen int64  // elements per row
	Offset int64  // absolute file offset of Raw
	Raw    []byte // the stored bytes of these rows (big-endian GGUF data is not converted)

	values func() []float32
}

// Values returns the chunk's values decoded to float32. They are decoded on the first call
// and shared by every detector; a detector that reads only Raw costs no decoding.
func (c *Chunk) Values() []float32 { return c.values() }

// TensorPass receives the chunks of one model. Chunk is called concurrently from the
// engine's workers, each with its own worker index in [0, workers): state kept per worker
// needs no locking. Chunks of one tensor may arrive on different workers and in any order.
// Finish is called once, after the last chunk, to emit the findings.
type TensorPass interface {
	Chunk(worker int, c *Chunk)
	Finish(ctx context.Context, emit Emit) error
}

// ProbeDetector runs the model (forward passes) to test its behaviour: trigger sweeps,
// target inversion, noise and neuron tests. It runs only with Options.Probe, after the
// tensor pass, and reports what it finds through emit, AddTriggers and SetClassifier.
type ProbeDetector interface {
	Detector
	Probe(ctx context.Context, m *Model, emit Emit) error
}

// DiffDetector compares a target with the base model it claims to derive from
// (Options.Base); it runs after the tensor pass.
type DiffDetector interface {
	Detector
	Diff(ctx context.Context, base, cand *Model, emit Emit) error
}
