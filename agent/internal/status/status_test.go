package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/units"
)

func healthyProbes() Probes {
	return Probes{
		Units: func(_ context.Context, names []string) ([]units.State, error) {
			var out []units.State
			for _, n := range names {
				out = append(out, units.State{Unit: n, LoadState: "loaded", ActiveState: "active", SubState: "running"})
			}
			return out, nil
		},
		Consul: func(context.Context) consul.Health {
			return consul.Health{Reachable: true, Node: "api-1", Member: true, Leader: "10.0.0.2:8300", Members: 4, Servers: []string{"10.0.0.2:8301"}}
		},
		Containers: func(_ context.Context, project string) ([]containers.Container, error) {
			return []containers.Container{{Name: project + "-api-1", Service: "api", State: "running", Health: "healthy", ImageDigest: "sha256:abc"}}, nil
		},
		BootID:      func() string { return "boot-1" },
		BootRunning: func() (bool, error) { return false, nil },
		Now:         func() time.Time { return time.Unix(1000, 0) },
	}
}

func writeState(t *testing.T, root fsutil.Root, mutate func(*boot.State)) {
	t.Helper()
	rec := boot.NewRecorder(root, boot.State{Role: "api", DropletID: "42", Image: "codelab-api-base", BootID: "boot-1", PID: 7, StartedAt: time.Unix(0, 0)})
	plan := boot.Plan{
		{Step: boot.Func{StepName: "fetch-metadata"}, Kind: boot.EveryBoot},
		{Step: boot.Func{StepName: "pull-images"}, Kind: boot.EveryBoot},
		{Step: boot.Func{StepName: "compose-up"}, Kind: boot.EveryBoot, After: []string{"pull-images"}},
	}
	rec.Planned(plan)
	rec.Started("fetch-metadata", time.Unix(1, 0))
	rec.Finished("fetch-metadata", boot.OK, time.Unix(2, 0), time.Second, nil)
	rec.Started("pull-images", time.Unix(1, 0))
	rec.Finished("pull-images", boot.OK, time.Unix(3, 0), 2*time.Second, nil)
	rec.Started("compose-up", time.Unix(3, 0))
	rec.Finished("compose-up", boot.OK, time.Unix(4, 0), time.Second, nil)
	rec.Finish(nil)
	if mutate != nil {
		if err := rec.Update(mutate); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCollect(t *testing.T) {
	for name, tc := range map[string]struct {
		state   func(*boot.State) // nil: a ready boot
		noState bool
		probes  func(*Probes)
		want    string
		summary string
		hint    string
	}{
		"ready":    {want: Ready, summary: "ready: role api, 1 container(s) healthy"},
		"no state": {noState: true, want: Booting, summary: "no boot recorded"},
		"booting": {
			state:  func(s *boot.State) { s.Result = boot.BootRunning; s.Status = "pulling images 1/3"; s.PID = 7 },
			probes: func(p *Probes) { p.BootRunning = func() (bool, error) { return true, nil } },
			want:   Booting, summary: "booting: pulling images 1/3",
		},
		"boot process gone": {
			state: func(s *boot.State) { s.Result = boot.BootRunning },
			want:  Failed, summary: "ended without finishing",
		},
		"previous boot's state": {
			state:   func(s *boot.State) { s.BootID = "boot-0" },
			want:    Booting,
			summary: "before the last reboot",
		},
		"boot process killed, systemd restarts it": {
			state:  func(s *boot.State) { s.Result = boot.BootRunning },
			probes: func(p *Probes) { p.Units = withAgentUnit(p.Units, "activating", "auto-restart") },
			want:   Booting, summary: "ended without finishing", hint: "journalctl -u codelab-agent -n 50",
		},
		"waiting for a required key": {
			state: func(s *boot.State) {
				s.Result = boot.BootRunning
				s.Steps[2].Result = boot.Running
				s.Steps[2].Waiting = &boot.Wait{What: "KV key codelab/prod/api/NEO4J_PASSWORD", Reason: "role api requires it", Hint: "consul kv put codelab/prod/api/NEO4J_PASSWORD <value>", Since: time.Unix(1000-180, 0)}
			},
			probes: func(p *Probes) { p.BootRunning = func() (bool, error) { return true, nil } },
			want:   Booting, summary: "booting: waiting for KV key codelab/prod/api/NEO4J_PASSWORD since 1970-01-01T00:13:40Z (3m0s); consul kv put codelab/prod/api/NEO4J_PASSWORD <value>",
			hint: "consul kv put codelab/prod/api/NEO4J_PASSWORD <value>",
		},
		"waiting longer than LongWait": {
			state: func(s *boot.State) {
				s.Result = boot.BootRunning
				s.Steps[2].Result = boot.Running
				s.Steps[2].Waiting = &boot.Wait{What: "a Consul leader", Reason: "no leader", Hint: "consul members", Since: time.Unix(1000, 0).Add(-LongWait - time.Minute)}
			},
			probes: func(p *Probes) { p.BootRunning = func() (bool, error) { return true, nil } },
			want:   Degraded, summary: "degraded: still waiting for a Consul leader", hint: "consul members",
		},
		"failed step": {
			state: func(s *boot.State) {
				s.Result = boot.BootFailed
				s.Steps[1].Result, s.Steps[1].Error, s.Steps[1].Hint = boot.Failed, "registry refused", "docker pull x"
				s.Steps[2].Result = boot.Blocked
			},
			probes: func(p *Probes) {
				p.Containers = func(context.Context, string) ([]containers.Container, error) { return nil, nil }
			},
			want: Failed, summary: "boot failed at step pull-images: registry refused", hint: "docker pull x",
		},
		"failed step, systemd retries": {
			state: func(s *boot.State) {
				s.Result = boot.BootFailed
				s.Steps[1].Result, s.Steps[1].Error = boot.Failed, "registry refused"
			},
			probes: func(p *Probes) { p.Units = withAgentUnit(p.Units, "activating", "auto-restart") },
			want:   Booting, summary: "booting: boot failed at step pull-images: registry refused; systemd runs it again",
		},
		"failed, then recovered": {
			state: func(s *boot.State) {
				s.Result = boot.BootFailed
				s.Steps[2].Result, s.Steps[2].Error, s.Steps[2].Hint = boot.Failed, "compose up timed out", "docker compose -p api logs api"
			},
			want: Degraded, summary: "degraded: boot failed at step compose-up: compose up timed out at ", hint: "docker compose -p api logs api",
		},
		"unhealthy container": {
			probes: func(p *Probes) {
				p.Containers = func(context.Context, string) ([]containers.Container, error) {
					return []containers.Container{{Name: "api-api-1", Service: "api", State: "running", Health: "unhealthy"}}, nil
				}
			},
			want: Degraded, summary: "container api-api-1", hint: "docker compose -p api logs api",
		},
		"docker down": {
			probes: func(p *Probes) {
				p.Containers = func(context.Context, string) ([]containers.Container, error) {
					return nil, errors.New("Cannot connect to the Docker daemon")
				}
			},
			want: Degraded, summary: "Cannot connect to the Docker daemon", hint: "systemctl status docker",
		},
		"consul down": {
			probes: func(p *Probes) {
				p.Consul = func(context.Context) consul.Health {
					return consul.Health{Error: "consul agent at 127.0.0.1:8500 not answering: connection refused"}
				}
			},
			want: Degraded, summary: "not answering", hint: "journalctl -u consul -n 50",
		},
		"unit failed": {
			probes: func(p *Probes) {
				p.Units = func(context.Context, []string) ([]units.State, error) {
					return []units.State{{Unit: "consul.service", ActiveState: "failed", SubState: "failed"}}, nil
				}
			},
			want: Degraded, summary: "unit consul.service", hint: "journalctl -u consul.service -n 50",
		},
	} {
		t.Run(name, func(t *testing.T) {
			root := fsutil.Root{Dir: t.TempDir()}
			if !tc.noState {
				writeState(t, root, tc.state)
			}
			p := healthyProbes()
			if tc.probes != nil {
				tc.probes(&p)
			}
			r := Collect(context.Background(), root, p, "v1.2.3", time.Second)
			if r.Overall != tc.want || r.ExitCode != Code(tc.want) {
				t.Fatalf("overall %s (exit %d), want %s: %s %+v", r.Overall, r.ExitCode, tc.want, r.Summary, r.Problems)
			}
			if !strings.Contains(r.Summary, tc.summary) {
				t.Errorf("summary %q, want it to contain %q", r.Summary, tc.summary)
			}
			if tc.hint != "" {
				found := false
				for _, p := range r.Problems {
					found = found || p.Hint == tc.hint
				}
				if !found {
					t.Errorf("problems %+v, want hint %q", r.Problems, tc.hint)
				}
			}
			for _, f := range []Format{Plain, Table, JSON} {
				var b bytes.Buffer
				if err := Write(&b, r, f); err != nil || b.Len() == 0 {
					t.Errorf("format %d: %v", f, err)
				}
				if tc.hint != "" && !strings.Contains(b.String(), tc.hint) {
					t.Errorf("format %d does not show the hint %q:\n%s", f, tc.hint, b.String())
				}
			}
		})
	}
}

func TestCollectIsBoundedWhenProbesHang(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	writeState(t, root, nil)
	hang := healthyProbes()
	hang.Consul = func(ctx context.Context) consul.Health {
		<-ctx.Done()
		return consul.Health{Error: "consul: " + ctx.Err().Error()}
	}
	hang.Containers = func(ctx context.Context, _ string) ([]containers.Container, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	start := time.Now()
	r := Collect(context.Background(), root, hang, "v", 200*time.Millisecond)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Collect took %s with hanging probes", d)
	}
	if r.Overall != Degraded || r.DockerErr == "" || r.Consul.Reachable {
		t.Fatalf("report %+v", r)
	}
}

func TestJSONHasSchemaVersion(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	writeState(t, root, nil)
	r := Collect(context.Background(), root, healthyProbes(), "v", time.Second)
	var b bytes.Buffer
	if err := Write(&b, r, JSON); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["schemaVersion"] != float64(SchemaVersion) || m["overall"] != "ready" {
		t.Fatalf("json = %s", b.String())
	}
	steps := m["boot"].(map[string]any)["steps"].([]any)
	if d := steps[1].(map[string]any)["durationMs"]; d != float64(2000) {
		t.Errorf("pull-images durationMs = %v, want 2000", d)
	}
}

// withAgentUnit makes the units probe report codelab-agent.service in the
// given state.
func withAgentUnit(next func(context.Context, []string) ([]units.State, error), active, sub string) func(context.Context, []string) ([]units.State, error) {
	return func(ctx context.Context, names []string) ([]units.State, error) {
		out, err := next(ctx, names)
		for i := range out {
			if out[i].Unit == boot.AgentUnit {
				out[i].ActiveState, out[i].SubState = active, sub
			}
		}
		return out, err
	}
}

// TestBootFinishingWhileStatusReads is the race a first `make demo` hit:
// status reads "booting", the boot writes its final state and exits, and
// only then does status test whether the boot is alive. It must report how
// the boot ended, not "ended without finishing".
func TestBootFinishingWhileStatusReads(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	writeState(t, root, func(s *boot.State) { s.Result = boot.BootRunning; s.FinishedAt = nil })
	p := healthyProbes()
	p.BootRunning = func() (bool, error) {
		// The boot finishes between status's read and its check.
		writeState(t, root, nil)
		return false, nil
	}
	r := Collect(context.Background(), root, p, "v", time.Second)
	if r.Overall != Ready {
		t.Fatalf("overall %s: %s, want ready", r.Overall, r.Summary)
	}
}

// TestBootRunningReadsTheLock checks BootRunning against a real flock: held
// by a live holder, free once it is released, free when the file is absent.
func TestBootRunningReadsTheLock(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	if running, err := BootRunning(root); err != nil || running {
		t.Fatalf("no lock file: running=%t err=%v", running, err)
	}
	unlock, err := fsutil.Lock(context.Background(), root.Path(boot.LockFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	if running, err := BootRunning(root); err != nil || !running {
		t.Fatalf("lock held: running=%t err=%v", running, err)
	}
	unlock()
	if running, err := BootRunning(root); err != nil || running {
		t.Fatalf("lock released: running=%t err=%v", running, err)
	}
}

func TestNeo4jStatusShowsTheLastBackup(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	writeState(t, root, func(s *boot.State) { s.Role = "neo4j" })
	at := time.Unix(1000, 0).Add(-90 * time.Minute)
	st := backup.State{SchemaVersion: backup.StateSchemaVersion,
		LastRun:        &backup.Run{ID: "19700101T000000Z", Result: backup.ResultFailed, Step: "upload", Error: "connection reset", FinishedAt: time.Unix(990, 0)},
		NewestVerified: &backup.Newest{ID: "19691231T224640Z", At: at, SizeBytes: 2 << 20}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.WriteFile(backup.StateFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := Collect(context.Background(), root, healthyProbes(), "v", time.Second)
	if r.Backup == nil || r.Backup.AgeSeconds != 5400 {
		t.Fatalf("backup = %+v", r.Backup)
	}
	var out bytes.Buffer
	if err := Write(&out, r, Plain); err != nil {
		t.Fatal(err)
	}
	want := "backup: newest verified 19691231T224640Z (1h30m0s old, 2.1 MB); last run 19700101T000000Z failed at 1970-01-01T00:16:30Z (step upload: connection reset)"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("plain output lacks %q:\n%s", want, out.String())
	}
	// Other roles show no backup.
	writeState(t, root, nil)
	if r := Collect(context.Background(), root, healthyProbes(), "v", time.Second); r.Backup != nil {
		t.Fatalf("api droplet shows a backup: %+v", r.Backup)
	}
}

func TestProgressLineShowsImageBytes(t *testing.T) {
	r := Report{Summary: "booting: pulling images 0/1", Boot: &boot.State{Images: []boot.ImageState{
		{Ref: "reg/api:1", Result: "pulling", Current: 123_000_000, Total: 300_000_000},
		{Ref: "reg/web:1", Result: "pulled", Current: 5, Total: 5},
	}}}
	want := "booting: pulling images 0/1; reg/api:1 123 MB / 300 MB (41%)"
	if got := ProgressLine(r); got != want {
		t.Fatalf("ProgressLine = %q, want %q", got, want)
	}
}
