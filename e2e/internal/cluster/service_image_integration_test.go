package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/codelab-app/infra/e2e/internal/localdo"
	"github.com/codelab-app/infra/tools/testenv"
	"github.com/digitalocean/godo"
)

// `imager build api` on a local DigitalOcean of its own (not the demo's): with no
// services base it builds one, then codelab-api-base on it with the registry's api image
// at v1 baked in. A droplet created from the api snapshot has the image, under the name
// its compose file gives it and with the registry's digest, in its Docker before anything
// pulls (the snapshot carried the build droplet's /var/lib/docker), and
// /etc/codelab/baked-images.json says so. A version the registry lacks fails before any
// droplet is created.
func TestImagerBuildsAServiceImageOnTheLocalDigitalOcean(t *testing.T) {
	testenv.Integration(t, "docker", "packer", "go", "dpkg-deb", "gpg", "apt-ftparchive", "nsenter", "iptables")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	repo, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cacheBin := filepath.Join(os.Getenv("HOME"), ".cache", "codelab", "bin")
	if c := os.Getenv("CODELAB_CACHE"); c != "" {
		cacheBin = filepath.Join(c, "bin")
	}
	for _, b := range []string{"consul", "consul-template", "docker-compose"} {
		if _, err := os.Stat(filepath.Join(cacheBin, b)); err != nil {
			t.Fatalf("integration prerequisite: %v (make deps builds it)", err)
		}
	}
	work := t.TempDir()
	imager := filepath.Join(work, "imager")
	if b, err := exec.CommandContext(ctx, "go", "build", "-C", repo, "-o", imager, "./imager/cmd/imager").CombinedOutput(); err != nil {
		t.Fatalf("build imager: %v\n%s", err, b)
	}

	instance := fmt.Sprintf("si%d", os.Getpid())
	state := t.TempDir()
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dk := &droplets.Docker{Instance: instance, Log: log}
	t.Cleanup(func() {
		if _, err := localdo.Down(context.Background(), dk, state, log); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	r, err := localdo.Start(ctx, localdo.Options{Addr: "127.0.0.1:0", StateDir: state, Instance: instance, Docker: dk, Log: log, Registry: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// The api image, FROM scratch, pushed where the host pushes.
	app := filepath.Join(work, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "Dockerfile"), []byte("FROM scratch\nCOPY marker /marker\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "marker"), []byte(instance), 0o644); err != nil {
		t.Fatal(err)
	}
	pushed := r.RegistryPush + "/api:v1"
	for _, args := range [][]string{{"build", "-q", "-t", pushed, app}, {"push", "-q", pushed}} {
		cmd := exec.CommandContext(ctx, "docker", args...)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker %s: %v\n%s", args[0], err, b)
		}
	}
	t.Cleanup(func() { _ = exec.Command("docker", "image", "rm", "-f", pushed).Run() })
	rd, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", `{{join .RepoDigests "\n"}}`, pushed).Output()
	if err != nil {
		t.Fatal(err)
	}
	digest := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(string(rd))
	if digest == "" {
		t.Fatalf("no digest for %s: %q", pushed, rd)
	}

	addr, err := aptHostPort(r.Info.Networks.Public.Gateway.String(), r.RegistryPull)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	la, err := PrepareArtifacts(ctx, repo, cacheBin, testenv.ShortTempDir(t, "si"), "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	ServeApt(sctx, l, la.AptDir)
	do := godo.NewFromToken("local")
	do.BaseURL, _ = do.BaseURL.Parse(r.APIURL)

	build := func(version string) (string, error) {
		cmd := exec.CommandContext(ctx, imager, "build", "api", "--repo", repo, "--api-url", r.APIURL, "--local-artifacts", la.Dir,
			"--regions", "nyc3", "--registry", r.RegistryPull, "--version", version)
		cmd.Env = append(os.Environ(), "DIGITALOCEAN_API_TOKEN=local")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	out, err := build("v2")
	if err == nil || !strings.Contains(out, "image "+r.RegistryPull+"/api tag v2") {
		t.Fatalf("a version the registry lacks: %v\n%s", err, out)
	}
	if ds, _, err := do.Droplets.List(ctx, nil); err != nil || len(ds) != 0 {
		t.Fatalf("droplets after a version the registry lacks: %+v %v", ds, err)
	}

	start := time.Now()
	out, err = build("v1")
	if err != nil {
		t.Fatalf("imager build api: %v\n%s", err, tail(out, 80))
	}
	t.Logf("imager build api (services base first) took %s", time.Since(start).Round(time.Second))
	for _, want := range []string{"services-base: no snapshot has fingerprint", "services-base: built codelab-services-base-", "api-base: built codelab-api-base-"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, tail(out, 80))
		}
	}
	imgs, _, err := do.Images.ListUser(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var api godo.Image
	for _, im := range imgs {
		t.Logf("snapshot %s: %.2f GB", im.Name, im.SizeGigaBytes)
		if strings.HasPrefix(im.Name, "codelab-api-base-") {
			api = im
		}
	}
	if api.ID == 0 {
		t.Fatalf("no api-base snapshot: %+v", imgs)
	}

	created := time.Now()
	d, _, err := do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "api-1", Region: "nyc3", Size: "s-1vcpu-2gb", Image: godo.DropletCreateImage{ID: api.ID}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("droplet from the api snapshot created in %s", time.Since(created).Round(time.Millisecond))
	ref := r.RegistryPull + "/api:v1"
	repoName := r.RegistryPull + "/api"
	var got string
	for i := 0; ; i++ {
		got, err = dk.Exec(ctx, d.ID, "docker", "image", "inspect", "-f", `{{join .RepoDigests " "}}`, ref)
		if err == nil || i == 150 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || !strings.Contains(" "+got+" ", " "+repoName+"@"+digest+" ") {
		t.Fatalf("the droplet's Docker lacks %s@%s: %q %v", ref, digest, got, err)
	}
	raw, err := dk.Exec(ctx, d.ID, "cat", "/etc/codelab/baked-images.json")
	if err != nil {
		t.Fatal(err)
	}
	var baked struct {
		SchemaVersion int
		Role, Version string
		Registry      string
		Images        []struct{ Ref, Digest string }
	}
	if err := json.Unmarshal([]byte(raw), &baked); err != nil || baked.SchemaVersion != 1 || baked.Role != "api" || baked.Version != "v1" ||
		baked.Registry != r.RegistryPull || len(baked.Images) != 1 || baked.Images[0].Ref != ref || baked.Images[0].Digest != digest {
		t.Fatalf("baked-images.json: %v\n%s", err, raw)
	}
	if _, err := dk.Exec(ctx, d.ID, "test", "!", "-e", "/root/.docker/config.json"); err != nil {
		t.Error("a registry login is in the image")
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
