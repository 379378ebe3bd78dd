package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/status"
	"github.com/codelab-app/infra/agent/internal/units"
	"github.com/codelab-app/infra/internal/exitcode"
)

func fakeProbes() status.Probes {
	return status.Probes{
		Units: func(_ context.Context, names []string) ([]units.State, error) {
			var out []units.State
			for _, n := range names {
				out = append(out, units.State{Unit: n, ActiveState: "active", SubState: "running"})
			}
			return out, nil
		},
		Consul: func(context.Context) consul.Health {
			return consul.Health{Reachable: true, Member: true, Leader: "10.0.0.2:8300", Members: 1}
		},
		Containers: func(context.Context, string) ([]containers.Container, error) {
			return []containers.Container{{Name: "api-api-1", Service: "api", State: "running", Health: "healthy"}}, nil
		},
		BootID:      func() string { return "" },
		BootRunning: func() (bool, error) { return true, nil },
	}
}

func TestStatusExitCodes(t *testing.T) {
	dir := t.TempDir()
	g := &Global{Root: dir}
	var out bytes.Buffer
	io := IO{Out: &out, ErrOut: &out}

	// Nothing booted yet: 3; --wait gives up at --timeout, it never hangs.
	start := time.Now()
	err := RunStatus(context.Background(), g, &StatusOptions{Wait: true, Timeout: 300 * time.Millisecond, Probes: fakeProbes()}, io)
	if exitcode.Code(err) != exitcode.Booting {
		t.Fatalf("no state: %v (exit %d), want 3", err, exitcode.Code(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("--wait --timeout 300ms took %s", d)
	}

	// A ready boot: 0, JSON with schemaVersion.
	rec := boot.NewRecorder(fsutil.Root{Dir: dir}, boot.State{Role: "api", DropletID: "7", StartedAt: time.Now()})
	rec.Planned(boot.Plan{{Step: boot.Func{StepName: "fetch-metadata"}, Kind: boot.EveryBoot}})
	rec.Finished("fetch-metadata", boot.OK, time.Now(), 5*time.Millisecond, nil)
	rec.Finish(nil)
	out.Reset()
	if err := RunStatus(context.Background(), g, &StatusOptions{JSON: true, Probes: fakeProbes()}, io); err != nil {
		t.Fatalf("ready: %v\n%s", err, out.String())
	}
	var r status.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.SchemaVersion != status.SchemaVersion || r.Overall != status.Ready {
		t.Fatalf("json: %v %+v", err, r)
	}

	// The boot is still running: --wait returns as soon as it is done.
	_ = rec.Update(func(s *boot.State) { s.Result = boot.BootRunning; s.PID = 1 })
	go func() {
		time.Sleep(400 * time.Millisecond)
		_ = rec.Update(func(s *boot.State) {
			s.Result = boot.BootFailed
			s.Steps[0].Result = boot.Failed
			s.Steps[0].Error = "boom"
		})
	}()
	out.Reset()
	// Nothing runs: no containers in the project, so the failure stands
	// (a failed boot whose role runs anyway reads degraded instead).
	noContainers := fakeProbes()
	noContainers.Containers = func(context.Context, string) ([]containers.Container, error) { return nil, nil }
	err = RunStatus(context.Background(), g, &StatusOptions{Wait: true, Timeout: 10 * time.Second, Probes: noContainers}, io)
	if exitcode.Code(err) != exitcode.Failed || !strings.Contains(out.String(), "boom") {
		t.Fatalf("--wait on a boot that fails: %v\n%s", err, out.String())
	}
}

func TestStatusWaitOutlastsDegraded(t *testing.T) {
	dir := t.TempDir()
	g := &Global{Root: dir}
	rec := boot.NewRecorder(fsutil.Root{Dir: dir}, boot.State{Role: "api", DropletID: "7", StartedAt: time.Now()})
	rec.Planned(boot.Plan{{Step: boot.Func{StepName: "fetch-metadata"}, Kind: boot.EveryBoot}})
	rec.Finished("fetch-metadata", boot.OK, time.Now(), 5*time.Millisecond, nil)
	rec.Finish(nil)

	// The container's health check is still starting: degraded, then
	// healthy a moment later. --wait must report ready, not the first look.
	var healthy atomic.Bool
	p := fakeProbes()
	p.Containers = func(context.Context, string) ([]containers.Container, error) {
		h := "starting"
		if healthy.Load() {
			h = "healthy"
		}
		return []containers.Container{{Name: "api-api-1", Service: "api", State: "running", Health: h}}, nil
	}
	var out bytes.Buffer
	if err := RunStatus(context.Background(), g, &StatusOptions{Probes: p}, IO{Out: &out, ErrOut: &out}); exitcode.Code(err) != exitcode.Degraded {
		t.Fatalf("starting health check: exit %d, want 2\n%s", exitcode.Code(err), out.String())
	}
	time.AfterFunc(300*time.Millisecond, func() { healthy.Store(true) })
	out.Reset()
	if err := RunStatus(context.Background(), g, &StatusOptions{Wait: true, Timeout: 10 * time.Second, Probes: p}, IO{Out: &out, ErrOut: &out}); err != nil {
		t.Fatalf("--wait ended degraded: %v\n%s", err, out.String())
	}
	// Still degraded at the deadline: exit 2 and say so.
	healthy.Store(false)
	out.Reset()
	err := RunStatus(context.Background(), g, &StatusOptions{Wait: true, Timeout: 300 * time.Millisecond, Probes: p}, IO{Out: &out, ErrOut: &out})
	if exitcode.Code(err) != exitcode.Degraded || !strings.Contains(err.Error(), "not ready after --timeout") {
		t.Fatalf("degraded at the deadline: %v (exit %d)", err, exitcode.Code(err))
	}
}

func TestStatusUsageAndHelp(t *testing.T) {
	for _, args := range [][]string{{"status", "--timeout", "1s"}, {"status", "--bogus"}, {"status", "extra"}} {
		var out bytes.Buffer
		if code := Execute(context.Background(), args, IO{Out: &out, ErrOut: &out}); code != exitcode.Usage {
			t.Errorf("%v: exit %d, want 64\n%s", args, code, out.String())
		}
	}
	var out bytes.Buffer
	if code := Execute(context.Background(), []string{"status", "--help"}, IO{Out: &out, ErrOut: &out}); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"0   ready", "1   failed", "2   degraded", "3   still booting", "64  usage", "--json", "--wait"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status --help lacks %q", want)
		}
	}
	out.Reset()
	Execute(context.Background(), []string{"boot", "--help"}, IO{Out: &out, ErrOut: &out})
	for _, want := range []string{"once per instance", "pull-images", boot.StateFile} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("boot --help lacks %q", want)
		}
	}
}
