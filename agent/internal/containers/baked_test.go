package containers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
)

const digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func TestParseBaked(t *testing.T) {
	good := `{"schemaVersion":1,"role":"api","version":"v1","registry":"10.250.0.1:8766/codelab","images":[{"ref":"10.250.0.1:8766/codelab/api:v1","digest":"` + digestA + `"}]}`
	b, err := ParseBaked([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := b.Digest("10.250.0.1:8766/codelab/api:v1"); !ok || d != digestA {
		t.Errorf("Digest = %s %v", d, ok)
	}
	if _, ok := b.Digest("10.250.0.1:8766/codelab/api:v2"); ok {
		t.Error("a ref that is not baked has a digest")
	}
	for name, tc := range map[string]struct{ in, field string }{
		"not json":       {`{"schemaVersion":1,`, "json"},
		"newer schema":   {strings.Replace(good, `"schemaVersion":1`, `"schemaVersion":2`, 1), "schemaVersion"},
		"no schema":      {strings.Replace(good, `"schemaVersion":1,`, ``, 1), "schemaVersion"},
		"no version":     {strings.Replace(good, `"version":"v1",`, ``, 1), "version"},
		"no images":      {`{"schemaVersion":1,"role":"api","version":"v1","registry":"r","images":[]}`, "images"},
		"bad digest":     {strings.Replace(good, digestA, "sha256:abc", 1), "images[0].digest"},
		"digest not hex": {strings.Replace(good, digestA, "sha256:"+strings.Repeat("g", 64), 1), "images[0].digest"},
		"no ref":         {strings.Replace(good, `"ref":"10.250.0.1:8766/codelab/api:v1",`, ``, 1), "images[0].ref"},
	} {
		_, err := ParseBaked([]byte(tc.in))
		var be *BakedError
		if !errors.As(err, &be) || be.Field != tc.field {
			t.Errorf("%s: err = %v, want a BakedError on %s", name, err, tc.field)
		}
	}
}

// TestUseBakedContactsNoRegistry: with every image here at its baked
// digest, UseBaked reports them baked and never calls the registry (the
// fake's dist and pull are nil: a call panics); otherwise it names the
// image that is not.
func TestUseBakedContactsNoRegistry(t *testing.T) {
	refs := []string{"reg.example:5000/codelab/api:v1", "reg.example:5000/codelab/worker:v1"}
	baked := Baked{SchemaVersion: 1, Role: "api", Version: "v1", Registry: "reg.example:5000/codelab",
		Images: []BakedImage{{Ref: refs[0], Digest: digestA}, {Ref: refs[1], Digest: digestB}}}
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
