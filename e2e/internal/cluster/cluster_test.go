package cluster

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/codelab-app/infra/e2e/internal/localdo"
	"github.com/codelab-app/infra/tools/testenv"
)

func TestFreeAddrsMatchesTheServersAllocation(t *testing.T) {
	n := droplets.Network{Subnet: netip.MustParsePrefix("10.251.3.0/24"), Gateway: netip.MustParseAddr("10.251.3.1")}
	got := freeAddrs(n, map[string]bool{"10.251.3.11": true}, 3)
	if strings.Join(got, ",") != "10.251.3.10,10.251.3.12,10.251.3.13" {
		t.Fatalf("got %v", got)
	}
}

func TestUserDataLine(t *testing.T) {
	c := &Cluster{Opts: Options{Env: "demo", Version: "v1"}, Info: localdo.Info{RegistryPull: "10.250.0.1:8766"}}
	srv := c.UserData(Plan[0], []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, "KEY")
	want := "#codelab v1 role=neo4j env=demo consul=server bootstrap=3 join=10.0.0.1,10.0.0.2,10.0.0.3 registry=10.250.0.1:8766 version=v1 gossip=KEY do_token=demo-read-only"
	if srv != want {
		t.Fatalf("server line\n got %s\nwant %s", srv, want)
	}
	if cl := c.UserData(Plan[3], []string{"10.0.0.1"}, "KEY"); strings.Contains(cl, "bootstrap") || !strings.Contains(cl, "consul=client") {
		t.Fatalf("client line %s", cl)
	}
}

func TestPrepareArtifacts(t *testing.T) {
	testenv.Integration(t, "dpkg-deb")
	repo, bin, out := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "packer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "packer", "versions.pkrvars.hcl"), []byte("# c\ndoctl_version = \"1.104.0\"\ndocker_ce_version = \"24.0.7-1~debian.12~bookworm\"\ncontainerd_version   = \"1.6.26-1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"consul", "consul-template", "docker-compose"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte(b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := PrepareArtifacts(context.Background(), repo, bin, out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"consul", "consul-template", "docker-compose", "doctl",
		"docker-ce_24.0.7-1~debian.12~bookworm_amd64.deb", "docker-ce-cli_24.0.7-1~debian.12~bookworm_amd64.deb", "containerd.io_1.6.26-1_amd64.deb"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	info, err := exec.Command("dpkg-deb", "-f", filepath.Join(out, "docker-ce_24.0.7-1~debian.12~bookworm_amd64.deb"), "Package", "Depends").Output()
	if err != nil || !strings.Contains(string(info), "codelab-local-docker-engine") || !strings.Contains(string(info), "docker.io") {
		t.Fatalf("metapackage control: %s %v", info, err)
	}
	if b, _ := exec.Command(filepath.Join(out, "doctl"), "version").Output(); !strings.Contains(string(b), "1.104.0-local-standin") {
		t.Fatalf("doctl stand-in: %s", b)
	}
	if err := exec.Command(filepath.Join(out, "doctl"), "compute", "droplet", "list").Run(); err == nil {
		t.Fatal("the doctl stand-in must refuse real commands")
	}
}
