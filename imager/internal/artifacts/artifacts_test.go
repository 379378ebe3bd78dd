package artifacts_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/codelab-app/infra/imager/internal/artifacts"
)

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func TestParseVersions(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{"values and comments", "# c\n// d\nconsul_version = \"1.17.1\"\n\nconsul_sha256   = \"\" # todo\n",
			map[string]string{"consul_version": "1.17.1", "consul_sha256": ""}, ""},
		{"unquoted", "consul_version = 1.17.1\n", nil, "line 1"},
		{"duplicate", "a = \"1\"\na = \"2\"\n", nil, "set twice"},
		{"block", "variable \"x\" {\n}\n", nil, "line 1"},
		{"interpolation", "a = \"${b}\"\nb = \"\\\"\"\n", nil, "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := artifacts.ParseVersions(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// The committed versions file pins every catalog artifact's version, and the issue's
// versions.
func TestCommittedVersionsFile(t *testing.T) {
	v, err := artifacts.LoadVersions(filepath.Join("..", "..", "..", artifacts.VersionsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range artifacts.Catalog {
		if v[s.VersionVar] == "" {
			t.Errorf("%s: %s not set", s.Name, s.VersionVar)
		}
		if _, ok := v[s.SHA256Var]; !ok {
			t.Errorf("%s: %s missing (may be empty with a TODO, never absent)", s.Name, s.SHA256Var)
		}
	}
	for k, want := range map[string]string{"consul_version": "1.17.1", "consul_template_version": "0.34.0", "compose_version": "2.24.0", "doctl_version": "1.104.0"} {
		if v[k] != want {
			t.Errorf("%s = %q, want %q", k, v[k], want)
		}
	}
}

func fullVersions() artifacts.Versions {
	v := artifacts.Versions{}
	for _, s := range artifacts.Catalog {
		v[s.VersionVar] = "1.0.0"
		v[s.SHA256Var] = strings.Repeat("ab", 32)
	}
	return v
}

func TestResolve(t *testing.T) {
	v := fullVersions()
	arts, err := artifacts.Resolve(v, artifacts.Catalog, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != len(artifacts.Catalog) {
		t.Fatalf("got %d artifacts", len(arts))
	}
	if a := arts[0]; a.Name != "consul" || a.URL != "https://releases.hashicorp.com/consul/1.0.0/consul_1.0.0_linux_amd64.zip" || a.Dest != "bin/consul" || a.Source != artifacts.SourceVendor {
		t.Errorf("consul = %+v", a)
	}
	if a := arts[4]; a.Dest != "debs/docker-ce_1.0.0_amd64.deb" {
		t.Errorf("docker-ce dest = %q", a.Dest)
	}

	for _, tc := range []struct {
		name string
		edit func(artifacts.Versions)
		want string
	}{
		{"empty checksum refused", func(v artifacts.Versions) { v["doctl_sha256"] = "" }, "artifact doctl 1.0.0: no SHA-256 pinned (doctl_sha256 is empty"},
		{"malformed checksum", func(v artifacts.Versions) { v["consul_sha256"] = "abc" }, "consul_sha256 in packer/versions.pkrvars.hcl is not a SHA-256"},
		{"missing version", func(v artifacts.Versions) { delete(v, "compose_version") }, "artifact docker-compose: compose_version is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := fullVersions()
			tc.edit(v)
			_, err := artifacts.Resolve(v, artifacts.Catalog, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestResolveLocal(t *testing.T) {
	dir := t.TempDir()
	content := []byte("#!/bin/sh\necho consul\n")
	if err := os.WriteFile(filepath.Join(dir, "consul"), content, 0o755); err != nil {
		t.Fatal(err)
	}
	v := fullVersions()
	v["consul_sha256"] = "" // a local file needs no pinned checksum
	arts, err := artifacts.Resolve(v, artifacts.Catalog[:2], dir)
	if err != nil {
		t.Fatal(err)
	}
	if a := arts[0]; a.Source != artifacts.SourceLocal || a.SHA256 != sum(content) || a.Kind != artifacts.KindBinary || a.LocalPath != filepath.Join(dir, "consul") {
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
		{Name: "consul", Version: "1", URL: srv.URL + "/consul.zip", FileName: "consul.zip", SHA256: sum(consulZip), Kind: artifacts.KindZip, Member: "consul", Dest: "bin/consul"},
		{Name: "doctl", Version: "1", URL: srv.URL + "/doctl.tgz", FileName: "doctl.tgz", SHA256: sum(doctlTgz), Kind: artifacts.KindTarGz, Member: "doctl", Dest: "bin/doctl"},
		{Name: "docker-compose", Version: "1", URL: srv.URL + "/compose", FileName: "compose", SHA256: sum(compose), Kind: artifacts.KindBinary, Dest: "bin/docker-compose"},
		{Name: "docker-ce", Version: "1", URL: srv.URL + "/x.deb", FileName: "x.deb", SHA256: sum(deb), Kind: artifacts.KindDeb, Dest: "debs/x.deb"},
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
