package containers

import (
	"context"
	"errors"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"

	"github.com/codelab-app/infra/internal/baked"
)

const digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

// TestUseBakedContactsNoRegistry: with every image here at its baked
// digest, UseBaked reports them baked and never calls the registry (the
// fake's dist and pull are nil: a call panics); otherwise it names the
// image that is not.
func TestUseBakedContactsNoRegistry(t *testing.T) {
	refs := []string{"reg.example:5000/codelab/api:v1", "reg.example:5000/codelab/worker:v1"}
	baked := baked.Baked{SchemaVersion: 1, Role: "api", Version: "v1", Registry: "reg.example:5000/codelab",
		Images: []baked.Image{{Ref: refs[0], Digest: digestA}, {Ref: refs[1], Digest: digestB}}}
	local := map[string][]string{
		refs[0]: {"reg.example:5000/codelab/api@" + digestA},
		refs[1]: {"reg.example:5000/codelab/worker@" + digestB},
	}
	api := &fakeAPI{inspect: func(ref string) (image.InspectResponse, error) {
		if d, ok := local[ref]; ok {
			return image.InspectResponse{RepoDigests: d}, nil
		}
		return image.InspectResponse{}, errdefs.NotFound(errors.New("no such image"))
	}}
	var reported []Progress
	p := &Puller{API: api, OnProgress: func(pr Progress) { reported = append(reported, pr) }}
	out, err := p.UseBaked(context.Background(), refs, baked)
	if err != nil {
		t.Fatal(err)
	}
	for i, pr := range out {
		if pr.Result != PullBaked || pr.Ref != refs[i] || pr.Digest != baked.Images[i].Digest {
			t.Errorf("image %d: %+v", i, pr)
		}
	}
	if len(reported) != 2 {
		t.Errorf("progress reports = %d, want 2", len(reported))
	}

	for name, tc := range map[string]struct {
		change func()
		want   string
	}{
		"not listed": {func() { baked.Images = baked.Images[:1] }, "image " + refs[1] + " is not in the baked images"},
		"absent":     {func() { delete(local, refs[1]) }, "image " + refs[1] + " is not present locally"},
		"other digest": {func() { local[refs[1]] = []string{"reg.example:5000/codelab/worker@" + digestA} },
			"image " + refs[1] + " is not present locally at the baked digest " + digestB},
	} {
		saveImages, saveLocal := baked.Images, local[refs[1]]
		tc.change()
		_, err := p.UseBaked(context.Background(), refs, baked)
		var nb *NotBakedError
		if !errors.As(err, &nb) || err.Error() != tc.want {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		baked.Images, local[refs[1]] = saveImages, saveLocal
	}
}
