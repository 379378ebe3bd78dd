package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/fleet"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/status"
	"github.com/codelab-app/infra/agent/internal/version"
	"github.com/codelab-app/infra/internal/exitcode"
)

// FleetPublishOptions are `codelab-agent fleet publish`'s options.
//
// After the boot, the fleet record is kept fresh by this one-shot command,
// run by codelab-fleet.timer every 10 s, rather than by a long-running
// publisher. Each tick reads exactly what `codelab-agent status` reads (the
// state file and the same live checks), so the record and status never
// disagree; nothing stays resident between ticks (no D-Bus, Docker or
// Consul connection to keep healthy, no memory to leak); a tick that
// crashes or hangs costs one tick (the unit's timeout ends it) and systemd
// runs the next; and systemd already schedules the neo4j backup the same
// way. The price is a process start every tick, a few milliseconds.
type FleetPublishOptions struct {
	ConsulAddr string
	// MaxAge republishes an unchanged record once the published one is
	// this old; with the timer's 10 s tick, the record in Consul is never
	// older than 30 s.
	MaxAge time.Duration
	// Timeout bounds the whole tick: the live checks and Consul.
	Timeout time.Duration
	// CheckTimeout bounds the live checks.
	CheckTimeout time.Duration
	// Probes replace the live checks (tests); nil fields use the real ones.
	Probes status.Probes
}

func newFleetCmd(g *Global, stdio IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "This droplet's record in the fleet view (codelab/_fleet/<env>/<node> in Consul KV)",
		Long: `The fleet view (` + "`codelab-agent status --fleet`" + `) reads the record every
droplet publishes to Consul KV under ` + fleet.Prefix + `<env>/<node>, held by a
Consul session tied to the node's serfHealth check. The boot publishes it
while it runs; after the boot, codelab-fleet.timer runs ` + "`fleet publish`" + `
every 10 s to keep it fresh.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newFleetPublishCmd(g, stdio))
	return cmd
}

func newFleetPublishCmd(g *Global, stdio IO) *cobra.Command {
	o := &FleetPublishOptions{MaxAge: 20 * time.Second, Timeout: 8 * time.Second, CheckTimeout: 3 * time.Second}
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publish this droplet's fleet record if it changed or has aged (codelab-fleet.timer runs it)",
		Long: `publish computes this droplet's record from what ` + "`codelab-agent status`" + ` reads
(` + boot.StateFile + ` and the live checks of systemd units, Consul and
the role's containers; on neo4j, the newest verified backup) and publishes
it to Consul when it differs from the published one, or when the published
one is --max-age old. Its state is status's overall state: ready, degraded,
failed or booting.

While a boot runs (it holds ` + boot.LockFile + `), publish does nothing: the
boot publishes its own record. A boot that starts during a publish waits
for it (a few seconds).

It never fails for want of Consul: when Consul does not answer, it logs a
warning and exits 0, and the timer's next tick tries again. It exits 1 only
when another node's session holds this node's key (two droplets with one
node name), which no retry mends.

` + exitcode.Doc,
		Example: `  codelab-agent fleet publish
  systemctl list-timers codelab-fleet.timer
  journalctl -u codelab-fleet.service -n 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.MaxAge <= 0 || o.Timeout <= 0 {
				return exitcode.UsageError("--max-age and --timeout must be positive")
			}
			return RunFleetPublish(cmd.Context(), g, o, stdio)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ConsulAddr, "consul-addr", consul.DefaultAddr, "the local Consul agent's HTTP address")
	f.DurationVar(&o.MaxAge, "max-age", o.MaxAge, "republish an unchanged record once the published one is this old")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "give up on this tick after this long (the next tick retries)")
	return cmd
}

// RunFleetPublish is `fleet publish`: one tick.
func RunFleetPublish(ctx context.Context, g *Global, o *FleetPublishOptions, stdio IO) error {
	log := g.Logger(stdio.ErrOut)
	root := fsutil.Root{Dir: g.Root}
	// A shared hold on the boot lock: refused while a boot runs (its own
	// publisher is the one that publishes then), and a boot that starts
	// meanwhile waits until this tick is done, so the two never race.
	unlock, err := fsutil.TryLockShared(root.Path(boot.LockFile))
	if errors.Is(err, fsutil.ErrLocked) {
		log.Debug("a boot is running and publishes its own fleet record; nothing to do")
		return nil
	}
	if err != nil {
		return fmt.Errorf("fleet publish: %w", err)
	}
	defer unlock()

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r := status.Collect(ctx, root, realProbes(root, o.ConsulAddr, o.Probes), version.String(), o.CheckTimeout)
	if r.Boot == nil {
		log.Info("no boot recorded yet; no fleet record to publish", slog.String("summary", r.Summary))
		return nil
	}
	c, err := consul.NewAPI(o.ConsulAddr, o.Timeout)
	if err != nil {
		return err
	}
	st := *r.Boot
	pub := &fleet.Publisher{
		Client:     c,
		State:      func() boot.State { return st },
		LastBackup: func() *time.Time { return lastBackup(root) },
		Overall:    func() (string, string) { return r.Overall, r.Summary },
		Log:        log,
	}
	_, err = pub.PublishIfChanged(ctx, o.MaxAge)
	switch {
	case errors.Is(err, fleet.ErrHeld):
		return fmt.Errorf("fleet publish: %w", err)
	case err != nil:
		log.Warn("fleet record not published; the next tick retries", slog.String("err", err.Error()))
	}
	return nil
}

// lastBackup is when the newest verified backup was taken; nil when there
// is none (every role but neo4j).
func lastBackup(root fsutil.Root) *time.Time {
	st, err := backup.ReadState(root)
	if err != nil || st.NewestVerified == nil {
		return nil
	}
	t := st.NewestVerified.At
	return &t
}
