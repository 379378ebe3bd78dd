// Package status builds what `codelab-agent status` prints: the state the
// boot wrote, plus live checks of systemd units, Consul and Docker, each
// bounded so that status answers in well under a second and still answers
// (saying what it cannot reach) when Docker or Consul is down.
package status

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/units"
	"github.com/codelab-app/infra/internal/exitcode"
	"github.com/dustin/go-humanize"
)

// SchemaVersion is status --json's format version.
const SchemaVersion = 1

// Overall states, with their exit codes.
const (
	Ready    = "ready"
	Failed   = "failed"
	Degraded = "degraded"
	Booting  = "booting"
)

// Code maps an overall state to its exit code.
func Code(overall string) int {
	return exitcode.OfState(overall)
}

// Units the droplet runs.
var Units = []string{boot.DockerUnit, boot.ConsulUnit, boot.ConsulTemplateUnit}

// LongWait is how long a boot may wait on something outside the droplet
// (a Consul leader, a KV key, the registry) before status calls the
// droplet degraded. The boot keeps waiting, and completes once the thing
// arrives.
const LongWait = 15 * time.Minute

// Probes are the live checks, as function fields so tests can fake them.
type Probes struct {
	Units      func(ctx context.Context, names []string) ([]units.State, error)
	Consul     func(ctx context.Context) consul.Health
	Containers func(ctx context.Context, project string) ([]containers.Container, error)
	BootID     func() string
	// BootRunning reports whether a boot process is alive: it holds
	// boot.LockFile for its whole life, and the kernel releases the lock
	// when it dies, so the answer cannot be stale.
	BootRunning func() (bool, error)
	Now         func() time.Time
}

// Problem is one thing that is wrong, with the command to investigate it.
type Problem struct {
	What  string `json:"what"`
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

// Report is the whole status.
type Report struct {
	SchemaVersion int    `json:"schemaVersion"`
	Overall       string `json:"overall"`
	ExitCode      int    `json:"exitCode"`
	Summary       string `json:"summary"`
	Role          string `json:"role,omitempty"`
	DropletID     string `json:"dropletId,omitempty"`
	Image         string `json:"image,omitempty"`
	AgentVersion  string `json:"agentVersion"`

	Boot       *boot.State            `json:"boot,omitempty"`
	AgentUnit  *units.State           `json:"agentUnit,omitempty"`
	Units      []units.State          `json:"units"`
	UnitsError string                 `json:"unitsError,omitempty"`
	Consul     consul.Health          `json:"consul"`
	Containers []containers.Container `json:"containers"`
	DockerErr  string                 `json:"containersError,omitempty"`
	// Backup is the neo4j role's last backup run and newest verified
	// backup (from backup.StateFile); nil on other roles.
	Backup   *Backup   `json:"backup,omitempty"`
	Problems []Problem `json:"problems"`
}

// Collect reads the state under root and runs the live checks, each within
// timeout, at the same time.
func Collect(ctx context.Context, root fsutil.Root, p Probes, agentVersion string, timeout time.Duration) Report {
	r := Report{SchemaVersion: SchemaVersion, AgentVersion: agentVersion, Units: []units.State{}, Containers: []containers.Container{}, Problems: []Problem{}}
	st, stErr := readState(root, p)
	if stErr == nil {
		r.Boot = &st
		r.Role, r.DropletID, r.Image = st.Role, st.DropletID, st.Image
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		us, err := p.Units(ctx, append(slices.Clone(Units), boot.AgentUnit))
		for _, u := range us {
			if u.Unit == boot.AgentUnit {
				r.AgentUnit = &u
				continue
			}
			r.Units = append(r.Units, u)
		}
		if err != nil {
			r.UnitsError = "systemd: " + err.Error()
		}
	}()
	go func() {
		defer wg.Done()
		r.Consul = p.Consul(ctx)
	}()
	go func() {
		defer wg.Done()
		if r.Role == "" {
			return
		}
		cs, err := p.Containers(ctx, r.Role)
		r.Containers = append(r.Containers, cs...)
		if err != nil {
			r.DockerErr = "docker: " + err.Error()
		}
	}()
	wg.Wait()

	r.evaluate(stErr, p)
	if r.Role == "neo4j" {
		r.Backup = readBackup(root, r.now(p))
	}
	r.ExitCode = Code(r.Overall)
	return r
}

// Backup is what status shows of the neo4j backups. It informs; it does
// not change the overall state (the monitor's Consul check alerts on it).
type Backup struct {
	LastRun *backup.Run `json:"lastRun,omitempty"`
	// Newest is the newest verified, uploaded backup, and AgeSeconds its
	// age when status ran.
	Newest     *backup.Newest `json:"newestVerified,omitempty"`
	AgeSeconds int64          `json:"newestAgeSeconds,omitempty"`
	Error      string         `json:"error,omitempty"`
}

func readBackup(root fsutil.Root, now time.Time) *Backup {
	st, err := backup.ReadState(root)
	if err != nil {
		return &Backup{Error: err.Error()}
	}
	b := &Backup{LastRun: st.LastRun, Newest: st.NewestVerified}
	if b.Newest != nil {
		b.AgeSeconds = int64(now.Sub(b.Newest.At).Seconds())
	}
	return b
}

// Line is the backup in one line.
func (b *Backup) Line() string {
	if b.Error != "" {
		return "unreadable: " + b.Error
	}
	line := "none verified yet"
	if b.Newest != nil {
		line = fmt.Sprintf("newest verified %s (%s old, %s)", b.Newest.ID,
			(time.Duration(b.AgeSeconds) * time.Second).String(), humanize.Bytes(uint64(max(b.Newest.SizeBytes, 0))))
	}
	if r := b.LastRun; r != nil {
		line += fmt.Sprintf("; last run %s %s at %s", r.ID, r.Result, r.FinishedAt.UTC().Format(time.RFC3339))
		if r.Result != backup.ResultOK {
			line += fmt.Sprintf(" (step %s: %s)", r.Step, r.Error)
		}
	}
	return line
}

// readState reads the state file and whether a boot is running. A state
// that says "booting" while no boot holds the lock is read again: the boot
// writes its final state before it releases the lock, so the second read
// sees how it ended, and a boot that died without finishing still reads
// "booting" (evaluate then checks whether systemd restarts it).
func readState(root fsutil.Root, p Probes) (boot.State, error) {
	st, err := boot.ReadState(root)
	if err != nil || st.Result != boot.BootRunning || p.BootRunning == nil {
		return st, err
	}
	running, lerr := p.BootRunning()
	if lerr != nil || running {
		return st, err
	}
	st, err = boot.ReadState(root)
	if err == nil && st.Result == boot.BootRunning {
		st.Result = bootDied
	}
	return st, err
}

// bootDied marks, in memory only, a state that says booting although no
// boot process is alive.
const bootDied = "died"

func (r *Report) problem(what, err, hint string) {
	r.Problems = append(r.Problems, Problem{What: what, Error: err, Hint: hint})
}

func (r *Report) now(p Probes) time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// restarting reports whether systemd is about to run the boot again (the
// agent unit restarts on failure, with backoff).
func (r *Report) restarting() bool {
	u := r.AgentUnit
	return u != nil && (u.SubState == "auto-restart" || u.ActiveState == "activating")
}

func (r *Report) evaluate(stErr error, p Probes) {
	switch {
	case errors.Is(stErr, fs.ErrNotExist):
		r.Overall = Booting
		r.Summary = "no boot recorded yet: codelab-agent boot has not run"
		r.problem("boot", "no "+boot.StateFile, "systemctl status codelab-agent")
		return
	case stErr != nil:
		r.Overall = Failed
		r.Summary = "cannot read the boot state: " + stErr.Error()
		r.problem("boot", stErr.Error(), "journalctl -u codelab-agent -n 50")
		return
	}
	st := r.Boot
	sameBoot := st.BootID == "" || p.BootID == nil || p.BootID() == "" || p.BootID() == st.BootID
	if !sameBoot {
		r.Overall = Booting
		r.Summary = "the recorded boot is from before the last reboot; codelab-agent boot has not finished since"
		return
	}
	for _, s := range st.Steps {
		if s.Result == boot.Failed {
			r.problem("step "+s.Name, s.Error, s.Hint)
		}
	}
	switch st.Result {
	case boot.BootRunning:
		r.evaluateBooting(p)
		return
	case bootDied:
		st.Result = boot.BootRunning
		msg := "the boot ended without finishing (killed, or the agent crashed)"
		r.problem("boot", msg, "journalctl -u codelab-agent -n 50")
		if r.restarting() {
			r.Overall = Booting
			r.Summary = "booting: " + msg + "; systemd runs it again"
			return
		}
		r.Overall = Failed
		r.Summary = msg
		return
	case boot.BootFailed:
		failed := "boot failed"
		for _, s := range st.Steps {
			if s.Result == boot.Failed {
				failed = fmt.Sprintf("boot failed at step %s: %s", s.Name, s.Error)
				break
			}
		}
		if r.restarting() {
			r.Overall = Booting
			r.Summary = "booting: " + failed + "; systemd runs it again"
			return
		}
		if n := len(r.Problems); r.liveChecks() == 0 {
			// Something else (consul-template's exec, an operator) got the
			// role running after the boot gave up: not failed, but not a
			// clean boot either.
			r.Problems = r.Problems[:n]
			r.Overall = Degraded
			at := ""
			if st.FinishedAt != nil {
				at = " at " + st.FinishedAt.UTC().Format(time.RFC3339)
			}
			r.Summary = fmt.Sprintf("degraded: %s%s; now running", failed, at)
			return
		}
		r.Overall = Failed
		r.Summary = failed
		return
	}
	// Booted: the live checks decide between ready and degraded.
	if r.liveChecks() > 0 {
		r.Overall = Degraded
		r.Summary = fmt.Sprintf("degraded: %s: %s", r.Problems[0].What, r.Problems[0].Error)
		return
	}
	r.Overall = Ready
	r.Summary = fmt.Sprintf("ready: role %s, %d container(s) healthy", r.Role, len(r.Containers))
}

// evaluateBooting reads a boot in progress: what it waits for and since
// when, and degraded once a wait has lasted LongWait.
func (r *Report) evaluateBooting(p Probes) {
	st := r.Boot
	r.Overall = Booting
	r.Summary = "booting: " + st.Status
	var w *boot.Wait
	for _, s := range st.Steps {
		if s.Waiting != nil && s.Result == boot.Running && (w == nil || s.Waiting.Since.Before(w.Since)) {
			w = s.Waiting
		}
	}
	if w != nil {
		for _, s := range st.Steps {
			if s.Waiting != nil && s.Result == boot.Running {
				r.problem("waiting for "+s.Waiting.What, s.Waiting.Reason, s.Waiting.Hint)
			}
		}
		waited := r.now(p).Sub(w.Since).Round(time.Second)
		r.Summary = fmt.Sprintf("booting: waiting for %s since %s (%s)", w.What, w.Since.UTC().Format(time.RFC3339), waited)
		if w.Hint != "" {
			r.Summary += "; " + w.Hint
		}
		if waited >= LongWait {
			r.Overall = Degraded
			r.Summary = "degraded: still " + strings.TrimPrefix(r.Summary, "booting: ")
		}
		return
	}
	if st.PreviousError != "" {
		r.Summary += fmt.Sprintf(" (attempt %d; the last one failed: %s)", st.Attempt, st.PreviousError)
	}
	if n := len(r.Problems); n > 0 {
		r.Summary += fmt.Sprintf(" (%d step(s) failed already)", n)
	}
}

// liveChecks adds a problem for every unit, Consul or container check that
// fails, and returns how many it added.
func (r *Report) liveChecks() int {
	n := len(r.Problems)
	if r.UnitsError != "" {
		r.problem("units", r.UnitsError, "systemctl status "+joinUnits())
	}
	for _, u := range r.Units {
		if u.ActiveState != "active" {
			r.problem("unit "+u.Unit, fmt.Sprintf("%s (%s)", u.ActiveState, u.SubState), "journalctl -u "+u.Unit+" -n 50")
		}
	}
	if m := r.Consul.Missing(""); m != "" {
		if !r.Consul.Reachable {
			m = r.Consul.Error
		}
		r.problem("consul", m, "journalctl -u consul -n 50")
	}
	if r.DockerErr != "" {
		r.problem("containers", r.DockerErr, "systemctl status docker")
	} else if len(r.Containers) == 0 {
		r.problem("containers", "no containers in project "+r.Role, "docker compose -p "+r.Role+" ps -a")
	}
	for _, c := range r.Containers {
		if c.State != "running" || (c.Health != "" && c.Health != "healthy") {
			r.problem("container "+c.Name, c.State+" "+c.Health, "docker compose -p "+r.Role+" logs "+c.Service)
		}
	}
	return len(r.Problems) - n
}

func joinUnits() string {
	s := ""
	for i, u := range Units {
		if i > 0 {
			s += " "
		}
		s += u
	}
	return s
}

// BootRunning reports whether a boot holds the boot lock below root.
func BootRunning(root fsutil.Root) (bool, error) {
	return fsutil.Held(root.Path(boot.LockFile))
}
