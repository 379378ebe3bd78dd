package cluster

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/codelab-app/infra/e2e/internal/localdo"
	"github.com/codelab-app/infra/imager/versions"
	"github.com/codelab-app/infra/internal/clustersec"
	"github.com/codelab-app/infra/tools/aptrepo"
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
	// With the cluster's CA: every line carries the certificate, only a
	// server's the key, and both parse.
	ca, err := clustersec.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c.ca = ca
	for _, spec := range Plan {
		line := c.UserData(spec, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=")
		if !strings.Contains(line, " ca="+clustersec.EncodeCert(ca.Cert)) || strings.Contains(line, " ca_key=") != (spec.Consul == "server") {
			t.Errorf("%s: line %s", spec.Name, line)
		}
		if len(line) > 2048 {
			t.Errorf("%s: line is %d bytes", spec.Name, len(line))
		}
	}
}

func TestPrepareArtifacts(t *testing.T) {
	testenv.Integration(t, "dpkg-deb", "gpg", "apt-ftparchive")
	ctx := context.Background()
	bin, out := t.TempDir(), t.TempDir()
	for _, b := range []string{"consul", "consul-template", "docker-compose"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte(b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Debian's docker.io, as apt-get download would fetch it (no download in this test).
	upstream := filepath.Join(out, "debs", "upstream")
	if _, err := aptrepo.BuildDeb(ctx, aptrepo.Package{Name: "docker.io", Version: "20.10.24+dfsg1-1+deb12u1+b6",
		Depends: "containerd (>= 1.4~)", Files: []aptrepo.File{{Path: "/usr/bin/dockerd", Data: []byte("dockerd"), Mode: 0o755}}}, upstream); err != nil {
		t.Fatal(err)
	}
	control := filepath.Join(upstream, "docker.io_20.10.24+dfsg1-1+deb12u1+b6_amd64.deb")
	fixConflicts(t, control)
	repo := filepath.Join("..", "..", "..")
	la, err := PrepareArtifacts(ctx, repo, bin, out, "http://10.250.0.1:8767")
	if err != nil {
		t.Fatal(err)
	}
	const engine = "docker-ce_5%3a24.0.7-1~debian.12~bookworm_amd64.deb"
	for _, f := range []string{"consul", "consul-template", OverrideFile, "apt/gpg", "apt/dists/bookworm/InRelease",
		"apt/pool/stable/" + engine, "apt/pool/stable/containerd.io_1.6.26-1_amd64.deb",
		"apt/pool/stable/docker-ce-cli_5%3a24.0.7-1~debian.12~bookworm_amd64.deb",
		"apt/pool/stable/docker-compose-plugin_2.24.0-1~debian.12~bookworm_amd64.deb"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	info, err := exec.Command("dpkg-deb", "-f", filepath.Join(la.AptDir, "pool", "stable", engine), "Package", "Version", "Depends", "Conflicts", "Description").Output()
	if err != nil || !strings.Contains(string(info), "Package: docker-ce\n") || strings.Contains(string(info), "Conflicts") ||
		!strings.Contains(string(info), "docker.io 20.10.24+dfsg1-1+deb12u1+b6 repackaged") || !strings.Contains(string(info), "containerd") {
		t.Fatalf("docker-ce stand-in control:\n%s %v", info, err)
	}
	ov, err := versions.LoadOverride(filepath.Join(out, OverrideFile))
	if err != nil {
		t.Fatal(err)
	}
	if ov.Get("docker_apt_url") != "http://10.250.0.1:8767" || ov.Get("docker_apt_key_fingerprint") != la.KeyFingerprint || len(la.KeyFingerprint) != 40 {
		t.Fatalf("override: %v %v", ov.Get("docker_apt_url"), ov.Get("docker_apt_key_fingerprint"))
	}
	// A warm run keeps the key, so the imager's fingerprint does not change.
	again, err := PrepareArtifacts(ctx, repo, bin, out, "http://10.250.0.1:8767")
	if err != nil || again.KeyFingerprint != la.KeyFingerprint {
		t.Fatalf("second run: key %s vs %s, %v", again.KeyFingerprint, la.KeyFingerprint, err)
	}
}

// fixConflicts gives the fake docker.io the Conflicts line Debian's has.
func fixConflicts(t *testing.T, deb string) {
	t.Helper()
	dir := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-R", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	f := filepath.Join(dir, "DEBIAN", "control")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, append(b, []byte("Conflicts: docker-ce, docker-ce-cli\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", dir, deb).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
