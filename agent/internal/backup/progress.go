package backup

import "sync"

// Transfer phases.
const (
	PhaseUpload   = "upload"
	PhaseReadBack = "read-back"
)

// Transfer is how far one phase of a backup's transfer is: bytes of the
// whole backup (every file and the manifest).
type Transfer struct {
	Phase string
	Done  int64
	Total int64
}

// meter counts one phase's bytes for Runner.Progress; it is safe for
// concurrent use and serialises the calls. A nil Progress makes it count
// nothing.
type meter struct {
	mu     sync.Mutex
	t      Transfer
	report func(Transfer)
}

func (r *Runner) meter(phase string, total int64) *meter {
	m := &meter{t: Transfer{Phase: phase, Total: total}, report: r.Progress}
	m.add(0)
	return m
}

// add counts n more bytes; retried chunks never push Done past Total.
func (m *meter) add(n int64) {
	if m.report == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t.Done = min(m.t.Done+n, m.t.Total)
	m.report(m.t)
}

// Write counts what passes through it, for io.TeeReader.
func (m *meter) Write(b []byte) (int, error) {
	m.add(int64(len(b)))
	return len(b), nil
}
