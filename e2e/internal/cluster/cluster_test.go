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
	// Debian trixie's docker.io and docker-cli, as apt-get download would fetch them (no
	// download in this test).
	upstream := filepath.Join(out, "debs", "upstream-"+EngineSuite)
	const up = "26.1.5+dfsg1-9+deb13u1+b1"
	for _, p := range []aptrepo.Package{
		{Name: "docker.io", Version: up, Depends: "containerd (>= 1.4~)", Files: []aptrepo.File{{Path: "/usr/bin/dockerd", Data: []byte("dockerd"), Mode: 0o755}}},
		{Name: "docker-cli", Version: up, Files: []aptrepo.File{{Path: "/usr/bin/docker", Data: []byte("docker"), Mode: 0o755}}},
	} {
		if _, err := aptrepo.BuildDeb(ctx, p, upstream); err != nil {
			t.Fatal(err)
		}
		fixConflicts(t, filepath.Join(upstream, p.Name+"_"+up+"_amd64.deb"))
	}
	repo := filepath.Join("..", "..", "..")
	la, err := PrepareArtifacts(ctx, repo, bin, out, "http://10.250.0.1:8767")
	if err != nil {
		t.Fatal(err)
	}
	v, err := versions.Load(filepath.Join(repo, versions.File))
	if err != nil {
		t.Fatal(err)
	}
	deb := func(name, version string) string {
		return "apt/pool/stable/" + aptrepo.Package{Name: name, Version: version}.FileName()
	}
	engine, cli := deb("docker-ce", v.Get("docker_ce_version")), deb("docker-ce-cli", v.Get("docker_ce_version"))
	for _, f := range []string{"consul", "consul-template", OverrideFile, "apt/gpg", "apt/dists/bookworm/InRelease",
		engine, cli, deb("containerd.io", v.Get("containerd_version")), deb("docker-compose-plugin", v.Get("docker_compose_plugin_version"))} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	for _, c := range []struct{ deb, pkg, from string }{{engine, "docker-ce", "docker.io"}, {cli, "docker-ce-cli", "docker-cli"}} {
		info, err := exec.Command("dpkg-deb", "-f", filepath.Join(out, c.deb), "Package", "Version", "Depends", "Conflicts", "Description").Output()
		if err != nil || !strings.Contains(string(info), "Package: "+c.pkg+"\n") || strings.Contains(string(info), "Conflicts") ||
			!strings.Contains(string(info), "trixie's "+c.from+" "+up+" repackaged") {
			t.Fatalf("%s stand-in control:\n%s %v", c.pkg, info, err)
		}
	}
	// The Engine stand-in carries the drop-in a droplet with a read-only /proc/sys needs.
	files, err := exec.Command("dpkg-deb", "-c", filepath.Join(out, engine)).Output()
	if err != nil || !strings.Contains(string(files), "./lib/systemd/system/docker.service.d/codelab-local-standin.conf") {
		t.Fatalf("docker-ce stand-in files:\n%s %v", files, err)
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
