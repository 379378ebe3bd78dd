// Package aptrepo makes signed apt repositories for tests and the local DigitalOcean:
// a signing key made on the spot (gpg), .deb packages (dpkg-deb) and the repository
// indexes (apt-ftparchive), laid out like Docker's (<dir>/gpg is the armored key,
// dists/<suite>/InRelease is signed with it), so the production install script runs
// against it unchanged. Debian packages: gnupg, dpkg, apt-utils.
package aptrepo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Key is an OpenPGP signing key in its own GnuPG home.
type Key struct {
	Home        string
	Fingerprint string // 40 upper-case hex digits
	Armored     []byte // the public key, armored
}

func run(ctx context.Context, dir string, env []string, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// stopAgent ends the gpg-agent that gpg started for home, so no daemon outlives the
// key's use (and a test's temporary folder can be removed).
func stopAgent(home string) {
	_ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
}

// NewKey makes an unprotected ed25519 signing key in home (created 0700).
func NewKey(ctx context.Context, home, name string) (*Key, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	defer stopAgent(home)
	env := []string{"GNUPGHOME=" + home}
	uid := name + " <" + strings.ReplaceAll(name, " ", "-") + "@codelab.invalid>"
	if _, err := run(ctx, "", env, nil, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
		"--quick-gen-key", uid, "ed25519", "sign", "never"); err != nil {
		return nil, fmt.Errorf("make test key: %w", err)
	}
	list, err := run(ctx, "", env, nil, "gpg", "--batch", "--with-colons", "--list-keys", uid)
	if err != nil {
		return nil, err
	}
	k := &Key{Home: home}
	for _, l := range strings.Split(string(list), "\n") {
		if f := strings.Split(l, ":"); len(f) > 9 && f[0] == "fpr" {
			k.Fingerprint = f[9]
			break
		}
	}
	if k.Fingerprint == "" {
		return nil, fmt.Errorf("no fingerprint for the new key in:\n%s", list)
	}
	if k.Armored, err = run(ctx, "", env, nil, "gpg", "--batch", "--armor", "--export", k.Fingerprint); err != nil {
		return nil, err
	}
	return k, nil
}

// File is one file a package installs.
type File struct {
	Path string // absolute path on the target
	Src  string // copy this file, or
	Data []byte // write these bytes
	Mode os.FileMode
}

// Package is a .deb to build.
type Package struct {
	Name, Version, Depends, Description string
	Files                               []File
	// Postinst is the body of the package's postinst script, if any.
	Postinst string
}

// FileName is the Debian file name of p (an epoch's ':' becomes '%3a').
func (p Package) FileName() string {
	return fmt.Sprintf("%s_%s_amd64.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"))
}

// BuildDeb builds p into outDir and returns the .deb's path.
func BuildDeb(ctx context.Context, p Package, outDir string) (string, error) {
	root, err := os.MkdirTemp("", "aptrepo-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(root)
	if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
		return "", err
	}
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: codelab tests <tests@codelab.invalid>\n", p.Name, p.Version)
	if p.Depends != "" {
		control += "Depends: " + p.Depends + "\n"
	}
	desc := p.Description
	if desc == "" {
		desc = "codelab test package"
	}
	control += "Section: admin\nPriority: optional\nDescription: " + desc + "\n"
	if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		return "", err
	}
	if p.Postinst != "" {
		if err := os.WriteFile(filepath.Join(root, "DEBIAN", "postinst"), []byte("#!/bin/sh\nset -e\n"+p.Postinst+"\n"), 0o755); err != nil {
			return "", err
		}
	}
	for _, f := range p.Files {
		dst := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		data := f.Data
		if f.Src != "" {
			if data, err = os.ReadFile(f.Src); err != nil {
				return "", fmt.Errorf("package %s: %w", p.Name, err)
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(dst, data, mode); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(outDir, p.FileName())
	if _, err := run(ctx, "", nil, nil, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, out); err != nil {
		return "", fmt.Errorf("package %s: %w", p.Name, err)
	}
	return out, nil
}

// Build writes a repository into dir (created; everything in it is replaced): the debs
// under pool/, dists/<suite>/<component>/binary-amd64/Packages(.gz), a Release file
// signed into InRelease with key, and the armored key as <dir>/gpg. The layout is the
// one `deb [signed-by=...] <url> <suite> <component>` reads.
func Build(ctx context.Context, dir, suite, component string, debs []string, key *Key) error {
	for _, sub := range []string{"pool", "dists"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	pool := filepath.Join(dir, "pool", component)
	bin := filepath.Join(dir, "dists", suite, component, "binary-amd64")
	for _, d := range []string{pool, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	sort.Strings(debs)
	for _, d := range debs {
		b, err := os.ReadFile(d)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(pool, filepath.Base(d)), b, 0o644); err != nil {
			return err
		}
	}
	packages, err := run(ctx, dir, nil, nil, "apt-ftparchive", "packages", "pool")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bin, "Packages"), packages, 0o644); err != nil {
		return err
	}
	if _, err := run(ctx, bin, nil, nil, "gzip", "-9kf", "Packages"); err != nil {
		return err
	}
	release, err := run(ctx, filepath.Join(dir, "dists", suite), nil, nil, "apt-ftparchive",
		"-o", "APT::FTPArchive::Release::Origin=codelab-test", "-o", "APT::FTPArchive::Release::Suite="+suite,
		"-o", "APT::FTPArchive::Release::Codename="+suite, "-o", "APT::FTPArchive::Release::Components="+component,
		"-o", "APT::FTPArchive::Release::Architectures=amd64", "release", ".")
	if err != nil {
		return err
	}
	rel := filepath.Join(dir, "dists", suite, "Release")
	if err := os.WriteFile(rel, release, 0o644); err != nil {
		return err
	}
	defer stopAgent(key.Home)
	if _, err := run(ctx, "", []string{"GNUPGHOME=" + key.Home}, nil, "gpg", "--batch", "--yes", "--pinentry-mode", "loopback",
		"--passphrase", "", "--local-user", key.Fingerprint, "--clearsign", "--digest-algo", "SHA512",
		"-o", filepath.Join(dir, "dists", suite, "InRelease"), rel); err != nil {
		return fmt.Errorf("sign the repository: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "gpg"), key.Armored, 0o644)
}
