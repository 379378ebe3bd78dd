// Package testenv holds helpers that integration suites share: a local
// Docker registry (Debian's docker-registry), FROM scratch test images built
// from codelab-testapp, and systemd containers.
//
// Integration tests call Integration first: without CODELAB_INTEGRATION=1
// they skip with a clear message; with it, a missing prerequisite fails.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvIntegration switches the integration tiers on (make test sets it).
const EnvIntegration = "CODELAB_INTEGRATION"

// Enabled reports whether integration tests should run.
func Enabled() bool { return os.Getenv(EnvIntegration) == "1" }

// Integration skips t unless CODELAB_INTEGRATION=1, and then requires the
// named programs (on PATH or absolute): a missing one fails the test. It is
// the one integration switch of every module. "docker" also requires a
// dockerd that answers.
func Integration(t testing.TB, programs ...string) {
	t.Helper()
	if !Enabled() {
		t.Skipf("integration test: set %s=1 (make test does) to run it against real programs", EnvIntegration)
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("integration prerequisite missing: %s (%v); run make deps", p, err)
		}
		if p == "docker" {
			if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
				t.Fatalf("integration prerequisite missing: dockerd does not answer (make deps starts it): %v: %s", err, out)
			}
		}
	}
}

// Run runs a command and returns its combined output, failing t on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Output(context.Background(), name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Output runs a command and returns its combined output.
func Output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return strings.TrimSpace(b.String()), err
}

// FreePort returns a TCP port that was free on host a moment ago.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("find a free port on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// BridgeGateway is the host's address on Docker's default bridge, which
// containers on that bridge can reach.
func BridgeGateway(t testing.TB) string {
	t.Helper()
	out := Run(t, "docker", "network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}")
	if net.ParseIP(out) != nil {
		return out
	}
	// No gateway in IPAM: the bridge interface's own address is it.
	name := Run(t, "docker", "network", "inspect", "bridge", "-f", `{{index .Options "com.docker.network.bridge.name"}}`)
	if name == "" {
		name = "docker0"
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatalf("docker bridge %s: %v", name, err)
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatalf("docker bridge %s has no IPv4 address", name)
	return ""
}

// toolsDir is this module's folder.
func toolsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// RepoDir is the monorepo's root.
func RepoDir() string { return filepath.Dir(toolsDir()) }

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// BuildGo builds a main package of this repository statically
// (CGO_ENABLED=0) and returns the binary's path. pkg is relative to the
// repository root (./agent/cmd/codelab-agent). Builds are cached per process.
func BuildGo(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "codelab-build-*")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = RepoDir()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	buildCache[pkg] = out
	return out
}

// TestApp builds codelab-testapp.
func TestApp(t testing.TB) string { return BuildGo(t, "./tools/cmd/codelab-testapp") }

// waitFor calls fn every interval until it returns nil or the deadline.
func waitFor(ctx context.Context, timeout time.Duration, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		if err = fn(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func outputEnv(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return strings.TrimSpace(b.String()), err
}

// ShortTempDir is a temporary folder with a short path (t.TempDir's can be
// too long for the Unix sockets GnuPG puts in its home); removed when the
// test ends.
func ShortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
