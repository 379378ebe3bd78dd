package localdo_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/codelab-app/infra/e2e/localdotest"
	"github.com/codelab-app/infra/tools/testenv"
)

// doctlBin is doctl v1.104.0 as `make deps` builds it (CODELAB_DOCTL overrides).
func doctlBin(t *testing.T) string {
	t.Helper()
	testenv.Integration(t)
	bin := os.Getenv("CODELAB_DOCTL")
	if bin == "" {
		cache := os.Getenv("CODELAB_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "codelab")
		}
		bin = filepath.Join(cache, "bin", "doctl")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("doctl is missing (make deps builds it from tools/doctl): %v", err)
	}
	return bin
}

// TestDoctlOperatorCommands runs the old README's operator commands with the real doctl
// against the local DigitalOcean's API (droplets in memory; the e2e suite runs them on
// real droplets).
func TestDoctlOperatorCommands(t *testing.T) {
	bin := doctlBin(t)
	srv := localdotest.New(t, localdotest.Options{Token: "doctl-token"})
	dir := t.TempDir()
	doctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--config", filepath.Join(dir, "config.yaml"), "--api-url", srv.URL}, args...)...)
		cmd.Env = append(os.Environ(), "DIGITALOCEAN_ACCESS_TOKEN=doctl-token", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("doctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	ud := filepath.Join(dir, "ud")
	if err := os.WriteFile(ud, []byte("#codelab v1 role=api env=prod consul=client\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := srv.AddSnapshot(localdotest.Snapshot{Name: "codelab-services-base-2026-11-01-0000"})

	if out := doctl("compute", "image", "list", "--public=false", "--format", "ID,Name", "--no-header"); !strings.Contains(out, "codelab-services-base-2026-11-01-0000") {
		t.Fatalf("image list: %s", out)
	}
	// The create that panicked in godo/util.WaitForActive without links.actions.
	out := doctl("compute", "droplet", "create", "api-2", "--image", strconv.Itoa(base), "--size", "s-1vcpu-2gb",
		"--region", "nyc3", "--user-data-file", ud, "--wait", "--format", "ID,Name,Status,PublicIPv4", "--no-header")
	f := strings.Fields(out)
	if len(f) != 4 || f[1] != "api-2" || f[2] != "active" || f[3] == "" {
		t.Fatalf("droplet create --wait: %q", out)
	}
	if out := doctl("compute", "droplet", "list", "--format", "Name", "--no-header"); out != "api-2" {
		t.Fatalf("droplet list: %q", out)
	}
	if out := doctl("compute", "image-action", "transfer", strconv.Itoa(base), "--region", "fra1", "--wait", "--format", "Status", "--no-header"); out != "completed" {
		t.Fatalf("image-action transfer: %q", out)
	}
	if im := srv.Image(base); !slices.Equal(im.Regions, []string{"nyc3", "fra1"}) {
		t.Fatalf("regions after transfer: %v", im.Regions)
	}
	doctl("compute", "droplet", "delete", "-f", "api-2")
	doctl("compute", "image", "delete", "-f", strconv.Itoa(base))
	if ds, ims := srv.Droplets(), srv.Snapshots(); len(ds) != 0 || len(ims) != 0 {
		t.Fatalf("left after delete: droplets %v, snapshots %v", ds, ims)
	}
}
