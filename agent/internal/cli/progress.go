package cli

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/codelab-app/infra/agent/internal/backup"
)

// transferPrinter shows a backup's upload and read-back as they go: on a
// terminal one live line per phase, redrawn at most every liveEvery;
// otherwise (journald, CI) a log line when a phase starts, every logEvery,
// and when it ends.
type transferPrinter struct {
	w    io.Writer // the terminal
	live bool
	log  *slog.Logger
	now  func() time.Time

	phase string
	ended bool
	start time.Time
	last  time.Time
}

const (
	liveEvery = 100 * time.Millisecond
	logEvery  = 5 * time.Second
)

func newTransferPrinter(w io.Writer, log *slog.Logger) *transferPrinter {
	return &transferPrinter{w: w, live: isTerminal(w), log: log, now: time.Now}
}

func (p *transferPrinter) report(t backup.Transfer) {
	now := p.now()
	if t.Phase != p.phase {
		if p.live && p.phase != "" && !p.ended {
			fmt.Fprintln(p.w)
		}
		p.phase, p.ended, p.start, p.last = t.Phase, false, now, time.Time{}
	}
	if p.ended {
		return
	}
	done := t.Done >= t.Total
	every := logEvery
	if p.live {
		every = liveEvery
	}
	if !done && !p.last.IsZero() && now.Sub(p.last) < every {
		return
	}
	p.last = now
	pct := int64(100)
	if t.Total > 0 {
		pct = t.Done * 100 / t.Total
	}
	took := now.Sub(p.start)
	rate := "-"
	if s := took.Seconds(); s > 0 {
		rate = humanize.Bytes(uint64(float64(t.Done)/s)) + "/s"
	}
	if p.live {
		fmt.Fprintf(p.w, "\r\033[K%s %s / %s (%d%%) %s", t.Phase, humanize.Bytes(uint64(t.Done)), humanize.Bytes(uint64(t.Total)), pct, rate)
		if done {
			fmt.Fprintln(p.w)
		}
	} else {
		p.log.Info("backup "+t.Phase, "done", humanize.Bytes(uint64(t.Done)), "total", humanize.Bytes(uint64(t.Total)),
			"percent", pct, "rate", rate, "elapsed", took.Round(time.Second))
	}
	p.ended = done
}
