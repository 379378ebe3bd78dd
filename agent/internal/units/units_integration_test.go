package units

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/tools/testenv"
)

// TestUnitsAgainstRealSystemd drives systemd (PID 1 in a container) over
// its private D-Bus socket, reached from the host through /proc/PID/root.
func TestUnitsAgainstRealSystemd(t *testing.T) {
	testenv.Integration(t, "docker")
	c := testenv.StartSystemd(t, testenv.ContainerOptions{})
	pid := testenv.Run(t, "docker", "inspect", "-f", "{{.State.Pid}}", c.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := DialSocket(ctx, "/proc/"+pid+"/root/run/dbus/system_bus_socket")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	unit := func(body string) []byte {
		return []byte("[Unit]\nDescription=codelab probe\n[Service]\nExecStart=/bin/sh -c '" + body + "'\n[Install]\nWantedBy=multi-user.target\n")
	}
	c.WriteFile(t, "/etc/systemd/system/codelab-probe.service", unit("exec sleep infinity"), 0o644)
	c.WriteFile(t, "/etc/systemd/system/codelab-broken.service", unit("exit 3"), 0o644)
	c.MustExec(t, "systemctl", "daemon-reload")

	out, err := m.Converge(ctx, []Want{{Name: "codelab-probe.service"}}, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Action != Started {
		t.Errorf("first converge: %s, want started", out[0].Action)
	}
	if got := c.MustExec(t, "systemctl", "is-enabled", "codelab-probe.service"); got != "enabled" {
		t.Errorf("is-enabled = %q", got)
	}
	pid1 := c.MustExec(t, "systemctl", "show", "-p", "MainPID", "--value", "codelab-probe.service")

	// Unchanged: nothing restarts.
	out, err = m.Converge(ctx, []Want{{Name: "codelab-probe.service"}}, 20*time.Second)
	if err != nil || out[0].Action != Unchanged {
		t.Fatalf("second converge: %+v %v", out, err)
	}
	if pid2 := c.MustExec(t, "systemctl", "show", "-p", "MainPID", "--value", "codelab-probe.service"); pid2 != pid1 {
		t.Errorf("unchanged converge restarted the unit: pid %s -> %s", pid1, pid2)
	}

	// Unit file changed on disk: daemon-reload, and Restart restarts.
	c.WriteFile(t, "/etc/systemd/system/codelab-probe.service", unit("exec sleep 100000"), 0o644)
	st, err := m.Get(ctx, "codelab-probe.service")
	if err != nil || !st.NeedDaemonReload {
		t.Fatalf("after editing the unit: %+v %v, want NeedDaemonReload", st, err)
	}
	out, err = m.Converge(ctx, []Want{{Name: "codelab-probe.service", Restart: true}}, 20*time.Second)
	if err != nil || out[0].Action != Restarted {
		t.Fatalf("converge after change: %+v %v", out, err)
	}
	if st, _ := m.Get(ctx, "codelab-probe.service"); st.NeedDaemonReload {
		t.Error("still needs daemon-reload after Converge")
	}
	if pid3 := c.MustExec(t, "systemctl", "show", "-p", "MainPID", "--value", "codelab-probe.service"); pid3 == pid1 {
		t.Error("Restart did not restart the unit")
	}

	// A unit that exits is reported with the command to investigate.
	_, err = m.Converge(ctx, []Want{{Name: "codelab-broken.service"}}, 5*time.Second)
	var ue *UnitError
	if err == nil || !strings.Contains(err.Error(), "codelab-broken.service") {
		t.Fatalf("broken unit: err = %v", err)
	}
	if ok := asUnitError(err, &ue); !ok || ue.Hint() != "journalctl -u codelab-broken.service -n 50" {
		t.Errorf("err %v carries no hint", err)
	}

	states, err := m.States(ctx, []string{"codelab-probe.service", "nope.service"})
	if err != nil || states[0].ActiveState != "active" || states[1].LoadState != "not-found" {
		t.Fatalf("States = %+v %v", states, err)
	}
}

func asUnitError(err error, target **UnitError) bool {
	for err != nil {
		if u, ok := err.(*UnitError); ok {
			*target = u
			return true
		}
		uw, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = uw.Unwrap()
	}
	return false
}
