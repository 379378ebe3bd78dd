package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/render"
)

// TestRunnerShortcut: a step whose shortcut is taken starts once its other
// needs are done, while the skipped one still runs; not taken, it waits
// for all of them.
func TestRunnerShortcut(t *testing.T) {
	for _, take := range []bool{true, false} {
		release := make(chan struct{})
		var mu sync.Mutex
		var order []string
		note := func(s string) {
			mu.Lock()
			order = append(order, s)
			mu.Unlock()
		}
		slow := Func{StepName: "consul-ready", Fn: func(ctx context.Context) error {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
				return errors.New("never released")
			}
			note("consul-ready")
			return nil
		}}
		compose := Func{StepName: "compose-up", Fn: func(context.Context) error {
			note("compose-up")
			return nil
		}}
		plan := Plan{
			{Step: Func{StepName: "render", Fn: func(context.Context) error { return nil }}, Kind: EveryBoot},
			{Step: slow, Kind: EveryBoot, After: []string{"render"}},
			{Step: compose, Kind: EveryBoot, After: []string{"render", "consul-ready"},
				Shortcut: &Shortcut{Skip: []string{"consul-ready"}, Take: func() bool { return take }}},
		}
		ev := newEvents()
		done := make(chan error, 1)
		go func() { done <- (&Runner{Plan: plan, Events: ev}).Run(context.Background()) }()
		if take {
			// compose-up finishes while consul-ready still waits.
			waitFor(t, func() bool {
				ev.mu.Lock()
				defer ev.mu.Unlock()
				return ev.finished["compose-up"] == OK
			})
		} else {
			time.Sleep(50 * time.Millisecond)
			ev.mu.Lock()
			_, started := ev.finished["compose-up"]
			ev.mu.Unlock()
			if started {
				t.Fatal("compose-up ran before consul-ready although the shortcut was not taken")
			}
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want := []string{"consul-ready", "compose-up"}
		if take {
			want = []string{"compose-up", "consul-ready"}
		}
		if len(order) != 2 || order[0] != want[0] || order[1] != want[1] {
			t.Errorf("take=%v: order %v, want %v", take, order, want)
		}
	}
}

// TestRebootPlanDoesNotWaitForConsul: in the boot plan, compose-up needs
// pull-images and render, and consul-ready only on a first boot. On a
// reboot (the last completed boot was for this droplet and user_data, and
// its env files are here) the runner starts compose-up while consul-ready
// is still waiting; any difference takes the first-boot path.
func TestRebootPlanDoesNotWaitForConsul(t *testing.T) {
	in := renderInput(t, "api")
	files, err := render.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	prev := &Completed{DropletID: in.Meta.DropletID, UserDataSHA256: "abc"}
	for _, tc := range []struct {
		name   string
		prev   *Completed
		sha    string
		noEnv  bool
		reboot bool
	}{
		{name: "reboot", prev: prev, sha: "abc", reboot: true},
		{name: "first boot", sha: "abc"},
		{name: "other droplet (made from a snapshot)", prev: &Completed{DropletID: "99", UserDataSHA256: "abc"}, sha: "abc"},
		{name: "other user_data", prev: prev, sha: "def"},
		{name: "env file missing", prev: prev, sha: "abc", noEnv: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fsutil.Root{Dir: t.TempDir()}
			if _, err := root.WriteFile(render.ComposeFile("api"), []byte("services: {}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if !tc.noEnv {
				for _, p := range EnvFiles(files, "api") {
					if _, err := root.WriteFile(p, []byte("A=1\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			facts := &Facts{Meta: in.Meta, User: in.User, Files: files, UserDataSHA256: tc.sha}
			plan := NewPlan(Deps{Facts: facts, Root: root, Previous: tc.prev})
			// Keep the plan's shape and compose-up's shortcut; stand in
			// for every step. consul-ready waits until released.
			release := make(chan struct{})
			var composeAt, consulAt time.Time
			var mu sync.Mutex
			for i, n := range plan {
				name := n.Step.Name()
				plan[i].Step = Func{StepName: name, Fn: func(ctx context.Context) error {
					if name == StepConsulReady {
						select {
						case <-release:
						case <-time.After(5 * time.Second):
							return errors.New("never released")
						}
					}
					mu.Lock()
					defer mu.Unlock()
					switch name {
					case StepComposeUp:
						composeAt = time.Now()
					case StepConsulReady:
						consulAt = time.Now()
					}
					return nil
				}}
				if name == StepComposeUp {
					if n.Shortcut == nil || !slices.Equal(n.Shortcut.Skip, []string{StepConsulReady, StepConsulACL}) {
						t.Fatalf("compose-up's shortcut = %+v, want one that skips consul-ready and consul-acl", n.Shortcut)
					}
					for _, need := range []string{StepPullImages, StepRender, StepConsulReady} {
						if !slices.Contains(n.After, need) {
							t.Errorf("compose-up needs %v, want %s among them", n.After, need)
						}
					}
				}
			}
			done := make(chan error, 1)
			go func() { done <- (&Runner{Plan: plan}).Run(context.Background()) }()
			time.Sleep(100 * time.Millisecond)
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := composeAt.Before(consulAt); got != tc.reboot {
				t.Errorf("compose-up before consul-ready: %v, want %v", got, tc.reboot)
			}
		})
	}
}

// TestComposeUpFromLastEnvFiles: on a reboot compose-up does not wait for
// the env files (no Consul, no KV) and says where the containers started
// from.
func TestComposeUpFromLastEnvFiles(t *testing.T) {
	in := renderInput(t, "api")
	files, err := render.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	root := fsutil.Root{Dir: t.TempDir()}
	for _, p := range append(EnvFiles(files, "api"), render.ComposeFile("api")) {
		if _, err := root.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A docker CLI that records its arguments and succeeds.
	dir := t.TempDir()
	cli := filepath.Join(dir, "docker")
	if err := os.WriteFile(cli, []byte("#!/bin/sh\necho \"$@\" > "+filepath.Join(dir, "args")+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(root, State{})
	rec.Planned(Plan{{Step: Func{StepName: StepComposeUp}, Kind: EveryBoot}})
	facts := &Facts{Meta: in.Meta, User: in.User, Files: files, UserDataSHA256: "abc"}
	s := &ComposeUp{Facts: facts, Root: root, Docker: cli, Timeout: time.Minute, Rec: rec,
		Previous: &Completed{DropletID: in.Meta.DropletID, UserDataSHA256: "abc"},
		KVKeys: func(context.Context, string) ([]string, error) {
			t.Error("Consul KV asked on a reboot")
			return nil, nil
		}}
	if !s.Reboot() {
		t.Fatal("Reboot() = false with the last boot's env files here")
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "args")); err != nil {
		t.Fatalf("docker compose was not run: %v", err)
	}
	snap := rec.Snapshot()
	if st, _ := snap.Step(StepComposeUp); st.Detail != FromLastEnvDetail {
		t.Errorf("detail = %q", st.Detail)
	}
}

// TestCompletedFile: a completed boot is recorded 0600 for its droplet and
// user_data; a missing or broken record reads as none.
func TestCompletedFile(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	if ReadCompleted(root) != nil {
		t.Fatal("a record without a file")
	}
	if err := WriteCompleted(root, &Facts{}, time.Now()); err == nil {
		t.Error("a completed boot recorded without droplet and user_data")
	}
	f := &Facts{UserDataSHA256: "abc"}
	f.Meta.DropletID = "42"
	if err := WriteCompleted(root, f, time.Unix(100, 0)); err != nil {
		t.Fatal(err)
	}
	c := ReadCompleted(root)
	if c == nil || c.DropletID != "42" || c.UserDataSHA256 != "abc" {
		t.Fatalf("read back %+v", c)
	}
	if fi, err := os.Stat(root.Path(CompletedFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
	if _, err := root.WriteFile(CompletedFile, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ReadCompleted(root) != nil {
		t.Error("a broken record read as a completed boot")
	}
}
