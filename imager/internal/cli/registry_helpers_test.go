package cli_test

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// appRegistry is an in-process registry on loopback standing in for the roles' images:
// its registry path (host:port/codelab) and push, which stores a new random image as
// role:tag and returns its digest.
type appRegistry struct {
	Path string
}

func newAppRegistry(t *testing.T) *appRegistry {
	t.Helper()
	srv := httptest.NewServer(ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &appRegistry{Path: strings.TrimPrefix(srv.URL, "http://") + "/codelab"}
}

func (r *appRegistry) push(t *testing.T, role, tag string) string {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	return r.write(t, role, tag, img)
}

// pushFixed stores an image whose digest depends only on role (for golden files).
func (r *appRegistry) pushFixed(t *testing.T, role, tag string) string {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer([]byte("app "+role), types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	return r.write(t, role, tag, img)
}

func (r *appRegistry) write(t *testing.T, role, tag string, img v1.Image) string {
	t.Helper()
	ref, err := name.NewTag(r.Path + "/" + role + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// pushAll pushes every service role at tag and returns the digests by role.
func (r *appRegistry) pushAll(t *testing.T, tag string) map[string]string {
	out := map[string]string{}
	for _, role := range []string{"api", "web", "landing", "sites"} {
		out[role] = r.push(t, role, tag)
	}
	return out
}
