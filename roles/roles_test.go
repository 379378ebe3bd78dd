package roles

import (
	"io/fs"
	"strings"
	"testing"
)

func TestEveryRoleHasItsFiles(t *testing.T) {
	for _, name := range Names {
		fsys, err := FS(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fs.Stat(fsys, "compose.yaml"); err != nil {
			t.Errorf("%s: no compose.yaml: %v", name, err)
		}
		for _, pattern := range []string{"consul/*.hcl", "templates/*.ctmpl"} {
			m, _ := fs.Glob(fsys, pattern)
			if len(m) == 0 {
				t.Errorf("%s: nothing matches %s", name, pattern)
			}
		}
	}
	for _, name := range Names {
		if _, err := Required(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := FS("db"); err == nil {
		t.Error("unknown role accepted")
	}
}

func TestServices(t *testing.T) {
	for role, want := range map[string]string{"neo4j": "neo4j,neo4j-monitor", "api": "api", "web": "web", "landing": "landing", "sites": "sites"} {
		got, err := Services(role)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("%s: %v %v, want %s", role, got, err, want)
		}
	}
}
