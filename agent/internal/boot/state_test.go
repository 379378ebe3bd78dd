package boot

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/render"
)

func TestInstanceStoreKeysOnDropletID(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	id := "100"
	s := &InstanceStore{Root: root, ID: func() string { return id }}
	if done, err := s.Done("registry-login"); err != nil || done {
		t.Fatalf("fresh droplet: %v %v", done, err)
	}
	if err := s.Mark("registry-login"); err != nil {
		t.Fatal(err)
	}
	if done, _ := s.Done("registry-login"); !done {
		t.Fatal("not done after Mark")
	}
	// A droplet made from a snapshot of this one: a new instance.
	id = "200"
	if done, _ := s.Done("registry-login"); done {
		t.Fatal("a new droplet_id inherited the old instance's steps")
	}
	if err := s.Mark("other"); err != nil {
		t.Fatal(err)
	}
	b, _ := root.ReadFile(InstanceFile)
	if !strings.Contains(string(b), `"200"`) || strings.Contains(string(b), "registry-login") {
		t.Fatalf("instance file = %s", b)
	}
	id = ""
	if _, err := s.Done("x"); err == nil {
		t.Fatal("Done without a droplet_id did not fail")
	}
}

func TestRecorderWritesStateAfterEveryStep(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	var notes []string
	rec := NewRecorder(root, State{Role: "api", StartedAt: time.Unix(100, 0)})
	rec.Notify = func(s string) { notes = append(notes, s) }
	rec.Now = func() time.Time { return time.Unix(105, 0) }
	plan := Plan{
		{Step: Func{StepName: "a", Fn: func(context.Context) error { return nil }}, Kind: EveryBoot},
		{Step: Func{StepName: "b", Fn: func(context.Context) error { return WithHint(errors.New("nope"), "journalctl -u b") }}, Kind: EveryBoot, After: []string{"a"}},
	}
	err := (&Runner{Plan: plan, Events: rec}).Run(context.Background())
	st := rec.Finish(err)
	disk, rerr := ReadState(root)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if disk.Result != BootFailed || st.Result != BootFailed || disk.DurationMS != 5000 {
		t.Fatalf("state = %+v", disk)
	}
	b, _ := disk.Step("b")
	if b.Result != Failed || b.Error != "nope" || b.Hint != "journalctl -u b" || b.StartedAt == nil {
		t.Fatalf("step b = %+v", b)
	}
	if len(notes) == 0 || !strings.HasPrefix(notes[len(notes)-1], "STATUS=failed") {
		t.Fatalf("sd_notify lines = %v", notes)
	}
}

func TestFactsHelpers(t *testing.T) {
	f := &Facts{
		Files: []render.File{
			{Path: "/etc/consul-template/templates/api.env.ctmpl", Consumer: render.ConsumerConsulTemplate},
			{Path: "/etc/consul-template/config.hcl", Consumer: render.ConsumerConsulTemplate},
		},
		Changed: []string{"/etc/consul.d/consul.hcl"},
	}
	if !f.ChangedUnder(render.ConsulDir) || f.ChangedUnder(render.TemplateDir) {
		t.Error("ChangedUnder")
	}
	if got := EnvFiles(f.Files, "api"); len(got) != 1 || got[0] != "/root/docker/api/api.env" {
		t.Errorf("EnvFiles = %v", got)
	}
}

func TestFinishRecordsTheBootsCPUTime(t *testing.T) {
	rec := NewRecorder(fsutil.Root{Dir: t.TempDir()}, State{Role: "api", StartedAt: time.Now()})
	// Burn CPU here and in a child the process waits for.
	deadline := time.Now().Add(60 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	if out, err := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done").CombinedOutput(); err != nil {
		t.Fatalf("child: %v %s", err, out)
	}
	st := rec.Finish(nil)
	if st.CPUMS <= 0 || st.ChildCPUMS <= 0 {
		t.Fatalf("cpuMs = %d, childCpuMs = %d, want both > 0", st.CPUMS, st.ChildCPUMS)
	}
}
