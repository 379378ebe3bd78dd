package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Images the systemd containers start from.
const (
	// BaseImage is make deps' debootstrapped Debian 12 with systemd.
	BaseImage = "codelab-local/debian-12-x64:latest"
	// DockerImage is BaseImage plus Debian's docker.io, derived on demand.
	DockerImage = "codelab-local/debian-12-docker:latest"
)

// SystemdFlags are the docker run flags a systemd container needs on this
// machine (--privileged does not work here; see DEVELOPERS.md).
var SystemdFlags = []string{
	"--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
	"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
	"--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
	"--tmpfs", "/run", "--tmpfs", "/run/lock",
}

// Container is a running systemd container.
type Container struct {
	ID   string
	Name string
	IP   string // on Docker's default bridge
}

// ContainerOptions configure StartSystemd.
type ContainerOptions struct {
	Image string // default BaseImage
	// Docker gives /var/lib/docker a volume so dockerd runs inside.
	Docker bool
	// Keep leaves the container running after the test (for debugging).
	Keep bool
}

// StartSystemd runs a container with systemd as PID 1 and waits until
// systemd has finished starting (running or degraded). It is removed, with
// its volumes, when the test ends.
func StartSystemd(t testing.TB, o ContainerOptions) *Container {
	t.Helper()
	if o.Image == "" {
		o.Image = BaseImage
	}
	if _, err := Output(context.Background(), "docker", "image", "inspect", o.Image); err != nil {
		t.Fatalf("integration prerequisite missing: image %s (make deps builds %s)", o.Image, BaseImage)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "codelab-test-" + hex.EncodeToString(rnd[:])
	args := []string{"run", "-d", "--name", name, "--hostname", name}
	args = append(args, SystemdFlags...)
	if o.Docker {
		args = append(args, "-v", "/var/lib/docker")
	}
	args = append(args, o.Image, "/sbin/init")
	id := Run(t, "docker", args...)
	c := &Container{ID: id, Name: name}
	t.Cleanup(func() {
		if o.Keep || (t.Failed() && os.Getenv("CODELAB_KEEP") == "1") {
			t.Logf("keeping container %s", name)
			return
		}
		_, _ = Output(context.Background(), "docker", "rm", "-f", "-v", id)
	})
	// systemctl cannot connect until systemd has opened its socket; then
	// --wait blocks until start-up is over.
	var out string
	err := waitFor(context.Background(), 90*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, _ = Output(ctx, "docker", "exec", id, "systemctl", "is-system-running", "--wait")
		if out != "running" && out != "degraded" {
			return fmt.Errorf("is-system-running: %s", out)
		}
		return nil
	})
	if err != nil {
		logs, _ := Output(context.Background(), "docker", "logs", "--tail", "30", id)
		t.Fatalf("systemd in %s did not come up: is-system-running=%q\n%s", name, out, logs)
	}
	c.IP = Run(t, "docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", id)
	return c
}

// Exec runs a command in the container and returns its combined output.
func (c *Container) Exec(ctx context.Context, args ...string) (string, error) {
	return Output(ctx, "docker", append([]string{"exec", c.ID}, args...)...)
}

// MustExec is Exec that fails t on error.
func (c *Container) MustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.Exec(context.Background(), args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", c.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// CopyIn copies a host file or folder into the container.
func (c *Container) CopyIn(t testing.TB, src, dst string) {
	t.Helper()
	c.MustExec(t, "mkdir", "-p", filepath.Dir(dst))
	Run(t, "docker", "cp", src, c.ID+":"+dst)
}

// WriteFile writes data to path in the container.
func (c *Container) WriteFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(tmp, data, perm); err != nil {
		t.Fatal(err)
	}
	c.CopyIn(t, tmp, path)
	c.MustExec(t, "chmod", fmt.Sprintf("%o", perm.Perm()), path)
}

// EnsureDockerImage returns DockerImage, deriving it from BaseImage with
// Debian's docker.io (from Debian's apt mirror) when it does not exist yet.
func EnsureDockerImage(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := Output(context.Background(), "docker", "image", "inspect", DockerImage); err == nil {
		return DockerImage
	}
	dir := t.TempDir()
	df := "FROM " + BaseImage + "\n" +
		"RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io && rm -rf /var/lib/apt/lists/*\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := outputEnv([]string{"DOCKER_BUILDKIT=0"}, "docker", "build", "-t", DockerImage, dir); err != nil {
		t.Fatalf("derive %s (needs Debian's apt mirror from a container): %v\n%s", DockerImage, err, out)
	}
	return DockerImage
}
