// Package units drives systemd over D-Bus (go-systemd), never through
// systemctl subprocesses: daemon-reload when unit files changed, enable and
// start units, restart them only when asked (their config changed), and wait
// for each to be active with a deadline.
package units

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/codelab-app/infra/agent/internal/retry"
)

// Conn is the part of go-systemd's *dbus.Conn this package uses.
type Conn interface {
	ReloadContext(ctx context.Context) error
	EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []sddbus.EnableUnitFileChange, error)
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]any, error)
	Close()
}

// Manager converges units.
type Manager struct {
	Conn Conn
	Log  *slog.Logger
	// Poll is how often ActiveState is checked while waiting; default
	// 200ms doubling to 2s.
	Poll retry.Policy
	// Settle is how long a unit must have been active to count: a
	// Type=simple service is "active" the moment it forks, even if it
	// exits at once. Default 1s; negative disables.
	Settle time.Duration
}

// Dial connects to the system's systemd over D-Bus. Close the Manager when
// done.
func Dial(ctx context.Context) (*Manager, error) {
	c, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd over D-Bus: %w", err)
	}
	return &Manager{Conn: c}, nil
}

// Close closes the D-Bus connection.
func (m *Manager) Close() {
	if m != nil && m.Conn != nil {
		m.Conn.Close()
	}
}

func (m *Manager) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

// Want is one unit to converge.
type Want struct {
	Name    string // full unit name: consul.service
	Restart bool   // its config changed: restart it if it is already running
	// Optional units are installed on some images only: when systemd does
	// not know one, Converge skips it (Outcome Absent) instead of failing.
	Optional bool
}

// Action is what Converge did to a unit.
type Action string

const (
	Started   Action = "started"   // was not running, started
	Restarted Action = "restarted" // config changed, restarted
	Unchanged Action = "unchanged" // already active, nothing changed
	Absent    Action = "absent"    // optional and not installed: skipped
)

// Outcome is one unit's result.
type Outcome struct {
	Unit   string
	Action Action
	Took   time.Duration
}

// State is what status shows about a unit.
type State struct {
	Unit             string `json:"unit"`
	LoadState        string `json:"loadState"`
	ActiveState      string `json:"activeState"`
	SubState         string `json:"subState"`
	UnitFileState    string `json:"unitFileState"`
	NeedDaemonReload bool   `json:"needDaemonReload,omitempty"`
	// ActiveSince is when the unit last became active (zero if unknown).
	ActiveSince time.Time `json:"activeSince,omitzero"`
}

// UnitError is a unit that did not reach active.
type UnitError struct {
	Unit string
	Err  error
}

func (e *UnitError) Error() string { return fmt.Sprintf("unit %s: %v", e.Unit, e.Err) }
func (e *UnitError) Unwrap() error { return e.Err }

// Hint is the command to investigate the unit.
func (e *UnitError) Hint() string { return "journalctl -u " + e.Unit + " -n 50" }

// Get reads a unit's state.
func (m *Manager) Get(ctx context.Context, unit string) (State, error) {
	p, err := m.Conn.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return State{}, fmt.Errorf("read unit %s: %w", unit, err)
	}
	s := State{Unit: unit}
	s.LoadState, _ = p["LoadState"].(string)
	s.ActiveState, _ = p["ActiveState"].(string)
	s.SubState, _ = p["SubState"].(string)
	s.UnitFileState, _ = p["UnitFileState"].(string)
	s.NeedDaemonReload, _ = p["NeedDaemonReload"].(bool)
	if us, ok := p["ActiveEnterTimestamp"].(uint64); ok && us > 0 {
		s.ActiveSince = time.UnixMicro(int64(us))
	}
	return s, nil
}

// States reads several units' states.
func (m *Manager) States(ctx context.Context, units []string) ([]State, error) {
	out := make([]State, 0, len(units))
	for _, u := range units {
		s, err := m.Get(ctx, u)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Converge makes every wanted unit enabled and active, in order: a
// daemon-reload first if systemd says any unit file changed on disk, then
// enable all, then start each (or restart it when Want.Restart and it is
// running) and wait until it is active. Each unit gets timeout to become
// active.
func (m *Manager) Converge(ctx context.Context, wants []Want, timeout time.Duration) ([]Outcome, error) {
	all := make([]string, len(wants))
	for i, w := range wants {
		all[i] = w.Name
	}
	if err := m.ReloadIfNeeded(ctx, all); err != nil {
		return nil, err
	}
	var names []string
	absent := map[string]bool{}
	for _, w := range wants {
		s, err := m.Get(ctx, w.Name)
		if err != nil {
			return nil, err
		}
		switch {
		case s.LoadState == "loaded":
			names = append(names, w.Name)
		case w.Optional:
			absent[w.Name] = true
		default:
			return nil, &UnitError{Unit: w.Name, Err: fmt.Errorf("not installed (load state %q); the image should ship it", s.LoadState)}
		}
	}
	_, changes, err := m.Conn.EnableUnitFilesContext(ctx, names, false, false)
	if err != nil {
		return nil, fmt.Errorf("enable %v: %w", names, err)
	}
	for _, c := range changes {
		m.log().Info("unit enabled", slog.String("change", c.Type), slog.String("file", c.Filename), slog.String("dest", c.Destination))
	}
	if len(changes) > 0 {
		// Enabling creates symlinks; systemd loads them on reload.
		if err := m.Conn.ReloadContext(ctx); err != nil {
			return nil, fmt.Errorf("daemon-reload after enable: %w", err)
		}
	}
	var out []Outcome
	for _, w := range wants {
		if absent[w.Name] {
			out = append(out, Outcome{Unit: w.Name, Action: Absent})
			continue
		}
		o, err := m.converge(ctx, w, timeout)
		if err != nil {
			return out, err
		}
		out = append(out, o)
	}
	return out, nil
}

// ReloadIfNeeded runs daemon-reload when systemd reports that any of the
// units' files changed on disk since it loaded them.
func (m *Manager) ReloadIfNeeded(ctx context.Context, units []string) error {
	for _, u := range units {
		s, err := m.Get(ctx, u)
		if err != nil {
			return err
		}
		if s.NeedDaemonReload {
			m.log().Info("unit files changed: daemon-reload", slog.String("unit", u))
			if err := m.Conn.ReloadContext(ctx); err != nil {
				return fmt.Errorf("daemon-reload: %w", err)
			}
			return nil
		}
	}
	return nil
}

func (m *Manager) converge(ctx context.Context, w Want, timeout time.Duration) (Outcome, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	before, err := m.Get(ctx, w.Name)
	if err != nil {
		return Outcome{}, err
	}
	action := Started
	job := m.Conn.StartUnitContext
	switch {
	case before.ActiveState == "active" && w.Restart:
		action, job = Restarted, m.Conn.RestartUnitContext
	case before.ActiveState == "active":
		action = Unchanged
	case before.ActiveState == "failed" && w.Restart:
		// A unit that failed on its old config gets a fresh start.
		action = Restarted
	}
	if action != Unchanged {
		// Buffered: if we stop waiting (ctx), the connection's job
		// listener must not block on our channel.
		ch := make(chan string, 1)
		if _, err := job(ctx, w.Name, "replace", ch); err != nil {
			return Outcome{}, &UnitError{Unit: w.Name, Err: fmt.Errorf("%s: %w", action, err)}
		}
		select {
		case res := <-ch:
			if res != "done" {
				return Outcome{}, &UnitError{Unit: w.Name, Err: fmt.Errorf("start job %s", res)}
			}
		case <-ctx.Done():
			return Outcome{}, &UnitError{Unit: w.Name, Err: fmt.Errorf("start job did not finish within %s: %w", timeout, ctx.Err())}
		}
	}
	if err := m.WaitActive(ctx, w.Name); err != nil {
		return Outcome{}, err
	}
	o := Outcome{Unit: w.Name, Action: action, Took: time.Since(start)}
	m.log().Info("unit active", slog.String("unit", w.Name), slog.String("action", string(action)), slog.Duration("took", o.Took))
	return o, nil
}

// errNotYet is returned while a unit is still activating.
var errNotYet = errors.New("not active yet")

// WaitActive waits until the unit is active, fails at once if it failed,
// and gives up when ctx ends.
func (m *Manager) WaitActive(ctx context.Context, unit string) error {
	pol := m.Poll
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 200*time.Millisecond, 2*time.Second
	}
	settle := m.Settle
	if settle == 0 {
		settle = time.Second
	}
	var last State
	err := retry.Do(ctx, pol, func(ctx context.Context) error {
		s, err := m.Get(ctx, unit)
		if err != nil {
			return err
		}
		last = s
		switch s.ActiveState {
		case "active":
			if since := time.Since(s.ActiveSince); !s.ActiveSince.IsZero() && since < settle {
				return fmt.Errorf("active for only %s: %w", since.Round(time.Millisecond), errNotYet)
			}
			return nil
		case "failed":
			return retry.Permanent(fmt.Errorf("failed (%s)", s.SubState))
		case "inactive":
			// A Type=simple unit that exited at once is inactive, not
			// failed, when it has no Restart=.
			return fmt.Errorf("inactive (%s): %w", s.SubState, errNotYet)
		default:
			return fmt.Errorf("%s (%s): %w", s.ActiveState, s.SubState, errNotYet)
		}
	})
	if err != nil {
		if last.ActiveState != "" && last.ActiveState != "failed" {
			err = fmt.Errorf("not active in time, last %s/%s: %w", last.ActiveState, last.SubState, err)
		}
		return &UnitError{Unit: unit, Err: err}
	}
	return nil
}

// DialSocket connects to systemd through a given socket: the system bus
// (a path ending in system_bus_socket, as /run/dbus/system_bus_socket) or
// systemd's private socket. Tests use it to drive the systemd of a
// container from the host (/proc/PID/root/run/dbus/system_bus_socket).
func DialSocket(ctx context.Context, path string) (*Manager, error) {
	hello := strings.HasSuffix(path, "system_bus_socket")
	c, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
		conn, err := godbus.Dial("unix:path="+path, godbus.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		if err := conn.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			conn.Close()
			return nil, err
		}
		if hello {
			if err := conn.Hello(); err != nil {
				conn.Close()
				return nil, err
			}
		}
		return conn, nil
	})
	if err != nil {
		return nil, fmt.Errorf("connect to systemd at %s: %w", path, err)
	}
	return &Manager{Conn: c}, nil
}
