package cli_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codelab-app/infra/imager/internal/cli"
	"github.com/codelab-app/infra/internal/exitcode"
)

// The operators' contract: these command lines parse, with these flags and defaults.
func TestContractCommandsParse(t *testing.T) {
	for _, line := range []string{
		"build app", "build neo4j", "build all --force", "build app --debug", "build app --step",
		"build all --plan", "build all --plan --json", "build all --json", "build all --regions nyc3,fra1",
		"build api", "build web", "build landing", "build sites", "build services", "build api --version v1.2.3",
		"build all --version v1 --registry registry.digitalocean.com/codelab",
		"validate app", "validate neo4j", "validate api", "validate services", "validate all",
		"fmt", "fmt --check",
		"list-images", "list-images --json",
		"clean-images", "clean-images --keep 3", "clean-images --dry-run",
	} {
		g, _, _ := globals(t, env{})
		root := cli.NewRootCmd(g)
		args := strings.Fields(line)
		cmd, rest, err := root.Find(args)
		if err != nil || cmd == root {
			t.Errorf("%q: no such command: %v", line, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%q: %v", line, err)
		}
		if cmd.Args != nil {
			if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
				t.Errorf("%q: %v", line, err)
			}
		}
	}
	g, _, _ := globals(t, env{})
	clean, _, _ := cli.NewRootCmd(g).Find([]string{"clean-images"})
	if f := clean.Flags().Lookup("keep"); f == nil || f.DefValue != "3" {
		t.Errorf("clean-images --keep default = %v, want 3", f)
	}
	root := cli.NewRootCmd(g)
	for _, f := range []string{"api-url", "packer", "cache-dir", "repo"} {
		if root.PersistentFlags().Lookup(f) == nil {
			t.Errorf("missing top-level flag --%s", f)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"build"}, {"build", "frontend"}, {"validate", "app", "neo4j"}, {"fmt", "x"}, {"list-images", "--nope"}} {
		g, _, _ := globals(t, env{})
		err := run(t, g, args...)
		if exitcode.Code(err) != exitcode.Usage {
			t.Errorf("%v: err = %v (%T), want a UsageError", args, err, err)
		}
	}
}

// Every `imager ...` line in imager/README.md's code blocks is a valid command line.
func TestReadmeCommands(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "imager ") {
			continue
		}
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		n++
		g, _, _ := globals(t, env{})
		root := cli.NewRootCmd(g)
		cmd, rest, err := root.Find(strings.Fields(line)[1:])
		// The root command itself takes only flags (imager --version).
		if err != nil || (cmd == root && !strings.HasPrefix(strings.Fields(line)[1], "--")) {
			t.Errorf("README: %q is not a command: %v", line, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("README: %q: %v", line, err)
		} else if cmd.Args != nil {
			if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
				t.Errorf("README: %q: %v", line, err)
			}
		}
	}
	if n < 5 {
		t.Fatalf("README has only %d imager command lines", n)
	}
}

// Execute maps errors to the shared exit codes: every usage mistake is 64
// with a pointer to --help, and a failure is 1 whatever its text says.
func TestExecuteExitCodes(t *testing.T) {
	for _, args := range [][]string{{"no-such-command"}, {"build"}, {"fmt", "x"}, {"list-images", "--nope"}, {"--verbose=maybe", "fmt"}, {"--log-level=loud", "fmt"}, {"fmt", "--log-level", "trace"}} {
		g, _, errb := globals(t, env{})
		if code := cli.Execute(context.Background(), g, args); code != exitcode.Usage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitcode.Usage, errb)
		} else if !strings.Contains(errb.String(), "--help' for usage") {
			t.Errorf("%v: no pointer to --help:\n%s", args, errb)
		}
	}
	// A NUL byte in a path makes the walk fail with EINVAL, "invalid argument".
	g, _, errb := globals(t, env{})
	code := cli.Execute(context.Background(), g, []string{"fmt", "--repo", "bad\x00repo"})
	if code != exitcode.Failed || !strings.Contains(errb.String(), "invalid argument") || strings.Contains(errb.String(), "--help") {
		t.Errorf("EINVAL: exit %d, want %d\n%s", code, exitcode.Failed, errb)
	}
}

func TestHelpPrintsExitCodes(t *testing.T) {
	g, out, _ := globals(t, env{})
	if code := cli.Execute(context.Background(), g, []string{"--help"}); code != exitcode.OK {
		t.Fatalf("--help: exit %d", code)
	}
	if !strings.Contains(out.String(), exitcode.Doc) {
		t.Errorf("--help lacks the exit codes:\n%s", out)
	}
}
