package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/render"
	"github.com/codelab-app/infra/agent/internal/retry"
)

// fakeDocker is a containers.API: local images by reference; every
// registry call is counted and fails (the registry is down).
type fakeDocker struct {
	local    map[string][]string // ref -> RepoDigests
	registry int
}

func (f *fakeDocker) Ping(context.Context) (types.Ping, error) { return types.Ping{}, nil }
func (f *fakeDocker) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if d, ok := f.local[ref]; ok {
		return image.InspectResponse{RepoDigests: d}, nil
	}
	return image.InspectResponse{}, errdefs.NotFound(errors.New("no such image"))
}
func (f *fakeDocker) ImagePull(context.Context, string, image.PullOptions) (io.ReadCloser, error) {
	f.registry++
	return nil, errors.New("dial tcp: connection refused")
}
func (f *fakeDocker) DistributionInspect(context.Context, string, string) (registry.DistributionInspect, error) {
	f.registry++
	return registry.DistributionInspect{}, errors.New("dial tcp: connection refused")
}
func (f *fakeDocker) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return nil, nil
}
func (f *fakeDocker) ContainerInspect(context.Context, string) (container.InspectResponse, error) {
	return container.InspectResponse{}, errdefs.NotFound(errors.New("no such container"))
}
func (f *fakeDocker) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}
func (f *fakeDocker) Close() error { return nil }

const bakedDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// TestPullImagesUsesBakedImages: the api role's image, baked for the
// user_data's registry= and version= and here at its digest, is used
// without contacting the registry (which is down); any mismatch pulls (and
// waits for the registry), saying why in the step's detail.
func TestPullImagesUsesBakedImages(t *testing.T) {
	in := renderInput(t, "api")
	in.User.Registry, in.User.Version = "10.250.0.1:8766/codelab", "v1"
	files, err := render.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	ref := "10.250.0.1:8766/codelab/api:v1"
	bakedJSON := fmt.Sprintf(`{
  "schemaVersion": 1,
  "role": "api",
  "version": "v1",
  "registry": "10.250.0.1:8766/codelab",
  "images": [{"ref": %q, "digest": %q}]
}
`, ref, bakedDigest)
	for _, tc := range []struct {
		name    string
		file    string // "" : no baked-images file
		version string
		local   string // the local image's digest; "": absent
		baked   bool
		why     string
	}{
		{name: "baked", file: bakedJSON, version: "v1", local: bakedDigest, baked: true},
		{name: "other version", file: bakedJSON, version: "v2", local: bakedDigest, why: "version=v2 differs from the baked v1"},
		{name: "newer schema", file: strings.Replace(bakedJSON, `"schemaVersion": 1`, `"schemaVersion": 2`, 1), version: "v1", local: bakedDigest,
			why: BakedImagesFile + " schemaVersion: 2; this agent reads 1 to 1"},
		{name: "does not parse", file: "{", version: "v1", local: bakedDigest, why: BakedImagesFile + " does not parse"},
		{name: "image gone", file: bakedJSON, version: "v1", why: "image " + ref + " is not present locally"},
		{name: "other digest", file: bakedJSON, version: "v1", local: "sha256:" + strings.Repeat("2", 64), why: "is not present locally at the baked digest " + bakedDigest},
		{name: "no file", version: "v1", local: bakedDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fsutil.Root{Dir: t.TempDir()}
			if tc.file != "" {
				if _, err := root.WriteFile(BakedImagesFile, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			facts := &Facts{Files: files, User: in.User}
			facts.User.Version = tc.version
			// The compose file names the image at user_data's version.
			api := &fakeDocker{local: map[string][]string{}}
			if tc.local != "" {
				api.local["10.250.0.1:8766/codelab/api:"+tc.version] = []string{"10.250.0.1:8766/codelab/api@" + tc.local}
			}
			if tc.version != "v1" {
				in2 := in
				in2.User.Version = tc.version
				if facts.Files, err = render.Render(in2); err != nil {
					t.Fatal(err)
				}
			}
			rec := NewRecorder(root, State{})
			rec.Planned(Plan{{Step: Func{StepName: StepPullImages}, Kind: EveryBoot}})
			rec.Started(StepPullImages, time.Now())
			s := &PullImages{Facts: facts, Root: root, Rec: rec,
				Puller: &containers.Puller{API: api, Retry: retry.Policy{Initial: time.Millisecond, Attempts: 1}},
				Wait:   retry.Policy{Initial: time.Millisecond, Attempts: 1}}
			err := s.Run(context.Background())
			st := rec.Snapshot()
			step, _ := st.Step(StepPullImages)
			if tc.baked {
				if err != nil || api.registry != 0 {
					t.Fatalf("err %v, %d registry calls; want baked, none", err, api.registry)
				}
				if len(st.Images) != 1 || st.Images[0].Result != containers.PullBaked || st.Images[0].Digest != bakedDigest {
					t.Errorf("images = %+v", st.Images)
				}
				if step.Detail != "1 images: 1 baked into this image, no registry contacted" {
					t.Errorf("detail = %q", step.Detail)
				}
				return
			}
			if api.registry == 0 {
				t.Errorf("the registry was not asked; want a pull (%s)", tc.why)
			}
			if tc.why == "" && strings.Contains(step.Detail, "baked") || tc.why != "" && !strings.Contains(step.Detail, "; not the baked images: ") || !strings.Contains(step.Detail, tc.why) {
				t.Errorf("detail = %q, want the reason %q", step.Detail, tc.why)
			}
		})
	}
}
