package packer

import (
	"bytes"
	"io"
	"sync"
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
