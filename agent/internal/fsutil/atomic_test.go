package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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

// ownerOf returns path's numeric owner.
func ownerOf(t *testing.T, path string) Owner {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return Owner{UID: int(sys.Uid), GID: int(sys.Gid)}
}

func TestWriteFileAsOwnsTheFileFromTheStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
	const p = "/etc/consul.d/encrypt.hcl"
	consul := Owner{UID: 4242, GID: 4343}
	var asked []string
	root := Root{Dir: t.TempDir(), Owners: func(name string) (Owner, error) {
		asked = append(asked, name)
		if name != "consul" {
			return Owner{}, errors.New("unknown user " + name)
		}
		return consul, nil
	}}
	// An unchanged file with the wrong owner: rewritten.
	if _, err := root.WriteFile(p, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, err := root.WriteFileAs(p, []byte("secret"), 0o600, "consul")
	if err != nil || !changed {
		t.Fatalf("owner change: changed=%v err=%v, want changed", changed, err)
	}
	if got := ownerOf(t, root.Path(p)); got != consul {
		t.Fatalf("owner = %+v, want %+v", got, consul)
	}
	st, _ := os.Stat(root.Path(p))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v", st.Mode().Perm())
	}
	if changed, err := root.WriteFileAs(p, []byte("secret"), 0o600, "consul"); err != nil || changed {
		t.Fatalf("same bytes, mode and owner: changed=%v err=%v, want unchanged", changed, err)
	}
	if !slices.Equal(asked, []string{"consul", "consul"}) {
		t.Errorf("looked up %v", asked)
	}
	// An owner that cannot be resolved writes nothing.
	if _, err := root.WriteFileAs(p, []byte("other"), 0o600, "nobody-here"); err == nil || !strings.Contains(err.Error(), "unknown user nobody-here") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := root.ReadFile(p); string(b) != "secret" {
		t.Fatalf("content = %q after a failed write", b)
	}
	// No user: the writer's, as WriteFile.
	if _, err := root.WriteFileAs("/etc/x", []byte("x"), 0o644, ""); err != nil {
		t.Fatal(err)
	}
	if got := ownerOf(t, root.Path("/etc/x")); got.UID != os.Geteuid() {
		t.Errorf("owner of a file without a user = %+v", got)
	}
}

func TestOwnerDefaults(t *testing.T) {
	// Below a Dir without Owners: the writer's (tests, previews).
	if o, err := (Root{Dir: t.TempDir()}).Owner("consul"); err != nil || o != nil {
		t.Fatalf("under a Dir: %v %v", o, err)
	}
	// The real root looks the user up in the system's databases.
	o, err := (Root{}).Owner("root")
	if err != nil || o == nil || *o != (Owner{0, 0}) {
		t.Fatalf("root: %+v %v", o, err)
	}
	if _, err := (Root{}).Owner("codelab-no-such-user"); err == nil || !strings.Contains(err.Error(), "look up user codelab-no-such-user") {
		t.Fatalf("unknown user: %v", err)
	}
	if o, err := (Root{}).Owner(""); err != nil || o != nil {
		t.Fatalf("no user: %v %v", o, err)
	}
}
