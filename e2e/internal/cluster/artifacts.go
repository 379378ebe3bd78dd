package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// readVars reads `name = "value"` lines of packer/versions.pkrvars.hcl.
func readVars(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return out, sc.Err()
}

// PrepareArtifacts fills dir with what the imager takes instead of vendor downloads on
// the local DigitalOcean (imager build --local-artifacts):
//   - consul, consul-template, docker-compose: the binaries `make deps` built from the
//     pinned versions (cacheBin);
//   - docker-ce, docker-ce-cli, containerd.io: small metapackages under the file names
//     the imager looks for, which make apt in the build droplet install Debian's
//     docker.io and containerd from Debian's (signed) archive instead;
//   - doctl: a stand-in that answers `doctl version` and refuses everything else (the
//     vendor release is not reachable here and nothing at boot uses doctl).
//
// Existing files are kept, so a warm run has the same checksums.
func PrepareArtifacts(ctx context.Context, repo, cacheBin, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	vars, err := readVars(filepath.Join(repo, "packer", "versions.pkrvars.hcl"))
	if err != nil {
		return fmt.Errorf("local artifacts: %w", err)
	}
	for _, b := range []string{"consul", "consul-template", "docker-compose"} {
		if err := copyIfChanged(filepath.Join(cacheBin, b), filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("local artifact %s (make deps builds it): %w", b, err)
		}
	}
	doctl := filepath.Join(dir, "doctl")
	if _, err := os.Stat(doctl); err != nil {
		script := fmt.Sprintf(`#!/bin/sh
# Stand-in for doctl %s in images built on the local DigitalOcean.
case "$1" in
  version|--version) echo "doctl version %s-local-standin"; exit 0 ;;
esac
echo "doctl: this is the local DigitalOcean's stand-in; the real doctl is not installed" >&2
exit 1
`, vars["doctl_version"], vars["doctl_version"])
		if err := os.WriteFile(doctl, []byte(script), 0o755); err != nil {
			return err
		}
	}
	debs := []struct{ file, pkg, version, depends string }{
		{"docker-ce_%s_amd64.deb", "codelab-local-docker-engine", vars["docker_ce_version"], "docker.io"},
		{"docker-ce-cli_%s_amd64.deb", "codelab-local-docker-cli", vars["docker_ce_version"], "docker.io"},
		{"containerd.io_%s_amd64.deb", "codelab-local-containerd", vars["containerd_version"], "containerd"},
	}
	for _, d := range debs {
		if d.version == "" {
			return fmt.Errorf("local artifacts: no version for %s in versions.pkrvars.hcl", d.pkg)
		}
		out := filepath.Join(dir, fmt.Sprintf(d.file, d.version))
		if _, err := os.Stat(out); err == nil {
			continue
		}
		if err := metapackage(ctx, out, d.pkg, d.version, d.depends); err != nil {
			return fmt.Errorf("local artifact %s: %w", filepath.Base(out), err)
		}
	}
	return nil
}

// metapackage builds an empty .deb that depends on depends.
func metapackage(ctx context.Context, out, pkg, version, depends string) error {
	tmp, err := os.MkdirTemp("", "localdo-deb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Join(tmp, "DEBIAN"), 0o755); err != nil {
		return err
	}
	control := fmt.Sprintf(`Package: %s
Version: %s
Architecture: amd64
Maintainer: codelab local DigitalOcean <local@codelab.invalid>
Depends: %s
Section: admin
Priority: optional
Description: local stand-in: installs Debian's %s
 Built by the codelab e2e harness for images built on the local DigitalOcean,
 which cannot reach download.docker.com.
`, pkg, version, depends, depends)
	if err := os.WriteFile(filepath.Join(tmp, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "--build", tmp, out+".tmp")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb: %v: %s", err, b)
	}
	return os.Rename(out+".tmp", out)
}

func copyIfChanged(src, dst string) error {
	a, err := os.Stat(src)
	if err != nil {
		return err
	}
	if b, err := os.Stat(dst); err == nil && b.Size() == a.Size() && !b.ModTime().Before(a.ModTime()) {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
