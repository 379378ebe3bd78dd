package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/render"
	"github.com/dustin/go-humanize"
)

// LockFile keeps two backup runs or restores from overlapping.
const LockFile = "/var/lib/codelab/backup.lock"

// ErrOutsideWindow is returned by Run when a Community backup would stop
// the database outside its window; nothing was done.
var ErrOutsideWindow = errors.New("outside the backup window")

// incompleteAge is how old an upload without a manifest (a run that died
// mid-upload) must be before retention removes it.
const incompleteAge = 24 * time.Hour

// Runner runs, lists and restores backups.
type Runner struct {
	Root   fsutil.Root
	Config Config
	Engine Engine
	// OpenStore connects to the bucket; nil means NewS3.
	OpenStore func(Spaces) (Store, error)
	Log       *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Progress, when set, is told how far the upload and its read-back
	// are, as bytes move (never from two goroutines at once).
	Progress func(Transfer)
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// store connects to the bucket; it also returns the manifest key ("" when
// none is configured).
func (r *Runner) store() (Store, string, error) {
	sp, err := LoadSpaces(r.Root, r.Config.SecretFile)
	if err != nil {
		return nil, "", err
	}
	open := r.OpenStore
	if open == nil {
		open = func(sp Spaces) (Store, error) { return NewS3(sp, nil) }
	}
	s, err := open(sp)
	return s, sp.ManifestKey, err
}

func (r *Runner) prefix() string { return strings.Trim(r.Config.Prefix, "/") + "/" }

// lock takes LockFile; the returned func releases it.
func (r *Runner) lock() (func(), error) {
	p := r.Root.Path(LockFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open backup lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another backup or restore is running (%s is locked)", LockFile)
	}
	return func() { f.Close() }, nil
}

// composeLock takes the role's compose lock (render.ComposeLock of the
// Compose project, which is the role), the flock(2) that consul-template's
// exec and the boot's compose up hold around `docker compose up`. A dump or
// restore holds it for as long as the database is stopped, so that no
// compose up starts the database on the volume being dumped or loaded; a
// compose up that is running is waited for.
func (r *Runner) composeLock(ctx context.Context) (func(), error) {
	p := r.Root.Path(render.ComposeLock(r.Config.Project))
	unlock, err := fsutil.Lock(ctx, p, func() {
		r.log().Info("waiting for the compose lock (a compose up is running)", "lock", render.ComposeLock(r.Config.Project))
	})
	if err != nil {
		return nil, fmt.Errorf("take the compose lock: %w", err)
	}
	return unlock, nil
}

// RunOptions tune one run.
type RunOptions struct {
	// IgnoreWindow runs a Community backup outside its window.
	IgnoreWindow bool
}

// step runs fn as the named step, logging it and recording a failure.
func (r *Runner) step(ctx context.Context, res *Run, name string, fn func(ctx context.Context) error) error {
	start := r.now()
	r.log().Info("backup step", "step", name, "id", res.ID)
	err := fn(ctx)
	d := r.now().Sub(start).Round(time.Millisecond)
	if err != nil {
		r.log().Error("backup step failed", "step", name, "id", res.ID, "duration", d, "error", err)
		if res.Step == "" {
			res.Step, res.Error = name, err.Error()
		}
		return fmt.Errorf("backup %s: %w", name, err)
	}
	r.log().Info("backup step done", "step", name, "id", res.ID, "duration", d)
	return nil
}

// Run takes one backup: dump (or online backup), check, manifest,
// upload with read-back, local cleanup, retention. Whatever happens, the
// outcome is recorded in StateFile; a failure leaves earlier backups
// untouched.
func (r *Runner) Run(ctx context.Context, opts RunOptions) (res Run, err error) {
	c := r.Config
	start := r.now()
	if c.Edition == Community && !opts.IgnoreWindow && !c.InWindow(start) {
		return Run{}, fmt.Errorf("%w %s UTC (now %s); use --ignore-window to stop the database anyway", ErrOutsideWindow, c.Window, start.UTC().Format("15:04"))
	}
	unlock, err := r.lock()
	if err != nil {
		return Run{}, err
	}
	defer unlock()

	prev, perr := ReadState(r.Root)
	if perr != nil {
		r.log().Warn("previous backup state unreadable; starting afresh", "error", perr)
	}
	res = Run{ID: start.UTC().Format(IDFormat), Edition: c.Edition, StartedAt: start.UTC()}
	j := &job{Runner: r, res: &res, newest: prev.NewestVerified, quarantine: prev.Quarantine, dir: r.Root.Path(c.Dir)}
	j.runDir = filepath.Join(j.dir, res.ID)
	defer func() { err = r.record(&res, start, State{NewestVerified: j.newest, Quarantine: j.quarantine}, err) }()
	defer func() {
		if err != nil && !j.keepLocal {
			os.RemoveAll(j.runDir)
		}
	}()
	for _, s := range j.steps() {
		if err := r.step(ctx, &res, s.name, s.run); err != nil {
			return res, err
		}
	}
	return res, nil
}

// record finishes res and writes it, with the newest verified backup and
// the quarantine in st, to StateFile.
func (r *Runner) record(res *Run, start time.Time, st State, err error) error {
	res.FinishedAt = r.now().UTC()
	res.DurationMS = res.FinishedAt.Sub(start).Milliseconds()
	res.Result = ResultOK
	if err != nil {
		res.Result = ResultFailed
	}
	st.LastRun = res
	if werr := WriteState(r.Root, st); werr != nil {
		err = errors.Join(err, werr)
	}
	r.log().Info("backup finished", "id", res.ID, "result", res.Result, "size", res.SizeBytes,
		"duration", res.Duration(), "downtime", res.Downtime(), "verified", res.Verified, "uploaded", res.Uploaded)
	return err
}

// job is one backup run's working state, shared by its steps.
type job struct {
	*Runner
	res        *Run
	dir        string // the backup folder
	runDir     string // this run's folder in it
	bucket     Store
	key        string // the manifest key
	manifest   Manifest
	keepLocal  bool    // the local copy is a verified backup not yet uploaded
	newest     *Newest // the newest verified backup in the bucket
	quarantine []Quarantined
}

type namedStep struct {
	name string
	run  func(ctx context.Context) error
}

// steps are the run's steps, in order.
func (j *job) steps() []namedStep {
	take := namedStep{"online-backup", j.onlineBackup}
	if j.Config.Edition == Community {
		take = namedStep{"dump", func(ctx context.Context) error { return j.dump(ctx, j.runDir, j.res) }}
	}
	return []namedStep{
		{"prepare", j.prepare},
		take,
		{"check", j.checkRun},
		{"manifest", j.writeManifest},
		{"upload", j.uploadRun},
		{"cleanup", j.cleanupLocal},
		{"retention", func(ctx context.Context) error {
			q, err := j.retain(ctx, j.bucket, j.res.ID)
			if q != nil {
				j.quarantine = q
			}
			return err
		}},
	}
}

// prepare connects to the bucket and makes this run's folder, when the
// disk has room for a backup.
func (j *job) prepare(ctx context.Context) error {
	s, key, err := j.store()
	if err != nil {
		return err
	}
	if key == "" {
		// A backup that restore refuses is no backup: fail now.
		return fmt.Errorf("backup secret file %s: %w", j.Config.SecretFile, ErrNoManifestKey)
	}
	j.key = key
	if err := s.Check(ctx); err != nil {
		return fmt.Errorf("spaces: %w", err)
	}
	j.bucket = s
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return err
	}
	if free, err := FreeBytes(j.dir); err != nil {
		return err
	} else if free < j.Config.MinFreeBytes {
		return fmt.Errorf("disk full: %s has %s free, a backup needs at least %s", j.Config.Dir, human(free), human(j.Config.MinFreeBytes))
	}
	if err := os.Mkdir(j.runDir, 0o750); err != nil {
		return err
	}
	return j.chownForAdmin(j.runDir)
}

// onlineBackup is Enterprise's backup of the running database.
func (j *job) onlineBackup(ctx context.Context) error {
	c := j.Config
	_, err := j.Engine.Admin(ctx, AdminRun{Image: c.Image, User: c.AdminUser, Dir: j.runDir, Network: "host",
		Args: append([]string{"database", "backup", "--from=" + c.BackupFrom, "--to-path=/backups", "--type=FULL"}, c.Databases...)})
	return err
}

func (j *job) checkRun(ctx context.Context) error {
	if err := j.check(ctx, j.runDir, j.Config.Databases); err != nil {
		return err
	}
	j.res.Verified = true
	return nil
}

func (j *job) writeManifest(context.Context) error {
	m, err := j.Runner.manifest(j.runDir, *j.res, j.key)
	j.manifest, j.res.SizeBytes = m, m.Size()
	return err
}

// uploadRun uploads the verified backup; from here on the local copy is
// kept until the upload is confirmed.
func (j *job) uploadRun(ctx context.Context) error {
	j.keepLocal = true
	if err := j.upload(ctx, j.bucket, j.runDir, j.manifest); err != nil {
		return err
	}
	j.res.Uploaded = true
	j.newest = &Newest{ID: j.res.ID, At: j.res.StartedAt, SizeBytes: j.res.SizeBytes}
	return nil
}

// cleanupLocal removes this run's copy, and copies that failed runs left
// behind: a newer verified backup is in the bucket now.
func (j *job) cleanupLocal(context.Context) error {
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if _, perr := time.Parse(IDFormat, e.Name()); perr == nil && e.IsDir() {
			errs = append(errs, os.RemoveAll(filepath.Join(j.dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// chownForAdmin hands the folder to the user neo4j-admin runs as.
func (r *Runner) chownForAdmin(dir string) error {
	uid, gid := 7474, 7474 // the official image's neo4j user
	if u := r.Config.AdminUser; u != "" {
		a, b, _ := strings.Cut(u, ":")
		var err1, err2 error
		uid, err1 = strconv.Atoi(a)
		gid, err2 = strconv.Atoi(b)
		if b == "" {
			gid, err2 = uid, nil
		}
		if err1 != nil || err2 != nil {
			return fmt.Errorf("adminUser %q: want uid[:gid]", u)
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(dir, uid, gid)
}

// dump stops the database container, dumps every database and starts it
// again (also when a dump fails), recording the downtime.
func (r *Runner) dump(ctx context.Context, runDir string, res *Run) (err error) {
	c := r.Config
	unlock, err := r.composeLock(ctx)
	if err != nil {
		return err
	}
	defer unlock() // after the database is started again
	id, err := r.Engine.Find(ctx, c.Project, c.Service)
	if err != nil {
		return fmt.Errorf("find the database container: %w", err)
	}
	running := false
	if id != "" {
		if running, err = r.Engine.Running(ctx, id); err != nil {
			return err
		}
	}
	if running {
		stopped := r.now()
		r.log().Info("stopping the database for the dump", "container", short(id))
		if err := r.Engine.Stop(ctx, id, c.StopTimeout.Duration); err != nil {
			// It may be half stopped: try to bring it back before failing.
			return errors.Join(fmt.Errorf("stop the database: %w", err), r.Engine.Start(context.WithoutCancel(ctx), id, c.StartTimeout.Duration))
		}
		defer func() {
			// Start it again even when a dump failed or ctx was cancelled.
			serr := r.Engine.Start(context.WithoutCancel(ctx), id, c.StartTimeout.Duration)
			res.DowntimeMS = r.now().Sub(stopped).Milliseconds()
			r.log().Info("database started again", "container", short(id), "downtime", res.Downtime(), "error", serr)
			if serr != nil {
				err = errors.Join(err, fmt.Errorf("start the database again: %w", serr))
			}
		}()
	}
	for _, db := range c.Databases {
		if _, err := r.Engine.Admin(ctx, AdminRun{Image: c.Image, User: c.AdminUser, Volume: c.Volume, Dir: runDir,
			Args: []string{"database", "dump", db, "--to-path=/backups", "--overwrite-destination=true"}}); err != nil {
			return fmt.Errorf("dump %s: %w", db, err)
		}
	}
	return nil
}

// check runs neo4j-admin database check on each of dbs' dumps (or backups)
// in the folder, without the data volume. A backup checks what it dumped
// (the config's databases); a restore checks what it will load (the
// manifest's).
func (r *Runner) check(ctx context.Context, dir string, dbs []string) error {
	c := r.Config
	tmp := filepath.Join(dir, ".check")
	if err := os.Mkdir(tmp, 0o750); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := r.chownForAdmin(tmp); err != nil {
		return err
	}
	for _, db := range dbs {
		if _, err := r.Engine.Admin(ctx, AdminRun{Image: c.Image, User: c.AdminUser, Dir: dir,
			Args: []string{"database", "check", db, "--from-path=/backups", "--temp-path=/backups/.check", "--report-path=/backups/.check"}}); err != nil {
			return fmt.Errorf("check %s: %w", db, err)
		}
	}
	return nil
}

// manifest hashes the folder's files and writes manifest.json there,
// signed with key.
func (r *Runner) manifest(dir string, res Run, key string) (Manifest, error) {
	m := Manifest{SchemaVersion: 1, ID: res.ID, CreatedAt: res.StartedAt, Edition: r.Config.Edition, Image: r.Config.Image,
		Databases: r.Config.Databases, DowntimeMS: res.DowntimeMS, Verified: true}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return m, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == ManifestName || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		n, sum, err := hashFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return m, fmt.Errorf("hash %s: %w", e.Name(), err)
		}
		m.Files = append(m.Files, File{Name: e.Name(), SizeBytes: n, SHA256: sum})
	}
	if len(m.Files) == 0 {
		return m, errors.New("the dump produced no files")
	}
	if err := m.sign(key); err != nil {
		return m, err
	}
	b, err := m.encode()
	if err != nil {
		return m, err
	}
	_, err = fsutil.WriteFile(filepath.Join(dir, ManifestName), b, 0o600)
	return m, err
}

// upload puts every file and then the manifest, then reads every one back
// and compares its SHA-256. A failure removes this backup's objects (only
// these) from the bucket.
func (r *Runner) upload(ctx context.Context, store Store, dir string, m Manifest) (err error) {
	base := r.prefix() + m.ID + "/"
	msize, msum, herr := hashFile(filepath.Join(dir, ManifestName))
	if herr != nil {
		return herr
	}
	want := map[string]string{ManifestName: msum}
	names := []string{}
	total := msize
	for _, f := range m.Files {
		want[f.Name] = f.SHA256
		names = append(names, f.Name)
		total += f.SizeBytes
	}
	names = append(names, ManifestName) // last: its presence marks a complete backup
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			for i := len(names) - 1; i >= 0; i-- {
				if derr := store.Delete(cctx, base+names[i]); derr != nil {
					r.log().Warn("could not remove a failed upload", "key", base+names[i], "error", derr)
				}
			}
		}
	}()
	up := r.meter(PhaseUpload, total)
	for _, n := range names {
		if err := store.Put(ctx, base+n, filepath.Join(dir, n), up.add); err != nil {
			return err
		}
	}
	back := r.meter(PhaseReadBack, total)
	for _, n := range names {
		rc, err := store.Get(ctx, base+n)
		if err != nil {
			return fmt.Errorf("read back: %w", err)
		}
		_, sum, err := hashReader(io.TeeReader(rc, back))
		rc.Close()
		if err != nil {
			return fmt.Errorf("read back %s: %w", base+n, err)
		}
		if sum != want[n] {
			return fmt.Errorf("read back %s: SHA-256 %s, uploaded %s", base+n, sum, want[n])
		}
	}
	return nil
}

// Listed is a backup in the bucket.
type Listed struct {
	ID       string
	At       time.Time
	Complete bool     // has a valid manifest
	Manifest Manifest // when Complete
	// Err says why a manifest that is there cannot be used (a
	// *ManifestError); nil when Complete or when there is no manifest.
	// Retention moves such a backup to QuarantineFolder, never deletes it.
	Err error
	// Quarantined: the backup is in QuarantineFolder (Keys are there).
	Quarantined bool
	Keys        []string
	Size        int64
}

// List returns the bucket's backups, newest first.
func (r *Runner) List(ctx context.Context) ([]Listed, error) {
	store, _, err := r.store()
	if err != nil {
		return nil, err
	}
	return r.list(ctx, store)
}

func (r *Runner) list(ctx context.Context, store Store) ([]Listed, error) {
	objs, err := store.List(ctx, r.prefix())
	if err != nil {
		return nil, err
	}
	byID := map[string]*Listed{}
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, r.prefix())
		folder := ""
		if q, ok := strings.CutPrefix(rest, QuarantineFolder); ok {
			rest, folder = q, QuarantineFolder
		}
		id, name, ok := strings.Cut(rest, "/")
		at, perr := time.Parse(IDFormat, id)
		if !ok || perr != nil || name == "" {
			continue // not ours: never touched
		}
		l := byID[folder+id]
		if l == nil {
			l = &Listed{ID: id, At: at, Quarantined: folder != ""}
			byID[folder+id] = l
		}
		l.Keys = append(l.Keys, o.Key)
		l.Size += o.Size
		if name == ManifestName {
			l.Complete = true
		}
	}
	var out []Listed
	for _, l := range byID {
		if l.Complete {
			key := r.prefix() + l.ID + "/" + ManifestName
			if l.Quarantined {
				key = r.prefix() + QuarantineFolder + l.ID + "/" + ManifestName
			}
			rc, err := store.Get(ctx, key)
			if err != nil {
				return nil, err
			}
			b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("read manifest of %s: %w", l.ID, err)
			}
			switch l.Manifest, err = decodeManifest(key, b); {
			case err != nil:
				l.Complete, l.Err = false, err
			case l.Manifest.ID != l.ID:
				l.Complete, l.Err = false, &ManifestError{Key: key, Field: "id", Err: fmt.Errorf("%q is not the backup's folder %s", l.Manifest.ID, l.ID)}
			case !l.Manifest.Verified:
				l.Complete, l.Err = false, &ManifestError{Key: key, Field: "verified", Err: errors.New("false: the dumps were never checked")}
			}
			if l.Quarantined {
				l.Complete = false
			}
		}
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out, nil
}

// QuarantineFolder, below the prefix, holds the backups whose manifest
// cannot be used (it fails to parse or to validate, or has a newer schema):
// retention moves them there, keeping their names (quarantine/<id>/...),
// and never deletes anything in it.
const QuarantineFolder = "quarantine/"

// retain deletes what is past retention, and moves backups whose manifest
// cannot be used to QuarantineFolder. current is never touched. It
// returns what is in quarantine afterwards.
func (r *Runner) retain(ctx context.Context, store Store, current string) ([]Quarantined, error) {
	all, err := r.list(ctx, store)
	if err != nil {
		return nil, err
	}
	var complete []Listed
	quarantined := []Quarantined{}
	var errs []error
	for _, b := range all {
		switch {
		case b.Quarantined:
			quarantined = append(quarantined, quarantinedOf(b))
		case b.Complete:
			complete = append(complete, b)
		case b.ID == current:
		case b.Err != nil:
			r.log().Warn("moving a backup whose manifest cannot be used to quarantine", "id", b.ID, "error", b.Err)
			moved, err := r.quarantine(ctx, store, b)
			if err != nil {
				errs = append(errs, fmt.Errorf("quarantine %s: %w", b.ID, err))
				continue
			}
			quarantined = append(quarantined, quarantinedOf(moved))
		case r.now().Sub(b.At) > incompleteAge:
			r.log().Info("removing an incomplete upload", "id", b.ID)
			errs = append(errs, r.deleteBackup(ctx, store, b))
		}
	}
	_, drop := Retain(complete, r.Config.KeepDaily, r.Config.KeepWeekly)
	for _, b := range drop {
		if b.ID == current {
			continue
		}
		r.log().Info("removing a backup past retention", "id", b.ID)
		errs = append(errs, r.deleteBackup(ctx, store, b))
	}
	sort.Slice(quarantined, func(i, j int) bool { return quarantined[i].ID > quarantined[j].ID })
	return quarantined, errors.Join(errs...)
}

func quarantinedOf(b Listed) Quarantined {
	q := Quarantined{ID: b.ID, Objects: len(b.Keys)}
	if b.Err != nil {
		q.Reason = b.Err.Error()
	}
	return q
}

// quarantine moves backup b's objects to QuarantineFolder: it copies every
// one, then deletes the originals, the manifest last, so that an
// interrupted move is still recognised (and finished) by the next run.
func (r *Runner) quarantine(ctx context.Context, store Store, b Listed) (Listed, error) {
	moved := b
	moved.Quarantined, moved.Keys = true, nil
	for _, k := range b.Keys {
		dst := r.prefix() + QuarantineFolder + strings.TrimPrefix(k, r.prefix())
		if err := store.Copy(ctx, k, dst); err != nil {
			return b, err
		}
		moved.Keys = append(moved.Keys, dst)
	}
	keys := append([]string(nil), b.Keys...)
	sort.SliceStable(keys, func(i, j int) bool { return path.Base(keys[i]) != ManifestName && path.Base(keys[j]) == ManifestName })
	for _, k := range keys {
		if err := store.Delete(ctx, k); err != nil {
			return b, err
		}
	}
	return moved, nil
}

// deleteBackup removes the manifest first, so that a half-deleted backup
// is never mistaken for a complete one.
func (r *Runner) deleteBackup(ctx context.Context, store Store, b Listed) error {
	keys := append([]string(nil), b.Keys...)
	sort.SliceStable(keys, func(i, j int) bool { return path.Base(keys[i]) == ManifestName && path.Base(keys[j]) != ManifestName })
	for _, k := range keys {
		if err := store.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// RestoreOptions tune a restore.
type RestoreOptions struct {
	// Yes confirms stopping a running database and replacing its data.
	Yes bool
	// TrustUnsigned restores a backup whose manifest HMAC is missing or
	// does not match (or cannot be checked), after a warning.
	TrustUnsigned bool
	// Warn, when set, is told the warning (besides the log).
	Warn func(msg string)
}

// Restore downloads backup id, verifies its checksums and dumps, stops
// the database, loads every database and starts it again.
func (r *Runner) Restore(ctx context.Context, id string, opts RestoreOptions) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.restore(ctx, id, opts); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

func (r *Runner) restore(ctx context.Context, id string, opts RestoreOptions) error {
	c := r.Config
	log := r.log().With("id", id)
	container, running, err := r.database(ctx)
	if err != nil {
		return err
	}
	if running && !opts.Yes {
		return fmt.Errorf("the database is running; restoring %s replaces all its data: run again with --yes to stop it and restore", id)
	}
	store, b, key, err := r.findBackup(ctx, id)
	if err != nil {
		return err
	}
	if err := b.Manifest.verify(key, r.prefix()+b.ID+"/"+ManifestName); err != nil {
		var se *SignatureError
		if !opts.TrustUnsigned || !errors.As(err, &se) {
			return fmt.Errorf("%w (restore it anyway with --trust-unsigned only if you know where it came from)", err)
		}
		msg := fmt.Sprintf("restoring backup %s although %v (--trust-unsigned)", id, err)
		log.Warn("restore: untrusted manifest", "warning", msg)
		if opts.Warn != nil {
			opts.Warn(msg)
		}
	}
	dir, err := r.restoreDir(id, b.Manifest.Size())
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := r.now()
	if err := r.fetch(ctx, store, b, dir); err != nil {
		return err
	}
	log.Info("restore: downloaded and verified checksums", "files", len(b.Manifest.Files), "size", b.Manifest.Size(), "duration", r.now().Sub(start).Round(time.Millisecond))
	if err := r.check(ctx, dir, b.Manifest.Databases); err != nil {
		return err
	}
	volume, err := r.volumePath(ctx)
	if err != nil {
		return err
	}
	snap := filepath.Join(r.Root.Path(c.Dir), "rollback-"+id)
	if err := r.roomForSnapshot(volume, snap); err != nil {
		return err
	}
	unlock, err := r.composeLock(ctx)
	if err != nil {
		return err
	}
	defer unlock() // after the database is started again (or rolled back)
	if running {
		log.Info("restore: stopping the database", "container", short(container))
		if err := r.Engine.Stop(ctx, container, c.StopTimeout.Duration); err != nil {
			return errors.Join(fmt.Errorf("stop the database: %w", err), r.Engine.Start(context.WithoutCancel(ctx), container, c.StartTimeout.Duration))
		}
	}
	// The way back: a copy of the current data, taken while it is stopped.
	if err := copyTree(volume, snap); err != nil {
		err = fmt.Errorf("keep a copy of the current data in %s: %w (nothing was changed)", snap, err)
		os.RemoveAll(snap)
		if running {
			err = errors.Join(err, r.Engine.Start(context.WithoutCancel(ctx), container, c.StartTimeout.Duration))
		}
		return err
	}
	log.Info("restore: kept a copy of the current data", "folder", snap)
	err = r.load(ctx, b, dir, log)
	if err == nil && container != "" {
		if err = r.Engine.Start(ctx, container, c.StartTimeout.Duration); err != nil {
			err = fmt.Errorf("start the database on the restored data: %w", err)
		}
	}
	if err != nil {
		log.Error("restore failed; putting the previous data back", "error", err)
		if rerr := r.rollback(context.WithoutCancel(ctx), container, running, volume, snap); rerr != nil {
			return &RollbackError{Err: err, RollbackErr: rerr, Kept: snap}
		}
		os.RemoveAll(snap)
		return &RollbackError{Err: err, Running: running}
	}
	os.RemoveAll(snap)
	if container == "" {
		log.Info("restore: no database container to start; the data is on the volume", "volume", c.Volume)
		return nil
	}
	log.Info("restore: done", "duration", r.now().Sub(start).Round(time.Millisecond))
	return nil
}

// RollbackError is a restore that failed after it began to change the
// data. Either the previous data was put back (RollbackErr nil; Running:
// the database runs on it again), or that failed too and the previous
// data is kept in folder Kept.
type RollbackError struct {
	Err         error
	Running     bool
	RollbackErr error
	Kept        string
}

func (e *RollbackError) Error() string {
	switch {
	case e.RollbackErr != nil:
		return fmt.Sprintf("%v; putting the previous data back failed too: %v (the previous data is kept in %s)", e.Err, e.RollbackErr, e.Kept)
	case e.Running:
		return fmt.Sprintf("%v; rolled back: the database runs on its previous data", e.Err)
	}
	return fmt.Sprintf("%v; rolled back: the previous data is on the volume", e.Err)
}

func (e *RollbackError) Unwrap() error { return e.Err }

// volumePath is the data volume's folder on the host.
func (r *Runner) volumePath(ctx context.Context) (string, error) {
	if p := r.Config.Monitor.StorePath; p != "" {
		return r.Root.Path(p), nil
	}
	p, err := r.Engine.VolumePath(ctx, r.Config.Volume)
	if err != nil {
		return "", fmt.Errorf("find the data volume: %w", err)
	}
	return p, nil
}

// roomForSnapshot fails when the backup folder's disk cannot hold a copy
// of the data volume.
func (r *Runner) roomForSnapshot(volume, snap string) error {
	size, err := treeSize(volume)
	if err != nil {
		return fmt.Errorf("size of the current data: %w", err)
	}
	// A copy that a failed rollback kept may be the only good data left.
	if kept, _ := filepath.Glob(filepath.Join(filepath.Dir(snap), "rollback-*")); len(kept) > 0 {
		return fmt.Errorf("%s holds the data a failed restore could not put back: copy it onto the volume or remove it before restoring again", kept[0])
	}
	free, err := FreeBytes(filepath.Dir(snap))
	if err != nil {
		return err
	}
	if free < size+r.Config.MinFreeBytes {
		return fmt.Errorf("disk full: a restore first keeps a copy of the current data (%s), %s has %s free", human(size), r.Config.Dir, human(free))
	}
	return nil
}

// rollback puts the copy snap back on the volume and starts the database
// again when it ran before.
func (r *Runner) rollback(ctx context.Context, container string, wasRunning bool, volume, snap string) error {
	c := r.Config
	if container != "" {
		running, err := r.Engine.Running(ctx, container)
		if err != nil {
			return err
		}
		if running {
			if err := r.Engine.Stop(ctx, container, c.StopTimeout.Duration); err != nil {
				return fmt.Errorf("stop the database: %w", err)
			}
		}
	}
	if err := emptyTree(volume); err != nil {
		return fmt.Errorf("empty the volume: %w", err)
	}
	if err := copyTree(snap, volume); err != nil {
		return fmt.Errorf("copy the previous data back: %w", err)
	}
	r.log().Info("restore: the previous data is back on the volume")
	if wasRunning {
		if err := r.Engine.Start(ctx, container, c.StartTimeout.Duration); err != nil {
			return fmt.Errorf("start the database on the previous data: %w", err)
		}
	}
	return nil
}

// database finds the database container ("" when there is none) and
// whether it runs.
func (r *Runner) database(ctx context.Context) (id string, running bool, err error) {
	id, err = r.Engine.Find(ctx, r.Config.Project, r.Config.Service)
	if err != nil {
		return "", false, fmt.Errorf("find the database container: %w", err)
	}
	if id == "" {
		return "", false, nil
	}
	running, err = r.Engine.Running(ctx, id)
	return id, running, err
}

// findBackup finds a complete backup id in the bucket; it also returns
// the manifest key.
func (r *Runner) findBackup(ctx context.Context, id string) (Store, *Listed, string, error) {
	store, key, err := r.store()
	if err != nil {
		return nil, nil, "", err
	}
	all, err := r.list(ctx, store)
	if err != nil {
		return nil, nil, "", err
	}
	for i := range all {
		if all[i].ID != id {
			continue
		}
		if all[i].Quarantined {
			if slices.ContainsFunc(all, func(b Listed) bool { return b.ID == id && !b.Quarantined }) {
				continue
			}
			return nil, nil, "", fmt.Errorf("backup %s is in %s%s: its manifest cannot be used (%v)", id, r.prefix(), QuarantineFolder, all[i].Err)
		}
		if all[i].Err != nil {
			return nil, nil, "", fmt.Errorf("backup %s cannot be restored: %w", id, all[i].Err)
		}
		if !all[i].Complete {
			return nil, nil, "", fmt.Errorf("backup %s has no manifest: it is incomplete", id)
		}
		return store, &all[i], key, nil
	}
	return nil, nil, "", fmt.Errorf("no backup %s in the bucket (see backup list)", id)
}

// restoreDir makes an empty folder for backup id, when the disk has room
// for size bytes.
func (r *Runner) restoreDir(id string, size int64) (string, error) {
	c := r.Config
	dir := filepath.Join(r.Root.Path(c.Dir), "restore-"+id)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", err
	}
	if free, err := FreeBytes(filepath.Dir(dir)); err == nil && free < size+c.MinFreeBytes {
		return "", fmt.Errorf("disk full: %s free, the backup needs %s", human(free), human(size+c.MinFreeBytes))
	}
	os.RemoveAll(dir)
	if err := os.Mkdir(dir, 0o750); err != nil {
		return "", err
	}
	if err := r.chownForAdmin(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// fetch downloads the backup's files into dir, verifying each one.
func (r *Runner) fetch(ctx context.Context, store Store, b *Listed, dir string) error {
	for _, f := range b.Manifest.Files {
		// decodeManifest accepts plain names only; this keeps it so.
		if err := ValidFileName(f.Name); err != nil {
			return fmt.Errorf("backup %s: %w", b.ID, err)
		}
		if err := download(ctx, store, r.prefix()+b.ID+"/"+f.Name, filepath.Join(dir, f.Name), f); err != nil {
			return err
		}
	}
	return nil
}

// load loads (Community) or restores (Enterprise) every database of the
// backup onto the data volume.
func (r *Runner) load(ctx context.Context, b *Listed, dir string, log *slog.Logger) error {
	c := r.Config
	for _, db := range b.Manifest.Databases {
		if err := ValidDatabaseName(db); err != nil { // checked by decodeManifest too
			return fmt.Errorf("backup %s: %w", b.ID, err)
		}
		args := []string{"database", "load", db, "--from-path=/backups", "--overwrite-destination=true"}
		if b.Manifest.Edition == Enterprise {
			file := ""
			for _, f := range b.Manifest.Files {
				if strings.HasPrefix(f.Name, db+"-") && strings.HasSuffix(f.Name, ".backup") {
					file = f.Name
				}
			}
			if file == "" {
				return fmt.Errorf("backup %s has no artifact for database %s", b.ID, db)
			}
			args = []string{"database", "restore", "--from-path=/backups/" + file, "--overwrite-destination=true", db}
		}
		if _, err := r.Engine.Admin(ctx, AdminRun{Image: c.Image, User: c.AdminUser, Volume: c.Volume, Dir: dir, Args: args}); err != nil {
			return fmt.Errorf("load %s: %w", db, err)
		}
		log.Info("restore: loaded", "database", db)
	}
	return nil
}

// download writes key to path, verifying size and SHA-256.
func download(ctx context.Context, store Store, key, path string, want File) error {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	n, sum, err := hashReader(io.TeeReader(rc, f))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", key, err)
	}
	if n != want.SizeBytes || sum != want.SHA256 {
		return fmt.Errorf("download %s: got %d bytes with SHA-256 %s, the manifest says %d bytes with %s", key, n, sum, want.SizeBytes, want.SHA256)
	}
	return nil
}

// FreeBytes is the space left for an unprivileged writer on dir's
// filesystem; the monitor reports the same number.
func FreeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// human formats a byte count in binary units: "1.4 MiB".
func human(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// Human formats a byte count for people.
func Human(n int64) string { return human(n) }

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
