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
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/exitcode"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/units"
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
	switch overall {
	case Ready:
		return exitcode.OK
	case Degraded:
		return exitcode.Degraded
	case Booting:
		return exitcode.Booting
	default:
		return exitcode.Failed
	}
}

// Units the droplet runs.
var Units = []string{boot.DockerUnit, boot.ConsulUnit, boot.ConsulTemplateUnit}

// Probes are the live checks, as function fields so tests can fake them.
type Probes struct {
	Units      func(ctx context.Context, names []string) ([]units.State, error)
	Consul     func(ctx context.Context) consul.Health
	Containers func(ctx context.Context, project string) ([]containers.Container, error)
	BootID     func() string
	PIDAlive   func(pid int) bool
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
	Units      []units.State          `json:"units"`
	UnitsError string                 `json:"unitsError,omitempty"`
	Consul     consul.Health          `json:"consul"`
	Containers []containers.Container `json:"containers"`
	DockerErr  string                 `json:"containersError,omitempty"`
	Problems   []Problem              `json:"problems"`
}

// Collect reads the state under root and runs the live checks, each within
// timeout, at the same time.
func Collect(ctx context.Context, root fsutil.Root, p Probes, agentVersion string, timeout time.Duration) Report {
	r := Report{SchemaVersion: SchemaVersion, AgentVersion: agentVersion, Units: []units.State{}, Containers: []containers.Container{}, Problems: []Problem{}}
	st, stErr := boot.ReadState(root)
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
		us, err := p.Units(ctx, Units)
		r.Units = append(r.Units, us...)
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
	r.ExitCode = Code(r.Overall)
	return r
}

func (r *Report) problem(what, err, hint string) {
	r.Problems = append(r.Problems, Problem{What: what, Error: err, Hint: hint})
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
		if st.PID > 0 && p.PIDAlive != nil && !p.PIDAlive(st.PID) {
			r.Overall = Failed
			r.Summary = fmt.Sprintf("the boot (pid %d) ended without finishing", st.PID)
			r.problem("boot", r.Summary, "journalctl -u codelab-agent -n 50")
			return
		}
		r.Overall = Booting
		r.Summary = "booting: " + st.Status
		if len(r.Problems) > 0 {
			r.Summary += fmt.Sprintf(" (%d step(s) failed already)", len(r.Problems))
		}
		return
	case boot.BootFailed:
		r.Overall = Failed
		r.Summary = "boot failed"
		for _, s := range st.Steps {
			if s.Result == boot.Failed {
				r.Summary = fmt.Sprintf("boot failed at step %s: %s", s.Name, s.Error)
				break
			}
		}
		return
	}
	// Booted: the live checks decide between ready and degraded.
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
	if len(r.Problems) > 0 {
		r.Overall = Degraded
		r.Summary = fmt.Sprintf("degraded: %s: %s", r.Problems[0].What, r.Problems[0].Error)
		return
	}
	r.Overall = Ready
	r.Summary = fmt.Sprintf("ready: role %s, %d container(s) healthy", r.Role, len(r.Containers))
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

// PIDAlive reports whether a process exists.
func PIDAlive(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}
