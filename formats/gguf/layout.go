package gguf

import (
	"fmt"
	"io"
	"sort"
)

// Layout problems: places where a file departs from the canonical layout that gguf.cpp
// writes (tensors back to back in declaration order, each padded with zeros to the
// alignment, nothing after the last one). Each is a place where data can hide or where two
// readers can disagree.
const (
	IssueMisaligned = "misaligned"    // a tensor offset that is not a multiple of the alignment
	IssueOrder      = "non-canonical" // a tensor not at the running sum of padded sizes
	IssueOverlap    = "overlap"       // two tensors share bytes
	IssueAlias      = "alias"         // two tensors have exactly the same bytes
	IssueGap        = "gap"           // bytes inside the data section no tensor references
	IssueTrailing   = "trailing"      // bytes after the last tensor's padded end
	IssuePadding    = "padding"       // non-zero bytes in alignment padding
)

// LayoutIssue is one departure from the canonical layout.
type LayoutIssue struct {
	Kind    string
	Offset  int64    // absolute offset of the bytes concerned
	Length  int64    // their length (0 when the issue is about a position)
	Tensors []string // the tensors involved, if any
	Msg     string
}

// Layout checks the data section of f against the canonical layout. It reads only padding
// bytes (to check that they are zero) from r, the file f was parsed from.
func (f *File) Layout(r io.ReaderAt) ([]LayoutIssue, error) {
	var out []LayoutIssue
	pad := func(x uint64) uint64 { return (x + f.Alignment - 1) / f.Alignment * f.Alignment }
	var want uint64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.RelOffset%f.Alignment != 0 {
			out = append(out, LayoutIssue{Kind: IssueMisaligned, Offset: t.Offset, Length: t.Length, Tensors: []string{t.Name},
				Msg: fmt.Sprintf("tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.RelOffset, f.Alignment)})
		}
		if t.RelOffset != want {
			out = append(out, LayoutIssue{Kind: IssueOrder, Offset: t.Offset, Length: t.Length, Tensors: []string{t.Name},
				Msg: fmt.Sprintf("tensor %q: offset %d, canonical layout puts it at %d", t.Name, t.RelOffset, want)})
		}
		want = pad(t.RelOffset + uint64(t.Length))
	}

	// Sort by position to find overlaps and unreferenced ranges.
	idx := make([]int, len(f.Tensors))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ta, tb := &f.Tensors[idx[a]], &f.Tensors[idx[b]]
		if ta.Offset != tb.Offset {
			return ta.Offset < tb.Offset
		}
		return ta.Length < tb.Length
	})
	// Sweep in offset order against the tensor that reaches furthest so far: every tensor
	// that starts inside it is reported once, so a file of n aliasing tensors gives n-1
	// issues, not n².
	cover := -1
	for _, i := range idx {
		t := &f.Tensors[i]
		if t.Length == 0 {
			continue
		}
		if cover >= 0 {
			c := &f.Tensors[cover]
			if t.Offset < c.Offset+c.Length {
				lo, hi := t.Offset, min(c.Offset+c.Length, t.Offset+t.Length)
				kind, msg := IssueOverlap, fmt.Sprintf("tensors %q and %q share bytes [%d, %d)", c.Name, t.Name, lo, hi)
				if c.Offset == t.Offset && c.Length == t.Length {
					kind, msg = IssueAlias, fmt.Sprintf("tensors %q and %q are the same %d bytes at %d", c.Name, t.Name, t.Length, t.Offset)
				}
				out = append(out, LayoutIssue{Kind: kind, Offset: lo, Length: hi - lo, Tensors: []string{c.Name, t.Name}, Msg: msg})
			}
		}
		if cover < 0 || t.Offset+t.Length > f.Tensors[cover].Offset+f.Tensors[cover].Length {
			cover = i
		}
	}

	// Walk the data section: bytes not covered by any tensor are padding (when they only
	// round a tensor's end up to the alignment) or gaps; after the last padded end, trailing.
	if len(f.Tensors) == 0 {
		if f.Size > f.HeaderEnd {
			out = append(out, LayoutIssue{Kind: IssueTrailing, Offset: f.HeaderEnd, Length: f.Size - f.HeaderEnd,
				Msg: fmt.Sprintf("%d bytes after the header of a file without tensors", f.Size-f.HeaderEnd)})
		}
		return out, nil
	}
	var padRanges [][2]int64
	if f.DataOffset > f.HeaderEnd {
		padRanges = append(padRanges, [2]int64{f.HeaderEnd, f.DataOffset})
	}
	cur := f.DataOffset
	for _, i := range idx {
		t := &f.Tensors[i]
		if t.Offset > cur {
			// unreferenced [cur, t.Offset): the first bytes up to the alignment are padding
			padEnd := f.DataOffset + int64(pad(uint64(cur-f.DataOffset)))
			if padEnd > t.Offset {
				padEnd = t.Offset
			}
			if padEnd > cur {
				padRanges = append(padRanges, [2]int64{cur, padEnd})
			}
			if t.Offset > padEnd {
				out = append(out, LayoutIssue{Kind: IssueGap, Offset: padEnd, Length: t.Offset - padEnd, Tensors: []string{t.Name},
					Msg: fmt.Sprintf("%d bytes at %d before tensor %q are referenced by no tensor", t.Offset-padEnd, padEnd, t.Name)})
			}
		}
		if e := t.Offset + t.Length; e > cur {
			cur = e
		}
	}
	padEnd := f.DataOffset + int64(pad(uint64(cur-f.DataOffset)))
	if padEnd > f.Size {
		padEnd = f.Size
	}
	if padEnd > cur {
		padRanges = append(padRanges, [2]int64{cur, padEnd})
	}
	if f.Size > padEnd {
		out = append(out, LayoutIssue{Kind: IssueTrailing, Offset: padEnd, Length: f.Size - padEnd,
			Msg: fmt.Sprintf("%d bytes after the end of the last tensor's data", f.Size-padEnd)})
	}
	buf := make([]byte, f.Alignment)
	for _, pr := range padRanges {
		for off := pr[0]; off < pr[1]; {
			n := min(int64(len(buf)), pr[1]-off)
			if _, err := r.ReadAt(buf[:n], off); err != nil {
				return out, fmt.Errorf("gguf: reading padding at %d: %w", off, err)
			}
			nz := 0
			for _, c := range buf[:n] {
				if c != 0 {
					nz++
				}
			}
			if nz > 0 {
				out = append(out, LayoutIssue{Kind: IssuePadding, Offset: off, Length: n,
					Msg: fmt.Sprintf("%d non-zero bytes in the alignment padding at %d", nz, off)})
			}
			off += n
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Offset < out[b].Offset })
	return out, nil
}
