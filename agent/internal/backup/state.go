package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// StateFile is where every backup run (ok or not) records its outcome.
// `codelab-agent status` and the monitor read it.
const StateFile = "/var/lib/codelab/backup.json"

// StateSchemaVersion is the format version of StateFile.
const StateSchemaVersion = 1

// Run results.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// State is /var/lib/codelab/backup.json.
type State struct {
	SchemaVersion int `json:"schemaVersion"`
	// LastRun is the most recent `backup run`, ok or failed; nil before the
	// first run.
	LastRun *Run `json:"lastRun,omitempty"`
	// NewestVerified is the newest backup that was checked and uploaded
	// (confirmed by reading its checksum back); nil when there is none.
	NewestVerified *Newest `json:"newestVerified,omitempty"`
	// Quarantine is what the last retention found in (or moved to) the
	// bucket's quarantine/ folder: backups whose manifest cannot be used.
	Quarantine []Quarantined `json:"quarantine,omitempty"`
}

// Quarantined is a backup in quarantine/.
type Quarantined struct {
	ID      string `json:"id"`
	Objects int    `json:"objects"`
	Reason  string `json:"reason,omitempty"` // why its manifest cannot be used
}

// QuarantinedObjects counts the objects in quarantine/.
func (s State) QuarantinedObjects() int {
	n := 0
	for _, q := range s.Quarantine {
		n += q.Objects
	}
	return n
}

// Run is one backup run.
type Run struct {
	ID         string    `json:"id"` // backup id (UTC timestamp, 20260102T030405Z)
	Edition    string    `json:"edition,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Result     string    `json:"result"`         // ok | failed
	Step       string    `json:"step,omitempty"` // the step that failed
	Error      string    `json:"error,omitempty"`
	SizeBytes  int64     `json:"sizeBytes"` // sum of the dump files
	DurationMS int64     `json:"durationMs"`
	// DowntimeMS is how long the database container was stopped
	// (Community dumps); 0 for online backups.
	DowntimeMS int64 `json:"downtimeMs"`
	Verified   bool  `json:"verified"` // every dump passed neo4j-admin database check
	Uploaded   bool  `json:"uploaded"` // every file uploaded and read back
}

// Newest is the newest verified, uploaded backup.
type Newest struct {
	ID        string    `json:"id"`
	At        time.Time `json:"at"` // when the backup was taken
	SizeBytes int64     `json:"sizeBytes"`
}

// Duration is the run's wall time.
func (r Run) Duration() time.Duration { return time.Duration(r.DurationMS) * time.Millisecond }

// Downtime is how long the database was stopped.
func (r Run) Downtime() time.Duration { return time.Duration(r.DowntimeMS) * time.Millisecond }

// ReadState reads StateFile below root. A droplet that never ran a backup
// has no file: that is State{} and no error.
func ReadState(root fsutil.Root) (State, error) {
	b, err := root.ReadFile(StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return State{SchemaVersion: StateSchemaVersion}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("read backup state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("parse backup state %s: %w", StateFile, err)
	}
	return s, nil
}

// WriteState writes StateFile below root atomically.
func WriteState(root fsutil.Root, s State) error {
	s.SchemaVersion = StateSchemaVersion
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode backup state: %w", err)
	}
	if _, err := root.WriteFile(StateFile, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write backup state: %w", err)
	}
	return nil
}

// Summary is one line for `status`: the last run and the newest verified
// backup, e.g. "last run 20260310T030000Z ok 9h ago: 1.2 GiB, verified,
// uploaded, database down 42s". now is the clock.
func (s State) Summary(now time.Time) string {
	r := s.LastRun
	if r == nil {
		return "no backup has run yet"
	}
	ago := now.Sub(r.FinishedAt).Round(time.Minute)
	var line string
	if r.Result == ResultOK {
		line = fmt.Sprintf("last run %s ok %s ago: %s, verified, uploaded", r.ID, ago, human(r.SizeBytes))
		if r.DowntimeMS > 0 {
			line += fmt.Sprintf(", database down %s", r.Downtime().Round(time.Second))
		}
	} else {
		line = fmt.Sprintf("last run %s FAILED %s ago at step %s: %s", r.ID, ago, r.Step, r.Error)
	}
	switch n := s.NewestVerified; {
	case n == nil:
		line += "; no verified backup"
	case r.Result != ResultOK || n.ID != r.ID:
		line += fmt.Sprintf("; newest verified %s (%s old)", n.ID, now.Sub(n.At).Round(time.Minute))
	}
	return line
}
