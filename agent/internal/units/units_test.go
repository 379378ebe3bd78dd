package units

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// fakeConn is a Conn made of function fields; a nil field fails loudly.
type fakeConn struct {
	reload  func(ctx context.Context) error
	enable  func(ctx context.Context, files []string) ([]sddbus.EnableUnitFileChange, error)
	start   func(name string, ch chan<- string) error
	restart func(name string, ch chan<- string) error
	props   func(unit string) (map[string]any, error)
	closed  bool
}

func (f *fakeConn) ReloadContext(ctx context.Context) error { return f.reload(ctx) }
func (f *fakeConn) EnableUnitFilesContext(ctx context.Context, files []string, _, _ bool) (bool, []sddbus.EnableUnitFileChange, error) {
	ch, err := f.enable(ctx, files)
	return false, ch, err
}
func (f *fakeConn) StartUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	if mode != "replace" {
		return 0, fmt.Errorf("fake: unexpected mode %q", mode)
	}
	return 1, f.start(name, ch)
}
func (f *fakeConn) RestartUnitContext(_ context.Context, name, _ string, ch chan<- string) (int, error) {
	return 2, f.restart(name, ch)
}
func (f *fakeConn) GetUnitPropertiesContext(_ context.Context, unit string) (map[string]any, error) {
	return f.props(unit)
}
func (f *fakeConn) Close() { f.closed = true }

type unitSim struct {
	active      map[string]string
	needReload  bool
	reloads     int
	started     []string
	restarted   []string
	failOnStart string
}

func (s *unitSim) conn() *fakeConn {
	return &fakeConn{
		reload: func(context.Context) error { s.reloads++; s.needReload = false; return nil },
		enable: func(_ context.Context, files []string) ([]sddbus.EnableUnitFileChange, error) { return nil, nil },
		start: func(name string, ch chan<- string) error {
			s.started = append(s.started, name)
			if name == s.failOnStart {
				s.active[name] = "failed"
				ch <- "failed"
				return nil
			}
			s.active[name] = "active"
			ch <- "done"
			return nil
		},
		restart: func(name string, ch chan<- string) error {
			s.restarted = append(s.restarted, name)
			s.active[name] = "active"
			ch <- "done"
			return nil
		},
		props: func(unit string) (map[string]any, error) {
			st, ok := s.active[unit]
			if !ok {
				return map[string]any{"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead"}, nil
			}
			return map[string]any{"LoadState": "loaded", "ActiveState": st, "SubState": "x", "NeedDaemonReload": s.needReload}, nil
		},
	}
}

func TestConvergeStartsRestartsOnlyWhatChanged(t *testing.T) {
	sim := &unitSim{active: map[string]string{"consul.service": "active", "consul-template.service": "active", "docker.service": "inactive"}, needReload: true}
	m := &Manager{Conn: sim.conn()}
	out, err := m.Converge(context.Background(), []Want{
		{Name: "docker.service"},
		{Name: "consul.service", Restart: true},
		{Name: "consul-template.service"},
	}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if sim.reloads != 1 {
		t.Errorf("daemon-reloads = %d, want 1 (a unit file changed)", sim.reloads)
	}
	got := fmt.Sprint(out[0].Action, out[1].Action, out[2].Action)
	if got != fmt.Sprint(Started, Restarted, Unchanged) {
		t.Errorf("actions = %s", got)
	}
	if strings.Join(sim.restarted, ",") != "consul.service" || strings.Join(sim.started, ",") != "docker.service" {
		t.Errorf("started %v restarted %v", sim.started, sim.restarted)
	}

	// Nothing changed: no reload, no job.
	sim.started, sim.restarted, sim.reloads = nil, nil, 0
	if _, err := m.Converge(context.Background(), []Want{{Name: "docker.service"}, {Name: "consul.service"}}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if sim.reloads != 0 || len(sim.started) != 0 || len(sim.restarted) != 0 {
		t.Errorf("second converge did work: reloads %d started %v restarted %v", sim.reloads, sim.started, sim.restarted)
	}
}

func TestConvergeFailures(t *testing.T) {
	sim := &unitSim{active: map[string]string{"consul.service": "inactive"}, failOnStart: "consul.service"}
	m := &Manager{Conn: sim.conn()}
	_, err := m.Converge(context.Background(), []Want{{Name: "consul.service"}}, time.Second)
	var ue *UnitError
	if !errors.As(err, &ue) || ue.Unit != "consul.service" || ue.Hint() != "journalctl -u consul.service -n 50" {
		t.Fatalf("err = %v", err)
	}
	_, err = m.Converge(context.Background(), []Want{{Name: "nope.service"}}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("missing unit: err = %v", err)
	}
}

func TestConvergeHonoursContextWhileWaitingForJob(t *testing.T) {
	sim := &unitSim{active: map[string]string{"slow.service": "inactive"}}
	c := sim.conn()
	c.start = func(string, chan<- string) error { return nil } // the job never completes
	m := &Manager{Conn: c}
	start := time.Now()
	_, err := m.Converge(context.Background(), []Want{{Name: "slow.service"}}, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("waited %s past the deadline", time.Since(start))
	}
}

func TestClose(t *testing.T) {
	c := &fakeConn{}
	(&Manager{Conn: c}).Close()
	if !c.closed {
		t.Fatal("Close did not close the D-Bus connection")
	}
}

func TestConvergeSkipsAnAbsentOptionalUnit(t *testing.T) {
	sim := &unitSim{active: map[string]string{"consul.service": "active"}}
	m := &Manager{Conn: sim.conn()}
	out, err := m.Converge(context.Background(), []Want{
		{Name: "consul.service"},
		{Name: "prometheus-node-exporter.service", Restart: true, Optional: true},
	}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[1].Action != Absent || len(sim.started)+len(sim.restarted) != 0 {
		t.Fatalf("outcomes %v, started %v, restarted %v; want the optional unit skipped", out, sim.started, sim.restarted)
	}
	// Installed, it is restarted like any other unit whose config changed.
	sim.active["prometheus-node-exporter.service"] = "active"
	out, err = m.Converge(context.Background(), []Want{{Name: "prometheus-node-exporter.service", Restart: true, Optional: true}}, 5*time.Second)
	if err != nil || out[0].Action != Restarted {
		t.Fatalf("installed optional unit: %v, %v; want restarted", out, err)
	}
	// Not optional, absence is an error naming the unit.
	if _, err := m.Converge(context.Background(), []Want{{Name: "missing.service"}}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "missing.service") {
		t.Fatalf("a missing required unit: %v", err)
	}
}
