package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// progress draws a one-line progress bar on stderr while long work runs. It draws nothing
// when stderr is not a terminal or progress is disabled; a nil *progress is valid and silent.
type progress struct {
	w     io.Writer
	label string
	total int64
	n     atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
	t0    time.Time
}

// progressFor returns a progress bar on w when w is a terminal and not disabled, else nil.
func progressFor(w io.Writer, disabled bool, label string) *progress {
	if disabled || !isTerminal(w) {
		return nil
	}
	return &progress{w: w, label: label}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) start(total int64) {
	if p == nil {
		return
	}
	p.total, p.t0, p.stop = total, time.Now(), make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-p.stop:
				fmt.Fprint(p.w, "\r\033[K")
				return
			case <-tk.C:
				p.draw()
			}
		}
	}()
}

func (p *progress) add(n int64) {
	if p != nil {
		p.n.Add(n)
	}
}

func (p *progress) draw() {
	n, total := p.n.Load(), p.total
	frac := 1.0
	if total > 0 {
		frac = float64(n) / float64(total)
	}
	const width = 30
	fill := int(frac * width)
	bar := make([]byte, width)
	for i := range bar {
		if i < fill {
			bar[i] = '='
		} else {
			bar[i] = ' '
		}
	}
	el := time.Since(p.t0).Seconds()
	rate := float64(n) / el / 1e6
	fmt.Fprintf(p.w, "\r%s [%s] %5.1f%%  %.0f MB/s", p.label, bar, 100*frac, rate)
}

func (p *progress) done() {
	if p == nil || p.stop == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
}
