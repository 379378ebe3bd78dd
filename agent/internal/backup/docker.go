package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/codelab-app/infra/agent/internal/retry"
)

// Engine is the narrow view of Docker that backups need.
type Engine interface {
	// Find returns the id of the Compose service's container ("" if none).
	Find(ctx context.Context, project, service string) (string, error)
	// Running reports whether the container runs.
	Running(ctx context.Context, id string) (bool, error)
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Start starts the container and waits until it is healthy (or merely
	// running, when it has no healthcheck).
	Start(ctx context.Context, id string, timeout time.Duration) error
	// Admin runs `neo4j-admin args...` in a throwaway container of image
	// with the given volume and host folder mounts; it returns the output.
	Admin(ctx context.Context, run AdminRun) (string, error)
}

// AdminRun is one neo4j-admin invocation.
type AdminRun struct {
	Image   string
	User    string
	Volume  string // mounted at /data when set
	Dir     string // host folder mounted at /backups when set
	Network string // docker --network, for online backups
	Args    []string
}

// DockerCLI is Engine through the docker command.
type DockerCLI struct {
	Bin string // default "docker"
}

func (d DockerCLI) run(ctx context.Context, args ...string) (string, error) {
	bin := d.Bin
	if bin == "" {
		bin = "docker"
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	s := strings.TrimSpace(out.String())
	if err != nil {
		return s, fmt.Errorf("docker %s: %w: %s", args[0], err, lastLines(s, 5))
	}
	return s, nil
}

func (d DockerCLI) Find(ctx context.Context, project, service string) (string, error) {
	out, err := d.run(ctx, "ps", "-a", "-q", "--no-trunc",
		"--filter", "label=com.docker.compose.project="+project,
		"--filter", "label=com.docker.compose.service="+service)
	if err != nil {
		return "", err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return "", nil
	}
	return ids[0], nil
}

func (d DockerCLI) status(ctx context.Context, id string) (string, error) {
	return d.run(ctx, "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", id)
}

func (d DockerCLI) Running(ctx context.Context, id string) (bool, error) {
	s, err := d.status(ctx, id)
	if err != nil {
		return false, err
	}
	return strings.HasPrefix(s, "running "), nil
}

func (d DockerCLI) Stop(ctx context.Context, id string, timeout time.Duration) error {
	_, err := d.run(ctx, "stop", "-t", fmt.Sprint(int(timeout.Seconds())), id)
	return err
}

func (d DockerCLI) Start(ctx context.Context, id string, timeout time.Duration) error {
	if _, err := d.run(ctx, "start", id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return retry.Do(ctx, retry.Policy{Initial: 200 * time.Millisecond, Max: 2 * time.Second}, func(ctx context.Context) error {
		s, err := d.status(ctx, id)
		if err != nil {
			return err
		}
		switch s {
		case "running healthy", "running none":
			return nil
		case "running unhealthy":
			return errors.New("container is unhealthy")
		}
		if !strings.HasPrefix(s, "running") && !strings.HasPrefix(s, "restarting") {
			return retry.Permanent(fmt.Errorf("container is %s", s))
		}
		return fmt.Errorf("container is %s", s)
	})
}

func (d DockerCLI) Admin(ctx context.Context, r AdminRun) (string, error) {
	args := []string{"run", "--rm"}
	if r.User != "" {
		args = append(args, "--user", r.User)
	}
	if r.Network != "" {
		args = append(args, "--network", r.Network)
	}
	if r.Volume != "" {
		args = append(args, "-v", r.Volume+":/data")
	}
	if r.Dir != "" {
		args = append(args, "-v", r.Dir+":/backups")
	}
	args = append(args, r.Image, "neo4j-admin")
	args = append(args, r.Args...)
	out, err := d.run(ctx, args...)
	if err != nil {
		return out, fmt.Errorf("neo4j-admin %s: %w", strings.Join(r.Args, " "), err)
	}
	return out, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// ContainerState is what the monitor reads about a container.
type ContainerState struct {
	Status   string // running, exited, ...
	Health   string // healthy, unhealthy, starting, none
	Restarts int
}

// Inspect reads a container's status, health and restart count.
func (d DockerCLI) Inspect(ctx context.Context, id string) (ContainerState, error) {
	out, err := d.run(ctx, "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}}", id)
	if err != nil {
		return ContainerState{}, err
	}
	f := strings.Fields(out)
	if len(f) != 3 {
		return ContainerState{}, fmt.Errorf("docker inspect %s: unexpected output %q", short(id), out)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return ContainerState{}, fmt.Errorf("docker inspect %s: restart count %q", short(id), f[2])
	}
	return ContainerState{Status: f[0], Health: f[1], Restarts: n}, nil
}

// VolumePath returns a named volume's folder on the host.
func (d DockerCLI) VolumePath(ctx context.Context, volume string) (string, error) {
	return d.run(ctx, "volume", "inspect", "-f", "{{.Mountpoint}}", volume)
}
