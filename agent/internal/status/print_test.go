package status

import (
	"bytes"
	"strings"
	"testing"

	"github.com/codelab-app/infra/agent/internal/boot"
)

func TestImageBytes(t *testing.T) {
	for _, tc := range []struct {
		i    boot.ImageState
		want string
	}{
		{boot.ImageState{Current: 123_000_000, Total: 300_000_000}, "123 MB / 300 MB (41%)"},
		{boot.ImageState{Current: 300_000_000, Total: 300_000_000}, "300 MB / 300 MB (100%)"},
		{boot.ImageState{Current: 5_200_000}, "5.2 MB"},
		{boot.ImageState{Result: "present"}, "-"},
		{boot.ImageState{Result: "baked"}, "-"},
	} {
		if got := imageBytes(tc.i); got != tc.want {
			t.Errorf("imageBytes(%d/%d) = %q, want %q", tc.i.Current, tc.i.Total, got, tc.want)
		}
	}
}

func TestPlainAndTableShowImageBytes(t *testing.T) {
	r := Report{Boot: &boot.State{Images: []boot.ImageState{{Ref: "r/api:1", Result: "pulled", Digest: "sha256:abc", Current: 123_000_000, Total: 300_000_000}}}}
	for _, f := range []Format{Plain, Table} {
		var b bytes.Buffer
		if err := Write(&b, r, f); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "r/api:1") || !strings.Contains(b.String(), "123 MB / 300 MB (41%)") {
			t.Errorf("format %d does not show the image's bytes:\n%s", f, b.String())
		}
	}
}

func TestPlainTableAndJSONShowBakedImages(t *testing.T) {
	r := Report{Boot: &boot.State{
		Steps:  []boot.StepState{{Name: boot.StepPullImages, Result: boot.OK, Detail: "1 images: 1 baked into this image, no registry contacted"}},
		Images: []boot.ImageState{{Ref: "r/api:v1", Result: "baked", Digest: "sha256:abc"}}}}
	for f, want := range map[Format][]string{
		Plain: {"image r/api:v1: baked sha256:abc -", "no registry contacted"},
		Table: {"r/api:v1  baked", "no registry contacted"},
		JSON:  {`"result": "baked"`, `"detail": "1 images: 1 baked into this image, no registry contacted"`},
	} {
		var b bytes.Buffer
		if err := Write(&b, r, f); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("format %d lacks %q:\n%s", f, w, b.String())
			}
		}
	}
}
