package testenv

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Image describes a FROM scratch test image made of codelab-testapp.
type Image struct {
	Ref string            // 127.0.0.1:PORT/name:tag
	Env map[string]string // baked-in ENV (PORT defaults to 3000)
	// Pad adds a layer of this many random bytes, so pulls move real data
	// and two images never share a digest.
	Pad int
}

// BuildImage builds img from codelab-testapp with a generated Dockerfile
// and returns its local image ID. Every image gets a distinct label, so its
// digest is its own.
func BuildImage(t testing.TB, img Image) string {
	t.Helper()
	app := TestApp(t)
	dir := t.TempDir()
	b, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	var df strings.Builder
	df.WriteString("FROM scratch\nCOPY app /app\n")
	if img.Pad > 0 {
		pad := make([]byte, img.Pad)
		_, _ = rand.Read(pad)
		if err := os.WriteFile(filepath.Join(dir, "pad"), pad, 0o644); err != nil {
			t.Fatal(err)
		}
		df.WriteString("COPY pad /pad\n")
	}
	env := map[string]string{"PORT": "3000"}
	for k, v := range img.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&df, "ENV %s=%q\n", k, env[k])
	}
	fmt.Fprintf(&df, "LABEL org.codelab.test.ref=%q\nEXPOSE %s\nHEALTHCHECK --interval=2s --timeout=2s --retries=3 CMD [\"/app\", \"healthcheck\"]\nENTRYPOINT [\"/app\"]\n", img.Ref, env["PORT"])
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The classic builder: it needs nothing but dockerd.
	cmd := []string{"build", "-q", "-t", img.Ref, dir}
	out, err := outputEnv([]string{"DOCKER_BUILDKIT=0"}, "docker", cmd...)
	if err != nil {
		t.Fatalf("docker build %s: %v\n%s", img.Ref, err, out)
	}
	lines := strings.Fields(out)
	return lines[len(lines)-1]
}

// PushImage builds img and pushes it to its registry; it returns the
// pushed manifest digest (sha256:...).
func PushImage(t testing.TB, img Image) string {
	t.Helper()
	BuildImage(t, img)
	Run(t, "docker", "push", "-q", img.Ref)
	out := Run(t, "docker", "image", "inspect", "-f", "{{range .RepoDigests}}{{println .}}{{end}}", img.Ref)
	repo := img.Ref
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	for _, l := range strings.Fields(out) {
		if strings.HasPrefix(l, repo+"@") {
			return strings.TrimPrefix(l, repo+"@")
		}
	}
	t.Fatalf("pushed %s but found no digest for it in %q", img.Ref, out)
	return ""
}

// RemoveImage removes a local image (ignoring "no such image").
func RemoveImage(t testing.TB, ref string) {
	t.Helper()
	_, _ = outputEnv(nil, "docker", "image", "rm", "-f", ref)
}
