package containers

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// Compose runs one Compose project with the docker compose plugin.
type Compose struct {
	Docker  string // the docker CLI; default "docker"
	Project string // the role
	File    string // /root/docker/<role>/compose.yaml
	// Lock, when set, is a flock(2) file held for the whole `up`: the
	// same file consul-template's exec takes through flock(1), so the
	// agent and consul-template never apply the project at the same time
	// (two concurrent ups create the project network twice).
	Lock string
	// Exec runs a command and returns its combined output; nil runs it
	// for real. Unit tests replace it.
	Exec func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// UpArgs is the exact command Up runs, for logs and hints.
func (c Compose) UpArgs(timeout time.Duration) []string {
	args := []string{"compose", "-p", c.Project, "-f", c.File, "up", "-d", "--wait", "--pull", "never"}
	if timeout > 0 {
		args = append(args, "--wait-timeout", fmt.Sprint(int(timeout.Seconds())))
	}
	return args
}

func (c Compose) docker() string {
	if c.Docker == "" {
		return "docker"
	}
	return c.Docker
}

// Up runs `docker compose -p <role> -f <file> up -d --wait --pull never`:
// it creates or recreates only containers whose config changed and waits
// until every service is running and healthy, up to timeout.
func (c Compose) Up(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	run := c.Exec
	if run == nil {
		run = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, name, args...)
			cmd.WaitDelay = 5 * time.Second
			return cmd.CombinedOutput()
		}
	}
	if c.Lock != "" {
		unlock, err := fsutil.Lock(ctx, c.Lock, nil)
		if err != nil {
			return fmt.Errorf("compose up %s: %w", c.Project, err)
		}
		defer unlock()
	}
	args := c.UpArgs(timeout)
	out, err := run(ctx, c.docker(), args...)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", c.docker(), strings.Join(args, " "), err, lastLines(string(out), 8))
	}
	return nil
}

// Container is what status shows about one of the project's containers.
type Container struct {
	Name        string `json:"name"`
	Service     string `json:"service"`
	State       string `json:"state"`  // running, exited, restarting...
	Health      string `json:"health"` // healthy, unhealthy, starting, or "" without a healthcheck
	Image       string `json:"image"`
	ImageDigest string `json:"imageDigest,omitempty"`
	ID          string `json:"id"`
}

// ProjectLabel is Compose's project label.
const ProjectLabel = "com.docker.compose.project"

// List returns the project's containers, sorted by service.
func List(ctx context.Context, api API, project string) ([]Container, error) {
	f := filters.NewArgs(filters.Arg("label", ProjectLabel+"="+project))
	list, err := api.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", project, err)
	}
	var out []Container
	for _, s := range list {
		c := Container{ID: s.ID, Service: s.Labels["com.docker.compose.service"], State: string(s.State), Image: s.Image}
		if len(s.Names) > 0 {
			c.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		if in, err := api.ContainerInspect(ctx, s.ID); err == nil && in.State != nil {
			c.State = string(in.State.Status)
			if in.State.Health != nil {
				c.Health = string(in.State.Health.Status)
			}
		}
		if img, err := api.ImageInspect(ctx, s.ImageID); err == nil {
			c.ImageDigest = repoDigest(img.RepoDigests, s.Image)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out, nil
}

// Failure says which service kept compose up from succeeding.
type Failure struct {
	Service string
	State   string // e.g. "running (unhealthy)" or "exited (1)"
	Logs    []string
}

// Diagnose finds the first service that is not running and healthy and
// returns its last log lines.
func Diagnose(ctx context.Context, api API, project string, tail int) (Failure, bool) {
	list, err := List(ctx, api, project)
	if err != nil {
		return Failure{}, false
	}
	for _, c := range list {
		if c.State == "running" && (c.Health == "" || c.Health == "healthy") {
			continue
		}
		f := Failure{Service: c.Service, State: c.State}
		if c.Health != "" {
			f.State += " (" + c.Health + ")"
		}
		f.Logs = Logs(ctx, api, c.ID, tail)
		return f, true
	}
	return Failure{}, false
}

// Logs returns a container's last n log lines (stdout and stderr).
func Logs(ctx context.Context, api API, id string, n int) []string {
	rc, err := api.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(n)})
	if err != nil {
		return []string{"(logs unavailable: " + err.Error() + ")"}
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := stdcopy.StdCopy(&b, &b, io.LimitReader(rc, 1<<20)); err != nil {
		// A TTY container's logs are not multiplexed.
		b.Reset()
	}
	var lines []string
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
