package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// fakeEngine is Engine made of function fields; a nil field fails the
// test loudly.
type fakeEngine struct {
	t       *testing.T
	find    func(project, service string) (string, error)
	running func(id string) (bool, error)
	stop    func(id string) error
	start   func(id string) error
	admin   func(r AdminRun) (string, error)
	volume  string // the data volume's folder
	calls   []string
}

func (f *fakeEngine) call(s string) { f.calls = append(f.calls, s) }
func (f *fakeEngine) Find(_ context.Context, p, s string) (string, error) {
	if f.find == nil {
		f.t.Fatalf("unexpected Find(%s, %s)", p, s)
	}
	return f.find(p, s)
}
func (f *fakeEngine) Running(_ context.Context, id string) (bool, error) {
	if f.running == nil {
		f.t.Fatalf("unexpected Running(%s)", id)
	}
	return f.running(id)
}
func (f *fakeEngine) Stop(_ context.Context, id string, _ time.Duration) error {
	f.call("stop " + id)
	if f.stop == nil {
		f.t.Fatalf("unexpected Stop(%s)", id)
	}
	return f.stop(id)
}
func (f *fakeEngine) Start(_ context.Context, id string, _ time.Duration) error {
	f.call("start " + id)
	if f.start == nil {
		f.t.Fatalf("unexpected Start(%s)", id)
	}
	return f.start(id)
}
func (f *fakeEngine) VolumePath(_ context.Context, name string) (string, error) {
	if f.volume == "" {
		f.t.Fatalf("unexpected VolumePath(%s)", name)
	}
	return f.volume, nil
}
func (f *fakeEngine) Admin(_ context.Context, r AdminRun) (string, error) {
	f.call(strings.Join(r.Args[:3], " "))
	if f.admin == nil {
		f.t.Fatalf("unexpected Admin(%v)", r.Args)
	}
	return f.admin(r)
}

// memStore is an in-memory Store.
type memStore struct {
	mu      sync.Mutex
	objs    map[string][]byte
	putErr  func(key string) error
	deleted []string
	corrupt string // key whose read-back differs
}

func newMemStore() *memStore { return &memStore{objs: map[string][]byte{}} }

func (m *memStore) Put(_ context.Context, key, path string, progress func(int64)) error {
	if m.putErr != nil {
		if err := m.putErr(key); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if progress != nil { // in two chunks, as a multipart upload would
		progress(int64(len(b) / 2))
		progress(int64(len(b) - len(b)/2))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = b
	return nil
}
func (m *memStore) Get(_ context.Context, key string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("no such key %s", key)
	}
	if key == m.corrupt {
		b = append([]byte("x"), b...)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
func (m *memStore) List(_ context.Context, prefix string) ([]Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Object
	for k, b := range m.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Object{Key: k, Size: int64(len(b))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}
func (m *memStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	m.deleted = append(m.deleted, key)
	return nil
}
func (m *memStore) Copy(_ context.Context, src, dst string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[src]
	if !ok {
		return fmt.Errorf("no such key %s", src)
	}
	m.objs[dst] = b
	return nil
}
func (m *memStore) Check(context.Context) error { return nil }
func (m *memStore) keys() []string {
	ks := []string{}
	for k := range m.objs {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// fakeDB is a database container whose admin runs write or check dumps;
// a load writes the dump into the volume's folder as <db>.
func fakeDB(t *testing.T) *fakeEngine {
	running := true
	volume := t.TempDir()
	for _, db := range []string{"system", "neo4j"} {
		if err := os.WriteFile(filepath.Join(volume, db), []byte("live "+db), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return &fakeEngine{
		t:       t,
		volume:  volume,
		find:    func(string, string) (string, error) { return "c0ffee", nil },
		running: func(string) (bool, error) { return running, nil },
		stop:    func(string) error { running = false; return nil },
		start:   func(string) error { running = true; return nil },
		admin: func(r AdminRun) (string, error) {
			switch r.Args[1] {
			case "dump":
				if running {
					return "", errors.New("database in use")
				}
				return "", os.WriteFile(filepath.Join(r.Dir, r.Args[2]+".dump"), []byte("dump of "+r.Args[2]), 0o644)
			case "check", "load":
				b, err := os.ReadFile(filepath.Join(r.Dir, r.Args[2]+".dump"))
				if err != nil || !bytes.HasPrefix(b, []byte("dump of ")) {
					return "", fmt.Errorf("check %s: damaged", r.Args[2])
				}
				if r.Args[1] == "load" {
					if running {
						return "", errors.New("database in use")
					}
					return "", os.WriteFile(filepath.Join(volume, r.Args[2]), b, 0o640)
				}
				return "", nil
			}
			return "", fmt.Errorf("unexpected neo4j-admin %v", r.Args)
		},
	}
}

func testRunner(t *testing.T, eng Engine, store Store, now time.Time) *Runner {
	root := fsutil.Root{Dir: t.TempDir()}
	if _, err := root.WriteFile("/root/docker/neo4j/spaces.json", []byte(`{"endpoint":"https://fra1.example.test","bucket":"b","region":"fra1","accessKey":"AKIDSECRET","secretKey":"SKSECRET","manifestKey":"`+testManifestKey+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Image = "registry.test/neo4j:5"
	c.Window = ""
	c.MinFreeBytes = 0
	c.AdminUser = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	return &Runner{Root: root, Config: c, Engine: eng, Now: func() time.Time { return now },
		OpenStore: func(Spaces) (Store, error) { return store, nil }}
}

const testManifestKey = "0123456789abcdef0123456789abcdef-test"

var t0 = time.Date(2026, 3, 10, 3, 0, 0, 0, time.UTC)

func TestRunUploadsVerifiedBackupWithManifest(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	res, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"neo4j/20260310T030000Z/manifest.json", "neo4j/20260310T030000Z/neo4j.dump", "neo4j/20260310T030000Z/system.dump"}
	if got := store.keys(); !slices.Equal(got, want) {
		t.Fatalf("keys = %q", got)
	}
	// stop, dumps, start, then checks: the database is down only for the dumps.
	wantCalls := []string{"stop c0ffee", "database dump system", "database dump neo4j", "start c0ffee", "database check system", "database check neo4j"}
	if !slices.Equal(eng.calls, wantCalls) {
		t.Errorf("calls = %q\nwant    %q", eng.calls, wantCalls)
	}
	var m Manifest
	json.Unmarshal(store.objs[want[0]], &m)
	if !m.Verified || len(m.Files) != 2 || m.Files[0].SHA256 == "" || res.SizeBytes != m.Size() {
		t.Errorf("manifest = %+v, run = %+v", m, res)
	}
	st, _ := ReadState(r.Root)
	if st.LastRun.Result != ResultOK || !st.LastRun.Uploaded || st.NewestVerified.ID != "20260310T030000Z" {
		t.Errorf("state = %+v %+v", st.LastRun, st.NewestVerified)
	}
	if left, _ := os.ReadDir(r.Root.Path(r.Config.Dir)); len(left) != 0 {
		t.Errorf("local copy left: %v", left)
	}
}

func TestRunFailuresKeepEarlierBackups(t *testing.T) {
	for _, tc := range []struct {
		name      string
		breakIt   func(e *fakeEngine, s *memStore)
		step      string
		keepLocal bool
	}{
		{"check fails", func(e *fakeEngine, s *memStore) {
			admin := e.admin
			e.admin = func(r AdminRun) (string, error) {
				if r.Args[1] == "check" && r.Args[2] == "neo4j" {
					return "", errors.New("inconsistent store")
				}
				return admin(r)
			}
		}, "check", false},
		{"dump fails (disk full)", func(e *fakeEngine, s *memStore) {
			admin := e.admin
			e.admin = func(r AdminRun) (string, error) {
				if r.Args[1] == "dump" {
					return "", errors.New("no space left on device")
				}
				return admin(r)
			}
		}, "dump", false},
		{"upload fails halfway", func(e *fakeEngine, s *memStore) {
			s.putErr = func(key string) error {
				if strings.HasSuffix(key, "system.dump") {
					return errors.New("connection reset")
				}
				return nil
			}
		}, "upload", true},
		{"read-back differs", func(e *fakeEngine, s *memStore) { s.corrupt = "neo4j/20260311T030000Z/neo4j.dump" }, "upload", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, store := fakeDB(t), newMemStore()
			r := testRunner(t, eng, store, t0)
			if _, err := r.Run(context.Background(), RunOptions{}); err != nil {
				t.Fatal(err)
			}
			before := store.keys()
			tc.breakIt(eng, store)
			r.Now = func() time.Time { return t0.Add(24 * time.Hour) }
			res, err := r.Run(context.Background(), RunOptions{})
			if err == nil || res.Step != tc.step || res.Result != ResultFailed {
				t.Fatalf("err = %v, run = %+v", err, res)
			}
			if got := store.keys(); !slices.Equal(got, before) {
				t.Errorf("bucket after the failure = %q, want %q", got, before)
			}
			st, _ := ReadState(r.Root)
			if st.LastRun.Step != tc.step || st.LastRun.Error == "" || st.NewestVerified.ID != "20260310T030000Z" {
				t.Errorf("state = %+v %+v", st.LastRun, st.NewestVerified)
			}
			_, err = os.Stat(filepath.Join(r.Root.Path(r.Config.Dir), res.ID, "neo4j.dump"))
			if tc.keepLocal != (err == nil) {
				t.Errorf("local copy kept = %v, want %v", err == nil, tc.keepLocal)
			}
			if eng.calls[len(eng.calls)-1] == "stop c0ffee" {
				t.Error("the database was left stopped")
			}
		})
	}
}

func TestRunOutsideWindowDoesNothing(t *testing.T) {
	r := testRunner(t, &fakeEngine{t: t}, newMemStore(), t0.Add(10*time.Hour))
	r.Config.Window = "02:00-05:00"
	if _, err := r.Run(context.Background(), RunOptions{}); !errors.Is(err, ErrOutsideWindow) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(r.Root.Path(StateFile)); err == nil {
		t.Error("a skipped run wrote the state")
	}
}

func TestRestoreRefusesRunningDatabaseWithoutYes(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	res, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eng.calls = nil
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("err = %v", err)
	}
	if len(eng.calls) != 0 {
		t.Fatalf("refused restore still did %q", eng.calls)
	}
	store.corrupt = "neo4j/" + res.ID + "/neo4j.dump"
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true}); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("restore of a damaged download: err = %v", err)
	}
	if slices.Contains(eng.calls, "stop c0ffee") {
		t.Fatal("a damaged download stopped the database")
	}
	store.corrupt = ""
	eng.calls = nil
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true}); err != nil {
		t.Fatal(err)
	}
	want := []string{"database check system", "database check neo4j", "stop c0ffee", "database load system", "database load neo4j", "start c0ffee"}
	if !slices.Equal(eng.calls, want) {
		t.Errorf("calls = %q\nwant    %q", eng.calls, want)
	}
}

func listed(at ...string) []Listed {
	var out []Listed
	for _, s := range at {
		tm, _ := time.Parse("2006-01-02 15:04", s)
		out = append(out, Listed{ID: tm.Format(IDFormat), At: tm, Complete: true})
	}
	return out
}

func ids(ls []Listed) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.At.Format("01-02 15:04"))
	}
	return out
}

func TestRetain(t *testing.T) {
	for _, tc := range []struct {
		name          string
		backups       []Listed
		daily, weekly int
		keep          []string
	}{
		{"newest of each of 2 days", listed("2026-03-10 03:00", "2026-03-10 15:00", "2026-03-09 03:00", "2026-03-08 03:00"), 2, 0,
			[]string{"03-10 15:00", "03-09 03:00"}},
		{"weekly reaches further back", listed("2026-03-10 03:00", "2026-03-09 03:00", "2026-03-03 03:00", "2026-02-24 03:00", "2026-02-17 03:00"), 1, 3,
			[]string{"03-10 03:00", "03-03 03:00", "02-24 03:00"}},
		{"newest always kept", listed("2026-03-10 03:00"), 1, 0, []string{"03-10 03:00"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, drop := Retain(tc.backups, tc.daily, tc.weekly)
			if !slices.Equal(ids(keep), tc.keep) {
				t.Errorf("keep = %q, want %q", ids(keep), tc.keep)
			}
			if len(keep)+len(drop) != len(tc.backups) {
				t.Errorf("lost backups: %d + %d != %d", len(keep), len(drop), len(tc.backups))
			}
		})
	}
}

func TestRetentionDeletesManifestFirstAndSkipsForeignKeys(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	r.Config.KeepDaily, r.Config.KeepWeekly = 1, 0
	store.objs["neo4j/not-a-backup/file"] = []byte("x")
	store.objs["neo4j/20260301T000000Z/neo4j.dump"] = []byte("incomplete, old")
	if _, err := r.Run(context.Background(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	r.Now = func() time.Time { return t0.Add(24 * time.Hour) }
	if _, err := r.Run(context.Background(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"neo4j/20260311T030000Z/manifest.json", "neo4j/20260311T030000Z/neo4j.dump", "neo4j/20260311T030000Z/system.dump", "neo4j/not-a-backup/file"}
	if got := store.keys(); !slices.Equal(got, want) {
		t.Errorf("keys = %q\nwant %q", got, want)
	}
	i := slices.Index(store.deleted, "neo4j/20260310T030000Z/manifest.json")
	j := slices.Index(store.deleted, "neo4j/20260310T030000Z/neo4j.dump")
	if i < 0 || j < 0 || i > j {
		t.Errorf("deleted %q: the manifest must go first", store.deleted)
	}
}

func TestConfigWindow(t *testing.T) {
	at := func(hm string) time.Time { tm, _ := time.Parse("15:04", hm); return tm }
	for _, tc := range []struct {
		window string
		now    string
		in     bool
	}{
		{"02:00-05:00", "02:00", true}, {"02:00-05:00", "04:59", true}, {"02:00-05:00", "05:00", false},
		{"23:00-02:00", "23:30", true}, {"23:00-02:00", "01:00", true}, {"23:00-02:00", "12:00", false},
		{"", "12:00", true},
	} {
		c := Config{Window: tc.window}
		if got := c.InWindow(at(tc.now)); got != tc.in {
			t.Errorf("window %q at %s: %v, want %v", tc.window, tc.now, got, tc.in)
		}
	}
	c := DefaultConfig()
	c.Window = "2-5"
	c.Image = "x"
	if err := c.Validate(); err == nil {
		t.Error("bad window accepted")
	}
}

func TestSecretFile(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	body := []byte(`{"endpoint":"https://fra1.digitaloceanspaces.com","bucket":"b","region":"fra1","accessKey":"AKID","secretKey":"TOPSECRET"}`)
	root.WriteFile("/root/docker/neo4j/spaces.json", body, 0o644)
	if _, err := LoadSpaces(root, "/root/docker/neo4j/spaces.json"); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("world-readable secret file: err = %v", err)
	}
	root.WriteFile("/root/docker/neo4j/spaces.json", body, 0o600)
	s, err := LoadSpaces(root, "/root/docker/neo4j/spaces.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s)} {
		if strings.Contains(out, "TOPSECRET") || strings.Contains(out, "AKID") {
			t.Errorf("formatted secret shows a key: %s", out)
		}
	}
	root.WriteFile("/root/docker/neo4j/spaces.json", []byte(`{"endpoint":"fra1","secretKey":"TOPSECRET"}`), 0o600)
	if _, err := LoadSpaces(root, "/root/docker/neo4j/spaces.json"); err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Errorf("bad secret file: err = %v", err)
	}
}

func TestReadStateMissingIsEmpty(t *testing.T) {
	st, err := ReadState(fsutil.Root{Dir: t.TempDir()})
	if err != nil || st.LastRun != nil || st.NewestVerified != nil {
		t.Fatalf("ReadState on a fresh droplet = %+v, %v", st, err)
	}
}

func TestStateSummary(t *testing.T) {
	now := t0.Add(9 * time.Hour)
	ok := State{LastRun: &Run{ID: "20260310T030000Z", Result: ResultOK, FinishedAt: t0, SizeBytes: 3 << 20, DowntimeMS: 42000},
		NewestVerified: &Newest{ID: "20260310T030000Z", At: t0}}
	failed := State{LastRun: &Run{ID: "20260311T030000Z", Result: ResultFailed, Step: "upload", Error: "connection reset", FinishedAt: t0},
		NewestVerified: &Newest{ID: "20260309T030000Z", At: t0.Add(-24 * time.Hour)}}
	for _, tc := range []struct {
		st   State
		want string
	}{
		{State{}, "no backup has run yet"},
		{ok, "last run 20260310T030000Z ok 9h0m0s ago: 3.0 MiB, verified, uploaded, database down 42s"},
		{failed, "last run 20260311T030000Z FAILED 9h0m0s ago at step upload: connection reset; newest verified 20260309T030000Z (33h0m0s old)"},
	} {
		if got := tc.st.Summary(now); got != tc.want {
			t.Errorf("Summary = %q\nwant      %q", got, tc.want)
		}
	}
}

// tamper rewrites backup id's manifest in the bucket with edit applied.
func tamper(t *testing.T, store *memStore, id string, edit func(m map[string]any)) string {
	t.Helper()
	key := "neo4j/" + id + "/" + ManifestName
	var m map[string]any
	if err := json.Unmarshal(store.objs[key], &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	store.objs[key] = b
	return key
}

func TestRestoreRefusesTamperedManifests(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(m map[string]any)
		field string
	}{
		{"traversal file name", func(m map[string]any) {
			f := m["files"].([]any)[0].(map[string]any)
			f["name"] = "../../etc/cron.d/x"
		}, "files[0].name"},
		{"absolute file name", func(m map[string]any) { m["files"].([]any)[1].(map[string]any)["name"] = "/etc/passwd" }, "files[1].name"},
		{"hidden file name", func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["name"] = ".ssh" }, "files[0].name"},
		{"NUL in a file name", func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["name"] = "a\x00b" }, "files[0].name"},
		{"empty file name", func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["name"] = "" }, "files[0].name"},
		{"dot-dot", func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["name"] = ".." }, "files[0].name"},
		{"database name as an option", func(m map[string]any) { m["databases"] = []any{"system", "--from-path=/etc"} }, "databases[1]"},
		{"database name with a slash", func(m map[string]any) { m["databases"] = []any{"../neo4j"} }, "databases[0]"},
		{"upper-case database name", func(m map[string]any) { m["databases"] = []any{"Neo4j"} }, "databases[0]"},
		{"short database name", func(m map[string]any) { m["databases"] = []any{"ab"} }, "databases[0]"},
		{"database name starting with a digit", func(m map[string]any) { m["databases"] = []any{"4neo"} }, "databases[0]"},
		{"long database name", func(m map[string]any) { m["databases"] = []any{"a" + strings.Repeat("b", 63)} }, "databases[0]"},
		{"unknown edition", func(m map[string]any) { m["edition"] = "--expand-commands" }, "edition"},
		{"newer schema", func(m map[string]any) { m["schemaVersion"] = 99 }, "schemaVersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, store := fakeDB(t), newMemStore()
			r := testRunner(t, eng, store, t0)
			res, err := r.Run(context.Background(), RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			key := tamper(t, store, res.ID, tc.edit)
			eng.calls = nil
			err = r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true})
			var me *ManifestError
			if !errors.As(err, &me) || me.Field != tc.field || me.Key != key || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want a ManifestError naming %s and %s", err, key, tc.field)
			}
			if len(eng.calls) != 0 {
				t.Errorf("a tampered manifest still ran %q", eng.calls)
			}
			// Nothing written anywhere below the root but the state and the
			// empty backup folder.
			filepath.WalkDir(r.Root.Dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(r.Root.Dir, p)
					if !slices.Contains([]string{"var/lib/codelab/backup.json", "var/lib/codelab/backup.lock", "root/docker/neo4j/spaces.json", "run/lock/codelab-compose-neo4j.lock"}, rel) {
						t.Errorf("restore wrote %s", rel)
					}
				}
				return nil
			})
		})
	}
}

func TestValidNames(t *testing.T) {
	for _, ok := range []string{"neo4j", "system", "a.b-c", "abc", "a" + strings.Repeat("b", 62)} {
		if err := ValidDatabaseName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, ok := range []string{"neo4j.dump", "system-2026-03-10T03-00-00.backup"} {
		if err := ValidFileName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"a/b", `a\b`, "..", ".", "x\n", ""} {
		if err := ValidFileName(bad); err == nil {
			t.Errorf("file name %q accepted", bad)
		}
	}
}

func TestManifestHMAC(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	res, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	json.Unmarshal(store.objs["neo4j/"+res.ID+"/"+ManifestName], &m)
	if len(m.HMAC) != 64 {
		t.Fatalf("manifest hmac = %q", m.HMAC)
	}
	good := store.objs["neo4j/"+res.ID+"/"+ManifestName]
	otherSum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name   string
		edit   func(m map[string]any)
		reason string
	}{
		{"changed checksum", func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["sha256"] = otherSum }, "does not match"},
		{"changed database list", func(m map[string]any) { m["databases"] = []any{"neo4j"} }, "does not match"},
		{"no hmac", func(m map[string]any) { delete(m, "hmac") }, "unsigned"},
		{"garbage hmac", func(m map[string]any) { m["hmac"] = "zz" }, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store.objs["neo4j/"+res.ID+"/"+ManifestName] = good
			key := tamper(t, store, res.ID, tc.edit)
			eng.calls = nil
			err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true})
			var se *SignatureError
			if !errors.As(err, &se) || se.Key != key || !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), "--trust-unsigned") {
				t.Fatalf("err = %v, want a SignatureError (%s) naming %s", err, tc.reason, key)
			}
			if len(eng.calls) != 0 {
				t.Errorf("a refused manifest still ran %q", eng.calls)
			}
		})
	}
	// --trust-unsigned restores an unsigned manifest, with a warning.
	store.objs["neo4j/"+res.ID+"/"+ManifestName] = good
	tamper(t, store, res.ID, func(m map[string]any) { delete(m, "hmac") })
	var warned []string
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true, TrustUnsigned: true, Warn: func(s string) { warned = append(warned, s) }}); err != nil {
		t.Fatal(err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "unsigned") || !strings.Contains(warned[0], res.ID) {
		t.Errorf("warnings = %q", warned)
	}
	// A tampered checksum with --trust-unsigned still fails at the download.
	store.objs["neo4j/"+res.ID+"/"+ManifestName] = good
	tamper(t, store, res.ID, func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["sha256"] = otherSum })
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true, TrustUnsigned: true}); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("trusted tampered checksum: err = %v", err)
	}
	// Without a key: restore cannot check, and says which KV key is missing.
	store.objs["neo4j/"+res.ID+"/"+ManifestName] = good
	r.Root.WriteFile("/root/docker/neo4j/spaces.json", []byte(`{"endpoint":"https://fra1.example.test","bucket":"b","region":"fra1","accessKey":"AKIDSECRET","secretKey":"SKSECRET"}`), 0o600)
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true}); err == nil || !strings.Contains(err.Error(), "codelab/<env>/backup/manifest_key") {
		t.Errorf("restore without a key: err = %v", err)
	}
}

func TestRunWithoutManifestKeyFails(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	r.Root.WriteFile("/root/docker/neo4j/spaces.json", []byte(`{"endpoint":"https://fra1.example.test","bucket":"b","region":"fra1","accessKey":"AKIDSECRET","secretKey":"SKSECRET"}`), 0o600)
	res, err := r.Run(context.Background(), RunOptions{})
	if !errors.Is(err, ErrNoManifestKey) || !strings.Contains(err.Error(), "codelab/<env>/backup/manifest_key") || res.Step != "prepare" {
		t.Fatalf("err = %v, run = %+v", err, res)
	}
	if len(store.objs) != 0 || len(eng.calls) != 0 {
		t.Errorf("a run without a key did %q and uploaded %q", eng.calls, store.keys())
	}
	r.Root.WriteFile("/root/docker/neo4j/spaces.json", []byte(`{"endpoint":"https://fra1.example.test","bucket":"b","region":"fra1","accessKey":"AKIDSECRET","secretKey":"SKSECRET","manifestKey":"short-SECRET"}`), 0o600)
	if _, err := r.Run(context.Background(), RunOptions{}); err == nil || !strings.Contains(err.Error(), "at least 32") || strings.Contains(err.Error(), "short-SECRET") {
		t.Errorf("short key: err = %v", err)
	}
}

// holdsComposeLock makes the engine check, at the admin call named
// verb, that the compose lock is held: a second locker waits (its onWait
// fires), and it is still waiting when the database is started again.
func holdsComposeLock(t *testing.T, r *Runner, eng *fakeEngine, verb string) (check func()) {
	lock := r.Root.Path("/run/lock/codelab-compose-neo4j.lock")
	admin, start := eng.admin, eng.start
	var acquired atomic.Bool
	got := make(chan struct{})
	eng.admin = func(a AdminRun) (string, error) {
		if a.Args[1] == verb && a.Args[2] == "neo4j" {
			waiting := make(chan struct{})
			go func() {
				defer close(got)
				unlock, err := fsutil.Lock(context.Background(), lock, func() { close(waiting) })
				if err != nil {
					t.Error(err)
					return
				}
				acquired.Store(true)
				unlock()
			}()
			select {
			case <-waiting:
			case <-got:
				t.Errorf("a second locker got the compose lock during %s", verb)
			}
		}
		return admin(a)
	}
	eng.start = func(id string) error {
		if acquired.Load() {
			t.Errorf("the compose lock was free before the database started again")
		}
		return start(id)
	}
	return func() {
		<-got
		eng.admin, eng.start = admin, start
	}
}

func TestDumpAndRestoreHoldTheComposeLock(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	check := holdsComposeLock(t, r, eng, "dump")
	res, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check()
	eng.calls = nil
	check = holdsComposeLock(t, r, eng, "load")
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true}); err != nil {
		t.Fatal(err)
	}
	check()
}

func TestCancelledDumpStartsTheDatabaseAndFreesTheLocks(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	ctx, cancel := context.WithCancel(context.Background())
	admin := eng.admin
	eng.admin = func(a AdminRun) (string, error) {
		if a.Args[1] == "dump" && a.Args[2] == "neo4j" {
			cancel() // Ctrl-C while neo4j-admin runs: RunOnce removes its container
			return "", context.Canceled
		}
		return admin(a)
	}
	res, err := r.Run(ctx, RunOptions{})
	if !errors.Is(err, context.Canceled) || res.Step != "dump" {
		t.Fatalf("err = %v, run = %+v", err, res)
	}
	if last := eng.calls[len(eng.calls)-1]; last != "start c0ffee" {
		t.Errorf("calls = %q: the database must be started again", eng.calls)
	}
	for _, l := range []string{"/run/lock/codelab-compose-neo4j.lock", LockFile} {
		unlock, err := fsutil.TryLock(r.Root.Path(l))
		if err != nil {
			t.Errorf("%s still held after a cancelled run: %v", l, err)
			continue
		}
		unlock()
	}
	if len(store.objs) != 0 {
		t.Errorf("a cancelled run uploaded %q", store.keys())
	}
}

// volumeFiles reads every file of a volume folder.
func volumeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestRestoreRollsBackOnAnyFailure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(e *fakeEngine)
	}{
		{"second load fails after writing", func(e *fakeEngine) {
			admin := e.admin
			e.admin = func(a AdminRun) (string, error) {
				out, err := admin(a)
				if a.Args[1] == "load" && a.Args[2] == "neo4j" {
					return out, errors.New("no space left on device")
				}
				return out, err
			}
		}},
		{"first load fails", func(e *fakeEngine) {
			admin := e.admin
			e.admin = func(a AdminRun) (string, error) {
				if a.Args[1] == "load" {
					return "", errors.New("bad store format")
				}
				return admin(a)
			}
		}},
		{"restored database does not start", func(e *fakeEngine) {
			start, n := e.start, 0
			e.start = func(id string) error {
				if n++; n == 1 {
					return errors.New("container is unhealthy")
				}
				return start(id)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, store := fakeDB(t), newMemStore()
			r := testRunner(t, eng, store, t0)
			res, err := r.Run(context.Background(), RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			before := volumeFiles(t, eng.volume)
			tc.breakIt(eng)
			eng.calls = nil
			err = r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true})
			var rb *RollbackError
			if !errors.As(err, &rb) || rb.RollbackErr != nil || !rb.Running || !strings.Contains(err.Error(), "rolled back") {
				t.Fatalf("err = %v, want a rollback", err)
			}
			if got := volumeFiles(t, eng.volume); !maps.Equal(got, before) {
				t.Errorf("volume after the rollback = %q, want %q", got, before)
			}
			if last := eng.calls[len(eng.calls)-1]; last != "start c0ffee" {
				t.Errorf("calls = %q: the database must run again", eng.calls)
			}
			if left, _ := os.ReadDir(r.Root.Path(r.Config.Dir)); len(left) != 0 {
				t.Errorf("left in the backup folder: %v", left)
			}
		})
	}
}

func TestRestoreKeepsTheCopyWhenTheRollbackFails(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	res, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := volumeFiles(t, eng.volume)
	eng.start = func(string) error { return errors.New("container is unhealthy") }
	err = r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true})
	var rb *RollbackError
	if !errors.As(err, &rb) || rb.RollbackErr == nil || rb.Kept == "" || !strings.Contains(err.Error(), rb.Kept) {
		t.Fatalf("err = %v", err)
	}
	if got := volumeFiles(t, rb.Kept); !maps.Equal(got, before) {
		t.Errorf("kept copy = %q, want %q", got, before)
	}
	// A second restore keeps its hands off the kept copy.
	eng.start = func(string) error { return nil }
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true}); err == nil || !strings.Contains(err.Error(), rb.Kept) {
		t.Fatalf("restore with a kept rollback copy: err = %v", err)
	}
	if got := volumeFiles(t, rb.Kept); !maps.Equal(got, before) {
		t.Errorf("kept copy after a second restore = %q, want %q", got, before)
	}
}

func TestRetentionQuarantinesWhatItCannotParse(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	r.Config.KeepDaily, r.Config.KeepWeekly = 1, 0
	bad := map[string][]byte{
		"neo4j/20260301T000000Z/manifest.json": []byte("{not json"),
		"neo4j/20260301T000000Z/neo4j.dump":    []byte("dump of neo4j"),
		"neo4j/20260302T000000Z/manifest.json": []byte(`{"schemaVersion": 7, "id": "20260302T000000Z", "files": [{"name": "x"}]}`),
	}
	for k, v := range bad {
		store.objs[k] = v
	}
	store.objs["neo4j/20260303T000000Z/neo4j.dump"] = []byte("incomplete, old") // no manifest: removed
	if _, err := r.Run(context.Background(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for k, v := range bad {
		q := "neo4j/quarantine/" + strings.TrimPrefix(k, "neo4j/")
		if !bytes.Equal(store.objs[q], v) {
			t.Errorf("%s not moved to %s", k, q)
		}
		if _, ok := store.objs[k]; ok {
			t.Errorf("%s still outside quarantine", k)
		}
	}
	if _, ok := store.objs["neo4j/20260303T000000Z/neo4j.dump"]; ok {
		t.Error("an old upload without a manifest was kept")
	}
	st, _ := ReadState(r.Root)
	if st.QuarantinedObjects() != 3 || len(st.Quarantine) != 2 || !strings.Contains(st.Quarantine[0].Reason, "schemaVersion") || !strings.Contains(st.Quarantine[1].Reason, "not valid JSON") {
		t.Fatalf("state quarantine = %+v", st.Quarantine)
	}
	// The next run (past retention for the first) leaves quarantine alone
	// and still reports it; a failed run keeps reporting it too.
	r.Now = func() time.Time { return t0.Add(48 * time.Hour) }
	if _, err := r.Run(context.Background(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	r.Now = func() time.Time { return t0.Add(72 * time.Hour) }
	store.putErr = func(string) error { return errors.New("connection reset") }
	if _, err := r.Run(context.Background(), RunOptions{}); err == nil {
		t.Fatal("upload did not fail")
	}
	for k := range bad {
		if _, ok := store.objs["neo4j/quarantine/"+strings.TrimPrefix(k, "neo4j/")]; !ok {
			t.Errorf("quarantined %s is gone", k)
		}
	}
	if st, _ := ReadState(r.Root); st.QuarantinedObjects() != 3 {
		t.Errorf("state quarantine after later runs = %+v", st.Quarantine)
	}
	all, err := r.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var q []string
	for _, b := range all {
		if b.Quarantined {
			if b.Complete || b.Err == nil {
				t.Errorf("quarantined %s listed as complete=%v err=%v", b.ID, b.Complete, b.Err)
			}
			q = append(q, b.ID)
		}
	}
	if !slices.Equal(q, []string{"20260302T000000Z", "20260301T000000Z"}) {
		t.Errorf("listed quarantine = %q", q)
	}
}

// A restore checks every database it is about to load: the manifest's, not
// the config's (which may have changed since the backup).
func TestRestoreChecksTheManifestsDatabases(t *testing.T) {
	eng, store := fakeDB(t), newMemStore()
	r := testRunner(t, eng, store, t0)
	res, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Config.Databases = []string{"system"}
	eng.calls = nil
	if err := r.Restore(context.Background(), res.ID, RestoreOptions{Yes: true}); err != nil {
		t.Fatal(err)
	}
	var checks, loads []string
	for _, c := range eng.calls {
		switch {
		case strings.HasPrefix(c, "database check "):
			checks = append(checks, strings.TrimPrefix(c, "database check "))
		case strings.HasPrefix(c, "database load "):
			loads = append(loads, strings.TrimPrefix(c, "database load "))
		}
	}
	if !slices.Equal(checks, loads) || len(loads) != 2 {
		t.Fatalf("checked %q, loaded %q: every loaded database must be checked first (calls %q)", checks, loads, eng.calls)
	}
}
