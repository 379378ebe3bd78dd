package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/retry"
)

// RealProbes are the production probes for the settings c. lag, when not
// nil, should Watch for as long as the monitor runs.
func RealProbes(root fsutil.Root, c backup.Config, docker *containers.Engine) (p Probes, lag *RenderLag) {
	p = Probes{
		Container: func(ctx context.Context) (containers.State, bool, error) {
			id, err := docker.Find(ctx, c.Project, c.Service)
			if err != nil || id == "" {
				return containers.State{}, false, err
			}
			st, err := docker.Inspect(ctx, id)
			return st, err == nil, err
		},
		StorePath: func(ctx context.Context) (string, error) {
			if c.Monitor.StorePath != "" {
				return root.Path(c.Monitor.StorePath), nil
			}
			return docker.VolumePath(ctx, c.Volume)
		},
		Bolt: func(ctx context.Context) error { return BoltHandshake(ctx, c.Monitor.BoltAddr) },
		HTTP: func(ctx context.Context) error { return HTTPGet(ctx, c.Monitor.HTTPURL) },
	}
	if c.Monitor.KVPrefix != "" && c.Monitor.RenderedFile != "" {
		lag = &RenderLag{Consul: consul.New(c.Monitor.ConsulAddr), Prefix: c.Monitor.KVPrefix, File: root.Path(c.Monitor.RenderedFile)}
		p.RenderLag = lag.Probe
	}
	return p, lag
}

// BoltHandshake opens addr and performs Bolt's version handshake.
func BoltHandshake(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// Magic, then four proposed versions: 5.4 down to 4.4, and none.
	hello := []byte{0x60, 0x60, 0xb0, 0x17, 0, 4, 4, 5, 0, 0, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := c.Write(hello); err != nil {
		return fmt.Errorf("bolt %s: %w", addr, err)
	}
	v := make([]byte, 4)
	if _, err := io.ReadFull(c, v); err != nil {
		return fmt.Errorf("bolt %s: no handshake answer: %w", addr, err)
	}
	if v[0]|v[1]|v[2]|v[3] == 0 {
		return fmt.Errorf("bolt %s: no common protocol version", addr)
	}
	return nil
}

// HTTPGet fails unless url answers 2xx.
func HTTPGet(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// RenderLag measures consul-template's render lag for one KV folder: when
// the folder's X-Consul-Index moves, a change is pending until the
// rendered file's modification time passes the last moment the old index
// was seen. consul-template rewrites the file only when its bytes change,
// and every key of the folder is in the file, so each change shows. Watch
// notices changes at once (Consul blocking queries); without it, each Probe
// looks, and the lag is an upper bound off by at most one scrape interval.
type RenderLag struct {
	Consul consul.Client
	Prefix string // codelab/prod/neo4j
	File   string // the rendered file, host path
	Now    func() time.Time

	mu        sync.Mutex
	index     uint64    // 0: not seen yet
	seenAt    time.Time // when the current index was last seen
	changedAt time.Time // zero: nothing pending
	before    time.Time // when the previous index was last seen
	last      time.Duration
}

func (r *RenderLag) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *RenderLag) observe(index uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now()
	if r.index != 0 && index != r.index && r.changedAt.IsZero() {
		r.changedAt, r.before = t, r.seenAt
	}
	r.index, r.seenAt = index, t
}

// Watch follows the folder's index with blocking queries until ctx ends.
func (r *RenderLag) Watch(ctx context.Context) {
	for ctx.Err() == nil {
		r.mu.Lock()
		index := r.index
		r.mu.Unlock()
		var got uint64
		// Consul restarting: look again with backoff until ctx ends.
		if err := retry.Do(ctx, retry.Policy{Initial: time.Second, Max: 30 * time.Second}, func(ctx context.Context) error {
			var err error
			got, err = r.Consul.KVIndex(ctx, r.Prefix, index, 5*time.Minute)
			return err
		}); err != nil {
			return
		}
		r.observe(got)
	}
}

// Probe returns the pending change's wait so far, or the last change's lag.
func (r *RenderLag) Probe(ctx context.Context) (time.Duration, error) {
	index, err := r.Consul.KVIndex(ctx, r.Prefix, 0, 0)
	if err != nil {
		return 0, err
	}
	r.observe(index)
	var mtime time.Time
	if st, err := os.Stat(r.File); err == nil {
		mtime = st.ModTime()
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changedAt.IsZero() {
		return r.last, nil
	}
	if mtime.After(r.before) {
		// Rendered since the old index was last seen.
		r.last = max(mtime.Sub(r.changedAt), 0)
		r.changedAt = time.Time{}
		return r.last, nil
	}
	return r.now().Sub(r.changedAt), nil
}

// Local is the monitor of this droplet from its settings, with the real
// probes, for `status` (which calls Collect and BackupHealth directly).
func Local(root fsutil.Root) (*Monitor, error) {
	c, err := backup.LoadConfig(root)
	if err != nil {
		return nil, err
	}
	docker, err := containers.NewEngine()
	if err != nil {
		return nil, err
	}
	p, _ := RealProbes(root, c, docker)
	return &Monitor{Root: root, Config: c, Probes: p}, nil
}
