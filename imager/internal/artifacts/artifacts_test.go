package artifacts_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codelab-app/infra/tools/testenv"

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/versions"
)

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// fullVersions is a complete versions file with every version 1.0.0.
func fullVersions(t *testing.T, extra string) *versions.Versions {
	t.Helper()
	src := `consul_version = "1.0.0"
consul_sha256 = "` + strings.Repeat("ab", 32) + `"
consul_template_version = "1.0.0"
consul_template_sha256 = "` + strings.Repeat("cd", 32) + `"
doctl_version = "1.0.0"
docker_apt_url = "https://apt.example.invalid/debian"
docker_apt_key_fingerprint = "` + strings.Repeat("AB", 20) + `"
docker_ce_version = "5:1.0.0-1~debian.12~bookworm"
containerd_version = "latest"
docker_compose_plugin_version = "2.24.0-1~debian.12~bookworm"
snapshot_regions = ["nyc3"]
` + extra
	v, err := versions.Parse("v.pkrvars.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The committed versions file resolves: every artifact has a version and a way to be
// verified, none unverified.
func TestCommittedVersionsFile(t *testing.T) {
	v, err := versions.Load(filepath.Join("..", "..", "..", versions.File))
	if err != nil {
		t.Fatal(err)
	}
	arts, err := artifacts.Resolve(v, artifacts.Catalog, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arts {
		if a.Version == "" || a.Verified == "" {
			t.Errorf("%s: version %q, verified %q", a.Name, a.Version, a.Verified)
		}
		if err := artifacts.CheckModulePin(filepath.Join("..", "..", ".."), a); a.Source == artifacts.SourceGoModule && err != nil {
			t.Error(err)
		}
	}
	for k, want := range map[string]string{"consul_version": "1.17.1", "consul_template_version": "0.34.0", "doctl_version": "1.104.0",
		"docker_apt_key_fingerprint": "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"} {
		if v.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, v.Get(k), want)
		}
	}
}

func TestResolve(t *testing.T) {
	arts, err := artifacts.Resolve(fullVersions(t, ""), artifacts.Catalog, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != len(artifacts.Catalog) {
		t.Fatalf("got %d artifacts", len(arts))
	}
	by := map[string]artifacts.Artifact{}
	for _, a := range arts {
		by[a.Name] = a
	}
	if a := by["consul"]; a.URL != "https://releases.hashicorp.com/consul/1.0.0/consul_1.0.0_linux_amd64.zip" || a.Dest != "bin/consul" ||
		a.Source != artifacts.SourceVendor || a.SHA256 != strings.Repeat("ab", 32) || !strings.Contains(a.Verified, "consul_sha256") {
		t.Errorf("consul = %+v", a)
	}
	if a := by["doctl"]; a.Source != artifacts.SourceGoModule || a.Module != "github.com/digitalocean/doctl" || a.ToolDir() != "tools/doctl" || !strings.Contains(a.Verified, "go.sum") {
		t.Errorf("doctl = %+v", a)
	}
	for _, name := range []string{"docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"} {
		a := by[name]
		if a.Source != artifacts.SourceApt || a.Package != name || a.URL != "https://apt.example.invalid/debian" || a.KeyFingerprint != strings.Repeat("AB", 20) {
			t.Errorf("%s = %+v", name, a)
		}
	}
	if by["containerd.io"].Version != "latest" || by["docker-ce-cli"].Version != "5:1.0.0-1~debian.12~bookworm" {
		t.Errorf("apt versions: %+v", by)
	}
	// The identity the fingerprint records changes with the key and the version.
	ov := fullVersions(t, "")
	op := filepath.Join(t.TempDir(), "o.pkrvars.hcl")
	if err := os.WriteFile(op, []byte(`docker_apt_key_fingerprint = "`+strings.Repeat("CD", 20)+`"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := versions.LoadOverride(op)
	if err != nil {
		t.Fatal(err)
	}
	other, err := artifacts.Resolve(ov.With(o), artifacts.Catalog, "")
	if err != nil {
		t.Fatal(err)
	}
	if other[3].Identity() == arts[3].Identity() || other[0].Identity() != arts[0].Identity() {
		t.Error("only the apt artifacts' identity follows the key")
	}
}

func TestModulePinMustMatch(t *testing.T) {
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "tools", "doctl"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "tools", "doctl", "go.mod"), []byte("module x\n\ngo 1.26\n\nrequire github.com/digitalocean/doctl v1.104.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "tools", "doctl", "go.sum"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	arts, err := artifacts.Resolve(fullVersions(t, ""), artifacts.Catalog, "")
	if err != nil {
		t.Fatal(err)
	}
	err = artifacts.CheckModulePin(repo, arts[2])
	if err == nil || !strings.Contains(err.Error(), "requires github.com/digitalocean/doctl v1.104.0 but the versions file says 1.0.0") {
		t.Fatalf("err = %v", err)
	}
}

func TestResolveLocal(t *testing.T) {
	dir := t.TempDir()
	content := []byte("#!/bin/sh\necho consul\n")
	if err := os.WriteFile(filepath.Join(dir, "consul"), content, 0o755); err != nil {
		t.Fatal(err)
	}
	arts, err := artifacts.Resolve(fullVersions(t, ""), artifacts.Catalog[:2], dir)
	if err != nil {
		t.Fatal(err)
	}
	if a := arts[0]; a.Source != artifacts.SourceLocal || a.SHA256 != sum(content) || a.Kind != artifacts.KindBinary || a.LocalPath != filepath.Join(dir, "consul") || !strings.Contains(a.Verified, "local stand-in") {
		t.Errorf("local consul = %+v", a)
	}
	if arts[1].Source != artifacts.SourceVendor {
		t.Errorf("consul-template without a local file should come from the vendor: %+v", arts[1])
	}
}

func zipOf(t *testing.T, name string, body []byte) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create(name)
	w.Write(body)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tgzOf(t *testing.T, name string, body []byte) []byte {
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{{"README.md", 0o644, []byte("hi")}, {name, 0o755, body}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCacheStage(t *testing.T) {
	consulZip := zipOf(t, "consul", []byte("consul-binary"))
	doctlTgz := tgzOf(t, "doctl", []byte("doctl-binary"))
	compose := []byte("compose-binary")
	deb := []byte("deb-package")
	files := map[string][]byte{"/consul.zip": consulZip, "/doctl.tgz": doctlTgz, "/compose": compose, "/x.deb": deb}
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			t.Errorf("unexpected download %s", r.URL.Path)
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		w.Write(b)
	}))
	defer srv.Close()
	arts := []artifacts.Artifact{
		{Name: "consul", Source: artifacts.SourceVendor, Version: "1", URL: srv.URL + "/consul.zip", FileName: "consul.zip", SHA256: sum(consulZip), Kind: artifacts.KindZip, Member: "consul", Dest: "bin/consul"},
		{Name: "doctl", Source: artifacts.SourceVendor, Version: "1", URL: srv.URL + "/doctl.tgz", FileName: "doctl.tgz", SHA256: sum(doctlTgz), Kind: artifacts.KindTarGz, Member: "doctl", Dest: "bin/doctl"},
		{Name: "docker-compose", Source: artifacts.SourceVendor, Version: "1", URL: srv.URL + "/compose", FileName: "compose", SHA256: sum(compose), Kind: artifacts.KindBinary, Dest: "bin/docker-compose"},
		{Name: "docker-ce", Source: artifacts.SourceVendor, Version: "1", URL: srv.URL + "/x.deb", FileName: "x.deb", SHA256: sum(deb), Kind: artifacts.KindBinary, Dest: "debs/x.deb"},
	}
	cache := &artifacts.Cache{Dir: t.TempDir()}
	payload := t.TempDir()
	ctx := context.Background()
	if err := cache.Stage(ctx, arts, payload); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{"bin/consul": "consul-binary", "bin/doctl": "doctl-binary", "bin/docker-compose": "compose-binary", "debs/x.deb": "deb-package"} {
		got, err := os.ReadFile(filepath.Join(payload, rel))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", rel, got, err, want)
		}
	}
	if st, _ := os.Stat(filepath.Join(payload, "bin/consul")); st.Mode().Perm() != 0o755 {
		t.Errorf("bin/consul mode = %v", st.Mode())
	}
	if n := hits.Load(); n != 4 {
		t.Fatalf("downloads = %d, want 4", n)
	}
	// Second run: everything from the cache.
	if err := cache.Stage(ctx, arts, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 4 {
		t.Fatalf("downloads after a cached run = %d, want still 4", n)
	}
	// A corrupted cache entry is downloaded again.
	if err := os.WriteFile(cache.Path(arts[2]), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Fetch(ctx, arts[2]); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 5 {
		t.Fatalf("downloads after tampering = %d, want 5", n)
	}

	// A download with the wrong checksum fails, naming the artifact, and is not cached.
	bad := arts[2]
	bad.Version, bad.SHA256 = "2", strings.Repeat("0", 64)
	_, err := cache.Fetch(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "artifact docker-compose: checksum mismatch") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(cache.Path(bad)); !os.IsNotExist(err) {
		t.Fatalf("a mismatching download was kept in the cache: %v", err)
	}
	// No checksum: refused before any request.
	bad.SHA256 = ""
	if _, err := cache.Fetch(ctx, bad); err == nil || !strings.Contains(err.Error(), "artifact docker-compose: no SHA-256") {
		t.Fatalf("err = %v", err)
	}
}

func TestWriteChecksums(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "b"), []byte("b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := artifacts.WriteChecksums(dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, artifacts.ChecksumsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := sum([]byte("a")) + "  ./a\n" + sum([]byte("b")) + "  ./bin/b\n"
	if string(got) != want {
		t.Fatalf("SHA256SUMS =\n%s\nwant\n%s", got, want)
	}
}

// TestStageDownloadsInParallelWithProgress: the server answers neither
// download until both have arrived (a sequential Stage would wait forever),
// then trickles the bodies so that progress lines are logged.
func TestStageDownloadsInParallelWithProgress(t *testing.T) {
	a, b := bytes.Repeat([]byte("a"), 64<<10), bytes.Repeat([]byte("b"), 64<<10)
	files := map[string][]byte{"/a": a, "/b": b}
	arrived := make(chan struct{}, 2)
	both := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		if len(arrived) == 2 {
			once.Do(func() { close(both) })
		}
		select {
		case <-both:
		case <-time.After(10 * time.Second):
			t.Errorf("download %s waited alone: downloads are not parallel", r.URL.Path)
			http.Error(w, "alone", http.StatusServiceUnavailable)
			return
		}
		body := files[r.URL.Path]
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		for i := 0; i < len(body); i += 8 << 10 {
			if _, err := w.Write(body[i : i+8<<10]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	}))
	defer srv.Close()
	arts := []artifacts.Artifact{
		{Name: "a", Source: artifacts.SourceVendor, Version: "1", URL: srv.URL + "/a", FileName: "a", SHA256: sum(a), Kind: artifacts.KindBinary, Dest: "bin/a"},
		{Name: "b", Source: artifacts.SourceVendor, Version: "1", URL: srv.URL + "/b", FileName: "b", SHA256: sum(b), Kind: artifacts.KindBinary, Dest: "bin/b"},
	}
	var logs testenv.SyncBuffer
	cache := &artifacts.Cache{Dir: t.TempDir(), ProgressEvery: time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := cache.Stage(context.Background(), arts, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "msg=downloading artifact=a progress=") || !strings.Contains(logs.String(), "/ 0.1 MB (") {
		t.Fatalf("no progress lines:\n%s", logs.String())
	}
}
