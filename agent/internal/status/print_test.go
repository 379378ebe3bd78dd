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
