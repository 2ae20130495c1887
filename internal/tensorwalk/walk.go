// Package tensorwalk decodes the tensors of a model in parallel, in chunks of bounded size,
// so that whole-model passes (statistics, scans) use every core and a fixed amount of memory
// whatever the size of the model or of its largest tensor.
package tensorwalk

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kensa-scan/kensa/formats"
)

// Chunk is one piece of a tensor handed to the visitor.
type Chunk struct {
	Tensor int   // index into Model.Tensors
	Index  int   // chunk number within the tensor (0, 1, ...), in element order
	Count  int   // number of chunks of the tensor
	Start  int64 // first element
	End    int64 // one past the last element
	Bytes  int64 // bytes of the file the chunk covers (for progress)
	// WholeRows is true when [Start, End) is a whole number of rows (innermost dimension).
	// Plan always cuts whole rows, except for rows longer than MaxRowElems or rows that are
	// not a whole number of storage blocks (odd-length F4 rows), which are split.
	WholeRows bool
}

// MaxRowElems is the longest row Plan keeps whole in one chunk, whatever the chunk size.
const MaxRowElems = 1 << 26

// Options set the parallelism and chunk size of a walk.
type Options struct {
	Jobs       int           // workers (≤ 0: 1)
	ChunkElems int           // elements per chunk (≤ 0: 1<<20); rounded to whole blocks
	Progress   func(n int64) // called with the file bytes of each finished chunk; may be nil
}

// Visitor receives one chunk: its stored bytes (whole storage blocks, as in the file) and
// values, a function that decodes them to float32 on its first call (later calls return the
// same slice), so a visitor that only needs bytes pays no decoding. worker identifies the
// calling goroutine (0 ≤ worker < Jobs), so a visitor can keep per-worker state without
// locks. raw and the values are only valid during the call.
type Visitor func(worker int, c Chunk, raw []byte, values func() []float32) error

// Plan returns the chunks of the given tensors (all decodable ones when tensors is nil), in
// order, and the total number of bytes they cover.
func Plan(m *formats.Model, tensors []int, chunkElems int) ([]Chunk, int64) {
	if chunkElems <= 0 {
		chunkElems = 1 << 20
	}
	if tensors == nil {
		for i := range m.Tensors {
			tensors = append(tensors, i)
		}
	}
	var out []Chunk
	var total int64
	for _, ti := range tensors {
		t := &m.Tensors[ti]
		if !t.DType.Decodable() {
			continue
		}
		n := t.Elements()
		be := int64(t.DType.BlockElems())
		ce := int64(chunkElems) / be * be
		if ce < be {
			ce = be
		}
		// Whole rows, so that row-wise visitors see rows: as many as fit in a chunk, and at
		// least one.
		rl := t.RowLen()
		whole := rl > 0 && rl%be == 0 && rl <= MaxRowElems
		if whole {
			ce = max(ce/rl, 1) * rl
		}
		count := int((n + ce - 1) / ce)
		if n == 0 {
			continue
		}
		for k := 0; k < count; k++ {
			s := int64(k) * ce
			e := min(s+ce, n)
			b := (e - s) * t.Length / n
			out = append(out, Chunk{Tensor: ti, Index: k, Count: count, Start: s, End: e, Bytes: b, WholeRows: whole})
			total += b
		}
	}
	return out, total
}

// Walk decodes the chunks with opt.Jobs workers and calls visit for each. It stops at the
// first error (returned) or when ctx is done (ctx.Err() is returned); chunks are handed out
// in order, so a walk visits tensors roughly in file order.
func Walk(ctx context.Context, m *formats.Model, chunks []Chunk, opt Options, visit Visitor) error {
	jobs := max(opt.Jobs, 1)
	var next atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	work := func(w int, cur *string) {
		var buf []float32
		var rd *formats.TensorReader
		for {
			if ctx.Err() != nil {
				return
			}
			i := int(next.Add(1) - 1)
			if i >= len(chunks) {
				return
			}
			c := chunks[i]
			t := &m.Tensors[c.Tensor]
			*cur = t.File + ": tensor " + strconv.Quote(t.Name)
			if rd == nil || rd.Tensor() != t {
				var err error
				if rd, err = m.NewTensorReader(t); err != nil {
					fail(err)
					return
				}
			}
			ln := int(c.End - c.Start)
			if cap(buf) < ln {
				buf = make([]float32, ln)
			}
			vals := buf[:ln]
			raw, err := rd.Bytes(c.Start, int64(ln))
			if err != nil {
				fail(fmt.Errorf("tensor %q: %w", t.Name, err))
				return
			}
			decoded := false
			values := func() []float32 {
				if !decoded {
					rd.DecodeBytes(raw, c.Start, vals)
					decoded = true
				}
				return vals
			}
			if err := visit(w, c, raw, values); err != nil {
				fail(err)
				return
			}
			if opt.Progress != nil {
				opt.Progress(c.Bytes)
			}
		}
	}
	for w := 0; w < jobs; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// the chunk bytes point into the mapped file: a fault (the file truncated
			// while mapped) fails the walk instead of killing the process
			var cur string
			if err := formats.Guard("", func() error { work(w, &cur); return nil }); err != nil {
				err = fmt.Errorf("%s: %w", cur, err)
				fail(err)
			}
		}(w)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
