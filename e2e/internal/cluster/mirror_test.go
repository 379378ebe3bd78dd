package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMirrorIsReadFromTheMachinesAptSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	deb822 := write("debian.sources", "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n")
	oneLine := write("sources.list", "# comment\ndeb [signed-by=/k.gpg] http://other.example/debian bookworm main\n")
	empty := write("empty.list", "# nothing\n")
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{deb822, oneLine}, "http://mirror.example/debian"},
		{[]string{empty, oneLine}, "http://other.example/debian"},
		{[]string{filepath.Join(dir, "missing"), deb822}, "http://mirror.example/debian"},
	} {
		got, err := mirrorIn(c.files)
		if err != nil || got != c.want {
			t.Errorf("mirrorIn(%v) = %q, %v; want %q", c.files, got, err, c.want)
		}
	}
	if got, err := mirrorIn([]string{empty}); err == nil {
		t.Errorf("no source: got %q, want an error", got)
	}
}
