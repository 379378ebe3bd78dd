// Package cli holds codelab-agent's commands. Each command is an options
// struct and a run function with injected stdout/stderr, so tests call it
// directly; cmd/codelab-agent only wires.
package cli

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/version"
	"github.com/codelab-app/infra/internal/cliconv"
	"github.com/codelab-app/infra/internal/exitcode"
)

// IO is where a command reads and writes.
type IO struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// StdIO is the process's own streams.
func StdIO() IO { return IO{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr} }

// Global options, shared by every command.
type Global struct {
	LogLevel slog.Level // --log-level; the zero value is info
	Root     string
}

// NewRoot builds the command tree.
func NewRoot(stdio IO) *cobra.Command {
	g := &Global{}
	root := &cobra.Command{
		Use:   "codelab-agent",
		Short: "Boots a Codelab droplet from its metadata and one-line user_data",
		Long: `codelab-agent runs on every Codelab droplet. At boot it reads the droplet's
metadata and one-line user_data, renders Consul and consul-template config,
starts the units, pulls the role's images and runs its Compose project.

` + exitcode.Doc,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.ErrOut)
	root.PersistentFlags().Var(cliconv.LogLevel(&g.LogLevel), "log-level", "log level: "+cliconv.LogLevels)
	root.PersistentFlags().StringVar(&g.Root, "root", "", "write every file below this folder instead of / (for tests and previews)")
	root.AddCommand(
		newBootCmd(g, stdio),
		newStatusCmd(g, stdio),
		newRenderCmd(g, stdio),
		newUserdataCmd(g, stdio),
		newBackupCmd(g, stdio),
		newMonitorCmd(g, stdio),
		newFleetCmd(g, stdio),
		newFirewallCmd(g, stdio),
	)
	cliconv.Strict(root)
	return root
}

// Logger returns the slog logger for a command: text to stderr, so journald
// keeps it.
func (g *Global) Logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: g.LogLevel}))
}

// Execute runs the tree and returns the process exit code.
func Execute(ctx context.Context, args []string, stdio IO) int {
	root := NewRoot(stdio)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return cliconv.Report(stdio.ErrOut, "codelab-agent", cmd, err)
}
