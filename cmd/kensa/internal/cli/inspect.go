package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/internal/tensorwalk"
	"github.com/kensa-scan/kensa/stats"
)

type inspectOptions struct {
	json       bool
	stats      bool
	jobs       int
	noProgress bool
}

func newInspectCmd(s *streams) *cobra.Command {
	var o inspectOptions
	c := &cobra.Command{
		Use:   "inspect PATH",
		Short: "List a model's format, metadata and tensors",
		Long: `List what a model file or directory declares: format and version, header fields,
every metadata key and value, and every tensor with its dtype, row-major shape, absolute
byte offset and byte length. PATH is a .safetensors or .gguf file (told by its first bytes,
not its name), or a directory with a sharded safetensors index, safetensors files or one
GGUF file.

With --stats, every tensor is also decoded (dequantized) and its count, mean, standard
deviation, minimum, maximum and NaN / Inf counts are computed, in parallel and streaming.

A file that cannot be parsed is reported with the byte offset where parsing failed (exit 3).`,
		Example: `  kensa inspect model.gguf
  kensa inspect --json ./hf-model/ | jq '.tensors | length'
  kensa inspect --stats model.safetensors`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runInspect(c.Context(), &o, args[0], s)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.json, "json", false, "write the listing as JSON")
	f.BoolVar(&o.stats, "stats", false, "decode every tensor and add per-tensor statistics")
	f.IntVarP(&o.jobs, "jobs", "j", runtime.NumCPU(), "parallel workers for --stats")
	f.BoolVar(&o.noProgress, "no-progress", false, "no progress bar on stderr")
	return c
}

// tensorStats are the per-tensor statistics of --stats.
type tensorStats struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	NaN   int64   `json:"nan"`
	Inf   int64   `json:"inf"`
}

func runInspect(ctx context.Context, o *inspectOptions, path string, s *streams) error {
	m, err := formats.Open(path)
	if err != nil {
		return targetError{path: path, err: err}
	}
	defer m.Close()
	var st []*tensorStats
	if o.stats {
		if st, err = computeStats(ctx, m, o.jobs, progressFor(s.errOut, o.noProgress, "inspect")); err != nil {
			return err
		}
	}
	if o.json {
		return writeListingJSON(s.out, m, st)
	}
	return writeListingText(s.out, m, st)
}

// computeStats decodes every tensor in chunks on jobs workers. Each chunk's moments are kept
// in its own slot and merged in element order, so the result does not depend on scheduling.
func computeStats(ctx context.Context, m *formats.Model, jobs int, pr *progress) ([]*tensorStats, error) {
	chunks, total := tensorwalk.Plan(m, nil, 1<<20)
	parts := make([]stats.Moments, len(chunks))
	first := make(map[int]int) // tensor -> index of its first chunk
	for i, c := range chunks {
		if c.Index == 0 {
			first[c.Tensor] = i
		}
	}
	pr.start(total)
	err := tensorwalk.Walk(ctx, m, chunks, tensorwalk.Options{Jobs: jobs, Progress: pr.add}, func(_ int, c tensorwalk.Chunk, _ []byte, values func() []float32) error {
		parts[first[c.Tensor]+c.Index].Add(values())
		return nil
	})
	pr.done()
	if err != nil {
		return nil, err
	}
	out := make([]*tensorStats, len(m.Tensors))
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if !t.DType.Decodable() {
			continue
		}
		var mo stats.Moments
		if fi, ok := first[i]; ok {
			for k := fi; k < len(chunks) && chunks[k].Tensor == i; k++ {
				mo.Merge(parts[k])
			}
		}
		ts := &tensorStats{Count: mo.Count(), NaN: mo.NaN, Inf: mo.Inf}
		if mo.N > 0 {
			ts.Mean, ts.Std, ts.Min, ts.Max = mo.Mean, mo.Std(), mo.Min, mo.Max
		}
		out[i] = ts
	}
	return out, nil
}

// writeListingJSON writes the `inspect --json` contract of DESIGN.md §4:
// {"format","version","metadata":{...},"tensors":[{"name","dtype","shape","offset","length"}]}.
// "version" is omitted for formats without one; "file" is added to tensors only for models
// of several files; "stats" only with --stats.
func writeListingJSON(w io.Writer, m *formats.Model, st []*tensorStats) error {
	var b bytes.Buffer
	b.WriteString(`{"format":`)
	writeJSONString(&b, m.Format)
	if m.Version != 0 {
		fmt.Fprintf(&b, `,"version":%d`, m.Version)
	}
	b.WriteString(`,"metadata":{`)
	for i, kv := range m.Metadata {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, kv.Key)
		b.WriteByte(':')
		writeJSONValue(&b, kv.Value)
	}
	b.WriteString(`},"tensors":[`)
	multi := len(m.Files) > 1
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":`)
		writeJSONString(&b, t.Name)
		b.WriteString(`,"dtype":`)
		writeJSONString(&b, t.DType.String())
		b.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		fmt.Fprintf(&b, `],"offset":%d,"length":%d`, t.Offset, t.Length)
		if multi {
			b.WriteString(`,"file":`)
			writeJSONString(&b, t.File)
		}
		if st != nil && st[i] != nil {
			s := st[i]
			fmt.Fprintf(&b, `,"stats":{"count":%d,"mean":`, s.Count)
			writeJSONFloat(&b, s.Mean)
			b.WriteString(`,"std":`)
			writeJSONFloat(&b, s.Std)
			b.WriteString(`,"min":`)
			writeJSONFloat(&b, s.Min)
			b.WriteString(`,"max":`)
			writeJSONFloat(&b, s.Max)
			fmt.Fprintf(&b, `,"nan":%d,"inf":%d}`, s.NaN, s.Inf)
		}
		b.WriteByte('}')
	}
	b.WriteString("]}\n")
	_, err := w.Write(b.Bytes())
	return err
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // never fails for a string; invalid UTF-8 becomes U+FFFD
	b.Write(enc)
}

// writeJSONFloat writes a float in shortest form; NaN and infinities, which JSON cannot
// represent, are written as the strings "NaN", "+Inf" and "-Inf".
func writeJSONFloat(b *bytes.Buffer, f float64) {
	switch {
	case math.IsNaN(f):
		b.WriteString(`"NaN"`)
	case math.IsInf(f, 1):
		b.WriteString(`"+Inf"`)
	case math.IsInf(f, -1):
		b.WriteString(`"-Inf"`)
	default:
		b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
	}
}

// writeJSONValue writes a metadata value. float32 values are written as the float64 value of
// the stored float32 (0.10000000149011612 for 0.1f), like gguf-py's listing.
func writeJSONValue(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case uint8:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case int8:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case uint16:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case int16:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case uint32:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case int32:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case uint64:
		b.WriteString(strconv.FormatUint(x, 10))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float32:
		writeJSONFloat(b, float64(x))
	case float64:
		writeJSONFloat(b, x)
	case string:
		writeJSONString(b, x)
	case []uint8:
		writeJSONArray(b, x)
	case []int8:
		writeJSONArray(b, x)
	case []uint16:
		writeJSONArray(b, x)
	case []int16:
		writeJSONArray(b, x)
	case []uint32:
		writeJSONArray(b, x)
	case []int32:
		writeJSONArray(b, x)
	case []uint64:
		writeJSONArray(b, x)
	case []int64:
		writeJSONArray(b, x)
	case []float32:
		writeJSONArray(b, x)
	case []float64:
		writeJSONArray(b, x)
	case []bool:
		writeJSONArray(b, x)
	case []string:
		writeJSONArray(b, x)
	case []any:
		writeJSONArray(b, x)
	default:
		writeJSONString(b, fmt.Sprint(x))
	}
}

func writeJSONArray[T any](b *bytes.Buffer, xs []T) {
	b.WriteByte('[')
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONValue(b, x)
	}
	b.WriteByte(']')
}

// writeListingText writes the human-readable listing.
func writeListingText(w io.Writer, m *formats.Model, st []*tensorStats) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s  %s", m.Path, m.Format)
	if m.Version != 0 {
		fmt.Fprintf(&b, " v%d", m.Version)
	}
	fmt.Fprintf(&b, ", %d tensors, %s parameters\n", len(m.Tensors), humanCount(m.Parameters()))
	for _, f := range m.Files {
		fmt.Fprintf(&b, "  file %s (%s bytes)\n", f.Path, groupDigits(f.Size))
	}
	if len(m.Header) > 0 {
		b.WriteString("\nHEADER\n")
		for _, kv := range m.Header {
			fmt.Fprintf(&b, "  %s: %s\n", kv.Key, textValue(kv.Value))
		}
	}
	fmt.Fprintf(&b, "\nMETADATA (%d)\n", len(m.Metadata))
	for _, kv := range m.Metadata {
		fmt.Fprintf(&b, "  %s = %s\n", kv.Key, textValue(kv.Value))
	}
	fmt.Fprintf(&b, "\nTENSORS (%d)\n", len(m.Tensors))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	hdr := "  NAME\tDTYPE\tSHAPE\tOFFSET\tLENGTH"
	if st != nil {
		hdr += "\tMEAN\tSTD\tMIN\tMAX\tNAN\tINF"
	}
	if len(m.Files) > 1 {
		hdr += "\tFILE"
	}
	fmt.Fprintln(tw, hdr)
	for i := range m.Tensors {
		t := &m.Tensors[i]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d", safeText(t.Name, 80), t.DType, shapeText(t.Shape), t.Offset, t.Length)
		if st != nil {
			if s := st[i]; s != nil {
				fmt.Fprintf(tw, "\t%.4g\t%.4g\t%.4g\t%.4g\t%d\t%d", s.Mean, s.Std, s.Min, s.Max, s.NaN, s.Inf)
			} else {
				fmt.Fprint(tw, "\t-\t-\t-\t-\t-\t-")
			}
		}
		if len(m.Files) > 1 {
			fmt.Fprintf(tw, "\t%s", t.File)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

func shapeText(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// safeText quotes s when it holds control characters or invalid UTF-8 (a file must not be
// able to drive the terminal) and shortens it to at most max runes.
func safeText(s string, max int) string {
	clean := utf8.ValidString(s)
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			clean = false
			break
		}
	}
	if !clean {
		s = strconv.QuoteToGraphic(s)
	}
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max]) + "…"
	}
	return s
}

// textValue renders a metadata value on one line: strings quoted and shortened, arrays as
// their length and element type with the first few elements.
func textValue(v any) string {
	const maxStr = 120
	switch x := v.(type) {
	case string:
		return safeText(strconv.Quote(x), maxStr)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case []string:
		return arrayText(x, "str", func(s string) string { return safeText(strconv.Quote(s), 40) })
	case []float32:
		return arrayText(x, "f32", func(f float32) string { return strconv.FormatFloat(float64(f), 'g', -1, 32) })
	case []any:
		return arrayText(x, "arr", textValue)
	case []uint8:
		return arrayText(x, "u8", func(v uint8) string { return fmt.Sprint(v) })
	case []int8:
		return arrayText(x, "i8", func(v int8) string { return fmt.Sprint(v) })
	case []uint16:
		return arrayText(x, "u16", func(v uint16) string { return fmt.Sprint(v) })
	case []int16:
		return arrayText(x, "i16", func(v int16) string { return fmt.Sprint(v) })
	case []uint32:
		return arrayText(x, "u32", func(v uint32) string { return fmt.Sprint(v) })
	case []int32:
		return arrayText(x, "i32", func(v int32) string { return fmt.Sprint(v) })
	case []uint64:
		return arrayText(x, "u64", func(v uint64) string { return fmt.Sprint(v) })
	case []int64:
		return arrayText(x, "i64", func(v int64) string { return fmt.Sprint(v) })
	case []float64:
		return arrayText(x, "f64", func(v float64) string { return fmt.Sprint(v) })
	case []bool:
		return arrayText(x, "bool", func(v bool) string { return fmt.Sprint(v) })
	}
	return fmt.Sprint(v)
}

func arrayText[T any](xs []T, typ string, f func(T) string) string {
	const show = 5
	parts := make([]string, 0, show+1)
	for i, x := range xs {
		if i == show {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, f(x))
	}
	return fmt.Sprintf("[%d × %s] %s", len(xs), typ, strings.Join(parts, ", "))
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return strconv.FormatInt(n, 10)
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
