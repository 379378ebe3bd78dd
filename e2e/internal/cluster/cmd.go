package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// NewCommand is the `demo` command: up, down.
func NewCommand(stdout io.Writer) *cobra.Command {
	o := &Options{Out: stdout}
	root := &cobra.Command{
		Use:           "demo",
		Short:         "Boot a codelab cluster on the local DigitalOcean (make demo / make demo-down)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&o.Repo, "repo", "", "repository root (default: the git top level of the current folder)")
	pf.StringVar(&o.BinDir, "bin", "", "folder with localdo, imager and codelab-agent (default: this program's folder)")
	pf.StringVar(&o.Instance, "instance", "demo", "local DigitalOcean instance")
	pf.StringVar(&o.Addr, "addr", "127.0.0.1:8765", "local DigitalOcean API address (the registry listens on the next port)")
	var logs string
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the local DigitalOcean, build both images, boot the cluster, wait until every droplet is ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.resolve(); err != nil {
				return err
			}
			start := time.Now()
			c, err := Up(cmd.Context(), *o)
			if err != nil {
				if c != nil && len(c.Nodes) > 0 && logs != "" {
					if lerr := c.CollectLogs(context.Background(), logs); lerr == nil {
						fmt.Fprintf(stdout, "droplet logs kept in %s\n", logs)
					}
				}
				return err
			}
			c.Print(cmd.Context(), stdout)
			fmt.Fprintf(stdout, "demo up in %s\n", time.Since(start).Round(time.Second))
			return nil
		},
	}
	up.Flags().BoolVar(&o.ForceBuild, "force-build", false, "imager build --force")
	up.Flags().DurationVar(&o.StatusTimeout, "status-timeout", 15*time.Minute, "per droplet bound on codelab-agent status --wait")
	up.Flags().StringVar(&logs, "logs", "", "on failure, keep every droplet's journal and agent state in this folder")
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove every container, network, volume and image the demo made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.resolve(); err != nil {
				return err
			}
			return Down(cmd.Context(), *o)
		},
	}
	root.AddCommand(up, down)
	return root
}

func (o *Options) resolve() error {
	if o.Repo == "" {
		out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			return fmt.Errorf("find the repository (--repo): %w", err)
		}
		o.Repo = strings.TrimSpace(string(out))
	}
	if o.BinDir == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.BinDir = filepath.Dir(self)
	}
	for _, b := range []string{"localdo", "imager"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return fmt.Errorf("%s not in %s (make build, go build -o bin/ ./e2e/cmd/localdo)", b, o.BinDir)
		}
	}
	return nil
}
