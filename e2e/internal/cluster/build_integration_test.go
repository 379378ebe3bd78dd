package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/codelab-app/infra/e2e/internal/localdo"
	"github.com/codelab-app/infra/tools/aptrepo"
	"github.com/codelab-app/infra/tools/testenv"
	"github.com/digitalocean/godo"
)

// The production provisioning path, failing as it must: `imager build` with Packer 1.9.4
// and the DigitalOcean plugin against the local DigitalOcean, the build droplet
// installing Docker from a signed repository served on the gateway. A repository signed
// by another key than the pinned one stops the build naming both fingerprints; a pinned
// version the repository lacks stops it naming the package. Either way no droplet and no
// snapshot are left.
func TestLocalBuildRefusesWrongKeyAndMissingVersion(t *testing.T) {
	testenv.Integration(t, "docker", "packer", "go", "dpkg-deb", "gpg", "apt-ftparchive", "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	repo, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	imager := filepath.Join(work, "imager")
	if b, err := exec.CommandContext(ctx, "go", "build", "-C", repo, "-o", imager, "./imager/cmd/imager").CombinedOutput(); err != nil {
		t.Fatalf("build imager: %v\n%s", err, b)
	}

	instance := fmt.Sprintf("bt%d", os.Getpid())
	state := t.TempDir()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dk := &droplets.Docker{Instance: instance, Log: log}
	t.Cleanup(func() {
		if _, err := localdo.Down(context.Background(), dk, state, log); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	r, err := localdo.Start(ctx, localdo.Options{Addr: "127.0.0.1:0", StateDir: state, Instance: instance, Docker: dk, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// Local artifacts: stand-in binaries (the build stops before they matter) and the
	// signed repository, served on the gateway.
	// Short paths: gpg-agent's socket lives in the key's folder (108 bytes at most).
	cacheBin, dir := t.TempDir(), testenv.ShortTempDir(t, "la")
	for _, b := range []string{"consul", "consul-template", "docker-compose"} {
		if err := os.WriteFile(filepath.Join(cacheBin, b), []byte("#!/bin/sh\necho "+b+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := aptrepo.BuildDeb(ctx, aptrepo.Package{Name: "docker.io", Version: "20.10.24+dfsg1-1+deb12u1+b6"}, filepath.Join(dir, "debs", "upstream")); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(r.Info.Networks.Public.Gateway.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	la, err := PrepareArtifacts(ctx, repo, cacheBin, dir, "http://"+l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	ServeApt(sctx, l, la.AptDir)
	other, err := aptrepo.NewKey(ctx, testenv.ShortTempDir(t, "la"), "not the pinned key")
	if err != nil {
		t.Fatal(err)
	}
	do := godo.NewFromToken("local")
	do.BaseURL, _ = do.BaseURL.Parse(r.APIURL)

	build := func(t *testing.T, override string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, OverrideFile), []byte(override), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, imager, "build", "app", "--repo", repo, "--api-url", r.APIURL,
			"--local-artifacts", dir, "--regions", "nyc3", "--cache-dir", t.TempDir())
		cmd.Env = append(os.Environ(), "DIGITALOCEAN_API_TOKEN=local")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		t.Logf("imager build app failed as expected in %s", time.Since(start).Round(time.Second))
		if err == nil {
			t.Fatalf("the build succeeded:\n%s", out.String())
		}
		if ds, _, err := do.Droplets.List(ctx, nil); err != nil || len(ds) != 0 {
			t.Errorf("droplets left after the failed build: %+v %v", ds, err)
		}
		if imgs, _, err := do.Images.ListUser(ctx, nil); err != nil || len(imgs) != 0 {
			t.Errorf("snapshots after the failed build: %+v %v", imgs, err)
		}
		return out.String()
	}

	t.Run("wrong key", func(t *testing.T) {
		out := build(t, fmt.Sprintf("docker_apt_url = %q\ndocker_apt_key_fingerprint = %q\n", la.AptURL, other.Fingerprint))
		want := "signed by key " + la.KeyFingerprint + ", not the pinned " + other.Fingerprint
		if !strings.Contains(out, want) || strings.Contains(out, "install-base:") {
			t.Fatalf("want %q and nothing installed after it:\n%s", want, tail(out, 60))
		}
	})
	t.Run("pinned version missing", func(t *testing.T) {
		out := build(t, fmt.Sprintf("docker_apt_url = %q\ndocker_apt_key_fingerprint = %q\ndocker_ce_version = \"5:99.0.0-1~debian.12~bookworm\"\n",
			la.AptURL, la.KeyFingerprint))
		want := "package docker-ce version 5:99.0.0-1~debian.12~bookworm (pinned) is not in the Docker apt repository"
		if !strings.Contains(out, want) {
			t.Fatalf("want %q:\n%s", want, tail(out, 60))
		}
	})
}
