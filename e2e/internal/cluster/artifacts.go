package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codelab-app/infra/imager/versions"
	"github.com/codelab-app/infra/tools/aptrepo"
)

// LocalArtifacts is what `imager build --local-artifacts` takes on the local
// DigitalOcean, which has no internet (README: "What the local build substitutes").
type LocalArtifacts struct {
	Dir            string // the --local-artifacts folder
	AptDir         string // the signed apt repository, served at AptURL
	AptURL         string
	KeyFingerprint string // the test key that signs it, pinned through docker_apt_key_fingerprint
}

// OverrideFile is the versions override the imager reads from the --local-artifacts folder.
const OverrideFile = "versions.local.pkrvars.hcl"

// PrepareArtifacts fills dir with what the imager takes instead of the vendors' bytes:
//   - consul, consul-template: the binaries `make deps` built from the pinned modules
//     (Consul 1.15.4, consul-template 0.41.1: the pinned 1.17.1 is under the BSL and
//     0.34.0 is not served here);
//   - a Docker apt repository under the names the production script installs, signed
//     with a test key made here (kept in dir, so a warm run has the same fingerprint):
//     docker-ce and docker-ce-cli are Debian trixie's docker.io and docker-cli (Engine
//     26) repackaged under those names (they conflict with Docker's, so a metapackage
//     cannot pull them in), containerd.io is a metapackage that pulls Debian's containerd,
//     docker-compose-plugin holds the Compose plugin `make deps` built (v2.24.0);
//   - OverrideFile: docker_apt_url (aptURL, where ServeApt serves the repository to the
//     build droplet) and docker_apt_key_fingerprint (the test key).
//
// doctl needs nothing here: the imager builds it from its Go module, as in production.
func PrepareArtifacts(ctx context.Context, repo, cacheBin, dir, aptURL string) (*LocalArtifacts, error) {
	la := &LocalArtifacts{Dir: dir, AptDir: filepath.Join(dir, "apt"), AptURL: aptURL}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	v, err := versions.Load(filepath.Join(repo, versions.File))
	if err != nil {
		return nil, fmt.Errorf("local artifacts: %w", err)
	}
	for _, b := range []string{"consul", "consul-template"} {
		if err := copyIfChanged(filepath.Join(cacheBin, b), filepath.Join(dir, b)); err != nil {
			return nil, fmt.Errorf("local artifact %s (make deps builds it): %w", b, err)
		}
	}
	key, err := testKey(ctx, filepath.Join(dir, "gnupg"))
	if err != nil {
		return nil, fmt.Errorf("local apt repository key: %w", err)
	}
	la.KeyFingerprint = key.Fingerprint
	debs, err := standinDebs(ctx, v, cacheBin, filepath.Join(dir, "debs"))
	if err != nil {
		return nil, err
	}
	if err := aptrepo.Build(ctx, la.AptDir, "bookworm", "stable", debs, key); err != nil {
		return nil, fmt.Errorf("local apt repository: %w", err)
	}
	override := fmt.Sprintf("# Written by the e2e harness: the local DigitalOcean's build droplet installs Docker\n"+
		"# from this signed test repository, verified against this test key.\n"+
		"docker_apt_url             = %q\ndocker_apt_key_fingerprint = %q\n", aptURL, key.Fingerprint)
	if err := os.WriteFile(filepath.Join(dir, OverrideFile), []byte(override), 0o644); err != nil {
		return nil, err
	}
	return la, nil
}

// testKey returns the key in home, making it the first time.
func testKey(ctx context.Context, home string) (*aptrepo.Key, error) {
	if b, err := os.ReadFile(filepath.Join(home, "codelab-key.json")); err == nil {
		var k aptrepo.Key
		if err := json.Unmarshal(b, &k); err == nil && k.Fingerprint != "" {
			return &k, nil
		}
	}
	if err := os.RemoveAll(home); err != nil {
		return nil, err
	}
	k, err := aptrepo.NewKey(ctx, home, "codelab local apt test key")
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	return k, os.WriteFile(filepath.Join(home, "codelab-key.json"), b, 0o600)
}

// standinVersion is the version a stand-in gets: the pin, or for "latest" a version
// that says what it is.
func standinVersion(v string) string {
	if v == versions.Latest {
		return "0.0.0-codelab-local"
	}
	return v
}

func standinDebs(ctx context.Context, v *versions.Versions, cacheBin, dir string) ([]string, error) {
	engine := standinVersion(v.Get("docker_ce_version"))
	containerd := aptrepo.Package{Name: "containerd.io", Version: standinVersion(v.Get("containerd_version")), Depends: "containerd",
		Description: "local stand-in: installs Debian's containerd"}
	compose := aptrepo.Package{Name: "docker-compose-plugin", Version: standinVersion(v.Get("docker_compose_plugin_version")),
		Description: "local stand-in: the Compose plugin built by make deps from its pinned module",
		Files:       []aptrepo.File{{Path: "/usr/libexec/docker/cli-plugins/docker-compose", Src: filepath.Join(cacheBin, "docker-compose"), Mode: 0o755}}}
	var debs []string
	for _, p := range []aptrepo.Package{containerd, compose} {
		out := filepath.Join(dir, p.FileName())
		if _, err := os.Stat(out); err != nil {
			if out, err = aptrepo.BuildDeb(ctx, p, dir); err != nil {
				return nil, fmt.Errorf("local stand-in %s: %w", p.Name, err)
			}
		}
		debs = append(debs, out)
	}
	// The Engine and its CLI: Debian's, from the suite that has Engine 26 (API 1.45),
	// so the roles' health checks run start_interval as on the images' docker-ce.
	for _, r := range []struct{ name, upstream string }{{"docker-ce", "docker.io"}, {"docker-ce-cli", "docker-cli"}} {
		out, err := repackage(ctx, r.upstream, r.name, engine, dir)
		if err != nil {
			return nil, err
		}
		debs = append(debs, out)
	}
	return debs, nil
}

var conflictsLine = regexp.MustCompile(`(?m)^(Conflicts|Replaces|Breaks): .*\n`)

// EngineSuite is the Debian suite the stand-in Engine comes from: bookworm's docker.io is
// 20.10 (API 1.41), too old for the health checks' start_interval (Engine 25, API 1.44);
// trixie's is 26.1, and installs on bookworm (libc6 >= 2.34, containerd >= 1.4, runc).
const EngineSuite = "trixie"

// standinRevision names the build of the repackaged Engine packages (r2: the
// docker.service drop-in).
const standinRevision = "r2"

// repackage renames Debian's package upstream (from EngineSuite) to name at version,
// without the Conflicts, Replaces and Breaks that keep it apart from Docker's packages.
func repackage(ctx context.Context, upstream, name, version, dir string) (string, error) {
	// The revision folder keeps a cached package from before a change to what is added
	// to it from being used.
	rev := filepath.Join(dir, standinRevision)
	if err := os.MkdirAll(rev, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(rev, aptrepo.Package{Name: name, Version: version}.FileName())
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	dl := filepath.Join(dir, "upstream-"+EngineSuite)
	src, err := downloadDeb(ctx, upstream, dl)
	if err != nil {
		return "", fmt.Errorf("local stand-in %s: %w", name, err)
	}
	tmp, err := os.MkdirTemp("", name+"-standin-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if b, err := exec.CommandContext(ctx, "dpkg-deb", "-R", src, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("local stand-in %s: unpack %s: %w: %s", name, src, err, b)
	}
	control := filepath.Join(tmp, "DEBIAN", "control")
	b, err := os.ReadFile(control)
	if err != nil {
		return "", err
	}
	up := field(b, "Version")
	b = conflictsLine.ReplaceAll(b, nil)
	b = regexp.MustCompile(`(?m)^Package: .*$`).ReplaceAll(b, []byte("Package: "+name))
	b = regexp.MustCompile(`(?m)^Version: .*$`).ReplaceAll(b, []byte("Version: "+version))
	b = regexp.MustCompile(`(?m)^Description: .*$`).ReplaceAll(b, []byte("Description: local stand-in: Debian "+EngineSuite+"'s "+upstream+" "+up+" repackaged as "+name))
	if err := os.WriteFile(control, b, 0o644); err != nil {
		return "", err
	}
	if name == "docker-ce" {
		// A local droplet is a container whose /proc/sys is read-only: Engine 26 refuses
		// to start a container it cannot turn IPv6 off for, unless told to go on (a
		// real droplet's /proc/sys is writable, so Docker's docker-ce needs nothing).
		dropin := filepath.Join(tmp, "lib", "systemd", "system", "docker.service.d")
		if err := os.MkdirAll(dropin, 0o755); err != nil {
			return "", err
		}
		conf := "# local stand-in only: the droplet is a container with a read-only /proc/sys\n[Service]\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\n"
		if err := os.WriteFile(filepath.Join(dropin, "codelab-local-standin.conf"), []byte(conf), 0o644); err != nil {
			return "", err
		}
	}
	if b, err := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "-Zgzip", "-b", tmp, out+".tmp").CombinedOutput(); err != nil {
		return "", fmt.Errorf("local stand-in %s: %w: %s", name, err, b)
	}
	return out, os.Rename(out+".tmp", out)
}

// downloadDeb fetches pkg's .deb from EngineSuite into dl (once), with apt-get and a
// private apt configuration whose only source is the machine's own Debian mirror (read
// from its apt sources) at that suite.
func downloadDeb(ctx context.Context, pkg, dl string) (string, error) {
	if src, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb")); len(src) > 0 {
		return src[0], nil
	}
	mirror, err := DebianMirror()
	if err != nil {
		return "", err
	}
	state := filepath.Join(dl, "apt")
	for _, d := range []string{filepath.Join(state, "lists", "partial"), filepath.Join(state, "cache", "archives", "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	list := filepath.Join(state, "sources.list")
	line := fmt.Sprintf("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n", mirror, EngineSuite)
	if err := os.WriteFile(list, []byte(line), 0o644); err != nil {
		return "", err
	}
	opts := []string{"-q", "-o", "Dir::Etc::SourceList=" + list, "-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(state, "lists"), "-o", "Dir::Cache=" + filepath.Join(state, "cache")}
	for _, args := range [][]string{append(slices.Clone(opts), "update"), append(slices.Clone(opts), "download", pkg+"/"+EngineSuite)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Dir = dl
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s (%s %s): %w: %s", args[len(args)-2], mirror, EngineSuite, err, bytes.TrimSpace(b))
		}
	}
	src, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(src) == 0 {
		return "", fmt.Errorf("apt-get download %s/%s left no .deb in %s", pkg, EngineSuite, dl)
	}
	return src[0], nil
}

// DebianMirror is the Debian mirror this machine's apt uses: the first URI of a deb822
// source (URIs:) or a one-line source (deb URI suite ...) in its apt sources.
func DebianMirror() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append(files, "/etc/apt/sources.list")
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	return mirrorIn(append(files, more...))
}

func mirrorIn(files []string) (string, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			fs := strings.Fields(l)
			switch {
			case len(fs) >= 2 && fs[0] == "URIs:":
				return fs[1], nil
			case len(fs) >= 3 && fs[0] == "deb":
				for _, x := range fs[1:] {
					if strings.Contains(x, "://") {
						return x, nil
					}
				}
			}
		}
	}
	return "", errors.New("no Debian mirror in this machine's apt sources (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list)")
}

func field(control []byte, name string) string {
	m := regexp.MustCompile(`(?m)^` + name + `: (.*)$`).FindSubmatch(control)
	if m == nil {
		return ""
	}
	return string(bytes.TrimSpace(m[1]))
}

// ServeApt serves the repository in dir over HTTP on l (on the public network's gateway,
// which build droplets reach, like the local registry) until ctx ends.
func ServeApt(ctx context.Context, l net.Listener, dir string) {
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
}

func copyIfChanged(src, dst string) error {
	a, err := os.Stat(src)
	if err != nil {
		return err
	}
	if b, err := os.Stat(dst); err == nil && b.Size() == a.Size() && !b.ModTime().Before(a.ModTime()) {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst+".tmp", data, 0o755); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

// aptHostPort is where the cluster serves the apt repository: the gateway, on the port
// after the registry's (fixed, so the imager's fingerprint stays the same across runs).
func aptHostPort(gateway, registryPull string) (string, error) {
	_, p, err := net.SplitHostPort(registryPull)
	if err != nil {
		return "", fmt.Errorf("registry address %q: %w", registryPull, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", fmt.Errorf("registry address %q: %w", registryPull, err)
	}
	return net.JoinHostPort(gateway, strconv.Itoa(port+1)), nil
}
