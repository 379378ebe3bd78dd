package droplets

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestTarFilesGivesParentsAndModes(t *testing.T) {
	b, err := tarFiles([]File{
		{Path: "/root/.ssh/authorized_keys", Mode: 0o600, Data: []byte("ssh-ed25519 AAAA k\n")},
		{Path: "/etc/docker/daemon.json", Mode: 0o644, Data: []byte("{}")},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h.Mode
	}
	want := map[string]int64{"root/": 0o700, "root/.ssh/": 0o700, "root/.ssh/authorized_keys": 0o600,
		"etc/": 0o755, "etc/docker/": 0o755, "etc/docker/daemon.json": 0o644}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: mode %o, want %o (all: %v)", k, got[k], v, got)
		}
	}
	if _, err := tarFiles([]File{{Path: "relative/x"}}); err == nil {
		t.Error("a relative path must be refused")
	}
}

func TestHostKeysParse(t *testing.T) {
	files, err := HostKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("%d files", len(files))
	}
	for _, f := range files {
		if strings.HasSuffix(f.Path, ".pub") {
			if _, _, _, _, err := ssh.ParseAuthorizedKey(f.Data); err != nil || f.Mode != 0o644 {
				t.Errorf("%s: %v mode %o", f.Path, err, f.Mode)
			}
			continue
		}
		if _, err := ssh.ParsePrivateKey(f.Data); err != nil || f.Mode != 0o600 {
			t.Errorf("%s: %v mode %o", f.Path, err, f.Mode)
		}
	}
}
