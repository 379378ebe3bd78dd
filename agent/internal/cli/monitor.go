package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/monitor"
	"github.com/codelab-app/infra/internal/exitcode"
)

// MonitorOptions are `codelab-agent monitor`'s options.
type MonitorOptions struct {
	Listen string
	Once   bool
}

func newMonitorCmd(g *Global, stdio IO) *cobra.Command {
	o := &MonitorOptions{}
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Serve the neo4j role's Prometheus metrics and backup health check",
		Long: `monitor runs on neo4j droplets (codelab-monitor.service). It serves, on the
VPC address from ` + backup.ConfigFile + ` (or --listen):

  /metrics        Prometheus: backup age, last result, size, duration and
                  downtime, store size, free disk, container health and
                  restarts, Bolt/HTTP reachability, consul-template render lag
  /health/backup  200 while the newest verified backup is younger than
                  maxAge, 503 otherwise (the Consul check neo4j-backup-age);
                  429 (a warning) when it is young enough but backups sit
                  in the bucket's quarantine/ folder
  /view           the same as JSON (what status shows)

With --once it prints the JSON view and exits: 0 when the backup is fresh
and nothing is in quarantine, 2 (degraded) otherwise.

` + exitcode.Doc,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunMonitor(cmd.Context(), g, o, stdio) },
	}
	cmd.Flags().StringVar(&o.Listen, "listen", "", "address to serve on (default: monitor.listen in the settings)")
	cmd.Flags().BoolVar(&o.Once, "once", false, "print the monitor's view as JSON and exit")
	return cmd
}

// RunMonitor is `monitor`.
func RunMonitor(ctx context.Context, g *Global, o *MonitorOptions, stdio IO) error {
	root := fsutil.Root{Dir: g.Root}
	cfg, err := backup.LoadConfig(root)
	if err != nil {
		return err
	}
	docker, err := containers.NewEngine()
	if err != nil {
		return err
	}
	probes, lag := monitor.RealProbes(root, cfg, docker)
	m := &monitor.Monitor{Root: root, Config: cfg, Probes: probes, Log: g.Logger(stdio.ErrOut)}
	if o.Once {
		v := m.Collect(ctx)
		enc := json.NewEncoder(stdio.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
		if code, msg := m.BackupHealth(); code != http.StatusOK {
			return exitcode.With(exitcode.Degraded, fmt.Errorf("%s", msg))
		}
		return nil
	}
	if lag != nil {
		go lag.Watch(ctx)
	}
	addr := o.Listen
	if addr == "" {
		addr = cfg.Monitor.Listen
	}
	return m.Serve(ctx, addr)
}
