// Package monitor is the neo4j role's monitor (codelab-monitor.service,
// `codelab-agent monitor`): a Prometheus endpoint on the droplet's VPC
// address with the backup's age, result, size and duration, the store's
// size, free disk, the database container's health and restarts, Bolt and
// HTTP reachability and consul-template's render lag; and /health/backup,
// the Consul check that turns critical when the newest verified backup is
// older than its threshold.
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// Probes are the monitor's views of the world; function fields, so unit
// tests replace each one.
type Probes struct {
	// Container returns the database container's state (found=false when
	// there is none).
	Container func(ctx context.Context) (st containers.State, found bool, err error)
	// StorePath returns the data volume's folder on the host.
	StorePath func(ctx context.Context) (string, error)
	// Bolt and HTTP return nil when the database answers.
	Bolt func(ctx context.Context) error
	HTTP func(ctx context.Context) error
	// RenderLag is how long a Consul KV change has waited for (or waited
	// for, last time) consul-template to render it.
	RenderLag func(ctx context.Context) (time.Duration, error)
}

// Monitor collects the metrics.
type Monitor struct {
	Root   fsutil.Root
	Config backup.Config
	Probes Probes
	Log    *slog.Logger
	Now    func() time.Time
	// Timeout bounds one collection's probes; default 5s.
	Timeout time.Duration
	// MaxStale is how long /metrics and /view serve one collection before
	// the next request collects again; default (and at most) 15s. A scrape
	// storm therefore walks the store at most once per MaxStale.
	MaxStale time.Duration

	mu     sync.Mutex
	cached *View
}

// DefaultMaxStale is the cache lifetime of a collection, and its maximum.
const DefaultMaxStale = 15 * time.Second

// Cached returns the last collection when it is younger than MaxStale, and
// otherwise collects again. Concurrent callers share one collection.
func (m *Monitor) Cached(ctx context.Context) View {
	stale := m.MaxStale
	if stale <= 0 || stale > DefaultMaxStale {
		stale = DefaultMaxStale
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cached != nil {
		if age := m.now().Sub(m.cached.At); age >= 0 && age < stale {
			return *m.cached
		}
	}
	v := m.Collect(ctx)
	m.cached = &v
	return v
}

func (m *Monitor) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// View is the monitor's answer, for /view and `status`.
type View struct {
	SchemaVersion int          `json:"schemaVersion"`
	At            time.Time    `json:"at"`
	Backup        backup.State `json:"backup"`
	// BackupAgeSeconds is the newest verified backup's age; -1 when none.
	BackupAgeSeconds float64 `json:"backupAgeSeconds"`
	MaxAgeSeconds    float64 `json:"maxAgeSeconds"`
	BackupOK         bool    `json:"backupOk"` // a verified backup younger than MaxAge
	StoreSizeBytes   int64   `json:"storeSizeBytes"`
	// DiskFreeBytes by path: the backup folder and the store.
	DiskFreeBytes     map[string]int64 `json:"diskFreeBytes"`
	Container         string           `json:"container"` // running/healthy, exited, absent
	ContainerHealth   string           `json:"containerHealth,omitempty"`
	ContainerRestarts int              `json:"containerRestarts"`
	BoltUp            bool             `json:"boltUp"`
	HTTPUp            bool             `json:"httpUp"`
	RenderLagSeconds  float64          `json:"renderLagSeconds"`
	// QuarantinedObjects are the bucket's objects in quarantine/ (backups
	// whose manifest cannot be used), as the last backup run found them.
	QuarantinedObjects int `json:"quarantinedObjects"`
	// Errors are probes that could not answer, by probe.
	Errors map[string]string `json:"errors,omitempty"`
}

// Collect runs every probe once.
func (m *Monitor) Collect(ctx context.Context) View {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	now := m.now()
	v := View{SchemaVersion: 1, At: now.UTC(), BackupAgeSeconds: -1, MaxAgeSeconds: m.Config.MaxAge.Seconds(),
		DiskFreeBytes: map[string]int64{}, Errors: map[string]string{}, Container: "absent"}
	var mu sync.Mutex
	fail := func(probe string, err error) {
		mu.Lock()
		v.Errors[probe] = err.Error()
		mu.Unlock()
	}
	st, err := backup.ReadState(m.Root)
	if err != nil {
		fail("backup-state", err)
	}
	v.Backup = st
	v.QuarantinedObjects = st.QuarantinedObjects()
	if n := st.NewestVerified; n != nil {
		v.BackupAgeSeconds = now.Sub(n.At).Seconds()
		v.BackupOK = now.Sub(n.At) <= m.Config.MaxAge.Duration
	}

	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	if p := m.Probes.Container; p != nil {
		run(func() {
			cs, found, err := p(ctx)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				v.Errors["container"] = err.Error()
			case found:
				v.Container, v.ContainerHealth, v.ContainerRestarts = cs.Status, cs.Health, cs.Restarts
			}
		})
	}
	if p := m.Probes.Bolt; p != nil {
		run(func() {
			err := p(ctx)
			mu.Lock()
			v.BoltUp = err == nil
			mu.Unlock()
		})
	}
	if p := m.Probes.HTTP; p != nil {
		run(func() {
			err := p(ctx)
			mu.Lock()
			v.HTTPUp = err == nil
			mu.Unlock()
		})
	}
	if p := m.Probes.RenderLag; p != nil {
		run(func() {
			lag, err := p(ctx)
			if err != nil {
				fail("render-lag", err)
				return
			}
			mu.Lock()
			v.RenderLagSeconds = lag.Seconds()
			mu.Unlock()
		})
	}
	run(func() {
		backupDir := m.Root.Path(m.Config.Dir)
		if free, err := backup.FreeBytes(existingParent(backupDir)); err != nil {
			fail("disk-free", err)
		} else {
			mu.Lock()
			v.DiskFreeBytes[m.Config.Dir] = free
			mu.Unlock()
		}
		if m.Probes.StorePath == nil {
			return
		}
		p, err := m.Probes.StorePath(ctx)
		if err != nil {
			fail("store-size", err)
			return
		}
		size, err := dirSize(p)
		if err != nil {
			fail("store-size", err)
			return
		}
		free, err := backup.FreeBytes(p)
		mu.Lock()
		defer mu.Unlock()
		v.StoreSizeBytes = size
		if err == nil {
			v.DiskFreeBytes[p] = free
		}
	})
	wg.Wait()
	if len(v.Errors) == 0 {
		v.Errors = nil
	}
	return v
}

// Handler serves /metrics and /view from the cached collection (Cached),
// and /health/backup.
func (m *Monitor) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{m})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health/backup", func(w http.ResponseWriter, r *http.Request) {
		code, msg := m.BackupHealth()
		w.WriteHeader(code)
		fmt.Fprintln(w, msg)
	})
	mux.HandleFunc("GET /view", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m.Cached(r.Context()))
	})
	return mux
}

// BackupHealth is the Consul check: 200 when the newest verified backup is
// younger than MaxAge, 503 (critical) when it is older or there is none,
// and 429 (Consul's warning) when it is young enough but objects sit in
// the bucket's quarantine/.
func (m *Monitor) BackupHealth() (int, string) {
	st, err := backup.ReadState(m.Root)
	if err != nil {
		return http.StatusServiceUnavailable, "critical: " + err.Error()
	}
	last := ""
	if r := st.LastRun; r != nil && r.Result != backup.ResultOK {
		last = fmt.Sprintf("; last run %s failed at %s: %s", r.ID, r.Step, r.Error)
	}
	if n := st.QuarantinedObjects(); n > 0 {
		ids := make([]string, 0, len(st.Quarantine))
		for _, q := range st.Quarantine {
			ids = append(ids, q.ID)
		}
		last += fmt.Sprintf("; %d object(s) of backup(s) %s in %s%s: their manifest cannot be used (see codelab-agent backup list)",
			n, strings.Join(ids, ", "), strings.Trim(m.Config.Prefix, "/")+"/", backup.QuarantineFolder)
	}
	n := st.NewestVerified
	if n == nil {
		return http.StatusServiceUnavailable, "critical: no verified backup yet" + last
	}
	age := m.now().Sub(n.At).Round(time.Second)
	if age > m.Config.MaxAge.Duration {
		return http.StatusServiceUnavailable, fmt.Sprintf("critical: newest verified backup %s is %s old (threshold %s)%s", n.ID, age, m.Config.MaxAge.Duration, last)
	}
	if len(st.Quarantine) > 0 {
		return http.StatusTooManyRequests, fmt.Sprintf("warning: newest verified backup %s is %s old (threshold %s)%s", n.ID, age, m.Config.MaxAge.Duration, last)
	}
	return http.StatusOK, fmt.Sprintf("ok: newest verified backup %s is %s old (threshold %s)%s", n.ID, age, m.Config.MaxAge.Duration, last)
}

// Serve listens on addr until ctx ends.
func (m *Monitor) Serve(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("monitor: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if m.Log != nil {
		m.Log.Info("monitor listening", "addr", l.Addr().String())
	}
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("monitor: %w", err)
	}
	return nil
}

func existingParent(p string) string {
	for {
		if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
			return p
		}
		p = filepath.Dir(p)
	}
}

func dirSize(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file went away mid-walk
			}
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n, err
}
