package artifacts

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
)

// goModules are how each SourceGoModule artifact is built: its main package and the
// -X flags its own releases set.
var goModules = map[string]struct {
	pkg     string
	ldflags func(version string) string
}{
	"github.com/digitalocean/doctl": {
		pkg: "github.com/digitalocean/doctl/cmd/doctl",
		ldflags: func(v string) string {
			p := strings.SplitN(v, ".", 3)
			x := "github.com/digitalocean/doctl"
			return fmt.Sprintf("-X %s.Major=%s -X %s.Minor=%s -X %s.Patch=%s -X %s.Label=release", x, p[0], x, p[1], x, p[2], x)
		},
	},
}

// CheckModulePin checks that the pinning module in repo/a.ToolDir() requires a.Module at
// the version the versions file names, so the two cannot drift.
func CheckModulePin(repo string, a Artifact) error {
	p := filepath.Join(repo, a.ToolDir(), "go.mod")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("artifact %s: read its pinning module: %w", a.Name, err)
	}
	f, err := modfile.ParseLax(p, b, nil)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == a.Module {
			if r.Mod.Version != "v"+a.Version {
				return fmt.Errorf("artifact %s: %s requires %s %s but the versions file says %s; change both together",
					a.Name, filepath.Join(a.ToolDir(), "go.mod"), a.Module, r.Mod.Version, a.Version)
			}
			if _, err := os.Stat(filepath.Join(repo, a.ToolDir(), "go.sum")); err != nil {
				return fmt.Errorf("artifact %s: %s has no go.sum: %w", a.Name, a.ToolDir(), err)
			}
			return nil
		}
	}
	return fmt.Errorf("artifact %s: %s does not require %s", a.Name, filepath.Join(a.ToolDir(), "go.mod"), a.Module)
}

// BuildModule builds a SourceGoModule artifact for linux/amd64 into out, from its pinning
// module with GOWORK=off and -mod=readonly: go verifies every module against the
// committed go.sum, and a module missing from it fails the build.
func BuildModule(ctx context.Context, repo string, a Artifact, out string, stderr io.Writer) error {
	if err := CheckModulePin(repo, a); err != nil {
		return err
	}
	m, ok := goModules[a.Module]
	if !ok {
		return fmt.Errorf("artifact %s: no build recipe for module %s", a.Name, a.Module)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-trimpath",
		"-ldflags", "-s -w "+m.ldflags(a.Version), "-o", out, m.pkg)
	cmd.Dir = filepath.Join(repo, a.ToolDir())
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s %s from %s: %w", a.Name, a.Version, a.ToolDir(), err)
	}
	return nil
}
