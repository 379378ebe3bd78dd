package backup

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/codelab-app/infra/agent/internal/containers"
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
	// VolumePath returns a named volume's folder on the host.
	VolumePath(ctx context.Context, name string) (string, error)
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
	Network string // network mode, e.g. "host" for online backups
	Args    []string
}

// Docker is Engine over the Docker Engine API.
type Docker struct {
	*containers.Engine
}

// Admin runs neo4j-admin in a throwaway container, removed afterwards
// (also when ctx is cancelled).
func (d Docker) Admin(ctx context.Context, r AdminRun) (string, error) {
	o := containers.OneOff{Image: r.Image, User: r.User, Network: r.Network, Cmd: append([]string{"neo4j-admin"}, r.Args...)}
	if r.Volume != "" {
		o.Binds = append(o.Binds, r.Volume+":/data")
	}
	if r.Dir != "" {
		o.Binds = append(o.Binds, r.Dir+":/backups")
	}
	out, err := d.RunOnce(ctx, o)
	if err != nil {
		return out, fmt.Errorf("neo4j-admin %s: %w", strings.Join(r.Args, " "), err)
	}
	return out, nil
}
