package cli

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/backup"
)

func TestTransferPrinterLogsEveryFewSeconds(t *testing.T) {
	var logs bytes.Buffer
	clock := time.Unix(0, 0)
	p := &transferPrinter{log: slog.New(slog.NewTextHandler(&logs, nil)), now: func() time.Time { return clock }}
	const total = 300_000_000
	for i := int64(0); i <= 30; i++ { // one event a second, 10 MB each
		p.report(backup.Transfer{Phase: backup.PhaseUpload, Done: i * 10_000_000, Total: total})
		clock = clock.Add(time.Second)
	}
	p.report(backup.Transfer{Phase: backup.PhaseReadBack, Total: total})
	p.report(backup.Transfer{Phase: backup.PhaseReadBack, Done: total, Total: total})
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	// upload: the start, every 5s (5..25), the end; read-back: start, end.
	if len(lines) != 9 {
		t.Fatalf("%d log lines, want 9:\n%s", len(lines), logs.String())
	}
	for i, want := range map[int]string{0: "percent=0", 1: "done=\"50 MB\"", 6: "done=\"300 MB\" total=\"300 MB\" percent=100 rate=\"10 MB/s\"", 8: "backup read-back"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %q, want %q", i, lines[i], want)
		}
	}
}

func TestTransferPrinterRedrawsOneLiveLinePerPhase(t *testing.T) {
	var term bytes.Buffer
	clock := time.Unix(0, 0)
	p := &transferPrinter{w: &term, live: true, now: func() time.Time { return clock }}
	for _, done := range []int64{0, 123_000_000, 200_000_000, 300_000_000} {
		clock = clock.Add(time.Second)
		p.report(backup.Transfer{Phase: backup.PhaseUpload, Done: done, Total: 300_000_000})
	}
	p.report(backup.Transfer{Phase: backup.PhaseReadBack, Done: 1, Total: 300_000_000})
	out := term.String()
	if !strings.Contains(out, "\r\033[Kupload 123 MB / 300 MB (41%)") {
		t.Errorf("no live line for 41%%: %q", out)
	}
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "(100%) 100 MB/s\n\r\033[Kread-back 1 B / 300 MB (0%)") {
		t.Errorf("want the upload line ended once, then the read-back line: %q", out)
	}
}
