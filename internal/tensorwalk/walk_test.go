package tensorwalk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"testing"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/gguf"
)

func testModel(t *testing.T) *formats.Model {
	t.Helper()
	var ts []gguf.WriteTensor
	val := float32(0)
	for i, shape := range [][]int64{{7, 33}, {1000}, {3, 5, 64}, {0, 8}, {}} {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		var b []byte
		for k := int64(0); k < n; k++ {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(val))
			val++
		}
		ts = append(ts, gguf.WriteTensor{Name: string(rune('a' + i)), DType: formats.F32, Shape: shape, Data: b})
	}
	var buf bytes.Buffer
	if err := gguf.Write(&buf, nil, ts, nil); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.NewFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return f.Model(formats.NewFile("t.gguf", bytes.NewReader(buf.Bytes()), int64(buf.Len())))
}

// Every element of every tensor is visited exactly once, with its value, whatever the
// number of workers and the chunk size.
func TestWalkCoversEverything(t *testing.T) {
	m := testModel(t)
	for _, jobs := range []int{1, 2, 7} {
		for _, ce := range []int{1, 10, 33, 100, 1 << 20} {
			chunks, total := Plan(m, nil, ce)
			var mu sync.Mutex
			seen := map[float32]int{}
			var bytesDone int64
			err := Walk(context.Background(), m, chunks, Options{Jobs: jobs, Progress: func(n int64) {
				mu.Lock()
				bytesDone += n
				mu.Unlock()
			}}, func(w int, c Chunk, _ []byte, values func() []float32) error {
				vals := values()
				if w < 0 || w >= jobs {
					t.Errorf("worker %d of %d", w, jobs)
				}
				if int64(len(vals)) != c.End-c.Start {
					t.Errorf("chunk %+v has %d values", c, len(vals))
				}
				if rl := m.Tensors[c.Tensor].RowLen(); !c.WholeRows || c.Start%rl != 0 || c.End%rl != 0 {
					t.Errorf("chunk %+v is not whole rows of %d", c, rl)
				}
				mu.Lock()
				defer mu.Unlock()
				for i, v := range vals {
					seen[v]++
					// values were written as a running count: the first tensor starts at 0
					if c.Tensor == 0 && v != float32(c.Start+int64(i)) {
						t.Errorf("tensor 0 element %d = %v", c.Start+int64(i), v)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := int(m.Parameters())
			if len(seen) != want {
				t.Errorf("jobs %d chunk %d: %d distinct values, want %d", jobs, ce, len(seen), want)
			}
			for v, n := range seen {
				if n != 1 {
					t.Errorf("value %v seen %d times", v, n)
				}
			}
			if bytesDone != total {
				t.Errorf("progress %d bytes, want %d", bytesDone, total)
			}
		}
	}
}

func TestWalkStops(t *testing.T) {
	m := testModel(t)
	chunks, _ := Plan(m, nil, 1)
	boom := errors.New("boom")
	var mu sync.Mutex
	calls := 0
	err := Walk(context.Background(), m, chunks, Options{Jobs: 2}, func(int, Chunk, []byte, func() []float32) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 5 {
			return boom
		}
		return nil
	})
	// the other worker may finish a chunk or a few before it sees the cancellation, but
	// the walk must stop long before the end
	if !errors.Is(err, boom) || calls > len(chunks)/2 {
		t.Errorf("error %v after %d of %d chunks, want boom and an early stop", err, calls, len(chunks))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Walk(ctx, m, chunks, Options{Jobs: 2}, func(int, Chunk, []byte, func() []float32) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk returned %v", err)
	}
}
