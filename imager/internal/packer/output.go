package packer

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Lines serialises whole lines from several writers (one per image build) onto one
// output, so lines of parallel builds never interleave mid-line.
type Lines struct {
	mu  sync.Mutex
	out io.Writer
}

// NewLines returns a Lines writing to out.
func NewLines(out io.Writer) *Lines { return &Lines{out: out} }

// WriteLine writes prefix + line + "\n" atomically with respect to other lines.
func (l *Lines) WriteLine(prefix, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.out, prefix+line+"\n")
}

// Prefixed returns a writer that emits each complete line it receives with prefix. Call
// Close to emit a final unterminated line.
func (l *Lines) Prefixed(prefix string) *PrefixWriter {
	return &PrefixWriter{lines: l, prefix: prefix}
}

// PrefixWriter is an io.WriteCloser that prefixes every line.
type PrefixWriter struct {
	lines  *Lines
	prefix string
	mu     sync.Mutex
	buf    []byte
}

// Write implements io.Writer.
func (w *PrefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.lines.WriteLine(w.prefix, string(bytes.TrimRight(w.buf[:i], "\r")))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Close flushes a final unterminated line.
func (w *PrefixWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.lines.WriteLine(w.prefix, string(w.buf))
		w.buf = nil
	}
	return nil
}

// Heartbeat passes lines through to Out and, while none arrive, says every
// Every how long the build has been on the last one: Packer prints nothing
// while it waits on SSH, the snapshot or a region transfer, and a person (or
// a CI log) should see that it is still waiting, and for how long.
type Heartbeat struct {
	Out   io.Writer
	Every time.Duration // default 15s
	Now   func() time.Time

	mu    sync.Mutex
	last  string
	since time.Time
	buf   []byte
	stop  chan struct{}
	done  chan struct{}
}

func (h *Heartbeat) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Start begins the ticks; Stop ends them.
func (h *Heartbeat) Start() {
	every := h.Every
	if every <= 0 {
		every = 15 * time.Second
	}
	h.mu.Lock()
	h.since = h.now()
	h.stop, h.done = make(chan struct{}), make(chan struct{})
	h.mu.Unlock()
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.mu.Lock()
				if h.last != "" && h.now().Sub(h.since) >= every {
					fmt.Fprintf(h.Out, "... still: %s (%s)\n", h.last, h.now().Sub(h.since).Round(time.Second))
				}
				h.mu.Unlock()
			}
		}
	}()
}

// Stop ends the ticks.
func (h *Heartbeat) Stop() {
	if h.stop == nil {
		return
	}
	close(h.stop)
	<-h.done
}

// Write implements io.Writer: whole lines go through, and the newest one is
// what the next tick reports on.
func (h *Heartbeat) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := h.Out.Write(p); err != nil {
		return 0, err
	}
	h.buf = append(h.buf, p...)
	for {
		i := bytes.IndexByte(h.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(h.buf[:i])); line != "" {
			h.last, h.since = line, h.now()
		}
		h.buf = h.buf[i+1:]
	}
	return len(p), nil
}
