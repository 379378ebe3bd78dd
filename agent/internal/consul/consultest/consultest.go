// Package consultest runs real Consul agents for integration tests.
package consultest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/tools/testenv"
)

// Start runs a real Consul agent with args (e.g. "-dev") on free loopback
// ports and returns a client for its HTTP API; the agent stops when the test
// ends. It does not wait for the agent to answer.
func Start(t testing.TB, args ...string) consul.Client {
	t.Helper()
	port := func() string { return strconv.Itoa(testenv.FreePort(t, "127.0.0.1")) }
	http := port()
	dir := t.TempDir()
	args = append([]string{"agent", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", http, "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-serf-lan-port", port(), "-serf-wan-port", port(),
		"-server-port", port(), "-data-dir", dir, "-log-level", "warn"}, args...)
	cmd := exec.Command("consul", args...)
	logf, err := os.Create(filepath.Join(dir, "consul.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = logf.Close() })
	return consul.New(net.JoinHostPort("127.0.0.1", http))
}
