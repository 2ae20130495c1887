// Package payload is kensa's payload detector: data hidden in the low-order bits of float
// weights (EvilModel-style steganography).
//
// Two signals, each judged against the model's own other tensors rather than fixed
// expectations:
//
//   - The lowest byte of each stored float is, in trained weights, statistically
//     indistinguishable from uniform noise. A payload that is not itself random (code, text,
//     images, most file formats) skews that byte plane: its chi-square against uniform jumps
//     from about 1 (per degree of freedom) to tens or thousands. Located per segment of
//     4096 elements, so the finding gives the byte range that carries it.
//   - Models converted from bf16 or f16 to float32 have all-zero low mantissa bits in every
//     weight. A tensor whose low bits are set in part of it, when the rest of the model is
//     upcast, carries data there, whether it looks random or not.
//
// Limits: an encrypted payload in the low bits of a model that was trained in float32 looks
// exactly like the noise it replaces; no statistic of the weights alone can find it.
// Comparing with the base model (kensa scan --base) can.
package payload

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/scan"
	"github.com/kensa-scan/kensa/stats"
)

// Rule ids.
const (
	RuleMantissa = "KS-PAYLOAD-MANTISSA"
	RuleLowBits  = "KS-PAYLOAD-LOWBITS"
	RulePrecise  = "KS-PAYLOAD-PRECISION"
)

const (
	segElems = 4096 // elements per segment for locating a payload
	minElems = 2048 // tensors smaller than this are not judged
	// chi-square per degree of freedom of the lowest byte plane. Under uniformity it is
	// 1 ± 0.09. Trained weights sit at 0.9-1.2; weights that were computed rather than
	// trained (filter banks, initialisations, low-precision edits) reach 5-10; payloads
	// that are not random (code, text, file formats) reach hundreds.
	chiNoise  = 3.0  // a segment beyond noise (for locating)
	chiMedium = 10.0 // a tensor worth a medium finding
	chiHigh   = 50.0 // a tensor carrying data: high
	medNoise  = 2.0  // the model's typical tensor must be below this to be a reference
)

// Detector is the payload detector.
type Detector struct{}

func init() { scan.RegisterDetector(Detector{}) }

// Name returns "payload".
func (Detector) Name() string { return "payload" }

// Rules returns the payload rules.
func (Detector) Rules() []scan.Rule {
	return []scan.Rule{
		{ID: RuleMantissa, Title: "data hidden in the low mantissa bytes of weights", Severity: scan.High, Detector: "payload",
			Help: "The lowest byte of this tensor's floats is not the noise it is in trained weights (and in the model's other tensors): something was written into it. EvilModel-style malware hides executables this way with no visible effect on accuracy. The byte range locates the payload; extract every 4th byte (float32) or 2nd byte (16-bit floats) of it to recover the data. Do not use the model."},
		{ID: RuleLowBits, Title: "low bits set in part of an upcast tensor", Severity: scan.High, Detector: "payload",
			Help: "The model was converted from bf16 or f16 to float32, so the low mantissa bits of every weight are zero, except in part of this tensor. Those bits carry data that changes the weights imperceptibly. The byte range locates it."},
		{ID: RulePrecise, Title: "tensor stored at higher precision than the rest of the model", Severity: scan.Medium, Detector: "payload",
			Help: "Every other tensor of this float32 model is upcast from a 16-bit format (zero low bits), but this one uses its full precision. It may have been modified after conversion (fine-tuned, edited), or carry data in its low bits. Compare with the original model."},
	}
}

// tensorAcc accumulates the low-bit statistics of one float tensor.
type tensorAcc struct {
	mu      sync.Mutex
	plane   [256]int64 // histogram of the lowest byte
	n       int64      // elements seen
	zero16  int64      // elements with the low 16 bits of a float32 all zero
	zero13  int64      // ... low 13 bits (f16-representable mantissa)
	segs    []segment
	partial map[int64]*partialSeg // segments cut by chunk boundaries, by index
}

// segment k covers elements [k·segElems, (k+1)·segElems) of its tensor, whatever the
// chunking, so that results do not depend on the number of workers or the chunk size.
type segment struct {
	start int64   // first element
	n     int64   // elements
	chi   float64 // chi-square/df of the lowest byte (NaN when too few values)
	low   int64   // elements with non-zero low 16 bits (float32 only)
}

type partialSeg struct {
	h   [256]int64
	n   int64
	low int64
}

// Begin starts a pass; only float32, float64, bf16 and f16 tensors of at least minElems
// elements are examined.
func (Detector) Begin(m *scan.Model, workers int) scan.TensorPass {
	p := &pass{m: m, acc: make([]*tensorAcc, len(m.Tensors))}
	for i := range m.Tensors {
		t := &m.Tensors[i]
		switch t.DType {
		case formats.F32, formats.F64, formats.BF16, formats.F16:
			if t.Elements() >= minElems {
				p.acc[i] = &tensorAcc{partial: map[int64]*partialSeg{}}
			}
		}
	}
	return p
}

type pass struct {
	m   *scan.Model
	acc []*tensorAcc
}

// scanBytes histograms the lowest byte of the elements in raw and counts those with
// non-zero low 16 and 13 bits (float32).
func (p *pass) scanBytes(raw []byte, es int64, h *[256]int64) (low, low13 int64) {
	if es == 4 {
		for i := 0; i+4 <= len(raw); i += 4 {
			var w uint32
			if p.m.BigEndian {
				w = binary.BigEndian.Uint32(raw[i:])
			} else {
				w = binary.LittleEndian.Uint32(raw[i:])
			}
			if w&0x7fffffff == 0 {
				continue // an exact zero: its low byte says nothing (its low bits count as zero)
			}
			h[byte(w)]++
			if w&0xffff != 0 {
				low++
				if w&0x1fff != 0 {
					low13++
				}
			}
		}
		return low, low13
	}
	lo := int64(0) // the least significant byte within an element
	if p.m.BigEndian {
		lo = es - 1
	}
	// four interleaved tables break the store-to-load dependency of repeated values
	var t [4][256]int32
	i, n := lo, int64(len(raw))
	if es == 2 && lo == 0 {
		// 16-bit little-endian elements: four low bytes per 64-bit load
		for ; i+8 <= n; i += 8 {
			w := binary.LittleEndian.Uint64(raw[i:])
			t[0][byte(w)]++
			t[1][byte(w>>16)]++
			t[2][byte(w>>32)]++
			t[3][byte(w>>48)]++
		}
	}
	for ; i+3*es < n; i += 4 * es {
		t[0][raw[i]]++
		t[1][raw[i+es]]++
		t[2][raw[i+2*es]]++
		t[3][raw[i+3*es]]++
	}
	for ; i < n; i += es {
		t[0][raw[i]]++
	}
	for v := range h {
		h[v] += int64(t[0][v]) + int64(t[1][v]) + int64(t[2][v]) + int64(t[3][v])
	}
	return 0, 0
}

func (p *pass) Chunk(_ int, c *scan.Chunk) {
	a := p.acc[c.Tensor]
	if a == nil {
		return
	}
	t := &p.m.Tensors[c.Tensor]
	total := t.Elements()
	es := int64(t.DType.BlockBytes()) // bytes per element
	n := int64(len(c.Raw)) / es
	g0, g1 := c.Start, c.Start+n
	var plane [256]int64
	var low16, low13 int64
	var segs []segment
	type cut struct {
		k int64
		s partialSeg
	}
	var cuts []cut
	for k := g0 / segElems; k*segElems < g1; k++ {
		s0, s1 := k*segElems, min((k+1)*segElems, total)
		lo, hi := max(g0, s0), min(g1, s1)
		var h [256]int64
		low, l13 := p.scanBytes(c.Raw[(lo-g0)*es:(hi-g0)*es], es, &h)
		low16 += low
		low13 += l13
		for v := range h {
			plane[v] += h[v]
		}
		if lo == s0 && hi == s1 {
			segs = append(segs, finishSeg(s0, s1-s0, &h, low))
		} else {
			cuts = append(cuts, cut{k, partialSeg{h: h, n: hi - lo, low: low}})
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for v := range plane {
		a.plane[v] += plane[v]
	}
	a.n += n
	if es == 4 {
		a.zero16 += n - low16
		a.zero13 += n - low13
	}
	a.segs = append(a.segs, segs...)
	for _, ct := range cuts {
		ps := a.partial[ct.k]
		if ps == nil {
			ps = &partialSeg{}
			a.partial[ct.k] = ps
		}
		for v := range ct.s.h {
			ps.h[v] += ct.s.h[v]
		}
		ps.n += ct.s.n
		ps.low += ct.s.low
		s0, s1 := ct.k*segElems, min((ct.k+1)*segElems, total)
		if ps.n == s1-s0 {
			a.segs = append(a.segs, finishSeg(s0, ps.n, &ps.h, ps.low))
			delete(a.partial, ct.k)
		}
	}
	if a.n == total {
		a.compact()
	}
}

// compact drops the per-segment results of a finished tensor that no rule can use, so that
// memory stays bounded on large models: segments are only needed to locate data in a tensor
// whose byte plane is not noise, or whose low bits are set in part of it.
func (a *tensorAcc) compact() {
	chi := stats.ChiSquareUniform(a.plane[:])
	if !math.IsNaN(chi) && chi >= chiMedium {
		return
	}
	set := a.n - a.zero16
	if set > 0 && float64(set) < 0.95*float64(a.n) {
		return
	}
	a.segs = nil
}

func finishSeg(start, n int64, h *[256]int64, low int64) segment {
	chi := math.NaN()
	var cnt int64
	for _, c := range h {
		cnt += c
	}
	if cnt >= 1280 { // expected count ≥ 5 per bin
		chi = stats.ChiSquareUniform(h[:])
	}
	return segment{start: start, n: n, chi: chi, low: low}
}

// Finish judges each tensor against the others.
func (p *pass) Finish(ctx context.Context, emit scan.Emit) error {
	// Model-level: is the float32 part of the model upcast from a 16-bit format?
	var f32, up16, up13 int
	var chis []float64
	for i, a := range p.acc {
		if a == nil || a.n == 0 {
			continue
		}
		sort.Slice(a.segs, func(x, y int) bool { return a.segs[x].start < a.segs[y].start })
		if p.m.Tensors[i].DType == formats.F32 {
			f32++
			if float64(a.zero16) >= 0.999*float64(a.n) {
				up16++
			} else if float64(a.zero13) >= 0.999*float64(a.n) {
				up13++
			}
		}
		if c := stats.ChiSquareUniform(a.plane[:]); !math.IsNaN(c) {
			chis = append(chis, c)
		}
	}
	upcast := f32 >= 3 && up16+up13 >= (f32*2+2)/3 // at least two thirds of the float32 tensors
	medChi := stats.Median(chis)

	for i, a := range p.acc {
		if a == nil || a.n == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t := &p.m.Tensors[i]
		if upcast && t.DType == formats.F32 {
			p.judgeUpcast(i, a, up16 >= up13, emit)
			continue
		}
		if upcast {
			continue // the low byte of an upcast model's other tensors is zero: nothing to compare
		}
		p.judgePlane(i, a, medChi, emit)
	}
	return nil
}

// judgeUpcast reports a float32 tensor whose low bits are set while the model is upcast.
func (p *pass) judgeUpcast(i int, a *tensorAcc, bf16 bool, emit scan.Emit) {
	t := &p.m.Tensors[i]
	zero := a.zero16
	bitsName := "16"
	if !bf16 {
		zero, bitsName = a.zero13, "13"
	}
	set := a.n - zero
	if float64(set) <= 0.001*float64(a.n) {
		return
	}
	frac := float64(set) / float64(a.n)
	// the range of segments with set bits (when compact kept them)
	first, last := int64(0), a.n
	if len(a.segs) > 0 {
		first, last = -1, -1
	}
	var inRange int64
	for _, s := range a.segs {
		if s.low > 0 {
			if first < 0 {
				first = s.start
			}
			last = s.start + s.n
		}
	}
	for _, s := range a.segs {
		if s.start >= first && s.start < last {
			inRange += s.n
		}
	}
	es := int64(4)
	r := p.m.Roles[i]
	loc := scan.Location{File: t.File, Tensor: t.Name, Layer: r.Layer, Role: r.Role, Axis: "element", Index: []int64{first},
		ByteOffset: t.Offset + first*es, ByteLength: (last - first) * es}
	ent := stats.Entropy(a.plane[:])
	ev := map[string]any{"elements": a.n, "elements_with_low_bits": set, "fraction": round3(frac),
		"low_byte_entropy": round3(ent), "upcast_from": map[bool]string{true: "bf16", false: "f16"}[bf16]}
	if frac < 0.95 {
		describe(ev, p.extract(i, first, last, 2, 96))
		emit(scan.Finding{Rule: RuleLowBits, Title: "low bits set in part of an upcast tensor", Severity: scan.High, Score: 0.95, Location: loc, Evidence: ev,
			Message: fmt.Sprintf("the model is float32 upcast from %s (low %s mantissa bits zero), but %d of %d weights of %q have them set, in bytes [%d, %d)%s",
				ev["upcast_from"], bitsName, set, a.n, t.Name, loc.ByteOffset, loc.ByteOffset+loc.ByteLength, previewText(ev))})
		return
	}
	loc.Axis, loc.Index = "", nil
	loc.ByteOffset, loc.ByteLength = t.Offset, t.Length
	emit(scan.Finding{Rule: RulePrecise, Title: "tensor stored at higher precision than the rest of the model", Severity: scan.Medium, Score: 0.6, Location: loc, Evidence: ev,
		Message: fmt.Sprintf("the model is float32 upcast from %s, but every weight of %q uses the full float32 precision", ev["upcast_from"], t.Name)})
}

// judgePlane reports a tensor whose lowest byte plane is far from noise while the model's
// other tensors' are not.
func (p *pass) judgePlane(i int, a *tensorAcc, medChi float64, emit scan.Emit) {
	t := &p.m.Tensors[i]
	chi := stats.ChiSquareUniform(a.plane[:])
	// The model's typical tensor must itself look like noise, and this one must not.
	if math.IsNaN(chi) || math.IsNaN(medChi) || medChi > medNoise || chi < chiMedium {
		return
	}
	// Locate: segments whose own chi-square is beyond noise.
	first, last := int64(-1), int64(-1)
	bad := 0
	for _, s := range a.segs {
		if !math.IsNaN(s.chi) && s.chi >= chiNoise {
			if first < 0 {
				first = s.start
			}
			last = s.start + s.n
			bad++
		}
	}
	if first < 0 { // spread too thin to show per segment: the whole tensor
		first, last = 0, a.n
	}
	es := int64(t.DType.BlockBytes())
	r := p.m.Roles[i]
	ent := stats.Entropy(a.plane[:])
	sev, score := scan.Medium, 0.6
	if chi >= chiHigh {
		sev, score = scan.High, math.Min(1, 0.7+0.1*math.Log10(chi))
		if t.DType != formats.F32 && t.DType != formats.F64 {
			// the low byte of a 16-bit float holds exponent and high mantissa bits too
			score = 0.85
		}
	}
	loc := scan.Location{File: t.File, Tensor: t.Name, Layer: r.Layer, Role: r.Role, Axis: "element", Index: []int64{first},
		ByteOffset: t.Offset + first*es, ByteLength: (last - first) * es}
	ev := map[string]any{"chi2_per_df": round3(chi), "model_median_chi2_per_df": round3(medChi), "low_byte_entropy": round3(ent),
		"segments_flagged": bad, "segments": len(a.segs), "elements": last - first, "bytes_per_element": es}
	describe(ev, p.extract(i, first, last, 1, 96))
	emit(scan.Finding{Rule: RuleMantissa, Title: "data hidden in the low mantissa bytes of weights", Severity: sev, Score: score, Location: loc,
		Evidence: ev,
		Message: fmt.Sprintf("the lowest byte of the %s weights of %q is not noise (chi-square %.1f per degree of freedom; the model's tensors have %.2f): data is hidden in bytes [%d, %d)%s",
			t.DType, t.Name, chi, medChi, loc.ByteOffset, loc.ByteOffset+loc.ByteLength, previewText(ev))})
}

// extract returns up to max bytes of the payload carried in [first, last) elements of
// tensor i: the lowest byte of each element (lowBytes = 1), or the two low bytes of each
// float32 (lowBytes = 2, little-endian order), as stored.
func (p *pass) extract(i int, first, last int64, lowBytes int, max int) []byte {
	t := &p.m.Tensors[i]
	f := p.m.File(t.File)
	es := int64(t.DType.BlockBytes())
	n := min(last-first, int64(max/lowBytes+1))
	raw, err := f.Bytes(t.Offset+first*es, n*es, nil)
	if err != nil {
		return nil
	}
	out := make([]byte, 0, n*int64(lowBytes))
	for k := int64(0); k < n; k++ {
		e := raw[k*es : (k+1)*es]
		if p.m.BigEndian {
			for b := 0; b < lowBytes; b++ {
				out = append(out, e[es-1-int64(b)])
			}
		} else {
			out = append(out, e[:lowBytes]...)
		}
	}
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// describe adds a preview of carried bytes to a finding's evidence: the bytes as text
// (non-printable ones escaped) and any recognisable file signature at their start.
func describe(ev map[string]any, b []byte) {
	if len(b) == 0 {
		return
	}
	ev["extracted_preview"] = string(b)
	printable := 0
	for _, c := range b {
		if c >= 0x20 && c < 0x7f || c == '\n' || c == '\t' || c == '\r' {
			printable++
		}
	}
	ev["extracted_printable_fraction"] = round3(float64(printable) / float64(len(b)))
	for _, m := range []struct{ name, magic string }{
		{"ELF executable", "\x7fELF"}, {"PE/DOS executable", "MZ"}, {"ZIP archive", "PK\x03\x04"},
		{"gzip data", "\x1f\x8b"}, {"script", "#!"}, {"PNG image", "\x89PNG"}, {"PDF document", "%PDF"},
	} {
		if len(b) >= len(m.magic) && string(b[:len(m.magic)]) == m.magic {
			ev["extracted_signature"] = m.name
		}
	}
}

// previewText renders the extracted bytes for a message when they are mostly text or carry a
// signature.
func previewText(ev map[string]any) string {
	pv, _ := ev["extracted_preview"].(string)
	sig, _ := ev["extracted_signature"].(string)
	pf, _ := ev["extracted_printable_fraction"].(float64)
	switch {
	case sig != "" && pf >= 0.9:
		return fmt.Sprintf("; the extracted bytes are a %s: %.60q", sig, pv)
	case sig != "":
		return fmt.Sprintf("; the extracted bytes start with a %s signature", sig)
	case pf >= 0.9:
		return fmt.Sprintf("; the extracted bytes read as text: %.60q", pv)
	}
	return ""
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
