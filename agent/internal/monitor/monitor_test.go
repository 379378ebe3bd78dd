package monitor

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/retry"
)

var now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func testMonitor(t *testing.T, st *backup.State) *Monitor {
	root := fsutil.Root{Dir: t.TempDir()}
	if st != nil {
		if err := backup.WriteState(root, *st); err != nil {
			t.Fatal(err)
		}
	}
	c := backup.DefaultConfig()
	c.MaxAge = backup.Duration{Duration: 26 * time.Hour}
	return &Monitor{Root: root, Config: c, Now: func() time.Time { return now }}
}

func TestBackupHealth(t *testing.T) {
	fresh := &backup.State{NewestVerified: &backup.Newest{ID: "20260310T030000Z", At: now.Add(-9 * time.Hour)}}
	old := &backup.State{NewestVerified: &backup.Newest{ID: "20260308T030000Z", At: now.Add(-57 * time.Hour)},
		LastRun: &backup.Run{ID: "20260310T030000Z", Result: backup.ResultFailed, Step: "upload", Error: "connection reset"}}
	for _, tc := range []struct {
		name string
		st   *backup.State
		code int
		says string
	}{
		{"none", nil, 503, "no verified backup"},
		{"fresh", fresh, 200, "9h0m0s old"},
		{"old, last run failed", old, 503, "failed at upload"},
		{"fresh, objects in quarantine", &backup.State{NewestVerified: fresh.NewestVerified,
			Quarantine: []backup.Quarantined{{ID: "20260301T000000Z", Objects: 2, Reason: "manifest x: not valid JSON"}}},
			429, "2 object(s) of backup(s) 20260301T000000Z in neo4j/quarantine/"},
	} {
		code, msg := testMonitor(t, tc.st).BackupHealth()
		if code != tc.code || !strings.Contains(msg, tc.says) {
			t.Errorf("%s: %d %q, want %d containing %q", tc.name, code, msg, tc.code, tc.says)
		}
	}
}

func TestMetrics(t *testing.T) {
	m := testMonitor(t, &backup.State{
		NewestVerified: &backup.Newest{ID: "x", At: now.Add(-2 * time.Hour), SizeBytes: 42},
		LastRun:        &backup.Run{ID: "x", Result: backup.ResultOK, SizeBytes: 42, DurationMS: 1500, DowntimeMS: 700, FinishedAt: now},
		Quarantine:     []backup.Quarantined{{ID: "a", Objects: 2}, {ID: "b", Objects: 1}},
	})
	store := t.TempDir()
	if err := os.WriteFile(filepath.Join(store, "f"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Probes = Probes{
		Container: func(context.Context) (containers.State, bool, error) {
			return containers.State{Status: "running", Health: "unhealthy", Restarts: 3}, true, nil
		},
		StorePath: func(context.Context) (string, error) { return store, nil },
		Bolt:      func(context.Context) error { return nil },
		HTTP:      func(context.Context) error { return errors.New("refused") },
		RenderLag: func(context.Context) (time.Duration, error) { return 0, errors.New("consul down") },
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	body := string(b)
	for _, line := range []string{
		"codelab_backup_age_seconds 7200",
		`codelab_backup_last_run_success{step=""} 1`,
		"codelab_backup_last_run_duration_seconds 1.5",
		"codelab_backup_last_run_downtime_seconds 0.7",
		"codelab_neo4j_store_size_bytes 1000",
		`codelab_container_healthy{container="neo4j"} 0`,
		`codelab_container_restarts{container="neo4j"} 3`,
		"codelab_neo4j_bolt_up 1",
		"codelab_neo4j_http_up 0",
		`codelab_monitor_probe_error{probe="render-lag"} 1`,
		"codelab_backup_quarantined_objects 3",
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(body, "codelab_consul_template_render_lag_seconds ") {
		t.Error("render lag reported although its probe failed")
	}
}

func TestRenderLag(t *testing.T) {
	var index atomic.Int64
	index.Store(10)
	mux := http.NewServeMux() // any other path answers 404 without an index
	mux.HandleFunc("GET /v1/kv/codelab/prod/neo4j", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", strconv.FormatInt(index.Load(), 10))
		w.Write([]byte("[]"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "neo4j.env")
	if err := os.WriteFile(file, []byte("A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := now
	l := &RenderLag{Consul: consul.New(srv.URL), Prefix: "codelab/prod/neo4j", File: file, Now: func() time.Time { return clock }}
	ctx := context.Background()
	if err := os.Chtimes(file, now.Add(-time.Hour), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}

	if lag, err := l.Probe(ctx); err != nil || lag != 0 {
		t.Fatalf("first probe: %v %v", lag, err)
	}
	index.Store(11) // a KV change
	clock = now.Add(10 * time.Second)
	if lag, _ := l.Probe(ctx); lag != 0 {
		t.Fatalf("lag right when the change is seen = %v", lag)
	}
	clock = now.Add(40 * time.Second)
	if lag, _ := l.Probe(ctx); lag != 30*time.Second {
		t.Fatalf("pending lag = %v, want 30s", lag)
	}
	if err := os.Chtimes(file, now.Add(45*time.Second), now.Add(45*time.Second)); err != nil { // rendered
		t.Fatal(err)
	}
	clock = now.Add(50 * time.Second)
	if lag, _ := l.Probe(ctx); lag != 35*time.Second {
		t.Fatalf("lag after the render = %v, want 35s", lag)
	}
	clock = now.Add(time.Hour)
	if lag, _ := l.Probe(ctx); lag != 35*time.Second {
		t.Fatalf("lag with nothing pending = %v, want the last one", lag)
	}
}

func TestRenderLagWatchSeesChangesAtOnce(t *testing.T) {
	var mu sync.Mutex
	index := 10
	changed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cur, ch := index, changed
		mu.Unlock()
		if r.URL.Query().Get("index") == strconv.Itoa(cur) { // a blocking query
			select {
			case <-ch:
			case <-r.Context().Done():
				return
			}
			mu.Lock()
			cur = index
			mu.Unlock()
		}
		w.Header().Set("X-Consul-Index", strconv.Itoa(cur))
		w.Write([]byte("[]"))
	}))
	defer srv.Close()
	l := &RenderLag{Consul: consul.New(srv.URL), Prefix: "codelab/prod/neo4j", File: filepath.Join(t.TempDir(), "none")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Watch(ctx); close(done) }()
	seen := func(cond func() bool) bool {
		ctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		return retry.Do(ctx, retry.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}, func(context.Context) error {
			l.mu.Lock()
			defer l.mu.Unlock()
			if !cond() {
				return errors.New("not yet")
			}
			return nil
		}) == nil
	}
	if !seen(func() bool { return l.index == 10 }) {
		t.Fatal("Watch never read the index")
	}
	mu.Lock()
	index = 11
	close(changed)
	changed = make(chan struct{})
	mu.Unlock()
	if !seen(func() bool { return l.index == 11 && !l.changedAt.IsZero() }) {
		t.Fatal("Watch did not notice the change")
	}
	cancel()
	<-done
}

// TestScrapesShareACachedCollection: /metrics and /view walk the store at
// most once per 15 s, however often they are asked; after that the next
// request collects again.
func TestScrapesShareACachedCollection(t *testing.T) {
	m := testMonitor(t, nil)
	clock := now
	m.Now = func() time.Time { return clock }
	store := t.TempDir()
	walks := 0
	m.Probes = Probes{StorePath: func(context.Context) (string, error) { walks++; return store, nil }}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, step := range []struct {
		advance time.Duration
		path    string
		walks   int
		size    string
	}{
		{0, "/metrics", 1, "0"},
		{5 * time.Second, "/metrics", 1, "0"},
		{5 * time.Second, "/view", 1, "0"},
		{4 * time.Second, "/metrics", 1, "0"},  // 14 s: still the first collection
		{1 * time.Second, "/metrics", 2, "10"}, // 15 s: stale, collects again
		{10 * time.Second, "/view", 2, "10"},
	} {
		clock = clock.Add(step.advance)
		if step.walks == 2 && walks == 1 {
			// The store changed since the first collection: only a new
			// collection can see it.
			if err := os.WriteFile(filepath.Join(store, "f"), make([]byte, 10), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		body := get(step.path)
		if walks != step.walks {
			t.Errorf("at +%s %s: the store was walked %d times, want %d", clock.Sub(now), step.path, walks, step.walks)
		}
		want := "codelab_neo4j_store_size_bytes " + step.size + "\n"
		if step.path == "/view" {
			want = `"storeSizeBytes":` + step.size + ","
		}
		if !strings.Contains(body, want) {
			t.Errorf("at +%s %s lacks %q:\n%s", clock.Sub(now), step.path, want, body)
		}
	}

	// A configured MaxStale above 15 s is capped.
	m.MaxStale = time.Hour
	clock = clock.Add(DefaultMaxStale)
	get("/metrics")
	if walks != 3 {
		t.Errorf("MaxStale=1h: walks %d after 15 s, want 3 (capped at 15 s)", walks)
	}
}
