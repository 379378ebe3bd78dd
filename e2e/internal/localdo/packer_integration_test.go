package localdo_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/codelab-app/infra/e2e/internal/localdo"
	"github.com/codelab-app/infra/tools/testenv"
	"github.com/digitalocean/godo"
)

// requireIntegration skips without CODELAB_INTEGRATION=1 and fails when a prerequisite
// is missing with it.
func requireIntegration(t *testing.T) {
	t.Helper()
	testenv.Integration(t, "docker", "packer", "nsenter", "iptables")
	if err := exec.Command("docker", "image", "inspect", localdo.DefaultBaseImages[0].Ref).Run(); err != nil {
		t.Fatalf("Docker image %s is missing (make deps builds it): %v", localdo.DefaultBaseImages[0].Ref, err)
	}
}

const tinyTemplate = `
packer {
  required_plugins {
    digitalocean = {
      version = "= 1.4.1"
      source  = "github.com/digitalocean/digitalocean"
    }
  }
}
variable "api_url" {
  type = string
}
source "digitalocean" "tiny" {
  api_url       = var.api_url
  api_token     = "local-token"
  image         = "debian-12-x64"
  region        = "nyc3"
  size          = "s-1vcpu-1gb"
  ssh_username  = "root"
  droplet_name  = "packer-tiny"
  snapshot_name = "codelab-tiny-2026-01-31-1200"
  tags          = ["codelab-imager"]
  user_data     = "#codelab v1 role=builder"
}
build {
  sources = ["source.digitalocean.tiny"]
  provisioner "shell" {
    inline = [
      "set -eu",
      "test \"$(curl -fsS http://169.254.169.254/metadata/v1/hostname)\" = packer-tiny",
      "test \"$(curl -fsS http://169.254.169.254/metadata/v1/user-data)\" = '#codelab v1 role=builder'",
      "systemctl is-system-running --wait || true",
      "echo built-by-packer > /etc/codelab-tiny",
      "mkdir -p /var/lib/docker/overlay2/l1/diff",
      "echo baked > /var/lib/docker/overlay2/l1/diff/data",
      "ln /var/lib/docker/overlay2/l1/diff/data /var/lib/docker/overlay2/l1/diff/link",
      "mknod /var/lib/docker/overlay2/l1/diff/gone c 0 0",
      "rm -f /etc/ssh/ssh_host_* /root/.ssh/authorized_keys",
    ]
  }
}
`

func TestPackerBuildsASnapshotAgainstTheLocalDigitalOcean(t *testing.T) {
	requireIntegration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	instance := fmt.Sprintf("it%d", os.Getpid())
	state := t.TempDir()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dk := &droplets.Docker{Instance: instance, Log: log}
	t.Cleanup(func() {
		removed, err := localdo.Down(context.Background(), dk, state, log)
		if err != nil {
			t.Errorf("down: %v", err)
		}
		t.Logf("down removed %v", removed)
		assertNothingLabelled(t, instance)
	})
	r, err := localdo.Start(ctx, localdo.Options{Addr: "127.0.0.1:0", StateDir: state, Instance: instance, Docker: dk, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tiny.pkr.hcl"), []byte(tinyTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "packer", "build", "-machine-readable", "-var", "api_url="+r.APIURL, "tiny.pkr.hcl")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "PACKER_CONFIG_DIR="+dir, "PACKER_CACHE_DIR="+filepath.Join(dir, "cache"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("packer build: %v\n%s", err, out.String())
	}
	t.Logf("packer build took %s", time.Since(start).Round(time.Millisecond))
	m := regexp.MustCompile(`artifact,0,id,nyc3:(\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no artifact id in packer output:\n%s", out.String())
	}
	imageID, _ := strconv.Atoi(m[1])

	do := godo.NewFromToken("local-token")
	do.BaseURL, _ = do.BaseURL.Parse(r.APIURL)
	imgs, _, err := do.Images.ListUser(ctx, nil)
	if err != nil || len(imgs) != 1 || imgs[0].ID != imageID || imgs[0].Name != "codelab-tiny-2026-01-31-1200" || imgs[0].Type != "snapshot" {
		t.Fatalf("snapshots after the build: %+v %v", imgs, err)
	}
	if ds, _, err := do.Droplets.List(ctx, nil); err != nil || len(ds) != 0 {
		t.Fatalf("Packer left droplets behind: %+v %v", ds, err)
	}
	if ks, _, err := do.Keys.List(ctx, nil); err != nil || len(ks) != 0 {
		t.Fatalf("Packer left SSH keys behind: %+v %v", ks, err)
	}

	// A droplet from the snapshot: the build's file is there, host keys are fresh, the
	// metadata service answers with this droplet's own data, also after a reboot.
	d, _, err := do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "api-1", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{ID: imageID}, UserData: "#codelab v1 role=api", Tags: []string{"codelab-api"}})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(args ...string) string {
		t.Helper()
		s, err := dk.Exec(ctx, d.ID, args...)
		if err != nil {
			t.Fatalf("in droplet %d: %v", d.ID, err)
		}
		return s
	}
	if got := exec("cat", "/etc/codelab-tiny"); got != "built-by-packer" {
		t.Fatalf("/etc/codelab-tiny = %q", got)
	}
	// The snapshot carries the droplet's Docker data (a volume, as on the build droplet):
	// content, hard links and overlay2's whiteout devices.
	if got := exec("sh", "-c", "cd /var/lib/docker/overlay2/l1/diff && cat data && stat -c '%h %F' data gone"); got != "baked\n2 regular file\n1 character special file" {
		t.Fatalf("Docker data in the droplet from the snapshot: %q", got)
	}
	if got := exec("sh", "-c", "ls /etc/ssh/ssh_host_*_key | wc -l"); got != "2" {
		t.Fatalf("host keys in the new droplet: %s", got)
	}
	checkMetadata := func() {
		t.Helper()
		if got := exec("curl", "-fsS", "http://169.254.169.254/metadata/v1/id"); got != strconv.Itoa(d.ID) {
			t.Fatalf("metadata id %q, want %d", got, d.ID)
		}
		if got := exec("curl", "-fsS", "http://169.254.169.254/metadata/v1/user-data"); got != "#codelab v1 role=api" {
			t.Fatalf("metadata user-data %q", got)
		}
		priv, _ := d.PrivateIPv4()
		if got := exec("curl", "-fsS", "http://169.254.169.254/metadata/v1/interfaces/private/0/ipv4/address"); got != priv {
			t.Fatalf("metadata private address %q, droplet has %q", got, priv)
		}
		if got := exec("ip", "-4", "-o", "addr", "show"); !strings.Contains(got, priv+"/24") {
			t.Fatalf("droplet interfaces lack %s:\n%s", priv, got)
		}
	}
	checkMetadata()
	a, _, err := do.DropletActions.Reboot(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "reboot", func() bool {
		got, _, err := do.DropletActions.Get(ctx, d.ID, a.ID)
		if err != nil || got.Status == "errored" {
			t.Fatalf("reboot action: %+v %v", got, err)
		}
		return got.Status == godo.ActionCompleted
	})
	checkMetadata()

	if _, err := do.Droplets.Delete(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if dk.Exists(ctx, d.ID) {
		t.Fatal("the droplet's container outlived its deletion")
	}
	if _, err := do.Images.Delete(ctx, imageID); err != nil {
		t.Fatal(err)
	}
	if _, err := dk.Image(ctx, dk.SnapshotRef(imageID)); err == nil {
		t.Fatal("the snapshot's Docker image outlived its deletion")
	}
	if out, err := osexec.Command("docker", "volume", "ls", "-q", "--filter", "label="+droplets.LabelImageID+"="+strconv.Itoa(imageID)).Output(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("the snapshot's Docker data outlived its deletion: %q %v", out, err)
	}
}

// waitFor polls cond every 200ms until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func assertNothingLabelled(t *testing.T, instance string) {
	t.Helper()
	filter := "label=" + droplets.LabelInstance + "=" + instance
	for _, args := range [][]string{
		{"ps", "-aq", "--filter", filter}, {"volume", "ls", "-q", "--filter", filter},
		{"network", "ls", "-q", "--filter", filter}, {"image", "ls", "-aq", "--filter", filter},
	} {
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("after down, docker %s: %s %v", strings.Join(args, " "), out, err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
