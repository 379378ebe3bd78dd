package registry_test

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/codelab-app/infra/imager/internal/registry"
)

// serve runs an in-process registry on loopback, behind wrap when given.
func serve(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// push writes a random image as ref and returns its digest.
func push(t *testing.T, ref string, opts ...remote.Option) string {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestResolve(t *testing.T) {
	host := serve(t, nil)
	want := push(t, host+"/codelab/api:v1")
	r := &registry.Resolver{}
	got, err := r.Resolve(t.Context(), host+"/codelab/api:v1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want || got.Ref != host+"/codelab/api:v1" {
		t.Fatalf("resolved %+v, want digest %s", got, want)
	}
	_, err = r.Resolve(t.Context(), host+"/codelab/api:v2")
	if !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), "image "+host+"/codelab/api tag v2") {
		t.Fatalf("missing tag: err = %v", err)
	}
	_, err = r.Resolve(t.Context(), host+"/codelab/nope:v1")
	if !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), "codelab/nope tag v1") {
		t.Fatalf("missing image: err = %v", err)
	}
	if _, err := r.Resolve(t.Context(), host+"/codelab/api"); err == nil {
		t.Fatal("a reference without a tag must be refused")
	}
}

func TestResolveWithToken(t *testing.T) {
	host := serve(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "s3cret" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	want := push(t, host+"/codelab/web:v1", remote.WithAuth(&authn.Basic{Username: "s3cret", Password: "s3cret"}))
	_, err := (&registry.Resolver{}).Resolve(t.Context(), host+"/codelab/web:v1")
	if !errors.Is(err, registry.ErrUnauthorized) || !strings.Contains(err.Error(), "set "+registry.TokenEnv) || !strings.Contains(err.Error(), "codelab/web tag v1") {
		t.Fatalf("anonymous: err = %v", err)
	}
	_, err = (&registry.Resolver{Token: "wrong"}).Resolve(t.Context(), host+"/codelab/web:v1")
	if !errors.Is(err, registry.ErrUnauthorized) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong token: err = %v", err)
	}
	got, err := (&registry.Resolver{Token: "s3cret"}).Resolve(t.Context(), host+"/codelab/web:v1")
	if err != nil || got.Digest != want {
		t.Fatalf("with token: %+v, %v", got, err)
	}
}

// The refs are the role's compose.yaml rendered as the agent renders it.
func TestRoleRefs(t *testing.T) {
	for role, want := range map[string]string{
		"api": "10.250.0.1:8766/codelab/api:v1", "web": "10.250.0.1:8766/codelab/web:v1",
		"landing": "10.250.0.1:8766/codelab/landing:v1", "sites": "10.250.0.1:8766/codelab/sites:v1",
	} {
		refs, err := registry.RoleRefs(role, "10.250.0.1:8766/codelab", "v1")
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != 1 || refs[0] != want {
			t.Errorf("%s: refs %v, want [%s]", role, refs, want)
		}
	}
	if _, err := registry.RoleRefs("db", "r/c", "v1"); err == nil {
		t.Fatal("an unknown role must fail")
	}
}

// The file's format is fixed (the agent reads it): golden file, -update regenerates.
func TestBakedJSONGolden(t *testing.T) {
	b := registry.Baked{SchemaVersion: registry.BakedSchemaVersion, Role: "api", Version: "v1", Registry: "10.250.0.1:8766/codelab",
		Images: []registry.Image{{Ref: "10.250.0.1:8766/codelab/api:v1", Digest: "sha256:" + strings.Repeat("ab", 32)}}}
	got, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "baked-images.json", got)
	var back map[string]any
	if err := json.Unmarshal(got, &back); err != nil || back["schemaVersion"] != float64(1) {
		t.Fatalf("round trip: %v %v", back, err)
	}
}

func TestDockerConfig(t *testing.T) {
	anon, err := registry.DockerConfig("10.250.0.1:8766/codelab", "")
	if err != nil || strings.Contains(string(anon), "auth\"") {
		t.Fatalf("anonymous config %s, %v", anon, err)
	}
	cfg, err := registry.DockerConfig("registry.digitalocean.com/codelab", "tok")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "docker-config.json", cfg)
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s differs:\n got %s\nwant %s", name, got, want)
	}
}
