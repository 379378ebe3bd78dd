package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/codelab-app/infra/agent/internal/retry"
)

// fakeAPI is an API made of function fields; a nil field panics, so a call
// the test did not expect fails loudly.
type fakeAPI struct {
	inspect func(ref string) (image.InspectResponse, error)
	pull    func(ref string, opts image.PullOptions) (io.ReadCloser, error)
	dist    func(ref, auth string) (registry.DistributionInspect, error)
}

func (f *fakeAPI) Ping(context.Context) (types.Ping, error) { panic("fake: Ping") }
func (f *fakeAPI) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	return f.inspect(ref)
}
func (f *fakeAPI) ImagePull(_ context.Context, ref string, o image.PullOptions) (io.ReadCloser, error) {
	return f.pull(ref, o)
}
func (f *fakeAPI) DistributionInspect(_ context.Context, ref, auth string) (registry.DistributionInspect, error) {
	return f.dist(ref, auth)
}
func (f *fakeAPI) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	panic("fake: ContainerList")
}
func (f *fakeAPI) ContainerInspect(context.Context, string) (container.InspectResponse, error) {
	panic("fake: ContainerInspect")
}
func (f *fakeAPI) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	panic("fake: ContainerLogs")
}
func (f *fakeAPI) Close() error { return nil }

var noSleep = retry.Policy{Initial: time.Millisecond, Sleep: func(context.Context, time.Duration) error { return nil }}

func stream(lines ...string) io.ReadCloser {
	return io.NopCloser(strings.NewReader(strings.Join(lines, "\n")))
}

func TestPullAllSkipsPresentDigestAndPullsTheRest(t *testing.T) {
	var pmu sync.Mutex
	pulled := map[string]bool{}
	var attempts atomic.Int32
	api := &fakeAPI{
		inspect: func(ref string) (image.InspectResponse, error) {
			switch {
			case ref == "reg.example:5000/app/a:1":
				return image.InspectResponse{RepoDigests: []string{"reg.example:5000/app/a@sha256:aaa"}}, nil
			case isPulled(&pmu, pulled, ref):
				return image.InspectResponse{RepoDigests: []string{Repository(ref) + "@sha256:bbb"}}, nil
			}
			return image.InspectResponse{}, errdefs.NotFound(errors.New("no such image"))
		},
		dist: func(ref, auth string) (registry.DistributionInspect, error) {
			if auth == "" {
				t.Errorf("no auth for %s", ref)
			}
			return registry.DistributionInspect{Descriptor: ocispec.Descriptor{Digest: "sha256:aaa"}}, nil
		},
		pull: func(ref string, o image.PullOptions) (io.ReadCloser, error) {
			if o.RegistryAuth == "" {
				t.Errorf("pull of %s without credentials", ref)
			}
			if attempts.Add(1) == 1 {
				return nil, errors.New("connection reset")
			}
			pmu.Lock()
			pulled[ref] = true
			pmu.Unlock()
			return stream(
				`{"status":"Downloading","id":"l1","progressDetail":{"current":10,"total":100}}`,
				`{"status":"Downloading","id":"l2","progressDetail":{"current":5,"total":50}}`,
				`{"status":"Download complete","id":"l1"}`,
				`{"status":"Downloading","id":"l2","progressDetail":{"current":50,"total":50}}`,
			), nil
		},
	}
	var progress []Progress
	p := &Puller{API: api, Creds: Credentials{Host: "reg.example:5000", Token: "tok-123456"}, Retry: noSleep,
		OnProgress: func(pr Progress) { progress = append(progress, pr) }}
	out, err := p.PullAll(context.Background(), []string{"reg.example:5000/app/a:1", "reg.example:5000/app/b:1"})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Result != PullPresent || out[0].Digest != "sha256:aaa" {
		t.Errorf("a: %+v", out[0])
	}
	if out[1].Result != PullPulled || out[1].Digest != "sha256:bbb" || out[1].Current != 150 || out[1].Total != 150 {
		t.Errorf("b: %+v", out[1])
	}
	if attempts.Load() != 2 {
		t.Errorf("pull attempts = %d, want 2 (one retry)", attempts.Load())
	}
	if len(progress) < 3 {
		t.Errorf("progress reports = %d", len(progress))
	}
}

func TestPullAllFailures(t *testing.T) {
	var calls atomic.Int32
	api := &fakeAPI{
		inspect: func(string) (image.InspectResponse, error) {
			return image.InspectResponse{}, errdefs.NotFound(errors.New("no such image"))
		},
		pull: func(ref string, _ image.PullOptions) (io.ReadCloser, error) {
			calls.Add(1)
			if strings.Contains(ref, "missing") {
				return stream(`{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}`), nil
			}
			return nil, fmt.Errorf("dial tcp: connection refused")
		},
	}
	p := &Puller{API: api, Retry: retry.Policy{Initial: time.Millisecond, Attempts: 3, Sleep: noSleep.Sleep}}
	_, err := p.PullAll(context.Background(), []string{"r:1/missing:1", "r:1/down:1"})
	var pe *PullError
	if !errors.As(err, &pe) || len(pe.Failed) != 2 {
		t.Fatalf("err = %v", err)
	}
	// manifest unknown is not retried; connection refused is, 3 times.
	if calls.Load() != 4 {
		t.Errorf("pull calls = %d, want 1 + 3", calls.Load())
	}
	if !strings.Contains(err.Error(), "r:1/down:1: after 3 attempts") || pe.Hint() != "docker pull r:1/missing:1" {
		t.Errorf("err = %v hint %q", err, pe.Hint())
	}
}

func TestComposeImagesAndRefs(t *testing.T) {
	imgs, err := ComposeImages([]byte("services:\n  b: {image: r/x:2}\n  a: {image: r/x:1}\n  c: {image: r/x:1}\n"))
	if err != nil || strings.Join(imgs, ",") != "r/x:1,r/x:2" {
		t.Fatalf("%v %v", imgs, err)
	}
	if _, err := ComposeImages([]byte("services:\n  a: {build: .}\n")); err == nil {
		t.Error("service without image accepted")
	}
	for ref, host := range map[string]string{"registry.digitalocean.com/codelab/api:1": "registry.digitalocean.com", "127.0.0.1:5000/a:1": "127.0.0.1:5000", "library/nginx": "docker.io", "localhost/a": "localhost"} {
		if got := RegistryHost(ref); got != host {
			t.Errorf("RegistryHost(%s) = %s", ref, got)
		}
	}
	for ref, repo := range map[string]string{
		"h:5000/a/b:tag":                    "h:5000/a/b",
		"registry.digitalocean.com/c/api:1": "registry.digitalocean.com/c/api",
		"neo4j:5":                           "docker.io/library/neo4j",
		"library/neo4j":                     "docker.io/library/neo4j",
		"docker.io/library/neo4j:5":         "docker.io/library/neo4j",
		"index.docker.io/library/neo4j":     "docker.io/library/neo4j",
		"neo4j@" + digestA:                  "docker.io/library/neo4j",
		"bitnami/redis:7":                   "docker.io/bitnami/redis",
	} {
		if got := Repository(ref); got != repo {
			t.Errorf("Repository(%s) = %s, want %s", ref, got, repo)
		}
	}
	c := Credentials{Host: "registry.digitalocean.com", Token: "dop_v1_x"}
	if c.EncodedAuth("docker.io/library/x") != "" || c.EncodedAuth("registry.digitalocean.com/codelab/api:1") == "" {
		t.Error("EncodedAuth goes to the wrong registry")
	}
	b, _ := c.DockerConfig()
	if !strings.Contains(string(b), `"registry.digitalocean.com"`) || strings.Contains(string(b), "dop_v1_x") {
		t.Errorf("docker config = %s (the token must be base64 in auth)", b)
	}
}

func isPulled(mu *sync.Mutex, m map[string]bool, ref string) bool {
	mu.Lock()
	defer mu.Unlock()
	return m[ref]
}

const digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// TestDockerHubReferencesMatchTheirDigest: dockerd records Docker Hub
// images in short form ("neo4j@sha256:..."); a compose file that names them
// fully qualified must still see the local image as current and not pull.
func TestDockerHubReferencesMatchTheirDigest(t *testing.T) {
	for _, ref := range []string{"docker.io/library/neo4j:5", "neo4j:5", "index.docker.io/library/neo4j:5", "library/neo4j:5"} {
		api := &fakeAPI{
			inspect: func(string) (image.InspectResponse, error) {
				return image.InspectResponse{RepoDigests: []string{"neo4j@" + digestA}}, nil
			},
			dist: func(string, string) (registry.DistributionInspect, error) {
				return registry.DistributionInspect{Descriptor: ocispec.Descriptor{Digest: digestA}}, nil
			},
			pull: func(ref string, _ image.PullOptions) (io.ReadCloser, error) {
				t.Errorf("%s pulled although the local image has the registry's digest", ref)
				return stream(), nil
			},
		}
		got, err := (&Puller{API: api, Retry: noSleep}).PullAll(context.Background(), []string{ref})
		if err != nil || got[0].Result != PullPresent || got[0].Digest != digestA {
			t.Errorf("%s: %+v, %v; want present at %s", ref, got[0], err, digestA)
		}
	}
}
