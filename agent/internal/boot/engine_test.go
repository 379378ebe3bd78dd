package boot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/render"
)

// pingDocker answers Ping with an Engine API version.
type pingDocker struct {
	fakeDocker
	api string
}

func (p *pingDocker) Ping(context.Context) (types.Ping, error) {
	return types.Ping{APIVersion: p.api}, nil
}

// TestComposeHealthcheckFollowsTheEngine: the docker step records dockerd's
// API version and render writes start_interval into the role's Compose
// file only for Engine 25 and later (API 1.44); Compose refuses it on
// older Engines.
func TestComposeHealthcheckFollowsTheEngine(t *testing.T) {
	in := renderInput(t, "api")
	files, err := render.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	for api, want := range map[string]bool{"1.41": false, "1.43": false, "1.44": true, "1.47": true} {
		root := fsutil.Root{Dir: t.TempDir()}
		facts := &Facts{Meta: in.Meta, User: in.User, Files: files}
		rec := NewRecorder(root, State{})
		rec.Planned(Plan{{Step: Func{StepName: StepDocker}, Kind: EveryBoot}})
		d := &DockerStep{Facts: facts, Units: &recordingUnits{}, API: &pingDocker{api: api}, Timeout: time.Second, Rec: rec}
		if err := d.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if facts.EngineAPI != api {
			t.Fatalf("EngineAPI = %q, want %q", facts.EngineAPI, api)
		}
		snap := rec.Snapshot()
		if st, _ := snap.Step(StepDocker); st.Detail != "docker unchanged, engine API "+api {
			t.Errorf("docker detail = %q", st.Detail)
		}
		if err := (&Render{Facts: facts, Root: root}).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		b, err := root.ReadFile(render.ComposeFile("api"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), "start_interval: 1s"); got != want {
			t.Errorf("Engine API %s: start_interval in compose.yaml %v, want %v", api, got, want)
		}
	}
}
