package packer_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/tools/aptrepo"
	"github.com/codelab-app/infra/tools/testenv"
)

// Stand-ins under the names the production script installs: no dependencies, one file
// each, so apt can install them in a container without network.
func standins(t *testing.T, dir, engine string) []string {
	t.Helper()
	var debs []string
	for _, p := range []aptrepo.Package{
		{Name: "docker-ce", Version: engine, Files: []aptrepo.File{{Path: "/lib/systemd/system/docker.service",
			Data: []byte("[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")}}},
		{Name: "docker-ce-cli", Version: engine},
		{Name: "containerd.io", Version: "1.6.26-1"},
		{Name: "docker-compose-plugin", Version: "2.24.0-1~debian.12~bookworm",
			Files: []aptrepo.File{{Path: "/usr/libexec/docker/cli-plugins/docker-compose", Data: []byte("#!/bin/sh\necho compose\n"), Mode: 0o755}}},
	} {
		deb, err := aptrepo.BuildDeb(context.Background(), p, dir)
		if err != nil {
			t.Fatal(err)
		}
		debs = append(debs, deb)
	}
	return debs
}

// testRepo builds a repository signed with signer, readable by apt's sandbox user.
func testRepo(t *testing.T, signer *aptrepo.Key, engine string) string {
	t.Helper()
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := aptrepo.Build(context.Background(), repo, "bookworm", "stable", standins(t, filepath.Join(dir, "debs"), engine), signer); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return repo
}

func requireAptTools(t *testing.T) {
	t.Helper()
	testenv.Integration(t, "gpg", "dpkg-deb", "apt-ftparchive")
}

// installDocker runs install-docker.sh then install-base.sh in a Debian 12 container
// without network, with the repository as a file: URL and the given pins.
func installDocker(t *testing.T, repo, fingerprint, engineVersion string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	payload := testPayload(t, allUnits...)
	cmd := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none",
		"-v", payload+":/mnt/payload:ro", "-v", scriptsDir(t)+":/scripts:ro", "-v", repo+":/repo:ro",
		"-e", "CODELAB_SKIP_APT=1", "-e", "CODELAB_LOCAL_ARTIFACTS=1", "-e", "CODELAB_IMAGE=services-base",
		"-e", "DOCKER_APT_URL=file:///repo", "-e", "DOCKER_APT_KEY_FINGERPRINT="+fingerprint,
		"-e", "DOCKER_CE_VERSION="+engineVersion, "-e", "CONTAINERD_VERSION=latest",
		"-e", "DOCKER_COMPOSE_PLUGIN_VERSION=2.24.0-1~debian.12~bookworm",
		DebianImage, "bash", "-c", `cp -a /mnt/payload /tmp/codelab-payload
/scripts/install-docker.sh; echo "DOCKER rc=$?"
[ -f /etc/apt/sources.list.d/codelab-docker.list ] && echo "SOURCE ADDED"
dpkg-query -W docker-ce 2>/dev/null && echo "DOCKER-CE INSTALLED"
if [ -f /etc/apt/sources.list.d/codelab-docker.list ]; then /scripts/install-base.sh >/tmp/base.log 2>&1 || { echo "BASE FAILED"; cat /tmp/base.log; }; fi
cat /etc/codelab/image.json 2>/dev/null || true`)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// The apt path for real: a signed repository, the key checked against the pin, the
// pinned versions installed and recorded in the image manifest.
func TestInstallDockerFromSignedRepository(t *testing.T) {
	requireDocker(t)
	requireAptTools(t)
	ctx := context.Background()
	good, err := aptrepo.NewKey(ctx, testenv.ShortTempDir(t, "gpg"), "codelab test repo")
	if err != nil {
		t.Fatal(err)
	}
	const engine = "5:24.0.7-1~debian.12~bookworm"
	repo := testRepo(t, good, engine)

	t.Run("pinned key and versions install", func(t *testing.T) {
		out, err := installDocker(t, repo, good.Fingerprint, engine)
		if err != nil {
			t.Fatalf("container: %v\n%s", err, out)
		}
		for _, want := range []string{"DOCKER rc=0", "repository key fingerprint " + good.Fingerprint + " matches the pin",
			"installed docker-ce " + engine, "installed containerd.io 1.6.26-1",
			`"localArtifacts":true`, `"docker-ce":"` + engine + `"`, `"containerd.io":"1.6.26-1"`, `"docker-compose-plugin":"2.24.0-1~debian.12~bookworm"`} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("wrong key stops before anything is installed", func(t *testing.T) {
		other, err := aptrepo.NewKey(ctx, testenv.ShortTempDir(t, "gpg"), "someone else")
		if err != nil {
			t.Fatal(err)
		}
		out, err := installDocker(t, testRepo(t, other, engine), good.Fingerprint, engine)
		if err != nil {
			t.Fatalf("container: %v\n%s", err, out)
		}
		want := "signed by key " + other.Fingerprint + ", not the pinned " + good.Fingerprint
		if !strings.Contains(out, "DOCKER rc=1") || !strings.Contains(out, want) {
			t.Fatalf("want a failure naming both fingerprints (%q):\n%s", want, out)
		}
		if strings.Contains(out, "SOURCE ADDED") || strings.Contains(out, "DOCKER-CE INSTALLED") {
			t.Fatalf("the repository was used although its key did not match:\n%s", out)
		}
	})

	t.Run("pinned version missing from the repository", func(t *testing.T) {
		out, err := installDocker(t, repo, good.Fingerprint, "5:25.0.0-1~debian.12~bookworm")
		if err != nil {
			t.Fatalf("container: %v\n%s", err, out)
		}
		want := "package docker-ce version 5:25.0.0-1~debian.12~bookworm (pinned) is not in the Docker apt repository"
		if !strings.Contains(out, "DOCKER rc=1") || !strings.Contains(out, want) || strings.Contains(out, "DOCKER-CE INSTALLED") {
			t.Fatalf("want %q:\n%s", want, out)
		}
	})
}
