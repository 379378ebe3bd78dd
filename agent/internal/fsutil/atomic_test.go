package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReportsChange(t *testing.T) {
	root := Root{Dir: t.TempDir()}
	const p = "/etc/consul.d/consul.hcl"

	changed, err := root.WriteFile(p, []byte("a"), 0o640)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v, want changed", changed, err)
	}
	changed, err = root.WriteFile(p, []byte("a"), 0o640)
	if err != nil || changed {
		t.Fatalf("same bytes: changed=%v err=%v, want unchanged", changed, err)
	}
	changed, err = root.WriteFile(p, []byte("a"), 0o600)
	if err != nil || !changed {
		t.Fatalf("new mode: changed=%v err=%v, want changed", changed, err)
	}
	changed, err = root.WriteFile(p, []byte("b"), 0o600)
	if err != nil || !changed {
		t.Fatalf("new bytes: changed=%v err=%v, want changed", changed, err)
	}
	got, _ := root.ReadFile(p)
	if string(got) != "b" {
		t.Fatalf("content = %q, want b", got)
	}
	st, _ := os.Stat(root.Path(p))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(root.Path(p)))
	for _, e := range entries {
		if IsTemp(e.Name()) {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestWriteFileFailureLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if _, err := WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory where the file should go makes the rename fail.
	bad := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(bad, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFile(bad, []byte("new"), 0o644); err == nil {
		t.Fatal("write over a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if IsTemp(e.Name()) {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "old" {
		t.Fatalf("unrelated file changed: %q", got)
	}
}

func TestRootPath(t *testing.T) {
	if got := (Root{}).Path("/etc/x"); got != "/etc/x" {
		t.Fatalf("empty root: %s", got)
	}
	if got := (Root{Dir: "/tmp/r"}).Path("/etc/x"); got != "/tmp/r/etc/x" {
		t.Fatalf("prefixed: %s", got)
	}
}
