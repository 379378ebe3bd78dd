package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// AgentPackage and AgentVersionPackage locate codelab-agent in the workspace.
const (
	AgentPackage        = "./agent/cmd/codelab-agent"
	AgentVersionPackage = "github.com/codelab-app/infra/agent/internal/version"
)

// AgentBuild is one build of the static codelab-agent.
type AgentBuild struct {
	GoBin   string // "go" when empty
	Repo    string // the workspace root (holds go.work)
	Out     string
	Version string
	Commit  string
	Stderr  io.Writer
}

// AgentBuilder builds codelab-agent; GoBuildAgent in production, a fake in unit tests.
type AgentBuilder func(ctx context.Context, b AgentBuild) error

// AgentBuildArgs are the `go` arguments that build the agent.
func AgentBuildArgs(b AgentBuild) []string {
	ldflags := fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", AgentVersionPackage, b.Version, AgentVersionPackage, b.Commit)
	return []string{"build", "-trimpath", "-ldflags", ldflags, "-o", b.Out, AgentPackage}
}

// GoBuildAgent runs `CGO_ENABLED=0 go build -trimpath -ldflags ... -o OUT
// ./agent/cmd/codelab-agent` from the workspace root, for linux/amd64.
func GoBuildAgent(ctx context.Context, b AgentBuild) error {
	goBin := b.GoBin
	if goBin == "" {
		goBin = "go"
	}
	for _, s := range []string{b.Version, b.Commit} {
		if s == "" || strings.ContainsAny(s, " \t\n'\"") {
			return fmt.Errorf("build codelab-agent: version and commit must be non-empty words, got %q", s)
		}
	}
	cmd := exec.CommandContext(ctx, goBin, AgentBuildArgs(b)...)
	cmd.Dir = b.Repo
	// The agent is built in the repository's workspace, whatever GOWORK the caller has.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK="+filepath.Join(b.Repo, "go.work"))
	cmd.Stdout, cmd.Stderr = b.Stderr, b.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build codelab-agent (%s in %s): %w", AgentPackage, b.Repo, err)
	}
	if _, err := os.Stat(b.Out); err != nil {
		return fmt.Errorf("build codelab-agent: no binary at %s: %w", b.Out, err)
	}
	return nil
}

// gitDescribe returns the agent version and commit from git, or "dev"/"unknown".
func gitDescribe(ctx context.Context, repo string) (version, commit string) {
	run := func(args ...string) string {
		out, err := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	version = run("describe", "--tags", "--always", "--dirty")
	commit = run("rev-parse", "HEAD")
	if version == "" {
		version = "dev"
	}
	if commit == "" {
		commit = "unknown"
	}
	return version, commit
}
