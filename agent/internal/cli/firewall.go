package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/firewall"
	"github.com/codelab-app/infra/internal/exitcode"
)

// FirewallOptions are `codelab-agent firewall`'s options.
type FirewallOptions struct {
	// Apply installs the rules; nil means this machine's iptables and
	// ip6tables (firewall.System).
	Apply func(ctx context.Context) (firewall.Report, error)
}

func newFirewallCmd(g *Global, stdio IO) *cobra.Command {
	o := &FirewallOptions{}
	return &cobra.Command{
		Use:   "firewall",
		Short: "Close the metadata service (169.254.169.254) to containers (DOCKER-USER rules)",
		Long: `firewall makes sure no container reaches DigitalOcean's metadata service, which
holds the droplet's user_data and so its secrets: in the filter table's
` + firewall.Chain + ` chain, for IPv4 and IPv6, it rejects every connection whose
original destination is 169.254.169.254 or an IPv6 form that embeds it. It
adds only what is missing (checked with iptables -C), so it may run any number
of times. The host's own requests are not affected.

codelab-firewall.service runs it before dockerd starts, on every boot; the
boot's firewall step runs it again before any container starts.

` + exitcode.Doc,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunFirewall(cmd.Context(), g, o, stdio)
		},
	}
}

// RunFirewall is the firewall command.
func RunFirewall(ctx context.Context, g *Global, o *FirewallOptions, stdio IO) error {
	log := g.Logger(stdio.ErrOut)
	apply := o.Apply
	if apply == nil {
		apply = applySystemFirewall
	}
	start := time.Now()
	rep, err := apply(ctx)
	if err != nil {
		return fmt.Errorf("close the metadata service to containers: %w", err)
	}
	log.Info("firewall", slog.Int("added", rep.Added), slog.Int("present", rep.Present), slog.Duration("took", time.Since(start)))
	fmt.Fprintln(stdio.Out, rep)
	return nil
}

func applySystemFirewall(ctx context.Context) (firewall.Report, error) {
	in, err := firewall.System()
	if err != nil {
		return firewall.Report{}, err
	}
	return in.Apply(ctx)
}
