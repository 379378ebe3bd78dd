// Package fsutil holds the agent's one way of writing files: atomically,
// below an optional root prefix, reporting whether the bytes changed.
package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Root writes files below Dir. An empty Dir means the real filesystem root.
// Tests point Dir at a temporary folder; production leaves it empty.
type Root struct {
	Dir string
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

// WriteFile is Root{}.WriteFile on a host path, for callers (tests, the
// imager) that hold a full path already.
func WriteFile(path string, data []byte, perm fs.FileMode) (changed bool, err error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == perm.Perm() {
			return false, nil
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
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
	// Restrict the mode before any byte lands, so a secret is never
	// readable by others, not even for a moment.
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
