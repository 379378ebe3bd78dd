package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codelab-app/infra/imager/internal/cli"
)

// repoRoot is the real repository (imager/internal/cli/../../..).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "packer", "versions.pkrvars.hcl")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

// failTransport fails the test on any artifact download: tests never leave loopback.
type failTransport struct{ t *testing.T }

func (f failTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.t.Errorf("unexpected download %s", r.URL)
	return nil, fmt.Errorf("unexpected download %s", r.URL)
}

type env map[string]string

func (e env) get(k string) string { return e[k] }

// globals returns Globals writing into buffers, with the given environment.
func globals(t *testing.T, e env) (*cli.Globals, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &cli.Globals{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: e.get,
		CacheDir: t.TempDir(), Packer: "packer",
		DownloadClient: &http.Client{Transport: failTransport{t}},
	}
	return g, &out, &errb
}

// run executes the command line through cobra, as main does.
func run(t *testing.T, g *cli.Globals, args ...string) error {
	t.Helper()
	root := cli.NewRootCmd(g)
	root.SetArgs(args)
	return root.ExecuteContext(context.Background())
}

// copyTree copies src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fixtureRepo is a repository with the committed packer/ folder and doctl's pinning
// module, systemd units and role files.
func fixtureRepo(t *testing.T) string {
	t.Helper()
	repo := t.TempDir()
	copyTree(t, filepath.Join(repoRoot(t), "packer"), filepath.Join(repo, "packer"))
	copyTree(t, filepath.Join(repoRoot(t), "tools", "doctl"), filepath.Join(repo, "tools", "doctl"))
	if err := os.MkdirAll(filepath.Join(repo, "systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"codelab-agent.service", "consul.service", "consul-template.service", "codelab-backup.timer", "codelab-ssh-hostkeys.service", "codelab-fleet.service", "codelab-fleet.timer", "codelab-firewall.service"} {
		if err := os.WriteFile(filepath.Join(repo, "systemd", u), []byte("[Unit]\nDescription="+u+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range []string{"api", "web", "landing", "sites", "neo4j"} {
		copyTree(t, filepath.Join(repoRoot(t), "roles", role), filepath.Join(repo, "roles", role))
	}
	if err := os.WriteFile(filepath.Join(repo, "go.work"), []byte("go 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return repo
}
