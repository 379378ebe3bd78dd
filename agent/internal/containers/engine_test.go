package containers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeEngineAPI is an EngineAPI made of function fields; a nil field
// panics, so a call the test did not expect fails loudly.
type fakeEngineAPI struct {
	list    func(container.ListOptions) ([]container.Summary, error)
	inspect func(id string) (container.InspectResponse, error)
	logs    func(id string) (io.ReadCloser, error)
	stop    func(id string, o container.StopOptions) error
	start   func(id string) error
	create  func(cfg *container.Config, host *container.HostConfig) (container.CreateResponse, error)
	wait    func(ctx context.Context, id string) (<-chan container.WaitResponse, <-chan error)
	remove  func(ctx context.Context, id string, o container.RemoveOptions) error
	pull    func(ref string) (io.ReadCloser, error)
	volume  func(name string) (volume.Volume, error)
}

func (f *fakeEngineAPI) ContainerList(_ context.Context, o container.ListOptions) ([]container.Summary, error) {
	return f.list(o)
}
func (f *fakeEngineAPI) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	return f.inspect(id)
}
func (f *fakeEngineAPI) ContainerLogs(_ context.Context, id string, _ container.LogsOptions) (io.ReadCloser, error) {
	return f.logs(id)
}
func (f *fakeEngineAPI) ContainerStop(_ context.Context, id string, o container.StopOptions) error {
	return f.stop(id, o)
}
func (f *fakeEngineAPI) ContainerStart(_ context.Context, id string, _ container.StartOptions) error {
	return f.start(id)
}
func (f *fakeEngineAPI) ContainerCreate(_ context.Context, cfg *container.Config, host *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, _ string) (container.CreateResponse, error) {
	return f.create(cfg, host)
}
func (f *fakeEngineAPI) ContainerWait(ctx context.Context, id string, _ container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	return f.wait(ctx, id)
}
func (f *fakeEngineAPI) ContainerRemove(ctx context.Context, id string, o container.RemoveOptions) error {
	return f.remove(ctx, id, o)
}
func (f *fakeEngineAPI) ImagePull(_ context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	return f.pull(ref)
}
func (f *fakeEngineAPI) VolumeInspect(_ context.Context, name string) (volume.Volume, error) {
	return f.volume(name)
}

// muxed is a container log stream with stdout and stderr frames.
func muxed(stdout, stderr string) io.ReadCloser {
	var b bytes.Buffer
	stdcopy.NewStdWriter(&b, stdcopy.Stdout).Write([]byte(stdout))
	stdcopy.NewStdWriter(&b, stdcopy.Stderr).Write([]byte(stderr))
	return io.NopCloser(&b)
}

func exited(code int64) func(context.Context, string) (<-chan container.WaitResponse, <-chan error) {
	return func(context.Context, string) (<-chan container.WaitResponse, <-chan error) {
		ch := make(chan container.WaitResponse, 1)
		ch <- container.WaitResponse{StatusCode: code}
		return ch, make(chan error)
	}
}

// oneOffAPI creates container "c1", which exits with code and prints out;
// every removal is recorded.
func oneOffAPI(code int64, out string, removed *[]string) *fakeEngineAPI {
	return &fakeEngineAPI{
		create: func(*container.Config, *container.HostConfig) (container.CreateResponse, error) {
			return container.CreateResponse{ID: "c1"}, nil
		},
		wait:  exited(code),
		start: func(string) error { return nil },
		logs:  func(string) (io.ReadCloser, error) { return muxed(out, ""), nil },
		remove: func(ctx context.Context, id string, o container.RemoveOptions) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !o.Force {
				return errors.New("removal without force")
			}
			*removed = append(*removed, id)
			return nil
		},
	}
}

func TestRunOnceRunsAndRemoves(t *testing.T) {
	var removed []string
	api := oneOffAPI(0, "", &removed)
	var gotCfg *container.Config
	var gotHost *container.HostConfig
	api.create = func(cfg *container.Config, host *container.HostConfig) (container.CreateResponse, error) {
		gotCfg, gotHost = cfg, host
		return container.CreateResponse{ID: "c1"}, nil
	}
	api.logs = func(string) (io.ReadCloser, error) { return muxed("dumped neo4j\n", "a warning\n"), nil }
	e := &Engine{API: api}
	out, err := e.RunOnce(context.Background(), OneOff{Image: "neo4j:5", User: "7474:7474", Network: "host",
		Binds: []string{"data:/data", "/var/backups/x:/backups"}, Cmd: []string{"neo4j-admin", "database", "dump", "neo4j"}})
	if err != nil {
		t.Fatal(err)
	}
	if out != "dumped neo4j\na warning" {
		t.Errorf("output = %q", out)
	}
	if gotCfg.Image != "neo4j:5" || gotCfg.User != "7474:7474" || !slices.Equal(gotCfg.Cmd, []string{"neo4j-admin", "database", "dump", "neo4j"}) || gotCfg.Labels[OneOffLabel] != "1" {
		t.Errorf("config = %+v", gotCfg)
	}
	if gotHost.NetworkMode != "host" || !slices.Equal(gotHost.Binds, []string{"data:/data", "/var/backups/x:/backups"}) {
		t.Errorf("host config = %+v", gotHost)
	}
	if !slices.Equal(removed, []string{"c1"}) {
		t.Errorf("removed = %v, want [c1]", removed)
	}
}

func TestRunOnceNonZeroExitSaysWhy(t *testing.T) {
	var removed []string
	e := &Engine{API: oneOffAPI(1, "line1\nline2\nline3\nline4\nline5\nNo space left on device", &removed)}
	_, err := e.RunOnce(context.Background(), OneOff{Image: "neo4j:5"})
	var xe *ExitError
	if !errors.As(err, &xe) || xe.Code != 1 || !strings.Contains(err.Error(), "No space left on device") || strings.Contains(err.Error(), "line1") {
		t.Fatalf("err = %v, want an ExitError with code 1 and the last lines", err)
	}
	if len(removed) != 1 {
		t.Errorf("removed = %v: a failed container must be removed too", removed)
	}
}

func TestRunOnceCancelledRemovesTheContainer(t *testing.T) {
	var removed []string
	api := oneOffAPI(0, "", &removed)
	ctx, cancel := context.WithCancel(context.Background())
	api.start = func(string) error { cancel(); return nil } // Ctrl-C while it runs
	api.wait = func(ctx context.Context, _ string) (<-chan container.WaitResponse, <-chan error) {
		errc := make(chan error, 1)
		go func() { <-ctx.Done(); errc <- ctx.Err() }()
		return make(chan container.WaitResponse), errc
	}
	_, err := (&Engine{API: api}).RunOnce(ctx, OneOff{Image: "neo4j:5"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if !slices.Equal(removed, []string{"c1"}) {
		t.Fatalf("removed = %v: a cancelled run must remove its container (with a live context)", removed)
	}
}

func TestRunOncePullsAMissingImage(t *testing.T) {
	var removed []string
	api := oneOffAPI(0, "", &removed)
	creates := 0
	pulled := ""
	api.create = func(*container.Config, *container.HostConfig) (container.CreateResponse, error) {
		creates++
		if pulled == "" {
			return container.CreateResponse{}, errdefs.NotFound(errors.New("No such image: neo4j:5"))
		}
		return container.CreateResponse{ID: "c1"}, nil
	}
	api.pull = func(ref string) (io.ReadCloser, error) {
		pulled = ref
		return io.NopCloser(strings.NewReader(`{"status":"Pulling from library/neo4j","id":"5"}` + "\n" + `{"status":"Digest: sha256:abc"}` + "\n")), nil
	}
	if _, err := (&Engine{API: api}).RunOnce(context.Background(), OneOff{Image: "neo4j:5"}); err != nil {
		t.Fatal(err)
	}
	if pulled != "neo4j:5" || creates != 2 {
		t.Fatalf("pulled %q, %d creates", pulled, creates)
	}

	api.pull = func(string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(`{"errorDetail":{"message":"pull access denied for neo4j"},"error":"pull access denied for neo4j"}` + "\n")), nil
	}
	pulled = ""
	api.create = func(*container.Config, *container.HostConfig) (container.CreateResponse, error) {
		return container.CreateResponse{}, errdefs.NotFound(errors.New("No such image: neo4j:5"))
	}
	if _, err := (&Engine{API: api}).RunOnce(context.Background(), OneOff{Image: "neo4j:5"}); err == nil || !strings.Contains(err.Error(), "pull neo4j:5: pull access denied") {
		t.Fatalf("failed pull: err = %v", err)
	}
}

func state(status string, health string, restarts int) container.InspectResponse {
	st := &container.State{Status: container.ContainerState(status)}
	if health != "" {
		st.Health = &container.Health{Status: container.HealthStatus(health)}
	}
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{State: st, RestartCount: restarts}}
}

func TestInspectAndStart(t *testing.T) {
	var mu sync.Mutex
	states := []container.InspectResponse{state("running", "starting", 0), state("running", "starting", 0), state("running", "healthy", 2)}
	api := &fakeEngineAPI{
		start: func(string) error { return nil },
		inspect: func(string) (container.InspectResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			s := states[0]
			if len(states) > 1 {
				states = states[1:]
			}
			return s, nil
		},
	}
	e := &Engine{API: api, StartPoll: noSleep}
	if err := e.Start(context.Background(), "db", time.Minute); err != nil {
		t.Fatal(err)
	}
	if st, err := e.Inspect(context.Background(), "db"); err != nil || st != (State{Status: "running", Health: "healthy", Restarts: 2}) {
		t.Fatalf("Inspect = %+v, %v", st, err)
	}

	api.inspect = func(string) (container.InspectResponse, error) { return state("exited", "", 0), nil }
	if err := e.Start(context.Background(), "db", time.Minute); err == nil || !strings.Contains(err.Error(), "is exited") {
		t.Fatalf("Start of a container that exits: err = %v", err)
	}
	if st, _ := e.Inspect(context.Background(), "db"); st.Health != "none" {
		t.Errorf("health without a healthcheck = %q, want none", st.Health)
	}
}

func TestFindFiltersByComposeLabels(t *testing.T) {
	api := &fakeEngineAPI{list: func(o container.ListOptions) ([]container.Summary, error) {
		if !o.All || !o.Filters.ExactMatch("label", ProjectLabel+"=neo4j") || !o.Filters.ExactMatch("label", ServiceLabel+"=db") {
			t.Errorf("list options = %+v", o)
		}
		return []container.Summary{{ID: "newest"}, {ID: "older"}}, nil
	}}
	if id, err := (&Engine{API: api}).Find(context.Background(), "neo4j", "db"); err != nil || id != "newest" {
		t.Fatalf("Find = %q, %v", id, err)
	}
}
