package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// RegistryBin is Debian's registry v2.
const RegistryBin = "/usr/bin/docker-registry"

// Registry is a local registry. It may listen on several addresses (one
// docker-registry process each, all sharing one storage folder), so the
// host pushes to a loopback address, which dockerd trusts without TLS,
// while containers pull from the bridge gateway.
type Registry struct {
	Addrs []string // host:port, in the order asked for
	Dir   string   // storage
	dir   string   // configs and logs
	procs []*exec.Cmd
}

// Addr is the first address.
func (r *Registry) Addr() string { return r.Addrs[0] }

// StartRegistry starts docker-registry listening on each host (default
// 127.0.0.1) at a free port. It stops when the test ends.
func StartRegistry(t testing.TB, hosts ...string) *Registry {
	t.Helper()
	if _, err := os.Stat(RegistryBin); err != nil {
		t.Fatalf("integration prerequisite missing: %s (apt-get install docker-registry; make deps)", RegistryBin)
	}
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	dir := t.TempDir()
	r := &Registry{Dir: filepath.Join(dir, "storage"), dir: dir}
	t.Cleanup(r.Stop)
	for _, h := range hosts {
		r.Addrs = append(r.Addrs, net.JoinHostPort(h, strconv.Itoa(FreePort(t, h))))
	}
	r.start(t)
	return r
}

// Restart starts the registry again after Stop, on the same addresses and
// with the same storage: a registry that was down and came back.
func (r *Registry) Restart(t testing.TB) {
	t.Helper()
	r.Stop()
	r.start(t)
}

func (r *Registry) start(t testing.TB) {
	t.Helper()
	r.procs = nil
	for i, addr := range r.Addrs {
		cfg := filepath.Join(r.dir, fmt.Sprintf("config-%d.yml", i))
		body := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, r.Dir, addr)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(RegistryBin, "serve", cfg)
		logf, err := os.OpenFile(filepath.Join(r.dir, fmt.Sprintf("registry-%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start docker-registry: %v", err)
		}
		r.procs = append(r.procs, cmd)
		url := "http://" + addr + "/v2/"
		if err := waitFor(context.Background(), 15*time.Second, func() error {
			resp, err := http.Get(url)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", url, resp.Status)
			}
			return nil
		}); err != nil {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("docker-registry on %s did not answer: %v\n%s", addr, err, log)
		}
	}
}

// Stop stops every registry process (idempotent).
func (r *Registry) Stop() {
	for _, c := range r.procs {
		if c.Process != nil && c.ProcessState == nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
}
