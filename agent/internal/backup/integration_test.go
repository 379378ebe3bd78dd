package backup_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/minio/minio-go/v7"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/backup/backuptest"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/monitor"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/tools/testenv"
)

// env is one integration setup: versitygw, a stand-in neo4j with data, a
// droplet root with the settings and the secret file.
type env struct {
	t      *testing.T
	s3     *backuptest.S3Server
	image  string
	db     *backuptest.Neo4j
	root   fsutil.Root
	config backup.Config
	data   map[string]string
	docker *containers.Engine
}

func newEnv(t *testing.T) *env {
	testenv.Integration(t, "versitygw", "docker")
	e := &env{t: t, s3: backuptest.StartS3(t), image: backuptest.StandinImage(t), root: fsutil.Root{Dir: t.TempDir()}}
	project := backuptest.RandomName("codelabit")
	e.db = backuptest.StartNeo4j(t, e.image, project+"-data", project)

	// Data, with a value large enough (incompressible, ~1.4 MB) that the
	// dump does not fit the small disk of the disk-full case.
	big := make([]byte, 1<<20)
	rand.Read(big)
	e.data = map[string]string{"alice": "knows bob", "bob": "knows carol", "blob": base64.StdEncoding.EncodeToString(big)}
	for k, v := range e.data {
		putNode(t, e.db.HTTP, k, v)
	}

	e.writeSecret(e.s3.Endpoint)
	c := backup.DefaultConfig()
	c.Image = e.image
	c.Volume = e.db.Volume
	c.Project = project
	c.Window = "" // the scheduled run below is inside its window
	c.KeepDaily, c.KeepWeekly = 2, 1
	c.Prefix = "neo4j/test"
	c.MinFreeBytes = 0
	c.StopTimeout = backup.Duration{Duration: 10 * time.Second}
	c.StartTimeout = backup.Duration{Duration: 60 * time.Second}
	c.MaxAge = backup.Duration{Duration: 26 * time.Hour}
	c.Monitor.BoltAddr = e.db.Bolt
	c.Monitor.HTTPURL = e.db.HTTP + "/"
	c.Monitor.Listen = backuptest.FreePort(t)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.root.WriteFile(backup.ConfigFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := backup.LoadConfig(e.root)
	if err != nil {
		t.Fatal(err)
	}
	e.config = loaded
	if e.docker, err = containers.NewEngine(); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) writeSecret(endpoint string) {
	sec, err := json.Marshal(backup.Spaces{Endpoint: endpoint, Bucket: e.s3.Bucket, Region: e.s3.Region, AccessKey: e.s3.AccessKey, SecretKey: e.s3.Secret,
		ManifestKey: "integration-manifest-key-0123456789abcdef"})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.root.WriteFile("/root/docker/neo4j/spaces.json", sec, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// runner is a Runner whose clock is shifted by offset, so that runs land
// on different days for retention.
func (e *env) runner(c backup.Config, offset time.Duration, log io.Writer) *backup.Runner {
	return &backup.Runner{Root: e.root, Config: c, Engine: backup.Docker{Engine: e.docker},
		Log: slog.New(slog.NewTextHandler(log, nil)), Now: func() time.Time { return time.Now().Add(offset) }}
}

func nodes(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/standin/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]string{}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestBackupRestoreAndFailuresIntegration(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var logs bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("runner log:\n%s", logs.String())
		}
	}()

	// 1. A backup: dumped, checked, uploaded with a manifest, read back.
	r := e.runner(e.config, -72*time.Hour, &logs)
	seen := map[string]backup.Transfer{} // the last report of each phase
	r.Progress = func(tr backup.Transfer) { seen[tr.Phase] = tr }
	res, err := r.Run(ctx, backup.RunOptions{})
	if err != nil {
		t.Fatalf("backup run: %v", err)
	}
	if !res.Verified || !res.Uploaded || res.Result != backup.ResultOK || res.DowntimeMS <= 0 || res.SizeBytes < 1<<20 {
		t.Fatalf("run = %+v", res)
	}
	for _, phase := range []string{backup.PhaseUpload, backup.PhaseReadBack} {
		if tr := seen[phase]; tr.Done != tr.Total || tr.Total <= res.SizeBytes {
			t.Errorf("%s progress ended at %+v; want every byte of the %d-byte backup and its manifest", phase, tr, res.SizeBytes)
		}
	}
	if strings.Contains(logs.String(), e.s3.Secret) || strings.Contains(logs.String(), e.s3.AccessKey) {
		t.Fatal("the log shows a Spaces key")
	}
	first := res.ID
	prefix := "neo4j/test/" + first + "/"
	keys := e.s3.Keys(t, prefix)
	want := []string{prefix + "manifest.json", prefix + "neo4j.dump", prefix + "system.dump"}
	if !slices.Equal(keys, want) {
		t.Fatalf("bucket keys = %q, want %q", keys, want)
	}
	var m backup.Manifest
	if err := json.Unmarshal(e.s3.Get(t, prefix+"manifest.json"), &m); err != nil {
		t.Fatal(err)
	}
	if !m.Verified || len(m.Files) != 2 || m.ID != first {
		t.Fatalf("manifest = %+v", m)
	}
	for _, f := range m.Files {
		if got := sha(e.s3.Get(t, prefix+f.Name)); got != f.SHA256 {
			t.Errorf("%s: bucket SHA-256 %s, manifest %s", f.Name, got, f.SHA256)
		}
	}
	if left, _ := os.ReadDir(e.root.Path(e.config.Dir)); len(left) != 0 {
		t.Errorf("local copy not deleted after the confirmed upload: %v", left)
	}
	st, err := backup.ReadState(e.root)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastRun == nil || st.LastRun.ID != first || st.NewestVerified == nil || st.NewestVerified.ID != first {
		t.Fatalf("state = %+v", st)
	}
	e.db.WaitHealthy(t)

	// The monitor: the only backup is three days old, so the Consul check
	// is critical and /metrics shows its age.
	mon := e.startMonitor()
	if code, body := get(t, mon+"/health/backup"); code != http.StatusServiceUnavailable || !strings.Contains(body, first) {
		t.Errorf("/health/backup with a 72h old backup = %d %q, want 503 naming %s", code, body, first)
	}
	_, body := get(t, mon+"/metrics")
	if age := metric(t, body, "codelab_backup_age_seconds"); age < 71*3600 || age > 73*3600 {
		t.Errorf("codelab_backup_age_seconds = %v, want about 72h", age)
	}
	for name, want := range map[string]float64{`codelab_backup_last_run_success{step=""}`: 1, "codelab_neo4j_bolt_up": 1, "codelab_neo4j_http_up": 1,
		`codelab_container_running{container="neo4j"}`: 1, `codelab_container_healthy{container="neo4j"}`: 1} {
		if got := metric(t, body, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if size := metric(t, body, "codelab_neo4j_store_size_bytes"); size < 1<<20 {
		t.Errorf("codelab_neo4j_store_size_bytes = %v, want over 1 MiB", size)
	}

	if got := nodes(t, e.db.HTTP); got["blob"] != e.data["blob"] || got["alice"] != e.data["alice"] {
		t.Fatal("the database lost data across the backup")
	}

	// A dump cancelled while neo4j-admin runs: its container is removed,
	// the database runs again with its data, the bucket is untouched.
	cctx, cancel := context.WithCancel(ctx)
	api := &cancelOnStart{EngineAPI: e.docker.API, cancel: cancel}
	rc := e.runner(e.config, -71*time.Hour, &logs)
	rc.Engine = backup.Docker{Engine: &containers.Engine{API: api}}
	res, err = rc.Run(cctx, backup.RunOptions{})
	cancel()
	if !errors.Is(err, context.Canceled) || res.Step != "dump" || len(api.created) == 0 {
		t.Fatalf("cancelled dump: err = %v, run = %+v, %d admin containers", err, res, len(api.created))
	}
	for _, id := range api.created {
		if _, err := e.docker.API.ContainerInspect(ctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("the cancelled dump's container %s is still there (%v)", id[:12], err)
		}
	}
	e.db.WaitHealthy(t)
	if got := nodes(t, e.db.HTTP); !mapsEqual(got, e.data) {
		t.Fatal("the database lost data across the cancelled dump")
	}
	if got := e.s3.Keys(t, "neo4j/test/"); !slices.Equal(got, keys) {
		t.Fatalf("bucket after the cancelled dump = %q", got)
	}

	t.Logf("%s", time.Now().Format(time.StampMilli))
	// 2. Restore on a fresh volume gives back the same data; without --yes
	// it refuses to touch a running database.
	project2 := backuptest.RandomName("codelabit")
	fresh := backuptest.StartNeo4j(t, e.image, project2+"-data", project2)
	if len(nodes(t, fresh.HTTP)) != 0 {
		t.Fatal("fresh database is not empty")
	}
	c2 := e.config
	c2.Volume, c2.Project = fresh.Volume, project2
	err = e.runner(c2, 0, &logs).Restore(ctx, first, backup.RestoreOptions{})
	if err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("restore over a running database without --yes: err = %v", err)
	}
	if err := e.runner(c2, 0, &logs).Restore(ctx, first, backup.RestoreOptions{Yes: true}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	fresh.WaitHealthy(t)
	if got := nodes(t, fresh.HTTP); !mapsEqual(got, e.data) {
		t.Fatalf("restored data differs: %d keys, want %d", len(got), len(e.data))
	}

	// 2b. A restore whose second database fails after its load wrote to
	// the volume: the previous data is put back and runs again.
	putNode(t, fresh.HTTP, "dave", "knows erin")
	previous := nodes(t, fresh.HTTP)
	rf := e.runner(c2, 0, &logs)
	rf.Engine = failLoad{Engine: rf.Engine, db: "neo4j"}
	err = rf.Restore(ctx, first, backup.RestoreOptions{Yes: true})
	var rb *backup.RollbackError
	if !errors.As(err, &rb) || rb.RollbackErr != nil || !rb.Running {
		t.Fatalf("restore with a failing second load: err = %v, want a rollback", err)
	}
	fresh.WaitHealthy(t)
	if got := nodes(t, fresh.HTTP); !mapsEqual(got, previous) || got["dave"] != "knows erin" {
		t.Fatalf("after the rollback the database has %d keys (dave: %q), want the %d it had", len(got), got["dave"], len(previous))
	}
	if left, _ := os.ReadDir(e.root.Path(e.config.Dir)); len(left) != 0 {
		t.Errorf("left in the backup folder after the rollback: %v", left)
	}

	snapshot := func() map[string]string {
		out := map[string]string{}
		for _, k := range e.s3.Keys(t, "neo4j/test/"+first+"/") {
			out[k] = sha(e.s3.Get(t, k))
		}
		return out
	}
	before := snapshot()

	t.Logf("%s", time.Now().Format(time.StampMilli))
	// 3. A full backup disk: the next run fails at the dump, the database
	// runs again, earlier backups are untouched.
	dir := e.root.Path(e.config.Dir)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs on the backup folder (needs root): %v: %s", err, out)
	}
	res, err = e.runner(e.config, -48*time.Hour, &logs).Run(ctx, backup.RunOptions{})
	if out, uerr := exec.Command("umount", dir).CombinedOutput(); uerr != nil {
		t.Fatalf("umount: %v: %s", uerr, out)
	}
	if err == nil || res.Step != "dump" || res.Result != backup.ResultFailed {
		t.Fatalf("disk-full run: err = %v, run = %+v", err, res)
	}
	st, _ = backup.ReadState(e.root)
	if st.LastRun.Result != backup.ResultFailed || st.LastRun.Step != "dump" || st.NewestVerified.ID != first {
		t.Fatalf("state after disk full = %+v %+v", st.LastRun, st.NewestVerified)
	}
	e.db.WaitHealthy(t)
	if !mapsEqual(snapshot(), before) {
		t.Fatal("the failed run touched the earlier backup")
	}

	t.Logf("%s", time.Now().Format(time.StampMilli))
	// 4. An upload that fails halfway: the run fails, keeps its verified
	// local copy, and leaves no manifest (so no complete backup) behind.
	proxy := testenv.StartProxy(t, "127.0.0.1", e.s3.Addr, 512<<10)
	e.writeSecret("http://" + proxy.Addr)
	res, err = e.runner(e.config, -47*time.Hour, &logs).Run(ctx, backup.RunOptions{})
	if err == nil || res.Step != "upload" || !proxy.Tripped() || !res.Verified || res.Uploaded {
		t.Fatalf("halfway upload: err = %v, run = %+v, tripped %v", err, res, proxy.Tripped())
	}
	failed := res.ID
	if _, err := os.Stat(filepath.Join(dir, failed, "neo4j.dump")); err != nil {
		t.Errorf("the verified local copy of the failed upload is gone: %v", err)
	}
	if slices.Contains(e.s3.Keys(t, "neo4j/test/"+failed+"/"), "neo4j/test/"+failed+"/manifest.json") {
		t.Error("a failed upload left a manifest")
	}
	if !mapsEqual(snapshot(), before) {
		t.Fatal("the failed upload touched the earlier backup")
	}
	st, _ = backup.ReadState(e.root)
	if st.LastRun.Step != "upload" || st.NewestVerified.ID != first {
		t.Fatalf("state after failed upload = %+v %+v", st.LastRun, st.NewestVerified)
	}

	t.Logf("%s", time.Now().Format(time.StampMilli))
	// 5. Two more good runs on later days: retention (2 daily, 1 weekly)
	// drops the oldest, keeps the newest; stale local copies are cleaned.
	// A backup whose manifest does not parse is moved to quarantine/, not
	// deleted, and reported.
	e.writeSecret(e.s3.Endpoint)
	broken := map[string]string{"20200101T000000Z/manifest.json": `{"schemaVersion": 1, "id": "20200101T000000Z", "files": [`,
		"20200101T000000Z/neo4j.dump": "an old dump"}
	for k, v := range broken {
		if _, err := e.s3.Client.PutObject(ctx, e.s3.Bucket, "neo4j/test/"+k, strings.NewReader(v), int64(len(v)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, off := range []time.Duration{-24 * time.Hour, 0} {
		res, err := e.runner(e.config, off, &logs).Run(ctx, backup.RunOptions{})
		if err != nil {
			t.Fatalf("run at %v: %v", off, err)
		}
		ids = append(ids, res.ID)
	}
	list, err := e.runner(e.config, 0, &logs).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var complete []string
	for _, b := range list {
		if b.Complete {
			complete = append(complete, b.ID)
		}
	}
	if !slices.Equal(complete, []string{ids[1], ids[0]}) {
		t.Errorf("complete backups after retention = %q, want %q (oldest %s dropped)", complete, []string{ids[1], ids[0]}, first)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("local copies left after a good run: %v", left)
	}
	for k, v := range broken {
		if got := string(e.s3.Get(t, "neo4j/test/quarantine/"+k)); got != v {
			t.Errorf("quarantine/%s = %q, want %q", k, got, v)
		}
	}
	if got := e.s3.Keys(t, "neo4j/test/20200101T000000Z/"); len(got) != 0 {
		t.Errorf("left outside quarantine: %q", got)
	}
	quarantined := false
	for _, b := range list {
		quarantined = quarantined || b.ID == "20200101T000000Z" && b.Quarantined && b.Err != nil
	}
	if !quarantined {
		t.Errorf("backup list does not show the quarantined backup: %+v", list)
	}
	if code, body := get(t, mon+"/health/backup"); code != http.StatusTooManyRequests || !strings.Contains(body, ids[1]) || !strings.Contains(body, "20200101T000000Z") {
		t.Errorf("/health/backup after a fresh backup, with one in quarantine = %d %q, want 429 naming both", code, body)
	}
	_, body = get(t, mon+"/metrics")
	if n := metric(t, body, "codelab_backup_quarantined_objects"); n != 2 {
		t.Errorf("codelab_backup_quarantined_objects = %v, want 2", n)
	}
	if age := metric(t, body, "codelab_backup_age_seconds"); age > 600 {
		t.Errorf("codelab_backup_age_seconds = %v after a fresh backup", age)
	}
}

// failLoad is an Engine whose load of database db fails after the real
// neo4j-admin load has replaced the database's files.
type failLoad struct {
	backup.Engine
	db string
}

func (f failLoad) Admin(ctx context.Context, r backup.AdminRun) (string, error) {
	out, err := f.Engine.Admin(ctx, r)
	if err == nil && len(r.Args) > 2 && r.Args[1] == "load" && r.Args[2] == f.db {
		return out, fmt.Errorf("neo4j-admin database load %s: exit status 1: injected failure after the load wrote", f.db)
	}
	return out, err
}

func putNode(t *testing.T, base, k, v string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, base+"/standin/nodes/"+k, strings.NewReader(v))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write %s: %v %v", k, err, resp)
	}
	resp.Body.Close()
}

// cancelOnStart is the Engine API that cancels the run once a throwaway
// (neo4j-admin) container has started.
type cancelOnStart struct {
	containers.EngineAPI
	cancel  func()
	created []string
}

func (c *cancelOnStart) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	resp, err := c.EngineAPI.ContainerCreate(ctx, cfg, host, net, p, name)
	if err == nil && cfg.Labels[containers.OneOffLabel] != "" {
		c.created = append(c.created, resp.ID)
	}
	return resp, err
}

func (c *cancelOnStart) ContainerStart(ctx context.Context, id string, opts container.StartOptions) error {
	err := c.EngineAPI.ContainerStart(ctx, id, opts)
	if slices.Contains(c.created, id) {
		c.cancel()
	}
	return err
}

// startMonitor serves the monitor with the real probes on the settings'
// address and returns its base URL.
func (e *env) startMonitor() string {
	probes, _ := monitor.RealProbes(e.root, e.config, e.docker)
	m := &monitor.Monitor{Root: e.root, Config: e.config, Probes: probes, Timeout: 20 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, e.config.Monitor.Listen) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
	})
	return "http://" + e.config.Monitor.Listen
}

// get returns the status code and body of url, retrying until the server
// listens.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	var resp *http.Response
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := retry.Do(ctx, retry.Policy{Initial: 50 * time.Millisecond, Max: time.Second}, func(ctx context.Context) error {
		var err error
		resp, err = http.Get(url) // fails until the server listens
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample line that starts with name.
func metric(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", name, body)
	return 0
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Enterprise: an online backup (the database keeps running), checked,
// uploaded, and restored with neo4j-admin database restore.
func TestEnterpriseOnlineBackupIntegration(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var logs bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("runner log:\n%s", logs.String())
		}
	}()
	c := e.config
	c.Edition, c.BackupFrom, c.Window = backup.Enterprise, e.db.Backup, "00:00-00:01" // the window is Community's
	started := backuptest.StartedAt(t, e.db.Name)
	res, err := e.runner(c, 0, &logs).Run(ctx, backup.RunOptions{})
	if err != nil {
		t.Fatalf("online backup: %v", err)
	}
	if res.DowntimeMS != 0 || !res.Verified || !res.Uploaded {
		t.Fatalf("run = %+v", res)
	}
	if now := backuptest.StartedAt(t, e.db.Name); now != started {
		t.Fatal("the online backup restarted the database")
	}
	var m backup.Manifest
	if err := json.Unmarshal(e.s3.Get(t, "neo4j/test/"+res.ID+"/manifest.json"), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 2 || !strings.HasSuffix(m.Files[0].Name, ".backup") || m.Edition != backup.Enterprise {
		t.Fatalf("manifest = %+v", m)
	}

	project2 := backuptest.RandomName("codelabit")
	fresh := backuptest.StartNeo4j(t, e.image, project2+"-data", project2)
	c.Volume, c.Project = fresh.Volume, project2
	if err := e.runner(c, 0, &logs).Restore(ctx, res.ID, backup.RestoreOptions{Yes: true}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	fresh.WaitHealthy(t)
	if got := nodes(t, fresh.HTTP); !mapsEqual(got, e.data) {
		t.Fatalf("restored data differs: %d keys, want %d", len(got), len(e.data))
	}
}
