// Package fsutil holds the agent's one way of writing files: atomically,
// below an optional root prefix, reporting whether the bytes changed.
package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Root writes files below Dir. An empty Dir means the real filesystem root.
// Tests point Dir at a temporary folder; production leaves it empty.
type Root struct {
	Dir string
	// Owners resolves the user named by WriteFileAs. Nil means
	// SystemOwners on the real root; below a Dir (tests, previews, which
	// need not run as root nor have the user) files keep their writer's
	// owner unless Owners is set.
	Owners Owners
}

// Owner is the numeric user and group a file is written for.
type Owner struct{ UID, GID int }

// Owners resolves a system user's name to the Owner of its files.
type Owners func(name string) (Owner, error)

// SystemOwners looks up the user and the group called name in the system's
// user and group databases.
func SystemOwners(name string) (Owner, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return Owner{}, fmt.Errorf("look up user %s: %w", name, err)
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return Owner{}, fmt.Errorf("look up group %s: %w", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return Owner{}, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return Owner{}, fmt.Errorf("group %s: gid %q: %w", name, g.Gid, err)
	}
	return Owner{UID: uid, GID: gid}, nil
}

// Owner resolves name ("" is the writer) to the owner WriteFileAs gives
// its files; nil means the writer's.
func (r Root) Owner(name string) (*Owner, error) {
	if name == "" {
		return nil, nil
	}
	lookup := r.Owners
	if lookup == nil {
		if r.Dir != "" {
			return nil, nil
		}
		lookup = SystemOwners
	}
	o, err := lookup(name)
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// Path maps an absolute path on the droplet (/etc/consul.d/consul.hcl) to
// the path under the root prefix.
func (r Root) Path(p string) string {
	if !filepath.IsAbs(p) {
		panic(fmt.Sprintf("fsutil: path %q is not absolute", p))
	}
	if r.Dir == "" {
		return filepath.Clean(p)
	}
	return filepath.Join(r.Dir, p)
}

// ReadFile reads a droplet path below the root.
func (r Root) ReadFile(p string) ([]byte, error) {
	return os.ReadFile(r.Path(p))
}

// MkdirAll creates a droplet directory below the root.
func (r Root) MkdirAll(p string, perm fs.FileMode) error {
	if err := os.MkdirAll(r.Path(p), perm); err != nil {
		return fmt.Errorf("create directory %s: %w", p, err)
	}
	return nil
}

// WriteFile atomically replaces the droplet path p with data and mode perm.
// It writes a temporary file in the same folder, fsyncs it, sets its mode,
// renames it over p and fsyncs the folder. When p already holds exactly
// data with mode perm nothing is written and changed is false: a reboot that
// renders the same bytes touches nothing and restarts nothing.
func (r Root) WriteFile(p string, data []byte, perm fs.FileMode) (changed bool, err error) {
	return WriteFile(r.Path(p), data, perm)
}

// WriteFileAs is WriteFile for a file owned by the system user and group
// called user (Root.Owner): the temporary file gets that owner and perm
// before any byte lands in it, so the file is never readable by anyone
// else, not even for a moment, and never changes owner after it is in
// place. A file whose bytes and mode match but whose owner does not is
// rewritten (changed). An empty user is WriteFile.
func (r Root) WriteFileAs(p string, data []byte, perm fs.FileMode, user string) (changed bool, err error) {
	o, err := r.Owner(user)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", p, err)
	}
	return WriteFileOwned(r.Path(p), data, perm, o)
}

// WriteFile is Root{}.WriteFile on a host path, for callers (tests, the
// imager) that hold a full path already.
func WriteFile(path string, data []byte, perm fs.FileMode) (changed bool, err error) {
	return WriteFileOwned(path, data, perm, nil)
}

// Differs reports whether writing data with perm (and owner, unless nil)
// would change the file at path.
func Differs(path string, data []byte, perm fs.FileMode, owner *Owner) bool {
	old, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(old, data) {
		return true
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != perm.Perm() {
		return true
	}
	if owner == nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return !ok || int(sys.Uid) != owner.UID || int(sys.Gid) != owner.GID
}

// WriteFileOwned is WriteFile with an owner for the file (nil: the
// writer's), set on the temporary file before any byte is written.
func WriteFileOwned(path string, data []byte, perm fs.FileMode, owner *Owner) (changed bool, err error) {
	if _, err := os.ReadFile(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if !Differs(path, data, perm, owner) {
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	// Set the owner, then restrict the mode (a chown may clear mode bits),
	// before any byte lands, so a secret is never readable by others, not
	// even for a moment.
	if owner != nil {
		if err := tmp.Chown(owner.UID, owner.GID); err != nil {
			return false, fmt.Errorf("chown temporary file for %s: %w", path, err)
		}
	}
	if err := tmp.Chmod(perm.Perm()); err != nil {
		return false, fmt.Errorf("chmod temporary file for %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return false, fmt.Errorf("rename into %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return true, nil
}

// IsTemp reports whether name is one of WriteFile's temporary files, so that
// directory scans can pass over a write interrupted by a crash.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}
