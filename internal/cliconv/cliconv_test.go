package cliconv_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/internal/cliconv"
	"github.com/codelab-app/infra/internal/exitcode"
)

// tree is a root with a leaf taking no arguments, a group with one leaf
// taking exactly one, and a leaf that fails with EINVAL.
func tree(out io.Writer) *cobra.Command {
	root := &cobra.Command{Use: "prog", SilenceUsage: true, SilenceErrors: true}
	root.SetOut(out)
	root.SetErr(out)
	root.PersistentFlags().Bool("flag", false, "a flag")
	leaf := &cobra.Command{Use: "leaf", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	group := &cobra.Command{Use: "group", Short: "a group"}
	group.AddCommand(&cobra.Command{Use: "one", Args: cobra.ExactArgs(1), RunE: func(*cobra.Command, []string) error { return nil }})
	chown := &cobra.Command{Use: "chown", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
		return fmt.Errorf("chown /x: %w", syscall.EINVAL)
	}}
	root.AddCommand(leaf, group, chown)
	cliconv.Strict(root)
	return root
}

func run(args ...string) (int, string) {
	var out bytes.Buffer
	root := tree(&out)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	code := cliconv.Report(&out, "prog", cmd, err)
	return code, out.String()
}

func TestUsageErrorsAreTyped(t *testing.T) {
	for _, args := range [][]string{
		{"no-such-command"},
		{"leaf", "extra"},
		{"leaf", "--no-such-flag"},
		{"group", "no-such-command"},
		{"group", "one"},
		{"group", "one", "a", "b"},
		{"--flag=maybe", "leaf"},
		{"completion", "no-such-shell"},
	} {
		code, out := run(args...)
		if code != exitcode.Usage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitcode.Usage, out)
		}
		if !strings.Contains(out, "--help' for usage") {
			t.Errorf("%v: no pointer to --help:\n%s", args, out)
		}
	}
}

func TestUnknownCommandSuggests(t *testing.T) {
	_, out := run("lef")
	if !strings.Contains(out, `unknown command "lef" for "prog"; did you mean leaf?`) {
		t.Errorf("got %q", out)
	}
}

func TestFailureIsNotUsageWhateverItsText(t *testing.T) {
	code, out := run("chown")
	if code != exitcode.Failed {
		t.Fatalf("exit %d, want %d\n%s", code, exitcode.Failed, out)
	}
	if !strings.Contains(out, "invalid argument") || strings.Contains(out, "--help") {
		t.Errorf("output %q", out)
	}
}

func TestGroupWithoutSubcommandPrintsHelp(t *testing.T) {
	code, out := run("group")
	if code != exitcode.OK || !strings.Contains(out, "one") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if code, out := run("group", "one", "x"); code != exitcode.OK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if code, out := run("completion", "bash"); code != exitcode.OK || !strings.Contains(out, "bash completion") {
		t.Fatalf("completion bash: exit %d:\n%.200s", code, out)
	}
}

func TestReport(t *testing.T) {
	var out bytes.Buffer
	if code := cliconv.Report(&out, "prog", nil, nil); code != exitcode.OK || out.Len() != 0 {
		t.Fatalf("nil: exit %d %q", code, out.String())
	}
	code := cliconv.Report(&out, "prog", nil, exitcode.With(exitcode.Degraded, errors.New("half up")))
	if code != exitcode.Degraded || out.String() != "prog: half up\n" {
		t.Fatalf("degraded: exit %d %q", code, out.String())
	}
}

func TestLogLevel(t *testing.T) {
	var l slog.Level
	v := cliconv.LogLevel(&l)
	if v.String() != "info" {
		t.Errorf("default %q, want info", v.String())
	}
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "WARN": slog.LevelWarn, "error": slog.LevelError, "Info": slog.LevelInfo} {
		if err := v.Set(in); err != nil || l != want {
			t.Errorf("Set(%q): %v, level %v, want %v", in, err, l, want)
		}
	}
	var lv slog.LevelVar
	for _, bad := range []string{"", "verbose", "debug+1", "-4", "trace"} {
		if err := cliconv.LogLevel(&lv).Set(bad); err == nil || !strings.Contains(err.Error(), cliconv.LogLevels) {
			t.Errorf("Set(%q) = %v, want an error naming %s", bad, err, cliconv.LogLevels)
		}
	}
	if lv.Level() != slog.LevelInfo {
		t.Errorf("a rejected value changed the level to %v", lv.Level())
	}
}
