package containers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/codelab-app/infra/agent/internal/retry"
)

// EngineAPI is the part of the Docker Engine API that Engine uses.
type EngineAPI interface {
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
	ContainerStop(ctx context.Context, id string, opts container.StopOptions) error
	ContainerStart(ctx context.Context, id string, opts container.StartOptions) error
	ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error)
	ContainerWait(ctx context.Context, id string, cond container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
	ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error)
	VolumeInspect(ctx context.Context, id string) (volume.Volume, error)
}

// Engine drives one Compose service's container (find, stop, start and
// wait until healthy, inspect), its volumes, and throwaway containers next
// to it (the backup's admin commands), through the Engine API.
type Engine struct {
	API EngineAPI
	// StartPoll is how often Start looks at a starting container; default
	// 200ms doubling to 2s.
	StartPoll retry.Policy
}

// NewEngine is an Engine on the local dockerd (see NewClient).
func NewEngine() (*Engine, error) {
	c, err := NewClient()
	if err != nil {
		return nil, err
	}
	return &Engine{API: c}, nil
}

// ServiceLabel is Compose's service label.
const ServiceLabel = "com.docker.compose.service"

// OneOffLabel marks the throwaway containers RunOnce creates.
const OneOffLabel = "org.codelab.oneoff"

// removeTimeout bounds removing a throwaway container, also after the
// caller's context ended.
const removeTimeout = 30 * time.Second

// Find returns the id of the Compose service's container, "" when there is
// none (the newest, when there are several).
func (e *Engine) Find(ctx context.Context, project, service string) (string, error) {
	f := filters.NewArgs(filters.Arg("label", ProjectLabel+"="+project), filters.Arg("label", ServiceLabel+"="+service))
	list, err := e.API.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return "", fmt.Errorf("find the container of %s/%s: %w", project, service, err)
	}
	if len(list) == 0 {
		return "", nil
	}
	return list[0].ID, nil
}

// State is what the monitor reads about a container.
type State struct {
	Status   string // running, exited, ...
	Health   string // healthy, unhealthy, starting, none
	Restarts int
}

// Inspect reads a container's status, health and restart count.
func (e *Engine) Inspect(ctx context.Context, id string) (State, error) {
	in, err := e.API.ContainerInspect(ctx, id)
	if err != nil {
		return State{}, fmt.Errorf("inspect container %s: %w", short(id), err)
	}
	st := State{Health: "none", Restarts: in.RestartCount}
	if in.State != nil {
		st.Status = string(in.State.Status)
		if in.State.Health != nil {
			st.Health = string(in.State.Health.Status)
		}
	}
	return st, nil
}

// Running reports whether the container runs.
func (e *Engine) Running(ctx context.Context, id string) (bool, error) {
	st, err := e.Inspect(ctx, id)
	return st.Status == string(container.StateRunning), err
}

// Stop stops the container, killing it after timeout.
func (e *Engine) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout.Seconds())
	if err := e.API.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("stop container %s: %w", short(id), err)
	}
	return nil
}

// Start starts the container and waits, up to timeout, until it is healthy
// (or merely running, when it has no healthcheck).
func (e *Engine) Start(ctx context.Context, id string, timeout time.Duration) error {
	if err := e.API.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", short(id), err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pol := e.StartPoll
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 200*time.Millisecond, 2*time.Second
	}
	return retry.Do(ctx, pol, func(ctx context.Context) error {
		st, err := e.Inspect(ctx, id)
		if err != nil {
			return err
		}
		switch {
		case st.Status == "running" && (st.Health == "healthy" || st.Health == "none"):
			return nil
		case st.Status == "running" && st.Health == "unhealthy":
			return fmt.Errorf("container %s is unhealthy", short(id))
		case st.Status == "running" || st.Status == "restarting" || st.Status == "created":
			return fmt.Errorf("container %s is %s (%s)", short(id), st.Status, st.Health)
		}
		return retry.Permanent(fmt.Errorf("container %s is %s", short(id), st.Status))
	})
}

// VolumePath returns a named volume's folder on the host.
func (e *Engine) VolumePath(ctx context.Context, name string) (string, error) {
	v, err := e.API.VolumeInspect(ctx, name)
	if err != nil {
		return "", fmt.Errorf("inspect volume %s: %w", name, err)
	}
	return v.Mountpoint, nil
}

// OneOff is a throwaway container: created, run to its end, removed.
type OneOff struct {
	Image   string
	User    string   // uid[:gid]; "" is the image's
	Network string   // network mode, e.g. "host"; "" is the default bridge
	Binds   []string // volume-or-host-path:container-path
	Cmd     []string // the image's entrypoint runs these
}

// ExitError is a throwaway container that exited non-zero.
type ExitError struct {
	Code   int64
	Output string // its last lines
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("exit status %d: %s", e.Code, e.Output)
}

// RunOnce runs o to its end and returns its output (stdout and stderr),
// like `docker run --rm`: the image is pulled when it is not here, and the
// container is removed afterwards, also when ctx is cancelled.
func (e *Engine) RunOnce(ctx context.Context, o OneOff) (out string, err error) {
	cfg := &container.Config{Image: o.Image, User: o.User, Cmd: o.Cmd, Labels: map[string]string{OneOffLabel: "1"}}
	host := &container.HostConfig{Binds: o.Binds, NetworkMode: container.NetworkMode(o.Network)}
	created, err := e.API.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if errdefs.IsNotFound(err) {
		if perr := e.pull(ctx, o.Image); perr != nil {
			return "", perr
		}
		created, err = e.API.ContainerCreate(ctx, cfg, host, nil, nil, "")
	}
	if err != nil {
		return "", fmt.Errorf("create a container of %s: %w", o.Image, err)
	}
	id := created.ID
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		if rerr := e.API.ContainerRemove(rctx, id, container.RemoveOptions{Force: true}); rerr != nil && !errdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove throwaway container %s: %w", short(id), rerr))
		}
	}()
	// Wait before starting, so that a quick exit is not missed.
	waitCh, waitErr := e.API.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := e.API.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("start a container of %s: %w", o.Image, err)
	}
	var code int64
	select {
	case w := <-waitCh:
		if w.Error != nil && w.Error.Message != "" {
			return "", fmt.Errorf("wait for container %s: %s", short(id), w.Error.Message)
		}
		code = w.StatusCode
	case err := <-waitErr:
		return "", fmt.Errorf("wait for container %s: %w", short(id), err)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	out, err = e.output(ctx, id)
	if err != nil {
		return "", err
	}
	if code != 0 {
		return out, &ExitError{Code: code, Output: lastLines(out, 5)}
	}
	return out, nil
}

// output is a stopped container's whole log, stdout and stderr
// interleaved, trimmed.
func (e *Engine) output(ctx context.Context, id string) (string, error) {
	rc, err := e.API.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", fmt.Errorf("read the output of container %s: %w", short(id), err)
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := stdcopy.StdCopy(&b, &b, io.LimitReader(rc, 16<<20)); err != nil {
		return "", fmt.Errorf("read the output of container %s: %w", short(id), err)
	}
	return strings.TrimSpace(b.String()), nil
}

// pull pulls ref without registry credentials (the backup's admin image
// is public, or already here).
func (e *Engine) pull(ctx context.Context, ref string) error {
	rc, err := e.API.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer rc.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
