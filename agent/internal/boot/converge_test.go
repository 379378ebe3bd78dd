package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/render"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/agent/internal/units"
	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/tools/testenv"
)

// recordingUnits remembers which units Converge was asked to restart.
type recordingUnits struct {
	mu       sync.Mutex
	restarts []string
	err      error
}

func (u *recordingUnits) Converge(_ context.Context, wants []units.Want, _ time.Duration) ([]units.Outcome, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []units.Outcome
	for _, w := range wants {
		a := units.Unchanged
		if w.Restart {
			a = units.Restarted
			u.restarts = append(u.restarts, w.Name)
		}
		out = append(out, units.Outcome{Unit: w.Name, Action: a})
	}
	return out, u.err
}

func consulFiles(server string) []render.File {
	return []render.File{
		{Path: render.ConsulDir + "/consul.hcl", Data: []byte("server = " + server + "\n"), Mode: 0o640, Consumer: render.ConsumerConsul},
		{Path: render.TemplateDir + "/config.hcl", Data: []byte("# ct\n"), Mode: 0o640, Consumer: render.ConsumerConsulTemplate},
	}
}

// TestCrashBetweenRenderAndRestart: a boot writes new Consul config and is
// killed before the units step. The next boot renders the same bytes (no
// change), and must still restart consul, which runs the stale config.
func TestCrashBetweenRenderAndRestart(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	ctx := context.Background()

	// First boot: everything new; then "killed" before the units step.
	f1 := &Facts{Files: consulFiles("false")}
	if err := (&Render{Facts: f1, Root: root}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	pending, err := ReadRestartPending(root)
	if err != nil || !slices.Equal(pending, []string{ConsulTemplateUnit, ConsulUnit}) {
		t.Fatalf("pending after render = %v, %v; want both units", pending, err)
	}

	// Second boot: the same files, so render changes nothing.
	f2 := &Facts{Files: consulFiles("false")}
	if err := (&Render{Facts: f2, Root: root}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f2.Changed) != 0 {
		t.Fatalf("second render changed %v", f2.Changed)
	}
	u := &recordingUnits{}
	if err := (&UnitsStep{Facts: f2, Root: root, Units: u}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(u.restarts, ConsulUnit) || !slices.Contains(u.restarts, ConsulTemplateUnit) {
		t.Fatalf("restarted %v; want consul and consul-template restarted after the crash", u.restarts)
	}
	if _, err := os.Stat(root.Path(RestartPendingFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pending mark not cleared after the restart: %v", err)
	}

	// Third boot: nothing changed, nothing pending: nothing restarts.
	f3 := &Facts{Files: consulFiles("false")}
	if err := (&Render{Facts: f3, Root: root}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	u = &recordingUnits{}
	if err := (&UnitsStep{Facts: f3, Root: root, Units: u}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(u.restarts) != 0 {
		t.Fatalf("a boot with no change restarted %v", u.restarts)
	}
}

// TestFailedRestartKeepsThePendingMark: a units step that fails leaves the
// mark, so the retried boot restarts again.
func TestFailedRestartKeepsThePendingMark(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	ctx := context.Background()
	f := &Facts{Files: consulFiles("true")}
	if err := (&Render{Facts: f, Root: root}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	u := &recordingUnits{err: errors.New("consul did not start")}
	if err := (&UnitsStep{Facts: f, Root: root, Units: u}).Run(ctx); err == nil {
		t.Fatal("units step succeeded with a failing unit")
	}
	if p, err := ReadRestartPending(root); err != nil || !slices.Contains(p, ConsulUnit) {
		t.Fatalf("pending after a failed restart = %v, %v", p, err)
	}
}

// TestRejectedRenderMarksNothing: a validator that rejects the files leaves
// neither the files nor a restart mark.
func TestRejectedRenderMarksNothing(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	f := &Facts{Files: consulFiles("maybe")}
	err := (&Render{Facts: f, Root: root, Validators: []render.Validator{rejecting{}}}).Run(context.Background())
	if err == nil {
		t.Fatal("render accepted what the validator rejected")
	}
	for _, p := range []string{RestartPendingFile, render.ConsulDir + "/consul.hcl"} {
		if _, err := os.Stat(root.Path(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a rejected render", p)
		}
	}
}

type rejecting struct{}

func (rejecting) Name() string { return string(render.ConsumerConsul) }
func (rejecting) Validate(context.Context, string, []render.File) error {
	return errors.New("bad value")
}

// TestComposeUpSaysWhichKeyItWaitsFor: while the env file is missing and a
// required key is absent from KV, the step records the key and the command
// that sets it; once consul-template renders the file the wait ends.
func TestComposeUpSaysWhichKeyItWaitsFor(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	rec := NewRecorder(root, State{})
	rec.Planned(Plan{{Step: Func{StepName: StepComposeUp}, Kind: EveryBoot}})
	rec.Started(StepComposeUp, time.Now())
	files, err := render.Render(renderInput(t, "api"))
	if err != nil {
		t.Fatal(err)
	}
	facts := &Facts{Files: files}
	facts.User.Role, facts.User.Env = "api", "prod"
	envFile := EnvFiles(files, "api")[0]

	var mu sync.Mutex
	keys := []string{"codelab/prod/api/NEO4J_USER"}
	s := &ComposeUp{Facts: facts, Root: root, Rec: rec,
		Poll: retry.Policy{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		KVKeys: func(_ context.Context, prefix string) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			if prefix != "codelab/prod/api/" {
				t.Errorf("listed prefix %q", prefix)
			}
			return slices.Clone(keys), nil
		}}
	done := make(chan error, 1)
	go func() { done <- s.waitEnv(context.Background(), "api") }()

	waitFor(t, func() bool {
		st := composeStep(rec)
		return st.Waiting != nil && st.Waiting.What == "KV key codelab/prod/api/NEO4J_PASSWORD"
	})
	st := composeStep(rec)
	if st.Waiting.Hint != "consul kv put codelab/prod/api/NEO4J_PASSWORD <value>" || st.Waiting.Since.IsZero() {
		t.Fatalf("wait = %+v", st.Waiting)
	}
	since := st.Waiting.Since

	// The key is set: now it waits on consul-template, then the file comes.
	mu.Lock()
	keys = append(keys, "codelab/prod/api/NEO4J_PASSWORD")
	mu.Unlock()
	waitFor(t, func() bool {
		st := composeStep(rec)
		return st.Waiting != nil && strings.HasPrefix(st.Waiting.What, "consul-template to render")
	})
	if st := composeStep(rec); !st.Waiting.Since.After(since) && !st.Waiting.Since.Equal(since) {
		t.Fatalf("since went back: %v", st.Waiting.Since)
	}
	if err := os.MkdirAll(filepath.Dir(root.Path(envFile)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root.Path(envFile), []byte("A=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := composeStep(rec); st.Waiting != nil {
		t.Fatalf("still waiting after the file came: %+v", st.Waiting)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// renderInput is a droplet of the role with the sample metadata.
func renderInput(t *testing.T, role string) render.Input {
	t.Helper()
	m, err := metadata.ReadFile("../metadata/testdata/droplet.json")
	if err != nil {
		t.Fatal(err)
	}
	u, err := userdata.Parse("#codelab v1 role=" + role + " env=prod consul=client join=10.0.0.2 gossip=" + testGossip + " " + testenv.ClientTLS)
	if err != nil {
		t.Fatal(err)
	}
	return render.Input{Meta: m, User: u}
}

const testGossip = "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28="

func composeStep(rec *Recorder) StepState {
	st := rec.Snapshot()
	s, _ := st.Step(StepComposeUp)
	return s
}

// TestNodeExporterRestartsWhenItsAddressChanges: the rendered
// /etc/default/prometheus-node-exporter maps to the exporter's unit, which
// the units step restarts (optional: images without it skip it).
func TestNodeExporterRestartsWhenItsAddressChanges(t *testing.T) {
	if got := UnitsFor([]string{render.NodeExporterDefaults}); !slices.Equal(got, []string{NodeExporterUnit}) {
		t.Fatalf("UnitsFor(%s) = %v", render.NodeExporterDefaults, got)
	}
	root := fsutil.Root{Dir: t.TempDir()}
	ctx := context.Background()
	exporter := func(ip string) []render.File {
		return append(consulFiles("false"), render.File{Path: render.NodeExporterDefaults, Data: []byte(`ARGS="--web.listen-address=` + ip + `:9100"` + "\n"), Mode: 0o644, Consumer: render.ConsumerNodeExporter})
	}
	for i, tc := range []struct {
		ip      string
		restart bool
	}{{"10.0.0.5", true}, {"10.0.0.5", false}, {"10.0.0.6", true}} {
		f := &Facts{Files: exporter(tc.ip)}
		if err := (&Render{Facts: f, Root: root}).Run(ctx); err != nil {
			t.Fatal(err)
		}
		u := &recordingUnits{}
		if err := (&UnitsStep{Facts: f, Root: root, Units: u}).Run(ctx); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(u.restarts, NodeExporterUnit) != tc.restart {
			t.Errorf("boot %d (%s): restarted %v, want node exporter restarted=%v", i, tc.ip, u.restarts, tc.restart)
		}
	}
}
