// Package structure is kensa's structure detector: the byte-level layout of model files.
// Bytes that no tensor references (gaps, trailing data, non-zero padding), tensors that
// overlap or alias, misaligned and non-canonical layouts, and byte-identical tensors are
// where payloads hide and where two readers of one file can see two different models.
package structure

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"sort"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/stats"
)

// Rule ids.
const (
	RuleHidden     = "KS-STRUCT-HIDDEN-DATA"
	RuleExecutable = "KS-STRUCT-EMBEDDED-FILE"
	RuleOverlap    = "KS-STRUCT-OVERLAP"
	RuleAlias      = "KS-STRUCT-ALIAS"
	RulePadding    = "KS-STRUCT-PADDING"
	RuleMisaligned = "KS-STRUCT-MISALIGNED"
	RuleOrder      = "KS-STRUCT-NONCANONICAL"
	RuleDuplicate  = "KS-STRUCT-DUPLICATE"
	RuleZeroGap    = "KS-STRUCT-ZERO-GAP"
)

// Detector is the structure detector.
type Detector struct{}

func init() { scan.RegisterDetector(Detector{}) }

// Name returns "structure".
func (Detector) Name() string { return "structure" }

// Rules returns the structure rules.
func (Detector) Rules() []scan.Rule {
	return []scan.Rule{
		{ID: RuleHidden, Title: "data hidden in bytes no tensor references", Severity: scan.High, Detector: "structure",
			Help: "The file holds non-zero bytes outside every tensor: in a gap inside the data section or after the last tensor. Writers (llama.cpp, gguf-py, safetensors) never produce them; they are a place to smuggle a payload past tools that only read tensors. Extract the byte range and examine it; do not use the file until it is explained."},
		{ID: RuleExecutable, Title: "executable, archive or script inside unreferenced bytes", Severity: scan.Critical, Detector: "structure",
			Help: "Bytes that no tensor references start with the signature of an executable, archive, script or serialized object. This is a payload carried by the model file. Quarantine the file."},
		{ID: RuleZeroGap, Title: "unreferenced zero bytes", Severity: scan.Low, Detector: "structure",
			Help: "A run of zero bytes that no tensor references. Harmless by itself (some writers leave room), but not canonical, and worth a look when other findings point at this file."},
		{ID: RuleOverlap, Title: "tensors overlap", Severity: scan.High, Detector: "structure",
			Help: "Two tensors share part of their bytes. No legitimate writer does this; it lets one byte range mean two things, or hides one tensor inside another. Current llama.cpp refuses such files; other readers accept them."},
		{ID: RuleAlias, Title: "tensors alias the same bytes", Severity: scan.Medium, Detector: "structure",
			Help: "Two tensors point at exactly the same bytes. Tied weights are normally stored twice or once under one name; aliasing offsets are non-canonical (current llama.cpp rejects them) and often leave the real data of a tensor unreferenced elsewhere in the file."},
		{ID: RulePadding, Title: "non-zero alignment padding", Severity: scan.Medium, Detector: "structure",
			Help: "Alignment padding between tensors must be zero. Non-zero padding carries data that no reader shows."},
		{ID: RuleMisaligned, Title: "tensor data not aligned", Severity: scan.Low, Detector: "structure",
			Help: "A tensor's offset is not a multiple of the file's alignment. llama.cpp rejects this; it is a sign of a hand-made or tampered file."},
		{ID: RuleOrder, Title: "non-canonical tensor layout", Severity: scan.Info, Detector: "structure",
			Help: "Tensors are not stored back to back in declaration order. Some third-party writers do this; combined with other findings it shows the file was not written by the usual tools."},
		{ID: RuleDuplicate, Title: "byte-identical tensors", Severity: scan.Info, Detector: "structure",
			Help: "Two tensors hold exactly the same bytes. Tied embeddings (output = token embedding) are normal; other duplicates can mean a tensor was copied over another."},
	}
}

// Header checks the layout of GGUF files (safetensors layouts are validated by the reader,
// which rejects gaps, overlaps and trailing bytes outright).
func (Detector) Header(ctx context.Context, m *scan.Model, emit scan.Emit) error {
	if m.Format != "gguf" || len(m.Files) != 1 {
		return nil
	}
	f := m.Files[0]
	gf, err := gguf.NewFile(f, f.Size)
	if err != nil {
		return err
	}
	issues, err := gf.Layout(f)
	if err != nil {
		return err
	}
	tensorIdx := map[string]int{}
	for i := range m.Tensors {
		tensorIdx[m.Tensors[i].Name] = i
	}
	loc := func(off, n int64, tensor string) scan.Location {
		l := scan.Location{File: f.Path, Layer: -1, ByteOffset: off, ByteLength: n}
		if i, ok := tensorIdx[tensor]; ok && tensor != "" {
			l.Tensor, l.Layer, l.Role = tensor, m.Roles[i].Layer, m.Roles[i].Role
		}
		return l
	}
	var padBytes int64
	var padIssues []gguf.LayoutIssue
	orderCount := 0
	for _, is := range issues {
		if err := ctx.Err(); err != nil {
			return err
		}
		first := ""
		if len(is.Tensors) > 0 {
			first = is.Tensors[0]
		}
		switch is.Kind {
		case gguf.IssueGap, gguf.IssueTrailing:
			emit(unreferenced(f, is, loc(is.Offset, is.Length, "")))
		case gguf.IssueOverlap:
			emit(scan.Finding{Rule: RuleOverlap, Title: "tensors overlap", Severity: scan.High, Score: 0.9,
				Location: loc(is.Offset, is.Length, is.Tensors[1]), Message: is.Msg,
				Evidence: map[string]any{"tensors": is.Tensors, "shared_bytes": is.Length}})
		case gguf.IssueAlias:
			emit(scan.Finding{Rule: RuleAlias, Title: "tensors alias the same bytes", Severity: scan.Medium, Score: 0.7,
				Location: loc(is.Offset, is.Length, is.Tensors[1]), Message: is.Msg,
				Evidence: map[string]any{"tensors": is.Tensors}})
		case gguf.IssuePadding:
			padBytes += is.Length
			padIssues = append(padIssues, is)
		case gguf.IssueMisaligned:
			emit(scan.Finding{Rule: RuleMisaligned, Title: "tensor data not aligned", Severity: scan.Low, Score: 0.5,
				Location: loc(is.Offset, is.Length, first), Message: is.Msg,
				Evidence: map[string]any{"alignment": gf.Alignment}})
		case gguf.IssueOrder:
			// one finding per file is enough: a non-canonical writer shifts every later tensor
			if orderCount == 0 {
				emit(scan.Finding{Rule: RuleOrder, Title: "non-canonical tensor layout", Severity: scan.Info, Score: 0.3,
					Location: loc(is.Offset, is.Length, first), Message: is.Msg})
			}
			orderCount++
		}
	}
	if len(padIssues) > 0 {
		sev, score := scan.Medium, 0.6
		if padBytes >= 256 {
			sev, score = scan.High, 0.85
		}
		is := padIssues[0]
		emit(scan.Finding{Rule: RulePadding, Title: "non-zero alignment padding", Severity: sev, Score: score,
			Location: loc(is.Offset, is.Length, ""),
			Message:  fmt.Sprintf("%d padding ranges hold non-zero bytes (%d bytes in all); the first at %d", len(padIssues), padBytes, is.Offset),
			Evidence: map[string]any{"ranges": len(padIssues), "bytes": padBytes}})
	}
	return nil
}

// unreferenced turns a gap or trailing range into a finding after looking at its bytes:
// zeros are a low finding, recognisable formats critical, anything else high.
func unreferenced(f *formats.File, is gguf.LayoutIssue, loc scan.Location) scan.Finding {
	const sample = 16 << 20
	n := min(is.Length, sample)
	b, err := f.Bytes(is.Offset, n, nil)
	if err != nil {
		return scan.Finding{Rule: RuleHidden, Title: "data hidden in bytes no tensor references", Severity: scan.High, Score: 0.8,
			Location: loc, Message: is.Msg + " (could not be read: " + err.Error() + ")"}
	}
	var h [256]int64
	stats.ByteHistogram(&h, b)
	nonzero := n - h[0]
	ent := stats.Entropy(h[:])
	where := "after the last tensor"
	if is.Kind == gguf.IssueGap {
		where = "in a gap of the data section"
	}
	ev := map[string]any{"bytes": is.Length, "nonzero_bytes": nonzero, "entropy_bits_per_byte": round3(ent), "printable_fraction": round3(printable(b))}
	if n < is.Length {
		ev["sampled_bytes"] = n
	}
	if nonzero == 0 {
		return scan.Finding{Rule: RuleZeroGap, Title: "unreferenced zero bytes", Severity: scan.Low, Score: 0.3, Location: loc,
			Message: fmt.Sprintf("%d zero bytes %s are referenced by no tensor", is.Length, where), Evidence: ev}
	}
	if sigs := Signatures(b, 4); len(sigs) > 0 {
		names := make([]string, len(sigs))
		for i, s := range sigs {
			names[i] = fmt.Sprintf("%s at +%d", s.Name, s.Offset)
		}
		ev["signatures"] = names
		return scan.Finding{Rule: RuleExecutable, Title: "executable, archive or script inside unreferenced bytes", Severity: scan.Critical, Score: 1,
			Location: loc, Evidence: ev,
			Message: fmt.Sprintf("%d bytes %s are referenced by no tensor and contain %s", is.Length, where, names[0])}
	}
	return scan.Finding{Rule: RuleHidden, Title: "data hidden in bytes no tensor references", Severity: scan.High, Score: 0.9, Location: loc, Evidence: ev,
		Message: fmt.Sprintf("%d bytes %s (%d non-zero, entropy %.2f bits/byte) are referenced by no tensor", is.Length, where, nonzero, ent)}
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

// Begin starts the duplicate-tensor pass: only tensors that share dtype and length with
// another are hashed.
func (Detector) Begin(m *scan.Model, workers int) scan.TensorPass {
	type key struct {
		d formats.DType
		n int64
	}
	groups := map[key][]int{}
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if t.Length >= 64 {
			k := key{t.DType, t.Length}
			groups[k] = append(groups[k], i)
		}
	}
	p := &dupPass{m: m, want: map[int]bool{}, seed: maphash.MakeSeed()}
	for _, g := range groups {
		if len(g) > 1 {
			for _, i := range g {
				p.want[i] = true
			}
		}
	}
	p.parts = make([]map[[2]int64]uint64, workers)
	for i := range p.parts {
		p.parts[i] = map[[2]int64]uint64{}
	}
	return p
}

type dupPass struct {
	m     *scan.Model
	want  map[int]bool
	seed  maphash.Seed
	parts []map[[2]int64]uint64 // per worker: (tensor, first row) -> hash of the chunk's bytes
}

// Chunk hashes a sample of each chunk (its first and last 4 KiB): tensors whose samples
// all agree are compared byte for byte in Finish, so the pass costs almost nothing.
func (p *dupPass) Chunk(w int, c *scan.Chunk) {
	if !p.want[c.Tensor] {
		return
	}
	const k = 4096
	h := maphash.Bytes(p.seed, c.Raw[:min(k, len(c.Raw))])
	if len(c.Raw) > k {
		h ^= maphash.Bytes(p.seed, c.Raw[max(k, len(c.Raw)-k):]) * 31
	}
	p.parts[w][[2]int64{int64(c.Tensor), c.Start}] = h
}

// equal compares the bytes of two tensors of the same length.
func (p *dupPass) equal(a, b *formats.TensorInfo) (bool, error) {
	fa, fb := p.m.File(a.File), p.m.File(b.File)
	if fa == nil || fb == nil || a.Length != b.Length {
		return false, nil
	}
	const step = 1 << 20
	var ba, bb []byte
	for off := int64(0); off < a.Length; off += step {
		n := min(step, a.Length-off)
		x, err := fa.Bytes(a.Offset+off, n, ba)
		if err != nil {
			return false, err
		}
		ba = x
		y, err := fb.Bytes(b.Offset+off, n, bb)
		if err != nil {
			return false, err
		}
		bb = y
		if !bytes.Equal(x, y) {
			return false, nil
		}
	}
	return true, nil
}

func (p *dupPass) Finish(ctx context.Context, emit scan.Emit) error {
	// combine the chunk hashes of each tensor in row order
	per := map[int][][2]uint64{}
	for _, part := range p.parts {
		for k, h := range part {
			per[int(k[0])] = append(per[int(k[0])], [2]uint64{uint64(k[1]), h})
		}
	}
	byHash := map[uint64][]int{}
	for ti, hs := range per {
		sort.Slice(hs, func(a, b int) bool { return hs[a][0] < hs[b][0] })
		var mh maphash.Hash
		mh.SetSeed(p.seed)
		for _, h := range hs {
			var b [8]byte
			for i := range b {
				b[i] = byte(h[1] >> (8 * i))
			}
			mh.Write(b[:])
		}
		hv := mh.Sum64() ^ uint64(p.m.Tensors[ti].Length)
		byHash[hv] = append(byHash[hv], ti)
	}
	for _, g := range byHash {
		if len(g) < 2 {
			continue
		}
		sort.Ints(g)
		a := &p.m.Tensors[g[0]]
		for _, i := range g[1:] {
			t := &p.m.Tensors[i]
			if t.Offset == a.Offset && t.File == a.File {
				continue // aliasing, reported from the layout
			}
			if same, err := p.equal(a, t); err != nil || !same {
				continue
			}
			r := p.m.Roles[i]
			emit(scan.Finding{Rule: RuleDuplicate, Title: "byte-identical tensors", Severity: scan.Info, Score: 0.2,
				Location: scan.Location{File: t.File, Tensor: t.Name, Layer: r.Layer, Role: r.Role, ByteOffset: t.Offset, ByteLength: t.Length},
				Message:  fmt.Sprintf("tensor %q holds the same %d bytes as %q", t.Name, t.Length, a.Name),
				Evidence: map[string]any{"same_as": a.Name}})
		}
	}
	return nil
}
