package droplets

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// tarFiles packs files (absolute paths) into a tar stream for `docker cp - C:/`, with a
// 0700 entry for /root/.ssh and 0755 for every other parent folder, all owned by root.
func tarFiles(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	seen := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return nil, fmt.Errorf("file path %q must be absolute and clean", f.Path)
		}
		rel := strings.TrimPrefix(f.Path, "/")
		parts := strings.Split(rel, "/")
		for i := 1; i < len(parts); i++ {
			dir := strings.Join(parts[:i], "/")
			if seen[dir] {
				continue
			}
			seen[dir] = true
			mode := int64(0o755)
			if dir == "root" {
				mode = 0o700
			}
			if dir == "root/.ssh" {
				mode = 0o700
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: mode, ModTime: now}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// HostKeys generates fresh SSH host keys (ed25519 and ECDSA P-256) for a new droplet, as
// cloud-init does on DigitalOcean: images are snapshotted without host keys.
func HostKeys() ([]File, error) {
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 host key: %w", err)
	}
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ecdsa host key: %w", err)
	}
	var out []File
	for _, k := range []struct {
		name string
		key  any
	}{{"ed25519", edPriv}, {"ecdsa", ecPriv}} {
		blk, err := ssh.MarshalPrivateKey(k.key, "")
		if err != nil {
			return nil, fmt.Errorf("marshal %s host key: %w", k.name, err)
		}
		signer, err := ssh.NewSignerFromKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("%s host key: %w", k.name, err)
		}
		base := "/etc/ssh/ssh_host_" + k.name + "_key"
		out = append(out,
			File{Path: base, Mode: 0o600, Data: pem.EncodeToMemory(blk)},
			File{Path: base + ".pub", Mode: 0o644, Data: ssh.MarshalAuthorizedKey(signer.PublicKey())},
		)
	}
	return out, nil
}
