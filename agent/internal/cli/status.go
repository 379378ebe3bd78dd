package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/agent/internal/status"
	"github.com/codelab-app/infra/agent/internal/units"
	"github.com/codelab-app/infra/agent/internal/version"
	"github.com/codelab-app/infra/internal/exitcode"
)

// StatusOptions are `codelab-agent status`'s options.
type StatusOptions struct {
	JSON       bool
	Wait       bool
	Timeout    time.Duration
	ConsulAddr string
	// CheckTimeout bounds each round of live checks.
	CheckTimeout time.Duration
	// Probes replace the live checks (tests); nil fields use the real ones.
	Probes status.Probes
	// Table forces the table format; nil decides by whether Out is a
	// terminal.
	Table *bool
	// Fleet shows every droplet's published record instead (fleet.go).
	Fleet bool
	FleetOptions
}

func newStatusCmd(g *Global, stdio IO) *cobra.Command {
	o := &StatusOptions{CheckTimeout: 800 * time.Millisecond}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Say where this droplet stands: boot steps, units, Consul, containers",
		Long: `status reads the state the boot wrote (` + boot.StateFile + `) and checks
systemd units, the local Consul agent and the role's containers live. Each
check is bounded, so status answers in under a second and still answers,
saying what it cannot reach, when Docker or Consul is down.

For a failed step it prints the error and the command to investigate it.
Output is a table on a terminal, plain lines otherwise, and JSON with --json
(it carries schemaVersion).

With --wait it re-checks until the droplet is ready or failed, or --timeout
passes, and exits with the last state's code.

Exit codes:
  0   ready
  1   failed (a boot step failed; the output names it)
  2   degraded (booted, but a unit, Consul or a container check is failing)
  3   still booting
  64  usage error (bad flags or arguments)`,
		Example: `  codelab-agent status
  codelab-agent status --json | jq .overall
  codelab-agent status --wait --timeout 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFleetFlags(cmd, o); err != nil {
				return err
			}
			if o.Fleet {
				return RunFleet(cmd.Context(), g, o, stdio)
			}
			if o.Timeout < 0 {
				return exitcode.UsageError("--timeout must not be negative")
			}
			if cmd.Flags().Changed("timeout") && !o.Wait {
				return exitcode.UsageError("--timeout needs --wait")
			}
			return RunStatus(cmd.Context(), g, o, stdio)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.JSON, "json", false, "print JSON (with schemaVersion)")
	f.BoolVar(&o.Wait, "wait", false, "block until ready or failed (booting and degraded are waited out), or until --timeout")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "with --wait: give up after this long")
	f.StringVar(&o.ConsulAddr, "consul-addr", consul.DefaultAddr, "the local Consul agent's HTTP address")
	f.BoolVar(&o.Fleet, "fleet", false, "every droplet's boot and health, from the records they publish to Consul")
	o.FleetOptions.flags(f)
	return cmd
}

// RunStatus is the status command.
func RunStatus(ctx context.Context, g *Global, o *StatusOptions, stdio IO) error {
	root := fsutil.Root{Dir: g.Root}
	p := realProbes(root, o.ConsulAddr, o.Probes)
	check := o.CheckTimeout
	if check <= 0 {
		check = 800 * time.Millisecond
	}
	r := status.Collect(ctx, root, p, version.String(), check)
	// Degraded is waited out too: right after a boot a container's health
	// check may still be starting. --wait ends on ready, failed or the
	// deadline, and then reports the last state.
	settling := func(s string) bool { return s == status.Booting || s == status.Degraded }
	if o.Wait && settling(r.Overall) {
		wctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		prog := newProgress(stdio.ErrOut)
		_ = retry.Do(wctx, retry.Policy{Initial: 500 * time.Millisecond, Max: 2 * time.Second}, func(ctx context.Context) error {
			r = status.Collect(ctx, root, p, version.String(), check)
			if settling(r.Overall) {
				prog.show(status.ProgressLine(r))
				return errors.New(r.Summary)
			}
			return nil
		})
		prog.done()
		if settling(r.Overall) && wctx.Err() != nil && ctx.Err() == nil {
			r.Summary += " (not ready after --timeout " + o.Timeout.String() + ")"
		}
	}
	format := status.Plain
	switch {
	case o.JSON:
		format = status.JSON
	case o.Table != nil && *o.Table:
		format = status.Table
	case o.Table == nil && isTerminal(stdio.Out):
		format = status.Table
	}
	if err := status.Write(stdio.Out, r, format); err != nil {
		return err
	}
	if r.ExitCode != exitcode.OK {
		return exitcode.With(r.ExitCode, errors.New(r.Summary))
	}
	return nil
}

// realProbes fills the probes p leaves nil with the real checks: systemd
// over D-Bus, the local Consul agent at consulAddr, Docker, the kernel's
// boot id and the boot lock under root.
func realProbes(root fsutil.Root, consulAddr string, p status.Probes) status.Probes {
	if p.Units == nil {
		p.Units = func(ctx context.Context, names []string) ([]units.State, error) {
			m, err := units.Dial(ctx)
			if err != nil {
				return nil, err
			}
			defer m.Close()
			return m.States(ctx, names)
		}
	}
	if p.Consul == nil {
		c := consul.New(consulAddr)
		p.Consul = c.Check
	}
	if p.Containers == nil {
		p.Containers = func(ctx context.Context, project string) ([]containers.Container, error) {
			api, err := containers.NewClient()
			if err != nil {
				return nil, err
			}
			defer api.Close()
			return containers.List(ctx, api, project)
		}
	}
	if p.BootID == nil {
		p.BootID = BootID
	}
	if p.BootRunning == nil {
		p.BootRunning = func() (bool, error) { return status.BootRunning(root) }
	}
	return p
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows status --wait's progress on w: one line redrawn in place
// on a terminal, otherwise a plain line each time it changes.
type progress struct {
	w    io.Writer
	tty  bool
	last string
}

func newProgress(w io.Writer) *progress { return &progress{w: w, tty: isTerminal(w)} }

func (p *progress) show(line string) {
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) done() {
	if p.tty && p.last != "" {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
