// Package cliconv holds the command-line conventions codelab-agent and
// imager share: every wrong invocation is a typed usage error (exit 64)
// made where cobra finds it, never recognised afterwards by its text, and
// errors are reported the same way by both.
package cliconv

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/internal/exitcode"
)

// Strict makes every usage failure in root's tree a typed usage error:
//   - flag errors (unknown flag, bad value) through root's flag error func;
//   - the errors of every command's Args validator (cobra.NoArgs,
//     cobra.ExactArgs, ...);
//   - an unknown subcommand, for root and every group command: a group
//     command gets an Args validator that rejects it and, when it has no
//     Run of its own, a RunE that prints its help.
//
// Call it once the tree is complete.
func Strict(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return exitcode.AsUsage(err)
	})
	// cobra adds its completion command at Execute; add it now so that
	// it, a group command too, is made strict with the rest.
	root.InitDefaultCompletionCmd()
	strict(root)
}

func strict(c *cobra.Command) {
	if c.HasSubCommands() {
		if c.Args == nil {
			c.Args = unknownSubcommand
		}
		if !c.Runnable() {
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
	}
	if c.Args != nil {
		validate := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			return exitcode.AsUsage(validate(cmd, args))
		}
	}
	for _, sub := range c.Commands() {
		strict(sub)
	}
}

// unknownSubcommand is the Args of a group command: it takes no arguments,
// so one is an unknown subcommand.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 && !cmd.DisableSuggestions {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return exitcode.UsageError("%s", msg)
}

// Report writes err as "prog: message" to w, adds a pointer to --help for a
// usage error, and returns the process exit code from the one table in
// package exitcode. cmd is the command that failed (from ExecuteC); it may
// be nil.
func Report(w io.Writer, prog string, cmd *cobra.Command, err error) int {
	code := exitcode.Code(err)
	if err == nil {
		return code
	}
	fmt.Fprintf(w, "%s: %v\n", prog, err)
	if code == exitcode.Usage && cmd != nil {
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}
