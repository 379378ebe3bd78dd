package cli

import (
	"bytes"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c := New(IO{Out: &out, ErrOut: &out})
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestHelpListsTheCommands(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"serve", "start", "env", "down", "--instance", "--state"} {
		if !strings.Contains(out, c) {
			t.Errorf("help lacks %q:\n%s", c, out)
		}
	}
}

func TestEnvWithoutAServerSaysSo(t *testing.T) {
	_, err := run(t, "env", "--state", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "localdo start") {
		t.Fatalf("env without a server: %v", err)
	}
}

func TestDefaultStateDirFollowsTheCache(t *testing.T) {
	t.Setenv("CODELAB_CACHE", "/x/cache")
	g := &Global{Instance: "demo"}
	if got := g.dir(); got != "/x/cache/localdo/demo" {
		t.Fatalf("state dir %s", got)
	}
}
